//! Thread pool saturation per node from `system_views.thread_pools`: pending and blocked tasks per stage.
//!
//! The `pool` label takes the pool names the node reports (ReadStage, MutationStage, CompactionExecutor,
//! Native-Transport-Requests...), a set fixed by the server's version and configuration. CompactionExecutor's
//! pending tasks are not "pending compactions" (the compaction strategy's estimate is JMX-only through 5.0),
//! only compaction jobs already submitted and waiting for a thread.

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

pub const VIEW: &str = "system_views.thread_pools";
const QUERY: &str = include_str!("thread_pools.cql");

/// A bound on pools per node; real nodes have 20 to 40.
const MAX_POOLS: usize = 200;

macro_rules! pool_metric {
    ($ident:ident, $name:literal, $kind:expr, $help:literal) => {
        pub static $ident: MetricDesc = MetricDesc {
            name: $name,
            help: $help,
            kind: $kind,
            labels: &["node", "dc", "rack", "pool"],
        };
    };
}

pool_metric!(
    ACTIVE,
    "cassandra_thread_pool_active_tasks",
    MetricKind::Gauge,
    "Tasks the pool is running now"
);
pool_metric!(
    ACTIVE_LIMIT,
    "cassandra_thread_pool_active_tasks_limit",
    MetricKind::Gauge,
    "Tasks the pool can run at once"
);
pool_metric!(
    PENDING,
    "cassandra_thread_pool_pending_tasks",
    MetricKind::Gauge,
    "Tasks queued in the pool, waiting for a thread"
);
pool_metric!(
    BLOCKED,
    "cassandra_thread_pool_blocked_tasks",
    MetricKind::Gauge,
    "Tasks currently blocked because the pool's queue is full"
);
pool_metric!(
    BLOCKED_TOTAL,
    "cassandra_thread_pool_blocked_tasks_total",
    MetricKind::Counter,
    "Tasks that were ever blocked on the pool's full queue since the node started"
);
pool_metric!(
    COMPLETED_TOTAL,
    "cassandra_thread_pool_completed_tasks_total",
    MetricKind::Counter,
    "Tasks the pool completed since the node started"
);

pub static DESCRIPTORS: &[&MetricDesc] = &[
    &ACTIVE,
    &ACTIVE_LIMIT,
    &PENDING,
    &BLOCKED,
    &BLOCKED_TOTAL,
    &COMPLETED_TOTAL,
];

#[derive(DeserializeRow)]
struct PoolRow {
    name: String,
    active_tasks: Option<CqlValue>,
    active_tasks_limit: Option<CqlValue>,
    pending_tasks: Option<CqlValue>,
    blocked_tasks: Option<CqlValue>,
    blocked_tasks_all_time: Option<CqlValue>,
    completed_tasks: Option<CqlValue>,
}

/// One pool's state; unknown values are NaN.
#[derive(Debug, Clone, PartialEq)]
pub struct ThreadPool {
    pub name: String,
    pub active: f64,
    pub active_limit: f64,
    pub pending: f64,
    pub blocked: f64,
    pub blocked_total: f64,
    pub completed_total: f64,
}

pub async fn fetch(
    session: &Session,
    node: &Arc<Node>,
    timeout: Duration,
) -> Result<Vec<ThreadPool>, CqlError> {
    let rows = session::rows(session, session::pinned(QUERY, node, timeout)).await?;
    let mut pools = Vec::with_capacity(rows.rows_num());
    for row in rows.rows::<PoolRow>().map_err(CqlError::decode)? {
        pools.push(validate(row.map_err(CqlError::decode)?));
        if pools.len() >= MAX_POOLS {
            tracing::warn!(node = %node.address, limit = MAX_POOLS, "thread pools cut at the limit");
            break;
        }
    }
    Ok(pools)
}

fn validate(row: PoolRow) -> ThreadPool {
    let value = |column: Option<&CqlValue>| number(column).unwrap_or(f64::NAN);
    ThreadPool {
        active: value(row.active_tasks.as_ref()),
        active_limit: value(row.active_tasks_limit.as_ref()),
        pending: value(row.pending_tasks.as_ref()),
        blocked: value(row.blocked_tasks.as_ref()),
        blocked_total: value(row.blocked_tasks_all_time.as_ref()),
        completed_total: value(row.completed_tasks.as_ref()),
        name: row.name,
    }
}

pub fn samples(labels: &NodeLabels, pools: &[ThreadPool], out: &mut Vec<Sample>) {
    let [node, dc, rack] = labels.values();
    for pool in pools {
        let values = [node, dc, rack, pool.name.as_str()];
        for (desc, value) in [
            (&ACTIVE, pool.active),
            (&ACTIVE_LIMIT, pool.active_limit),
            (&PENDING, pool.pending),
            (&BLOCKED, pool.blocked),
            (&BLOCKED_TOTAL, pool.blocked_total),
            (&COMPLETED_TOTAL, pool.completed_total),
        ] {
            out.push(desc.sample_with(values, value));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The CompactionExecutor row of the `thread_pools` example in Cassandra 4.0's documentation
    /// (https://cassandra.apache.org/doc/4.0/cassandra/new/virtualtables.html): int and bigint columns mixed.
    #[test]
    fn documented_row_converts_and_keeps_its_pool_name() {
        let pool = validate(PoolRow {
            name: "CompactionExecutor".into(),
            active_tasks: Some(CqlValue::Int(0)),
            active_tasks_limit: Some(CqlValue::Int(2)),
            pending_tasks: Some(CqlValue::Int(0)),
            blocked_tasks: Some(CqlValue::BigInt(0)),
            blocked_tasks_all_time: Some(CqlValue::BigInt(0)),
            completed_tasks: Some(CqlValue::BigInt(881)),
        });
        assert_eq!(pool.completed_total, 881.0);
        assert_eq!(pool.active_limit, 2.0);
        let mut out = Vec::new();
        samples(
            &NodeLabels::new("10.0.0.1", Some("dc1"), Some("r1")),
            &[pool],
            &mut out,
        );
        assert_eq!(out.len(), DESCRIPTORS.len());
        assert!(out
            .iter()
            .all(|sample| sample.label("pool") == Some("CompactionExecutor")));
    }

    #[test]
    fn a_null_counter_is_unknown() {
        let pool = validate(PoolRow {
            name: "ReadStage".into(),
            active_tasks: None,
            active_tasks_limit: None,
            pending_tasks: Some(CqlValue::Int(3)),
            blocked_tasks: None,
            blocked_tasks_all_time: None,
            completed_tasks: None,
        });
        assert_eq!(pool.pending, 3.0);
        assert!(pool.active.is_nan());
    }
}
