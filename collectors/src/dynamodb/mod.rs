//! DynamoDB collector: the DynamoDB control plane for what tables exist and how they are provisioned,
//! CloudWatch for what they did, and a sampled Scan for what their items weigh.
//!
//! Per poll, in order:
//! 1. ListTables (paginated), also the liveness probe: when it fails the target is down;
//! 2. for tables not yet described, and for all of them every `describe_refresh`: DescribeTable,
//!    DescribeTimeToLive and, when `contributor_insights` is on, DescribeContributorInsights; plus DescribeLimits
//!    once per refresh. A call that failed is tried once more at the next poll, so a late answer does not leave
//!    a capability unknown for a whole refresh period, but an endpoint that keeps failing it does not make every
//!    poll heavy. DynamoDB updates item counts and sizes about every six hours, so describing every poll would
//!    only spend API rate;
//! 3. one batched GetMetricData (500 queries per call) for the newest complete CloudWatch period;
//! 4. GetInsightRuleReport for the partition-key rules of tables with Contributor Insights enabled;
//! 5. a bounded Scan sample of at most a few tables whose `sample_every` has elapsed.
//!
//! Credentials come only from the standard AWS chain (environment, shared profile, web identity, container and
//! instance metadata); the options carry none. A feature the endpoint lacks (CloudWatch on DynamoDB Local,
//! Contributor Insights and DescribeLimits on emulators) is detected once per client and exported as
//! `dynamodb_capability_available{capability}`; the collector then stops calling it until the clients are rebuilt.
//!
//! # Fleet signals
//!
//! DynamoDB has no connections; what saturates a DynamoDB workload is capacity. So the connection signals carry
//! capacity: `db_connections_utilization_ratio` is the highest capacity utilization over every table, GSI and
//! direction (read, write) that has a ceiling, and `db_connections_active` / `db_connections_max` are that same
//! series' consumed units per second and ceiling, so active / max = utilization as for every other engine. The
//! maximum, not a mean or a sum, because the first table or index to reach its ceiling is the one that throttles:
//! a busy GSI at 95 % next to nine idle tables is an incident that any average would hide. The ceiling is the
//! provisioned capacity; an on-demand table has none, so it is the table's configured maximum throughput if any,
//! else the account's per-table quota (DescribeLimits), which DynamoDB documents as the bound of on-demand
//! throughput. Without any ceiling the three signals are NaN.
//!
//! `db_query_latency_avg_seconds` is the mean of SuccessfulRequestLatency over every table and operation, each
//! operation's Average weighted by its SampleCount (its request count in the period); CloudWatch gives both
//! statistics for the same period, so this is the exact mean over all successful requests, server-side only
//! (no network or client time, no failed or throttled calls). NaN when no request succeeded in the period.
//!
//! `db_replication_lag_seconds{replica="<table>/<region>"}` is ReplicationLatency (Average) of each global-table
//! replica; tables that are not global have no series. An empty period is unknown lag: NaN and unhealthy.
//!
//! # Cost
//!
//! GetMetricData is billed per metric requested. Per poll: 4 per table and per GSI (consumed read and write
//! capacity, read and write throttle events), 2 per table (key-range throttles), 4 per table and operation
//! (ThrottledRequests, SuccessfulRequestLatency Average and SampleCount, SystemErrors), 1 per replica, 1 for the
//! account's UserErrors. With the 10 default operations that is 46 per table plus 4 per GSI: about $0.66 a day
//! per table at a 60 s poll. The collector exports what it requested and the projected dollars per day.

pub mod api_usage;
pub mod client;
pub mod describe_contributor_insights;
pub mod describe_limits;
pub mod describe_table;
pub mod describe_time_to_live;
pub mod get_insight_rule_report;
pub mod get_metric_data;
pub mod item_size;
pub mod list_tables;
pub mod scan;

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::time::{Duration, SystemTime};

use tokio::time::Instant;

use crate::error::{CollectError, ErrorKind};
use crate::fleet;
use crate::metric::{bool_value, MetricDesc, MetricKind, Sample};
use crate::view::ViewRunner;
use crate::{Collected, Collector};

use api_usage::{PollUsage, UsageTotals};
use client::{ApiError, AwsSession, ClientSettings, Clients};
use describe_contributor_insights::ContributorInsights;
use describe_limits::TableQuota;
use describe_table::TableInfo;
use get_metric_data::{Point, Window};
use item_size::SizeHistogram;
use list_tables::TableFilter;
use scan::{SampleLimits, TableSampler};

