//! The event history: an append-only, bounded, persisted log of what happened — alert transitions,
//! notification attempts and their answers, silences created and expired, reloads, targets going up or down —
//! for the on-call human's "what fired, when, who was told, did it reach them, who silenced what".
//!
//! ```text
//!  rules engine, notifier, silences, daemon ──record──► EventSink (bounded queue; full: dropped, counted)
//!                                                            │
//!                                                            ▼
//!                          EventWriter task (one; owned by the daemon's tracker; cancelled at shutdown,
//!                          then FINAL_FLUSH for what is queued) ── append + fsync per batch ──►
//!                          <storage>/events/events-<first seq>.jsonl   (rotated at 4 MiB; retention by age
//!                                                                       and size, oldest segment first)
//!                                                            │
//!  GET /api/v1/events, the status UI ◄── EventLog::query (reads the files; filters, paging, bounded scan)
//! ```
//!
//! Why this shape:
//! - **Recording never blocks.** The rules engine and the notifier record from their loops; a slow disk must
//!   not slow evaluation or delivery, so the sink only `try_send`s and a full queue drops the event
//!   (`dbwatch_events_dropped_total`). The history is for people; the notifier's own state file, not this
//!   log, is what guarantees delivery.
//! - **Append-only segments, a new one per process.** Each batch is one `write` and one `fsync`; a crash can
//!   only leave a torn last line, which is skipped and counted at the next start
//!   (`dbwatch_events_skipped_lines_total{reason="torn"}`), and since a process never appends to a segment it
//!   did not create, nothing is ever written after a torn line. A damaged line elsewhere costs that line only;
//!   a segment with no readable line at all is moved aside to `<name>.corrupt-<time>`, as the storage folder
//!   quarantines a corrupt state file. Files are 0600 in a 0700 folder: events carry alert labels and silence
//!   authors.
//! - **Sequence numbers** increase by one per event across restarts (the next start reads the last segment),
//!   so they order events and serve as the paging cursor.
//!
//! This crate is at the bottom of the crate graph: it knows nothing of alerts, receivers or HTTP, only plain
//! strings and maps ([`event`]).

pub mod event;
mod log;
mod metrics;
pub mod query;
mod segment;

