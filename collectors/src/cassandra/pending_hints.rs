//! Hints held for each replica, from every reachable node's `system_views.pending_hints` (4.1+).
//!
//! A hint is a write a replica missed while it was down or slow, stored by the coordinator until it can be
//! delivered. The age of the oldest hint file held for a replica is how far that replica's data trails the
//! writes the cluster accepted for it: Cassandra's closest thing to replication lag, and what
//! `db_replication_lag_seconds` reports per replica (see `availability`). File timestamps bound the age from
//! below only as finely as hint files roll over.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use scylla::client::session::Session;
use scylla::cluster::Node;
use scylla::value::{CqlTimestamp, CqlValue};
use scylla::DeserializeRow;

use super::session::{self, CqlError};
use super::values::number;

pub const VIEW: &str = "system_views.pending_hints";
const QUERY: &str = include_str!("pending_hints.cql");

#[derive(DeserializeRow)]
struct HintsRow {
    host_id: CqlValue,
    files: Option<CqlValue>,
    oldest: Option<CqlTimestamp>,
}

/// Hints one node holds for one replica.
#[derive(Debug, Clone, PartialEq)]
pub struct HintFiles {
    pub host_id: String,
    pub files: f64,
    pub oldest_ms: Option<i64>,
}

pub async fn fetch(
    session: &Session,
    node: &Arc<Node>,
    timeout: Duration,
) -> Result<Vec<HintFiles>, CqlError> {
    let rows = session::rows(session, session::pinned(QUERY, node, timeout)).await?;
    let mut hints = Vec::with_capacity(rows.rows_num());
    for row in rows.rows::<HintsRow>().map_err(CqlError::decode)? {
        if let Some(files) = validate(row.map_err(CqlError::decode)?) {
            hints.push(files);
        }
    }
    Ok(hints)
}

fn validate(row: HintsRow) -> Option<HintFiles> {
    let host_id = match row.host_id {
        CqlValue::Uuid(uuid) => uuid.to_string(),
        CqlValue::Text(text) => text,
        _ => return None,
    };
    Some(HintFiles {
        host_id,
        files: number(row.files.as_ref()).unwrap_or(0.0),
        oldest_ms: row.oldest.map(|timestamp| timestamp.0),
    })
}

/// All hints the reachable nodes hold for one replica.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Backlog {
    pub files: f64,
    /// Age of the oldest hint, each holder's age measured on its own clock; `None` when no hint is dated.
    pub oldest_age_seconds: Option<f64>,
}

/// Sums every holder's hints per replica host id. Each holder comes with its clock (`now_ms`) at the poll.
pub fn backlog_by_replica(holders: &[(i64, Vec<HintFiles>)]) -> HashMap<String, Backlog> {
    let mut backlog: HashMap<String, Backlog> = HashMap::new();
    for (now_ms, hints) in holders {
        for hint in hints {
            let entry = backlog.entry(hint.host_id.clone()).or_default();
            entry.files += hint.files;
            let Some(oldest_ms) = hint.oldest_ms else {
                continue;
            };
            // Milliseconds to seconds; a clock behind the file's timestamp means "just now", not negative.
            let age = ((now_ms - oldest_ms) as f64 / 1000.0).max(0.0);
            entry.oldest_age_seconds =
                Some(entry.oldest_age_seconds.map_or(age, |known| known.max(age)));
        }
    }
    backlog
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_use_each_holders_clock_and_keep_the_oldest() {
        let replica = "d6d3cc15-13f0-407f-8b21-2f410f45e35b".to_owned();
        let holders = vec![
            (
                100_000,
                vec![HintFiles {
                    host_id: replica.clone(),
                    files: 2.0,
                    oldest_ms: Some(40_000),
                }],
            ),
            (
                101_000,
                vec![HintFiles {
                    host_id: replica.clone(),
                    files: 1.0,
                    oldest_ms: Some(91_000),
                }],
            ),
        ];
        let backlog = backlog_by_replica(&holders);
        assert_eq!(
            backlog.get(&replica),
            Some(&Backlog {
                files: 3.0,
                oldest_age_seconds: Some(60.0)
            })
        );
    }

    #[test]
    fn uuid_and_text_host_ids_are_both_read() {
        let row = HintsRow {
            host_id: CqlValue::Text("abc".into()),
            files: Some(CqlValue::Int(4)),
            oldest: None,
        };
        assert_eq!(
            validate(row),
            Some(HintFiles {
                host_id: "abc".into(),
                files: 4.0,
                oldest_ms: None
            })
        );
    }
}
