//! Read, write and range-scan latency per table from the six `system_views.*_latency` tables (4.0+).
//!
//! `local_*` tables time the replica's own storage work, `coordinator_*` tables time whole client requests as
//! the coordinator saw them (replica round trips included). Each row has a cumulative `count` and, from a
//! decaying reservoir, `p50th_ms`, `p99th_ms` and `max_ms`; there is no total-time column, so a true mean over
//! an interval (total delta over count delta) cannot be computed from CQL before Cassandra 6.0's
//! `system_metrics`. What this module derives instead:
//!
//! - counts as counters, per table and summed per node;
//! - the percentiles as gauges per table, never averaged across tables or nodes;
//! - per node and for the fleet's `db_query_latency_avg_seconds`, the **operation-weighted median**: the mean of
//!   the per-table medians weighted by how many operations each table completed since the previous poll. It
//!   is the best interval statistic CQL offers: an interval with no operations yields NaN, a busy table
//!   dominates an idle one, but it is a typical latency rather than the arithmetic mean (it ignores the tail,
//!   which `cassandra_table_latency_seconds{percentile="p99"}` shows). The fleet signal uses the coordinator
//!   tables, which is what clients wait for.
//!
//! System keyspaces and the canary table never enter the per-node sums or the fleet average: dbwatch's own
//! reads of `system.*` and its canary writes are not the application's load.

use std::collections::{HashMap, HashSet};
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

const QUERY: &str = include_str!("latency_tables.cql");

pub static TABLE_REQUESTS: MetricDesc = MetricDesc {
    name: "cassandra_table_requests_total",
    help:
        "Operations on the table completed by the node, as coordinator or as local replica (scope)",
    kind: MetricKind::Counter,
    labels: &[
        "node",
        "dc",
        "rack",
        "keyspace",
        "table",
        "scope",
        "operation",
    ],
};
pub static TABLE_LATENCY: MetricDesc = MetricDesc {
    name: "cassandra_table_latency_seconds",
    help: "Latency percentile (p50, p99, max) of the table's operations from the node's decaying reservoir",
    kind: MetricKind::Gauge,
    labels: &["node", "dc", "rack", "keyspace", "table", "scope", "operation", "percentile"],
};
pub static NODE_REQUESTS: MetricDesc = MetricDesc {
    name: "cassandra_node_requests_total",
    help: "Operations completed by the node on user tables, summed over tables (system keyspaces and the canary excluded)",
    kind: MetricKind::Counter,
    labels: &["node", "dc", "rack", "scope", "operation"],
};
pub static NODE_LATENCY: MetricDesc = MetricDesc {
    name: "cassandra_node_latency_weighted_median_seconds",
    help: "Per-table median latencies weighted by operations completed since the last poll, user tables only; NaN when none",
    kind: MetricKind::Gauge,
    labels: &["node", "dc", "rack", "scope", "operation"],
};

pub static DESCRIPTORS: &[&MetricDesc] = &[
    &TABLE_REQUESTS,
    &TABLE_LATENCY,
    &NODE_REQUESTS,
    &NODE_LATENCY,
];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Scope {
    Local,
    Coordinator,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Local => "local",
            Scope::Coordinator => "coordinator",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Operation {
    Read,
    Write,
    Scan,
}

impl Operation {
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Read => "read",
            Operation::Write => "write",
            Operation::Scan => "scan",
        }
    }
}

/// One of the six latency tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LatencyTable {
    pub scope: Scope,
    pub operation: Operation,
}

pub const TABLES: [LatencyTable; 6] = [
    LatencyTable::new(Scope::Coordinator, Operation::Read),
    LatencyTable::new(Scope::Coordinator, Operation::Write),
    LatencyTable::new(Scope::Coordinator, Operation::Scan),
    LatencyTable::new(Scope::Local, Operation::Read),
    LatencyTable::new(Scope::Local, Operation::Write),
    LatencyTable::new(Scope::Local, Operation::Scan),
];

impl LatencyTable {
    pub const fn new(scope: Scope, operation: Operation) -> Self {
        LatencyTable { scope, operation }
    }