pub use event::{Body, Event, Kind, NotificationOutcome, SilenceAction};
pub use log::{
    channel, EventSink, EventWriter, Retention, EVENTS_FOLDER, FINAL_FLUSH, QUEUE_CAPACITY,
};
pub use metrics::EventMetrics;
pub use query::{Direction, EventLog, Page, Query};

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio_util::sync::CancellationToken;

    use super::*;

    fn target_event(target: &str, up: bool) -> Body {
        Body::Target {
            target: target.to_owned(),
            db: "postgres".to_owned(),
            up,
            error_kind: (!up).then(|| "connect".to_owned()),
        }
    }

    /// Records `bodies` through a writer that is then shut down, as the daemon does.
    async fn record(
        storage: &std::path::Path,
        retention: Retention,
        bodies: Vec<(i64, Body)>,
    ) -> EventMetrics {
        let metrics = EventMetrics::unregistered();
        let (sink, writer) = channel(storage, retention, metrics.clone());
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(writer.run(shutdown.clone()));
        for (at, body) in bodies {
            sink.record_at(at, body);
        }
        // Cancelled at once: what is queued is written by the final flush, as at a daemon's shutdown.
        shutdown.cancel();
        task.await.expect("the writer ends");
        metrics
    }

    fn all(storage: &std::path::Path, direction: Direction) -> Vec<Event> {
        let log = EventLog::new(storage);
        let mut events = Vec::new();
        let mut cursor = None;
        loop {
            let page = log
                .query(&Query {
                    limit: 7,
                    cursor,
                    direction,
                    ..Query::default()
                })
                .expect("query");
            events.extend(page.events);
            match page.next {
                Some(next) => cursor = Some(next),
                None => return events,
            }
        }
    }

    fn now() -> i64 {
        crate::log::now_millis()
    }

    #[tokio::test]
    async fn events_survive_restarts_numbered_in_order_and_page_both_ways() {
        let dir = tempfile::tempdir().expect("temp dir");
        let t = now();
        let first: Vec<(i64, Body)> = (0..20)
            .map(|i| (t + i, target_event(&format!("t{i}"), i % 2 == 0)))
            .collect();
        let metrics = record(dir.path(), Retention::default(), first).await;
        assert_eq!(metrics.written.get(), 20);
        let second: Vec<(i64, Body)> = (20..25)
            .map(|i| (t + i, target_event(&format!("t{i}"), true)))
            .collect();
        record(dir.path(), Retention::default(), second).await;

        let forward = all(dir.path(), Direction::Forward);
        let seqs: Vec<u64> = forward.iter().map(|event| event.seq).collect();
        assert_eq!(seqs, (1..=25).collect::<Vec<u64>>());
        let backward = all(dir.path(), Direction::Backward);
        let mut reversed: Vec<u64> = backward.iter().map(|event| event.seq).collect();
        reversed.reverse();
        assert_eq!(reversed, seqs);
        // Two processes, two segments.
        assert_eq!(
            segment::list(&dir.path().join(EVENTS_FOLDER))
                .expect("list")
                .len(),
            2
        );

        let log = EventLog::new(dir.path());
        let page = log
            .query(&Query {
                target: Some("t3".into()),
                ..Query::default()
            })
            .expect("query");
        assert_eq!(page.events.len(), 1);
        assert_eq!(page.events[0].seq, 4);
        let page = log
            .query(&Query {
                since: Some(t + 10),
                until: Some(t + 12),
                kinds: vec![Kind::Target],
                ..Query::default()
            })
            .expect("query");
        let seqs: Vec<u64> = page.events.iter().map(|event| event.seq).collect();
        assert_eq!(seqs, [13, 12, 11]);
        let page = log
            .query(&Query {
                kinds: vec![Kind::Alert],
                ..Query::default()
            })
            .expect("query");
        assert!(page.events.is_empty());
    }

    #[tokio::test]
    async fn a_torn_last_line_is_skipped_and_counted_and_a_garbage_segment_moved_aside() {
        let dir = tempfile::tempdir().expect("temp dir");
        let t = now();
        record(
            dir.path(),
            Retention::default(),
            (0..3).map(|i| (t + i, target_event("pg", true))).collect(),
        )
        .await;
        let folder = dir.path().join(EVENTS_FOLDER);
        let (_, path) = segment::list(&folder).expect("list").remove(0);
        // A crash in the middle of the next line, and a line of garbage before it.
        let mut bytes = std::fs::read(&path).expect("read");
        let keep = bytes.len();
        bytes.extend_from_slice(b"{\"seq\":4,\"at\":17000");
        bytes.splice(keep..keep, b"\x00\x01garbage\n".iter().copied());
        std::fs::write(&path, &bytes).expect("tear");
        std::fs::write(
            folder.join(segment::name(1000)),
            b"\xff\xfenot events at all\n",
        )
        .expect("garbage");

        let metrics = record(
            dir.path(),
            Retention::default(),
            vec![(t + 10, target_event("pg", false))],
        )
        .await;
        assert_eq!(metrics.skipped_lines.with_label_values(&["torn"]).get(), 1);
        // One line before the torn one, one in the garbage segment.
        assert_eq!(
            metrics.skipped_lines.with_label_values(&["corrupt"]).get(),
            2
        );
        assert_eq!(metrics.quarantined_segments.get(), 1);
        let aside: Vec<String> = std::fs::read_dir(&folder)
            .expect("read dir")
            .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
            .filter(|name| name.contains(".corrupt-"))
            .collect();
        assert_eq!(aside.len(), 1, "{aside:?}");
        // Nothing else was lost, and numbering goes on after the last good event.
        let seqs: Vec<u64> = all(dir.path(), Direction::Forward)
            .iter()
            .map(|event| event.seq)
            .collect();
        assert_eq!(seqs, [1, 2, 3, 4]);
    }

    #[tokio::test]
    async fn the_retention_removes_the_oldest_segments_by_size_and_by_age() {
        let dir = tempfile::tempdir().expect("temp dir");
        let retention = Retention {
            max_age: Duration::from_secs(3600),
            // Segments of 4 KiB (the smallest), so a few hundred events fill several.
            max_bytes: 16 * 1024,
        };
        let t = now();
        let bodies: Vec<(i64, Body)> = (0..400)
            .map(|i| (t + i, target_event(&format!("target-{i:04}"), true)))
            .collect();
        // One record per batch would be slow; the writer batches what is queued.
        let metrics = record(dir.path(), retention, bodies).await;
        assert_eq!(metrics.written.get(), 400);
        let bytes = u64::try_from(metrics.bytes.get()).expect("positive");
        assert!(bytes <= retention.max_bytes + 4096, "{bytes} bytes kept");
        assert!(metrics.removed_segments.with_label_values(&["size"]).get() > 0);
        let events = all(dir.path(), Direction::Forward);
        // The newest are kept, contiguous up to the last one.
        let seqs: Vec<u64> = events.iter().map(|event| event.seq).collect();
        assert_eq!(seqs.last(), Some(&400));
        assert!(seqs.windows(2).all(|pair| pair[1] == pair[0] + 1));
        assert!(seqs[0] > 1, "the oldest went first");

        // Events two hours old: their segment goes by age at the next start.
        let old = tempfile::tempdir().expect("temp dir");
        record(
            old.path(),
            retention,
            vec![(t - 2 * 3600 * 1000, target_event("pg", true))],
        )
        .await;
        let metrics = record(old.path(), retention, vec![(t, target_event("pg", false))]).await;
        assert_eq!(
            metrics.removed_segments.with_label_values(&["age"]).get(),
            1
        );
        let seqs: Vec<u64> = all(old.path(), Direction::Forward)
            .iter()
            .map(|event| event.seq)
            .collect();
        assert_eq!(seqs, [2]);
    }

    #[tokio::test]
    async fn a_full_queue_drops_and_counts_without_waiting() {
        let dir = tempfile::tempdir().expect("temp dir");
        let metrics = EventMetrics::unregistered();
        // No writer runs: the queue fills and stays full.
        let (sink, _writer) = channel(dir.path(), Retention::default(), metrics.clone());
        for _ in 0..QUEUE_CAPACITY + 10 {
            sink.record(target_event("pg", true));
        }
        assert_eq!(metrics.dropped.get(), 10);
        // A disabled sink records nothing and counts nothing.
        EventSink::default().record(target_event("pg", true));
    }
}
