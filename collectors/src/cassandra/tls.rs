//! TLS to the nodes (client-to-node encryption), through rustls with the ring provider.
//!
//! The modes are libpq's names, so one vocabulary covers PostgreSQL and Cassandra targets:
//! - `disable` (the default without a `tls` block): plaintext, as Cassandra's own default;
//! - `verify-ca`: TLS, and the node's certificate must chain to `ca_file` (or the system's roots);
//! - `verify-full` (the default when a `tls` block is given): also the certificate must name the node.
//!
//! There is no `require` (encrypted but unverified): with PasswordAuthenticator the driver sends the password
//! in SASL PLAIN, so an unverified channel gives it to whoever answers in the middle, while looking safe.
//! A cluster with self-signed node certificates can pin them with `ca_file` and `verify-ca` instead.
//!
//! The driver connects to every node by IP address (the contact points only bootstrap; the peers come from
//! `system.peers`), so under `verify-full` the name checked is the node's IP, which its certificate must carry
//! as an IP subject alternative name, as the DataStax drivers' hostname verification also expects. A cluster
//! whose certificates carry a DNS name instead (one shared certificate, or a managed service such as Amazon
//! Keyspaces) sets `server_name`, and then every node's certificate is checked against that name.
//!
//! The files are read at each (re)connect, so rotated certificates are picked up without a restart.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};

/// TLS to the nodes, in the shape of the other engines' `tls` blocks.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CassandraTls {
    pub mode: CassandraTlsMode,
    /// PEM CA certificates the nodes' certificates must chain to; `None`: the system's trusted roots.
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate chain and its private key, for clusters with `require_client_auth`.
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    /// The name every node's certificate must carry under `verify-full`; `None`: the node's IP address.
    pub server_name: Option<String>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum CassandraTlsMode {
    #[default]
    Disable,
    VerifyCa,
    VerifyFull,
}

impl CassandraTlsMode {
    pub const NAMES: [&'static str; 3] = ["disable", "verify-ca", "verify-full"];

    pub fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "disable" => CassandraTlsMode::Disable,
            "verify-ca" => CassandraTlsMode::VerifyCa,
            "verify-full" => CassandraTlsMode::VerifyFull,
            _ => return None,
        })
    }
}

/// Why the TLS settings could not be turned into a client configuration (before any connection).
#[derive(Debug, thiserror::Error)]
pub enum TlsSetupError {
    #[error("cannot read {what} {path}: {reason}")]
    File {
        what: &'static str,
        path: PathBuf,
        reason: String,
    },
    #[error("{what} {path} holds no PEM {expected}")]
    Empty {
        what: &'static str,
        path: PathBuf,
        expected: &'static str,
    },
    #[error("ca_file {path}: {reason}")]
    BadCa { path: PathBuf, reason: String },
    #[error("no trusted CA certificate: the system has none and no ca_file is set")]
    NoRoots,
    #[error("server_name {0:?} is not a valid DNS name or IP address")]
    ServerName(String),
    #[error("the client certificate and key do not make a TLS identity: {0}")]
    ClientIdentity(String),
    #[error("TLS setup failed: {0}")]
    Rustls(String),
}

/// The rustls configuration for `tls`, or `None` when TLS is off.
pub fn client_config(tls: &CassandraTls) -> Result<Option<Arc<ClientConfig>>, TlsSetupError> {
    if tls.mode == CassandraTlsMode::Disable {
        return Ok(None);
    }
    // Explicit, so the provider never depends on which rustls features other crates enable.
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let server_name = match &tls.server_name {
        Some(name) => Some(
            ServerName::try_from(name.clone())
                .map_err(|_| TlsSetupError::ServerName(name.clone()))?,
        ),
        None => None,
    };
    let roots = match &tls.ca_file {
        Some(path) => roots_from_file(path)?,
        None => system_roots()?,
    };
    let webpki =
        WebPkiServerVerifier::builder_with_provider(Arc::new(roots), Arc::clone(&provider))
            .build()
            .map_err(|error| TlsSetupError::Rustls(error.to_string()))?;
    let verifier = NodeVerifier {
        webpki,
        server_name,
        check_name: tls.mode == CassandraTlsMode::VerifyFull,
    };
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|error| TlsSetupError::Rustls(error.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier));
    let config = match (&tls.cert_file, &tls.key_file) {
        (Some(cert_file), Some(key_file)) => {
            let chain = certificates(cert_file, "cert_file")?;
            let key = PrivateKeyDer::from_pem_file(key_file).map_err(|error| match error {
                rustls::pki_types::pem::Error::NoItemsFound => TlsSetupError::Empty {
                    what: "key_file",
                    path: key_file.clone(),
                    expected: "private key",
                },
                other => TlsSetupError::File {
                    what: "key_file",
                    path: key_file.clone(),
                    reason: other.to_string(),
                },
            })?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|error| TlsSetupError::ClientIdentity(error.to_string()))?
        }
        // The configuration reader refuses one without the other.
        _ => builder.with_no_client_auth(),
    };
    Ok(Some(Arc::new(config)))
}

