//! Opsgenie through the Alert API v2 (`opsgenie_configs`): one alert per group, its alias the group key's hash as
//! in Alertmanager, created while firing (and, with `update_alerts`, its message and description updated) and
//! closed by alias once resolved. Texts are Alertmanager's defaults, every field kept within Opsgenie's limits;
//! the API key goes in `Authorization: GenieKey`, at send time only. 202 is the acceptance; 429 and 5xx are
//! retried, other refusals (422 invalid, 401/403 key) are permanent.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Map, Value};

use super::amtext::{description, subject};
use super::http::{self, Exchange};
use super::{mismatch, read_secret, BoxFuture, Integration, Kind, Outcome};
use crate::fields::{http_config, plain, required_secret, Global};
use crate::render::{group_hash, truncate, Notice};
use crate::store::Payload;
use crate::template::{render_or, TemplateInput, TemplatedField, Templates};
use dbwatch_secret::PasswordSource;
use dbwatch_yaml::node::Node;
use dbwatch_yaml::read::{Fields, Reader};

pub const DEFAULT_API_URL: &str = "https://api.opsgenie.com/";
/// Opsgenie's limits ("Create Alert", Alert API): Alertmanager cuts the message at 130 characters too.
pub const MESSAGE_MAX: usize = 130;
pub const DESCRIPTION_MAX: usize = 15_000;
pub const SOURCE_MAX: usize = 100;
pub const ENTITY_MAX: usize = 512;
pub const NOTE_MAX: usize = 25_000;
pub const TAGS_MAX: usize = 20;
pub const ACTIONS_MAX: usize = 10;
pub const TAG_MAX: usize = 50;
pub const RESPONDERS_MAX: usize = 50;
/// Characters of all `details` keys and values together.
pub const DETAILS_MAX: usize = 8000;

const RESPONDER_TYPES: [&str; 5] = ["team", "teams", "user", "escalation", "schedule"];
const PRIORITIES: [&str; 5] = ["P1", "P2", "P3", "P4", "P5"];

/// `id`, `name` and `username` are templates, as in Alertmanager.
#[derive(Debug, Clone)]
pub struct Responder {
    pub id: Option<TemplatedField>,
    pub name: Option<TemplatedField>,
    pub username: Option<TemplatedField>,
    /// Lower-cased, one of team, teams, user, escalation, schedule.
    pub kind: String,
}

#[derive(Debug, Clone)]
pub struct OpsGenieConfig {
    pub api_key: PasswordSource,
    /// Ends with `/`, as Alertmanager makes it.
    pub api_url: String,
    pub message: Option<TemplatedField>,
    pub description: Option<TemplatedField>,
    pub source: Option<TemplatedField>,
    /// Each value a template.
    pub details: BTreeMap<String, TemplatedField>,
    pub entity: Option<TemplatedField>,
    pub responders: Vec<Responder>,
    pub actions: Option<TemplatedField>,
    pub tags: Option<TemplatedField>,
    pub note: Option<TemplatedField>,
    /// P1 to P5, checked at load when written as text, when rendered when a template.
    pub priority: Option<TemplatedField>,
    pub update_alerts: bool,
    pub send_resolved: bool,
    pub http: http::Endpoint,
}

