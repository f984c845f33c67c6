//! The bounded in-memory sample history rules are evaluated over.
//!
//! # How snapshots become samples
//!
//! The engine reads its [`SampleSource`](crate::source::SampleSource) at every evaluation, the way a
//! Prometheus server scrapes `/metrics`: every series of every target's latest snapshot gets one sample stamped
//! with the evaluation time (not the poll time). A series that was in the previous read but is missing from
//! this one (the target went down and its snapshot lost it, or the database stopped reporting it) gets a
//! staleness marker at this evaluation's time, exactly as Prometheus writes one when a scrape no longer
//! contains a series. So:
//!
//! - an instant selector sees the latest sample at or before the evaluation time, at most 5 minutes old,
//!   unless the latest is a staleness marker: a vanished series disappears at the next evaluation, not 5
//!   minutes later;
//! - a frozen snapshot (a poll task that stopped publishing) keeps being read, like a scrape of a stuck
//!   exporter: `time() - dbwatch_last_success_timestamp_seconds` keeps growing and alerts on it fire;
//! - `rate()` and friends see one sample per evaluation, like a Prometheus server scraping dbwatch at the
//!   evaluation interval, so shipped rules mean the same thing in dbwatch and in Prometheus.
//!
//! Labels are the exposition's: `target`, `db`, the target's configured labels, then the sample's own; empty
//! values are dropped, as Prometheus does on ingestion. Only metrics some rule can select are kept, and only for
//! as long as the longest range (plus offset and lookback) needs.

use std::hash::Hasher;
use std::sync::Arc;

use promql_parser::label::Matcher;

use super::labels::{FxHashMap, FxHashSet, FxHasher, Label, Metric, METRIC_NAME};
use super::promql::Selector;
use crate::source::TargetSamples;

pub use crate::promql::LOOKBACK_MS;

/// Prometheus' staleness marker: a NaN with a payload no computation produces.
const STALE_NAN_BITS: u64 = 0x7ff0_0000_0000_0002;

pub fn stale_nan() -> f64 {
    f64::from_bits(STALE_NAN_BITS)
}

pub fn is_stale(value: f64) -> bool {
    value.to_bits() == STALE_NAN_BITS
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Point {
    /// Unix milliseconds.
    pub t: i64,
    pub v: f64,
}

/// A series' samples in time order. Trimming moves the start forward; the dropped prefix is reclaimed only
/// when an append finds the buffer full, so appending and trimming stay amortised O(1) per sample, a buffer
/// sized for the retention never moves, and readers get one contiguous slice.
#[derive(Debug)]
struct Points {
    buffer: Vec<Point>,
    start: usize,
    /// The first sample's time (`i64::MAX` when empty), kept beside the series so that trimming can pass over
    /// a series without reading its samples.
    oldest: i64,
}

impl Default for Points {
    fn default() -> Points {
        Points {
            buffer: Vec::new(),
            start: 0,
            oldest: i64::MAX,
        }
    }
}

impl Points {
    fn as_slice(&self) -> &[Point] {
        &self.buffer[self.start..]
    }

    fn len(&self) -> usize {
        self.buffer.len() - self.start
    }

    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Appends a sample; out-of-order and duplicate timestamps are refused.
    fn push(&mut self, t: i64, v: f64) -> bool {
        if self.buffer.last().is_some_and(|last| last.t >= t) {
            return false;
        }
        if self.is_empty() {
            self.oldest = t;
        }
        if self.buffer.len() == self.buffer.capacity() && self.start > 0 {
            self.buffer.drain(..self.start);
            self.start = 0;
        }
        self.buffer.push(Point { t, v });
        true
    }

    /// Drops the samples older than `cutoff`.
    fn trim_before(&mut self, cutoff: i64) {
        self.start += self
            .as_slice()
            .iter()
            .take_while(|point| point.t < cutoff)
            .count();
        self.oldest = self.as_slice().first().map_or(i64::MAX, |point| point.t);
        if self.start == self.buffer.len() {
            self.buffer.clear();
            self.start = 0;
        }
    }
}

#[derive(Debug)]
struct Series {
    metric: Metric,
    hash: u64,
    points: Points,
    /// The last read of the store that had this series.
    scraped_at: i64,
    /// Kept for [`History::keep_longer`]'s retention rather than the rules'.
    long: bool,
}

#[derive(Debug, Default)]
struct Slot {
    generation: u32,
    series: Option<Series>,
}

/// A series id that notices when its slot was reused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct SeriesId {
    index: usize,
    generation: u32,
}

/// Which metric names to keep from snapshots.
#[derive(Debug, Clone, Default)]
pub enum NameFilter {
    #[default]
    All,
    Only {
        names: FxHashSet<Arc<str>>,
        /// The `__name__` matchers of selectors without an exact name; a name matching any set is kept.
        patterns: Vec<Vec<Matcher>>,
    },
}

