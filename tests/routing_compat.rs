//! Alertmanager's own routing files, unchanged, in dbwatch: every example and test configuration file of
//! Alertmanager 0.25 that `amtool check-config` accepts (`tests/fixtures/alertmanager-0.25/`) must load, and
//! route every label set the way `amtool config routes test` does.
//!
//! A file dbwatch still refuses is listed in [`REFUSED`] with the reason; the list must be exactly what is
//! refused, so it shrinks (and this test fails) the moment a file starts loading.

#[path = "support/amtool.rs"]
mod amtool;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use dbwatch_notify as notify;

/// Files dbwatch refuses today, each with what it lacks.
const REFUSED: &[(&str, &str)] = &[
    ("conf.empty-fields.yml", "templates"),
    ("conf.good.yml", "templates, Slack image_url"),
    (
        "conf.slack-default-api-url-file.yml",
        "Slack text (a templated field)",
    ),
    ("doc_examples_simple.yml", "templates"),
];

fn fixtures() -> Vec<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/alertmanager-0.25");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|error| panic!("{}: {error}", dir.display()))
        .map(|entry| entry.expect("entry").path())
        .filter(|path| path.extension().is_some_and(|extension| extension == "yml"))
        .collect();
    files.sort();
    assert_eq!(
        files.len(),
        14,
        "the fixture folder holds the 14 files amtool accepts"
    );
    files
}

fn name(file: &Path) -> String {
    file.file_name()
        .expect("file name")
        .to_string_lossy()
        .into_owned()
}

/// The label pairs a file's routes match on: `name: value` under `match:`/`match_re:` maps, and
/// `name="value"`/`name=~"a|b"` in `matchers:` (the first alternative of a simple regex).
fn label_pairs(text: &str) -> BTreeSet<(String, String)> {
    let mut pairs = BTreeSet::new();
    let mut map_indent: Option<usize> = None;
    for line in text.lines() {
        let trimmed = line.trim_start();
        let indent = line.len() - trimmed.len();
        if trimmed.starts_with('#') || trimmed.is_empty() {
            continue;
        }
        let trimmed = trimmed.trim_start_matches("- ");
        if let Some(outer) = map_indent {
            if indent > outer {
                if let Some((key, value)) = trimmed.split_once(':') {
                    let value = value.trim().trim_matches(['\'', '"']);
                    if let Some(value) = literal(value) {
                        pairs.insert((key.trim().to_owned(), value));
                    }
                }
                continue;
            }
            map_indent = None;
        }
        if matches!(
            trimmed.trim_end(),
            "match:"
                | "match_re:"
                | "source_match:"
                | "target_match:"
                | "source_match_re:"
                | "target_match_re:"
        ) {
            map_indent = Some(indent);
            continue;
        }
        for (at, _) in trimmed.match_indices('=') {
            let before = &trimmed[..at];
            let key: String = before
                .trim_end_matches(['!', ' '])
                .chars()
                .rev()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect::<Vec<char>>()
                .into_iter()
                .rev()
                .collect();
            let after = trimmed[at + 1..].trim_start_matches(['~', ' ']);
            let after = after.trim_start_matches('"');
            let end = after
                .find(['"', ',', ']', '}', '\''])
                .unwrap_or(after.len());
            if key.is_empty() || before.ends_with('!') {
                continue;
            }
            if let Some(value) = literal(after[..end].trim()) {
                pairs.insert((key, value));
            }
        }
    }
    pairs
}

/// A value a label can take that the matcher text names: the text itself, or a regex's first alternative.
fn literal(text: &str) -> Option<String> {
    let text = text.trim_start_matches('^').trim_end_matches('$');
    let text = text.trim_start_matches('(').trim_end_matches(')');
    let first = text.split('|').next()?.trim();
    let plain = !first.is_empty()
        && first
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    plain.then(|| first.to_owned())
}

/// Label sets to route: every pair alone, with `severity=critical` and with `severity=warning`, all pairs of
/// different names together, and an alert that matches nothing special.
fn label_sets(pairs: &BTreeSet<(String, String)>) -> Vec<Vec<(String, String)>> {
    let mut sets = vec![vec![("alertname".to_owned(), "Unrouted".to_owned())]];
    for pair in pairs {
        let alert = ("alertname".to_owned(), "LatencyHigh".to_owned());
        sets.push(vec![alert.clone(), pair.clone()]);
        for severity in ["critical", "warning"] {
            if pair.0 != "severity" {
                sets.push(vec![
                    alert.clone(),
                    pair.clone(),
                    ("severity".to_owned(), severity.to_owned()),
                ]);
            }
        }
    }
    let mut all: BTreeMap<String, String> = BTreeMap::new();
    for (key, value) in pairs {
        all.entry(key.clone()).or_insert_with(|| value.clone());
    }
    sets.push(all.into_iter().collect());
    sets
}

