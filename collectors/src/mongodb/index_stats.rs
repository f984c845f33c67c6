//! `$indexStats` per collection: how often each index is used, and which indexes were never used.
//!
//! `accesses.ops` counts from `accesses.since` (the server's start, or the index's creation or last change) and
//! per node: through a mongos there is one row per shard host. The exported counter is built from deltas per
//! host, so a host that restarts (new `since`, smaller `ops`) adds its new count instead of making the sum go
//! backwards. An index is unused when no host counted an access since its `since`.

use std::collections::{HashMap, HashSet};

use mongodb::bson::{doc, Document};

use super::connection::{classify, codes, Conn, MongoError};
use super::fields;
use super::list_collections::Namespace;
use crate::error::ErrorKind;
use crate::metric::{bool_value, MetricDesc, MetricKind, Sample};

pub const VIEW: &str = "index_stats";
pub const STAGE: &str = "$indexStats";

pub static ACCESSES: MetricDesc = MetricDesc {
    name: "mongodb_index_accesses_total",
    help: "Operations that used the index, summed over the hosts that hold it (from $indexStats accesses.ops deltas)",
    kind: MetricKind::Counter,
    labels: &["database", "collection", "index"],
};
pub static UNUSED: MetricDesc = MetricDesc {
    name: "mongodb_index_unused",
    help: "1 when no operation used the index since accesses.since on any host holding it",
    kind: MetricKind::Gauge,
    labels: &["database", "collection", "index"],
};
pub static SINCE: MetricDesc = MetricDesc {
    name: "mongodb_index_accesses_since_timestamp_seconds",
    help: "Start of the index's usage count (server start, index creation or change), latest over its hosts",
    kind: MetricKind::Gauge,
    labels: &["database", "collection", "index"],
};
pub static COLLECTIONS: MetricDesc = MetricDesc {
    name: "mongodb_index_stats_collections",
    help: "Collections whose index usage was read in the last round",
    kind: MetricKind::Gauge,
    labels: &[],
};
pub static COLLECTIONS_SKIPPED: MetricDesc = MetricDesc {
    name: "mongodb_index_stats_collections_skipped",
    help: "Collections not read because the max_collections cap was reached",
    kind: MetricKind::Gauge,
    labels: &[],
};

pub static DESCRIPTORS: &[&MetricDesc] = &[
    &ACCESSES,
    &UNUSED,
    &SINCE,
    &COLLECTIONS,
    &COLLECTIONS_SKIPPED,
];

/// One row of `$indexStats`: one index on one host.
#[derive(Debug, Clone, PartialEq)]
pub struct IndexAccess {
    pub database: String,
    pub collection: String,
    pub index: String,
    pub host: String,
    pub ops: f64,
    pub since_millis: Option<i64>,
}

/// What one round of `$indexStats` over the discovered collections produced.
#[derive(Debug, Default)]
pub struct IndexRound {
    pub accesses: Vec<IndexAccess>,
    pub collections: usize,
    /// A collection that failed for another reason than being dropped meanwhile; the others were still read.
    pub partial_failure: Option<ErrorKind>,
}

pub fn command(collection: &str) -> Document {
    doc! { "aggregate": collection, "pipeline": [ { STAGE: {} } ], "cursor": {} }
}

/// Reads every namespace. A refusal that concerns the server as a whole (stage unsupported, connection gone)
/// ends the round with that error; anything else is remembered and the next collection is read.
pub async fn fetch(conn: &Conn, namespaces: &[Namespace]) -> Result<IndexRound, MongoError> {
    let mut round = IndexRound::default();
    for namespace in namespaces {
        let rows = match conn
            .documents(&namespace.database, command(&namespace.collection))
            .await
        {
            Ok(rows) => rows,
            // Dropped between listCollections and now.
            Err(error) if error.code() == Some(codes::NAMESPACE_NOT_FOUND) => continue,
            Err(error) => {
                let kind = classify(&error);
                if matches!(kind, ErrorKind::Connect | ErrorKind::Unsupported) {
                    return Err(error);
                }
                round.partial_failure.get_or_insert(kind);
                continue;
            }
        };
        round.collections += 1;
        round
            .accesses
            .extend(parse(&namespace.database, &namespace.collection, &rows));
    }
    Ok(round)
}

/// Rows without a name or an ops count are skipped: they cannot be attributed or counted.
pub fn parse(database: &str, collection: &str, rows: &[Document]) -> Vec<IndexAccess> {
    rows.iter()
        .filter_map(|row| {
            Some(IndexAccess {
                database: database.to_owned(),
                collection: collection.to_owned(),
                index: fields::str_at(row, "name")?.to_owned(),
                host: fields::str_at(row, "host").unwrap_or_default().to_owned(),
                ops: fields::number_at(row, "accesses.ops")?,
                since_millis: fields::date_millis_at(row, "accesses.since"),
            })
        })
        .collect()
}

type IndexKey = (String, String, String);
type HostKey = (String, String, String, String);

/// Per-host counts of the previous round and the running totals built from their deltas.
#[derive(Debug, Default)]
pub struct IndexStatsState {
    hosts: HashMap<HostKey, (f64, Option<i64>)>,
    totals: HashMap<IndexKey, f64>,
}

