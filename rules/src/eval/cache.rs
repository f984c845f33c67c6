//! What the evaluator keeps beyond one expression, owned by whoever evaluates (the engine, a unit test run)
//! and handed to [`evaluate`](super::evaluate), not hidden in the history:
//!
//! - the results shared between the rules evaluated at one instant (a rule pack reads the same few families
//!   again and again, and walking the history is the costly part of a selection), and the previous cycle's
//!   results to write the next ones over;
//! - the [`Plans`]: vector pairings and groupings kept while their operands hold the same series.
//!
//! A result read from the history is only valid while the history holds what it held: [`EvalCache::sync`]
//! reads the history's record of what changed since (a scrape, samples appended under a name) and drops
//! what those changes may have changed, so a cache can never answer with a stale result.

use std::any::Any;
use std::sync::Arc;

use super::plans::Plans;
use crate::history::History;
use crate::labels::FxHashMap;
use crate::value::Sample;

/// What a shared result is the result of: an expression that reads the history directly (a selector, or a
/// function of a range selector with its arguments), as text precise enough that equal keys mean equal
/// results, and the evaluation time.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SharedKey {
    pub expr: String,
    pub t: i64,
}

/// Selections made at one instant, shared by every rule evaluated at that instant: a rule pack reads the same
/// few families again and again (`db_up`, the latency, the utilization...), and walking the history is the
/// costly part of a selection. Any change to the history drops the results it may change.
#[derive(Debug, Default)]
struct SharedResults {
    entries: FxHashMap<SharedKey, SharedEntry>,
    /// How many entries read each exact metric name.
    names: FxHashMap<Arc<str>, usize>,
    /// How many entries read selectors without an exact name (any append may change them).
    nameless: usize,
    /// The results of the previous evaluation cycle by expression, no longer shared with anyone: the next
    /// result of the same expression is written over its predecessor (see [`crate::value::Overwrite`]).
    recycled: FxHashMap<String, Vec<Sample>>,
}

#[derive(Debug)]
struct SharedEntry {
    /// The metric names the result was read from; `None`: any.
    reads: Option<Vec<Arc<str>>>,
    samples: Arc<Vec<Sample>>,
}

impl SharedResults {
    fn clear(&mut self) {
        if !self.entries.is_empty() {
            self.entries.clear();
            self.names.clear();
            self.nameless = 0;
        }
    }

    /// Clears the results, keeping for reuse those nobody holds any more. What the previous recycling kept
    /// and nobody reused since is dropped: recycled memory lasts one cycle.
    fn recycle(&mut self) {
        let mut recycled = std::mem::take(&mut self.recycled);
        recycled.clear();
        for (key, entry) in self.entries.drain() {
            if let Ok(samples) = Arc::try_unwrap(entry.samples) {
                recycled.insert(key.expr, samples);
            }
        }
        self.recycled = recycled;
        self.names.clear();
        self.nameless = 0;
    }

    /// Drops what a new sample of `name` may change.
    fn invalidate(&mut self, name: Option<&str>) {
        let affected = self.nameless > 0 || name.is_some_and(|name| self.names.contains_key(name));
        if !affected {
            return;
        }
        self.entries.retain(|_, entry| {
            entry
                .reads
                .as_ref()
                .is_some_and(|reads| !reads.iter().any(|read| Some(read.as_ref()) == name))
        });
        self.names.clear();
        self.nameless = 0;
        for entry in self.entries.values() {
            count(&mut self.names, &mut self.nameless, entry.reads.as_deref());
        }
    }

    fn insert(&mut self, key: SharedKey, reads: Option<&[Arc<str>]>, samples: Arc<Vec<Sample>>) {
        count(&mut self.names, &mut self.nameless, reads);
        self.entries.insert(
            key,
            SharedEntry {
                reads: reads.map(<[Arc<str>]>::to_vec),
                samples,
            },
        );
    }
}

fn count(names: &mut FxHashMap<Arc<str>, usize>, nameless: &mut usize, reads: Option<&[Arc<str>]>) {
    match reads {
        Some(reads) => {
            for name in reads {
                *names.entry(Arc::clone(name)).or_default() += 1;
            }
        }
        None => *nameless += 1,
    }
}

/// The evaluator's caches over one history (see the module documentation).
#[derive(Debug, Default)]
pub struct EvalCache {
    results: SharedResults,
    plans: Plans,
    /// The history's [`History::epoch`] and how many of its [`History::appended`] names the results
    /// account for.
    epoch: u64,
    seen_appends: usize,
}

impl EvalCache {
    /// Drops the results the history's changes since the last call may have changed.
    pub fn sync(&mut self, history: &History) {
        if self.epoch != history.epoch() {
            self.results.clear();
            self.epoch = history.epoch();
            self.seen_appends = 0;
        }
        let appended = history.appended();
        for name in appended.get(self.seen_appends..).unwrap_or_default() {
            self.results.invalidate(name.as_deref());
        }
        self.seen_appends = appended.len();
    }

    /// Ends an evaluation cycle: the results are no longer shared, and those nobody holds are kept for the
    /// next cycle's results of the same expressions to be written over; the plans no evaluation used since
    /// `cutoff` (those of removed rules) are dropped.
    pub fn end_cycle(&mut self, cutoff: Option<i64>) {
        self.results.recycle();
        if let Some(cutoff) = cutoff {
            self.plans.forget_unused_since(cutoff);
        }
    }

    /// The shared result of `key`, or the previous cycle's result of the same expression to write over.
    pub(crate) fn lookup(&mut self, key: &SharedKey) -> Result<Arc<Vec<Sample>>, Vec<Sample>> {
        if let Some(entry) = self.results.entries.get(key) {
            return Ok(Arc::clone(&entry.samples));
        }
        Err(self.results.recycled.remove(&key.expr).unwrap_or_default())
    }

    /// Shares `samples` as the result of `key`, read from the metric names `reads` (`None`: any).
    pub(crate) fn insert(
        &mut self,
        key: SharedKey,
        reads: Option<&[Arc<str>]>,
        samples: Arc<Vec<Sample>>,
    ) {
        self.results.insert(key, reads, samples);
    }

    /// The plan (a [`Pairing`](super::matching::Pairing) or a [`Grouping`](super::matching::Grouping)) of
    /// the operation written `key` over `operands`: the one kept from an earlier evaluation if the operands
    /// still hold the same series, otherwise the one `build` makes, kept for the next evaluations.
    pub(crate) fn plan<P: Any + Send + Sync, E>(
        &mut self,
        key: &str,
        operands: &[&[Sample]],
        t: i64,
        build: impl FnOnce() -> Result<P, E>,
    ) -> Result<Arc<P>, E> {
        if let Some(plan) = self.plans.find(key, operands, t) {
            return Ok(plan);
        }
        let plan = Arc::new(build()?);
        self.plans.keep(key, operands, Arc::clone(&plan), t);
        Ok(plan)
    }
}
