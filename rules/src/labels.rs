//! Label sets as the evaluator sees them: the metric name kept apart, the other labels sorted by name.
//!
//! Keeping `__name__` apart makes the most common PromQL label operation, dropping the metric name, a copy of
//! two pointers. Empty label values are never stored: in Prometheus an empty value and a missing label are the
//! same thing.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

pub const METRIC_NAME: &str = "__name__";
pub const ALERT_NAME: &str = "alertname";

/// One label pair.
pub type Label = (Arc<str>, Arc<str>);

/// A series' identity: its metric name, if any, and its other labels sorted by name.
#[derive(Clone, PartialEq, Eq, Hash, Default)]
pub struct Metric {
    name: Option<Arc<str>>,
    labels: Arc<[Label]>,
}

impl Metric {
    /// Builds a metric from pairs in any order; `__name__` becomes the name, empty values are dropped and a
    /// later pair wins over an earlier one with the same name.
    pub fn from_pairs<K: AsRef<str>, V: AsRef<str>>(
        pairs: impl IntoIterator<Item = (K, V)>,
    ) -> Metric {
        let mut builder = MetricBuilder::default();
        for (name, value) in pairs {
            builder.set(name.as_ref(), value.as_ref());
        }
        builder.build()
    }

    /// A metric from parts that are already valid: `labels` sorted by name, unique, without empty values and
    /// without `__name__`.
    pub(crate) fn from_sorted(name: Option<Arc<str>>, labels: Vec<Label>) -> Metric {
        debug_assert!(labels.windows(2).all(|pair| pair[0].0 < pair[1].0));
        Metric {
            name,
            labels: labels.into(),
        }
    }

    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    pub(crate) fn name_arc(&self) -> Option<&Arc<str>> {
        self.name.as_ref()
    }

    /// The labels besides the metric name, sorted by name.
    pub fn labels(&self) -> &[Label] {
        &self.labels
    }

    /// The value of a label, `__name__` included; `None` when absent.
    pub fn get(&self, name: &str) -> Option<&str> {
        if name == METRIC_NAME {
            return self.name();
        }
        // A label set has a handful of labels: a scan that compares lengths first beats a binary search of
        // string comparisons (this is the hot path of grouping and vector matching).
        self.labels
            .iter()
            .find(|(label, _)| label.len() == name.len() && label.as_ref() == name)
            .map(|(_, value)| value.as_ref())
    }

    /// The same metric in a fresh allocation, so that a caller laying series out in reading order gets their
    /// labels in that order too.
    pub(crate) fn relocated(&self) -> Metric {
        Metric {
            name: self.name.clone(),
            labels: self.labels.iter().cloned().collect(),
        }
    }

    /// Whether both are the very same label set in memory, not only equal ones: a pointer comparison.
    pub(crate) fn is_same_allocation(&self, other: &Metric) -> bool {
        let same_name = match (&self.name, &other.name) {
            (None, None) => true,
            (Some(a), Some(b)) => Arc::ptr_eq(a, b),
            _ => false,
        };
        same_name && Arc::ptr_eq(&self.labels, &other.labels)
    }

    /// Whether this is `other` without its metric name, sharing its label storage (what
    /// [`Metric::without_name`] makes): a pointer comparison.
    pub(crate) fn is_unnamed_of(&self, other: &Metric) -> bool {
        self.name.is_none() && Arc::ptr_eq(&self.labels, &other.labels)
    }

    /// The same labels without the metric name; shares the label storage.
    pub fn without_name(&self) -> Metric {
        Metric {
            name: None,
            labels: Arc::clone(&self.labels),
        }
    }

    /// The same labels with another metric name; shares the label storage.
    pub fn with_name(&self, name: Arc<str>) -> Metric {
        Metric {
            name: Some(name),
            labels: Arc::clone(&self.labels),
        }
    }

    pub fn builder(&self) -> MetricBuilder {
        MetricBuilder {
            name: self.name.clone(),
            labels: self.labels.to_vec(),
        }
    }

    /// Every pair, `__name__` included, in Prometheus' order (sorted by label name).
    pub fn pairs(&self) -> impl Iterator<Item = (&str, &str)> {
        let name = self.name.as_deref().map(|name| (METRIC_NAME, name));
        // `__name__` sorts after upper-case and before lower-case names.
        let split = self
            .labels
            .partition_point(|(label, _)| label.as_ref() < METRIC_NAME);
        self.labels[..split]
            .iter()
            .map(|(k, v)| (k.as_ref(), v.as_ref()))
            .chain(name)
            .chain(
                self.labels[split..]
                    .iter()
                    .map(|(k, v)| (k.as_ref(), v.as_ref())),
            )
    }

    /// Every pair as an owned map, `__name__` included.
    pub fn to_map(&self) -> BTreeMap<String, String> {
        self.pairs()
            .map(|(name, value)| (name.to_owned(), value.to_owned()))
            .collect()
    }