pub static CAPABILITY: MetricDesc = MetricDesc {
    name: "dynamodb_capability_available",
    help: "1 when the endpoint answers the API behind the capability (cloudwatch, contributor_insights, describe_limits), 0 when it does not implement it",
    kind: MetricKind::Gauge,
    labels: &["capability"],
};

/// Every metric family this collector can emit.
pub fn descriptors() -> Vec<&'static MetricDesc> {
    [
        &[&CAPABILITY][..],
        list_tables::DESCRIPTORS,
        describe_table::DESCRIPTORS,
        describe_time_to_live::DESCRIPTORS,
        describe_limits::DESCRIPTORS,
        describe_contributor_insights::DESCRIPTORS,
        get_metric_data::DESCRIPTORS,
        get_insight_rule_report::DESCRIPTORS,
        scan::DESCRIPTORS,
        api_usage::DESCRIPTORS,
    ]
    .concat()
}

/// How to watch one AWS account and region's DynamoDB tables.
#[derive(Debug, Clone)]
pub struct DynamoDbOptions {
    /// The target's configured name, used in error messages.
    pub target: String,
    /// A non-AWS endpoint (DynamoDB Local, moto, LocalStack) serving both DynamoDB and CloudWatch; `None` for AWS.
    pub endpoint_url: Option<String>,
    /// The AWS region, e.g. `eu-west-1`.
    pub region: String,
    /// A named profile of the shared AWS config files; `None` uses `AWS_PROFILE` or `default`. Credentials
    /// always come from the standard chain, never from dbwatch's configuration.
    pub profile: Option<String>,
    /// TCP connect timeout of every AWS call.
    pub connect_timeout: Duration,
    /// Timeout of one attempt of one AWS call; the whole call gets `api_timeout * max_attempts`.
    pub api_timeout: Duration,
    /// Attempts per AWS call, first included (the SDK's standard retry mode, with backoff).
    pub max_attempts: u32,
    /// Table name patterns to watch (`*` and `?` globs); empty watches every table.
    pub include_tables: Vec<String>,
    /// Table name patterns to leave out, applied after `include_tables`.
    pub exclude_tables: Vec<String>,
    /// At most this many tables (the first by name) are watched: CloudWatch cost grows with tables.
    pub max_tables: usize,
    /// How often table descriptions (capacity, TTL, indexes, Contributor Insights) are re-read.
    pub describe_refresh: Duration,
    /// The CloudWatch period read each poll; rounded up to a whole minute, at least 60 s.
    pub period: Duration,
    /// How far behind now the period ends, since CloudWatch publishes late; `None` means two periods.
    pub delay: Option<Duration>,
    /// DynamoDB operations (API names) whose latency, throttled requests and system errors are read.
    pub operations: Vec<String>,
    /// Whether the sampled Scan measures item sizes (it needs `dynamodb:Scan` and spends read capacity).
    pub item_size_sampling: bool,
    /// How often each table is sampled.
    pub sample_every: Duration,
    /// Read capacity units one sample of one table may spend (eventually consistent reads: 8 KB per unit).
    pub sample_read_capacity_budget: f64,
    /// Items one sample of one table may read.
    pub sample_max_items: u32,
    /// Whether Contributor Insights is described and, where enabled, its top partition keys read.
    pub contributor_insights: bool,
    /// How many top keys per Contributor Insights rule are exported (1-100).
    pub contributor_top_n: u32,
    /// Export partition keys as a stable hash (true) or in clear (false); keys can be personal data.
    pub hash_keys: bool,
    /// Price of 1,000 CloudWatch metrics requested, in dollars, for the projected cost.
    pub cost_per_1000_metrics: f64,
}

impl Default for DynamoDbOptions {
    fn default() -> Self {
        DynamoDbOptions {
            target: "dynamodb".into(),
            endpoint_url: None,
            region: "us-east-1".into(),
            profile: None,
            connect_timeout: Duration::from_secs(3),
            api_timeout: Duration::from_secs(10),
            max_attempts: 3,
            include_tables: Vec::new(),
            exclude_tables: Vec::new(),
            max_tables: 100,
            describe_refresh: Duration::from_secs(300),
            period: Duration::from_secs(60),
            delay: None,
            operations: get_metric_data::DEFAULT_OPERATIONS
                .iter()
                .map(|operation| (*operation).to_owned())
                .collect(),
            item_size_sampling: true,
            sample_every: Duration::from_secs(3600),
            sample_read_capacity_budget: 5.0,
            sample_max_items: 1000,
            contributor_insights: true,
            contributor_top_n: 10,
            hash_keys: true,
            cost_per_1000_metrics: 0.01,
        }
    }
}

