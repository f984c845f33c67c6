//! `dbwatch rules test`: runs rule unit tests written in `promtool test rules`' format, on a virtual clock.
//!
//! The format and the procedure are promtool 2.42's (`cmd/promtool/unittest.go`), so one file passes or
//! fails the same way in both tools: input series in the expanding notation (`1+2x3`, `_`, `stale`) spaced by
//! the test group's `interval`, from time 0; every rule group evaluated at every `evaluation_interval` step
//! from 0 to the largest `eval_time`, in `group_eval_order` (a group's own `interval` is ignored, as promtool
//! does); `alert_rule_test` compares the alerts firing at the last step at or before `eval_time` (pending ones
//! are invisible) with labels and annotations; `promql_expr_test` queries the history after all steps, rule
//! outputs and `ALERTS` included. Unknown keys are refused, as promtool's strict YAML does. One difference:
//! a test group without `interval` spaces its samples by the `evaluation_interval` (promtool 2.42 would put
//! them all at time 0).

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

mod file;

use self::file::{read_test_file, AlertTest, ExprTest, TestGroup};
use crate::alerting::{AlertState, EvalEnv};
use crate::eval::cache::EvalCache;
use crate::eval::{evaluate, Value};
use crate::group::{evaluate_group, GroupState};
use crate::history::{stale_nan, History, NameFilter};
use crate::labels::{Metric, ALERT_NAME};
use crate::load::{load_rule_files, resolve_rule_files};
use crate::model::{format_duration, Rule, RuleSet};
use crate::promql::compile_query;

/// Why a test file could not run at all.
#[derive(Debug, thiserror::Error)]
pub enum TestError {
    #[error("no test files given")]
    NoFiles,
}

/// The outcome of every test file.
#[derive(Debug, Default)]
pub struct TestReport {
    pub files: Vec<FileReport>,
}

#[derive(Debug)]
pub struct FileReport {
    pub path: PathBuf,
    /// Problems that stopped the file (unreadable, invalid YAML, rules that do not load) or failed assertions.
    pub failures: Vec<String>,
}

impl TestReport {
    pub fn passed(&self) -> bool {
        self.files.iter().all(|file| file.failures.is_empty())
    }
}

/// promtool's output: `Unit Testing: <file>`, then `SUCCESS` or `FAILED:` and the failures.
impl fmt::Display for TestReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for file in &self.files {
            writeln!(f, "Unit Testing: {}", file.path.display())?;
            if file.failures.is_empty() {
                writeln!(f, "  SUCCESS")?;
            } else {
                writeln!(f, "  FAILED:")?;
                for failure in &file.failures {
                    writeln!(f, "{failure}")?;
                }
            }
            writeln!(f)?;
        }
        Ok(())
    }
}

/// Runs every test file; a file that cannot run is a failure in the report, not an error.
pub fn run_tests(files: &[PathBuf]) -> Result<TestReport, TestError> {
    if files.is_empty() {
        return Err(TestError::NoFiles);
    }
    let mut report = TestReport::default();
    for path in files {
        let failures = match run_file(path) {
            Ok(failures) => failures,
            Err(message) => vec![format!("    {message}")],
        };
        report.files.push(FileReport {
            path: path.clone(),
            failures,
        });
    }
    Ok(report)
}

// === Running ===

fn run_file(path: &Path) -> Result<Vec<String>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|error| format!("cannot read {}: {error}", path.display()))?;
    let file = read_test_file(path, &text)?;
    let base = path.parent().unwrap_or_else(|| Path::new("."));
    let rule_paths = resolve_rule_files(&file.rule_files, base)?;
    let rules = load_rule_files(&rule_paths).map_err(|errors| errors.to_string())?;
    let evaluation_interval = file
        .evaluation_interval
        .map_or(60_000, |interval| interval.0);
    if evaluation_interval <= 0 {
        return Err("evaluation_interval must be positive".to_owned());
    }
    let mut order: BTreeMap<&str, usize> = BTreeMap::new();
    for (index, name) in file.group_eval_order.iter().enumerate() {
        if order.insert(name.as_str(), index).is_some() {
            return Err(format!("group name repeated in evaluation order: {name}"));
        }
    }
    let mut group_indexes: Vec<usize> = (0..rules.groups.len()).collect();
    group_indexes.sort_by_key(|&index| {
        order
            .get(rules.groups[index].name.as_str())
            .copied()
            .unwrap_or(0)
    });
    let mut failures = Vec::new();
    for test in &file.tests {
        failures.extend(run_group(
            test,
            &rules,
            &group_indexes,
            evaluation_interval,
        )?);
    }
    Ok(failures)
}

