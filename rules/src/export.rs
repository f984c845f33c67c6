//! `dbwatch rules export`: writes a rule set as one Prometheus rule file (or a Prometheus Operator
//! `PrometheusRule`), for teams that evaluate dbwatch's alerts in their own Prometheus, Thanos or Mimir by
//! scraping dbwatch's `/metrics`. The shipped rules (`alerts/*.yml`) are built into the binary.
//!
//! Fields are written as they were read (expressions, durations, templates), so the output passes `promtool
//! check rules` and means the same thing there: dbwatch's evaluator implements Prometheus' semantics, and its
//! history reads snapshots the way a Prometheus server scrapes them. Groups whose names collide across files get
//! the file's stem appended, since group names must be unique within one file.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use serde::Serialize;

use super::load::{parse_rule_file, RuleErrors};
use super::model::{Rule, RuleSet};

/// Loads rule files built into the binary, as (file name, text); each is named `alerts/<file name>` in messages.
/// The daemon's engine seam says which files a build ships.
pub fn load_embedded(files: &[(&str, &str)]) -> Result<RuleSet, RuleErrors> {
    let mut set = RuleSet::default();
    let mut errors = Vec::new();
    for (name, text) in files {
        match parse_rule_file(&Path::new("alerts").join(name), text) {
            Ok(groups) => set.groups.extend(groups),
            Err(RuleErrors(found)) => errors.extend(found),
        }
    }
    if errors.is_empty() {
        Ok(set)
    } else {
        Err(RuleErrors(errors))
    }
}

