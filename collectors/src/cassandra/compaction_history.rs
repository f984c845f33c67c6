//! Completed compactions from `system.compaction_history`, turned into counters per keyspace and table.
//!
//! The history is node-local (LocalStrategy) and expires after 7 days, so it cannot be summed as a counter
//! directly: entries would fall off the end. Instead each node has a cursor on the node's own clock: the
//! first poll only sets the baseline (the counters start at 0, like any counter at process start, so a
//! dbwatch restart reads as a counter reset and not as a week of history replayed); later polls read only
//! entries newer than the previous poll minus an overlap, and entry ids already counted are skipped. The
//! overlap absorbs the small gap between a compaction's `compacted_at` and the moment its row is written.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use scylla::client::session::Session;
use scylla::cluster::Node;
use scylla::value::{CqlTimestamp, CqlTimeuuid, CqlValue};
use scylla::DeserializeRow;

use super::session::{self, CqlError};
use super::values::number;
use super::NodeLabels;
use crate::metric::{MetricDesc, MetricKind, Sample};

pub const VIEW: &str = "system.compaction_history";
const QUERY: &str = include_str!("compaction_history.cql");

/// How far back each poll reads before the previous poll's time, in milliseconds.
const OVERLAP_MS: i64 = 60_000;
/// At most this many entries per node per poll; beyond it the counters undercount and a warning says so.
pub const ROW_LIMIT: usize = 10_000;

macro_rules! compaction_counter {
    ($ident:ident, $name:literal, $help:literal) => {
        pub static $ident: MetricDesc = MetricDesc {
            name: $name,
            help: $help,
            kind: MetricKind::Counter,
            labels: &["node", "dc", "rack", "keyspace", "table"],
        };
    };
}

compaction_counter!(
    COMPLETED,
    "cassandra_compactions_completed_total",
    "Compactions of the table the node finished since dbwatch started watching it"
);
compaction_counter!(
    BYTES_IN,
    "cassandra_compaction_bytes_in_total",
    "Bytes of SSTables read by the node's finished compactions of the table"
);
compaction_counter!(
    BYTES_OUT,
    "cassandra_compaction_bytes_out_total",
    "Bytes of SSTables written by the node's finished compactions of the table"
);
compaction_counter!(
    ROWS_MERGED,
    "cassandra_compaction_rows_merged_total",
    "Partitions written by the node's finished compactions of the table (rows_merged, all buckets summed)"
);

pub static DESCRIPTORS: &[&MetricDesc] = &[&COMPLETED, &BYTES_IN, &BYTES_OUT, &ROWS_MERGED];

#[derive(DeserializeRow)]
struct HistoryRow {
    id: CqlTimeuuid,
    keyspace_name: Option<String>,
    columnfamily_name: Option<String>,
    compacted_at: Option<CqlTimestamp>,
    bytes_in: Option<CqlValue>,
    bytes_out: Option<CqlValue>,
    rows_merged: Option<CqlValue>,
}

/// One finished compaction.
#[derive(Debug, Clone, PartialEq)]
pub struct Compaction {
    pub id: CqlTimeuuid,
    pub keyspace: String,
    pub table: String,
    pub compacted_at_ms: i64,
    pub bytes_in: f64,
    pub bytes_out: f64,
    pub rows_merged: f64,
}

pub async fn fetch(
    session: &Session,
    node: &Arc<Node>,
    after_ms: i64,
    timeout: Duration,
) -> Result<Vec<Compaction>, CqlError> {
    // Both numbers are ours, never configuration or server text: inlining them keeps the statement unprepared
    // and one round trip.
    let cql = QUERY
        .replace("{after_ms}", &after_ms.to_string())
        .replace("{limit}", &ROW_LIMIT.to_string());
    let rows = session::rows(session, session::pinned(cql, node, timeout)).await?;
    if rows.rows_num() >= ROW_LIMIT {
        tracing::warn!(
            node = %node.address,
            limit = ROW_LIMIT,
            "compaction history cut at the row limit; compaction counters undercount this poll"
        );
    }
    let mut compactions = Vec::with_capacity(rows.rows_num());
    for row in rows.rows::<HistoryRow>().map_err(CqlError::decode)? {
        if let Some(compaction) = validate(row.map_err(CqlError::decode)?) {
            compactions.push(compaction);
        }
    }
    Ok(compactions)
}

/// An entry without a table or a time cannot be placed; it is skipped rather than failing the view.
fn validate(row: HistoryRow) -> Option<Compaction> {
    Some(Compaction {
        id: row.id,
        keyspace: row.keyspace_name?,
        table: row.columnfamily_name?,
        compacted_at_ms: row.compacted_at?.0,
        bytes_in: number(row.bytes_in.as_ref()).unwrap_or(0.0),
        bytes_out: number(row.bytes_out.as_ref()).unwrap_or(0.0),
        rows_merged: rows_merged(row.rows_merged.as_ref()),
    })
}

/// `rows_merged` maps "from how many SSTables" to "how many partitions"; the sum is the partitions written.
fn rows_merged(value: Option<&CqlValue>) -> f64 {
    let Some(CqlValue::Map(buckets)) = value else {
        return 0.0;
    };
    buckets
        .iter()
        .filter_map(|(_, partitions)| number(Some(partitions)))
        .sum()
}

#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct Totals {
    completed: f64,
    bytes_in: f64,
    bytes_out: f64,
    rows_merged: f64,
}

