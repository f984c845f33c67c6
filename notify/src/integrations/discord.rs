//! Discord through a channel webhook (`discord_configs`): one embed titled with Alertmanager's subject, its
//! description the alert list, red while firing and green once resolved (Alertmanager 0.25's layout), kept
//! within Discord's embed limits; any 2xx is an acceptance (Discord answers 204), 429 is retried after its
//! `Retry-After`. `title` and `message` are templates, as in Alertmanager (`template.rs`); the limits apply to
//! what they render.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Map, Value};

use super::amtext::{alert_blocks, subject, verbatim};
use super::http;
use super::{mismatch, read_secret, BoxFuture, Integration, Kind, Outcome};
use crate::fields::{http_config, plain, required_secret, Global};
use crate::render::{truncate, Notice};
use crate::store::Payload;
use crate::template::{render_or, TemplatedField};
use dbwatch_secret::PasswordSource;
use dbwatch_yaml::node::Node;
use dbwatch_yaml::read::{Fields, Reader};

/// Alertmanager's embed colours.
pub const COLOR_FIRING: u32 = 0x992D22;
pub const COLOR_RESOLVED: u32 = 0x2ECC71;
/// Discord's limits (Developer docs, "Embed Limits" and "Execute Webhook").
pub const TITLE_MAX: usize = 256;
pub const DESCRIPTION_MAX: usize = 4096;
pub const CONTENT_MAX: usize = 2000;
pub const USERNAME_MAX: usize = 80;

#[derive(Debug, Clone)]
pub struct DiscordConfig {
    /// The webhook URL carries its token: a secret.
    pub webhook_url: PasswordSource,
    pub title: Option<TemplatedField>,
    pub message: Option<TemplatedField>,
    pub content: Option<String>,
    pub username: Option<String>,
    pub avatar_url: Option<String>,
    pub send_resolved: bool,
    pub http: http::Endpoint,
}

