//! Building a client from [`HttpSettings`] and authorizing a request with them.

use std::path::{Path, PathBuf};
use std::time::Duration;

use dbwatch_secret::PasswordSource;

use crate::read::HttpSettings;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// A file the settings name cannot be read now; it may be mid-rotation, so the caller may try again.
    #[error("cannot read {what} {}: {source}", path.display())]
    Unreadable {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// What the settings or their files hold is not valid: trying again changes nothing.
    #[error("{what}: {reason}")]
    Invalid { what: String, reason: String },
}

impl ClientError {
    /// Whether trying again later may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(self, ClientError::Unreadable { .. })
    }
}

/// A client with the settings' proxy, TLS and redirect policy; `connect_timeout` bounds each connection.
pub fn build(
    settings: &HttpSettings,
    connect_timeout: Duration,
) -> Result<reqwest::Client, ClientError> {
    let mut builder = reqwest::Client::builder()
        .connect_timeout(connect_timeout)
        .user_agent(concat!("dbwatch/", env!("CARGO_PKG_VERSION")))
        .redirect(if settings.follow_redirects {
            reqwest::redirect::Policy::limited(10)
        } else {
            reqwest::redirect::Policy::none()
        })
        .danger_accept_invalid_certs(settings.insecure_skip_verify);
    if let Some(proxy) = &settings.proxy_url {
        // The error would print the URL, credentials included.
        let proxy = reqwest::Proxy::all(proxy.expose()).map_err(|_| ClientError::Invalid {
            what: "proxy_url".to_owned(),
            reason: "not a valid proxy URL".to_owned(),
        })?;
        builder = builder.proxy(proxy);
    }
    if let Some(ca_file) = &settings.ca_file {
        let pem = read(ca_file, "tls_config ca_file")?;
        let certificates =
            reqwest::Certificate::from_pem_bundle(&pem).map_err(|error| ClientError::Invalid {
                what: format!("tls_config ca_file {}", ca_file.display()),
                reason: error.to_string(),
            })?;
        for certificate in certificates {
            builder = builder.add_root_certificate(certificate);
        }
    }
    if let (Some(cert_file), Some(key_file)) = (&settings.cert_file, &settings.key_file) {
        let mut pem = read(cert_file, "tls_config cert_file")?;
        pem.extend_from_slice(b"\n");
        pem.extend_from_slice(&read(key_file, "tls_config key_file")?);
        let identity = reqwest::Identity::from_pem(&pem).map_err(|error| ClientError::Invalid {
            what: format!("tls_config cert_file/key_file {}", cert_file.display()),
            reason: error.to_string(),
        })?;
        builder = builder.identity(identity);
    }
    builder.build().map_err(|error| ClientError::Invalid {
        what: "HTTP client".to_owned(),
        reason: error.to_string(),
    })
}

/// Adds `basic_auth` or `authorization` to the request, reading credential files now (they may rotate).
pub fn authorize(
    settings: &HttpSettings,
    request: reqwest::RequestBuilder,
) -> Result<reqwest::RequestBuilder, ClientError> {
    if let Some((username, password)) = &settings.basic_auth {
        let password = match password {
            Some(source) => Some(read_secret(source, "basic_auth password_file")?),
            None => None,
        };
        return Ok(request.basic_auth(username, password));
    }
    if let Some((kind, credentials)) = &settings.authorization {
        let credentials = read_secret(credentials, "authorization credentials_file")?;
        let mut value = reqwest::header::HeaderValue::try_from(format!("{kind} {credentials}"))
            .map_err(|_| ClientError::Invalid {
                what: "authorization".to_owned(),
                reason: "the credentials are not a valid header value".to_owned(),
            })?;
        value.set_sensitive(true);
        return Ok(request.header(reqwest::header::AUTHORIZATION, value));
    }
    Ok(request)
}

fn read(path: &Path, what: &'static str) -> Result<Vec<u8>, ClientError> {
    std::fs::read(path).map_err(|source| ClientError::Unreadable {
        what,
        path: path.to_owned(),
        source,
    })
}

fn read_secret(source: &PasswordSource, what: &'static str) -> Result<String, ClientError> {
    source
        .read()
        .map(|secret| secret.expose().to_owned())
        .map_err(|error| ClientError::Unreadable {
            what,
            path: match source {
                PasswordSource::File(path) => path.clone(),
                PasswordSource::Inline(_) => PathBuf::new(),
            },
            source: error,
        })
}
