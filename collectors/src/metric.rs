//! The plain-data vocabulary collectors speak: metric descriptors and samples.

use std::fmt;

/// The Prometheus type of a metric family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricKind {
    Gauge,
    Counter,
}

impl MetricKind {
    pub fn as_str(self) -> &'static str {
        match self {
            MetricKind::Gauge => "gauge",
            MetricKind::Counter => "counter",
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
            labels,
            value,
        }
    }
}

/// Label pairs of one sample, in declaration order.
#[derive(Clone, Default, PartialEq)]
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
    pub labels: Labels,
    pub value: f64,
}

impl Sample {
    pub fn name(&self) -> &'static str {
        self.desc.name
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
