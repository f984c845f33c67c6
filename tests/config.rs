//! Configuration errors: every problem of a file at once, each with its line, column and key path.

use std::path::Path;
use std::time::Duration;

use dbwatch::config::{load_str, ConfigErrors, Engine};

fn env(name: &str) -> Option<String> {
    match name {
        "PG_PORT" => Some("15432".into()),
        "PG_PASSWORD" => Some("hunter2-secret".into()),
        _ => None,
    }
}

fn errors_of(text: &str) -> ConfigErrors {
    match load_str(Path::new("dbwatch.yml"), text, &env) {
        Ok(config) => panic!("expected errors, got {config:?}"),
        Err(errors) => errors,
    }
}

/// (line, path, a fragment of the message) of every error.
fn summary(errors: &ConfigErrors) -> Vec<(usize, String, String)> {
    errors
        .errors
        .iter()
        .map(|error| (error.line, error.path.clone(), error.message.clone()))
        .collect()
}

const GOOD: &str = "\
global:
  interval: 10s
  timeout: 4s
targets:
  - name: analytics-primary
    type: postgres
    labels: {cluster: analytics}
    connection:
      host: 127.0.0.1
      port: ${PG_PORT}
      user: dbwatch
      password: ${PG_PASSWORD}
      database: ${PG_DATABASE:-postgres}
    collectors:
      top_statements: 10
  - name: bouncer
    type: pgbouncer
    interval: 30s
    connection: {host: 127.0.0.1, port: 16432, user: dbwatch, password_file: /run/secrets/pgbouncer}
";

#[test]
fn a_good_file_loads_with_defaults_and_interpolation() {
    let config = load_str(Path::new("dbwatch.yml"), GOOD, &env).expect("valid config");
    assert_eq!(config.targets.len(), 2);
    let primary = &config.targets[0];
    assert_eq!(primary.interval, Duration::from_secs(10));
    assert_eq!(primary.timeout, Duration::from_secs(4));
    assert_eq!(
        primary.labels.get("cluster").map(String::as_str),
        Some("analytics")
    );
    let Engine::Postgres(options) = &primary.engine else {
        panic!("postgres target expected");
    };
    assert_eq!(options.connection.port, 15432);
    assert_eq!(options.connection.database, "postgres");
    assert_eq!(options.views.top_statements, 10);
    assert_eq!(options.statement_timeout, Duration::from_secs(2));
    assert_eq!(options.lock_timeout, Duration::from_secs(1));
    let bouncer = &config.targets[1];
    assert_eq!(bouncer.interval, Duration::from_secs(30));
    let Engine::PgBouncer(connection) = &bouncer.engine else {
        panic!("pgbouncer target expected");
    };
    assert_eq!(connection.database, "pgbouncer");
}

#[test]
fn the_password_never_shows_in_debug_output() {
    let config = load_str(Path::new("dbwatch.yml"), GOOD, &env).expect("valid config");
    let printed = format!("{config:?}");
    assert!(
        !printed.contains("hunter2"),
        "password leaked in Debug: {printed}"
    );
    assert!(printed.contains("<redacted>"));
}

#[test]
fn each_problem_is_reported_once_with_line_and_key_path() {
    let text = "\
global:
  interval: 15s
  scrape_timeout: 5s
targets:
  - name: a
    type: postgres
    timeout: soon
    connection:
      host: 127.0.0.1
      port: seventy
      user: dbwatch
      password: ${MISSING_PASSWORD}
  - name: a
    type: postgres
    connection: {host: h, user: u}
";
    let errors = errors_of(text);
    assert_eq!(
        summary(&errors),
        vec![
            (3, "global.scrape_timeout".into(), "unknown key \"scrape_timeout\", expected one of: evaluation_interval, external_labels, interval, rule_history_limit, timeout".into()),
            (7, "targets[0].timeout".into(), "invalid duration \"soon\": expected number at 0 (write it like 15s, 500ms or 1m30s)".into()),
            (10, "targets[0].connection.port".into(), "expected a port number (1-65535), found \"seventy\"".into()),
            (12, "targets[0].connection.password".into(), "environment variable MISSING_PASSWORD is not set".into()),
            (13, "targets[1].name".into(), "duplicate target name \"a\", first defined at line 5".into()),
        ]
    );
    let rendered = errors.to_string();
    assert!(
        rendered.starts_with("dbwatch.yml has 5 problems"),
        "{rendered}"
    );
    assert!(
        rendered.contains("dbwatch.yml:10:13: targets[0].connection.port: expected a port number"),
        "{rendered}"
    );
}

