//! Reading the settings, and the small readers every file in Prometheus's and Alertmanager's formats shares
//! (secrets inline or as files, plain strings, refusals by name).

use std::path::PathBuf;

use dbwatch_secret::{PasswordSource, Secret};
use dbwatch_yaml::node::{Mark, Node};
use dbwatch_yaml::read::{Fields, Reader};

/// Prometheus's common HTTP client settings, the part dbwatch applies.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HttpSettings {
    /// May carry credentials (`http://user:pass@proxy:3128`): kept as a secret so that it never prints.
    pub proxy_url: Option<Secret>,
    pub basic_auth: Option<(String, Option<PasswordSource>)>,
    /// `Authorization: <type> <credentials>` (`bearer_token` is `Bearer`).
    pub authorization: Option<(String, PasswordSource)>,
    /// Prometheus and Alertmanager follow redirects by default; dbwatch only when asked (a redirect re-POSTs
    /// the body, which may carry a key, to wherever the answer points).
    pub follow_redirects: bool,
    pub ca_file: Option<PathBuf>,
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    pub insecure_skip_verify: bool,
}

/// Reads an `http_config:` section.
pub fn read_http_config(reader: &mut Reader<'_>, node: &Node, path: &str) -> HttpSettings {
    let Some(mut fields) = Fields::of(reader, node, path) else {
        return HttpSettings::default();
    };
    let settings = read_inline(reader, &mut fields, node.mark, path);
    fields.finish(reader);
    settings
}

/// Takes the settings' keys out of `fields`, where they sit beside others (as in `remote_write:`); the caller
/// finishes `fields`. `mark` and `path` name the enclosing mapping in messages.
pub fn read_inline(
    reader: &mut Reader<'_>,
    fields: &mut Fields<'_>,
    mark: Mark,
    path: &str,
) -> HttpSettings {
    let mut settings = HttpSettings::default();
    for (key, why) in [
        ("oauth2", "OAuth 2.0 client credentials are not supported"),
        (
            "no_proxy",
            "proxy exclusions are not supported; set proxy_url per endpoint",
        ),
        ("proxy_from_environment", "set proxy_url instead"),
        (
            "proxy_connect_header",
            "proxy CONNECT headers are not supported",
        ),
        ("http_headers", "extra HTTP headers are not supported"),
    ] {
        refuse(reader, fields, key, why);
    }
    // HTTP/2 is negotiated by TLS; the setting changes nothing dbwatch relies on.
    let _ = fields.take("enable_http2");
    settings.proxy_url = plain(reader, fields, "proxy_url").map(Secret::new);
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
    if let Some(token) = secret(reader, fields, "bearer_token", "bearer_token_file") {
        if settings.authorization.is_some() {
            reader.error(mark, path, "set authorization or bearer_token, not both");
        }
        settings.authorization = Some(("Bearer".to_owned(), token));
    }
    if settings.basic_auth.is_some() && settings.authorization.is_some() {
        reader.error(
            mark,
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
                    "only ca_file, cert_file, key_file and insecure_skip_verify are supported for HTTP clients",
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
    settings
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

/// A plain string, for a field neither Prometheus nor Alertmanager templates: `{{` in it is refused rather
/// than sent literally, since it is almost certainly a template meant for another field. Empty or null is the
/// same as absent, as in Alertmanager, whose empty strings mean "use the default" (`smtp_hello: ''`).
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
