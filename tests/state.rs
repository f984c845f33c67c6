//! State files that recover without lying, against the real daemon: a page fires for a PostgreSQL target that
//! cannot be reached, dbwatch stops, its `alerts.json` is truncated, and the restarted daemon must start, keep
//! the bad file aside, count it, send no resolve while the database is still unreachable (the alert is back
//! *pending*, its `for` running again), and send the resolve once the database answers.
//!
//! The fault is a closed port: the target points at a loopback port where, once the fault is cleared, a TCP
//! relay to the fleet's PostgreSQL primary starts listening. Notifications go to the fleet's webhook receiver.
//!
//! Needs `deploy/local/fleet up postgres receivers` and its `env` (make test does both); fails without them.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;
use tokio::time::Instant;

#[path = "support/fleet.rs"]
mod fleet;
#[path = "support/receivers.rs"]
mod receivers;
use fleet::{env, free_port, host_port, Process};
use receivers::Receivers;

/// The `status` of every webhook body that reached this test's bucket so far ("firing" or "resolved"), each
/// checked valid against Alertmanager's webhook format.
async fn statuses(receivers: &Receivers) -> Vec<String> {
    receivers
        .requests()
        .await
        .iter()
        .map(|request| {
            assert_eq!(request["valid"], true, "{request}");
            request["body"]["status"].as_str().unwrap_or("?").to_owned()
        })
        .collect()
}

struct Daemon {
    process: Process,
    base: String,
    log: PathBuf,
}

