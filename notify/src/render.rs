//! The messages: built-in, template-free renderings of one group's notification for each integration, each
//! kept within its destination's limits so a large group is summarised ("+N more") rather than rejected.
//!
//! Rendering cannot fail: there is no template language, so no template bug can drop a notification.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::{Duration, UNIX_EPOCH};

use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

use super::config::{EmailConfig, PagerDutyConfig, SlackConfig, WebhookConfig};
use super::store::{AlertRecord, Payload};

/// Slack allows 50 blocks: a header, the alerts, a "+N more" context and a footer context.
pub const SLACK_MAX_BLOCKS: usize = 50;
const SLACK_ALERT_BLOCKS: usize = SLACK_MAX_BLOCKS - 3;
pub const SLACK_HEADER_MAX: usize = 150;
pub const SLACK_SECTION_MAX: usize = 3000;
pub const SLACK_TEXT_MAX: usize = 3000;
pub const PAGERDUTY_SUMMARY_MAX: usize = 1024;
/// Alerts listed in PagerDuty's custom details; the event must stay under 512 KB.
const PAGERDUTY_DETAIL_ALERTS: usize = 50;
/// PagerDuty refuses events over 512 KB with a 400, which is permanent: the page would be dead-lettered. The
/// rendered event is kept under this, which leaves room for the `routing_key` added at send time.
pub const PAGERDUTY_EVENT_MAX: usize = 500 * 1024;
/// Characters of one alert's line in PagerDuty's `custom_details.firing`.
const PAGERDUTY_LINE_MAX: usize = 1024;

/// One group's notification as every integration renders it.
#[derive(Debug, Clone)]
pub struct Notice<'a> {
    pub receiver: &'a str,
    pub group_key: &'a str,
    pub group_labels: &'a BTreeMap<String, String>,
    pub firing: Vec<AlertRecord>,
    pub resolved: Vec<AlertRecord>,
    pub external_url: &'a str,
    /// Unix milliseconds.
    pub now: i64,
    /// When the group's episode started (its first notification): the email thread root.
    pub episode: i64,
}

impl Notice<'_> {
    pub fn is_firing(&self) -> bool {
        !self.firing.is_empty()
    }

    fn status(&self) -> &'static str {
        if self.is_firing() {
            "firing"
        } else {
            "resolved"
        }
    }

    fn alerts(&self) -> impl Iterator<Item = &AlertRecord> {
        self.firing.iter().chain(&self.resolved)
    }

    /// `[FIRING:2] high_latency (cluster="analytics")`, Alertmanager's default title.
    pub fn title(&self) -> String {
        let mut title = if self.is_firing() {
            format!("[FIRING:{}]", self.firing.len())
        } else {
            "[RESOLVED]".to_owned()
        };
        let alertname = self
            .group_labels
            .get("alertname")
            .cloned()
            .or_else(|| common(self.alerts().map(|alert| &alert.labels)).remove("alertname"));
        if let Some(name) = alertname {
            let _ = write!(title, " {name}");
        }
        let rest: Vec<String> = self
            .group_labels
            .iter()
            .filter(|(name, _)| name.as_str() != "alertname")
            .map(|(name, value)| format!("{name}={value:?}"))
            .collect();
        if !rest.is_empty() {
            let _ = write!(title, " ({})", rest.join(", "));
        }
        title
    }

    fn common_labels(&self) -> BTreeMap<String, String> {
        common(self.alerts().map(|alert| &alert.labels))
    }

    fn common_annotations(&self) -> BTreeMap<String, String> {
        common(self.alerts().map(|alert| &alert.annotations))
    }
}

/// The entries every map shares.
fn common<'a>(
    mut maps: impl Iterator<Item = &'a BTreeMap<String, String>>,
) -> BTreeMap<String, String> {
    let Some(first) = maps.next() else {
        return BTreeMap::new();
    };
    let mut out = first.clone();
    for map in maps {
        out.retain(|key, value| map.get(key) == Some(value));
    }
    out
}

