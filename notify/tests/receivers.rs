//! The receivers Alertmanager has beyond Slack, PagerDuty, email and webhooks, end to end: the notifier, run in
//! this process, delivers a firing group and its resolve to each one, and a stand-in that checks every request
//! against the service's published format accepts them (`deploy/local/receivers/http_receivers.py`, a copy this
//! test starts itself with python3 on a free port). SNS goes to the fleet's moto server (`deploy/local/fleet up
//! moto`, its `env`), and the message is read back from an SQS queue subscribed to the topic.

#[path = "../../tests/support/receivers.rs"]
mod receivers;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use dbwatch_notify::integrations::pushover::PushoverConfig;
use dbwatch_notify::integrations::{http::Endpoint, sigv4};
use dbwatch_notify::{Integration, Notifier, NotifyConfig};
use dbwatch_rules::{AlertState, AlertSummary, AlertsHandle};
use dbwatch_secret::{PasswordSource, Secret};
use receivers::{Own, Receivers};
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

const PUSHOVER_TOKEN: &str = "azGDORePK8gMaC0QOYAMyEEuzJnyUi";
const PUSHOVER_USER: &str = "uQiRzpo4DXghDmr9QzzfQu27cmVRsG";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the workspace")
        .to_owned()
}

fn firing(replica: &str) -> AlertSummary {
    let now = SystemTime::now();
    let labels: std::collections::BTreeMap<String, String> = [
        ("alertname", "replication_lag"),
        ("cluster", "main"),
        ("replica", replica),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    AlertSummary {
        group: "test".into(),
        alertname: "replication_lag".into(),
        labels,
        annotations: [("summary".to_owned(), "replica <lagging> & slow".to_owned())].into(),
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

/// A notifier on its own state folder, stopped on drop.
struct Running {
    alerts: AlertsHandle,
    registry: prometheus::Registry,
    shutdown: CancellationToken,
    _state: tempfile::TempDir,
}

impl Running {
    fn start(mut config: NotifyConfig) -> Running {
        config.delivery.initial_backoff = Duration::from_millis(100);
        config.delivery.max_backoff = Duration::from_millis(500);
        config.delivery.timeout = Duration::from_secs(3);
        config.delivery.max_attempts = 4;
        config.delivery.external_url = "http://dbwatch.example:9630".into();
        let state = tempfile::tempdir().expect("temp dir");
        let alerts = AlertsHandle::default();
        let registry = prometheus::Registry::new();
        let notifier =
            Notifier::new(config, state.path(), &registry, alerts.clone()).expect("notifier");
        let shutdown = CancellationToken::new();
        tokio::spawn(notifier.run(shutdown.clone()));
        Running {
            alerts,
            registry,
            shutdown,
            _state: state,
        }
    }

    fn publish(&self, alerts: Vec<AlertSummary>) {
        self.alerts.publish_alerts(alerts, SystemTime::now());
    }

    fn counter(&self, name: &str, wanted: &[(&str, &str)]) -> f64 {
        self.registry
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
}

impl Drop for Running {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

fn load(routing: &str) -> NotifyConfig {
    let no_env = |_: &str| None;
    dbwatch_notify::load_str(Path::new("test-routing.yml"), routing, &no_env)
        .unwrap_or_else(|errors| panic!("{errors}"))
}

/// Pushover's URL is fixed (Alertmanager has no key for it): the test points the read entry at the stand-in.
fn pushover_at(url: String) -> Arc<dyn Integration> {
    Arc::new(PushoverConfig {
        api_url: url,
        user_key: PasswordSource::Inline(Secret::new(PUSHOVER_USER.into())),
        token: PasswordSource::Inline(Secret::new(PUSHOVER_TOKEN.into())),
        title: None,
        message: None,
        url: None,
        url_title: None,
        device: None,
        sound: None,
        priority: None,
        priority_template: None,
        retry: Duration::from_secs(60),
        expire: Duration::from_secs(3600),
        ttl: None,
        html: false,
        send_resolved: true,
        http: Endpoint::default(),
    })
}

fn of_kind<'a>(requests: &'a [Value], kind: &str) -> Vec<&'a Value> {
    requests
        .iter()
        .filter(|request| request["kind"] == kind)
        .collect()
}

#[tokio::test]
async fn every_new_receiver_gets_a_valid_firing_message_and_its_resolve() {
    let own = Own::start(&repo());
    let receivers = Receivers::at(own.base.clone(), "all", &[], "ok").await;
    let routing = format!(
        "route:\n  receiver: all\n  group_by: [alertname]\n  group_wait: 0s\n  group_interval: 1s\nreceivers:\n  - name: all\n    discord_configs:\n      - webhook_url: {discord}\n    telegram_configs:\n      - api_url: {telegram}\n        bot_token: '123456:AAE-test_token'\n        chat_id: -1001234567890\n    webex_configs:\n      - api_url: {webex}\n        room_id: Y2lzY29zcGFyazovL3VzL1JPT00vMQ\n        http_config:\n          authorization:\n            credentials: webex-bot-token\n    opsgenie_configs:\n      - api_url: {opsgenie}\n        api_key: 0d2e4cd8-6c43-4e4b-ae3c-1a7b8d3e9f10\n        update_alerts: true\n        tags: db,replication\n        responders: [{{name: dba, type: team}}]\n    victorops_configs:\n      - api_url: {victorops}\n        api_key: vo-api-key\n        routing_key: dba\n    msteams_configs:\n      - webhook_url: {msteams}\n    msteamsv2_configs:\n      - webhook_url: {msteamsv2}\n    pushover_configs:\n      - user_key: placeholder\n        token: placeholder\n",
        discord = receivers.url("discord"),
        telegram = receivers.url("telegram"),
        webex = receivers.url("webex"),
        opsgenie = receivers.url("opsgenie"),
        victorops = receivers.url("victorops"),
        msteams = receivers.url("msteams"),
        msteamsv2 = receivers.url("msteamsv2"),
    );
    let mut config = load(&routing);
    let integrations = &mut config.receivers[0].integrations;
    assert_eq!(integrations.len(), 8);
    let pushover = integrations
        .iter()
        .position(|integration| integration.kind().as_str() == "pushover")
        .expect("the pushover entry");
    integrations[pushover] = pushover_at(receivers.url("pushover"));
    let running = Running::start(config);

    let alerts = vec![firing("r1"), firing("r2")];
    running.publish(alerts.clone());
    // Opsgenie's create plus its two updates; one request each for the others.
    let requests = receivers
        .wait("the firing messages", Duration::from_secs(20), |r| {
            r.len() >= 10
        })
        .await;
    for request in &requests {
        assert_eq!(request["valid"], true, "refused: {request:#}");
    }
    let one = |kind: &str| -> Value {
        let found = of_kind(&requests, kind);
        assert_eq!(found.len(), 1, "{kind}: {found:#?}");
        found[0]["body"].clone()
    };
    let embed = one("discord")["embeds"][0].clone();
    assert_eq!(embed["title"], "[FIRING:2] replication_lag (main)");
    assert_eq!(embed["color"], 0x992D22);
    let telegram = one("telegram");
    assert_eq!(telegram["chat_id"], -1_001_234_567_890_i64);
    assert!(telegram["text"]
        .as_str()
        .expect("text")
        .contains(" - summary = replica &lt;lagging&gt; &amp; slow\n"));
    assert!(one("webex")["markdown"]
        .as_str()
        .expect("markdown")
        .starts_with("replica <lagging> & slow\n\nAlerts Firing:\n"));
    let pushover = one("pushover");
    assert_eq!(pushover["token"], PUSHOVER_TOKEN);
    assert_eq!(pushover["user"], PUSHOVER_USER);
    assert_eq!(pushover["priority"], 2);
    let victorops = of_kind(&requests, "victorops");
    assert_eq!(victorops.len(), 1);
    assert_eq!(victorops[0]["path"], "/vo-api-key/dba");
    assert_eq!(victorops[0]["body"]["message_type"], "CRITICAL");
    assert_eq!(one("msteams")["themeColor"], "8C1A1A");
    assert_eq!(
        one("msteamsv2")["attachments"][0]["content"]["body"][0]["color"],
        "Attention"
    );
    let opsgenie = of_kind(&requests, "opsgenie");
    let calls: Vec<(String, String)> = opsgenie
        .iter()
        .map(|r| {
            (
                r["method"].as_str().expect("method").to_owned(),
                r["path"].as_str().expect("path").to_owned(),
            )
        })
        .collect();
    let alias = opsgenie[0]["body"]["alias"]
        .as_str()
        .expect("alias")
        .to_owned();
    assert_eq!(alias.len(), 64);
    assert_eq!(
        calls,
        [
            ("POST".to_owned(), "/v2/alerts".to_owned()),
            ("PUT".to_owned(), format!("/v2/alerts/{alias}/message")),
            ("PUT".to_owned(), format!("/v2/alerts/{alias}/description")),
        ]
    );
    assert_eq!(opsgenie[0]["body"]["tags"], json!(["db", "replication"]));
    assert_eq!(opsgenie[1]["query"]["identifierType"], "alias");

    running.publish(alerts.iter().map(resolved).collect());
    let requests = receivers
        .wait("the resolves", Duration::from_secs(20), |r| r.len() >= 18)
        .await;
    for request in &requests {
        assert_eq!(request["valid"], true, "refused: {request:#}");
    }
    let last = |kind: &str| -> Value {
        of_kind(&requests, kind)
            .last()
            .map(|request| (*request).clone())
            .unwrap_or_else(|| panic!("no {kind} request"))
    };
    let embed = last("discord")["body"]["embeds"][0].clone();
    assert_eq!(embed["title"], "[RESOLVED] replication_lag (main)");
    assert_eq!(embed["color"], 0x2ECC71);
    assert!(last("telegram")["body"]["text"]
        .as_str()
        .expect("text")
        .starts_with("\n\n\nAlerts Resolved:\n"));
    assert!(last("webex")["body"]["markdown"]
        .as_str()
        .expect("markdown")
        .contains("Alerts Resolved:"));
    assert_eq!(last("pushover")["body"]["priority"], 0);
    assert_eq!(last("victorops")["body"]["message_type"], "RECOVERY");
    assert_eq!(
        last("victorops")["body"]["entity_id"],
        victorops[0]["body"]["entity_id"]
    );
    assert_eq!(last("msteams")["body"]["themeColor"], "2DC72D");
    assert_eq!(
        last("msteamsv2")["body"]["attachments"][0]["content"]["body"][0]["color"],
        "Good"
    );
    let close = last("opsgenie");
    assert_eq!(close["method"], "POST");
    assert_eq!(close["path"], format!("/v2/alerts/{alias}/close"));
    assert_eq!(close["query"]["identifierType"], "alias");
    assert_eq!(close["body"]["source"], "http://dbwatch.example:9630");
    // The last answers may still be on their way back to the notifier.
    let delivered = |kind: &str| {
        running.counter(
            "dbwatch_notifications_total",
            &[("integration", kind), ("outcome", "delivered")],
        )
    };
    let kinds = [
        "discord",
        "telegram",
        "webex",
        "opsgenie",
        "pushover",
        "victorops",
        "msteams",
        "msteamsv2",
    ];
    let deadline = Instant::now() + Duration::from_secs(5);
    while kinds.iter().any(|kind| delivered(kind) < 2.0) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for kind in kinds {
        assert_eq!(delivered(kind), 2.0, "{kind}");
        assert_eq!(
            running.counter(
                "dbwatch_notifications_total",
                &[("integration", kind), ("outcome", "retried")]
            ),
            0.0,
            "{kind}"
        );
    }
}

#[tokio::test]
async fn telegrams_body_retry_after_is_honoured_and_an_opsgenie_refusal_is_dead_lettered() {
    let own = Own::start(&repo());
    let telegram = Receivers::at(own.base.clone(), "tg429", &["429:2"], "ok").await;
    let opsgenie = Receivers::at(own.base.clone(), "og401", &[], "ok").await;
    let routing = format!(
        "route:\n  receiver: r\n  group_wait: 0s\nreceivers:\n  - name: r\n    telegram_configs:\n      - api_url: {}\n        bot_token: '1:x'\n        chat_id: 5\n    opsgenie_configs:\n      - api_url: {}\n        api_key: 'not a genie key'\n",
        telegram.url("telegram"),
        opsgenie.url("opsgenie"),
    );
    let running = Running::start(load(&routing));
    running.publish(vec![firing("r1")]);
    let requests = telegram
        .wait(
            "the retried telegram message",
            Duration::from_secs(20),
            |r| r.len() >= 2,
        )
        .await;
    assert_eq!(requests[0]["answer"], "429:2");
    assert_eq!(requests[1]["answer"], "ok");
    let waited = requests[1]["at"].as_f64().expect("at") - requests[0]["at"].as_f64().expect("at");
    // The backoff alone would be 100-500 ms: the wait is the answer's `parameters.retry_after`.
    assert!(waited >= 1.9, "retried after {waited:.2} s");
    let refused = opsgenie
        .wait("the refused opsgenie alert", Duration::from_secs(10), |r| {
            !r.is_empty()
        })
        .await;
    assert_eq!(refused[0]["valid"], false);
    assert_eq!(
        refused[0]["errors"][0],
        "Authorization: GenieKey <api key> required"
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while running.counter(
        "dbwatch_notifications_dead_letter_total",
        &[("integration", "opsgenie")],
    ) < 1.0
    {
        assert!(Instant::now() < deadline, "no dead letter for opsgenie");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // A 401 is permanent: one attempt, not four.
    assert_eq!(opsgenie.requests().await.len(), 1);
    assert_eq!(
        running.counter(
            "dbwatch_notifications_total",
            &[("integration", "opsgenie"), ("outcome", "failed")]
        ),
        1.0
    );
}

/// One signed Query API call to moto; the answer's XML.
async fn aws(
    client: &reqwest::Client,
    endpoint: &str,
    service: &str,
    params: &[(&str, &str)],
) -> String {
    let params: Vec<(String, String)> = params
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    let body = sigv4::form_encode(&params).into_bytes();
    let url = reqwest::Url::parse(endpoint).expect("endpoint URL");
    let host = format!(
        "{}:{}",
        url.host_str().expect("host"),
        url.port_or_known_default().expect("port")
    );
    let content_type = "application/x-www-form-urlencoded; charset=utf-8";
    let credentials = sigv4::Credentials {
        access_key: std::env::var("AWS_ACCESS_KEY_ID").unwrap_or_else(|_| "testing".into()),
        secret_key: std::env::var("AWS_SECRET_ACCESS_KEY").unwrap_or_else(|_| "testing".into()),
        session_token: None,
    };
    let signed = sigv4::sign(
        &credentials,
        "us-east-1",
        service,
        "POST",
        &host,
        "/",
        content_type,
        &body,
        &sigv4::amz_date(SystemTime::now()),
    );
    let response = client
        .post(url)
        .header("content-type", content_type)
        .header("x-amz-date", signed.amz_date)
        .header("authorization", signed.authorization)
        .body(body)
        .send()
        .await
        .expect("moto answers");
    let status = response.status();
    let text = response.text().await.expect("a body");
    assert!(status.is_success(), "{service} {params:?}: {status} {text}");
    text
}

fn element(xml: &str, tag: &str) -> Option<String> {
    let start = xml.find(&format!("<{tag}>"))? + tag.len() + 2;
    let end = start + xml[start..].find(&format!("</{tag}>"))?;
    Some(
        xml[start..end]
            .replace("&quot;", "\"")
            .replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&#xD;", "\r")
            .replace("&#39;", "'")
            .replace("&amp;", "&"),
    )
}

#[tokio::test]
async fn sns_publishes_a_signed_message_to_the_topic_and_its_resolve() {
    let endpoint = std::env::var("DBWATCH_AWS_ENDPOINT_URL").unwrap_or_else(|_| {
        panic!("DBWATCH_AWS_ENDPOINT_URL is not set: run `deploy/local/fleet up moto` and `eval \"$(deploy/local/fleet env)\"` (make test does both)")
    });
    let client = reqwest::Client::new();
    let name = format!(
        "dbwatch-notify-{}-{}",
        std::process::id(),
        SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .expect("clock")
            .as_millis()
    );
    let topic = element(
        &aws(
            &client,
            &endpoint,
            "sns",
            &[
                ("Action", "CreateTopic"),
                ("Name", &name),
                ("Version", "2010-03-31"),
            ],
        )
        .await,
        "TopicArn",
    )
    .expect("a topic ARN");
    let queue = element(
        &aws(
            &client,
            &endpoint,
            "sqs",
            &[
                ("Action", "CreateQueue"),
                ("QueueName", &name),
                ("Version", "2012-11-05"),
            ],
        )
        .await,
        "QueueUrl",
    )
    .expect("a queue URL");
    let account = topic.split(':').nth(4).expect("the account");
    let queue_arn = format!("arn:aws:sqs:us-east-1:{account}:{name}");
    aws(
        &client,
        &endpoint,
        "sns",
        &[
            ("Action", "Subscribe"),
            ("TopicArn", &topic),
            ("Protocol", "sqs"),
            ("Endpoint", &queue_arn),
            ("Attributes.entry.1.key", "RawMessageDelivery"),
            ("Attributes.entry.1.value", "false"),
            ("Version", "2010-03-31"),
        ],
    )
    .await;
    let routing = format!(
        "route:\n  receiver: sns\n  group_by: [alertname]\n  group_wait: 0s\n  group_interval: 1s\nreceivers:\n  - name: sns\n    sns_configs:\n      - api_url: {endpoint}/\n        topic_arn: {topic}\n        sigv4:\n          region: us-east-1\n          access_key: testing\n          secret_key: testing\n        attributes:\n          severity: Sev2\n"
    );
    let running = Running::start(load(&routing));
    let alerts = vec![firing("r1"), firing("r2")];
    running.publish(alerts.clone());
    let receive = || async {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let xml = aws(
                &client,
                &endpoint,
                "sqs",
                &[
                    ("Action", "ReceiveMessage"),
                    ("QueueUrl", &queue),
                    ("MaxNumberOfMessages", "10"),
                    ("WaitTimeSeconds", "1"),
                    ("Version", "2012-11-05"),
                ],
            )
            .await;
            if let Some(body) = element(&xml, "Body") {
                let receipt = element(&xml, "ReceiptHandle").expect("a receipt handle");
                aws(
                    &client,
                    &endpoint,
                    "sqs",
                    &[
                        ("Action", "DeleteMessage"),
                        ("QueueUrl", &queue),
                        ("ReceiptHandle", &receipt),
                        ("Version", "2012-11-05"),
                    ],
                )
                .await;
                return serde_json::from_str::<Value>(&body).expect("an SNS envelope");
            }
            assert!(Instant::now() < deadline, "no message reached the queue");
        }
    };
    let message = receive().await;
    assert_eq!(message["Type"], "Notification");
    assert_eq!(message["TopicArn"], topic.as_str());
    assert_eq!(message["Subject"], "[FIRING:2] replication_lag (main)");
    let text = message["Message"].as_str().expect("message");
    assert!(
        text.starts_with(
            "replica <lagging> & slow\n\nAlerts Firing:\nLabels:\n - alertname = replication_lag\n"
        ),
        "{text:?}"
    );
    assert_eq!(
        message["MessageAttributes"]["severity"],
        json!({"Type": "String", "Value": "Sev2"})
    );
    running.publish(alerts.iter().map(resolved).collect());
    let message = receive().await;
    assert_eq!(message["Subject"], "[RESOLVED] replication_lag (main)");
    assert!(message["Message"]
        .as_str()
        .expect("message")
        .contains("Alerts Resolved:"));
    let deadline = Instant::now() + Duration::from_secs(5);
    let delivered = || {
        running.counter(
            "dbwatch_notifications_total",
            &[("integration", "sns"), ("outcome", "delivered")],
        )
    };
    while delivered() < 2.0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(delivered(), 2.0);
}
