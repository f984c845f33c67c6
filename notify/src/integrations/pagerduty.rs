//! PagerDuty through the Events API v2: the `pagerduty_configs` entry, its trigger and resolve events (one
//! incident per group through a stable `dedup_key`, kept under PagerDuty's 512 KB event limit), and its answer
//! (202 accepted; 400 invalid event, permanent, `errors[]` says why; 429 and 5xx retried).
//!
//! The fields Alertmanager templates are templates here (`description`, `client`, `client_url`, `details`
//! values, `links`, `images`, `severity`, `class`, `component`, `group`, `source`); one not set, or whose
//! template fails, keeps dbwatch's built-in value (the title and common summary, `dbwatch`, the external URL,
//! the severity mapped from the `severity` label, ...).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{json, Map, Value};

use super::http::{self, Verdict};
use super::{mismatch, read_secret, BoxFuture, Integration, Kind, Outcome};
use crate::fields::{http_config, plain, refuse, secret, Global};
use crate::render::{alert_line, group_hash, link_url, rfc3339, truncate, Notice};
use crate::store::Payload;
use crate::template::{render_or, TemplatedField};
use dbwatch_secret::PasswordSource;
use dbwatch_yaml::node::Node;
use dbwatch_yaml::read::{Fields, Reader};

pub const DEFAULT_PAGERDUTY_URL: &str = "https://events.pagerduty.com/v2/enqueue";
/// Where Alertmanager sends Events API v1 events (`service_key`).
pub const PAGERDUTY_V1_URL: &str =
    "https://events.pagerduty.com/generic/2010-04-15/create_event.json";
pub const PAGERDUTY_SUMMARY_MAX: usize = 1024;
/// Alerts listed in PagerDuty's custom details; the event must stay under 512 KB.
const PAGERDUTY_DETAIL_ALERTS: usize = 50;
/// PagerDuty refuses events over 512 KB with a 400, which is permanent: the page would be dead-lettered. The
/// rendered event is kept under this, which leaves room for the `routing_key` added at send time.
pub const PAGERDUTY_EVENT_MAX: usize = 500 * 1024;
/// Characters of one alert's line in PagerDuty's `custom_details.firing`.
const PAGERDUTY_LINE_MAX: usize = 1024;

#[derive(Debug, Clone)]
pub struct PagerDutyConfig {
    /// The routing key (v2) or the service key (v1): a secret, added at send time only.
    pub routing_key: PasswordSource,
    pub api: EventsApi,
    pub url: String,
    /// The summary (v2) or description (v1); built in: the title and the common summary.
    pub description: Option<TemplatedField>,
    /// A severity (a value PagerDuty does not know is mapped); without it the `severity` label is mapped.
    pub severity: Option<TemplatedField>,
    /// Built in: `dbwatch`.
    pub client: Option<TemplatedField>,
    pub client_url: Option<TemplatedField>,
    pub class: Option<TemplatedField>,
    pub component: Option<TemplatedField>,
    pub group: Option<TemplatedField>,
    pub source: Option<TemplatedField>,
    /// Added to (or replacing) the built-in details.
    pub details: BTreeMap<String, TemplatedField>,
    /// (href, text).
    pub links: Vec<(TemplatedField, Option<TemplatedField>)>,
    /// (src, alt, href).
    pub images: Vec<(
        TemplatedField,
        Option<TemplatedField>,
        Option<TemplatedField>,
    )>,
    pub send_resolved: bool,
    /// `http_config`: proxy, TLS, authorization, redirects.
    pub http: http::Endpoint,
}

impl Integration for PagerDutyConfig {
    fn kind(&self) -> Kind {
        Kind::PagerDuty
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
            let Payload::PagerDuty { event } = payload else {
                return mismatch(Kind::PagerDuty);
            };
            // The key is added at send time only: the outbox on disk never holds it.
            let (field, what) = match self.api {
                EventsApi::V2 => ("routing_key", "pagerduty routing_key"),
                EventsApi::V1 => ("service_key", "pagerduty service_key"),
            };
            let key = match read_secret(&self.routing_key, what) {
                Ok(key) => key,
                Err(outcome) => return outcome,
            };
            let mut event = event.clone();
            if let Some(object) = event.as_object_mut() {
                object.insert(field.into(), Value::String(key));
            }
            let classify = match self.api {
                EventsApi::V2 => classify,
                EventsApi::V1 => classify_v1,
            };
            http::post(
                client,
                &self.url,
                &event,
                timeout,
                Kind::PagerDuty,
                classify,
                &self.http,
            )
            .await
        })
    }
}

