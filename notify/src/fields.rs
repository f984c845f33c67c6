//! Readers the whole routing file shares: the `global` defaults, secrets given inline or as files, plain
//! strings, refusals by name, TLS settings. The routing file reader and every integration's reader use them;
//! this module uses neither.

use std::path::PathBuf;

use dbwatch_secret::{PasswordSource, Secret};
use dbwatch_yaml::node::Node;
use dbwatch_yaml::read::{Fields, Reader};

/// The `global` section: defaults the integrations fall back to.
#[derive(Debug, Default)]
pub struct Global {
    pub smtp_from: Option<String>,
    pub smtp_smarthost: Option<String>,
    pub smtp_hello: Option<String>,
    pub smtp_auth_username: Option<String>,
    pub smtp_auth_password: Option<PasswordSource>,
    pub smtp_auth_identity: Option<String>,
    pub smtp_require_tls: Option<bool>,
    pub slack_api_url: Option<PasswordSource>,
    pub pagerduty_url: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsSettings {
    pub ca_file: Option<PathBuf>,
    pub server_name: Option<String>,
    pub insecure_skip_verify: bool,
}

/// Reports `key`, when present, as unsupported, with the reason.
pub fn refuse(reader: &mut Reader<'_>, fields: &mut Fields<'_>, key: &'static str, why: &str) {
    if let Some((node, path)) = fields.take(key) {
        reader.error(
            node.mark,
            &path,
            format!("{key} is not supported by dbwatch: {why}"),
        );
    }
}

/// A secret given inline under `key` or as a file under `key_file`, never both.
pub fn secret(
    reader: &mut Reader<'_>,
    fields: &mut Fields<'_>,
    key: &'static str,
    file_key: &'static str,
) -> Option<PasswordSource> {
    let inline = fields.take(key);
    let file = fields.take(file_key);
    match (inline, file) {
        (Some((node, path)), Some(_)) => {
            reader.error(
                node.mark,
                &path,
                format!("set {key} or {file_key}, not both"),
            );
            None
        }
        // Empty is unset, as in Alertmanager (an empty `smtp_auth_password`, an empty `api_url` falling back to
        // the global one).
        (Some((node, _)), None) | (None, Some((node, _))) if node.is_null() => None,
        (Some((node, path)), None) => reader
            .scalar(node, &path)
            .filter(|value| !value.is_empty())
            .map(|value| PasswordSource::Inline(Secret::new(value))),
        (None, Some((node, path))) => reader
            .scalar(node, &path)
            .filter(|value| !value.is_empty())
            .map(|value| PasswordSource::File(PathBuf::from(value))),
        (None, None) => None,
    }
}

/// A plain string that must not be a Go template. Empty or null is the same as absent, as in Alertmanager,
/// whose empty strings mean "use the default" (`smtp_hello: ''`, `from: ''` falling back to `smtp_from`).
pub fn plain(
    reader: &mut Reader<'_>,
    fields: &mut Fields<'_>,
    key: &'static str,
) -> Option<String> {
    let (node, path) = fields.take(key)?;
    if node.is_null() {
        return None;
    }
    let value = reader.scalar(node, &path)?;
    if value.is_empty() {
        return None;
    }
    if value.contains("{{") {
        reader.error(
            node.mark,
            &path,
            "templates are not supported by dbwatch: it renders its own messages",
        );
        return None;
    }
    Some(value)
}

pub fn read_global(reader: &mut Reader<'_>, node: &Node, path: &str) -> Global {
    let Some(mut fields) = Fields::of(reader, node, path) else {
        return Global::default();
    };
    // Accepted for compatibility: dbwatch's alerts always carry explicit resolves, so there is nothing to time out.
    let _ = fields.take("resolve_timeout");
    refuse(
        reader,
        &mut fields,
        "http_config",
        "proxies and custom HTTP settings are not supported",
    );
    refuse(
        reader,
        &mut fields,
        "smtp_auth_secret",
        "CRAM-MD5 is not supported; use smtp_auth_password",
    );
    let global = Global {
        smtp_from: plain(reader, &mut fields, "smtp_from"),
        smtp_smarthost: plain(reader, &mut fields, "smtp_smarthost"),
        smtp_hello: plain(reader, &mut fields, "smtp_hello"),
        smtp_auth_username: plain(reader, &mut fields, "smtp_auth_username"),
        smtp_auth_password: secret(
            reader,
            &mut fields,
            "smtp_auth_password",
            "smtp_auth_password_file",
        ),
        smtp_auth_identity: plain(reader, &mut fields, "smtp_auth_identity"),
        smtp_require_tls: fields.boolean(reader, "smtp_require_tls"),
        slack_api_url: secret(reader, &mut fields, "slack_api_url", "slack_api_url_file"),
        pagerduty_url: plain(reader, &mut fields, "pagerduty_url"),
    };
    fields.finish(reader);
    global
}

/// Refusals shared by every HTTP integration.
pub fn refuse_common(reader: &mut Reader<'_>, fields: &mut Fields<'_>) {
    refuse(
        reader,
        fields,
        "http_config",
        "proxies and custom HTTP settings are not supported",
    );
}

pub fn read_tls(reader: &mut Reader<'_>, node: &Node, path: &str) -> TlsSettings {
    let mut settings = TlsSettings {
        ca_file: None,
        server_name: None,
        insecure_skip_verify: false,
    };
    let Some(mut fields) = Fields::of(reader, node, path) else {
        return settings;
    };
    for key in [
        "cert_file",
        "key_file",
        "min_version",
        "max_version",
        "ca",
        "cert",
        "key",
    ] {
        refuse(
            reader,
            &mut fields,
            key,
            "only ca_file, server_name and insecure_skip_verify are supported",
        );
    }
    settings.ca_file = plain(reader, &mut fields, "ca_file").map(PathBuf::from);
    settings.server_name = plain(reader, &mut fields, "server_name");
    settings.insecure_skip_verify = fields
        .boolean(reader, "insecure_skip_verify")
        .unwrap_or(false);
    fields.finish(reader);
    settings
}
