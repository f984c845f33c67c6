//! The wire format of remote-write 1.0 (`prompb/remote.proto` and `prompb/types.proto` of Prometheus):
//!
//! ```text
//! message WriteRequest { repeated TimeSeries timeseries = 1; }
//! message TimeSeries   { repeated Label labels = 1; repeated Sample samples = 2; }
//! message Label        { string name = 1; string value = 2; }
//! message Sample       { double value = 1; int64 timestamp = 2; }   // milliseconds since the epoch
//! ```
//!
//! Each sample becomes one `timeseries` entry, field key included: a `WriteRequest` of any batch is then just
//! its entries one after the other, and one encoding serves every endpoint.

use std::collections::BTreeMap;
use std::sync::Arc;

use prost::encoding::{encode_key, encode_varint, encoded_len_varint, WireType};

/// One sample, encoded as a `WriteRequest.timeseries` entry.
#[derive(Debug, Clone)]
pub struct Entry {
    pub bytes: Arc<[u8]>,
    pub timestamp_ms: i64,
}

/// Encodes samples with the endpoint-independent external labels added (a series' own label of the same name
/// wins, as in Prometheus).
#[derive(Debug, Clone, Default)]
pub struct SeriesEncoder {
    external: Vec<(String, String)>,
}

impl SeriesEncoder {
    pub fn new(external_labels: &BTreeMap<String, String>) -> SeriesEncoder {
        SeriesEncoder {
            external: external_labels
                .iter()
                .map(|(name, value)| (name.clone(), value.clone()))
                .collect(),
        }
    }

    /// One sample of the series `name{labels}`. `labels` may come in any order; a repeated name keeps its first
    /// value.
    pub fn entry<'a>(
        &'a self,
        name: &'a str,
        labels: impl IntoIterator<Item = (&'a str, &'a str)>,
        value: f64,
        timestamp_ms: i64,
    ) -> Entry {
        let mut scratch: Vec<(&str, &str)> = Vec::with_capacity(16);
        scratch.push(("__name__", name));
        scratch.extend(labels);
        // Stable: of two labels with one name, the first given stays first and survives the dedup.
        scratch.sort_by(|a, b| a.0.cmp(b.0));
        scratch.dedup_by(|later, earlier| later.0 == earlier.0);
        for (label, label_value) in &self.external {
            if let Err(at) = scratch.binary_search_by(|(name, _)| (*name).cmp(label.as_str())) {
                scratch.insert(at, (label.as_str(), label_value.as_str()));
            }
        }
        Entry {
            bytes: encode_entry(&scratch, value, timestamp_ms).into(),
            timestamp_ms,
        }
    }
}

fn encode_entry(labels: &[(&str, &str)], value: f64, timestamp_ms: i64) -> Vec<u8> {
    let label_len = |name: &str, value: &str| {
        1 + encoded_len_varint(name.len() as u64)
            + name.len()
            + 1
            + encoded_len_varint(value.len() as u64)
            + value.len()
    };
    // Two's complement, as protobuf's int64 encodes a negative value.
    let timestamp = timestamp_ms as u64;
    let sample_len = 1 + 8 + 1 + encoded_len_varint(timestamp);
    let series_len: usize = labels
        .iter()
        .map(|(name, value)| {
            let len = label_len(name, value);
            1 + encoded_len_varint(len as u64) + len
        })
        .sum::<usize>()
        + 1
        + encoded_len_varint(sample_len as u64)
        + sample_len;
    let mut out = Vec::with_capacity(1 + encoded_len_varint(series_len as u64) + series_len);
    encode_key(1, WireType::LengthDelimited, &mut out);
    encode_varint(series_len as u64, &mut out);
    for (name, value) in labels {
        encode_key(1, WireType::LengthDelimited, &mut out);
        encode_varint(label_len(name, value) as u64, &mut out);
        for (tag, text) in [(1, name), (2, value)] {
            encode_key(tag, WireType::LengthDelimited, &mut out);
            encode_varint(text.len() as u64, &mut out);
            out.extend_from_slice(text.as_bytes());
        }
    }
    encode_key(2, WireType::LengthDelimited, &mut out);
    encode_varint(sample_len as u64, &mut out);
    encode_key(1, WireType::SixtyFourBit, &mut out);
    out.extend_from_slice(&value.to_le_bytes());
    encode_key(2, WireType::Varint, &mut out);
    encode_varint(timestamp, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    // The messages as prost generates them from Prometheus's .proto files: an independent decoder.
    #[derive(Clone, PartialEq, prost::Message)]
    struct WriteRequest {
        #[prost(message, repeated, tag = "1")]
        timeseries: Vec<TimeSeries>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    struct TimeSeries {
        #[prost(message, repeated, tag = "1")]
        labels: Vec<Label>,
        #[prost(message, repeated, tag = "2")]
        samples: Vec<Sample>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    struct Label {
        #[prost(string, tag = "1")]
        name: String,
        #[prost(string, tag = "2")]
        value: String,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    struct Sample {
        #[prost(double, tag = "1")]
        value: f64,
        #[prost(int64, tag = "2")]
        timestamp: i64,
    }

    fn labels(series: &TimeSeries) -> Vec<(&str, &str)> {
        series
            .labels
            .iter()
            .map(|label| (label.name.as_str(), label.value.as_str()))
            .collect()
    }

    #[test]
    fn entries_concatenate_into_a_write_request_prost_decodes() {
        let mut external = BTreeMap::new();
        external.insert("cluster".to_owned(), "eu-1".to_owned());
        external.insert("target".to_owned(), "never used".to_owned());
        let encoder = SeriesEncoder::new(&external);
        let long = "é".repeat(200);
        let entries = [
            encoder.entry(
                "db_up",
                [("target", "pg"), ("db", "postgres")],
                1.0,
                1_700_000_000_123,
            ),
            encoder.entry(
                "pg_x",
                [("target", "pg"), ("target", "second"), ("v", long.as_str())],
                f64::NAN,
                -5,
            ),
        ];
        let body: Vec<u8> = entries
            .iter()
            .flat_map(|entry| entry.bytes.iter().copied())
            .collect();
        let request = WriteRequest::decode(body.as_slice()).expect("decodes");
        assert_eq!(request.timeseries.len(), 2);
        assert_eq!(
            labels(&request.timeseries[0]),
            [
                ("__name__", "db_up"),
                ("cluster", "eu-1"),
                ("db", "postgres"),
                ("target", "pg"),
            ]
        );
        assert_eq!(
            request.timeseries[0].samples,
            [Sample {
                value: 1.0,
                timestamp: 1_700_000_000_123
            }]
        );
        assert_eq!(
            labels(&request.timeseries[1]),
            [
                ("__name__", "pg_x"),
                ("cluster", "eu-1"),
                ("target", "pg"),
                ("v", long.as_str()),
            ]
        );
        assert!(request.timeseries[1].samples[0].value.is_nan());
        assert_eq!(request.timeseries[1].samples[0].timestamp, -5);
        // The encoded length is exactly what prost would write for the same message.
        assert_eq!(body.len(), request.encoded_len());
    }
}