/// Events API v1: 200 accepted; 403 is its rate limit and retried, as Alertmanager does; 400 is permanent.
pub fn classify_v1(status: StatusCode, _body: &str) -> Verdict {
    if status == StatusCode::FORBIDDEN {
        return Verdict::Retry;
    }
    Verdict::of(status, status.is_success())
}

/// 202 (or any 2xx) accepted; 400 is an invalid event, permanent.
pub fn classify(status: StatusCode, _body: &str) -> Verdict {
    Verdict::of(
        status,
        status == StatusCode::ACCEPTED || status.is_success(),
    )
}

const PAGERDUTY_SEVERITIES: [&str; 4] = ["critical", "error", "warning", "info"];

/// Which of PagerDuty's Events APIs an entry speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventsApi {
    /// `service_key`: `create_event.json`, `event_type` trigger/resolve, `incident_key`.
    V1,
    /// `routing_key`: `/v2/enqueue`, `event_action`, `dedup_key`.
    V2,
}

pub fn read(
    reader: &mut Reader<'_>,
    node: &Node,
    path: &str,
    global: &Global,
) -> Option<Arc<dyn Integration>> {
    let mut fields = Fields::of(reader, node, path)?;
    let http = http::Endpoint::new(http_config(reader, &mut fields, global));
    refuse(
        reader,
        &mut fields,
        "timeout",
        "dbwatch bounds every request with its own delivery timeout",
    );
    let templates = &global.templates;
    // Alertmanager sends an entry with a service key to the Events API v1 and one with a routing key to v2.
    let routing_key = secret(reader, &mut fields, "routing_key", "routing_key_file");
    let service_key = secret(reader, &mut fields, "service_key", "service_key_file");
    let (api, key) = match (routing_key, service_key) {
        (Some(key), None) => (EventsApi::V2, Some(key)),
        (None, Some(key)) => (EventsApi::V1, Some(key)),
        (Some(_), Some(_)) => {
            reader.error(
                node.mark,
                path,
                "set routing_key (Events API v2) or service_key (v1), not both",
            );
            (EventsApi::V2, None)
        }
        (None, None) => {
            reader.error(
                node.mark,
                path,
                "one of routing_key, routing_key_file, service_key or service_key_file is required",
            );
            (EventsApi::V2, None)
        }
    };
    let severity = TemplatedField::read(reader, &mut fields, "severity", templates);
    let mut details = BTreeMap::new();
    if let Some((details_node, details_path)) = fields.take("details") {
        for (key, text) in reader
            .labels(details_node, &details_path)
            .unwrap_or_default()
        {
            match TemplatedField::parse(&format!("details.{key}"), &text, templates) {
                Ok(field) => {
                    details.insert(key, field);
                }
                Err(error) => reader.error(
                    details_node.mark,
                    &format!("{details_path}.{key}"),
                    error.to_string(),
                ),
            }
        }
    }
    let mut links = Vec::new();
    if let Some((links_node, links_path)) = fields.take("links") {
        for (index, item) in reader
            .sequence(links_node, &links_path)
            .unwrap_or(&[])
            .iter()
            .enumerate()
        {
            let item_path = format!("{links_path}[{index}]");
            if let Some(mut link) = Fields::of(reader, item, &item_path) {
                let href = TemplatedField::read(reader, &mut link, "href", templates);
                let text = TemplatedField::read(reader, &mut link, "text", templates);
                link.finish(reader);
                if let Some(href) = href {
                    links.push((href, text));
                }
            }
        }
    }
    let mut images = Vec::new();
    if let Some((images_node, images_path)) = fields.take("images") {
        for (index, item) in reader
            .sequence(images_node, &images_path)
            .unwrap_or(&[])
            .iter()
            .enumerate()
        {
            let item_path = format!("{images_path}[{index}]");
            if let Some(mut image) = Fields::of(reader, item, &item_path) {
                let src = TemplatedField::read(reader, &mut image, "src", templates);
                let alt = TemplatedField::read(reader, &mut image, "alt", templates);
                let href = TemplatedField::read(reader, &mut image, "href", templates);
                image.finish(reader);
                match src {
                    Some(src) => images.push((src, alt, href)),
                    None => reader.error(item.mark, &item_path, "an image needs src"),
                }
            }
        }
    }
    let url = plain(reader, &mut fields, "url")
        .or_else(|| global.pagerduty_url.clone())
        .unwrap_or_else(|| DEFAULT_PAGERDUTY_URL.to_owned());
    let config = PagerDutyConfig {
        routing_key: key?,
        api,
        // Alertmanager posts v1 events to the v1 endpoint whatever `url` says.
        url: match api {
            EventsApi::V2 => url,
            EventsApi::V1 => PAGERDUTY_V1_URL.to_owned(),
        },
        description: TemplatedField::read(reader, &mut fields, "description", templates),
        severity,
        client: TemplatedField::read(reader, &mut fields, "client", templates),
        client_url: TemplatedField::read(reader, &mut fields, "client_url", templates),
        class: TemplatedField::read(reader, &mut fields, "class", templates),
        component: TemplatedField::read(reader, &mut fields, "component", templates),
        group: TemplatedField::read(reader, &mut fields, "group", templates),
        source: TemplatedField::read(reader, &mut fields, "source", templates),
        details,
        links,
        images,
        http,
        send_resolved: fields.boolean(reader, "send_resolved").unwrap_or(true),
    };
    fields.finish(reader);
    Some(Arc::new(config))
}

