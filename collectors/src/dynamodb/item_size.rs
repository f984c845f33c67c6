//! Item sizes by DynamoDB's own sizing rules, and the histogram the sampled sizes go into.
//!
//! The rules, from the Developer Guide page "DynamoDB item sizes and formats"
//! (<https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/CapacityUnitCalculations.html>):
//!
//! - an item is the sum of its attributes; an attribute is the UTF-8 length of its name plus the size of its value;
//! - a string is its UTF-8 length; a binary value its raw (not base64) length;
//! - a number is "approximately" 1 byte per two significant digits, plus 1 byte; leading and trailing zeroes are
//!   trimmed, and there are at most 38 significant digits;
//! - null and Boolean values are 1 byte;
//! - a List or Map is 3 bytes of overhead plus its elements, and each element costs 1 byte more; a Map element
//!   also counts its key's UTF-8 length, like a top-level attribute name.
//!
//! The page says nothing about sets. They are sized here as the sum of their elements, each sized as the scalar it
//! holds, with no overhead: the convention of the community calculators (zaccharles/dynamodb-calculator) and an
//! estimate, like the page's own "approximately" for numbers. The page's per-item storage overhead (100 bytes for
//! indexing) is a storage-billing figure, not part of the item size that counts against the 400 KB limit and
//! capacity units, so it is not added.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;

/// Upper bounds (bytes) of the histogram buckets. Powers of two show where items cross DynamoDB's 1 KB write-unit
/// and 4 KB read-unit steps; the last finite bound is the 400 KB item size limit.
pub const ITEM_SIZE_BUCKETS: [f64; 14] = [
    64.0, 128.0, 256.0, 512.0, 1024.0, 2048.0, 4096.0, 8192.0, 16384.0, 32768.0, 65536.0, 131072.0,
    262144.0, 409600.0,
];

/// The size of an item in bytes, as DynamoDB counts it for the item size limit and capacity units.
pub fn item_size(item: &HashMap<String, AttributeValue>) -> u64 {
    item.iter()
        .map(|(name, value)| name.len() as u64 + value_size(value))
        .sum()
}

/// The size of one attribute value, its name excluded.
pub fn value_size(value: &AttributeValue) -> u64 {
    match value {
        AttributeValue::S(text) => text.len() as u64,
        AttributeValue::N(number) => number_size(number),
        AttributeValue::B(blob) => blob.as_ref().len() as u64,
        AttributeValue::Bool(_) | AttributeValue::Null(_) => 1,
        AttributeValue::Ss(texts) => texts.iter().map(|text| text.len() as u64).sum(),
        AttributeValue::Ns(numbers) => numbers.iter().map(|number| number_size(number)).sum(),
        AttributeValue::Bs(blobs) => blobs.iter().map(|blob| blob.as_ref().len() as u64).sum(),
        AttributeValue::L(elements) => {
            CONTAINER_OVERHEAD
                + elements
                    .iter()
                    .map(|element| ELEMENT_OVERHEAD + value_size(element))
                    .sum::<u64>()
        }
        AttributeValue::M(entries) => {
            CONTAINER_OVERHEAD
                + entries
                    .iter()
                    .map(|(key, element)| ELEMENT_OVERHEAD + key.len() as u64 + value_size(element))
                    .sum::<u64>()
        }
        // A type added to DynamoDB after this SDK was generated: its size is unknown, and 0 under-counts
        // rather than invents.
        _ => 0,
    }
}

const CONTAINER_OVERHEAD: u64 = 3;
const ELEMENT_OVERHEAD: u64 = 1;
const MAX_SIGNIFICANT_DIGITS: u64 = 38;

/// A number's size: one byte per two significant digits (rounded up), plus one.
///
/// Sign, decimal point and exponent are not digits; leading and trailing zeroes are trimmed, so `100` and
/// `0.001` have one significant digit and `0` none (1 byte, as the community calculators count it).
pub fn number_size(number: &str) -> u64 {
    let mantissa = match number.find(['e', 'E']) {
        Some(exponent_at) => &number[..exponent_at],
        None => number,
    };
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    let significant = digits.trim_start_matches('0').trim_end_matches('0');
    let significant_digits = (significant.len() as u64).min(MAX_SIGNIFICANT_DIGITS);
    significant_digits.div_ceil(2) + 1
}

/// A cumulative-over-time histogram of sampled item sizes, with Prometheus semantics: bucket counts, sum and
/// count only grow, so `rate()` and `histogram_quantile()` work on it.
#[derive(Debug, Clone, PartialEq)]
pub struct SizeHistogram {
    /// Observations per bucket (not cumulative); the last slot counts sizes above every finite bound.
    per_bucket: [u64; ITEM_SIZE_BUCKETS.len() + 1],
    sum: f64,
    count: u64,
}

impl Default for SizeHistogram {
    fn default() -> Self {
        SizeHistogram {
            per_bucket: [0; ITEM_SIZE_BUCKETS.len() + 1],
            sum: 0.0,
            count: 0,
        }
    }
}

