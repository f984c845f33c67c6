//! Email over SMTP: the `email_configs` entry, its text and HTML message (threaded per group episode through
//! Message-ID and In-Reply-To), and its SMTP session (STARTTLS or implicit TLS; 5yz replies are permanent).
//!
//! As in Alertmanager, `to`, `from`, every `headers` value (`Subject` among them), `html` and `text` are
//! templates, rendered when the message is queued; `html` is rendered with HTML escaping (`safeHtml` exempt).
//! Unset, or when its template fails, the subject and the bodies are dbwatch's built-in ones. `to` and `from`
//! have no built-in value: a failed template there leaves its text as written, which the SMTP send refuses
//! (dead-lettered, and the template failure counted).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use lettre::message::header::{HeaderName, HeaderValue};
use lettre::message::{Mailbox, MultiPart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use super::{mismatch, read_secret, BoxFuture, Integration, Kind, Outcome};
use crate::fields::{plain, read_tls, refuse, secret, Global, TlsSettings};
use crate::render::{group_hash, rfc3339, Notice};
use crate::store::Payload;
use crate::template::{render_or, TemplatedField};
use dbwatch_secret::PasswordSource;
use dbwatch_yaml::node::Node;
use dbwatch_yaml::read::{Fields, Reader};

#[derive(Debug, Clone)]
pub struct EmailConfig {
    /// Comma-separated addresses, after rendering.
    pub to: TemplatedField,
    pub from: TemplatedField,
    /// `host:port`.
    pub smarthost: String,
    pub hello: String,
    pub auth_username: Option<String>,
    pub auth_password: Option<PasswordSource>,
    pub auth_identity: Option<String>,
    pub require_tls: bool,
    /// Port 465 or `force_implicit_tls`: TLS from the first byte; otherwise STARTTLS.
    pub implicit_tls: bool,
    pub tls: TlsSettings,
    pub headers: BTreeMap<String, TemplatedField>,
    pub html: Option<TemplatedField>,
    pub text: Option<TemplatedField>,
    pub send_resolved: bool,
}

impl Integration for EmailConfig {
    fn kind(&self) -> Kind {
        Kind::Email
    }

    fn send_resolved(&self) -> bool {
        self.send_resolved
    }

    fn render(&self, notice: &Notice<'_>) -> Payload {
        render(self, notice)
    }

    fn send<'a>(
        &'a self,
        _client: &'a reqwest::Client,
        payload: &'a Payload,
        timeout: Duration,
    ) -> BoxFuture<'a, Outcome> {
        Box::pin(async move {
            if !matches!(payload, Payload::Email { .. }) {
                return mismatch(Kind::Email);
            }
            match tokio::time::timeout(timeout, send_email(self, payload)).await {
                Ok(outcome) => outcome,
                Err(_) => Outcome::Retry {
                    reason: format!(
                        "smtp session to {} timed out after {timeout:?}",
                        self.smarthost
                    ),
                    retry_after: None,
                },
            }
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
    let templates = &global.templates;
    refuse(
        reader,
        &mut fields,
        "threading",
        "dbwatch threads every group's messages itself (Message-ID, In-Reply-To)",
    );
    let html = TemplatedField::read(reader, &mut fields, "html", templates);
    let text = TemplatedField::read(reader, &mut fields, "text", templates);
    refuse(
        reader,
        &mut fields,
        "auth_secret",
        "CRAM-MD5 is not supported; use auth_password",
    );
    refuse(
        reader,
        &mut fields,
        "auth_secret_file",
        "CRAM-MD5 is not supported; use auth_password_file",
    );
    let to = TemplatedField::read(reader, &mut fields, "to", templates);
    if to.is_none() {
        reader.error(node.mark, path, "to is required");
    }
    let from = TemplatedField::read(reader, &mut fields, "from", templates).or_else(|| {
        let global_from = global.smtp_from.as_deref()?;
        TemplatedField::parse("smtp_from", global_from, templates).ok()
    });
    if from.is_none() {
        reader.error(node.mark, path, "no from and no global smtp_from");
    }
    let smarthost =
        plain(reader, &mut fields, "smarthost").or_else(|| global.smtp_smarthost.clone());
    if smarthost.is_none() {
        reader.error(node.mark, path, "no smarthost and no global smtp_smarthost");
    }
    if let Some(host) = &smarthost {
        if split_smarthost(host).is_none() {
            reader.error(
                node.mark,
                &format!("{path}.smarthost"),
                format!(
                    "expected host:port (the port a number or smtp, submission, smtps, submissions), found \
                     {host:?}"
                ),
            );
        }
    }
    let force_implicit_tls = fields.boolean(reader, "force_implicit_tls");
    let tls = match fields.take("tls_config") {
        Some((tls_node, tls_path)) => read_tls(reader, tls_node, &tls_path),
        None => TlsSettings {
            ca_file: None,
            server_name: None,
            insecure_skip_verify: false,
        },
    };
    let headers = match fields.take("headers") {
        Some((headers_node, headers_path)) => {
            let mut headers = BTreeMap::new();
            for (name, value) in reader
                .labels(headers_node, &headers_path)
                .unwrap_or_default()
            {
                match TemplatedField::parse(&format!("headers.{name}"), &value, templates) {
                    Ok(field) => {
                        headers.insert(name, field);
                    }
                    Err(error) => reader.error(
                        headers_node.mark,
                        &format!("{headers_path}.{name}"),
                        error.to_string(),
                    ),
                }
            }
            headers
        }
        None => BTreeMap::new(),
    };
    let auth_password = secret(reader, &mut fields, "auth_password", "auth_password_file")
        .or_else(|| global.smtp_auth_password.clone());
    let config = EmailConfig {
        to: to?,
        from: from?,
        implicit_tls: force_implicit_tls
            .unwrap_or_else(|| smarthost.as_deref().is_some_and(|h| h.ends_with(":465"))),
        smarthost: smarthost?,
        hello: plain(reader, &mut fields, "hello")
            .or_else(|| global.smtp_hello.clone())
            .unwrap_or_else(|| "localhost".to_owned()),
        auth_username: plain(reader, &mut fields, "auth_username")
            .or_else(|| global.smtp_auth_username.clone()),
        auth_password,
        auth_identity: plain(reader, &mut fields, "auth_identity")
            .or_else(|| global.smtp_auth_identity.clone()),
        require_tls: fields
            .boolean(reader, "require_tls")
            .or(global.smtp_require_tls)
            .unwrap_or(true),
        tls,
        headers,
        html,
        text,
        send_resolved: fields.boolean(reader, "send_resolved").unwrap_or(false),
    };
    fields.finish(reader);
    Some(Arc::new(config))
}

/// The thread root of a group's episode: the first message's Message-ID, which later ones reply to.
pub fn thread_root(group_key: &str, episode: i64) -> String {
    format!("<alert-{}.{episode}@dbwatch>", &group_hash(group_key)[..16])
}

pub fn render(config: &EmailConfig, notice: &Notice<'_>) -> Payload {
    let root = thread_root(notice.group_key, notice.episode);
    let (message_id, in_reply_to) = if notice.first_of_episode {
        (root, None)
    } else {
        (
            format!(
                "<alert-{}.{}.{}@dbwatch>",
                &group_hash(notice.group_key)[..16],
                notice.episode,
                notice.now
            ),
            Some(root),
        )
    };
    let subject = match header(config, "Subject") {
        Some(field) => field.render(notice, || notice.title()),
        None => notice.title(),
    };
    let to: Vec<String> = config
        .to
        .render(notice, || config.to.source().to_owned())
        .split(',')
        .map(|address| address.trim().to_owned())
        .filter(|address| !address.is_empty())
        .collect();
    let from = config
        .from
        .render(notice, || config.from.source().to_owned());
    let headers: BTreeMap<String, String> = config
        .headers
        .iter()
        .filter(|(name, _)| !name.eq_ignore_ascii_case("subject"))
        .map(|(name, field)| {
            (
                name.clone(),
                field.render(notice, || field.source().to_owned()),
            )
        })
        .collect();
    let text = render_or(&config.text, notice, || builtin_text(notice));
    let html = match &config.html {
        Some(field) => field.render_html(notice, || builtin_html(notice)),
        None => builtin_html(notice),
    };
    Payload::Email {
        subject,
        text,
        html,
        message_id,
        in_reply_to,
        to: Some(to),
        from: Some(from),
        headers: Some(headers),
    }
}

/// The header `name` (case-insensitive, as mail headers are).
fn header<'a>(config: &'a EmailConfig, name: &str) -> Option<&'a TemplatedField> {
    config
        .headers
        .iter()
        .find(|(key, _)| key.eq_ignore_ascii_case(name))
        .map(|(_, field)| field)
}