/// An Events API v1 event, as Alertmanager's `notifyV1` builds it: `event_type` trigger or resolve, the group's
/// hash as `incident_key`, the title as `description` (at most 1,024 characters), string `details` (the
/// firing alerts, counts, and the configured details); `client` and `client_url` on triggers only.
/// The built-in summary: the title and the common summary annotation.
fn builtin_summary(notice: &Notice<'_>) -> String {
    let mut summary = notice.title();
    if let Some(text) = notice.common_annotations().get("summary") {
        let _ = write!(summary, ": {text}");
    }
    summary
}

fn client(config: &PagerDutyConfig, notice: &Notice<'_>) -> String {
    render_or(&config.client, notice, || "dbwatch".to_owned())
}

/// The client URL: the template, else the external URL; none when both are empty.
fn client_url(config: &PagerDutyConfig, notice: &Notice<'_>) -> Option<String> {
    let url = render_or(&config.client_url, notice, || {
        notice.external_url.to_owned()
    });
    (!url.is_empty()).then_some(url)
}

pub fn render_v1(config: &PagerDutyConfig, notice: &Notice<'_>) -> Payload {
    let firing = notice.is_firing();
    let description = render_or(&config.description, notice, || builtin_summary(notice));
    let lines: Vec<String> = notice
        .firing
        .iter()
        .take(PAGERDUTY_DETAIL_ALERTS)
        .map(|alert| truncate(&alert_line(alert), PAGERDUTY_LINE_MAX))
        .collect();
    let mut details: BTreeMap<String, String> = BTreeMap::new();
    details.insert("firing".into(), lines.join("\n"));
    details.insert("num_firing".into(), notice.firing.len().to_string());
    details.insert("num_resolved".into(), notice.resolved.len().to_string());
    for (key, field) in &config.details {
        details.insert(key.clone(), field.render(notice, String::new));
    }
    let mut event = Map::new();
    event.insert(
        "event_type".into(),
        Value::String(if firing { "trigger" } else { "resolve" }.into()),
    );
    event.insert(
        "incident_key".into(),
        Value::String(group_hash(notice.group_key)),
    );
    event.insert(
        "description".into(),
        Value::String(truncate(&description, PAGERDUTY_SUMMARY_MAX)),
    );
    event.insert("details".into(), json!(details));
    if firing {
        event.insert("client".into(), Value::String(client(config, notice)));
        if let Some(url) = client_url(config, notice) {
            event.insert("client_url".into(), Value::String(url));
        }
    }
    Payload::PagerDuty {
        event: Value::Object(event),
    }
}

