//! `type: mongodb` targets.

use dbwatch_collectors::mongodb::MongoOptions;

use super::read::{Errors, TargetLimits, collector_fields, connection_fields, read_password};
use dbwatch_yaml::node::Mark;
use dbwatch_yaml::read::{Fields, Reader};

use super::TargetType;

/// `type: mongodb`.
pub struct Mongodb;

impl TargetType for Mongodb {
    type Raw = MongoOptions;
    type Options = MongoOptions;
    const RULES: &'static [(&'static str, &'static str)] =
        &[("mongodb.yml", include_str!("../../alerts/mongodb.yml"))];

    fn read(reader: &mut Reader<'_>, fields: &mut Fields<'_>, target_mark: Mark) -> Option<MongoOptions> {
        read_options(reader, fields, target_mark)
    }

    fn validate(
        mut options: MongoOptions,
        target: TargetLimits<'_>,
        _errors: &mut Errors<'_>,
    ) -> Option<MongoOptions> {
        options.target = target.name.to_owned();
        options.connect_timeout = options.connect_timeout.min(target.timeout);
        options.server_selection_timeout = options.server_selection_timeout.min(target.timeout);
        options.command_timeout = options.command_timeout.min(target.timeout / 2);
        Some(options)
    }

    fn build(options: &MongoOptions) -> Box<dyn dbwatch_collectors::Collector> {
        Box::new(dbwatch_collectors::mongodb::MongoCollector::new(options.clone()))
    }
}

fn read_options(
    reader: &mut Reader<'_>,
    fields: &mut Fields<'_>,
    target_mark: Mark,
) -> Option<MongoOptions> {
    let mut options = MongoOptions::default();
    let (mut connection, mark) = connection_fields(
        reader,
        fields,
        target_mark,
        "url, and user with a password or password_file when the server needs them",
    )?;
    match connection.string(reader, "url") {
        Some(url) if url.starts_with("mongodb://") || url.starts_with("mongodb+srv://") => {
            options.url = url
        }
        Some(url) => reader.error(
            mark,
            &format!("{}.url", connection.path()),
            format!(
                "expected a mongodb:// or mongodb+srv:// URL, found {:?}",
                url.split('@').next_back().unwrap_or("")
            ),
        ),
        None => reader.error(
            mark,
            &format!("{}.url", connection.path()),
            "missing key url",
        ),
    }
    options.user = connection.string(reader, "user");
    options.password = read_password(reader, &mut connection, mark);
    options.auth_source = connection.string(reader, "auth_source");
    if let Some(value) = connection.boolean(reader, "direct_connection") {
        options.direct_connection = value;
    }
    if let Some(value) = connection.duration(reader, "connect_timeout") {
        options.connect_timeout = value;
    }
    if let Some(value) = connection.duration(reader, "server_selection_timeout") {
        options.server_selection_timeout = value;
    }
    if let Some(value) = connection.duration(reader, "command_timeout") {
        options.command_timeout = value;
    }
    connection.finish(reader);

    if let Some(mut collectors) = collector_fields(reader, fields) {
        let views = &mut options.views;
        for (key, slot) in [
            ("index_stats", &mut views.index_stats),
            ("replication", &mut views.replication),
            ("oplog", &mut views.oplog),
            ("sharding", &mut views.sharding),
        ] {
            if let Some(value) = collectors.boolean(reader, key) {
                *slot = value;
            }
        }
        if let Some(value) = collectors.duration(reader, "index_stats_interval") {
            views.index_stats_interval = value;
        }
        if let Some(value) =
            collectors.integer(reader, "max_collections", "a number of collections")
        {
            views.max_collections = value;
        }
        if let Some(value) = collectors.strings(reader, "databases_include") {
            views.databases_include = value;
        }
        if let Some(value) = collectors.strings(reader, "databases_exclude") {
            views.databases_exclude = value;
        }
        collectors.finish(reader);
    }
    Some(options)
}
