//! Readers the whole routing file shares: the `global` defaults (and the routing file's templates), secrets
//! given inline or as files, plain strings, refusals by name, TLS settings. The routing file reader and every
//! integration's reader use them; this module uses neither. Fields Alertmanager templates are read with
//! [`crate::template::TemplatedField::read`] instead of [`plain`].

use std::path::PathBuf;

use dbwatch_secret::{PasswordSource, Secret};
use dbwatch_yaml::node::Node;
use dbwatch_yaml::read::{Fields, Reader};

use crate::template::Templates;

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
    pub opsgenie_api_url: Option<String>,
    pub opsgenie_api_key: Option<PasswordSource>,
    pub victorops_api_url: Option<String>,
    pub victorops_api_key: Option<PasswordSource>,
    pub telegram_api_url: Option<String>,
    pub webex_api_url: Option<String>,
    /// The global `http_config`: used by every HTTP integration that has none of its own.
    pub http_config: Option<HttpSettings>,
    /// The routing file's `templates:` over Alertmanager's defaults: what templated fields are parsed against.
    pub templates: Templates,
}

/// Prometheus's common HTTP client settings (`http_config`), the part dbwatch applies.
#[derive(Debug, Clone, Default)]
pub struct HttpSettings {
    /// May carry credentials (`http://user:pass@proxy:3128`): kept as a secret so that it never prints.
    pub proxy_url: Option<Secret>,
    pub basic_auth: Option<(String, Option<PasswordSource>)>,
    /// `Authorization: <type> <credentials>` (`bearer_token` is `Bearer`).
    pub authorization: Option<(String, PasswordSource)>,
    /// Alertmanager follows redirects by default; dbwatch only when asked (a redirect re-POSTs the body, which
    /// may carry a key, to wherever the answer points).
    pub follow_redirects: bool,
    pub ca_file: Option<PathBuf>,
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    pub insecure_skip_verify: bool,
}

/// Reads an `http_config` section.
pub fn read_http_config(reader: &mut Reader<'_>, node: &Node, path: &str) -> HttpSettings {
    let mut settings = HttpSettings::default();
    let Some(mut fields) = Fields::of(reader, node, path) else {
        return settings;
    };
    for (key, why) in [
        ("oauth2", "OAuth 2.0 client credentials are not supported"),
        (
            "no_proxy",
            "proxy exclusions are not supported; set proxy_url per receiver",
        ),
        ("proxy_from_environment", "set proxy_url instead"),
        (
            "proxy_connect_header",
            "proxy CONNECT headers are not supported",
        ),
        ("http_headers", "extra HTTP headers are not supported"),
    ] {
        refuse(reader, &mut fields, key, why);
    }
    // HTTP/2 is negotiated by TLS; the setting changes nothing dbwatch relies on.
    let _ = fields.take("enable_http2");
    settings.proxy_url = plain(reader, &mut fields, "proxy_url").map(Secret::new);
    if let Some((auth_node, auth_path)) = fields.take("basic_auth") {
        if let Some(mut auth) = Fields::of(reader, auth_node, &auth_path) {
            let username = plain(reader, &mut auth, "username").unwrap_or_default();
            let password = secret(reader, &mut auth, "password", "password_file");
            auth.finish(reader);
            settings.basic_auth = Some((username, password));
        }
    }
    if let Some((auth_node, auth_path)) = fields.take("authorization") {
        if let Some(mut auth) = Fields::of(reader, auth_node, &auth_path) {
            let kind = plain(reader, &mut auth, "type").unwrap_or_else(|| "Bearer".to_owned());
            let credentials = secret(reader, &mut auth, "credentials", "credentials_file");
            auth.finish(reader);
            match credentials {
                Some(credentials) => settings.authorization = Some((kind, credentials)),
                None => reader.error(
                    auth_node.mark,
                    &auth_path,
                    "credentials or credentials_file is required",
                ),
            }
        }
    }
    if let Some(token) = secret(reader, &mut fields, "bearer_token", "bearer_token_file") {
        if settings.authorization.is_some() {
            reader.error(
                node.mark,
                path,
                "set authorization or bearer_token, not both",
            );
        }
        settings.authorization = Some(("Bearer".to_owned(), token));
    }
    if settings.basic_auth.is_some() && settings.authorization.is_some() {
        reader.error(
            node.mark,
            path,
            "at most one of basic_auth, authorization and bearer_token may be set",
        );
    }
    settings.follow_redirects = fields.boolean(reader, "follow_redirects").unwrap_or(false);
    if let Some((tls_node, tls_path)) = fields.take("tls_config") {
        if let Some(mut tls) = Fields::of(reader, tls_node, &tls_path) {
            for key in [
                "server_name",
                "min_version",
                "max_version",
                "ca",
                "cert",
                "key",
            ] {
                refuse(
                    reader,
                    &mut tls,
                    key,
                    "only ca_file, cert_file, key_file and insecure_skip_verify are supported for receivers",
                );
            }
            settings.ca_file = plain(reader, &mut tls, "ca_file").map(PathBuf::from);
            settings.cert_file = plain(reader, &mut tls, "cert_file").map(PathBuf::from);
            settings.key_file = plain(reader, &mut tls, "key_file").map(PathBuf::from);
            settings.insecure_skip_verify =
                tls.boolean(reader, "insecure_skip_verify").unwrap_or(false);
            if settings.cert_file.is_some() != settings.key_file.is_some() {
                reader.error(
                    tls_node.mark,
                    &tls_path,
                    "cert_file and key_file go together",
                );
            }
            tls.finish(reader);
        }
    }
    fields.finish(reader);
    settings
}