impl NameFilter {
    /// The names the given selectors can match; `All` as soon as one selector can match any name.
    pub fn for_selectors<'a>(selectors: impl IntoIterator<Item = &'a Selector>) -> NameFilter {
        let mut names = FxHashSet::default();
        let mut patterns = Vec::new();
        for selector in selectors {
            if let Some(name) = &selector.name {
                names.insert(Arc::clone(name));
                continue;
            }
            let name_matchers: Vec<Matcher> = selector
                .matchers
                .iter()
                .filter(|matcher| matcher.name == METRIC_NAME)
                .cloned()
                .collect();
            if name_matchers.is_empty() {
                return NameFilter::All;
            }
            patterns.push(name_matchers);
        }
        NameFilter::Only { names, patterns }
    }

    pub fn keeps(&self, name: &str) -> bool {
        match self {
            NameFilter::All => true,
            NameFilter::Only { names, patterns } => {
                names.contains(name)
                    || patterns
                        .iter()
                        .any(|matchers| matchers.iter().all(|matcher| matcher.is_match(name)))
            }
        }
    }
}

#[derive(Debug)]
struct TargetCache {
    snapshot: Arc<dyn TargetSamples>,
    /// The series of each sample of the snapshot, `None` when filtered out or a duplicate.
    ids: Vec<Option<SeriesId>>,
    /// [`History::removals`] when the ids were last known to be current.
    checked_at: u64,
}

/// The values one scrape read, by slot index; the first value read for a slot wins, as a series' later
/// sample at the same time would be refused.
#[derive(Debug, Default)]
struct ReadValues {
    values: Vec<f64>,
    /// A bit per slot: whether `values` holds one for it.
    present: Vec<u64>,
}

impl ReadValues {
    fn clear(&mut self) {
        self.present.fill(0);
    }

    fn reserve_slots(&mut self, slots: usize) {
        if self.values.len() < slots {
            self.values.resize(slots, 0.0);
            self.present.resize(slots.div_ceil(64), 0);
        }
    }

    fn set(&mut self, index: usize, value: f64) {
        let (word, bit) = (index / 64, 1u64 << (index % 64));
        debug_assert!(index < self.values.len(), "slot {index} was not reserved");
        let (Some(present), Some(slot)) = (self.present.get_mut(word), self.values.get_mut(index))
        else {
            return;
        };
        if *present & bit == 0 {
            *present |= bit;
            *slot = value;
        }
    }

    fn get(&self, index: usize) -> Option<f64> {
        let (word, bit) = (index / 64, 1u64 << (index % 64));
        let present = self.present.get(word).is_some_and(|word| word & bit != 0);
        present.then(|| self.values[index])
    }
}

/// Counts for the engine's self-monitoring.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HistoryStats {
    pub series: usize,
    pub points: usize,
}

#[derive(Debug, Default)]
pub struct History {
    slots: Vec<Slot>,
    free: Vec<usize>,
    by_hash: FxHashMap<u64, Vec<SeriesId>>,
    by_name: FxHashMap<Arc<str>, Vec<SeriesId>>,
    /// `None`: keep everything (tests).
    retention_ms: Option<i64>,
    filter: NameFilter,
    interner: FxHashSet<Arc<str>>,
    targets: FxHashMap<String, TargetCache>,
    /// The values of the scrape under way, by slot; kept to reuse its memory.
    read: ReadValues,
    last_scrape: Option<i64>,
    /// Bumped at every scrape: caches of results read from the history drop them all (see
    /// [`crate::eval::cache`]).
    epoch: u64,
    /// The metric names samples were appended under since the scrape (`None`: a series without a name), each
    /// run of the same name once: caches drop the results that read them.
    appended: Vec<Option<Arc<str>>>,
    /// How many samples a series holds at most, to size its buffer once (0: unknown, let it grow).
    points_per_series: usize,
    /// Series created since the series were last laid out by name.
    created_since_layout: usize,
    /// How many series were ever removed: while it stays the same, ids known to be current still are.
    removals: u64,
    /// Names kept for `longer_ms` rather than the rules' retention (the status page's trends).
    kept_longer: FxHashSet<Arc<str>>,
    longer_ms: i64,
}

impl History {
    /// A history keeping the metrics `filter` lets through, for `retention_ms` (`None`: forever).
    pub fn new(filter: NameFilter, retention_ms: Option<i64>) -> History {
        History {
            retention_ms,
            filter,
            ..History::default()
        }
    }

