//! The functions of PromQL over evaluated arguments (Prometheus' `functions.go`): those over a range of one
//! series' samples ([`range_value`]) and those over an instant vector ([`apply_instant`]). The functions that
//! read the evaluation itself (`time()`, `timestamp()`, `absent()`...) are answered by the walk.

use super::aggregation::{ascending_nan_last, descending_nan_last, quantile};
use super::dates::date_part;
use super::label_functions::{label_join, label_replace};
use super::matching::{check_unique, has_uniform_names};
use crate::gofloat::{go_exp, go_log, go_log10, go_log2, go_max, go_min};
use crate::history::Point;
use crate::labels::{FxHashMap, Metric};
use crate::promql::{Call, Func};
use crate::value::{EvalError, Sample};

/// A function over one series' `points` in the range `(mint, maxt]` of `range_seconds`, evaluated at `t`;
/// `scalars` are its other arguments. `None`: no output for this series.
pub fn range_value(
    func: Func,
    points: &[Point],
    mint: i64,
    maxt: i64,
    range_seconds: f64,
    t: i64,
    scalars: &[f64],
) -> Option<f64> {
    match func {
        Func::Rate => extrapolated_rate(points, mint, maxt, range_seconds, true, true),
        Func::Increase => extrapolated_rate(points, mint, maxt, range_seconds, true, false),
        Func::Delta => extrapolated_rate(points, mint, maxt, range_seconds, false, false),
        Func::Irate => instant_value(points, true),
        Func::Idelta => instant_value(points, false),
        Func::Changes => Some(changes(points)),
        Func::Resets => Some(resets(points)),
        Func::Deriv => (points.len() >= 2).then(|| linear_regression(points, points[0].t).0),
        Func::PredictLinear => (points.len() >= 2).then(|| {
            let (slope, intercept) = linear_regression(points, t);
            slope * scalars[0] + intercept
        }),
        Func::AvgOverTime => Some(avg_over_time(points)),
        Func::SumOverTime => Some(sum_over_time(points)),
        Func::CountOverTime => Some(points.len() as f64),
        Func::MinOverTime => Some(min_over_time(points)),
        Func::MaxOverTime => Some(max_over_time(points)),
        Func::LastOverTime => points.last().map(|point| point.v),
        Func::PresentOverTime | Func::AbsentOverTime => Some(1.0),
        Func::StddevOverTime => Some(stdvar_over_time(points).sqrt()),
        Func::StdvarOverTime => Some(stdvar_over_time(points)),
        Func::QuantileOverTime => {
            let mut values: Vec<f64> = points.iter().map(|point| point.v).collect();
            Some(quantile(scalars[0], &mut values))
        }
        Func::HoltWinters => holt_winters(points, scalars[0], scalars[1]),
        _ => None,
    }
}

/// Refuses the arguments a range function fails on whatever the series (Prometheus panics with these
/// messages during the evaluation).
pub fn check_range_arguments(func: Func, scalars: &[f64]) -> Result<(), EvalError> {
    if func == Func::HoltWinters {
        let (smoothing, trend) = (scalars[0], scalars[1]);
        if smoothing <= 0.0 || smoothing >= 1.0 {
            return Err(EvalError::Type(format!(
                "invalid smoothing factor. Expected: 0 < sf < 1, got: {smoothing:.6}"
            )));
        }
        if trend <= 0.0 || trend >= 1.0 {
            return Err(EvalError::Type(format!(
                "invalid trend factor. Expected: 0 < tf < 1, got: {trend:.6}"
            )));
        }
    }
    Ok(())
}

/// `holt_winters(v, sf, tf)`: double exponential smoothing (Prometheus 2.42's `funcHoltWinters`).
fn holt_winters(points: &[Point], smoothing: f64, trend: f64) -> Option<f64> {
    if points.len() < 2 {
        return None;
    }
    let (mut s0, mut s1) = (0.0f64, points[0].v);
    let mut b = points[1].v - points[0].v;
    for (i, point) in points.iter().enumerate().skip(1) {
        let x = smoothing * point.v;
        // The trend at this point (`calcTrendValue`): the initial one at the first step.
        if i > 1 {
            b = trend * (s1 - s0) + (1.0 - trend) * b;
        }
        let y = (1.0 - smoothing) * (s1 + b);
        (s0, s1) = (s1, x + y);
    }
    Some(s1)
}

