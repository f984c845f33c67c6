//! The dbwatch binary end to end against the local fleet: isolation of a dead and a silent target, the
//! exposition checked by Prometheus's own linter, and a clean shutdown on SIGTERM.
//!
//! Needs `deploy/local/fleet up postgres` and promtool (Debian's prometheus package); fails without them.

use std::collections::HashMap;
use std::io::Read;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tokio::time::Instant;

#[path = "support/exposition.rs"]
mod exposition;
use exposition::{find_series, parse};
#[path = "support/fleet.rs"]
mod fleet;
#[path = "support/promtool.rs"]
mod promtool;
use fleet::{connection, env, free_port, host_port};

struct Daemon {
    child: Child,
    base: String,
    _dir: Option<tempfile::TempDir>,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_daemon(config: &str) -> Daemon {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut daemon = start_daemon_in(dir.path(), config);
    daemon._dir = Some(dir);
    daemon
}

/// Starts dbwatch with its configuration and storage folder in `dir`, which outlives the process.
fn start_daemon_in(dir: &Path, config: &str) -> Daemon {
    let path = dir.join("dbwatch.yml");
    std::fs::write(&path, config).expect("write config");
    let port = free_port();
    let child = Command::new(env!("CARGO_BIN_EXE_dbwatch"))
        .arg("--config.file")
        .arg(&path)
        .arg("--web.listen-address")
        .arg(format!("127.0.0.1:{port}"))
        .arg("--storage.path")
        .arg(dir.join("data"))
        .env("DBWATCH_TEST_PASSWORD", "dbwatch")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start dbwatch");
    Daemon {
        child,
        base: format!("http://127.0.0.1:{port}"),
        _dir: None,
    }
}

async fn get(client: &reqwest::Client, url: &str) -> Option<(u16, String)> {
    let response = client.get(url).send().await.ok()?;
    let status = response.status().as_u16();
    Some((status, response.text().await.ok()?))
}

fn series<'a>(metrics: &'a HashMap<String, f64>, name: &str, target: &str) -> Option<&'a f64> {
    let prefix = format!("{name}{{");
    let label = format!("target=\"{target}\"");
    metrics
        .iter()
        .find(|(series, _)| series.starts_with(&prefix) && series.contains(&label))
        .map(|(_, value)| value)
}

