//! The engine-specific part of a target: `type`, `connection` and `collectors`. Adding an engine means a
//! variant here, its reading and its validation; the `match` on [`RawEngine`] keeps the list closed.

use std::path::PathBuf;
use std::time::Duration;

use dbwatch_collectors::postgres::{PgTls, PgTlsMode, PostgresViews};
use dbwatch_collectors::secret::Secret;

use super::Spanned;
use dbwatch_yaml::node::{Mark, Node};
use dbwatch_yaml::read::{Fields, Reader};

/// The target types dbwatch knows, for messages.
pub const TYPES: &[&str] = &[
    "postgres",
    "pgbouncer",
    "mysql",
    "mongodb",
    "cassandra",
    "dynamodb",
];

#[derive(Debug)]
pub enum RawEngine {
    Postgres {
        connection: RawPgConnection,
        views: PostgresViews,
        statement_timeout: Option<Spanned<Duration>>,
        lock_timeout: Option<Spanned<Duration>>,
    },
    PgBouncer {
        connection: RawPgConnection,
    },
    #[cfg(feature = "mysql")]
    Mysql(dbwatch_collectors::mysql::MysqlOptions),
    #[cfg(feature = "mongodb")]
    Mongodb(dbwatch_collectors::mongodb::MongoOptions),
    #[cfg(feature = "dynamodb")]
    Dynamodb(dbwatch_collectors::dynamodb::DynamoDbOptions),
    #[cfg(feature = "cassandra")]
    Cassandra(dbwatch_collectors::cassandra::CassandraOptions),
}

impl RawEngine {
    /// Reads `type` and the keys that depend on it from a target's fields.
    pub fn read(
        reader: &mut Reader<'_>,
        fields: &mut Fields<'_>,
        target_mark: Mark,
    ) -> Option<RawEngine> {
        let Some((type_node, type_path)) = fields.take("type") else {
            reader.error(
                target_mark,
                &format!("{}.type", fields.path()),
                format!("missing key type, expected one of: {}", TYPES.join(", ")),
            );
            return None;
        };
        let kind = reader.string(type_node, &type_path)?;
        match kind.as_str() {
            "postgres" => {
                let connection = RawPgConnection::read(reader, fields, target_mark, "postgres")?;
                let (views, statement_timeout, lock_timeout) =
                    read_postgres_collectors(reader, fields);
                Some(RawEngine::Postgres {
                    connection,
                    views,
                    statement_timeout,
                    lock_timeout,
                })
            }
            "pgbouncer" => {
                let connection = RawPgConnection::read(reader, fields, target_mark, "pgbouncer")?;
                Some(RawEngine::PgBouncer { connection })
            }
            #[cfg(feature = "mysql")]
            "mysql" => {
                super::engines::mysql::read(reader, fields, target_mark).map(RawEngine::Mysql)
            }
            #[cfg(feature = "mongodb")]
            "mongodb" => {
                super::engines::mongodb::read(reader, fields, target_mark).map(RawEngine::Mongodb)
            }
            #[cfg(feature = "dynamodb")]
            "dynamodb" => {
                super::engines::dynamodb::read(reader, fields, target_mark).map(RawEngine::Dynamodb)
            }
            #[cfg(feature = "cassandra")]
            "cassandra" => super::engines::cassandra::read(reader, fields, target_mark)
                .map(RawEngine::Cassandra),
            other if TYPES.contains(&other) => {
                reader.error(
                    type_node.mark,
                    &type_path,
                    format!("target type {other:?} is not compiled into this build (cargo feature {other})"),
                );
                None
            }
            other => {
                reader.error(
                    type_node.mark,
                    &type_path,
                    format!(
                        "unknown target type {other:?}, expected one of: {}",
                        TYPES.join(", ")
                    ),
                );
                None
            }
        }
    }
}

/// `connection:` of a PostgreSQL-protocol target, as written.
#[derive(Debug)]
pub struct RawPgConnection {
    pub mark: Mark,
    pub path: String,
    pub host: Option<String>,
    pub port: Option<u16>,
    pub user: Option<String>,
    pub database: Option<String>,
    pub default_database: &'static str,
    pub password: Option<Secret>,
    pub password_file: Option<PathBuf>,
    pub connect_timeout: Option<Spanned<Duration>>,
    pub tls: PgTls,
    pub tls_mark: Mark,
}

