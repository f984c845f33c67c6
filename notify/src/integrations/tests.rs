//! The four integrations' renderings side by side: limits, and hostile label values that must arrive as text.

use std::collections::BTreeMap;

use super::pagerduty::{self, pagerduty_severity, EventsApi, PagerDutyConfig, PAGERDUTY_EVENT_MAX};
use super::slack::{self, SlackConfig, SLACK_MAX_BLOCKS, SLACK_TEXT_MAX};
use crate::render::{fingerprint, Notice};
use crate::store::{AlertRecord, Payload};
use dbwatch_secret::{PasswordSource, Secret};

fn record(index: usize, resolved: bool) -> AlertRecord {
    let labels: BTreeMap<String, String> = [
        ("alertname", "high_latency".to_owned()),
        ("target", format!("db{index}")),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    AlertRecord {
        fingerprint: fingerprint(&labels),
        labels,
        annotations: [("summary".to_owned(), "x".repeat(2000))]
            .into_iter()
            .collect(),
        starts_at: 1_700_000_000_000,
        ends_at: resolved.then_some(1_700_000_100_000),
    }
}

#[test]
fn a_large_slack_group_is_summarised_within_the_limits() {
    let group_labels: BTreeMap<String, String> =
        [("alertname".to_owned(), "high_latency".to_owned())].into();
    let notice = Notice {
        receiver: "slack",
        group_key: "{}:{alertname=\"high_latency\"}",
        group_labels: &group_labels,
        firing: (0..120).map(|i| record(i, false)).collect(),
        resolved: Vec::new(),
        external_url: "",
        now: 1_700_000_000_000,
        episode: 1_700_000_000_000,
        first_of_episode: true,
        templating: Default::default(),
    };
    let config = SlackConfig {
        api_url: PasswordSource::Inline(Secret::new("http://x".into())),
        channel: None,
        username: None,
        icon_emoji: None,
        icon_url: None,
        attachment: Default::default(),
        send_resolved: true,
        http: super::http::Endpoint::default(),
    };
    let Payload::Slack { body } = slack::render(&config, &notice) else {
        panic!("not a slack payload");
    };
    let blocks = body["blocks"].as_array().expect("blocks");
    assert_eq!(blocks.len(), SLACK_MAX_BLOCKS);
    assert_eq!(blocks[48]["elements"][0]["text"], "+73 more alerts");
    assert!(body["text"]
        .as_str()
        .expect("text")
        .starts_with("[FIRING:120] high_latency: high_latency"));
    assert!(body["text"].as_str().expect("text").chars().count() <= SLACK_TEXT_MAX);
}

#[test]
fn severities_map_onto_pagerduty_levels() {
    assert_eq!(pagerduty_severity(Some("critical")), "critical");
    assert_eq!(pagerduty_severity(Some("Warning")), "warning");
    assert_eq!(pagerduty_severity(Some("info")), "info");
    assert_eq!(pagerduty_severity(None), "error");
}

fn hostile() -> AlertRecord {
    let labels: BTreeMap<String, String> = [
        ("alertname", "database_bloat"),
        ("database", "<!channel>"),
        ("replica", "<https://evil.example|Runbook>"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    AlertRecord {
        fingerprint: fingerprint(&labels),
        labels,
        annotations: [
            ("summary".to_owned(), "bloat in <!channel> & co".to_owned()),
            (
                "runbook_url".to_owned(),
                "<https://evil.example|Runbook>".to_owned(),
            ),
        ]
        .into_iter()
        .collect(),
        starts_at: 1_700_000_000_000,
        ends_at: None,
    }
}

fn pagerduty_config() -> PagerDutyConfig {
    PagerDutyConfig {
        routing_key: PasswordSource::Inline(Secret::new("k".into())),
        api: pagerduty::EventsApi::V2,
        url: "http://x".into(),
        description: None,
        client: None,
        client_url: None,
        severity: None,
        class: None,
        component: None,
        group: None,
        source: None,
        details: BTreeMap::new(),
        links: Vec::new(),
        images: Vec::new(),
        send_resolved: true,
        http: super::http::Endpoint::default(),
    }
}

fn hostile_notice(group_labels: &BTreeMap<String, String>) -> Notice<'_> {
    Notice {
        receiver: "<!here>",
        group_key: "{}:{database=\"<!channel>\"}",
        group_labels,
        firing: vec![hostile()],
        resolved: Vec::new(),
        external_url: "http://dbwatch.example:9630",
        now: 1_700_000_000_000,
        episode: 1_700_000_000_000,
        first_of_episode: true,
        templating: Default::default(),
    }
}

#[test]
fn slack_mrkdwn_escapes_every_label_and_annotation_value() {
    let group_labels: BTreeMap<String, String> =
        [("database".to_owned(), "<!channel>".to_owned())].into();
    let config = SlackConfig {
        api_url: PasswordSource::Inline(Secret::new("http://x".into())),
        channel: None,
        username: None,
        icon_emoji: None,
        icon_url: None,
        attachment: Default::default(),
        send_resolved: true,
        http: super::http::Endpoint::default(),
    };
    let Payload::Slack { body } = slack::render(&config, &hostile_notice(&group_labels)) else {
        panic!("not a slack payload");
    };
    let blocks = body["blocks"].as_array().expect("blocks");
    let mrkdwn: Vec<&str> = [
        &body["text"],
        &blocks[1]["text"]["text"],
        &blocks[2]["elements"][0]["text"],
    ]
    .into_iter()
    .map(|value| value.as_str().expect("text"))
    .collect();
    for text in &mrkdwn {
        assert!(
            !text.contains("<!") && !text.contains("<https://evil"),
            "{text}"
        );
    }
    assert!(
        mrkdwn[0].contains("database=\"&lt;!channel&gt;\""),
        "{}",
        mrkdwn[0]
    );
    assert!(
        mrkdwn[1].contains("bloat in &lt;!channel&gt; &amp; co")
            && mrkdwn[1].contains("`replica=&lt;https://evil.example|Runbook&gt;`")
            && mrkdwn[1].contains("Runbook: &lt;https://evil.example|Runbook&gt;"),
        "{}",
        mrkdwn[1]
    );
    // The footer's receiver name is escaped, the external URL stays a link.
    assert!(
        mrkdwn[2].contains("&lt;!here&gt;")
            && mrkdwn[2].contains("<http://dbwatch.example:9630|open>"),
        "{}",
        mrkdwn[2]
    );
    // The header is plain_text, which Slack never parses for mentions or links.
    assert_eq!(blocks[0]["text"]["type"], "plain_text");
}

#[test]
fn pagerduty_and_email_carry_hostile_names_as_plain_text() {
    let group_labels: BTreeMap<String, String> =
        [("database".to_owned(), "<!channel>".to_owned())].into();
    let notice = hostile_notice(&group_labels);
    let config = pagerduty_config();
    let Payload::PagerDuty { event } = pagerduty::render(&config, &notice) else {
        panic!("not a pagerduty payload");
    };
    // PagerDuty renders these fields as text: the value arrives verbatim (JSON-encoded), not as markup.
    assert_eq!(
        event["payload"]["custom_details"]["alerts"][0]["labels"]["database"],
        "<!channel>"
    );
    // A runbook that is not a plain URL is never a link.
    assert!(event.get("links").is_none(), "{event:#}");

    let no_env = |_: &str| None;
    let routing = crate::load_str(
        std::path::Path::new("r.yml"),
        "route:\n  receiver: m\nreceivers:\n  - name: m\n    email_configs:\n      - {to: a@example.com, from: b@example.com, smarthost: 'mail:25'}\n",
        &no_env,
    )
    .expect("valid routing");
    let email = &routing.receivers[0].integrations[0];
    assert_eq!(email.kind(), super::Kind::Email);
    let Payload::Email { html, .. } = email.render(&notice) else {
        panic!("not an email payload");
    };
    assert!(
        !html.contains("<!channel>") && !html.contains("<https://evil"),
        "{html}"
    );
    assert!(html.contains("&lt;!channel&gt;"), "{html}");
}

#[test]
fn a_huge_pagerduty_group_stays_under_the_event_limit() {
    let group_labels: BTreeMap<String, String> = BTreeMap::new();
    let firing: Vec<AlertRecord> = (0..60)
        .map(|index| {
            let mut alert = record(index, false);
            alert
                .annotations
                .insert("description".into(), "d".repeat(20_000));
            alert
        })
        .collect();
    let notice = Notice {
        receiver: "pd",
        group_key: "{}:{}",
        group_labels: &group_labels,
        firing,
        resolved: Vec::new(),
        external_url: "",
        now: 1_700_000_000_000,
        episode: 1_700_000_000_000,
        first_of_episode: true,
        templating: Default::default(),
    };
    let config = pagerduty_config();
    let Payload::PagerDuty { event } = pagerduty::render(&config, &notice) else {
        panic!("not a pagerduty payload");
    };
    let size = serde_json::to_vec(&event).expect("encodes").len();
    assert!(size <= PAGERDUTY_EVENT_MAX, "{size} bytes");
    let details = &event["payload"]["custom_details"];
    assert_eq!(details["num_firing"], 60);
    let listed = details["alerts"].as_array().expect("alerts").len();
    assert!((1..50).contains(&listed), "{listed} listed");
    assert_eq!(details["truncated_alerts"], 60 - listed);
}

#[test]
fn answers_are_classified_per_integration() {
    use super::http::{any_success, Verdict};
    use super::Outcome;
    use reqwest::StatusCode;
    use std::time::Duration;
    assert_eq!(
        pagerduty::classify(StatusCode::ACCEPTED, ""),
        Verdict::Accepted
    );
    assert_eq!(
        pagerduty::classify(StatusCode::BAD_REQUEST, ""),
        Verdict::Refused
    );
    assert_eq!(
        slack::classify(StatusCode::TOO_MANY_REQUESTS, ""),
        Verdict::Retry
    );
    assert!(matches!(
        Verdict::Retry.outcome(String::new(), Some(Duration::from_secs(3))),
        Outcome::Retry { retry_after: Some(after), .. } if after == Duration::from_secs(3)
    ));
    assert_eq!(
        slack::classify(StatusCode::GONE, "channel_is_archived"),
        Verdict::Refused
    );
    assert_eq!(
        slack::classify(StatusCode::OK, "{\"ok\":false,\"error\":\"x\"}"),
        Verdict::Refused
    );
    assert_eq!(any_success(StatusCode::BAD_GATEWAY, ""), Verdict::Retry);
    assert_eq!(any_success(StatusCode::NO_CONTENT, ""), Verdict::Accepted);
}

fn routing(text: &str) -> crate::NotifyConfig {
    let no_env = |_: &str| None;
    crate::load_str(std::path::Path::new("r.yml"), text, &no_env)
        .unwrap_or_else(|errors| panic!("{errors}"))
}

#[test]
fn files_alertmanager_accepts_load_without_dbwatch_only_checks() {
    // Empty SMTP fields mean "the default", a short PagerDuty key is the service's business, a named port and
    // an empty host are Go's net.SplitHostPort's.
    let config = routing(
        "global:\n  smtp_hello: ''\n  smtp_auth_username: ''\n  smtp_auth_password: ''\n  smtp_from: a@example.com\n  smtp_smarthost: ':smtp'\nroute:\n  receiver: a\nreceivers:\n  - name: a\n    email_configs: [{to: b@example.com, from: ''}]\n    pagerduty_configs: [{routing_key: short, severity: page}]\n",
    );
    assert_eq!(config.receivers[0].integrations.len(), 2);
}

#[test]
fn a_service_key_speaks_the_events_api_v1() {
    let config = routing(
        "route:\n  receiver: pd\nreceivers:\n  - name: pd\n    pagerduty_configs: [{service_key: abc, client_url: 'http://dbwatch:9630', details: {team: db}}]\n",
    );
    let pd = &config.receivers[0].integrations[0];
    assert_eq!(pd.kind(), super::Kind::PagerDuty);
    let group_labels: BTreeMap<String, String> =
        [("alertname".to_owned(), "high_latency".to_owned())].into();
    let mut notice = Notice {
        receiver: "pd",
        group_key: "{}:{alertname=\"high_latency\"}",
        group_labels: &group_labels,
        firing: vec![record(1, false)],
        resolved: Vec::new(),
        external_url: "",
        now: 1_700_000_000_000,
        episode: 1_700_000_000_000,
        first_of_episode: true,
        templating: Default::default(),
    };
    let Payload::PagerDuty { event } = pd.render(&notice) else {
        panic!("not a pagerduty payload");
    };
    assert_eq!(event["event_type"], "trigger");
    assert_eq!(event["client"], "dbwatch");
    assert_eq!(event["client_url"], "http://dbwatch:9630");
    assert_eq!(event["details"]["num_firing"], "1");
    assert_eq!(event["details"]["team"], "db");
    assert!(event["description"].as_str().is_some_and(|text| text
        .starts_with("[FIRING:1] high_latency")
        && text.chars().count() <= 1024));
    assert!(event.get("event_action").is_none() && event.get("routing_key").is_none());
    let key = event["incident_key"].clone();
    notice.resolved = std::mem::take(&mut notice.firing);
    let Payload::PagerDuty { event } = pd.render(&notice) else {
        panic!("not a pagerduty payload");
    };
    assert_eq!(event["event_type"], "resolve");
    assert_eq!(event["incident_key"], key);
    assert!(event.get("client").is_none());
    assert!(format!("{pd:?}").contains("create_event.json"));
    assert_eq!(
        pagerduty::classify_v1(reqwest::StatusCode::FORBIDDEN, ""),
        super::http::Verdict::Retry
    );
}

/// The v1 event reaches its endpoint with the service key added at send time.
#[tokio::test]
async fn a_v1_event_is_posted_with_its_service_key() {
    use super::Integration;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let address = listener.local_addr().expect("address");
    let server = tokio::spawn(answer_once(listener));
    let config = PagerDutyConfig {
        routing_key: PasswordSource::Inline(Secret::new("v1-service-key".into())),
        api: EventsApi::V1,
        url: format!("http://{address}/generic/2010-04-15/create_event.json"),
        ..pagerduty_config()
    };
    let payload = Payload::PagerDuty {
        event: serde_json::json!({"event_type": "resolve", "incident_key": "k", "description": "d", "details": {}}),
    };
    let client = crate::http_client(std::time::Duration::from_secs(2)).expect("client");
    let outcome = config
        .send(&client, &payload, std::time::Duration::from_secs(2))
        .await;
    assert_eq!(outcome, super::Outcome::Delivered);
    let request = server.await.expect("server");
    assert!(
        request.starts_with("POST /generic/2010-04-15/create_event.json "),
        "{request}"
    );
    let body: serde_json::Value =
        serde_json::from_str(request.split_once("\r\n\r\n").map_or("", |(_, body)| body))
            .expect("json");
    assert_eq!(body["service_key"], "v1-service-key");
    assert_eq!(body["event_type"], "resolve");
}

/// Accepts one connection, reads one request (head and body), answers 200, and returns the request's text.
async fn answer_once(listener: tokio::net::TcpListener) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (mut socket, _) = listener.accept().await.expect("accept");
    let mut request = Vec::new();
    let mut buffer = [0u8; 4096];
    // Headers, then the body by its Content-Length.
    loop {
        let read = socket.read(&mut buffer).await.expect("read");
        request.extend_from_slice(&buffer[..read]);
        let text = String::from_utf8_lossy(&request).into_owned();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let length: usize = head
                .lines()
                .find_map(|line| {
                    line.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().parse().unwrap_or(0))
                })
                .unwrap_or(0);
            if body.len() >= length || read == 0 {
                break;
            }
        }
    }
    socket
        .write_all(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 20\r\n\r\n{\"status\":\"success\"}")
        .await
        .expect("answer");
    String::from_utf8_lossy(&request).into_owned()
}