impl Integration for OpsGenieConfig {
    fn kind(&self) -> Kind {
        Kind::OpsGenie
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
            let Payload::OpsGenie { alias, close, body } = payload else {
                return mismatch(Kind::OpsGenie);
            };
            let key = match read_secret(&self.api_key, "opsgenie api_key") {
                Ok(key) => key.trim().to_owned(),
                Err(outcome) => return outcome,
            };
            let mut requests: Vec<(reqwest::Method, String, Value)> = Vec::new();
            if *close {
                requests.push((
                    reqwest::Method::POST,
                    format!(
                        "{}v2/alerts/{alias}/close?identifierType=alias",
                        self.api_url
                    ),
                    body.clone(),
                ));
            } else {
                requests.push((
                    reqwest::Method::POST,
                    format!("{}v2/alerts", self.api_url),
                    body.clone(),
                ));
                // Creating an open alias again only counts it; the update calls change what it says.
                if self.update_alerts {
                    for field in ["message", "description"] {
                        requests.push((
                            reqwest::Method::PUT,
                            format!(
                                "{}v2/alerts/{alias}/{field}?identifierType=alias",
                                self.api_url
                            ),
                            json!({ field: body.get(field).cloned().unwrap_or(Value::Null) }),
                        ));
                    }
                }
            }
            for (method, url, body) in requests {
                let mut exchange =
                    match Exchange::json(method, &url, &body, Kind::OpsGenie, http::any_success) {
                        Ok(exchange) => exchange,
                        Err(outcome) => return outcome,
                    };
                exchange
                    .headers
                    .push((reqwest::header::AUTHORIZATION, format!("GenieKey {key}")));
                let outcome = http::send(client, exchange, timeout, &self.http).await;
                if outcome != Outcome::Delivered {
                    return outcome;
                }
            }
            Outcome::Delivered
        })
    }
}

fn read_responders(
    reader: &mut Reader<'_>,
    fields: &mut Fields<'_>,
    templates: &Templates,
) -> Vec<Responder> {
    let Some((list, list_path)) = fields.take("responders") else {
        return Vec::new();
    };
    let mut responders = Vec::new();
    for (index, item) in reader
        .sequence(list, &list_path)
        .unwrap_or(&[])
        .iter()
        .enumerate()
    {
        let item_path = format!("{list_path}[{index}]");
        let Some(mut entry) = Fields::of(reader, item, &item_path) else {
            continue;
        };
        let id = TemplatedField::read(reader, &mut entry, "id", templates);
        let name = TemplatedField::read(reader, &mut entry, "name", templates);
        let username = TemplatedField::read(reader, &mut entry, "username", templates);
        // Alertmanager templates the type too; dbwatch checks it at load, so takes it as written.
        let kind = entry.scalar(reader, "type").map(|kind| kind.to_lowercase());
        entry.finish(reader);
        if id.is_none() && name.is_none() && username.is_none() {
            reader.error(
                item.mark,
                &item_path,
                "a responder needs at least one of id, username or name",
            );
            continue;
        }
        match kind {
            Some(kind) if RESPONDER_TYPES.contains(&kind.as_str()) => responders.push(Responder {
                id,
                name,
                username,
                kind,
            }),
            other => reader.error(
                item.mark,
                &format!("{item_path}.type"),
                format!(
                    "{:?} is not a responder type: one of team, teams, user, escalation, schedule",
                    other.unwrap_or_default()
                ),
            ),
        }
    }
    responders
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
) -> Option<OpsGenieConfig> {
    let mut fields = Fields::of(reader, node, path)?;
    let http = http::Endpoint::new(http_config(reader, &mut fields, global));
    let api_key = required_secret(
        reader,
        &mut fields,
        node,
        path,
        "api_key",
        "api_key_file",
        global.opsgenie_api_key.as_ref(),
        "no api_key, api_key_file or global opsgenie_api_key",
    );
    let mut api_url = plain(reader, &mut fields, "api_url")
        .or_else(|| global.opsgenie_api_url.clone())
        .unwrap_or_else(|| DEFAULT_API_URL.to_owned());
    if !api_url.ends_with('/') {
        api_url.push('/');
    }
    let details = match fields.take("details") {
        Some((details_node, details_path)) => {
            let details = reader
                .labels(details_node, &details_path)
                .unwrap_or_default();
            let mut templated = BTreeMap::new();
            for (key, value) in details {
                match TemplatedField::parse(&format!("details.{key}"), &value, &global.templates) {
                    Ok(field) => {
                        templated.insert(key, field);
                    }
                    Err(error) => reader.error(
                        details_node.mark,
                        &format!("{details_path}.{key}"),
                        error.to_string(),
                    ),
                }
            }
            templated
        }
        None => BTreeMap::new(),
    };
    let responders = read_responders(reader, &mut fields, &global.templates);
    let priority = match fields.take("priority") {
        Some((priority_node, priority_path)) => {
            match reader.scalar(priority_node, &priority_path) {
                Some(value) if value.is_empty() => None,
                Some(value) if PRIORITIES.contains(&value.as_str()) || value.contains("{{") => {
                    match TemplatedField::parse("priority", &value, &global.templates) {
                        Ok(field) => Some(field),
                        Err(error) => {
                            reader.error(priority_node.mark, &priority_path, error.to_string());
                            None
                        }
                    }
                }
                Some(value) => {
                    reader.error(
                        priority_node.mark,
                        &priority_path,
                        format!("{value:?} is not an Opsgenie priority: P1 to P5"),
                    );
                    None
                }
                None => None,
            }
        }
        None => None,
    };
    let config = OpsGenieConfig {
        api_key: api_key?,
        api_url,
        message: TemplatedField::read(reader, &mut fields, "message", &global.templates),
        description: TemplatedField::read(reader, &mut fields, "description", &global.templates),
        source: TemplatedField::read(reader, &mut fields, "source", &global.templates),
        details,
        entity: TemplatedField::read(reader, &mut fields, "entity", &global.templates),
        responders,
        actions: TemplatedField::read(reader, &mut fields, "actions", &global.templates),
        tags: TemplatedField::read(reader, &mut fields, "tags", &global.templates),
        note: TemplatedField::read(reader, &mut fields, "note", &global.templates),
        priority,
        update_alerts: fields.boolean(reader, "update_alerts").unwrap_or(false),
        send_resolved: fields.boolean(reader, "send_resolved").unwrap_or(true),
        http,
    };
    fields.finish(reader);
    Some(config)
}

