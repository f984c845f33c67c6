//! One persistent connection per PostgreSQL-protocol target, with reconnect backoff and server-side timeouts.

use std::path::PathBuf;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgConnection, PgSslMode};
use sqlx::Connection;
use tokio::time::Instant;

use crate::backoff::Backoff;
use crate::error::{CollectError, ErrorKind};
use crate::password::read_password;
use crate::secret::PasswordSource;
use crate::view::ViewError;

/// How to reach a PostgreSQL server or a PgBouncer admin console.
#[derive(Debug, Clone)]
pub struct PgConnectionOptions {
    /// The target's configured name, used in error messages.
    pub target: String,
    pub host: String,
    pub port: u16,
    pub user: String,
    pub database: String,
    pub password: Option<PasswordSource>,
    pub tls: PgTls,
    pub connect_timeout: Duration,
}

/// TLS to the server, as libpq's `sslmode`, `sslrootcert`, `sslcert` and `sslkey`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PgTls {
    pub mode: PgTlsMode,
    pub ca_file: Option<PathBuf>,
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum PgTlsMode {
    Disable,
    #[default]
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl PgTlsMode {
    pub const NAMES: [&'static str; 5] =
        ["disable", "prefer", "require", "verify-ca", "verify-full"];

    pub fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "disable" => PgTlsMode::Disable,
            "prefer" => PgTlsMode::Prefer,
            "require" => PgTlsMode::Require,
            "verify-ca" => PgTlsMode::VerifyCa,
            "verify-full" => PgTlsMode::VerifyFull,
            _ => return None,
        })
    }

    fn to_sqlx(self) -> PgSslMode {
        match self {
            PgTlsMode::Disable => PgSslMode::Disable,
            PgTlsMode::Prefer => PgSslMode::Prefer,
            PgTlsMode::Require => PgSslMode::Require,
            PgTlsMode::VerifyCa => PgSslMode::VerifyCa,
            PgTlsMode::VerifyFull => PgSslMode::VerifyFull,
        }
    }
}

/// Which kind of server sits behind the connection; the admin console takes no startup options.
#[derive(Debug, Clone)]
pub enum SessionSettings {
    /// A PostgreSQL server: the timeouts travel as startup options, so they cost no round trip.
    Postgres {
        statement_timeout: Duration,
        lock_timeout: Duration,
    },
    /// PgBouncer's admin console: only the simple query protocol and no `options`.
    PgBouncerAdmin,
}

/// A lazily opened, persistent connection that is dropped on error and reopened with backoff.
pub struct PgSession {
    options: PgConnectionOptions,
    settings: SessionSettings,
    connection: Option<PgConnection>,
    backoff: Backoff,
}

impl PgSession {
    pub fn new(options: PgConnectionOptions, settings: SessionSettings) -> Self {
        PgSession {
            options,
            settings,
            connection: None,
            backoff: Backoff::default(),
        }
    }

    pub fn target(&self) -> &str {
        &self.options.target
    }

    /// The open connection, connecting first when there is none and the backoff allows it.
    /// The bool is true when this call opened a new connection (so per-connection facts must be re-read).
    pub async fn connection(&mut self) -> Result<(&mut PgConnection, bool), CollectError> {
        let fresh = self.connection.is_none();
        if fresh {
            let connection = self.connect().await?;
            self.connection = Some(connection);
        }
        match self.connection.as_mut() {
            Some(connection) => Ok((connection, fresh)),
            None => Err(CollectError::Connect {
                target: self.options.target.clone(),
                source: "connection vanished".into(),
            }),
        }
    }

    /// Forgets the connection without a goodbye: used when a query was cut mid-flight.
    pub fn drop_connection(&mut self) {
        self.connection = None;
    }

    pub async fn close(&mut self) {
        if let Some(connection) = self.connection.take() {
            // A failed goodbye at shutdown changes nothing: the server notices the closed socket.
            let _ = connection.close().await;
        }
    }