#[test]
fn wrong_types_and_missing_keys_name_the_path() {
    let text = "\
targets:
  - name: x
    type: postgres
    labels: [a, b]
    connection:
      port: 5432
  - type: mongo
    name: y
";
    // Missing keys point at the mapping that lacks them, which starts on line 6.
    assert_eq!(
        summary(&errors_of(text)),
        vec![
            (
                4,
                "targets[0].labels".into(),
                "expected a mapping, found a list".into()
            ),
            (
                6,
                "targets[0].connection.host".into(),
                "missing key host".into()
            ),
            (
                6,
                "targets[0].connection.user".into(),
                "missing key user".into()
            ),
            (
                7,
                "targets[1].type".into(),
                "unknown target type \"mongo\", expected one of: postgres, pgbouncer, mysql, mongodb, cassandra, dynamodb".into()
            ),
        ]
    );
}

#[test]
fn cross_field_rules_are_checked() {
    let text = "\
targets:
  - name: fast
    type: postgres
    interval: 500ms
    timeout: 2s
    labels: {db: x, \"1bad\": y}
    connection: {host: h, user: u, password: p, password_file: /f}
";
    let errors = summary(&errors_of(text));
    let messages: Vec<&str> = errors
        .iter()
        .map(|(_, _, message)| message.as_str())
        .collect();
    assert!(
        messages.contains(&"interval 500ms is below the minimum of 1s"),
        "{messages:?}"
    );
    assert!(
        messages.contains(&"timeout 2s is longer than the poll interval 500ms"),
        "{messages:?}"
    );
    assert!(
        messages.contains(&"label \"db\" is set by dbwatch itself; choose another name"),
        "{messages:?}"
    );
    assert!(
        messages.contains(&"\"1bad\" is not a valid Prometheus label name"),
        "{messages:?}"
    );
    assert!(
        messages.contains(&"password and password_file are both set; keep one"),
        "{messages:?}"
    );
}

#[test]
fn invalid_yaml_reports_the_position() {
    let errors = errors_of("targets:\n  - name: [unclosed\n");
    assert_eq!(errors.errors.len(), 1);
    assert!(
        errors.errors[0].message.starts_with("invalid YAML"),
        "{:?}",
        errors.errors
    );
    assert!(errors.errors[0].line >= 2);
}

#[test]
fn rule_settings_are_read_and_checked() {
    let text = "\
global:
  evaluation_interval: 30s
  external_labels: {region: eu-west-1}
rule_files: [alerts/*.yml, /etc/dbwatch/rules.yml]
targets:
  - name: a
    type: postgres
    connection: {host: h, user: u}
";
    let config = load_str(Path::new("/etc/dbwatch/dbwatch.yml"), text, &env).expect("valid config");
    assert_eq!(
        config.rules.patterns,
        ["alerts/*.yml", "/etc/dbwatch/rules.yml"]
    );
    assert_eq!(config.rules.base_dir, Path::new("/etc/dbwatch"));
    assert_eq!(config.rules.evaluation_interval, Duration::from_secs(30));
    assert_eq!(
        config.rules.history_limit,
        dbwatch_rules::DEFAULT_HISTORY_LIMIT
    );
    assert_eq!(config.rules.external_labels["region"], "eu-west-1");
    let longer = text.replace("  evaluation_interval: 30s\n", "  rule_history_limit: 7d\n");
    let config =
        load_str(Path::new("/etc/dbwatch/dbwatch.yml"), &longer, &env).expect("valid config");
    assert_eq!(
        config.rules.history_limit,
        Duration::from_secs(7 * 24 * 3600)
    );

    let errors = errors_of(
        "\
global:
  evaluation_interval: 100ms
  external_labels: {0bad: x}
rule_files: ['alerts/[*.yml', 7, {a: b}]
targets: []
",
    );
    let found = summary(&errors);
    let has = |line: usize, path: &str, fragment: &str| {
        found
            .iter()
            .any(|(l, p, m)| *l == line && p == path && m.contains(fragment))
    };
    assert!(
        has(2, "global.evaluation_interval", "below the minimum of 1s"),
        "{found:?}"
    );
    assert!(has(3, "global.external_labels.0bad", ""), "{found:?}");
    assert!(has(4, "rule_files[0]", "invalid glob pattern"), "{found:?}");
    assert!(has(4, "rule_files[2]", ""), "{found:?}");
    assert_eq!(found.len(), 4, "{found:?}");

    let found = summary(&errors_of(
        "global:\n  rule_history_limit: 1m\ntargets: []\n",
    ));
    assert_eq!(
        found,
        [(
            2,
            "global.rule_history_limit".to_owned(),
            "rule_history_limit 1m is below the 5m every instant selector reads back".to_owned()
        )]
    );
}
