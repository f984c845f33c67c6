//! What the daemon remote-writes: every snapshot as it is published (the series `/metrics` shows for the
//! target, stamped with the poll's time, with staleness markers for the series of the previous snapshot it no
//! longer has), the rules engine's written series ([`dbwatch_rules::WrittenSink`]), and the daemon's own
//! metrics every evaluation interval ([`forward_own_metrics`]) — all of `/metrics`, as a Prometheus scraping
//! dbwatch would store it. Each only encodes and queues; the endpoints' senders do the rest.

use std::collections::HashSet;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use prometheus::proto::{MetricFamily, MetricType};
use prometheus::Registry;
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;

use dbwatch_remote_write::{Entry, RemoteWriters, SeriesEncoder};
use dbwatch_rules::labels::Metric;

use crate::store::{Snapshot, SnapshotSink};

/// Prometheus's staleness marker: the NaN a series gets when it disappears from a scrape.
const STALE_NAN: u64 = 0x7ff0_0000_0000_0002;

/// Cheap to clone: the writers and the encoder are shared.
#[derive(Clone)]
pub struct Forwarder {
    writers: RemoteWriters,
    encoder: SeriesEncoder,
}

impl Forwarder {
    pub fn new(writers: RemoteWriters, encoder: SeriesEncoder) -> Forwarder {
        Forwarder { writers, encoder }
    }
}

impl SnapshotSink for Forwarder {
    /// Queues `snapshot`'s samples, and staleness markers for what `previous` (the target's last snapshot)
    /// had and it has not.
    fn published(&self, snapshot: &Snapshot, previous: Option<&Snapshot>) {
        let t = unix_millis(snapshot.taken_at);
        let mut entries = Vec::with_capacity(snapshot.samples.len());
        let mut names = Vec::with_capacity(snapshot.samples.len());
        names.extend(snapshot.samples.iter().map(|sample| sample.series_name()));
        for (sample, name) in snapshot.samples.iter().zip(&names) {
            entries.push(self.entry(snapshot, name, sample, sample.value, t));
        }
        if let Some(previous) = previous {
            let now: HashSet<(&str, &dbwatch_metric::Labels)> = snapshot
                .samples
                .iter()
                .zip(&names)
                .map(|(sample, name)| (name.as_str(), &sample.labels))
                .collect();
            let old_names: Vec<String> = previous
                .samples
                .iter()
                .map(|sample| sample.series_name())
                .collect();
            for (sample, name) in previous.samples.iter().zip(&old_names) {
                if !now.contains(&(name.as_str(), &sample.labels)) {
                    let stale = f64::from_bits(STALE_NAN);
                    entries.push(self.entry(previous, name, sample, stale, t));
                }
            }
        }
        self.writers.push(&entries);
    }

    /// Queues staleness markers for every series of a target that is gone (removed by a reload).
    fn removed(&self, last: &Snapshot) {
        let t = unix_millis(SystemTime::now()).max(unix_millis(last.taken_at) + 1);
        let entries: Vec<Entry> = last
            .samples
            .iter()
            .map(|sample| {
                let name = sample.series_name();
                self.entry(last, &name, sample, f64::from_bits(STALE_NAN), t)
            })
            .collect();
        self.writers.push(&entries);
    }
}

impl Forwarder {
    fn entry(
        &self,
        snapshot: &Snapshot,
        name: &str,
        sample: &dbwatch_metric::Sample,
        value: f64,
        t: i64,
    ) -> Entry {
        // The target's own labels first: as in `/metrics`, where they lead every series (and win a clash).
        let mut labels: Vec<(&str, &str)> =
            Vec::with_capacity(2 + snapshot.labels.len() + sample.labels.iter().count());
        labels.push(("target", snapshot.target.as_str()));
        labels.push(("db", snapshot.db));
        for (label, label_value) in &snapshot.labels {
            labels.push((label.as_str(), label_value.as_str()));
        }
        for pair in sample.labels.iter() {
            labels.push(pair);
        }
        self.encoder.entry(name, labels, value, t)
    }
}

