//! The engine-independent part: the order clock, the analytics clock, the counters, the progress line and the
//! shutdown. An engine (one module per database, see `postgres.rs`) only says what one order and one analytics
//! query are; it never loops, sleeps or counts.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// One database's flow. Both methods may fail; the driver counts and logs the error and carries on.
pub trait Workload: Send + Sync + 'static {
    /// Short name for the logs, e.g. `postgres`.
    fn name(&self) -> &'static str;

    /// One order on the OLTP path (called `--rate` times a second, concurrently).
    fn order(&self) -> impl Future<Output = anyhow::Result<()>> + Send;

    /// Names of the analytics queries; `analytics(i)` runs the i-th. The driver runs them in turn, one every
    /// `--analytics-interval`, never two at once.
    fn analytics_queries(&self) -> &'static [&'static str];

    /// Runs the analytics query `analytics_queries()[index]`.
    fn analytics(&self, index: usize) -> impl Future<Output = anyhow::Result<()>> + Send;

    /// Closes the connections; called once, after the last order finished.
    fn close(&self) -> impl Future<Output = ()> + Send;
}

#[derive(Debug, Clone)]
pub struct Settings {
    /// Orders per second.
    pub rate: f64,
    pub analytics_interval: Duration,
    /// Deadline of one order or one analytics query, client side.
    pub timeout: Duration,
    /// Orders running at once; a tick that finds them all busy is skipped (and counted).
    pub max_in_flight: usize,
    pub progress_interval: Duration,
    /// How long a shutdown waits for the orders in flight.
    pub drain_timeout: Duration,
}

/// Error lines logged per progress interval; the rest are counted and reported on the progress line.
const ERROR_LINES_PER_INTERVAL: u64 = 5;

#[derive(Default)]
struct Stats {
    orders: AtomicU64,
    order_errors: AtomicU64,
    queries: AtomicU64,
    query_errors: AtomicU64,
    skipped: AtomicU64,
    error_lines: AtomicU64,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Snapshot {
    orders: u64,
    order_errors: u64,
    queries: u64,
    query_errors: u64,
    skipped: u64,
}

impl Stats {
    fn snapshot(&self) -> Snapshot {
        Snapshot {
            orders: self.orders.load(Ordering::Relaxed),
            order_errors: self.order_errors.load(Ordering::Relaxed),
            queries: self.queries.load(Ordering::Relaxed),
            query_errors: self.query_errors.load(Ordering::Relaxed),
            skipped: self.skipped.load(Ordering::Relaxed),
        }
    }

    fn error(&self, counter: &AtomicU64, engine: &str, what: &str, error: &anyhow::Error) {
        counter.fetch_add(1, Ordering::Relaxed);
        if self.error_lines.fetch_add(1, Ordering::Relaxed) < ERROR_LINES_PER_INTERVAL {
            tracing::warn!("{engine}: {what} failed: {error:#}");
        }
    }
}

impl Snapshot {
    fn errors(&self) -> u64 {
        self.order_errors + self.query_errors
    }

    /// `orders 1200 (20.0/s), queries 60, errors 0 (0 orders, 0 queries), skipped 0`
    fn summary(&self, elapsed: Duration) -> String {
        format!(
            "orders {} ({:.1}/s), queries {}, errors {} ({} orders, {} queries), skipped {}",
            self.orders,
            self.orders as f64 / elapsed.as_secs_f64().max(0.001),
            self.queries,
            self.errors(),
            self.order_errors,
            self.query_errors,
            self.skipped,
        )
    }

    /// `orders 1200 (+100, 20.0/s), queries 60 (+5), errors 0 (+0), skipped 0`
    fn line(&self, previous: &Snapshot, elapsed: Duration) -> String {
        let seconds = elapsed.as_secs_f64().max(0.001);
        format!(
            "orders {} (+{}, {:.1}/s), queries {} (+{}), errors {} (+{}), skipped {}",
            self.orders,
            self.orders - previous.orders,
            (self.orders - previous.orders) as f64 / seconds,
            self.queries,
            self.queries - previous.queries,
            self.errors(),
            self.errors() - previous.errors(),
            self.skipped,
        )
    }
}

/// Drives `workload` until `stop` is cancelled, then waits for the orders in flight (bounded) and closes it.
/// Returns the number of errors.
pub async fn run<W: Workload>(
    workload: Arc<W>,
    settings: Settings,
    stop: CancellationToken,
) -> u64 {
    let stats = Arc::new(Stats::default());
    let started = Instant::now();
    let tracker = TaskTracker::new();
    let engine = workload.name();

    let analytics = tokio::spawn(analytics_loop(
        workload.clone(),
        settings.clone(),
        stats.clone(),
        stop.clone(),
    ));
    let progress_stop = CancellationToken::new();
    let progress = tokio::spawn(progress_loop(
        engine,
        settings.progress_interval,
        stats.clone(),
        progress_stop.clone(),
    ));

    order_loop(&workload, &settings, &stats, &stop, &tracker).await;

    tracing::info!("{engine}: stopping; waiting for the orders in flight");
    tracker.close();
    if tokio::time::timeout(settings.drain_timeout, tracker.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            "{engine}: {} orders still running after {:?}; abandoning them",
            tracker.len(),
            settings.drain_timeout
        );
    }
    if let Err(error) = analytics.await {
        tracing::warn!("{engine}: analytics task ended abnormally: {error}");
    }
    progress_stop.cancel();
    if let Err(error) = progress.await {
        tracing::warn!("{engine}: progress task ended abnormally: {error}");
    }
    workload.close().await;

