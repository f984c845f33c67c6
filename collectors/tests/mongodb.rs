//! The MongoDB collector against the local FerretDB, and its parsers on MongoDB's documented outputs.
//!
//! FerretDB tests read `DBWATCH_MONGODB_URL` (`eval "$(deploy/local/fleet env ferretdb)"`) and fail, not skip,
//! when it is missing or the server is down: start it with `deploy/local/fleet up ferretdb`.
//!
//! FerretDB 1.24 is a standalone server without replica sets, sharding, `$indexStats`, opcounters, opLatencies,
//! metrics.document or connection counts; of serverStatus it answers uptime and `metrics.commands` (per command
//! total and failed). So the live tests check what it counts and that everything it lacks shows as capability 0
//! with no error, and the rest is tested on outputs transcribed from MongoDB's documentation into
//! `tests/fixtures/mongodb/` (Extended JSON, page URL and any adjustment stated in each file), parsed into BSON
//! documents so the same code reads fixtures and live answers.
#![cfg(feature = "mongodb")]

use std::time::Duration;

use dbwatch_collectors::mongodb::connection::{classify, MongoSession};
use dbwatch_collectors::mongodb::list_collections::{self, DatabaseFilter, Namespace};
use dbwatch_collectors::mongodb::{
    balancer_status, index_stats, repl_set_get_status, server_status, sharded_data_distribution,
    MongoCollector, MongoOptions, MongoViews,
};
use dbwatch_collectors::{CollectError, Collected, Collector, ErrorKind, Sample};
use mongodb::bson::{doc, Bson, Document};
use tokio::time::Instant;

const FLEET_HINT: &str =
    "run `deploy/local/fleet up ferretdb` and `eval \"$(deploy/local/fleet env ferretdb)\"`";

fn ferret_options() -> MongoOptions {
    let url = std::env::var("DBWATCH_MONGODB_URL")
        .unwrap_or_else(|_| panic!("DBWATCH_MONGODB_URL is not set: {FLEET_HINT}"));
    MongoOptions {
        target: "ferretdb".into(),
        url,
        views: MongoViews {
            index_stats_interval: Duration::ZERO,
            ..MongoViews::default()
        },
        ..MongoOptions::default()
    }
}

async fn poll(collector: &mut MongoCollector) -> Collected {
    collector
        .collect()
        .await
        .unwrap_or_else(|error| panic!("polling FerretDB failed ({error}): {FLEET_HINT}"))
}

async fn workload_client(url: &str) -> mongodb::Client {
    let mut options = mongodb::options::ClientOptions::parse(url)
        .await
        .expect("DBWATCH_MONGODB_URL parses");
    options.server_selection_timeout = Some(Duration::from_secs(5));
    mongodb::Client::with_options(options).expect("workload client")
}

fn find<'a>(samples: &'a [Sample], name: &str, label: Option<(&str, &str)>) -> Option<&'a Sample> {
    samples.iter().find(|sample| {
        sample.name() == name && label.is_none_or(|(key, value)| sample.label(key) == Some(value))
    })
}

fn value(samples: &[Sample], name: &str, label: Option<(&str, &str)>) -> f64 {
    find(samples, name, label)
        .unwrap_or_else(|| panic!("no sample {name} {label:?}"))
        .value
}

fn close(actual: f64, expected: f64) -> bool {
    (actual - expected).abs() <= 1e-9 * expected.abs().max(1.0)
}