async fn send_through(
    routing_text: &str,
    listener: tokio::net::TcpListener,
) -> (super::Outcome, String) {
    let config = routing(routing_text);
    let integration = &config.receivers[0].integrations[0];
    let server = tokio::spawn(answer_once(listener));
    let payload = integration.render(&Notice {
        receiver: "r",
        group_key: "{}:{}",
        group_labels: &BTreeMap::new(),
        firing: vec![record(1, false)],
        resolved: Vec::new(),
        external_url: "",
        now: 1_700_000_000_000,
        episode: 1_700_000_000_000,
        first_of_episode: true,
        templating: Default::default(),
    });
    let client = crate::http_client(std::time::Duration::from_secs(2)).expect("client");
    let outcome = integration
        .send(&client, &payload, std::time::Duration::from_secs(2))
        .await;
    (outcome, server.await.expect("server"))
}

/// `http_config` per integration: the proxy gets the absolute URL, basic auth goes along.
#[tokio::test]
async fn http_config_sends_through_the_proxy_with_basic_auth() {
    let proxy = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let address = proxy.local_addr().expect("address");
    let (outcome, request) = send_through(
        &format!("route:\n  receiver: r\nreceivers:\n  - name: r\n    webhook_configs:\n      - url: http://hooks.example.invalid/alerts\n        http_config:\n          proxy_url: http://{address}\n          basic_auth: {{username: dbwatch, password: s3cret}}\n"),
        proxy,
    )
    .await;
    assert_eq!(outcome, super::Outcome::Delivered);
    assert!(
        request.starts_with("POST http://hooks.example.invalid/alerts HTTP/1.1"),
        "{request}"
    );
    // base64("dbwatch:s3cret")
    assert!(
        request.to_ascii_lowercase().contains(
            "authorization: basic ZGJ3YXRjaDpzM2NyZXQ="
                .to_ascii_lowercase()
                .as_str()
        ),
        "{request}"
    );
}

