//! The notifier against real receivers: the fleet's `receivers` component (HTTP stand-ins for Slack, PagerDuty
//! and Alertmanager webhooks that validate every payload against the published formats, and an aiosmtpd server
//! with STARTTLS, implicit TLS and AUTH), amtool for routing agreement, and a SIGKILLed notifier process for
//! at-least-once delivery.
//!
//! Needs `deploy/local/fleet up tools receivers` and its `env`; fails without them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

#[path = "support/amtool.rs"]
mod amtool;
#[path = "support/mail.rs"]
mod mail;
#[path = "support/receivers.rs"]
mod receivers;
use receivers::Receivers;

use std::sync::Arc;

use dbwatch::supervise::{supervise, Components};
use dbwatch_notify::{self as notify, DeliveryOptions, Notifier, NotifierSeed};
use dbwatch_rules::{AlertState, AlertSummary, AlertsHandle};
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

const ROUTING_KEY: &str = "0123456789abcdef0123456789abcdef";

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: run `deploy/local/fleet up receivers` and `eval \"$(deploy/local/fleet env)\"` (make test does both)")
    })
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn ok_requests<'a>(requests: &'a [Value], kind: &str) -> Vec<&'a Value> {
    requests
        .iter()
        .filter(|request| request["kind"] == kind && request["answer"] == "ok")
        .collect()
}

fn assert_all_valid(requests: &[Value]) {
    for request in requests {
        assert_eq!(
            request["valid"], true,
            "payload refused by the receiver: {request:#}"
        );
    }
}

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn firing(pairs: &[(&str, &str)], annotations: &[(&str, &str)]) -> AlertSummary {
    let now = SystemTime::now();
    let labels = labels(pairs);
    AlertSummary {
        group: "test".into(),
        alertname: labels.get("alertname").cloned().unwrap_or_default(),
        labels,
        annotations: annotations
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
        state: AlertState::Firing,
        value: 1.0,
        active_at: now - Duration::from_secs(60),
        fired_at: Some(now),
        resolved_at: None,
    }
}

fn resolved(alert: &AlertSummary) -> AlertSummary {
    AlertSummary {
        state: AlertState::Inactive,
        resolved_at: Some(SystemTime::now()),
        ..alert.clone()
    }
}

/// A notifier running in this process on its own state folder, under the daemon's supervisor, with the
/// silences API and `/-/ready` served.
struct Harness {
    alerts: AlertsHandle,
    registry: prometheus::Registry,
    state: tempfile::TempDir,
    shutdown: CancellationToken,
    /// Where the silences API and `/-/ready` are served.
    api: String,
    seed: NotifierSeed,
    components: Components,
}

impl Harness {
    fn start(routing: &str, tune: impl FnOnce(&mut DeliveryOptions)) -> Harness {
        Harness::start_in(tempfile::tempdir().expect("temp dir"), routing, tune)
    }

    /// Starts on `state`, which may already hold a saved state.
    fn start_in(
        state: tempfile::TempDir,
        routing: &str,
        tune: impl FnOnce(&mut DeliveryOptions),
    ) -> Harness {
        let no_env = |_: &str| None;
        let mut config = notify::load_str(Path::new("test-routing.yml"), routing, &no_env)
            .unwrap_or_else(|errors| panic!("{errors}"));
        config.delivery.initial_backoff = Duration::from_millis(100);
        config.delivery.max_backoff = Duration::from_millis(500);
        config.delivery.timeout = Duration::from_secs(2);
        tune(&mut config.delivery);
        let alerts = AlertsHandle::default();
        let registry = prometheus::Registry::new();
        let notifier =
            Notifier::new(config, state.path(), &registry, alerts.clone()).expect("notifier");
        let components = Components::register(&registry).expect("component metrics");
        let shutdown = CancellationToken::new();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let api = format!("http://{}", listener.local_addr().expect("address"));
        listener.set_nonblocking(true).expect("non-blocking");
        let listener = tokio::net::TcpListener::from_std(listener).expect("tokio listener");
        let store = Arc::new(dbwatch::store::SnapshotStore::new(0));
        let router = dbwatch::http::router(dbwatch::http::HttpState {
            store: Arc::clone(&store),
            registry: registry.clone(),
            alerts: alerts.clone(),
            components: components.clone(),
        })
        .merge(dbwatch::web::ui::router(dbwatch::web::ui::UiState::new(
            store,
            alerts.clone(),
            components.clone(),
            state.path(),
        )))
        .merge(notifier.api_router());
        let stop = shutdown.clone();
        tokio::spawn(async move {
            let _ = axum::serve(listener, router)
                .with_graceful_shutdown(stop.cancelled_owned())
                .await;
        });
        let seed = notifier.seed();
        let rebuild = seed.clone();
        let mut first = Some(notifier);
        // As app::run wires it: the first instance, then rebuilt from the saved state after a failure.
        tokio::spawn(supervise(
            "notifier",
            components.clone(),
            shutdown.clone(),
            move |token| {
                let notifier = match first.take() {
                    Some(notifier) => notifier,
                    None => rebuild.build().map_err(|error| error.to_string())?,
                };
                Ok(notifier.run(token))
            },
        ));
        Harness {
            alerts,
            registry,
            state,
            shutdown,
            api,
            seed,
            components,
        }
    }

    /// Publishes the view, as the engine does after an evaluation; the publication wakes the notifier.
    fn publish(&self, alerts: Vec<AlertSummary>) {
        self.alerts.publish_alerts(alerts, SystemTime::now());
    }

    fn counter(&self, name: &str, wanted: &[(&str, &str)]) -> f64 {
        metric(&self.registry, name, wanted)
    }

