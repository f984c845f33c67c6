//! Prometheus's PromQL test-file format (`promql/test.go` of Prometheus 2.42) read and run through
//! dbwatch's evaluator: the converter the conformance suite keeps, so the `.test` files stay Prometheus's own.
//!
//! Commands (lines are trimmed, `#` starts a comment line; a command's own lines end at a blank line):
//! - `load <step>` then `<series> <values>` lines in the expanding notation; sample `i` is at `i * step`
//!   from time 0;
//! - `clear`: an empty storage;
//! - `eval instant at <time> <expr>`, `eval_ordered ...` (the result's order is checked too) and
//!   `eval_fail ...` (the evaluation must fail), then the expected result: a number for a scalar, or one
//!   `<series> <value>` line per element (none: an empty vector).
//!
//! Values are compared as `test.go` compares them (`almostEqual`: NaN equals NaN, a relative error under
//! 1e-6), label sets exactly, element counts exactly.

use std::fmt;

use dbwatch_rules::eval::cache::EvalCache;
use dbwatch_rules::eval::{evaluate, Value};
use dbwatch_rules::history::{History, NameFilter};
use dbwatch_rules::labels::Metric;
use dbwatch_rules::model::{millis, parse_duration};
use dbwatch_rules::promql::{compile_query, CompileError};
use dbwatch_rules::unittest::{parse_metric, parse_values};

/// One `eval` command of a file: where it is and what it asks.
#[derive(Debug, Clone)]
pub struct Case {
    /// `file.test:line`.
    pub name: String,
    pub expr: String,
    pub at_ms: i64,
    pub kind: EvalKind,
    pub expected: Expected,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EvalKind {
    Plain,
    Ordered,
    Fail,
}

#[derive(Debug, Clone)]
pub enum Expected {
    Scalar(f64),
    /// In the order written.
    Vector(Vec<(Metric, f64)>),
}

/// What dbwatch made of a case.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Passed,
    /// Refused at compile time as a construct dbwatch does not evaluate; the reason is dbwatch's message.
    Refused(String),
    /// A different answer than Prometheus's.
    Wrong(String),
}

/// A command of a test file, in order.
enum Command {
    Load {
        step_ms: i64,
        series: Vec<(Metric, Vec<Option<f64>>)>,
    },
    Clear,
    Eval(Case),
}

/// Why a test file could not be read: a line in a form `test.go` would refuse too.
#[derive(Debug)]
pub struct FormatError {
    pub file: String,
    pub line: usize,
    pub message: String,
}

impl fmt::Display for FormatError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.file, self.line, self.message)
    }
}

/// Runs every command of the file `name` with contents `text`; returns each eval case with its outcome.
pub fn run_file(name: &str, text: &str) -> Result<Vec<(Case, Outcome)>, FormatError> {
    let commands = parse_file(name, text)?;
    let mut history = History::new(NameFilter::All, None);
    let mut out = Vec::new();
    for command in commands {
        match command {
            Command::Clear => history = History::new(NameFilter::All, None),
            Command::Load { step_ms, series } => {
                for (metric, values) in series {
                    for (index, value) in values.into_iter().enumerate() {
                        if let Some(value) = value {
                            history.append(&metric, index as i64 * step_ms, value);
                        }
                    }
                }
            }
            Command::Eval(case) => {
                let outcome = run_case(&case, &history);
                out.push((case, outcome));
            }
        }
    }
    Ok(out)
}

fn run_case(case: &Case, history: &History) -> Outcome {
    let expr = match compile_query(&case.expr) {
        Ok(expr) => expr,
        Err(CompileError::Unsupported { construct, .. }) => return Outcome::Refused(construct),
        Err(error) if case.kind == EvalKind::Fail => {
            // Prometheus fails at evaluation what dbwatch refuses when compiling: both fail.
            let _ = error;
            return Outcome::Passed;
        }
        Err(error) => return Outcome::Wrong(format!("does not compile: {error}")),
    };
    let result = evaluate(&expr, history, &mut EvalCache::default(), case.at_ms);
    let value = match (result, case.kind) {
        (Err(_), EvalKind::Fail) => return Outcome::Passed,
        (Ok(value), EvalKind::Fail) => {
            return Outcome::Wrong(format!("expected an error, got {}", show(&value)))
        }
        (Err(error), _) => return Outcome::Wrong(format!("error: {error}")),
        (Ok(value), _) => value,
    };
    match compare(&case.expected, &value, case.kind == EvalKind::Ordered) {
        Ok(()) => Outcome::Passed,
        Err(message) => Outcome::Wrong(message),
    }
}

fn compare(expected: &Expected, got: &Value, ordered: bool) -> Result<(), String> {
    match (expected, got) {
        (Expected::Scalar(want), Value::Scalar(value)) => {
            if almost_equal(*want, *value) {
                Ok(())
            } else {
                Err(format!("expected scalar {want}, got {value}"))
            }
        }
        (Expected::Vector(want), Value::Vector(samples)) => {
            for (position, sample) in samples.iter().enumerate() {
                let Some(index) = want.iter().position(|(metric, _)| *metric == sample.metric)
                else {
                    return Err(format!("unexpected metric {} in result", sample.metric));
                };
                if ordered && index != position {
                    return Err(format!(
                        "expected metric {} at position {}, got it at {}",
                        sample.metric,
                        index + 1,
                        position + 1
                    ));
                }
                if !almost_equal(want[index].1, sample.value) {
                    return Err(format!(
                        "expected {} for {}, got {}",
                        want[index].1, sample.metric, sample.value
                    ));
                }
            }
            for (metric, value) in want {
                if !samples.iter().any(|sample| sample.metric == *metric) {
                    return Err(format!("expected metric {metric} with {value} not found"));
                }
            }
            Ok(())
        }
        (Expected::Scalar(_), other) => Err(format!("expected a scalar, got {}", show(other))),
        (Expected::Vector(_), other) => Err(format!("expected a vector, got {}", show(other))),
    }
}

