//! `$shardedDataDistribution` on a mongos (6.0.3+): bytes and documents each shard owns, per sharded collection.
//!
//! Since 6.0.3 the balancer equalises data size rather than chunk counts, so size is what shows imbalance. The
//! imbalance ratio is the largest shard's owned bytes over the smallest's, among the shards that appear in the
//! answer: per collection (only the shards holding some of it are listed) and overall (each shard's bytes summed
//! over the collections). A shard holding nothing while another holds data is +Inf; no data at all is NaN.
//! Collections of excluded databases (config.system.sessions by default) count nowhere.

use std::collections::BTreeMap;

use mongodb::bson::{doc, Bson, Document};

use super::connection::{Conn, MongoError};
use super::fields;
use super::list_collections::DatabaseFilter;
use crate::metric::{MetricDesc, MetricKind, Sample};

pub const VIEW: &str = "sharded_data_distribution";
pub const STAGE: &str = "$shardedDataDistribution";

pub static SHARD_OWNED_BYTES: MetricDesc = MetricDesc {
    name: "mongodb_sharding_shard_owned_bytes",
    help: "Bytes of sharded-collection documents the shard owns, summed over the collections",
    kind: MetricKind::Gauge,
    labels: &["shard"],
};
pub static SHARD_OWNED_DOCUMENTS: MetricDesc = MetricDesc {
    name: "mongodb_sharding_shard_owned_documents",
    help: "Sharded-collection documents the shard owns, summed over the collections",
    kind: MetricKind::Gauge,
    labels: &["shard"],
};
pub static SHARD_ORPHANED_DOCUMENTS: MetricDesc = MetricDesc {
    name: "mongodb_sharding_shard_orphaned_documents",
    help: "Orphaned documents (left behind by migrations, awaiting cleanup) on the shard",
    kind: MetricKind::Gauge,
    labels: &["shard"],
};
pub static COLLECTION_OWNED_BYTES: MetricDesc = MetricDesc {
    name: "mongodb_sharding_collection_owned_bytes",
    help: "Bytes of the sharded collection's documents each shard owns",
    kind: MetricKind::Gauge,
    labels: &["database", "collection", "shard"],
};
pub static COLLECTION_IMBALANCE: MetricDesc = MetricDesc {
    name: "mongodb_sharding_collection_imbalance_ratio",
    help: "Largest over smallest owned bytes among the shards holding the collection; +Inf when one holds none",
    kind: MetricKind::Gauge,
    labels: &["database", "collection"],
};
pub static IMBALANCE: MetricDesc = MetricDesc {
    name: "mongodb_sharding_imbalance_ratio",
    help: "Largest over smallest shard: owned bytes since 6.0.3, chunk counts before; NaN without data",
    kind: MetricKind::Gauge,
    labels: &[],
};

pub static DESCRIPTORS: &[&MetricDesc] = &[
    &SHARD_OWNED_BYTES,
    &SHARD_OWNED_DOCUMENTS,
    &SHARD_ORPHANED_DOCUMENTS,
    &COLLECTION_OWNED_BYTES,
    &COLLECTION_IMBALANCE,
    &IMBALANCE,
];

#[derive(Debug, Clone, PartialEq)]
pub struct CollectionDistribution {
    pub database: String,
    pub collection: String,
    pub shards: Vec<ShardShare>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ShardShare {
    pub shard: String,
    pub owned_bytes: f64,
    pub owned_documents: f64,
    pub orphaned_documents: f64,
}

pub fn command() -> Document {
    doc! { "aggregate": 1, "pipeline": [ { STAGE: {} } ], "cursor": {} }
}

pub async fn fetch(conn: &Conn) -> Result<Vec<CollectionDistribution>, MongoError> {
    let rows = conn.documents("admin", command()).await?;
    parse(&rows).map_err(MongoError::Decode)
}

pub fn parse(rows: &[Document]) -> Result<Vec<CollectionDistribution>, fields::Missing> {
    let mut collections = Vec::with_capacity(rows.len());
    for row in rows {
        let namespace = fields::str_at(row, "ns").ok_or("distribution row has no ns")?;
        let (database, collection) = fields::split_namespace(namespace)
            .ok_or("distribution ns is not database.collection")?;
        let shards = row
            .get("shards")
            .and_then(Bson::as_array)
            .ok_or("distribution row has no shards")?
            .iter()
            .filter_map(Bson::as_document)
            .map(|share| {
                Ok(ShardShare {
                    shard: fields::str_at(share, "shardName")
                        .ok_or("distribution shard has no shardName")?
                        .to_owned(),
                    owned_bytes: fields::number_at(share, "ownedSizeBytes").unwrap_or(0.0),
                    owned_documents: fields::number_at(share, "numOwnedDocuments").unwrap_or(0.0),
                    orphaned_documents: fields::number_at(share, "numOrphanedDocs").unwrap_or(0.0),
                })
            })
            .collect::<Result<Vec<_>, &str>>()?;
        collections.push(CollectionDistribution {
            database: database.to_owned(),
            collection: collection.to_owned(),
            shards,
        });
    }
    Ok(collections)
}

/// Largest over smallest. NaN when nothing holds data (nothing to balance), +Inf when some shard holds none.
pub fn imbalance_ratio(sizes: impl IntoIterator<Item = f64>) -> f64 {
    let (min, max) = sizes
        .into_iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(min, max), size| {
            (min.min(size), max.max(size))
        });
    if max.is_nan() || max <= 0.0 {
        return f64::NAN;
    }
    if min <= 0.0 {
        return f64::INFINITY;
    }
    max / min
}

