//! Each node's view of its peers from `system_views.gossip_info` (4.1+).
//!
//! Gossip state carries no failure-detector verdict, so liveness is inferred the way the failure detector
//! itself works, from heartbeats: a live peer's (generation, heartbeat) pair keeps moving in every other
//! node's gossip state, about once a second. A peer whose pair has not moved for `stale_after` is down, as is
//! a peer that announced a clean shutdown (status `shutdown`). A peer first seen in this process has no
//! history yet and is `unknown` until its heartbeat moves or `stale_after` passes. Peers that left the ring
//! (`LEFT`, `removed`) linger in gossip for days and are not counted.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use scylla::client::session::Session;
use scylla::cluster::Node;
use scylla::value::CqlValue;
use scylla::DeserializeRow;
use tokio::time::Instant;

use super::session::{self, CqlError};
use super::values::number;
use super::NodeLabels;
use crate::metric::{MetricDesc, MetricKind, Sample};

pub const VIEW: &str = "system_views.gossip_info";
const QUERY: &str = include_str!("gossip_info.cql");

pub static PEERS: MetricDesc = MetricDesc {
    name: "cassandra_node_peers",
    help: "Peers the node's gossip shows up (heartbeat moving), down (stale or shut down) or unknown (no history yet)",
    kind: MetricKind::Gauge,
    labels: &["node", "dc", "rack", "state"],
};

pub static DESCRIPTORS: &[&MetricDesc] = &[&PEERS];

#[derive(DeserializeRow)]
struct GossipRow {
    address: IpAddr,
    host_id: Option<String>,
    generation: Option<CqlValue>,
    heartbeat: Option<CqlValue>,
    status: Option<String>,
    status_with_port: Option<String>,
}

/// The ring status a peer announces, as far as liveness is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Announced {
    /// NORMAL, JOINING, LEAVING, MOVING...: alive or not, the heartbeat decides.
    Member,
    /// Stopped cleanly and said so.
    Shutdown,
    /// Left or removed from the ring: no longer a member.
    Gone,
}

/// One endpoint in one node's gossip state.
#[derive(Debug, Clone, PartialEq)]
pub struct GossipEntry {
    pub address: IpAddr,
    pub host_id: Option<String>,
    pub generation: f64,
    pub heartbeat: f64,
    pub announced: Announced,
}

pub async fn fetch(
    session: &Session,
    node: &Arc<Node>,
    timeout: Duration,
) -> Result<Vec<GossipEntry>, CqlError> {
    let rows = session::rows(session, session::pinned(QUERY, node, timeout)).await?;
    let mut entries = Vec::with_capacity(rows.rows_num());
    for row in rows.rows::<GossipRow>().map_err(CqlError::decode)? {
        entries.push(validate(row.map_err(CqlError::decode)?));
    }
    Ok(entries)
}

fn validate(row: GossipRow) -> GossipEntry {
    // status_with_port is the one 4.0+ nodes keep current; plain status can be null on the peer's own view.
    let status = row.status_with_port.or(row.status);
    GossipEntry {
        address: row.address,
        host_id: row.host_id,
        generation: number(row.generation.as_ref()).unwrap_or(f64::NAN),
        heartbeat: number(row.heartbeat.as_ref()).unwrap_or(f64::NAN),
        announced: announced(status.as_deref()),
    }
}