/// A function of an instant vector `samples` and its other arguments, already evaluated.
pub fn apply_instant(
    call: &Call,
    mut samples: Vec<Sample>,
    scalars: &[f64],
    strings: &[String],
) -> Result<Vec<Sample>, EvalError> {
    let func = call.func;
    let uniform = has_uniform_names(&samples);
    let simple: Option<fn(f64) -> f64> = match func {
        Func::Abs => Some(f64::abs),
        Func::Ceil => Some(f64::ceil),
        Func::Floor => Some(f64::floor),
        Func::Exp => Some(go_exp),
        Func::Sqrt => Some(f64::sqrt),
        Func::Ln => Some(go_log),
        Func::Log2 => Some(go_log2),
        Func::Log10 => Some(go_log10),
        Func::Sin => Some(f64::sin),
        Func::Cos => Some(f64::cos),
        Func::Tan => Some(f64::tan),
        Func::Asin => Some(f64::asin),
        Func::Acos => Some(f64::acos),
        Func::Atan => Some(f64::atan),
        Func::Sinh => Some(f64::sinh),
        Func::Cosh => Some(f64::cosh),
        Func::Tanh => Some(f64::tanh),
        Func::Asinh => Some(f64::asinh),
        Func::Acosh => Some(f64::acosh),
        Func::Atanh => Some(f64::atanh),
        Func::Rad => Some(|v| v * std::f64::consts::PI / 180.0),
        Func::Deg => Some(|v| v * 180.0 / std::f64::consts::PI),
        Func::Sgn => Some(|v| {
            if v < 0.0 {
                -1.0
            } else if v > 0.0 {
                1.0
            } else {
                v
            }
        }),
        _ => None,
    };
    let out = if let Some(f) = simple {
        map_values(samples, f)
    } else {
        match func {
            Func::Clamp => {
                let (min, max) = (scalars[0], scalars[1]);
                if max < min {
                    Vec::new()
                } else {
                    map_values(samples, |v| go_max(min, go_min(max, v)))
                }
            }
            Func::ClampMax => {
                let max = scalars[0];
                map_values(samples, |v| go_min(max, v))
            }
            Func::ClampMin => {
                let min = scalars[0];
                map_values(samples, |v| go_max(min, v))
            }
            Func::Round => {
                let to_nearest = scalars.first().copied().unwrap_or(1.0);
                let inverse = 1.0 / to_nearest;
                map_values(samples, |v| (v * inverse + 0.5).floor() / inverse)
            }
            Func::Sort => {
                samples.sort_by(|a, b| ascending_nan_last(a.value, b.value));
                return Ok(samples);
            }
            Func::SortDesc => {
                samples.sort_by(|a, b| descending_nan_last(a.value, b.value));
                return Ok(samples);
            }
            Func::LabelReplace => {
                let out = label_replace(call, samples, strings)?;
                check_unique(&out)?;
                return Ok(out);
            }
            Func::LabelJoin => {
                let out = label_join(samples, strings);
                check_unique(&out)?;
                return Ok(out);
            }
            Func::DaysInMonth
            | Func::DayOfMonth
            | Func::DayOfWeek
            | Func::DayOfYear
            | Func::Hour
            | Func::Minute
            | Func::Month
            | Func::Year => map_values(samples, |v| {
                if v.is_finite() {
                    date_part(func, v.trunc() as i64)
                } else {
                    f64::NAN
                }
            }),
            other => {
                return Err(EvalError::Type(format!(
                    "function {} called without its range vector",
                    other.name()
                )))
            }
        }
    };
    if !uniform {
        check_unique(&out)?;
    }
    Ok(out)
}

fn map_values(mut samples: Vec<Sample>, f: impl Fn(f64) -> f64) -> Vec<Sample> {
    for sample in &mut samples {
        sample.value = f(sample.value);
        sample.metric = sample.metric.without_name();
    }
    samples
}

/// Go's `time.Duration.Seconds()` of a whole number of milliseconds.
pub fn duration_seconds(millis: i64) -> f64 {
    let seconds = millis / 1000;
    let nanos = (millis % 1000) * 1_000_000;
    seconds as f64 + nanos as f64 / 1e9
}

