//! CloudWatch GetMetricData for the AWS/DynamoDB namespace: one data point per metric per poll, the newest
//! complete period, and the rates, utilization, throttling, latency and errors derived from it.
//!
//! The window is `[end - period, end)` with `end` = (now - delay) rounded down to the period: aligned windows
//! give exactly one data point (YACE#97), and the delay, two periods by default, lets CloudWatch finish
//! publishing the period first (YACE#1796: "to get accurate 1 minute period metrics 2 minutes of delay is
//! required"). Queries go in batches of at most 500, the GetMetricData limit.
//!
//! A metric without a data point in the window (CloudWatch answered, the series is empty) reads as:
//! - 0 for the count metrics (consumed capacity, throttle events, throttled requests, errors, successful request
//!   count): DynamoDB publishes them only when something happened, so an empty period means nothing happened;
//! - NaN for latencies (SuccessfulRequestLatency, ReplicationLatency): an average of no requests does not exist,
//!   and inventing 0 would read as "fast";
//! - NaN for everything when CloudWatch itself reported the query failed (status InternalError or Forbidden) or
//!   did not answer it at all: unknown is not zero.

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_sdk_cloudwatch::primitives::DateTime;
use aws_sdk_cloudwatch::types::{
    Dimension, Metric, MetricDataQuery, MetricStat, ScanBy, StatusCode,
};

use crate::fleet;
use crate::metric::{MetricDesc, MetricKind, Sample};

use super::api_usage::{Api, PollUsage};
use super::client::{api_error, ApiError};
use super::describe_limits::TableQuota;
use super::describe_table::{Direction, TableInfo, Throughput};

pub const VIEW: &str = "get_metric_data";
pub const NAMESPACE: &str = "AWS/DynamoDB";
/// GetMetricData accepts at most 500 queries per call.
pub const MAX_QUERIES_PER_CALL: usize = 500;
/// With one data point per query, a batch never needs a second page; the bound only guards against a
/// misbehaving endpoint.
const MAX_PAGES_PER_BATCH: usize = 10;

/// The DynamoDB operations whose latency, throttled requests and system errors are read by default: the
/// data-plane calls applications make. Each costs 4 metrics per table per poll.
pub const DEFAULT_OPERATIONS: [&str; 10] = [
    "GetItem",
    "PutItem",
    "UpdateItem",
    "DeleteItem",
    "Query",
    "Scan",
    "BatchGetItem",
    "BatchWriteItem",
    "TransactGetItems",
    "TransactWriteItems",
];

pub static CONSUMED: MetricDesc = MetricDesc {
    name: "dynamodb_consumed_capacity_units_per_second",
    help: "Read or write capacity units consumed per second by the table or index over the newest complete CloudWatch period (Sum / period)",
    kind: MetricKind::Gauge,
    labels: &["table", "index", "operation"],
};
pub static UTILIZATION: MetricDesc = MetricDesc {
    name: "dynamodb_capacity_utilization_ratio",
    help: "Consumed over the ceiling: provisioned units, or for on-demand the configured maximum, else the account's per-table quota; NaN without a ceiling",
    kind: MetricKind::Gauge,
    labels: &["table", "index", "operation"],
};
pub static THROTTLE_EVENTS: MetricDesc = MetricDesc {
    name: "dynamodb_throttle_events_per_second",
    help: "Read or write requests exceeding the table's or index's capacity, per second (ReadThrottleEvents / WriteThrottleEvents)",
    kind: MetricKind::Gauge,
    labels: &["table", "index", "operation"],
};
pub static KEY_RANGE_THROTTLES: MetricDesc = MetricDesc {
    name: "dynamodb_key_range_throttle_events_per_second",
    help: "Requests throttled because one partition (key range) exceeded its throughput, per second: the hot-partition signal",
    kind: MetricKind::Gauge,
    labels: &["table", "operation"],
};
pub static THROTTLED_REQUESTS: MetricDesc = MetricDesc {
    name: "dynamodb_throttled_requests_per_second",
    help: "Requests with at least one throttled event, per second, by DynamoDB operation (ThrottledRequests)",
    kind: MetricKind::Gauge,
    labels: &["table", "operation"],
};
pub static REQUESTS: MetricDesc = MetricDesc {
    name: "dynamodb_successful_requests_per_second",
    help: "Successful requests per second by DynamoDB operation (SuccessfulRequestLatency SampleCount / period)",
    kind: MetricKind::Gauge,
    labels: &["table", "operation"],
};
pub static LATENCY: MetricDesc = MetricDesc {
    name: "dynamodb_request_latency_avg_seconds",
    help: "Mean server-side latency of successful requests by DynamoDB operation (SuccessfulRequestLatency Average); NaN without requests",
    kind: MetricKind::Gauge,
    labels: &["table", "operation"],
};
pub static SYSTEM_ERRORS: MetricDesc = MetricDesc {
    name: "dynamodb_system_errors_per_second",
    help: "Requests failed with an HTTP 500 by DynamoDB, per second, by operation (SystemErrors)",
    kind: MetricKind::Gauge,
    labels: &["table", "operation"],
};
pub static USER_ERRORS: MetricDesc = MetricDesc {
    name: "dynamodb_user_errors_per_second",
    help: "Requests rejected with an HTTP 400 in the account and region, per second (UserErrors, account-wide)",
    kind: MetricKind::Gauge,
    labels: &[],
};