/// N inserts and M finds move FerretDB's command counters by at least N and M (other clients may add to them),
/// and the per-second rate times the server-uptime interval between the two polls gives back the counter's
/// change exactly.
#[tokio::test]
async fn ferretdb_counts_the_inserts_and_finds_it_served() {
    const INSERTS: usize = 7;
    const FINDS: usize = 5;
    let options = ferret_options();
    let client = workload_client(&options.url).await;
    let catalog = client.database("catalog");
    let scratch = catalog.collection::<Document>(&format!("dbwatch_it_{}", std::process::id()));
    let products = catalog.collection::<Document>("products");
    let mut collector = MongoCollector::new(options);

    let before = poll(&mut collector).await.samples;
    for n in 0..INSERTS {
        scratch
            .insert_one(doc! { "n": n as i64 })
            .await
            .unwrap_or_else(|error| panic!("insert into FerretDB failed ({error}): {FLEET_HINT}"));
    }
    for _ in 0..FINDS {
        let found = products
            .find_one(doc! { "sku": "LAP-001" })
            .await
            .expect("find in catalog.products");
        assert!(
            found.is_some(),
            "catalog.products is not seeded: {FLEET_HINT}"
        );
    }

    // FerretDB counts a command before answering it, so the counts are there at once; the loop only guards
    // against a scheduler hiccup and is bounded.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut previous = before.clone();
    let after = loop {
        let current = poll(&mut collector).await.samples;
        let moved = |command: &str| {
            value(
                &current,
                "mongodb_commands_total",
                Some(("command", command)),
            ) - value(
                &before,
                "mongodb_commands_total",
                Some(("command", command)),
            )
        };
        if moved("insert") >= INSERTS as f64 && moved("find") >= FINDS as f64 {
            break current;
        }
        assert!(
            Instant::now() < deadline,
            "FerretDB's insert/find counts moved by {} and {} only",
            moved("insert"),
            moved("find")
        );
        previous = current;
    };
    scratch.drop().await.expect("drop the scratch collection");

    let interval = value(&after, "mongodb_uptime_seconds", None)
        - value(&previous, "mongodb_uptime_seconds", None);
    assert!(interval > 0.0, "uptime did not advance between polls");
    for command in ["insert", "find"] {
        let moved = value(&after, "mongodb_commands_total", Some(("command", command)))
            - value(
                &previous,
                "mongodb_commands_total",
                Some(("command", command)),
            );
        let rate = value(
            &after,
            "mongodb_commands_per_second",
            Some(("command", command)),
        );
        assert!(rate > 0.0, "{command} rate is {rate}");
        assert!(
            close(rate * interval, moved),
            "{command}: rate {rate}/s over {interval}s should give back {moved}"
        );
    }
    // FerretDB does not count document-level work or operations by type.
    assert!(find(&after, "mongodb_documents_total", None).is_none());
    assert!(find(&after, "mongodb_operations_total", None).is_none());
}

/// A standalone FerretDB: no replica set, no sharding, no $indexStats and several serverStatus sections
/// missing — each a capability at 0, none an error, on the first poll and the next, and no lag series.
#[tokio::test]
async fn ferretdb_standalone_reports_what_it_lacks_without_errors() {
    let mut collector = MongoCollector::new(ferret_options());
    for round in 0..2 {
        let collected = poll(&mut collector).await;
        for view in &collected.views {
            assert_eq!(view.error, None, "round {round}: view {} failed", view.view);
        }
        let samples = &collected.samples;
        let capability = |name: &str| {
            value(
                samples,
                "mongodb_capability_available",
                Some(("capability", name)),
            )
        };
        assert_eq!(capability("command_metrics"), 1.0);
        for missing in [
            "opcounters",
            "op_latencies",
            "document_metrics",
            "connections",
            "index_stats",
            "replica_set",
            "oplog",
            "sharding",
            "sharded_data_distribution",
        ] {
            assert_eq!(capability(missing), 0.0, "capability {missing}");
        }
        let build = find(samples, "mongodb_build_info", None).expect("build info");
        assert_eq!(build.label("flavor"), Some("ferretdb"));
        for absent in [
            "db_replication_lag_seconds",
            "db_replication_healthy",
            "mongodb_replset_my_state",
            "mongodb_replset_member_state",
            "mongodb_oplog_window_seconds",
            "mongodb_index_accesses_total",
            "mongodb_sharding_imbalance_ratio",
        ] {
            assert!(
                find(samples, absent, None).is_none(),
                "{absent} on a standalone FerretDB"
            );
        }
        for unknown in [
            "db_query_latency_avg_seconds",
            "db_connections_active",
            "db_connections_max",
            "db_connections_utilization_ratio",
        ] {
            assert!(
                value(samples, unknown, None).is_nan(),
                "{unknown} should be NaN (unknown)"
            );
        }
        // buildInfo and hello once per connection, then serverStatus alone.
        let expected_commands = if round == 0 { 3.0 } else { 1.0 };
        assert_eq!(
            value(samples, "mongodb_poll_commands", None),
            expected_commands
        );
    }
}

