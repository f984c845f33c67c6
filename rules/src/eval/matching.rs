//! Which elements of two vectors meet, and which group an element falls in: the label side of vector matching
//! and aggregation, kept apart from the values.
//!
//! A rule is evaluated every interval over the same series: `a / on(target) b` joins the same pairs and
//! `sum by (db) (x)` forms the same groups at every evaluation, while only the values change. So the joins and
//! groups are worked out here, from labels alone, into a [`Pairing`] or a [`Grouping`] that the evaluator keeps
//! (see [`super::cache`]) and applies to each evaluation's values. Building one hashes every label set and
//! allocates every result label set; applying one is a pass over the values.

use std::hash::Hasher as _;

use crate::labels::{FxHashMap, FxHashSet, FxHasher, Metric, MetricBuilder};
use crate::promql::{Aggregate, BinOp, Card, Matching};
use crate::value::{elem_binop, EvalError, Overwrite, Sample};

/// How the elements of two vectors meet in an arithmetic or comparison operator: every pair the labels join,
/// in the order Prometheus produces them, with the result's label set.
#[derive(Debug, Default)]
pub(crate) struct Pairing {
    pairs: Vec<Pair>,
    /// Whether the labels leave room for an error that depends on the values: one element of the "one" side
    /// matched twice, or two matches giving the same label set. Only pairs a comparison keeps count, so such a
    /// pairing is checked at every evaluation; any other never fails.
    checked: bool,
}

#[derive(Debug)]
struct Pair {
    /// Positions in the "many" and the "one" vector (left and right for one-to-one matching).
    many: usize,
    one: usize,
    metric: Metric,
}

/// Joins `lhs` and `rhs` by their labels. Fails when the "one" side has two elements with the same matching
/// labels, whatever their values.
pub(crate) fn pair(
    lhs: &[Sample],
    rhs: &[Sample],
    op: BinOp,
    matching: &Matching,
    return_bool: bool,
) -> Result<Pairing, EvalError> {
    if lhs.is_empty() || rhs.is_empty() {
        return Ok(Pairing::default());
    }
    let one_to_many = matching.card == Card::OneToMany;
    let (many, one) = if one_to_many { (rhs, lhs) } else { (lhs, rhs) };
    let mut index = SignatureIndex {
        chains: HashChains::with_capacity(one.len()),
    };
    for sample in one {
        let hash = signature_hash(&sample.metric, matching);
        if let Some(previous) = index.find(one, &sample.metric, hash, matching) {
            let group = matched_labels(&sample.metric, matching);
            return Err(EvalError::ManyToMany {
                group,
                side: if one_to_many { "left" } else { "right" },
                first: sample.metric.to_string(),
                second: one[previous].metric.to_string(),
            });
        }
        index.chains.push(hash);
    }
    let mut pairs = Vec::with_capacity(many.len().min(one.len()));
    let mut times_matched = vec![0u32; one.len()];
    for (position, sample) in many.iter().enumerate() {
        let hash = signature_hash(&sample.metric, matching);
        let Some(other) = index.find(one, &sample.metric, hash, matching) else {
            continue;
        };
        times_matched[other] += 1;
        let mut metric = result_metric(&sample.metric, &one[other].metric, op, matching);
        if return_bool {
            metric = metric.without_name();
        }
        pairs.push(Pair {
            many: position,
            one: other,
            metric,
        });
    }
    let checked = match matching.card {
        Card::OneToOne => times_matched.iter().any(|&times| times > 1),
        _ => {
            let mut seen = FxHashSet::default();
            !pairs
                .iter()
                .all(|pair| seen.insert((pair.one, &pair.metric)))
        }
    };
    Ok(Pairing { pairs, checked })
}

