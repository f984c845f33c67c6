//! Telegram through the Bot API's `sendMessage` (`telegram_configs`): Alertmanager's default message (the alert
//! lists), in HTML parse mode unless configured otherwise, label values escaped for that mode so that a
//! database named `<b>` or `_x_` arrives as text instead of a 400; at most 4,096 characters. The answer is
//! `{"ok":true}`; a 429 carries its delay in `parameters.retry_after`, which is honoured; other 4xx (chat not
//! found, bot blocked, bad token) are permanent. Messages to one chat go a second apart, as the Bot API asks.

use std::sync::Arc;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Map, Value};

use super::amtext::alert_blocks;
use super::http::{self, Exchange, Verdict};
use super::{mismatch, read_secret, BoxFuture, Integration, Kind, Outcome};
use crate::fields::{http_config, plain, required_secret, Global};
use crate::render::{truncate, Notice};
use crate::store::Payload;
use crate::template::{render_or, TemplatedField};
use dbwatch_secret::PasswordSource;
use dbwatch_yaml::node::Node;
use dbwatch_yaml::read::{Fields, Reader};

pub const DEFAULT_API_URL: &str = "https://api.telegram.org";
/// Telegram's limit on a message's text, which Alertmanager truncates to as well.
pub const MESSAGE_MAX: usize = 4096;
/// The Bot API asks for at most one message per second to a chat.
const TELEGRAM_SPACING: Duration = Duration::from_secs(1);

/// How Telegram parses the text (`parse_mode`); Alertmanager's default is HTML.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParseMode {
    Html,
    Markdown,
    MarkdownV2,
    /// `parse_mode: ''`: plain text.
    None,
}

impl ParseMode {
    fn name(self) -> Option<&'static str> {
        match self {
            ParseMode::Html => Some("HTML"),
            ParseMode::Markdown => Some("Markdown"),
            ParseMode::MarkdownV2 => Some("MarkdownV2"),
            ParseMode::None => None,
        }
    }

    /// What makes a value arrive as text in this mode.
    fn escape(self) -> fn(&str) -> String {
        match self {
            ParseMode::Html => crate::html::escape_markup,
            ParseMode::Markdown => escape_markdown,
            ParseMode::MarkdownV2 => escape_markdown_v2,
            ParseMode::None => super::amtext::verbatim,
        }
    }
}

/// Legacy Markdown: `_`, `*`, `` ` `` and `[` are escaped with a backslash (Bot API, "Markdown style").
pub fn escape_markdown(text: &str) -> String {
    backslash(text, "_*`[")
}

/// MarkdownV2: every reserved character is escaped with a backslash (Bot API, "MarkdownV2 style").
pub fn escape_markdown_v2(text: &str) -> String {
    backslash(text, "_*[]()~`>#+-=|{}.!\\")
}

fn backslash(text: &str, reserved: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if reserved.contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[derive(Debug, Clone)]
pub struct TelegramConfig {
    pub api_url: String,
    /// The bot token, part of the URL: a secret.
    pub bot_token: PasswordSource,
    pub chat_id: i64,
    pub message_thread_id: Option<u64>,
    pub message: Option<TemplatedField>,
    pub parse_mode: ParseMode,
    pub disable_notifications: bool,
    pub send_resolved: bool,
    pub http: http::Endpoint,
}

impl Integration for TelegramConfig {
    fn kind(&self) -> Kind {
        Kind::Telegram
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
            let Payload::Telegram { body } = payload else {
                return mismatch(Kind::Telegram);
            };
            let token = match read_secret(&self.bot_token, "telegram bot_token") {
                Ok(token) => token.trim().to_owned(),
                Err(outcome) => return outcome,
            };
            let url = format!(
                "{}/bot{token}/sendMessage",
                self.api_url.trim_end_matches('/')
            );
            let mut exchange =
                match Exchange::json(reqwest::Method::POST, &url, body, Kind::Telegram, classify) {
                    Ok(exchange) => exchange,
                    Err(outcome) => return outcome,
                };
            exchange.body_retry_after = Some(retry_after);
            http::send(client, exchange, timeout, &self.http).await
        })
    }

    fn spacing(&self) -> Option<Duration> {
        Some(TELEGRAM_SPACING)
    }
}

