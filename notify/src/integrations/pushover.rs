//! Pushover through its Message API (`pushover_configs`): Alertmanager's default title, message and priority
//! (emergency while firing, repeated every `retry` until acknowledged or `expire`, normal once resolved), kept
//! within Pushover's limits, sent as JSON with the application token and user key added at send time (never in
//! the URL, where Alertmanager puts them). The answer is 200 with `"status":1`; 5xx is retried; any 4xx,
//! 429 (the application's monthly quota) included, is permanent, as Pushover's API documentation asks.
//! `title`, `message`, `url`, `url_title`, `device`, `sound` and `priority` are templates, as in Alertmanager;
//! the limits apply to what they render, and a priority that renders to no level from -2 to 2 is a failure
//! (the default priority is sent).

use std::sync::Arc;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Map, Value};

use super::amtext::{annotated_blocks, subject, verbatim};
use super::http::{self, Verdict};
use super::{mismatch, read_secret, BoxFuture, Integration, Kind, Outcome};
use crate::fields::{http_config, required_secret, Global};
use crate::render::{truncate, Notice};
use crate::store::Payload;
use crate::template::{render_or, TemplateInput, TemplatedField};
use dbwatch_secret::PasswordSource;
use dbwatch_yaml::node::Node;
use dbwatch_yaml::read::{Fields, Reader};

pub const API_URL: &str = "https://api.pushover.net/1/messages.json";
/// Pushover's limits, which Alertmanager truncates to as well.
pub const TITLE_MAX: usize = 250;
pub const MESSAGE_MAX: usize = 1024;
pub const URL_MAX: usize = 512;
pub const URL_TITLE_MAX: usize = 100;
/// Emergency priority: Pushover repeats at least every 30 s and for at most 3 hours.
pub const RETRY_MIN: Duration = Duration::from_secs(30);
pub const EXPIRE_MAX: Duration = Duration::from_secs(10_800);

#[derive(Debug, Clone)]
pub struct PushoverConfig {
    /// Where to send: Pushover's API; a field so that tests can point it elsewhere (Alertmanager has no key).
    pub api_url: String,
    pub user_key: PasswordSource,
    pub token: PasswordSource,
    pub title: Option<TemplatedField>,
    pub message: Option<TemplatedField>,
    pub url: Option<TemplatedField>,
    pub url_title: Option<TemplatedField>,
    pub device: Option<TemplatedField>,
    pub sound: Option<TemplatedField>,
    /// A fixed priority (-2 to 2); without it, 2 while firing and 0 once resolved.
    pub priority: Option<i64>,
    /// A templated priority, rendered per notice (`priority` is then unset).
    pub priority_template: Option<TemplatedField>,
    pub retry: Duration,
    pub expire: Duration,
    pub ttl: Option<Duration>,
    pub html: bool,
    pub send_resolved: bool,
    pub http: http::Endpoint,
}

impl Integration for PushoverConfig {
    fn kind(&self) -> Kind {
        Kind::Pushover
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
            let Payload::Pushover { body } = payload else {
                return mismatch(Kind::Pushover);
            };
            let token = match read_secret(&self.token, "pushover token") {
                Ok(token) => token.trim().to_owned(),
                Err(outcome) => return outcome,
            };
            let user = match read_secret(&self.user_key, "pushover user_key") {
                Ok(user) => user.trim().to_owned(),
                Err(outcome) => return outcome,
            };
            let mut body = body.clone();
            if let Some(object) = body.as_object_mut() {
                object.insert("token".into(), Value::String(token));
                object.insert("user".into(), Value::String(user));
            }
            http::post(
                client,
                &self.api_url,
                &body,
                timeout,
                Kind::Pushover,
                classify,
                &self.http,
            )
            .await
        })
    }
}

/// 200 with `"status":1`; 5xx retried; every 4xx permanent ("do not resend the same request").
pub fn classify(status: StatusCode, body: &str) -> Verdict {
    if status.is_client_error() {
        return Verdict::Refused;
    }
    let ok = serde_json::from_str::<Value>(body)
        .ok()
        .and_then(|answer| answer.get("status").and_then(Value::as_i64))
        == Some(1);
    Verdict::of(status, status.is_success() && ok)
}