/// A comma-separated list without its empty items (Alertmanager's `safeSplit`), each cut at `each`, at most
/// `count` of them.
fn split(text: &str, count: usize, each: usize) -> Vec<String> {
    text.split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
        .take(count)
        .map(|item| truncate(item, each))
        .collect()
}

fn responders(config: &OpsGenieConfig, notice: &Notice<'_>) -> Vec<Value> {
    let mut out = Vec::new();
    for responder in &config.responders {
        // `teams` is a comma-separated list of team names, one responder each.
        if responder.kind == "teams" {
            let names = render_or(&responder.name, notice, String::new);
            for team in split(&names, RESPONDERS_MAX, 512) {
                out.push(json!({"name": team, "type": "team"}));
            }
            continue;
        }
        let mut entry = Map::new();
        for (key, value) in [
            ("id", &responder.id),
            ("name", &responder.name),
            ("username", &responder.username),
        ] {
            let value = render_or(value, notice, String::new);
            if !value.is_empty() {
                entry.insert(key.into(), Value::String(value));
            }
        }
        entry.insert("type".into(), Value::String(responder.kind.clone()));
        out.push(Value::Object(entry));
    }
    out.truncate(RESPONDERS_MAX);
    out
}

pub fn render(config: &OpsGenieConfig, notice: &Notice<'_>) -> Payload {
    let alias = group_hash(notice.group_key);
    let source = render_or(&config.source, notice, || {
        if notice.external_url.is_empty() {
            "dbwatch".to_owned()
        } else {
            notice.external_url.to_owned()
        }
    });
    let source = truncate(&source, SOURCE_MAX);
    if !notice.is_firing() {
        return Payload::OpsGenie {
            alias,
            close: true,
            body: json!({ "source": source }),
        };
    }
    // The common labels, then the configured details over them, as long as they fit.
    let mut merged = notice.common_labels();
    for (key, value) in &config.details {
        merged.insert(key.clone(), value.render(notice, String::new));
    }
    let mut details = Map::new();
    let mut used = 0;
    for (key, value) in merged {
        let size = key.chars().count() + value.chars().count();
        if used + size > DETAILS_MAX {
            continue;
        }
        used += size;
        details.insert(key, Value::String(value));
    }
    let message = render_or(&config.message, notice, || subject(notice));
    let text = render_or(&config.description, notice, || description(notice));
    let mut body = Map::new();
    body.insert("alias".into(), Value::String(alias.clone()));
    body.insert(
        "message".into(),
        Value::String(truncate(&message, MESSAGE_MAX)),
    );
    body.insert(
        "description".into(),
        Value::String(truncate(&text, DESCRIPTION_MAX)),
    );
    body.insert("details".into(), Value::Object(details));
    body.insert("source".into(), Value::String(source));
    let responders = responders(config, notice);
    if !responders.is_empty() {
        body.insert("responders".into(), Value::Array(responders));
    }
    let tags = split(
        &render_or(&config.tags, notice, String::new),
        TAGS_MAX,
        TAG_MAX,
    );
    if !tags.is_empty() {
        body.insert("tags".into(), json!(tags));
    }
    let actions = split(
        &render_or(&config.actions, notice, String::new),
        ACTIONS_MAX,
        TAG_MAX,
    );
    if !actions.is_empty() {
        body.insert("actions".into(), json!(actions));
    }
    // No built-in values: a failed or empty template leaves the field out (Opsgenie's own default).
    let note = render_or(&config.note, notice, String::new);
    if !note.is_empty() {
        body.insert("note".into(), Value::String(truncate(&note, NOTE_MAX)));
    }
    if let Some(priority) = config
        .priority
        .as_ref()
        .and_then(|field| priority(field, notice))
    {
        body.insert("priority".into(), Value::String(priority));
    }
    let entity = render_or(&config.entity, notice, String::new);
    if !entity.is_empty() {
        body.insert(
            "entity".into(),
            Value::String(truncate(&entity, ENTITY_MAX)),
        );
    }
    Payload::OpsGenie {
        alias,
        close: false,
        body: Value::Object(body),
    }
}