    /// Prometheus' `labels.Compare`: pair by pair in label-name order, then by length.
    pub fn cmp_labels(&self, other: &Metric) -> Ordering {
        let mut left = self.pairs();
        let mut right = other.pairs();
        loop {
            match (left.next(), right.next()) {
                (None, None) => return Ordering::Equal,
                (None, Some(_)) => return Ordering::Less,
                (Some(_), None) => return Ordering::Greater,
                (Some(a), Some(b)) => {
                    let order = a.0.cmp(b.0).then_with(|| a.1.cmp(b.1));
                    if order != Ordering::Equal {
                        return order;
                    }
                }
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        self.name.is_none() && self.labels.is_empty()
    }

    /// A hash of the full label set, stable within the process.
    pub fn fingerprint(&self) -> u64 {
        let mut hasher = FxHasher::default();
        self.hash(&mut hasher);
        hasher.finish()
    }
}

/// Prometheus' `labels.String()`: `{__name__="up", job="db"}`.
impl fmt::Display for Metric {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("{")?;
        for (index, (name, value)) in self.pairs().enumerate() {
            if index > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{name}={}", go_quote(value))?;
        }
        f.write_str("}")
    }
}

impl fmt::Debug for Metric {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Edits a label set; `build` restores the invariants.
#[derive(Debug, Clone, Default)]
pub struct MetricBuilder {
    name: Option<Arc<str>>,
    labels: Vec<Label>,
}

impl MetricBuilder {
    /// Sets a label; an empty value deletes it, as in Prometheus.
    pub fn set(&mut self, name: &str, value: &str) -> &mut Self {
        if name == METRIC_NAME {
            self.name = (!value.is_empty()).then(|| Arc::from(value));
            return self;
        }
        self.labels.retain(|(label, _)| label.as_ref() != name);
        if !value.is_empty() {
            self.labels.push((Arc::from(name), Arc::from(value)));
        }
        self
    }

    pub fn set_arc(&mut self, name: &Arc<str>, value: &Arc<str>) -> &mut Self {
        if name.as_ref() == METRIC_NAME {
            self.name = (!value.is_empty()).then(|| Arc::clone(value));
            return self;
        }
        self.labels.retain(|(label, _)| label != name);
        if !value.is_empty() {
            self.labels.push((Arc::clone(name), Arc::clone(value)));
        }
        self
    }

    pub fn del(&mut self, names: &[impl AsRef<str>]) -> &mut Self {
        for name in names {
            let name = name.as_ref();
            if name == METRIC_NAME {
                self.name = None;
            } else {
                self.labels.retain(|(label, _)| label.as_ref() != name);
            }
        }
        self
    }

    pub fn del_name(&mut self) -> &mut Self {
        self.name = None;
        self
    }

    /// Keeps only the listed labels; the metric name only when listed.
    pub fn keep(&mut self, names: &[impl AsRef<str>]) -> &mut Self {
        let listed = |name: &str| names.iter().any(|kept| kept.as_ref() == name);
        if !listed(METRIC_NAME) {
            self.name = None;
        }
        self.labels.retain(|(label, _)| listed(label));
        self
    }

    pub fn build(&mut self) -> Metric {
        let mut labels = std::mem::take(&mut self.labels);
        labels.sort_by(|a, b| a.0.cmp(&b.0));
        labels.dedup_by(|later, earlier| later.0 == earlier.0);
        Metric {
            name: self.name.take(),
            labels: labels.into(),
        }
    }
}

/// `[a-zA-Z_][a-zA-Z0-9_]*`
pub fn is_valid_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// `[a-zA-Z_:][a-zA-Z0-9_:]*`
pub fn is_valid_metric_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// Go's `strconv.Quote` for the characters label values contain in practice.
pub fn go_quote(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => out.push_str(&format!("\\x{:02x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

// The Fx hash (rustc's): fast, not DoS-resistant, which is fine for label sets the daemon itself produced.
pub use rustc_hash::{FxBuildHasher, FxHashMap, FxHashSet, FxHasher};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn name_sorts_among_labels_like_prometheus() {
        let metric = Metric::from_pairs([
            ("job", "db"),
            ("__name__", "up"),
            ("Zone", "a"),
            ("empty", ""),
        ]);
        let pairs: Vec<_> = metric.pairs().collect();
        assert_eq!(
            pairs,
            vec![("Zone", "a"), ("__name__", "up"), ("job", "db")]
        );
        assert_eq!(
            metric.to_string(),
            "{Zone=\"a\", __name__=\"up\", job=\"db\"}"
        );
        assert_eq!(metric.get("empty"), None);
        assert_eq!(metric.without_name().get("__name__"), None);
    }

    #[test]
    fn builder_keeps_and_deletes() {
        let metric = Metric::from_pairs([("__name__", "x"), ("a", "1"), ("b", "2"), ("c", "3")]);
        let kept = metric.builder().keep(&["b", "c"]).build();
        assert_eq!(kept.to_string(), "{b=\"2\", c=\"3\"}");
        let deleted = metric.builder().del(&["a", "__name__"]).build();
        assert_eq!(deleted.to_string(), "{b=\"2\", c=\"3\"}");
        assert_eq!(kept, deleted);
        assert_eq!(kept.fingerprint(), deleted.fingerprint());
    }

    #[test]
    fn comparison_follows_labels_compare() {
        let a = Metric::from_pairs([("__name__", "a"), ("x", "1")]);
        let b = Metric::from_pairs([("__name__", "a"), ("x", "2")]);
        let c = Metric::from_pairs([("__name__", "a")]);
        assert_eq!(a.cmp_labels(&b), Ordering::Less);
        assert_eq!(c.cmp_labels(&a), Ordering::Less);
        assert_eq!(a.cmp_labels(&a.clone()), Ordering::Equal);
    }
}
