//! Slack through an incoming webhook: the `slack_configs` entry, its Block Kit message (kept within Slack's
//! block and text limits), and its answer (200 with `ok`; 4xx such as `channel_is_archived` mean the
//! configuration is broken).

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{json, Map, Value};

use super::http::{self, Verdict};
use super::{mismatch, read_secret, BoxFuture, Integration, Kind, Outcome};
use crate::fields::{http_config, plain, refuse, secret, Global};
use crate::render::{alert_line, link_url, rfc3339, slack_escape, truncate, Notice};
use crate::store::{AlertRecord, Payload};
use dbwatch_secret::PasswordSource;
use dbwatch_yaml::node::Node;
use dbwatch_yaml::read::{Fields, Reader};

/// Slack allows 50 blocks: a header, the alerts, a "+N more" context and a footer context.
pub const SLACK_MAX_BLOCKS: usize = 50;
const SLACK_ALERT_BLOCKS: usize = SLACK_MAX_BLOCKS - 3;
pub const SLACK_HEADER_MAX: usize = 150;
pub const SLACK_SECTION_MAX: usize = 3000;
pub const SLACK_TEXT_MAX: usize = 3000;
/// Slack allows about one message per second per webhook.
const SLACK_SPACING: Duration = Duration::from_secs(1);

#[derive(Debug, Clone)]
pub struct SlackConfig {
    /// The incoming webhook URL: a secret.
    pub api_url: PasswordSource,
    pub channel: Option<String>,
    pub username: Option<String>,
    pub icon_emoji: Option<String>,
    pub icon_url: Option<String>,
    pub send_resolved: bool,
    /// `http_config`: proxy, TLS, authorization, redirects.
    pub http: http::Endpoint,
}

impl Integration for SlackConfig {
    fn kind(&self) -> Kind {
        Kind::Slack
    }

    fn send_resolved(&self) -> bool {
        self.send_resolved
    }

    fn render(&self, notice: &Notice<'_>) -> Payload {
        render(self, notice)
    }

    fn send<'a>(
        &'a self,
        client: &'a reqwest::Client,
        payload: &'a Payload,
        timeout: Duration,
    ) -> BoxFuture<'a, Outcome> {
        Box::pin(async move {
            let Payload::Slack { body } = payload else {
                return mismatch(Kind::Slack);
            };
            let url = match read_secret(&self.api_url, "slack api_url") {
                Ok(url) => url,
                Err(outcome) => return outcome,
            };
            http::post(
                client,
                &url,
                body,
                timeout,
                Kind::Slack,
                classify,
                &self.http,
            )
            .await
        })
    }

    fn spacing(&self) -> Option<Duration> {
        Some(SLACK_SPACING)
    }
}

/// 200 with a body that is not `{"ok":false…`; 4xx such as `channel_is_archived` are permanent.
pub fn classify(status: StatusCode, body: &str) -> Verdict {
    Verdict::of(
        status,
        status == StatusCode::OK && !body.trim_start().starts_with("{\"ok\":false"),
    )
}

pub fn read(
    reader: &mut Reader<'_>,
    node: &Node,
    path: &str,
    global: &Global,
) -> Option<Arc<dyn Integration>> {
    let mut fields = Fields::of(reader, node, path)?;
    let http = http::Endpoint::new(http_config(reader, &mut fields, global));
    for key in [
        "title",
        "title_link",
        "text",
        "pretext",
        "fallback",
        "color",
        "footer",
        "fields",
        "actions",
        "callback_id",
        "image_url",
        "thumb_url",
        "short_fields",
        "link_names",
        "mrkdwn_in",
        "update_message",
        "app_token",
        "app_token_file",
        "app_url",
    ] {
        refuse(
            reader,
            &mut fields,
            key,
            "dbwatch builds the Slack message itself (Block Kit, incoming webhook)",
        );
    }
    let api_url = secret(reader, &mut fields, "api_url", "api_url_file")
        .or_else(|| global.slack_api_url.clone());
    let config = SlackConfig {
        api_url: api_url.or_else(|| {
            reader.error(
                node.mark,
                path,
                "no api_url, api_url_file or global slack_api_url",
            );
            None
        })?,
        channel: plain(reader, &mut fields, "channel"),
        username: plain(reader, &mut fields, "username"),
        icon_emoji: plain(reader, &mut fields, "icon_emoji"),
        icon_url: plain(reader, &mut fields, "icon_url"),
        http,
        send_resolved: fields.boolean(reader, "send_resolved").unwrap_or(false),
    };
    fields.finish(reader);
    Some(Arc::new(config))
}

pub fn render(config: &SlackConfig, notice: &Notice<'_>) -> Payload {
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
