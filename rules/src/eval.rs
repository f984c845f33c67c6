//! Evaluates a compiled expression over the history at one instant. Pure: the time is an argument.
//!
//! Every operation follows Prometheus 2.42's engine (`promql/engine.go`, `promql/functions.go`) down to the
//! order of floating-point operations, so results match `promtool test rules` bit for bit: NaN comparisons are
//! false (and `!=` true), `rate()` and `increase()` handle counter resets and extrapolate to the range
//! boundaries, `avg` and the `*_over_time` functions use the same incremental and compensated sums.

use promql_parser::label::MatchOp;

use std::sync::Arc;

use super::history::{points_between, value_at, History, Point, SharedKey};

use super::labels::{Metric, MetricBuilder};
use super::matching::{group, pair, signature_hash, Grouping, HashChains, SignatureIndex};
use super::promql::{
    AggOp, Aggregate, BinOp, Binary, Call, Expr, Func, Matching, Selector, Shared, ValueType,
};

/// One element of an instant vector.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub metric: Metric,
    pub value: f64,
    /// The timestamp of the underlying sample; only `timestamp()` of a selector reads it.
    pub t: i64,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Scalar(f64),
    Vector(Vec<Sample>),
    String(String),
}

impl Value {
    /// A rule's result as a vector: a scalar becomes one sample without labels, as Prometheus' rule manager does.
    pub fn into_vector(self, t: i64) -> Vec<Sample> {
        match self {
            Value::Vector(samples) => samples,
            Value::Scalar(value) => vec![Sample {
                metric: Metric::default(),
                value,
                t,
            }],
            Value::String(_) => Vec::new(),
        }
    }
}

/// Writes a result over the previous evaluation's result of the same expression. Rules are evaluated over the
/// same series again and again: an element that names the series its predecessor named keeps that label set,
/// so an unchanged fleet costs neither reference counting nor allocation.
pub(crate) struct Overwrite {
    samples: Vec<Sample>,
    len: usize,
}

impl Overwrite {
    /// Writes over `previous`, with room for `expected` elements.
    pub(crate) fn over(mut previous: Vec<Sample>, expected: usize) -> Overwrite {
        previous.reserve(expected.saturating_sub(previous.len()));
        Overwrite {
            samples: previous,
            len: 0,
        }
    }

    /// Appends an element labelled `metric`.
    pub(crate) fn push(&mut self, metric: &Metric, value: f64, t: i64) {
        self.push_as(
            value,
            t,
            |kept| kept.is_same_allocation(metric),
            || metric.clone(),
        );
    }

    /// Appends an element labelled `metric` without its metric name.
    pub(crate) fn push_unnamed(&mut self, metric: &Metric, value: f64, t: i64) {
        self.push_as(
            value,
            t,
            |kept| kept.is_unnamed_of(metric),
            || metric.without_name(),
        );
    }

    fn push_as(
        &mut self,
        value: f64,
        t: i64,
        is_same: impl FnOnce(&Metric) -> bool,
        make: impl FnOnce() -> Metric,
    ) {
        match self.samples.get_mut(self.len) {
            Some(sample) => {
                if !is_same(&sample.metric) {
                    sample.metric = make();
                }
                sample.value = value;
                sample.t = t;
            }
            None => self.samples.push(Sample {
                metric: make(),
                value,
                t,
            }),
        }
        self.len += 1;
    }

    pub(crate) fn finish(mut self) -> Vec<Sample> {
        self.samples.truncate(self.len);
        self.samples
    }
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum EvalError {
    #[error("vector cannot contain metrics with the same labelset")]
    DuplicateLabelset,
    #[error(
        "found duplicate series for the match group {group} on the {side} hand-side of the operation: [{first}, {second}];many-to-many matching not allowed: matching labels must be unique on one side"
    )]
    ManyToMany {
        group: String,
        side: &'static str,
        first: String,
        second: String,
    },
    #[error("multiple matches for labels: many-to-one matching must be explicit (group_left/group_right)")]
    ImplicitManyToOne,
    #[error("multiple matches for labels: grouping labels must ensure unique matches")]
    GroupingNotUnique,
    #[error("scalar value {0} overflows int64")]
    Overflow(f64),
    #[error("{0}")]
    Type(String),
}

/// Evaluates `expr` at `t` (Unix milliseconds).
pub fn evaluate(expr: &Expr, history: &History, t: i64) -> Result<Value, EvalError> {
    let mut evaluator = Evaluator {
        history,
        t,
        points: Vec::with_capacity(64),
    };
    evaluator.eval_root(expr)
}

enum Operand {
    Scalar(f64),
    Vector(Arc<Vec<Sample>>),
}

struct Evaluator<'h> {
    history: &'h History,
    t: i64,
    /// Reused buffer for range selections.
    points: Vec<Point>,
}

