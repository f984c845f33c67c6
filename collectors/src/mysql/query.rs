//! One statement to the server and what can go wrong with it: the text-protocol round trip every view and
//! the connection's own setup use, and the bounded class of a failure.

use std::time::Duration;

use sqlx::mysql::{MySqlConnection, MySqlDatabaseError};
use sqlx::SqlSafeStr;

use crate::error::{CollectError, ErrorKind};
use crate::view::ViewError;

use super::row::{ShapeError, TextRow};

/// Why one statement failed.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    #[error(transparent)]
    Driver(#[from] sqlx::Error),
    #[error("unexpected answer: {0}")]
    Shape(#[from] ShapeError),
    /// The client-side bound passed: the connection may be mid-statement and must be dropped.
    #[error("no answer within {0:?}")]
    ClientTimeout(Duration),
}

impl QueryError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            QueryError::Driver(error) => classify(error),
            QueryError::Shape(_) => ErrorKind::Decode,
            QueryError::ClientTimeout(_) => ErrorKind::Timeout,
        }
    }

    /// Whether the connection cannot be used for the rest of the poll.
    pub fn ends_connection(&self) -> bool {
        matches!(self, QueryError::ClientTimeout(_)) || self.kind() == ErrorKind::Connect
    }
}

/// A statement of a view. A client-side timeout leaves the connection mid-answer, so it ends the poll too.
impl ViewError for QueryError {
    fn kind(&self) -> ErrorKind {
        QueryError::kind(self)
    }

    fn ends_poll(&self) -> bool {
        self.ends_connection()
    }

    fn into_collect_error(self, _target: &str, view: &'static str) -> CollectError {
        CollectError::view_failed(QueryError::kind(&self), view, Box::new(self))
    }
}

/// Runs one statement over the text protocol and reads its rows as text, bounded on the client side too.
pub async fn fetch_rows(
    connection: &mut MySqlConnection,
    sql: impl SqlSafeStr,
    timeout: Duration,
) -> Result<Vec<TextRow>, QueryError> {
    // raw_sql sends COM_QUERY: one round trip and an answer in text, which TextRow reads whatever the column
    // types. sqlx::query would prepare, execute and close a statement: three commands and binary values.
    let query = sqlx::raw_sql(sql).fetch_all(connection);
    let rows = tokio::time::timeout(timeout, query)
        .await
        .map_err(|_| QueryError::ClientTimeout(timeout))??;
    Ok(rows.iter().map(TextRow::from_sqlx).collect())
}

/// Runs one statement that returns no rows, bounded on the client side too.
pub async fn execute(
    connection: &mut MySqlConnection,
    sql: impl SqlSafeStr,
    timeout: Duration,
) -> Result<(), QueryError> {
    let statement = sqlx::raw_sql(sql).execute(connection);
    tokio::time::timeout(timeout, statement)
        .await
        .map_err(|_| QueryError::ClientTimeout(timeout))??;
    Ok(())
}

/// The bounded class of a driver error, from the server's error number.
/// Numbers per the MySQL and MariaDB error references.
pub fn classify(error: &sqlx::Error) -> ErrorKind {
    match error {
        sqlx::Error::Database(database_error) => {
            let Some(mysql_error) = database_error.try_downcast_ref::<MySqlDatabaseError>() else {
                return ErrorKind::Query;
            };
            classify_number(mysql_error.number())
        }
        sqlx::Error::ColumnDecode { .. }
        | sqlx::Error::ColumnNotFound(_)
        | sqlx::Error::Decode(_)
        | sqlx::Error::TypeNotFound { .. }
        | sqlx::Error::ColumnIndexOutOfBounds { .. }
        | sqlx::Error::RowNotFound => ErrorKind::Decode,
        _ => ErrorKind::Connect,
    }
}

fn classify_number(number: u16) -> ErrorKind {
    match number {
        // 1044 db access denied, 1045 access denied, 1142 table/command denied, 1143 column denied,
        // 1227 missing a privilege such as PROCESS or REPLICATION CLIENT, 1698 access denied (unix_socket).
        1044 | 1045 | 1142 | 1143 | 1227 | 1698 => ErrorKind::Auth,
        // 1969 MariaDB max_statement_time, 3024 MySQL max_execution_time, 1205 lock wait timeout,
        // 1317 query interrupted.
        1969 | 3024 | 1205 | 1317 => ErrorKind::Timeout,
        // 1064 syntax (a statement the server does not know), 1146 no such table, 1054 unknown column,
        // 1193 unknown system variable, 1235 not supported by this version.
        1064 | 1146 | 1054 | 1193 | 1235 => ErrorKind::Unsupported,
        // 1053 server shutdown, 1927 MariaDB connection killed, 4031 MySQL idle disconnect.
        1053 | 1927 | 4031 => ErrorKind::Connect,
        _ => ErrorKind::Query,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_numbers_map_to_bounded_kinds() {
        assert_eq!(classify_number(1045), ErrorKind::Auth);
        assert_eq!(classify_number(1227), ErrorKind::Auth);
        assert_eq!(classify_number(1969), ErrorKind::Timeout);
        assert_eq!(classify_number(3024), ErrorKind::Timeout);
        assert_eq!(classify_number(1146), ErrorKind::Unsupported);
        assert_eq!(classify_number(1927), ErrorKind::Connect);
        assert_eq!(classify_number(1062), ErrorKind::Query);
    }
}