/// `rate`, `increase` and `delta` (Prometheus 2.42 `extrapolatedRate`).
fn extrapolated_rate(
    points: &[Point],
    range_start: i64,
    range_end: i64,
    range_seconds: f64,
    is_counter: bool,
    is_rate: bool,
) -> Option<f64> {
    if points.len() < 2 {
        return None;
    }
    let first = points[0];
    let last = points[points.len() - 1];
    let mut result = last.v - first.v;
    if is_counter {
        let mut previous = first.v;
        for point in &points[1..] {
            if point.v < previous {
                result += previous;
            }
            previous = point.v;
        }
    }
    let mut duration_to_start = (first.t - range_start) as f64 / 1000.0;
    let duration_to_end = (range_end - last.t) as f64 / 1000.0;
    let sampled_interval = (last.t - first.t) as f64 / 1000.0;
    let average_between_samples = sampled_interval / (points.len() - 1) as f64;
    if is_counter && result > 0.0 && first.v >= 0.0 {
        // A counter cannot go below zero: do not extrapolate past the point where it would be zero.
        let duration_to_zero = sampled_interval * (first.v / result);
        if duration_to_zero < duration_to_start {
            duration_to_start = duration_to_zero;
        }
    }
    let threshold = average_between_samples * 1.1;
    let mut extrapolate_to = sampled_interval;
    if duration_to_start < threshold {
        extrapolate_to += duration_to_start;
    } else {
        extrapolate_to += average_between_samples / 2.0;
    }
    if duration_to_end < threshold {
        extrapolate_to += duration_to_end;
    } else {
        extrapolate_to += average_between_samples / 2.0;
    }
    let mut factor = extrapolate_to / sampled_interval;
    if is_rate {
        factor /= range_seconds;
    }
    Some(result * factor)
}

/// `irate` and `idelta`: the last two samples.
fn instant_value(points: &[Point], is_rate: bool) -> Option<f64> {
    if points.len() < 2 {
        return None;
    }
    let last = points[points.len() - 1];
    let previous = points[points.len() - 2];
    let mut result = if is_rate && last.v < previous.v {
        last.v
    } else {
        last.v - previous.v
    };
    let interval = last.t - previous.t;
    if interval == 0 {
        return None;
    }
    if is_rate {
        result /= interval as f64 / 1000.0;
    }
    Some(result)
}

fn changes(points: &[Point]) -> f64 {
    let mut count = 0;
    let mut previous = points[0].v;
    for point in &points[1..] {
        if point.v != previous && !(point.v.is_nan() && previous.is_nan()) {
            count += 1;
        }
        previous = point.v;
    }
    f64::from(count)
}

fn resets(points: &[Point]) -> f64 {
    let mut count = 0;
    let mut previous = points[0].v;
    for point in &points[1..] {
        if point.v < previous {
            count += 1;
        }
        previous = point.v;
    }
    f64::from(count)
}

/// Neumaier's compensated addition, as Prometheus' `kahanSumInc`.
fn kahan_sum_inc(increment: f64, sum: f64, compensation: f64) -> (f64, f64) {
    let total = sum + increment;
    let compensation = if sum.abs() >= increment.abs() {
        compensation + ((sum - total) + increment)
    } else {
        compensation + ((increment - total) + sum)
    };
    (total, compensation)
}

fn avg_over_time(points: &[Point]) -> f64 {
    let (mut mean, mut count, mut compensation) = (0.0f64, 0.0f64, 0.0f64);
    for point in points {
        count += 1.0;
        if mean.is_infinite() {
            if point.v.is_infinite() && (mean > 0.0) == (point.v > 0.0) {
                continue;
            }
            if !point.v.is_infinite() && !point.v.is_nan() {
                continue;
            }
        }
        (mean, compensation) = kahan_sum_inc(point.v / count - mean / count, mean, compensation);
    }
    if mean.is_infinite() {
        return mean;
    }
    mean + compensation
}

fn sum_over_time(points: &[Point]) -> f64 {
    let (mut sum, mut compensation) = (0.0f64, 0.0f64);
    for point in points {
        (sum, compensation) = kahan_sum_inc(point.v, sum, compensation);
    }
    if sum.is_infinite() {
        return sum;
    }
    sum + compensation
}

fn min_over_time(points: &[Point]) -> f64 {
    let mut min = points[0].v;
    for point in points {
        if point.v < min || min.is_nan() {
            min = point.v;
        }
    }
    min
}

fn max_over_time(points: &[Point]) -> f64 {
    let mut max = points[0].v;
    for point in points {
        if point.v > max || max.is_nan() {
            max = point.v;
        }
    }
    max
}

fn stdvar_over_time(points: &[Point]) -> f64 {
    let mut count = 0.0f64;
    let (mut mean, mut mean_compensation) = (0.0f64, 0.0f64);
    let (mut aux, mut aux_compensation) = (0.0f64, 0.0f64);
    for point in points {
        count += 1.0;
        let delta = point.v - (mean + mean_compensation);
        (mean, mean_compensation) = kahan_sum_inc(delta / count, mean, mean_compensation);
        (aux, aux_compensation) = kahan_sum_inc(
            delta * (point.v - (mean + mean_compensation)),
            aux,
            aux_compensation,
        );
    }
    (aux + aux_compensation) / count
}