impl Pairing {
    /// The operator applied to the values of the vectors the pairing was made for, written over `previous`.
    pub(crate) fn apply(
        &self,
        op: BinOp,
        lhs: &[Sample],
        rhs: &[Sample],
        matching: &Matching,
        return_bool: bool,
        previous: Vec<Sample>,
    ) -> Result<Vec<Sample>, EvalError> {
        let one_to_many = matching.card == Card::OneToMany;
        let (many, one) = if one_to_many { (rhs, lhs) } else { (lhs, rhs) };
        let expected = if op.is_comparison() && !return_bool {
            0
        } else {
            self.pairs.len()
        };
        let mut out = Overwrite::over(previous, expected);
        // Only for a checked pairing: one-to-one, whether each "one" element was matched already;
        // many-to-one, the result label sets each produced.
        let mut matched_once = vec![false; if self.checked { one.len() } else { 0 }];
        let mut matched: FxHashMap<usize, FxHashSet<&Metric>> = FxHashMap::default();
        for pair in &self.pairs {
            let (sample, other) = (&many[pair.many], &one[pair.one]);
            let (left_value, right_value) = if one_to_many {
                (other.value, sample.value)
            } else {
                (sample.value, other.value)
            };
            let (mut value, keep) = elem_binop(op, left_value, right_value);
            if return_bool {
                value = if keep { 1.0 } else { 0.0 };
            } else if !keep {
                continue;
            }
            if self.checked {
                if matching.card == Card::OneToOne {
                    if std::mem::replace(&mut matched_once[pair.one], true) {
                        return Err(EvalError::ImplicitManyToOne);
                    }
                } else if !matched.entry(pair.one).or_default().insert(&pair.metric) {
                    return Err(EvalError::GroupingNotUnique);
                }
            }
            out.push(&pair.metric, value, sample.t);
        }
        Ok(out.finish())
    }
}

/// Which group each element of a vector falls in, and each group's label set, in order of first appearance.
#[derive(Debug, Default)]
pub(crate) struct Grouping {
    pub(crate) group_of: Vec<usize>,
    pub(crate) metrics: Vec<Metric>,
}

/// Groups `samples` by the labels of `aggregate`'s `by` or `without`.
pub(crate) fn group(samples: &[Sample], aggregate: &Aggregate) -> Grouping {
    let mut grouping = Grouping {
        group_of: Vec::with_capacity(samples.len()),
        metrics: Vec::new(),
    };
    // A group's label set is reduced to the subset already, so comparing a sample's subset with it is exact.
    let subset = LabelSubset::of_aggregate(aggregate);
    let mut index_of = HashChains::with_capacity(0);
    for sample in samples {
        let hash = subset.hash(&sample.metric);
        let found = index_of
            .positions(hash)
            .find(|&index| subset.same(&sample.metric, &grouping.metrics[index]));
        let index = match found {
            Some(index) => index,
            None => {
                index_of.push(hash);
                grouping
                    .metrics
                    .push(group_metric(&sample.metric, aggregate));
                grouping.metrics.len() - 1
            }
        };
        grouping.group_of.push(index);
    }
    grouping
}

fn group_metric(metric: &Metric, aggregate: &Aggregate) -> Metric {
    if aggregate.without {
        metric.builder().del(&aggregate.grouping).del_name().build()
    } else if aggregate.grouping.is_empty() {
        Metric::default()
    } else {
        metric.builder().keep(&aggregate.grouping).build()
    }
}

/// Positions 0, 1, 2... by hash, without a vector per hash (an allocation per series was a tenth of a
/// cycle): the latest position of each hash, then a chain through the earlier ones.
pub(crate) struct HashChains {
    latest: FxHashMap<u64, usize>,
    earlier: Vec<usize>,
}

impl HashChains {
    const END: usize = usize::MAX;

    pub(crate) fn with_capacity(capacity: usize) -> HashChains {
        HashChains {
            latest: FxHashMap::with_capacity_and_hasher(capacity, Default::default()),
            earlier: Vec::with_capacity(capacity),
        }
    }

    /// Records the next position under `hash`.
    pub(crate) fn push(&mut self, hash: u64) {
        let position = self.earlier.len();
        let previous = self.latest.insert(hash, position);
        self.earlier.push(previous.unwrap_or(Self::END));
    }

    /// The positions recorded under `hash`, latest first.
    pub(crate) fn positions(&self, hash: u64) -> impl Iterator<Item = usize> + '_ {
        let mut at = self.latest.get(&hash).copied().unwrap_or(Self::END);
        std::iter::from_fn(move || {
            let position = (at != Self::END).then_some(at)?;
            at = self.earlier[position];
            Some(position)
        })
    }
}

/// The labels a matching signature or a group is made of: only the listed ones (`on`, `by`), or every label
/// but the listed ones (`ignoring`, `without`). The metric name is never among them.
#[derive(Clone, Copy)]
struct LabelSubset<'a> {
    /// Sorted.
    listed: &'a [String],
    only_listed: bool,
}