/// The shipped rules for this crate's own tests, read from `alerts/` (the daemon embeds them through its engine
/// seam, which this crate does not see).
#[cfg(test)]
pub(crate) fn load_builtin() -> Result<RuleSet, RuleErrors> {
    let folder = Path::new(env!("CARGO_MANIFEST_DIR")).join("../alerts");
    let mut files = Vec::new();
    for entry in std::fs::read_dir(&folder).expect("alerts/ is readable") {
        let path = entry.expect("alerts/ is listable").path();
        if path.extension().is_some_and(|extension| extension == "yml") {
            let name = path
                .file_name()
                .expect("a file")
                .to_string_lossy()
                .into_owned();
            let text = std::fs::read_to_string(&path).expect("a rule file is readable");
            files.push((name, text));
        }
    }
    files.sort();
    assert!(files.len() >= 2, "alerts/ holds the shipped rule files");
    let files: Vec<(&str, &str)> = files
        .iter()
        .map(|(name, text)| (name.as_str(), text.as_str()))
        .collect();
    load_embedded(&files)
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExportFormat {
    /// A plain Prometheus rule file (`groups:`).
    Prometheus,
    /// A `monitoring.coreos.com/v1` `PrometheusRule` object.
    PrometheusOperator {
        name: String,
        namespace: Option<String>,
    },
}

#[derive(Debug, thiserror::Error)]
#[error("cannot write the rules as YAML: {0}")]
pub struct ExportError(String);

#[derive(Serialize)]
struct RuleFileOut {
    groups: Vec<GroupOut>,
}

#[derive(Serialize)]
struct GroupOut {
    name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    interval: Option<String>,
    #[serde(skip_serializing_if = "is_zero")]
    limit: usize,
    rules: Vec<RuleOut>,
}

#[derive(Serialize)]
struct RuleOut {
    #[serde(skip_serializing_if = "Option::is_none")]
    alert: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    record: Option<String>,
    expr: String,
    #[serde(rename = "for", skip_serializing_if = "Option::is_none")]
    hold: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    keep_firing_for: Option<String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    labels: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    annotations: BTreeMap<String, String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct PrometheusRuleOut {
    api_version: &'static str,
    kind: &'static str,
    metadata: Metadata,
    spec: RuleFileOut,
}

#[derive(Serialize)]
struct Metadata {
    name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    namespace: Option<String>,
    labels: BTreeMap<String, String>,
}

fn is_zero(value: &usize) -> bool {
    *value == 0
}

/// The rule set as YAML in the chosen format.
pub fn export(rules: &RuleSet, format: &ExportFormat) -> Result<String, ExportError> {
    let file = rule_file(rules);
    let yaml = match format {
        ExportFormat::Prometheus => serde_yaml::to_string(&file),
        ExportFormat::PrometheusOperator { name, namespace } => {
            serde_yaml::to_string(&PrometheusRuleOut {
                api_version: "monitoring.coreos.com/v1",
                kind: "PrometheusRule",
                metadata: Metadata {
                    name: name.clone(),
                    namespace: namespace.clone(),
                    labels: BTreeMap::from([(
                        "app.kubernetes.io/name".to_owned(),
                        "dbwatch".to_owned(),
                    )]),
                },
                spec: file,
            })
        }
    };
    yaml.map_err(|error| ExportError(error.to_string()))
}

fn rule_file(rules: &RuleSet) -> RuleFileOut {
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut groups = Vec::with_capacity(rules.groups.len());
    for group in &rules.groups {
        let count = seen.entry(group.name.clone()).or_default();
        *count += 1;
        let name = if *count == 1 {
            group.name.clone()
        } else {
            let stem = group
                .file
                .file_stem()
                .map(|stem| stem.to_string_lossy().into_owned())
                .unwrap_or_default();
            format!("{}/{stem}", group.name)
        };
        let rules = group
            .rules
            .iter()
            .map(|rule| match rule {
                Rule::Alerting(alerting) => RuleOut {
                    alert: Some(alerting.name.clone()),
                    record: None,
                    expr: alerting.expr_text.clone(),
                    hold: alerting.hold_text.clone(),
                    keep_firing_for: alerting.keep_firing_for_text.clone(),
                    labels: alerting
                        .labels
                        .iter()
                        .map(|(name, template)| (name.clone(), template.source().to_owned()))
                        .collect(),
                    annotations: alerting
                        .annotations
                        .iter()
                        .map(|(name, template)| (name.clone(), template.source().to_owned()))
                        .collect(),
                },
                Rule::Recording(recording) => RuleOut {
                    alert: None,
                    record: Some(recording.name.clone()),
                    expr: recording.expr_text.clone(),
                    hold: None,
                    keep_firing_for: None,
                    labels: recording.labels.clone(),
                    annotations: BTreeMap::new(),
                },
            })
            .collect();
        groups.push(GroupOut {
            name,
            interval: group.interval_text.clone(),
            limit: group.limit,
            rules,
        });
    }
    RuleFileOut { groups }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_builtin_rules_load() {
        let rules = load_builtin().unwrap_or_else(|errors| panic!("{errors}"));
        assert!(rules.rule_count() >= 15);
    }

    #[test]
    fn an_export_loads_back_into_the_same_rules() {
        let rules = load_builtin().unwrap_or_else(|errors| panic!("{errors}"));
        let text = export(&rules, &ExportFormat::Prometheus).expect("exported");
        let again = parse_rule_file(Path::new("export.yml"), &text)
            .unwrap_or_else(|errors| panic!("{errors}"));
        assert_eq!(again.len(), rules.groups.len());
        for (before, after) in rules.groups.iter().zip(&again) {
            assert_eq!(before.name, after.name);
            assert_eq!(before.rules.len(), after.rules.len());
            for (a, b) in before.rules.iter().zip(&after.rules) {
                assert_eq!(a.name(), b.name());
                assert_eq!(a.expr_text(), b.expr_text());
            }
        }
        let operator = export(
            &rules,
            &ExportFormat::PrometheusOperator {
                name: "dbwatch".into(),
                namespace: Some("monitoring".into()),
            },
        )
        .expect("exported");
        assert!(
            operator.starts_with("apiVersion: monitoring.coreos.com/v1\nkind: PrometheusRule\n"),
            "{operator}"
        );
    }
}
