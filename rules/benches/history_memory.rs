//! The memory of a long-window history: 1,000 series held for 3 days at a 15 s evaluation interval, the shape
//! of a multi-window SLO burn-rate alert (`avg_over_time(...[3d])` over a recording rule's series).
//!
//! Not a criterion benchmark: what is measured is bytes, not time. The process's resident memory
//! (`VmRSS` in `/proc/self/status`, what an operator sees) is read before and after the history is filled with
//! four days of 15-second scrapes (so trimming has reached its steady state); the difference is reported per
//! series and per series per day of window. One evaluation of the rule over the full window is timed at the
//! end.
//!
//! `cargo bench -p dbwatch-rules --bench history_memory`; the figures go to docs/benchmarks.md, and the
//! per-series-day figure is `dbwatch_rules::HISTORY_KIB_PER_SERIES_DAY_AT_15S`, quoted by the refusal of a
//! rule that reads past `global.rule_history_limit`.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use dbwatch_metric::{MetricDesc, MetricKind, Sample};
use dbwatch_rules::engine::{evaluate_once, history_for};
use dbwatch_rules::eval::cache::EvalCache;
use dbwatch_rules::group::GroupState;
use dbwatch_rules::load::parse_rule_file;
use dbwatch_rules::{EngineOptions, RuleSet, TargetSamples, TargetScrape};

/// A line of `/proc/self/status` in bytes (`VmRSS`, `VmHWM`).
fn status_bytes(key: &str) -> usize {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix(key)?.strip_prefix(':'))
        .and_then(|rest| {
            rest.trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<usize>()
                .ok()
        })
        .map_or(0, |kib| kib * 1024)
}

const TARGETS: usize = 100;
const SERIES_PER_TARGET: usize = 10;
const STEP_MS: i64 = 15_000;
const DAY_MS: i64 = 24 * 3600 * 1000;
const WINDOW_DAYS: i64 = 3;

static SLO_RATIO: MetricDesc = MetricDesc {
    name: "slo_errors_ratio",
    help: "benchmark series: an SLO's error ratio as a recording rule would produce it",
    kind: MetricKind::Gauge,
    labels: &["slo"],
};

fn snapshots(step: i64) -> Vec<Arc<dyn TargetSamples>> {
    const SLOS: [&str; SERIES_PER_TARGET] = [
        "checkout", "payment", "search", "catalog", "cart", "login", "orders", "reviews", "events",
        "notify",
    ];
    (0..TARGETS)
        .map(|target| {
            let samples: Vec<Sample> = SLOS
                .iter()
                .enumerate()
                .map(|(slot, slo)| {
                    let value = ((step + (target * 31 + slot * 7) as i64) % 1000) as f64 / 1e6;
                    SLO_RATIO.sample_with([*slo], value)
                })
                .collect();
            Arc::new(TargetScrape {
                target: format!("target-{target}"),
                db: "postgres".to_owned(),
                labels: BTreeMap::new(),
                samples,
            }) as Arc<dyn TargetSamples>
        })
        .collect()
}

fn main() {
    let text = "groups:\n  - name: slo\n    rules:\n      - alert: error_budget_burn_3d\n        expr: avg_over_time(slo_errors_ratio[3d]) > 0.001\n";
    let rules = RuleSet {
        groups: parse_rule_file(Path::new("slo.yml"), text)
            .unwrap_or_else(|errors| panic!("{errors}")),
    };
    let options = EngineOptions::default();
    assert_eq!(options.evaluation_interval.as_millis(), STEP_MS as u128);

    let baseline = status_bytes("VmRSS");
    let mut history = history_for(&rules, &options);
    let steps = (WINDOW_DAYS + 1) * DAY_MS / STEP_MS;
    let fill_started = Instant::now();
    for step in 0..steps {
        history.scrape(&snapshots(step), step * STEP_MS);
        history.trim(step * STEP_MS);
    }
    let fill = fill_started.elapsed();
    let held = status_bytes("VmRSS").saturating_sub(baseline);
    let peak = status_bytes("VmHWM").saturating_sub(baseline);

    let mut cache = EvalCache::default();
    let mut states: Vec<GroupState> = rules.groups.iter().map(GroupState::for_group).collect();
    let evaluation_started = Instant::now();
    let now = steps * STEP_MS;
    let alerts = evaluate_once(
        &rules,
        &mut history,
        &mut cache,
        &mut states,
        &snapshots(steps),
        now,
    );
    let evaluation = evaluation_started.elapsed();

    let series = TARGETS * SERIES_PER_TARGET;
    let per_series = held as f64 / series as f64;
    let samples_per_day = (DAY_MS / STEP_MS) as f64;
    println!("history_memory: {series} series, [{WINDOW_DAYS}d] window, {STEP_MS} ms interval, {steps} scrapes in {fill:.1?}");
    println!(
        "  resident memory the history added: {:.1} MiB (peak {:.1} MiB)",
        held as f64 / 1048576.0,
        peak as f64 / 1048576.0
    );
    println!("  per series: {:.1} KiB; per series per day of window: {:.1} KiB ({:.1} bytes per sample held)",
        per_series / 1024.0,
        per_series / 1024.0 / WINDOW_DAYS as f64,
        per_series / (samples_per_day * WINDOW_DAYS as f64));
    println!("  one evaluation over the full window: {evaluation:.1?} ({alerts} alerts)");
}
