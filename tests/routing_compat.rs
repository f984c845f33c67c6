//! Alertmanager's own routing files, unchanged, in dbwatch: every example and test configuration file of
//! Alertmanager 0.25 that `amtool check-config` accepts (`tests/fixtures/alertmanager-0.25/`) must load, and
//! route every label set the way `amtool config routes test` does.
//!
//! A file dbwatch still refuses is listed in [`REFUSED`] with the reason; the list must be exactly what is
//! refused, so it shrinks (and this test fails) the moment a file starts loading.
//!
//! `tests/fixtures/routing-templates/` is a routing file shaped like a team's, with custom templates and calls
//! of Alertmanager's named defaults: amtool accepts it, dbwatch loads it, and amtool (Go's text/template)
//! renders its templates and dbwatch's default templates as dbwatch does.

#[path = "support/amtool.rs"]
mod amtool;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use dbwatch_notify as notify;
use notify::store::AlertRecord;
use notify::template::{DataParts, TemplateInput, TemplatedField, Templates, Templating};
use serde_json::Value;

/// Files dbwatch refuses today, each with what it lacks.
const REFUSED: &[(&str, &str)] = &[];

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

fn templated_fixture() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/routing-templates")
}

#[test]
fn a_routing_file_with_custom_templates_passes_amtool_and_loads() {
    let file = templated_fixture().join("alertmanager.yml");
    amtool::check(&file)
        .unwrap_or_else(|error| panic!("amtool refuses {}: {error}", file.display()));
    let config = notify::load_file(&file).unwrap_or_else(|error| panic!("{error}"));
    let kinds: Vec<&str> = config
        .receivers
        .iter()
        .flat_map(|receiver| &receiver.integrations)
        .map(|integration| integration.kind().as_str())
        .collect();
    assert_eq!(kinds, ["slack", "pagerduty", "email"]);
}

/// One notification's data, read from the JSON layout `amtool template render --template.data` takes.
struct Notification {
    templating: Templating,
    data: notify::template::Value,
}

impl TemplateInput for Notification {
    fn templating(&self) -> &Templating {
        &self.templating
    }

    fn template_data(&self) -> notify::template::Value {
        self.data.clone()
    }
}

fn strings(value: &Value) -> BTreeMap<String, String> {
    value
        .as_object()
        .expect("an object")
        .iter()
        .map(|(key, value)| (key.clone(), value.as_str().expect("a string").to_owned()))
        .collect()
}

fn millis(text: &str) -> i64 {
    let time = humantime::parse_rfc3339(text).unwrap_or_else(|error| panic!("{text}: {error}"));
    let since = time
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970");
    i64::try_from(since.as_millis()).expect("fits")
}

fn notification(json: &Value) -> Notification {
    let alerts: Vec<AlertRecord> = json["alerts"]
        .as_array()
        .expect("alerts")
        .iter()
        .map(|alert| AlertRecord {
            fingerprint: alert["fingerprint"]
                .as_str()
                .expect("fingerprint")
                .to_owned(),
            labels: strings(&alert["labels"]),
            annotations: strings(&alert["annotations"]),
            starts_at: millis(alert["startsAt"].as_str().expect("startsAt")),
            ends_at: (alert["status"] == "resolved")
                .then(|| millis(alert["endsAt"].as_str().expect("endsAt"))),
        })
        .collect();
    let text = |key: &str| json[key].as_str().expect(key).to_owned();
    Notification {
        templating: Templating::default(),
        data: notify::template::data(DataParts {
            receiver: &text("receiver"),
            status: &text("status"),
            alerts: alerts.iter(),
            group_labels: &strings(&json["groupLabels"]),
            common_labels: &strings(&json["commonLabels"]),
            common_annotations: &strings(&json["commonAnnotations"]),
            external_url: &text("externalURL"),
        }),
    }
}