    /// Also keeps the series named `names`, whether a rule selects them or not, for at least `retention_ms`:
    /// for readers of trends (the status page's sparklines). Only those series are kept longer; what the rules
    /// read is unchanged, since every selection reads within its own range.
    pub fn keep_longer(mut self, names: &[&str], retention_ms: i64) -> History {
        for name in names {
            let name = self.intern(name);
            if let NameFilter::Only { names, .. } = &mut self.filter {
                names.insert(Arc::clone(&name));
            }
            self.kept_longer.insert(name);
        }
        self.longer_ms = retention_ms;
        self
    }

    /// Calls `visit` with every series named `name` and its samples at or after `since`.
    pub fn for_each_named(&self, name: &str, since: i64, mut visit: impl FnMut(&Metric, &[Point])) {
        for id in self.by_name.get(name).into_iter().flatten() {
            if let Some(series) = self.series(*id) {
                let points = series.points.as_slice();
                let start = points.partition_point(|point| point.t < since);
                visit(&series.metric, &points[start..]);
            }
        }
    }

    /// Whether series named `name` are kept: some rule may select them.
    pub fn keeps(&self, name: &str) -> bool {
        self.filter.keeps(name)
    }

    /// Sizes each series' sample buffer for evaluations every `interval_ms`, so that a buffer is allocated
    /// once and stays where [`History::trim`] laid it out.
    pub fn with_sample_interval(mut self, interval_ms: i64) -> History {
        if let (Some(retention), true) = (self.retention_ms, interval_ms > 0) {
            // The retention, the trimming slack, and a few samples of margin.
            let most = (retention + retention / 4) / interval_ms + 4;
            self.points_per_series = usize::try_from(most).unwrap_or(0).min(4096);
        }
        self
    }

    /// Reads every snapshot as one scrape at `t` (see the module documentation).
    ///
    /// In two passes: the snapshots' values are first set aside by series, then appended in one walk over
    /// the series. Snapshots list a target's series family after family, while the series (and their sample
    /// buffers) are laid out family by family, a target's series thousands apart: appending straight from the
    /// snapshots cost two cache misses per sample, while a walk in memory order lets the processor read ahead.
    pub fn scrape(&mut self, snapshots: &[Arc<dyn TargetSamples>], t: i64) {
        if self.last_scrape.is_some_and(|last| t <= last) {
            return;
        }
        let previous_scrape = self.last_scrape.replace(t);
        self.epoch += 1;
        self.appended.clear();
        let mut read = std::mem::take(&mut self.read);
        read.clear();
        let mut caches = std::mem::take(&mut self.targets);
        let mut next_caches = FxHashMap::default();
        for snapshot in snapshots {
            let removals = self.removals;
            let cached = caches.remove(snapshot.target()).filter(|cache| {
                cache.checked_at == removals
                    || cache.ids.iter().flatten().all(|id| self.is_current(*id))
            });
            let ids = match cached {
                Some(cache)
                    if std::ptr::addr_eq(Arc::as_ptr(&cache.snapshot), Arc::as_ptr(snapshot)) =>
                {
                    cache.ids
                }
                // A new poll of the same target almost always has the previous one's series in the same
                // order: reuse the ids of every sample that names the same series, look up only the others.
                Some(cache) => self.remap_snapshot(&cache, snapshot.as_ref()),
                None => self.map_snapshot(snapshot.as_ref()),
            };
            read.reserve_slots(self.slots.len());
            for (sample, id) in snapshot.samples().iter().zip(&ids) {
                if let Some(id) = id {
                    read.set(id.index, sample.value);
                }
            }
            next_caches.insert(
                snapshot.target().to_owned(),
                TargetCache {
                    snapshot: Arc::clone(snapshot),
                    ids,
                    checked_at: self.removals,
                },
            );
        }
        self.targets = next_caches;
        for (index, slot) in self.slots.iter_mut().enumerate() {
            let Some(series) = &mut slot.series else {
                continue;
            };
            match read.get(index) {
                Some(value) => {
                    series.points.push(t, value);
                    series.scraped_at = t;
                }
                // In the previous read and not in this one: the series went stale.
                None if Some(series.scraped_at) == previous_scrape => {
                    series.points.push(t, stale_nan());
                }
                None => {}
            }
        }
        self.read = read;
    }

    /// Appends a sample to a series, creating it; out-of-order and duplicate samples are dropped, as
    /// Prometheus' storage refuses them. Returns whether the sample was kept.
    pub fn append(&mut self, metric: &Metric, t: i64, value: f64) -> bool {
        let name = metric.name();
        if self.appended.last().map(Option::as_deref) != Some(name) {
            let name = name.map(|name| self.intern(name));
            self.appended.push(name);
        }
        let id = self.find_or_insert_metric(metric);
        match self.series_mut(id) {
            Some(series) => series.points.push(t, value),
            None => false,
        }
    }

    /// Changes with every scrape (see [`History::appended`]).
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// The metric names samples were appended under since the last scrape, in order, each run of one name
    /// once; what a cache of results read from the history must drop.
    pub fn appended(&self) -> &[Option<Arc<str>>] {
        &self.appended
    }