    fn saved(&self) -> Value {
        saved_state(self.state.path())
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

fn saved_state(dir: &Path) -> Value {
    std::fs::read(dir.join("notifications.json"))
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .unwrap_or(Value::Null)
}

fn metric(registry: &prometheus::Registry, name: &str, wanted: &[(&str, &str)]) -> f64 {
    registry
        .gather()
        .iter()
        .filter(|family| family.name() == name)
        .flat_map(|family| family.get_metric().iter())
        .filter(|sample| {
            wanted.iter().all(|(label, value)| {
                sample
                    .get_label()
                    .iter()
                    .any(|pair| pair.name() == *label && pair.value() == *value)
            })
        })
        .map(|sample| sample.get_counter().get_value())
        .sum()
}

#[tokio::test]
async fn slack_block_kit_message_honours_retry_after_and_sends_the_resolve() {
    let receivers = Receivers::new("slack", &["429:1"], "ok").await;
    let routing = format!(
        "route:\n  receiver: slack\n  group_by: [alertname]\n  group_wait: 0s\n  group_interval: 1s\nreceivers:\n  - name: slack\n    slack_configs:\n      - api_url: {}\n        channel: '#db-alerts'\n        send_resolved: true\n",
        receivers.url("slack")
    );
    let harness = Harness::start(&routing, |_| {});
    let alert = firing(
        &[
            ("alertname", "high_latency"),
            ("target", "pg1"),
            ("severity", "warning"),
        ],
        &[
            ("summary", "p99 latency 1.2s on pg1"),
            ("runbook_url", "https://runbooks.example/high_latency"),
        ],
    );
    harness.publish(vec![alert.clone()]);
    let requests = receivers
        .wait("the 429 and its retry", Duration::from_secs(10), |r| {
            ok_requests(r, "slack").len() == 1
        })
        .await;
    assert_all_valid(&requests);
    assert_eq!(requests.len(), 2, "{requests:#?}");
    assert_eq!(requests[0]["answer"], "429:1");
    let gap = requests[1]["at"].as_f64().expect("time") - requests[0]["at"].as_f64().expect("time");
    assert!(
        gap >= 0.95,
        "retried {gap:.3}s after a 429 with Retry-After: 1"
    );
    let body = &requests[1]["body"];
    assert_eq!(body["channel"], "#db-alerts");
    assert!(
        body["text"]
            .as_str()
            .expect("text")
            .starts_with("[FIRING:1] high_latency: high_latency: p99 latency 1.2s on pg1"),
        "{body:#}"
    );
    assert_eq!(body["blocks"][0]["type"], "header");
    assert_eq!(
        body["blocks"][0]["text"]["text"],
        "🔥 [FIRING:1] high_latency"
    );
    let section = body["blocks"][1]["text"]["text"].as_str().expect("section");
    assert!(
        section.contains("`target=pg1`")
            && section.contains("<https://runbooks.example/high_latency|Runbook>"),
        "{section}"
    );

    harness.publish(vec![resolved(&alert)]);
    let requests = receivers
        .wait("the resolve", Duration::from_secs(10), |r| {
            ok_requests(r, "slack").len() == 2
        })
        .await;
    assert_all_valid(&requests);
    let resolve = &ok_requests(&requests, "slack")[1]["body"];
    assert!(
        resolve["text"]
            .as_str()
            .expect("text")
            .starts_with("[RESOLVED] high_latency"),
        "{resolve:#}"
    );
    assert_eq!(
        harness.counter(
            "dbwatch_notifications_total",
            &[("receiver", "slack"), ("outcome", "retried")]
        ),
        1.0
    );
    assert_eq!(
        harness.counter(
            "dbwatch_notifications_total",
            &[("receiver", "slack"), ("outcome", "delivered")]
        ),
        2.0
    );
}

#[tokio::test]
async fn a_large_slack_group_is_summarised_within_block_kit_limits() {
    let receivers = Receivers::new("slack-large", &[], "ok").await;
    let routing = format!(
        "route:\n  receiver: slack\n  group_by: [alertname]\n  group_wait: 0s\nreceivers:\n  - name: slack\n    slack_configs:\n      - api_url: {}\n",
        receivers.url("slack")
    );
    let harness = Harness::start(&routing, |_| {});
    let long = "x".repeat(4000);
    let alerts: Vec<AlertSummary> = (0..80)
        .map(|i| {
            firing(
                &[
                    ("alertname", "replication_lag"),
                    ("replica", &format!("r{i:02}")),
                ],
                &[("summary", &long)],
            )
        })
        .collect();
    harness.publish(alerts);
    let requests = receivers
        .wait("the grouped message", Duration::from_secs(10), |r| {
            !r.is_empty()
        })
        .await;
    assert_all_valid(&requests);
    let body = &requests[0]["body"];
    let blocks = body["blocks"].as_array().expect("blocks");
    assert_eq!(blocks.len(), 50);
    assert_eq!(blocks[48]["elements"][0]["text"], "+33 more alerts");
    assert!(body["text"]
        .as_str()
        .expect("text")
        .starts_with("[FIRING:80] replication_lag"));
}

#[tokio::test]
async fn pagerduty_retries_500_and_timeouts_then_triggers_and_resolves_on_one_dedup_key() {
    let receivers = Receivers::new("pd", &["500", "hang"], "ok").await;
    let routing = format!(
        "route:\n  receiver: pd\n  group_by: [alertname, target]\n  group_wait: 0s\n  group_interval: 1s\nreceivers:\n  - name: pd\n    pagerduty_configs:\n      - routing_key: {ROUTING_KEY}\n        url: {}\n        links: [{{href: 'https://grafana.example/d/db', text: Dashboard}}]\n",
        receivers.url("pagerduty")
    );
    let harness = Harness::start(&routing, |options| options.timeout = Duration::from_secs(1));
    let alert = firing(
        &[
            ("alertname", "connection_pool_exhausted"),
            ("target", "pgbouncer"),
            ("severity", "critical"),
        ],
        &[
            ("summary", &"pool saturated ".repeat(100)),
            ("runbook_url", "https://runbooks.example/pool"),
        ],
    );
    harness.publish(vec![alert.clone()]);
    let requests = receivers
        .wait(
            "the trigger after a 500 and a timeout",
            Duration::from_secs(15),
            |r| ok_requests(r, "pagerduty").len() == 1,
        )
        .await;
    assert_all_valid(&requests);
    let answers: Vec<&str> = requests
        .iter()
        .map(|r| r["answer"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(answers, ["500", "hang", "ok"]);
    // The same event each time: the outbox holds the rendered payload.
    assert_eq!(requests[0]["body"], requests[2]["body"]);
    let event = &requests[2]["body"];
    assert_eq!(event["event_action"], "trigger");
    assert_eq!(event["routing_key"], ROUTING_KEY);
    let dedup_key = event["dedup_key"].as_str().expect("dedup_key").to_owned();
    assert_eq!(dedup_key.len(), 64);
    assert_eq!(event["payload"]["severity"], "critical");
    assert_eq!(event["payload"]["source"], "pgbouncer");
    let summary = event["payload"]["summary"].as_str().expect("summary");
    assert_eq!(summary.chars().count(), 1024);
    assert!(summary.starts_with(
        "[FIRING:1] connection_pool_exhausted (target=\"pgbouncer\"): pool saturated"
    ));
    assert_eq!(event["payload"]["custom_details"]["num_firing"], 1);
    assert_eq!(
        event["links"],
        json!([
            {"href": "https://grafana.example/d/db", "text": "Dashboard"},
            {"href": "https://runbooks.example/pool", "text": "Runbook: connection_pool_exhausted"}
        ])
    );

    harness.publish(vec![resolved(&alert)]);
    let requests = receivers
        .wait("the resolve", Duration::from_secs(10), |r| {
            ok_requests(r, "pagerduty").len() == 2
        })
        .await;
    let resolve = &ok_requests(&requests, "pagerduty")[1]["body"];
    assert_eq!(
        *resolve,
        json!({"routing_key": ROUTING_KEY, "event_action": "resolve", "dedup_key": dedup_key})
    );
    assert_eq!(
        harness.counter(
            "dbwatch_notifications_total",
            &[("integration", "pagerduty"), ("outcome", "retried")]
        ),
        2.0
    );
}

#[tokio::test]
async fn pagerduty_400_is_permanent_recorded_and_dead_lettered() {
    let receivers = Receivers::new("pd400", &[], "400").await;
    let routing = format!(
        "route:\n  receiver: pd\n  group_wait: 0s\nreceivers:\n  - name: pd\n    pagerduty_configs:\n      - routing_key: {ROUTING_KEY}\n        url: {}\n",
        receivers.url("pagerduty")
    );
    let harness = Harness::start(&routing, |_| {});
    harness.publish(vec![firing(
        &[("alertname", "connection_pool_exhausted")],
        &[],
    )]);
    // The saved state, not the counter, which moves a moment before the file is written.
    let state = first_dead_letter(&harness).await;
    assert_eq!(
        harness.counter(
            "dbwatch_notifications_dead_letter_total",
            &[("receiver", "pd")],
        ),
        1.0
    );
    let requests = receivers.requests().await;
    assert_eq!(
        requests.len(),
        1,
        "a 400 must not be retried: {requests:#?}"
    );
    assert_eq!(state["outbox"], json!([]));
    let reason = state["dead_letters"][0]["reason"].as_str().expect("reason");
    assert!(
        reason.starts_with("pagerduty answered 400: ") && reason.contains("invalid event"),
        "{reason}"
    );
    assert_eq!(
        harness.counter(
            "dbwatch_notifications_total",
            &[("receiver", "pd"), ("outcome", "failed")]
        ),
        1.0
    );
}

#[tokio::test]
async fn webhook_body_is_alertmanagers_version_4() {
    let receivers = Receivers::new("webhook", &[], "ok").await;
    let routing = format!(
        "route:\n  receiver: hook\n  group_by: [alertname]\n  group_wait: 0s\nreceivers:\n  - name: hook\n    webhook_configs:\n      - url: {}\n        max_alerts: 1\n",
        receivers.url("webhook")
    );
    let harness = Harness::start(&routing, |options| {
        options.external_url = "http://dbwatch.example:9630".into()
    });
    harness.publish(vec![
        firing(
            &[("alertname", "replication_lag"), ("replica", "r1")],
            &[("summary", "lagging")],
        ),
        firing(
            &[("alertname", "replication_lag"), ("replica", "r2")],
            &[("summary", "lagging")],
        ),
    ]);
    let requests = receivers
        .wait("the webhook", Duration::from_secs(10), |r| !r.is_empty())
        .await;
    assert_all_valid(&requests);
    let body = &requests[0]["body"];
    assert_eq!(body["version"], "4");
    assert_eq!(body["status"], "firing");
    assert_eq!(body["receiver"], "hook");
    assert_eq!(body["groupLabels"], json!({"alertname": "replication_lag"}));
    assert_eq!(body["commonAnnotations"], json!({"summary": "lagging"}));
    assert_eq!(body["truncatedAlerts"], 1);
    assert_eq!(body["externalURL"], "http://dbwatch.example:9630");
    assert_eq!(
        body["alerts"][0]["labels"],
        json!({"alertname": "replication_lag", "replica": "r1"})
    );
    assert_eq!(body["alerts"][0]["endsAt"], "0001-01-01T00:00:00Z");
}

async fn wait_mail(recipient: &str, count: usize) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let mail = mail::messages_for(recipient);
        if mail.len() >= count {
            return mail;
        }
        assert!(
            Instant::now() < deadline,
            "{} of {count} messages for {recipient}",
            mail.len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn email_routing(smarthost: &str, recipient: &str, extra: &str) -> String {
    format!(
        "global:\n  smtp_from: dbwatch <dbwatch@example.com>\n  smtp_auth_username: {user}\n  smtp_auth_password: {password}\nroute:\n  receiver: mail\n  group_by: [alertname]\n  group_wait: 0s\n  group_interval: 1s\nreceivers:\n  - name: mail\n    email_configs:\n      - to: {recipient}\n        smarthost: {smarthost}\n        hello: dbwatch.test\n        send_resolved: true\n        tls_config: {{ca_file: {ca}, server_name: localhost}}\n        headers: {{X-Dbwatch-Test: yes}}\n{extra}",
        user = env("DBWATCH_SMTP_USER"),
        password = env("DBWATCH_SMTP_PASSWORD"),
        ca = env("DBWATCH_SMTP_CA"),
    )
}

async fn email_thread(smarthost: &str, recipient: &str, extra: &str) {
    let harness = Harness::start(&email_routing(smarthost, recipient, extra), |_| {});
    let alert = firing(
        &[("alertname", "high_latency"), ("target", "pg1")],
        &[
            ("summary", "p99 <1.2s> & rising"),
            ("runbook_url", "https://runbooks.example/high_latency"),
        ],
    );
    harness.publish(vec![alert.clone()]);
    let mail = wait_mail(recipient, 1).await;
    harness.publish(vec![resolved(&alert)]);
    let mail = {
        drop(mail);
        wait_mail(recipient, 2).await
    };
    assert_eq!(mail.len(), 2);
    for message in &mail {
        assert_eq!(message["auth_user"], env("DBWATCH_SMTP_USER"));
        assert_eq!(message["tls"], true);
        assert_eq!(message["mail_from"], "dbwatch@example.com");
    }
    let first = mail[0]["data"].as_str().expect("data");
    let second = mail[1]["data"].as_str().expect("data");
    assert_eq!(
        mail::header(first, "Subject").as_deref(),
        Some("[FIRING:1] high_latency")
    );
    assert_eq!(
        mail::header(second, "Subject").as_deref(),
        Some("[RESOLVED] high_latency")
    );
    assert_eq!(mail::header(first, "To").as_deref(), Some(recipient));
    assert_eq!(
        mail::header(first, "X-Dbwatch-Test").as_deref(),
        Some("yes")
    );
    assert!(mail::header(first, "Date").is_some());
    let root = mail::header(first, "Message-ID").expect("Message-ID");
    assert!(
        root.starts_with("<alert-") && root.ends_with("@dbwatch>"),
        "{root}"
    );
    assert!(mail::header(first, "In-Reply-To").is_none());
    let second_id = mail::header(second, "Message-ID").expect("Message-ID");
    assert_ne!(second_id, root);
    assert_eq!(
        mail::header(second, "In-Reply-To").as_deref(),
        Some(root.as_str())
    );
    assert_eq!(
        mail::header(second, "References").as_deref(),
        Some(root.as_str())
    );
    assert!(mail::header(first, "Content-Type")
        .expect("Content-Type")
        .starts_with("multipart/alternative"));
    assert!(
        first.contains("Content-Type: text/plain; charset=utf-8"),
        "{first}"
    );
    assert!(
        first.contains("Content-Type: text/html; charset=utf-8"),
        "{first}"
    );
    assert!(
        first.contains("[FIRING] high_latency: p99 <1.2s> & rising"),
        "{first}"
    );
    assert!(first.contains("p99 &lt;1.2s&gt; &amp; rising"), "{first}");
}

#[tokio::test]
async fn email_over_starttls_with_auth_threads_firing_and_resolved() {
    let recipient = format!(
        "starttls-{}-{}@example.com",
        std::process::id(),
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("clock")
            .as_millis()
    );
    email_thread(&env("DBWATCH_SMTP_STARTTLS"), &recipient, "").await;
}

#[tokio::test]
async fn email_over_implicit_tls_with_auth_threads_firing_and_resolved() {
    let recipient = format!(
        "implicit-{}-{}@example.com",
        std::process::id(),
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("clock")
            .as_millis()
    );
    email_thread(
        &env("DBWATCH_SMTP_TLS"),
        &recipient,
        "        force_implicit_tls: true\n",
    )
    .await;
}

async fn dead_letter_reason(routing: &str) -> (String, f64) {
    let harness = Harness::start(routing, |_| {});
    harness.publish(vec![firing(&[("alertname", "high_latency")], &[])]);
    // The saved state, not the counter: the counter moves when the outcome settles, the file a moment later
    // in the same loop turn.
    let saved = first_dead_letter(&harness).await;
    let reason = saved["dead_letters"][0]["reason"]
        .as_str()
        .expect("reason")
        .to_owned();
    assert_eq!(
        harness.counter(
            "dbwatch_notifications_dead_letter_total",
            &[("receiver", "mail")],
        ),
        1.0
    );
    (
        reason,
        harness.counter(
            "dbwatch_notifications_total",
            &[("receiver", "mail"), ("outcome", "retried")],
        ),
    )
}

#[tokio::test]
async fn a_refused_recipient_and_a_wrong_password_are_permanent() {
    let recipient = format!("reject-{}@example.com", std::process::id());
    let (reason, retried) = dead_letter_reason(&email_routing(
        &env("DBWATCH_SMTP_STARTTLS"),
        &recipient,
        "",
    ))
    .await;
    assert!(reason.contains("550"), "{reason}");
    assert_eq!(retried, 0.0);
    let routing = email_routing(&env("DBWATCH_SMTP_STARTTLS"), "someone@example.com", "").replace(
        &format!("smtp_auth_password: {}", env("DBWATCH_SMTP_PASSWORD")),
        "smtp_auth_password: wrong",
    );
    let (reason, retried) = dead_letter_reason(&routing).await;
    assert!(reason.contains("535"), "{reason}");
    assert!(
        !reason.contains("wrong"),
        "the password leaked into {reason}"
    );
    assert_eq!(retried, 0.0);
}

#[tokio::test]
async fn a_transient_smtp_refusal_is_retried_until_the_attempts_run_out() {
    let recipient = format!("tempfail-{}@example.com", std::process::id());
    let (reason, retried) = dead_letter_reason(&email_routing(
        &env("DBWATCH_SMTP_STARTTLS"),
        &recipient,
        "",
    ))
    .await;
    let attempts = DeliveryOptions::default().max_attempts;
    assert!(
        reason.starts_with(&format!("gave up after {attempts} attempts: ")),
        "{reason}"
    );
    assert!(reason.contains("451"), "{reason}");
    assert_eq!(retried, f64::from(attempts));
}

const LABEL_TABLE: &[&[(&str, &str)]] = &[
    &[
        ("alertname", "high_latency"),
        ("severity", "warning"),
        ("target", "pg1"),
    ],
    &[
        ("alertname", "connection_pool_exhausted"),
        ("severity", "critical"),
    ],
    &[
        ("alertname", "replication_lag"),
        ("severity", "warning"),
        ("replica", "r1"),
    ],
    &[
        ("alertname", "replication_broken"),
        ("severity", "critical"),
    ],
    &[("alertname", "target_down"), ("severity", "critical")],
    &[("alertname", "collector_stale"), ("severity", "warning")],
    &[("alertname", "dynamodb_throttling")],
    &[
        ("alertname", "high_latency"),
        ("severity", "critical"),
        ("team", "payments"),
    ],
    &[
        ("alertname", "mysql_replica_io_thread_stopped"),
        ("severity", "critical"),
        ("cluster", "orders"),
    ],
    &[
        ("alertname", "postgres_wal_archive_failing"),
        ("team", "db"),
        ("cluster", "analytics"),
    ],
    &[
        ("alertname", "cassandra_node_unreachable"),
        ("cluster", "events"),
        ("severity", "warning"),
    ],
    &[
        ("alertname", "x"),
        ("env", "staging"),
        ("cluster", "analytics"),
    ],
];

#[test]
fn the_shipped_routing_file_passes_amtool_and_routes_like_alertmanager() {
    let file = repo().join("deploy/routing/dbwatch-routing.yml");
    amtool::check(&file)
        .unwrap_or_else(|error| panic!("amtool check-config refused {}: {error}", file.display()));
    let config = notify::load_file(&file).unwrap_or_else(|error| panic!("{error}"));
    let expected: &[(&str, &[&str])] = &[
        ("high_latency", &["slack-and-email-db"]),
        ("connection_pool_exhausted", &["pagerduty-db"]),
        ("replication_lag", &["slack-db"]),
    ];
    for (alertname, receivers) in expected {
        let labels = labels(&[("alertname", alertname), ("severity", "critical")]);
        assert_eq!(
            notify::route::receivers_for(&config.route, &labels),
            *receivers,
            "{alertname}"
        );
    }
    for row in LABEL_TABLE {
        let ours = notify::route::receivers_for(&config.route, &labels(row));
        assert_eq!(ours, amtool::receivers(&file, row), "labels {row:?}");
    }
}

#[test]
fn a_tree_with_continue_regexes_and_legacy_matchers_routes_like_alertmanager() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("routing.yml");
    std::fs::write(
        &file,
        r#"route:
  receiver: default
  group_by: ['...']
  routes:
    - receiver: audit
      matchers: ['severity=~"critical|warning"']
      continue: true
    - receiver: payments
      match: {team: payments}
      routes:
        - receiver: payments-pager
          match_re: {severity: 'crit.*'}
        - receiver: payments-db
          matchers: ['cluster!~"staging|dev"', 'alertname!="x"']
    - receiver: db
      matchers: ['{cluster=~"analytics|orders", env!="staging"}']
      continue: true
    - receiver: catch
      matchers: [alertname=~".+"]
receivers:
  - name: default
  - name: audit
  - name: payments
  - name: payments-pager
  - name: payments-db
  - name: db
  - name: catch
"#,
    )
    .expect("write");
    amtool::check(&file)
        .unwrap_or_else(|error| panic!("amtool check-config refused {}: {error}", file.display()));
    let config = notify::load_file(&file).unwrap_or_else(|error| panic!("{error}"));
    let mut extra: Vec<&[(&str, &str)]> = LABEL_TABLE.to_vec();
    extra.push(&[("team", "payments"), ("severity", "critical")]);
    extra.push(&[("team", "payments"), ("cluster", "prod")]);
    extra.push(&[("team", "payments"), ("cluster", "staging")]);
    extra.push(&[("cluster", "orders"), ("env", "staging")]);
    extra.push(&[("env", "prod")]);
    for row in extra {
        let ours = notify::route::receivers_for(&config.route, &labels(row));
        assert_eq!(ours, amtool::receivers(&file, row), "labels {row:?}");
    }
}

#[tokio::test]
async fn firing_to_receiver_latency_with_group_wait_zero() {
    let receivers = Receivers::new("bench", &[], "ok").await;
    let routing = format!(
        "route:\n  receiver: hook\n  group_by: [alertname, target]\n  group_wait: 0s\nreceivers:\n  - name: hook\n    webhook_configs:\n      - url: {}\n",
        receivers.url("webhook")
    );
    let harness = Harness::start(&routing, |_| {});
    let mut latencies = Vec::new();
    let mut alerts = Vec::new();
    for round in 0..20 {
        alerts.push(firing(
            &[
                ("alertname", "high_latency"),
                ("target", &format!("pg{round}")),
            ],
            &[],
        ));
        let started = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("clock")
            .as_secs_f64();
        harness.publish(alerts.clone());
        let requests = receivers
            .wait("the webhook", Duration::from_secs(10), |r| r.len() > round)
            .await;
        latencies.push(requests[round]["at"].as_f64().expect("at") - started);
    }
    latencies.sort_by(f64::total_cmp);
    println!(
        "firing → local receiver, group_wait 0, 20 new groups: median {:.1} ms, max {:.1} ms",
        latencies[10] * 1000.0,
        latencies[19] * 1000.0
    );
}

/// A TCP front for the SMTP server that can be down (closes every connection) or up (forwards), so the crash
/// test can take email down without touching the shared server.
struct SmtpFront {
    address: String,
    up: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl SmtpFront {
    async fn start(target: String) -> SmtpFront {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let address = listener.local_addr().expect("address").to_string();
        let up = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = up.clone();
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                if !flag.load(std::sync::atomic::Ordering::SeqCst) {
                    drop(client);
                    continue;
                }
                let target = target.clone();
                tokio::spawn(async move {
                    if let Ok(mut server) = tokio::net::TcpStream::connect(&target).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
            }
        });
        SmtpFront { address, up }
    }

    fn set_up(&self, up: bool) {
        self.up.store(up, std::sync::atomic::Ordering::SeqCst);
    }
}

fn driver_path() -> PathBuf {
    // Integration tests run from target/<profile>/deps; examples are built into target/<profile>/examples.
    let exe = std::env::current_exe().expect("test executable");
    let profile = exe.parent().and_then(Path::parent).expect("target folder");
    let driver = profile.join("examples").join("notify_driver");
    assert!(
        driver.exists(),
        "{} is missing: cargo test builds examples",
        driver.display()
    );
    driver
}

struct Driver(Child);

impl Driver {
    fn start(routing: &Path, state: &Path, alerts: &Path, log: &Path) -> Driver {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .expect("log file");
        let child = Command::new(driver_path())
            .arg(routing)
            .arg(state)
            .arg(alerts)
            .arg("200")
            .arg("1000")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start the notify driver");
        Driver(child)
    }

    /// SIGKILL: no shutdown path runs.
    fn kill(mut self) {
        self.0.kill().expect("SIGKILL");
        self.0.wait().expect("reap");
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn write_alerts(path: &Path, alerts: &Value) {
    let temp = path.with_extension("tmp");
    std::fs::write(&temp, alerts.to_string()).expect("write alerts");
    std::fs::rename(&temp, path).expect("rename alerts");
}

async fn wait_state(dir: &Path, what: &str, done: impl Fn(&Value) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let state = saved_state(dir);
        if done(&state) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}; state: {state:#}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn outbox_len(state: &Value) -> usize {
    state["outbox"].as_array().map_or(0, Vec::len)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_and_restart_with_receivers_down_delivers_everything_once() {
    let receivers = Receivers::new("crash", &[], "drop").await;
    let smtp = SmtpFront::start(env("DBWATCH_SMTP_STARTTLS")).await;
    let recipient = format!(
        "crash-{}-{}@example.com",
        std::process::id(),
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("clock")
            .as_millis()
    );
    let dir = tempfile::tempdir().expect("temp dir");
    let routing = dir.path().join("routing.yml");
    std::fs::write(
        &routing,
        format!(
            "global:\n  smtp_from: dbwatch@example.com\n  smtp_auth_username: {user}\n  smtp_auth_password: {password}\nroute:\n  receiver: slack\n  group_by: [alertname, target]\n  group_wait: 0s\n  group_interval: 1s\n  routes:\n    - receiver: slack-and-email\n      matchers: [alertname=high_latency]\n    - receiver: pagerduty\n      matchers: [alertname=connection_pool_exhausted]\nreceivers:\n  - name: slack\n    slack_configs: [{{api_url: '{slack}', send_resolved: true}}]\n  - name: slack-and-email\n    slack_configs: [{{api_url: '{slack}', send_resolved: true}}]\n    email_configs:\n      - {{to: '{recipient}', smarthost: '{smarthost}', send_resolved: true, tls_config: {{ca_file: '{ca}', server_name: localhost}}}}\n  - name: pagerduty\n    pagerduty_configs: [{{routing_key: {ROUTING_KEY}, url: '{pd}'}}]\n",
            user = env("DBWATCH_SMTP_USER"),
            password = env("DBWATCH_SMTP_PASSWORD"),
            ca = env("DBWATCH_SMTP_CA"),
            smarthost = smtp.address,
            slack = receivers.url("slack"),
            pd = receivers.url("pagerduty"),
        ),
    )
    .expect("write routing");
    let state = dir.path().join("state");
    let alerts = dir.path().join("alerts.json");
    let log = dir.path().join("driver.log");
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_millis() as u64;
    let alert = |name: &str, target: &str, state: &str, resolved: bool| {
        json!({
            "labels": {"alertname": name, "target": target, "severity": "critical"},
            "annotations": {"summary": format!("{name} on {target}")},
            "state": state, "active_at_ms": now - 60_000, "fired_at_ms": now,
            "resolved_at_ms": if resolved { Some(now + 1000) } else { None },
        })
    };
    write_alerts(
        &alerts,
        &json!([
            alert("high_latency", "pg1", "firing", false),
            alert("connection_pool_exhausted", "pgbouncer", "firing", false),
            alert("replication_lag", "pg2", "firing", false),
        ]),
    );

    // 1. Receivers down, alerts fire: four notifications queued and tried, then SIGKILL.
    let driver = Driver::start(&routing, &state, &alerts, &log);
    wait_state(&state, "four queued firing notifications", |s| {
        outbox_len(s) == 4
    })
    .await;
    receivers
        .wait("failed attempts", Duration::from_secs(10), |r| {
            r.iter().filter(|q| q["answer"] == "drop").count() >= 3
        })
        .await;
    driver.kill();

    // 2. Restarted while everything resolves, one alert vanishing from the view entirely: resolves queue
    //    behind the undelivered firing notifications. SIGKILL again.
    write_alerts(
        &alerts,
        &json!([
            alert("high_latency", "pg1", "inactive", true),
            alert("connection_pool_exhausted", "pgbouncer", "inactive", true),
        ]),
    );
    let driver = Driver::start(&routing, &state, &alerts, &log);
    wait_state(&state, "four resolves queued behind the firing ones", |s| {
        outbox_len(s) == 8 && s["log"] == json!({})
    })
    .await;
    driver.kill();

    // 3. Receivers back, restart: everything arrives, in order, PagerDuty once per action.
    receivers.script(&[], "ok").await;
    smtp.set_up(true);
    let driver = Driver::start(&routing, &state, &alerts, &log);
    wait_state(&state, "an empty outbox", |s| {
        s.is_object() && outbox_len(s) == 0
    })
    .await;
    let requests = receivers.requests().await;
    assert_all_valid(&requests);
    let slack: Vec<&Value> = ok_requests(&requests, "slack");
    let texts: Vec<&str> = slack
        .iter()
        .map(|r| r["body"]["text"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(slack.len(), 4, "{texts:#?}");
    for target in [
        "high_latency (target=\"pg1\")",
        "replication_lag (target=\"pg2\")",
    ] {
        let firing = texts
            .iter()
            .position(|t| t.starts_with(&format!("[FIRING:1] {target}")));
        let resolved = texts
            .iter()
            .position(|t| t.starts_with(&format!("[RESOLVED] {target}")));
        assert!(
            matches!((firing, resolved), (Some(f), Some(r)) if f < r),
            "{target}: {texts:#?}"
        );
    }
    let pagerduty: Vec<&Value> = ok_requests(&requests, "pagerduty");
    let actions: Vec<(&str, &str)> = pagerduty
        .iter()
        .map(|r| {
            (
                r["body"]["event_action"].as_str().unwrap_or(""),
                r["body"]["dedup_key"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(actions.len(), 2, "{actions:?}");
    assert_eq!(actions[0].0, "trigger");
    assert_eq!(actions[1].0, "resolve");
    assert_eq!(actions[0].1, actions[1].1);
    let mail = mail::messages_for(&recipient);
    assert_eq!(mail.len(), 2);
    let first = mail[0]["data"].as_str().expect("data");
    let second = mail[1]["data"].as_str().expect("data");
    assert!(
        mail::header(first, "Subject").is_some_and(|s| s.starts_with("[FIRING:1] high_latency"))
    );
    assert_eq!(
        mail::header(second, "In-Reply-To"),
        mail::header(first, "Message-ID")
    );
    // Nothing more arrives: the state file is empty and the driver settles.
    driver.kill();
    assert_eq!(receivers.requests().await.len(), requests.len());
}

fn amtool(args: &[&str]) -> String {
    let output = Command::new("amtool")
        .args(args)
        .output()
        .expect("amtool runs (deploy/local/fleet up tools installs it)");
    assert!(
        output.status.success(),
        "amtool {args:?} failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silences_through_amtool_mute_alerts_until_expired_and_persist() {
    let receivers = Receivers::new("silence", &[], "ok").await;
    let routing = format!(
        "route:\n  receiver: hook\n  group_by: [alertname]\n  group_wait: 0s\n  group_interval: 1s\nreceivers:\n  - name: hook\n    webhook_configs:\n      - url: {}\n",
        receivers.url("webhook")
    );
    let harness = Harness::start(&routing, |_| {});
    let url = format!("--alertmanager.url={}", harness.api);
    let id = amtool(&[
        "silence",
        "add",
        &url,
        "alertname=replication_lag",
        "replica=~\"r.*\"",
        "--author=ops",
        "--comment=replica rebuild",
        "--duration=1h",
    ]);
    assert_eq!(id.len(), 36, "{id}");

    harness.publish(vec![
        firing(&[("alertname", "replication_lag"), ("replica", "r1")], &[]),
        firing(&[("alertname", "high_latency"), ("target", "pg1")], &[]),
    ]);
    let requests = receivers
        .wait("the unsilenced alert", Duration::from_secs(10), |r| {
            !r.is_empty()
        })
        .await;
    assert_eq!(
        requests[0]["body"]["groupLabels"],
        json!({"alertname": "high_latency"})
    );
    // Both alerts were reconciled in the same pass; only the unsilenced one was logged and queued.
    let log = harness.saved()["log"].clone();
    assert_eq!(
        log.as_object().map(|entries| entries.len()),
        Some(1),
        "{log:#}"
    );

    let listed: Value =
        serde_json::from_str(&amtool(&["silence", "query", &url, "-o", "json"])).expect("json");
    assert_eq!(listed[0]["id"], id.as_str());
    assert_eq!(listed[0]["status"]["state"], "active");
    assert_eq!(listed[0]["createdBy"], "ops");
    assert_eq!(listed[0]["comment"], "replica rebuild");
    assert_eq!(
        listed[0]["matchers"],
        json!([
            {"name": "alertname", "value": "replication_lag", "isRegex": false, "isEqual": true},
            {"name": "replica", "value": "r.*", "isRegex": true, "isEqual": true}
        ])
    );

    amtool(&["silence", "expire", &url, &id]);
    let requests = receivers
        .wait(
            "the alert after the silence ended",
            Duration::from_secs(10),
            |r| r.len() == 2,
        )
        .await;
    assert_eq!(
        requests[1]["body"]["groupLabels"],
        json!({"alertname": "replication_lag"})
    );
    let expired: Value = serde_json::from_str(&amtool(&[
        "silence",
        "query",
        &url,
        "--expired",
        "-o",
        "json",
    ]))
    .expect("json");
    assert_eq!(expired[0]["status"]["state"], "expired");

    let saved = notify::silence::Silences::load(harness.state.path()).expect("saved silences");
    assert_eq!(saved.list().len(), 1);
    assert_eq!(saved.list()[0].id, id);

    let client = reqwest::Client::new();
    let refused = client
        .post(format!("{}/api/v2/silences", harness.api))
        .header("content-type", "application/json")
        .body(json!({"matchers": [], "startsAt": "2026-01-01T00:00:00Z", "endsAt": "2099-01-01T00:00:00Z", "createdBy": "x", "comment": "y"}).to_string())
        .send()
        .await
        .expect("answer");
    assert_eq!(refused.status().as_u16(), 400);
    assert_eq!(
        refused.text().await.expect("body"),
        "\"a silence needs at least one matcher\""
    );
    let missing = client
        .delete(format!("{}/api/v2/silence/nope", harness.api))
        .send()
        .await
        .expect("answer");
    assert_eq!(missing.status().as_u16(), 404);
}

/// A real Alertmanager (Debian's prometheus-alertmanager) on a free port, killed on drop.
struct Alertmanager {
    url: String,
    child: Child,
    _dir: tempfile::TempDir,
}

impl Drop for Alertmanager {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn start_alertmanager(webhook: &str) -> Alertmanager {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("alertmanager.yml");
    std::fs::write(
        &config,
        format!("route:\n  receiver: hook\n  group_by: [alertname]\n  group_wait: 0s\n  group_interval: 1s\nreceivers:\n  - name: hook\n    webhook_configs:\n      - url: {webhook}\n"),
    )
    .expect("write config");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port();
    let url = format!("http://127.0.0.1:{port}");
    let child = Command::new("prometheus-alertmanager")
        .arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--storage.path={}",
            dir.path().join("data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .arg("--cluster.listen-address=")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("prometheus-alertmanager runs (deploy/local/fleet up tools installs it)");
    let alertmanager = Alertmanager {
        url,
        child,
        _dir: dir,
    };
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let ready = client
            .get(format!("{}/-/ready", alertmanager.url))
            .send()
            .await;
        if ready.is_ok_and(|response| response.status().is_success()) {
            return alertmanager;
        }
        assert!(Instant::now() < deadline, "alertmanager not ready");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alerts_are_pushed_to_a_real_alertmanager_which_notifies_and_resolves() {
    let receivers = Receivers::new("am", &[], "ok").await;
    let alertmanager = start_alertmanager(&receivers.url("webhook")).await;
    let routing = "route:\n  receiver: none\nreceivers:\n  - name: none\n";
    let am_url = alertmanager.url.clone();
    let harness = Harness::start(routing, move |options| {
        options.alertmanagers = vec![am_url];
        options.external_url = "http://dbwatch.example:9630".into();
    });
    let alert = firing(
        &[
            ("alertname", "replication_lag"),
            ("replica", "r1"),
            ("severity", "warning"),
        ],
        &[("summary", "lagging")],
    );
    harness.publish(vec![alert.clone()]);
    let requests = receivers
        .wait(
            "Alertmanager's firing webhook",
            Duration::from_secs(15),
            |r| !r.is_empty(),
        )
        .await;
    assert_all_valid(&requests);
    let body = &requests[0]["body"];
    assert_eq!(body["status"], "firing");
    assert_eq!(
        body["alerts"][0]["labels"],
        json!({"alertname": "replication_lag", "replica": "r1", "severity": "warning"})
    );
    assert_eq!(
        body["alerts"][0]["annotations"],
        json!({"summary": "lagging"})
    );
    assert_eq!(
        body["alerts"][0]["generatorURL"],
        "http://dbwatch.example:9630"
    );
    let listed: Value = serde_json::from_str(&amtool(&[
        "alert",
        "query",
        &format!("--alertmanager.url={}", alertmanager.url),
        "-o",
        "json",
    ]))
    .expect("json");
    assert_eq!(listed[0]["status"]["state"], "active");

    harness.publish(vec![resolved(&alert)]);
    let requests = receivers
        .wait(
            "Alertmanager's resolved webhook",
            Duration::from_secs(15),
            |r| r.iter().any(|q| q["body"]["status"] == "resolved"),
        )
        .await;
    assert_all_valid(&requests);
    assert_eq!(
        harness.counter(
            "dbwatch_notifications_total",
            &[("receiver", "alertmanager"), ("outcome", "retried")]
        ),
        0.0
    );
    assert!(
        harness.counter(
            "dbwatch_notifications_total",
            &[("receiver", "alertmanager"), ("outcome", "delivered")]
        ) >= 2.0
    );
}

#[tokio::test]
async fn an_inhibited_alert_is_held_back_and_neither_notified_nor_resolved() {
    let receivers = Receivers::new("inhibit", &[], "ok").await;
    let routing = format!(
        "route:\n  receiver: hook\n  group_by: [alertname, target]\n  group_wait: 0s\n  group_interval: 1s\ninhibit_rules:\n  - source_matchers: [alertname=replication_broken]\n    target_matchers: [alertname=replication_lag]\n    equal: [target]\nreceivers:\n  - name: hook\n    webhook_configs:\n      - url: {}\n",
        receivers.url("webhook")
    );
    let harness = Harness::start(&routing, |_| {});
    let broken = firing(
        &[("alertname", "replication_broken"), ("target", "pg2")],
        &[],
    );
    let lag_same = firing(&[("alertname", "replication_lag"), ("target", "pg2")], &[]);
    let lag_other = firing(&[("alertname", "replication_lag"), ("target", "pg3")], &[]);
    harness.publish(vec![broken.clone(), lag_same.clone(), lag_other.clone()]);
    let requests = receivers
        .wait("two notifications", Duration::from_secs(10), |r| {
            r.len() >= 2
        })
        .await;
    let mut groups: Vec<String> = requests
        .iter()
        .map(|r| r["body"]["groupLabels"].to_string())
        .collect();
    groups.sort();
    assert_eq!(
        groups,
        [
            json!({"alertname": "replication_broken", "target": "pg2"}).to_string(),
            json!({"alertname": "replication_lag", "target": "pg3"}).to_string()
        ]
    );
    let log = harness.saved()["log"].clone();
    assert_eq!(
        log.as_object().map(|entries| entries.len()),
        Some(2),
        "{log:#}"
    );
    // The cause resolves: the lag it hid is now notified as firing, never as a resolve it did not have.
    harness.publish(vec![resolved(&broken), lag_same.clone(), lag_other]);
    let requests = receivers
        .wait(
            "the resolve and the uninhibited alert",
            Duration::from_secs(10),
            |r| r.len() >= 4,
        )
        .await;
    let later: Vec<(String, String)> = requests[2..]
        .iter()
        .map(|r| {
            (
                r["body"]["groupLabels"]["alertname"]
                    .as_str()
                    .unwrap_or("")
                    .to_owned(),
                r["body"]["status"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    assert!(
        later.contains(&("replication_broken".to_owned(), "resolved".to_owned())),
        "{later:?}"
    );
    assert!(
        later.contains(&("replication_lag".to_owned(), "firing".to_owned())),
        "{later:?}"
    );
}

// ---- Answers from receivers that must neither kill nor wedge the notifier (issue 15, H1/M3) ----

fn pagerduty_routing(receivers: &Receivers) -> String {
    format!(
        "route:\n  receiver: pd\n  group_by: [alertname]\n  group_wait: 0s\n  group_interval: 1s\nreceivers:\n  - name: pd\n    pagerduty_configs:\n      - routing_key: {ROUTING_KEY}\n        url: {}\n",
        receivers.url("pagerduty")
    )
}

fn triggers<'a>(requests: &'a [Value], alertname: &str) -> Vec<&'a Value> {
    ok_requests(requests, "pagerduty")
        .into_iter()
        .filter(|request| {
            request["body"]["payload"]["summary"]
                .as_str()
                .is_some_and(|summary| summary.contains(alertname))
        })
        .collect()
}

/// The saved state once it holds a dead letter.
async fn first_dead_letter(harness: &Harness) -> Value {
    wait_saved(harness, "the dead letter", |state| {
        state["dead_letters"]
            .as_array()
            .is_some_and(|letters| !letters.is_empty())
    })
    .await
}

/// Polls the saved state until `done` holds.
async fn wait_saved(harness: &Harness, what: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let state = harness.saved();
        if done(&state) {
            return state;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}; state: {state:#}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_huge_retry_after_is_capped_retried_and_a_later_alert_still_arrives() {
    // The review's reproduction: this header panicked the notifier ("overflow when adding duration to instant").
    let receivers = Receivers::new("pd-huge", &["429:9300000000000000000"], "ok").await;
    // The cap is 1 h; lowered here so that the retry is seen within the test.
    let harness = Harness::start(&pagerduty_routing(&receivers), |options| {
        options.max_retry_after = Duration::from_secs(2)
    });
    harness.publish(vec![firing(
        &[("alertname", "first_page"), ("target", "pg1")],
        &[("summary", "first page")],
    )]);
    let requests = receivers
        .wait(
            "the retry after the capped wait",
            Duration::from_secs(15),
            |r| triggers(r, "first_page").len() == 1,
        )
        .await;
    assert_all_valid(&requests);
    assert_eq!(requests[0]["answer"], "429:9300000000000000000");
    let gap = requests[1]["at"].as_f64().expect("time") - requests[0]["at"].as_f64().expect("time");
    assert!(
        (1.9..8.0).contains(&gap),
        "retried {gap:.3}s after the 429; the capped wait is 2 s"
    );
    // Nothing died: no restart, and a later alert's page goes out.
    assert!(harness.components.down().is_empty());
    assert_eq!(harness.components.statuses()[0].restarts, 0);
    harness.publish(vec![
        firing(
            &[("alertname", "first_page"), ("target", "pg1")],
            &[("summary", "first page")],
        ),
        firing(
            &[("alertname", "second_page"), ("target", "pg2")],
            &[("summary", "second page")],
        ),
    ]);
    receivers
        .wait("the later alert's page", Duration::from_secs(10), |r| {
            triggers(r, "second_page").len() == 1
        })
        .await;
    assert_eq!(
        harness.counter(
            "dbwatch_notifications_dead_letter_total",
            &[("receiver", "pd")]
        ),
        0.0
    );
}

#[tokio::test]
async fn a_retry_after_past_the_give_up_time_dead_letters_at_once_instead_of_wedging() {
    // A year; capped at the destination's wait (5 s here), which still falls past the 2 s give-up time.
    let receivers = Receivers::new("pd-year", &["429:31536000"], "ok").await;
    let harness = Harness::start(&pagerduty_routing(&receivers), |options| {
        options.max_age = Duration::from_secs(2);
        options.max_retry_after = Duration::from_secs(5);
    });
    let started = Instant::now();
    harness.publish(vec![firing(&[("alertname", "wedged")], &[])]);
    let state = first_dead_letter(&harness).await;
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "dead-lettered after {:?}, not at once",
        started.elapsed()
    );
    assert_eq!(state["outbox"], json!([]), "the lane is free");
    let reason = state["dead_letters"][0]["reason"].as_str().expect("reason");
    assert!(
        reason.contains("would fall past its give-up time") && reason.contains("answered 429"),
        "{reason}"
    );
    assert_eq!(
        harness.counter(
            "dbwatch_notifications_dead_letter_total",
            &[("receiver", "pd")]
        ),
        1.0
    );
    // The destination waits out the capped Retry-After (5 s), then takes the next page. Published late in the
    // wait: a page queued at once would itself reach its 2 s give-up time before the destination is free.
    tokio::time::sleep_until((started + Duration::from_millis(4_200)).into()).await;
    harness.publish(vec![firing(&[("alertname", "after_the_wait")], &[])]);
    receivers
        .wait("the next page", Duration::from_secs(12), |r| {
            triggers(r, "after_the_wait").len() == 1
        })
        .await;
    assert!(harness.components.down().is_empty());
}

#[tokio::test]
async fn a_persisted_not_before_a_year_ahead_does_not_wedge_the_lane() {
    let receivers = Receivers::new("stale-state", &[], "ok").await;
    let routing = format!(
        "route:\n  receiver: hook\n  group_wait: 0s\nreceivers:\n  - name: hook\n    webhook_configs:\n      - url: {}\n",
        receivers.url("webhook")
    );
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_millis() as i64;
    let year = 365 * 24 * 3600 * 1000_i64;
    // As an older dbwatch wrote it after honouring `Retry-After: 31536000`.
    let saved = json!({
        "next_id": 1,
        "log": {},
        "outbox": [{
            "id": 1, "receiver": "hook", "integration": 0, "integration_kind": "webhook",
            "group_key": "{}:{}",
            "payload": {"kind": "webhook", "body": {
                "version": "4", "groupKey": "{}:{}", "truncatedAlerts": 0, "status": "firing",
                "receiver": "hook", "groupLabels": {}, "commonLabels": {}, "commonAnnotations": {},
                "externalURL": "", "alerts": []}},
            "created_at": now, "attempts": 1, "not_before": now + year,
            "last_error": "webhook answered 429: slow down"
        }],
        "dead_letters": []
    });
    let state = tempfile::tempdir().expect("temp dir");
    std::fs::write(state.path().join("notifications.json"), saved.to_string())
        .expect("write the state");
    let _harness = Harness::start_in(state, &routing, |options| {
        options.max_retry_after = Duration::from_secs(1)
    });
    let requests = receivers
        .wait("the restored notification", Duration::from_secs(10), |r| {
            ok_requests(r, "webhook").len() == 1
        })
        .await;
    assert_all_valid(&requests);
}

#[tokio::test]
async fn a_10_mb_answer_is_read_only_up_to_64_kib() {
    let receivers = Receivers::new("huge-body", &["huge:500:10485760"], "ok").await;
    let routing = format!(
        "route:\n  receiver: hook\n  group_wait: 0s\nreceivers:\n  - name: hook\n    webhook_configs:\n      - url: {}\n",
        receivers.url("webhook")
    );
    // One attempt, so the reason of the only answer is kept in the dead letter.
    let harness = Harness::start(&routing, |options| options.max_attempts = 1);
    let started = Instant::now();
    harness.publish(vec![firing(&[("alertname", "huge_answer")], &[])]);
    let state = first_dead_letter(&harness).await;
    // Cut, not read whole: 64 KiB of a 10 MB answer, in well under the 2 s request timeout.
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    let reason = state["dead_letters"][0]["reason"].as_str().expect("reason");
    assert!(
        reason.contains("webhook answered 500: xxxx") && reason.ends_with("(body cut at 64 KiB)"),
        "{}",
        &reason[reason.len().saturating_sub(200)..]
    );
    assert!(reason.len() < 1_000, "{} bytes kept", reason.len());
}

#[tokio::test]
async fn a_connection_reset_is_retried_and_its_cause_kept() {
    let receivers = Receivers::new("reset", &["reset"], "ok").await;
    let routing = format!(
        "route:\n  receiver: hook\n  group_wait: 0s\nreceivers:\n  - name: hook\n    webhook_configs:\n      - url: {}\n",
        receivers.url("webhook")
    );
    let harness = Harness::start(&routing, |options| options.max_attempts = 1);
    harness.publish(vec![firing(&[("alertname", "reset")], &[])]);
    let state = first_dead_letter(&harness).await;
    let reason = state["dead_letters"][0]["reason"].as_str().expect("reason");
    // The cause chain, down to the socket error, and never the URL.
    assert!(
        reason.starts_with("gave up after 1 attempts: webhook ")
            && reason.to_lowercase().contains("connection")
            && !reason.contains(&receivers.bucket),
        "{reason}"
    );
}

#[tokio::test]
async fn a_notifier_that_stops_is_restarted_reported_and_still_delivers() {
    let receivers = Receivers::new("restart", &[], "ok").await;
    let routing = format!(
        "route:\n  receiver: hook\n  group_by: [alertname]\n  group_wait: 0s\nreceivers:\n  - name: hook\n    webhook_configs:\n      - url: {}\n",
        receivers.url("webhook")
    );
    let harness = Harness::start(&routing, |_| {});
    let client = reqwest::Client::new();
    let ready = || async {
        let response = client
            .get(format!("{}/-/ready", harness.api))
            .send()
            .await
            .expect("/-/ready answers");
        (
            response.status().as_u16(),
            response.text().await.unwrap_or_default(),
        )
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    while ready().await.0 != 200 {
        assert!(
            Instant::now() < deadline,
            "never ready: {:?}",
            ready().await
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    harness.seed.inject_stop();
    // Down during the supervisor's backoff (1 s): reported on /-/ready and in the metrics.
    let deadline = Instant::now() + Duration::from_secs(5);
    let (status, body) = loop {
        let answer = ready().await;
        if answer.0 == 503 {
            break answer;
        }
        assert!(Instant::now() < deadline, "/-/ready stayed {answer:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert_eq!(status, 503);
    assert_eq!(body, "not ready: component notifier down\n");
    let page = |client: reqwest::Client, base: String| async move {
        client
            .get(format!("{base}/"))
            .send()
            .await
            .expect("the status page answers")
            .text()
            .await
            .expect("a page")
    };
    let html = page(client.clone(), harness.api.clone()).await;
    assert!(
        html.contains("Components: 0 of 1 running")
            && html.contains("<tr data-component=\"notifier\"><td><b>notifier</b></td><td class=\"down\">down</td>")
            && html.contains("it returned before shutdown"),
        "{html}"
    );
    assert_eq!(metric_gauge(&harness.registry, "dbwatch_component_up"), 0.0);
    let down = &harness.components.statuses()[0];
    assert!(
        down.last_failure
            .as_deref()
            .is_some_and(|reason| reason.contains("returned before shutdown")),
        "{down:?}"
    );

    // Rebuilt from the saved state, counted, ready again.
    let deadline = Instant::now() + Duration::from_secs(10);
    while ready().await.0 != 200 {
        assert!(
            Instant::now() < deadline,
            "not restarted: {:?}",
            ready().await
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        harness.counter(
            "dbwatch_component_restarts_total",
            &[("component", "notifier")]
        ),
        1.0
    );
    assert_eq!(metric_gauge(&harness.registry, "dbwatch_component_up"), 1.0);
    let html = page(client.clone(), harness.api.clone()).await;
    assert!(
        html.contains("Components: 1 of 1 running")
            && html.contains("<td class=\"up\">running</td>")
            && html.contains("<td class=\"n\">1</td><td>it returned before shutdown"),
        "{html}"
    );

    // And the restarted notifier delivers a later alert.
    harness.publish(vec![firing(&[("alertname", "after_restart")], &[])]);
    let requests = receivers
        .wait(
            "the alert after the restart",
            Duration::from_secs(10),
            |r| ok_requests(r, "webhook").len() == 1,
        )
        .await;
    assert_eq!(
        requests[0]["body"]["groupLabels"]["alertname"],
        "after_restart"
    );
}

fn metric_gauge(registry: &prometheus::Registry, name: &str) -> f64 {
    registry
        .gather()
        .iter()
        .filter(|family| family.name() == name)
        .flat_map(|family| family.get_metric().iter())
        .map(|sample| sample.get_gauge().get_value())
        .sum()
}

// ---- Messages that cannot be hijacked (M8) ----

#[tokio::test]
async fn slack_escapes_database_controlled_names() {
    let receivers = Receivers::new("slack-escape", &[], "ok").await;
    let routing = format!(
        "route:\n  receiver: slack\n  group_by: [alertname, database]\n  group_wait: 0s\nreceivers:\n  - name: slack\n    slack_configs:\n      - api_url: {}\n",
        receivers.url("slack")
    );
    let harness = Harness::start(&routing, |_| {});
    harness.publish(vec![firing(
        &[
            ("alertname", "database_bloat"),
            ("database", "<!channel>"),
            ("replica", "<https://evil.example|Runbook>"),
        ],
        &[
            (
                "summary",
                "bloat in <!channel> & <https://evil.example|Runbook>",
            ),
            ("runbook_url", "<https://evil.example|Runbook>"),
        ],
    )]);
    let requests = receivers
        .wait("the message", Duration::from_secs(10), |r| {
            ok_requests(r, "slack").len() == 1
        })
        .await;
    assert_all_valid(&requests);
    let body = &requests[0]["body"];
    let section = body["blocks"][1]["text"]["text"].as_str().expect("section");
    let text = body["text"].as_str().expect("text");
    for mrkdwn in [section, text] {
        assert!(
            !mrkdwn.contains("<!") && !mrkdwn.contains("<https://evil"),
            "an unescaped control sequence: {mrkdwn}"
        );
        assert!(mrkdwn.contains("&lt;!channel&gt;"), "{mrkdwn}");
    }
    assert!(
        section.contains("bloat in &lt;!channel&gt; &amp; &lt;https://evil.example|Runbook&gt;")
            && section.contains("`database=&lt;!channel&gt;`")
            && section.contains("Runbook: &lt;https://evil.example|Runbook&gt;"),
        "{section}"
    );
}

// ---- No secret in any log line (M6) ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trace_logging_prints_no_webhook_url() {
    let receivers = Receivers::new("secret-path-7f3a9c", &[], "ok").await;
    let dir = tempfile::tempdir().expect("temp dir");
    let routing = dir.path().join("routing.yml");
    let slack = receivers.url("slack");
    let hook = receivers.url("webhook");
    std::fs::write(
        &routing,
        format!(
            "route:\n  receiver: both\n  group_wait: 0s\nreceivers:\n  - name: both\n    slack_configs: [{{api_url: '{slack}'}}]\n    webhook_configs: [{{url: '{hook}'}}]\n"
        ),
    )
    .expect("write routing");
    let alerts = dir.path().join("alerts.json");
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_millis() as u64;
    write_alerts(
        &alerts,
        &json!([{"labels": {"alertname": "traced"}, "state": "firing",
                 "active_at_ms": now - 60_000, "fired_at_ms": now, "resolved_at_ms": null}]),
    );
    let log = dir.path().join("driver.log");
    let logfile = std::fs::File::create(&log).expect("log file");
    let mut driver = Command::new(driver_path())
        .arg(&routing)
        .arg(dir.path().join("state"))
        .arg(&alerts)
        .env("RUST_LOG", "trace,reqwest::connect=trace,hyper_util=trace")
        .stdout(Stdio::null())
        .stderr(logfile)
        .spawn()
        .expect("start the notify driver");
    let delivered = receivers
        .wait("both deliveries", Duration::from_secs(15), |r| {
            ok_requests(r, "slack").len() == 1 && ok_requests(r, "webhook").len() == 1
        })
        .await;
    let _ = driver.kill();
    let _ = driver.wait();
    assert_all_valid(&delivered);
    let text = std::fs::read_to_string(&log).expect("read the log");
    // The log is at trace: dbwatch's own records are there, the HTTP client's debug and trace ones are not.
    assert!(text.contains("notification delivered"), "{text}");
    // The driver's own debug line: the filter is really at debug and below.
    assert!(
        text.contains("notify driver started"),
        "not a debug log: {text}"
    );
    assert!(
        !text.contains(&receivers.bucket) && !text.contains("secret-path-7f3a9c"),
        "a webhook URL reached the log:\n{text}"
    );
}

/// A dbwatch whose only alerting setting is `alerting.alertmanagers` (the shipped Kubernetes pair: Alertmanager
/// routes and keeps the silences) pushes its alerts there, as Prometheus would, with no routing file of its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_pushes_to_alertmanager_with_no_routing_file_of_its_own() {
    let receivers = Receivers::new("am-only", &[], "ok").await;
    let alertmanager = start_alertmanager(&receivers.url("webhook")).await;
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(
        dir.path().join("rules.yml"),
        "groups:\n  - name: g\n    rules:\n      - alert: dead_target_down\n        expr: db_up == 0\n",
    )
    .expect("write rules");
    let config = dir.path().join("dbwatch.yml");
    std::fs::write(
        &config,
        format!(
            "global: {{interval: 1s, timeout: 500ms, evaluation_interval: 1s}}\nrule_files: [rules.yml]\n\
             alerting:\n  alertmanagers: [{}]\ntargets:\n  - name: dead\n    type: postgres\n    \
             connection: {{host: 127.0.0.1, port: 1, user: dbwatch, password: x}}\n",
            alertmanager.url
        ),
    )
    .expect("write config");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port();
    let base = format!("http://127.0.0.1:{port}");
    let mut daemon = Command::new(env!("CARGO_BIN_EXE_dbwatch"))
        .arg("--config.file")
        .arg(&config)
        .arg("--web.listen-address")
        .arg(format!("127.0.0.1:{port}"))
        .arg("--storage.path")
        .arg(dir.path().join("data"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start dbwatch");

    let requests = receivers
        .wait(
            "Alertmanager's webhook for the daemon's alert",
            Duration::from_secs(30),
            |r| {
                r.iter().any(|q| {
                    q["body"]["status"] == "firing"
                        && q["body"]["alerts"][0]["labels"]["alertname"] == "dead_target_down"
                })
            },
        )
        .await;
    assert_all_valid(&requests);
    let client = reqwest::Client::new();
    let metrics = client
        .get(format!("{base}/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("body");
    assert!(
        metrics.contains("dbwatch_component_up{component=\"forwarder\"} 1"),
        "{metrics}"
    );
    // dbwatch's silences would mute only its own notifications: here they are Alertmanager's, so no API.
    let silences = client
        .get(format!("{base}/api/v2/silences"))
        .send()
        .await
        .expect("silences");
    assert_eq!(silences.status(), 404);
    let _ = daemon.kill();
    let _ = daemon.wait();
}

/// A route muted for the current minute (UTC) holds the page and sends it once the minute is over; the file
/// passes amtool too.
#[tokio::test]
async fn a_muted_interval_holds_the_notification_and_releases_it_when_it_ends() {
    let receivers = Receivers::new("muted", &[], "ok").await;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let minute = (now % 86_400) / 60;
    let ends_at = (now / 60 + 1) * 60;
    let hhmm = |minute: u64| format!("{:02}:{:02}", minute / 60, minute % 60);
    let routing = format!(
        "time_intervals:\n  - name: this-minute\n    time_intervals:\n      - times: [{{start_time: '{}', end_time: '{}'}}]\nroute:\n  receiver: hook\n  group_by: [alertname]\n  group_wait: 0s\n  group_interval: 1s\n  routes:\n    - matchers: [severity=\"warning\"]\n      mute_time_intervals: [this-minute]\nreceivers:\n  - name: hook\n    webhook_configs:\n      - url: {}\n",
        hhmm(minute),
        hhmm(minute + 1),
        receivers.url("webhook")
    );
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("routing.yml");
    std::fs::write(&file, &routing).expect("write routing");
    amtool::check(&file)
        .unwrap_or_else(|error| panic!("amtool check-config refused {}: {error}", file.display()));
    let harness = Harness::start(&routing, |_| {});
    harness.publish(vec![firing(
        &[("alertname", "replication_lag"), ("severity", "warning")],
        &[],
    )]);
    let requests = receivers
        .wait(
            "the held notification",
            Duration::from_secs(75),
            |requests| !ok_requests(requests, "webhook").is_empty(),
        )
        .await;
    let first = ok_requests(&requests, "webhook")[0];
    let at = first["at"].as_f64().expect("arrival time");
    assert!(
        at >= ends_at as f64,
        "delivered at {at}, inside the muted minute ending at {ends_at}"
    );
    // Released at the first flush after the interval: group_interval is 1 s.
    assert!(
        at < ends_at as f64 + 5.0,
        "released late: {at} for {ends_at}"
    );
    assert_eq!(first["body"]["status"], "firing");
    assert_all_valid(&requests);
}
