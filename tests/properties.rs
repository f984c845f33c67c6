//! Property tests: arbitrary and mutated input to every reader of user-controlled text — the configuration
//! reader, the rule-file loader, the template parser and executor, the routing reader and the web config
//! parser. Each may refuse its input; none may panic. The mutations start from valid documents (the shipped
//! rules and routing, the README's configuration) so that most cases get deep into the readers instead of
//! failing at the first byte.
//!
//! Case counts are modest so the suite stays fast in `make test`; `PROPTEST_CASES=5000 cargo test --test
//! properties` runs a longer search.

use std::collections::BTreeMap;
use std::path::Path;

use dbwatch_rules::labels::Metric;
use dbwatch_rules::template::{Template, TemplateData};
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::Config;

/// Cases per property unless PROPTEST_CASES says otherwise.
const CASES: u32 = 256;

fn config() -> Config {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(CASES);
    Config {
        cases,
        // No persistence files in the source tree; a failure prints its minimal input.
        failure_persistence: None,
        ..Config::default()
    }
}

const CONFIG_SEED: &str = r#"global:
  interval: 15s
  timeout: 5s
  evaluation_interval: 15s
  external_labels: {region: eu-west-1}
rule_files: [alerts/*.yml]
alerting:
  alertmanagers: [http://am-1:9093]
targets:
  - name: analytics-primary
    type: postgres
    labels: {cluster: analytics}
    connection:
      host: pg-primary.internal
      port: ${PG_PORT:-5432}
      user: dbwatch
      password: ${PG_PASSWORD}
      database: postgres
      tls: {mode: verify-full, ca_file: /etc/ssl/pg-ca.pem, cert_file: /etc/ssl/c.pem, key_file: /etc/ssl/c.key}
    collectors: {top_statements: 20, statement_timeout: 2s}
  - name: analytics-pgbouncer
    type: pgbouncer
    connection: {host: pg-primary.internal, port: 6432, user: dbwatch, password_file: /run/secrets/pg}
  - name: orders-primary
    type: mysql
    connection: {host: mysql.internal, port: 3306, user: dbwatch, password: "p$$w", tls: {mode: verify_identity}}
    collectors: {top_digests: 0, heartbeat: {table: dbwatch.heartbeat, write: false}}
  - name: catalog
    type: mongodb
    connection: {url: "mongodb://mongo-1.internal:27017/", user: dbwatch, password_file: /run/secrets/mongo}
    collectors: {max_collections: 100, index_stats_interval: 5m}
  - name: events
    type: cassandra
    interval: 30s
    timeout: 10s
    connection:
      contact_points: ["cass-1.internal:9042", "cass-2.internal:9042"]
      local_datacenter: dc1
      tls: {mode: verify-full, ca_file: /etc/ssl/cass-ca.pem, server_name: cassandra.internal}
    collectors:
      canary: {keyspace: dbwatch_canary, table: probe, consistency_levels: [one, quorum]}
  - name: sessions
    type: dynamodb
    interval: 60s
    timeout: 30s
    connection: {region: eu-west-1}
    collectors: {include_tables: ["UserSessions", "Shopping*"], sample_every: 1h}
"#;

const WEB_SEED: &str = r#"tls_server_config:
  cert_file: /etc/dbwatch/tls.crt
  key_file: /etc/dbwatch/tls.key
  client_auth_type: RequireAndVerifyClientCert
  client_ca_file: /etc/dbwatch/ca.crt
  min_version: TLS12
http_server_config:
  headers:
    X-Frame-Options: deny
basic_auth_users:
  prometheus: $2y$10$X0h1gDsPszWURQaxFh.zoubFi6DXncSjhoQNJgRrnGs7EsimhC7zG
  oncall: $2y$10$X0h1gDsPszWURQaxFh.zoubFi6DXncSjhoQNJgRrnGs7EsimhC7zG
write_users: [oncall]
"#;

const TEMPLATE_SEEDS: &[&str] = &[
    "{{ $labels.target }} is slow: {{ $value | humanizeDuration }}",
    "{{ printf \"%.2f%%\" $value }} of {{ $labels.instance | stripPort }} ({{ $externalLabels.region }})",
    "{{ humanize $value }} {{ $value | humanizePercentage }} {{ len $labels.target }}",
    "{{ $labels.replica | toUpper }} {{ $labels.instance | stripDomain | toLower }} {{ $externalURL }}",
    "{{- /* comment */ -}} {{ index $labels \"target\" }} {{ $value | humanize1024 }} {{ title \"a b\" }}",
    "{{ printf \"%-8s|%+05d|%e|%q|%x\" \"ab\" 5 $value $labels.target 255 }} {{ humanizeTimestamp $value }}",
    "{{ print $value \" \" $labels.target }} {{ printf \"%v %s\" ($value) (index $labels \"instance\") }}",
];

/// Text that means something to YAML, to Go templates, to PromQL or to the `${VAR}` expansion, and numbers at
/// the edges: the material the mutations insert.
fn token() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            ":",
            ": ",
            "\n",
            "\n  ",
            "- ",
            "{",
            "}",
            "[",
            "]",
            "${",
            "}",
            "$$",
            "\"",
            "'",
            "*",
            "&a ",
            "*a",
            "!!binary ",
            "!!int ",
            "\t",
            "#",
            "|",
            ">",
            "? ",
            "~",
            "null",
            "-1",
            "0",
            "1e400",
            "-0",
            "99999999999999999999",
            "18446744073709551616",
            "NaN",
            "0x1F",
            "1y",
            "1d",
            "999999h",
            "0s",
            "-5m",
            "{{",
            "}}",
            "{{-",
            "-}}",
            "$value",
            "$labels.",
            "| ",
            "printf \"%999999999d\" ",
            "(",
            ")",
            "[5m]",
            "offset 1w",
            "@ 0",
            "=~",
            "!~",
            "\"\\",
            "\u{0}",
            "\u{feff}",
            "é",
            "𝄞",
            "<<: *a",
            "---",
            "...",
        ])
        .prop_map(str::to_owned),
        "\\PC{0,12}",
    ]
}

