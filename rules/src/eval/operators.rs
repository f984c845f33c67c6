//! Binary operators over evaluated operands (Prometheus' `VectorBinop`, `VectorscalarBinop`, `VectorAnd`,
//! `VectorOr`, `VectorUnless`). Arithmetic and comparisons between two vectors go through a
//! [`Pairing`](super::matching::Pairing), which the walk keeps between evaluations; the set operators are
//! cheap enough to redo.

use super::matching::{check_unique, has_uniform_names, signature_hash, SignatureIndex};
use crate::promql::{BinOp, Matching};
use crate::value::{elem_binop, EvalError, Sample};

/// A scalar operator scalar: comparisons give 1 or 0.
pub fn scalar_binop(op: BinOp, lhs: f64, rhs: f64) -> f64 {
    let (value, keep) = elem_binop(op, lhs, rhs);
    if op.is_comparison() {
        return if keep { 1.0 } else { 0.0 };
    }
    value
}

/// A vector operator a scalar (`swap`: the scalar is on the left).
pub fn vector_scalar_binop(
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

/// `and`: the left elements with a match on the right.
pub fn vector_and(lhs: Vec<Sample>, rhs: &[Sample], matching: &Matching) -> Vec<Sample> {
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

/// `or`: the left elements, then the right ones without a match on the left.
pub fn vector_or(mut lhs: Vec<Sample>, rhs: Vec<Sample>, matching: &Matching) -> Vec<Sample> {
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

/// `unless`: the left elements without a match on the right.
pub fn vector_unless(lhs: Vec<Sample>, rhs: &[Sample], matching: &Matching) -> Vec<Sample> {
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
