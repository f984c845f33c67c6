//! The values PromQL expressions evaluate to, the errors an evaluation can end in, and the arithmetic of two
//! floats: what the evaluator, the vector matching and the plans kept between evaluations all speak. It
//! imports nothing of theirs, so none of them has to import another to share these.

use super::gofloat::go_pow;
use super::labels::Metric;
use super::promql::BinOp;

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

/// The value and, for comparisons, whether the element is kept.
pub(crate) fn elem_binop(op: BinOp, lhs: f64, rhs: f64) -> (f64, bool) {
    match op {
        BinOp::Add => (lhs + rhs, true),
        BinOp::Sub => (lhs - rhs, true),
        BinOp::Mul => (lhs * rhs, true),
        BinOp::Div => (lhs / rhs, true),
        BinOp::Pow => (go_pow(lhs, rhs), true),
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
