//! The functions of PromQL over evaluated arguments (Prometheus' `functions.go`): those over a range of one
//! series' samples ([`range_value`]) and those over an instant vector ([`apply_instant`]). The functions that
//! read the evaluation itself (`time()`, `timestamp()`, `absent()`...) are answered by the walk.

use super::aggregation::{ascending_nan_last, descending_nan_last, quantile};
use super::dates::date_part;
use super::gofloat::{go_max, go_min};
use super::label_functions::{label_join, label_replace};
use super::matching::{check_unique, has_uniform_names};
use crate::history::Point;
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
        _ => None,
    }
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
        Func::Exp => Some(f64::exp),
        Func::Sqrt => Some(f64::sqrt),
        Func::Ln => Some(f64::ln),
        Func::Log2 => Some(f64::log2),
        Func::Log10 => Some(f64::log10),
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
