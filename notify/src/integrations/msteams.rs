//! Microsoft Teams through an Office 365 connector webhook (`msteams_configs`, Alertmanager 0.26 on; amtool
//! 0.25 refuses the key): a MessageCard with Alertmanager's default title, summary and Markdown text, red while
//! firing and green once resolved, kept under Teams' 28 KB message limit. Teams answers 200 with `1`; it also
//! answers 200 with an error text when the delivery behind it failed, which is read as a refusal (a throttled
//! one, "HTTP error 429", is retried).

use std::sync::Arc;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::json;

use super::amtext::{markdown_blocks, subject, truncate_bytes};
use super::http::{self, Verdict};
use super::{mismatch, read_secret, BoxFuture, Integration, Kind, Outcome};
use crate::fields::{http_config, required_secret, Global};
use crate::render::{truncate, Notice};
use crate::store::Payload;
use crate::template::{render_or, TemplatedField};
use dbwatch_secret::PasswordSource;
use dbwatch_yaml::node::Node;
use dbwatch_yaml::read::{Fields, Reader};

pub const COLOR_FIRING: &str = "8C1A1A";
pub const COLOR_RESOLVED: &str = "2DC72D";
/// Bytes of the card's text: Teams refuses messages over 28 KB, and the rest of the card is small.
pub const TEXT_MAX_BYTES: usize = 24 * 1024;
pub const TITLE_MAX: usize = 1024;

#[derive(Debug, Clone)]
pub struct MsTeamsConfig {
    pub webhook_url: PasswordSource,
    pub title: Option<TemplatedField>,
    pub summary: Option<TemplatedField>,
    pub text: Option<TemplatedField>,
    pub send_resolved: bool,
    pub http: http::Endpoint,
}

impl Integration for MsTeamsConfig {
    fn kind(&self) -> Kind {
        Kind::MsTeams
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
            let Payload::MsTeams { body } = payload else {
                return mismatch(Kind::MsTeams);
            };
            let url = match read_secret(&self.webhook_url, "msteams webhook_url") {
                Ok(url) => url.trim().to_owned(),
                Err(outcome) => return outcome,
            };
            http::post(
                client,
                &url,
                body,
                timeout,
                Kind::MsTeams,
                classify,
                &self.http,
            )
            .await
        })
    }
}

/// 2xx with `1` (or nothing); a 2xx carrying an error text is a refusal, retried when it is a throttle.
pub fn classify(status: StatusCode, body: &str) -> Verdict {
    if status.is_success() {
        let body = body.trim();
        if !body.to_ascii_lowercase().contains("error") {
            return Verdict::Accepted;
        }
        return if body.contains("HTTP error 429") {
            Verdict::Retry
        } else {
            Verdict::Refused
        };
    }
    Verdict::of(status, false)
}

/// The reader both Teams integrations share: the webhook URL and the texts.
pub(crate) struct TeamsFields {
    pub webhook_url: PasswordSource,
    pub title: Option<TemplatedField>,
    pub text: Option<TemplatedField>,
    pub send_resolved: bool,
    pub http: http::Endpoint,
}

pub(crate) fn read_common(
    reader: &mut Reader<'_>,
    fields: &mut Fields<'_>,
    node: &Node,
    path: &str,
    global: &Global,
) -> Option<TeamsFields> {
    let http = http::Endpoint::new(http_config(reader, fields, global));
    let webhook_url = required_secret(
        reader,
        fields,
        node,
        path,
        "webhook_url",
        "webhook_url_file",
        None,
        "webhook_url or webhook_url_file is required",
    );
    Some(TeamsFields {
        title: TemplatedField::read(reader, fields, "title", &global.templates),
        text: TemplatedField::read(reader, fields, "text", &global.templates),
        send_resolved: fields.boolean(reader, "send_resolved").unwrap_or(true),
        webhook_url: webhook_url?,
        http,
    })
}

pub fn read(
    reader: &mut Reader<'_>,
    node: &Node,
    path: &str,
    global: &Global,
) -> Option<Arc<dyn Integration>> {
    let mut fields = Fields::of(reader, node, path)?;
    let common = read_common(reader, &mut fields, node, path, global);
    let summary = TemplatedField::read(reader, &mut fields, "summary", &global.templates);
    fields.finish(reader);
    let common = common?;
    Some(Arc::new(MsTeamsConfig {
        webhook_url: common.webhook_url,
        title: common.title,
        summary,
        text: common.text,
        send_resolved: common.send_resolved,
        http: common.http,
    }))
}

