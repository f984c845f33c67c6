//! `/metrics` byte for byte: a fixed set of snapshots, built from the collectors' own descriptors, rendered the
//! way a scrape renders them and compared with `tests/golden/metrics.prom`, as node_exporter's and
//! postgres_exporter's suites compare their output with a fixture. Any change to a name, a help text, a label,
//! the order of families or the spelling of a value shows up as a diff of that file.
//!
//! After an intended change, rewrite the file with `DBWATCH_BLESS=1 cargo test --test exposition` and review
//! the diff. The file is also fed to `promtool check metrics` (Debian's prometheus package, installed by
//! `make test`), so the golden output is known to be valid exposition, not only stable.

#[path = "support/promtool.rs"]
mod promtool;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use dbwatch::exposition::{encode, render, target_labels};
use dbwatch::store::Snapshot;
use dbwatch_collectors::fleet;
use dbwatch_collectors::postgres::pg_stat_replication;
use dbwatch_collectors::Sample;

fn golden_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden/metrics.prom")
}

fn snapshot(
    target: &str,
    db: &'static str,
    labels: &[(&str, &str)],
    samples: Vec<Sample>,
) -> Snapshot {
    let labels: BTreeMap<String, String> = labels
        .iter()
        .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
        .collect();
    let families = encode(&target_labels(target, db, &labels), &samples);
    Snapshot {
        target: target.to_owned(),
        db,
        labels,
        taken_at: SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000),
        up: true,
        error_kind: None,
        samples,
        families,
    }
}

/// Three targets of two engines: shared fleet families from both (merged under one `# HELP`), per-replica
/// labels, a histogram, a label value that needs escaping, and the special values.
fn fixed_snapshots() -> Vec<Snapshot> {
    let primary = snapshot(
        "orders-primary",
        "postgres",
        &[("env", "prod"), ("region", "eu-west-1")],
        vec![
            fleet::DB_UP.sample(1.0),
            fleet::DB_QUERY_LATENCY_AVG_SECONDS.sample(0.0125),
            fleet::DB_CONNECTIONS_ACTIVE.sample(42.0),
            fleet::DB_CONNECTIONS_MAX.sample(500.0),
            fleet::DB_CONNECTIONS_UTILIZATION_RATIO.sample(0.084),
            pg_stat_replication::LAG_SECONDS.sample_with(["replica-1", "replay"], 0.25),
            pg_stat_replication::LAG_SECONDS.sample_with(["replica \"2\"\\b", "replay"], f64::NAN),
            pg_stat_replication::LAG_BYTES.sample_with(["replica-1"], 16_384.0),
        ],
    );
    let replica = snapshot(
        "orders-replica",
        "postgres",
        &[("env", "prod")],
        vec![
            fleet::DB_UP.sample(0.0),
            fleet::DB_REPLICATION_LAG_SECONDS.sample_with(["orders-replica"], f64::INFINITY),
            fleet::DB_REPLICATION_HEALTHY.sample_with(["orders-replica"], 0.0),
        ],
    );
    let mut sessions_samples = vec![fleet::DB_UP.sample(1.0)];
    sessions_samples.extend(dbwatch_collectors::dynamodb::scan::ITEM_SIZE.histogram(
        ["UserSessions"],
        &[(1024.0, 3.0), (4096.0, 7.0), (f64::INFINITY, 9.0)],
        21_504.0,
        9.0,
    ));
    let sessions = snapshot("sessions", "dynamodb", &[], sessions_samples);
    vec![primary, replica, sessions]
}

fn rendered() -> String {
    let snapshots = fixed_snapshots();
    let mut out = String::new();
    render(
        snapshots
            .iter()
            .map(|snapshot| snapshot.families.as_slice()),
        &mut out,
    );
    out
}

#[test]
fn metrics_match_the_golden_file_byte_for_byte() {
    let out = rendered();
    let path = golden_path();
    if std::env::var_os("DBWATCH_BLESS").is_some() {
        std::fs::write(&path, &out)
            .unwrap_or_else(|error| panic!("write {}: {error}", path.display()));
    }
    let golden = std::fs::read_to_string(&path).unwrap_or_else(|error| {
        panic!(
            "{}: {error} (write it with DBWATCH_BLESS=1 cargo test --test exposition)",
            path.display()
        )
    });
    if out != golden {
        let first = out
            .lines()
            .zip(golden.lines())
            .position(|(a, b)| a != b)
            .unwrap_or_else(|| out.lines().count().min(golden.lines().count()));
        panic!(
            "/metrics differs from {} from line {}:\n  rendered: {:?}\n  golden:   {:?}\n\
             (after an intended change: DBWATCH_BLESS=1 cargo test --test exposition, then review the diff)",
            path.display(),
            first + 1,
            out.lines().nth(first),
            golden.lines().nth(first)
        );
    }
}

#[test]
fn the_golden_file_is_valid_exposition_for_promtool() {
    let golden = std::fs::read_to_string(golden_path()).expect("golden file");
    promtool::check_metrics(&golden);
}