    /// How many series a selector may match, to size its result.
    pub fn candidates(&self, selector: &Selector) -> usize {
        match &selector.name {
            Some(name) => self.by_name.get(name).map_or(0, Vec::len),
            None => 0,
        }
    }

    /// Calls `visit` with every series the selector matches.
    pub fn for_each_selected(&self, selector: &Selector, mut visit: impl FnMut(&Metric, &[Point])) {
        let mut check = |series: &Series| {
            let metric = &series.metric;
            if selector.matches(metric.name(), |name| metric.get(name)) {
                visit(metric, series.points.as_slice());
            }
        };
        match &selector.name {
            Some(name) => {
                for id in self.by_name.get(name).into_iter().flatten() {
                    if let Some(series) = self.series(*id) {
                        check(series);
                    }
                }
            }
            None => {
                for slot in &self.slots {
                    if let Some(series) = &slot.series {
                        check(series);
                    }
                }
            }
        }
    }

    /// Drops samples older than the retention and series left without any. A series is trimmed once its
    /// oldest sample is a quarter of the retention past it, so that each series' samples are read every few
    /// evaluations rather than at every one (a series gains one sample per evaluation, so it would otherwise
    /// lose one at each); the history holds at most 1.25 times the retention.
    ///
    /// Returns the cutoff (`None`: the history keeps everything), for the caches to forget what only older
    /// evaluations used ([`crate::eval::cache::EvalCache::end_cycle`]).
    pub fn trim(&mut self, now: i64) -> Option<i64> {
        let retention = self.retention_ms?;
        let cutoff = now.saturating_sub(retention);
        let due = cutoff.saturating_sub(retention / 4);
        let longer = retention.max(self.longer_ms);
        let long_cutoff = now.saturating_sub(longer);
        let long_due = long_cutoff.saturating_sub(longer / 4);
        let mut dead = Vec::new();
        for (index, slot) in self.slots.iter_mut().enumerate() {
            let Some(series) = &mut slot.series else {
                continue;
            };
            let (cutoff, due) = if series.long {
                (long_cutoff, long_due)
            } else {
                (cutoff, due)
            };
            if series.points.oldest >= due {
                continue;
            }
            series.points.trim_before(cutoff);
            if series.points.is_empty() {
                dead.push(SeriesId {
                    index,
                    generation: slot.generation,
                });
            }
        }
        for id in dead {
            self.remove(id);
        }
        let live = self.slots.len() - self.free.len();
        if self.created_since_layout > live / 8 {
            self.lay_out_by_name();
        }
        Some(cutoff)
    }

    /// Moves the series so that those of one metric name sit side by side, their sample buffers and label sets
    /// too, in the order selections read them. A family's series arrive one per target, so without this a selection
    /// visits series a whole target apart and every series, and every buffer, costs a cache miss.
    fn lay_out_by_name(&mut self) {
        self.created_since_layout = 0;
        let mut moved_to: Vec<Option<usize>> = vec![None; self.slots.len()];
        let mut slots: Vec<Slot> = Vec::with_capacity(self.slots.len() - self.free.len());
        let mut released_metrics = Vec::with_capacity(slots.capacity());
        let mut released_buffers = Vec::with_capacity(slots.capacity());
        for ids in self.by_name.values_mut() {
            let mut moved = Vec::with_capacity(ids.len());
            for id in ids.iter() {
                let Some(slot) = self.slots.get_mut(id.index) else {
                    continue;
                };
                if slot.generation != id.generation {
                    continue;
                }
                let Some(mut series) = slot.series.take() else {
                    continue;
                };
                // Fresh allocations made in layout order; the old ones are freed only once all are made, or
                // the allocator would hand them straight back. Label sets first, sample buffers in a second
                // pass: matching and grouping read only the labels, so those of a family are packed together.
                let metric = series.metric.relocated();
                released_metrics.push(std::mem::replace(&mut series.metric, metric));
                moved_to[id.index] = Some(slots.len());
                moved.push(SeriesId {
                    index: slots.len(),
                    generation: 0,
                });
                slots.push(Slot {
                    generation: 0,
                    series: Some(series),
                });
            }
            *ids = moved;
        }
        for series in slots.iter_mut().filter_map(|slot| slot.series.as_mut()) {
            let mut buffer = Vec::with_capacity(series.points.len().max(self.points_per_series));
            buffer.extend_from_slice(series.points.as_slice());
            released_buffers.push(std::mem::replace(&mut series.points.buffer, buffer));
            series.points.start = 0;
        }
        drop((released_metrics, released_buffers));
        self.by_name.retain(|_, ids| !ids.is_empty());
        let remap = |id: &SeriesId| -> Option<SeriesId> {
            Some(SeriesId {
                index: (*moved_to.get(id.index)?)?,
                generation: 0,
            })
        };
        for ids in self.by_hash.values_mut() {
            *ids = ids.iter().filter_map(remap).collect();
        }
        self.by_hash.retain(|_, ids| !ids.is_empty());
        for cache in self.targets.values_mut() {
            for id in cache.ids.iter_mut() {
                *id = id.as_ref().and_then(remap);
            }
        }
        self.slots = slots;
        self.free.clear();
    }