/// 200 with `"ok":true`; 429 and 5xx retried; other refusals are permanent.
pub fn classify(status: StatusCode, body: &str) -> Verdict {
    let ok = serde_json::from_str::<Value>(body)
        .ok()
        .and_then(|answer| answer.get("ok").and_then(Value::as_bool))
        .unwrap_or(false);
    Verdict::of(status, status.is_success() && ok)
}

/// A 429's `parameters.retry_after` (seconds); the caller caps it.
pub fn retry_after(body: &str) -> Option<Duration> {
    let answer: Value = serde_json::from_str(body).ok()?;
    let seconds = answer.get("parameters")?.get("retry_after")?.as_u64()?;
    Some(Duration::from_secs(seconds))
}

pub fn read(
    reader: &mut Reader<'_>,
    node: &Node,
    path: &str,
    global: &Global,
) -> Option<Arc<dyn Integration>> {
    read_config(reader, node, path, global).map(|config| Arc::new(config) as Arc<dyn Integration>)
}

pub fn read_config(
    reader: &mut Reader<'_>,
    node: &Node,
    path: &str,
    global: &Global,
) -> Option<TelegramConfig> {
    let mut fields = Fields::of(reader, node, path)?;
    let http = http::Endpoint::new(http_config(reader, &mut fields, global));
    let bot_token = required_secret(
        reader,
        &mut fields,
        node,
        path,
        "bot_token",
        "bot_token_file",
        None,
        "bot_token or bot_token_file is required",
    );
    let chat_id = match fields.take("chat_id") {
        Some((chat, chat_path)) => {
            reader
                .scalar(chat, &chat_path)
                .and_then(|text| match text.trim().parse::<i64>() {
                    Ok(id) if id != 0 => Some(id),
                    _ => {
                        reader.error(
                            chat.mark,
                            &chat_path,
                            format!("expected a non-zero chat id (an integer), found {text:?}"),
                        );
                        None
                    }
                })
        }
        None => {
            reader.error(node.mark, path, "chat_id is required");
            None
        }
    };
    // An empty parse_mode is plain text, unlike an absent one (HTML).
    let parse_mode = match fields.take("parse_mode") {
        None => ParseMode::Html,
        Some((mode, mode_path)) => {
            match reader.scalar(mode, &mode_path).as_deref() {
                Some("HTML") => ParseMode::Html,
                Some("Markdown") => ParseMode::Markdown,
                Some("MarkdownV2") => ParseMode::MarkdownV2,
                Some("") => ParseMode::None,
                Some(other) => {
                    reader.error(
                    mode.mark,
                    &mode_path,
                    format!("unknown parse_mode {other:?}: must be Markdown, MarkdownV2, HTML or ''"),
                );
                    ParseMode::Html
                }
                None => ParseMode::Html,
            }
        }
    };
    let config = TelegramConfig {
        api_url: plain(reader, &mut fields, "api_url")
            .or_else(|| global.telegram_api_url.clone())
            .unwrap_or_else(|| DEFAULT_API_URL.to_owned()),
        bot_token: bot_token?,
        chat_id: chat_id?,
        message_thread_id: fields.integer(reader, "message_thread_id", "a thread id"),
        message: TemplatedField::read(reader, &mut fields, "message", &global.templates),
        parse_mode,
        disable_notifications: fields
            .boolean(reader, "disable_notifications")
            .unwrap_or(false),
        send_resolved: fields.boolean(reader, "send_resolved").unwrap_or(true),
        http,
    };
    fields.finish(reader);
    Some(config)
}

/// Cuts `text` to [`MESSAGE_MAX`] characters without leaving half an escape behind (an HTML entity without
/// its `;`, a lone Markdown backslash), which Telegram would refuse.
fn fit(text: &str, mode: ParseMode) -> String {
    if text.chars().count() <= MESSAGE_MAX {
        return text.to_owned();
    }
    let mut kept: String = text.chars().take(MESSAGE_MAX - 1).collect();
    match mode {
        ParseMode::Html => {
            if let Some(amp) = kept.rfind('&') {
                if !kept[amp..].contains(';') {
                    kept.truncate(amp);
                }
            }
        }
        ParseMode::Markdown | ParseMode::MarkdownV2 => {
            let trailing = kept.chars().rev().take_while(|c| *c == '\\').count();
            if trailing % 2 == 1 {
                kept.pop();
            }
        }
        ParseMode::None => {}
    }
    kept.push('…');
    truncate(&kept, MESSAGE_MAX)
}

