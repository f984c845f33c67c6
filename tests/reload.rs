//! Reloading the configuration of the running daemon (SIGHUP and `POST /-/reload`) against the local fleet:
//! what did not change keeps running as it was, proved by the servers' own views (PostgreSQL's
//! `pg_stat_activity`), by the timing of a pending alert and by what the local receivers got; a broken file
//! changes nothing and says where it is broken.
//!
//! Needs `deploy/local/fleet up postgres receivers` and its `env`; fails without them.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::Value;
use tokio::time::Instant;

#[path = "support/exposition.rs"]
mod exposition;
use exposition::parse;
#[path = "support/fleet.rs"]
mod fleet;
use fleet::{env, free_port, host_port, Process};

/// How long the alert under test stays pending before it fires.
const FOR: Duration = Duration::from_secs(20);

/// A target on the fleet's primary, on its own database so that its session can be told from the others';
/// `password` is the YAML of the password key.
fn pg_target(name: &str, database: &str, extra: &str, password: &str) -> String {
    let (host, port) = host_port(&env("DBWATCH_PG_PRIMARY_URL"));
    format!(
        "  - name: {name}\n    type: postgres\n{extra}    connection: {{host: {host}, port: {port}, user: dbwatch, database: {database}, {password}}}\n"
    )
}

const PASSWORD: &str = "password: dbwatch";

fn config(targets: &[String]) -> String {
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
{}",
        targets.concat()
    )
}

