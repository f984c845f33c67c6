//! Telegram through the Bot API's `sendMessage` (`telegram_configs`): Alertmanager's default message (the alert
//! lists), in HTML parse mode unless configured otherwise, label values escaped for that mode so that a
//! database named `<b>` or `_x_` arrives as text instead of a 400; at most 4,096 characters. The answer is
//! `{"ok":true}`; a 429 carries its delay in `parameters.retry_after`, which is honoured; other 4xx (chat not
//! found, bot blocked, bad token) are permanent.

use std::sync::Arc;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Map, Value};

use super::amtext::alert_blocks;
use super::http::{self, Exchange, Verdict};
use super::{mismatch, read_secret, BoxFuture, Integration, Kind, Outcome};
use crate::fields::{http_config, plain, secret, Global};
use crate::render::{truncate, Notice};
use crate::store::Payload;
use dbwatch_secret::PasswordSource;
use dbwatch_yaml::node::Node;
use dbwatch_yaml::read::{Fields, Reader};

pub const DEFAULT_API_URL: &str = "https://api.telegram.org";
/// Telegram's limit on a message's text, which Alertmanager truncates to as well.
pub const MESSAGE_MAX: usize = 4096;

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
    pub message: Option<String>,
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
    let mut fields = Fields::of(reader, node, path)?;
    let http = http::Endpoint::new(http_config(reader, &mut fields, global));
    let bot_token = secret(reader, &mut fields, "bot_token", "bot_token_file");
    if bot_token.is_none() {
        reader.error(node.mark, path, "bot_token or bot_token_file is required");
    }
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
        message: plain(reader, &mut fields, "message"),
        parse_mode,
        disable_notifications: fields
            .boolean(reader, "disable_notifications")
            .unwrap_or(false),
        send_resolved: fields.boolean(reader, "send_resolved").unwrap_or(true),
        http,
    };
    fields.finish(reader);
    Some(Arc::new(config))
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
    let text = config
        .message
        .clone()
        .unwrap_or_else(|| alert_blocks(notice, config.parse_mode.escape()));
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
