//! What serving `/metrics` costs, and what one real PostgreSQL poll costs.
//!
//! * `exposition/encode`: what a poll does when it publishes: encode every target's samples into per-family
//!   blocks (`exposition::encode`), for 50 targets × 2000 samples = 100k samples per iteration.
//! * `exposition/render`: what a scrape does: merge the 50 encoded snapshots into one body
//!   (`exposition::render`), into a buffer sized as `http::render_metrics` sizes it.
//! * `exposition/render_metrics`: the whole scrape handler body (`http::render_metrics`): the store's
//!   snapshots, the merge, and the daemon's own registry (process collector included).
//! * `postgres_poll/*`: wall time of one `PostgresCollector::collect` against the fleet primary, only when
//!   `DBWATCH_PG_PRIMARY_URL` is set (`eval "$(deploy/local/fleet env postgres)"`); skipped otherwise.
//!
//! Run: `make bench`, or `cargo bench --workspace --all-features --locked --bench render` with the fleet's
//! environment; method and figures in docs/benchmarks.md.

use std::collections::BTreeMap;
use std::hint::black_box;
use std::time::{Duration, SystemTime};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use dbwatch::exposition::{self, EncodedFamily};
use dbwatch::store::{Snapshot, SnapshotStore};
use dbwatch_collectors::{Labels, MetricDesc, MetricKind, Sample};

const TARGETS: usize = 50;
const SERIES_PER_FAMILY: usize = 50;
/// 40 families × 50 series = 2000 samples per target, 100k in total.
const SAMPLES: u64 = (TARGETS * FAMILIES.len() * SERIES_PER_FAMILY) as u64;

const TABLE: &[&str] = &["database", "schema", "table"];
const INDEX: &[&str] = &["database", "schema", "table", "index"];
const STATEMENT: &[&str] = &["database", "queryid"];
const FUNCTION: &[&str] = &["database", "schema", "function"];
const SLOT: &[&str] = &["slot_name", "slot_type", "database"];
const WAIT: &[&str] = &["database", "wait_event_type", "wait_event"];
const LOCK: &[&str] = &["database", "mode"];
const IO: &[&str] = &["backend_type", "object", "context"];

const fn family(
    name: &'static str,
    help: &'static str,
    kind: MetricKind,
    labels: &'static [&'static str],
) -> MetricDesc {
    MetricDesc {
        name,
        help,
        kind,
        labels,
    }
}

use MetricKind::{Counter, Gauge};

