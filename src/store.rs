//! The latest snapshot of every target. Poll tasks publish; scrapes and, later, the rules engine read.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::SystemTime;

use dbwatch_collectors::Sample;
use dbwatch_rules::{SampleSource, TargetSamples};

use crate::exposition::EncodedFamily;

/// What one poll of one target left behind.
#[derive(Debug)]
pub struct Snapshot {
    pub target: String,
    pub db: &'static str,
    /// The target's configured labels, carried by every series besides `target` and `db`.
    pub labels: BTreeMap<String, String>,
    pub taken_at: SystemTime,
    pub up: bool,
    /// Why the poll failed, as a bounded error kind (`connect`, `auth`, `deadline`...); `None` when it succeeded.
    pub error_kind: Option<&'static str>,
    /// Every sample of the poll, the daemon's own per-target gauges included.
    pub samples: Vec<Sample>,
    /// The same samples, encoded for exposition.
    pub families: Vec<EncodedFamily>,
}

/// Snapshots by target name. The lock is held only to swap or clone `Arc`s, never across an `.await`.
#[derive(Debug)]
pub struct SnapshotStore {
    snapshots: RwLock<BTreeMap<String, Arc<Snapshot>>>,
    /// How many targets are configured; a reload changes it.
    expected_targets: AtomicUsize,
    /// With `remote_write:`, where every published snapshot is also queued.
    forward: Option<Arc<dyn SnapshotSink>>,
}

/// Told of every snapshot as it is published and of every target removed, after the store's lock is released;
/// it must not wait (remote_write queues what it is told).
pub trait SnapshotSink: Send + Sync + std::fmt::Debug {
    /// `previous` is the target's snapshot this one replaces.
    fn published(&self, snapshot: &Snapshot, previous: Option<&Snapshot>);
    /// A reload removed the target; `last` was its latest snapshot.
    fn removed(&self, last: &Snapshot);
}

impl SnapshotStore {
    pub fn new(expected_targets: usize) -> Self {
        SnapshotStore {
            snapshots: RwLock::new(BTreeMap::new()),
            expected_targets: AtomicUsize::new(expected_targets),
            forward: None,
        }
    }

    /// Queues every snapshot published from now on (and the staleness of removed targets) for remote_write.
    pub fn forwarding_to(mut self, forward: Arc<dyn SnapshotSink>) -> Self {
        self.forward = Some(forward);
        self
    }

    /// How many targets are configured from now on (the scheduler sets it at start and on each reload).
    pub fn expect_targets(&self, count: usize) {
        self.expected_targets.store(count, Ordering::Relaxed);
    }

    /// Drops a target's snapshot: a reload removed the target, so its series leave `/metrics` and the rules
    /// engine sees it gone (its series go stale, as a target that vanished from a Prometheus scrape).
    pub fn remove(&self, target: &str) {
        let mut snapshots = self
            .snapshots
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        let removed = snapshots.remove(target);
        drop(snapshots);
        if let (Some(forward), Some(last)) = (&self.forward, removed) {
            forward.removed(&last);
        }
    }

    pub fn publish(&self, snapshot: Snapshot) {
        let snapshot = Arc::new(snapshot);
        let mut snapshots = self
            .snapshots
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        let previous = snapshots.insert(snapshot.target.clone(), Arc::clone(&snapshot));
        drop(snapshots);
        // Encoded outside the lock: scrapes and the rules engine never wait for it.
        if let Some(forward) = &self.forward {
            forward.published(&snapshot, previous.as_deref());
        }
    }

    /// The latest snapshots, in target-name order.
    pub fn snapshots(&self) -> Vec<Arc<Snapshot>> {
        let snapshots = self
            .snapshots
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        snapshots.values().cloned().collect()
    }

    pub fn get(&self, target: &str) -> Option<Arc<Snapshot>> {
        let snapshots = self
            .snapshots
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        snapshots.get(target).cloned()
    }

    /// How many targets have published, against how many are configured.
    pub fn progress(&self) -> (usize, usize) {
        let snapshots = self
            .snapshots
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        (
            snapshots.len(),
            self.expected_targets.load(Ordering::Relaxed),
        )
    }
}

impl TargetSamples for Snapshot {
    fn target(&self) -> &str {
        &self.target
    }
    fn db(&self) -> &str {
        self.db
    }
    fn labels(&self) -> &BTreeMap<String, String> {
        &self.labels
    }
    fn samples(&self) -> &[Sample] {
        &self.samples
    }
}

/// The rules engine reads the store as a Prometheus server scrapes `/metrics`.
impl SampleSource for SnapshotStore {
    fn latest(&self) -> Vec<Arc<dyn TargetSamples>> {
        self.snapshots()
            .into_iter()
            .map(|snapshot| snapshot as Arc<dyn TargetSamples>)
            .collect()
    }

    fn progress(&self) -> (usize, usize) {
        SnapshotStore::progress(self)
    }
}
