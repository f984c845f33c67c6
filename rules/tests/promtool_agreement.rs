//! dbwatch's evaluator against promtool on generated expressions: a property test over a seeded generator.
//!
//! Each run generates a few hundred well-typed PromQL expressions over a fixed set of series (counters with a
//! reset, gauges with gaps and negatives), evaluates each in dbwatch at several instants, and writes the
//! answers as the expected samples of one promtool unit-test file (`promql_expr_test`). promtool 2.42 (Debian's
//! `prometheus` package, installed by `deploy/local/fleet up tools`) then evaluates the same expressions
//! over the same series: it passes only if every value agrees to the bit and every label set is the same.
//! One promtool process checks them all, so the test stays cheap.
//!
//! The seed is fixed, so the run is the same every time; `DBWATCH_PROMTOOL_SEED` picks another to explore
//! (it found Go's last-bit `Log`, `Exp` and `Pow`, and promtool's random tie-breaking in `topk`).
//!
//! Answers containing NaN are left out (promtool compares values with `reflect.DeepEqual`, under which NaN
//! never equals itself); the count is reported and bounded.

use std::fmt::Write as _;
use std::process::Command;

use dbwatch_rules::eval::cache::EvalCache;
use dbwatch_rules::eval::{evaluate, Value};
use dbwatch_rules::history::{History, NameFilter};
use dbwatch_rules::promql::compile_query;
use dbwatch_rules::unittest::{parse_metric, parse_values};

const SERIES: &[(&str, &str)] = &[
    (
        r#"req_total{job="api",instance="a"}"#,
        "0 10 25 40 40 55 5 20 35 60 80 100 130 150 170 190",
    ),
    (
        r#"req_total{job="api",instance="b"}"#,
        "3 6 9 12 15 18 21 24 27 30 33 36 39 42 45 48",
    ),
    (
        r#"req_total{job="db",instance="a"}"#,
        "1 1 2 3 5 8 13 21 34 55 89 144 233 377 610 987",
    ),
    (
        r#"temp{job="api",instance="a"}"#,
        "20 21.5 19 -3 4.25 7 7 7 12 0 0.5 33 18 2 9 11",
    ),
    (
        r#"temp{job="db",instance="b"}"#,
        "1.5 2.5 3.5 _ _ 6.5 7.5 8.5 9.5 10.5 11.5 12.5 13.5 14.5 15.5 16.5",
    ),
    (
        r#"temp{job="db",instance="c"}"#,
        "100 90 80 70 60 50 40 30 20 10 0 -10 -20 -30 -40 -50",
    ),
];

/// The evaluation instants, in minutes (series points are one minute apart).
const EVAL_MINUTES: &[i64] = &[5, 9, 15];

/// xorshift64*: deterministic across platforms and runs, so a failure is reproducible from its seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len())]
    }
}

fn selector(rng: &mut Rng) -> String {
    let base = rng.pick(&[
        "req_total",
        "temp",
        r#"temp{job="db"}"#,
        r#"req_total{instance=~"a|b"}"#,
        r#"{__name__="temp",job="api"}"#,
    ]);
    match rng.below(6) {
        0 => format!("{base} offset 1m"),
        1 => format!("{base} offset 2m"),
        _ => base.to_owned(),
    }
}

fn range(rng: &mut Rng, depth: usize) -> String {
    let window = rng.pick(&["2m", "3m", "5m"]);
    if depth > 0 && rng.below(4) == 0 {
        let step = rng.pick(&["1m", "30s", "2m"]);
        return format!("({})[{window}:{step}]", vector(rng, depth - 1));
    }
    let base = rng.pick(&[
        "req_total",
        "temp",
        r#"temp{job="db"}"#,
        r#"req_total{job="api"}"#,
    ]);
    match rng.below(5) {
        0 => format!("{base}[{window}] offset 1m"),
        _ => format!("{base}[{window}]"),
    }
}

