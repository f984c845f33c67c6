//! `type: cassandra` targets: the cluster, reached through its contact points; every node is polled.

use std::path::PathBuf;

use dbwatch_collectors::cassandra::{
    CanaryConsistency, CanaryOptions, CassandraOptions, CassandraTls, CassandraTlsMode,
};

use super::read::{Errors, TargetLimits, collector_fields, connection_fields, read_password};
use dbwatch_yaml::node::Mark;
use dbwatch_yaml::read::{Fields, Reader};

use super::TargetType;

/// `type: cassandra`.
pub struct Cassandra;

impl TargetType for Cassandra {
    type Raw = CassandraOptions;
    type Options = CassandraOptions;
    const RULES: &'static [(&'static str, &'static str)] =
        &[("cassandra.yml", include_str!("../../alerts/cassandra.yml"))];

    fn read(reader: &mut Reader<'_>, fields: &mut Fields<'_>, target_mark: Mark) -> Option<CassandraOptions> {
        read_options(reader, fields, target_mark)
    }

    fn validate(
        mut options: CassandraOptions,
        target: TargetLimits<'_>,
        _errors: &mut Errors<'_>,
    ) -> Option<CassandraOptions> {
        let timeout = target.timeout;
        options.target = target.name.to_owned();
        options.connect_timeout = options.connect_timeout.min(timeout);
        options.request_timeout = options.request_timeout.min(timeout / 2);
        if let Some(canary) = options.canary.as_mut() {
            // A canary that can outlive the poll would only ever be cut by the deadline.
            canary.timeout = canary.timeout.min(timeout * 3 / 4);
        }
        Some(options)
    }

    fn build(options: &CassandraOptions) -> Box<dyn dbwatch_collectors::Collector> {
        Box::new(dbwatch_collectors::cassandra::CassandraCollector::new(options.clone()))
    }
}