/// The sampled Scan reads at most this many tables per poll, the most overdue first, so that the first poll of
/// a large account does not scan every table at once.
const SAMPLED_TABLES_PER_POLL: usize = 4;

/// APIs an endpoint may not implement, learnt once per client.
#[derive(Debug, Clone, Copy, Default)]
struct Capabilities {
    cloudwatch: Option<bool>,
    contributor_insights: Option<bool>,
    describe_limits: Option<bool>,
}

impl Capabilities {
    fn samples(&self, out: &mut Vec<Sample>) {
        for (name, known) in [
            ("cloudwatch", self.cloudwatch),
            ("contributor_insights", self.contributor_insights),
            ("describe_limits", self.describe_limits),
        ] {
            if let Some(available) = known {
                out.push(CAPABILITY.sample_with([name], bool_value(available)));
            }
        }
    }
}

/// What the collector knows about one table between describe refreshes.
#[derive(Debug, Clone)]
struct TableState {
    info: TableInfo,
    insights: Option<ContributorInsights>,
    /// A describe call failed (a timeout, a throttle) and this is the first failure since the table was last
    /// described completely: describe it again at the next poll rather than at the next refresh, so an answer
    /// that is merely late does not leave a capability or a setting unknown for a whole refresh period. Only
    /// once: an endpoint that keeps failing a call must not make every poll describe every table.
    retry_next_poll: bool,
}

/// Whether a describe with a failed call is tried again at the next poll: yes, unless it was that retry.
fn retry_once(failed: bool, was_retry: bool) -> bool {
    failed && !was_retry
}

/// Whether a table is described at this poll: when it is new, once after a failed call, and for every table
/// when the refresh is due.
fn describe_due(refresh_due: bool, known: Option<&TableState>) -> bool {
    refresh_due || known.is_none_or(|state| state.retry_next_poll)
}

pub struct DynamoDbCollector {
    options: DynamoDbOptions,
    delay: Duration,
    session: AwsSession,
    filter: TableFilter,
    tables: BTreeMap<String, TableState>,
    quota: TableQuota,
    capabilities: Capabilities,
    /// Per view, the 500s without an AWS error code since its last success.
    bare_500s: HashMap<&'static str, u32>,
    view_log: crate::view_log::ViewLog,
    /// DescribeLimits failed at the last refresh: ask once more at the next poll.
    limits_retry_next_poll: bool,
    described_at: Option<Instant>,
    samplers: BTreeMap<String, TableSampler>,
    sampled_at: BTreeMap<String, Instant>,
    usage: UsageTotals,
    last_poll_started: Option<Instant>,
}

impl DynamoDbCollector {
    /// Builds the collector; it does not call AWS until the first poll.
    pub fn new(options: DynamoDbOptions) -> Self {
        let options = normalized(options);
        let delay = options.delay.unwrap_or(options.period * 2);
        let settings = ClientSettings {
            target: options.target.clone(),
            endpoint_url: options.endpoint_url.clone(),
            region: options.region.clone(),
            profile: options.profile.clone(),
            connect_timeout: options.connect_timeout,
            api_timeout: options.api_timeout,
            max_attempts: options.max_attempts,
        };
        DynamoDbCollector {
            filter: TableFilter {
                include: options.include_tables.clone(),
                exclude: options.exclude_tables.clone(),
                max_tables: options.max_tables,
            },
            usage: UsageTotals::new(options.cost_per_1000_metrics),
            session: AwsSession::new(settings),
            delay,
            view_log: crate::view_log::ViewLog::new(&options.target),
            options,
            tables: BTreeMap::new(),
            quota: TableQuota::default(),
            capabilities: Capabilities::default(),
            bare_500s: HashMap::new(),
            limits_retry_next_poll: false,
            described_at: None,
            samplers: BTreeMap::new(),
            sampled_at: BTreeMap::new(),
            last_poll_started: None,
        }
    }

