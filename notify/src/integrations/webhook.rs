//! Alertmanager's webhook (`webhook_configs`): its version-4 JSON body, POSTed to the URL; any 2xx is an
//! acceptance.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};

use super::http;
use super::{mismatch, read_secret, BoxFuture, Integration, Kind, Outcome};
use crate::fields::{http_config, refuse, secret, Global};
use crate::render::{rfc3339, Notice};
use crate::store::{AlertRecord, Payload};
use dbwatch_secret::PasswordSource;
use dbwatch_yaml::node::Node;
use dbwatch_yaml::read::{Fields, Reader};

#[derive(Debug, Clone)]
pub struct WebhookConfig {
    pub url: PasswordSource,
    pub max_alerts: usize,
    pub send_resolved: bool,
    /// `http_config`: proxy, TLS, authorization, redirects.
    pub http: http::Endpoint,
}

impl Integration for WebhookConfig {
    fn kind(&self) -> Kind {
        Kind::Webhook
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
            let Payload::Webhook { body } = payload else {
                return mismatch(Kind::Webhook);
            };
            let url = match read_secret(&self.url, "webhook url") {
                Ok(url) => url,
                Err(outcome) => return outcome,
            };
            http::post(
                client,
                &url,
                body,
                timeout,
                Kind::Webhook,
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
    let http = http::Endpoint::new(http_config(reader, &mut fields, global));
    refuse(
        reader,
        &mut fields,
        "timeout",
        "the delivery timeout is the daemon's",
    );
    let url = secret(reader, &mut fields, "url", "url_file");
    if url.is_none() {
        reader.error(node.mark, path, "url or url_file is required");
    }
    let config = WebhookConfig {
        url: url?,
        max_alerts: fields
            .integer(reader, "max_alerts", "a non-negative integer")
            .unwrap_or(0),
        http,
        send_resolved: fields.boolean(reader, "send_resolved").unwrap_or(true),
    };
    fields.finish(reader);
    Some(Arc::new(config))
}

/// Alertmanager's webhook body (version 4).
pub fn render(config: &WebhookConfig, notice: &Notice<'_>) -> Payload {
    let alerts: Vec<&AlertRecord> = notice.alerts().collect();
    let kept = if config.max_alerts > 0 {
        config.max_alerts.min(alerts.len())
    } else {
        alerts.len()
    };
    let listed: Vec<Value> = alerts[..kept]
        .iter()
        .map(|alert| {
            json!({
                "status": if alert.ends_at.is_some() { "resolved" } else { "firing" },
                "labels": alert.labels,
                "annotations": alert.annotations,
                "startsAt": rfc3339(alert.starts_at),
                "endsAt": alert.ends_at.map(rfc3339).unwrap_or_else(|| "0001-01-01T00:00:00Z".to_owned()),
                "generatorURL": notice.external_url,
                "fingerprint": alert.fingerprint,
            })
        })
        .collect();
    Payload::Webhook {
        body: json!({
            "version": "4",
            "groupKey": notice.group_key,
            "truncatedAlerts": alerts.len() - kept,
            "status": notice.status(),
            "receiver": notice.receiver,
            "groupLabels": notice.group_labels,
            "commonLabels": notice.common_labels(),
            "commonAnnotations": notice.common_annotations(),
            "externalURL": notice.external_url,
            "alerts": listed,
        }),
    }
}
