//! Delivery of one outbox entry to its integration, and the classification of the answer: delivered, worth
//! retrying (with the server's `Retry-After` when it gave one), or permanently refused.

use std::time::Duration;

use lettre::message::header::{HeaderName, HeaderValue};
use lettre::message::{Mailbox, MultiPart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use reqwest::StatusCode;

use super::config::{EmailConfig, Integration, MAX_RETRY_AFTER};
use super::store::Payload;
use dbwatch_secret::PasswordSource;

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

/// How much of a receiver's answer is read. Only the first 500 characters are kept for `last_error` and only a
/// prefix is classified, so a larger body (a proxy's error page, or a peer streaming gigabytes) is cut off here
/// instead of being buffered whole.
pub const MAX_RESPONSE_BODY: usize = 64 * 1024;
/// Characters of an answer kept in `last_error` and dead-letter reasons.
const REASON_BODY_CHARS: usize = 500;

/// `Retry-After` as delay-seconds or an HTTP-date (RFC 9110 §10.2.3), relative to `now`, capped at
/// [`MAX_RETRY_AFTER`]. A date in the past means "now"; a value that is neither is ignored (the backoff applies).
pub fn parse_retry_after(value: &str, now: std::time::SystemTime) -> Option<Duration> {
    let value = value.trim();
    if !value.is_empty() && value.bytes().all(|byte| byte.is_ascii_digit()) {
        // Too many digits for a u64 is still "a very long time": capped like any other large value.
        let seconds = value.parse::<u64>().unwrap_or(u64::MAX);
        return Some(Duration::from_secs(seconds).min(MAX_RETRY_AFTER));
    }
    let date = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    let now = chrono::DateTime::<chrono::Utc>::from(now);
    let ahead = date.signed_duration_since(now);
    Some(
        ahead
            .to_std()
            .unwrap_or(Duration::ZERO)
            .min(MAX_RETRY_AFTER),
    )
}

/// A request error with its causes (`error sending request: client error (Connect): tcp connect error:
/// Connection refused (os error 111)`, or the certificate problem), without the URL: for Slack and webhooks the
/// URL is the secret.
fn describe(error: reqwest::Error, url: &str) -> String {
    let error = error.without_url();
    let mut text = error.to_string();
    let mut source = std::error::Error::source(&error);
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        // hyper repeats its inner error's text in its own; skip the echo.
        if !text.ends_with(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    // No cause is known to print the URL; a redaction costs nothing and keeps it that way.
    if !url.is_empty() {
        text = text.replace(url, "<url>");
    }
    text
}

/// Reads at most `limit` bytes of the body, chunk by chunk, within `timeout`; true when the body was longer (or
/// did not finish in time).
async fn read_capped(
    response: &mut reqwest::Response,
    limit: usize,
    timeout: Duration,
) -> (Vec<u8>, bool) {
    let mut body = Vec::new();
    let read = async {
        loop {
            match response.chunk().await {
                Ok(Some(chunk)) => {
                    let room = limit.saturating_sub(body.len());
                    if chunk.len() > room {
                        body.extend_from_slice(&chunk[..room]);
                        return true;
                    }
                    body.extend_from_slice(&chunk);
                }
                Ok(None) => return false,
                // A body cut short still tells what it managed to say.
                Err(_) => return true,
            }
        }
    };
    let truncated = tokio::time::timeout(timeout, read).await.unwrap_or(true);
    (body, truncated)
}

/// The answer's body as text for a reason: the first [`REASON_BODY_CHARS`] characters, marked when cut.
pub(crate) async fn answer_text(
    response: &mut reqwest::Response,
    timeout: Duration,
    chars: usize,
) -> (String, String) {
    let (bytes, truncated) = read_capped(response, MAX_RESPONSE_BODY, timeout).await;
    let text = String::from_utf8_lossy(&bytes).into_owned();
    let mut shown: String = text.chars().take(chars).collect();
    if truncated {
        shown.push_str(" … (body cut at 64 KiB)");
    } else if text.chars().nth(chars).is_some() {
        shown.push('…');
    }
    (text, shown)
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
    let started = tokio::time::Instant::now();
    let response = client
        .post(url)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(bytes)
        .timeout(timeout)
        .send()
        .await;
    let mut response = match response {
        Ok(response) => response,
        // The URL is a secret for Slack and webhooks: describe the failure without it, with its causes.
        Err(error) => {
            let what = if error.is_timeout() {
                "timed out"
            } else if error.is_connect() {
                "connection failed"
            } else {
                "request failed"
            };
            return Outcome::Retry {
                reason: format!("{kind} {what}: {}", describe(error, url)),
                retry_after: None,
            };
        }
    };
    let status = response.status();
    let retry_after = response
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| parse_retry_after(value, std::time::SystemTime::now()));
    // The body gets what is left of the request's time budget.
    let left = timeout.saturating_sub(started.elapsed());
    let (text, shown) = answer_text(&mut response, left, REASON_BODY_CHARS).await;
    let reason = format!("{kind} answered {}: {shown}", status.as_u16());
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

/// `localhost`, `127.0.0.0/8` or `::1` (brackets allowed): a relay on this host, where plaintext AUTH crosses no
/// network.
fn is_loopback(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|address| address.is_loopback())
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
    // With credentials, STARTTLS is required even when `require_tls: false`, except to a relay on this host:
    // a man in the middle who strips STARTTLS would otherwise receive the AUTH PLAIN/LOGIN password. Go's
    // smtp.PlainAuth, which Alertmanager uses, refuses the same way.
    let credentials_need_tls = config.auth_username.is_some() && !is_loopback(&host);
    let mode = if config.implicit_tls {
        Tls::Wrapper(tls)
    } else if config.require_tls || credentials_need_tls {
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
    use std::time::SystemTime;

    #[test]
    fn only_a_relay_on_this_host_may_take_credentials_without_tls() {
        assert!(is_loopback("localhost") && is_loopback("127.0.0.1") && is_loopback("[::1]"));
        assert!(!is_loopback("mail.example.com") && !is_loopback("10.0.0.1"));
    }

    #[test]
    fn retry_after_is_seconds_or_a_date_and_always_capped() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_445_412_480); // 2015-10-21T07:28:00Z
        let seconds = |value: &str| parse_retry_after(value, now);
        assert_eq!(seconds("120"), Some(Duration::from_secs(120)));
        assert_eq!(seconds(" 0 "), Some(Duration::ZERO));
        // The review's panic, a value past u64, and a year: all capped at an hour.
        assert_eq!(seconds("9300000000000000000"), Some(MAX_RETRY_AFTER));
        assert_eq!(
            seconds("99999999999999999999999999999"),
            Some(MAX_RETRY_AFTER)
        );
        assert_eq!(seconds("31536000"), Some(MAX_RETRY_AFTER));
        // HTTP dates: ahead, past (now), far ahead (capped).
        assert_eq!(
            seconds("Wed, 21 Oct 2015 07:30:00 GMT"),
            Some(Duration::from_secs(120))
        );
        assert_eq!(
            seconds("Wed, 21 Oct 2015 07:00:00 GMT"),
            Some(Duration::ZERO)
        );
        assert_eq!(
            seconds("Fri, 31 Dec 9999 23:59:59 GMT"),
            Some(MAX_RETRY_AFTER)
        );
        // Garbage is ignored: the backoff applies.
        for garbage in ["", "-5", "1.5", "soon", "12 s", "\u{1F4A5}"] {
            assert_eq!(seconds(garbage), None, "{garbage:?}");
        }
    }

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