impl Evaluator<'_> {
    /// A rule's expression: its result goes to the rule, so it is not kept for other rules (which would cost a
    /// copy of it); two rules rarely have the same whole expression, while they share its parts all the time.
    fn eval_root(&mut self, expr: &Expr) -> Result<Value, EvalError> {
        match expr {
            Expr::Binary(binary) => self.binary(binary, Vec::new()),
            Expr::Aggregate(aggregate) => self.aggregate(aggregate, Vec::new()),
            _ => self.eval(expr),
        }
    }

    fn eval(&mut self, expr: &Expr) -> Result<Value, EvalError> {
        if let Some(shared) = self.shared_vector(expr) {
            return shared.map(|samples| Value::Vector(Arc::unwrap_or_clone(samples)));
        }
        match expr {
            Expr::Number(value) => Ok(Value::Scalar(*value)),
            Expr::String(text) => Ok(Value::String(text.clone())),
            Expr::Vector(selector) => Ok(Value::Vector(self.select(selector, Vec::new()))),
            Expr::Matrix(selector, _) => Err(EvalError::Type(format!(
                "range vector {} is only allowed as a function argument",
                selector.text
            ))),
            Expr::Negate(inner) => match self.eval(inner)? {
                Value::Scalar(value) => Ok(Value::Scalar(-value)),
                Value::Vector(mut samples) => {
                    let uniform = has_uniform_names(&samples);
                    for sample in &mut samples {
                        sample.metric = sample.metric.without_name();
                        sample.value = -sample.value;
                    }
                    if !uniform {
                        check_unique(&samples)?;
                    }
                    Ok(Value::Vector(samples))
                }
                Value::String(_) => Err(EvalError::Type("unary minus on a string".to_owned())),
            },
            Expr::Binary(binary) => self.binary(binary, Vec::new()),
            Expr::Aggregate(aggregate) => self.aggregate(aggregate, Vec::new()),
            Expr::Call(call) => self.call(call),
        }
    }

    /// The instant vector of `selector`, read from the history once per instant for every rule.
    fn shared_select(&self, selector: &Selector) -> Arc<Vec<Sample>> {
        let key = SharedKey {
            expr: format!("{}\u{0}{}", selector.text, selector.offset_ms),
            t: self.t,
        };
        let reads = selector.name.as_ref().map(std::slice::from_ref);
        let shared = self.history.shared(key, reads, |previous| {
            Ok::<_, std::convert::Infallible>(self.select(selector, previous))
        });
        match shared {
            Ok(samples) => samples,
            Err(never) => match never {},
        }
    }

    /// The instant vector of `selector`, written over `previous` (see [`Overwrite`]).
    fn select(&self, selector: &Selector, previous: Vec<Sample>) -> Vec<Sample> {
        let at = self.t - selector.offset_ms;
        let mut out = Overwrite::over(previous, self.history.candidates(selector));
        self.history.for_each_selected(selector, |metric, points| {
            if let Some(point) = value_at(points, at) {
                out.push(metric, point.v, point.t);
            }
        });
        out.finish()
    }

    /// The result of an instant-vector expression, shared with the other rules evaluated at this instant;
    /// `None` for scalars, strings and the few vector expressions too cheap to be worth a lookup.
    fn shared_vector(&mut self, expr: &Expr) -> Option<Result<Arc<Vec<Sample>>, EvalError>> {
        let history = self.history;
        let key = |shared: &Shared, t| SharedKey {
            expr: shared.key.clone(),
            t,
        };
        match expr {
            Expr::Vector(selector) => Some(Ok(self.shared_select(selector))),
            Expr::Binary(binary) if expr.value_type() == ValueType::Vector => {
                let t = self.t;
                Some(history.shared(
                    key(&binary.shared, t),
                    binary.shared.reads.as_deref(),
                    |previous| self.binary(binary, previous).and_then(into_vector),
                ))
            }
            Expr::Aggregate(aggregate) => {
                let t = self.t;
                Some(history.shared(
                    key(&aggregate.shared, t),
                    aggregate.shared.reads.as_deref(),
                    |previous| self.aggregate(aggregate, previous).and_then(into_vector),
                ))
            }
            Expr::Call(call) => {
                let index = call
                    .args
                    .iter()
                    .position(|arg| matches!(arg, Expr::Matrix(..)))?;
                Some(self.shared_range_call(call, index))
            }
            _ => None,
        }
    }

    fn scalar(&mut self, expr: &Expr) -> Result<f64, EvalError> {
        match self.eval(expr)? {
            Value::Scalar(value) => Ok(value),
            _ => Err(EvalError::Type("expected a scalar".to_owned())),
        }
    }

    fn vector(&mut self, expr: &Expr) -> Result<Vec<Sample>, EvalError> {
        match self.eval(expr)? {
            Value::Vector(samples) => Ok(samples),
            _ => Err(EvalError::Type("expected an instant vector".to_owned())),
        }
    }

    // === Binary operators ===

    /// A binary operation; a vector result is written over `previous` where that pays (see [`Overwrite`]).
    fn binary(&mut self, binary: &Binary, previous: Vec<Sample>) -> Result<Value, EvalError> {
        // The most common rule, `selector > threshold` (or `rate(...) > threshold`): compare the shared
        // selection in place and copy only the samples that pass, as vector_scalar_binop would keep them.
        if binary.op.is_comparison() && !binary.return_bool {
            let compared = match (&binary.lhs, &binary.rhs) {
                (vector, Expr::Number(threshold)) => self
                    .shared_vector(vector)
                    .map(|shared| (shared, *threshold, false)),
                (Expr::Number(threshold), vector) => self
                    .shared_vector(vector)
                    .map(|shared| (shared, *threshold, true)),
                _ => None,
            };
            if let Some((shared, threshold, swap)) = compared {
                let op = binary.op;
                let mut kept = Overwrite::over(previous, 0);
                for sample in shared?.iter() {
                    let (lhs, rhs) = if swap {
                        (threshold, sample.value)
                    } else {
                        (sample.value, threshold)
                    };
                    if elem_binop(op, lhs, rhs).1 {
                        kept.push(&sample.metric, sample.value, sample.t);
                    }
                }
                return Ok(Value::Vector(kept.finish()));
            }
        }
        let lhs = self.operand(&binary.lhs)?;
        let rhs = self.operand(&binary.rhs)?;
        let op = binary.op;
        match (lhs, rhs) {
            (Operand::Scalar(lhs), Operand::Scalar(rhs)) => {
                Ok(Value::Scalar(scalar_binop(op, lhs, rhs)))
            }
            (Operand::Vector(lhs), Operand::Scalar(rhs)) => {
                let lhs = Arc::unwrap_or_clone(lhs);
                vector_scalar_binop(op, lhs, rhs, false, binary.return_bool).map(Value::Vector)
            }
            (Operand::Scalar(lhs), Operand::Vector(rhs)) => {
                let rhs = Arc::unwrap_or_clone(rhs);
                vector_scalar_binop(op, rhs, lhs, true, binary.return_bool).map(Value::Vector)
            }
            (Operand::Vector(lhs), Operand::Vector(rhs)) => {
                let matching = &binary.matching;
                let out = match op {
                    BinOp::And => vector_and(Arc::unwrap_or_clone(lhs), &rhs, matching),
                    BinOp::Or => vector_or(
                        Arc::unwrap_or_clone(lhs),
                        Arc::unwrap_or_clone(rhs),
                        matching,
                    ),
                    BinOp::Unless => vector_unless(Arc::unwrap_or_clone(lhs), &rhs, matching),
                    _ => {
                        let pairing =
                            self.history
                                .plan(&binary.shared.key, &[&lhs, &rhs], self.t, || {
                                    pair(&lhs, &rhs, op, matching, binary.return_bool)
                                })?;
                        pairing.apply(op, &lhs, &rhs, matching, binary.return_bool, previous)?
                    }
                };
                Ok(Value::Vector(out))
            }
        }
    }

    /// An operand of a binary operator: a shared result is read in place, not copied.
    fn operand(&mut self, expr: &Expr) -> Result<Operand, EvalError> {
        if let Some(shared) = self.shared_vector(expr) {
            return shared.map(Operand::Vector);
        }
        match self.eval(expr)? {
            Value::Scalar(value) => Ok(Operand::Scalar(value)),
            Value::Vector(samples) => Ok(Operand::Vector(Arc::new(samples))),
            Value::String(_) => Err(EvalError::Type("binary operator on a string".to_owned())),
        }
    }

    // === Aggregations ===

    /// An aggregation, written over `previous` (see [`Overwrite`]).
    fn aggregate(
        &mut self,
        aggregate: &Aggregate,
        previous: Vec<Sample>,
    ) -> Result<Value, EvalError> {
        let param = match &aggregate.param {
            Some(param) => Some(self.scalar(param)?),
            None => None,
        };
        let samples = match self.shared_vector(&aggregate.expr) {
            Some(shared) => shared?,
            None => Arc::new(self.vector(&aggregate.expr)?),
        };
        let grouping = self
            .history
            .plan(&aggregate.shared.key, &[&samples], self.t, || {
                Ok::<_, EvalError>(group(&samples, aggregate))
            })?;
        aggregation(
            aggregate,
            param.unwrap_or(0.0),
            &samples,
            &grouping,
            previous,
        )
        .map(Value::Vector)
    }

    // === Functions ===

    /// A function without a range vector argument; [`Evaluator::eval`] hands the others to
    /// [`Evaluator::shared_vector`] before it gets here.
    fn call(&mut self, call: &Call) -> Result<Value, EvalError> {
        let func = call.func;
        match func {
            Func::Time => return Ok(Value::Scalar(self.t as f64 / 1000.0)),
            Func::Pi => return Ok(Value::Scalar(std::f64::consts::PI)),
            Func::Scalar => {
                let samples = self.vector(&call.args[0])?;
                let value = if samples.len() == 1 {
                    samples[0].value
                } else {
                    f64::NAN
                };
                return Ok(Value::Scalar(value));
            }
            Func::Vector => {
                let value = self.scalar(&call.args[0])?;
                return Ok(Value::Vector(vec![Sample {
                    metric: Metric::default(),
                    value,
                    t: self.t,
                }]));
            }
            Func::Timestamp => {
                let from_selector = matches!(call.args[0], Expr::Vector(_));
                let mut samples = self.vector(&call.args[0])?;
                let uniform = has_uniform_names(&samples);
                for sample in &mut samples {
                    let at = if from_selector { sample.t } else { self.t };
                    sample.value = at as f64 / 1000.0;
                    sample.metric = sample.metric.without_name();
                }
                if !uniform {
                    check_unique(&samples)?;
                }
                return Ok(Value::Vector(samples));
            }
            Func::Absent => {
                let samples = self.vector(&call.args[0])?;
                if !samples.is_empty() {
                    return Ok(Value::Vector(Vec::new()));
                }
                return Ok(Value::Vector(vec![Sample {
                    metric: absent_labels(&call.args[0]),
                    value: 1.0,
                    t: self.t,
                }]));
            }
            Func::DaysInMonth
            | Func::DayOfMonth
            | Func::DayOfWeek
            | Func::DayOfYear
            | Func::Hour
            | Func::Minute
            | Func::Month
            | Func::Year
                if call.args.is_empty() =>
            {
                let seconds = self.t.div_euclid(1000);
                return Ok(Value::Vector(vec![Sample {
                    metric: Metric::default(),
                    value: date_part(func, seconds),
                    t: self.t,
                }]));
            }
            _ => {}
        }
        let mut samples = self.vector(&call.args[0])?;
        let mut scalars = Vec::with_capacity(2);
        let mut strings = Vec::new();
        for arg in &call.args[1..] {
            match self.eval(arg)? {
                Value::Scalar(value) => scalars.push(value),
                Value::String(text) => strings.push(text),
                Value::Vector(_) => {
                    return Err(EvalError::Type(format!(
                        "unexpected vector argument to {}",
                        func.name()
                    )))
                }
            }
        }
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
                    return Ok(Value::Vector(samples));
                }
                Func::SortDesc => {
                    samples.sort_by(|a, b| descending_nan_last(a.value, b.value));
                    return Ok(Value::Vector(samples));
                }
                Func::LabelReplace => {
                    let out = label_replace(call, samples, &strings)?;
                    check_unique(&out)?;
                    return Ok(Value::Vector(out));
                }
                Func::LabelJoin => {
                    let out = label_join(samples, &strings);
                    check_unique(&out)?;
                    return Ok(Value::Vector(out));
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
        Ok(Value::Vector(out))
    }

    /// [`Evaluator::range_call`], computed once per instant for every rule with the same call and arguments.
    fn shared_range_call(
        &mut self,
        call: &Call,
        matrix_index: usize,
    ) -> Result<Arc<Vec<Sample>>, EvalError> {
        let Expr::Matrix(selector, range_ms) = &call.args[matrix_index] else {
            return Ok(Arc::default());
        };
        let mut scalars = Vec::new();
        for (index, arg) in call.args.iter().enumerate() {
            if index != matrix_index {
                scalars.push(self.scalar(arg)?);
            }
        }
        let mut expr = format!(
            "{}\u{0}{}\u{0}{}\u{0}{range_ms}\u{0}{matrix_index}",
            call.func.name(),
            selector.text,
            selector.offset_ms
        );
        for scalar in &scalars {
            expr.push_str(&format!("\u{0}{:x}", scalar.to_bits()));
        }
        let key = SharedKey { expr, t: self.t };
        let history = self.history;
        let reads = selector.name.as_ref().map(std::slice::from_ref);
        history.shared(key, reads, |previous| {
            self.range_call(call, matrix_index, selector, *range_ms, &scalars, previous)
        })
    }

    /// A function over a range vector: one output per series that has samples in the range.
    fn range_call(
        &mut self,
        call: &Call,
        matrix_index: usize,
        selector: &Selector,
        range_ms: i64,
        scalars: &[f64],
        previous: Vec<Sample>,
    ) -> Result<Vec<Sample>, EvalError> {
        let func = call.func;
        let maxt = self.t - selector.offset_ms;
        let mint = maxt - range_ms;
        let range_seconds = duration_seconds(range_ms);
        let t = self.t;
        let mut out = Overwrite::over(previous, self.history.candidates(selector));
        let mut any = false;
        let mut scratch = std::mem::take(&mut self.points);
        self.history
            .for_each_selected(selector, |metric, series: &[Point]| {
                let points = points_between(series, mint, maxt, &mut scratch);
                if points.is_empty() {
                    return;
                }
                any = true;
                let value = match func {
                    Func::Rate => extrapolated_rate(points, mint, maxt, range_seconds, true, true),
                    Func::Increase => {
                        extrapolated_rate(points, mint, maxt, range_seconds, true, false)
                    }
                    Func::Delta => {
                        extrapolated_rate(points, mint, maxt, range_seconds, false, false)
                    }
                    Func::Irate => instant_value(points, true),
                    Func::Idelta => instant_value(points, false),
                    Func::Changes => Some(changes(points)),
                    Func::Resets => Some(resets(points)),
                    Func::Deriv => {
                        (points.len() >= 2).then(|| linear_regression(points, points[0].t).0)
                    }
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
                };
                match value {
                    Some(value) if func == Func::LastOverTime => out.push(metric, value, t),
                    Some(value) => out.push_unnamed(metric, value, t),
                    None => {}
                }
            });
        self.points = scratch;
        let out = out.finish();
        if func == Func::AbsentOverTime {
            if any {
                return Ok(Vec::new());
            }
            return Ok(vec![Sample {
                metric: absent_labels(&call.args[matrix_index]),
                value: 1.0,
                t,
            }]);
        }
        if selector.name.is_none() || func == Func::LastOverTime {
            check_unique(&out)?;
        }
        Ok(out)
    }
}

