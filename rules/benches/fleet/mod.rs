//! The benchmark fleet shared by `rules.rs` and `side_by_side.rs`: 1000 targets of 100 series each (50 metric
//! families of 2 series: 25 gauges, 25 counters) and 500 alerting rules over them, as text, so that the same
//! rules and the same series can be handed to Prometheus (`deploy/bench/rules_compare.sh`).

// Each bench uses its part of the fleet.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;

use dbwatch_metric::{MetricDesc, MetricKind, Sample};
use dbwatch_rules::load::parse_rule_file;
use dbwatch_rules::RuleSet;
use dbwatch_rules::{TargetSamples, TargetScrape};

pub const TARGETS: usize = 1000;
pub const FAMILIES: usize = 50;
pub const SERIES_PER_FAMILY: usize = 2;
pub const RULES: usize = 500;
pub const STEP_MS: i64 = 15_000;
const SLOTS: [&str; SERIES_PER_FAMILY] = ["a", "b"];
const DBS: [&str; 5] = ["postgres", "mysql", "mongodb", "cassandra", "dynamodb"];

pub fn descriptors() -> Vec<&'static MetricDesc> {
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

/// One series' value at a step: counters grow with the step, gauges stay put.
fn value(kind: MetricKind, target: usize, family: usize, slot: usize, step: i64) -> f64 {
    let seed = (target * 7 + family * 13 + slot * 29) % 1000;
    if kind == MetricKind::Counter {
        (step as f64) * (seed as f64)
    } else {
        seed as f64 / 10.0
    }
}

fn env(target: usize) -> &'static str {
    if target.is_multiple_of(2) {
        "prod"
    } else {
        "staging"
    }
}

pub fn snapshots(descriptors: &[&'static MetricDesc], step: i64) -> Vec<Arc<dyn TargetSamples>> {
    (0..TARGETS)
        .map(|target| {
            let mut samples = Vec::with_capacity(FAMILIES * SERIES_PER_FAMILY);
            for (family, desc) in descriptors.iter().enumerate() {
                for (slot, slot_name) in SLOTS.iter().enumerate() {
                    let value = value(desc.kind, target, family, slot, step);
                    samples.push(desc.sample_with([*slot_name], value));
                }
            }
            let mut labels = BTreeMap::new();
            labels.insert("env".to_owned(), env(target).to_owned());
            Arc::new(TargetScrape {
                target: format!("target-{target}"),
                db: DBS[target % DBS.len()].to_owned(),
                labels,
                samples: samples.into_iter().collect::<Vec<Sample>>(),
            }) as Arc<dyn TargetSamples>
        })
        .collect()
}

/// The series of `snapshots(descriptors, step)` as one Prometheus text exposition, each series carrying the
/// labels dbwatch gives it (`target`, `db`, the target's `env`, `slot`); scraped with `honor_labels: true`,
/// Prometheus stores the same label sets plus its `job` and `instance`.
pub fn exposition(descriptors: &[&'static MetricDesc], step: i64) -> String {
    let mut text = String::with_capacity(TARGETS * FAMILIES * SERIES_PER_FAMILY * 96);
    for (family, desc) in descriptors.iter().enumerate() {
        let kind = if desc.kind == MetricKind::Counter {
            "counter"
        } else {
            "gauge"
        };
        let _ = writeln!(
            text,
            "# HELP {} {}\n# TYPE {} {kind}",
            desc.name, desc.help, desc.name
        );
        for target in 0..TARGETS {
            for (slot, slot_name) in SLOTS.iter().enumerate() {
                let _ = writeln!(
                    text,
                    "{}{{target=\"target-{target}\",db=\"{}\",env=\"{}\",slot=\"{slot_name}\"}} {}",
                    desc.name,
                    DBS[target % DBS.len()],
                    env(target),
                    value(desc.kind, target, family, slot, step)
                );
            }
        }
    }
    text
}

/// The rule file; `alerting` picks thresholds a tenth of the series cross (an alert storm on every cycle),
/// otherwise thresholds no series reaches (a quiet fleet).
pub fn rule_text(alerting: bool) -> String {
    let mut text = String::from("groups:\n");
    let groups = 10;
    for group in 0..groups {
        let _ = write!(text, "  - name: bench-{group}\n    rules:\n");
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
            let _ = write!(
                text,
                "      - alert: bench_{n}\n        expr: '{expr}'\n        for: 1m\n        labels:\n          severity: warning\n        annotations:\n          summary: '{{{{ $labels.target }}}} at {{{{ $value | humanize }}}}'\n"
            );
        }
    }
    text
}

pub fn rules(alerting: bool) -> RuleSet {
    RuleSet {
        groups: parse_rule_file(Path::new("bench.yml"), &rule_text(alerting))
            .unwrap_or_else(|errors| panic!("{errors}")),
    }
}