/// A Go duration (`1m`, `2h`), or `default`; with the position of the value, for the bounds checks.
fn duration(
    reader: &mut Reader<'_>,
    fields: &mut Fields<'_>,
    key: &'static str,
    default: Duration,
) -> (Duration, Option<(dbwatch_yaml::node::Mark, String)>) {
    let Some((value, value_path)) = fields.take(key) else {
        return (default, None);
    };
    let Some(text) = reader.scalar(value, &value_path) else {
        return (default, None);
    };
    match dbwatch_rules::model::parse_duration(&text) {
        Ok(parsed) => (parsed, Some((value.mark, value_path))),
        Err(message) => {
            reader.error(value.mark, &value_path, message);
            (default, None)
        }
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
) -> Option<PushoverConfig> {
    let mut fields = Fields::of(reader, node, path)?;
    let http = http::Endpoint::new(http_config(reader, &mut fields, global));
    let user_key = required_secret(
        reader,
        &mut fields,
        node,
        path,
        "user_key",
        "user_key_file",
        None,
        "user_key or user_key_file is required",
    );
    let token = required_secret(
        reader,
        &mut fields,
        node,
        path,
        "token",
        "token_file",
        None,
        "token or token_file is required",
    );
    let mut priority_template = None;
    let priority = match fields.take("priority") {
        Some((value, value_path)) => match reader.scalar(value, &value_path) {
            Some(text) if text.is_empty() => None,
            Some(text) if text.contains("{{") => {
                match TemplatedField::parse("priority", &text, &global.templates) {
                    Ok(field) => priority_template = Some(field),
                    Err(error) => reader.error(value.mark, &value_path, error.to_string()),
                }
                None
            }
            Some(text) => match text.trim().parse::<i64>() {
                Ok(level) if (-2..=2).contains(&level) => Some(level),
                _ => {
                    reader.error(
                        value.mark,
                        &value_path,
                        format!("{text:?} is not a Pushover priority: an integer from -2 to 2"),
                    );
                    None
                }
            },
            None => None,
        },
        None => None,
    };
    let (retry, retry_at) = duration(reader, &mut fields, "retry", Duration::from_secs(60));
    let (expire, expire_at) = duration(reader, &mut fields, "expire", Duration::from_secs(3600));
    // Emergency messages (the default while firing) outside these bounds are refused by Pushover with a 400.
    if let Some((mark, value_path)) = retry_at.filter(|_| retry < RETRY_MIN) {
        reader.error(
            mark,
            &value_path,
            "must be at least 30s: Pushover repeats emergency messages no more often",
        );
    }
    if let Some((mark, value_path)) = expire_at.filter(|_| expire > EXPIRE_MAX) {
        reader.error(
            mark,
            &value_path,
            "must be at most 3h: Pushover repeats emergency messages no longer",
        );
    }
    let ttl = fields.take("ttl").and_then(|(value, value_path)| {
        let text = reader.scalar(value, &value_path)?;
        match dbwatch_rules::model::parse_duration(&text) {
            Ok(parsed) => Some(parsed),
            Err(message) => {
                reader.error(value.mark, &value_path, message);
                None
            }
        }
    });
    let config = PushoverConfig {
        api_url: API_URL.to_owned(),
        user_key: user_key?,
        token: token?,
        title: TemplatedField::read(reader, &mut fields, "title", &global.templates),
        message: TemplatedField::read(reader, &mut fields, "message", &global.templates),
        url: TemplatedField::read(reader, &mut fields, "url", &global.templates),
        url_title: TemplatedField::read(reader, &mut fields, "url_title", &global.templates),
        device: TemplatedField::read(reader, &mut fields, "device", &global.templates),
        sound: TemplatedField::read(reader, &mut fields, "sound", &global.templates),
        priority,
        priority_template,
        retry,
        expire,
        ttl,
        html: fields.boolean(reader, "html").unwrap_or(false),
        send_resolved: fields.boolean(reader, "send_resolved").unwrap_or(true),
        http,
    };
    fields.finish(reader);
    Some(config)
}

pub fn render(config: &PushoverConfig, notice: &Notice<'_>) -> Payload {
    let title = render_or(&config.title, notice, || subject(notice));
    let escape = if config.html {
        crate::html::escape
    } else {
        verbatim
    };
    let message = render_or(&config.message, notice, || annotated_blocks(notice, escape));
    let message = truncate(message.trim(), MESSAGE_MAX);
    let message = if message.is_empty() {
        "(no details)".to_owned()
    } else {
        message
    };
    let default_priority = if notice.is_firing() { 2 } else { 0 };
    let priority = match (&config.priority_template, config.priority) {
        (Some(field), _) => rendered_priority(field, notice, default_priority),
        (None, Some(level)) => level,
        (None, None) => default_priority,
    };
    let mut body = Map::new();
    body.insert("title".into(), Value::String(truncate(&title, TITLE_MAX)));
    body.insert("message".into(), Value::String(message));
    if config.html {
        body.insert("html".into(), Value::from(1));
    }
    let url = render_or(&config.url, notice, || notice.external_url.to_owned());
    if !url.is_empty() {
        body.insert("url".into(), Value::String(truncate(&url, URL_MAX)));
    }
    let url_title = render_or(&config.url_title, notice, String::new);
    if !url_title.is_empty() {
        body.insert(
            "url_title".into(),
            Value::String(truncate(&url_title, URL_TITLE_MAX)),
        );
    }
    for (key, field) in [("device", &config.device), ("sound", &config.sound)] {
        // No built-in value: a failed or empty template leaves Pushover's own default.
        let value = render_or(field, notice, String::new);
        if !value.is_empty() {
            body.insert(key.into(), Value::String(value));
        }
    }
    body.insert("priority".into(), Value::from(priority));
    if priority == 2 {
        body.insert("retry".into(), Value::from(config.retry.as_secs()));
        body.insert("expire".into(), Value::from(config.expire.as_secs()));
    }
    if let Some(ttl) = config.ttl {
        body.insert("ttl".into(), Value::from(ttl.as_secs()));
    }
    Payload::Pushover {
        body: Value::Object(body),
    }
}

/// A templated priority's level; anything but an integer from -2 to 2 is recorded as the field's failure and
/// gives `default`.
fn rendered_priority(field: &TemplatedField, notice: &Notice<'_>, default: i64) -> i64 {
    let text = field.render(notice, || default.to_string());
    match text.trim().parse::<i64>() {
        Ok(level) if (-2..=2).contains(&level) => level,
        _ => {
            notice.templating().record(
                field.field(),
                format!("{text:?} is not a Pushover priority: an integer from -2 to 2"),
            );
            default
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::integrations::testkit::{
        body, errors, failed_fields, group, one, one_templated, read_with, TEAM,
    };

    const ENTRY: &str = "    pushover_configs:\n      - user_key: u\n        token: t\n";

    #[test]
    fn every_templated_field_renders_the_routing_files_templates_cut_after() {
        let pushover = one_templated(
            &format!(concat!(
                "{}",
                "        title: '{{{{ template \"team.title\" . }}}}'\n",
                "        message: '{{{{ template \"team.list\" . }}}}{{{{ if .Alerts.Firing }}}}{{{{ printf \"%2000s\" \"x\" }}}}{{{{ end }}}}'\n",
                "        url: 'http://grafana/d/{{{{ .CommonLabels.cluster }}}}'\n",
                "        url_title: '{{{{ .CommonLabels.cluster }}}} dashboard'\n",
                "        sound: '{{{{ if .Alerts.Firing }}}}siren{{{{ end }}}}'\n",
                "        device: '{{{{ .CommonLabels.cluster }}}}-phone'\n",
                "        priority: '{{{{ if .Alerts.Firing }}}}1{{{{ else }}}}-1{{{{ end }}}}'\n",
            ), ENTRY),
            TEAM,
        );
        let firing = group(false);
        let notice = firing.notice();
        let sent = pushover.render(&notice);
        let body = body(&sent);
        assert_eq!(body["title"], "FIRING replication_lag (2 firing)");
        let message = body["message"].as_str().expect("message");
        assert!(message.starts_with("r1:firing r2:firing   "), "{message:?}");
        assert_eq!(message.chars().count(), MESSAGE_MAX);
        assert_eq!(body["url"], "http://grafana/d/main");
        assert_eq!(body["url_title"], "main dashboard");
        assert_eq!(body["sound"], "siren");
        assert_eq!(body["device"], "main-phone");
        assert_eq!(body["priority"], 1);
        assert!(body.get("retry").is_none());
        assert!(failed_fields(&notice).is_empty());
        let resolved = group(true);
        let notice = resolved.notice();
        let sent = pushover.render(&notice);
        let body = super::super::testkit::body(&sent);
        assert_eq!(body["title"], "RESOLVED replication_lag");
        assert_eq!(body["message"], "r1:resolved r2:resolved");
        // Rendered empty: Pushover's default sound.
        assert!(body.get("sound").is_none());
        assert_eq!(body["priority"], -1);
        assert!(failed_fields(&notice).is_empty());
    }

    #[test]
    fn failing_templates_and_a_priority_out_of_range_fall_back_and_are_recorded() {
        let pushover = one(
            &format!("{ENTRY}        title: '{{{{ .Alerts.Nope }}}}'\n        priority: '{{{{ len .Alerts }}}}0'\n"),
            "",
        );
        let firing = group(false);
        let notice = firing.notice();
        let sent = pushover.render(&notice);
        assert_eq!(body(&sent)["title"], "[FIRING:2] replication_lag (main)");
        assert_eq!(body(&sent)["priority"], 2);
        assert_eq!(failed_fields(&notice), ["title", "priority"]);
    }

    #[test]
    fn defaults_are_alertmanagers() {
        let config = read_with("  user_key: u\n  token_file: /run/t\n", "", read_config);
        assert_eq!(config.api_url, API_URL);
        assert_eq!(config.retry, Duration::from_secs(60));
        assert_eq!(config.expire, Duration::from_secs(3600));
        assert_eq!(config.priority, None);
        assert!(!config.html);
        assert!(config.send_resolved);
        assert!(matches!(config.token, PasswordSource::File(_)));
    }

    #[test]
    fn firing_is_an_emergency_and_the_resolve_is_normal_without_any_secret_in_the_payload() {
        let pushover = one(ENTRY, "");
        assert_eq!(pushover.kind().as_str(), "pushover");
        let firing = group(false);
        let sent = pushover.render(&firing.notice());
        let body = body(&sent);
        assert_eq!(body["title"], "[FIRING:2] replication_lag (main)");
        assert!(body["message"]
            .as_str()
            .expect("message")
            .starts_with("replica lagging\n\nAlerts Firing:\nLabels:\n"));
        assert_eq!(body["priority"], 2);
        assert_eq!(body["retry"], 60);
        assert_eq!(body["expire"], 3600);
        assert_eq!(body["url"], "http://dbwatch.example:9630");
        assert!(body.get("token").is_none() && body.get("user").is_none());
        assert!(body.get("html").is_none());
        let resolved = group(true);
        let sent = pushover.render(&resolved.notice());
        let body = crate::integrations::testkit::body(&sent);
        assert_eq!(body["priority"], 0);
        assert!(body.get("retry").is_none());
        assert!(body["message"]
            .as_str()
            .expect("message")
            .starts_with("replica lagging\n\n\nAlerts Resolved:"));
    }

    #[test]
    fn html_escapes_values_and_everything_fits_pushovers_limits() {
        let pushover = one(
            &format!("{ENTRY}        html: true\n        priority: 1\n        url_title: {}\n        sound: siren\n", "u".repeat(150)),
            "",
        );
        let mut firing = group(false);
        firing.firing[0]
            .labels
            .insert("database".into(), "<script>".into());
        for alert in &mut firing.firing {
            alert
                .annotations
                .insert("description".into(), "d".repeat(2000));
        }
        let sent = pushover.render(&firing.notice());
        let body = body(&sent);
        assert_eq!(body["html"], 1);
        assert_eq!(body["priority"], 1);
        assert_eq!(body["sound"], "siren");
        assert!(body.get("retry").is_none());
        let message = body["message"].as_str().expect("message");
        assert_eq!(message.chars().count(), MESSAGE_MAX);
        assert!(!message.contains("<script>"));
        assert_eq!(
            body["url_title"]
                .as_str()
                .expect("url_title")
                .chars()
                .count(),
            URL_TITLE_MAX
        );
    }

    #[test]
    fn keys_priorities_and_emergency_bounds_are_checked_by_path() {
        assert_eq!(
            errors("    pushover_configs:\n      - priority: 3\n        retry: 10s\n        expire: 4h\n", ""),
            [
                "receivers[0].pushover_configs[0]: user_key or user_key_file is required",
                "receivers[0].pushover_configs[0]: token or token_file is required",
                "receivers[0].pushover_configs[0].priority: \"3\" is not a Pushover priority: an integer from -2 to 2",
                "receivers[0].pushover_configs[0].retry: must be at least 30s: Pushover repeats emergency messages no more often",
                "receivers[0].pushover_configs[0].expire: must be at most 3h: Pushover repeats emergency messages no longer",
            ]
        );
        let found = errors(&format!("{ENTRY}        retry: soon\n"), "");
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(
            found[0].starts_with("receivers[0].pushover_configs[0].retry: "),
            "{found:?}"
        );
    }

    #[test]
    fn pushovers_answers_are_classified() {
        assert_eq!(
            classify(StatusCode::OK, "{\"status\":1,\"request\":\"r\"}"),
            Verdict::Accepted
        );
        assert_eq!(classify(StatusCode::OK, "{\"status\":0}"), Verdict::Refused);
        assert_eq!(
            classify(
                StatusCode::BAD_REQUEST,
                "{\"user\":\"invalid\",\"errors\":[\"user identifier is invalid\"],\"status\":0}"
            ),
            Verdict::Refused
        );
        // Over the monthly quota: resending would be refused the same way.
        assert_eq!(
            classify(StatusCode::TOO_MANY_REQUESTS, ""),
            Verdict::Refused
        );
        assert_eq!(
            classify(StatusCode::INTERNAL_SERVER_ERROR, ""),
            Verdict::Retry
        );
    }
}