/// A priority as rendered; other than P1 to P5 (or empty) it is recorded as the field's failure and left out.
fn priority(field: &TemplatedField, notice: &Notice<'_>) -> Option<String> {
    let text = field.render(notice, String::new);
    let text = text.trim();
    if PRIORITIES.contains(&text) {
        return Some(text.to_owned());
    }
    if !text.is_empty() {
        notice.templating().record(
            field.field(),
            format!("{text:?} is not an Opsgenie priority: P1 to P5"),
        );
    }
    None
}

#[cfg(test)]
mod tests {
    use reqwest::StatusCode;

    use super::*;
    use crate::integrations::http::{any_success, Verdict};
    use crate::integrations::testkit::{
        body, errors, failed_fields, group, one, one_templated, read_with, TEAM,
    };

    const ENTRY: &str = "    opsgenie_configs:\n      - api_key: k\n";

    #[test]
    fn every_templated_field_renders_the_routing_files_templates_cut_after() {
        let opsgenie = one_templated(
            &format!(concat!(
                "{}",
                "        message: '{{{{ template \"team.title\" . }}}}{{{{ printf \"%200s\" \"x\" }}}}'\n",
                "        description: '{{{{ template \"team.list\" . }}}}'\n",
                "        source: '{{{{ template \"opsgenie.default.source\" . }}}}'\n",
                "        details: {{cluster: '{{{{ .CommonLabels.cluster }}}}', firing: '{{{{ len .Alerts.Firing }}}}'}}\n",
                "        entity: '{{{{ .CommonLabels.alertname }}}}'\n",
                "        actions: '{{{{ range .Alerts }}}}restart-{{{{ .Labels.replica }}}},{{{{ end }}}}'\n",
                "        tags: 'db,{{{{ .CommonLabels.cluster }}}}'\n",
                "        note: '{{{{ len .Alerts }}}} replicas'\n",
                "        priority: '{{{{ if gt (len .Alerts.Firing) 1 }}}}P1{{{{ else }}}}P3{{{{ end }}}}'\n",
                "        responders: [{{name: 'dba-{{{{ .CommonLabels.cluster }}}}', type: team}}]\n",
            ), ENTRY),
            TEAM,
        );
        let firing = group(false);
        let notice = firing.notice();
        let sent = opsgenie.render(&notice);
        let body = body(&sent);
        let message = body["message"].as_str().expect("message");
        assert!(
            message.starts_with("FIRING replication_lag (2 firing)  "),
            "{message:?}"
        );
        assert_eq!(message.chars().count(), MESSAGE_MAX);
        assert_eq!(body["description"], "r1:firing r2:firing ");
        assert_eq!(
            body["source"],
            "http://dbwatch.example:9630/#/alerts?receiver=r"
        );
        assert_eq!(body["details"]["cluster"], "main");
        assert_eq!(body["details"]["firing"], "2");
        assert_eq!(body["details"]["alertname"], "replication_lag");
        assert_eq!(body["entity"], "replication_lag");
        assert_eq!(
            body["actions"],
            serde_json::json!(["restart-r1", "restart-r2"])
        );
        assert_eq!(body["tags"], serde_json::json!(["db", "main"]));
        assert_eq!(body["note"], "2 replicas");
        assert_eq!(body["priority"], "P1");
        assert_eq!(
            body["responders"],
            serde_json::json!([{"name": "dba-main", "type": "team"}])
        );
        assert!(failed_fields(&notice).is_empty());
        // A resolve closes the alert, its source rendered as well.
        let resolved = group(true);
        let notice = resolved.notice();
        let Payload::OpsGenie { close, body, .. } = opsgenie.render(&notice) else {
            panic!("not an Opsgenie payload");
        };
        assert!(close);
        assert_eq!(
            body["source"],
            "http://dbwatch.example:9630/#/alerts?receiver=r"
        );
        assert!(failed_fields(&notice).is_empty());
    }

