//! Pure validation: raw values in, the daemon's types out, every problem recorded. No IO, no environment.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{ConfigError, RawConfig, RawTarget, Spanned};
use crate::engines::{check_positive, Engine, Errors, TargetLimits};
use dbwatch_yaml::node::Mark;

pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(15);
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
const MIN_INTERVAL: Duration = Duration::from_secs(1);

/// Labels every series already carries; a target's own labels may not reuse them.
const RESERVED_LABELS: &[&str] = &["target", "db"];

/// The validated configuration the daemon runs on.
#[derive(Debug, Clone)]
pub struct Config {
    pub targets: Vec<Target>,
    pub rules: RulesConfig,
    pub alerting: AlertingConfig,
    /// Endpoints every snapshot and the rules' results are remote-written to.
    pub remote_write: Vec<dbwatch_remote_write::RemoteWrite>,
}

/// Where alerts go besides /metrics and the log.
#[derive(Debug, Clone, Default)]
pub struct AlertingConfig {
    /// The notification routing file (Alertmanager's format), resolved against the configuration's folder.
    pub routing_file: Option<PathBuf>,
    /// Alertmanager base URLs every alert is also pushed to, as Prometheus does (for HA setups).
    pub alertmanagers: Vec<String>,
}

/// Where the alerting rules come from and how they are evaluated. Reading the files is IO, so it happens after
/// validation ([`crate::app::load`]).
#[derive(Debug, Clone)]
pub struct RulesConfig {
    /// Glob patterns, as written.
    pub patterns: Vec<String>,
    /// Relative patterns are relative to the configuration file's folder, as in Prometheus.
    pub base_dir: PathBuf,
    pub evaluation_interval: Duration,
    /// `global.rule_history_limit`: rules reading further back are refused at load.
    pub history_limit: Duration,
    pub external_labels: BTreeMap<String, String>,
}

#[derive(Debug, Clone)]
pub struct Target {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub interval: Duration,
    pub timeout: Duration,
    pub engine: Engine,
    /// What a reload compares to decide whether the target's task, connection and schedule can be kept.
    pub settings: TargetSettings,
}

/// Everything a target's behaviour depends on: its mapping as written (an inline password included, `${VAR}`
/// unexpanded, since the environment does not change under a running process) and the interval and timeout
/// it ends up with (the global defaults may change them). Compared whole, never printed: it may hold a secret.
#[derive(Clone, PartialEq)]
pub struct TargetSettings {
    source: dbwatch_yaml::node::Node,
    interval: Duration,
    timeout: Duration,
}

impl std::fmt::Debug for TargetSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TargetSettings { .. }")
    }
}

/// Applies defaults and cross-field rules. Returns `None` when a target could not be built at all; every
/// problem is pushed to `errors` either way.
pub fn validate(raw: RawConfig, base_dir: &Path, errors: &mut Vec<ConfigError>) -> Option<Config> {
    let mut errors = Errors(errors);
    let rules = validate_rules(&mut errors, &raw, base_dir);
    let alerting = validate_alerting(&mut errors, &raw, base_dir);
    let default_interval = raw
        .interval
        .as_ref()
        .map_or(DEFAULT_INTERVAL, |interval| interval.value);
    let default_timeout = raw
        .timeout
        .as_ref()
        .map_or(DEFAULT_TIMEOUT, |timeout| timeout.value);
    if let Some(interval) = &raw.interval {
        check_interval(&mut errors, interval);
    }
    if let Some(timeout) = &raw.timeout {
        check_positive(&mut errors, timeout);
    }

    let remote_write = raw.remote_write;
    let mut seen: HashMap<String, Mark> = HashMap::new();
    let mut targets = Vec::with_capacity(raw.targets.len());
    let mut complete = true;
    for target in raw.targets {
        if let Some(name) = &target.name {
            if let Some(first) = seen.get(&name.value) {
                errors.at(
                    name.mark,
                    &name.path,
                    format!(
                        "duplicate target name {:?}, first defined at line {}",
                        name.value, first.line
                    ),
                );
            } else {
                seen.insert(name.value.clone(), name.mark);
            }
        }
        match validate_target(&mut errors, target, default_interval, default_timeout) {
            Some(target) => targets.push(target),
            None => complete = false,
        }
    }
    complete.then_some(Config {
        targets,
        rules,
        alerting,
        remote_write,
    })
}

fn validate_alerting(errors: &mut Errors<'_>, raw: &RawConfig, base_dir: &Path) -> AlertingConfig {
    for url in &raw.alertmanagers {
        let scheme_ok = url.value.starts_with("http://") || url.value.starts_with("https://");
        if !scheme_ok || url.value.len() <= "https://".len() {
            errors.at(
                url.mark,
                &url.path,
                // The URL may carry `user:password@`; the error goes to the journal and check-config's output.
                format!(
                    "expected an http:// or https:// base URL, found {:?}",
                    dbwatch_secret::redact_url(&url.value)
                ),
            );
        }
    }
    AlertingConfig {
        routing_file: raw
            .routing_file
            .as_ref()
            .map(|file| base_dir.join(&file.value)),
        alertmanagers: raw
            .alertmanagers
            .iter()
            .map(|url| url.value.trim_end_matches('/').to_owned())
            .collect(),
    }
}