/// Least squares over (seconds since `intercept_time`, value): the slope and the value at `intercept_time`.
fn linear_regression(points: &[Point], intercept_time: i64) -> (f64, f64) {
    let mut n = 0.0f64;
    let (mut sum_x, mut c_x) = (0.0f64, 0.0f64);
    let (mut sum_y, mut c_y) = (0.0f64, 0.0f64);
    let (mut sum_xy, mut c_xy) = (0.0f64, 0.0f64);
    let (mut sum_x2, mut c_x2) = (0.0f64, 0.0f64);
    let initial = points[0].v;
    let mut constant = true;
    for (index, point) in points.iter().enumerate() {
        if constant && index > 0 && point.v != initial {
            constant = false;
        }
        n += 1.0;
        let x = (point.t - intercept_time) as f64 / 1e3;
        (sum_x, c_x) = kahan_sum_inc(x, sum_x, c_x);
        (sum_y, c_y) = kahan_sum_inc(point.v, sum_y, c_y);
        (sum_xy, c_xy) = kahan_sum_inc(x * point.v, sum_xy, c_xy);
        (sum_x2, c_x2) = kahan_sum_inc(x * x, sum_x2, c_x2);
    }
    if constant {
        if initial.is_infinite() {
            return (f64::NAN, f64::NAN);
        }
        return (0.0, initial);
    }
    let sum_x = sum_x + c_x;
    let sum_y = sum_y + c_y;
    let sum_xy = sum_xy + c_xy;
    let sum_x2 = sum_x2 + c_x2;
    let covariance = sum_xy - sum_x * sum_y / n;
    let variance = sum_x2 - sum_x * sum_x / n;
    let slope = covariance / variance;
    let intercept = sum_y / n - slope * sum_x / n;
    (slope, intercept)
}

// === Labels ===

/// `histogram_quantile(q, buckets)` over classic histograms: the `_bucket` series grouped by their labels
/// but `le`, each group's quantile interpolated linearly within its bucket (Prometheus 2.42's
/// `funcHistogramQuantile` and `bucketQuantile`). Elements without a numeric `le` are ignored; the output
/// has neither `le` nor the metric name.
pub fn histogram_quantile(q: f64, samples: &[Sample]) -> Vec<Sample> {
    let mut groups: Vec<(Metric, Vec<(f64, f64)>)> = Vec::new();
    let mut index: FxHashMap<Metric, usize> = FxHashMap::default();
    for sample in samples {
        let Some(upper_bound) = sample.metric.get("le").and_then(parse_go_float) else {
            continue;
        };
        // Grouped with the name (two histograms whose other labels agree stay apart, and then collide).
        let key = sample.metric.builder().del(&["le"]).build();
        let position = match index.get(&key) {
            Some(&position) => position,
            None => {
                index.insert(key.clone(), groups.len());
                groups.push((key, Vec::new()));
                groups.len() - 1
            }
        };
        groups[position].1.push((upper_bound, sample.value));
    }
    groups
        .into_iter()
        .map(|(key, mut buckets)| Sample {
            metric: key.without_name(),
            value: bucket_quantile(q, &mut buckets),
            t: 0,
        })
        .collect()
}

/// Go's `strconv.ParseFloat(text, 64)` for the values `le` takes (`+Inf`, `1e0`, `.2`...).
fn parse_go_float(text: &str) -> Option<f64> {
    let trimmed = text.strip_prefix('+').unwrap_or(text);
    match trimmed.to_ascii_lowercase().as_str() {
        "inf" | "infinity" => {
            return Some(if text.starts_with('-') {
                f64::NEG_INFINITY
            } else {
                f64::INFINITY
            })
        }
        "-inf" | "-infinity" => return Some(f64::NEG_INFINITY),
        "nan" => return Some(f64::NAN),
        _ => {}
    }
    text.parse::<f64>().ok()
}