pub fn render(config: &TelegramConfig, notice: &Notice<'_>) -> Payload {
    // A template's text is sent as it renders (Alertmanager escapes nothing in it either).
    let text = render_or(&config.message, notice, || {
        alert_blocks(notice, config.parse_mode.escape())
    });
    let mut body = Map::new();
    body.insert("chat_id".into(), Value::from(config.chat_id));
    if let Some(thread) = config.message_thread_id {
        body.insert("message_thread_id".into(), Value::from(thread));
    }
    body.insert("text".into(), Value::String(fit(&text, config.parse_mode)));
    if let Some(mode) = config.parse_mode.name() {
        body.insert("parse_mode".into(), Value::String(mode.into()));
    }
    body.insert(
        "disable_notification".into(),
        Value::Bool(config.disable_notifications),
    );
    body.insert("disable_web_page_preview".into(), Value::Bool(true));
    Payload::Telegram {
        body: Value::Object(body),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::integrations::testkit::{
        alert, body, errors, failed_fields, group, one, one_templated, read_with, TEAM,
    };

    #[test]
    fn the_message_renders_the_routing_files_templates_cut_after() {
        let telegram = one_templated(
            &format!("{ENTRY}        message: '{{{{ template \"team.title\" . }}}}: {{{{ template \"team.list\" . }}}}{{{{ if .Alerts.Firing }}}}{{{{ printf \"%5000s\" \"\" }}}}{{{{ end }}}}'\n"),
            TEAM,
        );
        let firing = group(false);
        let notice = firing.notice();
        let text = body(&telegram.render(&notice))["text"]
            .as_str()
            .expect("text")
            .to_owned();
        assert!(
            text.starts_with("FIRING replication_lag (2 firing): r1:firing r2:firing   "),
            "{text:?}"
        );
        assert_eq!(text.chars().count(), MESSAGE_MAX);
        let resolved = group(true);
        let notice_resolved = resolved.notice();
        assert_eq!(
            body(&telegram.render(&notice_resolved))["text"],
            "RESOLVED replication_lag: r1:resolved r2:resolved "
        );
        assert!(failed_fields(&notice).is_empty());
        assert!(failed_fields(&notice_resolved).is_empty());
    }

    #[test]
    fn a_failing_message_template_falls_back_to_the_built_in_text_and_is_recorded() {
        let telegram = one(
            &format!("{ENTRY}        message: '{{{{ .Alerts.Nope }}}}'\n"),
            "",
        );
        let plain = one(ENTRY, "");
        let firing = group(false);
        let notice = firing.notice();
        assert_eq!(
            body(&telegram.render(&notice))["text"],
            body(&plain.render(&firing.notice()))["text"]
        );
        assert_eq!(failed_fields(&notice), ["message"]);
    }

    const ENTRY: &str =
        "    telegram_configs:\n      - bot_token: 123:abc\n        chat_id: -1001234\n";

    #[test]
    fn defaults_globals_and_the_later_keys() {
        let config = read_with("  bot_token: t\n  chat_id: 42\n", "", read_config);
        assert_eq!(config.api_url, DEFAULT_API_URL);
        assert_eq!(config.parse_mode, ParseMode::Html);
        assert!(config.send_resolved);
        assert!(!config.disable_notifications);
        assert_eq!(config.message_thread_id, None);
        let config = read_with(
            "  bot_token_file: /run/secrets/bot\n  chat_id: 42\n  parse_mode: ''\n  message_thread_id: 7\n  disable_notifications: true\n",
            "  telegram_api_url: http://tg.local:8081\n",
            read_config,
        );
        assert_eq!(config.api_url, "http://tg.local:8081");
        assert_eq!(config.parse_mode, ParseMode::None);
        assert_eq!(config.message_thread_id, Some(7));
        assert!(config.disable_notifications);
        assert!(matches!(config.bot_token, PasswordSource::File(_)));
        let config = read_with(
            "  bot_token: t\n  chat_id: 42\n  api_url: http://own\n",
            "  telegram_api_url: http://global\n",
            read_config,
        );
        assert_eq!(config.api_url, "http://own");
    }

    #[test]
    fn a_firing_message_is_html_with_label_values_escaped_and_the_resolve_follows() {
        let telegram = one(ENTRY, "");
        assert_eq!(telegram.kind().as_str(), "telegram");
        let mut firing = group(false);
        firing.firing[0]
            .labels
            .insert("database".into(), "<b>orders & co</b>".into());
        let sent = telegram.render(&firing.notice());
        let body = body(&sent);
        assert_eq!(body["chat_id"], -1_001_234);
        assert_eq!(body["parse_mode"], "HTML");
        assert_eq!(body["disable_notification"], false);
        assert_eq!(body["disable_web_page_preview"], true);
        assert!(body.get("message_thread_id").is_none());
        let text = body["text"].as_str().expect("text");
        assert!(
            text.starts_with("\n\nAlerts Firing:\nLabels:\n - alertname = replication_lag\n - cluster = main\n - database = &lt;b&gt;orders &amp; co&lt;/b&gt;\n"),
            "{text:?}"
        );
        let resolved = group(true);
        let sent = telegram.render(&resolved.notice());
        let text = crate::integrations::testkit::body(&sent)["text"]
            .as_str()
            .expect("text")
            .to_owned();
        assert!(text.starts_with("\n\n\nAlerts Resolved:\n"), "{text:?}");
    }

    #[test]
    fn markdown_modes_escape_their_reserved_characters_and_long_texts_are_cut_whole() {
        assert_eq!(escape_markdown("a_b*c`d[e]"), "a\\_b\\*c\\`d\\[e]");
        assert_eq!(escape_markdown_v2("db-1.x (ok)!"), "db\\-1\\.x \\(ok\\)\\!");
        let long = "&amp;".repeat(1000);
        let cut = fit(&long, ParseMode::Html);
        assert!(cut.chars().count() <= MESSAGE_MAX);
        assert!(cut.ends_with("&amp;…"), "{}", &cut[cut.len() - 20..]);
        let cut = fit(&"\\_".repeat(3000), ParseMode::MarkdownV2);
        assert!(cut.chars().count() <= MESSAGE_MAX);
        assert!(cut.ends_with("\\_…"));
        let mut big = group(false);
        big.firing = (0..200).map(|i| alert(&format!("r{i}"), false)).collect();
        let telegram = one(ENTRY, "");
        let sent = telegram.render(&big.notice());
        let text = crate::integrations::testkit::body(&sent)["text"]
            .as_str()
            .expect("text")
            .to_owned();
        assert_eq!(text.chars().count(), MESSAGE_MAX);
    }

    #[test]
    fn missing_ids_bad_parse_modes_and_zero_chats_are_refused_by_path() {
        assert_eq!(
            errors("    telegram_configs:\n      - parse_mode: Textile\n", ""),
            [
                "receivers[0].telegram_configs[0]: bot_token or bot_token_file is required",
                "receivers[0].telegram_configs[0]: chat_id is required",
                "receivers[0].telegram_configs[0].parse_mode: unknown parse_mode \"Textile\": must be Markdown, MarkdownV2, HTML or ''",
            ]
        );
        assert_eq!(
            errors("    telegram_configs:\n      - bot_token: t\n        chat_id: 0\n", ""),
            ["receivers[0].telegram_configs[0].chat_id: expected a non-zero chat id (an integer), found \"0\""]
        );
    }

    #[test]
    fn telegrams_answers_and_its_retry_after_are_read() {
        assert_eq!(
            classify(StatusCode::OK, "{\"ok\":true,\"result\":{}}"),
            Verdict::Accepted
        );
        assert_eq!(classify(StatusCode::OK, "{\"ok\":false}"), Verdict::Refused);
        let throttled = "{\"ok\":false,\"error_code\":429,\"description\":\"Too Many Requests: retry after 17\",\"parameters\":{\"retry_after\":17}}";
        assert_eq!(
            classify(StatusCode::TOO_MANY_REQUESTS, throttled),
            Verdict::Retry
        );
        assert_eq!(retry_after(throttled), Some(Duration::from_secs(17)));
        assert_eq!(retry_after("{\"ok\":false}"), None);
        assert_eq!(retry_after("<html>"), None);
        assert_eq!(
            classify(
                StatusCode::BAD_REQUEST,
                "{\"ok\":false,\"error_code\":400,\"description\":\"Bad Request: chat not found\"}"
            ),
            Verdict::Refused
        );
        assert_eq!(classify(StatusCode::BAD_GATEWAY, "<html>"), Verdict::Retry);
    }
}