pub static DESCRIPTORS: &[&MetricDesc] = &[
    &CONSUMED,
    &UTILIZATION,
    &THROTTLE_EVENTS,
    &KEY_RANGE_THROTTLES,
    &THROTTLED_REQUESTS,
    &REQUESTS,
    &LATENCY,
    &SYSTEM_ERRORS,
    &USER_ERRORS,
];

/// One CloudWatch metric with the statistic read from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CwMetric {
    ConsumedReadCapacityUnits,
    ConsumedWriteCapacityUnits,
    ReadThrottleEvents,
    WriteThrottleEvents,
    ReadKeyRangeThroughputThrottleEvents,
    WriteKeyRangeThroughputThrottleEvents,
    ThrottledRequests,
    SuccessfulRequestLatencyAverage,
    SuccessfulRequestLatencySampleCount,
    SystemErrors,
    UserErrors,
    ReplicationLatency,
}

impl CwMetric {
    pub fn name(self) -> &'static str {
        match self {
            CwMetric::ConsumedReadCapacityUnits => "ConsumedReadCapacityUnits",
            CwMetric::ConsumedWriteCapacityUnits => "ConsumedWriteCapacityUnits",
            CwMetric::ReadThrottleEvents => "ReadThrottleEvents",
            CwMetric::WriteThrottleEvents => "WriteThrottleEvents",
            CwMetric::ReadKeyRangeThroughputThrottleEvents => {
                "ReadKeyRangeThroughputThrottleEvents"
            }
            CwMetric::WriteKeyRangeThroughputThrottleEvents => {
                "WriteKeyRangeThroughputThrottleEvents"
            }
            CwMetric::ThrottledRequests => "ThrottledRequests",
            CwMetric::SuccessfulRequestLatencyAverage
            | CwMetric::SuccessfulRequestLatencySampleCount => "SuccessfulRequestLatency",
            CwMetric::SystemErrors => "SystemErrors",
            CwMetric::UserErrors => "UserErrors",
            CwMetric::ReplicationLatency => "ReplicationLatency",
        }
    }

    pub fn stat(self) -> &'static str {
        match self {
            CwMetric::SuccessfulRequestLatencyAverage | CwMetric::ReplicationLatency => "Average",
            CwMetric::SuccessfulRequestLatencySampleCount => "SampleCount",
            _ => "Sum",
        }
    }

    /// Whether an empty period means "none happened" (0) or "unknown" (NaN); see the module documentation.
    fn empty_is_zero(self) -> bool {
        !matches!(
            self,
            CwMetric::SuccessfulRequestLatencyAverage | CwMetric::ReplicationLatency
        )
    }
}

/// One GetMetricData query: a metric of one dimension set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query {
    pub metric: CwMetric,
    /// `TableName`; `None` only for the account-wide UserErrors.
    pub table: Option<String>,
    /// `GlobalSecondaryIndexName`.
    pub index: Option<String>,
    /// `Operation`: a DynamoDB API name.
    pub operation: Option<String>,
    /// `ReceivingRegion` of ReplicationLatency.
    pub receiving_region: Option<String>,
}

