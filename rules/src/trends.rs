//! Trends: the last stretch of a few named series, read from the engine's [`History`] after each cycle and
//! published with the alert view, for the status page's sparklines. Downsampled to at most [`BUCKETS`]
//! points per series (the last sample of each bucket), so a publication stays small whatever the
//! evaluation interval.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::history::{is_stale, History};

/// Points per series at most.
pub const BUCKETS: i64 = 120;

/// One series' recent samples; `NaN` where the series was stale or unknown.
#[derive(Debug, Clone, PartialEq)]
pub struct TrendSeries {
    pub name: Arc<str>,
    /// The series' labels, `__name__` excluded.
    pub labels: BTreeMap<String, String>,
    /// `(unix milliseconds, value)`, oldest first.
    pub points: Vec<(i64, f64)>,
}

/// Every trend series, by target.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Trends {
    /// The evaluation time they were read at (Unix milliseconds) and how far back they go.
    pub at: i64,
    pub window_ms: i64,
    pub by_target: BTreeMap<String, Vec<TrendSeries>>,
}

/// What the engine keeps trends of, and for how long.
#[derive(Debug, Clone)]
pub(crate) struct TrendOptions {
    pub(crate) names: Vec<Arc<str>>,
    pub(crate) window_ms: i64,
}

impl Trends {
    pub(crate) fn read(history: &History, options: &TrendOptions, t: i64) -> Trends {
        let since = t.saturating_sub(options.window_ms);
        let bucket = (options.window_ms / BUCKETS).max(1);
        let mut by_target: BTreeMap<String, Vec<TrendSeries>> = BTreeMap::new();
        for name in &options.names {
            history.for_each_named(name, since, |metric, points| {
                let Some(target) = metric.get("target") else {
                    return;
                };
                let mut kept: Vec<(i64, f64)> =
                    Vec::with_capacity(points.len().min(BUCKETS as usize + 1));
                for point in points {
                    let value = if is_stale(point.v) { f64::NAN } else { point.v };
                    let same_bucket = kept.last().is_some_and(|(last, _)| {
                        (last - since) / bucket == (point.t - since) / bucket
                    });
                    if same_bucket {
                        if let Some(last) = kept.last_mut() {
                            *last = (point.t, value);
                        }
                    } else {
                        kept.push((point.t, value));
                    }
                }
                let mut labels = metric.to_map();
                labels.remove("__name__");
                by_target
                    .entry(target.to_owned())
                    .or_default()
                    .push(TrendSeries {
                        name: Arc::clone(name),
                        labels,
                        points: kept,
                    });
            });
        }
        Trends {
            at: t,
            window_ms: options.window_ms,
            by_target,
        }
    }

    /// The series of `target` named `name`.
    pub fn series<'a>(
        &'a self,
        target: &str,
        name: &'a str,
    ) -> impl Iterator<Item = &'a TrendSeries> {
        self.by_target
            .get(target)
            .into_iter()
            .flatten()
            .filter(move |series| &*series.name == name)
    }
}