    /// The virtual table's name, e.g. `coordinator_read_latency`.
    pub fn name(self) -> &'static str {
        match (self.scope, self.operation) {
            (Scope::Local, Operation::Read) => "local_read_latency",
            (Scope::Local, Operation::Write) => "local_write_latency",
            (Scope::Local, Operation::Scan) => "local_scan_latency",
            (Scope::Coordinator, Operation::Read) => "coordinator_read_latency",
            (Scope::Coordinator, Operation::Write) => "coordinator_write_latency",
            (Scope::Coordinator, Operation::Scan) => "coordinator_scan_latency",
        }
    }

    /// The view name used in `ViewOutcome`s.
    pub fn view(self) -> &'static str {
        match (self.scope, self.operation) {
            (Scope::Local, Operation::Read) => "system_views.local_read_latency",
            (Scope::Local, Operation::Write) => "system_views.local_write_latency",
            (Scope::Local, Operation::Scan) => "system_views.local_scan_latency",
            (Scope::Coordinator, Operation::Read) => "system_views.coordinator_read_latency",
            (Scope::Coordinator, Operation::Write) => "system_views.coordinator_write_latency",
            (Scope::Coordinator, Operation::Scan) => "system_views.coordinator_scan_latency",
        }
    }
}

#[derive(DeserializeRow)]
struct LatencyRow {
    keyspace_name: String,
    table_name: String,
    count: Option<CqlValue>,
    p50th_ms: Option<CqlValue>,
    p99th_ms: Option<CqlValue>,
    max_ms: Option<CqlValue>,
}

/// One table's reading, in base units.
#[derive(Debug, Clone, PartialEq)]
pub struct TableLatency {
    pub keyspace: String,
    pub table: String,
    pub count: f64,
    pub p50_seconds: f64,
    pub p99_seconds: f64,
    pub max_seconds: f64,
}

pub async fn fetch(
    session: &Session,
    node: &Arc<Node>,
    table: LatencyTable,
    timeout: Duration,
) -> Result<Vec<TableLatency>, CqlError> {
    let cql = QUERY.replace("{table}", table.name());
    let rows = session::rows(session, session::pinned(cql, node, timeout)).await?;
    let mut readings = Vec::with_capacity(rows.rows_num());
    for row in rows.rows::<LatencyRow>().map_err(CqlError::decode)? {
        if let Some(reading) = validate(row.map_err(CqlError::decode)?) {
            readings.push(reading);
        }
    }
    Ok(readings)
}

/// A row without a count carries nothing countable; missing percentiles are unknown (NaN), not zero.
fn validate(row: LatencyRow) -> Option<TableLatency> {
    let count = number(row.count.as_ref())?;
    let seconds = |ms: Option<&CqlValue>| number(ms).map_or(f64::NAN, |ms| ms / 1000.0);
    Some(TableLatency {
        keyspace: row.keyspace_name,
        table: row.table_name,
        count,
        p50_seconds: seconds(row.p50th_ms.as_ref()),
        p99_seconds: seconds(row.p99th_ms.as_ref()),
        max_seconds: seconds(row.max_ms.as_ref()),
    })
}

/// Which tables get their own series, and which count as the application's load.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableFilter {
    pub include_system_keyspaces: bool,
    pub max_tables: usize,
    /// The canary's (keyspace, table), kept out of the node sums.
    pub canary: Option<(String, String)>,
}

impl TableFilter {
    fn is_system(keyspace: &str) -> bool {
        keyspace == "system" || keyspace.starts_with("system_")
    }

    fn counts_as_load(&self, keyspace: &str, table: &str) -> bool {
        if Self::is_system(keyspace) {
            return false;
        }
        self.canary
            .as_ref()
            .is_none_or(|(canary_keyspace, canary_table)| {
                canary_keyspace != keyspace || canary_table != table
            })
    }
}

/// Operations and their weighted median over one interval, summed as the fleet needs them.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Interval {
    pub operations: f64,
    /// Σ operations × median seconds.
    pub weighted_seconds: f64,
}

