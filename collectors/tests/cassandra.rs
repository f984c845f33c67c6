//! The Cassandra collector against the local two-node Cassandra 5.0 cluster of the fleet.
//!
//! Needs `deploy/local/fleet up cassandra`, then `eval "$(deploy/local/fleet env cassandra)"`. Every test fails,
//! never skips, when the variables are missing or the cluster does not answer. The nodes serve TLS on the same
//! port as plaintext, with a client certificate required from TLS clients (`DBWATCH_CASSANDRA_CA_FILE` and
//! the client certificate and key variables). The tests share one cluster and
//! one of them stops a node, so they run one at a time (a process-wide lock). Run with `--nocapture` to see
//! the measured statements per poll and poll wall times.
#![cfg(feature = "cassandra")]

use std::process::Command;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use dbwatch_collectors::cassandra::{
    CanaryOptions, CassandraCollector, CassandraOptions, CassandraTls, CassandraTlsMode,
};
use dbwatch_collectors::ErrorKind;
use dbwatch_collectors::{Collected, Collector, Sample};
use scylla::client::session::Session;
use scylla::client::session_builder::SessionBuilder;
use scylla::statement::{Consistency, Statement};
use tokio::time::Instant;

const NODE1: &str = "127.0.0.1";
const NODE2: &str = "127.0.0.2";
const FLEET_HINT: &str =
    "run `deploy/local/fleet up cassandra` and `eval \"$(deploy/local/fleet env cassandra)\"`";

static SERIAL: Mutex<()> = Mutex::new(());

/// One test at a time: they share the cluster, and one stops a node.
fn serial() -> MutexGuard<'static, ()> {
    SERIAL
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("{name} is not set: {FLEET_HINT}"))
}

fn contact_points() -> Vec<String> {
    env("DBWATCH_CASSANDRA_CONTACT_POINTS")
        .split(',')
        .map(str::to_owned)
        .collect()
}

fn options(canary: bool) -> CassandraOptions {
    CassandraOptions {
        target: "local-cassandra".into(),
        contact_points: contact_points(),
        local_datacenter: Some(env("DBWATCH_CASSANDRA_DATACENTER")),
        canary: canary.then(CanaryOptions::default),
        ..CassandraOptions::default()
    }
}

/// A plain driver session for the test's own writes.
async fn writer() -> Session {
    SessionBuilder::new()
        .known_nodes(contact_points())
        .build()
        .await
        .unwrap_or_else(|error| {
            panic!("cannot connect to the local cluster ({error}): {FLEET_HINT}")
        })
}

async fn write_events(session: &Session, count: usize) {
    let mut insert = Statement::new(
        "INSERT INTO ecommerce_logs.user_events (user_id, event_date, event_time, event_type, session_id) \
         VALUES (uuid(), toDate(now()), toTimestamp(now()), 'dbwatch_test', uuid())",
    );
    insert.set_consistency(Consistency::One);
    for _ in 0..count {
        session
            .query_unpaged(insert.clone(), ())
            .await
            .expect("insert into ecommerce_logs.user_events");
    }
}

/// Runs one of the fleet's Cassandra tools (node control or nodetool) and fails the test if it fails.
fn tool(variable: &str, args: &[&str]) {
    let program = env(variable);
    let status = Command::new(&program)
        .args(args)
        .status()
        .unwrap_or_else(|error| panic!("cannot run {program}: {error}"));
    assert!(status.success(), "{program} {args:?} failed with {status}");
}

fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    samples
        .iter()
        .find(|sample| {
            sample.name() == name
                && labels
                    .iter()
                    .all(|(label, expected)| sample.label(label) == Some(*expected))
        })
        .map(|sample| sample.value)
}

