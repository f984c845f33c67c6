//! The engine-independent part: the tick clock, the analytics clock, follow-up writes to a second store, the
//! counters, the progress line and the shutdown. A store (one module per database) only says what one tick, one
//! analytics query and its schema are; it never loops, sleeps or counts.

use std::future::Future;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// One store's flow. Every method may fail; the driver counts and logs the error and carries on.
pub trait Workload: Send + Sync + 'static {
    /// Short name for the logs, e.g. `postgres`.
    fn name(&self) -> &'static str;

    /// Applies the store's schema (idempotent). Retried every few seconds until it succeeds, while the ticks
    /// run (and fail, counted) meanwhile: a store that is down at the start is not fatal.
    fn prepare(&self) -> impl Future<Output = anyhow::Result<()>> + Send;

    /// One unit of traffic (an order, a user action, a catalog visit), called `--rate` times a second,
    /// concurrently.
    fn tick(&self) -> impl Future<Output = anyhow::Result<()>> + Send;

    /// Names of the analytics queries; `analytics(i)` runs the i-th. The driver runs them in turn, one every
    /// `--analytics-interval`, never two at once.
    fn analytics_queries(&self) -> &'static [&'static str];

    /// Runs the analytics query `analytics_queries()[index]`.
    fn analytics(&self, index: usize) -> impl Future<Output = anyhow::Result<()>> + Send;
}

/// A store that receives writes caused by another store's ticks (a sale after an order, an event after a user
/// action), the seed's "event bus".
pub trait FollowUp: Send + Sync + 'static {
    type Item: Send + 'static;

    fn write(&self, item: Self::Item) -> impl Future<Output = anyhow::Result<()>> + Send;
}

#[derive(Debug, Clone)]
pub struct Settings {
    /// Ticks per second; `None` runs no tick loop (the store only receives follow-ups and runs its analytics).
    pub rate: Option<f64>,
    pub analytics_interval: Duration,
    /// Deadline of one tick or one analytics query, client side.
    pub timeout: Duration,
    /// Ticks running at once; a tick that finds them all busy is skipped (and counted).
    pub max_in_flight: usize,
    /// How long a shutdown waits for the ticks in flight.
    pub drain_timeout: Duration,
    /// Delay between two attempts at the schema.
    pub prepare_retry: Duration,
}

/// Error lines logged per store per progress interval; the rest are counted and reported on the progress line.
const ERROR_LINES_PER_INTERVAL: u64 = 5;

/// One store's counters.
pub struct Stats {
    pub store: &'static str,
    /// What a tick (or a follow-up write) is called on the progress line: `orders`, `sales`, `events`.
    pub unit: &'static str,
    ticks: AtomicU64,
    tick_errors: AtomicU64,
    queries: AtomicU64,
    query_errors: AtomicU64,
    skipped: AtomicU64,
    error_lines: AtomicU64,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Snapshot {
    pub ticks: u64,
    pub tick_errors: u64,
    pub queries: u64,
    pub query_errors: u64,
    pub skipped: u64,
}

impl Stats {
    pub fn new(store: &'static str, unit: &'static str) -> Arc<Self> {
        Arc::new(Stats {
            store,
            unit,
            ticks: AtomicU64::new(0),
            tick_errors: AtomicU64::new(0),
            queries: AtomicU64::new(0),
            query_errors: AtomicU64::new(0),
            skipped: AtomicU64::new(0),
            error_lines: AtomicU64::new(0),
        })
    }

    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            ticks: self.ticks.load(Ordering::Relaxed),
            tick_errors: self.tick_errors.load(Ordering::Relaxed),
            queries: self.queries.load(Ordering::Relaxed),
            query_errors: self.query_errors.load(Ordering::Relaxed),
            skipped: self.skipped.load(Ordering::Relaxed),
        }
    }

    fn error(&self, counter: &AtomicU64, what: &str, error: &anyhow::Error) {
        counter.fetch_add(1, Ordering::Relaxed);
        self.log(what, error);
    }

    /// Logs an error without counting it (schema attempts are not traffic).
    fn log(&self, what: &str, error: &anyhow::Error) {
        if self.error_lines.fetch_add(1, Ordering::Relaxed) < ERROR_LINES_PER_INTERVAL {
            tracing::warn!("{}: {what} failed: {error:#}", self.store);
        }
    }

    /// Records the outcome of one tick or follow-up write bounded by `timeout`.
    fn record_tick(
        &self,
        outcome: Result<anyhow::Result<()>, tokio::time::error::Elapsed>,
        timeout: Duration,
    ) {
        match outcome {
            Ok(Ok(())) => {
                self.ticks.fetch_add(1, Ordering::Relaxed);
            }
            Ok(Err(error)) => self.error(&self.tick_errors, self.unit, &error),
            Err(_) => self.error(
                &self.tick_errors,
                self.unit,
                &anyhow::anyhow!("no answer within {timeout:?}"),
            ),
        }
    }
}