    #[test]
    fn failing_templates_and_a_rendered_non_priority_fall_back_and_are_recorded() {
        let opsgenie = one(
            &format!("{ENTRY}        message: '{{{{ .Alerts.Nope }}}}'\n        priority: '{{{{ .Status }}}}'\n        details: {{team: '{{{{ .Alerts.Nope }}}}'}}\n"),
            "",
        );
        let firing = group(false);
        let notice = firing.notice();
        let sent = opsgenie.render(&notice);
        assert_eq!(body(&sent)["message"], "[FIRING:2] replication_lag (main)");
        assert_eq!(body(&sent)["details"]["team"], "");
        assert!(body(&sent).get("priority").is_none());
        assert_eq!(
            failed_fields(&notice),
            ["details.team", "message", "priority"]
        );
    }

    #[test]
    fn keys_and_urls_fall_back_to_the_globals_then_opsgenies_default() {
        let config = read_with("  api_key: k\n", "", read_config);
        assert_eq!(config.api_url, DEFAULT_API_URL);
        assert!(config.send_resolved);
        assert!(!config.update_alerts);
        let config = read_with(
            "  responders: [{name: db, type: Team}]\n",
            "  opsgenie_api_url: http://og.local/base\n  opsgenie_api_key_file: /run/og\n",
            read_config,
        );
        assert_eq!(config.api_url, "http://og.local/base/");
        assert!(matches!(config.api_key, PasswordSource::File(_)));
        assert_eq!(config.responders[0].kind, "team");
        let config = read_with(
            "  api_key: own\n  api_url: http://own/\n",
            "  opsgenie_api_url: http://global/\n  opsgenie_api_key: global\n",
            read_config,
        );
        assert_eq!(config.api_url, "http://own/");
        assert!(matches!(config.api_key, PasswordSource::Inline(_)));
    }

