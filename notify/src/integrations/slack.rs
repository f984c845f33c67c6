//! Slack through an incoming webhook: the `slack_configs` entry, its Block Kit message (kept within Slack's
//! block and text limits), and its answer (200 with `ok`; 4xx such as `channel_is_archived` mean the
//! configuration is broken).
//!
//! Every field Alertmanager templates is a template here too (`template.rs`). With none of the attachment
//! fields set (`title`, `title_link`, `pretext`, `text`, `fallback`, `footer`, `color`, `fields`, `actions`,
//! `callback_id`, `image_url`, `thumb_url`) the message is dbwatch's built-in Block Kit one; with any of them
//! set it is Alertmanager's shape, one attachment, each unset attachment field taking dbwatch's built-in text
//! (title, link, alert list, fallback, footer, danger/good color). `channel`, `username` and `icon_*` apply to
//! both. Templated text is sent as the template renders it (Slack mrkdwn, unescaped, as Alertmanager does).

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{json, Map, Value};

use super::http::{self, Verdict};
use super::{mismatch, read_secret, BoxFuture, Integration, Kind, Outcome};
use crate::fields::{http_config, refuse, secret, Global};
use crate::render::{alert_line, link_url, rfc3339, slack_escape, truncate, Notice};
use crate::store::{AlertRecord, Payload};
use crate::template::{TemplatedField, Templates};
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
    pub channel: Option<TemplatedField>,
    pub username: Option<TemplatedField>,
    pub icon_emoji: Option<TemplatedField>,
    pub icon_url: Option<TemplatedField>,
    /// Alertmanager's attachment fields; any one set makes the message an attachment.
    pub attachment: SlackAttachment,
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

/// Alertmanager's Slack attachment fields, each a template.
#[derive(Debug, Clone, Default)]
pub struct SlackAttachment {
    pub title: Option<TemplatedField>,
    pub title_link: Option<TemplatedField>,
    pub pretext: Option<TemplatedField>,
    pub text: Option<TemplatedField>,
    pub fallback: Option<TemplatedField>,
    pub footer: Option<TemplatedField>,
    pub color: Option<TemplatedField>,
    pub callback_id: Option<TemplatedField>,
    pub image_url: Option<TemplatedField>,
    pub thumb_url: Option<TemplatedField>,
    pub fields: Vec<SlackField>,
    pub actions: Vec<SlackAction>,
    /// `short_fields`: every field `short` unless it says otherwise.
    pub short_fields: bool,
    pub link_names: bool,
    pub mrkdwn_in: Option<Vec<String>>,
}

impl SlackAttachment {
    fn is_set(&self) -> bool {
        [
            &self.title,
            &self.title_link,
            &self.pretext,
            &self.text,
            &self.fallback,
            &self.footer,
            &self.color,
            &self.callback_id,
            &self.image_url,
            &self.thumb_url,
        ]
        .iter()
        .any(|field| field.is_some())
            || !self.fields.is_empty()
            || !self.actions.is_empty()
    }
}

#[derive(Debug, Clone)]
pub struct SlackField {
    pub title: TemplatedField,
    pub value: TemplatedField,
    pub short: Option<bool>,
}

/// A message button (`actions`), Alertmanager's `SlackAction`.
#[derive(Debug, Clone)]
pub struct SlackAction {
    pub kind: TemplatedField,
    pub text: TemplatedField,
    pub url: Option<TemplatedField>,
    pub style: Option<TemplatedField>,
    pub name: Option<TemplatedField>,
    pub value: Option<TemplatedField>,
}

