//! One persistent connection per MySQL/MariaDB target, with reconnect backoff, per-connection server facts
//! and timeouts on both sides of every statement.

use std::path::PathBuf;
use std::time::Duration;

use sqlx::mysql::{MySqlConnectOptions, MySqlConnection, MySqlSslMode};
use sqlx::{ConnectOptions, Connection};
use tokio::time::Instant;

use crate::backoff::Backoff;
use crate::error::{CollectError, ErrorKind};
use crate::password::read_password;
use crate::secret::PasswordSource;

use super::global_variables;
use super::query::{classify, execute, fetch_rows, QueryError};
use super::row::ShapeError;
use super::server_version::{self, ServerVersion};

/// How to reach the server.
#[derive(Debug, Clone)]
pub struct MysqlConnectionOptions {
    /// The target's configured name, used in error messages and as the `replica` label of the fleet signals.
    pub target: String,
    pub host: String,
    pub port: u16,
    /// A Unix socket path; when set, `host` and `port` are not used.
    pub socket: Option<PathBuf>,
    pub user: String,
    pub password: Option<PasswordSource>,
    pub tls: MysqlTls,
    /// Bound on the TCP connect, TLS and authentication handshake together.
    pub connect_timeout: Duration,
}

impl Default for MysqlConnectionOptions {
    fn default() -> Self {
        MysqlConnectionOptions {
            target: "mysql".into(),
            host: "127.0.0.1".into(),
            port: 3306,
            socket: None,
            user: "dbwatch".into(),
            password: None,
            tls: MysqlTls::default(),
            connect_timeout: Duration::from_secs(5),
        }
    }
}

/// TLS to the server, as the mysql client's `--ssl-mode`, `--ssl-ca`, `--ssl-cert` and `--ssl-key`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MysqlTls {
    pub mode: MysqlTlsMode,
    pub ca_file: Option<PathBuf>,
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum MysqlTlsMode {
    Disabled,
    #[default]
    Preferred,
    Required,
    VerifyCa,
    VerifyIdentity,
}

impl MysqlTlsMode {
    pub const NAMES: [&'static str; 5] = [
        "disabled",
        "preferred",
        "required",
        "verify_ca",
        "verify_identity",
    ];

    /// Parses the mysql client's spelling, in either case (`VERIFY_IDENTITY`, `verify_identity`).
    pub fn parse(name: &str) -> Option<Self> {
        Some(match name.to_ascii_lowercase().as_str() {
            "disabled" => MysqlTlsMode::Disabled,
            "preferred" => MysqlTlsMode::Preferred,
            "required" => MysqlTlsMode::Required,
            "verify_ca" => MysqlTlsMode::VerifyCa,
            "verify_identity" => MysqlTlsMode::VerifyIdentity,
            _ => return None,
        })
    }

    fn to_sqlx(self) -> MySqlSslMode {
        match self {
            MysqlTlsMode::Disabled => MySqlSslMode::Disabled,
            MysqlTlsMode::Preferred => MySqlSslMode::Preferred,
            MysqlTlsMode::Required => MySqlSslMode::Required,
            MysqlTlsMode::VerifyCa => MySqlSslMode::VerifyCa,
            MysqlTlsMode::VerifyIdentity => MySqlSslMode::VerifyIdentity,
        }
    }
}

/// Facts learnt once per connection.
#[derive(Debug, Clone, Copy)]
pub struct ServerInfo {
    pub version: ServerVersion,
    /// Whether the session runs under a server-side statement timeout.
    pub statement_timeout: bool,
    /// Whether performance_schema is on; `None` when the server would not say.
    pub performance_schema: Option<bool>,
}

/// A statement of opening a connection that failed after the handshake.
#[derive(Debug, thiserror::Error)]
#[error("cannot {step}: {source}")]
pub struct SetupError {
    step: &'static str,
    #[source]
    source: QueryError,
}

impl SetupError {
    fn connect(target: &str, step: &'static str, source: QueryError) -> CollectError {
        CollectError::Connect {
            target: target.to_owned(),
            source: Box::new(SetupError { step, source }),
        }
    }
}

/// The open connection with the facts about its server.
pub struct Live<'a> {
    pub connection: &'a mut MySqlConnection,
    pub server: ServerInfo,
    /// True when this poll opened the connection (so per-connection state must be re-learnt).
    pub fresh: bool,
}

/// A lazily opened, persistent connection that is dropped on error and reopened with backoff.
pub struct MysqlSession {
    options: MysqlConnectionOptions,
    statement_timeout: Duration,
    connection: Option<(MySqlConnection, ServerInfo)>,
    backoff: Backoff,
}

impl MysqlSession {
    pub fn new(options: MysqlConnectionOptions, statement_timeout: Duration) -> Self {
        MysqlSession {
            options,
            statement_timeout,
            connection: None,
            backoff: Backoff::default(),
        }
    }

    pub fn target(&self) -> &str {
        &self.options.target
    }

    /// The client-side bound of one statement: the server-side timeout plus a margin for the answer to
    /// travel back, so that the server's own cut (a clean error) normally comes first.
    pub fn client_timeout(&self) -> Duration {
        self.statement_timeout + Duration::from_secs(1)
    }

