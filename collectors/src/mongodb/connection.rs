//! One persistent driver client per target, with reconnect backoff, a server-side `maxTimeMS` on every command
//! and a client-side deadline behind it.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use mongodb::bson::Document;
use mongodb::options::{ClientOptions, ServerMonitoringMode};
use mongodb::Client;
use tokio::time::Instant;

use crate::backoff::Backoff;
use crate::error::{CollectError, ErrorKind};
use crate::password::read_password;
use crate::view::ViewError;

use super::MongoOptions;

/// Why one command failed.
#[derive(Debug, thiserror::Error)]
pub enum MongoError {
    #[error(transparent)]
    Driver(#[from] mongodb::error::Error),
    /// Nothing came back before the client-side deadline: the network or the server is stuck, not the command.
    #[error("no answer within {}ms", .0.as_millis())]
    NoAnswer(Duration),
    #[error("unexpected answer: {0}")]
    Decode(#[from] super::fields::Missing),
}

impl MongoError {
    pub fn decode(what: &'static str) -> Self {
        MongoError::Decode(super::fields::Missing(what))
    }

    /// The server's error code, when the server answered with one.
    pub fn code(&self) -> Option<i32> {
        match self {
            MongoError::Driver(error) => match error.kind.as_ref() {
                mongodb::error::ErrorKind::Command(command) => Some(command.code),
                _ => None,
            },
            _ => None,
        }
    }
}

/// Server error codes, from the server's `src/mongo/base/error_codes.yml`.
pub mod codes {
    pub const UNAUTHORIZED: i32 = 13;
    pub const AUTHENTICATION_FAILED: i32 = 18;
    pub const NAMESPACE_NOT_FOUND: i32 = 26;
    pub const MAX_TIME_MS_EXPIRED: i32 = 50;
    pub const COMMAND_NOT_FOUND: i32 = 59;
    pub const NO_REPLICATION_ENABLED: i32 = 76;
    pub const COMMAND_NOT_SUPPORTED: i32 = 115;
    pub const NOT_IMPLEMENTED: i32 = 238;
    /// "Unrecognized pipeline stage name".
    pub const UNRECOGNIZED_STAGE: i32 = 40324;
}

/// The bounded class of a command failure.
pub fn classify(error: &MongoError) -> ErrorKind {
    use mongodb::error::ErrorKind as Driver;
    let driver = match error {
        MongoError::Driver(driver) => driver,
        // A command cut on the client side may still be running and its connection is in an unknown state.
        MongoError::NoAnswer(_) => return ErrorKind::Connect,
        MongoError::Decode(_) => return ErrorKind::Decode,
    };
    match driver.kind.as_ref() {
        Driver::Command(command) => match command.code {
            codes::UNAUTHORIZED | codes::AUTHENTICATION_FAILED => ErrorKind::Auth,
            codes::MAX_TIME_MS_EXPIRED => ErrorKind::Timeout,
            codes::COMMAND_NOT_FOUND
            | codes::NO_REPLICATION_ENABLED
            | codes::COMMAND_NOT_SUPPORTED
            | codes::NOT_IMPLEMENTED
            | codes::UNRECOGNIZED_STAGE => ErrorKind::Unsupported,
            _ => ErrorKind::Query,
        },
        Driver::Authentication { .. } => ErrorKind::Auth,
        Driver::BsonDeserialization(_) | Driver::InvalidResponse { .. } => ErrorKind::Decode,
        Driver::InvalidArgument { .. } | Driver::Write(_) | Driver::IncompatibleServer { .. } => {
            ErrorKind::Query
        }
        _ => ErrorKind::Connect,
    }
}

/// A command's failure as a poll failure, naming the view.
pub fn view_error(view: &'static str, error: MongoError) -> CollectError {
    CollectError::view_failed(classify(&error), view, Box::new(error))
}

/// A command of a view. A command the server lacks is a capability, not a failure to warn about.
impl ViewError for MongoError {
    fn kind(&self) -> ErrorKind {
        classify(self)
    }

    fn lacks_view(&self) -> bool {
        classify(self) == ErrorKind::Unsupported
    }

    fn into_collect_error(self, _target: &str, view: &'static str) -> CollectError {
        view_error(view, self)
    }
}

/// A live client plus the per-command limits. Cheap to clone: the driver's `Client` is a handle.
#[derive(Clone)]
pub struct Conn {
    client: Client,
    command_timeout: Duration,
    deadline: Duration,
    sent: Arc<AtomicU32>,
}

impl Conn {
    /// Runs one command on `database` with `maxTimeMS` appended.
    pub async fn command(&self, database: &str, command: Document) -> Result<Document, MongoError> {
        let command = self.with_max_time(command);
        self.sent.fetch_add(1, Ordering::Relaxed);
        let database = self.client.database(database);
        match tokio::time::timeout(self.deadline, database.run_command(command)).await {
            Ok(answer) => Ok(answer?),
            Err(_) => Err(MongoError::NoAnswer(self.deadline)),
        }
    }

    /// Runs a cursor-returning command (`aggregate`, `listCollections`) and reads the cursor to its end.
    ///
    /// The `maxTimeMS` of the first command bounds the cursor's whole life on the server; `getMore` takes none.
    pub async fn documents(
        &self,
        database: &str,
        command: Document,
    ) -> Result<Vec<Document>, MongoError> {
        let command = self.with_max_time(command);
        self.sent.fetch_add(1, Ordering::Relaxed);
        let database = self.client.database(database);
        let read = async {
            let mut cursor = database.run_cursor_command(command).await?;
            let mut documents = Vec::new();
            while cursor.advance().await? {
                documents.push(cursor.deserialize_current()?);
            }
            Ok::<_, mongodb::error::Error>(documents)
        };
        match tokio::time::timeout(self.deadline, read).await {
            Ok(documents) => Ok(documents?),
            Err(_) => Err(MongoError::NoAnswer(self.deadline)),
        }
    }

    /// Commands sent on this client since it was created.
    pub fn commands_sent(&self) -> u32 {
        self.sent.load(Ordering::Relaxed)
    }

    fn with_max_time(&self, mut command: Document) -> Document {
        let millis = i64::try_from(self.command_timeout.as_millis())
            .unwrap_or(i64::MAX)
            .max(1);
        command.insert("maxTimeMS", millis);
        command
    }
}

/// A lazily created, persistent client that is dropped on connection errors and recreated with backoff.
pub struct MongoSession {
    options: MongoOptions,
    conn: Option<Conn>,
    backoff: Backoff,
}

impl MongoSession {
    pub fn new(options: MongoOptions) -> Self {
        MongoSession {
            options,
            conn: None,
            backoff: Backoff::default(),
        }
    }

    pub fn target(&self) -> &str {
        &self.options.target
    }

    /// The client, creating it first when there is none and the backoff allows. The bool is true for a new client,
    /// whose server facts must be detected before anything else runs.
    pub async fn conn(&mut self) -> Result<(Conn, bool), CollectError> {
        if let Some(conn) = &self.conn {
            return Ok((conn.clone(), false));
        }
        self.backoff.ready(&self.options.target)?;
        match self.create().await {
            Ok(conn) => {
                self.conn = Some(conn.clone());
                Ok((conn, true))
            }
            Err(error) => {
                self.backoff.record_failure(Instant::now());
                Err(error)
            }
        }
    }

    /// The first commands on a new client answered: the connection counts as established.
    pub fn connected(&mut self) {
        self.backoff.record_success();
    }

    /// The first commands on a new client failed: forget it and wait before the next attempt.
    pub fn connect_failed(&mut self) {
        self.conn = None;
        self.backoff.record_failure(Instant::now());
    }

    /// Forgets the client without a goodbye; the driver closes its sockets in the background.
    pub fn drop_connection(&mut self) {
        self.conn = None;
    }

    pub async fn close(&mut self) {
        let Some(conn) = self.conn.take() else {
            return;
        };
        // A slow goodbye must not hold up the daemon's shutdown; the server notices the closed sockets anyway.
        let _ = tokio::time::timeout(
            self.options.connect_timeout,
            conn.client.shutdown().immediate(true),
        )
        .await;
    }

    async fn create(&self) -> Result<Conn, CollectError> {
        let options = &self.options;
        let target = options.target.clone();
        // Parsing resolves SRV and TXT records for mongodb+srv:// strings, so it gets the connect timeout too.
        let parsed =
            tokio::time::timeout(options.connect_timeout, ClientOptions::parse(&options.url)).await;
        let mut client_options = match parsed {
            Ok(Ok(client_options)) => client_options,
            Ok(Err(error)) => {
                return Err(CollectError::Connect {
                    target,
                    source: Box::new(InvalidUrl { source: error }),
                })
            }
            Err(_) => {
                return Err(CollectError::Connect {
                    target,
                    source: format!(
                        "connection string not resolved within {}ms",
                        options.connect_timeout.as_millis()
                    )
                    .into(),
                })
            }
        };
        client_options.app_name = Some("dbwatch".into());
        client_options.connect_timeout = Some(options.connect_timeout);
        client_options.server_selection_timeout = Some(options.server_selection_timeout);
        // Commands run one after the other, so one pooled connection carries the poll; the second is headroom
        // for a connection the driver is still closing.
        client_options.max_pool_size = Some(2);
        client_options.min_pool_size = Some(0);
        // The polling monitor keeps one heartbeat connection; the streaming one adds a second (RTT) socket.
        client_options.server_monitoring_mode = Some(ServerMonitoringMode::Poll);
        // A retried read doubles the load on a struggling server and the wait on a dead one.
        client_options.retry_reads = Some(false);
        let single_host = client_options.hosts.len() == 1;
        if options.direct_connection
            && single_host
            && client_options.direct_connection.is_none()
            && client_options.load_balanced != Some(true)
        {
            // Monitoring reads this node's own counters; following the set to its primary would read another's.
            client_options.direct_connection = Some(true);
        }
        if options.user.is_some() || options.password.is_some() || options.auth_source.is_some() {
            let mut credential = client_options.credential.take().unwrap_or_default();
            if let Some(user) = &options.user {
                credential.username = Some(user.clone());
            }
            if let Some(password) = read_password(&target, options.password.as_ref())? {
                credential.password = Some(password.expose().to_owned());
            }
            if let Some(auth_source) = &options.auth_source {
                credential.source = Some(auth_source.clone());
            }
            if credential.username.is_none() {
                return Err(CollectError::Auth {
                    target,
                    source: "a password is configured but no user".into(),
                });
            }
            client_options.credential = Some(credential);
        }
        let client =
            Client::with_options(client_options).map_err(|error| CollectError::Connect {
                target,
                source: Box::new(error),
            })?;
        Ok(Conn {
            client,
            command_timeout: options.command_timeout,
            // The first command of a poll may wait for server selection and a new connection before it runs.
            deadline: options.command_timeout
                + options.server_selection_timeout
                + Duration::from_secs(1),
            sent: Arc::new(AtomicU32::new(0)),
        })
    }
}

/// The failure of the first commands on a new client as a connection failure of the target.
pub fn connect_error(target: &str, view: &'static str, error: MongoError) -> CollectError {
    let target = target.to_owned();
    match classify(&error) {
        ErrorKind::Auth => CollectError::Auth {
            target,
            source: Box::new(error),
        },
        ErrorKind::Connect | ErrorKind::Timeout => CollectError::Connect {
            target,
            source: Box::new(error),
        },
        _ => view_error(view, error),
    }
}

/// A connection string the driver refused.
#[derive(Debug, thiserror::Error)]
#[error("invalid connection string: {source}")]
struct InvalidUrl {
    #[source]
    source: mongodb::error::Error,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn command_error(code: i32) -> MongoError {
        let error: mongodb::error::Error = mongodb::error::ErrorKind::Command(
            mongodb::bson::from_document(mongodb::bson::doc! {
                "code": code, "codeName": "x", "errmsg": "x"
            })
            .expect("command error"),
        )
        .into();
        MongoError::Driver(error)
    }

    #[test]
    fn server_codes_map_to_bounded_kinds() {
        assert_eq!(classify(&command_error(13)), ErrorKind::Auth);
        assert_eq!(classify(&command_error(50)), ErrorKind::Timeout);
        assert_eq!(classify(&command_error(59)), ErrorKind::Unsupported);
        assert_eq!(classify(&command_error(238)), ErrorKind::Unsupported);
        assert_eq!(classify(&command_error(40324)), ErrorKind::Unsupported);
        assert_eq!(classify(&command_error(2)), ErrorKind::Query);
        assert_eq!(
            classify(&MongoError::NoAnswer(Duration::from_secs(1))),
            ErrorKind::Connect
        );
        assert_eq!(classify(&MongoError::decode("x")), ErrorKind::Decode);
    }
}
