//! The cluster's availability, merged from dbwatch's own reach and every reachable node's gossip view, and the
//! fleet replication signals derived from it and from pending hints.
//!
//! A node counts as up in `cassandra_cluster_nodes` when dbwatch reached it this poll, or when at least one
//! reachable node's gossip sees its heartbeat moving (dbwatch may be cut off from a node the cluster still
//! talks to; `cassandra_node_reachable` tells those apart). Anything else is down, a node with no evidence
//! either way included: unknown never reads as up. Members are the nodes of the driver's cluster metadata
//! (system.local and system.peers_v2 of the control connection's node).
//!
//! Replication, per replica (`replica` = the node's address): lag is the age of the oldest hint the reachable
//! nodes hold for it, 0 when it is up and nobody holds hints for it, unknown (NaN) when it is down and no
//! dated hint says how far behind it is. Healthy means up with a known lag. These series exist only when at
//! least one reachable node could read `pending_hints` (4.1+); on 4.0 there is no CQL source for them.

use std::collections::HashMap;

use super::gossip_info::{PeerOpinion, PeerState};
use super::pending_hints::Backlog;
use super::NodeLabels;
use crate::fleet;
use crate::metric::{MetricDesc, MetricKind, Sample};

pub static CLUSTER_NODES: MetricDesc = MetricDesc {
    name: "cassandra_cluster_nodes",
    help: "Cluster members up (reached by dbwatch or heartbeating in a reachable node's gossip) or down",
    kind: MetricKind::Gauge,
    labels: &["state"],
};
pub static PENDING_HINT_FILES: MetricDesc = MetricDesc {
    name: "cassandra_node_pending_hint_files",
    help: "Hint files the reachable nodes hold for this node: writes it has not received yet",
    kind: MetricKind::Gauge,
    labels: &["node", "dc", "rack"],
};

pub static DESCRIPTORS: &[&MetricDesc] = &[&CLUSTER_NODES, &PENDING_HINT_FILES];

/// One member of the cluster as this poll saw it.
#[derive(Debug)]
pub struct Member<'a> {
    pub labels: &'a NodeLabels,
    pub host_id: &'a str,
    pub reachable: bool,
}

impl Member<'_> {
    fn is_subject_of(&self, opinion: &PeerOpinion) -> bool {
        match &opinion.host_id {
            Some(host_id) => host_id == self.host_id,
            None => opinion.address.to_string() == self.labels.node,
        }
    }
}

/// Whether each member is up, in the members' order.
pub fn members_up(members: &[Member<'_>], opinions: &[PeerOpinion]) -> Vec<bool> {
    members
        .iter()
        .map(|member| {
            member.reachable
                || opinions
                    .iter()
                    .any(|opinion| opinion.state == PeerState::Up && member.is_subject_of(opinion))
        })
        .collect()
}

pub fn samples(
    members: &[Member<'_>],
    opinions: &[PeerOpinion],
    hints: Option<&HashMap<String, Backlog>>,
    out: &mut Vec<Sample>,
) {
    let up = members_up(members, opinions);
    let up_count = up.iter().filter(|up| **up).count();
    // usize to f64: member counts are tiny.
    out.push(CLUSTER_NODES.sample_with(["up"], up_count as f64));
    out.push(CLUSTER_NODES.sample_with(["down"], (members.len() - up_count) as f64));

    let Some(hints) = hints else {
        return;
    };
    for (member, up) in members.iter().zip(up) {
        let backlog = hints.get(member.host_id).copied().unwrap_or_default();
        let [node, dc, rack] = member.labels.values();
        out.push(PENDING_HINT_FILES.sample_with([node, dc, rack], backlog.files));
        let lag = match backlog.oldest_age_seconds {
            Some(age) => Some(age),
            None if up && backlog.files == 0.0 => Some(0.0),
            None => None,
        };
        out.extend(fleet::replication_samples(node, lag, up));
    }
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;

    use super::*;

    fn opinion(host_id: &str, state: PeerState) -> PeerOpinion {
        PeerOpinion {
            address: IpAddr::from([127, 0, 0, 9]),
            host_id: Some(host_id.into()),
            state,
        }
    }

    fn value(out: &[Sample], name: &str, label: (&str, &str)) -> f64 {
        out.iter()
            .find(|sample| sample.name() == name && sample.label(label.0) == Some(label.1))
            .map(|sample| sample.value)
            .expect("sample present")
    }

    #[test]
    fn a_stopped_node_is_down_and_its_replication_unknown() {
        let one = NodeLabels::new("127.0.0.1", Some("datacenter1"), Some("rack1"));
        let two = NodeLabels::new("127.0.0.2", Some("datacenter1"), Some("rack1"));
        let members = [
            Member {
                labels: &one,
                host_id: "a",
                reachable: true,
            },
            Member {
                labels: &two,
                host_id: "b",
                reachable: false,
            },
        ];
        let opinions = [opinion("b", PeerState::Down)];
        let hints = HashMap::new();
        let mut out = Vec::new();
        samples(&members, &opinions, Some(&hints), &mut out);
        assert_eq!(value(&out, "cassandra_cluster_nodes", ("state", "up")), 1.0);
        assert_eq!(
            value(&out, "cassandra_cluster_nodes", ("state", "down")),
            1.0
        );
        assert_eq!(
            value(&out, "db_replication_lag_seconds", ("replica", "127.0.0.1")),
            0.0
        );
        assert_eq!(
            value(&out, "db_replication_healthy", ("replica", "127.0.0.1")),
            1.0
        );
        assert!(value(&out, "db_replication_lag_seconds", ("replica", "127.0.0.2")).is_nan());
        assert_eq!(
            value(&out, "db_replication_healthy", ("replica", "127.0.0.2")),
            0.0
        );
    }

    #[test]
    fn gossip_can_vouch_for_a_node_dbwatch_cannot_reach_and_hints_give_its_lag() {
        let one = NodeLabels::new("127.0.0.1", None, None);
        let two = NodeLabels::new("127.0.0.2", None, None);
        let members = [
            Member {
                labels: &one,
                host_id: "a",
                reachable: true,
            },
            Member {
                labels: &two,
                host_id: "b",
                reachable: false,
            },
        ];
        assert_eq!(
            members_up(&members, &[opinion("b", PeerState::Up)]),
            vec![true, true]
        );
        assert_eq!(
            members_up(&members, &[opinion("b", PeerState::Unknown)]),
            vec![true, false]
        );

        let hints = HashMap::from([(
            "b".to_owned(),
            Backlog {
                files: 2.0,
                oldest_age_seconds: Some(42.0),
            },
        )]);
        let mut out = Vec::new();
        samples(&members, &[], Some(&hints), &mut out);
        assert_eq!(
            value(&out, "db_replication_lag_seconds", ("replica", "127.0.0.2")),
            42.0
        );
        assert_eq!(
            value(&out, "db_replication_healthy", ("replica", "127.0.0.2")),
            0.0
        );
        assert_eq!(
            value(
                &out,
                "cassandra_node_pending_hint_files",
                ("node", "127.0.0.2")
            ),
            2.0
        );
    }

    #[test]
    fn without_hints_there_are_no_replication_series() {
        let one = NodeLabels::new("127.0.0.1", None, None);
        let members = [Member {
            labels: &one,
            host_id: "a",
            reachable: true,
        }];
        let mut out = Vec::new();
        samples(&members, &[], None, &mut out);
        assert!(out
            .iter()
            .all(|sample| sample.name() == "cassandra_cluster_nodes"));
    }
}