    let total = stats.snapshot();
    tracing::info!(
        "{engine}: done after {}: {}",
        humantime::format_duration(Duration::from_secs(started.elapsed().as_secs())),
        total.summary(started.elapsed())
    );
    total.errors()
}

async fn order_loop<W: Workload>(
    workload: &Arc<W>,
    settings: &Settings,
    stats: &Arc<Stats>,
    stop: &CancellationToken,
    tracker: &TaskTracker,
) {
    let engine = workload.name();
    let in_flight = Arc::new(Semaphore::new(settings.max_in_flight));
    let mut clock = tokio::time::interval(Duration::from_secs_f64(1.0 / settings.rate));
    // A stalled machine does not make up for lost ticks with a burst: the rate is a ceiling.
    clock.set_missed_tick_behavior(MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = clock.tick() => {}
        }
        let Ok(permit) = in_flight.clone().try_acquire_owned() else {
            stats.skipped.fetch_add(1, Ordering::Relaxed);
            continue;
        };
        let workload = workload.clone();
        let stats = stats.clone();
        let timeout = settings.timeout;
        tracker.spawn(async move {
            let _permit = permit;
            match tokio::time::timeout(timeout, workload.order()).await {
                Ok(Ok(())) => {
                    stats.orders.fetch_add(1, Ordering::Relaxed);
                }
                Ok(Err(error)) => stats.error(&stats.order_errors, engine, "order", &error),
                Err(_) => stats.error(
                    &stats.order_errors,
                    engine,
                    "order",
                    &anyhow::anyhow!("no answer within {timeout:?}"),
                ),
            }
        });
    }
}

async fn analytics_loop<W: Workload>(
    workload: Arc<W>,
    settings: Settings,
    stats: Arc<Stats>,
    stop: CancellationToken,
) {
    let engine = workload.name();
    let queries = workload.analytics_queries();
    if queries.is_empty() {
        return;
    }
    let mut clock = tokio::time::interval(settings.analytics_interval);
    clock.set_missed_tick_behavior(MissedTickBehavior::Delay);
    // The first analytics query runs one interval after the start, once there are orders to look at.
    clock.reset();
    let mut next = 0usize;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = clock.tick() => {}
        }
        let index = next % queries.len();
        next = next.wrapping_add(1);
        let name = queries[index];
        let what = format!("analytics query {name}");
        tokio::select! {
            // A shutdown does not wait for a long report: the query is dropped (the server rolls it back).
            _ = stop.cancelled() => return,
            outcome = tokio::time::timeout(settings.timeout, workload.analytics(index)) => match outcome {
                Ok(Ok(())) => {
                    stats.queries.fetch_add(1, Ordering::Relaxed);
                }
                Ok(Err(error)) => stats.error(&stats.query_errors, engine, &what, &error),
                Err(_) => stats.error(
                    &stats.query_errors,
                    engine,
                    &what,
                    &anyhow::anyhow!("no answer within {:?}", settings.timeout),
                ),
            },
        }
    }
}

async fn progress_loop(
    engine: &'static str,
    interval: Duration,
    stats: Arc<Stats>,
    stop: CancellationToken,
) {
    let mut clock = tokio::time::interval(interval);
    clock.reset();
    let mut previous = stats.snapshot();
    let mut previous_at = Instant::now();
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = clock.tick() => {}
        }
        let now = stats.snapshot();
        let suppressed = stats
            .error_lines
            .swap(0, Ordering::Relaxed)
            .saturating_sub(ERROR_LINES_PER_INTERVAL);
        let mut line = now.line(&previous, previous_at.elapsed());
        if suppressed > 0 {
            line.push_str(&format!(" ({suppressed} error lines not shown)"));
        }
        tracing::info!("{engine}: {line}");
        previous = now;
        previous_at = Instant::now();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    /// Fails every third order and every analytics query.
    struct Flaky {
        calls: AtomicUsize,
    }

    impl Workload for Flaky {
        fn name(&self) -> &'static str {
            "flaky"
        }

        async fn order(&self) -> anyhow::Result<()> {
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

        async fn close(&self) {}
    }

    #[tokio::test(start_paused = true)]
    async fn errors_are_counted_and_the_loop_keeps_going() {
        let workload = Arc::new(Flaky {
            calls: AtomicUsize::new(0),
        });
        let settings = Settings {
            rate: 100.0,
            analytics_interval: Duration::from_millis(100),
            timeout: Duration::from_secs(1),
            max_in_flight: 8,
            progress_interval: Duration::from_secs(5),
            drain_timeout: Duration::from_secs(1),
        };
        let stop = CancellationToken::new();
        let stopper = stop.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(1)).await;
            stopper.cancel();
        });
        let errors = run(workload.clone(), settings, stop).await;
        let calls = workload.calls.load(Ordering::Relaxed) as u64;
        assert!(calls >= 90, "only {calls} orders in 1 s at 100/s");
        // A third of the orders failed, and the ~9 analytics queries all did.
        assert!(
            errors >= calls / 3 + 5,
            "{errors} errors for {calls} orders"
        );
    }

    #[test]
    fn the_progress_line_shows_totals_and_deltas() {
        let before = Snapshot {
            orders: 100,
            ..Snapshot::default()
        };
        let now = Snapshot {
            orders: 200,
            queries: 5,
            query_errors: 1,
            ..Snapshot::default()
        };
        assert_eq!(
            now.line(&before, Duration::from_secs(5)),
            "orders 200 (+100, 20.0/s), queries 5 (+5), errors 1 (+1), skipped 0"
        );
    }
}
