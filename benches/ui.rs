//! What the status UI's fleet overview (`/`) costs to render: 50 targets, each with the fleet signals (two
//! replicas, three databases' hit ratios, six collectors) in its snapshot, an hour of trends per signal as the
//! rules engine publishes them (120 points per series, 8 series per target), ten active alerts and the
//! shipped rules' thresholds. The page must render in well under 100 ms, since every phone that opens it
//! pays it (issue 18).
//!
//! Run: `cargo bench --bench ui`; figures in docs/benchmarks.md.

use std::collections::BTreeMap;
use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use criterion::{criterion_group, criterion_main, Criterion};
use dbwatch::store::Snapshot;
use dbwatch::web::ui::{overview, Thresholds};
use dbwatch_collectors::{MetricDesc, MetricKind, Sample};
use dbwatch_rules::{AlertState, AlertSummary, AlertsView, TrendSeries, Trends};

const TARGETS: usize = 50;
const POINTS: i64 = 120;

const fn gauge(name: &'static str, labels: &'static [&'static str]) -> MetricDesc {
    MetricDesc {
        name,
        help: "",
        kind: MetricKind::Gauge,
        labels,
    }
}

static UP: MetricDesc = gauge("db_up", &[]);
static LATENCY: MetricDesc = gauge("db_query_latency_avg_seconds", &[]);
static UTILIZATION: MetricDesc = gauge("db_connections_utilization_ratio", &[]);
static LAG: MetricDesc = gauge("db_replication_lag_seconds", &["replica"]);
static HEALTHY: MetricDesc = gauge("db_replication_healthy", &["replica"]);
static HIT: MetricDesc = gauge("pg_database_buffer_hit_ratio", &["database"]);
static POLL: MetricDesc = gauge("dbwatch_poll_duration_seconds", &[]);
static COLLECTOR: MetricDesc = gauge("dbwatch_collector_success", &["collector"]);

fn snapshot(index: usize) -> (Snapshot, Vec<TrendSeries>) {
    let name = format!("orders-pg-{index:02}");
    let mut samples: Vec<Sample> = vec![
        UP.sample(1.0),
        LATENCY.sample(0.002 * index as f64),
        UTILIZATION.sample(index as f64 / TARGETS as f64),
        POLL.sample(0.02),
    ];
    for replica in ["replica-a", "replica-b"] {
        samples.push(LAG.sample_with([replica], index as f64));
        samples.push(HEALTHY.sample_with([replica], 1.0));
    }
    for database in ["orders", "billing", "postgres"] {
        samples.push(HIT.sample_with([database], 0.99));
    }
    for collector in [
        "pg_stat_activity",
        "pg_stat_database",
        "pg_stat_replication",
        "pg_stat_statements",
        "pg_locks",
        "pg_settings",
    ] {
        samples.push(COLLECTOR.sample_with([collector], 1.0));
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_millis() as i64);
    let series = |metric: &str, labels: &[(&str, &str)], scale: f64| TrendSeries {
        name: Arc::from(metric),
        labels: labels
            .iter()
            .map(|(name, value)| (name.to_string(), value.to_string()))
            .chain([("target".to_owned(), name.clone())])
            .collect(),
        points: (0..POINTS)
            .map(|i| {
                (
                    now - (POINTS - i) * 30_000,
                    scale * (1.0 + ((i + index as i64) % 7) as f64 / 10.0),
                )
            })
            .collect(),
    };
    let trends = vec![
        series("db_up", &[], 1.0),
        series("db_query_latency_avg_seconds", &[], 0.01),
        series("db_connections_utilization_ratio", &[], 0.5),
        series(
            "db_replication_lag_seconds",
            &[("replica", "replica-a")],
            2.0,
        ),
        series(
            "db_replication_lag_seconds",
            &[("replica", "replica-b")],
            3.0,
        ),
        series(
            "pg_database_buffer_hit_ratio",
            &[("database", "orders")],
            0.9,
        ),
        series(
            "pg_database_buffer_hit_ratio",
            &[("database", "billing")],
            0.8,
        ),
        series("dbwatch_poll_duration_seconds", &[], 0.02),
    ];
    let snapshot = Snapshot {
        target: name,
        db: "postgres",
        labels: BTreeMap::from([("env".to_owned(), "prod".to_owned())]),
        taken_at: SystemTime::now(),
        up: true,
        error_kind: None,
        samples,
        families: Vec::new(),
    };
    (snapshot, trends)
}

fn overview_bench(c: &mut Criterion) {
    let mut snapshots = Vec::new();
    let mut by_target = BTreeMap::new();
    for index in 0..TARGETS {
        let (snapshot, trends) = snapshot(index);
        by_target.insert(snapshot.target.clone(), trends);
        snapshots.push(Arc::new(snapshot));
    }
    let mut view = AlertsView::default();
    view.trends = Arc::new(Trends {
        at: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |since| since.as_millis() as i64),
        window_ms: 3_600_000,
        by_target,
    });
    view.alerts = (0..10)
        .map(|index| AlertSummary {
            group: "fleet".into(),
            alertname: "high_latency".into(),
            labels: BTreeMap::from([("target".to_owned(), format!("orders-pg-{index:02}"))]),
            annotations: BTreeMap::from([(
                "summary".to_owned(),
                "queries average 120ms".to_owned(),
            )]),
            state: if index % 2 == 0 {
                AlertState::Firing
            } else {
                AlertState::Pending
            },
            value: 0.12,
            active_at: SystemTime::now() - Duration::from_secs(300),
            fired_at: None,
            resolved_at: None,
        })
        .collect();
    let thresholds =
        Thresholds::from_rules(&dbwatch::engines::shipped_rules().expect("shipped rules"));
    let html = overview::render(
        &snapshots,
        &view,
        &thresholds,
        &[],
        (TARGETS, TARGETS),
        SystemTime::now(),
    );
    assert!(
        html.matches("<tr data-target=").count() == TARGETS && html.contains("stroke-dasharray")
    );
    eprintln!(
        "fleet overview for {TARGETS} targets: {} KiB of HTML",
        html.len() / 1024
    );
    let mut group = c.benchmark_group("ui");
    group.bench_function("fleet_overview_50_targets", |b| {
        b.iter(|| {
            black_box(overview::render(
                black_box(&snapshots),
                &view,
                &thresholds,
                &[],
                (TARGETS, TARGETS),
                SystemTime::now(),
            ))
        })
    });
    group.finish();
}

criterion_group!(benches, overview_bench);
criterion_main!(benches);
