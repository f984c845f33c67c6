//! One persistent driver session per cluster target, with reconnect backoff, and node-pinned statements.
//!
//! The scylla `Session` keeps one pool per node (sized to a single connection here) plus one control connection
//! that follows topology and status events, so a target holds at most two connections to any node. Every
//! statement carries its own client-side timeout: Cassandra has no per-request server timeout in the native
//! protocol (its `*_request_timeout` settings are server-wide), so the client side is the only bound we own.

use std::num::NonZeroUsize;
use std::sync::Arc;
use std::time::Duration;

use scylla::client::execution_profile::ExecutionProfile;
use scylla::client::session::Session;
use scylla::client::session_builder::SessionBuilder;
use scylla::client::{PoolSize, SelfIdentity};
use scylla::cluster::Node;
use scylla::errors::{
    ConnectionError, ConnectionPoolError, ConnectionSetupRequestErrorKind, DbError, ExecutionError,
    MetadataError, NewSessionError, RequestAttemptError,
};
use scylla::policies::load_balancing::{
    DefaultPolicy, NodeIdentifier, SingleTargetLoadBalancingPolicy,
};
use scylla::policies::retry::FallthroughRetryPolicy;
use scylla::response::query_result::QueryRowsResult;
use scylla::statement::{Consistency, Statement};
use tokio::time::Instant;

use crate::backoff::Backoff;
use crate::error::{CollectError, ErrorKind};
use crate::password::read_password;
use crate::secret::PasswordSource;

use super::tls::{self, CassandraTls, CassandraTlsMode};

/// How to reach the cluster.
#[derive(Debug, Clone)]
pub struct SessionOptions {
    pub target: String,
    pub contact_points: Vec<String>,
    pub local_datacenter: Option<String>,
    pub user: Option<String>,
    pub password: Option<PasswordSource>,
    pub connect_timeout: Duration,
    pub request_timeout: Duration,
    pub tls: CassandraTls,
}

/// Why one statement failed. The driver's error is kept whole for the log; only its class becomes a label.
#[derive(Debug, thiserror::Error)]
pub enum CqlError {
    // Boxed: the driver's error is large, and every view's result carries this type.
    #[error(transparent)]
    Execution(Box<ExecutionError>),
    #[error("unexpected result shape: {0}")]
    Decode(String),
}

impl From<ExecutionError> for CqlError {
    fn from(error: ExecutionError) -> Self {
        CqlError::Execution(Box::new(error))
    }
}

impl CqlError {
    pub fn decode(error: impl std::fmt::Display) -> Self {
        CqlError::Decode(error.to_string())
    }

    pub fn kind(&self) -> ErrorKind {
        match self {
            CqlError::Execution(error) => classify(error),
            CqlError::Decode(_) => ErrorKind::Decode,
        }
    }
}

/// A lazily opened, persistent session that is dropped when no node answers and reopened with backoff.
pub struct CqlSession {
    options: SessionOptions,
    session: Option<Arc<Session>>,
    backoff: Backoff,
}

impl CqlSession {
    pub fn new(options: SessionOptions) -> Self {
        CqlSession {
            options,
            session: None,
            backoff: Backoff::default(),
        }
    }

    pub fn target(&self) -> &str {
        &self.options.target
    }

    /// The open session, connecting first when there is none and the backoff allows it.
    /// The bool is true when this call opened a new session, so facts learnt per connection must be re-read.
    pub async fn session(&mut self) -> Result<(Arc<Session>, bool), CollectError> {
        if let Some(session) = &self.session {
            return Ok((Arc::clone(session), false));
        }
        let session = Arc::new(self.connect().await?);
        self.session = Some(Arc::clone(&session));
        Ok((session, true))
    }

    /// Forgets the session; its connections close when the last in-flight statement lets go of it.
    pub fn drop_session(&mut self) {
        self.session = None;
    }

    async fn connect(&mut self) -> Result<Session, CollectError> {
        self.backoff.ready(&self.options.target)?;
        let result = self.build().await;
        match &result {
            Ok(_) => self.backoff.record_success(),
            Err(_) => self.backoff.record_failure(Instant::now()),
        }
        result
    }

