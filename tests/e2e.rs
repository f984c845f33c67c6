//! Every seed alert end to end (issue 9): the real daemon with the shipped rules (alerts/fleet.yml) and the
//! shipped routing (deploy/routing/dbwatch-routing.yml), the fleet's databases, the workload's faults, the local
//! Slack and PagerDuty receivers and the fleet's SMTP server. For each alert and database kind: inject the
//! fault, the alert reaches exactly the seed's channels, clear the fault, the resolve arrives. The time from
//! fault to first notification is printed (`--nocapture`).
//!
//! Only thresholds and durations are shortened, in copies written to each case's temporary folder; the routes
//! are the shipped ones, with the secret files swapped for the local receivers. The faults act on servers other
//! suites use, so they run one at a time and a guard clears each one however the test ends.
//!
//! Needs `deploy/local/fleet up` and its environment (`eval "$(deploy/local/fleet env)"`), and the workload
//! binary beside this test's (`cargo test --workspace` builds it); fails without them.

#[path = "support/exposition.rs"]
mod exposition;
#[path = "support/fleet.rs"]
mod fleet;
#[path = "support/mail.rs"]
mod mail;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use exposition::{find_series, parse};
use fleet::{env, free_port, host_port, Process};
use serde_json::Value;
use tokio::time::Instant;

/// One fault at a time across this file's tests: they share the fleet's primaries and replicas.
static FAULTS: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const ROUTING_KEY: &str = "0123456789abcdef0123456789abcdef";

/// How long an alert may take to reach its channels, or its resolve to arrive, on a loaded machine.
const NOTIFY_WITHIN: Duration = Duration::from_secs(120);

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path)
        .unwrap_or_else(|error| panic!("cannot read {}: {error}", path.display()))
}

/// `text` with every `from` replaced; panics when `from` is absent, so a change to a shipped file that this
/// derivation no longer matches fails here instead of silently testing something else.
fn replaced(text: &str, from: &str, to: &str) -> String {
    assert!(
        text.contains(from),
        "the shipped file no longer contains {from:?}"
    );
    text.replace(from, to)
}

/// The shipped rules with the seed's durations and the lag threshold shortened for a test run.
fn test_rules() -> String {
    let mut rules = read(&repo().join("alerts/fleet.yml"));
    for duration in ["for: 5m", "for: 2m", "for: 1m", "for: 15m"] {
        rules = replaced(&rules, duration, "for: 2s");
    }
    replaced(
        &rules,
        "db_replication_lag_seconds > 300",
        "db_replication_lag_seconds > 3",
    )
}

/// The shipped routing with its secrets pointing at the local receivers' `bucket` and the fleet's SMTP server
/// (mail to `recipient`), and the grouping waits shortened. The routes stay as shipped.
fn test_routing(bucket: &str, recipient: &str) -> String {
    let receivers = env("DBWATCH_RECEIVERS_URL");
    let mut routing = read(&repo().join("deploy/routing/dbwatch-routing.yml"));
    for (from, to) in [
        (
            "smtp_smarthost: smtp.example.com:587".to_owned(),
            format!("smtp_smarthost: {}", env("DBWATCH_SMTP_STARTTLS")),
        ),
        (
            "smtp_auth_username: dbwatch".to_owned(),
            format!("smtp_auth_username: {}", env("DBWATCH_SMTP_USER")),
        ),
        (
            "smtp_auth_password_file: /run/secrets/dbwatch/smtp-password".to_owned(),
            format!("smtp_auth_password: {}", env("DBWATCH_SMTP_PASSWORD")),
        ),
        (
            "- to: db-team@example.com".to_owned(),
            format!(
                "- to: {recipient}\n        tls_config: {{ca_file: {}, server_name: localhost}}",
                env("DBWATCH_SMTP_CA")
            ),
        ),
        (
            "api_url_file: /run/secrets/dbwatch/slack-webhook-url".to_owned(),
            format!("api_url: {receivers}/slack/{bucket}"),
        ),
        (
            "routing_key_file: /run/secrets/dbwatch/pagerduty-routing-key".to_owned(),
            format!(
                "routing_key: {ROUTING_KEY}\n        url: {receivers}/pagerduty/{bucket}/v2/enqueue"
            ),
        ),
        ("group_wait: 30s".to_owned(), "group_wait: 1s".to_owned()),
        ("group_wait: 10s".to_owned(), "group_wait: 1s".to_owned()),
        (
            "group_interval: 5m".to_owned(),
            "group_interval: 1s".to_owned(),
        ),
    ] {
        routing = replaced(&routing, &from, &to);
    }
    routing
}

