//! Native-transport clients per node from `system_views.clients`, against the node's connection cap, and the
//! fleet connection signals summed over the reachable nodes.
//!
//! Cassandra's default cap (`native_transport_max_concurrent_connections: -1`) is no cap at all. Such a node
//! reports `cassandra_node_clients_max` +Inf, and the fleet's `db_connections_max` becomes +Inf with a NaN
//! utilization: a ratio against "unlimited" would always read 0 and suggest headroom nobody measured, while
//! NaN says there is no configured limit to be near. With every reachable node capped, max is the sum of caps
//! and utilization the usual ratio. Only nodes that answered count, on both sides of the ratio.

use std::sync::Arc;
use std::time::Duration;

use scylla::client::session::Session;
use scylla::cluster::Node;

use super::session::{self, CqlError};
use super::settings::ConnectionLimit;
use super::NodeLabels;
use crate::fleet;
use crate::metric::{MetricDesc, MetricKind, Sample};

pub const VIEW: &str = "system_views.clients";
const QUERY: &str = include_str!("clients.cql");

pub static CLIENTS: MetricDesc = MetricDesc {
    name: "cassandra_node_clients",
    help: "Native-transport (CQL) connections open on the node, dbwatch's own included",
    kind: MetricKind::Gauge,
    labels: &["node", "dc", "rack"],
};
pub static CLIENTS_MAX: MetricDesc = MetricDesc {
    name: "cassandra_node_clients_max",
    help: "native_transport_max_concurrent_connections of the node; +Inf when unlimited, NaN when unreadable",
    kind: MetricKind::Gauge,
    labels: &["node", "dc", "rack"],
};

pub static DESCRIPTORS: &[&MetricDesc] = &[&CLIENTS, &CLIENTS_MAX];

pub async fn fetch(
    session: &Session,
    node: &Arc<Node>,
    timeout: Duration,
) -> Result<f64, CqlError> {
    let rows = session::rows(session, session::pinned(QUERY, node, timeout)).await?;
    let (count,): (i64,) = rows.single_row().map_err(CqlError::decode)?;
    // i64 to f64: a connection count is far below 2^53.
    Ok(count as f64)
}

pub fn node_samples(
    labels: &NodeLabels,
    clients: f64,
    limit: ConnectionLimit,
    out: &mut Vec<Sample>,
) {
    let [node, dc, rack] = labels.values();
    out.push(CLIENTS.sample_with([node, dc, rack], clients));
    out.push(CLIENTS_MAX.sample_with([node, dc, rack], limit.value()));
}

/// The fleet connection signals from every reachable node's (clients, limit). Nothing when no node answered.
pub fn fleet_samples(nodes: &[(f64, ConnectionLimit)], out: &mut Vec<Sample>) {
    if nodes.is_empty() {
        return;
    }
    let active: f64 = nodes.iter().map(|(clients, _)| clients).sum();
    let mut max = 0.0;
    for (_, limit) in nodes {
        match limit {
            ConnectionLimit::Limit(limit) => max += limit,
            ConnectionLimit::Unlimited => max = f64::INFINITY,
            ConnectionLimit::Unknown => {
                max = f64::NAN;
                break;
            }
        }
    }
    if !max.is_finite() {
        out.push(fleet::DB_CONNECTIONS_ACTIVE.sample(active));
        out.push(fleet::DB_CONNECTIONS_MAX.sample(max));
        out.push(fleet::DB_CONNECTIONS_UTILIZATION_RATIO.sample(f64::NAN));
        return;
    }
    out.extend(fleet::connection_samples(active, max));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(samples: &[Sample], name: &str) -> f64 {
        samples
            .iter()
            .find(|sample| sample.name() == name)
            .map(|sample| sample.value)
            .expect("sample present")
    }

    #[test]
    fn capped_nodes_sum_both_sides_of_the_ratio() {
        let mut out = Vec::new();
        fleet_samples(
            &[
                (30.0, ConnectionLimit::Limit(100.0)),
                (10.0, ConnectionLimit::Limit(100.0)),
            ],
            &mut out,
        );
        assert_eq!(value(&out, "db_connections_active"), 40.0);
        assert_eq!(value(&out, "db_connections_max"), 200.0);
        assert_eq!(value(&out, "db_connections_utilization_ratio"), 0.2);
    }

    #[test]
    fn one_unlimited_node_makes_the_fleet_unlimited_without_a_ratio() {
        let mut out = Vec::new();
        fleet_samples(
            &[
                (3.0, ConnectionLimit::Unlimited),
                (4.0, ConnectionLimit::Limit(100.0)),
            ],
            &mut out,
        );
        assert_eq!(value(&out, "db_connections_active"), 7.0);
        assert!(value(&out, "db_connections_max").is_infinite());
        assert!(value(&out, "db_connections_utilization_ratio").is_nan());
    }

    #[test]
    fn an_unknown_cap_is_unknown_not_unlimited() {
        let mut out = Vec::new();
        fleet_samples(
            &[
                (3.0, ConnectionLimit::Unlimited),
                (4.0, ConnectionLimit::Unknown),
            ],
            &mut out,
        );
        assert!(value(&out, "db_connections_max").is_nan());
        let mut none = Vec::new();
        fleet_samples(&[], &mut none);
        assert!(none.is_empty());
    }
}