impl Snapshot {
    pub fn errors(&self) -> u64 {
        self.tick_errors + self.query_errors
    }

    /// `orders 1200, queries 60, errors 0 (0 orders, 0 queries), skipped 0`
    fn summary(&self, unit: &str) -> String {
        format!(
            "{unit} {}, queries {}, errors {} ({} {unit}, {} queries), skipped {}",
            self.ticks,
            self.queries,
            self.errors(),
            self.tick_errors,
            self.query_errors,
            self.skipped,
        )
    }

    /// `orders 1200 (+100, 20.0/s) queries 60 (+5) errors 0 (+0)`, and `skipped N` when some were.
    fn line(&self, unit: &str, previous: &Snapshot, elapsed: Duration) -> String {
        let seconds = elapsed.as_secs_f64().max(0.001);
        let mut line = format!(
            "{unit} {} (+{}, {:.1}/s)",
            self.ticks,
            self.ticks - previous.ticks,
            (self.ticks - previous.ticks) as f64 / seconds,
        );
        if self.queries > 0 || self.query_errors > 0 {
            line.push_str(&format!(
                " queries {} (+{})",
                self.queries,
                self.queries - previous.queries
            ));
        }
        line.push_str(&format!(
            " errors {} (+{})",
            self.errors(),
            self.errors() - previous.errors()
        ));
        if self.skipped > 0 {
            line.push_str(&format!(" skipped {}", self.skipped));
        }
        line
    }
}

/// Stops the whole run once every store's tick loop has done its `--count` ticks.
pub struct Quota {
    pub ticks: u64,
    remaining_loops: AtomicUsize,
    stop: CancellationToken,
}

impl Quota {
    pub fn new(ticks: u64, loops: usize, stop: CancellationToken) -> Arc<Self> {
        Arc::new(Quota {
            ticks,
            remaining_loops: AtomicUsize::new(loops),
            stop,
        })
    }

    fn loop_done(&self) {
        if self.remaining_loops.fetch_sub(1, Ordering::AcqRel) == 1 {
            tracing::info!(
                "--count {} reached by every store, shutting down",
                self.ticks
            );
            self.stop.cancel();
        }
    }
}