    /// The CloudWatch window a poll made at `now` reads.
    pub fn window_at(&self, now: SystemTime) -> Window {
        Window::newest_complete(now, self.options.period, self.delay)
    }

    /// The item-size histogram of a table, cumulative since the collector started. Exported today only as its
    /// `_count` and `_sum` counters, until the metric model has a histogram kind.
    pub fn item_size_histogram(&self, table: &str) -> Option<&SizeHistogram> {
        self.samplers.get(table).map(|sampler| &sampler.histogram)
    }

    async fn poll_counted(&mut self, usage: &mut PollUsage) -> Result<Collected, CollectError> {
        // Held apart for the poll (and given back whatever it returns): the view runner counts into it while the poll borrows the collector.
        let mut bare_500s = std::mem::take(&mut self.bare_500s);
        let mut log = std::mem::take(&mut self.view_log);
        let result = self.poll_with(usage, &mut bare_500s, &mut log).await;
        self.bare_500s = bare_500s;
        self.view_log = log;
        result
    }

    async fn poll_with(
        &mut self,
        usage: &mut PollUsage,
        bare_500s: &mut HashMap<&'static str, u32>,
        log: &mut crate::view_log::ViewLog,
    ) -> Result<Collected, CollectError> {
        let (clients, fresh) = self.session.clients().await?;
        if fresh {
            self.capabilities = Capabilities::default();
            bare_500s.clear();
        }
        let mut collected = Collected::default();
        let mut run = Calls {
            run: ViewRunner::merging(&mut collected.views, log),
            bare_500s,
        };
        let samples = &mut collected.samples;

        let listed = run
            .required(
                list_tables::VIEW,
                list_tables::fetch(&clients.dynamodb, usage),
            )
            .await?;
        self.session.record_success();
        let selection = self.filter.select(listed);
        selection.samples(samples);
        self.tables
            .retain(|name, _| selection.tables.contains(name));
        self.samplers
            .retain(|name, _| selection.tables.contains(name));
        self.sampled_at
            .retain(|name, _| selection.tables.contains(name));

        self.describe(&clients, &selection.tables, &mut run, usage)
            .await?;
        let infos: Vec<TableInfo> = self
            .tables
            .values()
            .map(|state| state.info.clone())
            .collect();
        for state in self.tables.values() {
            state.info.samples(samples);
            if let Some(insights) = &state.insights {
                insights.samples(&state.info.name, samples);
            }
        }
        if self.capabilities.describe_limits == Some(true) {
            self.quota.samples(samples);
        }

        let window = self.window_at(SystemTime::now());
        let queries = get_metric_data::plan(&infos, &self.options.operations);
        // Every series stays present, as unknown, when CloudWatch cannot answer: an outage, or an endpoint
        // without CloudWatch (DynamoDB Local), must not read as zero traffic.
        let mut points = vec![Point::Failed; queries.len()];
        if self.capabilities.cloudwatch != Some(false) {
            match run
                .view(
                    get_metric_data::VIEW,
                    get_metric_data::fetch(&clients.cloudwatch, &queries, window, usage),
                )
                .await?
            {
                Ok(answered) => {
                    self.capabilities.cloudwatch = Some(true);
                    points = answered;
                }
                Err(ErrorKind::Unsupported) => self.capabilities.cloudwatch = Some(false),
                Err(_) => {}
            }
        }
        let derived = get_metric_data::derive(&infos, &self.quota, &queries, &points, window);
        samples.extend(derived.samples);
        let (active, max) = derived.most_saturated.map_or((f64::NAN, f64::NAN), |most| {
            (most.consumed_per_second, most.ceiling_per_second)
        });
        samples.extend(fleet::connection_samples(active, max));
        samples.push(fleet::DB_QUERY_LATENCY_AVG_SECONDS.sample(derived.latency_avg_seconds));

        self.hot_keys(&clients, window, &mut run, usage, samples)
            .await?;
        if self.options.item_size_sampling {
            self.sample_item_sizes(&clients, &selection.tables, &mut run, usage)
                .await?;
        }
        for (table, sampler) in &self.samplers {
            sampler.samples(table, samples);
        }
        self.capabilities.samples(samples);
        Ok(collected)
    }