/// Families shaped like what a PostgreSQL exporter with per-table, per-index and per-statement views emits.
static FAMILIES: [MetricDesc; 40] = [
    family(
        "pg_table_seq_scans_total",
        "Sequential scans started on the table",
        Counter,
        TABLE,
    ),
    family(
        "pg_table_seq_tuples_read_total",
        "Live rows fetched by sequential scans",
        Counter,
        TABLE,
    ),
    family(
        "pg_table_index_scans_total",
        "Index scans started on the table",
        Counter,
        TABLE,
    ),
    family(
        "pg_table_tuples_inserted_total",
        "Rows inserted",
        Counter,
        TABLE,
    ),
    family(
        "pg_table_tuples_updated_total",
        "Rows updated, HOT updates included",
        Counter,
        TABLE,
    ),
    family(
        "pg_table_tuples_deleted_total",
        "Rows deleted",
        Counter,
        TABLE,
    ),
    family("pg_table_live_tuples", "Estimated live rows", Gauge, TABLE),
    family("pg_table_dead_tuples", "Estimated dead rows", Gauge, TABLE),
    family("pg_table_vacuums_total", "Manual vacuums", Counter, TABLE),
    family(
        "pg_table_autovacuums_total",
        "Vacuums by the autovacuum daemon",
        Counter,
        TABLE,
    ),
    family("pg_table_analyzes_total", "Manual analyzes", Counter, TABLE),
    family(
        "pg_table_last_autovacuum_timestamp_seconds",
        "Unix time of the last autovacuum",
        Gauge,
        TABLE,
    ),
    family(
        "pg_table_size_bytes",
        "Size of the table, TOAST included",
        Gauge,
        TABLE,
    ),
    family(
        "pg_table_heap_blocks_read_total",
        "Heap blocks read from disk",
        Counter,
        TABLE,
    ),
    family(
        "pg_table_heap_blocks_hit_total",
        "Heap blocks found in shared buffers",
        Counter,
        TABLE,
    ),
    family("pg_index_scans_total", "Scans of the index", Counter, INDEX),
    family(
        "pg_index_tuples_read_total",
        "Index entries returned by scans",
        Counter,
        INDEX,
    ),
    family(
        "pg_index_tuples_fetched_total",
        "Live rows fetched by simple index scans",
        Counter,
        INDEX,
    ),
    family("pg_index_size_bytes", "Size of the index", Gauge, INDEX),
    family(
        "pg_index_blocks_read_total",
        "Index blocks read from disk",
        Counter,
        INDEX,
    ),
    family(
        "pg_index_blocks_hit_total",
        "Index blocks found in shared buffers",
        Counter,
        INDEX,
    ),
    family(
        "pg_statement_calls_total",
        "Executions of the statement",
        Counter,
        STATEMENT,
    ),
    family(
        "pg_statement_exec_seconds_total",
        "Execution time of the statement",
        Counter,
        STATEMENT,
    ),
    family(
        "pg_statement_rows_total",
        "Rows retrieved or affected by the statement",
        Counter,
        STATEMENT,
    ),
    family(
        "pg_statement_shared_blocks_hit_total",
        "Shared buffer hits of the statement",
        Counter,
        STATEMENT,
    ),
    family(
        "pg_statement_shared_blocks_read_total",
        "Shared blocks read by the statement",
        Counter,
        STATEMENT,
    ),
    family(
        "pg_statement_temp_blocks_written_total",
        "Temporary blocks written by the statement",
        Counter,
        STATEMENT,
    ),
    family(
        "pg_statement_plan_seconds_total",
        "Planning time of the statement",
        Counter,
        STATEMENT,
    ),
    family(
        "pg_function_calls_total",
        "Calls of the function",
        Counter,
        FUNCTION,
    ),
    family(
        "pg_function_seconds_total",
        "Time in the function and what it called",
        Counter,
        FUNCTION,
    ),
    family(
        "pg_function_self_seconds_total",
        "Time in the function itself",
        Counter,
        FUNCTION,
    ),
    family(
        "pg_replication_slot_retained_bytes",
        "WAL the slot keeps from being removed",
        Gauge,
        SLOT,
    ),
    family(
        "pg_replication_slot_active",
        "1 when a consumer is connected to the slot",
        Gauge,
        SLOT,
    ),
    family(
        "pg_activity_wait_events",
        "Backends waiting on the event",
        Gauge,
        WAIT,
    ),
    family("pg_locks", "Locks held or awaited, by mode", Gauge, LOCK),
    family(
        "pg_io_reads_total",
        "Read operations, as pg_stat_io counts them",
        Counter,
        IO,
    ),
    family(
        "pg_io_writes_total",
        "Write operations, as pg_stat_io counts them",
        Counter,
        IO,
    ),
    family(
        "pg_io_extends_total",
        "Relation extensions, as pg_stat_io counts them",
        Counter,
        IO,
    ),
    family(
        "pg_io_hits_total",
        "Shared buffer hits, as pg_stat_io counts them",
        Counter,
        IO,
    ),
    family(
        "pg_io_evictions_total",
        "Buffers evicted, as pg_stat_io counts them",
        Counter,
        IO,
    ),
];

const DATABASES: &[&str] = &["shop", "billing", "analytics", "inventory", "postgres"];
const SCHEMAS: &[&str] = &["public", "audit", "reporting"];
const TABLES: &[&str] = &[
    "orders",
    "order_items",
    "customers",
    "payments",
    "shipments",
    "invoices",
    "products",
    "stock_movements",
    "sessions",
    "events",
];

/// A deterministic pseudo-random stream (SplitMix64), so every run encodes the same bytes.
struct Mix(u64);

impl Mix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