impl LabelSubset<'_> {
    fn of_matching(matching: &Matching) -> LabelSubset<'_> {
        LabelSubset {
            listed: &matching.labels,
            only_listed: matching.on,
        }
    }

    fn of_aggregate(aggregate: &Aggregate) -> LabelSubset<'_> {
        LabelSubset {
            listed: &aggregate.grouping,
            only_listed: !aggregate.without,
        }
    }

    fn is_listed(&self, name: &str) -> bool {
        self.listed
            .binary_search_by(|listed| listed.as_str().cmp(name))
            .is_ok()
    }

    /// A hash of the subset's labels; equal hashes are confirmed with [`LabelSubset::same`], so a collision
    /// never joins two series.
    fn hash(&self, metric: &Metric) -> u64 {
        let mut hasher = FxHasher::default();
        let mut write = |name: &str, value: &str| {
            hasher.write(name.as_bytes());
            hasher.write_u8(0xff);
            hasher.write(value.as_bytes());
            hasher.write_u8(0xff);
        };
        if self.only_listed {
            for name in self.listed {
                if let Some(value) = metric.get(name) {
                    write(name, value);
                }
            }
        } else {
            for (name, value) in metric.labels() {
                if !self.is_listed(name) {
                    write(name, value);
                }
            }
        }
        hasher.finish()
    }

    /// Whether `a` and `b` have the same labels in the subset.
    fn same(&self, a: &Metric, b: &Metric) -> bool {
        if self.only_listed {
            return self.listed.iter().all(|name| a.get(name) == b.get(name));
        }
        let mut left = a.labels().iter().filter(|(name, _)| !self.is_listed(name));
        let mut right = b.labels().iter().filter(|(name, _)| !self.is_listed(name));
        loop {
            match (left.next(), right.next()) {
                (None, None) => return true,
                (Some(x), Some(y)) if x == y => {}
                _ => return false,
            }
        }
    }
}

/// The hash of the matching signature: the `on` labels, or every label but the `ignoring` ones and the name.
pub(crate) fn signature_hash(metric: &Metric, matching: &Matching) -> u64 {
    LabelSubset::of_matching(matching).hash(metric)
}

/// Samples by matching signature.
pub(crate) struct SignatureIndex {
    chains: HashChains,
}

impl SignatureIndex {
    pub(crate) fn new(samples: &[Sample], matching: &Matching) -> SignatureIndex {
        let mut chains = HashChains::with_capacity(samples.len());
        for sample in samples {
            chains.push(signature_hash(&sample.metric, matching));
        }
        SignatureIndex { chains }
    }

    /// An indexed sample with the same signature as `metric`.
    pub(crate) fn find(
        &self,
        samples: &[Sample],
        metric: &Metric,
        hash: u64,
        matching: &Matching,
    ) -> Option<usize> {
        self.chains
            .positions(hash)
            .find(|&index| LabelSubset::of_matching(matching).same(&samples[index].metric, metric))
    }
}

fn matched_labels(metric: &Metric, matching: &Matching) -> String {
    let mut builder = metric.builder();
    if matching.on {
        builder.keep(&matching.labels);
    } else {
        builder.del(&matching.labels).del_name();
    }
    builder.build().to_string()
}

fn result_metric(many: &Metric, one: &Metric, op: BinOp, matching: &Matching) -> Metric {
    if matching.card == Card::OneToOne
        && !matching.on
        && matching.labels.is_empty()
        && matching.include.is_empty()
    {
        return if op.drops_metric_name() {
            many.without_name()
        } else {
            many.clone()
        };
    }
    let mut builder: MetricBuilder = many.builder();
    if op.drops_metric_name() {
        builder.del_name();
    }
    if matching.card == Card::OneToOne {
        if matching.on {
            builder.keep(&matching.labels);
        } else {
            builder.del(&matching.labels);
        }
    }
    for name in &matching.include {
        match one.get(name) {
            Some(value) => builder.set(name, value),
            None => builder.del(&[name]),
        };
    }
    builder.build()
}

/// True when every sample has the same metric name: dropping it then cannot create duplicates.
pub(crate) fn has_uniform_names(samples: &[Sample]) -> bool {
    samples
        .windows(2)
        .all(|pair| pair[0].metric.name() == pair[1].metric.name())
}

/// Prometheus refuses a result with two elements of the same label set.
pub(crate) fn check_unique(samples: &[Sample]) -> Result<(), EvalError> {
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