impl Query {
    fn table(metric: CwMetric, table: &str) -> Query {
        Query {
            metric,
            table: Some(table.to_owned()),
            index: None,
            operation: None,
            receiving_region: None,
        }
    }

    fn dimensions(&self) -> Vec<Dimension> {
        let pairs = [
            ("TableName", &self.table),
            ("GlobalSecondaryIndexName", &self.index),
            ("Operation", &self.operation),
            ("ReceivingRegion", &self.receiving_region),
        ];
        pairs
            .into_iter()
            .filter_map(|(name, value)| {
                value
                    .as_ref()
                    .map(|value| Dimension::builder().name(name).value(value).build())
            })
            .collect()
    }
}

/// Every query one poll makes for these tables: per table and per GSI consumed capacity and throttle events
/// (read and write); per table the key-range throttles; per table and operation ThrottledRequests,
/// SuccessfulRequestLatency (Average and SampleCount) and SystemErrors; per replica ReplicationLatency; and the
/// account's UserErrors once. ThrottledRequests, SuccessfulRequestLatency and SystemErrors exist only with the
/// Operation dimension: a TableName-only query returns nothing (aws-cdk#11261).
pub fn plan(tables: &[TableInfo], operations: &[String]) -> Vec<Query> {
    let mut queries = Vec::new();
    for table in tables {
        let name = table.name.as_str();
        for throughput in &table.throughputs {
            for metric in [
                CwMetric::ConsumedReadCapacityUnits,
                CwMetric::ConsumedWriteCapacityUnits,
                CwMetric::ReadThrottleEvents,
                CwMetric::WriteThrottleEvents,
            ] {
                queries.push(Query {
                    index: throughput.index.clone(),
                    ..Query::table(metric, name)
                });
            }
        }
        queries.push(Query::table(
            CwMetric::ReadKeyRangeThroughputThrottleEvents,
            name,
        ));
        queries.push(Query::table(
            CwMetric::WriteKeyRangeThroughputThrottleEvents,
            name,
        ));
        for operation in operations {
            for metric in [
                CwMetric::ThrottledRequests,
                CwMetric::SuccessfulRequestLatencyAverage,
                CwMetric::SuccessfulRequestLatencySampleCount,
                CwMetric::SystemErrors,
            ] {
                queries.push(Query {
                    operation: Some(operation.clone()),
                    ..Query::table(metric, name)
                });
            }
        }
        for replica in &table.replicas {
            queries.push(Query {
                receiving_region: Some(replica.region.clone()),
                ..Query::table(CwMetric::ReplicationLatency, name)
            });
        }
    }
    queries.push(Query {
        metric: CwMetric::UserErrors,
        table: None,
        index: None,
        operation: None,
        receiving_region: None,
    });
    queries
}

/// The period a poll reads, as Unix seconds: `[start, end)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub start: i64,
    pub end: i64,
}

impl Window {
    /// The newest complete period: (now - delay) rounded down to the period, minus one period.
    pub fn newest_complete(now: SystemTime, period: Duration, delay: Duration) -> Window {
        let period_secs = period.as_secs().max(1) as i64;
        let shifted = now
            .checked_sub(delay)
            .and_then(|time| time.duration_since(UNIX_EPOCH).ok())
            .map(|since_epoch| since_epoch.as_secs() as i64)
            .unwrap_or(0);
        let end = shifted - shifted.rem_euclid(period_secs);
        Window {
            start: end - period_secs,
            end,
        }
    }

    pub fn seconds(&self) -> f64 {
        (self.end - self.start) as f64
    }

    pub fn start_time(&self) -> DateTime {
        DateTime::from_secs(self.start)
    }

    pub fn end_time(&self) -> DateTime {
        DateTime::from_secs(self.end)
    }
}

/// What CloudWatch said about one query.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Point {
    Value(f64),
    /// The query answered with no data point in the window.
    Empty,
    /// CloudWatch reported the query failed, or did not answer it.
    Failed,
}

