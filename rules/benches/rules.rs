//! One rules-engine evaluation cycle: 500 rules over 100 000 series (goal: under 100 ms).
//!
//! 1000 targets publish 100 series each (50 metric families of 2 series: 25 gauges, 25 counters). The 500
//! rules are the kinds the shipped packs use: thresholds on gauges, `rate()` over counters, aggregations,
//! one-to-one vector matching, and alerts with `for` and templated annotations; each rule has its own
//! threshold, so no two are the same expression. Before measuring, 5 minutes
//! of 15-second cycles fill the history so that ranges hold their usual 20 samples.
//!
//! Two rule sets: `quiet` (thresholds no series reaches) and `storm` (a tenth of the series alert, ~25 000
//! alerts pending or firing on every cycle).
//!
//! - `cycle_fresh_snapshots`: what the engine does every interval: read 1000 newly published snapshots (each
//!   needs its series looked up again), evaluate every group, trim the history.
//! - `cycle_same_snapshots`: the same with unchanged snapshots (a scrape that reuses the cached mapping), to
//!   separate ingestion from evaluation.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use dbwatch_metric::{MetricDesc, MetricKind, Sample};
use dbwatch_rules::engine::{evaluate_once, history_for};
use dbwatch_rules::eval::cache::EvalCache;
use dbwatch_rules::group::GroupState;
use dbwatch_rules::history::History;
use dbwatch_rules::load::parse_rule_file;
use dbwatch_rules::{EngineOptions, RuleSet};
use dbwatch_rules::{TargetSamples, TargetScrape};

const TARGETS: usize = 1000;
const FAMILIES: usize = 50;
const SERIES_PER_FAMILY: usize = 2;
const RULES: usize = 500;
const STEP_MS: i64 = 15_000;

fn descriptors() -> Vec<&'static MetricDesc> {
    (0..FAMILIES)
        .map(|family| {
            let (name, kind) = if family % 2 == 0 {
                (format!("bench_gauge_{}", family / 2), MetricKind::Gauge)
            } else {
                (
                    format!("bench_counter_{}_total", family / 2),
                    MetricKind::Counter,
                )
            };
            let desc: &'static MetricDesc = Box::leak(Box::new(MetricDesc {
                name: Box::leak(name.into_boxed_str()),
                help: "benchmark series",
                kind,
                labels: &["slot"],
            }));
            desc
        })
        .collect()
}

