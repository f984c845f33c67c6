//! Configuration: one YAML file, read into plain types, then validated into [`Config`].
//!
//! Reading ([`read`], [`yaml`]) turns text into raw values and records every problem with its position and key
//! path. Validation ([`validate`]) is pure: it applies defaults and cross-field rules and yields the types the
//! daemon runs on. Nothing here does network IO; password files are read when a collector connects.

pub mod validate;

use std::path::{Path, PathBuf};
use std::time::Duration;

use std::collections::BTreeMap;

use crate::engines::{spanned_duration, RawEngine};
pub use crate::engines::{Engine, Spanned};
pub use dbwatch_secret::{PasswordSource, Secret};
use dbwatch_yaml::{node as yaml, read};
pub use dbwatch_yaml::{ConfigError, ConfigErrors};
pub use validate::{AlertingConfig, Config, RulesConfig, Target, TargetSettings};

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("cannot read configuration file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Invalid(#[from] ConfigErrors),
}

/// Reads and validates a configuration file, expanding `${VAR}` from the process environment.
pub fn load_file(path: &Path) -> Result<Config, LoadError> {
    let text = std::fs::read_to_string(path).map_err(|source| LoadError::Read {
        path: path.to_owned(),
        source,
    })?;
    let env = |name: &str| std::env::var(name).ok();
    Ok(load_str(path, &text, &env)?)
}

/// Parses and validates configuration text; `file` only names the source in messages.
pub fn load_str(file: &Path, text: &str, env: read::EnvLookup<'_>) -> Result<Config, ConfigErrors> {
    let fail = |errors| ConfigErrors {
        file: file.to_owned(),
        errors,
    };
    let root = yaml::parse(text).map_err(|error| {
        fail(vec![ConfigError {
            line: error.mark.line,
            column: error.mark.column,
            path: String::new(),
            message: format!("invalid YAML: {}", error.message),
        }])
    })?;
    let mut reader = read::Reader::new(env);
    let raw = RawConfig::read(&mut reader, &root);
    let mut errors = reader.errors;
    let base_dir = file
        .parent()
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf);
    let config = validate::validate(raw, &base_dir, &mut errors);
    errors.sort_by_key(|error| (error.line, error.column));
    match config {
        Some(config) if errors.is_empty() => Ok(config),
        _ => Err(fail(errors)),
    }
}

/// The file as written: every field optional, nothing defaulted or cross-checked yet.
#[derive(Debug, Default)]
pub struct RawConfig {
    pub interval: Option<Spanned<Duration>>,
    pub timeout: Option<Spanned<Duration>>,
    pub evaluation_interval: Option<Spanned<Duration>>,
    /// `global.rule_history_limit`: the longest window (range plus offset) a rule may read.
    pub rule_history_limit: Option<Spanned<Duration>>,
    pub external_labels: Option<Spanned<BTreeMap<String, String>>>,
    pub rule_files: Vec<Spanned<String>>,
    /// `alerting.config_file`: the routing file, in Alertmanager's format.
    pub routing_file: Option<Spanned<String>>,
    /// `alerting.alertmanagers`: base URLs every alert is also pushed to.
    pub alertmanagers: Vec<Spanned<String>>,
    /// `remote_write:`, read and checked whole by `dbwatch-remote-write` (it has no cross-field rules here).
    pub remote_write: Vec<dbwatch_remote_write::RemoteWrite>,
    pub targets: Vec<RawTarget>,
}

#[derive(Debug)]
pub struct RawTarget {
    pub mark: yaml::Mark,
    pub path: String,
    pub name: Option<Spanned<String>>,
    pub labels: Option<Spanned<BTreeMap<String, String>>>,
    pub interval: Option<Spanned<Duration>>,
    pub timeout: Option<Spanned<Duration>>,
    /// `None` when the type was missing or unknown (already reported).
    pub engine: Option<RawEngine>,
    /// The target's mapping as written, positions dropped: what a reload compares (see [`TargetSettings`]).
    pub source: yaml::Node,
}

impl RawConfig {
    fn read(reader: &mut read::Reader<'_>, root: &yaml::Node) -> RawConfig {
        let mut raw = RawConfig::default();
        let Some(mut top) = read::Fields::of(reader, root, "") else {
            return raw;
        };
        if let Some((node, path)) = top.take("global") {
            if let Some(mut global) = read::Fields::of(reader, node, &path) {
                raw.interval = spanned_duration(reader, &mut global, "interval");
                raw.timeout = spanned_duration(reader, &mut global, "timeout");
                raw.evaluation_interval =
                    spanned_duration(reader, &mut global, "evaluation_interval");
                raw.rule_history_limit =
                    spanned_duration(reader, &mut global, "rule_history_limit");
                raw.external_labels = global.take("external_labels").and_then(|(node, path)| {
                    let value = reader.labels(node, &path)?;
                    Some(Spanned {
                        value,
                        mark: node.mark,
                        path,
                    })
                });
                global.finish(reader);
            }
        }
        if let Some((node, path)) = top.take("rule_files") {
            if let Some(items) = reader.sequence(node, &path) {
                for (index, item) in items.iter().enumerate() {
                    let item_path = format!("{path}[{index}]");
                    if let Some(value) = reader.string(item, &item_path) {
                        raw.rule_files.push(Spanned {
                            value,
                            mark: item.mark,
                            path: item_path,
                        });
                    }
                }
            }
        }
        if let Some((node, path)) = top.take("alerting") {
            if let Some(mut alerting) = read::Fields::of(reader, node, &path) {
                raw.routing_file = alerting.take("config_file").and_then(|(node, path)| {
                    let value = reader.string(node, &path)?;
                    Some(Spanned {
                        value,
                        mark: node.mark,
                        path,
                    })
                });
                if let Some((node, path)) = alerting.take("alertmanagers") {
                    let items = reader.sequence(node, &path).unwrap_or_default();
                    for (index, item) in items.iter().enumerate() {
                        let item_path = format!("{path}[{index}]");
                        if let Some(value) = reader.string(item, &item_path) {
                            raw.alertmanagers.push(Spanned {
                                value,
                                mark: item.mark,
                                path: item_path,
                            });
                        }
                    }
                }
                alerting.finish(reader);
            }
        }
        if let Some((node, path)) = top.take("remote_write") {
            raw.remote_write = dbwatch_remote_write::read(reader, node, &path);
        }
        match top.take("targets") {
            Some((node, path)) => {
                if let Some(items) = reader.sequence(node, &path) {
                    for (index, item) in items.iter().enumerate() {
                        let item_path = format!("{path}[{index}]");
                        if let Some(target) = RawTarget::read(reader, item, item_path) {
                            raw.targets.push(target);
                        }
                    }
                }
            }
            None => reader.error(
                root.mark,
                "targets",
                "missing key targets: list the databases to watch",
            ),
        }
        top.finish(reader);
        raw
    }
}