/// Runs the queries in batches of at most 500 and returns one point per query, in order.
pub async fn fetch(
    client: &aws_sdk_cloudwatch::Client,
    queries: &[Query],
    window: Window,
    usage: &mut PollUsage,
) -> Result<Vec<Point>, ApiError> {
    let period = (window.end - window.start) as i32;
    let mut points = Vec::with_capacity(queries.len());
    for (batch_number, batch) in queries.chunks(MAX_QUERIES_PER_CALL).enumerate() {
        let first_id = batch_number * MAX_QUERIES_PER_CALL;
        let requests: Vec<MetricDataQuery> = batch
            .iter()
            .enumerate()
            .map(|(offset, query)| metric_data_query(query_id(first_id + offset), query, period))
            .collect();
        usage.metrics_requested(batch.len() as u64);
        let mut answers: HashMap<String, Answer> = HashMap::new();
        let mut next_token: Option<String> = None;
        for page in 0.. {
            if page == MAX_PAGES_PER_BATCH {
                return Err(ApiError::decode(format!(
                    "GetMetricData still paginating after {MAX_PAGES_PER_BATCH} pages"
                )));
            }
            usage.call(Api::GetMetricData);
            let output = client
                .get_metric_data()
                .set_metric_data_queries(Some(requests.clone()))
                .start_time(window.start_time())
                .end_time(window.end_time())
                .scan_by(ScanBy::TimestampDescending)
                .set_next_token(next_token.take())
                .send()
                .await
                .map_err(|error| api_error(&error))?;
            for result in output.metric_data_results() {
                let Some(id) = result.id() else { continue };
                let answer = answers.entry(id.to_owned()).or_default();
                answer.merge(result.values().first().copied(), result.status_code());
            }
            match output.next_token() {
                Some(token) => next_token = Some(token.to_owned()),
                None => break,
            }
        }
        for offset in 0..batch.len() {
            let point = answers
                .get(&query_id(first_id + offset))
                .map_or(Point::Failed, Answer::point);
            points.push(point);
        }
    }
    Ok(points)
}

/// GetMetricData ids must start with a lowercase letter and be unique within a call.
fn query_id(position: usize) -> String {
    format!("q{position}")
}

fn metric_data_query(id: String, query: &Query, period: i32) -> MetricDataQuery {
    let metric = Metric::builder()
        .namespace(NAMESPACE)
        .metric_name(query.metric.name())
        .set_dimensions(Some(query.dimensions()))
        .build();
    let stat = MetricStat::builder()
        .metric(metric)
        .period(period)
        .stat(query.metric.stat())
        .build();
    MetricDataQuery::builder()
        .id(id)
        .metric_stat(stat)
        .return_data(true)
        .build()
}

#[derive(Debug, Default)]
struct Answer {
    newest: Option<f64>,
    failed: bool,
}

impl Answer {
    fn merge(&mut self, newest: Option<f64>, status: Option<&StatusCode>) {
        if self.newest.is_none() {
            self.newest = newest;
        }
        if matches!(
            status,
            Some(StatusCode::InternalError | StatusCode::Forbidden)
        ) {
            self.failed = true;
        }
    }

    fn point(&self) -> Point {
        match (self.failed, self.newest) {
            (true, _) => Point::Failed,
            (false, Some(value)) => Point::Value(value),
            (false, None) => Point::Empty,
        }
    }
}