/// A name no other run uses: the receivers' buckets and the mail recipients are shared by every suite.
fn unique(purpose: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_nanos();
    format!("e2e-{purpose}-{}-{nanos}", std::process::id())
}

/// The workload binary, built beside this test binary (target/<profile>/deps/e2e-* → target/<profile>/).
fn workload() -> Command {
    let exe = std::env::current_exe().expect("the test binary's path");
    let path = exe
        .parent()
        .and_then(Path::parent)
        .map(|dir| dir.join("dbwatch-workload"))
        .expect("the target folder");
    assert!(
        path.is_file(),
        "{} is missing: build it with `cargo test --workspace` (or `cargo build -p dbwatch-workload`)",
        path.display()
    );
    let mut command = Command::new(path);
    command.env("NO_COLOR", "1");
    command
}

/// How a fault is made: one of the workload's faults (`fault NAME start|clear ARGS`). For MariaDB's replication
/// lag it is `replica-lag --delay`: stopping the SQL thread (the default) makes the lag unknown (NaN, so
/// replication_broken's, not replication_lag's), while a delayed replica keeps both threads running as it falls
/// behind, so its lag is known and grows.
#[derive(Debug, Clone, Copy)]
enum Injection {
    Workload(&'static [&'static str]),
    /// The same fault on the MySQL 8.0 pair: the workload's MySQL URLs pointed at it (see `on_mysql8`).
    Mysql8(&'static [&'static str]),
}

/// The workload with its MySQL URLs (DBWATCH_MYSQL_ADMIN_URL, DBWATCH_MYSQL_REPLICA_ADMIN_URL) pointed at the
/// fleet's MySQL 8.0 pair instead of MariaDB; in the environment, never on the command line.
fn on_mysql8(command: &mut Command) -> &mut Command {
    command
        .env("DBWATCH_MYSQL_ADMIN_URL", env("DBWATCH_MYSQL8_ADMIN_URL"))
        .env(
            "DBWATCH_MYSQL_REPLICA_ADMIN_URL",
            env("DBWATCH_MYSQL8_REPLICA_ADMIN_URL"),
        )
}

/// A started fault, cleared when dropped, whatever happened in the test.
struct Fault {
    injection: Injection,
    state: PathBuf,
    cleared: bool,
}