fn builtin_text(notice: &Notice<'_>) -> String {
    render_text_and_html(notice).0
}

fn builtin_html(notice: &Notice<'_>) -> String {
    render_text_and_html(notice).1
}

/// dbwatch's built-in bodies.
fn render_text_and_html(notice: &Notice<'_>) -> (String, String) {
    let mut text = format!("{}\n\n", notice.title());
    let mut html = format!(
        "<!DOCTYPE html><html><body><h2>{}</h2><table border=\"1\" cellpadding=\"4\" cellspacing=\"0\">\
         <tr><th>Status</th><th>Alert</th><th>Summary</th><th>Labels</th><th>Since</th></tr>",
        crate::html::escape(&notice.title())
    );
    for alert in notice.alerts() {
        let state = if alert.ends_at.is_some() {
            "RESOLVED"
        } else {
            "FIRING"
        };
        let name = alert
            .labels
            .get("alertname")
            .map(String::as_str)
            .unwrap_or("alert");
        let summary = alert
            .annotations
            .get("summary")
            .map(String::as_str)
            .unwrap_or("");
        let labels: Vec<String> = alert
            .labels
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        let _ = writeln!(
            text,
            "[{state}] {name}: {summary}\n  labels: {}\n  since: {}",
            labels.join(", "),
            rfc3339(alert.starts_at)
        );
        if let Some(runbook) = alert.annotations.get("runbook_url") {
            let _ = writeln!(text, "  runbook: {runbook}");
        }
        let _ = write!(
            html,
            "<tr><td>{state}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            crate::html::escape(name),
            crate::html::escape(summary),
            crate::html::escape(&labels.join(", ")),
            rfc3339(alert.starts_at)
        );
    }
    html.push_str("</table>");
    if !notice.external_url.is_empty() {
        let _ = write!(text, "\n{}\n", notice.external_url);
        let _ = write!(
            html,
            "<p><a href=\"{0}\">{0}</a></p>",
            crate::html::escape(notice.external_url)
        );
    }
    html.push_str("</body></html>");
    (text, html)
}

