//! Scan, sampled: the item-size distribution of a table, which neither CloudWatch nor DescribeTable gives
//! (DescribeTable's TableSizeBytes / ItemCount is a six-hour-old mean).
//!
//! A sample is a few eventually consistent Scan pages (half the read cost of strongly consistent ones), with
//! ReturnConsumedCapacity TOTAL, that stops at whichever comes first: the read-capacity budget spent, the item
//! cap reached, or the end of the table. The budget is checked after each page, so a sample can overshoot it by
//! one page; page sizes adapt to the capacity measured so far to keep that page small, and DynamoDB caps a page
//! at 1 MB (128 read units, eventually consistent). Each sample resumes where the previous one stopped, so over
//! time the samples walk the whole table instead of re-reading its first partition; after the end of the table
//! the next sample starts over.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::{AttributeValue, ReturnConsumedCapacity};

use crate::metric::{MetricDesc, MetricKind, Sample};

use super::api_usage::{Api, PollUsage};
use super::client::{api_error, ApiError};
use super::item_size::{item_size, SizeHistogram};

pub const VIEW: &str = "scan_item_sizes";

/// The first page is small because nothing is known yet about the table's item sizes.
const FIRST_PAGE_ITEMS: u32 = 25;
const MAX_PAGE_ITEMS: u32 = 1000;
/// A bound on pages per sample, against tables where every page is nearly empty (filtered, or sparse).
const MAX_PAGES: usize = 100;
/// One eventually consistent read unit covers 8 KB: 4 KB per unit, half price.
const BYTES_PER_EVENTUAL_READ_UNIT: f64 = 8192.0;

pub static ITEM_SIZE: MetricDesc = MetricDesc {
    name: "dynamodb_item_size_bytes",
    help: "Sizes of the items the sampling Scans measured since the collector started, by DynamoDB's sizing rules",
    kind: MetricKind::Histogram,
    labels: &["table"],
};
pub static MAX_SIZE: MetricDesc = MetricDesc {
    name: "dynamodb_item_size_max_bytes",
    help: "Largest item seen by the latest sample of the table, by DynamoDB's sizing rules (the item limit is 409600)",
    kind: MetricKind::Gauge,
    labels: &["table"],
};
pub static SAMPLE_COST: MetricDesc = MetricDesc {
    name: "dynamodb_item_size_sample_read_capacity_units_total",
    help:
        "Read capacity units the sampling Scans consumed on the table since the collector started",
    kind: MetricKind::Counter,
    labels: &["table"],
};

pub static DESCRIPTORS: &[&MetricDesc] = &[&ITEM_SIZE, &MAX_SIZE, &SAMPLE_COST];

pub type Key = HashMap<String, AttributeValue>;

/// Limits of one sample.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SampleLimits {
    pub read_capacity_budget: f64,
    pub max_items: u32,
}

/// What one sample measured.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SampleOutcome {
    pub sizes: Vec<u64>,
    pub consumed_read_units: f64,
    /// Where the next sample starts; `None` when this one reached the end of the table.
    pub resume_at: Option<Key>,
}

/// One table's sampling state across polls.
#[derive(Debug, Clone, Default)]
pub struct TableSampler {
    pub histogram: SizeHistogram,
    pub resume_at: Option<Key>,
    pub consumed_read_units: f64,
    pub latest_max: Option<u64>,
}

impl TableSampler {
    pub fn absorb(&mut self, outcome: SampleOutcome) {
        for size in &outcome.sizes {
            self.histogram.observe(*size);
        }
        self.latest_max = outcome.sizes.iter().copied().max();
        self.consumed_read_units += outcome.consumed_read_units;
        self.resume_at = outcome.resume_at;
    }

    pub fn samples(&self, table: &str, out: &mut Vec<Sample>) {
        let buckets: Vec<(f64, f64)> = self
            .histogram
            .cumulative_buckets()
            .into_iter()
            .map(|(upper_bound, count)| (upper_bound, count as f64))
            .collect();
        out.extend(ITEM_SIZE.histogram(
            [table],
            &buckets,
            self.histogram.sum(),
            self.histogram.count() as f64,
        ));
        out.push(MAX_SIZE.sample_with([table], self.latest_max.map_or(f64::NAN, |max| max as f64)));
        out.push(SAMPLE_COST.sample_with([table], self.consumed_read_units));
    }
}