fn sum(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> f64 {
    samples
        .iter()
        .filter(|sample| {
            sample.name() == name
                && labels
                    .iter()
                    .all(|(label, expected)| sample.label(label) == Some(*expected))
        })
        .map(|sample| sample.value)
        .sum()
}

async fn poll(collector: &mut CassandraCollector) -> Collected {
    collector
        .collect()
        .await
        .unwrap_or_else(|error| panic!("poll failed ({error}): {FLEET_HINT}"))
}

/// Polls until `done` holds, every `every`, failing with `what` and the last poll's samples at the deadline.
async fn poll_until(
    collector: &mut CassandraCollector,
    deadline: Duration,
    every: Duration,
    what: &str,
    mut done: impl FnMut(&Collected) -> bool,
) -> Collected {
    let give_up = Instant::now() + deadline;
    loop {
        let collected = poll(collector).await;
        if done(&collected) {
            return collected;
        }
        if Instant::now() >= give_up {
            let relevant: Vec<String> = collected
                .samples
                .iter()
                .filter(|sample| {
                    sample.name().starts_with("cassandra_node_reachable")
                        || sample.name().starts_with("cassandra_cluster")
                        || sample.name().starts_with("cassandra_canary_success")
                        || sample.name().starts_with("cassandra_node_peers")
                        || sample.name().starts_with("cassandra_compactions_completed")
                })
                .map(|sample| format!("{} {:?} {}", sample.name(), sample.labels, sample.value))
                .collect();
            panic!(
                "{what}: not reached within {deadline:?}; last poll:\n{}",
                relevant.join("\n")
            );
        }
        tokio::time::sleep(every).await;
    }
}

/// Statements of one poll, per node (canary statements are cluster-wide and counted apart).
fn statements(collected: &Collected) -> (usize, usize) {
    let canary = collected
        .views
        .iter()
        .filter(|view| view.view.starts_with("canary_"))
        .count();
    (collected.views.len() - canary, canary)
}

fn both_reachable(collected: &Collected) -> bool {
    value(
        &collected.samples,
        "cassandra_node_reachable",
        &[("node", NODE1)],
    ) == Some(1.0)
        && value(
            &collected.samples,
            "cassandra_node_reachable",
            &[("node", NODE2)],
        ) == Some(1.0)
}

/// Every poll reaches both nodes, labels them, reads each node's version once and measures itself.
#[test]
fn polls_each_node_separately_and_reports_capabilities() {
    let _serial = serial();
    runtime().block_on(async {
        let mut collector = CassandraCollector::new(options(false));
        let first = poll_until(&mut collector, Duration::from_secs(60), Duration::from_secs(1), "both nodes reachable", both_reachable).await;
        let version = env("DBWATCH_CASSANDRA_VERSION");
        for node in [NODE1, NODE2] {
            assert_eq!(
                value(&first.samples, "cassandra_node_info", &[("node", node), ("release_version", &version)]),
                Some(1.0),
                "node {node} reports release {version}"
            );
            assert_eq!(
                value(&first.samples, "cassandra_capability_available", &[("node", node), ("capability", "gossip_info")]),
                Some(1.0)
            );
            assert_eq!(
                value(&first.samples, "cassandra_capability_available", &[("node", node), ("capability", "pending_compactions")]),
                Some(0.0)
            );
            assert_eq!(value(&first.samples, "cassandra_node_reachable", &[("node", node), ("dc", "datacenter1"), ("rack", "rack1")]), Some(1.0));
            assert!(value(&first.samples, "cassandra_thread_pool_completed_tasks_total", &[("node", node), ("pool", "ReadStage")]).is_some());
            assert!(value(&first.samples, "cassandra_node_clients", &[("node", node)]).is_some_and(|clients| clients >= 1.0));
            assert!(value(&first.samples, "cassandra_node_clients_max", &[("node", node)]).is_some_and(f64::is_infinite));
        }
        assert!(first.views.iter().all(|view| view.error.is_none()), "views failed: {:?}", first.views);
        assert!(value(&first.samples, "db_connections_utilization_ratio", &[]).is_some_and(f64::is_nan));
        assert!(value(&first.samples, "db_connections_active", &[]).is_some_and(|active| active >= 2.0));

        let mut walls = Vec::new();
        let mut second = poll(&mut collector).await;
        for _ in 0..5 {
            let started = Instant::now();
            second = poll(&mut collector).await;
            walls.push(started.elapsed());
        }
        walls.sort();
        let (node_statements, _) = statements(&second);
        let first_statements = statements(&first).0;
        println!(
            "cassandra poll: {first_statements} statements on the first poll, {node_statements} on later polls \
             ({} per node), {} samples; wall time min {:?} median {:?} max {:?}",
            node_statements / 2,
            second.samples.len(),
            walls[0],
            walls[walls.len() / 2],
            walls[walls.len() - 1]
        );
        let mut slowest: Vec<_> = second.views.iter().collect();
        slowest.sort_by_key(|view| std::cmp::Reverse(view.duration));
        for view in slowest.iter().take(4) {
            println!("  slowest: {} {:?}", view.view, view.duration);
        }
        assert!(node_statements < first_statements, "versions and virtual tables are read once per connection");
        assert_eq!(value(&second.samples, "cassandra_cluster_nodes", &[("state", "up")]), Some(2.0));
        assert_eq!(value(&second.samples, "db_replication_healthy", &[("replica", NODE2)]), Some(1.0));
        collector.close().await;
    });
}

/// N writes at ONE raise the coordinator write count by at least N (summed over the two coordinators), and the
/// interval's weighted latency becomes a number.
#[test]
fn writes_raise_write_latency_counts() {
    let _serial = serial();
    runtime().block_on(async {
        let writes = 200;
        let session = writer().await;
        let mut collector = CassandraCollector::new(options(false));
        let table = [("keyspace", "ecommerce_logs"), ("table", "user_events"), ("operation", "write")];
        let coordinator = [table.as_slice(), &[("scope", "coordinator")]].concat();
        let local = [table.as_slice(), &[("scope", "local")]].concat();
        let before = poll_until(&mut collector, Duration::from_secs(60), Duration::from_secs(1), "both nodes reachable", both_reachable).await;
        let coordinator_before = sum(&before.samples, "cassandra_table_requests_total", &coordinator);
        let local_before = sum(&before.samples, "cassandra_table_requests_total", &local);
        let node_before = sum(&before.samples, "cassandra_node_requests_total", &[("scope", "coordinator"), ("operation", "write")]);

        write_events(&session, writes).await;

        let after = poll_until(&mut collector, Duration::from_secs(30), Duration::from_millis(500), "coordinator writes counted", |collected| {
            sum(&collected.samples, "cassandra_table_requests_total", &coordinator) - coordinator_before >= writes as f64
        })
        .await;
        let coordinator_delta = sum(&after.samples, "cassandra_table_requests_total", &coordinator) - coordinator_before;
        let local_delta = sum(&after.samples, "cassandra_table_requests_total", &local) - local_before;
        let node_delta = sum(&after.samples, "cassandra_node_requests_total", &[("scope", "coordinator"), ("operation", "write")]) - node_before;
        println!("{writes} writes: coordinator +{coordinator_delta}, local (RF 2) +{local_delta}, node sums +{node_delta}");
        assert!(local_delta >= writes as f64, "every write lands on at least one replica");
        assert!(node_delta >= writes as f64, "the per-node sums include user tables");
        let latency = value(&after.samples, "db_query_latency_avg_seconds", &[]).expect("fleet latency present");
        assert!((0.0..1.0).contains(&latency), "fleet latency {latency}");
        let p99 = value(
            &after.samples,
            "cassandra_table_latency_seconds",
            &[("node", NODE1), ("keyspace", "ecommerce_logs"), ("table", "user_events"), ("scope", "local"), ("operation", "write"), ("percentile", "p99")],
        );
        assert!(p99.is_some_and(|p99| p99 > 0.0), "local write p99 is measured: {p99:?}");
        collector.close().await;
    });
}

/// A forced compaction on node 1, after writes and two flushes, appears in node 1's compaction counters.
#[test]
fn forced_compaction_shows_in_compaction_counters() {
    let _serial = serial();
    runtime().block_on(async {
        let session = writer().await;
        let mut collector = CassandraCollector::new(options(false));
        // The first poll sets each node's compaction baseline: history before it is not counted.
        poll_until(&mut collector, Duration::from_secs(60), Duration::from_secs(1), "both nodes reachable", both_reachable).await;
        let node1 = [("node", NODE1), ("keyspace", "ecommerce_logs"), ("table", "user_events")];
        for _ in 0..2 {
            write_events(&session, 100).await;
            tool("DBWATCH_CASSANDRA_NODETOOL", &["1", "flush", "ecommerce_logs", "user_events"]);
        }
        tool("DBWATCH_CASSANDRA_NODETOOL", &["1", "compact", "ecommerce_logs", "user_events"]);
        let after = poll_until(&mut collector, Duration::from_secs(60), Duration::from_secs(1), "compaction counted", |collected| {
            value(&collected.samples, "cassandra_compactions_completed_total", &node1).is_some_and(|completed| completed >= 1.0)
        })
        .await;
        let bytes_in = value(&after.samples, "cassandra_compaction_bytes_in_total", &node1).unwrap_or(0.0);
        let bytes_out = value(&after.samples, "cassandra_compaction_bytes_out_total", &node1).unwrap_or(0.0);
        let rows = value(&after.samples, "cassandra_compaction_rows_merged_total", &node1).unwrap_or(0.0);
        println!("forced compaction on node 1: {bytes_in} bytes in, {bytes_out} bytes out, {rows} partitions");
        assert!(bytes_in > 0.0 && bytes_out > 0.0 && rows >= 1.0);
        assert!(
            value(&after.samples, "cassandra_compaction_tasks_active", &[("node", NODE1), ("kind", "compaction")]).is_some(),
            "in-flight compactions are exported even when idle"
        );
        // Counters never go back, and the next poll does not count the same compaction twice.
        let again = poll(&mut collector).await;
        let completed = value(&after.samples, "cassandra_compactions_completed_total", &node1);
        assert_eq!(value(&again.samples, "cassandra_compactions_completed_total", &node1), completed);
        collector.close().await;
    });
}

/// Restarts node 2 when dropped, so a failing assertion never leaves the cluster with one node.
struct RestartNode2 {
    armed: bool,
}

impl Drop for RestartNode2 {
    fn drop(&mut self) {
        if self.armed {
            eprintln!("restarting node 2 after a failed test");
            let program = std::env::var("DBWATCH_CASSANDRA_NODE_CTL").unwrap_or_default();
            let _ = Command::new(program).args(["start", "2"]).status();
        }
    }
}

fn canary(collected: &Collected, level: &str) -> Option<f64> {
    value(
        &collected.samples,
        "cassandra_canary_success",
        &[("consistency", level)],
    )
}

fn unavailable(collected: &Collected, level: &str) -> f64 {
    sum(
        &collected.samples,
        "cassandra_canary_requests_total",
        &[("consistency", level), ("outcome", "unavailable")],
    )
}

/// Stopping node 2: 1 of 2 up, node 2 unreachable, QUORUM and ALL unavailable while ONE succeeds, and the
/// poll still succeeds. Starting it again recovers everything.
#[test]
fn stopping_a_node_shows_in_availability_and_canaries() {
    let _serial = serial();
    runtime().block_on(async {
        let mut collector = CassandraCollector::new(options(true));
        let healthy = |collected: &Collected| {
            both_reachable(collected)
                && value(
                    &collected.samples,
                    "cassandra_cluster_nodes",
                    &[("state", "up")],
                ) == Some(2.0)
                && ["one", "quorum", "all"]
                    .iter()
                    .all(|level| canary(collected, level) == Some(1.0))
        };
        poll_until(
            &mut collector,
            Duration::from_secs(90),
            Duration::from_secs(2),
            "healthy cluster before the stop",
            healthy,
        )
        .await;

        let mut guard = RestartNode2 { armed: true };
        tool("DBWATCH_CASSANDRA_NODE_CTL", &["stop", "2"]);
        let stopped_at = Instant::now();
        let down = poll_until(
            &mut collector,
            Duration::from_secs(90),
            Duration::from_secs(2),
            "node 2 seen down",
            |collected| {
                value(
                    &collected.samples,
                    "cassandra_node_reachable",
                    &[("node", NODE2)],
                ) == Some(0.0)
                    && value(
                        &collected.samples,
                        "cassandra_node_reachable",
                        &[("node", NODE1)],
                    ) == Some(1.0)
                    && value(
                        &collected.samples,
                        "cassandra_cluster_nodes",
                        &[("state", "up")],
                    ) == Some(1.0)
                    && value(
                        &collected.samples,
                        "cassandra_cluster_nodes",
                        &[("state", "down")],
                    ) == Some(1.0)
                    && canary(collected, "one") == Some(1.0)
                    && canary(collected, "quorum") == Some(0.0)
                    && canary(collected, "all") == Some(0.0)
            },
        )
        .await;
        println!(
            "node 2 stopped: reported down after {:?}",
            stopped_at.elapsed()
        );
        // The failures are Cassandra's own verdict, not client timeouts: one more poll adds unavailables.
        let next = poll(&mut collector).await;
        for level in ["quorum", "all"] {
            assert!(
                unavailable(&next, level) >= unavailable(&down, level) + 2.0,
                "{level} write and read fail as unavailable"
            );
        }
        assert_eq!(canary(&next, "one"), Some(1.0));
        assert_eq!(
            value(
                &next.samples,
                "db_replication_healthy",
                &[("replica", NODE2)]
            ),
            Some(0.0)
        );
        assert_eq!(
            value(
                &next.samples,
                "cassandra_node_peers",
                &[("node", NODE1), ("state", "down")]
            ),
            Some(1.0),
            "node 1's gossip shows its peer shut down"
        );

        tool("DBWATCH_CASSANDRA_NODE_CTL", &["start", "2"]);
        guard.armed = false;
        let started_at = Instant::now();
        poll_until(
            &mut collector,
            Duration::from_secs(120),
            Duration::from_secs(2),
            "recovery after restarting node 2",
            healthy,
        )
        .await;
        println!(
            "node 2 restarted: all signals recovered {:?} after its start returned",
            started_at.elapsed()
        );
        collector.close().await;
    });
}

/// The canary writes only when asked: a collector without one leaves the canary table alone.
#[test]
fn no_canary_series_without_a_canary() {
    let _serial = serial();
    runtime().block_on(async {
        let mut collector = CassandraCollector::new(options(false));
        let collected = poll(&mut collector).await;
        assert!(collected
            .samples
            .iter()
            .all(|sample| !sample.name().starts_with("cassandra_canary")));
        assert!(collected
            .views
            .iter()
            .all(|view| !view.view.starts_with("canary_")));
        collector.close().await;
    });
}

/// TLS with the fleet's CA and client certificate: `mode` with `server_name`, everything else as `options`.
fn tls_options(
    mode: CassandraTlsMode,
    ca_variable: &str,
    server_name: Option<&str>,
) -> CassandraOptions {
    CassandraOptions {
        tls: CassandraTls {
            mode,
            ca_file: Some(env(ca_variable).into()),
            cert_file: Some(env("DBWATCH_CASSANDRA_CLIENT_CERT_FILE").into()),
            key_file: Some(env("DBWATCH_CASSANDRA_CLIENT_KEY_FILE").into()),
            server_name: server_name.map(str::to_owned),
        },
        ..options(false)
    }
}

/// The error of a first poll that must fail.
async fn failed_poll(options: CassandraOptions) -> dbwatch_collectors::CollectError {
    let mut collector = CassandraCollector::new(options);
    let result = collector.collect().await;
    collector.close().await;
    match result {
        Ok(collected) => panic!(
            "the poll succeeded with {} samples",
            collected.samples.len()
        ),
        Err(error) => error,
    }
}

/// verify-full with the fleet's CA reaches both nodes over TLS: each node's certificate carries its IP, which is
/// the name checked, and the client certificate is accepted. A DNS name the certificate carries works as
/// `server_name` too.
#[test]
fn tls_verify_full_with_the_fleet_ca_reaches_both_nodes() {
    let _serial = serial();
    runtime().block_on(async {
        for server_name in [None, Some("localhost")] {
            let mut collector = CassandraCollector::new(tls_options(
                CassandraTlsMode::VerifyFull,
                "DBWATCH_CASSANDRA_CA_FILE",
                server_name,
            ));
            let collected = poll_until(
                &mut collector,
                Duration::from_secs(60),
                Duration::from_secs(1),
                "both nodes reachable over TLS",
                both_reachable,
            )
            .await;
            assert!(
                collected.views.iter().all(|view| view.error.is_none()),
                "views failed over TLS (server_name {server_name:?}): {:?}",
                collected.views
            );
            assert!(value(
                &collected.samples,
                "cassandra_node_info",
                &[("node", NODE2)]
            )
            .is_some());
            collector.close().await;
        }
    });
}

/// A CA that did not sign the nodes' certificate fails the poll with the `tls` kind, under both verifying modes.
#[test]
fn tls_with_an_unrelated_ca_fails_with_the_tls_kind() {
    let _serial = serial();
    runtime().block_on(async {
        for mode in [CassandraTlsMode::VerifyFull, CassandraTlsMode::VerifyCa] {
            let error =
                failed_poll(tls_options(mode, "DBWATCH_CASSANDRA_OTHER_CA_FILE", None)).await;
            assert_eq!(error.kind(), ErrorKind::Tls, "{mode:?}: {error}");
            assert!(
                error.to_string().contains("UnknownIssuer"),
                "{mode:?}: {error}"
            );
        }
    });
}

/// Under verify-full a name the certificate does not carry fails with the `tls` kind; verify-ca, which checks the
/// chain only, accepts the same certificate.
#[test]
fn tls_with_a_wrong_server_name_fails_under_verify_full_only() {
    let _serial = serial();
    runtime().block_on(async {
        let error = failed_poll(tls_options(
            CassandraTlsMode::VerifyFull,
            "DBWATCH_CASSANDRA_CA_FILE",
            Some("cassandra.example.invalid"),
        ))
        .await;
        assert_eq!(error.kind(), ErrorKind::Tls, "{error}");
        assert!(error.to_string().contains("not valid for name"), "{error}");

        let mut collector = CassandraCollector::new(tls_options(
            CassandraTlsMode::VerifyCa,
            "DBWATCH_CASSANDRA_CA_FILE",
            Some("cassandra.example.invalid"),
        ));
        poll_until(
            &mut collector,
            Duration::from_secs(60),
            Duration::from_secs(1),
            "both nodes reachable under verify-ca",
            both_reachable,
        )
        .await;
        collector.close().await;
    });
}

/// The nodes require a client certificate from TLS clients: without one the handshake is refused (`tls`).
#[test]
fn tls_without_the_client_certificate_is_refused() {
    let _serial = serial();
    runtime().block_on(async {
        let mut options = tls_options(
            CassandraTlsMode::VerifyFull,
            "DBWATCH_CASSANDRA_CA_FILE",
            None,
        );
        options.tls.cert_file = None;
        options.tls.key_file = None;
        let error = failed_poll(options).await;
        assert_eq!(error.kind(), ErrorKind::Tls, "{error}");
        assert!(error.to_string().contains("client certificate"), "{error}");
    });
}