fn certificates(
    path: &Path,
    what: &'static str,
) -> Result<Vec<CertificateDer<'static>>, TlsSetupError> {
    let file_error = |reason: String| TlsSetupError::File {
        what,
        path: path.to_owned(),
        reason,
    };
    let certificates = CertificateDer::pem_file_iter(path)
        .map_err(|error| file_error(error.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| file_error(error.to_string()))?;
    if certificates.is_empty() {
        return Err(TlsSetupError::Empty {
            what,
            path: path.to_owned(),
            expected: "certificate",
        });
    }
    Ok(certificates)
}

fn roots_from_file(path: &Path) -> Result<RootCertStore, TlsSetupError> {
    let mut roots = RootCertStore::empty();
    for certificate in certificates(path, "ca_file")? {
        roots
            .add(certificate)
            .map_err(|error| TlsSetupError::BadCa {
                path: path.to_owned(),
                reason: error.to_string(),
            })?;
    }
    Ok(roots)
}

fn system_roots() -> Result<RootCertStore, TlsSetupError> {
    let mut roots = RootCertStore::empty();
    // Unreadable entries are skipped, as every TLS client does; none at all is an error.
    let found = rustls_native_certs::load_native_certs();
    let (added, _ignored) = roots.add_parsable_certificates(found.certs);
    if added == 0 {
        return Err(TlsSetupError::NoRoots);
    }
    Ok(roots)
}

/// WebPKI verification of the chain, with the name check done against `server_name` when configured, and
/// skipped under `verify-ca`.
#[derive(Debug)]
struct NodeVerifier {
    webpki: Arc<WebPkiServerVerifier>,
    server_name: Option<ServerName<'static>>,
    check_name: bool,
}

impl ServerCertVerifier for NodeVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let name = self.server_name.as_ref().unwrap_or(server_name);
        // WebPKI checks the chain first and the name last, so a name error means the chain was good.
        match self
            .webpki
            .verify_server_cert(end_entity, intermediates, name, ocsp_response, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) if !self.check_name => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.webpki.supported_verify_schemes()
    }
}

/// Whether `error` is, or wraps through I/O errors, a TLS failure (a handshake refused on either side, a
/// certificate that does not verify, a TLS record where plaintext was expected).
pub fn is_tls_error(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut current = Some(error);
    while let Some(error) = current {
        if error.is::<rustls::Error>() || error.is::<scylla::errors::TlsError>() {
            return true;
        }
        // io::Error's `source()` skips its own payload, which is where tokio-rustls puts the rustls error.
        if let Some(io) = error.downcast_ref::<std::io::Error>() {
            if io.get_ref().is_some_and(|inner| is_tls_error(inner)) {
                return true;
            }
        }
        current = error.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_use_libpq_names_and_there_is_no_unverified_mode() {
        for name in CassandraTlsMode::NAMES {
            assert!(CassandraTlsMode::parse(name).is_some(), "{name}");
        }
        assert_eq!(CassandraTlsMode::parse("require"), None);
        assert_eq!(CassandraTlsMode::parse("prefer"), None);
        assert_eq!(CassandraTls::default().mode, CassandraTlsMode::Disable);
    }

    #[test]
    fn disabled_tls_builds_no_configuration() {
        assert!(matches!(client_config(&CassandraTls::default()), Ok(None)));
    }

    #[test]
    fn unreadable_or_empty_files_are_named_in_the_error() {
        let missing = CassandraTls {
            mode: CassandraTlsMode::VerifyFull,
            ca_file: Some("/nonexistent/ca.pem".into()),
            ..CassandraTls::default()
        };
        let error = client_config(&missing).err().map(|error| error.to_string());
        assert!(
            error
                .as_deref()
                .is_some_and(|text| text.starts_with("cannot read ca_file /nonexistent/ca.pem")),
            "{error:?}"
        );

        let dir = std::env::temp_dir().join(format!("dbwatch-cass-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let empty = dir.join("empty.pem");
        std::fs::write(&empty, "no pem here\n").expect("write");
        let error = client_config(&CassandraTls {
            mode: CassandraTlsMode::VerifyCa,
            ca_file: Some(empty.clone()),
            ..CassandraTls::default()
        })
        .err();
        assert!(
            matches!(
                error,
                Some(TlsSetupError::Empty {
                    what: "ca_file",
                    ..
                })
            ),
            "{error:?}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_bad_server_name_is_refused() {
        let error = client_config(&CassandraTls {
            mode: CassandraTlsMode::VerifyFull,
            server_name: Some("not a name".into()),
            ..CassandraTls::default()
        })
        .err();
        assert!(
            matches!(error, Some(TlsSetupError::ServerName(_))),
            "{error:?}"
        );
    }

    #[test]
    fn tls_failures_are_found_through_io_errors() {
        let rustls_error = rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer);
        let io = std::io::Error::new(std::io::ErrorKind::InvalidData, rustls_error);
        assert!(is_tls_error(&io));
        let plain = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        assert!(!is_tls_error(&plain));
    }
}