    /// Describes new tables, and every table when the refresh is due.
    async fn describe(
        &mut self,
        clients: &Clients,
        tables: &[String],
        run: &mut Calls<'_>,
        usage: &mut PollUsage,
    ) -> Result<(), CollectError> {
        let refresh_due = self
            .described_at
            .is_none_or(|at| at.elapsed() >= self.options.describe_refresh);
        for table in tables {
            if !describe_due(refresh_due, self.tables.get(table)) {
                continue;
            }
            let described = run
                .view(
                    describe_table::VIEW,
                    describe_table::fetch(&clients.dynamodb, table, &self.options.region, usage),
                )
                .await?;
            // A table that could not be described keeps its previous description, if it had one.
            let Ok(mut info) = described else { continue };
            let previous = self.tables.remove(table);
            let mut failed = false;
            info.ttl = match run
                .view(
                    describe_time_to_live::VIEW,
                    describe_time_to_live::fetch(&clients.dynamodb, table, usage),
                )
                .await?
            {
                Ok(ttl) => Some(ttl),
                Err(_) => {
                    failed = true;
                    previous.as_ref().and_then(|state| state.info.ttl.clone())
                }
            };
            let was_retry = previous.as_ref().is_some_and(|state| state.retry_next_poll);
            let mut insights = previous.and_then(|state| state.insights);
            if self.options.contributor_insights
                && self.capabilities.contributor_insights != Some(false)
            {
                match run
                    .view(
                        describe_contributor_insights::VIEW,
                        describe_contributor_insights::fetch(&clients.dynamodb, table, usage),
                    )
                    .await?
                {
                    Ok(described) => {
                        self.capabilities.contributor_insights = Some(true);
                        insights = Some(described);
                    }
                    Err(ErrorKind::Unsupported) => {
                        self.capabilities.contributor_insights = Some(false);
                        insights = None;
                    }
                    // A first 500 without a code is likely an emulator lacking the API (the next table's call
                    // decides): not a reason to describe this table again at the next poll.
                    Err(_) if run.bare_500_pending(describe_contributor_insights::VIEW) => {}
                    Err(_) => failed = true,
                }
            }
            let retry_next_poll = retry_once(failed, was_retry);
            self.tables.insert(
                table.clone(),
                TableState {
                    info,
                    insights,
                    retry_next_poll,
                },
            );
        }
        if refresh_due {
            self.described_at = Some(Instant::now());
        }
        // The account's limits are read at each refresh, and again at the next poll while no answer came.
        let limits_due = refresh_due || std::mem::take(&mut self.limits_retry_next_poll);
        if limits_due && self.capabilities.describe_limits != Some(false) {
            match run
                .view(
                    describe_limits::VIEW,
                    describe_limits::fetch(&clients.dynamodb, usage),
                )
                .await?
            {
                Ok(quota) => {
                    self.capabilities.describe_limits = Some(true);
                    self.quota = quota;
                }
                Err(ErrorKind::Unsupported) => self.capabilities.describe_limits = Some(false),
                // Once more at the next poll, as for a table (see TableState::retry_next_poll).
                Err(_) => self.limits_retry_next_poll = refresh_due,
            }
        }
        Ok(())
    }

    async fn hot_keys(
        &self,
        clients: &Clients,
        window: Window,
        run: &mut Calls<'_>,
        usage: &mut PollUsage,
        samples: &mut Vec<Sample>,
    ) -> Result<(), CollectError> {
        if !self.options.contributor_insights || self.capabilities.cloudwatch == Some(false) {
            return Ok(());
        }
        for state in self.tables.values() {
            let Some(insights) = &state.insights else {
                continue;
            };
            for rule in &insights.rules {
                let report = run
                    .view(
                        get_insight_rule_report::VIEW,
                        get_insight_rule_report::fetch(
                            &clients.cloudwatch,
                            rule,
                            window,
                            self.options.contributor_top_n,
                            usage,
                        ),
                    )
                    .await?;
                let Ok(report) = report else { continue };
                let keys = get_insight_rule_report::top_keys(
                    &report,
                    window,
                    self.options.contributor_top_n as usize,
                    self.options.hash_keys,
                );
                get_insight_rule_report::samples(&state.info.name, rule.kind, &keys, samples);
            }
        }
        Ok(())
    }

