//! VictorOps (Splunk On-Call) through its REST endpoint (`victorops_configs`): one incident per group, its
//! `entity_id` the group key's hash as in Alertmanager, `message_type` the configured one (CRITICAL, WARNING or
//! INFO) while firing and RECOVERY once resolved, Alertmanager's default texts. The API and routing keys are
//! path segments of the URL, added at send time. The answer is 200 with `"result":"success"`; 429 and 5xx are
//! retried, other refusals are permanent.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Map, Value};

use super::amtext::{description, subject};
use super::http::{self, Verdict};
use super::{mismatch, read_secret, BoxFuture, Integration, Kind, Outcome};
use crate::fields::{http_config, plain, required_secret, Global};
use crate::render::{group_hash, truncate, Notice};
use crate::store::Payload;
use crate::template::{render_or, untemplated, TemplatedField};
use dbwatch_secret::PasswordSource;
use dbwatch_yaml::node::Node;
use dbwatch_yaml::read::{Fields, Reader};

pub const DEFAULT_API_URL: &str =
    "https://alert.victorops.com/integrations/generic/20131114/alert/";
/// Alertmanager's cut of `state_message`.
pub const STATE_MESSAGE_MAX: usize = 20_480;
const MESSAGE_TYPES: [&str; 3] = ["CRITICAL", "WARNING", "INFO"];
/// Fields dbwatch sets itself; `custom_fields` may not name them (Alertmanager's check).
const RESERVED: [&str; 7] = [
    "routing_key",
    "message_type",
    "state_message",
    "entity_display_name",
    "monitoring_tool",
    "entity_id",
    "entity_state",
];

#[derive(Debug, Clone)]
pub struct VictorOpsConfig {
    pub api_key: PasswordSource,
    /// Ends with `/`, as Alertmanager makes it.
    pub api_url: String,
    pub routing_key: String,
    /// Unset: CRITICAL.
    pub message_type: Option<TemplatedField>,
    pub state_message: Option<TemplatedField>,
    pub entity_display_name: Option<TemplatedField>,
    pub monitoring_tool: Option<TemplatedField>,
    /// Each value a template, as in Alertmanager.
    pub custom_fields: BTreeMap<String, TemplatedField>,
    pub send_resolved: bool,
    pub http: http::Endpoint,
}

impl Integration for VictorOpsConfig {
    fn kind(&self) -> Kind {
        Kind::VictorOps
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
            let Payload::VictorOps { body } = payload else {
                return mismatch(Kind::VictorOps);
            };
            let key = match read_secret(&self.api_key, "victorops api_key") {
                Ok(key) => key.trim().to_owned(),
                Err(outcome) => return outcome,
            };
            let url = format!("{}{key}/{}", self.api_url, self.routing_key);
            http::post(
                client,
                &url,
                body,
                timeout,
                Kind::VictorOps,
                classify,
                &self.http,
            )
            .await
        })
    }
}

/// 2xx without `"result":"failure"`; 429 and 5xx retried.
pub fn classify(status: StatusCode, body: &str) -> Verdict {
    let failure = serde_json::from_str::<Value>(body)
        .ok()
        .and_then(|answer| {
            answer
                .get("result")
                .and_then(Value::as_str)
                .map(|r| r == "failure")
        })
        .unwrap_or(false);
    Verdict::of(status, status.is_success() && !failure)
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
) -> Option<VictorOpsConfig> {
    let mut fields = Fields::of(reader, node, path)?;
    let http = http::Endpoint::new(http_config(reader, &mut fields, global));
    let api_key = required_secret(
        reader,
        &mut fields,
        node,
        path,
        "api_key",
        "api_key_file",
        global.victorops_api_key.as_ref(),
        "no api_key, api_key_file or global victorops_api_key",
    );
    let mut api_url = plain(reader, &mut fields, "api_url")
        .or_else(|| global.victorops_api_url.clone())
        .unwrap_or_else(|| DEFAULT_API_URL.to_owned());
    if !api_url.ends_with('/') {
        api_url.push('/');
    }
    let problems = reader.errors.len();
    let routing_key = untemplated(
        reader,
        &mut fields,
        "routing_key",
        "it is the path notifications are posted to",
    );
    // Missing, not refused: the refusal already names the key.
    if routing_key.is_none() && reader.errors.len() == problems {
        reader.error(node.mark, path, "routing_key is required");
    }
    let custom_fields = match fields.take("custom_fields") {
        Some((custom, custom_path)) => {
            let custom_fields = reader.labels(custom, &custom_path).unwrap_or_default();
            for name in custom_fields.keys() {
                if RESERVED.contains(&name.as_str()) {
                    reader.error(
                        custom.mark,
                        &format!("{custom_path}.{name}"),
                        format!(
                            "{name} is set by the integration itself and cannot be a custom field"
                        ),
                    );
                }
            }
            let mut templated = BTreeMap::new();
            for (name, value) in custom_fields {
                let field = format!("custom_fields.{name}");
                match TemplatedField::parse(&field, &value, &global.templates) {
                    Ok(parsed) => {
                        templated.insert(name, parsed);
                    }
                    Err(error) => reader.error(
                        custom.mark,
                        &format!("{custom_path}.{name}"),
                        error.to_string(),
                    ),
                }
            }
            templated
        }
        None => BTreeMap::new(),
    };
    let config = VictorOpsConfig {
        api_key: api_key?,
        api_url,
        routing_key: routing_key?,
        message_type: TemplatedField::read(reader, &mut fields, "message_type", &global.templates),
        state_message: TemplatedField::read(
            reader,
            &mut fields,
            "state_message",
            &global.templates,
        ),
        entity_display_name: TemplatedField::read(
            reader,
            &mut fields,
            "entity_display_name",
            &global.templates,
        ),
        monitoring_tool: TemplatedField::read(
            reader,
            &mut fields,
            "monitoring_tool",
            &global.templates,
        ),
        custom_fields,
        send_resolved: fields.boolean(reader, "send_resolved").unwrap_or(true),
        http,
    };
    fields.finish(reader);
    Some(config)
}

