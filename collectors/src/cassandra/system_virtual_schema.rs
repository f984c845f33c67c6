//! Which `system_views` tables a node has, read once per node connection from `system_virtual_schema.tables`.
//!
//! Virtual tables are not in `system_schema.tables`; their own schema keyspace lists them. A view the node lacks
//! (gossip_info and pending_hints arrived in 4.1, for instance) is skipped and reported as a capability gauge at
//! 0 rather than failing on every poll.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use scylla::client::session::Session;
use scylla::cluster::Node;

use super::session::{self, CqlError};
use super::NodeLabels;
use crate::metric::{bool_value, MetricDesc, MetricKind, Sample};

pub const VIEW: &str = "system_virtual_schema.tables";
const QUERY: &str = include_str!("system_virtual_schema.cql");

/// Not a table: pending compaction counts are exposed over CQL only by the `system_metrics` keyspace of
/// Cassandra 6.0 (CASSANDRA-14572); through 5.0 they are JMX-only, so this capability reads 0.
pub const PENDING_COMPACTIONS: &str = "pending_compactions";

/// Every capability the collector reports, in a fixed order so the series set is stable.
pub const CAPABILITIES: [&str; 13] = [
    "local_read_latency",
    "local_write_latency",
    "local_scan_latency",
    "coordinator_read_latency",
    "coordinator_write_latency",
    "coordinator_scan_latency",
    "sstable_tasks",
    "thread_pools",
    "gossip_info",
    "clients",
    "settings",
    "pending_hints",
    PENDING_COMPACTIONS,
];

pub static AVAILABLE: MetricDesc = MetricDesc {
    name: "cassandra_capability_available",
    help: "1 when the node offers the system_views table (or feature) named by capability, learnt once per connection",
    kind: MetricKind::Gauge,
    labels: &["node", "dc", "rack", "capability"],
};

pub static DESCRIPTORS: &[&MetricDesc] = &[&AVAILABLE];

/// The node's virtual tables.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VirtualTables(BTreeSet<String>);

impl VirtualTables {
    pub fn from_names<I, S>(names: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        VirtualTables(names.into_iter().map(Into::into).collect())
    }

    pub fn has(&self, table: &str) -> bool {
        self.0.contains(table)
    }

    pub fn samples(&self, labels: &NodeLabels, out: &mut Vec<Sample>) {
        let [node, dc, rack] = labels.values();
        for capability in CAPABILITIES {
            let available = capability != PENDING_COMPACTIONS && self.has(capability);
            out.push(AVAILABLE.sample_with([node, dc, rack, capability], bool_value(available)));
        }
    }
}

pub async fn fetch(
    session: &Session,
    node: &Arc<Node>,
    timeout: Duration,
) -> Result<VirtualTables, CqlError> {
    let rows = session::rows(session, session::pinned(QUERY, node, timeout)).await?;
    let mut names = BTreeSet::new();
    for row in rows.rows::<(String,)>().map_err(CqlError::decode)? {
        let (name,) = row.map_err(CqlError::decode)?;
        names.insert(name);
    }
    Ok(VirtualTables(names))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The `DESC TABLES` listing of system_views on Cassandra 4.0, transcribed in
    /// tests/fixtures/cassandra/virtual_tables_4.0.txt with its source.
    fn fixture_4_0() -> VirtualTables {
        let text = include_str!("../../tests/fixtures/cassandra/virtual_tables_4.0.txt");
        VirtualTables::from_names(
            text.lines()
                .filter(|line| !line.starts_with('#'))
                .flat_map(str::split_whitespace),
        )
    }

    #[test]
    fn cassandra_4_0_has_latency_but_no_gossip_or_hints() {
        let tables = fixture_4_0();
        assert!(tables.has("coordinator_read_latency"));
        assert!(tables.has("local_scan_latency"));
        assert!(tables.has("sstable_tasks"));
        assert!(tables.has("thread_pools"));
        assert!(!tables.has("gossip_info"));
        assert!(!tables.has("pending_hints"));
        let labels = NodeLabels::new("10.0.0.1", Some("dc1"), Some("r1"));
        let mut samples = Vec::new();
        tables.samples(&labels, &mut samples);
        assert_eq!(samples.len(), CAPABILITIES.len());
        let gossip = samples
            .iter()
            .find(|sample| sample.label("capability") == Some("gossip_info"))
            .expect("gossip capability");
        assert_eq!(gossip.value, 0.0);
    }

    #[test]
    fn pending_compactions_is_never_claimed() {
        let tables = VirtualTables::from_names([PENDING_COMPACTIONS, "clients"]);
        let mut samples = Vec::new();
        tables.samples(&NodeLabels::new("n", None, None), &mut samples);
        let pending = samples
            .iter()
            .find(|sample| sample.label("capability") == Some(PENDING_COMPACTIONS))
            .expect("pending capability");
        assert_eq!(pending.value, 0.0);
    }
}