/// `kept_pending` goes pending as soon as the `kept` target is up and fires [`FOR`] later; `edited` fires at
/// once, and its threshold is what the reload edits.
fn rules(threshold: &str) -> String {
    format!(
        "\
groups:
  - name: reload
    rules:
      - alert: kept_pending
        expr: db_up{{target=\"kept\"}} == 1
        for: {for_}s
      - alert: edited
        expr: db_up{{target=\"kept\"}} > {threshold}
        labels:
          severity: page
",
        for_ = FOR.as_secs()
    )
}

fn routing(bucket: &str) -> String {
    format!(
        "\
route:
  receiver: hook
  group_by: [alertname]
  group_wait: 0s
  group_interval: 1s
  repeat_interval: 1h
receivers:
  - name: hook
    webhook_configs:
      - url: {}/webhook/{bucket}
",
        env("DBWATCH_RECEIVERS_URL")
    )
}

fn unique(purpose: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_nanos());
    format!("reload-{purpose}-{}-{nanos}", std::process::id())
}

struct Daemon {
    process: Process,
    dir: PathBuf,
    base: String,
    client: reqwest::Client,
}

impl Daemon {
    fn start(dir: &Path, writes: bool) -> Daemon {
        let log = std::fs::File::create(dir.join("dbwatch.log")).expect("create the log");
        let port = free_port();
        let mut command = Command::new(env!("CARGO_BIN_EXE_dbwatch"));
        command
            .arg("--config.file")
            .arg(dir.join("dbwatch.yml"))
            .arg("--web.listen-address")
            .arg(format!("127.0.0.1:{port}"))
            .arg("--storage.path")
            .arg(dir.join("data"))
            .stdout(Stdio::null())
            .stderr(log);
        if writes {
            command.arg("--web.enable-unauthenticated-writes");
        }
        Daemon {
            process: Process(command.spawn().expect("start dbwatch")),
            dir: dir.to_owned(),
            base: format!("http://127.0.0.1:{port}"),
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(40))
                .build()
                .expect("http client"),
        }
    }

    fn pid(&self) -> u32 {
        self.process.0.id()
    }

    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.dir.join("dbwatch.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    fn check_alive(&mut self) {
        if let Some(status) = self.process.exited() {
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

    /// Polls /metrics until `done` holds; returns those metrics.
    async fn wait_metrics(
        &mut self,
        what: &str,
        timeout: Duration,
        done: impl Fn(&HashMap<String, f64>) -> bool,
    ) -> HashMap<String, f64> {
        let deadline = Instant::now() + timeout;
        loop {
            self.check_alive();
            if let Some(metrics) = self.metrics().await {
                if done(&metrics) {
                    return metrics;
                }
            }
            assert!(
                Instant::now() < deadline,
                "timed out after {timeout:?} waiting for {what}\n{}",
                self.log_tail()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn post_reload(&self) -> (u16, String) {
        let response = self
            .client
            .post(format!("{}/-/reload", self.base))
            .send()
            .await
            .expect("POST /-/reload answers");
        let status = response.status().as_u16();
        (status, response.text().await.unwrap_or_default())
    }

    fn sighup(&self) {
        let status = Command::new("kill")
            .arg("-HUP")
            .arg(self.pid().to_string())
            .status()
            .expect("run kill");
        assert!(status.success());
    }

    /// The local TCP ports of this daemon's sockets, from its own file descriptors: what PostgreSQL sees as
    /// the client port of each of its sessions.
    fn local_ports(&self) -> BTreeSet<u16> {
        let pid = self.pid();
        let mut inodes = BTreeSet::new();
        if let Ok(entries) = std::fs::read_dir(format!("/proc/{pid}/fd")) {
            for entry in entries.flatten() {
                if let Ok(link) = std::fs::read_link(entry.path()) {
                    let link = link.to_string_lossy().into_owned();
                    if let Some(inode) = link
                        .strip_prefix("socket:[")
                        .and_then(|rest| rest.strip_suffix(']'))
                    {
                        inodes.insert(inode.to_owned());
                    }
                }
            }
        }
        let mut ports = BTreeSet::new();
        for table in ["tcp", "tcp6"] {
            let text =
                std::fs::read_to_string(format!("/proc/{pid}/net/{table}")).unwrap_or_default();
            for line in text.lines().skip(1) {
                let fields: Vec<&str> = line.split_whitespace().collect();
                let (Some(local), Some(inode)) = (fields.get(1), fields.get(9)) else {
                    continue;
                };
                if !inodes.contains(*inode) {
                    continue;
                }
                if let Some(port) = local
                    .rsplit_once(':')
                    .and_then(|(_, port)| u16::from_str_radix(port, 16).ok())
                {
                    ports.insert(port);
                }
            }
        }
        ports
    }

    /// The PostgreSQL backend pid of this daemon's session on `database`, as the server reports it
    /// (`pg_stat_activity`, matched by application name, database and this process's client ports).
    fn backend_pid(&self, database: &str) -> Option<i64> {
        let ports = self.local_ports();
        let output = Command::new(format!("{}/psql", env("DBWATCH_PG_BIN")))
            .arg(env("DBWATCH_PG_ADMIN_URL"))
            .args(["-At", "-F", " ", "-c"])
            .arg("SELECT pid, datname, client_port FROM pg_stat_activity WHERE application_name = 'dbwatch' AND usename = 'dbwatch'")
            .output()
            .expect("run psql");
        assert!(
            output.status.success(),
            "psql: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let text = String::from_utf8_lossy(&output.stdout).into_owned();
        let mine: Vec<i64> = text
            .lines()
            .filter_map(|line| {
                let mut fields = line.split(' ');
                let pid = fields.next()?.parse::<i64>().ok()?;
                let datname = fields.next()?;
                let port = fields.next()?.parse::<u16>().ok()?;
                (datname == database && ports.contains(&port)).then_some(pid)
            })
            .collect();
        assert!(mine.len() <= 1, "several sessions on {database}: {mine:?}");
        mine.first().copied()
    }

    async fn wait_backend_pid(&mut self, database: &str) -> i64 {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            self.check_alive();
            if let Some(pid) = self.backend_pid(database) {
                return pid;
            }
            assert!(
                Instant::now() < deadline,
                "no session of this dbwatch on {database}\n{}",
                self.log_tail()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

fn series_value(
    metrics: &HashMap<String, f64>,
    name: &str,
    labels: &[(&str, &str)],
) -> Option<f64> {
    let prefix = format!("{name}{{");
    metrics
        .iter()
        .find(|(series, _)| {
            (series.starts_with(&prefix) || series.as_str() == name)
                && labels
                    .iter()
                    .all(|(label, value)| series.contains(&format!("{label}=\"{value}\"")))
        })
        .map(|(_, value)| *value)
}

fn has_target(metrics: &HashMap<String, f64>, target: &str) -> bool {
    let label = format!("target=\"{target}\"");
    metrics.keys().any(|series| series.contains(&label))
}

fn alert_state(metrics: &HashMap<String, f64>, alert: &str) -> Option<String> {
    let name = format!("alertname=\"{alert}\"");
    metrics
        .keys()
        .filter(|series| series.starts_with("ALERTS{") && series.contains(&name))
        .find_map(|series| {
            let rest = series.split("alertstate=\"").nth(1)?;
            Some(rest.split('"').next()?.to_owned())
        })
}

/// What one webhook bucket received: (status, alertname) of each notification, in order.
async fn received(client: &reqwest::Client, bucket: &str) -> Vec<(String, String)> {
    let url = format!("{}/_requests/{bucket}", env("DBWATCH_RECEIVERS_URL"));
    let body = client
        .get(&url)
        .send()
        .await
        .expect("the local receivers answer")
        .text()
        .await
        .expect("a body");
    let requests: Vec<Value> = serde_json::from_str(&body).expect("a JSON list");
    let mut notifications = Vec::new();
    for request in requests {
        assert_eq!(
            request["valid"], true,
            "invalid webhook payload: {request:#}"
        );
        let status = request["body"]["status"].as_str().unwrap_or("?").to_owned();
        let alertname = request["body"]["groupLabels"]["alertname"]
            .as_str()
            .unwrap_or("?")
            .to_owned();
        notifications.push((status, alertname));
    }
    notifications
}

/// Whether `text` points into `file` at a line: `<...>/file:<line>`.
fn names_line(text: &str, file: &str) -> bool {
    text.match_indices(&format!("{file}:")).any(|(at, found)| {
        text[at + found.len()..]
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_digit())
    })
}

/// Without `--web.enable-unauthenticated-writes` and without users, a reload is a write like any other: refused.
#[tokio::test]
async fn an_unauthenticated_reload_is_refused_like_every_write() {
    let dir = tempfile::tempdir().expect("temp dir");
    let dir = dir.path();
    write(
        dir,
        "dbwatch.yml",
        &format!("targets:\n{}", pg_target("kept", "shop", "", PASSWORD)),
    );
    let mut daemon = Daemon::start(dir, false);
    let before = daemon
        .wait_metrics("the first load counted", Duration::from_secs(20), |m| {
            series_value(m, RELOAD_AT, &[]).is_some()
        })
        .await;
    let (status, body) = daemon.post_reload().await;
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("writes are disabled"), "{body}");
    let after = daemon.metrics().await.expect("metrics");
    assert_eq!(
        series_value(&after, RELOAD_AT, &[]),
        series_value(&before, RELOAD_AT, &[])
    );
    assert_eq!(series_value(&after, RELOAD_OK, &[]), Some(1.0));
}

fn write(dir: &Path, file: &str, text: &str) {
    std::fs::write(dir.join(file), text).expect("write a test file");
}

const RELOAD_OK: &str = "dbwatch_config_last_reload_successful";
const RELOAD_AT: &str = "dbwatch_config_last_reload_success_timestamp_seconds";

#[tokio::test]
async fn a_reload_keeps_what_did_not_change_and_a_broken_one_changes_nothing() {
    let dir = tempfile::tempdir().expect("temp dir");
    let dir = dir.path();
    let first_bucket = unique("first");
    let second_bucket = unique("second");
    let v1_targets = [
        pg_target("kept", "shop", "", PASSWORD),
        pg_target("changed", "postgres", "", PASSWORD),
        pg_target(
            "removed",
            "template1",
            "    labels: {role: leaving}\n",
            PASSWORD,
        ),
    ];
    write(dir, "dbwatch.yml", &config(&v1_targets));
    write(dir, "rules.yml", &rules("0"));
    write(dir, "routing.yml", &routing(&first_bucket));
    let mut daemon = Daemon::start(dir, true);

    // Everything up, `edited` told to the first receiver, `kept_pending` pending.
    let before = daemon
        .wait_metrics(
            "every target up and kept_pending pending",
            Duration::from_secs(30),
            |m| {
                ["kept", "changed", "removed"]
                    .iter()
                    .all(|target| series_value(m, "db_up", &[("target", target)]) == Some(1.0))
                    && alert_state(m, "kept_pending").as_deref() == Some("pending")
                    && alert_state(m, "edited").as_deref() == Some("firing")
            },
        )
        .await;
    assert_eq!(series_value(&before, RELOAD_OK, &[]), Some(1.0));
    let started_at = series_value(&before, RELOAD_AT, &[]).expect("the start counts as a load");
    let active_at = series_value(
        &before,
        "ALERTS_FOR_STATE",
        &[("alertname", "kept_pending")],
    )
    .expect("kept_pending's start time");
    let deadline = Instant::now() + Duration::from_secs(15);
    while received(&daemon.client, &first_bucket).await.is_empty() {
        assert!(
            Instant::now() < deadline,
            "edited never reached the first receiver\n{}",
            daemon.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let kept_pid = daemon.wait_backend_pid("shop").await;
    let changed_pid = daemon.wait_backend_pid("postgres").await;

    // The edit: `changed` polls every 2 s with its password from a file, `removed` goes, `added` comes, the
    // edited rule's threshold moves, and the receiver is another bucket.
    write(dir, "changed-password", "dbwatch\n");
    let password_file = format!(
        "password_file: \"{}\"",
        dir.join("changed-password").display()
    );
    let v2_targets = [
        pg_target("kept", "shop", "", PASSWORD),
        pg_target("changed", "postgres", "    interval: 2s\n", &password_file),
        pg_target("added", "template1", "", PASSWORD),
    ];
    write(dir, "dbwatch.yml", &config(&v2_targets));
    write(dir, "rules.yml", &rules("0.5"));
    write(dir, "routing.yml", &routing(&second_bucket));

    // By SIGHUP, at least 6 s into the pending time: a pending state restarted by the reload would then fire
    // at least 26 s after it became active, a kept one 20 s after (plus an evaluation interval).
    let now_secs = || {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("after 1970")
            .as_secs_f64()
    };
    while now_secs() < active_at + 6.0 {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let reloaded_at = SystemTime::now();
    daemon.sighup();
    let after = daemon
        .wait_metrics("the SIGHUP reload applied", Duration::from_secs(20), |m| {
            series_value(m, RELOAD_AT, &[]).is_some_and(|at| at > started_at)
                && !has_target(m, "removed")
                && series_value(m, "db_up", &[("target", "added")]) == Some(1.0)
        })
        .await;
    assert_eq!(series_value(&after, RELOAD_OK, &[]), Some(1.0));
    assert_eq!(
        series_value(&after, "db_up", &[("target", "kept")]),
        Some(1.0)
    );
    assert_eq!(
        series_value(&after, "ALERTS_FOR_STATE", &[("alertname", "kept_pending")]),
        Some(active_at),
        "the pending alert kept its start time"
    );
    // PostgreSQL's own view: the kept target is still the same session, the changed one a new one.
    assert_eq!(
        daemon.backend_pid("shop"),
        Some(kept_pid),
        "the kept target reconnected"
    );
    daemon
        .wait_metrics(
            "the changed target up with its password file",
            Duration::from_secs(20),
            |m| series_value(m, "db_up", &[("target", "changed")]) == Some(1.0),
        )
        .await;
    let changed_after = daemon.wait_backend_pid("postgres").await;
    assert_ne!(
        changed_after, changed_pid,
        "the changed target kept its old session"
    );

    // The pending alert fires when it would have without the reload: FOR after it became active, not FOR
    // after the reload.
    let fired = daemon
        .wait_metrics("kept_pending firing", FOR + Duration::from_secs(15), |m| {
            alert_state(m, "kept_pending").as_deref() == Some("firing")
        })
        .await;
    let fired_at = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_secs_f64();
    let reload_secs = reloaded_at
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_secs_f64();
    assert!(
        fired_at - active_at < FOR.as_secs_f64() + 3.0,
        "fired {:.1} s after becoming active (for: {FOR:?}); the reload was {:.1} s after",
        fired_at - active_at,
        reload_secs - active_at
    );
    assert!(
        reload_secs - active_at >= 6.0 && reload_secs - active_at < FOR.as_secs_f64(),
        "the test must reload well inside the pending time to tell a kept state from a restarted one"
    );
    assert_eq!(alert_state(&fired, "edited").as_deref(), Some("firing"));

    // The new receiver gets kept_pending once; `edited`, already told, is told to nobody again.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let second = received(&daemon.client, &second_bucket).await;
        if second.iter().any(|(_, alert)| alert == "kept_pending") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "kept_pending never reached the new receiver: {second:?}\n{}",
            daemon.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Broken files, by POST: each refused with where it is broken, nothing changed, the metric at 0.
    let good_config = std::fs::read_to_string(dir.join("dbwatch.yml")).expect("read");
    let good_rules = std::fs::read_to_string(dir.join("rules.yml")).expect("read");
    let good_routing = std::fs::read_to_string(dir.join("routing.yml")).expect("read");
    let polls_before = series_value(&fired, "dbwatch_polls_total", &[("target", "kept")])
        .expect("kept's poll counter");
    let broken: [(&str, String, &str); 3] = [
        (
            "dbwatch.yml",
            format!("{good_config}  - name: [unclosed\n"),
            "dbwatch.yml",
        ),
        (
            "rules.yml",
            good_rules.replace("> 0.5", "> > 0.5"),
            "rules.yml",
        ),
        (
            "routing.yml",
            good_routing.replace("receiver: hook", "receiver: nobody"),
            "routing.yml",
        ),
    ];
    for (file, text, named) in &broken {
        write(dir, file, text);
        let (status, body) = daemon.post_reload().await;
        assert_eq!(status, 400, "{file}: {body}");
        assert!(
            names_line(&body, named),
            "{file}: no {named}:<line> in {body}"
        );
        let metrics = daemon.metrics().await.expect("metrics");
        assert_eq!(series_value(&metrics, RELOAD_OK, &[]), Some(0.0), "{file}");
        write(
            dir,
            file,
            match *file {
                "dbwatch.yml" => &good_config,
                "rules.yml" => &good_rules,
                _ => &good_routing,
            },
        );
    }
    let still = daemon
        .wait_metrics(
            "polls go on after the refused reloads",
            Duration::from_secs(10),
            |m| {
                series_value(m, "dbwatch_polls_total", &[("target", "kept")])
                    .is_some_and(|polls| polls >= polls_before + 2.0)
            },
        )
        .await;
    for target in ["kept", "changed", "added"] {
        assert_eq!(
            series_value(&still, "db_up", &[("target", target)]),
            Some(1.0),
            "{target}"
        );
    }
    assert!(!has_target(&still, "removed"));
    assert_eq!(daemon.backend_pid("shop"), Some(kept_pid));

    // A good reload by POST: 200, what it did in the body, the kept session still the same.
    let (status, body) = daemon.post_reload().await;
    assert_eq!(status, 200, "{body}");
    assert!(
        body.contains(
            "targets kept added, changed, kept, restarted none, added none, removed none"
        ),
        "{body}"
    );
    let metrics = daemon.metrics().await.expect("metrics");
    assert_eq!(series_value(&metrics, RELOAD_OK, &[]), Some(1.0));
    assert_eq!(daemon.backend_pid("shop"), Some(kept_pid));
    assert_eq!(daemon.backend_pid("postgres"), Some(changed_after));

    // Two reloads at once: each applied whole, one after the other, both answered.
    let (one, two) = tokio::join!(daemon.post_reload(), daemon.post_reload());
    for (status, body) in [one, two] {
        assert_eq!(status, 200, "{body}");
        assert!(
            body.contains("restarted none, added none, removed none"),
            "{body}"
        );
    }

    // A change a running daemon cannot make is refused by name, and nothing changes.
    write(
        dir,
        "dbwatch.yml",
        &good_config.replace("alerting:\n  config_file: routing.yml\n", ""),
    );
    let (status, body) = daemon.post_reload().await;
    assert_eq!(status, 409, "{body}");
    assert!(
        body.contains("alerting.config_file: removing a routing file needs a restart"),
        "{body}"
    );
    let metrics = daemon.metrics().await.expect("metrics");
    assert_eq!(series_value(&metrics, RELOAD_OK, &[]), Some(0.0));
    assert_eq!(daemon.backend_pid("shop"), Some(kept_pid));
    write(dir, "dbwatch.yml", &good_config);

    // Nothing was notified twice: the first receiver got `edited` once and nothing after the reload; the second
    // got `kept_pending` once and never `edited`.
    let first = received(&daemon.client, &first_bucket).await;
    assert_eq!(
        first,
        [("firing".to_owned(), "edited".to_owned())],
        "first receiver"
    );
    let second = received(&daemon.client, &second_bucket).await;
    assert_eq!(
        second,
        [("firing".to_owned(), "kept_pending".to_owned())],
        "second receiver"
    );
}
