//! The event history end to end (issue 18): the real daemon watching the fleet's PostgreSQL primary through a
//! proxy this test controls. Cutting the proxy is the fault: `target_down` goes pending then firing, pages a
//! webhook receiver (also this test's) that refuses the first delivery with a 503 and accepts the retry;
//! restoring it resolves the alert and the resolve is delivered. Then dbwatch is SIGKILLed, started again on
//! the same storage folder, and `GET /api/v1/events` must tell that whole story, in order, with each
//! notification's answer.
//!
//! Needs `deploy/local/fleet up` and its environment (`eval "$(deploy/local/fleet env)"`).

#[path = "support/fleet.rs"]
mod fleet;

use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use fleet::{env, free_port, host_port, Process};
use serde_json::Value;
use tokio::io::AsyncWriteExt as _;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::time::Instant;

/// A TCP proxy to `upstream` that can be cut: cutting closes every open connection and refuses new ones.
struct Proxy {
    port: u16,
    open: watch::Sender<bool>,
}

impl Proxy {
    async fn start(upstream: String) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("address").port();
        let (open, watching) = watch::channel(true);
        tokio::spawn(async move {
            loop {
                let Ok((mut client, _)) = listener.accept().await else {
                    return;
                };
                let mut state = watching.clone();
                if !*state.borrow() {
                    let _ = client.shutdown().await;
                    continue;
                }
                let upstream = upstream.clone();
                tokio::spawn(async move {
                    let Ok(mut server) = TcpStream::connect(&upstream).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        _ = state.wait_for(|open| !*open) => {}
                    }
                });
            }
        });
        Proxy { port, open }
    }

    fn set(&self, open: bool) {
        self.open.send_replace(open);
    }
}

/// A webhook receiver: answers 503 to the first request, 200 to the others, and keeps every body.
#[derive(Clone, Default)]
struct Receiver {
    requests: Arc<AtomicUsize>,
    bodies: Arc<Mutex<Vec<Value>>>,
}

impl Receiver {
    async fn start(&self) -> u16 {
        let receiver = self.clone();
        let app = axum::Router::new().route(
            "/hook",
            axum::routing::post(move |body: String| {
                let receiver = receiver.clone();
                async move {
                    let n = receiver.requests.fetch_add(1, Ordering::SeqCst);
                    if let Ok(body) = serde_json::from_str(&body) {
                        receiver.bodies.lock().expect("bodies").push(body);
                    }
                    if n == 0 {
                        (
                            axum::http::StatusCode::SERVICE_UNAVAILABLE,
                            "busy, try again",
                        )
                    } else {
                        (axum::http::StatusCode::OK, "ok")
                    }
                }
            }),
        );
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("address").port();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        port
    }

    /// The statuses (`firing`, `resolved`) of the bodies answered 200.
    fn accepted(&self) -> Vec<String> {
        let bodies = self.bodies.lock().expect("bodies");
        bodies
            .iter()
            .skip(1)
            .map(|body| body["status"].as_str().unwrap_or_default().to_owned())
            .collect()
    }
}

fn start(dir: &std::path::Path, port: u16) -> Process {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("dbwatch.log"))
        .expect("log");
    Process(
        Command::new(env!("CARGO_BIN_EXE_dbwatch"))
            .arg("--config.file")
            .arg(dir.join("dbwatch.yml"))
            .arg("--web.listen-address")
            .arg(format!("127.0.0.1:{port}"))
            .arg("--storage.path")
            .arg(dir.join("data"))
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start dbwatch"),
    )
}

async fn events(client: &reqwest::Client, base: &str, query: &str) -> Option<Vec<Value>> {
    let text = client
        .get(format!("{base}/api/v1/events?{query}"))
        .send()
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    let json: Value = serde_json::from_str(&text).ok()?;
    json["data"]["events"].as_array().cloned()
}

