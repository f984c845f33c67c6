//! Delivery of one outbox entry to its integration, and the classification of the answer: delivered, worth
//! retrying (with the server's `Retry-After` when it gave one), or permanently refused.

use std::time::Duration;

use lettre::message::header::{HeaderName, HeaderValue};
use lettre::message::{Mailbox, MultiPart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use reqwest::StatusCode;

use super::config::{EmailConfig, Integration};
use super::store::Payload;
use crate::config::PasswordSource;

#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Delivered,
    Retry {
        reason: String,
        retry_after: Option<Duration>,
    },
    Permanent {
        reason: String,
    },
}

/// Sends `payload` through `integration`; never panics, every failure becomes an [`Outcome`].
pub async fn deliver(
    client: &reqwest::Client,
    integration: &Integration,
    payload: &Payload,
    timeout: Duration,
) -> Outcome {
    match (integration, payload) {
        (Integration::Slack(config), Payload::Slack { body }) => {
            let url = match read_secret(&config.api_url, "slack api_url") {
                Ok(url) => url,
                Err(outcome) => return outcome,
            };
            post(client, &url, body, timeout, "slack").await
        }
        (Integration::PagerDuty(config), Payload::PagerDuty { event }) => {
            let key = match read_secret(&config.routing_key, "pagerduty routing_key") {
                Ok(key) => key,
                Err(outcome) => return outcome,
            };
            let mut event = event.clone();
            if let Some(object) = event.as_object_mut() {
                object.insert("routing_key".into(), serde_json::Value::String(key));
            }
            post(client, &config.url, &event, timeout, "pagerduty").await
        }
        (Integration::Webhook(config), Payload::Webhook { body }) => {
            let url = match read_secret(&config.url, "webhook url") {
                Ok(url) => url,
                Err(outcome) => return outcome,
            };
            post(client, &url, body, timeout, "webhook").await
        }
        (Integration::Email(config), Payload::Email { .. }) => {
            match tokio::time::timeout(timeout, send_email(config, payload)).await {
                Ok(outcome) => outcome,
                Err(_) => Outcome::Retry {
                    reason: format!(
                        "smtp session to {} timed out after {timeout:?}",
                        config.smarthost
                    ),
                    retry_after: None,
                },
            }
        }
        (integration, _) => Outcome::Permanent {
            reason: format!(
                "the receiver's {} integration no longer matches this notification",
                integration.kind()
            ),
        },
    }
}

/// A secret's value; a file that cannot be read is retried, since it may be mid-rotation.
fn read_secret(source: &PasswordSource, what: &str) -> Result<String, Outcome> {
    source
        .read()
        .map(|secret| secret.expose().to_owned())
        .map_err(|error| Outcome::Retry {
            reason: format!("cannot read the {what} file: {error}"),
            retry_after: None,
        })
}

async fn post(
    client: &reqwest::Client,
    url: &str,
    body: &serde_json::Value,
    timeout: Duration,
    kind: &str,
) -> Outcome {
    let bytes = match serde_json::to_vec(body) {
        Ok(bytes) => bytes,
        Err(error) => {
            return Outcome::Permanent {
                reason: format!("cannot encode the {kind} payload: {error}"),
            }
        }
    };
    let response = client
        .post(url)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(bytes)
        .timeout(timeout)
        .send()
        .await;
    let response = match response {
        Ok(response) => response,
        // The URL is a secret for Slack and webhooks: describe the failure without it.
        Err(error) => {
            let what = if error.is_timeout() {
                "timed out".to_owned()
            } else if error.is_connect() {
                "connection failed".to_owned()
            } else {
                format!("request failed: {}", error.without_url())
            };
            return Outcome::Retry {
                reason: format!("{kind} {what}"),
                retry_after: None,
            };
        }
    };
    let status = response.status();
    let retry_after = response
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.trim().parse::<u64>().ok())
        .map(Duration::from_secs);
    let text = match tokio::time::timeout(timeout, response.text()).await {
        Ok(Ok(text)) => text,
        _ => String::new(),
    };
    let reason = format!(
        "{kind} answered {}: {}",
        status.as_u16(),
        text.chars().take(500).collect::<String>()
    );
    classify(kind, status, &text, reason, retry_after)
}

fn classify(
    kind: &str,
    status: StatusCode,
    body: &str,
    reason: String,
    retry_after: Option<Duration>,
) -> Outcome {
    match kind {
        // PagerDuty: 202 accepted; 400 invalid event (permanent, `errors[]` says why); 429 and 5xx retried.
        "pagerduty" if status == StatusCode::ACCEPTED || status.is_success() => Outcome::Delivered,
        // Slack: 200 with `ok`; 4xx such as channel_is_archived mean the configuration is broken.
        "slack" if status == StatusCode::OK && !body.trim_start().starts_with("{\"ok\":false") => {
            Outcome::Delivered
        }
        "webhook" if status.is_success() => Outcome::Delivered,
        _ if status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error() => {
            Outcome::Retry {
                reason,
                retry_after,
            }
        }
        _ => Outcome::Permanent { reason },
    }
}