    async fn build(&self) -> Result<Session, CollectError> {
        let options = &self.options;
        let mut policy = DefaultPolicy::builder().token_aware(true);
        if let Some(datacenter) = &options.local_datacenter {
            policy = policy
                .prefer_datacenter(datacenter.clone())
                .permit_dc_failover(true);
        }
        let profile = ExecutionProfile::builder()
            .request_timeout(Some(options.request_timeout))
            .consistency(Consistency::One)
            .load_balancing_policy(policy.build())
            // Every outcome must reflect one attempt: a retried canary or view would hide what happened.
            .retry_policy(Arc::new(FallthroughRetryPolicy))
            .build();
        let single = NonZeroUsize::MIN;
        let mut builder = SessionBuilder::new()
            .known_nodes(&options.contact_points)
            .connection_timeout(options.connect_timeout)
            .hostname_resolution_timeout(Some(options.connect_timeout))
            .metadata_request_clientside_timeout(options.request_timeout)
            .pool_size(PoolSize::PerHost(single))
            // Keyspace and table schemas are of no use to a monitor; skipping them saves a dozen reads per refresh.
            .fetch_schema_metadata(false)
            .auto_await_schema_agreement(false)
            .default_execution_profile_handle(profile.into_handle())
            .custom_identity(SelfIdentity::new().with_application_name("dbwatch"));
        if let Some(user) = &options.user {
            let password = read_password(&options.target, options.password.as_ref())?
                .unwrap_or_else(|| crate::secret::Secret::new(String::new()));
            builder = builder.user(user.clone(), password.expose().to_owned());
        }
        // Built at each connect, so rotated certificates and CAs are read again.
        let tls_config = tls::client_config(&options.tls).map_err(|error| CollectError::Tls {
            target: options.target.clone(),
            source: Box::new(error),
        })?;
        if let Some(config) = tls_config {
            builder = builder.tls_context(Some(config));
        }
        // Resolution, the control connection and the first metadata read each have their own timeout; this
        // bounds their sum.
        let deadline = options.connect_timeout + options.request_timeout;
        match tokio::time::timeout(deadline, builder.build()).await {
            Ok(Ok(session)) => Ok(session),
            Ok(Err(error)) => Err(self.connect_error(error)),
            Err(_) => Err(CollectError::Connect {
                target: options.target.clone(),
                source: format!("no session within {}ms", deadline.as_millis()).into(),
            }),
        }
    }

    fn connect_error(&self, error: NewSessionError) -> CollectError {
        let target = self.options.target.clone();
        let kind = self.connect_failure(&error);
        let source: crate::error::Cause = match kind {
            ConnectFailure::TlsRefused => Box::new(TlsRefused { source: error }),
            _ => Box::new(error),
        };
        match kind {
            ConnectFailure::Auth => CollectError::Auth { target, source },
            ConnectFailure::Tls | ConnectFailure::TlsRefused => {
                CollectError::Tls { target, source }
            }
            ConnectFailure::Connect => CollectError::Connect { target, source },
        }
    }

    fn connect_failure(&self, error: &NewSessionError) -> ConnectFailure {
        let last_connection_error = match error {
            NewSessionError::MetadataError(MetadataError::ConnectionPoolError(
                ConnectionPoolError::Broken {
                    last_connection_error,
                },
            )) => Some(last_connection_error),
            _ => None,
        };
        match last_connection_error {
            Some(last) if is_auth_failure(last) => ConnectFailure::Auth,
            Some(last) if is_tls_failure(last) => ConnectFailure::Tls,
            // Under TLS 1.3 the client's handshake completes before the node has judged the client
            // certificate; a node that refuses it closes the connection, which the driver sees only as broken
            // during its first request. The handshake itself succeeded, so the node speaks TLS: the refusal is
            // of this client's TLS identity, not a network fault.
            Some(ConnectionError::ConnectionSetupRequestError(setup))
                if self.options.tls.mode != CassandraTlsMode::Disable
                    && matches!(
                        setup.error,
                        ConnectionSetupRequestErrorKind::BrokenConnection(_)
                    ) =>
            {
                ConnectFailure::TlsRefused
            }
            _ => ConnectFailure::Connect,
        }
    }
}

/// How a session that could not be built failed, judged from the driver's error before it is moved.
#[derive(Debug, Clone, Copy)]
enum ConnectFailure {
    Auth,
    Tls,
    /// The node closed the connection right after a TLS handshake that succeeded.
    TlsRefused,
    Connect,
}

/// A node that closed the connection right after the TLS handshake.
#[derive(Debug, thiserror::Error)]
#[error("{source} (the node closed the connection right after the TLS handshake: it probably refused the client certificate, or requires one and tls.cert_file is not set)")]
struct TlsRefused {
    #[source]
    source: NewSessionError,
}

/// A connection that failed in its TLS handshake. The driver's error is `transparent` over the I/O error, so
/// the rustls error inside it is not on the `source()` chain: it is looked for in the I/O error's payload.
fn is_tls_failure(error: &ConnectionError) -> bool {
    match error {
        ConnectionError::IoError(io) => tls::is_tls_error(io.as_ref()),
        _ => false,
    }
}

