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
use crate::template::{render_or, TemplatedField};
use dbwatch_yaml::node::Node;
use dbwatch_yaml::read::{Fields, Reader};

pub const DEFAULT_API_URL: &str = "https://webexapis.com/v1/messages";
/// The longest message Webex takes, in bytes (Alertmanager's `maxMessageSize`).
pub const MESSAGE_MAX_BYTES: usize = 7439;

#[derive(Debug, Clone)]
pub struct WebexConfig {
    pub api_url: String,
    pub room_id: String,
    pub message: Option<TemplatedField>,
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
    read_config(reader, node, path, global).map(|config| Arc::new(config) as Arc<dyn Integration>)
}

pub fn read_config(
    reader: &mut Reader<'_>,
    node: &Node,
    path: &str,
    global: &Global,
) -> Option<WebexConfig> {
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
        message: TemplatedField::read(reader, &mut fields, "message", &global.templates),
        send_resolved: fields.boolean(reader, "send_resolved").unwrap_or(true),
        http: http::Endpoint::new(settings),
    };
    fields.finish(reader);
    Some(config)
}

pub fn render(config: &WebexConfig, notice: &Notice<'_>) -> Payload {
    let message = render_or(&config.message, notice, || {
        annotated_blocks(notice, verbatim)
    });
    Payload::Webex {
        body: json!({
            "roomId": config.room_id,
            "markdown": truncate_bytes(&message, MESSAGE_MAX_BYTES),
        }),
    }
}

#[cfg(test)]
mod tests {
    use reqwest::StatusCode;

    use super::*;
    use crate::integrations::http::{any_success, Verdict};
    use crate::integrations::testkit::{
        body, errors, failed_fields, group, one, one_templated, read_with, TEAM,
    };

    const ENTRY: &str = "    webex_configs:\n      - room_id: R1\n        http_config:\n          authorization:\n            credentials: bot-token\n";

    #[test]
    fn the_message_renders_the_routing_files_templates_cut_after() {
        let webex = one_templated(
            &format!("{ENTRY}        message: '{{{{ template \"team.title\" . }}}} {{{{ template \"team.list\" .}}}}{{{{ if .Alerts.Firing }}}}{{{{ printf \"%8000s\" \"\" }}}}{{{{ end }}}}'\n"),
            TEAM,
        );
        let firing = group(false);
        let notice = firing.notice();
        let sent = webex.render(&notice);
        let markdown = body(&sent)["markdown"].as_str().expect("markdown");
        assert!(
            markdown.starts_with("FIRING replication_lag (2 firing) r1:firing r2:firing   "),
            "{markdown:?}"
        );
        assert!(markdown.len() <= MESSAGE_MAX_BYTES && markdown.len() > MESSAGE_MAX_BYTES - 4);
        assert_eq!(body(&sent)["roomId"], "R1");
        let resolved = group(true);
        let notice_resolved = resolved.notice();
        assert_eq!(
            body(&webex.render(&notice_resolved))["markdown"],
            "RESOLVED replication_lag r1:resolved r2:resolved "
        );
        assert!(failed_fields(&notice).is_empty());
        assert!(failed_fields(&notice_resolved).is_empty());
    }

    #[test]
    fn a_failing_message_template_falls_back_to_the_built_in_text_and_is_recorded() {
        let webex = one(
            &format!("{ENTRY}        message: '{{{{ .Alerts.Nope }}}}'\n"),
            "",
        );
        let firing = group(false);
        let notice = firing.notice();
        assert_eq!(
            body(&webex.render(&notice))["markdown"],
            body(&one(ENTRY, "").render(&firing.notice()))["markdown"]
        );
        assert_eq!(failed_fields(&notice), ["message"]);
        // room_id is not a template in Alertmanager 0.25.
        let found = errors(&ENTRY.replace("R1", "'{{ .Status }}'"), "");
        assert!(
            found.iter().any(|e| e.ends_with(
                "room_id: room_id is not a templated field (Alertmanager does not template it either)"
            )),
            "{found:?}"
        );
    }

    const AUTH: &str = "  http_config:\n    authorization:\n      credentials: bot-token\n";

    #[test]
    fn the_api_url_comes_from_the_entry_the_global_or_webexs_default() {
        let entry = format!("  room_id: R1\n{AUTH}");
        assert_eq!(read_with(&entry, "", read_config).api_url, DEFAULT_API_URL);
        let config = read_with(
            &entry,
            "  webex_api_url: http://webex.local/v1/messages\n",
            read_config,
        );
        assert_eq!(config.api_url, "http://webex.local/v1/messages");
        assert!(config.send_resolved);
        // The global http_config's authorization serves too.
        let config = read_with(
            "  room_id: R1\n",
            "  http_config:\n    authorization:\n      credentials: global-token\n",
            read_config,
        );
        assert_eq!(config.room_id, "R1");
    }

    #[test]
    fn the_room_and_the_authorization_are_required() {
        assert_eq!(
            errors("    webex_configs:\n      - message: hi\n", ""),
            [
                "receivers[0].webex_configs[0].http_config.authorization: required: Webex takes the bot's access token as http_config.authorization.credentials",
                "receivers[0].webex_configs[0]: room_id is required",
            ]
        );
    }

    #[test]
    fn the_message_is_alertmanagers_default_as_markdown_cut_at_webexs_bytes() {
        let webex = one(
            "    webex_configs:\n      - room_id: R1\n        http_config:\n          authorization:\n            credentials: t\n",
            "",
        );
        assert_eq!(webex.kind().as_str(), "webex");
        let firing = group(false);
        let sent = webex.render(&firing.notice());
        assert_eq!(body(&sent)["roomId"], "R1");
        let markdown = body(&sent)["markdown"].as_str().expect("markdown");
        assert!(
            markdown.starts_with("replica lagging\n\nAlerts Firing:\nLabels:\n"),
            "{markdown:?}"
        );
        let mut big = group(false);
        big.firing[0]
            .annotations
            .insert("description".into(), "é".repeat(5000));
        big.firing[1]
            .annotations
            .insert("description".into(), "é".repeat(5000));
        let sent = webex.render(&big.notice());
        let markdown = body(&sent)["markdown"].as_str().expect("markdown");
        assert!(markdown.len() <= MESSAGE_MAX_BYTES && markdown.len() > MESSAGE_MAX_BYTES - 2);
        let resolved = group(true);
        let sent = webex.render(&resolved.notice());
        assert!(body(&sent)["markdown"]
            .as_str()
            .expect("markdown")
            .starts_with("replica lagging\n\n\nAlerts Resolved:\n"));
    }

    #[test]
    fn webexs_answers_are_classified() {
        assert_eq!(
            any_success(StatusCode::OK, "{\"id\":\"m\"}"),
            Verdict::Accepted
        );
        assert_eq!(
            any_success(StatusCode::TOO_MANY_REQUESTS, ""),
            Verdict::Retry
        );
        assert_eq!(any_success(StatusCode::UNAUTHORIZED, ""), Verdict::Refused);
        assert_eq!(any_success(StatusCode::NOT_FOUND, ""), Verdict::Refused);
    }
}