/// The samples of one poll's CloudWatch answers, and the fleet signals they determine.
pub struct Derived {
    pub samples: Vec<Sample>,
    /// The (table, index, operation) closest to its ceiling: consumed units/s and ceiling, for the fleet's
    /// connection signals. `None` when no series has a ceiling.
    pub most_saturated: Option<Saturation>,
    /// Weighted mean successful-request latency in seconds over every table and operation; NaN without requests.
    pub latency_avg_seconds: f64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Saturation {
    pub table: String,
    pub index: Option<String>,
    pub direction: Direction,
    pub consumed_per_second: f64,
    pub ceiling_per_second: f64,
}

impl Saturation {
    pub fn ratio(&self) -> f64 {
        self.consumed_per_second / self.ceiling_per_second
    }
}

/// Turns the answers into samples. `queries` and `points` are parallel, as `plan` and `fetch` return them.
pub fn derive(
    tables: &[TableInfo],
    quota: &TableQuota,
    queries: &[Query],
    points: &[Point],
    window: Window,
) -> Derived {
    let period = window.seconds();
    let throughputs: HashMap<(&str, Option<&str>), (&TableInfo, &Throughput)> = tables
        .iter()
        .flat_map(|table| {
            table.throughputs.iter().map(move |throughput| {
                (
                    (table.name.as_str(), throughput.index.as_deref()),
                    (table, throughput),
                )
            })
        })
        .collect();
    let mut samples = Vec::with_capacity(queries.len() + tables.len() * 4);
    let mut most_saturated: Option<Saturation> = None;
    // (table, operation) -> (average ms, sample count), to weight the fleet latency.
    let mut latencies: HashMap<(&str, &str), LatencyPair> = HashMap::new();

    for (query, point) in queries.iter().zip(points) {
        let value = resolve(query.metric, *point);
        let table = query.table.as_deref().unwrap_or("");
        let index = query.index.as_deref();
        let index_label = index.unwrap_or("");
        let operation = query.operation.as_deref().unwrap_or("");
        let per_second = value / period;
        match query.metric {
            CwMetric::ConsumedReadCapacityUnits | CwMetric::ConsumedWriteCapacityUnits => {
                let direction = if query.metric == CwMetric::ConsumedReadCapacityUnits {
                    Direction::Read
                } else {
                    Direction::Write
                };
                let labels = [table, index_label, direction.as_str()];
                samples.push(CONSUMED.sample_with(labels, per_second));
                let ceiling = throughputs
                    .get(&(table, index))
                    .and_then(|(info, throughput)| ceiling(info, throughput, quota, direction));
                let utilization = match ceiling {
                    Some(ceiling) => per_second / ceiling,
                    None => f64::NAN,
                };
                samples.push(UTILIZATION.sample_with(labels, utilization));
                if let Some(ceiling) = ceiling.filter(|_| utilization.is_finite()) {
                    let candidate = Saturation {
                        table: table.to_owned(),
                        index: index.map(str::to_owned),
                        direction,
                        consumed_per_second: per_second,
                        ceiling_per_second: ceiling,
                    };
                    if most_saturated
                        .as_ref()
                        .is_none_or(|current| candidate.ratio() > current.ratio())
                    {
                        most_saturated = Some(candidate);
                    }
                }
            }
            CwMetric::ReadThrottleEvents | CwMetric::WriteThrottleEvents => {
                let direction = if query.metric == CwMetric::ReadThrottleEvents {
                    "read"
                } else {
                    "write"
                };
                samples
                    .push(THROTTLE_EVENTS.sample_with([table, index_label, direction], per_second));
            }
            CwMetric::ReadKeyRangeThroughputThrottleEvents => {
                samples.push(KEY_RANGE_THROTTLES.sample_with([table, "read"], per_second));
            }
            CwMetric::WriteKeyRangeThroughputThrottleEvents => {
                samples.push(KEY_RANGE_THROTTLES.sample_with([table, "write"], per_second));
            }
            CwMetric::ThrottledRequests => {
                samples.push(THROTTLED_REQUESTS.sample_with([table, operation], per_second));
            }
            CwMetric::SuccessfulRequestLatencyAverage => {
                samples.push(LATENCY.sample_with([table, operation], value / 1000.0));
                latencies.entry((table, operation)).or_default().0 = finite(value);
            }
            CwMetric::SuccessfulRequestLatencySampleCount => {
                samples.push(REQUESTS.sample_with([table, operation], per_second));
                latencies.entry((table, operation)).or_default().1 = finite(value);
            }
            CwMetric::SystemErrors => {
                samples.push(SYSTEM_ERRORS.sample_with([table, operation], per_second));
            }
            CwMetric::UserErrors => samples.push(USER_ERRORS.sample(per_second)),
            CwMetric::ReplicationLatency => {
                let region = query.receiving_region.as_deref().unwrap_or("");
                let running = tables
                    .iter()
                    .find(|info| info.name == table)
                    .and_then(|info| {
                        info.replicas
                            .iter()
                            .find(|replica| replica.region == region)
                    })
                    .is_some_and(|replica| replica.active);
                let replica = format!("{table}/{region}");
                samples.extend(fleet::replication_samples(
                    &replica,
                    finite(value / 1000.0),
                    running,
                ));
            }
        }
    }

    Derived {
        samples,
        most_saturated,
        latency_avg_seconds: weighted_latency_seconds(latencies.values().copied()),
    }
}

/// One operation's SuccessfulRequestLatency in the period: (Average in milliseconds, SampleCount).
pub type LatencyPair = (Option<f64>, Option<f64>);

/// The ceiling utilization is measured against: provisioned units; for on-demand tables the configured maximum,
/// else the account's per-table quota (which DynamoDB applies to the table and to each of its GSIs).
fn ceiling(
    table: &TableInfo,
    throughput: &Throughput,
    quota: &TableQuota,
    direction: Direction,
) -> Option<f64> {
    let capacity = throughput.capacity(direction);
    if !table.on_demand {
        return capacity.provisioned;
    }
    capacity.on_demand_max.or_else(|| quota.get(direction))
}

fn resolve(metric: CwMetric, point: Point) -> f64 {
    match point {
        Point::Value(value) => value,
        Point::Empty if metric.empty_is_zero() => 0.0,
        Point::Empty | Point::Failed => f64::NAN,
    }
}

fn finite(value: f64) -> Option<f64> {
    value.is_finite().then_some(value)
}

/// The request-weighted mean of per-operation average latencies (milliseconds in, seconds out): each operation's
/// Average times its SampleCount, over the total SampleCount. An average without a count is left out rather
/// than given a guessed weight; NaN when no request completed.
pub fn weighted_latency_seconds(pairs: impl IntoIterator<Item = LatencyPair>) -> f64 {
    let mut weighted_sum = 0.0;
    let mut requests = 0.0;
    for pair in pairs {
        let (Some(average_ms), Some(count)) = pair else {
            continue;
        };
        if count <= 0.0 {
            continue;
        }
        weighted_sum += average_ms * count;
        requests += count;
    }
    if requests > 0.0 {
        weighted_sum / requests / 1000.0
    } else {
        f64::NAN
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dynamodb::describe_table::{Capacity, Replica};

    fn table(
        name: &str,
        on_demand: bool,
        read: Option<f64>,
        gsi: Option<(&str, f64)>,
    ) -> TableInfo {
        let base = Throughput {
            index: None,
            active: true,
            items: None,
            size_bytes: None,
            read: Capacity {
                provisioned: read,
                on_demand_max: None,
            },
            write: Capacity {
                provisioned: read.map(|units| units / 2.0),
                on_demand_max: None,
            },
        };
        let mut throughputs = vec![base];
        if let Some((index, units)) = gsi {
            throughputs.push(Throughput {
                index: Some(index.to_owned()),
                active: true,
                items: None,
                size_bytes: None,
                read: Capacity {
                    provisioned: Some(units),
                    on_demand_max: None,
                },
                write: Capacity {
                    provisioned: Some(units),
                    on_demand_max: None,
                },
            });
        }
        TableInfo {
            name: name.to_owned(),
            on_demand,
            throughputs,
            replicas: Vec::new(),
            ttl: None,
        }
    }

    fn value_of(samples: &[Sample], desc: &MetricDesc, labels: &[(&str, &str)]) -> Option<f64> {
        samples
            .iter()
            .find(|sample| {
                sample.desc == desc
                    && labels
                        .iter()
                        .all(|(name, value)| sample.label(name) == Some(value))
            })
            .map(|sample| sample.value)
    }

    #[test]
    fn window_is_the_newest_complete_period_before_the_delay() {
        let now = UNIX_EPOCH + Duration::from_secs(1_700_000_125);
        let window =
            Window::newest_complete(now, Duration::from_secs(60), Duration::from_secs(120));
        // now - 120 = 1_700_000_005, rounded down to the minute = 1_699_999_980.
        assert_eq!(
            window,
            Window {
                start: 1_699_999_920,
                end: 1_699_999_980
            }
        );
        assert_eq!(window.seconds(), 60.0);
    }

    #[test]
    fn plan_counts_queries_per_table_index_operation_and_replica() {
        let mut users = table(
            "UserSessions",
            false,
            Some(100.0),
            Some(("SessionIdIndex", 50.0)),
        );
        users.replicas.push(Replica {
            region: "eu-west-1".into(),
            active: true,
        });
        let operations = vec!["GetItem".to_owned(), "Query".to_owned()];
        let queries = plan(&[users], &operations);
        // 4 per throughput unit x 2, 2 key-range, 4 per operation x 2, 1 replica, 1 account.
        assert_eq!(queries.len(), 8 + 2 + 8 + 1 + 1);
        let throttled = queries
            .iter()
            .find(|query| query.metric == CwMetric::ThrottledRequests)
            .expect("a ThrottledRequests query");
        let names: Vec<Option<String>> = throttled
            .dimensions()
            .iter()
            .map(|d| d.name().map(str::to_owned))
            .collect();
        assert_eq!(
            names,
            vec![Some("TableName".into()), Some("Operation".into())]
        );
        let gsi = queries
            .iter()
            .find(|query| query.index.is_some())
            .expect("a GSI query");
        assert_eq!(gsi.dimensions().len(), 2);
        assert_eq!(
            queries.last().map(|query| query.dimensions().len()),
            Some(0)
        );
    }

    #[test]
    fn consumed_sums_become_rates_and_utilization() {
        let tables = vec![table(
            "UserSessions",
            false,
            Some(100.0),
            Some(("SessionIdIndex", 50.0)),
        )];
        let window = Window { start: 0, end: 60 };
        let queries = plan(&tables, &["GetItem".to_owned()]);
        let points: Vec<Point> = queries
            .iter()
            .map(|query| match (query.metric, query.index.as_deref()) {
                (CwMetric::ConsumedReadCapacityUnits, None) => Point::Value(3000.0),
                (CwMetric::ConsumedWriteCapacityUnits, None) => Point::Value(600.0),
                (CwMetric::ConsumedReadCapacityUnits, Some(_)) => Point::Value(2700.0),
                (CwMetric::ReadThrottleEvents, None) => Point::Value(120.0),
                (CwMetric::SuccessfulRequestLatencyAverage, _) => Point::Value(4.0),
                (CwMetric::SuccessfulRequestLatencySampleCount, _) => Point::Value(600.0),
                (CwMetric::UserErrors, _) => Point::Failed,
                _ => Point::Empty,
            })
            .collect();
        let derived = derive(&tables, &TableQuota::default(), &queries, &points, window);
        let samples = &derived.samples;
        let table_read = [
            ("table", "UserSessions"),
            ("index", ""),
            ("operation", "read"),
        ];
        assert_eq!(value_of(samples, &CONSUMED, &table_read), Some(50.0));
        assert_eq!(value_of(samples, &UTILIZATION, &table_read), Some(0.5));
        let table_write = [
            ("table", "UserSessions"),
            ("index", ""),
            ("operation", "write"),
        ];
        assert_eq!(value_of(samples, &CONSUMED, &table_write), Some(10.0));
        assert_eq!(value_of(samples, &UTILIZATION, &table_write), Some(0.2));
        let gsi_read = [
            ("table", "UserSessions"),
            ("index", "SessionIdIndex"),
            ("operation", "read"),
        ];
        assert_eq!(value_of(samples, &CONSUMED, &gsi_read), Some(45.0));
        assert_eq!(value_of(samples, &UTILIZATION, &gsi_read), Some(0.9));
        let gsi_write = [
            ("table", "UserSessions"),
            ("index", "SessionIdIndex"),
            ("operation", "write"),
        ];
        assert_eq!(value_of(samples, &CONSUMED, &gsi_write), Some(0.0));
        assert_eq!(value_of(samples, &THROTTLE_EVENTS, &table_read), Some(2.0));
        let get_item = [("table", "UserSessions"), ("operation", "GetItem")];
        assert_eq!(value_of(samples, &LATENCY, &get_item), Some(0.004));
        assert_eq!(value_of(samples, &REQUESTS, &get_item), Some(10.0));
        assert_eq!(value_of(samples, &THROTTLED_REQUESTS, &get_item), Some(0.0));
        assert!(value_of(samples, &USER_ERRORS, &[]).is_some_and(f64::is_nan));

        let saturated = derived.most_saturated.expect("a ceiling exists");
        assert_eq!(saturated.index.as_deref(), Some("SessionIdIndex"));
        assert_eq!(saturated.consumed_per_second, 45.0);
        assert_eq!(saturated.ceiling_per_second, 50.0);
        assert_eq!(derived.latency_avg_seconds, 0.004);
    }

    #[test]
    fn latency_is_never_invented() {
        let tables = vec![table("T", false, Some(10.0), None)];
        let queries = plan(&tables, &["GetItem".to_owned()]);
        let points = vec![Point::Empty; queries.len()];
        let derived = derive(
            &tables,
            &TableQuota::default(),
            &queries,
            &points,
            Window { start: 0, end: 60 },
        );
        let get_item = [("table", "T"), ("operation", "GetItem")];
        assert!(value_of(&derived.samples, &LATENCY, &get_item).is_some_and(f64::is_nan));
        assert_eq!(value_of(&derived.samples, &REQUESTS, &get_item), Some(0.0));
        assert!(derived.latency_avg_seconds.is_nan());
    }

    #[test]
    fn on_demand_utilization_uses_the_maximum_then_the_quota_else_nan() {
        let mut events = table("Events", true, None, None);
        events.throughputs[0].read.on_demand_max = Some(1000.0);
        let tables = vec![events];
        let queries = plan(&tables, &[]);
        let points: Vec<Point> = queries.iter().map(|_| Point::Value(6000.0)).collect();
        let window = Window { start: 0, end: 60 };
        let read = [("table", "Events"), ("index", ""), ("operation", "read")];
        let write = [("table", "Events"), ("index", ""), ("operation", "write")];

        let no_quota = derive(&tables, &TableQuota::default(), &queries, &points, window);
        assert_eq!(value_of(&no_quota.samples, &UTILIZATION, &read), Some(0.1));
        assert!(value_of(&no_quota.samples, &UTILIZATION, &write).is_some_and(f64::is_nan));

        let quota = TableQuota {
            read: Some(40_000.0),
            write: Some(40_000.0),
        };
        let with_quota = derive(&tables, &quota, &queries, &points, window);
        assert_eq!(
            value_of(&with_quota.samples, &UTILIZATION, &write),
            Some(0.0025)
        );
    }

    #[test]
    fn replication_lag_is_seconds_and_unknown_when_empty() {
        let mut global = table("Global", true, None, None);
        global.replicas.push(Replica {
            region: "eu-west-1".into(),
            active: true,
        });
        global.replicas.push(Replica {
            region: "ap-south-1".into(),
            active: true,
        });
        let tables = vec![global];
        let queries = plan(&tables, &[]);
        let points: Vec<Point> = queries
            .iter()
            .map(|query| match query.receiving_region.as_deref() {
                Some("eu-west-1") => Point::Value(850.0),
                _ => Point::Empty,
            })
            .collect();
        let derived = derive(
            &tables,
            &TableQuota::default(),
            &queries,
            &points,
            Window { start: 0, end: 60 },
        );
        let eu = [("replica", "Global/eu-west-1")];
        assert_eq!(
            value_of(&derived.samples, &fleet::DB_REPLICATION_LAG_SECONDS, &eu),
            Some(0.85)
        );
        assert_eq!(
            value_of(&derived.samples, &fleet::DB_REPLICATION_HEALTHY, &eu),
            Some(1.0)
        );
        let ap = [("replica", "Global/ap-south-1")];
        assert!(
            value_of(&derived.samples, &fleet::DB_REPLICATION_LAG_SECONDS, &ap)
                .is_some_and(f64::is_nan)
        );
        assert_eq!(
            value_of(&derived.samples, &fleet::DB_REPLICATION_HEALTHY, &ap),
            Some(0.0)
        );
    }

    #[test]
    fn weighted_latency_skips_averages_without_counts() {
        let pairs = [
            (Some(2.0), Some(300.0)),
            (Some(10.0), Some(100.0)),
            (Some(50.0), None),
            (None, Some(5.0)),
        ];
        assert_eq!(weighted_latency_seconds(pairs), 0.004);
        assert!(weighted_latency_seconds([]).is_nan());
    }

    #[test]
    fn batches_never_exceed_the_limit() {
        let tables: Vec<TableInfo> = (0..30)
            .map(|n| table(&format!("t{n}"), false, Some(1.0), None))
            .collect();
        let operations: Vec<String> = DEFAULT_OPERATIONS
            .iter()
            .map(|op| (*op).to_owned())
            .collect();
        let queries = plan(&tables, &operations);
        assert_eq!(queries.len(), 30 * (4 + 2 + 40) + 1);
        let batches: Vec<usize> = queries
            .chunks(MAX_QUERIES_PER_CALL)
            .map(<[Query]>::len)
            .collect();
        assert_eq!(batches, vec![500, 500, 381]);
    }
}
