//! What a poll costs: AWS API calls by API, CloudWatch metrics requested, and the dollars per day they project to.
//!
//! CloudWatch bills GetMetricData by metrics requested ($0.01 per 1,000 in most regions), not by calls, and every
//! statistic of every dimension set is one metric; that, not the number of calls, is what grows with tables,
//! indexes and operations (YACE#939, cloudwatch_exporter#482). GetInsightRuleReport is billed on the same line;
//! each report is counted here as one metric requested, an approximation since the price list does not say how a
//! report is counted. The DynamoDB control-plane calls (ListTables, Describe*) are free; the sampling Scan is paid
//! in read capacity, exported separately by the item-size sampler.

use std::time::Duration;

use crate::metric::{MetricDesc, MetricKind, Sample};

/// Every AWS API the collector calls: the bounded values of the `api` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Api {
    ListTables,
    DescribeTable,
    DescribeTimeToLive,
    DescribeLimits,
    DescribeContributorInsights,
    Scan,
    GetMetricData,
    GetInsightRuleReport,
}

impl Api {
    pub const ALL: [Api; 8] = [
        Api::ListTables,
        Api::DescribeTable,
        Api::DescribeTimeToLive,
        Api::DescribeLimits,
        Api::DescribeContributorInsights,
        Api::Scan,
        Api::GetMetricData,
        Api::GetInsightRuleReport,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Api::ListTables => "ListTables",
            Api::DescribeTable => "DescribeTable",
            Api::DescribeTimeToLive => "DescribeTimeToLive",
            Api::DescribeLimits => "DescribeLimits",
            Api::DescribeContributorInsights => "DescribeContributorInsights",
            Api::Scan => "Scan",
            Api::GetMetricData => "GetMetricData",
            Api::GetInsightRuleReport => "GetInsightRuleReport",
        }
    }

    fn slot(self) -> usize {
        self as usize
    }
}

pub static API_CALLS: MetricDesc = MetricDesc {
    name: "dynamodb_api_calls",
    help: "AWS API calls made during the last poll, by API",
    kind: MetricKind::Gauge,
    labels: &["api"],
};
pub static API_CALLS_TOTAL: MetricDesc = MetricDesc {
    name: "dynamodb_api_calls_total",
    help: "AWS API calls made since the collector started, by API",
    kind: MetricKind::Counter,
    labels: &["api"],
};
pub static METRICS_REQUESTED: MetricDesc = MetricDesc {
    name: "dynamodb_cloudwatch_metrics_requested",
    help: "CloudWatch metrics requested (GetMetricData queries plus insight rule reports) during the last poll",
    kind: MetricKind::Gauge,
    labels: &[],
};
pub static METRICS_REQUESTED_TOTAL: MetricDesc = MetricDesc {
    name: "dynamodb_cloudwatch_metrics_requested_total",
    help: "CloudWatch metrics requested since the collector started; the unit CloudWatch bills GetMetricData by",
    kind: MetricKind::Counter,
    labels: &[],
};
pub static PROJECTED_COST: MetricDesc = MetricDesc {
    name: "dynamodb_cloudwatch_projected_cost_dollars_per_day",
    help: "Metrics requested per poll times polls per day (from the observed poll interval) times the price per metric; NaN before the second poll",
    kind: MetricKind::Gauge,
    labels: &[],
};

pub static DESCRIPTORS: &[&MetricDesc] = &[
    &API_CALLS,
    &API_CALLS_TOTAL,
    &METRICS_REQUESTED,
    &METRICS_REQUESTED_TOTAL,
    &PROJECTED_COST,
];

/// Calls and metrics requested within one poll.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PollUsage {
    calls: [u64; Api::ALL.len()],
    metrics_requested: u64,
}

impl PollUsage {
    pub fn call(&mut self, api: Api) {
        self.calls[api.slot()] += 1;
    }

    pub fn metrics_requested(&mut self, metrics: u64) {
        self.metrics_requested += metrics;
    }

    pub fn calls(&self, api: Api) -> u64 {
        self.calls[api.slot()]
    }

    pub fn total_calls(&self) -> u64 {
        self.calls.iter().sum()
    }

    pub fn total_metrics_requested(&self) -> u64 {
        self.metrics_requested
    }
}

/// The running totals, and the price to project them with.
#[derive(Debug, Clone)]
pub struct UsageTotals {
    calls: [u64; Api::ALL.len()],
    metrics_requested: u64,
    cost_per_1000_metrics: f64,
}

impl UsageTotals {
    pub fn new(cost_per_1000_metrics: f64) -> Self {
        UsageTotals {
            calls: [0; Api::ALL.len()],
            metrics_requested: 0,
            cost_per_1000_metrics,
        }
    }

    /// Adds the poll to the totals and writes the usage samples. `poll_interval` is the time since the previous
    /// poll started, `None` on the first poll.
    pub fn record(
        &mut self,
        poll: &PollUsage,
        poll_interval: Option<Duration>,
        out: &mut Vec<Sample>,
    ) {
        for api in Api::ALL {
            self.calls[api.slot()] += poll.calls(api);
            out.push(API_CALLS.sample_with([api.as_str()], poll.calls(api) as f64));
            out.push(API_CALLS_TOTAL.sample_with([api.as_str()], self.calls[api.slot()] as f64));
        }
        self.metrics_requested += poll.metrics_requested;
        out.push(METRICS_REQUESTED.sample(poll.metrics_requested as f64));
        out.push(METRICS_REQUESTED_TOTAL.sample(self.metrics_requested as f64));
        out.push(PROJECTED_COST.sample(projected_cost_per_day(
            poll.metrics_requested,
            poll_interval,
            self.cost_per_1000_metrics,
        )));
    }
}

/// Dollars per day if every poll requests as many metrics as this one, at the observed interval.
pub fn projected_cost_per_day(
    metrics_per_poll: u64,
    poll_interval: Option<Duration>,
    cost_per_1000_metrics: f64,
) -> f64 {
    let Some(interval) = poll_interval.filter(|interval| !interval.is_zero()) else {
        return f64::NAN;
    };
    let polls_per_day = 86_400.0 / interval.as_secs_f64();
    metrics_per_poll as f64 * polls_per_day * cost_per_1000_metrics / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cost_projects_metrics_per_poll_to_a_day() {
        // The exporters.md example: 1,200 metrics a minute is about $17 a day.
        let cost = projected_cost_per_day(1200, Some(Duration::from_secs(60)), 0.01);
        assert!((cost - 17.28).abs() < 1e-9);
        assert!(projected_cost_per_day(1200, None, 0.01).is_nan());
    }

    #[test]
    fn totals_accumulate_across_polls() {
        let mut totals = UsageTotals::new(0.01);
        let mut poll = PollUsage::default();
        poll.call(Api::GetMetricData);
        poll.call(Api::GetMetricData);
        poll.metrics_requested(600);
        let mut samples = Vec::new();
        totals.record(&poll, None, &mut samples);
        totals.record(&poll, Some(Duration::from_secs(60)), &mut samples);
        let total = samples
            .iter()
            .rev()
            .find(|sample| sample.desc == &METRICS_REQUESTED_TOTAL)
            .map(|sample| sample.value);
        assert_eq!(total, Some(1200.0));
        let calls = samples
            .iter()
            .rev()
            .find(|sample| {
                sample.desc == &API_CALLS_TOTAL && sample.label("api") == Some("GetMetricData")
            })
            .map(|sample| sample.value);
        assert_eq!(calls, Some(4.0));
    }
}