/// One edit of a document, at positions drawn as fractions of its length.
#[derive(Debug, Clone)]
enum Edit {
    Insert(Index, String),
    Delete(Index, usize),
    Replace(Index, usize, String),
    DuplicateLine(Index),
    SwapLines(Index, Index),
    Truncate(Index),
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        4 => (any::<Index>(), token()).prop_map(|(at, text)| Edit::Insert(at, text)),
        3 => (any::<Index>(), 1..24usize).prop_map(|(at, len)| Edit::Delete(at, len)),
        3 => (any::<Index>(), 1..12usize, token()).prop_map(|(at, len, text)| Edit::Replace(at, len, text)),
        1 => any::<Index>().prop_map(Edit::DuplicateLine),
        1 => (any::<Index>(), any::<Index>()).prop_map(|(a, b)| Edit::SwapLines(a, b)),
        1 => any::<Index>().prop_map(Edit::Truncate),
    ]
}

/// Applies `edits` to `seed`, on character boundaries.
fn apply(seed: &str, edits: &[Edit]) -> String {
    let mut chars: Vec<char> = seed.chars().collect();
    for edit in edits {
        let len = chars.len();
        match edit {
            Edit::Insert(at, text) => {
                let at = at.index(len + 1);
                chars.splice(at..at, text.chars());
            }
            Edit::Delete(at, count) => {
                let at = at.index(len + 1);
                let end = (at + count).min(len);
                chars.drain(at..end);
            }
            Edit::Replace(at, count, text) => {
                let at = at.index(len + 1);
                let end = (at + count).min(len);
                chars.splice(at..end, text.chars());
            }
            Edit::DuplicateLine(at) | Edit::SwapLines(at, _) => {
                let text: String = chars.iter().collect();
                let mut lines: Vec<&str> = text.split('\n').collect();
                let first = at.index(lines.len());
                if let Edit::SwapLines(_, other) = edit {
                    let second = other.index(lines.len());
                    lines.swap(first, second);
                } else {
                    lines.insert(first, lines[first]);
                }
                chars = lines.join("\n").chars().collect();
            }
            Edit::Truncate(at) => chars.truncate(at.index(len + 1)),
        }
    }
    chars.into_iter().collect()
}

fn mutated(seed: &'static str) -> impl Strategy<Value = String> {
    prop::collection::vec(edit(), 1..8).prop_map(move |edits| apply(seed, &edits))
}

fn mutated_from(seeds: &'static [&'static str]) -> impl Strategy<Value = String> {
    (
        prop::sample::select(seeds),
        prop::collection::vec(edit(), 1..6),
    )
        .prop_map(|(seed, edits)| apply(seed, &edits))
}

/// Arbitrary text: any characters, and lines of YAML-ish tokens.
fn arbitrary_text() -> impl Strategy<Value = String> {
    prop_oneof![
        "\\PC{0,200}",
        any::<Vec<u8>>().prop_map(|bytes| String::from_utf8_lossy(&bytes).into_owned()),
        prop::collection::vec(token(), 0..40).prop_map(|tokens| tokens.concat()),
    ]
}

