//! remote_write against a real receiver: Debian's Prometheus 2.42 with `--web.enable-remote-write-receiver`.
//! dbwatch watches the fleet's PostgreSQL primary and evaluates a recording rule and an alert; the test reads the
//! series back through Prometheus's HTTP API (names, labels, values, timestamps), then stops Prometheus for a
//! while, starts it again on the same data, and checks that nothing polled during the outage was lost.
//!
//! Needs `deploy/local/fleet up` (PostgreSQL) and Prometheus (installed by the fleet's tools component); fails
//! without them.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::Value;
use tokio::time::Instant;

#[path = "support/fleet.rs"]
mod fleet;
use fleet::{connection, encode, free_port, Process};

const INTERVAL_S: f64 = 1.0;

fn start_prometheus(dir: &Path, port: u16) -> Process {
    let config = dir.join("prometheus.yml");
    std::fs::write(&config, "global:\n  scrape_interval: 1m\n").expect("write prometheus.yml");
    Process(
        Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.tsdb.path={}", dir.join("data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--web.enable-remote-write-receiver")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|error| {
                panic!("prometheus is required (Debian package prometheus, installed by `make test`): {error}")
            }),
    )
}

/// Polls `condition` every 250 ms until it gives a value or `limit` passes.
async fn until<T, F, Fut>(what: &str, limit: Duration, mut condition: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + limit;
    loop {
        if let Some(value) = condition().await {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

async fn query(client: &reqwest::Client, prometheus: &str, expr: &str) -> Option<Vec<Value>> {
    let answer: Value = client
        .get(format!("{prometheus}/api/v1/query?query={}", encode(expr)))
        .send()
        .await
        .ok()?
        .text()
        .await
        .ok()
        .and_then(|text| serde_json::from_str(&text).ok())?;
    if answer["status"] != "success" {
        return None;
    }
    answer["data"]["result"].as_array().cloned()
}

/// The value of `name{target="pg"}` (no other labels) in dbwatch's own exposition.
async fn exposed(client: &reqwest::Client, dbwatch: &str, series: &str) -> Option<String> {
    let text = client
        .get(format!("{dbwatch}/metrics"))
        .send()
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    text.lines()
        .find_map(|line| line.strip_prefix(&format!("{series} ")))
        .map(str::to_owned)
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after the epoch")
        .as_secs_f64()
}

#[tokio::test]
async fn snapshots_and_rule_results_reach_prometheus_and_an_outage_loses_nothing_that_fits_the_queue(
) {
    let dir = tempfile::tempdir().expect("temp dir");
    let prometheus_port = free_port();
    let prometheus_url = format!("http://127.0.0.1:{prometheus_port}");
    let mut prometheus = start_prometheus(dir.path(), prometheus_port);
    std::fs::write(
        dir.path().join("rules.yml"),
        "groups:
  - name: remote
    rules:
      - record: fleet:db_up:sum
        expr: sum(db_up)
      - alert: AlwaysFiring
        expr: vector(1)
        labels: {severity: info}
",
    )
    .expect("write rules");
    let config = dir.path().join("dbwatch.yml");
    std::fs::write(
        &config,
        format!(
            "global:
  interval: 1s
  timeout: 900ms
  evaluation_interval: 1s
  external_labels: {{cluster: ci, __replica__: replica-a}}
rule_files: [rules.yml]
remote_write:
  - url: {prometheus_url}/api/v1/write
    name: local-prometheus
    remote_timeout: 5s
    queue_config: {{batch_send_deadline: 500ms, min_backoff: 100ms, max_backoff: 1s}}
targets:
  - name: pg
    type: postgres
    labels: {{env: test}}
    connection: {}
",
            connection("pg-primary")
        ),
    )
    .expect("write dbwatch.yml");
    let dbwatch_address = format!("127.0.0.1:{}", free_port());
    let dbwatch_url = format!("http://{dbwatch_address}");
    let mut dbwatch = Process(
        Command::new(env!("CARGO_BIN_EXE_dbwatch"))
            .arg("--config.file")
            .arg(&config)
            .arg("--web.listen-address")
            .arg(&dbwatch_address)
            .arg("--storage.path")
            .arg(dir.path().join("dbwatch-data"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start dbwatch"),
    );
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .expect("http client");

    // The snapshot's series, with the target's labels and the external ones, at the poll's time.
    let up = until("db_up in Prometheus", Duration::from_secs(60), || {
        assert!(dbwatch.exited().is_none(), "dbwatch exited");
        async {
            let found = query(&client, &prometheus_url, "db_up").await?;
            (found.len() == 1).then(|| found[0].clone())
        }
    })
    .await;
    let labels: BTreeSet<(String, String)> = up["metric"]
        .as_object()
        .expect("labels")
        .iter()
        .map(|(name, value)| (name.clone(), value.as_str().unwrap_or_default().to_owned()))
        .collect();
    let expected: BTreeSet<(String, String)> = [
        ("__name__", "db_up"),
        ("__replica__", "replica-a"),
        ("cluster", "ci"),
        ("db", "postgres"),
        ("env", "test"),
        ("target", "pg"),
    ]
    .into_iter()
    .map(|(name, value)| (name.to_owned(), value.to_owned()))
    .collect();
    assert_eq!(labels, expected);
    assert_eq!(up["value"][1], "1");
    let stamped = up["value"][0].as_f64().expect("a timestamp");
    assert!(
        (unix_now() - stamped).abs() < 30.0,
        "the sample carries the poll's time: {stamped}"
    );

    // Every series dbwatch exposes for the target arrives, under the same names; a counter carries the same
    // value as /metrics showed for the same poll (it moves between polls, so compared to within one poll's
    // change, read on both sides within one second).
    let names = until(
        "the target's names in Prometheus",
        Duration::from_secs(30),
        || async {
            let text = client
                .get(format!("{dbwatch_url}/metrics"))
                .send()
                .await
                .ok()?
                .text()
                .await
                .ok()?;
            let exposed: BTreeSet<String> = text
                .lines()
                .filter(|line| !line.starts_with('#') && line.contains("target=\"pg\""))
                .filter_map(|line| line.split(['{', ' ']).next())
                .map(str::to_owned)
                .collect();
            let answer: Value = client
                .get(format!(
                    "{prometheus_url}/api/v1/label/__name__/values?match[]={}",
                    encode("{target=\"pg\"}")
                ))
                .send()
                .await
                .ok()?
                .text()
                .await
                .ok()
                .and_then(|text| serde_json::from_str(&text).ok())?;
            let written: BTreeSet<String> = answer["data"]
                .as_array()?
                .iter()
                .filter_map(|name| name.as_str().map(str::to_owned))
                .collect();
            (exposed.len() > 20 && exposed.is_subset(&written)).then_some(exposed)
        },
    )
    .await;
    assert!(names.contains("db_connections_max"), "{names:?}");
    let max_connections = exposed(
        &client,
        &dbwatch_url,
        "db_connections_max{target=\"pg\",db=\"postgres\",env=\"test\"}",
    )
    .await
    .expect("db_connections_max in /metrics");
    let written = query(
        &client,
        &prometheus_url,
        "db_connections_max{target=\"pg\"}",
    )
    .await
    .expect("db_connections_max in Prometheus");
    assert_eq!(
        written[0]["value"][1].as_str(),
        Some(max_connections.as_str())
    );

    // The rules' results: a recording rule nobody reads, and ALERTS.
    let recorded = until(
        "the recording rule's result",
        Duration::from_secs(30),
        || async {
            let found = query(&client, &prometheus_url, "fleet:db_up:sum").await?;
            found.first().cloned()
        },
    )
    .await;
    assert_eq!(recorded["value"][1], "1");
    assert_eq!(recorded["metric"]["cluster"], "ci");
    let alert = until("ALERTS", Duration::from_secs(30), || async {
        let found = query(
            &client,
            &prometheus_url,
            "ALERTS{alertname=\"AlwaysFiring\"}",
        )
        .await?;
        found.first().cloned()
    })
    .await;
    assert_eq!(alert["metric"]["alertstate"], "firing");
    assert_eq!(alert["metric"]["severity"], "info");

    // The outage: Prometheus stops (its data kept), dbwatch keeps polling and queues; Prometheus comes back.
    let _ = prometheus.0.kill();
    let _ = prometheus.0.wait();
    let outage_start = unix_now();
    until("dbwatch to retry", Duration::from_secs(30), || async {
        let retries = exposed(
            &client,
            &dbwatch_url,
            "dbwatch_remote_write_requests_total{outcome=\"retry\",remote=\"local-prometheus\"}",
        )
        .await?;
        (retries.parse::<f64>().ok()? >= 3.0).then_some(())
    })
    .await;
    let queued = until("samples to queue up", Duration::from_secs(30), || async {
        let pending = exposed(
            &client,
            &dbwatch_url,
            "dbwatch_remote_write_samples_pending{remote=\"local-prometheus\"}",
        )
        .await?
        .parse::<f64>()
        .ok()?;
        (pending >= 2000.0).then_some(pending)
    })
    .await;
    let outage_end = unix_now();
    let mut prometheus = start_prometheus(dir.path(), prometheus_port);
    until("the queue to drain", Duration::from_secs(90), || {
        assert!(prometheus.exited().is_none(), "prometheus exited");
        async {
            let pending = exposed(
                &client,
                &dbwatch_url,
                "dbwatch_remote_write_samples_pending{remote=\"local-prometheus\"}",
            )
            .await?;
            (pending == "0").then_some(())
        }
    })
    .await;
    for reason in ["queue_full", "refused", "shutdown"] {
        let dropped = exposed(
            &client,
            &dbwatch_url,
            &format!("dbwatch_remote_write_samples_dropped_total{{reason=\"{reason}\",remote=\"local-prometheus\"}}"),
        )
        .await;
        assert!(
            dropped.is_none() || dropped.as_deref() == Some("0"),
            "{reason}: {dropped:?} samples dropped"
        );
    }
    // Every poll during the outage is in Prometheus: the raw samples of db_up around it leave no gap longer
    // than a poll's interval and a little scheduling slack.
    let window = (unix_now() - outage_start + 10.0).ceil();
    let samples = until("db_up's raw samples", Duration::from_secs(30), || async {
        let found = query(
            &client,
            &prometheus_url,
            &format!("db_up{{target=\"pg\"}}[{window}s]"),
        )
        .await?;
        found.first()?["values"].as_array().cloned()
    })
    .await;
    let times: Vec<f64> = samples.iter().filter_map(|pair| pair[0].as_f64()).collect();
    let during = times
        .iter()
        .filter(|t| **t >= outage_start && **t <= outage_end)
        .count();
    let outage = outage_end - outage_start;
    assert!(
        during as f64 >= outage / INTERVAL_S - 2.0,
        "{during} samples of db_up within the {outage:.1} s outage ({queued} were queued)"
    );
    let widest = times
        .windows(2)
        .map(|pair| pair[1] - pair[0])
        .fold(0.0, f64::max);
    assert!(
        widest <= 2.5 * INTERVAL_S,
        "a gap of {widest:.2} s between db_up samples around the outage"
    );
    let sent = exposed(
        &client,
        &dbwatch_url,
        "dbwatch_remote_write_samples_sent_total{remote=\"local-prometheus\"}",
    )
    .await
    .and_then(|sent| sent.parse::<f64>().ok())
    .expect("samples sent");
    println!(
        "outage {outage:.1} s: {queued} samples queued at its end, {during} polls of db_up kept, widest gap {widest:.2} s, {sent} samples sent in all"
    );
    assert!(dbwatch.exited().is_none(), "dbwatch exited");
}