/// Drives `workload` until `stop` is cancelled (or its quota is done), then waits for the ticks in flight
/// (bounded). Closing the store is the caller's job, after the follow-ups it receives have drained.
pub async fn run<W: Workload>(
    workload: Arc<W>,
    stats: Arc<Stats>,
    settings: Settings,
    quota: Option<Arc<Quota>>,
    stop: CancellationToken,
) {
    let tracker = TaskTracker::new();
    let store = workload.name();

    let prepare = tokio::spawn(prepare_loop(
        workload.clone(),
        stats.clone(),
        settings.clone(),
        stop.clone(),
    ));
    let analytics = tokio::spawn(analytics_loop(
        workload.clone(),
        settings.clone(),
        stats.clone(),
        stop.clone(),
    ));

    if let Some(rate) = settings.rate {
        tick_loop(
            &workload,
            rate,
            &settings,
            &stats,
            quota.as_ref().map(|quota| quota.ticks),
            &stop,
            &tracker,
        )
        .await;
        if let Some(quota) = &quota {
            quota.loop_done();
        }
    }
    stop.cancelled().await;

    tracker.close();
    if tokio::time::timeout(settings.drain_timeout, tracker.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            "{store}: {} ticks still running after {:?}; abandoning them",
            tracker.len(),
            settings.drain_timeout
        );
    }
    for (name, task) in [("schema", prepare), ("analytics", analytics)] {
        if let Err(error) = task.await {
            tracing::warn!("{store}: {name} task ended abnormally: {error}");
        }
    }
}

async fn prepare_loop<W: Workload>(
    workload: Arc<W>,
    stats: Arc<Stats>,
    settings: Settings,
    stop: CancellationToken,
) {
    let store = workload.name();
    loop {
        let attempt = tokio::time::timeout(
            settings.timeout.max(Duration::from_secs(30)),
            workload.prepare(),
        );
        tokio::select! {
            _ = stop.cancelled() => return,
            outcome = attempt => match outcome {
                Ok(Ok(())) => {
                    tracing::info!("{store}: schema in place");
                    return;
                }
                Ok(Err(error)) => stats.log("applying the schema", &error),
                Err(_) => stats.log("applying the schema", &anyhow::anyhow!("no answer in time")),
            },
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(settings.prepare_retry) => {}
        }
    }
}

async fn tick_loop<W: Workload>(
    workload: &Arc<W>,
    rate: f64,
    settings: &Settings,
    stats: &Arc<Stats>,
    count: Option<u64>,
    stop: &CancellationToken,
    tracker: &TaskTracker,
) {
    let in_flight = Arc::new(Semaphore::new(settings.max_in_flight));
    let mut clock = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
    // A stalled machine does not make up for lost ticks with a burst: the rate is a ceiling.
    clock.set_missed_tick_behavior(MissedTickBehavior::Skip);
    let mut started = 0u64;
    loop {
        if count.is_some_and(|count| started >= count) {
            // Every tick of the quota is started; it is done once they have all finished.
            let _ = in_flight.acquire_many(settings.max_in_flight as u32).await;
            return;
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = clock.tick() => {}
        }
        let permit = if count.is_some() {
            // A counted run places exactly N ticks: it waits for a slot instead of skipping.
            match in_flight.clone().acquire_owned().await {
                Ok(permit) => permit,
                Err(_) => return,
            }
        } else {
            let Ok(permit) = in_flight.clone().try_acquire_owned() else {
                stats.skipped.fetch_add(1, Ordering::Relaxed);
                continue;
            };
            permit
        };
        started += 1;
        let workload = workload.clone();
        let stats = stats.clone();
        let timeout = settings.timeout;
        tracker.spawn(async move {
            let _permit = permit;
            stats.record_tick(
                tokio::time::timeout(timeout, workload.tick()).await,
                timeout,
            );
        });
    }
}

async fn analytics_loop<W: Workload>(
    workload: Arc<W>,
    settings: Settings,
    stats: Arc<Stats>,
    stop: CancellationToken,
) {
    let queries = workload.analytics_queries();
    if queries.is_empty() {
        return;
    }
    let mut clock = tokio::time::interval(settings.analytics_interval);
    clock.set_missed_tick_behavior(MissedTickBehavior::Delay);
    // The first analytics query runs one interval after the start, once there is traffic to look at.
    clock.reset();
    let mut next = 0usize;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = clock.tick() => {}
        }
        let index = next % queries.len();
        next = next.wrapping_add(1);
        let what = format!("analytics query {}", queries[index]);
        tokio::select! {
            // A shutdown does not wait for a long report: the query is dropped (the server rolls it back).
            _ = stop.cancelled() => return,
            outcome = tokio::time::timeout(settings.timeout, workload.analytics(index)) => match outcome {
                Ok(Ok(())) => {
                    stats.queries.fetch_add(1, Ordering::Relaxed);
                }
                Ok(Err(error)) => stats.error(&stats.query_errors, &what, &error),
                Err(_) => stats.error(
                    &stats.query_errors,
                    &what,
                    &anyhow::anyhow!("no answer within {:?}", settings.timeout),
                ),
            },
        }
    }
}