fn show(value: &Value) -> String {
    match value {
        Value::Scalar(value) => format!("scalar {value}"),
        Value::Vector(samples) => format!("a vector of {} elements", samples.len()),
        Value::String(text) => format!("string {text:?}"),
    }
}

/// `test.go`'s `almostEqual`.
pub fn almost_equal(a: f64, b: f64) -> bool {
    const EPSILON: f64 = 0.000001;
    let min_normal = f64::from_bits(0x0010_0000_0000_0000);
    if a.is_nan() && b.is_nan() {
        return true;
    }
    if a == b {
        return true;
    }
    let diff = (a - b).abs();
    if a == 0.0 || b == 0.0 || diff < min_normal {
        return diff < EPSILON * min_normal;
    }
    diff / (a.abs() + b.abs()) < EPSILON
}

fn parse_file(name: &str, text: &str) -> Result<Vec<Command>, FormatError> {
    let lines: Vec<&str> = text
        .lines()
        .map(|line| {
            let line = line.trim();
            if line.starts_with('#') {
                ""
            } else {
                line
            }
        })
        .collect();
    let error = |index: usize, message: String| FormatError {
        file: name.to_owned(),
        line: index + 1,
        message,
    };
    let mut commands = Vec::new();
    let mut index = 0;
    while index < lines.len() {
        let line = lines[index];
        if line.is_empty() {
            index += 1;
            continue;
        }
        // The block: this line and the non-blank lines after it.
        let mut end = index + 1;
        while end < lines.len() && !lines[end].is_empty() {
            end += 1;
        }
        let body = &lines[index + 1..end];
        let (word, rest) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
        match word {
            "clear" => {
                // One line: the next command may follow at once.
                commands.push(Command::Clear);
                index += 1;
                continue;
            }
            "load" => {
                let step = parse_duration(rest.trim())
                    .map_err(|message| error(index, format!("invalid load step: {message}")))?;
                let mut series = Vec::new();
                for (offset, def) in body.iter().enumerate() {
                    let (metric, values) =
                        series_line(def).map_err(|message| error(index + 1 + offset, message))?;
                    // A series written twice in one load keeps its last values, as `test.go`'s map does.
                    series.retain(|(earlier, _): &(Metric, _)| *earlier != metric);
                    series.push((metric, values));
                }
                commands.push(Command::Load {
                    step_ms: millis(step),
                    series,
                });
            }
            "eval" | "eval_ordered" | "eval_fail" => {
                let kind = match word {
                    "eval_ordered" => EvalKind::Ordered,
                    "eval_fail" => EvalKind::Fail,
                    _ => EvalKind::Plain,
                };
                let rest = rest.trim_start();
                let Some(rest) = rest
                    .strip_prefix("instant")
                    .map(str::trim_start)
                    .and_then(|rest| rest.strip_prefix("at"))
                else {
                    return Err(error(
                        index,
                        "expected `instant at <time> <expr>`".to_owned(),
                    ));
                };
                let rest = rest.trim_start();
                let (time, expr) = rest
                    .split_once(char::is_whitespace)
                    .ok_or_else(|| error(index, "expected a time and an expression".to_owned()))?;
                let at = parse_duration(time)
                    .map_err(|message| error(index, format!("invalid time: {message}")))?;
                let expected = expected(body).map_err(|message| error(index + 1, message))?;
                commands.push(Command::Eval(Case {
                    name: format!("{name}:{}", index + 1),
                    expr: expr.trim().to_owned(),
                    at_ms: millis(at),
                    kind,
                    expected,
                }));
            }
            other => return Err(error(index, format!("unknown command {other:?}"))),
        }
        index = end;
    }
    Ok(commands)
}

/// The expected result: a lone number is a scalar (and ends the block, as in `test.go`), otherwise one
/// element per line.
fn expected(body: &[&str]) -> Result<Expected, String> {
    if let Some(first) = body.first() {
        if let Ok(Some(value)) = parse_values(first).map(|values| {
            (values.len() == 1 && !first.contains(['{', '}']))
                .then(|| values[0])
                .flatten()
        }) {
            if first.split_whitespace().count() == 1 {
                return Ok(Expected::Scalar(value));
            }
        }
    }
    let mut elements = Vec::new();
    for line in body {
        let (metric, values) = series_line(line)?;
        let [Some(value)] = values.as_slice() else {
            return Err(format!("expected one value in {line:?}"));
        };
        elements.push((metric, *value));
    }
    Ok(Expected::Vector(elements))
}

/// `<series> <values>`: the series ends at its closing brace, or at the first blank without braces.
fn series_line(line: &str) -> Result<(Metric, Vec<Option<f64>>), String> {
    let split = match line.find('{') {
        Some(_) => line
            .find('}')
            .map(|close| close + 1)
            .ok_or_else(|| format!("unclosed '{{' in {line:?}"))?,
        None => line.find(char::is_whitespace).unwrap_or(line.len()),
    };
    let (series, values) = line.split_at(split);
    let metric = parse_metric(series)?;
    let values = parse_values(values)?;
    Ok((metric, values))
}