pub fn render(config: &MsTeamsConfig, notice: &Notice<'_>) -> Payload {
    let title = render_or(&config.title, notice, || subject(notice));
    let summary = render_or(&config.summary, notice, || subject(notice));
    let text = render_or(&config.text, notice, || markdown_blocks(notice));
    Payload::MsTeams {
        body: json!({
            "@context": "http://schema.org/extensions",
            "type": "MessageCard",
            "title": truncate(&title, TITLE_MAX),
            "summary": truncate(&summary, TITLE_MAX),
            "text": truncate_bytes(&text, TEXT_MAX_BYTES),
            "themeColor": if notice.is_firing() { COLOR_FIRING } else { COLOR_RESOLVED },
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::integrations::testkit::{
        body, errors, failed_fields, group, one, one_templated, TEAM,
    };

    const URL: &str =
        "    msteams_configs:\n      - webhook_url: https://example.webhook.office.com/webhookb2/x\n";

    #[test]
    fn title_summary_and_text_render_the_routing_files_templates() {
        let teams = one_templated(
            &format!("{URL}        title: '{{{{ template \"team.title\" . }}}}'\n        summary: '{{{{ template \"msteams.default.summary\" . }}}}'\n        text: '{{{{ template \"team.list\" . }}}}{{{{ if .Alerts.Firing }}}}{{{{ printf \"%30000s\" \"\" }}}}{{{{ end }}}}'\n"),
            TEAM,
        );
        let firing = group(false);
        let notice = firing.notice();
        let sent = teams.render(&notice);
        assert_eq!(body(&sent)["title"], "FIRING replication_lag (2 firing)");
        assert_eq!(body(&sent)["summary"], "[FIRING:2] replication_lag (main)");
        let text = body(&sent)["text"].as_str().expect("text");
        assert!(text.starts_with("r1:firing r2:firing   "), "{text:?}");
        assert!(text.len() <= TEXT_MAX_BYTES && text.len() > TEXT_MAX_BYTES - 4);
        let resolved = group(true);
        let notice_resolved = resolved.notice();
        let sent = teams.render(&notice_resolved);
        assert_eq!(body(&sent)["title"], "RESOLVED replication_lag");
        assert_eq!(body(&sent)["summary"], "[RESOLVED] replication_lag (main)");
        assert_eq!(body(&sent)["text"], "r1:resolved r2:resolved ");
        assert!(failed_fields(&notice).is_empty());
        assert!(failed_fields(&notice_resolved).is_empty());
    }

    #[test]
    fn a_failing_template_falls_back_to_the_built_in_text_and_is_recorded() {
        let teams = one(
            &format!("{URL}        summary: '{{{{ .Alerts.Nope }}}}'\n"),
            "",
        );
        let firing = group(false);
        let notice = firing.notice();
        assert_eq!(
            body(&teams.render(&notice))["summary"],
            "[FIRING:2] replication_lag (main)"
        );
        assert_eq!(failed_fields(&notice), ["summary"]);
    }

    #[test]
    fn a_message_card_red_while_firing_green_once_resolved() {
        let teams = one(
            "    msteams_configs:\n      - webhook_url: https://example.webhook.office.com/webhookb2/x\n",
            "",
        );
        assert_eq!(teams.kind().as_str(), "msteams");
        assert!(teams.send_resolved());
        let firing = group(false);
        let sent = teams.render(&firing.notice());
        let card = body(&sent);
        assert_eq!(card["@context"], "http://schema.org/extensions");
        assert_eq!(card["type"], "MessageCard");
        assert_eq!(card["title"], "[FIRING:2] replication_lag (main)");
        assert_eq!(card["summary"], "[FIRING:2] replication_lag (main)");
        assert_eq!(card["themeColor"], COLOR_FIRING);
        assert!(card["text"]
            .as_str()
            .expect("text")
            .starts_with("\n\n# Alerts Firing:\n\nLabels:\n  - alertname = replication_lag\n"));
        let resolved = group(true);
        let sent = teams.render(&resolved.notice());
        assert_eq!(body(&sent)["themeColor"], COLOR_RESOLVED);
        assert!(body(&sent)["text"]
            .as_str()
            .expect("text")
            .contains("# Alerts Resolved:"));
    }

    #[test]
    fn the_url_is_required_and_texts_are_plain() {
        assert_eq!(
            errors("    msteams_configs:\n      - title: t\n", ""),
            ["receivers[0].msteams_configs[0]: webhook_url or webhook_url_file is required"]
        );
        let teams = one(
            "    msteams_configs:\n      - webhook_url_file: /run/teams\n        title: DB\n        summary: db alert\n        text: look\n",
            "",
        );
        let firing = group(false);
        let sent = teams.render(&firing.notice());
        assert_eq!(body(&sent)["title"], "DB");
        assert_eq!(body(&sent)["summary"], "db alert");
        assert_eq!(body(&sent)["text"], "look");
    }

    #[test]
    fn teams_answers_are_classified_including_its_200_errors() {
        assert_eq!(classify(StatusCode::OK, "1"), Verdict::Accepted);
        assert_eq!(
            classify(
                StatusCode::OK,
                "Webhook message delivery failed with error: Microsoft Teams endpoint returned HTTP error 429 with ContextId x"
            ),
            Verdict::Retry
        );
        assert_eq!(
            classify(
                StatusCode::OK,
                "Webhook message delivery failed with error: Bad payload"
            ),
            Verdict::Refused
        );
        assert_eq!(
            classify(StatusCode::BAD_REQUEST, "Summary or Text is required."),
            Verdict::Refused
        );
        assert_eq!(classify(StatusCode::TOO_MANY_REQUESTS, ""), Verdict::Retry);
    }
}