fn vector(rng: &mut Rng, depth: usize) -> String {
    if depth == 0 {
        return selector(rng);
    }
    let inner = depth - 1;
    match rng.below(8) {
        0 => selector(rng),
        1 => {
            let function = rng.pick(&[
                "rate",
                "irate",
                "increase",
                "delta",
                "idelta",
                "deriv",
                "resets",
                "changes",
                "avg_over_time",
                "min_over_time",
                "max_over_time",
                "sum_over_time",
                "count_over_time",
                "stddev_over_time",
                "stdvar_over_time",
                "last_over_time",
                "present_over_time",
            ]);
            format!("{function}({})", range(rng, inner))
        }
        2 => match rng.below(3) {
            0 => format!(
                "quantile_over_time({}, {})",
                rng.pick(&["0.3", "0.5", "0.95"]),
                range(rng, inner)
            ),
            1 => format!("predict_linear({}, 120)", range(rng, inner)),
            _ => format!("holt_winters({}, 0.5, 0.3)", range(rng, inner)),
        },
        3 => {
            let function = rng.pick(&[
                "abs",
                "ceil",
                "floor",
                "round",
                "sgn",
                "timestamp",
                "exp",
                "ln",
                "sqrt",
                "log2",
            ]);
            match function {
                "ln" | "sqrt" | "log2" => format!("{function}(abs({}) + 1)", vector(rng, inner)),
                "exp" => format!("exp(clamp_max({}, 20))", vector(rng, inner)),
                _ => format!("{function}({})", vector(rng, inner)),
            }
        }
        4 => {
            // Aggregations that do not depend on the order of their input: promtool's loader leaves the order
            // of series random, and a float sum of three or more inexact values depends on it.
            let op = rng.pick(&["min", "max", "count", "group"]);
            let grouping = rng.pick(&["", " by (job)", " without (instance)", " by (instance)"]);
            match rng.below(5) {
                // Over raw series only: their values never tie at the instants evaluated, and Prometheus breaks
                // ties by the order its storage returns series in, which promtool's loader leaves random.
                0 => format!(
                    "{}({}, {})",
                    rng.pick(&["topk", "bottomk"]),
                    rng.pick(&["1", "2"]),
                    selector(rng)
                ),
                1 => format!(
                    "quantile({}, {})",
                    rng.pick(&["0.25", "0.5", "0.9"]),
                    vector(rng, inner)
                ),
                // The order-sensitive ones over groups of at most two exact values (one metric, by job).
                2 => format!(
                    "{} by (job) ({})",
                    rng.pick(&["sum", "avg", "stddev", "stdvar"]),
                    rng.pick(&[
                        "temp",
                        "req_total",
                        r#"req_total{instance=~"a|b"}"#,
                        r#"temp{job="db"} offset 1m"#
                    ])
                ),
                _ => format!("{op}{grouping} ({})", vector(rng, inner)),
            }
        }
        5 => {
            let op = rng.pick(&[
                "+", "-", "*", "/", "%", "^", ">", "<", ">=", "== bool", "> bool",
            ]);
            let number = rng.pick(&["2", "0.5", "10", "3"]);
            // Operands in parentheses: the generated text must mean the tree generated, whatever precedence.
            if rng.below(2) == 0 {
                format!("({}) {op} {number}", vector(rng, inner))
            } else {
                format!("{number} {op} ({})", vector(rng, inner))
            }
        }
        6 => {
            let op = rng.pick(&["and", "or", "unless"]);
            format!("({}) {op} ({})", vector(rng, inner), vector(rng, inner))
        }
        _ => {
            let op = rng.pick(&["+", "-", "/", ">"]);
            format!(
                "max by (job) ({}) {op} min by (job) ({})",
                vector(rng, inner),
                vector(rng, inner)
            )
        }
    }
}

/// A YAML float promtool reads back to the same bits: Rust's shortest round-trip spelling, Go's YAML spelling
/// of the infinities.
fn yaml_float(value: f64) -> String {
    if value == f64::INFINITY {
        ".inf".to_owned()
    } else if value == f64::NEG_INFINITY {
        "-.inf".to_owned()
    } else {
        format!("{value:?}")
    }
}