fn into_vector(value: Value) -> Result<Vec<Sample>, EvalError> {
    match value {
        Value::Vector(samples) => Ok(samples),
        _ => Err(EvalError::Type("expected an instant vector".to_owned())),
    }
}

fn map_values(mut samples: Vec<Sample>, f: impl Fn(f64) -> f64) -> Vec<Sample> {
    for sample in &mut samples {
        sample.value = f(sample.value);
        sample.metric = sample.metric.without_name();
    }
    samples
}

/// True when every sample has the same metric name: dropping it then cannot create duplicates.
fn has_uniform_names(samples: &[Sample]) -> bool {
    samples
        .windows(2)
        .all(|pair| pair[0].metric.name() == pair[1].metric.name())
}

/// Prometheus refuses a result with two elements of the same label set.
fn check_unique(samples: &[Sample]) -> Result<(), EvalError> {
    if samples.len() < 2 {
        return Ok(());
    }
    let mut seen = HashChains::with_capacity(samples.len());
    for sample in samples {
        let hash = sample.metric.fingerprint();
        if seen
            .positions(hash)
            .any(|other| samples[other].metric == sample.metric)
        {
            return Err(EvalError::DuplicateLabelset);
        }
        seen.push(hash);
    }
    Ok(())
}

// === Arithmetic ===

