//! Prometheus text exposition of snapshots.
//!
//! A snapshot is encoded once, when its poll publishes it, into one block of sample lines per metric family.
//! A scrape then only merges blocks: it writes each family's `# HELP`/`# TYPE` once and copies the blocks of
//! every target after it. Scrapes never touch a database and cost little more than a memory copy.

use std::collections::BTreeMap;

use dbwatch_collectors::{MetricDesc, Sample};
pub use dbwatch_metric::text::write_value;
use dbwatch_metric::text::{write_help, write_label};

/// One metric family's sample lines from one snapshot.
#[derive(Debug, Clone)]
pub struct EncodedFamily {
    pub desc: &'static MetricDesc,
    pub lines: String,
}

/// The labels every series of a target carries, rendered once: `target="a",db="postgres",env="prod"`.
pub fn target_labels(target: &str, db: &str, labels: &BTreeMap<String, String>) -> String {
    let mut out = String::new();
    write_label(&mut out, "target", target);
    out.push(',');
    write_label(&mut out, "db", db);
    for (name, value) in labels {
        out.push(',');
        write_label(&mut out, name, value);
    }
    out
}

/// Encodes samples into per-family blocks, sorted by family name.
pub fn encode(common_labels: &str, samples: &[Sample]) -> Vec<EncodedFamily> {
    let mut order: Vec<usize> = (0..samples.len()).collect();
    // Stable, so series keep the order their collector produced within a family.
    order.sort_by_key(|&index| samples[index].desc.name);
    let mut families: Vec<EncodedFamily> = Vec::new();
    for index in order {
        let sample = &samples[index];
        let family = match families.last_mut() {
            Some(family) if family.desc.name == sample.desc.name => family,
            _ => {
                families.push(EncodedFamily {
                    desc: sample.desc,
                    lines: String::new(),
                });
                match families.last_mut() {
                    Some(family) => family,
                    None => continue,
                }
            }
        };
        write_sample(&mut family.lines, common_labels, sample);
    }
    families
}

fn write_sample(out: &mut String, common_labels: &str, sample: &Sample) {
    out.push_str(sample.desc.name);
    out.push_str(sample.suffix);
    out.push('{');
    out.push_str(common_labels);
    for (name, value) in sample.labels.iter() {
        out.push(',');
        write_label(out, name, value);
    }
    out.push_str("} ");
    write_value(out, sample.value);
    out.push('\n');
}

/// Writes every family once, with the blocks of all snapshots that have it.
pub fn render<'a>(snapshots: impl IntoIterator<Item = &'a [EncodedFamily]>, out: &mut String) {
    let mut merged: BTreeMap<&'static str, (&'static MetricDesc, Vec<&'a str>)> = BTreeMap::new();
    for families in snapshots {
        for family in families {
            merged
                .entry(family.desc.name)
                .or_insert_with(|| (family.desc, Vec::new()))
                .1
                .push(&family.lines);
        }
    }
    for (name, (desc, blocks)) in merged {
        out.push_str("# HELP ");
        out.push_str(name);
        out.push(' ');
        write_help(out, desc.help);
        out.push_str("\n# TYPE ");
        out.push_str(name);
        out.push(' ');
        out.push_str(desc.kind.as_str());
        out.push('\n');
        for block in blocks {
            out.push_str(block);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dbwatch_collectors::MetricKind;

    static LAG: MetricDesc = MetricDesc {
        name: "db_replication_lag_seconds",
        help: "Lag \\ with\nnewline",
        kind: MetricKind::Gauge,
        labels: &["replica"],
    };
    static UP: MetricDesc = MetricDesc {
        name: "db_up",
        help: "Up",
        kind: MetricKind::Gauge,
        labels: &[],
    };

    #[test]
    fn families_merge_across_targets_with_one_header() {
        let a = encode(
            &target_labels("a", "postgres", &BTreeMap::new()),
            &[LAG.sample_with(["r\"1"], f64::NAN), UP.sample(1.0)],
        );
        let mut labels = BTreeMap::new();
        labels.insert("env".to_owned(), "prod".to_owned());
        let b = encode(&target_labels("b", "postgres", &labels), &[UP.sample(0.0)]);
        let mut out = String::new();
        render([a.as_slice(), b.as_slice()], &mut out);
        assert_eq!(
            out,
            "# HELP db_replication_lag_seconds Lag \\\\ with\\nnewline\n\
             # TYPE db_replication_lag_seconds gauge\n\
             db_replication_lag_seconds{target=\"a\",db=\"postgres\",replica=\"r\\\"1\"} NaN\n\
             # HELP db_up Up\n\
             # TYPE db_up gauge\n\
             db_up{target=\"a\",db=\"postgres\"} 1\n\
             db_up{target=\"b\",db=\"postgres\",env=\"prod\"} 0\n"
        );
    }

    #[test]
    fn special_values_use_prometheus_spelling() {
        let mut out = String::new();
        for value in [f64::INFINITY, f64::NEG_INFINITY, 0.25, 1e-7, 42.0] {
            write_value(&mut out, value);
            out.push(' ');
        }
        assert_eq!(out, "+Inf -Inf 0.25 0.0000001 42 ");
    }
}
