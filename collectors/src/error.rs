//! Collection errors, with a bounded classification for metric labels.

use std::time::Duration;

/// The bounded class of a failure: the only thing about an error that ever becomes a label value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ErrorKind {
    /// The target could not be reached or refused the connection.
    Connect,
    /// The server rejected the credentials or the role lacks a privilege.
    Auth,
    /// The TLS handshake failed: a certificate that does not verify, a refused client certificate, a server
    /// that does not speak TLS. Apart from `connect`, as a certificate problem is fixed elsewhere than a network one.
    Tls,
    /// A query failed on the server.
    Query,
    /// A query was cut by the server-side or client-side timeout.
    Timeout,
    /// The answer did not have the expected shape.
    Decode,
    /// The server's version or flavour is not supported by this view.
    Unsupported,
}

impl ErrorKind {
    pub const ALL: [ErrorKind; 7] = [
        ErrorKind::Connect,
        ErrorKind::Auth,
        ErrorKind::Tls,
        ErrorKind::Query,
        ErrorKind::Timeout,
        ErrorKind::Decode,
        ErrorKind::Unsupported,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Connect => "connect",
            ErrorKind::Auth => "auth",
            ErrorKind::Tls => "tls",
            ErrorKind::Query => "query",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Decode => "decode",
            ErrorKind::Unsupported => "unsupported",
        }
    }
}

/// Why a poll of a whole target failed.
#[derive(Debug, thiserror::Error)]
pub enum CollectError {
    #[error("cannot connect to {target}: {reason}")]
    Connect { target: String, reason: String },
    #[error("authentication to {target} failed: {reason}")]
    Auth { target: String, reason: String },
    #[error("TLS to {target} failed: {reason}")]
    Tls { target: String, reason: String },
    #[error(
        "connection to {target} is backing off for {remaining:?} after {failures} failed attempts"
    )]
    BackingOff {
        target: String,
        failures: u32,
        remaining: Duration,
    },
    #[error("connection lost during {view}: {reason}")]
    ConnectionLost { view: &'static str, reason: String },
    #[error("view {view} failed: {reason}")]
    Query { view: &'static str, reason: String },
    #[error("view {view} timed out")]
    Timeout { view: &'static str },
    #[error("view {view} answered an unexpected shape: {reason}")]
    Decode { view: &'static str, reason: String },
}

impl CollectError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            CollectError::Connect { .. }
            | CollectError::BackingOff { .. }
            | CollectError::ConnectionLost { .. } => ErrorKind::Connect,
            CollectError::Auth { .. } => ErrorKind::Auth,
            CollectError::Tls { .. } => ErrorKind::Tls,
            CollectError::Query { .. } => ErrorKind::Query,
            CollectError::Timeout { .. } => ErrorKind::Timeout,
            CollectError::Decode { .. } => ErrorKind::Decode,
        }
    }
}