#[tokio::test]
async fn dead_and_silent_targets_do_not_delay_the_others() {
    let (pg_host, pg_port) = host_port(&env("DBWATCH_PG_PRIMARY_URL"));
    let (bouncer_host, bouncer_port) = host_port(&env("DBWATCH_PGBOUNCER_URL"));
    // A peer that accepts TCP connections and never says a word: the worst kind of dead database.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let silent_port = silent.local_addr().expect("address").port();
    let mut held = Vec::new();
    let hold = tokio::spawn(async move {
        loop {
            match silent.accept().await {
                Ok((socket, _)) => held.push(socket),
                Err(_) => return,
            }
        }
    });

    let config = format!(
        "\
global:
  interval: 1s
  timeout: 900ms
targets:
  - name: pg-primary
    type: postgres
    connection: {{host: {pg_host}, port: {pg_port}, user: dbwatch, password: '${{DBWATCH_TEST_PASSWORD}}'}}
  - name: pgbouncer
    type: pgbouncer
    connection: {{host: {bouncer_host}, port: {bouncer_port}, user: dbwatch, password: '${{DBWATCH_TEST_PASSWORD}}'}}
  - name: dead
    type: postgres
    connection: {{host: 127.0.0.1, port: 1, user: dbwatch, password: x}}
  - name: silent
    type: postgres
    connection: {{host: 127.0.0.1, port: {silent_port}, user: dbwatch, password: x}}
"
    );
    let mut daemon = start_daemon(&config);
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .expect("http client");

    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some((200, _)) = get(&client, &format!("{}/-/ready", daemon.base)).await {
            break;
        }
        assert!(Instant::now() < deadline, "dbwatch never became ready");
        if let Ok(Some(status)) = daemon.child.try_wait() {
            panic!("dbwatch exited early: {status}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (status, healthy) = get(&client, &format!("{}/-/healthy", daemon.base))
        .await
        .expect("healthy answers");
    assert_eq!((status, healthy.as_str()), (200, "OK\n"));

    let scrape = |client: reqwest::Client, base: String| async move {
        let (status, body) = get(&client, &format!("{base}/metrics"))
            .await
            .expect("scrape");
        assert_eq!(status, 200);
        body
    };
    // Ready means every target published once, up or down; on a loaded machine a first connection can miss a
    // 900 ms deadline, so wait (bounded) for the live targets to read up.
    let up_by = Instant::now() + Duration::from_secs(20);
    let first = loop {
        let metrics = parse(&scrape(client.clone(), daemon.base.clone()).await);
        let live_up = ["pg-primary", "pgbouncer"]
            .iter()
            .all(|target| series(&metrics, "db_up", target) == Some(&1.0));
        if live_up || Instant::now() >= up_by {
            break metrics;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(series(&first, "db_up", "pg-primary"), Some(&1.0));
    assert_eq!(series(&first, "db_up", "pgbouncer"), Some(&1.0));
    assert_eq!(series(&first, "db_up", "dead"), Some(&0.0));
    assert_eq!(series(&first, "db_up", "silent"), Some(&0.0));
    let polls_before = *series(&first, "dbwatch_polls_total", "pg-primary").expect("polls counter");

    // Over the next 5 s the silent target times out poll after poll; the primary keeps its 1 s schedule.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let body = scrape(client.clone(), daemon.base.clone()).await;
    let later = parse(&body);
    let polls_after = *series(&later, "dbwatch_polls_total", "pg-primary").expect("polls counter");
    assert!(
        polls_after - polls_before >= 4.0,
        "the primary polled {} times in 5 s",
        polls_after - polls_before
    );
    // The silent target fails every poll: first cut by the poll deadline, then by the connect timeout, then
    // inside its reconnect backoff; none of that costs the others anything.
    let silent_errors: f64 = later
        .iter()
        .filter(|(series, _)| {
            series.starts_with("dbwatch_poll_errors_total{") && series.contains("target=\"silent\"")
        })
        .map(|(_, value)| *value)
        .sum();
    assert!(
        silent_errors >= 4.0,
        "silent target errors: {silent_errors}"
    );
    assert_eq!(series(&later, "db_up", "silent"), Some(&0.0));
    let connect_errors = later
        .iter()
        .find(|(series, _)| {
            series.starts_with("dbwatch_poll_errors_total{")
                && series.contains("target=\"dead\"")
                && series.contains("kind=\"connect\"")
        })
        .map(|(_, value)| *value)
        .unwrap_or(0.0);
    assert!(
        connect_errors >= 3.0,
        "dead connect errors: {connect_errors}"
    );
    assert!(
        !body.contains("password"),
        "a password-related string leaked into /metrics"
    );

    promtool::check_metrics(&body);

    // SIGTERM: a clean exit, well within the shutdown deadline.
    stop(&mut daemon).await;
    hold.abort();
}

/// Runs Prometheus's own linter on an exposition body.
#[test]
fn check_config_exits_non_zero_on_a_bad_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    let bad = dir.path().join("bad.yml");
    std::fs::write(
        &bad,
        "targets:\n  - name: a\n    type: postgres\n    timeout: soon\n",
    )
    .expect("write");
    let output = Command::new(env!("CARGO_BIN_EXE_dbwatch"))
        .args(["check-config"])
        .arg(&bad)
        .output()
        .expect("run check-config");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("bad.yml:4:14: targets[0].timeout: invalid duration"),
        "{stderr}"
    );

    let good = dir.path().join("good.yml");
    std::fs::write(
        &good,
        "targets:\n  - name: a\n    type: postgres\n    connection: {host: h, user: u}\n",
    )
    .expect("write");
    let output = Command::new(env!("CARGO_BIN_EXE_dbwatch"))
        .args(["check-config"])
        .arg(&good)
        .output()
        .expect("run check-config");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn a_rule_reading_past_the_history_limit_is_refused_by_check_config_but_not_by_rules_check() {
    let dir = tempfile::tempdir().expect("temp dir");
    let rules = dir.path().join("slo.yml");
    std::fs::write(
        &rules,
        "groups:\n  - name: slo\n    rules:\n      - alert: burn_5d\n        expr: avg_over_time(slo_errors_ratio[5d]) > 0.001\n",
    )
    .expect("write rules");
    let config = dir.path().join("dbwatch.yml");
    let write_config = |limit: &str| {
        std::fs::write(
            &config,
            format!("global:\n{limit}rule_files: [slo.yml]\ntargets:\n  - name: a\n    type: postgres\n    connection: {{host: h, user: u}}\n"),
        )
        .expect("write config");
    };
    let run = |args: &[&std::ffi::OsStr]| {
        Command::new(env!("CARGO_BIN_EXE_dbwatch"))
            .args(args)
            .output()
            .expect("run dbwatch")
    };

    write_config("");
    let output = run(&["check-config".as_ref(), config.as_os_str()]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(
        stderr.contains("slo.yml:5:15: groups[0].rules[0].expr (group \"slo\", alert \"burn_5d\"): the expression reads 5d of history"),
        "{stderr}"
    );
    assert!(
        stderr.contains("limit of 3d: raise `global.rule_history_limit`"),
        "{stderr}"
    );

    write_config("  rule_history_limit: 7d\n");
    let output = run(&["check-config".as_ref(), config.as_os_str()]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );

    // The rule file alone is Prometheus's: promtool accepts it, so does `rules check`.
    let output = run(&["rules".as_ref(), "check".as_ref(), rules.as_os_str()]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[tokio::test]
async fn every_engine_is_up_and_its_exposition_passes_promtool() {
    let (pg_host, pg_port) = host_port(&env("DBWATCH_PG_PRIMARY_URL"));
    let config = format!(
        "\
global:
  interval: 5s
  timeout: 4s
targets:
  - name: analytics-primary
    type: postgres
    labels: {{cluster: analytics}}
    connection: {{host: {pg_host}, port: {pg_port}, user: dbwatch, password: '${{DBWATCH_TEST_PASSWORD}}'}}
    collectors: {{top_statements: 5}}
  - name: orders-primary
    type: mysql
    connection: {mysql_primary}
    collectors: {{top_digests: 5}}
  - name: orders-replica
    type: mysql
    connection: {mysql_replica}
  - name: catalog
    type: mongodb
    connection: {mongodb}
  - name: events
    type: cassandra
    connection: {cassandra}
  - name: sessions
    type: dynamodb
    connection: {dynamodb}
",
        mysql_primary = connection("mysql-primary"),
        mysql_replica = connection("mysql-replica"),
        mongodb = connection("mongodb"),
        cassandra = connection("cassandra"),
        dynamodb = connection("dynamodb"),
    );
    let mut daemon = start_daemon(&config);
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .expect("http client");
    let targets = [
        "analytics-primary",
        "orders-primary",
        "orders-replica",
        "catalog",
        "events",
        "sessions",
    ];
    // Every target up at once, polled until that holds or the deadline passes.
    let deadline = Instant::now() + Duration::from_secs(60);
    let (body, metrics) = loop {
        if let Ok(Some(status)) = daemon.child.try_wait() {
            panic!("dbwatch exited early: {status}");
        }
        if let Some((200, body)) = get(&client, &format!("{}/metrics", daemon.base)).await {
            let metrics = parse(&body);
            if targets
                .iter()
                .all(|target| series(&metrics, "db_up", target) == Some(&1.0))
            {
                break (body, metrics);
            }
            if Instant::now() >= deadline {
                let ups: Vec<_> = targets
                    .iter()
                    .map(|target| (target, series(&metrics, "db_up", target)))
                    .collect();
                panic!("not every engine came up within 60 s: {ups:?}");
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    for (target, db) in [
        ("analytics-primary", "postgres"),
        ("orders-primary", "mysql"),
        ("catalog", "mongodb"),
        ("events", "cassandra"),
        ("sessions", "dynamodb"),
    ] {
        let label = format!("db=\"{db}\"");
        let has_own_series = metrics.keys().any(|series| {
            series.contains(&format!("target=\"{target}\""))
                && series.contains(&label)
                && !series.starts_with("db_")
                && !series.starts_with("dbwatch_")
        });
        assert!(has_own_series, "{target} exported no {db} series");
    }
    promtool::check_metrics(&body);
}

/// SIGTERM, then a clean exit within the daemon's 10 s shutdown deadline. Its log, read to the end, has lines
/// and no terminal colour codes: stderr here is a pipe, as under journald or a container runtime.
async fn stop(daemon: &mut Daemon) {
    let pid = daemon.child.id().to_string();
    let killed = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("run kill");
    assert!(killed.success());
    let stopped_by = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = daemon.child.try_wait().expect("wait for dbwatch") {
            break status;
        }
        assert!(
            Instant::now() < stopped_by,
            "dbwatch did not stop within 10 s of SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(status.success(), "dbwatch exited with {status}");
    let mut log = String::new();
    if let Some(mut stderr) = daemon.child.stderr.take() {
        stderr.read_to_string(&mut log).expect("read dbwatch's log");
    }
    assert!(log.lines().count() > 0, "dbwatch logged nothing");
    assert!(
        !log.contains('\u{1b}'),
        "colour codes in a piped log:\n{log}"
    );
}

/// A rule file named by the configuration is evaluated by the running daemon: the alert goes pending, fires
/// after its `for`, shows as `ALERTS`/`ALERTS_FOR_STATE` on /metrics, and a restart restores it firing with its
/// original start time instead of starting it over.
#[tokio::test]
async fn a_rule_fires_through_the_daemon_and_survives_a_restart() {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(
        dir.path().join("rules.yml"),
        "\
groups:
  - name: availability
    interval: 1s
    rules:
      - alert: target_down
        expr: db_up == 0
        for: 3s
        labels: {severity: critical}
        annotations: {summary: '{{ $labels.target }} is down'}
",
    )
    .expect("write rules");
    let config = "\
global:
  interval: 1s
  timeout: 900ms
rule_files: [rules.yml]
targets:
  - name: dead
    type: postgres
    connection: {host: 127.0.0.1, port: 1, user: dbwatch, password: x}
";
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .expect("http client");
    let firing = [
        r#"alertname="target_down""#,
        r#"alertstate="firing""#,
        r#"target="dead""#,
    ];
    let pending = [
        r#"alertname="target_down""#,
        r#"alertstate="pending""#,
        r#"target="dead""#,
    ];
    let for_state = [r#"alertname="target_down""#, r#"target="dead""#];

    let mut daemon = start_daemon_in(dir.path(), config);
    let mut saw_pending = false;
    let deadline = Instant::now() + Duration::from_secs(30);
    let active_at = loop {
        if let Some((200, body)) = get(&client, &format!("{}/metrics", daemon.base)).await {
            let metrics = parse(&body);
            saw_pending |= find_series(&metrics, "ALERTS", &pending) == Some(1.0);
            if find_series(&metrics, "ALERTS", &firing) == Some(1.0) {
                let active_at = find_series(&metrics, "ALERTS_FOR_STATE", &for_state)
                    .expect("ALERTS_FOR_STATE");
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .expect("clock after 1970")
                    .as_secs_f64();
                assert!(
                    now - active_at >= 3.0,
                    "fired {:.1}s after becoming active, before its for: 3s",
                    now - active_at
                );
                promtool::check_metrics(&body);
                break active_at;
            }
        }
        assert!(Instant::now() < deadline, "target_down never fired");
        if let Ok(Some(status)) = daemon.child.try_wait() {
            panic!("dbwatch exited early: {status}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(
        saw_pending,
        "the alert fired without being seen pending first"
    );
    stop(&mut daemon).await;
    assert!(
        dir.path().join("data/alerts.json").is_file(),
        "no alert state written"
    );

    let mut restarted = start_daemon_in(dir.path(), config);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some((200, body)) = get(&client, &format!("{}/metrics", restarted.base)).await {
            let metrics = parse(&body);
            assert_ne!(
                find_series(&metrics, "ALERTS", &pending),
                Some(1.0),
                "the restored alert started over as pending"
            );
            if find_series(&metrics, "ALERTS", &firing) == Some(1.0) {
                assert_eq!(
                    find_series(&metrics, "ALERTS_FOR_STATE", &for_state),
                    Some(active_at)
                );
                break;
            }
        }
        assert!(
            Instant::now() < deadline,
            "the restored alert never showed firing"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop(&mut restarted).await;
}

/// The requests the local receivers (deploy/local/receivers) recorded in `bucket`, in arrival order.
async fn received(client: &reqwest::Client, bucket: &str) -> Vec<serde_json::Value> {
    let url = format!("{}/_requests/{bucket}", env("DBWATCH_RECEIVERS_URL"));
    let Some((200, body)) = get(client, &url).await else {
        panic!("the local receivers do not answer at {url}: run `deploy/local/fleet up receivers`");
    };
    serde_json::from_str(&body).expect("the receivers answer a JSON list")
}

/// The whole path inside the real daemon: a rule file and a routing file named by the configuration, a target
/// that goes down, the alert routed to PagerDuty (critical, `continue`) and Slack, both payloads valid for the
/// published formats; after the target is fixed and the daemon restarted, both get the resolve, PagerDuty on the
/// same `dedup_key`.
#[tokio::test]
async fn a_firing_alert_is_routed_to_slack_and_pagerduty_and_resolves_after_a_restart() {
    let receivers = env("DBWATCH_RECEIVERS_URL");
    let (pg_host, pg_port) = host_port(&env("DBWATCH_PG_PRIMARY_URL"));
    let dir = tempfile::tempdir().expect("temp dir");
    let bucket = format!("daemon-{}", std::process::id());
    std::fs::write(
        dir.path().join("rules.yml"),
        "\
groups:
  - name: availability
    interval: 1s
    rules:
      - alert: target_down
        expr: db_up == 0
        labels: {severity: critical}
        annotations: {summary: '{{ $labels.target }} does not answer'}
",
    )
    .expect("write rules");
    std::fs::write(
        dir.path().join("routing.yml"),
        format!(
            "\
route:
  receiver: slack
  group_by: [alertname, target]
  group_wait: 0s
  group_interval: 1s
  routes:
    - receiver: pagerduty
      matchers: ['severity=\"critical\"']
      continue: true
    # Alertmanager's semantics: the parent only takes alerts no child matched, so Slack needs its own route.
    - receiver: slack
receivers:
  - name: slack
    slack_configs:
      - api_url: {receivers}/slack/{bucket}
        send_resolved: true
  - name: pagerduty
    pagerduty_configs:
      - routing_key: 0123456789abcdef0123456789abcdef
        url: {receivers}/pagerduty/{bucket}/v2/enqueue
"
        ),
    )
    .expect("write routing");
    let config = |port: &str| {
        format!(
            "\
global:
  interval: 1s
  timeout: 900ms
rule_files: [rules.yml]
alerting:
  config_file: routing.yml
targets:
  - name: billing
    type: postgres
    connection: {{host: {pg_host}, port: {port}, user: dbwatch, password: '${{DBWATCH_TEST_PASSWORD}}'}}
"
        )
    };
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .expect("http client");
    let of_kind = |requests: &[serde_json::Value], kind: &str| -> Vec<serde_json::Value> {
        requests
            .iter()
            .filter(|request| request["kind"] == kind)
            .cloned()
            .collect()
    };

    // Down: the target points at a closed port.
    let mut daemon = start_daemon_in(dir.path(), &config("1"));
    let deadline = Instant::now() + Duration::from_secs(30);
    let (slack, pagerduty) = loop {
        let requests = received(&client, &bucket).await;
        let (slack, pagerduty) = (of_kind(&requests, "slack"), of_kind(&requests, "pagerduty"));
        if !slack.is_empty() && !pagerduty.is_empty() {
            break (slack, pagerduty);
        }
        assert!(
            Instant::now() < deadline,
            "no notification within 30 s: {requests:?}"
        );
        if let Ok(Some(status)) = daemon.child.try_wait() {
            panic!("dbwatch exited early: {status}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    for request in slack.iter().chain(&pagerduty) {
        assert_eq!(request["valid"], true, "an invalid payload: {request}");
    }
    let text = slack[0]["body"]["text"].as_str().unwrap_or_default();
    assert!(text.starts_with("[FIRING:1] target_down"), "{text}");
    let trigger = &pagerduty[0]["body"];
    assert_eq!(trigger["event_action"], "trigger");
    assert_eq!(trigger["payload"]["severity"], "critical");
    let summary = trigger["payload"]["summary"].as_str().unwrap_or_default();
    assert!(summary.contains("target_down"), "{summary}");
    let dedup_key = trigger["dedup_key"]
        .as_str()
        .expect("a dedup_key")
        .to_owned();
    stop(&mut daemon).await;

    // Fixed: the same target now points at the real primary; the restored alert resolves.
    let mut fixed = start_daemon_in(dir.path(), &config(&pg_port));
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let requests = received(&client, &bucket).await;
        let slack_resolved = of_kind(&requests, "slack").iter().any(|request| {
            request["body"]["text"]
                .as_str()
                .is_some_and(|text| text.starts_with("[RESOLVED] target_down"))
        });
        let pagerduty = of_kind(&requests, "pagerduty");
        let resolves: Vec<_> = pagerduty
            .iter()
            .filter(|request| request["body"]["event_action"] == "resolve")
            .collect();
        if slack_resolved && !resolves.is_empty() {
            assert!(resolves
                .iter()
                .all(|request| request["body"]["dedup_key"] == dedup_key.as_str()));
            let triggers = pagerduty
                .iter()
                .filter(|request| request["body"]["event_action"] == "trigger")
                .count();
            assert_eq!(triggers, 1, "the restart paged again: {pagerduty:?}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no resolve within 30 s: {requests:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop(&mut fixed).await;
}