impl Interval {
    pub fn add(&mut self, other: Interval) {
        self.operations += other.operations;
        self.weighted_seconds += other.weighted_seconds;
    }

    /// The weighted median; NaN when nothing completed.
    pub fn median(self) -> f64 {
        if self.operations > 0.0 {
            self.weighted_seconds / self.operations
        } else {
            f64::NAN
        }
    }
}

/// One node's counts at the previous poll, for interval weights.
#[derive(Debug, Default)]
pub struct LatencyState {
    previous: HashMap<(LatencyTable, String, String), f64>,
}

impl LatencyState {
    /// Emits the per-table and per-node samples of one latency table and returns the interval of the
    /// application's tables. A table seen for the first time, or whose count went down (node restart,
    /// table recreated), contributes no weight this poll.
    pub fn samples(
        &mut self,
        labels: &NodeLabels,
        table: LatencyTable,
        readings: &[TableLatency],
        filter: &TableFilter,
        out: &mut Vec<Sample>,
    ) -> Interval {
        let [node, dc, rack] = labels.values();
        let scope = table.scope.as_str();
        let operation = table.operation.as_str();
        let mut interval = Interval::default();
        let mut node_count = 0.0;
        let mut exported: Vec<&TableLatency> = readings
            .iter()
            .filter(|reading| {
                filter.include_system_keyspaces || !TableFilter::is_system(&reading.keyspace)
            })
            .collect();
        exported.sort_by(|left, right| {
            (&left.keyspace, &left.table).cmp(&(&right.keyspace, &right.table))
        });
        exported.truncate(filter.max_tables);
        for reading in exported {
            let [keyspace, name] = [reading.keyspace.as_str(), reading.table.as_str()];
            out.push(TABLE_REQUESTS.sample_with(
                [node, dc, rack, keyspace, name, scope, operation],
                reading.count,
            ));
            // Prometheus reserves `quantile` for summaries; these are a server's own percentiles as gauges.
            for (percentile, value) in [
                ("p50", reading.p50_seconds),
                ("p99", reading.p99_seconds),
                ("max", reading.max_seconds),
            ] {
                out.push(TABLE_LATENCY.sample_with(
                    [node, dc, rack, keyspace, name, scope, operation, percentile],
                    value,
                ));
            }
        }
        let mut seen = HashSet::with_capacity(readings.len());
        for reading in readings {
            let key = (table, reading.keyspace.clone(), reading.table.clone());
            let previous = self.previous.insert(key.clone(), reading.count);
            seen.insert(key);
            if !filter.counts_as_load(&reading.keyspace, &reading.table) {
                continue;
            }
            node_count += reading.count;
            let Some(previous) = previous else {
                continue;
            };
            let delta = reading.count - previous;
            if delta > 0.0 && reading.p50_seconds.is_finite() {
                interval.operations += delta;
                interval.weighted_seconds += delta * reading.p50_seconds;
            }
        }
        self.previous
            .retain(|key, _| key.0 != table || seen.contains(key));
        out.push(NODE_REQUESTS.sample_with([node, dc, rack, scope, operation], node_count));
        out.push(NODE_LATENCY.sample_with([node, dc, rack, scope, operation], interval.median()));
        interval
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reading(keyspace: &str, table: &str, count: f64, p50_ms: f64) -> TableLatency {
        TableLatency {
            keyspace: keyspace.into(),
            table: table.into(),
            count,
            p50_seconds: p50_ms / 1000.0,
            p99_seconds: p50_ms * 4.0 / 1000.0,
            max_seconds: p50_ms * 10.0 / 1000.0,
        }
    }

    fn filter() -> TableFilter {
        TableFilter {
            include_system_keyspaces: false,
            max_tables: 100,
            canary: Some(("dbwatch_canary".into(), "probe".into())),
        }
    }

    fn find<'a>(samples: &'a [Sample], name: &str, table: Option<&str>) -> Vec<&'a Sample> {
        samples
            .iter()
            .filter(|sample| sample.name() == name && sample.label("table") == table)
            .collect()
    }

    #[test]
    fn rows_convert_milliseconds_and_keep_unknowns_unknown() {
        let row = LatencyRow {
            keyspace_name: "shop".into(),
            table_name: "orders".into(),
            count: Some(CqlValue::BigInt(42)),
            p50th_ms: Some(CqlValue::Double(1.5)),
            p99th_ms: None,
            max_ms: Some(CqlValue::Double(12.0)),
        };
        let reading = validate(row).expect("a row with a count");
        assert_eq!(reading.count, 42.0);
        assert_eq!(reading.p50_seconds, 0.0015);
        assert!(reading.p99_seconds.is_nan());
        assert_eq!(reading.max_seconds, 0.012);
    }

    #[test]
    fn the_node_median_is_weighted_by_operations_of_the_interval() {
        let labels = NodeLabels::new("10.0.0.1", Some("dc1"), Some("r1"));
        let table = LatencyTable::new(Scope::Coordinator, Operation::Write);
        let mut state = LatencyState::default();
        let mut out = Vec::new();
        let first = state.samples(
            &labels,
            table,
            &[
                reading("shop", "orders", 100.0, 1.0),
                reading("shop", "carts", 10.0, 9.0),
            ],
            &filter(),
            &mut out,
        );
        assert_eq!(first.operations, 0.0, "no weight without a previous poll");
        assert!(find(&out, NODE_LATENCY.name, None)[0].value.is_nan());

        out.clear();
        let second = state.samples(
            &labels,
            table,
            &[
                reading("shop", "orders", 130.0, 1.0),
                reading("shop", "carts", 20.0, 9.0),
                reading("system", "local", 5000.0, 0.1),
                reading("dbwatch_canary", "probe", 900.0, 50.0),
            ],
            &filter(),
            &mut out,
        );
        // 30 ops at 1 ms and 10 ops at 9 ms: (30 + 90) / 40 = 3 ms; system and canary tables ignored.
        assert_eq!(second.operations, 40.0);
        assert!((second.median() - 0.003).abs() < 1e-12);
        assert_eq!(find(&out, NODE_REQUESTS.name, None)[0].value, 150.0);
        assert!(find(&out, TABLE_REQUESTS.name, Some("local")).is_empty());
        assert_eq!(
            find(&out, TABLE_REQUESTS.name, Some("probe"))[0].value,
            900.0
        );
        assert_eq!(find(&out, TABLE_LATENCY.name, Some("orders")).len(), 3);
    }

    #[test]
    fn a_count_that_goes_down_adds_no_weight() {
        let labels = NodeLabels::new("10.0.0.1", None, None);
        let table = LatencyTable::new(Scope::Coordinator, Operation::Read);
        let mut state = LatencyState::default();
        let mut out = Vec::new();
        state.samples(
            &labels,
            table,
            &[reading("shop", "orders", 500.0, 2.0)],
            &filter(),
            &mut out,
        );
        let after_restart = state.samples(
            &labels,
            table,
            &[reading("shop", "orders", 3.0, 2.0)],
            &filter(),
            &mut out,
        );
        assert_eq!(after_restart, Interval::default());
        assert!(after_restart.median().is_nan());
    }

    #[test]
    fn per_table_series_are_capped_in_name_order() {
        let labels = NodeLabels::new("10.0.0.1", None, None);
        let table = LatencyTable::new(Scope::Local, Operation::Read);
        let mut state = LatencyState::default();
        let mut out = Vec::new();
        let capped = TableFilter {
            max_tables: 1,
            ..filter()
        };
        state.samples(
            &labels,
            table,
            &[
                reading("shop", "b", 1.0, 1.0),
                reading("shop", "a", 1.0, 1.0),
            ],
            &capped,
            &mut out,
        );
        let tables: Vec<_> = out
            .iter()
            .filter(|sample| sample.name() == TABLE_REQUESTS.name)
            .map(|sample| sample.label("table"))
            .collect();
        assert_eq!(tables, vec![Some("a")]);
        assert_eq!(find(&out, NODE_REQUESTS.name, None)[0].value, 2.0);
    }
}
