//! `type: postgres` and `type: pgbouncer` targets: both speak the PostgreSQL protocol and share the
//! `connection:` keys; PgBouncer's admin console has no `collectors:`.

use std::path::PathBuf;
use std::time::Duration;

use dbwatch_collectors::postgres::{
    PgConnectionOptions, PgTls, PgTlsMode, PostgresCollector, PostgresOptions, PostgresViews,
};
use dbwatch_collectors::pgbouncer::PgBouncerCollector;
use dbwatch_collectors::Collector;
use dbwatch_secret::{PasswordSource, Secret};
use dbwatch_yaml::node::{Mark, Node};
use dbwatch_yaml::read::{Fields, Reader};

use super::read::{
    check_positive, collector_fields, connection_fields, spanned_duration, Errors, Spanned,
    TargetLimits,
};
use super::TargetType;

const DEFAULT_LOCK_TIMEOUT: Duration = Duration::from_secs(1);

/// `type: postgres`.
pub struct Postgres;

/// `postgres` as written: the connection, which views, and the server-side limits if given.
#[derive(Debug)]
pub struct RawPostgres {
    connection: RawPgConnection,
    views: PostgresViews,
    statement_timeout: Option<Spanned<Duration>>,
    lock_timeout: Option<Spanned<Duration>>,
}

impl TargetType for Postgres {
    type Raw = RawPostgres;
    type Options = PostgresOptions;
    const RULES: &'static [(&'static str, &'static str)] =
        &[("postgres.yml", include_str!("../../alerts/postgres.yml"))];

    fn read(
        reader: &mut Reader<'_>,
        fields: &mut Fields<'_>,
        target_mark: Mark,
    ) -> Option<RawPostgres> {
        let connection = RawPgConnection::read(reader, fields, target_mark, "postgres")?;
        let (views, statement_timeout, lock_timeout) = read_postgres_collectors(reader, fields);
        Some(RawPostgres {
            connection,
            views,
            statement_timeout,
            lock_timeout,
        })
    }

    fn validate(
        raw: RawPostgres,
        target: TargetLimits<'_>,
        errors: &mut Errors<'_>,
    ) -> Option<PostgresOptions> {
        let timeout = target.timeout;
        let connection = validate_pg_connection(errors, raw.connection, target)?;
        // The server-side limits stay inside the client-side one, so the server cancels a stuck query
        // before the daemon abandons the connection.
        let statement_timeout = raw.statement_timeout.map_or(timeout / 2, |spanned| {
            if spanned.value >= timeout {
                errors.at(
                    spanned.mark,
                    &spanned.path,
                    "statement_timeout must be shorter than the target's timeout",
                );
            }
            spanned.value
        });
        let lock_timeout = raw
            .lock_timeout
            .map_or(DEFAULT_LOCK_TIMEOUT.min(timeout / 4), |spanned| {
                if spanned.value >= timeout {
                    errors.at(
                        spanned.mark,
                        &spanned.path,
                        "lock_timeout must be shorter than the target's timeout",
                    );
                }
                spanned.value
            });
        Some(PostgresOptions {
            connection,
            statement_timeout,
            lock_timeout,
            views: raw.views,
        })
    }

    fn build(options: &PostgresOptions) -> Box<dyn Collector> {
        Box::new(PostgresCollector::new(options.clone()))
    }
}

/// `type: pgbouncer`: the admin console.
pub struct PgBouncer;

impl TargetType for PgBouncer {
    type Raw = RawPgConnection;
    type Options = PgConnectionOptions;

    fn read(
        reader: &mut Reader<'_>,
        fields: &mut Fields<'_>,
        target_mark: Mark,
    ) -> Option<RawPgConnection> {
        RawPgConnection::read(reader, fields, target_mark, "pgbouncer")
    }

    fn validate(
        raw: RawPgConnection,
        target: TargetLimits<'_>,
        errors: &mut Errors<'_>,
    ) -> Option<PgConnectionOptions> {
        validate_pg_connection(errors, raw, target)
    }

    fn build(options: &PgConnectionOptions) -> Box<dyn Collector> {
        Box::new(PgBouncerCollector::new(options.clone()))
    }
}

/// `connection:` of a PostgreSQL-protocol target, as written.
#[derive(Debug)]
pub struct RawPgConnection {
    mark: Mark,
    path: String,
    host: Option<String>,
    port: Option<u16>,
    user: Option<String>,
    database: Option<String>,
    default_database: &'static str,
    password: Option<Secret>,
    password_file: Option<PathBuf>,
    connect_timeout: Option<Spanned<Duration>>,
    tls: PgTls,
    tls_mark: Mark,
}

impl RawPgConnection {
    fn read(
        reader: &mut Reader<'_>,
        fields: &mut Fields<'_>,
        target_mark: Mark,
        default_database: &'static str,
    ) -> Option<RawPgConnection> {
        let (mut connection, mark) = connection_fields(
            reader,
            fields,
            target_mark,
            "host, port, user and a password or password_file",
        )?;
        let path = connection.path().to_owned();
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
        let connect_timeout = spanned_duration(reader, &mut connection, "connect_timeout");
        let (tls, tls_mark) = match connection.take("tls") {
            Some((node, path)) => (read_tls(reader, node, &path).unwrap_or_default(), node.mark),
            None => (PgTls::default(), mark),
        };
        connection.finish(reader);
        Some(RawPgConnection {
            mark,
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
    let Some(mut collectors) = collector_fields(reader, fields) else {
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
    toggle("wraparound", &mut views.wraparound);
    toggle("locks", &mut views.locks);
    if let Some(limit) = collectors.take("top_statements").and_then(|(node, path)| {
        reader.integer::<usize>(node, &path, "a number of statements (0 turns it off)")
    }) {
        views.top_statements = limit;
    }
    let statement_timeout = spanned_duration(reader, &mut collectors, "statement_timeout");
    let lock_timeout = spanned_duration(reader, &mut collectors, "lock_timeout");
    collectors.finish(reader);
    (views, statement_timeout, lock_timeout)
}

fn validate_pg_connection(
    errors: &mut Errors<'_>,
    raw: RawPgConnection,
    target: TargetLimits<'_>,
) -> Option<PgConnectionOptions> {
    let mut missing = |key: &str| {
        errors.at(
            raw.mark,
            &format!("{}.{key}", raw.path),
            format!("missing key {key}"),
        );
    };
    let host = raw.host.clone().or_else(|| {
        missing("host");
        None
    });
    let user = raw.user.clone().or_else(|| {
        missing("user");
        None
    });
    let password = match (raw.password, raw.password_file) {
        (Some(_), Some(_)) => {
            errors.at(
                raw.mark,
                &raw.path,
                "password and password_file are both set; keep one",
            );
            None
        }
        (Some(secret), None) => Some(PasswordSource::Inline(secret)),
        (None, Some(path)) => Some(PasswordSource::File(path)),
        (None, None) => None,
    };
    let tls = raw.tls;
    if tls.cert_file.is_some() != tls.key_file.is_some() {
        errors.at(
            raw.tls_mark,
            &format!("{}.tls", raw.path),
            "cert_file and key_file go together",
        );
    }
    let connect_timeout = match raw.connect_timeout {
        Some(spanned) => {
            check_positive(errors, &spanned);
            spanned.value.min(target.timeout)
        }
        None => target.timeout,
    };
    Some(PgConnectionOptions {
        target: target.name.to_owned(),
        host: host?,
        port: raw.port.unwrap_or(5432),
        user: user?,
        database: raw
            .database
            .unwrap_or_else(|| raw.default_database.to_owned()),
        password,
        tls,
        connect_timeout,
    })
}