pub fn render(config: &VictorOpsConfig, notice: &Notice<'_>) -> Payload {
    // An unknown type while firing becomes CRITICAL, as in Alertmanager; a resolve is always RECOVERY (the
    // template is not rendered for it, so its failure cannot be counted twice).
    let message_type = if notice.is_firing() {
        let rendered = render_or(&config.message_type, notice, || "CRITICAL".to_owned());
        if MESSAGE_TYPES.contains(&rendered.as_str()) {
            rendered
        } else {
            "CRITICAL".to_owned()
        }
    } else {
        "RECOVERY".to_owned()
    };
    let state_message = render_or(&config.state_message, notice, || description(notice));
    let mut body = Map::new();
    for (key, value) in &config.custom_fields {
        body.insert(
            key.clone(),
            Value::String(value.render(notice, String::new)),
        );
    }
    body.insert("message_type".into(), Value::String(message_type));
    body.insert(
        "entity_id".into(),
        Value::String(group_hash(notice.group_key)),
    );
    body.insert(
        "entity_display_name".into(),
        Value::String(render_or(&config.entity_display_name, notice, || {
            subject(notice)
        })),
    );
    body.insert(
        "state_message".into(),
        Value::String(truncate(&state_message, STATE_MESSAGE_MAX)),
    );
    body.insert(
        "monitoring_tool".into(),
        Value::String(render_or(&config.monitoring_tool, notice, || {
            "dbwatch".to_owned()
        })),
    );
    Payload::VictorOps {
        body: Value::Object(body),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::integrations::testkit::{
        body, errors, failed_fields, group, one, one_templated, read_with, TEAM,
    };

    const ENTRY: &str = "    victorops_configs:\n      - api_key: k\n        routing_key: db\n";

    #[test]
    fn every_templated_field_renders_the_routing_files_templates_cut_after() {
        let victorops = one_templated(
            &format!(concat!(
                "{}",
                "        message_type: '{{{{ if gt (len .Alerts.Firing) 1 }}}}CRITICAL{{{{ else }}}}WARNING{{{{ end }}}}'\n",
                "        entity_display_name: '{{{{ template \"team.title\" . }}}}'\n",
                "        state_message: '{{{{ template \"team.list\" . }}}}{{{{ if .Alerts.Firing }}}}{{{{ printf \"%30000s\" \"\" }}}}{{{{ end }}}}'\n",
                "        monitoring_tool: '{{{{ template \"victorops.default.monitoring_tool\" . }}}}'\n",
                "        custom_fields: {{cluster: '{{{{ .CommonLabels.cluster }}}}', count: '{{{{ len .Alerts }}}}'}}\n",
            ), ENTRY),
            TEAM,
        );
        let firing = group(false);
        let notice = firing.notice();
        let sent = victorops.render(&notice);
        let body = body(&sent);
        assert_eq!(body["message_type"], "CRITICAL");
        assert_eq!(
            body["entity_display_name"],
            "FIRING replication_lag (2 firing)"
        );
        let state = body["state_message"].as_str().expect("state_message");
        assert!(state.starts_with("r1:firing r2:firing   "), "{state:?}");
        assert_eq!(state.chars().count(), STATE_MESSAGE_MAX);
        assert_eq!(body["monitoring_tool"], "Alertmanager");
        assert_eq!(body["cluster"], "main");
        assert_eq!(body["count"], "2");
        assert!(failed_fields(&notice).is_empty());
        let resolved = group(true);
        let notice = resolved.notice();
        let sent = victorops.render(&notice);
        let body = super::super::testkit::body(&sent);
        assert_eq!(body["message_type"], "RECOVERY");
        assert_eq!(body["entity_display_name"], "RESOLVED replication_lag");
        assert_eq!(body["state_message"], "r1:resolved r2:resolved ");
        assert!(failed_fields(&notice).is_empty());
    }

    #[test]
    fn a_templated_routing_key_is_refused_by_name() {
        assert_eq!(
            errors("    victorops_configs:\n      - api_key: k\n        routing_key: '{{ .Status }}'\n", ""),
            ["receivers[0].victorops_configs[0].routing_key: a templated routing_key is not supported by dbwatch (it is the path notifications are posted to)"]
        );
    }

    #[test]
    fn a_failing_template_falls_back_to_the_built_in_text_and_is_recorded() {
        let victorops = one(
            &format!("{ENTRY}        entity_display_name: '{{{{ .Alerts.Nope }}}}'\n        custom_fields: {{team: '{{{{ .Alerts.Nope }}}}'}}\n"),
            "",
        );
        let firing = group(false);
        let notice = firing.notice();
        let sent = victorops.render(&notice);
        assert_eq!(
            body(&sent)["entity_display_name"],
            "[FIRING:2] replication_lag (main)"
        );
        assert_eq!(body(&sent)["team"], "");
        assert_eq!(
            failed_fields(&notice),
            ["custom_fields.team", "entity_display_name"]
        );
    }

    #[test]
    fn keys_and_urls_fall_back_to_the_globals_then_the_default() {
        let config = read_with("  api_key: k\n  routing_key: db\n", "", read_config);
        assert_eq!(config.api_url, DEFAULT_API_URL);
        assert!(config.message_type.is_none());
        assert!(config.send_resolved);
        let config = read_with(
            "  routing_key: db\n",
            "  victorops_api_url: http://vo.local/alert\n  victorops_api_key: gk\n",
            read_config,
        );
        assert_eq!(config.api_url, "http://vo.local/alert/");
        assert!(matches!(config.api_key, PasswordSource::Inline(_)));
    }

    #[test]
    fn firing_is_the_configured_type_resolved_is_recovery_on_one_entity() {
        let victorops = one(
            "    victorops_configs:\n      - api_key: k\n        routing_key: db\n        message_type: WARNING\n        custom_fields: {team: dba}\n",
            "",
        );
        assert_eq!(victorops.kind().as_str(), "victorops");
        let firing = group(false);
        let sent = victorops.render(&firing.notice());
        let body = body(&sent);
        assert_eq!(body["message_type"], "WARNING");
        assert_eq!(
            body["entity_id"],
            group_hash("{}:{alertname=\"replication_lag\"}").as_str()
        );
        assert_eq!(
            body["entity_display_name"],
            "[FIRING:2] replication_lag (main)"
        );
        assert_eq!(body["monitoring_tool"], "dbwatch");
        assert_eq!(body["team"], "dba");
        assert!(body["state_message"]
            .as_str()
            .expect("state_message")
            .starts_with("replica lagging\nAlerts Firing:\nLabels:\n"));
        let resolved = group(true);
        let sent = victorops.render(&resolved.notice());
        let resolved_body = crate::integrations::testkit::body(&sent);
        assert_eq!(resolved_body["message_type"], "RECOVERY");
        assert_eq!(resolved_body["entity_id"], body["entity_id"]);
        // An unknown type while firing becomes CRITICAL, as in Alertmanager.
        let odd = one(
            "    victorops_configs:\n      - api_key: k\n        routing_key: db\n        message_type: ACK\n",
            "",
        );
        assert_eq!(
            crate::integrations::testkit::body(&odd.render(&firing.notice()))["message_type"],
            "CRITICAL"
        );
    }

    #[test]
    fn missing_keys_and_reserved_custom_fields_are_refused_by_path() {
        assert_eq!(
            errors(
                "    victorops_configs:\n      - custom_fields: {entity_id: x}\n",
                ""
            ),
            [
                "receivers[0].victorops_configs[0]: no api_key, api_key_file or global victorops_api_key",
                "receivers[0].victorops_configs[0]: routing_key is required",
                "receivers[0].victorops_configs[0].custom_fields.entity_id: entity_id is set by the integration itself and cannot be a custom field",
            ]
        );
    }

    #[test]
    fn victorops_answers_are_classified() {
        assert_eq!(
            classify(
                StatusCode::OK,
                "{\"result\":\"success\",\"entity_id\":\"e\"}"
            ),
            Verdict::Accepted
        );
        assert_eq!(
            classify(
                StatusCode::OK,
                "{\"result\":\"failure\",\"message\":\"Missing fields\"}"
            ),
            Verdict::Refused
        );
        assert_eq!(classify(StatusCode::BAD_REQUEST, ""), Verdict::Refused);
        assert_eq!(classify(StatusCode::TOO_MANY_REQUESTS, ""), Verdict::Retry);
        assert_eq!(classify(StatusCode::BAD_GATEWAY, ""), Verdict::Retry);
    }
}
