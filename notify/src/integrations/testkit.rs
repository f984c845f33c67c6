//! What the receivers' unit tests share: a receiver read from routing text, its errors, and a group to render.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use super::Integration;
use crate::fields::{read_global, Global};
use crate::render::{fingerprint, Notice};
use crate::store::{AlertRecord, Payload};
use dbwatch_yaml::node::Node;
use dbwatch_yaml::read::{Fields, Reader};

fn routing(receiver: &str, global: &str) -> String {
    format!("{global}route:\n  receiver: r\nreceivers:\n  - name: r\n{receiver}")
}

/// The integrations of receiver `r`, given its body indented by four spaces, under an optional `global:`.
pub fn integrations(receiver: &str, global: &str) -> Vec<Arc<dyn Integration>> {
    let no_env = |_: &str| None;
    let config = crate::config::load_str(Path::new("r.yml"), &routing(receiver, global), &no_env)
        .unwrap_or_else(|errors| panic!("{errors}"));
    config.receivers[0].integrations.clone()
}

/// The one integration of receiver `r`.
pub fn one(receiver: &str, global: &str) -> Arc<dyn Integration> {
    let mut all = integrations(receiver, global);
    assert_eq!(all.len(), 1);
    all.remove(0)
}

/// The one integration of receiver `r`, its routing file's `templates:` a file holding `defines`.
pub fn one_templated(receiver: &str, defines: &str) -> Arc<dyn Integration> {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(dir.path().join("team.tmpl"), defines).expect("write the template file");
    let text = format!("templates: ['*.tmpl']\n{}", routing(receiver, ""));
    let no_env = |_: &str| None;
    let config = crate::config::load_str(&dir.path().join("r.yml"), &text, &no_env)
        .unwrap_or_else(|errors| panic!("{errors}"));
    let mut all = config.receivers[0].integrations.clone();
    assert_eq!(all.len(), 1);
    all.remove(0)
}

/// A team's templates file the receivers' tests share: over [`group`], `team.title` renders
/// `FIRING replication_lag (2 firing)` or `RESOLVED replication_lag`, `team.list` `r1:firing r2:firing ` or
/// `r1:resolved r2:resolved `.
pub const TEAM: &str = r#"{{ define "team.title" }}{{ .Status | toUpper }} {{ .CommonLabels.alertname }}{{ with .Alerts.Firing }} ({{ len . }} firing){{ end }}{{ end }}
{{ define "team.list" }}{{ range .Alerts }}{{ .Labels.replica }}:{{ .Status }} {{ end }}{{ end }}
"#;

/// The fields whose templates failed on `notice`, in rendering order (what the notifier counts).
pub fn failed_fields(notice: &Notice<'_>) -> Vec<String> {
    notice
        .templating
        .take_failures()
        .into_iter()
        .map(|failure| failure.field)
        .collect()
}

/// `path: message` for each problem.
pub fn errors(receiver: &str, global: &str) -> Vec<String> {
    let no_env = |_: &str| None;
    match crate::config::load_str(Path::new("r.yml"), &routing(receiver, global), &no_env) {
        Ok(_) => Vec::new(),
        Err(errors) => errors
            .errors
            .iter()
            .map(|error| format!("{}: {}", error.path, error.message))
            .collect(),
    }
}

/// A group of two `replication_lag` alerts on cluster `main`, replicas `r1` and `r2`.
pub struct Group {
    pub labels: BTreeMap<String, String>,
    pub firing: Vec<AlertRecord>,
    pub resolved: Vec<AlertRecord>,
}

pub fn alert(replica: &str, resolved: bool) -> AlertRecord {
    let labels: BTreeMap<String, String> = [
        ("alertname", "replication_lag"),
        ("cluster", "main"),
        ("replica", replica),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    AlertRecord {
        fingerprint: fingerprint(&labels),
        labels,
        annotations: [("summary".to_owned(), "replica lagging".to_owned())].into(),
        starts_at: 1_700_000_000_000,
        ends_at: resolved.then_some(1_700_000_100_000),
    }
}

/// Both alerts firing, or both resolved.
pub fn group(resolved: bool) -> Group {
    let alerts = vec![alert("r1", resolved), alert("r2", resolved)];
    let (firing, resolved) = if resolved {
        (Vec::new(), alerts)
    } else {
        (alerts, Vec::new())
    };
    Group {
        labels: [("alertname".to_owned(), "replication_lag".to_owned())].into(),
        firing,
        resolved,
    }
}

impl Group {
    pub fn notice(&self) -> Notice<'_> {
        Notice {
            receiver: "r",
            group_key: "{}:{alertname=\"replication_lag\"}",
            group_labels: &self.labels,
            firing: self.firing.clone(),
            resolved: self.resolved.clone(),
            external_url: "http://dbwatch.example:9630",
            now: 1_700_000_200_000,
            episode: 1_700_000_000_000,
            first_of_episode: true,
            templating: Default::default(),
        }
    }
}

/// The JSON body of a payload of any of the JSON receivers.
pub fn body(payload: &Payload) -> &serde_json::Value {
    match payload {
        Payload::Discord { body }
        | Payload::Telegram { body }
        | Payload::Webex { body }
        | Payload::OpsGenie { body, .. }
        | Payload::Pushover { body }
        | Payload::VictorOps { body }
        | Payload::MsTeams { body }
        | Payload::MsTeamsV2 { body } => body,
        other => panic!("not a JSON receiver's payload: {other:?}"),
    }
}

/// What a module's `read_config` makes of `entry` (a mapping body, indented by two spaces) under `global`
/// (likewise); panics on any problem.
pub fn read_with<T>(
    entry: &str,
    global: &str,
    read: fn(&mut Reader<'_>, &Node, &str, &Global) -> Option<T>,
) -> T {
    let text = format!("global:\n{global}entry:\n{entry}");
    let root = dbwatch_yaml::node::parse(&text).expect("YAML");
    let no_env = |_: &str| None;
    let mut reader = Reader::new(&no_env);
    let mut fields = Fields::of(&mut reader, &root, "").expect("a mapping");
    let global = match fields.take("global") {
        Some((node, path)) if !node.is_null() => read_global(&mut reader, node, &path),
        _ => Global::default(),
    };
    let (node, path) = fields.take("entry").expect("an entry");
    let value = read(&mut reader, node, &path, &global);
    let problems: Vec<String> = reader
        .errors
        .iter()
        .map(|error| format!("{}: {}", error.path, error.message))
        .collect();
    assert!(problems.is_empty(), "{problems:?}");
    value.expect("a configuration")
}
