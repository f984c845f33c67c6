//! Readers the whole routing file shares: the `global` defaults (and the routing file's templates), secrets
//! given inline or as files, plain strings, refusals by name, TLS settings. The routing file reader and every
//! integration's reader use them; this module uses neither. Fields Alertmanager templates are read with
//! [`crate::template::TemplatedField::read`] instead of [`plain`].

use std::path::PathBuf;

use dbwatch_secret::PasswordSource;
use dbwatch_yaml::node::Node;
use dbwatch_yaml::read::{Fields, Reader};

use crate::template::Templates;

pub use dbwatch_httpclient::read::{plain, read_http_config, refuse, secret, HttpSettings};

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