fn run_group(
    test: &TestGroup,
    rules: &RuleSet,
    order: &[usize],
    evaluation_interval: i64,
) -> Result<Vec<String>, String> {
    let test_name = if test.name.is_empty() {
        String::new()
    } else {
        format!("    name: {},\n", test.name)
    };
    let series_interval = test
        .interval
        .map_or(evaluation_interval, |interval| interval.0);
    let mut history = History::new(NameFilter::All, None);
    let mut cache = EvalCache::default();
    for input in &test.input_series {
        let metric = parse_metric(&input.series)
            .map_err(|error| format!("{test_name}    series {:?}: {error}", input.series))?;
        let values = parse_values(&input.values.0)
            .map_err(|error| format!("{test_name}    series {:?}: {error}", input.series))?;
        let mut t = 0i64;
        for value in values {
            if let Some(value) = value {
                history.append(&metric, t, value);
            }
            t += series_interval;
        }
    }
    let env = EvalEnv {
        external_labels: test
            .external_labels
            .iter()
            .map(|(name, value)| (name.clone(), value.0.clone()))
            .collect(),
        external_url: test.external_url.clone(),
    };
    for alert in &test.alert_rule_test {
        if alert.alertname.is_empty() {
            let within = if test.name.is_empty() {
                String::new()
            } else {
                format!(" (in TestGroup {})", test.name)
            };
            return Err(format!(
                "an item under alert_rule_test misses required attribute alertname at eval_time {}{within}",
                format_duration(std::time::Duration::from_millis(alert.eval_time.0.max(0) as u64))
            ));
        }
    }
    let max_eval = test
        .alert_rule_test
        .iter()
        .map(|alert| alert.eval_time.0)
        .chain(test.promql_expr_test.iter().map(|expr| expr.eval_time.0))
        .max()
        .unwrap_or(0);
    let mut alert_times: Vec<i64> = test
        .alert_rule_test
        .iter()
        .map(|alert| alert.eval_time.0)
        .collect();
    alert_times.sort_unstable();
    alert_times.dedup();

    let mut states: Vec<GroupState> = rules.groups.iter().map(GroupState::for_group).collect();
    let mut failures = Vec::new();
    let mut next_check = 0;
    let mut t = 0i64;
    while t <= max_eval {
        let mut evaluation_errors = Vec::new();
        for &index in order {
            let outcome = evaluate_group(
                &rules.groups[index],
                &mut states[index],
                &mut history,
                &mut cache,
                t,
                &env,
            );
            for failure in outcome.failures {
                evaluation_errors.push(format!(
                    "    rule: {}, time: {}, err: {}",
                    failure.rule,
                    show_duration(t),
                    failure.message
                ));
            }
        }
        if !evaluation_errors.is_empty() {
            failures.extend(evaluation_errors);
            return Ok(failures);
        }
        while next_check < alert_times.len()
            && t <= alert_times[next_check]
            && alert_times[next_check] < t + evaluation_interval
        {
            let eval_time = alert_times[next_check];
            for alert_test in test
                .alert_rule_test
                .iter()
                .filter(|alert| alert.eval_time.0 == eval_time)
            {
                if let Some(failure) = check_alerts(alert_test, rules, &states, &test_name) {
                    failures.push(failure);
                }
            }
            next_check += 1;
        }
        t += evaluation_interval;
    }

    for expr_test in &test.promql_expr_test {
        if let Some(failure) = check_expr(expr_test, &history, &mut cache, &test_name) {
            failures.push(failure);
        }
    }
    Ok(failures)
}

type LabelsAndAnnotations = (Vec<(String, String)>, Vec<(String, String)>);

