//! `--web.config.file`: the exporter-toolkit format every Prometheus exporter accepts, plus one dbwatch key
//! (`write_users`), read and validated once at startup so a wrong path, key or hash stops the daemon with the
//! file and key named instead of at the first scrape.
//!
//! ```yaml
//! tls_server_config:
//!   cert_file: /etc/dbwatch/tls.crt
//!   key_file: /etc/dbwatch/tls.key
//!   client_auth_type: RequireAndVerifyClientCert   # optional; needs client_ca_file
//!   client_ca_file: /etc/dbwatch/clients-ca.crt
//!   min_version: TLS12                             # TLS12 (default) or TLS13
//! http_server_config:
//!   headers: {Strict-Transport-Security: max-age=31536000}
//! basic_auth_users:                                # bcrypt hashes: `htpasswd -nBC 10 "" | tr -d ':\n'`
//!   prometheus: $2y$10$...                         # may read: scrape /metrics, list silences
//!   oncall: $2y$10$...                             # may also write, because it is listed below
//! write_users: [oncall]                            # dbwatch only: who may create and expire silences
//! ```
//!
//! **Reads and writes.** A request whose method is GET, HEAD or OPTIONS is a read; any other method is a
//! write (creating or expiring a silence today, `POST /-/reload` later).
//! - With `basic_auth_users`, every request needs a listed user and its password (401 otherwise), and a write
//!   also needs the user in `write_users` (403 otherwise). Every name in `write_users` must be a
//!   `basic_auth_users` name. Without `write_users` nobody may write, so the credential Prometheus scrapes with
//!   can never mute a page.
//! - Without `basic_auth_users` (no file, an empty file, TLS only), reads are open and writes are refused with
//!   403, unless dbwatch was started with `--web.enable-unauthenticated-writes` (a warning at start names the
//!   address). Even then an unauthenticated write must name the server by an IP address, `localhost` or the
//!   `--web.external-url` host in its `Host` header, so a web page cannot reach it through DNS rebinding.
//! - **Client certificates authenticate reads only.** `client_auth_type: RequireAndVerifyClientCert` keeps out
//!   every client without a certificate from `client_ca_file`, but a certificate names no dbwatch user and
//!   grants no write: such CAs are often shared by many services. Writers need a `write_users` password too.
//! - `/-/healthy` and `/-/ready` answer GET without authentication, so Kubernetes probes (which cannot send
//!   credentials) work with basic auth on; a client certificate is still needed where TLS requires one.
//!
//! A file written for another exporter is valid as it is; other exporters do not know `write_users`.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::http::{HeaderName, HeaderValue};
use dbwatch_yaml::node::{self, Node};
use dbwatch_yaml::read::{Fields, Reader};
use dbwatch_yaml::{ConfigError, ConfigErrors};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};

/// What went wrong with the web configuration file, naming the file and, when there is one, the key.
#[derive(Debug, thiserror::Error)]
pub enum WebConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Parse(ConfigErrors),
    #[error("{path}: {key}: {message}")]
    Invalid {
        path: PathBuf,
        key: String,
        message: String,
    },
}

/// The file as written; unknown keys are errors, as in the dbwatch configuration.
#[derive(Default)]
struct RawWebConfig {
    tls_server_config: Option<RawTls>,
    http_server_config: Option<RawHttp>,
    basic_auth_users: BTreeMap<String, String>,
    /// dbwatch's own key: the `basic_auth_users` who may change state.
    write_users: Vec<String>,
}

struct RawTls {
    cert_file: Option<PathBuf>,
    key_file: Option<PathBuf>,
    client_auth_type: Option<String>,
    client_ca_file: Option<PathBuf>,
    min_version: Option<String>,
    max_version: Option<String>,
}

struct RawHttp {
    headers: BTreeMap<String, String>,
}