/// Follow-up writes into another store, each a task of its own, so a slow or dead target never slows the
/// store that caused them: when `max_in_flight` writes are pending, new ones are dropped and counted as skipped.
pub struct Sink<F: FollowUp> {
    target: Arc<F>,
    stats: Arc<Stats>,
    permits: Arc<Semaphore>,
    tracker: TaskTracker,
    timeout: Duration,
}

impl<F: FollowUp> Sink<F> {
    pub fn new(target: Arc<F>, stats: Arc<Stats>, max_in_flight: usize, timeout: Duration) -> Self {
        Sink {
            target,
            stats,
            permits: Arc::new(Semaphore::new(max_in_flight)),
            tracker: TaskTracker::new(),
            timeout,
        }
    }

    pub fn submit(&self, item: F::Item) {
        let Ok(permit) = self.permits.clone().try_acquire_owned() else {
            self.stats.skipped.fetch_add(1, Ordering::Relaxed);
            return;
        };
        let target = self.target.clone();
        let stats = self.stats.clone();
        let timeout = self.timeout;
        self.tracker.spawn(async move {
            let _permit = permit;
            stats.record_tick(
                tokio::time::timeout(timeout, target.write(item)).await,
                timeout,
            );
        });
    }

    /// Waits (bounded) for the pending writes; called once the stores feeding this sink have stopped.
    pub async fn drain(&self, timeout: Duration) {
        self.tracker.close();
        if tokio::time::timeout(timeout, self.tracker.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                "{}: {} {} still pending after {timeout:?}; abandoning them",
                self.stats.store,
                self.tracker.len(),
                self.stats.unit
            );
        }
    }
}

/// Logs one line per interval with every store's counts and errors, until `stop`.
pub async fn progress_loop(stores: Vec<Arc<Stats>>, interval: Duration, stop: CancellationToken) {
    let mut clock = tokio::time::interval(interval);
    clock.reset();
    let mut previous: Vec<Snapshot> = stores.iter().map(|stats| stats.snapshot()).collect();
    let mut previous_at = Instant::now();
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = clock.tick() => {}
        }
        let elapsed = previous_at.elapsed();
        previous_at = Instant::now();
        let mut parts = Vec::with_capacity(stores.len());
        for (stats, before) in stores.iter().zip(previous.iter_mut()) {
            let now = stats.snapshot();
            let suppressed = stats
                .error_lines
                .swap(0, Ordering::Relaxed)
                .saturating_sub(ERROR_LINES_PER_INTERVAL);
            let mut part = format!("{}: {}", stats.store, now.line(stats.unit, before, elapsed));
            if suppressed > 0 {
                part.push_str(&format!(" ({suppressed} error lines not shown)"));
            }
            parts.push(part);
            *before = now;
        }
        tracing::info!("{}", parts.join(" | "));
    }
}