fn check_alerts(
    test: &AlertTest,
    rules: &RuleSet,
    states: &[GroupState],
    test_name: &str,
) -> Option<String> {
    let mut got: Vec<LabelsAndAnnotations> = Vec::new();
    for (group, state) in rules.groups.iter().zip(states) {
        for (rule, rule_state) in group.rules.iter().zip(&state.rules) {
            let Rule::Alerting(alerting) = rule else {
                continue;
            };
            if alerting.name != test.alertname {
                continue;
            }
            for alert in rule_state.alerts.values() {
                if alert.state == AlertState::Firing && alert.resolved_at.is_none() {
                    got.push((
                        alert
                            .labels
                            .pairs()
                            .map(|(k, v)| (k.to_owned(), v.to_owned()))
                            .collect(),
                        alert
                            .annotations
                            .iter()
                            .map(|(k, v)| (k.clone(), v.clone()))
                            .collect(),
                    ));
                }
            }
        }
    }
    let mut expected: Vec<LabelsAndAnnotations> = test
        .exp_alerts
        .iter()
        .map(|alert| {
            let mut labels: BTreeMap<String, String> = alert
                .exp_labels
                .iter()
                .map(|(k, v)| (k.clone(), v.0.clone()))
                .collect();
            labels.insert(ALERT_NAME.to_owned(), test.alertname.clone());
            (
                labels.into_iter().collect(),
                alert
                    .exp_annotations
                    .iter()
                    .map(|(k, v)| (k.clone(), v.0.clone()))
                    .collect(),
            )
        })
        .collect();
    got.sort();
    expected.sort();
    if got == expected {
        return None;
    }
    Some(format!(
        "{test_name}    alertname: {}, time: {}, \n        exp:{}, \n        got:{}",
        test.alertname,
        show_duration(test.eval_time.0),
        show_alerts(&expected),
        show_alerts(&got)
    ))
}

fn show_alerts(alerts: &[LabelsAndAnnotations]) -> String {
    if alerts.is_empty() {
        return "[]".to_owned();
    }
    let show = |pairs: &[(String, String)]| {
        let inner: Vec<String> = pairs
            .iter()
            .map(|(k, v)| format!("{k}={}", crate::labels::go_quote(v)))
            .collect();
        format!("{{{}}}", inner.join(", "))
    };
    let mut out = String::from("[");
    for (index, (labels, annotations)) in alerts.iter().enumerate() {
        out.push_str(&format!(
            "\n            {index}:\n              Labels:{}\n              Annotations:{}",
            show(labels),
            show(annotations)
        ));
    }
    out.push_str("\n            ]");
    out
}

fn check_expr(
    test: &ExprTest,
    history: &History,
    cache: &mut EvalCache,
    test_name: &str,
) -> Option<String> {
    let fail = |message: String| {
        Some(format!(
            "{test_name}    expr: {:?}, time: {}, err: {message}",
            test.expr,
            show_duration(test.eval_time.0)
        ))
    };
    let expr = match compile_query(&test.expr) {
        Ok(expr) => expr,
        Err(error) => return fail(error.to_string()),
    };
    let mut got: Vec<(Metric, f64)> = match evaluate(&expr, history, cache, test.eval_time.0) {
        Ok(Value::Vector(samples)) => samples
            .into_iter()
            .map(|sample| (sample.metric, sample.value))
            .collect(),
        Ok(Value::Scalar(value)) => vec![(Metric::default(), value)],
        Ok(Value::String(_)) => return fail("rule result is not a vector or scalar".to_owned()),
        Err(error) => return fail(error.to_string()),
    };
    let mut expected = Vec::with_capacity(test.exp_samples.len());
    for sample in &test.exp_samples {
        match parse_metric(&sample.labels) {
            Ok(metric) => expected.push((metric, sample.value)),
            Err(error) => return fail(format!("labels {:?}: {error}", sample.labels)),
        }
    }
    got.sort_by(|a, b| a.0.cmp_labels(&b.0));
    expected.sort_by(|a, b| a.0.cmp_labels(&b.0));
    // Values compare exactly, NaN never equal, as Go's reflect.DeepEqual.
    let equal = got.len() == expected.len()
        && got
            .iter()
            .zip(&expected)
            .all(|((got_metric, got_value), (metric, value))| {
                got_metric == metric && got_value == value
            });
    if equal {
        return None;
    }
    let show = |samples: &[(Metric, f64)]| {
        if samples.is_empty() {
            return "nil".to_owned();
        }
        samples
            .iter()
            .map(|(metric, value)| format!("{metric} {}", go_exponent(*value)))
            .collect::<Vec<_>>()
            .join(", ")
    };
    Some(format!(
        "{test_name}    expr: {:?}, time: {},\n        exp: {}\n        got: {}",
        test.expr,
        show_duration(test.eval_time.0),
        show(&expected),
        show(&got)
    ))
}