/// Samples for the selected collections. Per-collection series stop at `max_collections`; the per-shard sums
/// and the overall ratio still cover every selected collection.
pub fn samples(
    distribution: &[CollectionDistribution],
    filter: &DatabaseFilter,
    max_collections: usize,
    out: &mut Vec<Sample>,
) {
    let mut per_shard: BTreeMap<&str, (f64, f64, f64)> = BTreeMap::new();
    let selected = distribution
        .iter()
        .filter(|collection| filter.selects(&collection.database));
    for (position, collection) in selected.enumerate() {
        for share in &collection.shards {
            let totals = per_shard.entry(share.shard.as_str()).or_default();
            totals.0 += share.owned_bytes;
            totals.1 += share.owned_documents;
            totals.2 += share.orphaned_documents;
        }
        if position >= max_collections {
            continue;
        }
        let (database, name) = (collection.database.as_str(), collection.collection.as_str());
        for share in &collection.shards {
            out.push(
                COLLECTION_OWNED_BYTES
                    .sample_with([database, name, share.shard.as_str()], share.owned_bytes),
            );
        }
        out.push(COLLECTION_IMBALANCE.sample_with(
            [database, name],
            imbalance_ratio(collection.shards.iter().map(|share| share.owned_bytes)),
        ));
    }
    for (shard, (bytes, documents, orphans)) in &per_shard {
        out.push(SHARD_OWNED_BYTES.sample_with([shard], *bytes));
        out.push(SHARD_OWNED_DOCUMENTS.sample_with([shard], *documents));
        out.push(SHARD_ORPHANED_DOCUMENTS.sample_with([shard], *orphans));
    }
    out.push(IMBALANCE.sample(imbalance_ratio(
        per_shard.values().map(|(bytes, _, _)| *bytes),
    )));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ratio_edges() {
        assert_eq!(imbalance_ratio([300.0, 100.0, 150.0]), 3.0);
        assert_eq!(imbalance_ratio([366.0, 366.0]), 1.0);
        assert_eq!(imbalance_ratio([10.0, 0.0]), f64::INFINITY);
        assert!(imbalance_ratio([0.0, 0.0]).is_nan());
        assert!(imbalance_ratio([]).is_nan());
    }

    #[test]
    fn excluded_databases_count_nowhere() {
        let rows = [
            doc! { "ns": "config.system.sessions", "shards": [
            { "shardName": "s1", "numOrphanedDocs": 0, "numOwnedDocuments": 18,
              "ownedSizeBytes": 1782, "orphanedSizeBytes": 0 } ] },
            doc! { "ns": "shop.orders", "shards": [
            { "shardName": "s1", "numOrphanedDocs": 0, "numOwnedDocuments": 2,
              "ownedSizeBytes": 200, "orphanedSizeBytes": 0 },
            { "shardName": "s2", "numOrphanedDocs": 1, "numOwnedDocuments": 1,
              "ownedSizeBytes": 100, "orphanedSizeBytes": 50 } ] },
        ];
        let distribution = parse(&rows).expect("distribution");
        let filter = DatabaseFilter {
            include: Vec::new(),
            exclude: vec!["config".into()],
        };
        let mut out = Vec::new();
        samples(&distribution, &filter, 100, &mut out);
        let overall = out.iter().find(|sample| sample.name() == IMBALANCE.name);
        assert_eq!(overall.map(|sample| sample.value), Some(2.0));
        assert!(!out
            .iter()
            .any(|sample| sample.label("database") == Some("config")));
    }
}