async fn send_email(config: &EmailConfig, payload: &Payload) -> Outcome {
    let Payload::Email {
        subject,
        text,
        html,
        message_id,
        in_reply_to,
    } = payload
    else {
        return Outcome::Permanent {
            reason: "not an email payload".into(),
        };
    };
    let message = match build_message(
        config,
        subject,
        text,
        html,
        message_id,
        in_reply_to.as_deref(),
    ) {
        Ok(message) => message,
        Err(reason) => return Outcome::Permanent { reason },
    };
    let transport = match transport(config) {
        Ok(transport) => transport,
        Err(outcome) => return outcome,
    };
    match transport.send(message).await {
        Ok(_) => Outcome::Delivered,
        Err(error) => {
            let reason = format!("smtp {}: {error}", config.smarthost);
            // 5yz replies are permanent (bad recipient, AUTH refused); 4yz, connection and TLS failures may pass.
            if error.is_permanent() {
                Outcome::Permanent { reason }
            } else {
                Outcome::Retry {
                    reason,
                    retry_after: None,
                }
            }
        }
    }
}

fn build_message(
    config: &EmailConfig,
    subject: &str,
    text: &str,
    html: &str,
    message_id: &str,
    in_reply_to: Option<&str>,
) -> Result<Message, String> {
    let from: Mailbox = config
        .from
        .parse()
        .map_err(|error| format!("invalid from address {:?}: {error}", config.from))?;
    let mut builder = Message::builder()
        .from(from)
        .subject(subject)
        .message_id(Some(message_id.to_owned()));
    for to in &config.to {
        let mailbox: Mailbox = to
            .parse()
            .map_err(|error| format!("invalid to address {to:?}: {error}"))?;
        builder = builder.to(mailbox);
    }
    if let Some(root) = in_reply_to {
        builder = builder
            .in_reply_to(root.to_owned())
            .references(root.to_owned());
    }
    let mut message = builder
        .multipart(MultiPart::alternative_plain_html(
            text.to_owned(),
            html.to_owned(),
        ))
        .map_err(|error| format!("cannot build the message: {error}"))?;
    for (name, value) in &config.headers {
        if matches!(
            name.to_ascii_lowercase().as_str(),
            "subject" | "from" | "to" | "message-id" | "in-reply-to" | "references"
        ) {
            continue;
        }
        let name = HeaderName::new_from_ascii(name.clone())
            .map_err(|error| format!("invalid header name {name:?}: {error}"))?;
        message
            .headers_mut()
            .insert_raw(HeaderValue::new(name, value.clone()));
    }
    Ok(message)
}

fn transport(config: &EmailConfig) -> Result<AsyncSmtpTransport<Tokio1Executor>, Outcome> {
    let permanent = |reason: String| Outcome::Permanent { reason };
    let (host, port) = config
        .smarthost
        .rsplit_once(':')
        .and_then(|(host, port)| Some((host.to_owned(), port.parse::<u16>().ok()?)))
        .ok_or_else(|| permanent(format!("invalid smarthost {:?}", config.smarthost)))?;
    let server_name = config
        .tls
        .server_name
        .clone()
        .unwrap_or_else(|| host.clone());
    let mut tls = TlsParameters::builder(server_name)
        .dangerous_accept_invalid_certs(config.tls.insecure_skip_verify);
    if let Some(ca_file) = &config.tls.ca_file {
        let pem = std::fs::read(ca_file).map_err(|error| Outcome::Retry {
            reason: format!("cannot read tls ca_file {}: {error}", ca_file.display()),
            retry_after: None,
        })?;
        let certificate = Certificate::from_pem(&pem).map_err(|error| {
            permanent(format!("invalid ca_file {}: {error}", ca_file.display()))
        })?;
        tls = tls.add_root_certificate(certificate);
    }
    let tls = tls
        .build_rustls()
        .map_err(|error| permanent(format!("invalid tls settings: {error}")))?;
    let mode = if config.implicit_tls {
        Tls::Wrapper(tls)
    } else if config.require_tls {
        Tls::Required(tls)
    } else {
        Tls::Opportunistic(tls)
    };
    let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host)
        .port(port)
        .tls(mode)
        .hello_name(lettre::transport::smtp::extension::ClientId::Domain(
            config.hello.clone(),
        ));
    if let Some(username) = &config.auth_username {
        let password = match &config.auth_password {
            Some(source) => read_secret(source, "smtp auth_password")?,
            None => String::new(),
        };
        builder = builder.credentials(Credentials::new(username.clone(), password));
    }
    Ok(builder.build())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_classified_per_integration() {
        let reason = String::new;
        assert_eq!(
            classify("pagerduty", StatusCode::ACCEPTED, "", reason(), None),
            Outcome::Delivered
        );
        assert!(matches!(
            classify("pagerduty", StatusCode::BAD_REQUEST, "", reason(), None),
            Outcome::Permanent { .. }
        ));
        assert!(matches!(
            classify("slack", StatusCode::TOO_MANY_REQUESTS, "", reason(), Some(Duration::from_secs(3))),
            Outcome::Retry { retry_after: Some(after), .. } if after == Duration::from_secs(3)
        ));
        assert!(matches!(
            classify(
                "slack",
                StatusCode::GONE,
                "channel_is_archived",
                reason(),
                None
            ),
            Outcome::Permanent { .. }
        ));
        assert!(matches!(
            classify("webhook", StatusCode::BAD_GATEWAY, "", reason(), None),
            Outcome::Retry { .. }
        ));
    }
}