/// Discovery finds the seeded collection and honours the cap; FerretDB's refusal of `$indexStats` is classed
/// "unsupported", which is what turns the capability off for servers that do not announce their stages.
#[tokio::test]
async fn ferretdb_discovery_and_index_stats_refusal() {
    let mut session = MongoSession::new(ferret_options());
    let (conn, fresh) = session
        .conn()
        .await
        .unwrap_or_else(|error| panic!("no client ({error}): {FLEET_HINT}"));
    assert!(fresh);
    let filter = DatabaseFilter {
        include: Vec::new(),
        exclude: MongoViews::default().databases_exclude,
    };
    let discovery = list_collections::fetch(&conn, &filter, 100)
        .await
        .unwrap_or_else(|error| {
            panic!("listDatabases/listCollections failed ({error}): {FLEET_HINT}")
        });
    let products = Namespace {
        database: "catalog".into(),
        collection: "products".into(),
    };
    assert!(discovery.namespaces.contains(&products), "{discovery:?}");

    let capped = list_collections::fetch(&conn, &filter, 0)
        .await
        .expect("capped discovery");
    assert!(capped.namespaces.is_empty());
    assert!(capped.skipped >= 1);

    let refused = index_stats::fetch(&conn, &[products])
        .await
        .expect_err("FerretDB 1.24 has no $indexStats");
    assert_eq!(classify(&refused), ErrorKind::Unsupported, "{refused}");
    session.close().await;
}

/// Nothing listens there: the poll fails as a connection failure, and the next one backs off without trying.
#[tokio::test]
async fn unreachable_target_fails_then_backs_off() {
    let mut collector = MongoCollector::new(MongoOptions {
        target: "nowhere".into(),
        url: "mongodb://127.0.0.1:9/".into(),
        connect_timeout: Duration::from_millis(300),
        server_selection_timeout: Duration::from_millis(300),
        ..MongoOptions::default()
    });
    let error = collector
        .collect()
        .await
        .expect_err("nothing listens on port 9");
    assert_eq!(error.kind(), ErrorKind::Connect, "{error}");
    let started = Instant::now();
    let error = collector.collect().await.expect_err("still down");
    assert!(matches!(error, CollectError::BackingOff { .. }), "{error}");
    assert!(started.elapsed() < Duration::from_millis(100));
}

/// Commands per poll and poll wall time against the local FerretDB (run with --nocapture to read them).
#[tokio::test]
async fn ferretdb_poll_cost() {
    let mut collector = MongoCollector::new(ferret_options());
    let started = Instant::now();
    let first = poll(&mut collector).await;
    let first_time = started.elapsed();
    const POLLS: u32 = 20;
    let started = Instant::now();
    let mut commands = 0.0;
    for _ in 0..POLLS {
        commands += value(
            &poll(&mut collector).await.samples,
            "mongodb_poll_commands",
            None,
        );
    }
    let steady = started.elapsed() / POLLS;
    eprintln!(
        "ferretdb poll cost: first poll {} commands in {first_time:?}; steady state {} commands, {steady:?} per poll",
        value(&first.samples, "mongodb_poll_commands", None),
        commands / f64::from(POLLS),
    );
    assert_eq!(commands, f64::from(POLLS));
    assert!(steady < Duration::from_secs(1), "a poll took {steady:?}");
}

// ---------------------------------------------------------------------------------------------------------
// Fixtures: outputs from MongoDB's documentation.