/// `NORMAL,-1817860154748060431` → member, `shutdown,true` → shutdown, `LEFT,...` → gone.
pub fn announced(status: Option<&str>) -> Announced {
    let state = status
        .and_then(|status| status.split(',').next())
        .unwrap_or("")
        .trim();
    if state.eq_ignore_ascii_case("shutdown") {
        Announced::Shutdown
    } else if state.eq_ignore_ascii_case("LEFT") || state.eq_ignore_ascii_case("removed") {
        Announced::Gone
    } else {
        Announced::Member
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PeerState {
    Up,
    Down,
    Unknown,
}

impl PeerState {
    pub const ALL: [PeerState; 3] = [PeerState::Up, PeerState::Down, PeerState::Unknown];

    pub fn as_str(self) -> &'static str {
        match self {
            PeerState::Up => "up",
            PeerState::Down => "down",
            PeerState::Unknown => "unknown",
        }
    }
}

/// What one observer thinks of one peer.
#[derive(Debug, Clone, PartialEq)]
pub struct PeerOpinion {
    pub address: IpAddr,
    pub host_id: Option<String>,
    pub state: PeerState,
}

#[derive(Debug, Clone, Copy)]
struct Heartbeat {
    generation: f64,
    heartbeat: f64,
    first_seen: Instant,
    last_moved: Option<Instant>,
}

/// One observer's heartbeat history of its peers.
#[derive(Debug, Default)]
pub struct GossipView {
    peers: HashMap<IpAddr, Heartbeat>,
}

impl GossipView {
    /// Judges every peer in the observer's gossip state. `observer` is the observing node's own host id,
    /// whose entry is skipped: a node that answered is up by definition.
    pub fn observe(
        &mut self,
        observer: &str,
        entries: &[GossipEntry],
        now: Instant,
        stale_after: Duration,
    ) -> Vec<PeerOpinion> {
        let mut opinions = Vec::with_capacity(entries.len());
        for entry in entries {
            if entry.host_id.as_deref() == Some(observer) || entry.announced == Announced::Gone {
                continue;
            }
            let state = self.judge(entry, now, stale_after);
            opinions.push(PeerOpinion {
                address: entry.address,
                host_id: entry.host_id.clone(),
                state,
            });
        }
        let present: Vec<IpAddr> = entries.iter().map(|entry| entry.address).collect();
        self.peers.retain(|address, _| present.contains(address));
        opinions
    }

    fn judge(&mut self, entry: &GossipEntry, now: Instant, stale_after: Duration) -> PeerState {
        let previous = self.peers.get(&entry.address).copied();
        // Bit comparison, so an unreadable (NaN) heartbeat never counts as moving.
        let moved = previous.is_some_and(|previous| {
            previous.generation.to_bits() != entry.generation.to_bits()
                || previous.heartbeat.to_bits() != entry.heartbeat.to_bits()
        });
        let first_seen = previous.map_or(now, |previous| previous.first_seen);
        let last_moved = if moved {
            Some(now)
        } else {
            previous.and_then(|previous| previous.last_moved)
        };
        self.peers.insert(
            entry.address,
            Heartbeat {
                generation: entry.generation,
                heartbeat: entry.heartbeat,
                first_seen,
                last_moved,
            },
        );
        if entry.announced == Announced::Shutdown {
            return PeerState::Down;
        }
        let quiet_since = last_moved.unwrap_or(first_seen);
        if now.saturating_duration_since(quiet_since) >= stale_after {
            return PeerState::Down;
        }
        if last_moved.is_some() {
            PeerState::Up
        } else {
            PeerState::Unknown
        }
    }
}

pub fn samples(labels: &NodeLabels, opinions: &[PeerOpinion], out: &mut Vec<Sample>) {
    let [node, dc, rack] = labels.values();
    for state in PeerState::ALL {
        let count = opinions
            .iter()
            .filter(|opinion| opinion.state == state)
            .count();
        // usize to f64: a peer count is tiny.
        out.push(PEERS.sample_with([node, dc, rack, state.as_str()], count as f64));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SELF_ID: &str = "b1303d1b-3828-4f75-a724-171d1ad1305c";
    const PEER_ID: &str = "d6d3cc15-13f0-407f-8b21-2f410f45e35b";

    fn entry(last_octet: u8, host_id: &str, heartbeat: f64, status: &str) -> GossipEntry {
        GossipEntry {
            address: IpAddr::from([127, 0, 0, last_octet]),
            host_id: Some(host_id.into()),
            generation: 1_795_999_137.0,
            heartbeat,
            announced: announced(Some(status)),
        }
    }

    fn state_of(opinions: &[PeerOpinion]) -> Vec<PeerState> {
        opinions.iter().map(|opinion| opinion.state).collect()
    }

    #[test]
    fn statuses_as_the_local_5_0_cluster_prints_them() {
        assert_eq!(
            announced(Some("NORMAL,-1817860154748060431")),
            Announced::Member
        );
        assert_eq!(announced(Some("shutdown,true")), Announced::Shutdown);
        assert_eq!(announced(Some("LEFT,-42,1700000000000")), Announced::Gone);
        assert_eq!(announced(None), Announced::Member);
    }

    #[test]
    fn a_moving_heartbeat_is_up_and_a_frozen_one_goes_down_after_the_window() {
        let stale = Duration::from_secs(20);
        let start = Instant::now();
        let mut view = GossipView::default();
        let me = entry(1, SELF_ID, 118.0, "NORMAL,1");
        let opinions = view.observe(
            SELF_ID,
            &[me.clone(), entry(2, PEER_ID, 56.0, "NORMAL,2")],
            start,
            stale,
        );
        assert_eq!(
            state_of(&opinions),
            vec![PeerState::Unknown],
            "no history on first sight; self skipped"
        );

        let later = start + Duration::from_secs(10);
        let opinions = view.observe(
            SELF_ID,
            &[me.clone(), entry(2, PEER_ID, 66.0, "NORMAL,2")],
            later,
            stale,
        );
        assert_eq!(state_of(&opinions), vec![PeerState::Up]);

        let frozen = later + Duration::from_secs(15);
        let opinions = view.observe(
            SELF_ID,
            &[me.clone(), entry(2, PEER_ID, 66.0, "NORMAL,2")],
            frozen,
            stale,
        );
        assert_eq!(
            state_of(&opinions),
            vec![PeerState::Up],
            "quiet for less than the window"
        );

        let dead = later + Duration::from_secs(21);
        let opinions = view.observe(
            SELF_ID,
            &[me, entry(2, PEER_ID, 66.0, "NORMAL,2")],
            dead,
            stale,
        );
        assert_eq!(state_of(&opinions), vec![PeerState::Down]);
    }

    #[test]
    fn a_clean_shutdown_is_down_at_once_and_left_peers_do_not_count() {
        let mut view = GossipView::default();
        let now = Instant::now();
        let opinions = view.observe(
            SELF_ID,
            &[
                entry(2, PEER_ID, 70.0, "shutdown,true"),
                entry(
                    3,
                    "0b0b0b0b-0000-0000-0000-000000000000",
                    9.0,
                    "LEFT,5,1700000000000",
                ),
            ],
            now,
            Duration::from_secs(20),
        );
        assert_eq!(state_of(&opinions), vec![PeerState::Down]);
        let mut out = Vec::new();
        samples(
            &NodeLabels::new("127.0.0.1", None, None),
            &opinions,
            &mut out,
        );
        let values: Vec<_> = out
            .iter()
            .map(|sample| (sample.label("state"), sample.value))
            .collect();
        assert_eq!(
            values,
            vec![
                (Some("up"), 0.0),
                (Some("down"), 1.0),
                (Some("unknown"), 0.0)
            ]
        );
    }

    #[test]
    fn a_restart_changes_the_generation_and_reads_as_up() {
        let stale = Duration::from_secs(20);
        let start = Instant::now();
        let mut view = GossipView::default();
        view.observe(
            SELF_ID,
            &[entry(2, PEER_ID, 5.0, "shutdown,true")],
            start,
            stale,
        );
        let mut restarted = entry(2, PEER_ID, 1.0, "NORMAL,2");
        restarted.generation += 600.0;
        let opinions = view.observe(
            SELF_ID,
            &[restarted],
            start + Duration::from_secs(30),
            stale,
        );
        assert_eq!(state_of(&opinions), vec![PeerState::Up]);
    }
}