fn env(name: &str) -> Option<String> {
    match name {
        "PG_PASSWORD" => Some("hunter2".into()),
        "EMPTY" => Some(String::new()),
        _ => None,
    }
}

fn read_config(text: &str) {
    let _ = dbwatch::config::load_str(Path::new("/etc/dbwatch/dbwatch.yml"), text, &env);
}

fn read_rules(text: &str) {
    if let Ok(groups) = dbwatch_rules::load::parse_rule_file(Path::new("rules.yml"), text) {
        // What loads must also size a history and expand its templates without panicking.
        let rules = dbwatch_rules::RuleSet { groups };
        let _ = dbwatch_rules::engine::history_for(&rules, &Default::default());
    }
}

fn read_routing(text: &str) {
    let _ = dbwatch_notify::config::load_str(Path::new("/etc/dbwatch/routing.yml"), text, &env);
}

fn read_web_config(text: &str) {
    let _ = dbwatch::web::WebConfig::parse(
        text,
        Path::new("/etc/dbwatch/web.yml"),
        Path::new("/etc/dbwatch"),
    );
}

fn run_template(source: &str, value: f64) {
    let Ok(template) = Template::parse(source) else {
        return;
    };
    let labels = Metric::from_pairs([
        ("target", "pg-main"),
        ("instance", "db1.example.com:5432"),
        ("replica", "<!channel>"),
    ]);
    let external = BTreeMap::from([("region".to_owned(), "eu-west-1".to_owned())]);
    let data = TemplateData {
        labels: &labels,
        external_labels: &external,
        external_url: "http://dbwatch:9630",
        value,
    };
    let _ = template.expand(&data);
}

fn any_value() -> impl Strategy<Value = f64> {
    prop_oneof![
        any::<f64>(),
        Just(f64::NAN),
        Just(f64::INFINITY),
        Just(f64::NEG_INFINITY),
        Just(-0.0),
        Just(1e300),
        Just(9.3e18),
        -1e6..1e6f64,
    ]
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn config_reader_never_panics_on_mutated_files(text in mutated(CONFIG_SEED)) {
        read_config(&text);
    }

    #[test]
    fn config_reader_never_panics_on_arbitrary_text(text in arbitrary_text()) {
        read_config(&text);
    }

    #[test]
    fn rule_loader_never_panics_on_mutated_shipped_rules(
        text in prop_oneof![
            mutated(include_str!("../alerts/fleet.yml")),
            mutated(include_str!("../alerts/postgres.yml")),
            mutated(include_str!("../alerts/cassandra.yml")),
        ]
    ) {
        read_rules(&text);
    }

    #[test]
    fn rule_loader_never_panics_on_arbitrary_text(text in arbitrary_text()) {
        read_rules(&text);
    }

    #[test]
    fn templates_never_panic_on_mutated_templates(source in mutated_from(TEMPLATE_SEEDS), value in any_value()) {
        run_template(&source, value);
    }

    #[test]
    fn templates_never_panic_on_arbitrary_text(source in arbitrary_text(), value in any_value()) {
        run_template(&source, value);
    }

    #[test]
    fn routing_reader_never_panics_on_mutated_routing(text in mutated(include_str!("../deploy/routing/dbwatch-routing.yml"))) {
        read_routing(&text);
    }

    #[test]
    fn routing_reader_never_panics_on_arbitrary_text(text in arbitrary_text()) {
        read_routing(&text);
    }

    #[test]
    fn web_config_parser_never_panics_on_mutated_files(text in mutated(WEB_SEED)) {
        read_web_config(&text);
    }

    #[test]
    fn web_config_parser_never_panics_on_arbitrary_text(text in arbitrary_text()) {
        read_web_config(&text);
    }
}

/// The seeds themselves are valid, so the mutations start from documents that reach the readers' depths.
#[test]
fn the_seeds_are_valid() {
    assert!(dbwatch_rules::load::parse_rule_file(
        Path::new("fleet.yml"),
        include_str!("../alerts/fleet.yml")
    )
    .is_ok());
    assert!(dbwatch_notify::config::load_str(
        Path::new("routing.yml"),
        include_str!("../deploy/routing/dbwatch-routing.yml"),
        &env
    )
    .is_ok());
    for seed in TEMPLATE_SEEDS {
        assert!(Template::parse(seed).is_ok(), "{seed}");
    }
    // The configuration seed names rule files that do not exist here; every other part must be valid.
    if let Err(errors) =
        dbwatch::config::load_str(Path::new("/etc/dbwatch/dbwatch.yml"), CONFIG_SEED, &env)
    {
        assert!(
            errors
                .errors
                .iter()
                .all(|error| error.path.starts_with("rule_files")),
            "{errors}"
        );
    }
}