    /// The open connection, connecting and learning the server first when there is none.
    pub async fn connection(&mut self) -> Result<Live<'_>, CollectError> {
        let fresh = self.connection.is_none();
        if fresh {
            let opened = self.open().await;
            match &opened {
                Ok(_) => self.backoff.record_success(),
                Err(_) => self.backoff.record_failure(Instant::now()),
            }
            self.connection = Some(opened?);
        }
        match self.connection.as_mut() {
            Some((connection, server)) => Ok(Live {
                connection,
                server: *server,
                fresh,
            }),
            None => Err(CollectError::Connect {
                target: self.options.target.clone(),
                source: "connection vanished".into(),
            }),
        }
    }

    /// Forgets the connection without a goodbye: used when a statement was cut mid-flight.
    pub fn drop_connection(&mut self) {
        self.connection = None;
    }

    pub async fn close(&mut self) {
        if let Some((connection, _)) = self.connection.take() {
            // A failed goodbye at shutdown changes nothing: the server notices the closed socket.
            let _ = connection.close().await;
        }
    }

    async fn open(&mut self) -> Result<(MySqlConnection, ServerInfo), CollectError> {
        self.backoff.ready(&self.options.target)?;
        let connect_options = self.connect_options()?;
        let target = self.options.target.clone();
        let timeout = self.options.connect_timeout;
        let mut connection = match tokio::time::timeout(timeout, connect_options.connect()).await {
            Ok(Ok(connection)) => connection,
            Ok(Err(error)) => return Err(connect_error(&target, error)),
            Err(_) => {
                return Err(CollectError::Connect {
                    target,
                    source: format!("no answer within {}ms", timeout.as_millis()).into(),
                })
            }
        };
        let client_timeout = self.client_timeout();
        let version = fetch_rows(&mut connection, server_version::QUERY, client_timeout)
            .await
            .and_then(|rows| {
                let row = rows
                    .first()
                    .ok_or_else(|| ShapeError::Other("no row for @@version".into()))?;
                Ok(ServerVersion::from_row(row)?)
            })
            .map_err(|error| SetupError::connect(&target, "read the server version", error))?;
        let settings = version.session_settings(self.statement_timeout);
        let statement_timeout = match execute(
            &mut connection,
            sqlx::AssertSqlSafe(settings),
            client_timeout,
        )
        .await
        {
            Ok(()) => version.has_statement_timeout(),
            Err(error) if error.ends_connection() => {
                return Err(SetupError::connect(
                    &target,
                    "apply the session settings",
                    error,
                ))
            }
            Err(error) => {
                // The polls can still run, only without the server-side bound; the capability gauge says so.
                tracing::warn!(target = %target, error = %error, "session settings rejected");
                false
            }
        };
        let performance_schema = match fetch_rows(
            &mut connection,
            global_variables::PERFORMANCE_SCHEMA_QUERY,
            client_timeout,
        )
        .await
        {
            Ok(rows) => match global_variables::performance_schema_from_rows(&rows) {
                Ok(on) => Some(on),
                Err(error) => {
                    tracing::warn!(target = %target, error = %error, "performance_schema unknown");
                    None
                }
            },
            Err(error) if error.ends_connection() => {
                return Err(SetupError::connect(
                    &target,
                    "read performance_schema",
                    error,
                ))
            }
            Err(error) => {
                tracing::warn!(target = %target, error = %error, "performance_schema unknown");
                None
            }
        };
        Ok((
            connection,
            ServerInfo {
                version,
                statement_timeout,
                performance_schema,
            },
        ))
    }

    fn connect_options(&self) -> Result<MySqlConnectOptions, CollectError> {
        let options = &self.options;
        let mut connect = MySqlConnectOptions::new()
            .username(&options.user)
            .ssl_mode(options.tls.mode.to_sqlx())
            // sqlx would send its own SET (sql_mode, time_zone, NAMES) after the handshake; dbwatch sends one
            // SET of its own instead, and the handshake already chose utf8mb4.
            .set_names(false)
            .timezone(None)
            .pipes_as_concat(false)
            .no_engine_substitution(false)
            .statement_cache_capacity(0)
            .disable_statement_logging();
        connect = match &options.socket {
            Some(socket) => connect.socket(socket),
            None => connect.host(&options.host).port(options.port),
        };
        if let Some(password) = read_password(&options.target, options.password.as_ref())? {
            connect = connect.password(password.expose());
        }
        if let Some(ca) = &options.tls.ca_file {
            connect = connect.ssl_ca(ca);
        }
        if let Some(cert) = &options.tls.cert_file {
            connect = connect.ssl_client_cert(cert);
        }
        if let Some(key) = &options.tls.key_file {
            connect = connect.ssl_client_key(key);
        }
        Ok(connect)
    }
}

fn connect_error(target: &str, error: sqlx::Error) -> CollectError {
    let kind = match classify(&error) {
        ErrorKind::Auth => ErrorKind::Auth,
        // A handshake that failed (a certificate that does not verify): its own kind, at connect only.
        _ if matches!(error, sqlx::Error::Tls(_)) => ErrorKind::Tls,
        _ => ErrorKind::Connect,
    };
    CollectError::connect_failed(kind, target, Box::new(error))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_modes_parse_in_the_clients_spelling() {
        assert_eq!(
            MysqlTlsMode::parse("VERIFY_IDENTITY"),
            Some(MysqlTlsMode::VerifyIdentity)
        );
        for name in MysqlTlsMode::NAMES {
            assert!(MysqlTlsMode::parse(name).is_some(), "{name}");
        }
        assert_eq!(MysqlTlsMode::parse("prefer"), None);
    }
}