fn fixture(name: &str) -> Bson {
    let path = format!(
        "{}/tests/fixtures/mongodb/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    let text = std::fs::read_to_string(&path).unwrap_or_else(|error| panic!("{path}: {error}"));
    let mut wrapper = extjson::document(&text);
    assert!(
        wrapper
            .get_str("source")
            .is_ok_and(|url| url.starts_with("https://")),
        "{name} must cite its source page"
    );
    wrapper.remove("output").expect("fixture has an output")
}

fn fixture_document(name: &str) -> Document {
    match fixture(name) {
        Bson::Document(document) => document,
        other => panic!("{name}: output is {other:?}, not a document"),
    }
}

fn fixture_documents(name: &str) -> Vec<Document> {
    match fixture(name) {
        Bson::Array(rows) => rows
            .into_iter()
            .map(|row| match row {
                Bson::Document(document) => document,
                other => panic!("{name}: row {other:?} is not a document"),
            })
            .collect(),
        other => panic!("{name}: output is {other:?}, not an array"),
    }
}

fn replica(samples: &[Sample], member: &str) -> (f64, f64) {
    (
        value(
            samples,
            "db_replication_lag_seconds",
            Some(("replica", member)),
        ),
        value(samples, "db_replication_healthy", Some(("replica", member))),
    )
}

/// The docs' replSetGetStatus example seen from the primary, adjusted (as stated in the fixture) so m2 trails
/// by 42 s and m3 is unreachable: m2's lag is 42 s and healthy, m3's is unknown — NaN and unhealthy, not the
/// 54 years an epoch optimeDate would give — and the primary has no lag series.
#[test]
fn replica_set_primary_view_lagging_and_unreachable_members() {
    let status = repl_set_get_status::parse(&fixture_document("repl_set_get_status_primary.json"))
        .expect("replSetGetStatus parses");
    let mut samples = Vec::new();
    status.samples(&mut samples);

    assert_eq!(value(&samples, "mongodb_replset_my_state", None), 1.0);
    assert_eq!(replica(&samples, "m2.example.net:27017"), (42.0, 1.0));
    let (lag, healthy) = replica(&samples, "m3.example.net:27017");
    assert!(lag.is_nan(), "unreachable member lag is {lag}");
    assert_eq!(healthy, 0.0);
    assert!(find(
        &samples,
        "db_replication_lag_seconds",
        Some(("replica", "m1.example.net:27017"))
    )
    .is_none());

    let state = |member| {
        value(
            &samples,
            "mongodb_replset_member_state",
            Some(("member", member)),
        )
    };
    let health = |member| {
        value(
            &samples,
            "mongodb_replset_member_health",
            Some(("member", member)),
        )
    };
    assert_eq!(state("m1.example.net:27017"), 1.0);
    assert_eq!(state("m2.example.net:27017"), 2.0);
    assert_eq!(state("m3.example.net:27017"), 8.0);
    assert_eq!(health("m3.example.net:27017"), 0.0);
    assert!(value(
        &samples,
        "mongodb_replset_member_optime_timestamp_seconds",
        Some(("member", "m3.example.net:27017"))
    )
    .is_nan());
    // The unreachable member's last heartbeat received is the epoch: unknown age, not 54 years.
    assert!(value(
        &samples,
        "mongodb_replset_member_heartbeat_age_seconds",
        Some(("member", "m3.example.net:27017"))
    )
    .is_nan());
    assert_eq!(
        value(
            &samples,
            "mongodb_replset_member_heartbeat_age_seconds",
            Some(("member", "m2.example.net:27017"))
        ),
        0.0
    );
    // No label carries the state name.
    assert!(samples.iter().all(|sample| sample
        .labels
        .iter()
        .all(|(_, v)| !v.contains("PRIMARY") && !v.contains("reachable"))));
}

/// The docs' example seen from a secondary (unmodified): the polled member's own optime (20:33:54) is newer
/// than the primary's as of its last heartbeat (20:33:44). Against the primary m3 is at lag 0 and the polled
/// member's negative difference is clamped to 0; against the newest member m3 would show a false 10 s.
#[test]
fn replica_set_secondary_view_measures_against_the_primary() {
    let status =
        repl_set_get_status::parse(&fixture_document("repl_set_get_status_secondary.json"))
            .expect("replSetGetStatus parses");
    let mut samples = Vec::new();
    status.samples(&mut samples);
    assert_eq!(value(&samples, "mongodb_replset_my_state", None), 2.0);
    assert_eq!(replica(&samples, "m3.example.net:27017"), (0.0, 1.0));
    assert_eq!(replica(&samples, "m2.example.net:27017"), (0.0, 1.0));
    // date 20:33:55.203 minus lastHeartbeatRecv 20:33:54.775 from the primary.
    assert!(close(
        value(
            &samples,
            "mongodb_replset_member_heartbeat_age_seconds",
            Some(("member", "m1.example.net:27017"))
        ),
        0.428
    ));
}

fn default_filter() -> DatabaseFilter {
    let views = MongoViews::default();
    DatabaseFilter {
        include: views.databases_include,
        exclude: views.databases_exclude,
    }
}

/// The docs' $shardedDataDistribution examples: two shards owning 366 bytes each is a ratio of 1; the mongosh
/// helper's example has every collection on shard1 (ratio 1, config.system.sessions excluded by default); the
/// adjusted copy (shard-2 owning 122 bytes) is a ratio of 3 per collection and overall.
#[test]
fn sharded_data_distribution_imbalance_from_the_docs_examples() {
    let ratios = |name: &str| {
        let distribution = sharded_data_distribution::parse(&fixture_documents(name))
            .expect("distribution parses");
        let mut samples = Vec::new();
        sharded_data_distribution::samples(&distribution, &default_filter(), 100, &mut samples);
        samples
    };

    let balanced = ratios("sharded_data_distribution.json");
    assert_eq!(
        value(&balanced, "mongodb_sharding_imbalance_ratio", None),
        1.0
    );
    assert_eq!(
        value(
            &balanced,
            "mongodb_sharding_collection_imbalance_ratio",
            Some(("collection", "names"))
        ),
        1.0
    );
    assert_eq!(
        value(
            &balanced,
            "mongodb_sharding_shard_owned_bytes",
            Some(("shard", "shard-2"))
        ),
        366.0
    );
    assert_eq!(
        value(
            &balanced,
            "mongodb_sharding_shard_owned_documents",
            Some(("shard", "shard-1"))
        ),
        6.0
    );

    let helper = ratios("sharded_data_distribution_helper.json");
    assert_eq!(
        value(&helper, "mongodb_sharding_imbalance_ratio", None),
        1.0
    );
    assert_eq!(
        value(
            &helper,
            "mongodb_sharding_shard_owned_bytes",
            Some(("shard", "shard1"))
        ),
        134.0
    );
    assert!(find(
        &helper,
        "mongodb_sharding_collection_owned_bytes",
        Some(("database", "config"))
    )
    .is_none());

    let skewed = ratios("sharded_data_distribution_imbalanced.json");
    assert_eq!(
        value(&skewed, "mongodb_sharding_imbalance_ratio", None),
        3.0
    );
    assert_eq!(
        value(
            &skewed,
            "mongodb_sharding_collection_imbalance_ratio",
            Some(("database", "test"))
        ),
        3.0
    );
    assert_eq!(
        value(
            &skewed,
            "mongodb_sharding_shard_orphaned_documents",
            Some(("shard", "shard-2"))
        ),
        4.0
    );
}

/// The docs' balancerStatus outputs: enabled, not in a round, and the round counter.
#[test]
fn balancer_status_from_the_docs_examples() {
    for (name, rounds) in [
        ("balancer_status.json", 86.0),
        ("balancer_status_helper.json", 1143.0),
    ] {
        let status =
            balancer_status::parse(&fixture_document(name)).expect("balancerStatus parses");
        let mut samples = Vec::new();
        status.samples(&mut samples);
        assert_eq!(
            value(&samples, "mongodb_sharding_balancer_enabled", None),
            1.0,
            "{name}"
        );
        assert_eq!(
            value(&samples, "mongodb_sharding_balancer_running", None),
            0.0,
            "{name}"
        );
        assert_eq!(
            value(&samples, "mongodb_sharding_balancer_rounds_total", None),
            rounds,
            "{name}"
        );
    }
}

/// Two serverStatus answers in the docs' shape, 60 s of uptime apart: counters as read, per-second rates of
/// the interval, mean latency per kind and for the fleet (3 s over 20000 operations), connection signals.
#[test]
fn server_status_rates_and_latency_from_the_docs_shape() {
    let answers = fixture_documents("server_status.json");
    let first = server_status::parse(&answers[0]);
    let second = server_status::parse(&answers[1]);
    let mut samples = Vec::new();
    // The local clock is deliberately wrong: the server's uptime decides the interval.
    server_status::derive(
        Some((&first, Duration::from_secs(75))),
        &second,
        &mut samples,
    );

    for (operation, per_second) in [
        ("insert", 100.0),
        ("query", 200.0),
        ("update", 10.0),
        ("delete", 2.0),
        ("getmore", 1.0),
        ("command", 30.0),
    ] {
        let rate = value(
            &samples,
            "mongodb_operations_per_second",
            Some(("operation", operation)),
        );
        assert!(close(rate, per_second), "{operation}: {rate}");
    }
    assert_eq!(
        value(
            &samples,
            "mongodb_operations_total",
            Some(("operation", "insert"))
        ),
        126_000.0
    );
    for (operation, per_second) in [
        ("inserted", 100.0),
        ("returned", 2000.0),
        ("updated", 10.0),
        ("deleted", 2.0),
    ] {
        let rate = value(
            &samples,
            "mongodb_documents_per_second",
            Some(("operation", operation)),
        );
        assert!(close(rate, per_second), "{operation}: {rate}");
    }
    assert!(close(
        value(
            &samples,
            "mongodb_commands_per_second",
            Some(("command", "find"))
        ),
        200.0
    ));
    assert!(close(
        value(
            &samples,
            "mongodb_commands_per_second",
            Some(("command", "insert"))
        ),
        10.0
    ));
    assert!(find(
        &samples,
        "mongodb_commands_total",
        Some(("command", "serverStatus"))
    )
    .is_none());

    let kind = |kind| {
        value(
            &samples,
            "mongodb_operation_latency_avg_seconds",
            Some(("kind", kind)),
        )
    };
    assert!(close(kind("reads"), 0.000_120));
    assert!(close(kind("writes"), 0.000_250));
    assert!(close(kind("commands"), 0.000_030));
    assert!(kind("transactions").is_nan());
    assert!(close(
        value(&samples, "db_query_latency_avg_seconds", None),
        0.000_150
    ));
    assert!(close(
        value(
            &samples,
            "mongodb_operation_latency_seconds_total",
            Some(("kind", "reads"))
        ),
        91.44
    ));

    assert_eq!(value(&samples, "db_connections_active", None), 55.0);
    assert_eq!(value(&samples, "db_connections_max", None), 838_860.0);
    assert!(close(
        value(&samples, "db_connections_utilization_ratio", None),
        55.0 / 838_860.0
    ));
    assert_eq!(
        value(&samples, "mongodb_connections_created_total", None),
        1804.0
    );
    assert_eq!(value(&samples, "mongodb_uptime_seconds", None), 3_600_060.0);
}

/// The docs' $indexStats example: the two indexes the queries used have one access each, `_id_` and the
/// partial `price_1` index none — unused.
#[test]
fn index_stats_from_the_docs_example() {
    let accesses = index_stats::parse("shop", "orders", &fixture_documents("index_stats.json"));
    assert_eq!(accesses.len(), 4);
    let mut state = index_stats::IndexStatsState::default();
    let mut samples = Vec::new();
    for usage in state.update(&accesses) {
        usage.samples(&mut samples);
    }
    let unused = |index| value(&samples, "mongodb_index_unused", Some(("index", index)));
    assert_eq!(unused("type_1_item_1"), 0.0);
    assert_eq!(unused("item_1_quantity_1"), 0.0);
    assert_eq!(unused("_id_"), 1.0);
    assert_eq!(unused("price_1"), 1.0);
    assert_eq!(
        value(
            &samples,
            "mongodb_index_accesses_total",
            Some(("index", "type_1_item_1"))
        ),
        1.0
    );
    // 2024-05-02T15:07:54.847Z
    assert!(close(
        value(
            &samples,
            "mongodb_index_accesses_since_timestamp_seconds",
            Some(("index", "price_1"))
        ),
        1_714_662_474.847
    ));
}

/// A small reader for MongoDB Extended JSON v2 (relaxed and canonical), enough for the fixtures: JSON values
/// plus `$date`, `$timestamp`, `$numberLong`, `$numberInt`, `$numberDouble`, `$oid` and `$binary`. Integers
/// without a wrapper read as int32 when they fit, int64 otherwise, as the spec's relaxed form says.
mod extjson {
    use mongodb::bson::spec::BinarySubtype;
    use mongodb::bson::{oid::ObjectId, Binary, Bson, DateTime, Document, Timestamp};

    pub fn document(text: &str) -> Document {
        let mut parser = Parser {
            bytes: text.as_bytes(),
            at: 0,
        };
        let value = parser.value();
        parser.skip_whitespace();
        assert_eq!(
            parser.at,
            parser.bytes.len(),
            "trailing characters after the JSON value"
        );
        match value {
            Bson::Document(document) => document,
            other => panic!("top level is {other:?}, not an object"),
        }
    }

    struct Parser<'a> {
        bytes: &'a [u8],
        at: usize,
    }

    impl Parser<'_> {
        fn peek(&self) -> u8 {
            *self.bytes.get(self.at).expect("unexpected end of JSON")
        }

        fn next(&mut self) -> u8 {
            let byte = self.peek();
            self.at += 1;
            byte
        }

        fn expect(&mut self, byte: u8) {
            let found = self.next();
            assert_eq!(found as char, byte as char, "at byte {}", self.at - 1);
        }

        fn skip_whitespace(&mut self) {
            while self.at < self.bytes.len() && self.bytes[self.at].is_ascii_whitespace() {
                self.at += 1;
            }
        }

        fn value(&mut self) -> Bson {
            self.skip_whitespace();
            match self.peek() {
                b'{' => self.object(),
                b'[' => self.array(),
                b'"' => Bson::String(self.string()),
                b't' => self.literal("true", Bson::Boolean(true)),
                b'f' => self.literal("false", Bson::Boolean(false)),
                b'n' => self.literal("null", Bson::Null),
                _ => self.number(),
            }
        }

        fn literal(&mut self, word: &str, value: Bson) -> Bson {
            let end = self.at + word.len();
            assert_eq!(
                &self.bytes[self.at..end],
                word.as_bytes(),
                "at byte {}",
                self.at
            );
            self.at = end;
            value
        }

        fn object(&mut self) -> Bson {
            self.expect(b'{');
            let mut document = Document::new();
            self.skip_whitespace();
            if self.peek() == b'}' {
                self.at += 1;
                return Bson::Document(document);
            }
            loop {
                self.skip_whitespace();
                let key = self.string();
                self.skip_whitespace();
                self.expect(b':');
                let value = self.value();
                document.insert(key, value);
                self.skip_whitespace();
                match self.next() {
                    b',' => continue,
                    b'}' => break,
                    other => panic!(
                        "expected , or }} at byte {}, found {}",
                        self.at - 1,
                        other as char
                    ),
                }
            }
            extended(document)
        }

        fn array(&mut self) -> Bson {
            self.expect(b'[');
            let mut items = Vec::new();
            self.skip_whitespace();
            if self.peek() == b']' {
                self.at += 1;
                return Bson::Array(items);
            }
            loop {
                items.push(self.value());
                self.skip_whitespace();
                match self.next() {
                    b',' => continue,
                    b']' => break,
                    other => panic!(
                        "expected , or ] at byte {}, found {}",
                        self.at - 1,
                        other as char
                    ),
                }
            }
            Bson::Array(items)
        }

        fn string(&mut self) -> String {
            self.expect(b'"');
            let mut bytes = Vec::new();
            loop {
                match self.next() {
                    b'"' => break,
                    b'\\' => match self.next() {
                        b'n' => bytes.push(b'\n'),
                        b't' => bytes.push(b'\t'),
                        b'r' => bytes.push(b'\r'),
                        b'b' => bytes.push(0x08),
                        b'f' => bytes.push(0x0c),
                        b'u' => {
                            let hex = std::str::from_utf8(&self.bytes[self.at..self.at + 4])
                                .expect("ascii escape");
                            self.at += 4;
                            let code = u32::from_str_radix(hex, 16).expect("hex escape");
                            let character = char::from_u32(code).expect("escape outside the BMP");
                            bytes.extend_from_slice(character.to_string().as_bytes());
                        }
                        other => bytes.push(other),
                    },
                    byte => bytes.push(byte),
                }
            }
            String::from_utf8(bytes).expect("utf-8 string")
        }

        fn number(&mut self) -> Bson {
            let start = self.at;
            while self.at < self.bytes.len()
                && matches!(
                    self.bytes[self.at],
                    b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9'
                )
            {
                self.at += 1;
            }
            let text = std::str::from_utf8(&self.bytes[start..self.at]).expect("ascii number");
            if text.contains(['.', 'e', 'E']) {
                return Bson::Double(text.parse().unwrap_or_else(|_| panic!("number {text:?}")));
            }
            let integer: i64 = text.parse().unwrap_or_else(|_| panic!("number {text:?}"));
            match i32::try_from(integer) {
                Ok(small) => Bson::Int32(small),
                Err(_) => Bson::Int64(integer),
            }
        }
    }

    /// Turns a one-key wrapper object into the BSON value it stands for; other objects stay documents.
    fn extended(document: Document) -> Bson {
        let Some((key, value)) = document.iter().next() else {
            return Bson::Document(document);
        };
        if document.len() != 1 {
            return Bson::Document(document);
        }
        match (key.as_str(), value) {
            ("$numberLong", Bson::String(text)) => Bson::Int64(text.parse().expect("$numberLong")),
            ("$numberInt", Bson::String(text)) => Bson::Int32(text.parse().expect("$numberInt")),
            ("$numberDouble", Bson::String(text)) => {
                Bson::Double(text.parse().expect("$numberDouble"))
            }
            ("$oid", Bson::String(text)) => {
                Bson::ObjectId(ObjectId::parse_str(text).expect("$oid"))
            }
            ("$date", Bson::String(text)) => {
                Bson::DateTime(DateTime::parse_rfc3339_str(text).expect("$date as RFC 3339"))
            }
            ("$date", Bson::Int64(millis)) => Bson::DateTime(DateTime::from_millis(*millis)),
            ("$timestamp", Bson::Document(parts)) => {
                let part = |name: &str| match parts.get(name) {
                    Some(Bson::Int32(value)) => u32::try_from(*value).expect("timestamp part"),
                    Some(Bson::Int64(value)) => u32::try_from(*value).expect("timestamp part"),
                    other => panic!("$timestamp.{name} is {other:?}"),
                };
                Bson::Timestamp(Timestamp {
                    time: part("t"),
                    increment: part("i"),
                })
            }
            ("$binary", Bson::Document(parts)) => {
                let base64 = parts.get_str("base64").expect("$binary.base64");
                let subtype =
                    u8::from_str_radix(parts.get_str("subType").expect("$binary.subType"), 16)
                        .expect("hex subType");
                Bson::Binary(
                    Binary::from_base64(base64, BinarySubtype::from(subtype)).expect("base64"),
                )
            }
            _ => Bson::Document(document),
        }
    }

    #[test]
    fn wrappers_become_bson_types() {
        let parsed = document(
            r#"{"a": {"$numberLong": "5"}, "b": 5, "c": 5000000000, "d": 1.5,
                "e": {"$date": "1970-01-01T00:00:01Z"}, "f": {"$timestamp": {"t": 3, "i": 4}},
                "g": [true, null, "x\"y"], "h": {"x": 1, "y": 2}}"#,
        );
        assert_eq!(parsed.get("a"), Some(&Bson::Int64(5)));
        assert_eq!(parsed.get("b"), Some(&Bson::Int32(5)));
        assert_eq!(parsed.get("c"), Some(&Bson::Int64(5_000_000_000)));
        assert_eq!(parsed.get("d"), Some(&Bson::Double(1.5)));
        assert_eq!(
            parsed.get("e"),
            Some(&Bson::DateTime(DateTime::from_millis(1000)))
        );
        assert_eq!(
            parsed.get("f"),
            Some(&Bson::Timestamp(Timestamp {
                time: 3,
                increment: 4
            }))
        );
        assert_eq!(parsed.get_array("g").map(Vec::len), Ok(3));
        assert!(parsed.get_document("h").is_ok());
    }
}