fn single_quoted(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

#[test]
fn dbwatch_and_promtool_agree_on_generated_expressions() {
    let mut history = History::new(NameFilter::All, None);
    for (series, values) in SERIES {
        let metric = parse_metric(series).expect("series");
        for (index, value) in parse_values(values)
            .expect("values")
            .into_iter()
            .enumerate()
        {
            if let Some(value) = value {
                history.append(&metric, index as i64 * 60_000, value);
            }
        }
    }

    let mut file =
        String::from("evaluation_interval: 1m\ntests:\n  - interval: 1m\n    input_series:\n");
    for (series, values) in SERIES {
        let _ = writeln!(
            file,
            "      - series: {}\n        values: '{values}'",
            single_quoted(series)
        );
    }
    file.push_str("    promql_expr_test:\n");

    // Another seed explores further: DBWATCH_PROMTOOL_SEED=<u64> cargo test -p dbwatch-rules --test promtool_agreement
    let seed = std::env::var("DBWATCH_PROMTOOL_SEED")
        .ok()
        .and_then(|seed| seed.parse::<u64>().ok())
        .unwrap_or(0x9e37_79b9_7f4a_7c15);
    let mut rng = Rng(seed.max(1));
    let (mut cases, mut with_nan, mut empty) = (0usize, 0usize, 0usize);
    let mut refused = Vec::new();
    let mut cache = EvalCache::default();
    for _ in 0..300 {
        let expr_text = vector(&mut rng, 3);
        let expr = match compile_query(&expr_text) {
            Ok(expr) => expr,
            Err(error) => {
                refused.push(format!("{expr_text}: {error}"));
                continue;
            }
        };
        for minutes in EVAL_MINUTES {
            let samples = match evaluate(&expr, &history, &mut cache, minutes * 60_000) {
                Ok(Value::Vector(samples)) => samples,
                Ok(other) => panic!("{expr_text} is a vector expression, got {other:?}"),
                Err(error) => {
                    refused.push(format!("{expr_text} at {minutes}m: {error}"));
                    continue;
                }
            };
            if samples.iter().any(|sample| sample.value.is_nan()) {
                with_nan += 1;
                continue;
            }
            if samples.is_empty() {
                empty += 1;
            }
            cases += 1;
            let _ = writeln!(
                file,
                "      - expr: {}\n        eval_time: {minutes}m",
                single_quoted(&expr_text)
            );
            if samples.is_empty() {
                file.push_str("        exp_samples: []\n");
                continue;
            }
            file.push_str("        exp_samples:\n");
            for sample in samples.iter() {
                let _ = writeln!(
                    file,
                    "          - labels: {}\n            value: {}",
                    single_quoted(&sample.metric.to_string()),
                    yaml_float(sample.value)
                );
            }
        }
    }
    assert!(
        refused.is_empty(),
        "dbwatch refused generated expressions:\n{}",
        refused.join("\n")
    );
    // The generator must exercise real answers, not mostly empty or NaN ones.
    assert!(cases >= 600, "only {cases} comparable cases");
    assert!(empty * 4 < cases, "{empty} of {cases} answers are empty");
    assert!(with_nan * 5 < cases, "{with_nan} answers hold NaN");

    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("agreement.yml");
    std::fs::write(&path, &file).expect("write the promtool test file");
    let output = Command::new("promtool")
        .arg("test")
        .arg("rules")
        .arg(&path)
        .output()
        .unwrap_or_else(|error| {
            panic!("promtool is required (Debian package prometheus, installed by `make test`): {error}")
        });
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let kept = std::env::temp_dir().join("dbwatch-promtool-agreement.yml");
    if !output.status.success() {
        let _ = std::fs::write(&kept, &file);
    }
    assert!(
        output.status.success(),
        "promtool disagrees with dbwatch on {cases} cases (file kept at {}):\n{report}",
        kept.display()
    );
    eprintln!("promtool agrees with dbwatch on {cases} cases ({empty} empty; {with_nan} with NaN left out)");
}
