//! The plain-data vocabulary collectors speak and the rest of dbwatch reads: metric descriptors and samples, and
//! the text-format primitives ([`text`]).

pub mod text;

use std::fmt;

/// The Prometheus type of a metric family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricKind {
    Gauge,
    Counter,
    /// Cumulative buckets (`_bucket{le}`), `_sum` and `_count`, as Prometheus histograms.
    Histogram,
}

impl MetricKind {
    pub fn as_str(self) -> &'static str {
        match self {
            MetricKind::Gauge => "gauge",
            MetricKind::Counter => "counter",
            MetricKind::Histogram => "histogram",
        }
    }
}

/// A metric family, declared once as a `static` beside the view that fills it.
///
/// `labels` lists the label names the collector attaches; the daemon adds `target`, `db` and the target's
/// configured labels on top. Declaring them lets tests check names, units and documentation without a database.
#[derive(Debug, PartialEq, Eq)]
pub struct MetricDesc {
    pub name: &'static str,
    pub help: &'static str,
    pub kind: MetricKind,
    pub labels: &'static [&'static str],
}

impl MetricDesc {
    /// A sample of this family with no labels of its own.
    pub fn sample(&'static self, value: f64) -> Sample {
        Sample {
            desc: self,
            suffix: "",
            labels: Labels::new(),
            value,
        }
    }

    /// A sample of this family with the given label values, in the order of `self.labels`.
    pub fn sample_with<const N: usize>(&'static self, values: [&str; N], value: f64) -> Sample {
        debug_assert_eq!(N, self.labels.len(), "label count of {}", self.name);
        let mut labels = Labels::with_capacity(N);
        for (name, label_value) in self.labels.iter().zip(values) {
            labels.push(name, label_value);
        }
        Sample {
            desc: self,
            suffix: "",
            labels,
            value,
        }
    }

    /// The series of one histogram: a `_bucket` per upper bound with its cumulative count (the `+Inf` bucket
    /// is added from `count`), then `_sum` and `_count`. `label_values` follow `self.labels`.
    pub fn histogram<const N: usize>(
        &'static self,
        label_values: [&str; N],
        cumulative_buckets: &[(f64, f64)],
        sum: f64,
        count: f64,
    ) -> Vec<Sample> {
        debug_assert_eq!(
            self.kind,
            MetricKind::Histogram,
            "{} is not a histogram",
            self.name
        );
        let base = self.sample_with(label_values, 0.0).labels;
        let mut samples = Vec::with_capacity(cumulative_buckets.len() + 3);
        let mut bucket = |upper_bound: &str, value: f64| {
            let mut labels = base.clone();
            labels.push("le", upper_bound);
            samples.push(Sample {
                desc: self,
                suffix: "_bucket",
                labels,
                value,
            });
        };
        for (upper_bound, cumulative) in cumulative_buckets {
            if upper_bound.is_finite() {
                bucket(&upper_bound.to_string(), *cumulative);
            }
        }
        bucket("+Inf", count);
        for (suffix, value) in [("_sum", sum), ("_count", count)] {
            samples.push(Sample {
                desc: self,
                suffix,
                labels: base.clone(),
                value,
            });
        }
        samples
    }
}

/// Label pairs of one sample, in declaration order.
#[derive(Clone, Default, PartialEq, Eq, Hash)]
pub struct Labels(Vec<(&'static str, String)>);

impl Labels {
    pub fn new() -> Self {
        Labels(Vec::new())
    }

    pub fn with_capacity(capacity: usize) -> Self {
        Labels(Vec::with_capacity(capacity))
    }

    pub fn push(&mut self, name: &'static str, value: &str) {
        self.0.push((name, value.to_owned()));
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(label, _)| *label == name)
            .map(|(_, value)| value.as_str())
    }

    pub fn iter(&self) -> impl Iterator<Item = (&'static str, &str)> {
        self.0.iter().map(|(name, value)| (*name, value.as_str()))
    }
}

impl fmt::Debug for Labels {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

/// One value of one series.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub desc: &'static MetricDesc,
    /// `_bucket`, `_sum` or `_count` for the series of a histogram; empty otherwise.
    pub suffix: &'static str,
    pub labels: Labels,
    pub value: f64,
}

impl Sample {
    /// The metric family's name (for a histogram, without the series suffix).
    pub fn name(&self) -> &'static str {
        self.desc.name
    }

    /// The series' own name: the family name plus the histogram suffix, if any.
    pub fn series_name(&self) -> String {
        format!("{}{}", self.desc.name, self.suffix)
    }

    pub fn label(&self, name: &str) -> Option<&str> {
        self.labels.get(name)
    }
}

/// `1.0` for true, `0.0` for false: how booleans travel as gauge values.
pub fn bool_value(flag: bool) -> f64 {
    if flag {
        1.0
    } else {
        0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    static SIZES: MetricDesc = MetricDesc {
        name: "test_item_size_bytes",
        help: "Item sizes",
        kind: MetricKind::Histogram,
        labels: &["table"],
    };

    #[test]
    fn histogram_series_are_cumulative_with_inf_sum_and_count() {
        let samples = SIZES.histogram(["carts"], &[(64.0, 2.0), (128.0, 5.0)], 700.0, 6.0);
        let rendered: Vec<(String, Option<&str>, f64)> = samples
            .iter()
            .map(|sample| (sample.series_name(), sample.label("le"), sample.value))
            .collect();
        assert_eq!(
            rendered,
            vec![
                ("test_item_size_bytes_bucket".to_owned(), Some("64"), 2.0),
                ("test_item_size_bytes_bucket".to_owned(), Some("128"), 5.0),
                ("test_item_size_bytes_bucket".to_owned(), Some("+Inf"), 6.0),
                ("test_item_size_bytes_sum".to_owned(), None, 700.0),
                ("test_item_size_bytes_count".to_owned(), None, 6.0),
            ]
        );
        assert!(samples
            .iter()
            .all(|sample| sample.label("table") == Some("carts")));
    }
}