/// One index after a round.
#[derive(Debug, Clone, PartialEq)]
pub struct IndexUsage {
    pub database: String,
    pub collection: String,
    pub index: String,
    pub accesses_total: f64,
    pub unused: bool,
    pub since_millis: Option<i64>,
}

impl IndexStatsState {
    /// Folds a round into the totals. Indexes and hosts not in the round are forgotten, so a dropped index or
    /// collection does not keep memory or series alive.
    pub fn update(&mut self, accesses: &[IndexAccess]) -> Vec<IndexUsage> {
        let mut usages: Vec<IndexUsage> = Vec::new();
        let mut positions: HashMap<IndexKey, usize> = HashMap::new();
        let mut seen_hosts: HashSet<HostKey> = HashSet::new();
        let previous_totals = std::mem::take(&mut self.totals);

        for access in accesses {
            let index_key = (
                access.database.clone(),
                access.collection.clone(),
                access.index.clone(),
            );
            let host_key = (
                access.database.clone(),
                access.collection.clone(),
                access.index.clone(),
                access.host.clone(),
            );
            let delta = match self.hosts.get(&host_key) {
                Some((ops, since)) if *since == access.since_millis && access.ops >= *ops => {
                    access.ops - ops
                }
                // A host seen for the first time, or whose count restarted: all of its count is new to the total
                // (a new index starts at its current count; its history is real, only unseen).
                _ => access.ops,
            };
            self.hosts
                .insert(host_key.clone(), (access.ops, access.since_millis));
            seen_hosts.insert(host_key);

            let position = *positions.entry(index_key.clone()).or_insert_with(|| {
                usages.push(IndexUsage {
                    database: access.database.clone(),
                    collection: access.collection.clone(),
                    index: access.index.clone(),
                    accesses_total: previous_totals.get(&index_key).copied().unwrap_or(0.0),
                    unused: true,
                    since_millis: None,
                });
                usages.len() - 1
            });
            let usage = &mut usages[position];
            usage.accesses_total += delta;
            usage.unused &= access.ops <= 0.0;
            usage.since_millis = usage.since_millis.max(access.since_millis);
        }

        self.hosts.retain(|key, _| seen_hosts.contains(key));
        self.totals = usages
            .iter()
            .map(|usage| {
                (
                    (
                        usage.database.clone(),
                        usage.collection.clone(),
                        usage.index.clone(),
                    ),
                    usage.accesses_total,
                )
            })
            .collect();
        usages
    }
}

impl IndexUsage {
    pub fn samples(&self, out: &mut Vec<Sample>) {
        let labels = [
            self.database.as_str(),
            self.collection.as_str(),
            self.index.as_str(),
        ];
        out.push(ACCESSES.sample_with(labels, self.accesses_total));
        out.push(UNUSED.sample_with(labels, bool_value(self.unused)));
        if let Some(since) = self.since_millis {
            out.push(SINCE.sample_with(labels, since as f64 / 1000.0));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn access(index: &str, host: &str, ops: f64, since: i64) -> IndexAccess {
        IndexAccess {
            database: "shop".into(),
            collection: "orders".into(),
            index: index.into(),
            host: host.into(),
            ops,
            since_millis: Some(since),
        }
    }

    #[test]
    fn totals_grow_by_deltas_and_survive_a_host_restart() {
        let mut state = IndexStatsState::default();
        let first = state.update(&[
            access("sku_1", "a:1", 5.0, 100),
            access("sku_1", "b:1", 2.0, 100),
        ]);
        assert_eq!(first[0].accesses_total, 7.0);
        let second = state.update(&[
            access("sku_1", "a:1", 8.0, 100),
            access("sku_1", "b:1", 2.0, 100),
        ]);
        assert_eq!(second[0].accesses_total, 10.0);
        // Host b restarted: its count starts again from 1 with a new `since`.
        let third = state.update(&[
            access("sku_1", "a:1", 8.0, 100),
            access("sku_1", "b:1", 1.0, 500),
        ]);
        assert_eq!(third[0].accesses_total, 11.0);
        assert_eq!(third[0].since_millis, Some(500));
        assert!(!third[0].unused);
    }

    #[test]
    fn unused_means_no_host_counted_an_access() {
        let mut state = IndexStatsState::default();
        let usages = state.update(&[
            access("price_1", "a:1", 0.0, 100),
            access("price_1", "b:1", 0.0, 100),
            access("type_1", "a:1", 0.0, 100),
            access("type_1", "b:1", 3.0, 100),
        ]);
        let unused: Vec<&str> = usages
            .iter()
            .filter(|usage| usage.unused)
            .map(|usage| usage.index.as_str())
            .collect();
        assert_eq!(unused, vec!["price_1"]);
    }

    #[test]
    fn dropped_indexes_are_forgotten() {
        let mut state = IndexStatsState::default();
        state.update(&[access("old_1", "a:1", 4.0, 100)]);
        state.update(&[access("new_1", "a:1", 1.0, 100)]);
        // Recreated under the old name: starts from its own count, not the forgotten total.
        let usages = state.update(&[access("old_1", "a:1", 1.0, 900)]);
        assert_eq!(usages[0].accesses_total, 1.0);
    }
}