/// At most `max` characters, the last replaced by an ellipsis when cut.
pub fn truncate(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_owned();
    }
    let mut out: String = text.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// The last millisecond humantime can format (9999-12-31T23:59:59.999Z); past it its `Display` fails, and
/// `to_string` would panic on a time from a hand-edited or foreign state file.
const RFC3339_MAX_MILLIS: i64 = 253_402_300_799_999;

pub fn rfc3339(millis: i64) -> String {
    let millis = millis.clamp(0, RFC3339_MAX_MILLIS);
    let time = UNIX_EPOCH + Duration::from_millis(u64::try_from(millis).unwrap_or(0));
    humantime::format_rfc3339_millis(time).to_string()
}

/// A short stable hash of the group key, for PagerDuty's `dedup_key` and email threading.
pub fn group_hash(group_key: &str) -> String {
    let digest = Sha256::digest(group_key.as_bytes());
    digest
        .iter()
        .fold(String::with_capacity(64), |mut out, byte| {
            let _ = write!(out, "{byte:02x}");
            out
        })
}

/// A stable identity of an alert: a hash of its sorted labels.
pub fn fingerprint(labels: &BTreeMap<String, String>) -> String {
    let mut hasher = Sha256::new();
    for (name, value) in labels {
        hasher.update(name.as_bytes());
        hasher.update([0xff]);
        hasher.update(value.as_bytes());
        hasher.update([0xfe]);
    }
    hasher.finalize()[..8]
        .iter()
        .fold(String::with_capacity(16), |mut out, byte| {
            let _ = write!(out, "{byte:02x}");
            out
        })
}

/// Text for a Slack mrkdwn field, with the three characters Slack reserves for its control sequences escaped
/// (`&amp;`, `&lt;`, `&gt;`, as Slack's "Formatting text" page asks). Without it a database named `<!channel>`
/// pings the whole channel and one named `<https://evil.example|Runbook>` shows as a disguised link: label and
/// annotation values come from rule templates over database-controlled names.
pub fn slack_escape(text: &str) -> String {
    crate::html::escape_markup(text)
}

/// `url` when it is a plain http(s) URL that can stand in a link (`<url|text>` in Slack, `href` elsewhere):
/// no whitespace and none of `<`, `>`, `|`, `"`, which would end the link or start another, and at most 2 KiB.
pub fn link_url(url: &str) -> Option<&str> {
    let url = url.trim();
    let scheme_ok =
        (url.starts_with("https://") || url.starts_with("http://")) && url.len() <= 2048;
    let clean = !url
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '<' | '>' | '|' | '"'));
    (scheme_ok && clean).then_some(url)
}

fn alert_line(alert: &AlertRecord) -> String {
    let name = alert
        .labels
        .get("alertname")
        .map(String::as_str)
        .unwrap_or("alert");
    let text = alert
        .annotations
        .get("summary")
        .or_else(|| alert.annotations.get("description"))
        .map(String::as_str)
        .unwrap_or("");
    let labels: Vec<String> = alert
        .labels
        .iter()
        .filter(|(label, _)| label.as_str() != "alertname")
        .map(|(label, value)| format!("{label}={value}"))
        .collect();
    format!("{name}: {text} [{}]", labels.join(", "))
}

