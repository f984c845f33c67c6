//! The functions that work on labels: `label_replace`, `label_join`, and the labels `absent()` and
//! `absent_over_time()` give their single sample.

use promql_parser::label::MatchOp;

use crate::labels::{Metric, MetricBuilder, METRIC_NAME};
use crate::promql::{Call, Expr};
use crate::value::{EvalError, Sample};

/// The labels `absent()` gives its single sample: the selector's equality matchers, once each.
pub fn absent_labels(arg: &Expr) -> Metric {
    let selector = match arg {
        Expr::Vector(selector) | Expr::Matrix(selector, _) => selector,
        _ => return Metric::default(),
    };
    let mut builder = MetricBuilder::default();
    let mut has: Vec<&str> = Vec::new();
    for matcher in &selector.matchers {
        if matcher.name == METRIC_NAME {
            continue;
        }
        if matches!(matcher.op, MatchOp::Equal) && !has.contains(&matcher.name.as_str()) {
            builder.set(&matcher.name, &matcher.value);
            has.push(&matcher.name);
        } else {
            builder.del(&[&matcher.name]);
        }
    }
    builder.build()
}

/// `label_replace(v, destination, replacement, source, regex)`; the regex was compiled with the call.
pub fn label_replace(
    call: &Call,
    samples: Vec<Sample>,
    strings: &[String],
) -> Result<Vec<Sample>, EvalError> {
    let (destination, replacement, source) = (&strings[0], &strings[1], &strings[2]);
    let Some(matcher) = &call.regex else {
        return Err(EvalError::Type(
            "label_replace without its regular expression".to_owned(),
        ));
    };
    let MatchOp::Re(regex) = &matcher.op else {
        return Err(EvalError::Type(
            "label_replace without its regular expression".to_owned(),
        ));
    };
    let mut out = Vec::with_capacity(samples.len());
    for mut sample in samples {
        let value = sample.metric.get(source).unwrap_or("");
        if let Some(captures) = regex.captures(value) {
            let mut expanded = String::new();
            captures.expand(replacement, &mut expanded);
            sample.metric = sample.metric.builder().set(destination, &expanded).build();
        }
        out.push(sample);
    }
    Ok(out)
}

/// `label_join(v, destination, separator, sources...)`.
pub fn label_join(samples: Vec<Sample>, strings: &[String]) -> Vec<Sample> {
    let (destination, separator, sources) = (&strings[0], &strings[1], &strings[2..]);
    let mut out = Vec::with_capacity(samples.len());
    for mut sample in samples {
        let joined = sources
            .iter()
            .map(|source| sample.metric.get(source).unwrap_or(""))
            .collect::<Vec<_>>()
            .join(separator);
        sample.metric = sample.metric.builder().set(destination, &joined).build();
        out.push(sample);
    }
    out
}
