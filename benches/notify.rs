//! What one notifier reconcile tick costs during an alert storm: 5,000 firing alerts, three inhibition rules
//! and 100 silences, the view reconciled every 500 ms (`Notifier::reconcile`).
//!
//! * `notify/tick_5000_firing`: a tick where no group is due: the silence check, the inhibition pass, the
//!   fingerprints, the route walk and the grouping of every alert, and the lookup of every group in the
//!   notification log. This runs twice a second for as long as the storm lasts.
//! * `notify/flush_all_5000_firing`: a tick where every group is due (group timers reset), which adds the dedup
//!   decision of every group against the log (nothing new to send, as after `group_interval`).
//! * `notify/tick_new_view_5000_firing`: the first tick after the engine published a new view (once per
//!   evaluation, 15 s by default), which also computes every fingerprint and the indexed inhibition pass.
//!
//! Run: `cargo bench --all-features --bench notify`; figures in docs/benchmarks.md.

use std::collections::BTreeMap;
use std::hint::black_box;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use dbwatch_notify::{self as notify, Notifier};
use dbwatch_rules::{AlertState, AlertSummary, AlertsHandle};
use serde_json::json;

const FIRING: usize = 5_000;
const SILENCES: usize = 100;
const ROUTING: &str = "route:
  receiver: webhook
  group_by: [alertname, cluster, target]
  group_wait: 0s
  group_interval: 5m
  repeat_interval: 4h
receivers:
  - name: webhook
    webhook_configs:
      - url: http://127.0.0.1:9/never
inhibit_rules:
  - source_matchers: [severity=critical]
    target_matchers: [severity=warning]
    equal: [cluster, target]
  - source_matchers: [alertname=target_down]
    target_matchers: ['alertname=~\"replication_.*|high_latency\"']
    equal: [target]
  - source_matchers: [alertname=cluster_down]
    target_matchers: ['severity=~\"warning|info\"']
    equal: [cluster]
";
const NAMES: &[&str] = &[
    "target_down",
    "high_latency",
    "replication_lag",
    "replication_broken",
    "connection_pool_exhausted",
    "disk_almost_full",
    "long_running_transaction",
    "deadlocks",
    "cache_hit_ratio_low",
    "too_many_connections",
];

fn alerts() -> Vec<AlertSummary> {
    let now = SystemTime::now();
    (0..FIRING)
        .map(|index| {
            let name = NAMES[index % NAMES.len()];
            let severity = if index % 3 == 0 {
                "critical"
            } else {
                "warning"
            };
            let labels: BTreeMap<String, String> = [
                ("alertname", name.to_owned()),
                ("target", format!("db{}", index / NAMES.len())),
                ("cluster", format!("cluster{}", index % 50)),
                ("severity", severity.to_owned()),
                ("db", "postgres".to_owned()),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect();
            AlertSummary {
                group: "bench".into(),
                alertname: name.to_owned(),
                annotations: [(
                    "summary".to_owned(),
                    format!("{name} on {}", labels["target"]),
                )]
                .into_iter()
                .collect(),
                labels,
                state: AlertState::Firing,
                value: 1.0,
                active_at: now - Duration::from_secs(600),
                fired_at: Some(now - Duration::from_secs(300)),
                resolved_at: None,
            }
        })
        .collect()
}

/// 100 active silences, none matching the storm's alerts (every one is checked against every alert).
fn write_silences(dir: &Path) {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_millis() as i64);
    let silences: Vec<serde_json::Value> = (0..SILENCES)
        .map(|index| {
            json!({
                "id": format!("s{index}"),
                "matchers": [
                    {"name": "alertname", "value": NAMES[index % NAMES.len()], "isRegex": false, "isEqual": true},
                    {"name": "target", "value": format!("maintenance-{index}.*"), "isRegex": true, "isEqual": true},
                ],
                "starts_at": now - 60_000,
                "ends_at": now + 3_600_000,
                "updated_at": now - 60_000,
                "created_by": "bench",
                "comment": "maintenance",
            })
        })
        .collect();
    std::fs::write(
        dir.join("silences.json"),
        serde_json::to_vec(&silences).unwrap_or_default(),
    )
    .expect("write silences.json");
}

fn bench(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temp dir");
    write_silences(dir.path());
    let no_env = |_: &str| None;
    let config = notify::load_str(Path::new("bench-routing.yml"), ROUTING, &no_env)
        .unwrap_or_else(|errors| panic!("{errors}"));
    let storm = alerts();
    let alerts = AlertsHandle::default();
    alerts.publish_alerts(storm.clone(), SystemTime::now());
    let mut notifier = Notifier::new(
        config,
        dir.path(),
        &prometheus::Registry::new(),
        alerts.clone(),
    )
    .expect("notifier");
    // The first tick queues every group's notification; the measured ones find them all in the log.
    assert!(
        notifier.reconcile_now(),
        "the first tick queues notifications"
    );
    let mut group = c.benchmark_group("notify");
    group.sample_size(20);
    group.bench_function("tick_5000_firing", |b| {
        b.iter(|| black_box(notifier.reconcile_now()))
    });
    group.bench_function("flush_all_5000_firing", |b| {
        b.iter(|| {
            notifier.reset_timers();
            black_box(notifier.reconcile_now())
        })
    });
    group.bench_function("tick_new_view_5000_firing", |b| {
        b.iter_batched(
            || alerts.publish_alerts(storm.clone(), SystemTime::now()),
            |()| black_box(notifier.reconcile_now()),
            BatchSize::PerIteration,
        )
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