impl Daemon {
    fn start(dir: &Path, run: usize) -> Daemon {
        let port = free_port();
        let log = dir.join(format!("dbwatch-{run}.log"));
        let child = Command::new(env!("CARGO_BIN_EXE_dbwatch"))
            .arg("--config.file")
            .arg(dir.join("dbwatch.yml"))
            .arg("--web.listen-address")
            .arg(format!("127.0.0.1:{port}"))
            .arg("--storage.path")
            .arg(dir.join("data"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log"))
            .spawn()
            .expect("start dbwatch");
        Daemon {
            process: Process(child),
            base: format!("http://127.0.0.1:{port}"),
            log,
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGTERM, then the exit; the daemon saves its state on the way out.
    async fn stop(mut self) {
        let pid = self.process.0.id().to_string();
        let status = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill");
        assert!(status.success());
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(status) = self.process.exited() {
                assert!(status.success(), "{status}\n{}", self.log());
                return;
            }
            assert!(Instant::now() < deadline, "no exit after SIGTERM");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Polls `check` every 200 ms until it returns `Some`, failing after `timeout` with `what` and the daemon's log.
async fn wait_for<T, F, Fut>(daemon: &mut Daemon, what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = daemon.process.exited() {
            panic!(
                "dbwatch exited ({status}) waiting for {what}\n{}",
                daemon.log()
            );
        }
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}\n{}",
            daemon.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn firing_alert(metrics: &str) -> bool {
    metrics.lines().any(|line| {
        line.starts_with("ALERTS{")
            && line.contains("alertname=\"closed_target_down\"")
            && line.contains("alertstate=\"firing\"")
    })
}

fn corrupt_copies(data: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(data)
        .expect("read data")
        .filter_map(|entry| entry.ok().map(|entry| entry.path()))
        .filter(|path| {
            path.file_name()
                .is_some_and(|name| name.to_string_lossy().starts_with("alerts.json.corrupt-"))
        })
        .collect()
}

/// Starts relaying `port` to the fleet's PostgreSQL primary: the fault is cleared.
async fn relay_to_postgres(port: u16) -> tokio::task::JoinHandle<()> {
    let (host, pg_port) = host_port(&env("DBWATCH_PG_PRIMARY_URL"));
    let upstream = format!("{host}:{pg_port}");
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .expect("the target's port is free again");
    tokio::spawn(async move {
        loop {
            let Ok((mut inbound, _)) = listener.accept().await else {
                return;
            };
            let upstream = upstream.clone();
            tokio::spawn(async move {
                if let Ok(mut outbound) = tokio::net::TcpStream::connect(&upstream).await {
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                }
            });
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_truncated_alerts_json_neither_stops_the_daemon_nor_resolves_a_page_still_broken() {
    let dir = tempfile::tempdir().expect("temp dir");
    let webhook = Receivers::new("state", &[], "ok").await;
    // Nothing listens here until the fault is cleared: connection refused, db_up 0.
    let target_port = free_port();
    std::fs::write(
        dir.path().join("rules.yml"),
        "groups:\n  - name: state\n    rules:\n      - alert: closed_target_down\n        expr: db_up == 0\n        for: 30s\n",
    )
    .expect("rules");
    std::fs::write(
        dir.path().join("routing.yml"),
        format!(
            "route:\n  receiver: hook\n  group_by: [alertname]\n  group_wait: 0s\n  group_interval: 1s\n  repeat_interval: 4h\nreceivers:\n  - name: hook\n    webhook_configs:\n      - url: {}\n",
            webhook.url("webhook")
        ),
    )
    .expect("routing");
    std::fs::write(
        dir.path().join("dbwatch.yml"),
        format!(
            "\
global:
  interval: 1s
  timeout: 900ms
  evaluation_interval: 1s
rule_files: [rules.yml]
alerting:
  config_file: routing.yml
targets:
  - name: pg
    type: postgres
    connection: {{host: 127.0.0.1, port: {target_port}, user: dbwatch, password: dbwatch, database: postgres}}
"
        ),
    )
    .expect("config");
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .expect("client");
    let data = dir.path().join("data");

    // 1. The page goes out after `for`.
    let mut daemon = Daemon::start(dir.path(), 1);
    wait_for(
        &mut daemon,
        "the firing webhook",
        Duration::from_secs(90),
        || async {
            let statuses = statuses(&webhook).await;
            (!statuses.is_empty()).then_some(())
        },
    )
    .await;
    assert_eq!(statuses(&webhook).await, ["firing"]);
    daemon.stop().await;

    // 2. While dbwatch is down its alert state is torn; the notification log says the page was sent.
    let notifications: Value = serde_json::from_slice(
        &std::fs::read(data.join("notifications.json")).expect("notifications.json"),
    )
    .expect("notifications.json is JSON");
    assert_eq!(
        notifications["log"].as_object().map(|log| log.len()),
        Some(1),
        "{notifications}"
    );
    let alerts = std::fs::read(data.join("alerts.json")).expect("alerts.json");
    let truncated = &alerts[..alerts.len() / 2];
    std::fs::write(data.join("alerts.json"), truncated).expect("truncate");

    // 3. It starts anyway, keeps the bad file aside and counts it.
    let restarted_at = Instant::now();
    let mut daemon = Daemon::start(dir.path(), 2);
    let base = daemon.base.clone();
    wait_for(&mut daemon, "/-/ready", Duration::from_secs(30), || async {
        (get(&client, &base, "/-/ready").await?.0 == 200).then_some(())
    })
    .await;
    println!("ready {:?} after the restart", restarted_at.elapsed());
    let kept = corrupt_copies(&data);
    assert_eq!(kept.len(), 1, "{kept:?}");
    assert_eq!(std::fs::read(&kept[0]).expect("kept"), truncated);
    let (_, metrics) = get(&client, &base, "/metrics").await.expect("metrics");
    assert!(
        metrics
            .lines()
            .any(|line| line == "dbwatch_state_file_corruptions_total{file=\"alerts.json\"} 1"),
        "{}",
        metrics
            .lines()
            .filter(|line| line.contains("corruptions"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(daemon.log().contains("state file is corrupt; moved aside"));

    // 4. The alert is pending again for 30 s: no resolve may reach the receiver until the engine fires it again
    //    (and that re-fire is no new page: the receiver was told already).
    let pending_since = Instant::now();
    wait_for(
        &mut daemon,
        "the alert to fire again, with no resolve sent meanwhile",
        Duration::from_secs(90),
        || async {
            let statuses = statuses(&webhook).await;
            assert_eq!(
                statuses,
                ["firing"],
                "a resolve (or a second page) while the target is still down"
            );
            let (_, metrics) = get(&client, &base, "/metrics").await?;
            firing_alert(&metrics).then_some(())
        },
    )
    .await;
    println!(
        "fired again {:?} after the restart",
        pending_since.elapsed()
    );

    // 5. The database answers: now, and only now, the resolve goes out.
    let relay = relay_to_postgres(target_port).await;
    let cleared_at = Instant::now();
    wait_for(
        &mut daemon,
        "the resolve",
        Duration::from_secs(60),
        || async {
            let statuses = statuses(&webhook).await;
            (statuses.len() > 1).then_some(())
        },
    )
    .await;
    println!(
        "resolved {:?} after the fault was cleared",
        cleared_at.elapsed()
    );
    assert_eq!(statuses(&webhook).await, ["firing", "resolved"]);
    relay.abort();
}

async fn get(client: &reqwest::Client, base: &str, path: &str) -> Option<(u16, String)> {
    let response = client.get(format!("{base}{path}")).send().await.ok()?;
    let status = response.status().as_u16();
    Some((status, response.text().await.ok()?))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_corrupt_state_file_is_kept_aside_counted_and_the_daemon_starts() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("data");
    std::fs::create_dir(&data).expect("mkdir");
    // Torn, empty, and well-formed JSON of the wrong shape: each is unusable as its part of the state.
    let bad: [(&str, &[u8]); 3] = [
        ("alerts.json", b"{\"version\": 1, \"saved_at\": 17"),
        ("notifications.json", b""),
        ("silences.json", b"{\"not\": \"a list\"}"),
    ];
    for (name, bytes) in bad {
        std::fs::write(data.join(name), bytes).expect("write");
    }
    std::fs::write(
        dir.path().join("rules.yml"),
        "groups:\n  - name: state\n    rules:\n      - alert: never\n        expr: vector(0) > 1\n",
    )
    .expect("rules");
    std::fs::write(
        dir.path().join("routing.yml"),
        "route:\n  receiver: none\nreceivers:\n  - name: none\n",
    )
    .expect("routing");
    std::fs::write(
        dir.path().join("dbwatch.yml"),
        "global:\n  evaluation_interval: 1s\nrule_files: [rules.yml]\nalerting:\n  config_file: routing.yml\ntargets:\n  - name: closed\n    type: postgres\n    connection: {host: 127.0.0.1, port: 1, user: dbwatch, password: x}\n",
    )
    .expect("config");
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .expect("client");
    let mut daemon = Daemon::start(dir.path(), 1);
    let base = daemon.base.clone();
    wait_for(&mut daemon, "/-/ready", Duration::from_secs(30), || async {
        (get(&client, &base, "/-/ready").await?.0 == 200).then_some(())
    })
    .await;
    let (_, metrics) = get(&client, &base, "/metrics").await.expect("metrics");
    // The silences API answers, with no silences.
    let (status, silences) = get(&client, &base, "/api/v2/silences")
        .await
        .expect("silences");
    assert_eq!((status, silences.trim()), (200, "[]"));
    for (name, bytes) in bad {
        let series = format!("dbwatch_state_file_corruptions_total{{file=\"{name}\"}} 1");
        assert!(metrics.lines().any(|line| line == series), "{series}");
        let kept: Vec<PathBuf> = std::fs::read_dir(&data)
            .expect("read data")
            .filter_map(|entry| entry.ok().map(|entry| entry.path()))
            .filter(|path| {
                path.file_name().is_some_and(|file| {
                    file.to_string_lossy()
                        .starts_with(&format!("{name}.corrupt-"))
                })
            })
            .collect();
        assert_eq!(kept.len(), 1, "{name}: {kept:?}");
        assert_eq!(std::fs::read(&kept[0]).expect("kept"), bytes, "{name}");
    }
    daemon.stop().await;
}