    async fn connect(&mut self) -> Result<PgConnection, CollectError> {
        self.backoff.ready(&self.options.target)?;
        let connect_options = self.connect_options()?;
        let attempt = tokio::time::timeout(
            self.options.connect_timeout,
            PgConnection::connect_with(&connect_options),
        )
        .await;
        let result = match attempt {
            Ok(Ok(connection)) => Ok(connection),
            Ok(Err(error)) => Err(self.connect_error(error)),
            Err(_) => Err(CollectError::Connect {
                target: self.options.target.clone(),
                source: format!(
                    "no answer within {}",
                    humanize(self.options.connect_timeout)
                )
                .into(),
            }),
        };
        match &result {
            Ok(_) => self.backoff.record_success(),
            Err(_) => self.backoff.record_failure(Instant::now()),
        }
        result
    }

    fn connect_options(&self) -> Result<PgConnectOptions, CollectError> {
        let options = &self.options;
        let mut connect = PgConnectOptions::new_without_pgpass()
            .host(&options.host)
            .port(options.port)
            .username(&options.user)
            .database(&options.database)
            .ssl_mode(options.tls.mode.to_sqlx());
        if let Some(password) = read_password(&options.target, options.password.as_ref())? {
            connect = connect.password(password.expose());
        }
        if let Some(ca) = &options.tls.ca_file {
            connect = connect.ssl_root_cert(ca);
        }
        if let Some(cert) = &options.tls.cert_file {
            connect = connect.ssl_client_cert(cert);
        }
        if let Some(key) = &options.tls.key_file {
            connect = connect.ssl_client_key(key);
        }
        connect = match &self.settings {
            SessionSettings::Postgres {
                statement_timeout,
                lock_timeout,
            } => connect.application_name("dbwatch").options([
                ("statement_timeout", millis(*statement_timeout)),
                ("lock_timeout", millis(*lock_timeout)),
                // A monitoring session never writes; a stuck transaction must not pin the xmin horizon.
                (
                    "idle_in_transaction_session_timeout",
                    millis(*statement_timeout),
                ),
            ]),
            // The admin console rejects startup parameters it does not know, `extra_float_digits` among them.
            SessionSettings::PgBouncerAdmin => connect.extra_float_digits(None),
        };
        Ok(connect)
    }

    fn connect_error(&self, error: sqlx::Error) -> CollectError {
        let kind = match classify(&error) {
            ErrorKind::Auth => ErrorKind::Auth,
            // A handshake that failed (a certificate that does not verify): its own kind, at connect only.
            _ if matches!(error, sqlx::Error::Tls(_)) => ErrorKind::Tls,
            _ => ErrorKind::Connect,
        };
        CollectError::connect_failed(kind, &self.options.target, Box::new(error))
    }
}

/// The bounded class of a driver error. SQLSTATEs per PostgreSQL's appendix A.
pub fn classify(error: &sqlx::Error) -> ErrorKind {
    match error {
        sqlx::Error::Database(database_error) => match database_error.code().as_deref() {
            // 28000 invalid_authorization_specification, 28P01 invalid_password, 42501 insufficient_privilege.
            Some("28000" | "28P01" | "42501") => ErrorKind::Auth,
            // 57014 query_canceled (statement_timeout), 55P03 lock_not_available (lock_timeout).
            Some("57014" | "55P03") => ErrorKind::Timeout,
            // 42P01 undefined_table, 42883 undefined_function, 42703 undefined_column, 0A000 feature_not_supported.
            Some("42P01" | "42883" | "42703" | "0A000") => ErrorKind::Unsupported,
            _ => ErrorKind::Query,
        },
        sqlx::Error::ColumnDecode { .. }
        | sqlx::Error::ColumnNotFound(_)
        | sqlx::Error::Decode(_)
        | sqlx::Error::TypeNotFound { .. }
        | sqlx::Error::ColumnIndexOutOfBounds { .. }
        | sqlx::Error::RowNotFound => ErrorKind::Decode,
        _ => ErrorKind::Connect,
    }
}

/// A query of a view: sqlx's error is the view error; the connection is lost when it is not the server's answer.
impl ViewError for sqlx::Error {
    fn kind(&self) -> ErrorKind {
        classify(self)
    }

    fn into_collect_error(self, _target: &str, view: &'static str) -> CollectError {
        CollectError::view_failed(classify(&self), view, Box::new(self))
    }
}

fn millis(duration: Duration) -> String {
    format!("{}ms", duration.as_millis().max(1))
}

fn humanize(duration: Duration) -> String {
    format!("{}ms", duration.as_millis())
}