impl RawWebConfig {
    fn read(reader: &mut Reader<'_>, root: &Node) -> RawWebConfig {
        let Some(mut fields) = Fields::of(reader, root, "") else {
            return RawWebConfig::default();
        };
        let tls_server_config = fields
            .take("tls_server_config")
            .and_then(|(node, path)| RawTls::read(reader, node, &path));
        let http_server_config = fields
            .take("http_server_config")
            .and_then(|(node, path)| RawHttp::read(reader, node, &path));
        let basic_auth_users = fields
            .take("basic_auth_users")
            .and_then(|(node, path)| reader.labels(node, &path))
            .unwrap_or_default();
        let write_users = fields.strings(reader, "write_users").unwrap_or_default();
        fields.finish(reader);
        RawWebConfig {
            tls_server_config,
            http_server_config,
            basic_auth_users,
            write_users,
        }
    }
}

impl RawTls {
    fn read(reader: &mut Reader<'_>, node: &Node, path: &str) -> Option<RawTls> {
        let mut fields = Fields::of(reader, node, path)?;
        let tls = RawTls {
            cert_file: fields.string(reader, "cert_file").map(PathBuf::from),
            key_file: fields.string(reader, "key_file").map(PathBuf::from),
            client_auth_type: fields.string(reader, "client_auth_type"),
            client_ca_file: fields.string(reader, "client_ca_file").map(PathBuf::from),
            min_version: fields.string(reader, "min_version"),
            max_version: fields.string(reader, "max_version"),
        };
        fields.finish(reader);
        Some(tls)
    }
}

impl RawHttp {
    fn read(reader: &mut Reader<'_>, node: &Node, path: &str) -> Option<RawHttp> {
        let mut fields = Fields::of(reader, node, path)?;
        // Accepted for compatibility with files written for other exporters; dbwatch serves HTTP/1.1.
        let _http2 = fields.boolean(reader, "http2");
        let headers = fields
            .take("headers")
            .and_then(|(node, path)| reader.labels(node, &path))
            .unwrap_or_default();
        fields.finish(reader);
        Some(RawHttp { headers })
    }
}

/// The security headers the exporter-toolkit allows to be set, and only those.
const ALLOWED_HEADERS: [&str; 5] = [
    "Strict-Transport-Security",
    "X-Content-Type-Options",
    "X-Frame-Options",
    "X-XSS-Protection",
    "Content-Security-Policy",
];

/// The validated web configuration: a ready TLS server configuration, the bcrypt hashes, the extra headers.
#[derive(Clone, Default)]
pub struct WebConfig {
    pub(crate) tls: Option<Arc<ServerConfig>>,
    pub(crate) users: Arc<BTreeMap<String, String>>,
    /// The users who may write; all of them are in `users`.
    pub(crate) writers: Arc<BTreeSet<String>>,
    /// Verified against when the user is unknown, at the highest cost among `users`, so an unknown user costs
    /// as much time as a wrong password (L9). Empty when there are no users.
    pub(crate) dummy_hash: Arc<str>,
    pub(crate) headers: Arc<Vec<(HeaderName, HeaderValue)>>,
    /// Set by `--web.enable-unauthenticated-writes`: with no users, writes are accepted from requests whose
    /// `Host` is one of these names (besides IP addresses and `localhost`). `None`: writes need a writer.
    pub(crate) unauthenticated_writes: Option<Arc<Vec<String>>>,
}

/// Never prints the password hashes: they are offline-crackable.
impl fmt::Debug for WebConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebConfig")
            .field("tls", &self.tls.is_some())
            .field("users", &self.users.keys().collect::<Vec<_>>())
            .field("writers", &self.writers)
            .field("headers", &self.headers)
            .finish()
    }
}

impl WebConfig {
    /// True when the endpoint speaks TLS.
    pub fn tls_enabled(&self) -> bool {
        self.tls.is_some()
    }

    /// True when requests need a user and password.
    pub fn basic_auth_enabled(&self) -> bool {
        !self.users.is_empty()
    }