#[test]
fn alertmanagers_own_files_load_and_route_like_amtool() {
    let refused_expected: BTreeMap<&str, &str> = REFUSED.iter().copied().collect();
    let mut refused = BTreeMap::new();
    let mut routed = 0;
    for file in fixtures() {
        let name = name(&file);
        amtool::check(&file).unwrap_or_else(|error| panic!("amtool refuses {name}: {error}"));
        let config = match notify::load_file(&file) {
            Ok(config) => config,
            Err(error) => {
                refused.insert(name, error.to_string());
                continue;
            }
        };
        let text = std::fs::read_to_string(&file).expect("read fixture");
        for set in label_sets(&label_pairs(&text)) {
            let pairs: Vec<(&str, &str)> =
                set.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            let labels: BTreeMap<String, String> = set.iter().cloned().collect();
            assert_eq!(
                notify::route::receivers_for(&config.route, &labels),
                amtool::receivers(&file, &pairs),
                "{name}: labels {pairs:?}"
            );
            routed += 1;
        }
    }
    eprintln!(
        "Alertmanager 0.25 files: {} loaded, {} refused; {routed} label sets routed like amtool",
        14 - refused.len(),
        refused.len()
    );
    let unexpected: Vec<String> = refused
        .iter()
        .filter(|(name, _)| !refused_expected.contains_key(name.as_str()))
        .map(|(name, error)| format!("{name}: {error}"))
        .collect();
    let now_loading: Vec<&&str> = refused_expected
        .keys()
        .filter(|name| !refused.contains_key(**name))
        .collect();
    assert!(
        unexpected.is_empty() && now_loading.is_empty(),
        "refused but not listed in REFUSED:\n{}\nlisted in REFUSED but loading now: {now_loading:?}",
        unexpected.join("\n")
    );
}

#[test]
fn the_label_pairs_come_from_maps_and_matchers() {
    let text = "route:\n  routes:\n    - match_re:\n        service: ^(foo1|foo2|baz)$\n      routes:\n        - match:\n            severity: critical\n    - matchers:\n        - owner=\"team-X\"\n        - env=~\"prod|staging\"\n        - cluster!=\"dev\"\n";
    let pairs: Vec<(String, String)> = label_pairs(text).into_iter().collect();
    let expected: Vec<(String, String)> = [
        ("env", "prod"),
        ("owner", "team-X"),
        ("service", "foo1"),
        ("severity", "critical"),
    ]
    .iter()
    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
    .collect();
    assert_eq!(pairs, expected);
}

fn receiver_fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/receivers")
        .join(name)
}

/// The receiver types of every integration a routing file's receivers hold, sorted.
fn kinds(config: &notify::NotifyConfig) -> Vec<&'static str> {
    let mut kinds: Vec<&'static str> = config
        .receivers
        .iter()
        .flat_map(|receiver| &receiver.integrations)
        .map(|integration| integration.kind().as_str())
        .collect();
    kinds.sort_unstable();
    kinds.dedup();
    kinds
}

#[test]
fn a_file_with_every_alertmanager_0_25_receiver_loads_in_amtool_and_dbwatch_and_routes_alike() {
    let file = receiver_fixture("every-receiver-0.25.yml");
    amtool::check(&file).unwrap_or_else(|error| panic!("amtool refuses it: {error}"));
    let config = notify::load_file(&file).unwrap_or_else(|error| panic!("{error}"));
    // Alertmanager 0.25's receivers but wechat_configs, which dbwatch refuses by name.
    assert_eq!(
        kinds(&config),
        [
            "discord",
            "email",
            "opsgenie",
            "pagerduty",
            "pushover",
            "slack",
            "sns",
            "telegram",
            "victorops",
            "webex",
            "webhook",
        ]
    );
    let integrations: usize = config
        .receivers
        .iter()
        .map(|receiver| receiver.integrations.len())
        .sum();
    assert_eq!(integrations, 14);
    for pairs in [
        vec![("alertname", "Lag"), ("team", "chat")],
        vec![("alertname", "Lag"), ("severity", "page")],
        vec![("alertname", "Lag")],
    ] {
        let labels: BTreeMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        assert_eq!(
            notify::route::receivers_for(&config.route, &labels),
            amtool::receivers(&file, &pairs),
            "{pairs:?}"
        );
    }
}

#[test]
fn the_teams_receivers_of_later_alertmanagers_load_in_dbwatch_though_amtool_0_25_refuses_them() {
    let file = receiver_fixture("teams-later-alertmanager.yml");
    let refusal = amtool::check(&file).expect_err("amtool 0.25 predates msteams_configs");
    assert!(refusal.contains("not found"), "{refusal}");
    let config = notify::load_file(&file).unwrap_or_else(|error| panic!("{error}"));
    assert_eq!(
        kinds(&config),
        ["discord", "msteams", "msteamsv2", "pushover", "telegram"]
    );
}