pub fn slack(config: &SlackConfig, notice: &Notice<'_>) -> Payload {
    let emoji = if notice.is_firing() { "🔥" } else { "✅" };
    let title = notice.title();
    let mut blocks = vec![json!({
        "type": "header",
        "text": {"type": "plain_text", "text": truncate(&format!("{emoji} {title}"), SLACK_HEADER_MAX), "emoji": true}
    })];
    let alerts: Vec<&AlertRecord> = notice.alerts().collect();
    for alert in alerts.iter().take(SLACK_ALERT_BLOCKS) {
        let state = if alert.ends_at.is_some() {
            "resolved"
        } else {
            "firing"
        };
        let name = alert
            .labels
            .get("alertname")
            .map(String::as_str)
            .unwrap_or("alert");
        let mut text = format!("*{}* ({state})", slack_escape(name));
        if let Some(summary) = alert.annotations.get("summary") {
            let _ = write!(text, "\n{}", slack_escape(summary));
        }
        if let Some(description) = alert.annotations.get("description") {
            let _ = write!(text, "\n{}", slack_escape(description));
        }
        let labels: Vec<String> = alert
            .labels
            .iter()
            .filter(|(label, _)| label.as_str() != "alertname")
            .map(|(label, value)| format!("`{}={}`", slack_escape(label), slack_escape(value)))
            .collect();
        if !labels.is_empty() {
            let _ = write!(text, "\n{}", labels.join(" "));
        }
        if let Some(runbook) = alert.annotations.get("runbook_url") {
            // Only a plain URL becomes a link; anything else is shown as text, escaped.
            match link_url(runbook) {
                Some(url) => {
                    let _ = write!(text, "\n<{}|Runbook>", url.replace('&', "&amp;"));
                }
                None => {
                    let _ = write!(text, "\nRunbook: {}", slack_escape(runbook));
                }
            }
        }
        blocks.push(json!({"type": "section", "text": {"type": "mrkdwn", "text": truncate(&text, SLACK_SECTION_MAX)}}));
    }
    if alerts.len() > SLACK_ALERT_BLOCKS {
        blocks.push(json!({
            "type": "context",
            "elements": [{"type": "mrkdwn", "text": format!("+{} more alerts", alerts.len() - SLACK_ALERT_BLOCKS)}]
        }));
    }
    let mut footer = format!(
        "dbwatch · {} · {}",
        slack_escape(notice.receiver),
        rfc3339(notice.now)
    );
    if let Some(url) = link_url(notice.external_url) {
        footer = format!("{footer} · <{}|open>", url.replace('&', "&amp;"));
    }
    blocks.push(json!({"type": "context", "elements": [{"type": "mrkdwn", "text": truncate(&footer, 2000)}]}));
    // The fallback text (notifications, clients without Block Kit) is mrkdwn too.
    let mut text = slack_escape(&title);
    if let Some(first) = alerts.first() {
        let _ = write!(text, ": {}", slack_escape(&alert_line(first)));
    }
    if alerts.len() > 1 {
        let _ = write!(text, " (+{} more)", alerts.len() - 1);
    }
    let mut body = Map::new();
    body.insert(
        "text".into(),
        Value::String(truncate(&text, SLACK_TEXT_MAX)),
    );
    body.insert("blocks".into(), Value::Array(blocks));
    for (key, value) in [
        ("channel", &config.channel),
        ("username", &config.username),
        ("icon_emoji", &config.icon_emoji),
        ("icon_url", &config.icon_url),
    ] {
        if let Some(value) = value {
            body.insert(key.into(), Value::String(value.clone()));
        }
    }
    Payload::Slack {
        body: Value::Object(body),
    }
}

/// PagerDuty's severity for an alert's `severity` label.
pub fn pagerduty_severity(label: Option<&str>) -> &'static str {
    match label.map(str::to_ascii_lowercase).as_deref() {
        Some("critical" | "page" | "fatal" | "emergency") => "critical",
        Some("warning" | "warn" | "ticket") => "warning",
        Some("info" | "informational" | "none" | "notice") => "info",
        _ => "error",
    }
}