fn read_attachment(
    reader: &mut Reader<'_>,
    fields: &mut Fields<'_>,
    templates: &Templates,
) -> SlackAttachment {
    let mut read = |key: &'static str| TemplatedField::read(reader, fields, key, templates);
    let mut attachment = SlackAttachment {
        title: read("title"),
        title_link: read("title_link"),
        pretext: read("pretext"),
        text: read("text"),
        fallback: read("fallback"),
        footer: read("footer"),
        color: read("color"),
        callback_id: read("callback_id"),
        image_url: read("image_url"),
        thumb_url: read("thumb_url"),
        ..SlackAttachment::default()
    };
    attachment.short_fields = fields.boolean(reader, "short_fields").unwrap_or(false);
    attachment.link_names = fields.boolean(reader, "link_names").unwrap_or(false);
    if let Some((node, path)) = fields.take("mrkdwn_in") {
        let items = reader.sequence(node, &path).unwrap_or(&[]);
        attachment.mrkdwn_in = Some(
            items
                .iter()
                .enumerate()
                .filter_map(|(index, item)| reader.scalar(item, &format!("{path}[{index}]")))
                .collect(),
        );
    }
    for (list, kind) in [("fields", true), ("actions", false)] {
        let Some((node, path)) = fields.take(list) else {
            continue;
        };
        for (index, item) in reader
            .sequence(node, &path)
            .unwrap_or(&[])
            .iter()
            .enumerate()
        {
            let item_path = format!("{path}[{index}]");
            let Some(mut entry) = Fields::of(reader, item, &item_path) else {
                continue;
            };
            let mut field =
                |key: &'static str| TemplatedField::read(reader, &mut entry, key, templates);
            if kind {
                let (title, value) = (field("title"), field("value"));
                let short = entry.boolean(reader, "short");
                match (title, value) {
                    (Some(title), Some(value)) => attachment.fields.push(SlackField {
                        title,
                        value,
                        short,
                    }),
                    _ => reader.error(item.mark, &item_path, "a field needs title and value"),
                }
            } else {
                let (action_kind, text, url, style, name, value) = (
                    field("type"),
                    field("text"),
                    field("url"),
                    field("style"),
                    field("name"),
                    field("value"),
                );
                refuse(
                    reader,
                    &mut entry,
                    "confirm",
                    "confirmation dialogs are not supported",
                );
                match (action_kind, text) {
                    (Some(kind), Some(text))
                        if url.is_some() || (name.is_some() && value.is_some()) =>
                    {
                        attachment.actions.push(SlackAction {
                            kind,
                            text,
                            url,
                            style,
                            name,
                            value,
                        })
                    }
                    _ => reader.error(
                        item.mark,
                        &item_path,
                        "an action needs type and text, and url or name and value",
                    ),
                }
            }
            entry.finish(reader);
        }
    }
    attachment
}

pub fn read(
    reader: &mut Reader<'_>,
    node: &Node,
    path: &str,
    global: &Global,
) -> Option<Arc<dyn Integration>> {
    let mut fields = Fields::of(reader, node, path)?;
    let http = http::Endpoint::new(http_config(reader, &mut fields, global));
    for key in ["update_message", "app_token", "app_token_file", "app_url"] {
        refuse(
            reader,
            &mut fields,
            key,
            "dbwatch posts to an incoming webhook; the Slack app API is not supported",
        );
    }
    let attachment = read_attachment(reader, &mut fields, &global.templates);
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
        channel: TemplatedField::read(reader, &mut fields, "channel", &global.templates),
        username: TemplatedField::read(reader, &mut fields, "username", &global.templates),
        icon_emoji: TemplatedField::read(reader, &mut fields, "icon_emoji", &global.templates),
        icon_url: TemplatedField::read(reader, &mut fields, "icon_url", &global.templates),
        attachment,
        http,
        send_resolved: fields.boolean(reader, "send_resolved").unwrap_or(false),
    };
    fields.finish(reader);
    Some(Arc::new(config))
}

pub fn render(config: &SlackConfig, notice: &Notice<'_>) -> Payload {
    let mut body = if config.attachment.is_set() {
        render_attachment(&config.attachment, notice)
    } else {
        render_blocks(notice)
    };
    for (key, field) in [
        ("channel", &config.channel),
        ("username", &config.username),
        ("icon_emoji", &config.icon_emoji),
        ("icon_url", &config.icon_url),
    ] {
        // No built-in value: a failed template leaves the webhook's own setting.
        let Some(field) = field else { continue };
        let value = field.render(notice, String::new);
        if !value.is_empty() {
            body.insert(key.into(), Value::String(value));
        }
    }
    Payload::Slack {
        body: Value::Object(body),
    }
}

/// The built-in alert list as attachment text: what the blocks show, one alert per paragraph.
fn builtin_text(notice: &Notice<'_>) -> String {
    let texts: Vec<String> = notice
        .alerts()
        .take(SLACK_ALERT_BLOCKS)
        .map(alert_text)
        .collect();
    let mut text = texts.join("\n\n");
    let count = notice.alerts().count();
    if count > SLACK_ALERT_BLOCKS {
        let _ = write!(text, "\n\n+{} more alerts", count - SLACK_ALERT_BLOCKS);
    }
    truncate(&text, SLACK_TEXT_MAX)
}

fn builtin_footer(notice: &Notice<'_>) -> String {
    format!(
        "dbwatch · {} · {}",
        slack_escape(notice.receiver),
        rfc3339(notice.now)
    )
}