fn scalar_binop(op: BinOp, lhs: f64, rhs: f64) -> f64 {
    let (value, keep) = elem_binop(op, lhs, rhs);
    if op.is_comparison() {
        return if keep { 1.0 } else { 0.0 };
    }
    value
}

/// The value and, for comparisons, whether the element is kept.
pub(crate) fn elem_binop(op: BinOp, lhs: f64, rhs: f64) -> (f64, bool) {
    match op {
        BinOp::Add => (lhs + rhs, true),
        BinOp::Sub => (lhs - rhs, true),
        BinOp::Mul => (lhs * rhs, true),
        BinOp::Div => (lhs / rhs, true),
        BinOp::Pow => (lhs.powf(rhs), true),
        BinOp::Mod => (lhs % rhs, true),
        BinOp::Atan2 => (lhs.atan2(rhs), true),
        BinOp::Eq => (lhs, lhs == rhs),
        BinOp::Ne => (lhs, lhs != rhs),
        BinOp::Gt => (lhs, lhs > rhs),
        BinOp::Lt => (lhs, lhs < rhs),
        BinOp::Ge => (lhs, lhs >= rhs),
        BinOp::Le => (lhs, lhs <= rhs),
        BinOp::And | BinOp::Or | BinOp::Unless => (lhs, true),
    }
}