fn pool_error_is_tls(error: &ConnectionPoolError) -> bool {
    matches!(error, ConnectionPoolError::Broken { last_connection_error } if is_tls_failure(last_connection_error))
}

fn is_auth_failure(error: &ConnectionError) -> bool {
    let ConnectionError::ConnectionSetupRequestError(setup) = error else {
        return false;
    };
    matches!(
        setup.error,
        ConnectionSetupRequestErrorKind::DbError(
            DbError::AuthenticationError | DbError::Unauthorized,
            _
        ) | ConnectionSetupRequestErrorKind::MissingAuthentication
            | ConnectionSetupRequestErrorKind::StartAuthSessionError(_)
            | ConnectionSetupRequestErrorKind::AuthChallengeEvaluationError(_)
            | ConnectionSetupRequestErrorKind::AuthFinishError(_)
    )
}

/// A statement that runs on `node` only, once, at ONE, within `timeout`.
///
/// Virtual tables and `system.*` tables are node-local, so each node's answer is only ever its own; a
/// single-target policy has no fallback plan, so an unreachable node fails fast instead of being silently
/// replaced by a neighbour's numbers.
pub fn pinned(cql: impl Into<String>, node: &Arc<Node>, timeout: Duration) -> Statement {
    let mut statement = Statement::new(cql);
    statement.set_load_balancing_policy(Some(SingleTargetLoadBalancingPolicy::new(
        NodeIdentifier::Node(Arc::clone(node)),
        None,
    )));
    statement.set_request_timeout(Some(timeout));
    statement.set_consistency(Consistency::One);
    statement.set_retry_policy(Some(Arc::new(FallthroughRetryPolicy)));
    statement.set_is_idempotent(true);
    statement
}

/// Runs an unprepared statement without bound values (one round trip) and returns its rows.
pub async fn rows(session: &Session, statement: Statement) -> Result<QueryRowsResult, CqlError> {
    let result = session.query_unpaged(statement, ()).await?;
    result.into_rows_result().map_err(CqlError::decode)
}

/// The bounded class of a driver error.
pub fn classify(error: &ExecutionError) -> ErrorKind {
    match error {
        ExecutionError::RequestTimeout(_) => ErrorKind::Timeout,
        // A node whose certificate stopped verifying (or that stopped speaking TLS) mid-session.
        ExecutionError::ConnectionPoolError(pool) if pool_error_is_tls(pool) => ErrorKind::Tls,
        ExecutionError::ConnectionPoolError(_)
        | ExecutionError::EmptyPlan
        | ExecutionError::MetadataError(_) => ErrorKind::Connect,
        ExecutionError::LastAttemptError(attempt) => classify_attempt(attempt),
        _ => ErrorKind::Query,
    }
}

fn classify_attempt(error: &RequestAttemptError) -> ErrorKind {
    match error {
        RequestAttemptError::DbError(db_error, _) => match db_error {
            DbError::AuthenticationError | DbError::Unauthorized => ErrorKind::Auth,
            DbError::ReadTimeout { .. } | DbError::WriteTimeout { .. } => ErrorKind::Timeout,
            // "unconfigured table" and "undefined column name" both arrive as Invalid: the server lacks the view.
            DbError::Invalid | DbError::SyntaxError => ErrorKind::Unsupported,
            _ => ErrorKind::Query,
        },
        RequestAttemptError::BrokenConnectionError(_)
        | RequestAttemptError::UnableToAllocStreamId => ErrorKind::Connect,
        RequestAttemptError::CqlResultParseError(_)
        | RequestAttemptError::CqlErrorParseError(_)
        | RequestAttemptError::BodyExtensionsParseError(_) => ErrorKind::Decode,
        _ => ErrorKind::Query,
    }
}

/// Doubles embedded quotes, so any configured name is a single quoted CQL identifier and never more CQL.
pub fn quote_identifier(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_are_quoted_and_cannot_escape() {
        assert_eq!(quote_identifier("probe"), "\"probe\"");
        assert_eq!(
            quote_identifier("a\"; DROP TABLE x; --"),
            "\"a\"\"; DROP TABLE x; --\""
        );
    }

    #[test]
    fn timeouts_and_missing_views_have_their_own_class() {
        let timeout = ExecutionError::RequestTimeout(Duration::from_secs(1));
        assert_eq!(classify(&timeout), ErrorKind::Timeout);
        let invalid = ExecutionError::LastAttemptError(RequestAttemptError::DbError(
            DbError::Invalid,
            "table gossip_info does not exist".into(),
        ));
        assert_eq!(classify(&invalid), ErrorKind::Unsupported);
        assert_eq!(classify(&ExecutionError::EmptyPlan), ErrorKind::Connect);
    }
}
