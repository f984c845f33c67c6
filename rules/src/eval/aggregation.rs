//! Aggregation operators over an evaluated vector, grouped by a [`Grouping`] the walk keeps between
//! evaluations (Prometheus' `aggregation` in `engine.go`), and the orderings and quantile they share with
//! `sort`, `sort_desc` and `quantile_over_time`.

use super::matching::Grouping;
use crate::labels::{is_valid_label_name, FxHashMap, Metric};
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
            AggOp::CountValues => {}
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
            // Evaluated by count_values: its groups depend on the values.
            AggOp::CountValues => continue,
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

/// `count_values("label", v)`: how many elements have each value, by the grouping and the value written as
/// Go's `strconv.FormatFloat(v, 'f', -1, 64)` under `label` (Prometheus 2.42's `aggregation`): `by` keeps
/// the listed labels and `label`, `without` drops the listed labels (after setting `label`) and the name.
pub fn count_values(
    aggregate: &Aggregate,
    label: &str,
    samples: &[Sample],
) -> Result<Vec<Sample>, EvalError> {
    if !is_valid_label_name(label) {
        return Err(EvalError::Type(format!("invalid label name {label:?}")));
    }
    let mut groups: Vec<(Metric, usize)> = Vec::new();
    let mut index: FxHashMap<Metric, usize> = FxHashMap::default();
    for sample in samples {
        let value = go_format_float(sample.value);
        let mut builder = sample.metric.builder();
        builder.set(label, &value);
        if aggregate.without {
            builder.del(&aggregate.grouping).del_name();
        } else {
            let mut kept: Vec<&str> = aggregate.grouping.iter().map(String::as_str).collect();
            kept.push(label);
            builder.keep(&kept);
        }
        let metric = builder.build();
        match index.get(&metric) {
            Some(&position) => groups[position].1 += 1,
            None => {
                index.insert(metric.clone(), groups.len());
                groups.push((metric, 1));
            }
        }
    }
    Ok(groups
        .into_iter()
        .map(|(metric, count)| Sample {
            metric,
            value: count as f64,
            t: 0,
        })
        .collect())
}

/// Go's `strconv.FormatFloat(value, 'f', -1, 64)`: the shortest decimal that reads back, never an exponent.
fn go_format_float(value: f64) -> String {
    if value == f64::INFINITY {
        "+Inf".to_owned()
    } else if value == f64::NEG_INFINITY {
        "-Inf".to_owned()
    } else {
        // Rust's shortest representation is Go's, and it never uses an exponent either.
        format!("{value}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::labels::METRIC_NAME;
    use crate::promql::compile_query;
    use crate::promql::Expr;

    fn sample(pairs: &[(&str, &str)], value: f64) -> Sample {
        Sample {
            metric: Metric::from_pairs(pairs.iter().copied()),
            value,
            t: 0,
        }
    }

    fn counted(text: &str, samples: &[Sample]) -> Vec<(String, f64)> {
        let Ok(Expr::Aggregate(aggregate)) = compile_query(text) else {
            panic!("{text} is an aggregation");
        };
        let mut out: Vec<(String, f64)> = count_values(&aggregate, "v", samples)
            .expect("counts")
            .into_iter()
            .map(|sample| (sample.metric.to_string(), sample.value))
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    #[test]
    fn count_values_groups_by_value_as_go_writes_it() {
        let samples = [
            sample(&[(METRIC_NAME, "x"), ("job", "a"), ("i", "1")], 0.1),
            sample(&[(METRIC_NAME, "x"), ("job", "a"), ("i", "2")], 0.1),
            sample(&[(METRIC_NAME, "x"), ("job", "b"), ("i", "3")], 1e21),
            sample(
                &[(METRIC_NAME, "x"), ("job", "b"), ("i", "4")],
                f64::INFINITY,
            ),
        ];
        assert_eq!(
            counted("count_values(\"v\", x)", &samples),
            [
                ("{v=\"+Inf\"}".to_owned(), 1.0),
                ("{v=\"0.1\"}".to_owned(), 2.0),
                ("{v=\"1000000000000000000000\"}".to_owned(), 1.0),
            ]
        );
        assert_eq!(
            counted("count_values by (job) (\"v\", x)", &samples),
            [
                ("{job=\"a\", v=\"0.1\"}".to_owned(), 2.0),
                ("{job=\"b\", v=\"+Inf\"}".to_owned(), 1.0),
                ("{job=\"b\", v=\"1000000000000000000000\"}".to_owned(), 1.0),
            ]
        );
        assert_eq!(
            counted("count_values without (i, job) (\"v\", x)", &samples).len(),
            3
        );
        let Ok(Expr::Aggregate(aggregate)) = compile_query("count_values(\"v\", x)") else {
            panic!("an aggregation");
        };
        assert!(count_values(&aggregate, "not-a-label", &samples).is_err());
    }
}