pub async fn sample(
    client: &aws_sdk_dynamodb::Client,
    table: &str,
    start_at: Option<Key>,
    limits: SampleLimits,
    usage: &mut PollUsage,
) -> Result<SampleOutcome, ApiError> {
    let mut outcome = SampleOutcome {
        resume_at: start_at,
        ..SampleOutcome::default()
    };
    for _ in 0..MAX_PAGES {
        let page_items = next_page_items(&outcome, limits);
        if page_items == 0 {
            break;
        }
        usage.call(Api::Scan);
        let page = client
            .scan()
            .table_name(table)
            .limit(page_items as i32)
            .return_consumed_capacity(ReturnConsumedCapacity::Total)
            .set_exclusive_start_key(outcome.resume_at.take())
            .send()
            .await
            .map_err(|error| api_error(&error))?;
        let sizes: Vec<u64> = page.items().iter().map(item_size).collect();
        outcome.consumed_read_units += page
            .consumed_capacity()
            .and_then(|capacity| capacity.capacity_units())
            .unwrap_or_else(|| estimated_read_units(&sizes));
        outcome.sizes.extend(sizes);
        outcome.resume_at = page.last_evaluated_key().cloned();
        if outcome.resume_at.is_none() {
            break;
        }
    }
    Ok(outcome)
}

/// How many items the next page may read: the rest of the item cap, shrunk to what the rest of the budget buys
/// at the read cost per item measured so far. 0 ends the sample.
pub fn next_page_items(outcome: &SampleOutcome, limits: SampleLimits) -> u32 {
    let taken = outcome.sizes.len() as u32;
    let remaining_items = limits.max_items.saturating_sub(taken);
    let remaining_budget = limits.read_capacity_budget - outcome.consumed_read_units;
    if remaining_items == 0 || remaining_budget <= 0.0 {
        return 0;
    }
    if taken == 0 || outcome.consumed_read_units <= 0.0 {
        return remaining_items.min(FIRST_PAGE_ITEMS);
    }
    let units_per_item = outcome.consumed_read_units / f64::from(taken);
    let affordable = (remaining_budget / units_per_item).floor().max(1.0);
    let affordable = if affordable >= f64::from(MAX_PAGE_ITEMS) {
        MAX_PAGE_ITEMS
    } else {
        affordable as u32
    };
    remaining_items.min(affordable)
}

/// The read units of a page when the endpoint does not report them: its bytes at eventually consistent rates,
/// rounded up to the 0.5 unit DynamoDB bills a Scan page in.
pub fn estimated_read_units(sizes: &[u64]) -> f64 {
    let bytes: u64 = sizes.iter().sum();
    let units = (bytes as f64 / BYTES_PER_EVENTUAL_READ_UNIT * 2.0).ceil() / 2.0;
    units.max(0.5)
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: SampleLimits = SampleLimits {
        read_capacity_budget: 10.0,
        max_items: 1000,
    };

    #[test]
    fn first_page_is_small_then_pages_follow_the_budget() {
        let mut outcome = SampleOutcome::default();
        assert_eq!(next_page_items(&outcome, LIMITS), 25);
        // 25 items cost 2.5 units: 0.1 per item, 7.5 units left buy 75 items.
        outcome.sizes = vec![1000; 25];
        outcome.consumed_read_units = 2.5;
        assert_eq!(next_page_items(&outcome, LIMITS), 75);
        outcome.consumed_read_units = 10.0;
        assert_eq!(next_page_items(&outcome, LIMITS), 0);
    }

    #[test]
    fn the_item_cap_ends_a_sample() {
        let limits = SampleLimits {
            read_capacity_budget: 1000.0,
            max_items: 30,
        };
        let outcome = SampleOutcome {
            sizes: vec![10; 25],
            consumed_read_units: 0.5,
            resume_at: None,
        };
        assert_eq!(next_page_items(&outcome, limits), 5);
        let full = SampleOutcome {
            sizes: vec![10; 30],
            ..outcome
        };
        assert_eq!(next_page_items(&full, limits), 0);
    }

    #[test]
    fn estimates_round_up_to_half_units() {
        assert_eq!(estimated_read_units(&[]), 0.5);
        assert_eq!(estimated_read_units(&[100, 200]), 0.5);
        assert_eq!(estimated_read_units(&[8192]), 1.0);
        assert_eq!(estimated_read_units(&[8193]), 1.5);
    }

    #[test]
    fn samplers_accumulate_and_remember_where_to_resume() {
        let mut sampler = TableSampler::default();
        let key: Key = HashMap::from([("pk".to_owned(), AttributeValue::S("a".into()))]);
        sampler.absorb(SampleOutcome {
            sizes: vec![10, 2000],
            consumed_read_units: 0.5,
            resume_at: Some(key.clone()),
        });
        sampler.absorb(SampleOutcome {
            sizes: vec![30],
            consumed_read_units: 0.5,
            resume_at: None,
        });
        assert_eq!(sampler.histogram.count(), 3);
        assert_eq!(sampler.latest_max, Some(30));
        assert_eq!(sampler.consumed_read_units, 1.0);
        assert_eq!(sampler.resume_at, None);
    }
}