pub fn pagerduty(config: &PagerDutyConfig, notice: &Notice<'_>) -> Payload {
    let dedup_key = group_hash(notice.group_key);
    if !notice.is_firing() {
        return Payload::PagerDuty {
            event: json!({"event_action": "resolve", "dedup_key": dedup_key}),
        };
    }
    let common = notice.common_labels();
    let severity = config.severity.clone().unwrap_or_else(|| {
        pagerduty_severity(common.get("severity").map(String::as_str)).to_owned()
    });
    let mut summary = notice.title();
    if let Some(text) = notice.common_annotations().get("summary") {
        let _ = write!(summary, ": {text}");
    }
    let source = config
        .source
        .clone()
        .or_else(|| {
            common
                .get("target")
                .or_else(|| common.get("instance"))
                .cloned()
        })
        .unwrap_or_else(|| config.client.clone());
    let listed: Vec<Value> = notice
        .firing
        .iter()
        .take(PAGERDUTY_DETAIL_ALERTS)
        .map(|alert| json!({"labels": alert.labels, "annotations": alert.annotations, "starts_at": rfc3339(alert.starts_at)}))
        .collect();
    let mut details = Map::new();
    let mut lines: Vec<String> = notice
        .firing
        .iter()
        .take(PAGERDUTY_DETAIL_ALERTS)
        .map(|alert| truncate(&alert_line(alert), PAGERDUTY_LINE_MAX))
        .collect();
    if notice.firing.len() > PAGERDUTY_DETAIL_ALERTS {
        lines.push(format!(
            "… and {} more",
            notice.firing.len() - PAGERDUTY_DETAIL_ALERTS
        ));
    }
    details.insert("firing".into(), Value::String(lines.join("\n")));
    details.insert("num_firing".into(), json!(notice.firing.len()));
    details.insert("num_resolved".into(), json!(notice.resolved.len()));
    details.insert("group_labels".into(), json!(notice.group_labels));
    details.insert("alerts".into(), Value::Array(listed));
    if notice.firing.len() > PAGERDUTY_DETAIL_ALERTS {
        details.insert(
            "truncated_alerts".into(),
            json!(notice.firing.len() - PAGERDUTY_DETAIL_ALERTS),
        );
    }
    for (key, value) in &config.details {
        details.insert(key.clone(), Value::String(value.clone()));
    }
    let mut payload = Map::new();
    payload.insert(
        "summary".into(),
        Value::String(truncate(&summary, PAGERDUTY_SUMMARY_MAX)),
    );
    payload.insert("source".into(), Value::String(truncate(&source, 255)));
    payload.insert("severity".into(), Value::String(severity));
    payload.insert("timestamp".into(), Value::String(rfc3339(notice.now)));
    for (key, value) in [
        ("class", &config.class),
        ("component", &config.component),
        ("group", &config.group),
    ] {
        if let Some(value) = value {
            payload.insert(key.into(), Value::String(value.clone()));
        }
    }
    payload.insert("custom_details".into(), Value::Object(details));
    let mut links: Vec<Value> = config
        .links
        .iter()
        .map(|(href, text)| json!({"href": href, "text": text}))
        .collect();
    let mut runbooks: Vec<(&String, &String)> = notice
        .firing
        .iter()
        .filter_map(|alert| {
            Some((
                alert.annotations.get("runbook_url")?,
                alert.labels.get("alertname")?,
            ))
        })
        .collect();
    runbooks.sort();
    runbooks.dedup_by(|a, b| a.0 == b.0);
    // A link's href is only ever a plain http(s) URL.
    for (href, name) in runbooks
        .into_iter()
        .filter_map(|(href, name)| Some((link_url(href)?, name)))
        .take(5)
    {
        links.push(json!({"href": href, "text": format!("Runbook: {name}")}));
    }
    let mut event = Map::new();
    event.insert("event_action".into(), Value::String("trigger".into()));
    event.insert("dedup_key".into(), Value::String(dedup_key));
    event.insert("payload".into(), Value::Object(payload));
    event.insert("client".into(), Value::String(config.client.clone()));
    if let Some(url) = config
        .client_url
        .clone()
        .or_else(|| (!notice.external_url.is_empty()).then(|| notice.external_url.to_owned()))
    {
        event.insert("client_url".into(), Value::String(url));
    }
    if !links.is_empty() {
        event.insert("links".into(), Value::Array(links));
    }
    fit_pagerduty(&mut event, notice.firing.len());
    Payload::PagerDuty {
        event: Value::Object(event),
    }
}