    async fn sample_item_sizes(
        &mut self,
        clients: &Clients,
        tables: &[String],
        run: &mut Calls<'_>,
        usage: &mut PollUsage,
    ) -> Result<(), CollectError> {
        let now = Instant::now();
        let mut due: Vec<(&String, Option<Instant>)> = tables
            .iter()
            .map(|table| (table, self.sampled_at.get(table).copied()))
            .filter(|(_, sampled)| {
                sampled.is_none_or(|at| now.duration_since(at) >= self.options.sample_every)
            })
            .collect();
        // Never-sampled tables first, then the longest waiting.
        due.sort_by_key(|(_, sampled)| *sampled);
        let limits = SampleLimits {
            read_capacity_budget: self.options.sample_read_capacity_budget,
            max_items: self.options.sample_max_items,
        };
        for (table, _) in due.into_iter().take(SAMPLED_TABLES_PER_POLL) {
            let sampler = self.samplers.entry(table.clone()).or_default();
            let start_at = sampler.resume_at.clone();
            // Whatever the outcome, the table waits a full `sample_every`: a failing Scan is not retried every poll.
            self.sampled_at.insert(table.clone(), now);
            let outcome = run
                .view(
                    scan::VIEW,
                    scan::sample(&clients.dynamodb, table, start_at, limits, usage),
                )
                .await?;
            if let Ok(outcome) = outcome {
                sampler.absorb(outcome);
            }
        }
        Ok(())
    }
}

#[async_trait::async_trait]
impl Collector for DynamoDbCollector {
    fn db(&self) -> &'static str {
        "dynamodb"
    }

    /// A failed poll keeps the clients: the SDK reconnects by itself, and the session's own backoff (recorded
    /// below) is what spaces the attempts.
    fn drops_connection(&self, _error: &CollectError) -> bool {
        false
    }

    async fn poll(&mut self) -> Result<Collected, CollectError> {
        let started = Instant::now();
        let interval = self
            .last_poll_started
            .map(|previous| started.duration_since(previous));
        self.last_poll_started = Some(started);
        let mut usage = PollUsage::default();
        let result = self.poll_counted(&mut usage).await;
        match result {
            Ok(mut collected) => {
                self.usage.record(&usage, interval, &mut collected.samples);
                Ok(collected)
            }
            Err(error) => {
                // The calls were made even if the poll failed; only their samples are lost with it.
                self.usage.record(&usage, interval, &mut Vec::new());
                let backing_off = matches!(error, CollectError::BackingOff { .. });
                if !backing_off && matches!(error.kind(), ErrorKind::Connect | ErrorKind::Auth) {
                    self.session.record_failure();
                }
                Err(error)
            }
        }
    }

    fn abandon_connection(&mut self) {
        self.session.drop_clients();
    }

    async fn close(&mut self) {
        // The SDK's pooled connections close when the last client is dropped.
        self.session.drop_clients();
    }
}

/// Options brought into the ranges the APIs accept.
fn normalized(mut options: DynamoDbOptions) -> DynamoDbOptions {
    // Standard-resolution CloudWatch metrics have one-minute granularity: a period must be a multiple of 60.
    let minutes = options.period.as_secs().div_ceil(60).max(1);
    options.period = Duration::from_secs(minutes * 60);
    options.contributor_top_n = options.contributor_top_n.clamp(1, 100);
    options.max_attempts = options.max_attempts.max(1);
    options.max_tables = options.max_tables.max(1);
    options
}

/// The poll's API calls as views, one outcome per view and poll (durations of repeated calls add up; the
/// first failure's class is kept), with DynamoDB's own judgement of bare 500s on top of the shared runner.
struct Calls<'a> {
    run: ViewRunner<'a>,
    /// Per view, the 500s without an error code since its last success (see `BARE_500S_FOR_UNSUPPORTED`).
    bare_500s: &'a mut HashMap<&'static str, u32>,
}