/// The global `http_config` applies to an integration without one of its own; `bearer_token` is
/// `Authorization: Bearer`.
#[tokio::test]
async fn the_global_http_config_carries_a_bearer_token() {
    let receiver = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let address = receiver.local_addr().expect("address");
    let (outcome, request) = send_through(
        &format!("global:\n  http_config:\n    bearer_token: t0ken\nroute:\n  receiver: r\nreceivers:\n  - name: r\n    slack_configs:\n      - api_url: http://{address}/hook\n"),
        receiver,
    )
    .await;
    assert_eq!(outcome, super::Outcome::Delivered);
    assert!(
        request.contains("authorization: Bearer t0ken")
            || request.contains("Authorization: Bearer t0ken"),
        "{request}"
    );
    // The secret never prints with the configuration.
    let config = routing(&format!("route:\n  receiver: r\nreceivers:\n  - name: r\n    webhook_configs:\n      - url: http://{address}/\n        http_config: {{proxy_url: 'http://u:pw@proxy:3128', authorization: {{credentials: k3y}}}}\n"));
    let printed = format!("{config:?}");
    assert!(
        !printed.contains("pw@") && !printed.contains("k3y"),
        "{printed}"
    );
}

/// A routing file with a custom template file, as teams keep them next to alertmanager.yml.
fn templated_routing(dir: &std::path::Path, receivers: &str) -> crate::NotifyConfig {
    std::fs::write(
        dir.join("team.tmpl"),
        r#"{{ define "team.title" }}[{{ .Status | toUpper }}{{ if eq .Status "firing" }}:{{ .Alerts.Firing | len }}{{ end }}] {{ .CommonLabels.alertname }}{{ end }}
{{ define "team.text" }}{{ range .Alerts }}*{{ .Labels.target }}* {{ .Annotations.summary }} ({{ .Status }} since {{ .StartsAt.Format "15:04" }})
{{ end }}{{ end }}
{{ define "team.color" }}{{ if eq .Status "firing" }}danger{{ else }}good{{ end }}{{ end }}
"#,
    )
    .expect("write the template file");
    let text = format!(
        "route:\n  receiver: r\ntemplates: ['*.tmpl']\nreceivers:\n  - name: r\n{receivers}"
    );
    let no_env = |_: &str| None;
    crate::load_str(&dir.join("alertmanager.yml"), &text, &no_env)
        .unwrap_or_else(|errors| panic!("{errors}"))
}