/// `strconv.FormatFloat(v, 'E', -1, 64)`, as promtool prints values.
fn go_exponent(value: f64) -> String {
    if value.is_nan() {
        return "NaN".to_owned();
    }
    if value.is_infinite() {
        return if value > 0.0 { "+Inf" } else { "-Inf" }.to_owned();
    }
    let formatted = format!("{value:E}");
    let (mantissa, exponent) = formatted.split_once('E').unwrap_or((&formatted, "0"));
    let exponent: i32 = exponent.parse().unwrap_or(0);
    format!(
        "{mantissa}E{}{:02}",
        if exponent < 0 { '-' } else { '+' },
        exponent.unsigned_abs()
    )
}

fn show_duration(millis: i64) -> String {
    format_duration(std::time::Duration::from_millis(millis.max(0) as u64))
}

// === The series notation ===

/// `name{label="value", ...}`, `name` or `{label="value"}`.
pub fn parse_metric(text: &str) -> Result<Metric, String> {
    let text = text.trim();
    let (name, rest) = match text.find('{') {
        Some(open) => (text[..open].trim(), &text[open..]),
        None => (text, ""),
    };
    let mut pairs: Vec<(String, String)> = Vec::new();
    if !name.is_empty() {
        if !super::labels::is_valid_metric_name(name) {
            return Err(format!("invalid metric name {name:?}"));
        }
        pairs.push(("__name__".to_owned(), name.to_owned()));
    }
    if !rest.is_empty() {
        let inner = rest
            .strip_prefix('{')
            .and_then(|inner| inner.trim_end().strip_suffix('}'))
            .ok_or_else(|| "unclosed '{'".to_owned())?;
        let mut chars = inner.chars().peekable();
        loop {
            while chars.peek().is_some_and(|c| c.is_whitespace() || *c == ',') {
                chars.next();
            }
            if chars.peek().is_none() {
                break;
            }
            let mut label = String::new();
            while let Some(&c) = chars.peek() {
                if c.is_alphanumeric() || c == '_' {
                    label.push(c);
                    chars.next();
                } else {
                    break;
                }
            }
            while chars.peek().is_some_and(|c| c.is_whitespace()) {
                chars.next();
            }
            if chars.next() != Some('=') || label.is_empty() {
                return Err(format!("expected label=\"value\" in {text:?}"));
            }
            while chars.peek().is_some_and(|c| c.is_whitespace()) {
                chars.next();
            }
            let quote = chars
                .next()
                .filter(|c| matches!(c, '"' | '\'' | '`'))
                .ok_or_else(|| format!("expected a quoted value in {text:?}"))?;
            let mut value = String::new();
            loop {
                let c = chars
                    .next()
                    .ok_or_else(|| format!("unterminated value in {text:?}"))?;
                if c == quote {
                    break;
                }
                if c == '\\' && quote != '`' {
                    match chars.next() {
                        Some('n') => value.push('\n'),
                        Some('t') => value.push('\t'),
                        Some(other) => value.push(other),
                        None => return Err(format!("unterminated value in {text:?}")),
                    }
                } else {
                    value.push(c);
                }
            }
            pairs.push((label, value));
        }
    }
    Ok(Metric::from_pairs(pairs))
}

/// The expanding notation: `a`, `axn` (n+1 times), `a+bxn`/`a-bxn` (n+1 values), `_`, `_xn` (n gaps), `stale`.
pub fn parse_values(text: &str) -> Result<Vec<Option<f64>>, String> {
    let mut values = Vec::new();
    for item in text.split_whitespace() {
        if item == "_" {
            values.push(None);
            continue;
        }
        if let Some(count) = item.strip_prefix("_x") {
            let count: usize = count
                .parse()
                .map_err(|_| format!("invalid repetition in {item:?}"))?;
            values.extend(std::iter::repeat_n(None, count));
            continue;
        }
        let (head, times) = match item.rfind('x') {
            Some(position)
                if position > 0
                    && item[position + 1..].chars().all(|c| c.is_ascii_digit())
                    && position + 1 < item.len() =>
            {
                (
                    &item[..position],
                    Some(
                        item[position + 1..]
                            .parse::<usize>()
                            .map_err(|_| format!("invalid repetition in {item:?}"))?,
                    ),
                )
            }
            _ => (item, None),
        };
        if times.is_some()
            && head
                .trim_start_matches(['+', '-'])
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic())
        {
            return Err(format!(
                "unexpected identifier {item:?} in series values, expected number or \"stale\""
            ));
        }
        let split = head
            .char_indices()
            .skip(1)
            .find(|(index, c)| {
                (*c == '+' || *c == '-') && !matches!(head.as_bytes()[index - 1], b'e' | b'E')
            })
            .map(|(index, _)| index);
        let (start, step) = match split {
            Some(index) => (
                parse_value(&head[..index])?,
                Some(parse_value(&head[index..])?),
            ),
            None => (parse_value(head)?, None),
        };
        match (times, step) {
            (None, None) => values.push(Some(start)),
            (None, Some(_)) => {
                return Err(format!("{item:?}: a step needs a repetition, like 1+2x3"))
            }
            (Some(times), step) => {
                let mut current = start;
                for _ in 0..=times {
                    values.push(Some(current));
                    if let Some(step) = step {
                        current += step;
                    }
                }
            }
        }
    }
    Ok(values)
}

