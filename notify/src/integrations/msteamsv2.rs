//! Microsoft Teams through a Workflows (Power Automate) webhook (`msteamsv2_configs`, Alertmanager 0.28 on;
//! amtool 0.25 refuses the key): a message with one Adaptive Card (schema 1.2) holding Alertmanager's default
//! title as a heading, coloured Attention while firing and Good once resolved, and its Markdown text, kept under
//! Teams' 28 KB limit. Workflows answers 202; any 2xx is an acceptance, 429 and 5xx are retried.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;

use super::amtext::{markdown_blocks, subject, truncate_bytes};
use super::http;
use super::msteams::{read_common, TEXT_MAX_BYTES, TITLE_MAX};
use super::{mismatch, read_secret, BoxFuture, Integration, Kind, Outcome};
use crate::fields::Global;
use crate::render::{truncate, Notice};
use crate::store::Payload;
use crate::template::{render_or, TemplatedField};
use dbwatch_secret::PasswordSource;
use dbwatch_yaml::node::Node;
use dbwatch_yaml::read::{Fields, Reader};

pub const COLOR_FIRING: &str = "Attention";
pub const COLOR_RESOLVED: &str = "Good";

#[derive(Debug, Clone)]
pub struct MsTeamsV2Config {
    pub webhook_url: PasswordSource,
    pub title: Option<TemplatedField>,
    pub text: Option<TemplatedField>,
    pub send_resolved: bool,
    pub http: http::Endpoint,
}

impl Integration for MsTeamsV2Config {
    fn kind(&self) -> Kind {
        Kind::MsTeamsV2
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
            let Payload::MsTeamsV2 { body } = payload else {
                return mismatch(Kind::MsTeamsV2);
            };
            let url = match read_secret(&self.webhook_url, "msteamsv2 webhook_url") {
                Ok(url) => url.trim().to_owned(),
                Err(outcome) => return outcome,
            };
            http::post(
                client,
                &url,
                body,
                timeout,
                Kind::MsTeamsV2,
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
    let common = read_common(reader, &mut fields, node, path, global);
    fields.finish(reader);
    let common = common?;
    Some(Arc::new(MsTeamsV2Config {
        webhook_url: common.webhook_url,
        title: common.title,
        text: common.text,
        send_resolved: common.send_resolved,
        http: common.http,
    }))
}

pub fn render(config: &MsTeamsV2Config, notice: &Notice<'_>) -> Payload {
    let title = render_or(&config.title, notice, || subject(notice));
    let text = render_or(&config.text, notice, || markdown_blocks(notice));
    Payload::MsTeamsV2 {
        body: json!({
            "type": "message",
            "attachments": [{
                "contentType": "application/vnd.microsoft.card.adaptive",
                "contentUrl": null,
                "content": {
                    "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
                    "type": "AdaptiveCard",
                    "version": "1.2",
                    "body": [
                        {
                            "type": "TextBlock",
                            "text": truncate(&title, TITLE_MAX),
                            "weight": "Bolder",
                            "size": "Medium",
                            "wrap": true,
                            "style": "heading",
                            "color": if notice.is_firing() { COLOR_FIRING } else { COLOR_RESOLVED },
                        },
                        {
                            "type": "TextBlock",
                            "text": truncate_bytes(&text, TEXT_MAX_BYTES),
                            "wrap": true,
                        },
                    ],
                    "msteams": {"width": "full"},
                },
            }],
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::integrations::testkit::{
        body, errors, failed_fields, group, one, one_templated, TEAM,
    };

    const URL: &str = "    msteamsv2_configs:\n      - webhook_url: https://example.logic.azure.com/workflows/x\n";

    fn texts(payload: &Payload) -> (String, String) {
        let blocks = &body(payload)["attachments"][0]["content"]["body"];
        let text = |i: usize| blocks[i]["text"].as_str().expect("text").to_owned();
        (text(0), text(1))
    }

    #[test]
    fn title_and_text_render_the_routing_files_templates() {
        let teams = one_templated(
            &format!("{URL}        title: '{{{{ template \"team.title\" . }}}}'\n        text: '{{{{ template \"team.list\" . }}}}'\n"),
            TEAM,
        );
        let firing = group(false);
        let notice = firing.notice();
        assert_eq!(
            texts(&teams.render(&notice)),
            (
                "FIRING replication_lag (2 firing)".to_owned(),
                "r1:firing r2:firing ".to_owned()
            )
        );
        let resolved = group(true);
        let notice_resolved = resolved.notice();
        assert_eq!(
            texts(&teams.render(&notice_resolved)),
            (
                "RESOLVED replication_lag".to_owned(),
                "r1:resolved r2:resolved ".to_owned()
            )
        );
        assert!(failed_fields(&notice).is_empty());
        assert!(failed_fields(&notice_resolved).is_empty());
    }

    #[test]
    fn a_failing_template_falls_back_to_the_built_in_text_and_is_recorded() {
        let teams = one(
            &format!("{URL}        title: '{{{{ .Alerts.Nope }}}}'\n"),
            "",
        );
        let firing = group(false);
        let notice = firing.notice();
        assert_eq!(
            texts(&teams.render(&notice)).0,
            "[FIRING:2] replication_lag (main)"
        );
        assert_eq!(failed_fields(&notice), ["title"]);
    }

    #[test]
    fn an_adaptive_card_with_a_coloured_heading_and_the_markdown_text() {
        let teams = one(
            "    msteamsv2_configs:\n      - webhook_url: https://prod.westeurope.logic.azure.com/workflows/x\n",
            "",
        );
        assert_eq!(teams.kind().as_str(), "msteamsv2");
        let firing = group(false);
        let sent = teams.render(&firing.notice());
        let message = body(&sent);
        assert_eq!(message["type"], "message");
        let attachment = &message["attachments"][0];
        assert_eq!(
            attachment["contentType"],
            "application/vnd.microsoft.card.adaptive"
        );
        let card = &attachment["content"];
        assert_eq!(card["type"], "AdaptiveCard");
        assert_eq!(card["version"], "1.2");
        assert_eq!(card["body"][0]["text"], "[FIRING:2] replication_lag (main)");
        assert_eq!(card["body"][0]["color"], COLOR_FIRING);
        assert_eq!(card["body"][0]["weight"], "Bolder");
        assert!(card["body"][1]["text"]
            .as_str()
            .expect("text")
            .starts_with("\n\n# Alerts Firing:\n"));
        let resolved = group(true);
        let sent = teams.render(&resolved.notice());
        assert_eq!(
            body(&sent)["attachments"][0]["content"]["body"][0]["color"],
            COLOR_RESOLVED
        );
        assert_eq!(
            errors("    msteamsv2_configs:\n      - summary: s\n", ""),
            [
                "receivers[0].msteamsv2_configs[0].summary: unknown key \"summary\", expected one of: http_config, send_resolved, text, title, webhook_url, webhook_url_file",
                "receivers[0].msteamsv2_configs[0]: webhook_url or webhook_url_file is required",
            ]
        );
    }
}