impl Fault {
    fn start(injection: Injection, state: &Path) -> Fault {
        // The guard exists before the start, so a start that fails half-way is cleared too.
        let fault = Fault {
            injection,
            state: state.to_owned(),
            cleared: false,
        };
        let output = fault
            .command(true)
            .output()
            .expect("the fault command runs");
        assert!(
            output.status.success(),
            "starting {injection:?} failed ({}):\n{}{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        fault
    }

    fn command(&self, start: bool) -> Command {
        let (args, mysql8) = match self.injection {
            Injection::Workload(args) => (args, false),
            Injection::Mysql8(args) => (args, true),
        };
        let (name, rest) = args.split_first().expect("a fault name");
        let mut command = workload();
        if mysql8 {
            on_mysql8(&mut command);
        }
        command
            .args(["fault", name, if start { "start" } else { "clear" }])
            .args(rest)
            .arg("--state-dir")
            .arg(&self.state);
        command
    }

    fn clear(&mut self) {
        let output = self
            .command(false)
            .output()
            .expect("the fault command runs");
        assert!(
            output.status.success(),
            "clearing {:?} failed ({}):\n{}{}",
            self.injection,
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        self.cleared = true;
    }
}

impl Drop for Fault {
    fn drop(&mut self) {
        if !self.cleared {
            // Best effort while unwinding: a panic here would abort the test process.
            let cleared = self.command(false).status();
            if !matches!(cleared, Ok(status) if status.success()) {
                eprintln!("could not clear {:?}: {cleared:?}", self.injection);
            }
        }
    }
}

/// The subjects of the messages the SMTP server stored for `recipient`, oldest first.
fn mail_subjects(recipient: &str) -> Vec<String> {
    mail::messages_for(recipient)
        .iter()
        .filter_map(|mail| mail::header(mail["data"].as_str()?, "Subject"))
        .collect()
}

/// What one case's channels received so far.
#[derive(Debug, Default)]
struct Received {
    slack: Vec<String>,
    pagerduty: Vec<Value>,
    mail: Vec<String>,
    invalid: Vec<Value>,
}

/// Firing and resolved notifications of one alert on one channel.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
struct Count {
    firing: usize,
    resolved: usize,
}

impl Received {
    fn slack(&self, alert: &str) -> Count {
        Count {
            firing: self
                .slack
                .iter()
                .filter(|text| text.starts_with("[FIRING") && text.contains(&format!("] {alert}")))
                .count(),
            resolved: self
                .slack
                .iter()
                .filter(|text| text.starts_with(&format!("[RESOLVED] {alert}")))
                .count(),
        }
    }

    /// Triggers whose summary names `alert`, and the resolves of their dedup keys (a resolve has no payload).
    fn pagerduty(&self, alert: &str) -> Count {
        let keys: Vec<&Value> = self
            .pagerduty
            .iter()
            .filter(|body| {
                body["event_action"] == "trigger"
                    && body["payload"]["summary"]
                        .as_str()
                        .is_some_and(|summary| summary.contains(alert))
            })
            .map(|body| &body["dedup_key"])
            .collect();
        Count {
            firing: keys.len(),
            resolved: self
                .pagerduty
                .iter()
                .filter(|body| {
                    body["event_action"] == "resolve" && keys.contains(&&body["dedup_key"])
                })
                .count(),
        }
    }

    fn email(&self, alert: &str) -> Count {
        Count {
            firing: self
                .mail
                .iter()
                .filter(|subject| {
                    subject.starts_with("[FIRING") && subject.contains(&format!("] {alert}"))
                })
                .count(),
            resolved: self
                .mail
                .iter()
                .filter(|subject| subject.starts_with(&format!("[RESOLVED] {alert}")))
                .count(),
        }
    }
}

/// The channels the seed names for an alert.
#[derive(Debug, Clone, Copy)]
struct Channels {
    slack: bool,
    pagerduty: bool,
    email: bool,
}

/// One daemon with the derived rules and routing, watching the targets of one case, with its own receiver
/// bucket and mail recipient.
struct Case {
    dir: tempfile::TempDir,
    daemon: Process,
    base: String,
    bucket: String,
    recipient: String,
    client: reqwest::Client,
}

impl Case {
    fn start(name: &str, targets: &str) -> Case {
        let dir = tempfile::tempdir().expect("temp dir");
        let bucket = unique(name);
        let recipient = format!("{bucket}@example.com");
        std::fs::write(dir.path().join("fleet.yml"), test_rules()).expect("write the rules");
        std::fs::write(
            dir.path().join("routing.yml"),
            test_routing(&bucket, &recipient),
        )
        .expect("write the routing");
        // 2 s polls with a 1.5 s deadline: a loaded machine must not turn a live target down.
        let config = format!(
            "\
global:
  interval: 2s
  timeout: 1500ms
  evaluation_interval: 1s
rule_files: [fleet.yml]
alerting:
  config_file: routing.yml
targets:
{targets}"
        );
        let config_path = dir.path().join("dbwatch.yml");
        std::fs::write(&config_path, config).expect("write the config");
        let log = std::fs::File::create(dir.path().join("dbwatch.log")).expect("create the log");
        let port = free_port();
        let child = Command::new(env!("CARGO_BIN_EXE_dbwatch"))
            .arg("--config.file")
            .arg(&config_path)
            .arg("--web.listen-address")
            .arg(format!("127.0.0.1:{port}"))
            .arg("--storage.path")
            .arg(dir.path().join("data"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start dbwatch");
        Case {
            dir,
            daemon: Process(child),
            base: format!("http://127.0.0.1:{port}"),
            bucket,
            recipient,
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(5))
                .build()
                .expect("http client"),
        }
    }

    /// The end of the daemon's log, for failure messages.
    fn log_tail(&self) -> String {
        let log = read(&self.dir.path().join("dbwatch.log"));
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    fn check_alive(&mut self) {
        if let Some(status) = self.daemon.exited() {
            panic!("dbwatch exited early: {status}\n{}", self.log_tail());
        }
    }

    async fn metrics(&self) -> Option<HashMap<String, f64>> {
        let response = self
            .client
            .get(format!("{}/metrics", self.base))
            .send()
            .await
            .ok()?;
        if !response.status().is_success() {
            return None;
        }
        Some(parse(&response.text().await.ok()?))
    }

    /// Polls /metrics until `done` holds.
    async fn wait_metrics(
        &mut self,
        what: &str,
        timeout: Duration,
        done: impl Fn(&HashMap<String, f64>) -> bool,
    ) {
        let deadline = Instant::now() + timeout;
        loop {
            self.check_alive();
            if self.metrics().await.is_some_and(|metrics| done(&metrics)) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "timed out after {timeout:?} waiting for {what}\n{}",
                self.log_tail()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    async fn received(&self) -> Received {
        let url = format!("{}/_requests/{}", env("DBWATCH_RECEIVERS_URL"), self.bucket);
        let body = match self.client.get(&url).send().await {
            Ok(response) if response.status().is_success() => response.text().await.ok(),
            _ => None,
        }
        .unwrap_or_else(|| {
            panic!(
                "the local receivers do not answer at {url}: run `deploy/local/fleet up receivers`"
            )
        });
        let requests: Vec<Value> =
            serde_json::from_str(&body).expect("the receivers answer a JSON list");
        let mut received = Received {
            mail: mail_subjects(&self.recipient),
            ..Received::default()
        };
        for request in requests {
            if request["valid"] != true {
                received.invalid.push(request.clone());
            }
            match request["kind"].as_str() {
                Some("slack") => received.slack.push(
                    request["body"]["text"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned(),
                ),
                Some("pagerduty") => received.pagerduty.push(request["body"].clone()),
                _ => received.invalid.push(request),
            }
        }
        received
    }

    /// Polls the channels until `done` holds; returns what arrived.
    async fn wait_received(&mut self, what: &str, done: impl Fn(&Received) -> bool) -> Received {
        let deadline = Instant::now() + NOTIFY_WITHIN;
        loop {
            self.check_alive();
            let received = self.received().await;
            assert!(
                received.invalid.is_empty(),
                "invalid payloads: {:#?}",
                received.invalid
            );
            if done(&received) {
                return received;
            }
            assert!(
                Instant::now() < deadline,
                "timed out after {NOTIFY_WITHIN:?} waiting for {what}; received {received:#?}\n{}",
                self.log_tail()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

fn counts(received: &Received, alert: &str) -> [(&'static str, Count); 3] {
    [
        ("slack", received.slack(alert)),
        ("pagerduty", received.pagerduty(alert)),
        ("email", received.email(alert)),
    ]
}

fn wanted(channels: Channels) -> [(&'static str, bool); 3] {
    [
        ("slack", channels.slack),
        ("pagerduty", channels.pagerduty),
        ("email", channels.email),
    ]
}

/// The notifications of `alert` went to exactly `channels`, and nothing paged unless PagerDuty is one of them.
fn assert_only(received: &Received, alert: &str, channels: Channels) {
    for ((channel, count), (_, expected)) in
        counts(received, alert).into_iter().zip(wanted(channels))
    {
        if !expected {
            assert_eq!(
                count,
                Count::default(),
                "{alert} reached {channel}: {received:#?}"
            );
        }
    }
    if !channels.pagerduty {
        assert!(
            received.pagerduty.is_empty(),
            "something paged: {received:#?}"
        );
    }
}

/// One case: a daemon watching `target` (YAML of one target named `name`), the fault started, `alert` reaching
/// exactly `channels`, the fault cleared, the resolve arriving on the same channels. Prints the timings.
async fn fault_case(
    alert: &str,
    kind: &str,
    name: &str,
    target: &str,
    fault: Injection,
    channels: Channels,
) {
    let mut case = Case::start(&format!("{alert}-{kind}"), target);
    let up = format!("target=\"{name}\"");
    case.wait_metrics(
        &format!("db_up 1 for {name}"),
        Duration::from_secs(60),
        |metrics| find_series(metrics, "db_up", &[&up]) == Some(1.0),
    )
    .await;

    let started = Instant::now();
    let mut fault = Fault::start(fault, case.dir.path());
    let started_for = started.elapsed();
    let expected = wanted(channels);
    let first = case
        .wait_received(&format!("{alert} firing on any channel"), |received| {
            counts(received, alert)
                .iter()
                .any(|(_, count)| count.firing > 0)
        })
        .await;
    let to_first = started.elapsed();
    assert_only(&first, alert, channels);
    let fired = case
        .wait_received(&format!("{alert} firing on {channels:?}"), |received| {
            counts(received, alert)
                .iter()
                .zip(expected)
                .all(|((_, count), (_, wanted))| !wanted || count.firing > 0)
        })
        .await;
    let to_all = started.elapsed();
    assert_only(&fired, alert, channels);

    let clearing = Instant::now();
    fault.clear();
    let resolved = case
        .wait_received(&format!("{alert} resolved on {channels:?}"), |received| {
            counts(received, alert)
                .iter()
                .zip(expected)
                .all(|((_, count), (_, wanted))| !wanted || count.resolved > 0)
        })
        .await;
    let to_resolved = clearing.elapsed();
    assert_only(&resolved, alert, channels);
    println!(
        "e2e {alert} on {kind}: fault start took {:.1}s; fault → first notification {:.1}s, → every channel {:.1}s; \
         clear → resolve on every channel {:.1}s",
        started_for.as_secs_f64(),
        to_first.as_secs_f64(),
        to_all.as_secs_f64(),
        to_resolved.as_secs_f64()
    );
}

fn postgres_target(name: &str, url_var: &str) -> String {
    let (host, port) = host_port(&env(url_var));
    format!(
        "  - name: {name}\n    type: postgres\n    connection: {{host: {host}, port: {port}, user: dbwatch, password: dbwatch}}\n"
    )
}

fn mysql_target(name: &str, url_var: &str) -> String {
    let (host, port) = host_port(&env(url_var));
    format!(
        "  - name: {name}\n    type: mysql\n    connection: {{host: {host}, port: {port}, user: dbwatch, password: dbwatch}}\n"
    )
}

const SLACK_AND_EMAIL: Channels = Channels {
    slack: true,
    pagerduty: false,
    email: true,
};
const PAGERDUTY: Channels = Channels {
    slack: false,
    pagerduty: true,
    email: false,
};
const SLACK: Channels = Channels {
    slack: true,
    pagerduty: false,
    email: false,
};

/// Slow queries on a primary: high_latency → Slack and email, no page.
#[tokio::test]
async fn high_latency_reaches_slack_and_email_and_resolves() {
    let _serial = FAULTS.lock().await;
    fault_case(
        "high_latency",
        "postgres",
        "orders-pg",
        &postgres_target("orders-pg", "DBWATCH_PG_PRIMARY_URL"),
        Injection::Workload(&["slow-queries", "--engine", "postgres"]),
        SLACK_AND_EMAIL,
    )
    .await;
    fault_case(
        "high_latency",
        "mariadb",
        "orders-mariadb",
        &mysql_target("orders-mariadb", "DBWATCH_MYSQL_PRIMARY_URL"),
        Injection::Workload(&["slow-queries", "--engine", "mysql"]),
        SLACK_AND_EMAIL,
    )
    .await;
}

/// Connections held up to 95 % of a primary's maximum: connection_pool_exhausted → PagerDuty only.
#[tokio::test]
async fn connection_pool_exhausted_pages_and_resolves() {
    let _serial = FAULTS.lock().await;
    fault_case(
        "connection_pool_exhausted",
        "postgres",
        "orders-pg",
        &postgres_target("orders-pg", "DBWATCH_PG_PRIMARY_URL"),
        Injection::Workload(&["connections", "--engine", "postgres", "--fraction", "0.95"]),
        PAGERDUTY,
    )
    .await;
    fault_case(
        "connection_pool_exhausted",
        "mariadb",
        "orders-mariadb",
        &mysql_target("orders-mariadb", "DBWATCH_MYSQL_PRIMARY_URL"),
        Injection::Workload(&["connections", "--engine", "mysql", "--fraction", "0.95"]),
        PAGERDUTY,
    )
    .await;
}

/// A replica falling behind while the workload writes on the primaries: replication_lag → Slack only.
/// PostgreSQL: replay paused on the replica; MariaDB: a delayed replica (see `Injection`).
#[tokio::test]
async fn replication_lag_reaches_slack_and_resolves() {
    let _serial = FAULTS.lock().await;
    // Lag needs writes on the primaries: the workload's orders go to MariaDB and, through PgBouncer, to
    // PostgreSQL.
    let log_dir = tempfile::tempdir().expect("temp dir");
    let log = std::fs::File::create(log_dir.path().join("workload.log")).expect("create the log");
    let _workload = Process(
        workload()
            .args([
                "--stores",
                "postgres,mysql",
                "--rate",
                "10",
                "--progress-interval",
                "60s",
            ])
            .stdout(log.try_clone().expect("log handle"))
            .stderr(log)
            .spawn()
            .expect("start the workload"),
    );
    fault_case(
        "replication_lag",
        "postgres",
        "analytics-replica",
        &postgres_target("analytics-replica", "DBWATCH_PG_REPLICA_URL"),
        Injection::Workload(&["replica-lag", "--engine", "postgres"]),
        SLACK,
    )
    .await;
    fault_case(
        "replication_lag",
        "mariadb",
        "orders-replica",
        &mysql_target("orders-replica", "DBWATCH_MYSQL_REPLICA_URL"),
        Injection::Workload(&["replica-lag", "--engine", "mysql", "--delay", "30s"]),
        SLACK,
    )
    .await;
}

/// The three seed alerts on MySQL 8.0 (the fleet's 8.0.31 pair), as on MariaDB above: slow queries, held
/// connections, a delayed replica while the workload's orders flow on the primary.
#[tokio::test]
async fn the_three_seed_alerts_fire_and_resolve_on_mysql_8() {
    let _serial = FAULTS.lock().await;
    fault_case(
        "high_latency",
        "mysql8",
        "orders-mysql8",
        &mysql_target("orders-mysql8", "DBWATCH_MYSQL8_PRIMARY_URL"),
        Injection::Mysql8(&["slow-queries", "--engine", "mysql"]),
        SLACK_AND_EMAIL,
    )
    .await;
    fault_case(
        "connection_pool_exhausted",
        "mysql8",
        "orders-mysql8",
        &mysql_target("orders-mysql8", "DBWATCH_MYSQL8_PRIMARY_URL"),
        Injection::Mysql8(&["connections", "--engine", "mysql", "--fraction", "0.95"]),
        PAGERDUTY,
    )
    .await;
    let log_dir = tempfile::tempdir().expect("temp dir");
    let log = std::fs::File::create(log_dir.path().join("workload.log")).expect("create the log");
    let _workload = Process(
        on_mysql8(&mut workload())
            .args([
                "--stores",
                "mysql",
                "--rate",
                "10",
                "--progress-interval",
                "60s",
            ])
            .stdout(log.try_clone().expect("log handle"))
            .stderr(log)
            .spawn()
            .expect("start the workload"),
    );
    fault_case(
        "replication_lag",
        "mysql8",
        "orders-mysql8-replica",
        &mysql_target("orders-mysql8-replica", "DBWATCH_MYSQL8_REPLICA_URL"),
        Injection::Mysql8(&["replica-lag", "--engine", "mysql", "--delay", "30s"]),
        SLACK,
    )
    .await;
}

/// A target of each kind on a port where nothing listens reads db_up 0, and target_down (critical) pages for
/// each, on PagerDuty only.
#[tokio::test]
async fn a_dead_target_of_each_kind_reads_down_and_pages() {
    let dead = free_port();
    let region = env("AWS_REGION");
    let kinds = ["postgres", "mysql", "mongodb", "cassandra", "dynamodb"];
    let connections = [
        format!("{{host: 127.0.0.1, port: {dead}, user: dbwatch, password: dbwatch}}"),
        format!("{{host: 127.0.0.1, port: {dead}, user: dbwatch, password: dbwatch}}"),
        format!("{{url: \"mongodb://127.0.0.1:{dead}/\"}}"),
        format!("{{contact_points: [\"127.0.0.1:{dead}\"]}}"),
        format!("{{endpoint_url: \"http://127.0.0.1:{dead}\", region: {region}}}"),
    ];
    let targets: String = kinds
        .iter()
        .zip(&connections)
        .map(|(kind, connection)| {
            format!("  - name: down-{kind}\n    type: {kind}\n    connection: {connection}\n")
        })
        .collect();
    let started = Instant::now();
    let mut case = Case::start("target_down", &targets);
    case.wait_metrics(
        "db_up 0 for every dead target",
        Duration::from_secs(60),
        |metrics| {
            kinds.iter().all(|kind| {
                let target = format!("target=\"down-{kind}\"");
                find_series(metrics, "db_up", &[&target]) == Some(0.0)
            })
        },
    )
    .await;
    let received = case
        .wait_received("target_down paged for every dead target", |received| {
            kinds.iter().all(|kind| {
                let target = format!("down-{kind}");
                received.pagerduty.iter().any(|body| {
                    body["event_action"] == "trigger"
                        && body["payload"]["summary"].as_str().is_some_and(|summary| {
                            summary.contains("target_down") && summary.contains(&target)
                        })
                })
            })
        })
        .await;
    assert_only(&received, "target_down", PAGERDUTY);
    println!(
        "e2e target_down on {}: daemon start → every page {:.1}s",
        kinds.join(", "),
        started.elapsed().as_secs_f64()
    );
}
