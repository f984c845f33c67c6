//! Evaluates a compiled expression over the history at one instant. Pure: the time is an argument.
//!
//! Every operation follows Prometheus 2.42's engine (`promql/engine.go`, `promql/functions.go`) down to the
//! order of floating-point operations, so results match `promtool test rules` bit for bit: NaN comparisons are
//! false (and `!=` true), `rate()` and `increase()` handle counter resets and extrapolate to the range
//! boundaries, `avg` and the `*_over_time` functions use the same incremental and compensated sums.
//!
//! Split as Prometheus splits its engine: this module is the tree walk (what `engine.go` does: evaluate the
//! operands, read the history, share results between rules); [`operators`], [`aggregation`] and
//! [`functions`] compute over values already evaluated and never call back into the walk; [`cache`] holds
//! what the walk keeps between rules and between evaluations, owned by the caller.

pub(crate) mod aggregation;
pub mod cache;
pub(crate) mod dates;
pub(crate) mod functions;
pub(crate) mod label_functions;
pub(crate) mod matching;
pub(crate) mod operators;
pub(crate) mod plans;

use std::sync::Arc;

use self::aggregation::{aggregation, count_values};
use self::cache::{EvalCache, SharedKey};
use self::dates::date_part;
use self::functions::{
    apply_instant, check_range_arguments, duration_seconds, histogram_quantile, range_value,
};
use self::label_functions::absent_labels;
use self::matching::{check_unique, group, has_uniform_names, pair};
use self::operators::{scalar_binop, vector_and, vector_or, vector_scalar_binop, vector_unless};
use super::history::{points_between, value_at, History, Point};
use super::labels::{FxHashMap, Metric};
use super::promql::{
    AggOp, Aggregate, At, BinOp, Binary, Call, Expr, Func, Selector, Shared, Subquery, ValueType,
    DEFAULT_SUBQUERY_STEP_MS,
};
use super::value::{elem_binop, Overwrite};
pub use super::value::{EvalError, Sample, Value};