/// The quantile `q` of one histogram's `(upper bound, cumulative count)` buckets (`bucketQuantile`): NaN
/// without a `+Inf` bucket or observations, the lower bound's side for out-of-range `q`, buckets with the
/// same bound merged, and counts that go down (a scrape caught mid-update) raised to stay monotonic.
fn bucket_quantile(q: f64, buckets: &mut Vec<(f64, f64)>) -> f64 {
    if q.is_nan() {
        return f64::NAN;
    }
    if q < 0.0 {
        return f64::NEG_INFINITY;
    }
    if q > 1.0 {
        return f64::INFINITY;
    }
    buckets.sort_by(|a, b| a.0.partial_cmp(&b.0).unwrap_or(std::cmp::Ordering::Equal));
    if buckets.last().is_none_or(|last| last.0 != f64::INFINITY) {
        return f64::NAN;
    }
    coalesce_buckets(buckets);
    ensure_monotonic(buckets);
    if buckets.len() < 2 {
        return f64::NAN;
    }
    let observations = buckets[buckets.len() - 1].1;
    if observations == 0.0 {
        return f64::NAN;
    }
    let mut rank = q * observations;
    // sort.Search over all but the +Inf bucket: the first whose count reaches the rank.
    let b = buckets[..buckets.len() - 1]
        .iter()
        .position(|bucket| bucket.1 >= rank)
        .unwrap_or(buckets.len() - 1);
    if b == buckets.len() - 1 {
        return buckets[buckets.len() - 2].0;
    }
    if b == 0 && buckets[0].0 <= 0.0 {
        return buckets[0].0;
    }
    let mut bucket_start = 0.0;
    let bucket_end = buckets[b].0;
    let mut count = buckets[b].1;
    if b > 0 {
        bucket_start = buckets[b - 1].0;
        count -= buckets[b - 1].1;
        rank -= buckets[b - 1].1;
    }
    bucket_start + (bucket_end - bucket_start) * (rank / count)
}

/// Merges buckets with the same upper bound, adding their counts (`coalesceBuckets`).
fn coalesce_buckets(buckets: &mut Vec<(f64, f64)>) {
    let mut merged: Vec<(f64, f64)> = Vec::with_capacity(buckets.len());
    for &(bound, count) in buckets.iter() {
        match merged.last_mut() {
            Some(last) if last.0 == bound => last.1 += count,
            _ => merged.push((bound, count)),
        }
    }
    *buckets = merged;
}

/// Raises any count below an earlier one to it (`ensureMonotonic`).
fn ensure_monotonic(buckets: &mut [(f64, f64)]) {
    let mut max = f64::NEG_INFINITY;
    for bucket in buckets {
        if bucket.1 > max {
            max = bucket.1;
        } else if bucket.1 < max {
            bucket.1 = max;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn buckets(pairs: &[(&str, f64)]) -> Vec<Sample> {
        pairs
            .iter()
            .map(|(le, value)| Sample {
                metric: Metric::from_pairs([("__name__", "d_bucket"), ("job", "a"), ("le", *le)]),
                value: *value,
                t: 0,
            })
            .collect()
    }

    fn quantile_of(q: f64, pairs: &[(&str, f64)]) -> f64 {
        let out = histogram_quantile(q, &buckets(pairs));
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].metric.to_string(), "{job=\"a\"}");
        out[0].value
    }

    #[test]
    fn histogram_quantile_follows_prometheus() {
        let classic = [("0.1", 10.0), ("0.5", 30.0), ("1", 40.0), ("+Inf", 40.0)];
        // Rank 20 of 40 falls halfway into (0.1, 0.5].
        assert_eq!(quantile_of(0.5, &classic), 0.30000000000000004);
        // Rank 4 within the first bucket, which starts at 0.
        assert_eq!(quantile_of(0.1, &classic), 0.04000000000000001);
        // Past the last finite bucket: its upper bound.
        assert_eq!(
            quantile_of(1.0, &[("0.1", 10.0), ("1", 20.0), ("+Inf", 30.0)]),
            1.0
        );
        assert_eq!(quantile_of(-0.5, &classic), f64::NEG_INFINITY);
        assert_eq!(quantile_of(1.5, &classic), f64::INFINITY);
        assert!(quantile_of(f64::NAN, &classic).is_nan());
        // No +Inf bucket, no observations: NaN.
        assert!(quantile_of(0.5, &[("0.1", 1.0), ("1", 2.0)]).is_nan());
        assert!(quantile_of(0.5, &[("0.1", 0.0), ("+Inf", 0.0)]).is_nan());
        // A count that goes down is raised to the one before: (0.1: 10, 0.5: 10→... 1: 40).
        assert_eq!(
            quantile_of(
                0.5,
                &[("0.1", 10.0), ("0.5", 5.0), ("1", 40.0), ("+Inf", 40.0)]
            ),
            0.6666666666666666
        );
        // The same bound twice (`1` and `1.0`) counts once, summed.
        assert_eq!(
            quantile_of(
                0.5,
                &[("1", 10.0), ("1.0", 10.0), ("2", 40.0), ("+Inf", 40.0)]
            ),
            1.0
        );
        // A bucket without a numeric le is ignored.
        let mut with_bad = buckets(&classic);
        with_bad.extend(buckets(&[("x", 100.0)]));
        assert_eq!(
            histogram_quantile(0.5, &with_bad)[0].value,
            0.30000000000000004
        );
    }
}