fn small_record(target: &str, resolved: bool) -> AlertRecord {
    let labels: BTreeMap<String, String> = [("alertname", "high_latency"), ("target", target)]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    AlertRecord {
        fingerprint: fingerprint(&labels),
        labels,
        annotations: [("summary".to_owned(), "p99 over 2s".to_owned())].into(),
        starts_at: 1_700_000_000_000,
        ends_at: resolved.then_some(1_700_000_100_000),
    }
}

fn group_notice<'a>(group_labels: &'a BTreeMap<String, String>, firing: bool) -> Notice<'a> {
    Notice {
        receiver: "r",
        group_key: "{}:{alertname=\"high_latency\"}",
        group_labels,
        firing: if firing {
            vec![small_record("db1", false), small_record("db2", false)]
        } else {
            Vec::new()
        },
        resolved: if firing {
            Vec::new()
        } else {
            vec![small_record("db1", true)]
        },
        external_url: "http://dbwatch.example:9630",
        now: 1_700_000_000_000,
        episode: 1_700_000_000_000,
        first_of_episode: true,
        templating: Default::default(),
    }
}

fn alertname_group() -> BTreeMap<String, String> {
    [("alertname".to_owned(), "high_latency".to_owned())].into()
}

#[test]
fn slack_renders_a_firing_and_a_resolved_group_through_the_routing_files_templates() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = templated_routing(
        dir.path(),
        "    slack_configs:\n      - api_url: http://h/x\n        send_resolved: true\n        channel: '#db-{{ .CommonLabels.target }}'\n        title: '{{ template \"team.title\" . }}'\n        title_link: '{{ template \"slack.default.titlelink\" . }}'\n        text: '{{ template \"team.text\" . }}'\n        color: '{{ template \"team.color\" . }}'\n        fields:\n          - {title: Targets, value: '{{ range .Alerts }}{{ .Labels.target }} {{ end }}', short: true}\n        actions:\n          - {type: button, text: 'Runbook {{ .CommonLabels.alertname }}', url: 'http://runbooks/{{ .CommonLabels.alertname }}'}\n",
    );
    let slack = &config.receivers[0].integrations[0];
    let group = alertname_group();
    let firing = group_notice(&group, true);
    let Payload::Slack { body } = slack.render(&firing) else {
        panic!("not a slack payload");
    };
    let attachment = &body["attachments"][0];
    assert_eq!(attachment["title"], "[FIRING:2] high_latency");
    assert_eq!(
        attachment["title_link"],
        "http://dbwatch.example:9630/#/alerts?receiver=r"
    );
    assert_eq!(
        attachment["text"],
        "*db1* p99 over 2s (firing since 22:13)\n*db2* p99 over 2s (firing since 22:13)\n"
    );
    assert_eq!(attachment["color"], "danger");
    assert_eq!(attachment["fields"][0]["value"], "db1 db2 ");
    assert_eq!(attachment["actions"][0]["text"], "Runbook high_latency");
    assert_eq!(
        attachment["actions"][0]["url"],
        "http://runbooks/high_latency"
    );
    // Unset: the built-in fallback and footer.
    assert_eq!(attachment["fallback"], "[FIRING:2] high_latency");
    assert!(attachment["footer"]
        .as_str()
        .is_some_and(|f| f.starts_with("dbwatch · r · ")));
    // Two targets: no common target, and a missing key reads as "" (Alertmanager's `missingkey=zero`).
    assert_eq!(body["channel"], "#db-");
    assert!(firing.templating.take_failures().is_empty());

    let resolved = group_notice(&group, false);
    let Payload::Slack { body } = slack.render(&resolved) else {
        panic!("not a slack payload");
    };
    let attachment = &body["attachments"][0];
    assert_eq!(attachment["title"], "[RESOLVED] high_latency");
    assert_eq!(
        attachment["text"],
        "*db1* p99 over 2s (resolved since 22:13)\n"
    );
    assert_eq!(attachment["color"], "good");
    assert_eq!(body["channel"], "#db-db1");
}

