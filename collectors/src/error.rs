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

/// The cause of a failure as the driver or a check of ours gave it, kept whole for `source()`.
pub type Cause = Box<dyn std::error::Error + Send + Sync>;

/// Why a poll of a whole target failed.
///
/// The messages also print the cause: they go to the log and the status page as one line, where a reader
/// would otherwise see "cannot connect to pg-main" and nothing of why.
#[derive(Debug, thiserror::Error)]
pub enum CollectError {
    #[error("cannot connect to {target}: {source}")]
    Connect {
        target: String,
        #[source]
        source: Cause,
    },
    #[error("authentication to {target} failed: {source}")]
    Auth {
        target: String,
        #[source]
        source: Cause,
    },
    #[error("TLS to {target} failed: {source}")]
    Tls {
        target: String,
        #[source]
        source: Cause,
    },
    #[error(
        "connection to {target} is backing off for {remaining:?} after {failures} failed attempts"
    )]
    BackingOff {
        target: String,
        failures: u32,
        remaining: Duration,
    },
    #[error("connection lost during {view}: {source}")]
    ConnectionLost {
        view: &'static str,
        #[source]
        source: Cause,
    },
    #[error("view {view} failed: {source}")]
    Query {
        view: &'static str,
        #[source]
        source: Cause,
    },
    #[error("view {view} timed out")]
    Timeout { view: &'static str },
    #[error("view {view} answered an unexpected shape: {source}")]
    Decode {
        view: &'static str,
        #[source]
        source: Cause,
    },
}

impl CollectError {
    /// A view's failure as the poll's error, by the failure's class.
    pub fn view_failed(kind: ErrorKind, view: &'static str, source: Cause) -> CollectError {
        match kind {
            ErrorKind::Connect => CollectError::ConnectionLost { view, source },
            ErrorKind::Timeout => CollectError::Timeout { view },
            ErrorKind::Decode => CollectError::Decode { view, source },
            _ => CollectError::Query { view, source },
        }
    }

    /// A failed connect as the poll's error: credentials and TLS apart from the network.
    pub fn connect_failed(kind: ErrorKind, target: &str, source: Cause) -> CollectError {
        let target = target.to_owned();
        match kind {
            ErrorKind::Auth => CollectError::Auth { target, source },
            ErrorKind::Tls => CollectError::Tls { target, source },
            _ => CollectError::Connect { target, source },
        }
    }

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