fn snapshots(descriptors: &[&'static MetricDesc], step: i64) -> Vec<Arc<dyn TargetSamples>> {
    let slots = ["a", "b"];
    (0..TARGETS)
        .map(|target| {
            let mut samples = Vec::with_capacity(FAMILIES * SERIES_PER_FAMILY);
            for (family, desc) in descriptors.iter().enumerate() {
                for (slot, slot_name) in slots.iter().enumerate() {
                    let seed = (target * 7 + family * 13 + slot * 29) % 1000;
                    let value = if desc.kind == MetricKind::Counter {
                        (step as f64) * (seed as f64)
                    } else {
                        seed as f64 / 10.0
                    };
                    samples.push(desc.sample_with([*slot_name], value));
                }
            }
            let mut labels = BTreeMap::new();
            labels.insert(
                "env".to_owned(),
                if target % 2 == 0 { "prod" } else { "staging" }.to_owned(),
            );
            Arc::new(TargetScrape {
                target: format!("target-{target}"),
                db: ["postgres", "mysql", "mongodb", "cassandra", "dynamodb"][target % 5]
                    .to_owned(),
                labels,
                samples: samples.into_iter().collect::<Vec<Sample>>(),
            }) as Arc<dyn TargetSamples>
        })
        .collect()
}

/// The rule set; `alerting` picks thresholds a tenth of the series cross (an alert storm on every cycle),
/// otherwise thresholds no series reaches (a quiet fleet).
fn rules(alerting: bool) -> RuleSet {
    let mut text = String::from("groups:\n");
    let groups = 10;
    for group in 0..groups {
        text.push_str(&format!("  - name: bench-{group}\n    rules:\n"));
        for index in 0..RULES / groups {
            let n = group * (RULES / groups) + index;
            // Each kind of rule reads every one of the 25 families of its type, so the rules read all
            // 100 000 series; each family is read by several rules, as rules over the same metrics are.
            let gauge = (n / 5) % 25;
            let other = (gauge + 7) % 25;
            // Every rule has its own threshold, so no two rules are the same expression.
            let nudge = n as f64 / 1000.0 + if alerting { 0.0 } else { 1e6 };
            let expr = match n % 5 {
                0 => format!("bench_gauge_{gauge} > {}", 99.0 + nudge),
                1 => format!("rate(bench_counter_{gauge}_total[5m]) > {}", 60.0 + nudge),
                2 => format!(
                    "sum by (target, db) (bench_gauge_{gauge}) > {}",
                    195.0 + nudge
                ),
                3 => format!(
                    "bench_gauge_{gauge} / on(target, slot) bench_gauge_{other} > {}",
                    50.0 + nudge
                ),
                _ => format!(
                    "avg_over_time(bench_gauge_{gauge}[5m]) > {}",
                    99.5 + nudge / 10.0
                ),
            };
            text.push_str(&format!(
                "      - alert: bench_{n}\n        expr: '{expr}'\n        for: 1m\n        labels:\n          severity: warning\n        annotations:\n          summary: '{{{{ $labels.target }}}} at {{{{ $value | humanize }}}}'\n"
            ));
        }
    }
    RuleSet {
        groups: parse_rule_file(Path::new("bench.yml"), &text)
            .unwrap_or_else(|errors| panic!("{errors}")),
    }
}

/// A rule set with a history filled by 5 minutes of cycles, ready to measure.
struct Scenario {
    rules: RuleSet,
    history: History,
    cache: EvalCache,
    states: Vec<GroupState>,
    step: i64,
}

impl Scenario {
    fn new(name: &str, alerting: bool, descriptors: &[&'static MetricDesc]) -> Scenario {
        let rules = rules(alerting);
        let mut history = history_for(&rules, &EngineOptions::default());
        let mut cache = EvalCache::default();
        let mut states: Vec<GroupState> = rules.groups.iter().map(GroupState::for_group).collect();
        let mut alerts = 0;
        for step in 0..=20 {
            alerts = evaluate_once(
                &rules,
                &mut history,
                &mut cache,
                &mut states,
                &snapshots(descriptors, step),
                step * STEP_MS,
            );
        }
        let stats = history.stats();
        assert!(
            stats.series >= TARGETS * FAMILIES * SERIES_PER_FAMILY,
            "the history holds {} series",
            stats.series
        );
        eprintln!(
            "{name}: the history holds {} series, {} points; {alerts} alerts pending or firing",
            stats.series, stats.points
        );
        Scenario {
            rules,
            history,
            cache,
            states,
            step: 21,
        }
    }

    fn cycle(&mut self, snapshots: &[Arc<dyn TargetSamples>], t: i64) -> usize {
        evaluate_once(
            &self.rules,
            &mut self.history,
            &mut self.cache,
            &mut self.states,
            snapshots,
            t,
        )
    }
}

fn cycle(c: &mut Criterion) {
    let descriptors = descriptors();
    let mut group = c.benchmark_group("rules");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(20));
    for (name, alerting) in [("quiet", false), ("storm", true)] {
        // Built on first use, so that a filtered run (`cargo bench -- quiet`) only pays for what it measures.
        let mut scenario: Option<Scenario> = None;
        group.bench_function(format!("{name}/cycle_fresh_snapshots"), |bench| {
            let scenario =
                scenario.get_or_insert_with(|| Scenario::new(name, alerting, &descriptors));
            let Scenario {
                rules,
                history,
                cache,
                states,
                step,
            } = scenario;
            bench.iter_batched(
                || {
                    *step += 1;
                    (snapshots(&descriptors, *step), *step * STEP_MS)
                },
                |(snapshots, t)| evaluate_once(rules, history, cache, states, &snapshots, t),
                BatchSize::PerIteration,
            );
        });
        group.bench_function(format!("{name}/cycle_same_snapshots"), |bench| {
            let scenario =
                scenario.get_or_insert_with(|| Scenario::new(name, alerting, &descriptors));
            let fixed = snapshots(&descriptors, scenario.step);
            bench.iter(|| {
                scenario.step += 1;
                let t = scenario.step * STEP_MS;
                scenario.cycle(&fixed, t)
            });
        });
    }
    group.finish();
}

criterion_group!(benches, cycle);
criterion_main!(benches);
