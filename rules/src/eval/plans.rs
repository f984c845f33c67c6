//! Pairings and groupings kept from one evaluation to the next, for as long as their operands are the same
//! series.
//!
//! An operand holds the same series when every element's label set is the very allocation it was the last
//! time, in the same order: selections hand out the history's label sets, and pairings and groupings hand out
//! the label sets they made, so over an unchanged fleet the check is a pointer comparison per element, with no
//! hashing and no allocation. An entry holds on to the label sets it was made for, so none of their addresses
//! can be reused by another label set while the entry refers to it.

use std::any::Any;
use std::fmt;
use std::sync::Arc;

use crate::labels::{FxHashMap, Metric};
use crate::value::Sample;

/// Plans by the text of the expression they serve ([`crate::promql::Shared::key`]): a
/// [`Pairing`](super::matching::Pairing) or a [`Grouping`](super::matching::Grouping).
#[derive(Default)]
pub(crate) struct Plans {
    entries: FxHashMap<String, Entry>,
}

struct Entry {
    /// The label sets of the operands the plan was made for, one operand after the other.
    operands: Vec<Metric>,
    plan: Arc<dyn Any + Send + Sync>,
    /// The latest evaluation time that used the plan.
    used_at: i64,
}

impl Plans {
    /// The plan of type `P` kept for `key`, if it was made for these very operands.
    pub(crate) fn find<P: Any + Send + Sync>(
        &mut self,
        key: &str,
        operands: &[&[Sample]],
        t: i64,
    ) -> Option<Arc<P>> {
        let entry = self.entries.get_mut(key)?;
        if !same_series(&entry.operands, operands) {
            return None;
        }
        let plan = Arc::clone(&entry.plan).downcast::<P>().ok()?;
        entry.used_at = entry.used_at.max(t);
        Some(plan)
    }

    pub(crate) fn keep<P: Any + Send + Sync>(
        &mut self,
        key: &str,
        operands: &[&[Sample]],
        plan: Arc<P>,
        t: i64,
    ) {
        let operands = operands
            .iter()
            .flat_map(|samples| samples.iter().map(|sample| sample.metric.clone()))
            .collect();
        let entry = Entry {
            operands,
            plan,
            used_at: t,
        };
        match self.entries.get_mut(key) {
            Some(existing) => *existing = entry,
            None => {
                self.entries.insert(key.to_owned(), entry);
            }
        }
    }

    /// Drops the plans no evaluation at or after `t` used (those of rules that were removed).
    pub(crate) fn forget_unused_since(&mut self, t: i64) {
        self.entries.retain(|_, entry| entry.used_at >= t);
    }
}

impl fmt::Debug for Plans {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.entries.keys()).finish()
    }
}

fn same_series(kept: &[Metric], operands: &[&[Sample]]) -> bool {
    let len: usize = operands.iter().map(|samples| samples.len()).sum();
    len == kept.len()
        && operands
            .iter()
            .flat_map(|samples| samples.iter())
            .zip(kept)
            .all(|(sample, kept)| sample.metric.is_same_allocation(kept))
}