async fn wait_for<T>(
    what: &str,
    timeout: Duration,
    mut check: impl AsyncFnMut() -> Option<T>,
) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(found) = check().await {
            return found;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The position of the first event from `from` on that satisfies `matches`.
fn position(events: &[Value], from: usize, what: &str, matches: impl Fn(&Value) -> bool) -> usize {
    events[from..]
        .iter()
        .position(matches)
        .map(|index| from + index)
        .unwrap_or_else(|| panic!("no {what} after event {from}: {events:#?}"))
}

#[tokio::test]
async fn a_fault_its_page_and_its_resolve_are_in_the_history_after_a_sigkill() {
    let (host, pg_port) = host_port(&env("DBWATCH_PG_PRIMARY_URL"));
    let proxy = Proxy::start(format!("{host}:{pg_port}")).await;
    let receiver = Receiver::default();
    let hook = receiver.start().await;
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(
        dir.path().join("rules.yml"),
        "groups:\n  - name: events\n    rules:\n      - alert: target_down\n        expr: db_up == 0\n        \
         for: 2s\n        labels: {severity: critical}\n        annotations: {summary: '{{ $labels.target }} is down'}\n",
    )
    .expect("rules");
    std::fs::write(
        dir.path().join("routing.yml"),
        format!(
            "route:\n  receiver: hook\n  group_by: [alertname]\n  group_wait: 1s\n  group_interval: 1s\n  \
             repeat_interval: 1h\nreceivers:\n  - name: hook\n    webhook_configs:\n      - url: \
             http://127.0.0.1:{hook}/hook\n        send_resolved: true\n"
        ),
    )
    .expect("routing");
    std::fs::write(
        dir.path().join("dbwatch.yml"),
        format!(
            "global: {{interval: 1s, timeout: 800ms, evaluation_interval: 1s}}\nrule_files: [rules.yml]\n\
             alerting: {{config_file: routing.yml}}\ntargets:\n  - {{name: orders-pg, type: postgres, connection: \
             {{host: 127.0.0.1, port: {}, user: dbwatch, password: dbwatch}}}}\n",
            proxy.port
        ),
    )
    .expect("config");
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .expect("client");
    let mut daemon = start(dir.path(), port);
    let log = || std::fs::read_to_string(dir.path().join("dbwatch.log")).unwrap_or_default();

    let up = async || {
        let text = client
            .get(format!("{base}/api/v1/targets"))
            .send()
            .await
            .ok()?
            .text()
            .await
            .ok()?;
        let json: Value = serde_json::from_str(&text).ok()?;
        json["data"]["targets"][0]["up"].as_bool()
    };
    wait_for("orders-pg up", Duration::from_secs(60), async || {
        up().await.filter(|up| *up)
    })
    .await;

    // The fault: the target cannot be reached. Fires after 2 s; the first delivery is refused, the retry taken.
    proxy.set(false);
    wait_for(
        "the firing notification accepted",
        Duration::from_secs(90),
        async || {
            assert!(daemon.exited().is_none(), "dbwatch exited:\n{}", log());
            receiver
                .accepted()
                .iter()
                .any(|status| status == "firing")
                .then_some(())
        },
    )
    .await;
    // Resolved: the resolve is delivered.
    proxy.set(true);
    wait_for(
        "the resolve accepted",
        Duration::from_secs(90),
        async || {
            assert!(daemon.exited().is_none(), "dbwatch exited:\n{}", log());
            receiver
                .accepted()
                .iter()
                .any(|status| status == "resolved")
                .then_some(())
        },
    )
    .await;
    // The resolve's delivery is recorded once the notifier settles it, a moment after the receiver answered.
    wait_for(
        "the resolve's delivery recorded",
        Duration::from_secs(30),
        async || {
            let events = events(&client, &base, "kind=notification&direction=forward").await?;
            let delivered = events
                .iter()
                .filter(|event| event["outcome"] == "delivered")
                .count();
            (delivered >= 2).then_some(())
        },
    )
    .await;
    // Target changes are read from the snapshots a moment later (src/target_events.rs): wait for the return.
    wait_for(
        "the target's return recorded",
        Duration::from_secs(30),
        async || {
            let events = events(&client, &base, "kind=target&target=orders-pg").await?;
            events.iter().any(|event| event["up"] == true).then_some(())
        },
    )
    .await;

    // SIGKILL: no shutdown, no final flush.
    daemon.0.kill().expect("SIGKILL");
    daemon.0.wait().expect("reaped");
    let restarted = start(dir.path(), port);
    let mut restarted = restarted;
    let history = wait_for(
        "the events API after the restart",
        Duration::from_secs(60),
        async || {
            assert!(
                restarted.exited().is_none(),
                "dbwatch exited after the restart:\n{}",
                log()
            );
            events(&client, &base, "direction=forward&limit=1000").await
        },
    )
    .await;

    let alert = |to: &'static str| {
        move |event: &Value| {
            event["kind"] == "alert" && event["alertname"] == "target_down" && event["to"] == to
        }
    };
    let notification = |outcome: &'static str| {
        move |event: &Value| {
            event["kind"] == "notification"
                && event["receiver"] == "hook"
                && event["integration"] == "webhook"
                && event["outcome"] == outcome
        }
    };
    // Target changes are stamped with the poll that saw them but recorded up to a second later, so they are
    // ordered by time, not by sequence number, against the alert transitions.
    let down = position(&history, 0, "target down", |event| {
        event["kind"] == "target" && event["target"] == "orders-pg" && event["up"] == false
    });
    let pending = position(&history, 0, "pending", alert("pending"));
    assert!(
        history[down]["at"].as_i64() <= history[pending]["at"].as_i64(),
        "down before pending"
    );
    let firing = position(&history, pending, "firing", alert("firing"));
    let refused = position(
        &history,
        firing,
        "the refused attempt",
        notification("retry"),
    );
    let answer = history[refused]["answer"].as_str().unwrap_or_default();
    assert!(
        answer.contains("503"),
        "the receiver's answer is kept: {answer}"
    );
    assert_eq!(history[refused]["attempt"], 1);
    assert_eq!(
        history[refused]["alertnames"],
        serde_json::json!(["target_down"])
    );
    let delivered = position(
        &history,
        refused,
        "the firing delivered",
        notification("delivered"),
    );
    assert_eq!(history[delivered]["attempt"], 2);
    let back_up = position(&history, down, "target up", |event| {
        event["kind"] == "target" && event["target"] == "orders-pg" && event["up"] == true
    });
    let resolved = position(&history, firing, "resolved", alert("inactive"));
    assert!(
        history[back_up]["at"].as_i64() <= history[resolved]["at"].as_i64(),
        "the target came back before the alert resolved"
    );
    let resolve_delivered = position(
        &history,
        resolved.max(delivered + 1),
        "the resolve delivered",
        notification("delivered"),
    );
    assert_eq!(history[resolve_delivered]["answer"], Value::Null);
    // The alert's labels, value and annotations travel with the transition.
    assert_eq!(history[firing]["labels"]["target"], "orders-pg");
    assert_eq!(
        history[firing]["annotations"]["summary"],
        "orders-pg is down"
    );
    assert_eq!(history[firing]["value"], 0.0);
    // Numbered without gaps or repeats, across the restart.
    let seqs: Vec<u64> = history
        .iter()
        .filter_map(|event| event["seq"].as_u64())
        .collect();
    assert_eq!(seqs.len(), history.len());
    assert!(
        seqs.windows(2).all(|pair| pair[1] == pair[0] + 1),
        "{seqs:?}"
    );
    eprintln!(
        "history after SIGKILL: {} events; down #{down}, pending #{pending}, firing #{firing}, refused #{refused}, \
         delivered #{delivered}, up #{back_up}, resolved #{resolved}, resolve delivered #{resolve_delivered}",
        history.len()
    );

    // Filters: the alert's events only, newest first.
    let about = events(&client, &base, "alertname=target_down&kind=alert")
        .await
        .expect("filtered");
    let tos: Vec<&str> = about
        .iter()
        .filter_map(|event| event["to"].as_str())
        .collect();
    assert_eq!(tos, ["inactive", "firing", "pending"]);
    let bad = client
        .get(format!("{base}/api/v1/events?kind=nonsense"))
        .send()
        .await
        .expect("answer");
    assert_eq!(bad.status(), 400);
}