impl RawTarget {
    fn read(reader: &mut read::Reader<'_>, node: &yaml::Node, path: String) -> Option<RawTarget> {
        let mut fields = read::Fields::of(reader, node, &path)?;
        let name = fields.take("name").and_then(|(node, path)| {
            let value = reader.string(node, &path)?;
            Some(Spanned {
                value,
                mark: node.mark,
                path,
            })
        });
        let labels = fields.take("labels").and_then(|(node, path)| {
            let value = reader.labels(node, &path)?;
            Some(Spanned {
                value,
                mark: node.mark,
                path,
            })
        });
        let interval = spanned_duration(reader, &mut fields, "interval");
        let timeout = spanned_duration(reader, &mut fields, "timeout");
        let engine = RawEngine::read(reader, &mut fields, node.mark);
        fields.finish(reader);
        Some(RawTarget {
            mark: node.mark,
            path,
            name,
            labels,
            interval,
            timeout,
            engine,
            source: without_positions(node),
        })
    }
}

/// A node with every position zeroed and mapping keys sorted, so that moving a target in the file or reordering
/// its keys does not read as a change of its settings.
fn without_positions(node: &yaml::Node) -> yaml::Node {
    let value = match &node.value {
        yaml::Value::Scalar { text, quoted } => yaml::Value::Scalar {
            text: text.clone(),
            quoted: *quoted,
        },
        yaml::Value::Sequence(items) => {
            yaml::Value::Sequence(items.iter().map(without_positions).collect())
        }
        yaml::Value::Mapping(entries) => {
            let mut entries: Vec<(yaml::Key, yaml::Node)> = entries
                .iter()
                .map(|(key, value)| {
                    (
                        yaml::Key {
                            name: key.name.clone(),
                            mark: yaml::Mark::default(),
                        },
                        without_positions(value),
                    )
                })
                .collect();
            entries.sort_by(|a, b| a.0.name.cmp(&b.0.name));
            yaml::Value::Mapping(entries)
        }
    };
    yaml::Node {
        value,
        mark: yaml::Mark::default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(text: &str) -> Vec<(String, TargetSettings)> {
        let no_env = |_: &str| None;
        load_str(Path::new("dbwatch.yml"), text, &no_env)
            .unwrap_or_else(|errors| panic!("{errors}"))
            .targets
            .into_iter()
            .map(|target| (target.name, target.settings))
            .collect()
    }

    const BASE: &str = "\
targets:
  - name: a
    type: postgres
    connection: {host: db, port: 5432, user: u, password: one}
  - name: b
    type: postgres
    connection: {host: db, port: 5432, user: u, password: one}
";

    #[test]
    fn a_target_reads_as_changed_exactly_when_something_it_runs_with_changed() {
        let base = settings(BASE);
        // Moved in the file, its keys reordered: the same settings.
        let moved = settings(
            "# a comment\ntargets:\n  - name: b\n    connection: {user: u, port: 5432, host: db, password: one}\n    type: postgres\n  - name: a\n    type: postgres\n    connection: {host: db, port: 5432, user: u, password: one}\n",
        );
        let by_name = |all: &[(String, TargetSettings)], name: &str| {
            all.iter()
                .find(|(target, _)| target == name)
                .map(|(_, settings)| settings.clone())
                .expect("target present")
        };
        assert!(by_name(&moved, "a") == by_name(&base, "a"));
        assert!(by_name(&moved, "b") == by_name(&base, "b"));
        // An inline password (a secret, never printed) is part of the settings.
        let password = settings(&BASE.replacen("password: one", "password: two", 1));
        assert!(by_name(&password, "a") != by_name(&base, "a"));
        assert!(by_name(&password, "b") == by_name(&base, "b"));
        // A global default changes every target that takes it, though no target's entry changed.
        let interval = settings(&format!("global:\n  interval: 30s\n{BASE}"));
        assert!(by_name(&interval, "a") != by_name(&base, "a"));
        assert_eq!(
            format!("{:?}", by_name(&password, "a")),
            "TargetSettings { .. }"
        );
    }
}