    pub fn stats(&self) -> HistoryStats {
        let mut stats = HistoryStats::default();
        for slot in &self.slots {
            if let Some(series) = &slot.series {
                stats.series += 1;
                stats.points += series.points.len();
            }
        }
        stats
    }

    fn is_current(&self, id: SeriesId) -> bool {
        self.slots
            .get(id.index)
            .is_some_and(|slot| slot.generation == id.generation && slot.series.is_some())
    }

    fn series(&self, id: SeriesId) -> Option<&Series> {
        let slot = self.slots.get(id.index)?;
        if slot.generation != id.generation {
            return None;
        }
        slot.series.as_ref()
    }

    fn series_mut(&mut self, id: SeriesId) -> Option<&mut Series> {
        let slot = self.slots.get_mut(id.index)?;
        if slot.generation != id.generation {
            return None;
        }
        slot.series.as_mut()
    }

    /// [`History::map_snapshot`] for a target's new snapshot, given the ids of its previous one.
    fn remap_snapshot(
        &mut self,
        previous: &TargetCache,
        snapshot: &dyn TargetSamples,
    ) -> Vec<Option<SeriesId>> {
        let before = &previous.snapshot;
        let same_series = before.db() == snapshot.db()
            && before.labels() == snapshot.labels()
            && before.samples().len() == snapshot.samples().len()
            && before
                .samples()
                .iter()
                .zip(snapshot.samples())
                .all(|(old, new)| {
                    std::ptr::eq(old.desc, new.desc)
                        && old.suffix == new.suffix
                        && old.labels == new.labels
                });
        if same_series {
            previous.ids.clone()
        } else {
            self.map_snapshot(snapshot)
        }
    }

    /// The series of each sample of a snapshot, created as needed.
    fn map_snapshot(&mut self, snapshot: &dyn TargetSamples) -> Vec<Option<SeriesId>> {
        let mut common: Vec<(&str, &str)> = Vec::with_capacity(2 + snapshot.labels().len());
        common.push(("target", snapshot.target()));
        common.push(("db", snapshot.db()));
        for (name, value) in snapshot.labels() {
            if !common
                .iter()
                .any(|(existing, _)| *existing == name.as_str())
            {
                common.push((name.as_str(), value.as_str()));
            }
        }
        let mut ids = Vec::with_capacity(snapshot.samples().len());
        let mut seen: FxHashSet<SeriesId> = FxHashSet::default();
        let mut pairs: Vec<(&str, &str)> = Vec::with_capacity(16);
        for sample in snapshot.samples() {
            let name = sample.desc.name;
            if !self.filter.keeps(name) {
                ids.push(None);
                continue;
            }
            pairs.clear();
            pairs.extend(common.iter().copied());
            for (label, value) in sample.labels.iter() {
                if !pairs.iter().any(|(existing, _)| *existing == label) {
                    pairs.push((label, value));
                }
            }
            pairs.retain(|(label, value)| !value.is_empty() && *label != METRIC_NAME);
            pairs.sort_unstable_by(|a, b| a.0.cmp(b.0));
            let id = self.find_or_insert_parts(name, &pairs);
            ids.push(seen.insert(id).then_some(id));
        }
        ids
    }

    fn find_or_insert_parts(&mut self, name: &str, pairs: &[(&str, &str)]) -> SeriesId {
        let hash = hash_parts(Some(name), pairs.iter().copied());
        if let Some(candidates) = self.by_hash.get(&hash) {
            for id in candidates {
                let Some(series) = self.series(*id) else {
                    continue;
                };
                let metric = &series.metric;
                if metric.name() == Some(name)
                    && metric.labels().len() == pairs.len()
                    && metric.labels().iter().zip(pairs).all(
                        |((label, value), (wanted_label, wanted_value))| {
                            label.as_ref() == *wanted_label && value.as_ref() == *wanted_value
                        },
                    )
                {
                    return *id;
                }
            }
        }
        let name = self.intern(name);
        let labels: Vec<Label> = pairs
            .iter()
            .map(|(label, value)| (self.intern(label), self.intern(value)))
            .collect();
        let metric = Metric::from_sorted(Some(name), labels);
        self.insert(metric, hash)
    }