async fn send_email(config: &EmailConfig, payload: &Payload) -> Outcome {
    let Payload::Email {
        subject,
        text,
        html,
        message_id,
        in_reply_to,
        to,
        from,
        headers,
    } = payload
    else {
        return Outcome::Permanent {
            reason: "not an email payload".into(),
        };
    };
    // An entry queued before templating carries none of these: the configuration's own, rendered statically.
    let config_to;
    let to = match to {
        Some(to) => to,
        None => {
            config_to = split_addresses(config.to.source());
            &config_to
        }
    };
    let from = from.as_deref().unwrap_or(config.from.source());
    let config_headers;
    let headers = match headers {
        Some(headers) => headers,
        None => {
            config_headers = config
                .headers
                .iter()
                .map(|(name, field)| (name.clone(), field.source().to_owned()))
                .collect();
            &config_headers
        }
    };
    let envelope = Envelope {
        to,
        from,
        headers,
        subject,
        message_id,
        in_reply_to: in_reply_to.as_deref(),
    };
    let message = match build_message(&envelope, text, html) {
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

fn split_addresses(text: &str) -> Vec<String> {
    text.split(',')
        .map(|address| address.trim().to_owned())
        .filter(|address| !address.is_empty())
        .collect()
}

/// Who a message goes to and its headers, as rendered.
struct Envelope<'a> {
    to: &'a [String],
    from: &'a str,
    headers: &'a BTreeMap<String, String>,
    subject: &'a str,
    message_id: &'a str,
    in_reply_to: Option<&'a str>,
}

fn build_message(envelope: &Envelope<'_>, text: &str, html: &str) -> Result<Message, String> {
    let Envelope {
        to,
        from,
        headers,
        subject,
        message_id,
        in_reply_to,
    } = *envelope;
    let from: Mailbox = from
        .parse()
        .map_err(|error| format!("invalid from address {from:?}: {error}"))?;
    let mut builder = Message::builder()
        .from(from)
        .subject(subject)
        .message_id(Some(message_id.to_owned()));
    for to in to {
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
    for (name, value) in headers {
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

/// `host:port` as Alertmanager takes it: Go's `net.SplitHostPort`, the port required, the host may be empty
/// (Go then dials this host), the port a number or a service name.
fn split_smarthost(smarthost: &str) -> Option<(String, u16)> {
    let (host, port) = smarthost.rsplit_once(':')?;
    let port = match port {
        "smtp" => 25,
        "submission" => 587,
        "smtps" | "submissions" => 465,
        number => number.parse::<u16>().ok()?,
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let host = if host.is_empty() { "localhost" } else { host };
    Some((host.to_owned(), port))
}

fn transport(config: &EmailConfig) -> Result<AsyncSmtpTransport<Tokio1Executor>, Outcome> {
    let permanent = |reason: String| Outcome::Permanent { reason };
    let (host, port) = split_smarthost(&config.smarthost)
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

    #[test]
    fn smarthosts_split_as_go_does() {
        assert_eq!(split_smarthost("mail:25"), Some(("mail".into(), 25)));
        assert_eq!(split_smarthost(":25"), Some(("localhost".into(), 25)));
        assert_eq!(
            split_smarthost("mail.example.com:submission"),
            Some(("mail.example.com".into(), 587))
        );
        assert_eq!(split_smarthost("[::1]:465"), Some(("::1".into(), 465)));
        assert_eq!(split_smarthost("mail"), None);
        assert_eq!(split_smarthost("mail:"), None);
        assert_eq!(split_smarthost("mail:70000"), None);
    }

    #[test]
    fn only_a_relay_on_this_host_may_take_credentials_without_tls() {
        assert!(is_loopback("localhost") && is_loopback("127.0.0.1") && is_loopback("[::1]"));
        assert!(!is_loopback("mail.example.com") && !is_loopback("10.0.0.1"));
    }
}