impl Calls<'_> {
    /// A call the poll cannot do without: any failure fails the poll.
    async fn required<T>(
        &mut self,
        view: &'static str,
        call: impl Future<Output = Result<T, ApiError>>,
    ) -> Result<T, CollectError> {
        self.run.required(view, call).await
    }

    /// A call the poll can do without: a failure is recorded and returned as its class, except a lost
    /// connection, which ends the poll since the remaining calls would fail the same way.
    async fn view<T>(
        &mut self,
        view: &'static str,
        call: impl Future<Output = Result<T, ApiError>>,
    ) -> Result<Result<T, ErrorKind>, CollectError> {
        let started = Instant::now();
        let result = call.await;
        let duration = started.elapsed();
        let result = match result {
            Ok(value) => {
                self.bare_500s.remove(view);
                Ok(value)
            }
            Err(error) if error.kind == ErrorKind::Connect => Err(error),
            Err(mut error) => {
                if error.bare_server_error {
                    let count = self.bare_500s.entry(view).or_insert(0);
                    *count += 1;
                    if *count >= client::BARE_500S_FOR_UNSUPPORTED {
                        error.kind = ErrorKind::Unsupported;
                    }
                } else {
                    self.bare_500s.remove(view);
                }
                Err(error)
            }
        };
        self.run.settle(view, duration, result)
    }

    /// Whether `view`'s last answer was a 500 without an error code, not yet judged unsupported.
    fn bare_500_pending(&self, view: &str) -> bool {
        self.bare_500s.contains_key(view)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn one_bare_500_is_transient_and_two_in_a_row_are_unsupported() {
        let bare = || ApiError {
            kind: ErrorKind::Query,
            reason: "500 Internal Server Error".into(),
            bare_server_error: true,
        };
        let mut views = Vec::new();
        let mut bare_500s = HashMap::new();
        let mut log = crate::view_log::ViewLog::new("sessions");
        let mut run = Calls {
            run: ViewRunner::merging(&mut views, &mut log),
            bare_500s: &mut bare_500s,
        };
        let once = run
            .view("describe_limits", async { Err::<(), _>(bare()) })
            .await;
        assert!(matches!(once, Ok(Err(ErrorKind::Query))), "{once:?}");
        // A success between two bare 500s starts the count again.
        let ok = run
            .view("describe_limits", async { Ok::<_, ApiError>(()) })
            .await;
        assert!(matches!(ok, Ok(Ok(()))));
        let again = run
            .view("describe_limits", async { Err::<(), _>(bare()) })
            .await;
        assert!(matches!(again, Ok(Err(ErrorKind::Query))), "{again:?}");
        let twice = run
            .view("describe_limits", async { Err::<(), _>(bare()) })
            .await;
        assert!(
            matches!(twice, Ok(Err(ErrorKind::Unsupported))),
            "{twice:?}"
        );
        // Counted per view.
        let other = run
            .view("get_metric_data", async { Err::<(), _>(bare()) })
            .await;
        assert!(matches!(other, Ok(Err(ErrorKind::Query))), "{other:?}");
    }

    #[test]
    fn a_table_is_described_again_once_at_the_next_poll_after_a_failed_call() {
        let state = |retry_next_poll| TableState {
            info: TableInfo {
                name: "UserSessions".into(),
                on_demand: true,
                throughputs: Vec::new(),
                replicas: Vec::new(),
                ttl: None,
            },
            insights: None,
            retry_next_poll,
        };
        assert!(describe_due(false, None), "a new table");
        assert!(
            describe_due(false, Some(&state(true))),
            "a failed call last time"
        );
        assert!(
            !describe_due(false, Some(&state(false))),
            "complete and not due"
        );
        assert!(
            describe_due(true, Some(&state(false))),
            "the refresh is due"
        );
    }

    #[test]
    fn descriptors_are_unique_and_well_named() {
        let descriptors = descriptors();
        let mut names: Vec<&str> = descriptors.iter().map(|desc| desc.name).collect();
        names.sort_unstable();
        let before = names.len();
        names.dedup();
        assert_eq!(before, names.len());
        for desc in descriptors {
            assert!(desc.name.starts_with("dynamodb_"), "{}", desc.name);
            assert_eq!(
                desc.name.ends_with("_total"),
                desc.kind == MetricKind::Counter,
                "{}",
                desc.name
            );
            assert!(!desc.help.is_empty());
        }
    }

    #[test]
    fn periods_round_up_to_whole_minutes_and_delay_defaults_to_two_periods() {
        let collector = DynamoDbCollector::new(DynamoDbOptions {
            period: Duration::from_secs(90),
            ..DynamoDbOptions::default()
        });
        assert_eq!(collector.options.period, Duration::from_secs(120));
        assert_eq!(collector.delay, Duration::from_secs(240));
        let now = std::time::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let window = collector.window_at(now);
        assert_eq!(window.end - window.start, 120);
        assert_eq!(window.end % 120, 0);
    }
}