/// The closing line of each store; returns the total number of errors.
pub fn summarize(stores: &[Arc<Stats>], elapsed: Duration) -> u64 {
    let mut errors = 0;
    for stats in stores {
        let total = stats.snapshot();
        errors += total.errors();
        tracing::info!(
            "{}: done after {}: {}",
            stats.store,
            humantime::format_duration(Duration::from_secs(elapsed.as_secs())),
            total.summary(stats.unit)
        );
    }
    errors
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Fails every third tick and every analytics query.
    struct Flaky {
        calls: AtomicUsize,
    }

    impl Workload for Flaky {
        fn name(&self) -> &'static str {
            "flaky"
        }

        async fn prepare(&self) -> anyhow::Result<()> {
            Ok(())
        }

        async fn tick(&self) -> anyhow::Result<()> {
            if self.calls.fetch_add(1, Ordering::Relaxed) % 3 == 2 {
                anyhow::bail!("boom");
            }
            Ok(())
        }

        fn analytics_queries(&self) -> &'static [&'static str] {
            &["broken"]
        }

        async fn analytics(&self, _index: usize) -> anyhow::Result<()> {
            anyhow::bail!("no such table")
        }
    }

    impl FollowUp for Flaky {
        type Item = u64;

        async fn write(&self, item: u64) -> anyhow::Result<()> {
            if item % 2 == 1 {
                anyhow::bail!("odd");
            }
            Ok(())
        }
    }

    fn settings(rate: f64) -> Settings {
        Settings {
            rate: Some(rate),
            analytics_interval: Duration::from_millis(100),
            timeout: Duration::from_secs(1),
            max_in_flight: 8,
            drain_timeout: Duration::from_secs(1),
            prepare_retry: Duration::from_secs(1),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn errors_are_counted_and_the_loop_keeps_going() {
        let workload = Arc::new(Flaky {
            calls: AtomicUsize::new(0),
        });
        let stats = Stats::new("flaky", "orders");
        let stop = CancellationToken::new();
        let stopper = stop.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(1)).await;
            stopper.cancel();
        });
        run(workload.clone(), stats.clone(), settings(100.0), None, stop).await;
        let calls = workload.calls.load(Ordering::Relaxed) as u64;
        assert!(calls >= 90, "only {calls} ticks in 1 s at 100/s");
        let total = stats.snapshot();
        assert_eq!(total.ticks + total.tick_errors, calls);
        assert_eq!(total.tick_errors, calls / 3);
        // The ~9 analytics queries all failed.
        assert!(total.query_errors >= 5, "{total:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_quota_places_exactly_n_ticks_then_stops_the_run() {
        let workload = Arc::new(Flaky {
            calls: AtomicUsize::new(0),
        });
        let stats = Stats::new("flaky", "orders");
        let stop = CancellationToken::new();
        let quota = Quota::new(30, 1, stop.clone());
        run(
            workload.clone(),
            stats.clone(),
            settings(1000.0),
            Some(quota),
            stop.clone(),
        )
        .await;
        assert!(stop.is_cancelled());
        assert_eq!(workload.calls.load(Ordering::Relaxed), 30);
        assert_eq!(stats.snapshot().ticks, 20);
    }

    #[tokio::test]
    async fn follow_ups_are_counted_on_the_target_store() {
        let target = Arc::new(Flaky {
            calls: AtomicUsize::new(0),
        });
        let stats = Stats::new("target", "sales");
        let sink = Sink::new(target, stats.clone(), 100, Duration::from_secs(1));
        for item in 0..10 {
            sink.submit(item);
        }
        sink.drain(Duration::from_secs(5)).await;
        let total = stats.snapshot();
        assert_eq!((total.ticks, total.tick_errors), (5, 5));
    }

    #[test]
    fn the_progress_line_shows_totals_and_deltas() {
        let before = Snapshot {
            ticks: 100,
            ..Snapshot::default()
        };
        let now = Snapshot {
            ticks: 200,
            queries: 5,
            query_errors: 1,
            ..Snapshot::default()
        };
        assert_eq!(
            now.line("orders", &before, Duration::from_secs(5)),
            "orders 200 (+100, 20.0/s) queries 5 (+5) errors 1 (+1)"
        );
        assert_eq!(
            before.line("events", &before, Duration::from_secs(5)),
            "events 100 (+0, 0.0/s) errors 0 (+0)"
        );
    }
}
