//! Webex through the Messages API (`webex_configs`): Alertmanager's default message (the common annotations and
//! the alert lists) as `markdown` to the room, cut at Webex's 7,439 bytes; the bot token is `http_config`'s
//! `authorization`, required as in Alertmanager. Any 2xx is an acceptance; 429 (with `Retry-After`) and 5xx are
//! retried, other refusals (bad room, bad token) are permanent.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;

use super::amtext::{annotated_blocks, truncate_bytes, verbatim};
use super::http;
use super::{mismatch, BoxFuture, Integration, Kind, Outcome};
use crate::fields::{http_config, plain, Global};
use crate::render::Notice;
use crate::store::Payload;
use dbwatch_yaml::node::Node;
use dbwatch_yaml::read::{Fields, Reader};

pub const DEFAULT_API_URL: &str = "https://webexapis.com/v1/messages";
/// The longest message Webex takes, in bytes (Alertmanager's `maxMessageSize`).
pub const MESSAGE_MAX_BYTES: usize = 7439;

#[derive(Debug, Clone)]
pub struct WebexConfig {
    pub api_url: String,
    pub room_id: String,
    pub message: Option<String>,
    pub send_resolved: bool,
    /// Carries the bot token as its `authorization`.
    pub http: http::Endpoint,
}

impl Integration for WebexConfig {
    fn kind(&self) -> Kind {
        Kind::Webex
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
            let Payload::Webex { body } = payload else {
                return mismatch(Kind::Webex);
            };
            http::post(
                client,
                &self.api_url,
                body,
                timeout,
                Kind::Webex,
                http::any_success,
                &self.http,
            )
            .await
        })
    }
}

pub fn read(
    reader: &mut Reader<'_>,
    node: &Node,
    path: &str,
    global: &Global,
) -> Option<Arc<dyn Integration>> {
    let mut fields = Fields::of(reader, node, path)?;
    let settings = http_config(reader, &mut fields, global);
    if settings
        .as_ref()
        .is_none_or(|settings| settings.authorization.is_none())
    {
        reader.error(
            node.mark,
            &format!("{path}.http_config.authorization"),
            "required: Webex takes the bot's access token as http_config.authorization.credentials",
        );
    }
    let room_id = plain(reader, &mut fields, "room_id");
    if room_id.is_none() {
        reader.error(node.mark, path, "room_id is required");
    }
    let config = WebexConfig {
        api_url: plain(reader, &mut fields, "api_url")
            .or_else(|| global.webex_api_url.clone())
            .unwrap_or_else(|| DEFAULT_API_URL.to_owned()),
        room_id: room_id?,
        message: plain(reader, &mut fields, "message"),
        send_resolved: fields.boolean(reader, "send_resolved").unwrap_or(true),
        http: http::Endpoint::new(settings),
    };
    fields.finish(reader);
    Some(Arc::new(config))
}

pub fn render(config: &WebexConfig, notice: &Notice<'_>) -> Payload {
    let message = config
        .message
        .clone()
        .unwrap_or_else(|| annotated_blocks(notice, verbatim));
    Payload::Webex {
        body: json!({
            "roomId": config.room_id,
            "markdown": truncate_bytes(&message, MESSAGE_MAX_BYTES),
        }),
    }
}