impl Integration for DiscordConfig {
    fn kind(&self) -> Kind {
        Kind::Discord
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
            let Payload::Discord { body } = payload else {
                return mismatch(Kind::Discord);
            };
            let url = match read_secret(&self.webhook_url, "discord webhook_url") {
                Ok(url) => url.trim().to_owned(),
                Err(outcome) => return outcome,
            };
            http::post(
                client,
                &url,
                body,
                timeout,
                Kind::Discord,
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
) -> Option<DiscordConfig> {
    let mut fields = Fields::of(reader, node, path)?;
    let http = http::Endpoint::new(http_config(reader, &mut fields, global));
    let webhook_url = required_secret(
        reader,
        &mut fields,
        node,
        path,
        "webhook_url",
        "webhook_url_file",
        None,
        "webhook_url or webhook_url_file is required",
    );
    let config = DiscordConfig {
        webhook_url: webhook_url?,
        title: TemplatedField::read(reader, &mut fields, "title", &global.templates),
        message: TemplatedField::read(reader, &mut fields, "message", &global.templates),
        content: plain(reader, &mut fields, "content"),
        username: plain(reader, &mut fields, "username"),
        avatar_url: plain(reader, &mut fields, "avatar_url"),
        send_resolved: fields.boolean(reader, "send_resolved").unwrap_or(true),
        http,
    };
    fields.finish(reader);
    Some(config)
}

pub fn render(config: &DiscordConfig, notice: &Notice<'_>) -> Payload {
    let title = render_or(&config.title, notice, || subject(notice));
    let description = render_or(&config.message, notice, || alert_blocks(notice, verbatim));
    let color = if notice.is_firing() {
        COLOR_FIRING
    } else {
        COLOR_RESOLVED
    };
    let mut body = Map::new();
    if let Some(content) = &config.content {
        body.insert(
            "content".into(),
            Value::String(truncate(content, CONTENT_MAX)),
        );
    }
    body.insert(
        "embeds".into(),
        json!([{
            "title": truncate(&title, TITLE_MAX),
            "description": truncate(&description, DESCRIPTION_MAX),
            "color": color,
        }]),
    );
    if let Some(username) = &config.username {
        body.insert(
            "username".into(),
            Value::String(truncate(username, USERNAME_MAX)),
        );
    }
    if let Some(avatar_url) = &config.avatar_url {
        body.insert("avatar_url".into(), Value::String(avatar_url.clone()));
    }
    Payload::Discord {
        body: Value::Object(body),
    }
}

#[cfg(test)]
mod tests {
    use reqwest::StatusCode;

    use super::*;
    use crate::integrations::http::{any_success, Verdict};
    use crate::integrations::testkit::{body, errors, failed_fields, group, one, one_templated};

    const URL: &str =
        "    discord_configs:\n      - webhook_url: https://discord.com/api/webhooks/1/t\n";

    #[test]
    fn firing_and_resolved_embeds_are_alertmanagers_default() {
        let discord = one(URL, "");
        assert_eq!(discord.kind().as_str(), "discord");
        assert!(discord.send_resolved());
        let firing = group(false);
        let sent = discord.render(&firing.notice());
        let embed = &body(&sent)["embeds"][0];
        assert_eq!(embed["title"], "[FIRING:2] replication_lag (main)");
        assert_eq!(embed["color"], 0x992D22);
        let description = embed["description"].as_str().expect("description");
        assert!(
            description.starts_with("\n\nAlerts Firing:\nLabels:\n - alertname = replication_lag\n - cluster = main\n - replica = r1\nAnnotations:\n - summary = replica lagging\nSource: http://dbwatch.example:9630\nLabels:"),
            "{description:?}"
        );
        assert!(!description.contains("Resolved"));
        assert!(body(&sent).get("content").is_none());
        let resolved = group(true);
        let sent = discord.render(&resolved.notice());
        let embed = &body(&sent)["embeds"][0];
        assert_eq!(embed["title"], "[RESOLVED] replication_lag (main)");
        assert_eq!(embed["color"], 0x2ECC71);
        assert!(embed["description"]
            .as_str()
            .expect("description")
            .contains("Alerts Resolved:\nLabels:"));
    }

    #[test]
    fn configured_texts_are_used_and_cut_to_discords_limits() {
        let title = "t".repeat(300);
        let discord = one(
            &format!("{URL}        title: {title}\n        message: on call, look\n        username: dbwatch\n        send_resolved: false\n"),
            "",
        );
        assert!(!discord.send_resolved());
        let firing = group(false);
        let sent = discord.render(&firing.notice());
        let embed = &body(&sent)["embeds"][0];
        assert_eq!(
            embed["title"].as_str().expect("title").chars().count(),
            TITLE_MAX
        );
        assert_eq!(embed["description"], "on call, look");
        assert_eq!(body(&sent)["username"], "dbwatch");
    }

    #[test]
    fn a_missing_or_doubled_url_and_an_unknown_key_are_refused_by_path() {
        assert_eq!(
            errors("    discord_configs:\n      - title: x\n", ""),
            ["receivers[0].discord_configs[0]: webhook_url or webhook_url_file is required"]
        );
        assert_eq!(
            errors("    discord_configs:\n      - webhook_url: https://d/x\n        webhook_url_file: /f\n", ""),
            ["receivers[0].discord_configs[0].webhook_url: set webhook_url or webhook_url_file, not both"]
        );
        let found = errors(
            &format!("{URL}        message: '{{{{ .Status }}}}'\n        username: '{{{{ .Status }}}}'\n        colour: red\n"),
            "",
        );
        assert_eq!(found.len(), 2, "{found:?}");
        // `message` is a template (no error); `username` is not one in Alertmanager 0.25 either.
        assert!(
            found[0].starts_with(
                "receivers[0].discord_configs[0].username: username is not a templated field"
            ),
            "{found:?}"
        );
        assert!(
            found[1].starts_with("receivers[0].discord_configs[0].colour: unknown key"),
            "{found:?}"
        );
        let unparsable = errors(&format!("{URL}        title: '{{{{ .Status '\n"), "");
        assert_eq!(unparsable.len(), 1, "{unparsable:?}");
        assert!(
            unparsable[0].starts_with("receivers[0].discord_configs[0].title: "),
            "{unparsable:?}"
        );
    }

    #[test]
    fn title_and_message_render_the_routing_files_templates_with_the_limits_after() {
        let discord = one_templated(
            &format!("{URL}        title: '{{{{ template \"team.title\" . }}}}'\n        message: '{{{{ range .Alerts.Firing }}}}{{{{ .Labels.replica }}}} {{{{ end }}}}on {{{{ .CommonLabels.cluster }}}}{{{{ template \"team.pad\" . }}}}'\n"),
            "{{ define \"team.title\" }}{{ .Status | toUpper }} {{ .CommonLabels.alertname }} / {{ template \"discord.default.title\" . }}{{ end }}\n{{ define \"team.pad\" }}{{ range $i := .Alerts }}{{ printf \"%3000s\" \"\" }}{{ end }}{{ end }}\n",
        );
        let firing = group(false);
        let notice = firing.notice();
        let embed = body(&discord.render(&notice))["embeds"][0].clone();
        assert_eq!(
            embed["title"],
            "FIRING replication_lag / [FIRING:2] replication_lag (main)"
        );
        let description = embed["description"].as_str().expect("description");
        assert!(
            description.starts_with("r1 r2 on main   "),
            "{description:?}"
        );
        // Two alerts pad 6000 characters: the embed limit applies to the rendered text.
        assert_eq!(description.chars().count(), DESCRIPTION_MAX);
        assert!(failed_fields(&notice).is_empty());
        let resolved = group(true);
        let notice = resolved.notice();
        let embed = body(&discord.render(&notice))["embeds"][0].clone();
        assert_eq!(
            embed["title"],
            "RESOLVED replication_lag / [RESOLVED] replication_lag (main)"
        );
        assert!(embed["description"]
            .as_str()
            .expect("description")
            .starts_with("on main   "));
    }

    #[test]
    fn a_failing_template_falls_back_to_the_built_in_text_and_is_recorded() {
        let discord = one(
            &format!("{URL}        title: '{{{{ .Alerts.Nope }}}}'\n"),
            "",
        );
        let firing = group(false);
        let notice = firing.notice();
        let embed = body(&discord.render(&notice))["embeds"][0].clone();
        assert_eq!(embed["title"], "[FIRING:2] replication_lag (main)");
        assert_eq!(failed_fields(&notice), ["title"]);
    }

    #[test]
    fn discords_answers_are_classified() {
        assert_eq!(any_success(StatusCode::NO_CONTENT, ""), Verdict::Accepted);
        assert_eq!(
            any_success(StatusCode::TOO_MANY_REQUESTS, "{\"retry_after\": 1.5}"),
            Verdict::Retry
        );
        assert_eq!(any_success(StatusCode::BAD_GATEWAY, ""), Verdict::Retry);
        assert_eq!(
            any_success(StatusCode::NOT_FOUND, "{\"message\": \"Unknown Webhook\"}"),
            Verdict::Refused
        );
    }
}
