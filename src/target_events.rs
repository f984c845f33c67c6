//! Targets going up and down, recorded in the event history. The poll tasks know nothing of the history; this
//! task reads their latest snapshots four times a second and records each change of a target's `up`, stamped with
//! the time of the poll that saw it (its sequence number may come after the alert transitions it caused). A target first seen down is recorded too (it was
//! down when dbwatch started); one first seen up is not, or every restart would say the whole fleet came up.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::store::SnapshotStore;
use dbwatch_events::{Body, EventSink};

/// Reading every snapshot is a clone of one `Arc` per target: cheap enough to do four times a second.
const EVERY: Duration = Duration::from_millis(250);

pub async fn run(store: Arc<SnapshotStore>, events: EventSink, shutdown: CancellationToken) {
    let mut known: HashMap<String, bool> = HashMap::new();
    let mut tick = tokio::time::interval(EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        for snapshot in store.snapshots() {
            let previous = known.insert(snapshot.target.clone(), snapshot.up);
            let changed = match previous {
                Some(up) => up != snapshot.up,
                None => !snapshot.up,
            };
            if changed {
                // Stamped with the poll that saw it: the rules engine may record what followed from it first.
                events.record_at(
                    dbwatch_rules::alerting::unix_millis(snapshot.taken_at),
                    Body::Target {
                        target: snapshot.target.clone(),
                        db: snapshot.db.to_owned(),
                        up: snapshot.up,
                        error_kind: snapshot.error_kind.map(str::to_owned),
                    },
                );
            }
        }
    }
}