/// An HTTP integration's `http_config`, or the global one.
pub fn http_config(
    reader: &mut Reader<'_>,
    fields: &mut Fields<'_>,
    global: &Global,
) -> Option<HttpSettings> {
    match fields.take("http_config") {
        Some((node, path)) => Some(read_http_config(reader, node, &path)),
        None => global.http_config.clone(),
    }
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

/// [`secret`], or `fallback` (a global default) when neither key is given; without either, reports `missing`
/// on the entry, unless the keys themselves were already reported (given both, or not a string).
#[allow(clippy::too_many_arguments)]
pub fn required_secret(
    reader: &mut Reader<'_>,
    fields: &mut Fields<'_>,
    node: &Node,
    path: &str,
    key: &'static str,
    file_key: &'static str,
    fallback: Option<&PasswordSource>,
    missing: &str,
) -> Option<PasswordSource> {
    let before = reader.errors.len();
    let found = secret(reader, fields, key, file_key).or_else(|| fallback.cloned());
    if found.is_none() && reader.errors.len() == before {
        reader.error(node.mark, path, missing);
    }
    found
}

/// A plain string, for a field Alertmanager does not template: `{{` in it is refused rather than sent
/// literally, since it is almost certainly a template meant for another field. Empty or null is the same as
/// absent, as in Alertmanager, whose empty strings mean "use the default" (`smtp_hello: ''`).
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
            format!("{key} is not a templated field (Alertmanager does not template it either)"),
        );
        return None;
    }
    Some(value)
}

/// Global defaults of receiver types dbwatch does not send to: refused by name, so that a dropped-in file says
/// which receiver is missing rather than "unknown key".
const UNSUPPORTED_GLOBAL: &[(&str, &str)] = &[
    ("wechat_api_url", WECHAT),
    ("wechat_api_secret", WECHAT),
    ("wechat_api_corp_id", WECHAT),
    ("jira_api_url", JIRA),
    ("rocketchat_api_url", ROCKETCHAT),
    ("rocketchat_token", ROCKETCHAT),
    ("rocketchat_token_file", ROCKETCHAT),
    ("rocketchat_token_id", ROCKETCHAT),
    ("rocketchat_token_id_file", ROCKETCHAT),
];
const WECHAT: &str = "dbwatch has no wechat_configs; send WeChat alerts through an Alertmanager \
                      (alerting.alertmanagers) or a webhook bridge";
const JIRA: &str = "dbwatch has no jira_configs; send Jira alerts through an Alertmanager \
                    (alerting.alertmanagers) or a webhook bridge";
const ROCKETCHAT: &str = "dbwatch has no rocketchat_configs; send Rocket.Chat alerts through an \
                          Alertmanager (alerting.alertmanagers) or a webhook bridge";

pub fn read_global(reader: &mut Reader<'_>, node: &Node, path: &str) -> Global {
    let Some(mut fields) = Fields::of(reader, node, path) else {
        return Global::default();
    };
    // Accepted for compatibility: dbwatch's alerts always carry explicit resolves, so there is nothing to time out.
    let _ = fields.take("resolve_timeout");
    let http_config = fields
        .take("http_config")
        .map(|(node, path)| read_http_config(reader, node, &path));
    refuse(
        reader,
        &mut fields,
        "smtp_auth_secret",
        "CRAM-MD5 is not supported; use smtp_auth_password",
    );
    for (key, why) in UNSUPPORTED_GLOBAL {
        refuse(reader, &mut fields, key, why);
    }
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
        opsgenie_api_url: plain(reader, &mut fields, "opsgenie_api_url"),
        opsgenie_api_key: secret(
            reader,
            &mut fields,
            "opsgenie_api_key",
            "opsgenie_api_key_file",
        ),
        victorops_api_url: plain(reader, &mut fields, "victorops_api_url"),
        victorops_api_key: secret(
            reader,
            &mut fields,
            "victorops_api_key",
            "victorops_api_key_file",
        ),
        telegram_api_url: plain(reader, &mut fields, "telegram_api_url"),
        webex_api_url: plain(reader, &mut fields, "webex_api_url"),
        http_config,
        templates: Templates::default(),
    };
    fields.finish(reader);
    global
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
