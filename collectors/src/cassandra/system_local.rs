//! The per-poll probe of one node, from `system.local`: reachability, version and the node's clock.

use std::sync::Arc;
use std::time::Duration;

use scylla::client::session::Session;
use scylla::cluster::Node;
use scylla::DeserializeRow;

use super::session::{self, CqlError};
use super::NodeLabels;
use crate::metric::{MetricDesc, MetricKind, Sample};

pub const VIEW: &str = "system.local";
const QUERY: &str = include_str!("system_local.cql");

pub static REACHABLE: MetricDesc = MetricDesc {
    name: "cassandra_node_reachable",
    help:
        "1 when the node answered dbwatch's probe in the last poll, 0 when it could not be reached",
    kind: MetricKind::Gauge,
    labels: &["node", "dc", "rack"],
};
pub static INFO: MetricDesc = MetricDesc {
    name: "cassandra_node_info",
    help:
        "Always 1 for a node that answered at least once; its host id and release version as labels",
    kind: MetricKind::Gauge,
    labels: &["node", "dc", "rack", "host_id", "release_version"],
};

pub static DESCRIPTORS: &[&MetricDesc] = &[&REACHABLE, &INFO];

#[derive(DeserializeRow)]
struct LocalRow {
    release_version: Option<String>,
    now_ms: Option<i64>,
}

/// What the probe learnt.
#[derive(Debug, Clone, PartialEq)]
pub struct LocalInfo {
    pub release_version: String,
    /// The node's wall clock in milliseconds since the epoch.
    pub now_ms: i64,
}

pub async fn fetch(
    session: &Session,
    node: &Arc<Node>,
    timeout: Duration,
) -> Result<LocalInfo, CqlError> {
    let rows = session::rows(session, session::pinned(QUERY, node, timeout)).await?;
    let row: LocalRow = rows.single_row().map_err(CqlError::decode)?;
    validate(row)
}

fn validate(row: LocalRow) -> Result<LocalInfo, CqlError> {
    let release_version = row
        .release_version
        .ok_or_else(|| CqlError::decode("release_version is null"))?;
    let now_ms = row
        .now_ms
        .ok_or_else(|| CqlError::decode("now() is null"))?;
    Ok(LocalInfo {
        release_version,
        now_ms,
    })
}

pub fn samples(
    labels: &NodeLabels,
    reachable: bool,
    info: Option<(&str, &str)>,
    out: &mut Vec<Sample>,
) {
    let [node, dc, rack] = labels.values();
    out.push(REACHABLE.sample_with([node, dc, rack], crate::metric::bool_value(reachable)));
    if let Some((host_id, release_version)) = info {
        out.push(INFO.sample_with([node, dc, rack, host_id, release_version], 1.0));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_probe_without_a_clock_is_a_decode_error() {
        let missing = LocalRow {
            release_version: Some("5.0.9".into()),
            now_ms: None,
        };
        assert!(matches!(validate(missing), Err(CqlError::Decode(_))));
    }
}