fn validate_rules(errors: &mut Errors<'_>, raw: &RawConfig, base_dir: &Path) -> RulesConfig {
    for pattern in &raw.rule_files {
        if let Err(error) = glob::Pattern::new(&pattern.value) {
            errors.at(
                pattern.mark,
                &pattern.path,
                format!("invalid glob pattern {:?}: {}", pattern.value, error.msg),
            );
        }
    }
    if let Some(interval) = &raw.evaluation_interval {
        check_interval(errors, interval);
    }
    if let Some(limit) = &raw.rule_history_limit {
        // Every instant selector reads the 5 minute lookback: a shorter history would refuse every rule.
        if limit.value < MIN_HISTORY_LIMIT {
            errors.at(
                limit.mark,
                &limit.path,
                format!(
                    "rule_history_limit {} is below the 5m every instant selector reads back",
                    humantime::format_duration(limit.value)
                ),
            );
        }
    }
    let external_labels = match &raw.external_labels {
        Some(labels) => {
            for label in labels.value.keys() {
                check_label_name(errors, labels, label, LabelUse::External);
            }
            labels.value.clone()
        }
        None => BTreeMap::new(),
    };
    RulesConfig {
        patterns: raw.rule_files.iter().map(|p| p.value.clone()).collect(),
        base_dir: base_dir.to_path_buf(),
        evaluation_interval: raw
            .evaluation_interval
            .as_ref()
            .map_or(dbwatch_rules::DEFAULT_EVALUATION_INTERVAL, |i| i.value),
        history_limit: raw
            .rule_history_limit
            .as_ref()
            .map_or(dbwatch_rules::DEFAULT_HISTORY_LIMIT, |limit| limit.value),
        external_labels,
    }
}

fn validate_target(
    errors: &mut Errors<'_>,
    raw: RawTarget,
    default_interval: Duration,
    default_timeout: Duration,
) -> Option<Target> {
    let name = match raw.name {
        Some(name) => {
            if !name
                .value
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
            {
                errors.at(
                    name.mark,
                    &name.path,
                    "target names may hold letters, digits, '-', '_' and '.' only",
                );
            }
            Some(name.value)
        }
        None => {
            errors.at(raw.mark, &format!("{}.name", raw.path), "missing key name");
            None
        }
    };
    let labels = match raw.labels {
        Some(labels) => {
            for label in labels.value.keys() {
                check_label_name(errors, &labels, label, LabelUse::Target);
            }
            labels.value
        }
        None => BTreeMap::new(),
    };
    if let Some(interval) = &raw.interval {
        check_interval(errors, interval);
    }
    if let Some(timeout) = &raw.timeout {
        check_positive(errors, timeout);
    }
    let interval = raw.interval.as_ref().map_or(default_interval, |i| i.value);
    let timeout = raw.timeout.as_ref().map_or(default_timeout, |t| t.value);
    if timeout > interval {
        let (mark, path) = match &raw.timeout {
            Some(timeout) => (timeout.mark, timeout.path.clone()),
            None => (raw.mark, format!("{}.timeout", raw.path)),
        };
        errors.at(
            mark,
            &path,
            format!(
                "timeout {} is longer than the poll interval {}",
                humantime::format_duration(timeout),
                humantime::format_duration(interval)
            ),
        );
    }
    let settings = TargetSettings {
        source: raw.source,
        interval,
        timeout,
    };
    let name = name?;
    let engine = raw.engine?.validate(
        TargetLimits {
            name: &name,
            timeout,
        },
        errors,
    )?;
    Some(Target {
        name,
        labels,
        interval,
        timeout,
        engine,
        settings,
    })
}

const MIN_HISTORY_LIMIT: Duration = Duration::from_secs(5 * 60);

fn check_interval(errors: &mut Errors<'_>, interval: &Spanned<Duration>) {
    if interval.value < MIN_INTERVAL {
        errors.at(
            interval.mark,
            &interval.path,
            format!(
                "interval {} is below the minimum of 1s",
                humantime::format_duration(interval.value)
            ),
        );
    }
}

/// Where a configured label goes: a target's series, or (`global.external_labels`) alerts and remote-written
/// series.
#[derive(Clone, Copy, PartialEq, Eq)]
enum LabelUse {
    Target,
    /// `__`-prefixed names are valid here, as in Prometheus: Cortex's and Mimir's HA tracker deduplicates on
    /// `__replica__`, which they drop on ingestion.
    External,
}

fn check_label_name(
    errors: &mut Errors<'_>,
    labels: &Spanned<BTreeMap<String, String>>,
    label: &str,
    used: LabelUse,
) {
    let path = format!("{}.{label}", labels.path);
    let valid = label
        .chars()
        .enumerate()
        .all(|(index, c)| c == '_' || c.is_ascii_alphabetic() || (index > 0 && c.is_ascii_digit()));
    if !valid || (label.starts_with("__") && used == LabelUse::Target) {
        errors.at(
            labels.mark,
            &path,
            format!("{label:?} is not a valid Prometheus label name"),
        );
        return;
    }
    let collector_labels = dbwatch_collectors::all_descriptors()
        .into_iter()
        .flat_map(|desc| desc.labels.iter().copied())
        .any(|name| name == label);
    if RESERVED_LABELS.contains(&label) || collector_labels {
        errors.at(
            labels.mark,
            &path,
            format!("label {label:?} is set by dbwatch itself; choose another name"),
        );
    }
}
