//! Compactions and other SSTable tasks running on a node, from `system_views.sstable_tasks`.
//!
//! Counted per kind (compaction, validation, cleanup, index build...); the kinds come from the server's fixed
//! `OperationType` set, and once a kind has been seen on a node it keeps being exported (at 0 when idle) so
//! the series does not flap. `compaction` is always present.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use scylla::client::session::Session;
use scylla::cluster::Node;
use scylla::value::CqlValue;
use scylla::DeserializeRow;

use super::session::{self, CqlError};
use super::values::number;
use super::NodeLabels;
use crate::metric::{MetricDesc, MetricKind, Sample};

pub const VIEW: &str = "system_views.sstable_tasks";
const QUERY: &str = include_str!("sstable_tasks.cql");

/// A bound on distinct kinds per node, in case a server ever put something unbounded there.
const MAX_KINDS: usize = 32;

pub static ACTIVE: MetricDesc = MetricDesc {
    name: "cassandra_compaction_tasks_active",
    help: "SSTable tasks (compactions, validations, cleanups...) running on the node, by kind",
    kind: MetricKind::Gauge,
    labels: &["node", "dc", "rack", "kind"],
};
pub static REMAINING_BYTES: MetricDesc = MetricDesc {
    name: "cassandra_compaction_remaining_bytes",
    help: "Bytes the node's running SSTable tasks still have to process",
    kind: MetricKind::Gauge,
    labels: &["node", "dc", "rack"],
};

pub static DESCRIPTORS: &[&MetricDesc] = &[&ACTIVE, &REMAINING_BYTES];

#[derive(DeserializeRow)]
struct TaskRow {
    kind: Option<String>,
    progress: Option<CqlValue>,
    total: Option<CqlValue>,
    unit: Option<String>,
}

/// One running task.
#[derive(Debug, Clone, PartialEq)]
pub struct Task {
    pub kind: String,
    /// Bytes left when the task counts in bytes; `None` when it counts in something else (ranges, keys).
    pub remaining_bytes: Option<f64>,
}

pub async fn fetch(
    session: &Session,
    node: &Arc<Node>,
    timeout: Duration,
) -> Result<Vec<Task>, CqlError> {
    let rows = session::rows(session, session::pinned(QUERY, node, timeout)).await?;
    let mut tasks = Vec::with_capacity(rows.rows_num());
    for row in rows.rows::<TaskRow>().map_err(CqlError::decode)? {
        tasks.push(validate(row.map_err(CqlError::decode)?));
    }
    Ok(tasks)
}

fn validate(row: TaskRow) -> Task {
    let in_bytes = row
        .unit
        .as_deref()
        .is_some_and(|unit| unit.eq_ignore_ascii_case("bytes"));
    let remaining_bytes = match (number(row.total.as_ref()), number(row.progress.as_ref())) {
        (Some(total), Some(progress)) if in_bytes => Some((total - progress).max(0.0)),
        _ => None,
    };
    Task {
        kind: normalize_kind(row.kind.as_deref().unwrap_or("unknown")),
        remaining_bytes,
    }
}

/// `Index build` → `index_build`, `Compaction` → `compaction`.
pub fn normalize_kind(kind: &str) -> String {
    let mut normalized = String::with_capacity(kind.len());
    for character in kind.trim().chars() {
        if character.is_ascii_alphanumeric() {
            normalized.push(character.to_ascii_lowercase());
        } else if !normalized.ends_with('_') {
            normalized.push('_');
        }
    }
    let trimmed = normalized.trim_matches('_');
    if trimmed.is_empty() {
        "unknown".to_owned()
    } else {
        trimmed.to_owned()
    }
}

/// The kinds a node has shown so far.
#[derive(Debug)]
pub struct TaskKinds(BTreeSet<String>);

impl Default for TaskKinds {
    fn default() -> Self {
        TaskKinds(BTreeSet::from(["compaction".to_owned()]))
    }
}

impl TaskKinds {
    pub fn samples(&mut self, labels: &NodeLabels, tasks: &[Task], out: &mut Vec<Sample>) {
        let [node, dc, rack] = labels.values();
        let mut active: BTreeMap<&str, f64> = BTreeMap::new();
        let mut remaining = 0.0;
        for task in tasks {
            if !self.0.contains(&task.kind) && self.0.len() < MAX_KINDS {
                self.0.insert(task.kind.clone());
            }
            if self.0.contains(&task.kind) {
                *active.entry(task.kind.as_str()).or_default() += 1.0;
            }
            remaining += task.remaining_bytes.unwrap_or(0.0);
        }
        for kind in &self.0 {
            let count = active.get(kind.as_str()).copied().unwrap_or(0.0);
            out.push(ACTIVE.sample_with([node, dc, rack, kind], count));
        }
        out.push(REMAINING_BYTES.sample_with([node, dc, rack], remaining));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(kind: &str, progress: i64, total: i64, unit: &str) -> TaskRow {
        TaskRow {
            kind: Some(kind.into()),
            progress: Some(CqlValue::BigInt(progress)),
            total: Some(CqlValue::BigInt(total)),
            unit: Some(unit.into()),
        }
    }

    #[test]
    fn kinds_normalize_to_snake_case() {
        assert_eq!(normalize_kind("Index build"), "index_build");
        assert_eq!(normalize_kind("Compaction"), "compaction");
        assert_eq!(
            normalize_kind(" Tombstone  collection "),
            "tombstone_collection"
        );
        assert_eq!(normalize_kind("--"), "unknown");
    }

    /// The two rows of the `sstable_tasks` example in Cassandra 4.0's documentation
    /// (doc/source/new/virtualtables.rst, https://cassandra.apache.org/doc/4.0/cassandra/new/virtualtables.html).
    #[test]
    fn documented_compactions_count_their_remaining_bytes() {
        let tasks = vec![
            validate(row("compaction", 60_418_761, 70_882_110, "bytes")),
            validate(row("compaction", 2_995_623, 40_314_679, "bytes")),
            validate(row("Validation", 3, 10, "ranges")),
        ];
        let mut kinds = TaskKinds::default();
        let mut out = Vec::new();
        kinds.samples(&NodeLabels::new("10.0.0.1", None, None), &tasks, &mut out);
        let active = |out: &[Sample], kind: &str| {
            out.iter()
                .find(|sample| sample.name() == ACTIVE.name && sample.label("kind") == Some(kind))
                .map(|sample| sample.value)
        };
        assert_eq!(active(&out, "compaction"), Some(2.0));
        assert_eq!(active(&out, "validation"), Some(1.0));
        let remaining = out
            .iter()
            .find(|sample| sample.name() == REMAINING_BYTES.name)
            .expect("remaining bytes");
        assert_eq!(
            remaining.value,
            (70_882_110.0 - 60_418_761.0) + (40_314_679.0 - 2_995_623.0)
        );

        out.clear();
        kinds.samples(&NodeLabels::new("10.0.0.1", None, None), &[], &mut out);
        assert_eq!(
            active(&out, "validation"),
            Some(0.0),
            "a seen kind stays, at 0"
        );
    }
}