    /// The users who may write (`write_users`).
    pub fn write_users(&self) -> impl Iterator<Item = &str> {
        self.writers.iter().map(String::as_str)
    }

    /// `--web.enable-unauthenticated-writes`: without `basic_auth_users`, accept writes from anyone whose
    /// request names this server by an IP address, `localhost` or one of `hosts` (the external URL's host).
    /// Has no effect when users are configured: then writes always need a `write_users` user.
    /// Whether writes without authentication are accepted (see [`WebConfig::with_unauthenticated_writes`]).
    pub fn unauthenticated_writes_enabled(&self) -> bool {
        self.unauthenticated_writes.is_some()
    }

    pub fn with_unauthenticated_writes(mut self, hosts: Vec<String>) -> WebConfig {
        self.unauthenticated_writes = Some(Arc::new(hosts));
        self
    }

    /// True when writes are accepted without authentication.
    pub fn unauthenticated_writes(&self) -> bool {
        self.unauthenticated_writes.is_some() && !self.basic_auth_enabled()
    }

    /// Reads and validates a web configuration file, loading the certificate, key and client CA it names.
    pub fn load(path: &Path) -> Result<WebConfig, WebConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| WebConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        Self::parse(&text, path, base)
    }

    /// Validates a file's text; relative paths inside it are resolved against `base`, the file's folder, as
    /// the exporter-toolkit does.
    pub fn parse(text: &str, path: &Path, base: &Path) -> Result<WebConfig, WebConfigError> {
        let invalid = |key: &str, message: String| WebConfigError::Invalid {
            path: path.to_owned(),
            key: key.to_owned(),
            message,
        };
        // An empty file is valid and means plain HTTP without authentication.
        let raw = parse_raw(text).map_err(|errors| {
            WebConfigError::Parse(ConfigErrors {
                file: path.to_owned(),
                errors,
            })
        })?;

        for (user, hash) in &raw.basic_auth_users {
            let key = format!("basic_auth_users.{user}");
            if user.is_empty() || user.contains(':') {
                return Err(invalid(
                    &key,
                    "a user name must be non-empty and contain no ':'".to_owned(),
                ));
            }
            // Verifying a dummy password checks the hash's format and cost without knowing the password.
            bcrypt::verify("", hash).map_err(|_| {
                invalid(
                    &key,
                    "not a bcrypt hash ($2a$, $2b$ or $2y$, 60 characters)".to_owned(),
                )
            })?;
        }

        let mut writers = BTreeSet::new();
        for (index, user) in raw.write_users.iter().enumerate() {
            if !raw.basic_auth_users.contains_key(user) {
                return Err(invalid(
                    &format!("write_users[{index}]"),
                    format!("{user:?} is not one of basic_auth_users"),
                ));
            }
            writers.insert(user.clone());
        }
        let dummy_hash = dummy_hash(&raw.basic_auth_users)
            .map_err(|error| invalid("basic_auth_users", error.to_string()))?;

        let mut headers = Vec::new();
        if let Some(http) = &raw.http_server_config {
            for (name, value) in &http.headers {
                let key = format!("http_server_config.headers.{name}");
                let Some(allowed) = ALLOWED_HEADERS
                    .iter()
                    .find(|allowed| allowed.eq_ignore_ascii_case(name))
                else {
                    return Err(invalid(
                        &key,
                        format!("header not allowed; one of {}", ALLOWED_HEADERS.join(", ")),
                    ));
                };
                let value = HeaderValue::from_str(value)
                    .map_err(|_| invalid(&key, "not a valid header value".to_owned()))?;
                headers.push((HeaderName::from_static(lowercase(allowed)), value));
            }
        }

        let tls = match raw.tls_server_config {
            None => None,
            Some(tls) => Some(Arc::new(server_config(&tls, base, &invalid)?)),
        };
        Ok(WebConfig {
            tls,
            users: Arc::new(raw.basic_auth_users),
            writers: Arc::new(writers),
            dummy_hash: dummy_hash.into(),
            headers: Arc::new(headers),
            unauthenticated_writes: None,
        })
    }
}

