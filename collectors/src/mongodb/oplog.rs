//! The oplog window: time between the oldest and the newest entry of `local.oplog.rs` on a replica set member.
//!
//! Two `find`s with a `$natural` sort and `limit: 1` — one from each end of the capped collection — read one
//! entry each, whatever the oplog's size (rs.printReplicationInfo() computes the same "log length start to end").
//! The window is how long a secondary may stay away and still catch up without a full resync.

use mongodb::bson::{doc, Bson, Document};

use super::connection::{Conn, MongoError};
use super::fields;
use crate::metric::{MetricDesc, MetricKind, Sample};

pub const VIEW: &str = "oplog";

pub static WINDOW: MetricDesc = MetricDesc {
    name: "mongodb_oplog_window_seconds",
    help: "Time between the oldest and the newest oplog entry; NaN when the oplog is empty or unreadable",
    kind: MetricKind::Gauge,
    labels: &[],
};
pub static FIRST_ENTRY: MetricDesc = MetricDesc {
    name: "mongodb_oplog_first_entry_timestamp_seconds",
    help: "Time of the oldest entry still in the oplog",
    kind: MetricKind::Gauge,
    labels: &[],
};
pub static LAST_ENTRY: MetricDesc = MetricDesc {
    name: "mongodb_oplog_last_entry_timestamp_seconds",
    help: "Time of the newest entry in the oplog",
    kind: MetricKind::Gauge,
    labels: &[],
};

pub static DESCRIPTORS: &[&MetricDesc] = &[&WINDOW, &FIRST_ENTRY, &LAST_ENTRY];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OplogBounds {
    /// Seconds part of the oldest entry's `ts`.
    pub first: Option<u32>,
    pub last: Option<u32>,
}

/// `natural` is 1 for the oldest entry, -1 for the newest.
pub fn command(natural: i32) -> Document {
    doc! {
        "find": "oplog.rs",
        "filter": {},
        "sort": { "$natural": natural },
        "projection": { "ts": 1 },
        "limit": 1,
        "singleBatch": true,
    }
}

pub async fn fetch(conn: &Conn) -> Result<OplogBounds, MongoError> {
    let first = conn.command("local", command(1)).await?;
    let last = conn.command("local", command(-1)).await?;
    Ok(OplogBounds {
        first: entry_seconds(&first),
        last: entry_seconds(&last),
    })
}

/// The `ts` seconds of the single entry in a `find` answer's first batch.
pub fn entry_seconds(answer: &Document) -> Option<u32> {
    let entry = fields::at(answer, "cursor.firstBatch")
        .and_then(Bson::as_array)?
        .first()?
        .as_document()?;
    fields::timestamp_seconds_at(entry, "ts")
}

impl OplogBounds {
    pub fn window_seconds(&self) -> Option<f64> {
        let (first, last) = (self.first?, self.last?);
        Some(f64::from(last.saturating_sub(first)))
    }

    pub fn samples(&self, out: &mut Vec<Sample>) {
        out.push(WINDOW.sample(self.window_seconds().unwrap_or(f64::NAN)));
        if let Some(first) = self.first {
            out.push(FIRST_ENTRY.sample(f64::from(first)));
        }
        if let Some(last) = self.last {
            out.push(LAST_ENTRY.sample(f64::from(last)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mongodb::bson::Timestamp;

    fn answer(seconds: u32) -> Document {
        doc! { "cursor": { "firstBatch": [ { "ts": Timestamp { time: seconds, increment: 1 } } ],
        "id": 0_i64, "ns": "local.oplog.rs" }, "ok": 1.0 }
    }

    #[test]
    fn window_is_newest_minus_oldest() {
        let bounds = OplogBounds {
            first: entry_seconds(&answer(1_700_000_000)),
            last: entry_seconds(&answer(1_700_086_400)),
        };
        assert_eq!(bounds.window_seconds(), Some(86_400.0));
        let empty = doc! { "cursor": { "firstBatch": [], "id": 0_i64 }, "ok": 1.0 };
        let unknown = OplogBounds {
            first: entry_seconds(&empty),
            last: entry_seconds(&answer(5)),
        };
        assert_eq!(unknown.window_seconds(), None);
        let mut samples = Vec::new();
        unknown.samples(&mut samples);
        assert!(samples[0].value.is_nan());
    }

    #[test]
    fn each_end_is_one_entry_by_natural_order() {
        let oldest = command(1);
        assert_eq!(
            oldest
                .get_document("sort")
                .expect("sort")
                .get_i32("$natural"),
            Ok(1)
        );
        assert_eq!(oldest.get_i32("limit"), Ok(1));
        assert_eq!(
            command(-1)
                .get_document("sort")
                .expect("sort")
                .get_i32("$natural"),
            Ok(-1)
        );
    }
}