/// PagerDuty's severity for an alert's `severity` label.
pub fn pagerduty_severity(label: Option<&str>) -> &'static str {
    match label.map(str::to_ascii_lowercase).as_deref() {
        Some("critical" | "page" | "fatal" | "emergency") => "critical",
        Some("warning" | "warn" | "ticket") => "warning",
        Some("info" | "informational" | "none" | "notice") => "info",
        _ => "error",
    }
}

pub fn render(config: &PagerDutyConfig, notice: &Notice<'_>) -> Payload {
    if config.api == EventsApi::V1 {
        return render_v1(config, notice);
    }
    let dedup_key = group_hash(notice.group_key);
    if !notice.is_firing() {
        return Payload::PagerDuty {
            event: json!({"event_action": "resolve", "dedup_key": dedup_key}),
        };
    }
    let common = notice.common_labels();
    let from_label = || pagerduty_severity(common.get("severity").map(String::as_str)).to_owned();
    let severity = match &config.severity {
        Some(field) => {
            let value = field.render(notice, from_label);
            if PAGERDUTY_SEVERITIES.contains(&value.as_str()) {
                value
            } else {
                pagerduty_severity(Some(&value)).to_owned()
            }
        }
        None => from_label(),
    };
    let summary = render_or(&config.description, notice, || builtin_summary(notice));
    let builtin_source = || {
        common
            .get("target")
            .or_else(|| common.get("instance"))
            .cloned()
            .unwrap_or_else(|| client(config, notice))
    };
    let mut source = render_or(&config.source, notice, builtin_source);
    if source.is_empty() {
        // PagerDuty requires a source.
        source = client(config, notice);
    }
    let listed: Vec<Value> = notice
        .firing
        .iter()
        .take(PAGERDUTY_DETAIL_ALERTS)
        .map(|alert| json!({"labels": alert.labels, "annotations": alert.annotations, "starts_at": rfc3339(alert.starts_at)}))
        .collect();
    let mut details = Map::new();
    let mut lines: Vec<String> = notice
        .firing
        .iter()
        .take(PAGERDUTY_DETAIL_ALERTS)
        .map(|alert| truncate(&alert_line(alert), PAGERDUTY_LINE_MAX))
        .collect();
    if notice.firing.len() > PAGERDUTY_DETAIL_ALERTS {
        lines.push(format!(
            "… and {} more",
            notice.firing.len() - PAGERDUTY_DETAIL_ALERTS
        ));
    }
    details.insert("firing".into(), Value::String(lines.join("\n")));
    details.insert("num_firing".into(), json!(notice.firing.len()));
    details.insert("num_resolved".into(), json!(notice.resolved.len()));
    details.insert("group_labels".into(), json!(notice.group_labels));
    details.insert("alerts".into(), Value::Array(listed));
    if notice.firing.len() > PAGERDUTY_DETAIL_ALERTS {
        details.insert(
            "truncated_alerts".into(),
            json!(notice.firing.len() - PAGERDUTY_DETAIL_ALERTS),
        );
    }
    for (key, field) in &config.details {
        details.insert(
            key.clone(),
            Value::String(field.render(notice, String::new)),
        );
    }
    let mut payload = Map::new();
    payload.insert(
        "summary".into(),
        Value::String(truncate(&summary, PAGERDUTY_SUMMARY_MAX)),
    );
    payload.insert("source".into(), Value::String(truncate(&source, 255)));
    payload.insert("severity".into(), Value::String(severity));
    payload.insert("timestamp".into(), Value::String(rfc3339(notice.now)));
    for (key, field) in [
        ("class", &config.class),
        ("component", &config.component),
        ("group", &config.group),
    ] {
        let value = render_or(field, notice, String::new);
        if !value.is_empty() {
            payload.insert(key.into(), Value::String(value));
        }
    }
    payload.insert("custom_details".into(), Value::Object(details));
    let mut links: Vec<Value> = config
        .links
        .iter()
        .filter_map(|(href, text)| {
            let href = href.render(notice, String::new);
            let text = render_or(text, notice, String::new);
            (!href.is_empty()).then(|| json!({"href": href, "text": text}))
        })
        .collect();
    let images: Vec<Value> = config
        .images
        .iter()
        .filter_map(|(src, alt, href)| {
            let src = src.render(notice, String::new);
            if src.is_empty() {
                return None;
            }
            let mut image = Map::new();
            image.insert("src".into(), Value::String(src));
            for (key, field) in [("alt", alt), ("href", href)] {
                let value = render_or(field, notice, String::new);
                if !value.is_empty() {
                    image.insert(key.into(), Value::String(value));
                }
            }
            Some(Value::Object(image))
        })
        .collect();
    let mut runbooks: Vec<(&String, &String)> = notice
        .firing
        .iter()
        .filter_map(|alert| {
            Some((
                alert.annotations.get("runbook_url")?,
                alert.labels.get("alertname")?,
            ))
        })
        .collect();
    runbooks.sort();
    runbooks.dedup_by(|a, b| a.0 == b.0);
    // A link's href is only ever a plain http(s) URL.
    for (href, name) in runbooks
        .into_iter()
        .filter_map(|(href, name)| Some((link_url(href)?, name)))
        .take(5)
    {
        links.push(json!({"href": href, "text": format!("Runbook: {name}")}));
    }
    let mut event = Map::new();
    event.insert("event_action".into(), Value::String("trigger".into()));
    event.insert("dedup_key".into(), Value::String(dedup_key));
    event.insert("payload".into(), Value::Object(payload));
    event.insert("client".into(), Value::String(client(config, notice)));
    if let Some(url) = client_url(config, notice) {
        event.insert("client_url".into(), Value::String(url));
    }
    if !links.is_empty() {
        event.insert("links".into(), Value::Array(links));
    }
    if !images.is_empty() {
        event.insert("images".into(), Value::Array(images));
    }
    fit_pagerduty(&mut event, notice.firing.len());
    Payload::PagerDuty {
        event: Value::Object(event),
    }
}