/// Evaluates `expr` at `t` (Unix milliseconds). `cache` holds what earlier evaluations over this history
/// computed that this one may reuse (see [`EvalCache`]); a new cache is always correct, only slower.
pub fn evaluate(
    expr: &Expr,
    history: &History,
    cache: &mut EvalCache,
    t: i64,
) -> Result<Value, EvalError> {
    cache.sync(history);
    let mut evaluator = Evaluator {
        history,
        cache,
        t,
        query_t: t,
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
    cache: &'h mut EvalCache,
    /// The time this evaluation is at: the query's, or a step of a subquery.
    t: i64,
    /// The query's own time, which `@ start()` and `@ end()` name, inside subqueries too.
    query_t: i64,
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
            Expr::Subquery(subquery) => Err(EvalError::Type(format!(
                "subquery {} is only allowed as a function argument",
                subquery.text
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

    /// The result of `key`'s expression, computed by `compute` only when no rule at this instant has asked for
    /// it since the history last changed. `reads` are the metric names the expression reads (`None`: any).
    /// `compute` is handed the previous cycle's result of the same expression, if any, to write over.
    fn shared<E>(
        &mut self,
        key: SharedKey,
        reads: Option<&[Arc<str>]>,
        compute: impl FnOnce(&mut Self, Vec<Sample>) -> Result<Vec<Sample>, E>,
    ) -> Result<Arc<Vec<Sample>>, E> {
        let previous = match self.cache.lookup(&key) {
            Ok(found) => return Ok(found),
            Err(previous) => previous,
        };
        let samples = Arc::new(compute(self, previous)?);
        self.cache.insert(key, reads, Arc::clone(&samples));
        Ok(samples)
    }

    /// The instant vector of `selector`, read from the history once per instant for every rule.
    fn shared_select(&mut self, selector: &Selector) -> Arc<Vec<Sample>> {
        let key = SharedKey {
            expr: format!("{}\u{0}{}", selector.text, selector.offset_ms),
            t: self.t,
        };
        let reads = selector.name.as_ref().map(std::slice::from_ref);
        let shared = self.shared(key, reads, |evaluator, previous| {
            Ok::<_, std::convert::Infallible>(evaluator.select(selector, previous))
        });
        match shared {
            Ok(samples) => samples,
            Err(never) => match never {},
        }
    }

    /// The time a selector or a subquery reads at: the evaluation's, or its `@` time, before its offset.
    fn base_time(&self, at: Option<At>) -> i64 {
        match at {
            None => self.t,
            Some(At::Time(millis)) => millis,
            Some(At::QueryTime) => self.query_t,
        }
    }

    /// The instant vector of `selector`, written over `previous` (see [`Overwrite`]).
    fn select(&self, selector: &Selector, previous: Vec<Sample>) -> Vec<Sample> {
        let at = self.base_time(selector.at) - selector.offset_ms;
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
        let key = |shared: &Shared, t| SharedKey {
            expr: shared.key.clone(),
            t,
        };
        match expr {
            Expr::Vector(selector) => Some(Ok(self.shared_select(selector))),
            Expr::Binary(binary) if expr.value_type() == ValueType::Vector => {
                let t = self.t;
                Some(self.shared(
                    key(&binary.shared, t),
                    binary.shared.reads.as_deref(),
                    |evaluator, previous| evaluator.binary(binary, previous).and_then(into_vector),
                ))
            }
            Expr::Aggregate(aggregate) => {
                let t = self.t;
                Some(self.shared(
                    key(&aggregate.shared, t),
                    aggregate.shared.reads.as_deref(),
                    |evaluator, previous| {
                        evaluator
                            .aggregate(aggregate, previous)
                            .and_then(into_vector)
                    },
                ))
            }
            Expr::Call(call) => {
                let index = call
                    .args
                    .iter()
                    .position(|arg| matches!(arg, Expr::Matrix(..) | Expr::Subquery(..)))?;
                if let Expr::Subquery(subquery) = &call.args[index] {
                    return Some(self.subquery_call(call, index, subquery).map(Arc::new));
                }
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
                            self.cache
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

    /// An aggregation, written over `previous` (see [`Overwrite`]).
    fn aggregate(
        &mut self,
        aggregate: &Aggregate,
        previous: Vec<Sample>,
    ) -> Result<Value, EvalError> {
        if aggregate.op == AggOp::CountValues {
            let label = match aggregate.param.as_ref().map(|param| self.eval(param)) {
                Some(Ok(Value::String(label))) => label,
                Some(Err(error)) => return Err(error),
                _ => {
                    return Err(EvalError::Type(
                        "count_values takes a label name".to_owned(),
                    ))
                }
            };
            let samples = self.vector(&aggregate.expr)?;
            return count_values(aggregate, &label, &samples).map(Value::Vector);
        }
        let param = match &aggregate.param {
            Some(param) => Some(self.scalar(param)?),
            None => None,
        };
        let samples = match self.shared_vector(&aggregate.expr) {
            Some(shared) => shared?,
            None => Arc::new(self.vector(&aggregate.expr)?),
        };
        let grouping = self
            .cache
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

    /// A function without a range vector argument; [`Evaluator::eval`] hands the others to
    /// [`Evaluator::shared_vector`] before it gets here. The functions that read the evaluation itself (its
    /// time, its argument's expression) are answered here, the others by [`apply_instant`].
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
            Func::HistogramQuantile => {
                let q = self.scalar(&call.args[0])?;
                let samples = self.vector(&call.args[1])?;
                let out = histogram_quantile(q, &samples);
                check_unique(&out)?;
                return Ok(Value::Vector(out));
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
        let samples = self.vector(&call.args[0])?;
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
        apply_instant(call, samples, &scalars, &strings).map(Value::Vector)
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
        check_range_arguments(call.func, &scalars)?;
        let key = SharedKey { expr, t: self.t };
        let reads = selector.name.as_ref().map(std::slice::from_ref);
        self.shared(key, reads, |evaluator, previous| {
            evaluator.range_call(call, matrix_index, selector, *range_ms, &scalars, previous)
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
        let maxt = self.base_time(selector.at) - selector.offset_ms;
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
                match range_value(func, points, mint, maxt, range_seconds, t, scalars) {
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

impl Evaluator<'_> {
    /// A function of a subquery: the subquery evaluated into a range of each series' points, then the
    /// function over each series as over a range selector's. Not shared between rules: the inner
    /// expression's results at each step are.
    fn subquery_call(
        &mut self,
        call: &Call,
        matrix_index: usize,
        subquery: &Subquery,
    ) -> Result<Vec<Sample>, EvalError> {
        let func = call.func;
        let mut scalars = Vec::new();
        for (index, arg) in call.args.iter().enumerate() {
            if index != matrix_index {
                scalars.push(self.scalar(arg)?);
            }
        }
        check_range_arguments(func, &scalars)?;
        let maxt = self.base_time(subquery.at) - subquery.offset_ms;
        let mint = maxt - subquery.range_ms;
        let series = self.subquery_range(subquery, mint, maxt)?;
        let range_seconds = duration_seconds(subquery.range_ms);
        let t = self.t;
        if func == Func::AbsentOverTime {
            if series.is_empty() {
                return Ok(vec![Sample {
                    metric: Metric::default(),
                    value: 1.0,
                    t,
                }]);
            }
            return Ok(Vec::new());
        }
        let mut out = Vec::with_capacity(series.len());
        for (metric, points) in &series {
            let Some(value) = range_value(func, points, mint, maxt, range_seconds, t, &scalars)
            else {
                continue;
            };
            let metric = if func == Func::LastOverTime {
                metric.clone()
            } else {
                metric.without_name()
            };
            out.push(Sample { metric, value, t });
        }
        check_unique(&out)?;
        Ok(out)
    }

    /// The inner expression of `subquery` at every multiple of its step in `[mint, maxt]`, as Prometheus
    /// aligns them (to the step, not to the evaluation time): each series with its points, in the order
    /// the series first appear.
    fn subquery_range(
        &mut self,
        subquery: &Subquery,
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<(Metric, Vec<Point>)>, EvalError> {
        /// A subquery evaluates its inner expression this many times at most, so that a hostile or
        /// mistaken `[30d:1s]` fails instead of stalling the evaluation.
        const MAX_STEPS: i64 = 1_000_000;
        let step = subquery.step_ms.unwrap_or(DEFAULT_SUBQUERY_STEP_MS);
        let mut start = mint.div_euclid(step) * step;
        if start < mint {
            start += step;
        }
        if (maxt - start) / step >= MAX_STEPS {
            return Err(EvalError::Type(format!(
                "subquery {} has more than {MAX_STEPS} steps",
                subquery.text
            )));
        }
        let mut series: Vec<(Metric, Vec<Point>)> = Vec::new();
        let mut index: FxHashMap<Metric, usize> = FxHashMap::default();
        let mut ts = start;
        while ts <= maxt {
            let mut inner = Evaluator {
                history: self.history,
                cache: &mut *self.cache,
                t: ts,
                query_t: self.query_t,
                points: std::mem::take(&mut self.points),
            };
            let value = inner.eval(&subquery.expr);
            self.points = inner.points;
            let samples = match value? {
                Value::Vector(samples) => samples,
                Value::Scalar(value) => vec![Sample {
                    metric: Metric::default(),
                    value,
                    t: ts,
                }],
                Value::String(_) => return Err(EvalError::Type("subquery of a string".to_owned())),
            };
            for sample in samples {
                let position = match index.get(&sample.metric) {
                    Some(&position) => position,
                    None => {
                        index.insert(sample.metric.clone(), series.len());
                        series.push((sample.metric, Vec::new()));
                        series.len() - 1
                    }
                };
                series[position].1.push(Point {
                    t: ts,
                    v: sample.value,
                });
            }
            ts += step;
        }
        Ok(series)
    }
}

fn into_vector(value: Value) -> Result<Vec<Sample>, EvalError> {
    match value {
        Value::Vector(samples) => Ok(samples),
        _ => Err(EvalError::Type("expected an instant vector".to_owned())),
    }
}

#[cfg(test)]
mod tests;
