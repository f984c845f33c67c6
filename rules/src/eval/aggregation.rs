//! Aggregation operators over an evaluated vector, grouped by a [`Grouping`] the walk keeps between
//! evaluations (Prometheus' `aggregation` in `engine.go`), and the orderings and quantile they share with
//! `sort`, `sort_desc` and `quantile_over_time`.

use super::matching::Grouping;
use crate::promql::{AggOp, Aggregate};
use crate::value::{EvalError, Overwrite, Sample};

#[derive(Default)]
struct Group {
    value: f64,
    mean: f64,
    /// 0 until the group's first element is seen.
    count: usize,
    members: Vec<Sample>,
}

/// The aggregation `aggregate` of `samples` by `grouping`, written over `previous`.
pub fn aggregation(
    aggregate: &Aggregate,
    param: f64,
    samples: &[Sample],
    grouping: &Grouping,
    previous: Vec<Sample>,
) -> Result<Vec<Sample>, EvalError> {
    let op = aggregate.op;
    let mut k = 0usize;
    if matches!(op, AggOp::Topk | AggOp::Bottomk) {
        if !(-9.223_372_036_854_776e18..=9.223_372_036_854_776e18).contains(&param) {
            return Err(EvalError::Overflow(param));
        }
        let truncated = param.trunc();
        if truncated < 1.0 {
            return Ok(Vec::new());
        }
        k = truncated as usize;
    }
    let mut groups: Vec<Group> = std::iter::repeat_with(Group::default)
        .take(grouping.metrics.len())
        .collect();
    for (sample, &index) in samples.iter().zip(&grouping.group_of) {
        let group = &mut groups[index];
        let value = sample.value;
        if group.count == 0 {
            group.value = match op {
                AggOp::Stddev | AggOp::Stdvar => 0.0,
                AggOp::Group => 1.0,
                _ => value,
            };
            group.mean = value;
            group.count = 1;
            if matches!(op, AggOp::Topk | AggOp::Bottomk | AggOp::Quantile) {
                group.members.push(sample.clone());
            }
            continue;
        }
        match op {
            AggOp::Sum => group.value += value,
            AggOp::Avg => {
                group.count += 1;
                let count = group.count as f64;
                if group.mean.is_infinite() {
                    if value.is_infinite() && (group.mean > 0.0) == (value > 0.0) {
                        continue;
                    }
                    if !value.is_infinite() && !value.is_nan() {
                        continue;
                    }
                }
                group.mean += value / count - group.mean / count;
            }
            AggOp::Group => {}
            AggOp::Max => {
                if group.value < value || group.value.is_nan() {
                    group.value = value;
                }
            }
            AggOp::Min => {
                if group.value > value || group.value.is_nan() {
                    group.value = value;
                }
            }
            AggOp::Count => group.count += 1,
            AggOp::Stddev | AggOp::Stdvar => {
                group.count += 1;
                let delta = value - group.mean;
                group.mean += delta / group.count as f64;
                group.value += delta * (value - group.mean);
            }
            AggOp::Topk | AggOp::Bottomk | AggOp::Quantile => group.members.push(sample.clone()),
        }
    }
    let mut out = Overwrite::over(previous, groups.len());
    for (mut group, metric) in groups.into_iter().zip(&grouping.metrics) {
        let value = match op {
            AggOp::Avg => group.mean,
            AggOp::Count => group.count as f64,
            AggOp::Stdvar => group.value / group.count as f64,
            AggOp::Stddev => (group.value / group.count as f64).sqrt(),
            AggOp::Topk | AggOp::Bottomk => {
                let mut members = std::mem::take(&mut group.members);
                if op == AggOp::Topk {
                    members.sort_by(|a, b| descending_nan_last(a.value, b.value));
                } else {
                    members.sort_by(|a, b| ascending_nan_last(a.value, b.value));
                }
                for member in members.iter().take(k) {
                    out.push(&member.metric, member.value, member.t);
                }
                continue;
            }
            AggOp::Quantile => {
                let mut values: Vec<f64> =
                    group.members.iter().map(|sample| sample.value).collect();
                quantile(param, &mut values)
            }
            AggOp::Sum | AggOp::Group | AggOp::Min | AggOp::Max => group.value,
        };
        out.push(metric, value, 0);
    }
    Ok(out.finish())
}

/// Orders ascending with NaN after every number.
pub fn ascending_nan_last(a: f64, b: f64) -> std::cmp::Ordering {
    match (a.is_nan(), b.is_nan()) {
        (true, true) => std::cmp::Ordering::Equal,
        (true, false) => std::cmp::Ordering::Greater,
        (false, true) => std::cmp::Ordering::Less,
        (false, false) => a.partial_cmp(&b).unwrap_or(std::cmp::Ordering::Equal),
    }
}

/// Orders descending with NaN after every number.
pub fn descending_nan_last(a: f64, b: f64) -> std::cmp::Ordering {
    match (a.is_nan(), b.is_nan()) {
        (true, true) => std::cmp::Ordering::Equal,
        (true, false) => std::cmp::Ordering::Greater,
        (false, true) => std::cmp::Ordering::Less,
        (false, false) => b.partial_cmp(&a).unwrap_or(std::cmp::Ordering::Equal),
    }
}

/// Prometheus' `quantile`: NaN sorts first, linear interpolation between the two nearest ranks.
pub fn quantile(q: f64, values: &mut [f64]) -> f64 {
    if values.is_empty() || q.is_nan() {
        return f64::NAN;
    }
    if q < 0.0 {
        return f64::NEG_INFINITY;
    }
    if q > 1.0 {
        return f64::INFINITY;
    }
    values.sort_by(|a, b| match (a.is_nan(), b.is_nan()) {
        (true, true) => std::cmp::Ordering::Equal,
        (true, false) => std::cmp::Ordering::Less,
        (false, true) => std::cmp::Ordering::Greater,
        (false, false) => a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal),
    });
    let n = values.len() as f64;
    let rank = q * (n - 1.0);
    let lower = rank.floor().max(0.0);
    let upper = (n - 1.0).min(lower + 1.0);
    let weight = rank - rank.floor();
    values[lower as usize] * (1.0 - weight) + values[upper as usize] * weight
}