/// What amtool renders for `text`, with the fixture's templates and dbwatch's defaults (Go executing them).
fn amtool_render(data: &Path, text: &str, html: bool) -> String {
    let fixture = templated_fixture();
    let defaults = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("notify/src/default.tmpl");
    let output = std::process::Command::new("amtool")
        .args(["template", "render"])
        .arg(format!(
            "--template.glob={}",
            fixture.join("templates/*.tmpl").display()
        ))
        .arg(format!("--template.glob={}", defaults.display()))
        .arg(format!("--template.data={}", data.display()))
        .arg(format!(
            "--template.type={}",
            if html { "html" } else { "text" }
        ))
        .arg(format!("--template.text={text}"))
        .output()
        .expect("amtool runs (deploy/local/fleet up tools installs it)");
    assert!(
        output.status.success(),
        "amtool template render {text}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    // Printed as rendered, nothing added.
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn dbwatch_renders_the_routing_files_templates_as_amtool_does() {
    let fixture = templated_fixture();
    let mut templates = Templates::default();
    templates
        .add_glob(&fixture, "templates/*.tmpl")
        .unwrap_or_else(|error| panic!("{error}"));
    // Every templated field of the fixture's receivers, and the defaults they lean on.
    let file = std::fs::read_to_string(fixture.join("alertmanager.yml")).expect("read fixture");
    let mut texts: Vec<String> = file
        .lines()
        .filter_map(|line| {
            let (_, value) = line.split_once(": '")?;
            let value = value.strip_suffix('\'')?;
            value.contains("{{").then(|| value.to_owned())
        })
        .collect();
    assert!(texts.len() >= 20, "{texts:?}");
    for name in [
        "__subject",
        "__text_alert_list",
        "email.default.subject",
        "opsgenie.default.description",
        "pushover.default.message",
        "telegram.default.message",
        "webex.default.message",
        "victorops.default.state_message",
    ] {
        let arg = if name == "__text_alert_list" {
            ".Alerts"
        } else {
            "."
        };
        texts.push(format!("{{{{ template \"{name}\" {arg} }}}}"));
    }
    let mut compared = 0;
    for data_file in ["data-firing.json", "data-resolved.json"] {
        let path = fixture.join(data_file);
        let json: Value = serde_json::from_str(&std::fs::read_to_string(&path).expect("read data"))
            .expect("data is JSON");
        for text in &texts {
            // The fixture's html field goes through html/template in Alertmanager.
            let html = text.contains("email.html");
            let input = notification(&json);
            let field = TemplatedField::parse("field", text, &templates)
                .unwrap_or_else(|error| panic!("{text}: {error}"));
            let ours = if html {
                field.render_html(&input, || "FALLBACK".to_owned())
            } else {
                field.render(&input, || "FALLBACK".to_owned())
            };
            assert_eq!(
                input.templating().take_failures(),
                Vec::new(),
                "{text} over {data_file}"
            );
            assert_eq!(
                ours,
                amtool_render(&path, text, html),
                "{text} over {data_file}"
            );
            compared += 1;
        }
    }
    eprintln!("{compared} renderings agree with amtool");
}

/// Go's text/template itself, through amtool, as the reference for the engine: each template renders the same
/// in both, or fails in both.
#[test]
fn go_text_template_semantics_agree_with_amtool() {
    let fixture = templated_fixture();
    let data = fixture.join("data-firing.json");
    let json: Value = serde_json::from_str(&std::fs::read_to_string(&data).expect("read data"))
        .expect("data is JSON");
    let templates = Templates::default();
    let cases = [
        "a  {{- .Receiver -}}  b|{{ .Status }} \n {{- \"x\" }}|{{-3}}",
        "{{ if eq .Status \"resolved\" }}r{{ else if eq .Status \"firing\" }}f{{ else }}o{{ end }}",
        "{{ range $i, $a := .Alerts }}{{ $i }}:{{ $a.Labels.instance }};{{ end }}",
        "{{ range $k, $v := .CommonLabels }}{{ $k }}={{ $v }},{{ end }}",
        "{{ range .Alerts }}{{ if eq .Status \"resolved\" }}{{ break }}{{ end }}{{ .Status }}{{ end }}",
        "{{ range .Alerts }}{{ if eq .Status \"firing\" }}{{ continue }}{{ end }}{{ .Status }}{{ end }}",
        "{{ range .Alerts.Resolved }}{{ . }}{{ else }}none{{ end }}",
        "{{ with .CommonLabels.missing }}x{{ else }}empty{{ end }}{{ with $s := .Status }}{{ $s }}{{ end }}",
        "{{ $x := 1 }}{{ if true }}{{ $x = 2 }}{{ $y := 3 }}{{ end }}{{ $x }}",
        "{{ and 1 0 }}|{{ and 1 \"a\" }}|{{ or 0 \"\" }}|{{ or \"\" \"b\" }}|{{ not .Alerts }}",
        "{{ len .Alerts }} {{ len .Receiver }} {{ len .CommonLabels }} {{ index .Alerts 1 | printf \"%T\" }}",
        "{{ index .CommonLabels \"cluster\" }} {{ index \"abc\" 1 }} {{ slice .Receiver 3 }} {{ slice .Receiver 1 4 }}",
        "{{ print 1 2 \"a\" \"b\" 3.5 true nil }}|{{ println \"x\" 1 }}|{{ print .GroupLabels.Names }}",
        "{{ printf \"%d|%5d|%-5d|%05d|%x|%X|%o|%c\" 42 42 42 42 255 255 8 65 }}",
        "{{ printf \"%.2f|%8.3f|%e|%g|%g|%v|%v\" 3.14159 2.5 1234.5678 0.00001 1e21 2.0 100000000.0 }}",
        "{{ printf \"%s|%q|%10s|%-10s|%.2s|%v\" \"ab\" \"a\\\"b\" \"r\" \"l\" \"xyz\" .CommonLabels.severity }}",
        "{{ printf \"%t %v %d\" true false }}{{ printf \"%d\" \"s\" }}{{ printf \"x\" 1 }}{{ printf \"%%\" }}",
        "{{ eq 1 1 2 }} {{ eq \"a\" \"b\" \"a\" }} {{ ne 1 2 }} {{ lt 1 2 }} {{ le 2 2 }} {{ gt 2.5 1.5 }} {{ ge \"a\" \"b\" }}",
        "{{ eq .CommonLabels.nope \"\" }} {{ eq .Status \"firing\" }}",
        "{{ lt 1 1.5 }}",
        "{{ eq 1 \"1\" }}",
        "{{ html \"<a href='x'>&\\\"</a>\" }}|{{ urlquery \"a b&c=d/é?\" }}|{{ js \"a'b\\\"c<d>&=\" }}",
        "{{ define \"t\" }}[{{ . }}]{{ end }}{{ template \"t\" .Status }}{{ template \"t\" }}{{ block \"b\" 3 }}<{{ . }}>{{ end }}",
        "{{ (index .Alerts 0).StartsAt }}|{{ (index .Alerts 0).EndsAt }}|{{ (index .Alerts 1).EndsAt.Unix }}",
        "{{ (index .Alerts 0).StartsAt.Format \"Mon Jan _2 15:04:05.000 MST 2006 3PM -07:00 Z07:00 .999\" }}",
        "{{ (index .Alerts 0).StartsAt.Format \"January 2, 2006 at 03:04:05pm (002)\" }}",
        "{{ .CommonLabels.SortedPairs.Names }} {{ .CommonLabels.Values }} {{ (.CommonLabels.Remove .GroupLabels.Names).Names }}",
        "{{ range .GroupLabels.SortedPairs }}{{ .Name }}:{{ .Value }} {{ end }}",
        "{{ 0x1F }} {{ 1_000 }} {{ 'a' }} {{ 1e3 }} {{ -2.5 }} {{ `raw\\n` }} {{ \"\\u00e9\\t|\" }} {{ 017 }}",
        "{{ title \"hello wORLD foo-bar\" }} {{ toUpper \"é\" }} {{ join \"+\" (stringSlice \"a\" \"b\") }}",
        "{{ reReplaceAll \"(\\\\w+)-(\\\\d+)\" \"$2/$1\" \"pg-1 mysql-22\" }} {{ match \"^pg\" \"pg-1\" }}",
        "{{/* comment */}}{{- /* trimmed */ -}} x",
        "{{ .Nope }}",
        "{{ .Receiver.Nope }}",
        "{{ nil }}",
        "{{ index .Alerts 9 }}",
        "{{ template \"missing\" }}",
        "{{ .CommonLabels.Remove }}",
        "{{ range $i, $a := .Alerts -}}\n  {{ $i }}\n{{- range $a.Labels.SortedPairs }} {{ $.Receiver }}/{{ $i }}/{{ .Name }}{{ end }}\n{{ end }}",
        "{{ define \"a\" }}A{{ template \"b\" . }}{{ end }}{{ define \"b\" }}B{{ $ }}{{ end }}{{ template \"a\" .Status }}",
        "{{ $x := \"outer\" }}{{ range .Alerts }}{{ $x := .Status }}{{ $x }} {{ end }}{{ $x }}",
        "{{ (.CommonLabels).cluster }} {{ (index .Alerts 0).Labels.instance }} {{ (len .Alerts) }}",
        "{{ eq nil nil }}",
        "{{ lt \"a\" 1 }}",
        "{{ index .CommonLabels 1 }}",
        "{{ slice .Receiver 5 2 }}",
        "{{ .Alerts.Firing.Nope }}",
        "{{ if and .Alerts (gt (len .Alerts.Firing) 0) (not .CommonLabels.nope) }}yes{{ end }}",
        "{{ printf \"%v %v\" .Alerts.Firing .CommonLabels }}",
        "{{ printf \"%5.1f%%|%+d|% d|%08.3f|%-8.2e|\" 93.456 5 7 -3.14159 12345.678 }}",
        "{{ 1.0 }} {{ 3.0e0 }} {{ 0.000001 }} {{ 123456789.0 }} {{ 1e100 }}",
    ];
    let mut agreed = 0;
    let mut differ = Vec::new();
    for text in cases {
        let input = notification(&json);
        let ours = TemplatedField::parse("field", text, &templates)
            .map_err(|error| error.to_string())
            .and_then(|field| {
                let out = field.render(&input, || "\u{0}FAILED".to_owned());
                if out == "\u{0}FAILED" {
                    Err(input.templating().take_failures()[0].error.clone())
                } else {
                    Ok(out)
                }
            });
        let go = std::process::Command::new("amtool")
            .args(["template", "render"])
            .arg(format!(
                "--template.glob={}",
                fixture.join("templates/*.tmpl").display()
            ))
            .arg(format!("--template.data={}", data.display()))
            .arg(format!("--template.text={text}"))
            .output()
            .expect("amtool runs");
        let same = match (&ours, go.status.success()) {
            (Ok(ours), true) => *ours == String::from_utf8_lossy(&go.stdout),
            (Err(_), false) => true,
            _ => false,
        };
        if same {
            agreed += 1;
        } else {
            differ.push(format!(
                "{text}\n  dbwatch: {ours:?}\n  Go:      {:?}{}",
                String::from_utf8_lossy(&go.stdout),
                String::from_utf8_lossy(&go.stderr).trim()
            ));
        }
    }
    eprintln!("{agreed} templates agree with Go's text/template");
    assert!(differ.is_empty(), "{}", differ.join("\n"));
}