/// Alertmanager's message shape: one attachment whose fields are the templates, or dbwatch's built-in text.
fn render_attachment(config: &SlackAttachment, notice: &Notice<'_>) -> Map<String, Value> {
    let title = match &config.title {
        Some(field) => field.render(notice, || notice.title()),
        None => notice.title(),
    };
    let builtin_link = || link_url(notice.external_url).unwrap_or("").to_owned();
    let title_link = match &config.title_link {
        Some(field) => field.render(notice, builtin_link),
        None => builtin_link(),
    };
    let text = match &config.text {
        Some(field) => field.render(notice, || builtin_text(notice)),
        None => builtin_text(notice),
    };
    let builtin_fallback = || slack_escape(&notice.title());
    let fallback = match &config.fallback {
        Some(field) => field.render(notice, builtin_fallback),
        None => builtin_fallback(),
    };
    let footer = match &config.footer {
        Some(field) => field.render(notice, || builtin_footer(notice)),
        None => builtin_footer(notice),
    };
    let builtin_color = || if notice.is_firing() { "danger" } else { "good" }.to_owned();
    let color = match &config.color {
        Some(field) => field.render(notice, builtin_color),
        None => builtin_color(),
    };
    let mut attachment = Map::new();
    for (key, value) in [
        ("title", truncate(&title, SLACK_HEADER_MAX * 10)),
        ("title_link", title_link),
        ("text", truncate(&text, SLACK_TEXT_MAX * 10)),
        ("fallback", truncate(&fallback, SLACK_TEXT_MAX)),
        ("footer", truncate(&footer, 2000)),
        ("color", color),
    ] {
        if !value.is_empty() {
            attachment.insert(key.into(), Value::String(value));
        }
    }
    for (key, field) in [
        ("pretext", &config.pretext),
        ("callback_id", &config.callback_id),
        ("image_url", &config.image_url),
        ("thumb_url", &config.thumb_url),
    ] {
        let Some(field) = field else { continue };
        let value = field.render(notice, String::new);
        if !value.is_empty() {
            attachment.insert(key.into(), Value::String(value));
        }
    }
    let fields: Vec<Value> = config
        .fields
        .iter()
        .map(|field| {
            json!({
                "title": field.title.render(notice, || field.title.source().to_owned()),
                "value": field.value.render(notice, String::new),
                "short": field.short.unwrap_or(config.short_fields),
            })
        })
        .collect();
    if !fields.is_empty() {
        attachment.insert("fields".into(), Value::Array(fields));
    }
    let actions: Vec<Value> = config
        .actions
        .iter()
        .map(|action| {
            let mut entry = Map::new();
            entry.insert(
                "type".into(),
                Value::String(action.kind.render(notice, || "button".to_owned())),
            );
            entry.insert(
                "text".into(),
                Value::String(
                    action
                        .text
                        .render(notice, || action.text.source().to_owned()),
                ),
            );
            for (key, field) in [
                ("url", &action.url),
                ("style", &action.style),
                ("name", &action.name),
                ("value", &action.value),
            ] {
                if let Some(field) = field {
                    let value = field.render(notice, String::new);
                    if !value.is_empty() {
                        entry.insert(key.into(), Value::String(value));
                    }
                }
            }
            Value::Object(entry)
        })
        .collect();
    if !actions.is_empty() {
        attachment.insert("actions".into(), Value::Array(actions));
    }
    let mrkdwn_in = config
        .mrkdwn_in
        .clone()
        .unwrap_or_else(|| vec!["fallback".into(), "pretext".into(), "text".into()]);
    attachment.insert("mrkdwn_in".into(), json!(mrkdwn_in));
    let mut body = Map::new();
    body.insert(
        "attachments".into(),
        Value::Array(vec![Value::Object(attachment)]),
    );
    if config.link_names {
        body.insert("link_names".into(), Value::Bool(true));
    }
    body
}

/// One alert's mrkdwn: name and state, summary, description, labels, runbook link.
fn alert_text(alert: &AlertRecord) -> String {
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
    text
}

/// dbwatch's built-in Block Kit message.
fn render_blocks(notice: &Notice<'_>) -> Map<String, Value> {
    let emoji = if notice.is_firing() { "🔥" } else { "✅" };
    let title = notice.title();
    let mut blocks = vec![json!({
        "type": "header",
        "text": {"type": "plain_text", "text": truncate(&format!("{emoji} {title}"), SLACK_HEADER_MAX), "emoji": true}
    })];
    let alerts: Vec<&AlertRecord> = notice.alerts().collect();
    for alert in alerts.iter().take(SLACK_ALERT_BLOCKS) {
        let text = alert_text(alert);
        blocks.push(json!({"type": "section", "text": {"type": "mrkdwn", "text": truncate(&text, SLACK_SECTION_MAX)}}));
    }
    if alerts.len() > SLACK_ALERT_BLOCKS {
        blocks.push(json!({
            "type": "context",
            "elements": [{"type": "mrkdwn", "text": format!("+{} more alerts", alerts.len() - SLACK_ALERT_BLOCKS)}]
        }));
    }
    let mut footer = builtin_footer(notice);
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
    body
}