/// The file's keys, every problem reported with its line, column and key path. Nothing is expanded: the format
/// has no `${VAR}`, and a bcrypt hash is full of `$`.
fn parse_raw(text: &str) -> Result<RawWebConfig, Vec<ConfigError>> {
    let root = node::parse(text).map_err(|error| {
        vec![ConfigError {
            line: error.mark.line,
            column: error.mark.column,
            path: String::new(),
            message: format!("invalid YAML: {}", error.message),
        }]
    })?;
    let mut reader = Reader::literal();
    let raw = RawWebConfig::read(&mut reader, &root);
    if reader.errors.is_empty() {
        Ok(raw)
    } else {
        Err(reader.errors)
    }
}

/// A hash of a random password at the highest cost among the configured hashes (`$2y$12$...` has cost 12);
/// empty when there are no users.
fn dummy_hash(users: &BTreeMap<String, String>) -> Result<String, bcrypt::BcryptError> {
    let cost = users
        .values()
        .filter_map(|hash| hash.get(4..6)?.parse::<u32>().ok())
        .max();
    match cost {
        None => Ok(String::new()),
        Some(cost) => {
            let password: u128 = rand::random();
            bcrypt::hash(format!("{password:032x}"), cost)
        }
    }
}

fn lowercase(header: &'static str) -> &'static str {
    match header {
        "Strict-Transport-Security" => "strict-transport-security",
        "X-Content-Type-Options" => "x-content-type-options",
        "X-Frame-Options" => "x-frame-options",
        "X-XSS-Protection" => "x-xss-protection",
        _ => "content-security-policy",
    }
}

fn tls_version(
    value: &str,
    key: &str,
    invalid: &dyn Fn(&str, String) -> WebConfigError,
) -> Result<&'static rustls::SupportedProtocolVersion, WebConfigError> {
    match value {
        "TLS12" => Ok(&rustls::version::TLS12),
        "TLS13" => Ok(&rustls::version::TLS13),
        "TLS10" | "TLS11" => Err(invalid(
            key,
            format!("{value} is obsolete and not supported; use TLS12 or TLS13"),
        )),
        other => Err(invalid(
            key,
            format!("unknown TLS version {other:?}; use TLS12 or TLS13"),
        )),
    }
}