impl SizeHistogram {
    pub fn observe(&mut self, size_bytes: u64) {
        let size = size_bytes as f64;
        let slot = ITEM_SIZE_BUCKETS
            .iter()
            .position(|bound| size <= *bound)
            .unwrap_or(ITEM_SIZE_BUCKETS.len());
        self.per_bucket[slot] += 1;
        self.sum += size;
        self.count += 1;
    }

    /// `(le, cumulative count)` per bucket, ending with `(+Inf, count)`: the `_bucket` series of the exposition.
    pub fn cumulative_buckets(&self) -> Vec<(f64, u64)> {
        let mut running = 0;
        let mut buckets = Vec::with_capacity(self.per_bucket.len());
        let bounds = ITEM_SIZE_BUCKETS.iter().copied().chain([f64::INFINITY]);
        for (bound, observed) in bounds.zip(self.per_bucket) {
            running += observed;
            buckets.push((bound, running));
        }
        buckets
    }

    /// The `_sum` series: total bytes of every item observed.
    pub fn sum(&self) -> f64 {
        self.sum
    }

    /// The `_count` series: items observed.
    pub fn count(&self) -> u64 {
        self.count
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_dynamodb::primitives::Blob;

    fn item(attributes: &[(&str, AttributeValue)]) -> HashMap<String, AttributeValue> {
        attributes
            .iter()
            .map(|(name, value)| ((*name).to_owned(), value.clone()))
            .collect()
    }

    #[test]
    fn numbers_count_significant_digits_only() {
        // 1 digit -> 1 + 1; 2 digits -> 1 + 1; 3 digits -> 2 + 1.
        assert_eq!(number_size("7"), 2);
        assert_eq!(number_size("42"), 2);
        assert_eq!(number_size("123"), 3);
        assert_eq!(number_size("-123.45"), 4);
        assert_eq!(number_size("1000000"), 2);
        assert_eq!(number_size("0.00012"), 2);
        assert_eq!(number_size("0"), 1);
        assert_eq!(number_size("1.5E+10"), 2);
        assert_eq!(number_size(&"9".repeat(40)), 20);
    }

    #[test]
    fn scalars_follow_the_documented_rules() {
        // "user_id" (7) + "u1" (2) = 9; "n" (1) + 123 (3) = 4; "ok" (2) + bool (1) = 3; "b" (1) + 4 raw bytes = 5;
        // "nil" (3) + null (1) = 4; "é" is 2 UTF-8 bytes in the name and the value.
        let sized = item(&[
            ("user_id", AttributeValue::S("u1".into())),
            ("n", AttributeValue::N("123".into())),
            ("ok", AttributeValue::Bool(true)),
            ("b", AttributeValue::B(Blob::new(vec![1, 2, 3, 4]))),
            ("nil", AttributeValue::Null(true)),
            ("é", AttributeValue::S("é".into())),
        ]);
        assert_eq!(item_size(&sized), 9 + 4 + 3 + 5 + 4 + 4);
    }

    #[test]
    fn lists_and_maps_pay_three_bytes_plus_one_per_element() {
        assert_eq!(value_size(&AttributeValue::L(Vec::new())), 3);
        assert_eq!(value_size(&AttributeValue::M(HashMap::new())), 3);
        // 3 + (1 + 2) + (1 + 2)
        let list = AttributeValue::L(vec![
            AttributeValue::S("ab".into()),
            AttributeValue::N("12".into()),
        ]);
        assert_eq!(value_size(&list), 9);
        // 3 + (1 + "k" 1 + "v" 1) + (1 + "list" 4 + 9)
        let map = AttributeValue::M(HashMap::from([
            ("k".to_owned(), AttributeValue::S("v".into())),
            ("list".to_owned(), list),
        ]));
        assert_eq!(value_size(&map), 3 + 3 + 14);
    }

    #[test]
    fn sets_are_the_sum_of_their_elements() {
        let strings = AttributeValue::Ss(vec!["a".into(), "bcd".into()]);
        assert_eq!(value_size(&strings), 4);
        let numbers = AttributeValue::Ns(vec!["1".into(), "12345".into()]);
        assert_eq!(value_size(&numbers), 2 + 4);
    }

    #[test]
    fn histogram_buckets_are_cumulative_with_an_infinite_top() {
        let mut histogram = SizeHistogram::default();
        for size in [10, 64, 65, 1024, 500_000] {
            histogram.observe(size);
        }
        let buckets = histogram.cumulative_buckets();
        assert_eq!(buckets.len(), ITEM_SIZE_BUCKETS.len() + 1);
        assert_eq!(buckets[0], (64.0, 2));
        assert_eq!(buckets[1], (128.0, 3));
        assert_eq!(buckets[4], (1024.0, 4));
        assert_eq!(buckets[13], (409600.0, 4));
        assert_eq!(buckets[14], (f64::INFINITY, 5));
        assert_eq!(histogram.count(), 5);
        assert_eq!(histogram.sum(), 501_163.0);
    }
}