#[test]
fn pagerduty_renders_a_firing_and_a_resolved_group_through_the_routing_files_templates() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = templated_routing(
        dir.path(),
        "    pagerduty_configs:\n      - routing_key: k\n        description: '{{ template \"team.title\" . }}'\n        client: '{{ template \"pagerduty.default.client\" . }}'\n        client_url: '{{ template \"pagerduty.default.clientURL\" . }}'\n        severity: '{{ if eq (len .Alerts.Firing) 1 }}warning{{ else }}critical{{ end }}'\n        component: '{{ .CommonLabels.alertname }}'\n        details:\n          firing: '{{ template \"pagerduty.default.instances\" .Alerts.Firing }}'\n          count: '{{ len .Alerts }}'\n        links:\n          - {href: 'http://runbooks/{{ .CommonLabels.alertname }}', text: Runbook}\n        images:\n          - {src: 'http://graphs/{{ .CommonLabels.alertname }}.png', alt: graph}\n    email_configs:\n      - to: 'oncall+{{ .CommonLabels.alertname }}@example.com'\n        from: dbwatch@example.com\n        smarthost: 'mail:25'\n        send_resolved: true\n        headers: {Subject: '{{ template \"email.default.subject\" . }}', X-Team: db}\n        text: '{{ template \"team.text\" . }}'\n        html: '<p>{{ .CommonAnnotations.summary }} {{ \"<b>\" }}</p>'\n",
    );
    let group = alertname_group();
    let pagerduty = &config.receivers[0].integrations[0];
    let firing = group_notice(&group, true);
    let Payload::PagerDuty { event } = pagerduty.render(&firing) else {
        panic!("not a pagerduty payload");
    };
    assert_eq!(event["payload"]["summary"], "[FIRING:2] high_latency");
    assert_eq!(event["payload"]["severity"], "critical");
    assert_eq!(event["payload"]["component"], "high_latency");
    assert_eq!(event["client"], "Alertmanager");
    assert_eq!(
        event["client_url"],
        "http://dbwatch.example:9630/#/alerts?receiver=r"
    );
    assert_eq!(event["payload"]["custom_details"]["count"], "2");
    let instances = event["payload"]["custom_details"]["firing"]
        .as_str()
        .expect("text");
    assert!(
        instances
            .starts_with("Labels:\n - alertname = high_latency\n - target = db1\nAnnotations:\n"),
        "{instances}"
    );
    assert_eq!(event["links"][0]["href"], "http://runbooks/high_latency");
    assert_eq!(event["images"][0]["src"], "http://graphs/high_latency.png");
    assert_eq!(event["images"][0]["alt"], "graph");
    // A resolve is the dedup key alone, as before.
    let Payload::PagerDuty { event } = pagerduty.render(&group_notice(&group, false)) else {
        panic!("not a pagerduty payload");
    };
    assert_eq!(event["event_action"], "resolve");

    let email = &config.receivers[0].integrations[1];
    for (firing, subject, text) in [
        (
            true,
            "[FIRING:2] high_latency ",
            "*db1* p99 over 2s (firing since 22:13)\n*db2* p99 over 2s (firing since 22:13)\n",
        ),
        (
            false,
            "[RESOLVED] high_latency (db1)",
            "*db1* p99 over 2s (resolved since 22:13)\n",
        ),
    ] {
        let notice = group_notice(&group, firing);
        let Payload::Email {
            subject: got,
            text: body,
            html,
            to,
            from,
            headers,
            ..
        } = email.render(&notice)
        else {
            panic!("not an email payload");
        };
        assert_eq!(got, subject);
        assert_eq!(body, text);
        // Printed values are HTML-escaped, as html/template escapes them.
        assert_eq!(html, "<p>p99 over 2s &lt;b&gt;</p>");
        assert_eq!(to, Some(vec!["oncall+high_latency@example.com".to_owned()]));
        assert_eq!(from.as_deref(), Some("dbwatch@example.com"));
        assert_eq!(
            headers.and_then(|h| h.get("X-Team").cloned()).as_deref(),
            Some("db")
        );
        assert!(notice.templating.take_failures().is_empty());
    }
}