/// One node's position in its compaction history and the counters built from it.
#[derive(Debug, Default)]
pub struct CompactionCursor {
    baseline_ms: Option<i64>,
    previous_now_ms: i64,
    counted: HashMap<CqlTimeuuid, i64>,
    totals: BTreeMap<(String, String), Totals>,
}

impl CompactionCursor {
    /// The lower bound of this poll's read; `None` before the baseline is set (the first poll reads nothing).
    pub fn after_ms(&self) -> Option<i64> {
        let baseline = self.baseline_ms?;
        Some(baseline.max(self.previous_now_ms - OVERLAP_MS))
    }

    /// Sets the baseline at the node's current time: only compactions finished later are counted.
    pub fn start(&mut self, now_ms: i64) {
        self.baseline_ms = Some(now_ms);
        self.previous_now_ms = now_ms;
    }

    /// Counts the entries not counted yet and moves the cursor to the node's time of this poll.
    pub fn absorb(&mut self, now_ms: i64, compactions: &[Compaction]) {
        let Some(baseline) = self.baseline_ms else {
            self.start(now_ms);
            return;
        };
        for compaction in compactions {
            if compaction.compacted_at_ms <= baseline || self.counted.contains_key(&compaction.id) {
                continue;
            }
            self.counted
                .insert(compaction.id, compaction.compacted_at_ms);
            let totals = self
                .totals
                .entry((compaction.keyspace.clone(), compaction.table.clone()))
                .or_default();
            totals.completed += 1.0;
            totals.bytes_in += compaction.bytes_in;
            totals.bytes_out += compaction.bytes_out;
            totals.rows_merged += compaction.rows_merged;
        }
        self.previous_now_ms = self.previous_now_ms.max(now_ms);
        // Entries at or before the next lower bound are never returned again, so their ids can go.
        if let Some(next_after) = self.after_ms() {
            self.counted
                .retain(|_, compacted_at| *compacted_at > next_after);
        }
    }

    pub fn samples(&self, labels: &NodeLabels, out: &mut Vec<Sample>) {
        let [node, dc, rack] = labels.values();
        for ((keyspace, table), totals) in &self.totals {
            let values = [node, dc, rack, keyspace.as_str(), table.as_str()];
            out.push(COMPLETED.sample_with(values, totals.completed));
            out.push(BYTES_IN.sample_with(values, totals.bytes_in));
            out.push(BYTES_OUT.sample_with(values, totals.bytes_out));
            out.push(ROWS_MERGED.sample_with(values, totals.rows_merged));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn compaction(id: u128, table: &str, at_ms: i64, bytes_in: f64) -> Compaction {
        Compaction {
            id: CqlTimeuuid::from_u128(id),
            keyspace: "shop".into(),
            table: table.into(),
            compacted_at_ms: at_ms,
            bytes_in,
            bytes_out: bytes_in / 2.0,
            rows_merged: 3.0,
        }
    }

    fn value(cursor: &CompactionCursor, name: &str, table: &str) -> Option<f64> {
        let mut out = Vec::new();
        cursor.samples(&NodeLabels::new("10.0.0.1", None, None), &mut out);
        out.iter()
            .find(|sample| sample.name() == name && sample.label("table") == Some(table))
            .map(|sample| sample.value)
    }

    #[test]
    fn the_first_poll_sets_a_baseline_and_reads_nothing() {
        let mut cursor = CompactionCursor::default();
        assert_eq!(cursor.after_ms(), None);
        cursor.start(1_000_000);
        assert_eq!(cursor.after_ms(), Some(1_000_000));
        cursor.absorb(
            1_010_000,
            &[
                compaction(1, "orders", 999_000, 100.0),
                compaction(2, "orders", 1_005_000, 100.0),
            ],
        );
        assert_eq!(
            value(&cursor, COMPLETED.name, "orders"),
            Some(1.0),
            "history before the baseline is not counted"
        );
    }

    #[test]
    fn overlapping_reads_count_each_compaction_once() {
        let mut cursor = CompactionCursor::default();
        cursor.start(1_000_000);
        let first = compaction(1, "orders", 1_100_000, 4096.0);
        cursor.absorb(1_110_000, std::slice::from_ref(&first));
        // The next read starts 60 s before the previous poll, so the same entry comes back.
        assert_eq!(cursor.after_ms(), Some(1_050_000));
        cursor.absorb(
            1_125_000,
            &[first, compaction(2, "orders", 1_120_000, 1024.0)],
        );
        assert_eq!(value(&cursor, COMPLETED.name, "orders"), Some(2.0));
        assert_eq!(value(&cursor, BYTES_IN.name, "orders"), Some(5120.0));
        assert_eq!(value(&cursor, BYTES_OUT.name, "orders"), Some(2560.0));
        assert_eq!(value(&cursor, ROWS_MERGED.name, "orders"), Some(6.0));
    }

    #[test]
    fn counted_ids_are_forgotten_once_out_of_the_window() {
        let mut cursor = CompactionCursor::default();
        cursor.start(0);
        cursor.absorb(100_000, &[compaction(1, "orders", 50_000, 1.0)]);
        assert_eq!(cursor.counted.len(), 1);
        cursor.absorb(200_000, &[]);
        assert!(cursor.counted.is_empty());
    }

    #[test]
    fn rows_merged_sums_every_bucket() {
        let map = CqlValue::Map(vec![
            (CqlValue::Int(1), CqlValue::BigInt(5)),
            (CqlValue::Int(2), CqlValue::BigInt(2)),
        ]);
        assert_eq!(rows_merged(Some(&map)), 7.0);
        assert_eq!(rows_merged(None), 0.0);
    }
}
