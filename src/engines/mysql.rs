//! `type: mysql` targets (MySQL and MariaDB).
use dbwatch_collectors::mysql::{
    HeartbeatOptions, HeartbeatTable, MysqlConnectionOptions, MysqlOptions, MysqlTlsMode,
};

use std::path::PathBuf;

use super::read::{Errors, TargetLimits, collector_fields, connection_fields, read_password};
use dbwatch_yaml::node::Mark;
use dbwatch_yaml::read::{Fields, Reader};

use super::TargetType;

/// `type: mysql`.
pub struct Mysql;

impl TargetType for Mysql {
    type Raw = MysqlOptions;
    type Options = MysqlOptions;
    const RULES: &'static [(&'static str, &'static str)] =
        &[("mysql.yml", include_str!("../../alerts/mysql.yml"))];

    fn read(reader: &mut Reader<'_>, fields: &mut Fields<'_>, target_mark: Mark) -> Option<MysqlOptions> {
        read_options(reader, fields, target_mark)
    }

    fn validate(
        mut options: MysqlOptions,
        target: TargetLimits<'_>,
        _errors: &mut Errors<'_>,
    ) -> Option<MysqlOptions> {
        options.connection.target = target.name.to_owned();
        options.connection.connect_timeout = options.connection.connect_timeout.min(target.timeout);
        // The server-side bound stays inside the poll's deadline, as for PostgreSQL.
        options.statement_timeout = options.statement_timeout.min(target.timeout / 2);
        Some(options)
    }

    fn build(options: &MysqlOptions) -> Box<dyn dbwatch_collectors::Collector> {
        Box::new(dbwatch_collectors::mysql::MysqlCollector::new(options.clone()))
    }
}

fn read_options(
    reader: &mut Reader<'_>,
    fields: &mut Fields<'_>,
    target_mark: Mark,
) -> Option<MysqlOptions> {
    let mut options = MysqlOptions::default();
    let (mut connection, mark) = connection_fields(
        reader,
        fields,
        target_mark,
        "host, port, user and a password or password_file",
    )?;
    let defaults = MysqlConnectionOptions::default();
    options.connection = MysqlConnectionOptions {
        target: String::new(),
        host: connection.string(reader, "host").unwrap_or(defaults.host),
        port: connection
            .integer(reader, "port", "a port number (1-65535)")
            .unwrap_or(defaults.port),
        socket: connection.string(reader, "socket").map(PathBuf::from),
        user: match connection.string(reader, "user") {
            Some(user) => user,
            None => {
                reader.error(
                    mark,
                    &format!("{}.user", connection.path()),
                    "missing key user",
                );
                defaults.user
            }
        },
        password: read_password(reader, &mut connection, mark),
        tls: defaults.tls,
        connect_timeout: connection
            .duration(reader, "connect_timeout")
            .unwrap_or(defaults.connect_timeout),
    };
    if let Some((node, path)) = connection.take("tls") {
        if let Some(mut tls) = Fields::of(reader, node, &path) {
            if let Some((mode_node, mode_path)) = tls.take("mode") {
                if let Some(name) = reader.string(mode_node, &mode_path) {
                    match MysqlTlsMode::parse(&name) {
                        Some(mode) => options.connection.tls.mode = mode,
                        None => reader.error(
                            mode_node.mark,
                            &mode_path,
                            format!(
                                "unknown TLS mode {name:?}, expected one of: {}",
                                MysqlTlsMode::NAMES.join(", ")
                            ),
                        ),
                    }
                }
            }
            options.connection.tls.ca_file = tls.string(reader, "ca_file").map(PathBuf::from);
            options.connection.tls.cert_file = tls.string(reader, "cert_file").map(PathBuf::from);
            options.connection.tls.key_file = tls.string(reader, "key_file").map(PathBuf::from);
            tls.finish(reader);
        }
    }
    connection.finish(reader);

    if let Some(mut collectors) = collector_fields(reader, fields) {
        let views = &mut options.views;
        if let Some(value) = collectors.boolean(reader, "replication") {
            views.replication = value;
        }
        if let Some(value) = collectors.boolean(reader, "binary_logs") {
            views.binary_logs = value;
        }
        if let Some(value) = collectors.boolean(reader, "innodb") {
            views.innodb = value;
        }
        if let Some(value) = collectors.boolean(reader, "statement_latency") {
            views.statement_latency = value;
        }
        if let Some(value) = collectors.boolean(reader, "exclude_own_statements") {
            views.exclude_own_statements = value;
        }
        if let Some(value) = collectors.integer(
            reader,
            "top_digests",
            "a number of digests (0 turns it off)",
        ) {
            views.top_digests = value;
        }
        if let Some(value) = collectors.duration(reader, "statement_timeout") {
            options.statement_timeout = value;
        }
        if let Some((node, path)) = collectors.take("heartbeat") {
            if let Some(mut heartbeat) = Fields::of(reader, node, &path) {
                let table = heartbeat.string(reader, "table");
                let write = heartbeat.boolean(reader, "write").unwrap_or(false);
                match table {
                    Some(table) => match HeartbeatTable::parse(&table) {
                        Ok(_) => options.heartbeat = Some(HeartbeatOptions { table, write }),
                        Err(error) => {
                            reader.error(node.mark, &format!("{path}.table"), error.to_string())
                        }
                    },
                    None => reader.error(node.mark, &format!("{path}.table"), "missing key table"),
                }
                heartbeat.finish(reader);
            }
        }
        collectors.finish(reader);
    }
    Some(options)
}