fn parse_value(text: &str) -> Result<f64, String> {
    if text == "stale" {
        return Ok(stale_nan());
    }
    let lower = text.to_ascii_lowercase();
    let (sign, magnitude) = match lower.strip_prefix('-') {
        Some(rest) => (-1.0, rest),
        None => (1.0, lower.strip_prefix('+').unwrap_or(&lower)),
    };
    match magnitude {
        "inf" => Ok(sign * f64::INFINITY),
        "nan" => Ok(f64::NAN),
        _ => text
            .parse::<f64>()
            .map_err(|_| format!("invalid value {text:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::is_stale;

    #[test]
    fn expanding_notation() {
        let values = parse_values("1+2x3 _ 5 _x2 stale 7x1 -1-1x1 1e3 NaN -Inf").expect("valid");
        let shown: Vec<String> = values
            .iter()
            .map(|value| match value {
                None => "_".to_owned(),
                Some(v) if is_stale(*v) => "stale".to_owned(),
                Some(v) => v.to_string(),
            })
            .collect();
        assert_eq!(
            shown,
            vec![
                "1", "3", "5", "7", "_", "5", "_", "_", "stale", "7", "7", "-1", "-2", "1000",
                "NaN", "-inf"
            ]
        );
        assert!(parse_values("1+2").is_err());
        assert!(
            parse_values("NaNx3").is_err(),
            "promtool refuses a repeated NaN"
        );
        assert!(parse_values("abc").is_err());
    }

    #[test]
    fn metric_notation() {
        let metric = parse_metric("db_up{target=\"a\", db='pg'}").expect("valid");
        assert_eq!(
            metric.to_string(),
            "{__name__=\"db_up\", db=\"pg\", target=\"a\"}"
        );
        assert_eq!(parse_metric("{a=\"b\"}").expect("valid").name(), None);
        assert!(parse_metric("x{a=b}").is_err());
        assert_eq!(go_exponent(0.5), "5E-01");
        assert_eq!(go_exponent(1234.0), "1.234E+03");
    }

    #[test]
    fn a_test_file_runs() {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(
            dir.path().join("rules.yml"),
            "groups:\n  - name: g\n    rules:\n      - alert: down\n        expr: db_up == 0\n        for: 2m\n        labels:\n          severity: critical\n        annotations:\n          summary: \"{{ $labels.target }} is down\"\n",
        )
        .expect("written");
        let test = "rule_files: [rules.yml]\nevaluation_interval: 1m\ntests:\n  - interval: 1m\n    input_series:\n      - series: 'db_up{target=\"a\"}'\n        values: '1 0x5'\n    alert_rule_test:\n      - eval_time: 2m\n        alertname: down\n        exp_alerts: []\n      - eval_time: 3m\n        alertname: down\n        exp_alerts:\n          - exp_labels: {severity: critical, target: a}\n            exp_annotations: {summary: a is down}\n    promql_expr_test:\n      - expr: db_up == 0\n        eval_time: 1m\n        exp_samples:\n          - labels: 'db_up{target=\"a\"}'\n            value: 0\n";
        let path = dir.path().join("test.yml");
        std::fs::write(&path, test).expect("written");
        let report = run_tests(std::slice::from_ref(&path)).expect("runs");
        assert!(report.passed(), "{report}");

        std::fs::write(&path, test.replace("eval_time: 3m", "eval_time: 2m30s")).expect("written");
        let report = run_tests(&[path]).expect("runs");
        assert!(!report.passed());
        assert!(
            report.to_string().contains("alertname: down, time: 2m30s"),
            "{report}"
        );
    }
}
