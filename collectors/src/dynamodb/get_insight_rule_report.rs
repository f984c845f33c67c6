//! CloudWatch GetInsightRuleReport of a table's Contributor Insights rules: its hottest partition keys.
//!
//! Partition-key values are application data and can be personal (a user id, an e-mail address), and
//! UpdateContributorInsights' own documentation warns they appear in plaintext. So keys are exported as a short
//! stable hash by default, and in clear only when `hash_keys` is off. The hash (FNV-1a, 64 bits, hex) makes a key
//! recognisable across polls and comparable with a hash computed by hand; it is pseudonymisation, not
//! anonymisation: a key drawn from a small space can be found by hashing candidates.

use aws_sdk_cloudwatch::operation::get_insight_rule_report::GetInsightRuleReportOutput;

use crate::metric::{MetricDesc, MetricKind, Sample};

use super::api_usage::{Api, PollUsage};
use super::client::{api_error, ApiError};
use super::describe_contributor_insights::{InsightRule, KeyKind};
use super::get_metric_data::Window;

pub const VIEW: &str = "get_insight_rule_report";

pub static HOT_KEYS: MetricDesc = MetricDesc {
    name: "dynamodb_hot_key_events_per_second",
    help: "Requests (kind=accessed) or throttled requests (kind=throttled) per second of one of the table's top partition keys, from Contributor Insights; key hashed unless hash_keys is off",
    kind: MetricKind::Gauge,
    labels: &["table", "kind", "key"],
};

pub static DESCRIPTORS: &[&MetricDesc] = &[&HOT_KEYS];

/// One of the top contributors of a rule.
#[derive(Debug, Clone, PartialEq)]
pub struct HotKey {
    /// The hash of the key (or the key itself when hashing is off).
    pub key: String,
    pub events_per_second: f64,
}

pub async fn fetch(
    client: &aws_sdk_cloudwatch::Client,
    rule: &InsightRule,
    window: Window,
    top_n: u32,
    usage: &mut PollUsage,
) -> Result<GetInsightRuleReportOutput, ApiError> {
    usage.call(Api::GetInsightRuleReport);
    usage.metrics_requested(1);
    client
        .get_insight_rule_report()
        .rule_name(&rule.name)
        .start_time(window.start_time())
        .end_time(window.end_time())
        .period((window.end - window.start) as i32)
        .max_contributor_count(top_n.clamp(1, 100) as i32)
        .send()
        .await
        .map_err(|error| api_error(&error))
}

/// The top `top_n` contributors by events in the window, highest first.
pub fn top_keys(
    output: &GetInsightRuleReportOutput,
    window: Window,
    top_n: usize,
    hash_keys: bool,
) -> Vec<HotKey> {
    let mut keys: Vec<HotKey> = output
        .contributors()
        .iter()
        .filter_map(|contributor| {
            let events = contributor.approximate_aggregate_value()?;
            Some(HotKey {
                key: key_label(contributor.keys(), hash_keys),
                events_per_second: events / window.seconds(),
            })
        })
        .collect();
    keys.sort_by(|a, b| b.events_per_second.total_cmp(&a.events_per_second));
    keys.truncate(top_n);
    keys
}

pub fn samples(table: &str, kind: KeyKind, keys: &[HotKey], out: &mut Vec<Sample>) {
    for key in keys {
        out.push(HOT_KEYS.sample_with(
            [table, kind.as_str(), key.key.as_str()],
            key.events_per_second,
        ));
    }
}

/// A contributor's key values as one label value: the values joined by `/`, or their hash.
pub fn key_label(values: &[String], hash_keys: bool) -> String {
    if hash_keys {
        // The unit separator cannot be confused with a character of a printable key, so ("a/b") and ("a", "b")
        // hash differently.
        format!("{:016x}", fnv1a_64(values.join("\u{1f}").as_bytes()))
    } else {
        values.join("/")
    }
}

/// FNV-1a, 64 bits: stable across platforms and Rust releases, unlike `DefaultHasher`.
pub fn fnv1a_64(bytes: &[u8]) -> u64 {
    const OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    bytes.iter().fold(OFFSET_BASIS, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(PRIME)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_cloudwatch::types::InsightRuleContributor;

    #[test]
    fn fnv_matches_the_reference_vectors() {
        // From the FNV reference test suite (isthe.com/chongo/tech/comp/fnv).
        assert_eq!(fnv1a_64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a_64(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a_64(b"foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn keys_are_hashed_unless_asked_not_to() {
        let keys = vec!["user-42".to_owned()];
        let hashed = key_label(&keys, true);
        assert_eq!(hashed.len(), 16);
        assert!(!hashed.contains("user"));
        assert_eq!(hashed, key_label(&keys, true));
        assert_eq!(key_label(&keys, false), "user-42");
        assert_ne!(
            key_label(&["a/b".to_owned()], true),
            key_label(&["a".to_owned(), "b".to_owned()], true)
        );
    }

    #[test]
    fn top_keys_are_sorted_and_bounded() {
        let contributor = |key: &str, value: f64| {
            InsightRuleContributor::builder()
                .keys(key)
                .approximate_aggregate_value(value)
                .build()
        };
        let output = GetInsightRuleReportOutput::builder()
            .contributors(contributor("a", 60.0))
            .contributors(contributor("b", 600.0))
            .contributors(contributor("c", 120.0))
            .build();
        let window = Window { start: 0, end: 60 };
        let keys = top_keys(&output, window, 2, false);
        assert_eq!(
            keys,
            vec![
                HotKey {
                    key: "b".into(),
                    events_per_second: 10.0
                },
                HotKey {
                    key: "c".into(),
                    events_per_second: 2.0
                }
            ]
        );
    }
}