impl RawPgConnection {
    fn read(
        reader: &mut Reader<'_>,
        fields: &mut Fields<'_>,
        target_mark: Mark,
        default_database: &'static str,
    ) -> Option<RawPgConnection> {
        let Some((node, path)) = fields.take("connection") else {
            reader.error(
                target_mark,
                &format!("{}.connection", fields.path()),
                "missing key connection: host, port, user and a password or password_file",
            );
            return None;
        };
        let mut connection = Fields::of(reader, node, &path)?;
        let host = connection
            .take("host")
            .and_then(|(node, path)| reader.string(node, &path));
        let port = connection
            .take("port")
            .and_then(|(node, path)| reader.integer::<u16>(node, &path, "a port number (1-65535)"));
        let user = connection
            .take("user")
            .and_then(|(node, path)| reader.string(node, &path));
        let database = connection
            .take("database")
            .and_then(|(node, path)| reader.string(node, &path));
        let password = connection
            .take("password")
            .and_then(|(node, path)| reader.scalar(node, &path))
            .map(Secret::new);
        let password_file = connection
            .take("password_file")
            .and_then(|(node, path)| reader.string(node, &path))
            .map(PathBuf::from);
        let connect_timeout = connection.take("connect_timeout").and_then(|(node, path)| {
            let value = reader.duration(node, &path)?;
            Some(Spanned {
                value,
                mark: node.mark,
                path,
            })
        });
        let (tls, tls_mark) = match connection.take("tls") {
            Some((node, path)) => (read_tls(reader, node, &path).unwrap_or_default(), node.mark),
            None => (PgTls::default(), node.mark),
        };
        connection.finish(reader);
        Some(RawPgConnection {
            mark: node.mark,
            path,
            host,
            port,
            user,
            database,
            default_database,
            password,
            password_file,
            connect_timeout,
            tls,
            tls_mark,
        })
    }
}

fn read_tls(reader: &mut Reader<'_>, node: &Node, path: &str) -> Option<PgTls> {
    let mut fields = Fields::of(reader, node, path)?;
    let mut tls = PgTls::default();
    if let Some((node, path)) = fields.take("mode") {
        if let Some(name) = reader.string(node, &path) {
            match PgTlsMode::parse(&name) {
                Some(mode) => tls.mode = mode,
                None => reader.error(
                    node.mark,
                    &path,
                    format!(
                        "unknown TLS mode {name:?}, expected one of: {}",
                        PgTlsMode::NAMES.join(", ")
                    ),
                ),
            }
        }
    }
    let mut file = |key: &'static str| {
        fields
            .take(key)
            .and_then(|(node, path)| reader.string(node, &path))
            .map(PathBuf::from)
    };
    tls.ca_file = file("ca_file");
    tls.cert_file = file("cert_file");
    tls.key_file = file("key_file");
    fields.finish(reader);
    Some(tls)
}

type PostgresCollectorsRead = (
    PostgresViews,
    Option<Spanned<Duration>>,
    Option<Spanned<Duration>>,
);

fn read_postgres_collectors(
    reader: &mut Reader<'_>,
    fields: &mut Fields<'_>,
) -> PostgresCollectorsRead {
    let mut views = PostgresViews::default();
    let Some((node, path)) = fields.take("collectors") else {
        return (views, None, None);
    };
    let Some(mut collectors) = Fields::of(reader, node, &path) else {
        return (views, None, None);
    };
    let mut toggle = |key: &'static str, slot: &mut bool| {
        if let Some(value) = collectors
            .take(key)
            .and_then(|(node, path)| reader.boolean(node, &path))
        {
            *slot = value;
        }
    };
    toggle("database", &mut views.database);
    toggle("statements", &mut views.statements);
    toggle("replication", &mut views.replication);
    toggle("archiver", &mut views.archiver);
    toggle("checkpointer", &mut views.checkpointer);
    if let Some(limit) = collectors.take("top_statements").and_then(|(node, path)| {
        reader.integer::<usize>(node, &path, "a number of statements (0 turns it off)")
    }) {
        views.top_statements = limit;
    }
    let mut duration = |key: &'static str| {
        let (node, path) = collectors.take(key)?;
        let value = reader.duration(node, &path)?;
        Some(Spanned {
            value,
            mark: node.mark,
            path,
        })
    };
    let statement_timeout = duration("statement_timeout");
    let lock_timeout = duration("lock_timeout");
    collectors.finish(reader);
    (views, statement_timeout, lock_timeout)
}

/// `password` or `password_file`, never both.
pub fn read_password(
    reader: &mut Reader<'_>,
    fields: &mut Fields<'_>,
    mark: Mark,
) -> Option<dbwatch_collectors::secret::PasswordSource> {
    use dbwatch_collectors::secret::PasswordSource;
    let inline = fields.scalar(reader, "password").map(Secret::new);
    let file = fields.string(reader, "password_file").map(PathBuf::from);
    match (inline, file) {
        (Some(_), Some(_)) => {
            reader.error(
                mark,
                fields.path(),
                "password and password_file are both set; keep one",
            );
            None
        }
        (Some(secret), None) => Some(PasswordSource::Inline(secret)),
        (None, Some(path)) => Some(PasswordSource::File(path)),
        (None, None) => None,
    }
}

/// The `connection:` mapping of a target, reported when missing.
pub fn connection_fields<'n>(
    reader: &mut Reader<'_>,
    fields: &mut Fields<'n>,
    target_mark: Mark,
    hint: &str,
) -> Option<(Fields<'n>, Mark)> {
    let Some((node, path)) = fields.take("connection") else {
        reader.error(
            target_mark,
            &format!("{}.connection", fields.path()),
            format!("missing key connection: {hint}"),
        );
        return None;
    };
    Some((Fields::of(reader, node, &path)?, node.mark))
}

/// The optional `collectors:` mapping of a target.
pub fn collector_fields<'n>(
    reader: &mut Reader<'_>,
    fields: &mut Fields<'n>,
) -> Option<Fields<'n>> {
    let (node, path) = fields.take("collectors")?;
    Fields::of(reader, node, &path)
}