fn encoded_len(value: &Map<String, Value>) -> usize {
    serde_json::to_vec(value).map_or(usize::MAX, |bytes| bytes.len())
}

/// Shrinks a trigger event under [`PAGERDUTY_EVENT_MAX`]: first by listing fewer alerts in
/// `custom_details.alerts` (their labels and annotations are unbounded), then by replacing the details with
/// counts only. The summary, source, severity and dedup key, which make the page, always stay.
fn fit_pagerduty(event: &mut Map<String, Value>, firing: usize) {
    if encoded_len(event) <= PAGERDUTY_EVENT_MAX {
        return;
    }
    let details = |event: &mut Map<String, Value>| -> Option<Map<String, Value>> {
        event
            .get_mut("payload")?
            .as_object_mut()?
            .remove("custom_details")?
            .as_object()
            .cloned()
    };
    let Some(mut kept) = details(event) else {
        return;
    };
    let put = |event: &mut Map<String, Value>, details: Map<String, Value>| {
        if let Some(payload) = event.get_mut("payload").and_then(Value::as_object_mut) {
            payload.insert("custom_details".into(), Value::Object(details));
        }
    };
    loop {
        let listed = kept
            .get("alerts")
            .and_then(Value::as_array)
            .map_or(0, Vec::len);
        put(event, kept.clone());
        if encoded_len(event) <= PAGERDUTY_EVENT_MAX || listed == 0 {
            break;
        }
        // Halve the list: a few re-encodings, not one per alert.
        if let Some(alerts) = kept.get_mut("alerts").and_then(Value::as_array_mut) {
            alerts.truncate(listed / 2);
        }
        kept.insert(
            "truncated_alerts".into(),
            json!(firing.saturating_sub(listed / 2)),
        );
    }
    if encoded_len(event) > PAGERDUTY_EVENT_MAX {
        let mut counts = Map::new();
        for key in ["num_firing", "num_resolved"] {
            if let Some(value) = kept.get(key) {
                counts.insert(key.into(), value.clone());
            }
        }
        counts.insert(
            "note".into(),
            json!("details left out: the event would exceed PagerDuty's 512 KB limit"),
        );
        put(event, counts);
    }
}

/// The thread root of a group's episode: the first message's Message-ID, which later ones reply to.
pub fn thread_root(group_key: &str, episode: i64) -> String {
    format!("<alert-{}.{episode}@dbwatch>", &group_hash(group_key)[..16])
}

pub fn email(config: &EmailConfig, notice: &Notice<'_>, first_of_episode: bool) -> Payload {
    let root = thread_root(notice.group_key, notice.episode);
    let (message_id, in_reply_to) = if first_of_episode {
        (root, None)
    } else {
        (
            format!(
                "<alert-{}.{}.{}@dbwatch>",
                &group_hash(notice.group_key)[..16],
                notice.episode,
                notice.now
            ),
            Some(root),
        )
    };
    let subject = config
        .headers
        .get("Subject")
        .cloned()
        .unwrap_or_else(|| notice.title());
    let mut text = format!("{}\n\n", notice.title());
    let mut html = format!(
        "<!DOCTYPE html><html><body><h2>{}</h2><table border=\"1\" cellpadding=\"4\" cellspacing=\"0\">\
         <tr><th>Status</th><th>Alert</th><th>Summary</th><th>Labels</th><th>Since</th></tr>",
        crate::html::escape(&notice.title())
    );
    for alert in notice.alerts() {
        let state = if alert.ends_at.is_some() {
            "RESOLVED"
        } else {
            "FIRING"
        };
        let name = alert
            .labels
            .get("alertname")
            .map(String::as_str)
            .unwrap_or("alert");
        let summary = alert
            .annotations
            .get("summary")
            .map(String::as_str)
            .unwrap_or("");
        let labels: Vec<String> = alert
            .labels
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        let _ = writeln!(
            text,
            "[{state}] {name}: {summary}\n  labels: {}\n  since: {}",
            labels.join(", "),
            rfc3339(alert.starts_at)
        );
        if let Some(runbook) = alert.annotations.get("runbook_url") {
            let _ = writeln!(text, "  runbook: {runbook}");
        }
        let _ = write!(
            html,
            "<tr><td>{state}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            crate::html::escape(name),
            crate::html::escape(summary),
            crate::html::escape(&labels.join(", ")),
            rfc3339(alert.starts_at)
        );
    }
    html.push_str("</table>");
    if !notice.external_url.is_empty() {
        let _ = write!(text, "\n{}\n", notice.external_url);
        let _ = write!(
            html,
            "<p><a href=\"{0}\">{0}</a></p>",
            crate::html::escape(notice.external_url)
        );
    }
    html.push_str("</body></html>");
    Payload::Email {
        subject,
        text,
        html,
        message_id,
        in_reply_to,
    }
}