    #[test]
    fn a_firing_group_creates_one_alias_and_its_resolve_closes_it() {
        let opsgenie = one(
            "    opsgenie_configs:\n      - api_key: k\n        details: {team: db}\n        tags: 'db, ,paging'\n        actions: restart\n        priority: P2\n        note: see runbook\n        entity: cluster main\n        responders:\n          - {name: 'dba, sre', type: teams}\n          - {username: 'ann@example.com', type: user}\n",
            "",
        );
        assert_eq!(opsgenie.kind().as_str(), "opsgenie");
        let firing = group(false);
        let Payload::OpsGenie { alias, close, body } = opsgenie.render(&firing.notice()) else {
            panic!("not an Opsgenie payload");
        };
        assert!(!close);
        assert_eq!(alias, group_hash("{}:{alertname=\"replication_lag\"}"));
        assert_eq!(body["alias"], alias.as_str());
        assert_eq!(body["message"], "[FIRING:2] replication_lag (main)");
        assert!(body["description"]
            .as_str()
            .expect("description")
            .starts_with(
                "replica lagging\nAlerts Firing:\nLabels:\n - alertname = replication_lag\n"
            ));
        assert_eq!(
            body["details"],
            json!({"alertname": "replication_lag", "cluster": "main", "team": "db"})
        );
        assert_eq!(body["source"], "http://dbwatch.example:9630");
        assert_eq!(body["tags"], json!(["db", "paging"]));
        assert_eq!(body["actions"], json!(["restart"]));
        assert_eq!(body["priority"], "P2");
        assert_eq!(body["note"], "see runbook");
        assert_eq!(body["entity"], "cluster main");
        assert_eq!(
            body["responders"],
            json!([
                {"name": "dba", "type": "team"},
                {"name": "sre", "type": "team"},
                {"username": "ann@example.com", "type": "user"},
            ])
        );
        let resolved = group(true);
        let Payload::OpsGenie {
            alias: closed,
            close,
            body,
        } = opsgenie.render(&resolved.notice())
        else {
            panic!("not an Opsgenie payload");
        };
        assert!(close);
        assert_eq!(closed, alias);
        assert_eq!(body, json!({"source": "http://dbwatch.example:9630"}));
    }

    #[test]
    fn long_texts_are_cut_to_opsgenies_limits() {
        let opsgenie = one(
            &format!(
                "    opsgenie_configs:\n      - api_key: k\n        message: {}\n        tags: {}\n",
                "m".repeat(300),
                (0..30).map(|i| format!("t{i}")).collect::<Vec<_>>().join(",")
            ),
            "",
        );
        let firing = group(false);
        let Payload::OpsGenie { body, .. } = opsgenie.render(&firing.notice()) else {
            panic!("not an Opsgenie payload");
        };
        assert_eq!(
            body["message"].as_str().expect("message").chars().count(),
            MESSAGE_MAX
        );
        assert_eq!(body["tags"].as_array().expect("tags").len(), TAGS_MAX);
    }

    #[test]
    fn bad_responders_priorities_and_missing_keys_are_refused_by_path() {
        assert_eq!(
            errors(
                "    opsgenie_configs:\n      - responders: [{type: team}, {name: x, type: squad}]\n        priority: P9\n",
                ""
            ),
            [
                "receivers[0].opsgenie_configs[0]: no api_key, api_key_file or global opsgenie_api_key",
                "receivers[0].opsgenie_configs[0].responders[0]: a responder needs at least one of id, username or name",
                "receivers[0].opsgenie_configs[0].responders[1].type: \"squad\" is not a responder type: one of team, teams, user, escalation, schedule",
                "receivers[0].opsgenie_configs[0].priority: \"P9\" is not an Opsgenie priority: P1 to P5",
            ]
        );
        assert_eq!(
            errors(
                "    opsgenie_configs:\n      - api_key: k\n        api_key_file: /f\n",
                ""
            ),
            ["receivers[0].opsgenie_configs[0].api_key: set api_key or api_key_file, not both"]
        );
    }

    #[test]
    fn opsgenies_answers_are_classified() {
        assert_eq!(
            any_success(
                StatusCode::ACCEPTED,
                "{\"result\":\"Request will be processed\"}"
            ),
            Verdict::Accepted
        );
        assert_eq!(
            any_success(StatusCode::TOO_MANY_REQUESTS, ""),
            Verdict::Retry
        );
        assert_eq!(
            any_success(StatusCode::SERVICE_UNAVAILABLE, ""),
            Verdict::Retry
        );
        assert_eq!(
            any_success(
                StatusCode::UNPROCESSABLE_ENTITY,
                "{\"message\":\"Request body is not processable\"}"
            ),
            Verdict::Refused
        );
        assert_eq!(any_success(StatusCode::UNAUTHORIZED, ""), Verdict::Refused);
    }
}