fn label_value(label: &str, series: usize, mix: &mut Mix) -> String {
    let table = format!(
        "{}_{:02}",
        TABLES[series % TABLES.len()],
        series / TABLES.len()
    );
    match label {
        "database" => DATABASES[series % DATABASES.len()].to_owned(),
        "schema" => SCHEMAS[series % SCHEMAS.len()].to_owned(),
        "table" => table,
        "index" => match series % 3 {
            0 => format!("{table}_pkey"),
            1 => format!("{table}_created_at_idx"),
            _ => format!("{table}_customer_id_fkey_idx"),
        },
        // pg_stat_statements' queryid is a signed 64-bit integer.
        "queryid" => (mix.next() as i64).to_string(),
        "function" => format!("refresh_{table}"),
        "slot_name" => format!("replica_{series:02}"),
        "slot_type" => ["physical", "logical"][series % 2].to_owned(),
        "wait_event_type" => ["Lock", "LWLock", "IO", "Client", "IPC"][series % 5].to_owned(),
        "wait_event" => format!(
            "{}_{series}",
            ["relation", "WALWrite", "DataFileRead", "ClientRead"][series % 4]
        ),
        "mode" => format!(
            "{}_{series}",
            ["AccessShareLock", "RowExclusiveLock", "ExclusiveLock"][series % 3]
        ),
        "backend_type" => [
            "client backend",
            "autovacuum worker",
            "checkpointer",
            "background writer",
            "walsender",
        ][series % 5]
            .to_owned(),
        "object" => format!("{}_{series}", ["relation", "temp relation"][series % 2]),
        "context" => ["normal", "vacuum", "bulkread", "bulkwrite"][series % 4].to_owned(),
        other => format!("{other}_{series}"),
    }
}

fn sample_value(desc: &MetricDesc, mix: &mut Mix) -> f64 {
    let raw = mix.next();
    if desc.name.ends_with("_seconds_total") || desc.name.ends_with("_timestamp_seconds") {
        // Fractional seconds, e.g. 123.456789 or 1732924800.123.
        if desc.name.ends_with("_timestamp_seconds") {
            1_732_924_800.0 + (raw % 10_000_000) as f64 / 1000.0
        } else {
            (raw % 100_000_000) as f64 / 1_000_000.0
        }
    } else if desc.kind == Counter {
        (raw % 10_000_000_000) as f64
    } else if desc.name.ends_with("_active") {
        (raw % 2) as f64
    } else {
        (raw % 100_000) as f64
    }
}

/// One target's poll: 2000 samples and the labels every series of the target carries.
struct Target {
    name: String,
    labels: BTreeMap<String, String>,
    common_labels: String,
    samples: Vec<Sample>,
}

fn targets() -> Vec<Target> {
    let mut mix = Mix(42);
    (0..TARGETS)
        .map(|index| {
            let mut configured = BTreeMap::new();
            configured.insert("env".to_owned(), "prod".to_owned());
            configured.insert(
                "region".to_owned(),
                ["eu-west-1", "us-east-1"][index % 2].to_owned(),
            );
            let name = format!("pg-orders-{index:02}");
            let common_labels = exposition::target_labels(&name, "postgres", &configured);
            let mut samples = Vec::with_capacity(FAMILIES.len() * SERIES_PER_FAMILY);
            // Collectors emit view by view, not family by family: interleave so that encode has to sort.
            for series in 0..SERIES_PER_FAMILY {
                for desc in &FAMILIES {
                    let mut labels = Labels::with_capacity(desc.labels.len());
                    for label in desc.labels {
                        labels.push(label, &label_value(label, series, &mut mix));
                    }
                    // Through the constructor, so that fields added to Sample keep their defaults.
                    let mut sample = desc.sample(sample_value(desc, &mut mix));
                    sample.labels = labels;
                    samples.push(sample);
                }
            }
            Target {
                name,
                labels: configured,
                common_labels,
                samples,
            }
        })
        .collect()
}

fn exposition_benches(c: &mut Criterion) {
    let targets = targets();
    let encoded: Vec<Vec<EncodedFamily>> = targets
        .iter()
        .map(|target| exposition::encode(&target.common_labels, &target.samples))
        .collect();

    // The scrape handler's whole path, as the daemon wires it.
    let registry = prometheus::Registry::new();
    let _self_metrics = dbwatch::self_metrics::SelfMetrics::register(&registry)
        .expect("register the daemon's own metrics");
    // No rule has fired: the alerts part of the body is empty, as on a quiet fleet.
    let alerts = dbwatch_rules::AlertsHandle::default();
    let store = SnapshotStore::new(TARGETS);
    for (target, families) in targets.iter().zip(&encoded) {
        store.publish(Snapshot {
            target: target.name.clone(),
            db: "postgres",
            labels: target.labels.clone(),
            taken_at: SystemTime::now(),
            up: true,
            error_kind: None,
            samples: target.samples.clone(),
            families: families.clone(),
        });
    }

    let mut body = String::new();
    exposition::render(encoded.iter().map(Vec::as_slice), &mut body);
    let lines = body.lines().filter(|line| !line.starts_with('#')).count();
    assert_eq!(lines as u64, SAMPLES, "every sample is rendered once");
    eprintln!(
        "exposition: {TARGETS} targets, {SAMPLES} samples, {} families, body {:.1} MiB ({} bytes per sample line)",
        FAMILIES.len(),
        body.len() as f64 / (1024.0 * 1024.0),
        body.len() / lines
    );

    let mut group = c.benchmark_group("exposition");
    group.throughput(Throughput::Elements(SAMPLES));
    group.sample_size(20);

    group.bench_function("encode", |b| {
        b.iter(|| {
            for target in &targets {
                black_box(exposition::encode(
                    black_box(&target.common_labels),
                    black_box(&target.samples),
                ));
            }
        })
    });

    group.bench_function("render", |b| {
        b.iter(|| {
            // Sized as http::render_metrics sizes it, so growth is part of the cost.
            let mut out = String::with_capacity(64 * 1024);
            exposition::render(black_box(&encoded).iter().map(Vec::as_slice), &mut out);
            black_box(out)
        })
    });

    group.bench_function("render_metrics", |b| {
        b.iter(|| {
            black_box(
                dbwatch::http::render_metrics(black_box(&store), &registry, &alerts)
                    .expect("render /metrics"),
            )
        })
    });
    group.finish();
}