impl Forwarder {
    /// Queues the daemon's own metric families, as gathered at `t`.
    pub fn own(&self, families: &[MetricFamily], t: i64) {
        let mut entries = Vec::new();
        for family in families {
            let name = family.name();
            for metric in family.get_metric() {
                let mut push = |series: &str, extra: Option<(&str, &str)>, value: f64| {
                    entries.push(self.own_entry(metric, series, extra, value, t));
                };
                match family.get_field_type() {
                    MetricType::COUNTER => push(name, None, metric.get_counter().get_value()),
                    MetricType::GAUGE => push(name, None, metric.get_gauge().get_value()),
                    // dbwatch registers none.
                    MetricType::UNTYPED => {}
                    MetricType::HISTOGRAM => {
                        let histogram = metric.get_histogram();
                        let bucket = format!("{name}_bucket");
                        let mut infinite = false;
                        for each in histogram.get_bucket() {
                            let bound = upper_bound(each.upper_bound());
                            infinite |= each.upper_bound().is_infinite();
                            push(
                                &bucket,
                                Some(("le", &bound)),
                                each.cumulative_count() as f64,
                            );
                        }
                        // The text format always ends a histogram with its `+Inf` bucket.
                        if !infinite {
                            let count = histogram.get_sample_count() as f64;
                            push(&bucket, Some(("le", "+Inf")), count);
                        }
                        push(&format!("{name}_sum"), None, histogram.get_sample_sum());
                        let count = histogram.get_sample_count() as f64;
                        push(&format!("{name}_count"), None, count);
                    }
                    MetricType::SUMMARY => {
                        let summary = metric.get_summary();
                        for each in summary.get_quantile() {
                            let quantile = each.quantile().to_string();
                            push(name, Some(("quantile", &quantile)), each.value());
                        }
                        push(&format!("{name}_sum"), None, summary.sample_sum());
                        push(
                            &format!("{name}_count"),
                            None,
                            summary.sample_count() as f64,
                        );
                    }
                }
            }
        }
        self.writers.push(&entries);
    }

    fn own_entry(
        &self,
        metric: &prometheus::proto::Metric,
        series: &str,
        extra: Option<(&str, &str)>,
        value: f64,
        t: i64,
    ) -> Entry {
        let labels = metric
            .get_label()
            .iter()
            .map(|pair| (pair.name(), pair.value()))
            .chain(extra);
        self.encoder.entry(series, labels, value, t)
    }
}

/// Spelled as the text exposition spells bucket bounds, so that the series is the one a scrape would store.
fn upper_bound(bound: f64) -> String {
    if bound == f64::INFINITY {
        "+Inf".to_owned()
    } else {
        bound.to_string()
    }
}

/// Queues the daemon's own metrics every `interval` until `shutdown`.
pub async fn forward_own_metrics(
    registry: Registry,
    forward: Forwarder,
    interval: Duration,
    shutdown: CancellationToken,
) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = shutdown.cancelled() => return,
        }
        forward.own(&registry.gather(), unix_millis(SystemTime::now()));
    }
}

impl std::fmt::Debug for Forwarder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Forwarder").finish_non_exhaustive()
    }
}

impl dbwatch_rules::WrittenSink for Forwarder {
    fn written(&self, t: i64, series: &[(Metric, f64)]) {
        let entries: Vec<Entry> = series
            .iter()
            .filter_map(|(metric, value)| {
                let name = metric.name()?;
                let labels = metric.pairs().filter(|(label, _)| *label != "__name__");
                Some(self.encoder.entry(name, labels, *value, t))
            })
            .collect();
        self.writers.push(&entries);
    }
}

fn unix_millis(at: SystemTime) -> i64 {
    at.duration_since(UNIX_EPOCH).map_or(0, |since| {
        i64::try_from(since.as_millis()).unwrap_or(i64::MAX)
    })
}
