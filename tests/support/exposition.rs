//! Reading dbwatch's /metrics in tests: exposition text as a map from series to value.

#![allow(dead_code)] // each test crate uses its own subset

use std::collections::HashMap;

/// Parses exposition text into `series → value`, series written as in the text (name{labels}).
pub fn parse(text: &str) -> HashMap<String, f64> {
    text.lines()
        .filter(|line| !line.starts_with('#') && !line.is_empty())
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let value = match value {
                "NaN" => f64::NAN,
                "+Inf" => f64::INFINITY,
                "-Inf" => f64::NEG_INFINITY,
                other => other.parse().ok()?,
            };
            Some((series.to_owned(), value))
        })
        .collect()
}

/// The value of the one series of `name` whose labels include every `labels` pair, as written.
pub fn find_series(metrics: &HashMap<String, f64>, name: &str, labels: &[&str]) -> Option<f64> {
    let prefix = format!("{name}{{");
    metrics
        .iter()
        .find(|(series, _)| {
            series.starts_with(&prefix) && labels.iter().all(|label| series.contains(label))
        })
        .map(|(_, value)| *value)
}