fn vector_scalar_binop(
    op: BinOp,
    samples: Vec<Sample>,
    scalar: f64,
    swap: bool,
    return_bool: bool,
) -> Result<Vec<Sample>, EvalError> {
    let uniform = has_uniform_names(&samples);
    let drop_name = op.drops_metric_name() || return_bool;
    let mut out = Vec::with_capacity(if op.is_comparison() && !return_bool {
        0
    } else {
        samples.len()
    });
    for mut sample in samples {
        let (lhs, rhs) = if swap {
            (scalar, sample.value)
        } else {
            (sample.value, scalar)
        };
        let (mut value, mut keep) = elem_binop(op, lhs, rhs);
        // A comparison keeps the vector element's value, whichever side it was on.
        if op.is_comparison() && swap {
            value = rhs;
        }
        if return_bool {
            value = if keep { 1.0 } else { 0.0 };
            keep = true;
        }
        if keep {
            sample.value = value;
            if drop_name {
                sample.metric = sample.metric.without_name();
            }
            out.push(sample);
        }
    }
    if drop_name && !uniform {
        check_unique(&out)?;
    }
    Ok(out)
}

fn vector_and(lhs: Vec<Sample>, rhs: &[Sample], matching: &Matching) -> Vec<Sample> {
    if lhs.is_empty() || rhs.is_empty() {
        return Vec::new();
    }
    let right = SignatureIndex::new(rhs, matching);
    lhs.into_iter()
        .filter(|sample| {
            let hash = signature_hash(&sample.metric, matching);
            right.find(rhs, &sample.metric, hash, matching).is_some()
        })
        .collect()
}

fn vector_or(mut lhs: Vec<Sample>, rhs: Vec<Sample>, matching: &Matching) -> Vec<Sample> {
    if lhs.is_empty() {
        return rhs;
    }
    if rhs.is_empty() {
        return lhs;
    }
    let left = SignatureIndex::new(&lhs, matching);
    let missing: Vec<Sample> = rhs
        .into_iter()
        .filter(|sample| {
            let hash = signature_hash(&sample.metric, matching);
            left.find(&lhs, &sample.metric, hash, matching).is_none()
        })
        .collect();
    lhs.extend(missing);
    lhs
}

fn vector_unless(lhs: Vec<Sample>, rhs: &[Sample], matching: &Matching) -> Vec<Sample> {
    if lhs.is_empty() || rhs.is_empty() {
        return lhs;
    }
    let right = SignatureIndex::new(rhs, matching);
    lhs.into_iter()
        .filter(|sample| {
            let hash = signature_hash(&sample.metric, matching);
            right.find(rhs, &sample.metric, hash, matching).is_none()
        })
        .collect()
}

// === Aggregation ===

/// One group's running aggregate.
#[derive(Default)]
struct Group {
    value: f64,
    mean: f64,
    /// 0 until the group's first element is seen.
    count: usize,
    members: Vec<Sample>,
}