fn read_options(
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
    if let Some((node, path)) = connection.take("tls") {
        if let Some(tls) = read_tls(reader, node, &path) {
            options.tls = tls;
        }
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

/// `tls: {mode, ca_file, cert_file, key_file, server_name}`. A `tls` block without a mode means `verify-full`:
/// whoever writes one wants TLS, and Cassandra has no opportunistic mode to fall back to.
fn read_tls(
    reader: &mut Reader<'_>,
    node: &dbwatch_yaml::node::Node,
    path: &str,
) -> Option<CassandraTls> {
    let mut fields = Fields::of(reader, node, path)?;
    let mut tls = CassandraTls {
        mode: CassandraTlsMode::VerifyFull,
        ..CassandraTls::default()
    };
    if let Some((mode_node, mode_path)) = fields.take("mode") {
        if let Some(name) = reader.string(mode_node, &mode_path) {
            match CassandraTlsMode::parse(&name) {
                Some(mode) => tls.mode = mode,
                None => reader.error(
                    mode_node.mark,
                    &mode_path,
                    format!(
                        "unknown TLS mode {name:?}, expected one of: {} (there is no unverified mode: \
                         pin a self-signed certificate with ca_file and verify-ca)",
                        CassandraTlsMode::NAMES.join(", ")
                    ),
                ),
            }
        }
    }
    tls.ca_file = fields.string(reader, "ca_file").map(PathBuf::from);
    tls.cert_file = fields.string(reader, "cert_file").map(PathBuf::from);
    tls.key_file = fields.string(reader, "key_file").map(PathBuf::from);
    tls.server_name = fields.string(reader, "server_name");
    fields.finish(reader);
    if tls.cert_file.is_some() != tls.key_file.is_some() {
        reader.error(node.mark, path, "cert_file and key_file go together");
    }
    let any_setting = tls.ca_file.is_some()
        || tls.cert_file.is_some()
        || tls.key_file.is_some()
        || tls.server_name.is_some();
    if tls.mode == CassandraTlsMode::Disable && any_setting {
        reader.error(
            node.mark,
            path,
            "mode is disable, so ca_file, cert_file, key_file and server_name would be ignored: remove them or choose verify-ca or verify-full",
        );
    }
    if tls.mode == CassandraTlsMode::VerifyCa && tls.server_name.is_some() {
        reader.error(
            node.mark,
            &format!("{path}.server_name"),
            "server_name is checked only under verify-full",
        );
    }
    Some(tls)
}

fn read_canary(
    reader: &mut Reader<'_>,
    node: &dbwatch_yaml::node::Node,
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

#[cfg(test)]
mod tests {
    use std::path::Path;

    use dbwatch_collectors::cassandra::{CassandraOptions, CassandraTlsMode};

    use crate::config::{load_str, Engine};

    fn no_env(_: &str) -> Option<String> {
        None
    }

    fn target(connection: &str) -> String {
        format!("targets:\n  - name: events\n    type: cassandra\n    connection: {connection}\n")
    }

    fn load(connection: &str) -> Result<CassandraOptions, Vec<(String, String)>> {
        match load_str(Path::new("dbwatch.yml"), &target(connection), &no_env) {
            Ok(config) => match &config.targets[0].engine {
                Engine::Cassandra(options) => Ok(options.clone()),
                other => panic!("not a cassandra target: {other:?}"),
            },
            Err(errors) => Err(errors
                .errors
                .into_iter()
                .map(|error| (error.path, error.message))
                .collect()),
        }
    }

    #[test]
    fn no_tls_block_is_plaintext_and_a_block_without_mode_verifies_fully() {
        let plain = load("{contact_points: [\"c1:9042\"]}").expect("valid");
        assert_eq!(plain.tls.mode, CassandraTlsMode::Disable);

        let tls = load(
            "{contact_points: [\"c1:9042\"], tls: {ca_file: /etc/ssl/cass-ca.pem, cert_file: /etc/ssl/c.pem, key_file: /etc/ssl/c.key, server_name: cassandra.internal}}",
        )
        .expect("valid");
        assert_eq!(tls.tls.mode, CassandraTlsMode::VerifyFull);
        assert_eq!(
            tls.tls.ca_file.as_deref(),
            Some(Path::new("/etc/ssl/cass-ca.pem"))
        );
        assert_eq!(tls.tls.server_name.as_deref(), Some("cassandra.internal"));

        let ca_only =
            load("{contact_points: [\"c1:9042\"], tls: {mode: verify-ca}}").expect("valid");
        assert_eq!(ca_only.tls.mode, CassandraTlsMode::VerifyCa);
        assert_eq!(ca_only.tls.ca_file, None);
    }

    #[test]
    fn contradictory_tls_settings_are_refused_with_their_path() {
        let errors =
            load("{contact_points: [\"c1:9042\"], tls: {mode: require}}").expect_err("refused");
        assert_eq!(errors[0].0, "targets[0].connection.tls.mode");
        assert!(
            errors[0].1.contains("there is no unverified mode"),
            "{errors:?}"
        );

        let errors =
            load("{contact_points: [\"c1:9042\"], tls: {cert_file: /c.pem}}").expect_err("refused");
        assert_eq!(errors[0].0, "targets[0].connection.tls");
        assert!(errors[0].1.contains("go together"), "{errors:?}");

        let errors =
            load("{contact_points: [\"c1:9042\"], tls: {mode: disable, ca_file: /ca.pem}}")
                .expect_err("refused");
        assert!(errors[0].1.contains("would be ignored"), "{errors:?}");

        let errors =
            load("{contact_points: [\"c1:9042\"], tls: {mode: verify-ca, server_name: x}}")
                .expect_err("refused");
        assert_eq!(errors[0].0, "targets[0].connection.tls.server_name");

        let errors = load("{contact_points: [\"c1:9042\"], tls: {mode: verify-full, verify: no}}")
            .expect_err("refused");
        assert!(errors[0].1.contains("unknown key \"verify\""), "{errors:?}");
    }
}