/// The parts of a fleet URL (postgres://user:password@host:port/database) the collector's options need.
fn connection_options(
    url: &str,
) -> Result<dbwatch_collectors::postgres::PgConnectionOptions, String> {
    use dbwatch_collectors::postgres::{PgConnectionOptions, PgTls, PgTlsMode};
    use dbwatch_collectors::secret::{PasswordSource, Secret};

    let rest = url
        .strip_prefix("postgres://")
        .ok_or("not a postgres:// URL")?;
    let (credentials, rest) = rest.split_once('@').ok_or("no user:password@")?;
    let (user, password) = credentials.split_once(':').ok_or("no user:password")?;
    let (address, database) = rest.split_once('/').ok_or("no /database")?;
    let (host, port) = address.split_once(':').ok_or("no host:port")?;
    Ok(PgConnectionOptions {
        target: "pg-primary".into(),
        host: host.into(),
        port: port.parse().map_err(|_| "port is not a number")?,
        user: user.into(),
        database: database.into(),
        password: Some(PasswordSource::Inline(Secret::new(password.into()))),
        tls: PgTls {
            mode: PgTlsMode::Disable,
            ..PgTls::default()
        },
        connect_timeout: Duration::from_secs(3),
    })
}

fn postgres_benches(c: &mut Criterion) {
    use dbwatch_collectors::postgres::{PostgresCollector, PostgresOptions, PostgresViews};
    use dbwatch_collectors::Collector;

    let Ok(url) = std::env::var("DBWATCH_PG_PRIMARY_URL") else {
        eprintln!(
            "postgres_poll: skipped, DBWATCH_PG_PRIMARY_URL is not set \
             (eval \"$(deploy/local/fleet env postgres)\" to run it)"
        );
        return;
    };
    let connection = connection_options(&url)
        .unwrap_or_else(|reason| panic!("DBWATCH_PG_PRIMARY_URL {url:?}: {reason}"));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");

    let mut group = c.benchmark_group("postgres_poll");
    // (name, views): the daemon's defaults, and the integration tests' options (top statements on).
    let variants = [
        ("default_views", PostgresViews::default()),
        (
            "top_statements_5",
            PostgresViews {
                top_statements: 5,
                ..PostgresViews::default()
            },
        ),
    ];
    for (name, views) in variants {
        let mut collector = PostgresCollector::new(PostgresOptions {
            connection: connection.clone(),
            statement_timeout: Duration::from_secs(2),
            lock_timeout: Duration::from_millis(500),
            views,
        });
        // The first poll connects and reads the server's facts; the bench measures the steady state.
        let first = runtime
            .block_on(collector.collect())
            .unwrap_or_else(|error| panic!("first poll of the fleet primary failed: {error}"));
        if let Some(view) = first.views.iter().find(|view| view.error.is_some()) {
            panic!("view {} failed: {:?}", view.view, view.error);
        }
        eprintln!(
            "postgres_poll/{name}: {} samples, {} views per poll",
            first.samples.len(),
            first.views.len()
        );
        group.bench_function(name, |b| {
            b.iter(|| {
                let collected = runtime
                    .block_on(collector.collect())
                    .unwrap_or_else(|error| panic!("poll failed: {error}"));
                black_box(collected)
            })
        });
        runtime.block_on(collector.close());
    }
    group.finish();
}

criterion_group!(benches, exposition_benches, postgres_benches);
criterion_main!(benches);