fn aggregation(
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
fn ascending_nan_last(a: f64, b: f64) -> std::cmp::Ordering {
    match (a.is_nan(), b.is_nan()) {
        (true, true) => std::cmp::Ordering::Equal,
        (true, false) => std::cmp::Ordering::Greater,
        (false, true) => std::cmp::Ordering::Less,
        (false, false) => a.partial_cmp(&b).unwrap_or(std::cmp::Ordering::Equal),
    }
}

/// Orders descending with NaN after every number.
fn descending_nan_last(a: f64, b: f64) -> std::cmp::Ordering {
    match (a.is_nan(), b.is_nan()) {
        (true, true) => std::cmp::Ordering::Equal,
        (true, false) => std::cmp::Ordering::Greater,
        (false, true) => std::cmp::Ordering::Less,
        (false, false) => b.partial_cmp(&a).unwrap_or(std::cmp::Ordering::Equal),
    }
}

/// Prometheus' `quantile`: NaN sorts first, linear interpolation between the two nearest ranks.
fn quantile(q: f64, values: &mut [f64]) -> f64 {
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

// === Range functions ===

/// Go's `time.Duration.Seconds()` of a whole number of milliseconds.
fn duration_seconds(millis: i64) -> f64 {
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

/// The labels `absent()` gives its single sample: the selector's equality matchers, once each.
fn absent_labels(arg: &Expr) -> Metric {
    let selector = match arg {
        Expr::Vector(selector) | Expr::Matrix(selector, _) => selector,
        _ => return Metric::default(),
    };
    let mut builder = MetricBuilder::default();
    let mut has: Vec<&str> = Vec::new();
    for matcher in &selector.matchers {
        if matcher.name == super::labels::METRIC_NAME {
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

fn label_replace(
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

fn label_join(samples: Vec<Sample>, strings: &[String]) -> Vec<Sample> {
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

// === Go's math.Max and math.Min ===

fn go_max(a: f64, b: f64) -> f64 {
    if a == f64::INFINITY || b == f64::INFINITY {
        return f64::INFINITY;
    }
    if a.is_nan() || b.is_nan() {
        return f64::NAN;
    }
    if a == 0.0 && b == 0.0 {
        return if a.is_sign_negative() { b } else { a };
    }
    if a > b {
        a
    } else {
        b
    }
}

fn go_min(a: f64, b: f64) -> f64 {
    if a == f64::NEG_INFINITY || b == f64::NEG_INFINITY {
        return f64::NEG_INFINITY;
    }
    if a.is_nan() || b.is_nan() {
        return f64::NAN;
    }
    if a == 0.0 && b == 0.0 {
        return if a.is_sign_negative() { a } else { b };
    }
    if a < b {
        a
    } else {
        b
    }
}

// === Dates (UTC) ===

/// (year, month 1-12, day 1-31) of a day count since 1970-01-01 (Howard Hinnant's `civil_from_days`).
pub(crate) fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = (day_of_year - (153 * month_index + 2) / 5 + 1) as u32;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    } as u32;
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

fn is_leap(year: i64) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

fn date_part(func: Func, unix_seconds: i64) -> f64 {
    let days = unix_seconds.div_euclid(86_400);
    let seconds_of_day = unix_seconds.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    let value = match func {
        Func::Year => year,
        Func::Month => i64::from(month),
        Func::DayOfMonth => i64::from(day),
        Func::DaysInMonth => i64::from(days_in_month(year, month)),
        Func::DayOfWeek => (days + 4).rem_euclid(7),
        Func::DayOfYear => {
            let before: u32 = (1..month).map(|earlier| days_in_month(year, earlier)).sum();
            i64::from(before + day)
        }
        Func::Hour => seconds_of_day / 3600,
        Func::Minute => (seconds_of_day % 3600) / 60,
        _ => return f64::NAN,
    };
    value as f64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::{is_stale, stale_nan};
    use crate::promql::compile_query;

    fn history(series: &[(&str, &[(i64, f64)])]) -> History {
        let mut history = History::new(super::super::history::NameFilter::All, None);
        for (text, points) in series {
            let metric = parse_metric(text);
            for (t, v) in *points {
                history.append(&metric, *t, *v);
            }
        }
        history
    }

    fn parse_metric(text: &str) -> Metric {
        let (name, rest) = text.split_once('{').unwrap_or((text, "}"));
        let mut pairs = vec![("__name__".to_owned(), name.to_owned())];
        for pair in rest
            .trim_end_matches('}')
            .split(',')
            .filter(|pair| !pair.is_empty())
        {
            let (label, value) = pair.split_once('=').expect("label=value");
            pairs.push((
                label.trim().to_owned(),
                value.trim().trim_matches('"').to_owned(),
            ));
        }
        Metric::from_pairs(pairs)
    }

    fn run(history: &History, text: &str, t: i64) -> Result<Vec<(String, f64)>, EvalError> {
        let expr = compile_query(text).unwrap_or_else(|error| panic!("{text}: {error}"));
        let mut out: Vec<(String, f64)> = match evaluate(&expr, history, t)? {
            Value::Vector(samples) => samples
                .into_iter()
                .map(|s| (s.metric.to_string(), s.value))
                .collect(),
            Value::Scalar(value) => vec![(String::new(), value)],
            Value::String(text) => vec![(text, 0.0)],
        };
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }

    const MINUTE: i64 = 60_000;

    #[test]
    fn nan_comparisons_behave_like_prometheus() {
        let h = history(&[
            ("lag{r=\"a\"}", &[(0, f64::NAN)]),
            ("lag{r=\"b\"}", &[(0, 400.0)]),
        ]);
        assert_eq!(run(&h, "lag > 300", 0).expect("valid test input").len(), 1);
        assert_eq!(run(&h, "lag < 300", 0).expect("valid test input").len(), 0);
        assert_eq!(
            run(&h, "lag != 300", 0).expect("valid test input").len(),
            2,
            "NaN != x is true"
        );
        // The fused `selector <op> number` path and the general one agree, on either side.
        for (fast, general) in [
            ("lag > 300", "lag > 300 * 1"),
            ("300 < lag", "300 * 1 < lag"),
            ("lag != 300", "lag != 300 * 1"),
            ("500 >= lag", "500 * 1 >= lag"),
        ] {
            let fast = format!("{:?}", run(&h, fast, 0).expect("valid test input"));
            assert_eq!(
                fast,
                format!("{:?}", run(&h, general, 0).expect("valid test input"))
            );
        }
        let with_bool = run(&h, "lag > bool 300", 0).expect("valid test input");
        assert_eq!(
            with_bool,
            vec![("{r=\"a\"}".to_owned(), 0.0), ("{r=\"b\"}".to_owned(), 1.0)]
        );
    }

    #[test]
    fn rate_extrapolates_and_handles_resets() {
        // 0, 10, 20, reset to 5, 15 at one-minute steps: increase 10+10+20(reset adds previous)+... Prometheus:
        // result = last - first + value before each reset = 15 - 0 + 20 = 35 over 4m sampled, extrapolated.
        let points: Vec<(i64, f64)> = vec![
            (0, 0.0),
            (MINUTE, 10.0),
            (2 * MINUTE, 20.0),
            (3 * MINUTE, 5.0),
            (4 * MINUTE, 15.0),
        ];
        let h = history(&[("c_total", &points)]);
        let increase = run(&h, "increase(c_total[5m])", 5 * MINUTE).expect("valid test input");
        // durationToStart 60s ≥ 1.1*60? no: 60 < 66, but counter zero point: first value 0 → durationToZero 0.
        // extrapolated interval = 240 + 0 + 60 = 300 → factor 1.25 → 43.75.
        assert_eq!(increase, vec![("{}".to_owned(), 43.75)]);
        let rate = run(&h, "rate(c_total[5m])", 5 * MINUTE).expect("valid test input");
        assert_eq!(rate[0].1, 35.0 * (1.25 / 300.0));
        assert_eq!(
            run(&h, "resets(c_total[5m])", 5 * MINUTE).expect("valid test input")[0].1,
            1.0
        );
        assert_eq!(
            run(&h, "irate(c_total[5m])", 4 * MINUTE).expect("valid test input")[0].1,
            10.0 / 60.0
        );
    }

    #[test]
    fn stale_series_disappear_from_instant_selectors() {
        let h = history(&[("x", &[(0, 1.0), (MINUTE, stale_nan())])]);
        assert_eq!(run(&h, "x", 30_000).expect("valid test input").len(), 1);
        assert!(run(&h, "x", MINUTE).expect("valid test input").is_empty());
        assert_eq!(
            run(&h, "absent(x)", MINUTE).expect("valid test input"),
            vec![("{}".to_owned(), 1.0)]
        );
    }

    #[test]
    fn vector_matching_and_grouping() {
        let h = history(&[
            ("active{t=\"a\",db=\"pg\"}", &[(0, 9.0)]),
            ("active{t=\"b\",db=\"pg\"}", &[(0, 3.0)]),
            ("max{t=\"a\"}", &[(0, 10.0)]),
            ("max{t=\"b\"}", &[(0, 10.0)]),
            ("max2{t=\"a\"}", &[(0, 1.0)]),
        ]);
        let ratio = run(&h, "active / on(t) max > 0.5", 0).expect("valid test input");
        assert_eq!(ratio, vec![("{t=\"a\"}".to_owned(), 0.9)]);
        let joined = run(&h, "active / on(t) group_left max", 0).expect("valid test input");
        assert_eq!(joined.len(), 2);
        assert_eq!(joined[0].0, "{db=\"pg\", t=\"a\"}");
        assert_eq!(
            run(&h, "sum by (db) (active)", 0).expect("valid test input"),
            vec![("{db=\"pg\"}".to_owned(), 12.0)]
        );
        assert_eq!(
            run(&h, "topk(1, active)", 0).expect("valid test input")[0].1,
            9.0
        );
        // Both `max` series have the same (empty) `db`: the "one" side is not unique, as Prometheus says.
        assert!(matches!(
            run(&h, "active / on(db) max", 0),
            Err(EvalError::ManyToMany { .. })
        ));
        assert!(matches!(run(&h, "active / on(t) max{t=\"z\"}", 0), Ok(v) if v.is_empty()));
        assert_eq!(
            run(&h, "active + on(db) group_left sum by (db) (active)", 0)
                .expect("valid test input")
                .len(),
            2
        );
        assert!(matches!(
            run(&h, "sum by (db) (active) + on(db) active", 0),
            Err(EvalError::ManyToMany { .. })
        ));
        assert!(matches!(
            run(&h, "{__name__=~\"max|max2\"} * 1", 0),
            Err(EvalError::DuplicateLabelset)
        ));
        assert_eq!(
            run(&h, "active and on(t) max", 0)
                .expect("valid test input")
                .len(),
            2
        );
        assert_eq!(
            run(&h, "active unless on(t) max{t=\"a\"}", 0)
                .expect("valid test input")
                .len(),
            1
        );
    }

    /// Whether two elements matching the same one is an error depends on the values: only the elements a
    /// comparison keeps count. A pairing kept from the previous evaluation must still tell.
    #[test]
    fn matching_errors_that_depend_on_values_follow_each_evaluation() {
        let h = history(&[
            (
                "m{target=\"x\",slot=\"a\",v=\"1\"}",
                &[(0, 5.0), (1000, 5.0), (2000, 5.0)],
            ),
            (
                "m{target=\"x\",slot=\"a\",v=\"2\"}",
                &[(0, 1.0), (1000, 4.0), (2000, 1.0)],
            ),
            (
                "n{target=\"x\",v=\"9\"}",
                &[(0, 3.0), (1000, 3.0), (2000, 3.0)],
            ),
        ]);
        for (text, error) in [
            ("m > on(target) n", EvalError::ImplicitManyToOne),
            (
                "m > on(target) group_left(v) n",
                EvalError::GroupingNotUnique,
            ),
        ] {
            assert_eq!(run(&h, text, 0).map(|out| out.len()), Ok(1), "{text}");
            assert_eq!(run(&h, text, 1000), Err(error), "{text}");
            assert_eq!(run(&h, text, 2000).map(|out| out.len()), Ok(1), "{text}");
        }
    }

    /// What is kept from one evaluation to the next (pairings, groupings, results written over their
    /// predecessors) must never change an answer: over cycles where series appear, go stale, come back, reset
    /// and get relocated by the history's layout, a history evaluated cycle after cycle answers exactly what a
    /// history built from scratch with the same samples answers.
    #[test]
    fn kept_pairings_groupings_and_results_answer_like_a_fresh_history() {
        const STEP: i64 = 15_000;
        let expressions = [
            "m / on(target) group_left n",
            "m > on(target) n",
            "m >= on(target) group_left n",
            "n < on(target) group_right m",
            "sum by (target) (m)",
            "avg without (slot) (m)",
            "topk(1, m)",
            "bottomk by (slot) (2, m)",
            "count(m > 3)",
            "rate(c_total[1m])",
            "m == bool 4",
            "sum by (slot) (m) / ignoring(slot) group_left sum(n)",
            "m and on(target) n > 2",
            "m unless on(target) n > 5",
            "max_over_time(m[1m]) > 2",
            "-m",
            "abs(m - 3) + on(target, slot) m",
        ];
        let compiled: Vec<Expr> = expressions
            .iter()
            .map(|text| compile_query(text).unwrap_or_else(|error| panic!("{text}: {error}")))
            .collect();
        // The samples of cycle `i`: target y goes away at cycle 9 (a staleness marker) and comes back at 12,
        // z gains a second slot at 5, x's counter resets at 7.
        let samples = |i: i64| {
            let mut out = Vec::new();
            for (t_index, target) in ["x", "y", "z"].into_iter().enumerate() {
                let gone = target == "y" && (9..12).contains(&i);
                let slots: &[&str] = if target == "z" && i < 5 {
                    &["a"]
                } else {
                    &["a", "b"]
                };
                let t_index = t_index as i64;
                let n_value = if gone && i > 9 {
                    None
                } else if gone {
                    Some(stale_nan())
                } else {
                    Some(((i * 5 + t_index) % 7) as f64)
                };
                if let Some(value) = n_value {
                    out.push((format!("n{{target=\"{target}\"}}"), value));
                }
                for (s_index, slot) in slots.iter().enumerate() {
                    let s_index = s_index as i64;
                    let m = ((i * 7 + t_index * 3 + s_index * 5) % 9) as f64;
                    let count = if target == "x" && i >= 7 { i - 7 } else { i } * (3 + t_index);
                    for (name, value) in [("m", m), ("c_total", count as f64)] {
                        let value = match n_value {
                            Some(marker) if is_stale(marker) => marker,
                            Some(_) => value,
                            None => continue,
                        };
                        out.push((
                            format!("{name}{{target=\"{target}\",slot=\"{slot}\"}}"),
                            value,
                        ));
                    }
                }
            }
            out
        };
        let filter = super::super::history::NameFilter::All;
        let mut kept = History::new(filter.clone(), Some(2 * MINUTE));
        let mut kept_groups: Option<Vec<Sample>> = None;
        let (mut groups_reused, mut groups_rebuilt) = (0, 0);
        for cycle in 0..16 {
            let t = cycle * STEP;
            for (text, value) in samples(cycle) {
                kept.append(&parse_metric(&text), t, value);
            }
            let mut fresh = History::new(filter.clone(), Some(2 * MINUTE));
            for earlier in 0..=cycle {
                for (text, value) in samples(earlier) {
                    fresh.append(&parse_metric(&text), earlier * STEP, value);
                }
            }
            for (text, expr) in expressions.iter().zip(&compiled) {
                let answer = |history: &History| {
                    evaluate(expr, history, t).map(|value| match value {
                        Value::Vector(samples) => {
                            let mut out: Vec<(String, u64)> = samples
                                .iter()
                                .map(|sample| (sample.metric.to_string(), sample.value.to_bits()))
                                .collect();
                            out.sort();
                            out
                        }
                        other => panic!("{text}: {other:?}"),
                    })
                };
                assert_eq!(answer(&kept), answer(&fresh), "{text} at cycle {cycle}");
            }
            // Whether `sum by (target) (m)` kept its grouping: its label sets are then the very same.
            let Ok(Value::Vector(groups)) = evaluate(&compiled[4], &kept, t) else {
                panic!("sum by (target) (m) at cycle {cycle}");
            };
            if let Some(previous) = &kept_groups {
                let same = previous.len() == groups.len()
                    && previous
                        .iter()
                        .zip(&groups)
                        .all(|(a, b)| a.metric.is_same_allocation(&b.metric));
                if same {
                    groups_reused += 1;
                } else {
                    groups_rebuilt += 1;
                }
            }
            kept_groups = Some(groups);
            kept.trim(t);
        }
        // Both ways were taken: kept while the series stayed, made again when they changed.
        assert!(
            groups_reused >= 8,
            "the grouping was kept {groups_reused} times"
        );
        assert!(
            groups_rebuilt >= 2,
            "the grouping was made again {groups_rebuilt} times"
        );
    }

    #[test]
    fn functions_follow_prometheus() {
        let h = history(&[("x{a=\"host:9\"}", &[(0, -2.5)])]);
        assert_eq!(run(&h, "abs(x)", 0).expect("valid test input")[0].1, 2.5);
        assert_eq!(
            run(&h, "clamp_min(x, 0)", 0).expect("valid test input")[0].1,
            0.0
        );
        assert_eq!(run(&h, "round(x)", 0).expect("valid test input")[0].1, -2.0);
        assert_eq!(
            run(&h, "time()", 90_000).expect("valid test input")[0].1,
            90.0
        );
        assert_eq!(
            run(&h, "timestamp(x)", 30_000).expect("valid test input")[0].1,
            0.0
        );
        let replaced = run(
            &h,
            "label_replace(x, \"host\", \"$1\", \"a\", \"(.*):.*\")",
            0,
        )
        .expect("valid test input");
        assert_eq!(
            replaced[0].0,
            "{__name__=\"x\", a=\"host:9\", host=\"host\"}"
        );
        let joined =
            run(&h, "label_join(x, \"b\", \"-\", \"a\", \"a\")", 0).expect("valid test input");
        assert_eq!(
            joined[0].0,
            "{__name__=\"x\", a=\"host:9\", b=\"host:9-host:9\"}"
        );
        assert_eq!(
            run(&h, "year(vector(86400 * 365))", 0).expect("valid test input")[0].1,
            1971.0
        );
        assert_eq!(
            run(&h, "day_of_week()", 0).expect("valid test input")[0].1,
            4.0
        );
        assert_eq!(
            run(&h, "scalar(x) * 2", 0).expect("valid test input")[0].1,
            -5.0
        );
    }

    #[test]
    fn civil_dates_round_trip() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(19_723), (2024, 1, 1));
        assert_eq!(civil_from_days(19_782), (2024, 2, 29));
        assert_eq!(date_part(Func::DayOfYear, 19_782 * 86_400), 60.0);
        assert_eq!(date_part(Func::DaysInMonth, 19_782 * 86_400), 29.0);
    }
}