/// Alertmanager's webhook body (version 4).
pub fn webhook(config: &WebhookConfig, notice: &Notice<'_>) -> Payload {
    let alerts: Vec<&AlertRecord> = notice.alerts().collect();
    let kept = if config.max_alerts > 0 {
        config.max_alerts.min(alerts.len())
    } else {
        alerts.len()
    };
    let listed: Vec<Value> = alerts[..kept]
        .iter()
        .map(|alert| {
            json!({
                "status": if alert.ends_at.is_some() { "resolved" } else { "firing" },
                "labels": alert.labels,
                "annotations": alert.annotations,
                "startsAt": rfc3339(alert.starts_at),
                "endsAt": alert.ends_at.map(rfc3339).unwrap_or_else(|| "0001-01-01T00:00:00Z".to_owned()),
                "generatorURL": notice.external_url,
                "fingerprint": alert.fingerprint,
            })
        })
        .collect();
    Payload::Webhook {
        body: json!({
            "version": "4",
            "groupKey": notice.group_key,
            "truncatedAlerts": alerts.len() - kept,
            "status": notice.status(),
            "receiver": notice.receiver,
            "groupLabels": notice.group_labels,
            "commonLabels": notice.common_labels(),
            "commonAnnotations": notice.common_annotations(),
            "externalURL": notice.external_url,
            "alerts": listed,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
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
        };
        let config = SlackConfig {
            api_url: PasswordSource::Inline(Secret::new("http://x".into())),
            channel: None,
            username: None,
            icon_emoji: None,
            icon_url: None,
            send_resolved: true,
        };
        let Payload::Slack { body } = slack(&config, &notice) else {
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
            url: "http://x".into(),
            client: "dbwatch".into(),
            client_url: None,
            severity: None,
            class: None,
            component: None,
            group: None,
            source: None,
            details: BTreeMap::new(),
            links: Vec::new(),
            send_resolved: true,
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
            send_resolved: true,
        };
        let Payload::Slack { body } = slack(&config, &hostile_notice(&group_labels)) else {
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
        let Payload::PagerDuty { event } = pagerduty(&config, &notice) else {
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
        let Some(crate::Integration::Email(email_config)) =
            routing.receivers[0].integrations.first().cloned()
        else {
            panic!("not an email integration");
        };
        let Payload::Email { html, .. } = email(&email_config, &notice, true) else {
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
        };
        let config = pagerduty_config();
        let Payload::PagerDuty { event } = pagerduty(&config, &notice) else {
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
    fn any_persisted_time_formats() {
        assert_eq!(rfc3339(i64::MAX), "9999-12-31T23:59:59.999Z");
        assert_eq!(rfc3339(i64::MIN), "1970-01-01T00:00:00.000Z");
    }

    #[test]
    fn truncation_counts_characters_not_bytes() {
        assert_eq!(truncate("ééé", 2), "é…");
        assert_eq!(truncate("abc", 3), "abc");
    }
}