    fn find_or_insert_metric(&mut self, metric: &Metric) -> SeriesId {
        let hash = hash_metric(metric);
        if let Some(candidates) = self.by_hash.get(&hash) {
            for id in candidates {
                if self
                    .series(*id)
                    .is_some_and(|series| &series.metric == metric)
                {
                    return *id;
                }
            }
        }
        self.insert(metric.clone(), hash)
    }

    fn insert(&mut self, metric: Metric, hash: u64) -> SeriesId {
        let name = metric.name_arc().cloned().unwrap_or_else(|| Arc::from(""));
        let long = self.kept_longer.contains(&name);
        let series = Series {
            metric,
            long,
            hash,
            points: Points {
                buffer: Vec::with_capacity(self.points_per_series),
                ..Points::default()
            },
            scraped_at: i64::MIN,
        };
        let index = match self.free.pop() {
            Some(index) => index,
            None => {
                self.slots.push(Slot::default());
                self.slots.len() - 1
            }
        };
        let slot = &mut self.slots[index];
        slot.series = Some(series);
        let id = SeriesId {
            index,
            generation: slot.generation,
        };
        self.by_hash.entry(hash).or_default().push(id);
        self.by_name.entry(name).or_default().push(id);
        self.created_since_layout += 1;
        id
    }

    fn remove(&mut self, id: SeriesId) {
        let Some(slot) = self.slots.get_mut(id.index) else {
            return;
        };
        if slot.generation != id.generation {
            return;
        }
        let Some(series) = slot.series.take() else {
            return;
        };
        slot.generation = slot.generation.wrapping_add(1);
        self.removals += 1;
        self.free.push(id.index);
        if let Some(ids) = self.by_hash.get_mut(&series.hash) {
            ids.retain(|other| *other != id);
            if ids.is_empty() {
                self.by_hash.remove(&series.hash);
            }
        }
        let name = series.metric.name().unwrap_or("");
        if let Some(ids) = self.by_name.get_mut(name) {
            ids.retain(|other| *other != id);
            if ids.is_empty() {
                self.by_name.remove(name);
            }
        }
    }

    fn intern(&mut self, text: &str) -> Arc<str> {
        if let Some(existing) = self.interner.get(text) {
            return Arc::clone(existing);
        }
        let interned: Arc<str> = Arc::from(text);
        // Bound the interner: label values churn (replica names, table names); names do not.
        if self.interner.len() > 1_000_000 {
            self.interner.clear();
        }
        self.interner.insert(Arc::clone(&interned));
        interned
    }
}

fn hash_parts<'a>(name: Option<&str>, pairs: impl Iterator<Item = (&'a str, &'a str)>) -> u64 {
    let mut hasher = FxHasher::default();
    hasher.write(name.unwrap_or("").as_bytes());
    hasher.write_u8(0xff);
    for (label, value) in pairs {
        hasher.write(label.as_bytes());
        hasher.write_u8(0xfe);
        hasher.write(value.as_bytes());
        hasher.write_u8(0xff);
    }
    hasher.finish()
}

fn hash_metric(metric: &Metric) -> u64 {
    hash_parts(
        metric.name(),
        metric
            .labels()
            .iter()
            .map(|(label, value)| (label.as_ref(), value.as_ref())),
    )
}

/// The latest sample at or before `at`, if it is at most the lookback old and not a staleness marker.
pub fn value_at(points: &[Point], at: i64) -> Option<Point> {
    let index = match points.last() {
        Some(last) if last.t <= at => points.len() - 1,
        Some(_) => points
            .partition_point(|point| point.t <= at)
            .checked_sub(1)?,
        None => return None,
    };
    let point = points[index];
    if point.t < at - LOOKBACK_MS || is_stale(point.v) {
        return None;
    }
    Some(point)
}