#[test]
fn a_failing_template_falls_back_to_the_built_in_text_and_is_recorded() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = templated_routing(
        dir.path(),
        "    slack_configs:\n      - api_url: http://h/x\n        title: '{{ .Alerts.Nope }}'\n        text: '{{ range .Alerts }}{{ range $.Alerts }}{{ range $.Alerts }}{{ printf \"%100000d\" 1 }}{{ end }}{{ end }}{{ end }}'\n",
    );
    let group = alertname_group();
    let notice = group_notice(&group, true);
    let Payload::Slack { body } = config.receivers[0].integrations[0].render(&notice) else {
        panic!("not a slack payload");
    };
    let attachment = &body["attachments"][0];
    assert_eq!(attachment["title"], notice.title());
    assert!(
        attachment["text"]
            .as_str()
            .is_some_and(|t| t.starts_with("*high_latency* (firing)\np99 over 2s")),
        "{attachment:#}"
    );
    let failures = notice.templating.take_failures();
    let fields: Vec<&str> = failures.iter().map(|f| f.field.as_str()).collect();
    assert_eq!(fields, ["title", "text"]);
    assert!(
        failures[0]
            .error
            .contains("can't evaluate field Nope in type template.Alerts"),
        "{}",
        failures[0].error
    );
    assert!(
        failures[1].error.contains("longer than 262144 bytes"),
        "{}",
        failures[1].error
    );
}