fn encoded_len(value: &Map<String, Value>) -> usize {
    serde_json::to_vec(value).map_or(usize::MAX, |bytes| bytes.len())
}

/// Shrinks a trigger event under [`PAGERDUTY_EVENT_MAX`]: first by listing fewer alerts in
/// `custom_details.alerts` (their labels and annotations are unbounded), then by replacing the details with
/// counts only. The summary, source, severity and dedup key, which make the page, always stay.
fn fit_pagerduty(event: &mut Map<String, Value>, firing: usize) {
    if encoded_len(event) <= PAGERDUTY_EVENT_MAX {
        return;
    }
    let details = |event: &mut Map<String, Value>| -> Option<Map<String, Value>> {
        event
            .get_mut("payload")?
            .as_object_mut()?
            .remove("custom_details")?
            .as_object()
            .cloned()
    };
    let Some(mut kept) = details(event) else {
        return;
    };
    let put = |event: &mut Map<String, Value>, details: Map<String, Value>| {
        if let Some(payload) = event.get_mut("payload").and_then(Value::as_object_mut) {
            payload.insert("custom_details".into(), Value::Object(details));
        }
    };
    loop {
        let listed = kept
            .get("alerts")
            .and_then(Value::as_array)
            .map_or(0, Vec::len);
        put(event, kept.clone());
        if encoded_len(event) <= PAGERDUTY_EVENT_MAX || listed == 0 {
            break;
        }
        // Halve the list: a few re-encodings, not one per alert.
        if let Some(alerts) = kept.get_mut("alerts").and_then(Value::as_array_mut) {
            alerts.truncate(listed / 2);
        }
        kept.insert(
            "truncated_alerts".into(),
            json!(firing.saturating_sub(listed / 2)),
        );
    }
    if encoded_len(event) > PAGERDUTY_EVENT_MAX {
        let mut counts = Map::new();
        for key in ["num_firing", "num_resolved"] {
            if let Some(value) = kept.get(key) {
                counts.insert(key.into(), value.clone());
            }
        }
        counts.insert(
            "note".into(),
            json!("details left out: the event would exceed PagerDuty's 512 KB limit"),
        );
        put(event, counts);
    }
}