/// The samples with `mint <= t <= maxt`, staleness markers left out (Prometheus 2.x: both ends closed): a
/// slice of `points`, or of `scratch` when markers had to be removed.
pub fn points_between<'a>(
    points: &'a [Point],
    mint: i64,
    maxt: i64,
    scratch: &'a mut Vec<Point>,
) -> &'a [Point] {
    // Linear scans, not binary searches: a range starts a few samples in (the history keeps about one range)
    // and usually ends at the last sample, and a forward scan is what the cache prefetches.
    let start = points
        .iter()
        .position(|point| point.t >= mint)
        .unwrap_or(points.len());
    let end = points.len()
        - points[start..]
            .iter()
            .rev()
            .take_while(|point| point.t > maxt)
            .count();
    let range = &points[start..end];
    if !range.iter().any(|point| is_stale(point.v)) {
        return range;
    }
    scratch.clear();
    scratch.extend(range.iter().filter(|point| !is_stale(point.v)));
    scratch
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::TargetScrape;
    use dbwatch_metric::{MetricDesc, MetricKind};
    use std::collections::BTreeMap;

    static UP: MetricDesc = MetricDesc {
        name: "db_up",
        help: "up",
        kind: MetricKind::Gauge,
        labels: &[],
    };
    static LAG: MetricDesc = MetricDesc {
        name: "db_replication_lag_seconds",
        help: "lag",
        kind: MetricKind::Gauge,
        labels: &["replica"],
    };

    fn snapshot(target: &str, samples: Vec<dbwatch_metric::Sample>) -> Arc<dyn TargetSamples> {
        let mut labels = BTreeMap::new();
        labels.insert("env".to_owned(), "prod".to_owned());
        labels.insert("empty".to_owned(), String::new());
        Arc::new(TargetScrape {
            target: target.to_owned(),
            db: "postgres".to_owned(),
            labels,
            samples,
        })
    }

    fn selector(text: &str) -> Selector {
        match super::super::promql::compile(text) {
            Ok(super::super::promql::Expr::Vector(selector)) => selector,
            other => panic!("{text}: {other:?}"),
        }
    }

    fn values(history: &History, text: &str, at: i64) -> Vec<(String, f64)> {
        let mut out = Vec::new();
        history.for_each_selected(&selector(text), |metric, points| {
            if let Some(point) = value_at(points, at) {
                out.push((metric.to_string(), point.v));
            }
        });
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    #[test]
    fn scrapes_label_series_like_the_exposition() {
        let mut history = History::new(NameFilter::All, Some(600_000));
        let first = snapshot("a", vec![UP.sample(1.0), LAG.sample_with(["r1"], 2.0)]);
        history.scrape(&[first], 1_000);
        assert_eq!(
            values(&history, "db_replication_lag_seconds", 1_000),
            vec![(
                "{__name__=\"db_replication_lag_seconds\", db=\"postgres\", env=\"prod\", replica=\"r1\", target=\"a\"}"
                    .to_owned(),
                2.0
            )]
        );
    }

    #[test]
    fn a_series_missing_from_the_next_read_goes_stale_at_once() {
        let mut history = History::new(NameFilter::All, Some(600_000));
        history.scrape(
            &[snapshot(
                "a",
                vec![UP.sample(1.0), LAG.sample_with(["r1"], 2.0)],
            )],
            1_000,
        );
        history.scrape(&[snapshot("a", vec![UP.sample(0.0)])], 16_000);
        assert!(values(&history, "db_replication_lag_seconds", 16_000).is_empty());
        // Still visible at the earlier time.
        assert_eq!(
            values(&history, "db_replication_lag_seconds", 15_000).len(),
            1
        );
        assert_eq!(values(&history, "db_up", 16_000)[0].1, 0.0);
    }

    #[test]
    fn names_kept_longer_outlive_the_rules_retention_and_read_as_trends() {
        // The rules select only db_up, for a minute; the lag is kept an hour for the trends.
        let filter = NameFilter::for_selectors([&selector("db_up")]);
        let mut history = History::new(filter, Some(60_000))
            .with_sample_interval(15_000)
            .keep_longer(&["db_replication_lag_seconds"], 3_600_000);
        let end = 2 * 3_600_000;
        for step in 0..=(end / 15_000) {
            let t = step * 15_000;
            let lag = if step % 40 == 7 { f64::NAN } else { t as f64 };
            history.scrape(
                &[snapshot(
                    "a",
                    vec![UP.sample(1.0), LAG.sample_with(["r1"], lag)],
                )],
                t,
            );
            history.trim(t);
        }
        let mut kept = Vec::new();
        history.for_each_named("db_up", 0, |_, points| kept.push(points.len()));
        history.for_each_named("db_replication_lag_seconds", 0, |_, points| {
            kept.push(points.len())
        });
        // db_up: the minute plus the trimming slack; the lag: the hour plus its slack, not the two hours.
        assert!(kept[0] <= 6, "{kept:?}");
        assert!((240..=301).contains(&kept[1]), "{kept:?}");
        // What the rules read is the same as without the longer retention.
        assert_eq!(values(&history, "db_up", end)[0].1, 1.0);

        let options = crate::trends::TrendOptions {
            names: vec![Arc::from("db_replication_lag_seconds"), Arc::from("db_up")],
            window_ms: 3_600_000,
        };
        let trends = crate::trends::Trends::read(&history, &options, end);
        let lag: Vec<_> = trends.series("a", "db_replication_lag_seconds").collect();
        assert_eq!(lag.len(), 1);
        let points = &lag[0].points;
        // One point per 30 s bucket of the hour, the bucket's last sample; the NaN gaps kept.
        assert!((120..=121).contains(&points.len()), "{}", points.len());
        assert!(points.iter().all(|(t, _)| *t >= end - 3_600_000));
        assert_eq!(points.last(), Some(&(end, end as f64)));
        assert!(points.iter().any(|(_, v)| v.is_nan()));
        assert_eq!(lag[0].labels.get("replica").map(String::as_str), Some("r1"));
        assert!(!lag[0].labels.contains_key("__name__"));
        // db_up is there too, but only for the minute the rules keep.
        let up: Vec<_> = trends.series("a", "db_up").collect();
        assert!(up[0].points.len() <= 4, "{:?}", up[0].points);
    }

    #[test]
    fn an_unchanged_snapshot_is_read_again_at_each_scrape() {
        let mut history = History::new(NameFilter::All, Some(60_000));
        let frozen = snapshot("a", vec![UP.sample(1.0)]);
        for step in 0..10 {
            history.scrape(&[Arc::clone(&frozen)], step * 15_000);
            history.trim(step * 15_000);
        }
        assert_eq!(
            values(&history, "db_up", 135_000),
            vec![(
                "{__name__=\"db_up\", db=\"postgres\", env=\"prod\", target=\"a\"}".to_owned(),
                1.0
            )]
        );
        // 60 s of retention and 15 s of slack at one sample per 15 s.
        assert!(history.stats().points <= 6, "{:?}", history.stats());
    }

    #[test]
    fn laying_series_out_by_name_keeps_every_series_and_its_samples() {
        let mut history = History::new(NameFilter::All, Some(600_000)).with_sample_interval(15_000);
        let poll = |target: &str, value: f64| {
            snapshot(
                target,
                vec![UP.sample(value), LAG.sample_with(["r1"], value * 10.0)],
            )
        };
        let first: Vec<_> = ["a", "b", "c"].iter().map(|t| poll(t, 1.0)).collect();
        history.scrape(&first, 15_000);
        history.trim(15_000);
        // The six series were created target by target; now each name's series are side by side.
        for ids in history.by_name.values() {
            let indices: Vec<usize> = ids.iter().map(|id| id.index).collect();
            assert_eq!(indices.len(), 3);
            assert_eq!(indices[2] - indices[0], 2, "{indices:?}");
        }
        assert!(history
            .slots
            .iter()
            .all(|slot| slot.series.as_ref().is_some_and(|series| series
                .points
                .buffer
                .capacity()
                >= 52)));
        // The same snapshots (cached ids), new polls of the same series (remapped ids), and a target that
        // stopped publishing (its series go stale): no series is created twice, none is lost.
        history.scrape(&first, 30_000);
        history.scrape(&[poll("a", 2.0), poll("b", 2.0)], 45_000);
        assert_eq!(history.stats().series, 6);
        assert_eq!(
            values(&history, "db_up", 45_000),
            vec![
                (
                    "{__name__=\"db_up\", db=\"postgres\", env=\"prod\", target=\"a\"}".to_owned(),
                    2.0
                ),
                (
                    "{__name__=\"db_up\", db=\"postgres\", env=\"prod\", target=\"b\"}".to_owned(),
                    2.0
                ),
            ]
        );
        assert_eq!(values(&history, "db_up", 30_000).len(), 3);
        assert_eq!(
            values(&history, "db_replication_lag_seconds", 45_000)[1].1,
            20.0
        );
    }

    #[test]
    fn the_filter_keeps_only_selected_metrics() {
        let filter = NameFilter::for_selectors([&selector("db_up")]);
        let mut history = History::new(filter, Some(600_000));
        history.scrape(
            &[snapshot(
                "a",
                vec![UP.sample(1.0), LAG.sample_with(["r1"], 2.0)],
            )],
            1_000,
        );
        assert_eq!(history.stats().series, 1);
    }

    #[test]
    fn lookback_and_ranges_follow_prometheus() {
        let mut history = History::new(NameFilter::All, None);
        let metric = Metric::from_pairs([("__name__", "x")]);
        for (t, v) in [
            (0, 1.0),
            (60_000, 2.0),
            (120_000, stale_nan()),
            (180_000, 4.0),
        ] {
            history.append(&metric, t, v);
        }
        assert!(
            !history.append(&metric, 180_000, 5.0),
            "duplicate timestamps are dropped"
        );
        let points = |at| values(&history, "x", at);
        assert_eq!(points(60_000)[0].1, 2.0);
        assert!(points(120_000).is_empty(), "stale");
        assert_eq!(points(480_000)[0].1, 4.0, "5m lookback is inclusive");
        assert!(points(480_001).is_empty());
        let mut out = Vec::new();
        history.for_each_selected(&selector("x"), |_, series| {
            let mut scratch = Vec::new();
            out = points_between(series, 0, 180_000, &mut scratch).to_vec();
        });
        assert_eq!(
            out.iter().map(|p| p.v).collect::<Vec<_>>(),
            vec![1.0, 2.0, 4.0]
        );
    }
}