fn server_config(
    tls: &RawTls,
    base: &Path,
    invalid: &dyn Fn(&str, String) -> WebConfigError,
) -> Result<ServerConfig, WebConfigError> {
    let resolve = |file: &Path| base.join(file);
    let cert_file = tls.cert_file.as_deref().map(resolve).ok_or_else(|| {
        invalid(
            "tls_server_config.cert_file",
            "required with tls_server_config".to_owned(),
        )
    })?;
    let key_file = tls.key_file.as_deref().map(resolve).ok_or_else(|| {
        invalid(
            "tls_server_config.key_file",
            "required with tls_server_config".to_owned(),
        )
    })?;
    let certs = CertificateDer::pem_file_iter(&cert_file)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|error| {
            invalid(
                "tls_server_config.cert_file",
                format!(
                    "cannot load certificates from {}: {error}",
                    cert_file.display()
                ),
            )
        })?;
    if certs.is_empty() {
        return Err(invalid(
            "tls_server_config.cert_file",
            format!("no certificate in {}", cert_file.display()),
        ));
    }
    let key = PrivateKeyDer::from_pem_file(&key_file).map_err(|error| {
        invalid(
            "tls_server_config.key_file",
            format!(
                "cannot load a private key from {}: {error}",
                key_file.display()
            ),
        )
    })?;

    let min = tls_version(
        tls.min_version.as_deref().unwrap_or("TLS12"),
        "tls_server_config.min_version",
        invalid,
    )?;
    let max = tls_version(
        tls.max_version.as_deref().unwrap_or("TLS13"),
        "tls_server_config.max_version",
        invalid,
    )?;
    let versions: Vec<&'static rustls::SupportedProtocolVersion> =
        [&rustls::version::TLS12, &rustls::version::TLS13]
            .into_iter()
            .filter(|version| {
                let number = u16::from(version.version);
                number >= u16::from(min.version) && number <= u16::from(max.version)
            })
            .collect();
    if versions.is_empty() {
        return Err(invalid(
            "tls_server_config.max_version",
            "lower than min_version".to_owned(),
        ));
    }

    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_protocol_versions(&versions)
        .map_err(|error| invalid("tls_server_config.min_version", error.to_string()))?;

    let client_auth = tls.client_auth_type.as_deref().unwrap_or("NoClientCert");
    let builder = match client_auth {
        "NoClientCert" => builder.with_no_client_auth(),
        "VerifyClientCertIfGiven" | "RequireAndVerifyClientCert" => {
            let ca_file = tls.client_ca_file.as_deref().map(resolve).ok_or_else(|| {
                invalid(
                    "tls_server_config.client_ca_file",
                    format!("required with client_auth_type {client_auth}"),
                )
            })?;
            let mut roots = RootCertStore::empty();
            let cas = CertificateDer::pem_file_iter(&ca_file)
                .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
                .map_err(|error| {
                    invalid(
                        "tls_server_config.client_ca_file",
                        format!(
                            "cannot load certificates from {}: {error}",
                            ca_file.display()
                        ),
                    )
                })?;
            let (added, _ignored) = roots.add_parsable_certificates(cas);
            if added == 0 {
                return Err(invalid(
                    "tls_server_config.client_ca_file",
                    format!("no usable CA certificate in {}", ca_file.display()),
                ));
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
            let verifier = if client_auth == "VerifyClientCertIfGiven" {
                verifier.allow_unauthenticated()
            } else {
                verifier
            };
            let verifier = verifier
                .build()
                .map_err(|error| invalid("tls_server_config.client_ca_file", error.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        }
        "RequestClientCert" | "RequireAnyClientCert" => {
            // Accepting a certificate without verifying it authenticates nobody; refuse rather than pretend.
            return Err(invalid(
                "tls_server_config.client_auth_type",
                format!(
                    "{client_auth} accepts unverified certificates and is not supported; use \
                     VerifyClientCertIfGiven or RequireAndVerifyClientCert with client_ca_file"
                ),
            ));
        }
        other => {
            return Err(invalid(
                "tls_server_config.client_auth_type",
                format!(
                    "unknown value {other:?}; one of NoClientCert, VerifyClientCertIfGiven, \
                     RequireAndVerifyClientCert"
                ),
            ))
        }
    };
    if tls.client_ca_file.is_some() && client_auth == "NoClientCert" {
        return Err(invalid(
            "tls_server_config.client_ca_file",
            "set, but client_auth_type is NoClientCert: no client certificate would be checked"
                .to_owned(),
        ));
    }
    let mut config = builder.with_single_cert(certs, key).map_err(|error| {
        invalid(
            "tls_server_config.key_file",
            format!("does not match the certificate in cert_file: {error}"),
        )
    })?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_dummy_hash_costs_as_much_as_the_dearest_user() {
        let users: BTreeMap<String, String> = [("a", 4), ("b", 6), ("c", 5)]
            .into_iter()
            .map(|(user, cost)| {
                let hash = bcrypt::hash("pw", cost).expect("hash");
                (user.to_owned(), hash)
            })
            .collect();
        let dummy = dummy_hash(&users).expect("dummy");
        assert_eq!(dummy.get(..7), Some("$2b$06$"), "{dummy}");
        assert_eq!(dummy_hash(&BTreeMap::new()).expect("none"), "");
    }
}
