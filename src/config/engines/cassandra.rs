//! `type: cassandra` targets: the cluster, reached through its contact points; every node is polled.

use dbwatch_collectors::cassandra::{CanaryConsistency, CanaryOptions, CassandraOptions};

use crate::config::read::{Fields, Reader};
use crate::config::targets::{collector_fields, connection_fields, read_password};
use crate::config::yaml::Mark;

pub fn read(
    reader: &mut Reader<'_>,
    fields: &mut Fields<'_>,
    target_mark: Mark,
) -> Option<CassandraOptions> {
    let mut options = CassandraOptions::default();
    let (mut connection, mark) = connection_fields(
        reader,
        fields,
        target_mark,
        "contact_points (host:port list)",
    )?;
    match connection.strings(reader, "contact_points") {
        Some(points) if !points.is_empty() => options.contact_points = points,
        _ => reader.error(
            mark,
            &format!("{}.contact_points", connection.path()),
            "missing key contact_points: list at least one host:port",
        ),
    }
    options.local_datacenter = connection.string(reader, "local_datacenter");
    options.user = connection.string(reader, "user");
    options.password = read_password(reader, &mut connection, mark);
    if let Some(value) = connection.duration(reader, "connect_timeout") {
        options.connect_timeout = value;
    }
    if let Some(value) = connection.duration(reader, "request_timeout") {
        options.request_timeout = value;
    }
    connection.finish(reader);

    if let Some(mut collectors) = collector_fields(reader, fields) {
        let views = &mut options.views;
        for (key, slot) in [
            ("latency", &mut views.latency),
            ("compaction", &mut views.compaction),
            ("thread_pools", &mut views.thread_pools),
            ("gossip", &mut views.gossip),
            ("clients", &mut views.clients),
            ("hints", &mut views.hints),
            (
                "include_system_keyspaces",
                &mut options.include_system_keyspaces,
            ),
        ] {
            if let Some(value) = collectors.boolean(reader, key) {
                *slot = value;
            }
        }
        if let Some(value) = collectors.integer(reader, "node_concurrency", "a number of nodes") {
            options.node_concurrency = value;
        }
        if let Some(value) = collectors.integer(
            reader,
            "max_tables",
            "a number of tables (0 keeps node sums only)",
        ) {
            options.max_tables = value;
        }
        if let Some(value) = collectors.duration(reader, "peer_stale_after") {
            options.peer_stale_after = value;
        }
        if let Some((node, path)) = collectors.take("canary") {
            options.canary = read_canary(reader, node, &path);
        }
        collectors.finish(reader);
    }
    Some(options)
}

fn read_canary(
    reader: &mut Reader<'_>,
    node: &crate::config::yaml::Node,
    path: &str,
) -> Option<CanaryOptions> {
    let mut fields = Fields::of(reader, node, path)?;
    let mut canary = CanaryOptions::default();
    if let Some(value) = fields.string(reader, "keyspace") {
        canary.keyspace = value;
    }
    if let Some(value) = fields.string(reader, "table") {
        canary.table = value;
    }
    if let Some(value) = fields.duration(reader, "timeout") {
        canary.timeout = value;
    }
    if let Some(levels) = fields.strings(reader, "consistency_levels") {
        let mut parsed = Vec::with_capacity(levels.len());
        for (index, level) in levels.iter().enumerate() {
            match CanaryConsistency::parse(level) {
                Some(consistency) => parsed.push(consistency),
                None => reader.error(
                    node.mark,
                    &format!("{path}.consistency_levels[{index}]"),
                    format!("unknown consistency level {level:?}, expected one, two, three, quorum, all, local_quorum, each_quorum or local_one"),
                ),
            }
        }
        canary.consistency_levels = parsed;
    }
    fields.finish(reader);
    Some(canary)
}
