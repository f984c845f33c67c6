//! Chunk counts per shard from `config.chunks`, the balance measure of servers before 6.0.3.
//!
//! One `$group` over the chunk catalog on the config servers, through the mongos: one row per shard, however
//! many collections. Before 6.0.3 the balancer equalised chunk counts, so their ratio is that era's imbalance.

use mongodb::bson::{doc, Document};

use super::connection::{Conn, MongoError};
use super::fields;
use super::sharded_data_distribution::{imbalance_ratio, IMBALANCE};
use crate::metric::{MetricDesc, MetricKind, Sample};

pub const VIEW: &str = "config_chunks";

pub static SHARD_CHUNKS: MetricDesc = MetricDesc {
    name: "mongodb_sharding_shard_chunks",
    help: "Chunks of sharded collections placed on the shard (config.chunks)",
    kind: MetricKind::Gauge,
    labels: &["shard"],
};

pub static DESCRIPTORS: &[&MetricDesc] = &[&SHARD_CHUNKS];

pub fn command() -> Document {
    doc! {
        "aggregate": "chunks",
        "pipeline": [
            { "$group": { "_id": "$shard", "chunks": { "$sum": 1 } } },
            { "$sort": { "_id": 1 } },
        ],
        "cursor": {},
    }
}

pub async fn fetch(conn: &Conn) -> Result<Vec<(String, f64)>, MongoError> {
    let rows = conn.documents("config", command()).await?;
    Ok(parse(&rows))
}

pub fn parse(rows: &[Document]) -> Vec<(String, f64)> {
    rows.iter()
        .filter_map(|row| {
            Some((
                fields::str_at(row, "_id")?.to_owned(),
                fields::number_at(row, "chunks")?,
            ))
        })
        .collect()
}

pub fn samples(chunks: &[(String, f64)], out: &mut Vec<Sample>) {
    for (shard, count) in chunks {
        out.push(SHARD_CHUNKS.sample_with([shard.as_str()], *count));
    }
    out.push(IMBALANCE.sample(imbalance_ratio(chunks.iter().map(|(_, count)| *count))));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunk_ratio_is_the_imbalance() {
        let chunks = parse(&[
            doc! { "_id": "shard01", "chunks": 12 },
            doc! { "_id": "shard02", "chunks": 4 },
        ]);
        let mut out = Vec::new();
        samples(&chunks, &mut out);
        assert_eq!(out.last().map(|sample| sample.value), Some(3.0));
    }
}
