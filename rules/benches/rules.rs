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

use std::sync::Arc;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use dbwatch_metric::MetricDesc;
use dbwatch_rules::engine::{evaluate_once, history_for};
use dbwatch_rules::eval::cache::EvalCache;
use dbwatch_rules::group::GroupState;
use dbwatch_rules::history::History;
use dbwatch_rules::TargetSamples;
use dbwatch_rules::{EngineOptions, RuleSet};

mod fleet;

use fleet::{descriptors, rules, snapshots, FAMILIES, SERIES_PER_FAMILY, STEP_MS, TARGETS};

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
