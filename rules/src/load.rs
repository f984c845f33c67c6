//! Reads rule files into a [`RuleSet`], reporting every problem at once with its file, line, column, key path,
//! group and rule.
//!
//! Validation is Prometheus 2.42's (`model/rulefmt`), plus dbwatch's own: an expression must compile into the
//! supported PromQL subset and every template must parse with the functions dbwatch has (Go's text/template
//! in full; Prometheus's functions but the query ones), so that nothing
//! loads that dbwatch would evaluate differently from Prometheus. Values are read as written: no `${VAR}`
//! expansion (`label_replace` uses `${1}`).

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use dbwatch_yaml::node::{self as yaml, Mark, Node, Value};
use dbwatch_yaml::read::{Fields, Reader};

use super::labels::{is_valid_label_name, is_valid_metric_name, METRIC_NAME};
use super::model::{
    format_duration, parse_duration, AlertingRule, Group, RecordingRule, Rule, RuleSet,
};
use super::promql;
use super::template::Template;

/// One problem in a rule file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleError {
    pub file: PathBuf,
    pub line: usize,
    pub column: usize,
    /// The key path, e.g. `groups[0].rules[2].expr`.
    pub path: String,
    pub group: Option<String>,
    /// `alert "name"` or `record "name"`.
    pub rule: Option<String>,
    pub message: String,
}

impl fmt::Display for RuleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}: ", self.file.display(), self.line, self.column)?;
        if !self.path.is_empty() {
            f.write_str(&self.path)?;
        }
        match (&self.group, &self.rule) {
            (Some(group), Some(rule)) => write!(f, " (group {group:?}, {rule})")?,
            (Some(group), None) => write!(f, " (group {group:?})")?,
            _ => {}
        }
        write!(f, ": {}", self.message)
    }
}

/// Every problem found in the rule files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleErrors(pub Vec<RuleError>);

impl fmt::Display for RuleErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let count = self.0.len();
        write!(
            f,
            "rule files have {count} problem{}",
            if count == 1 { "" } else { "s" }
        )?;
        for error in &self.0 {
            write!(f, "\n  {error}")?;
        }
        Ok(())
    }
}

impl std::error::Error for RuleErrors {}

/// The default of `global.rule_history_limit`: three days, the longest window of the usual multi-window SLO
/// burn-rate alerts (`[5m]` to `[3d]`, mostly over recording rules, which select few series).
pub const DEFAULT_HISTORY_LIMIT: Duration = Duration::from_secs(3 * 24 * 3600);

/// What the daemon's configuration bounds in the rule files it loads.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LoadLimits {
    /// `global.rule_history_limit`: the longest history a rule may read (range plus offset). `None` (rule file
    /// tools such as `rules check`, which have no configuration) accepts every window Prometheus accepts.
    pub history: Option<Duration>,
}

/// Reads, validates and compiles rule files; all of them must be valid.
pub fn load_rule_files(paths: &[PathBuf]) -> Result<RuleSet, RuleErrors> {
    load_rule_files_within(paths, LoadLimits::default())
}

/// [`load_rule_files`], refusing what exceeds the configured `limits`, at the rule's position.
pub fn load_rule_files_within(
    paths: &[PathBuf],
    limits: LoadLimits,
) -> Result<RuleSet, RuleErrors> {
    let mut set = RuleSet::default();
    let mut errors = Vec::new();
    for path in paths {
        match std::fs::read_to_string(path) {
            Ok(text) => match parse_rule_file_within(path, &text, limits) {
                Ok(groups) => set.groups.extend(groups),
                Err(RuleErrors(found)) => errors.extend(found),
            },
            Err(error) => errors.push(RuleError {
                file: path.clone(),
                line: 0,
                column: 0,
                path: String::new(),
                group: None,
                rule: None,
                message: format!("cannot read rule file: {error}"),
            }),
        }
    }
    if errors.is_empty() {
        Ok(set)
    } else {
        Err(RuleErrors(errors))
    }
}

/// Expands `rule_files` patterns (globs allowed), relative ones against `base_dir`, in pattern order, each
/// pattern's matches sorted. A pattern without glob characters is kept even when the file is missing, so
/// that loading reports it; a glob matching nothing yields nothing (Prometheus warns, so does the caller).
pub fn resolve_rule_files(patterns: &[String], base_dir: &Path) -> Result<Vec<PathBuf>, String> {
    let mut files = Vec::new();
    let mut seen = HashSet::new();
    for pattern in patterns {
        let full = if Path::new(pattern).is_absolute() {
            PathBuf::from(pattern)
        } else {
            base_dir.join(pattern)
        };
        let text = full.to_string_lossy().into_owned();
        if !pattern.contains(['*', '?', '[']) {
            if seen.insert(full.clone()) {
                files.push(full);
            }
            continue;
        }
        let paths = glob::glob(&text)
            .map_err(|error| format!("invalid rule_files pattern {pattern:?}: {error}"))?;
        let mut matched: Vec<PathBuf> = paths.filter_map(Result::ok).collect();
        matched.sort();
        for path in matched {
            if seen.insert(path.clone()) {
                files.push(path);
            }
        }
    }
    Ok(files)
}

/// Parses one rule file's text; `file` names it in messages and in the groups.
pub fn parse_rule_file(file: &Path, text: &str) -> Result<Vec<Group>, RuleErrors> {
    parse_rule_file_within(file, text, LoadLimits::default())
}

/// [`parse_rule_file`] within the configured `limits`.
pub fn parse_rule_file_within(
    file: &Path,
    text: &str,
    limits: LoadLimits,
) -> Result<Vec<Group>, RuleErrors> {
    let error_at = |mark: Mark, message: String| RuleError {
        file: file.to_owned(),
        line: mark.line,
        column: mark.column,
        path: String::new(),
        group: None,
        rule: None,
        message,
    };
    let root = yaml::parse(text).map_err(|error| {
        RuleErrors(vec![error_at(
            error.mark,
            format!("invalid YAML: {}", error.message),
        )])
    })?;
    let no_env = |_: &str| -> Option<String> { None };
    let mut reader = Reader::new(&no_env);
    let mut context = Context {
        limits,
        ..Context::default()
    };
    let groups = read_groups(&mut reader, &root, file, &mut context);
    let mut errors: Vec<RuleError> = reader
        .errors
        .into_iter()
        .map(|error| {
            let (group, rule) = context.names_for(&error.path);
            RuleError {
                file: file.to_owned(),
                line: error.line,
                column: error.column,
                path: error.path,
                group,
                rule,
                message: error.message,
            }
        })
        .collect();
    errors.sort_by_key(|error| (error.line, error.column));
    if errors.is_empty() {
        Ok(groups)
    } else {
        Err(RuleErrors(errors))
    }
}

/// Group and rule names by key path, to name them in messages.
#[derive(Default)]
struct Context {
    groups: Vec<(String, String)>,
    rules: Vec<(String, String)>,
    limits: LoadLimits,
}

impl Context {
    fn names_for(&self, path: &str) -> (Option<String>, Option<String>) {
        let within = |prefix: &str| {
            path == prefix
                || path.starts_with(&format!("{prefix}."))
                || path.starts_with(&format!("{prefix}["))
        };
        let group = self
            .groups
            .iter()
            .find(|(prefix, _)| within(prefix))
            .map(|(_, name)| name.clone());
        let rule = self
            .rules
            .iter()
            .find(|(prefix, _)| within(prefix))
            .map(|(_, name)| name.clone());
        (group, rule)
    }
}

/// A scalar's text as written, or an error for any other node.
fn scalar(reader: &mut Reader<'_>, node: &Node, path: &str) -> Option<String> {
    match &node.value {
        Value::Scalar { text, .. } if !node.is_null() => Some(text.clone()),
        _ => {
            reader.error(
                node.mark,
                path,
                format!("expected a string, found {}", node.kind()),
            );
            None
        }
    }
}

fn read_groups(
    reader: &mut Reader<'_>,
    root: &Node,
    file: &Path,
    context: &mut Context,
) -> Vec<Group> {
    let mut groups = Vec::new();
    let Some(mut top) = Fields::of(reader, root, "") else {
        return groups;
    };
    let Some((node, path)) = top.take("groups") else {
        top.finish(reader);
        return groups;
    };
    top.finish(reader);
    let Some(items) = reader.sequence(node, &path) else {
        return groups;
    };
    let mut names = HashSet::new();
    for (index, item) in items.iter().enumerate() {
        let group_path = format!("groups[{index}]");
        let Some(mut fields) = Fields::of(reader, item, &group_path) else {
            continue;
        };
        let name = match fields.take("name") {
            Some((node, path)) => scalar(reader, node, &path).filter(|name| {
                if name.is_empty() {
                    reader.error(node.mark, &path, "group name must not be empty");
                    return false;
                }
                if !names.insert(name.clone()) {
                    reader.error(
                        node.mark,
                        &path,
                        format!("group name {name:?} is repeated in the same file"),
                    );
                }
                true
            }),
            None => {
                reader.error(
                    item.mark,
                    &group_path,
                    "missing key name: every group needs a name",
                );
                None
            }
        };
        if let Some(name) = &name {
            context.groups.push((group_path.clone(), name.clone()));
        }
        let mut interval = None;
        let mut interval_text = None;
        if let Some((node, path)) = fields.take("interval") {
            if let Some(text) = scalar(reader, node, &path) {
                match parse_duration(&text) {
                    Ok(duration) if !duration.is_zero() => {
                        interval = Some(duration);
                        interval_text = Some(text);
                    }
                    Ok(_) => {}
                    Err(message) => reader.error(node.mark, &path, message),
                }
            }
        }
        let mut limit = 0;
        if let Some((node, path)) = fields.take("limit") {
            if let Some(text) = scalar(reader, node, &path) {
                match text.parse::<usize>() {
                    Ok(value) => limit = value,
                    Err(_) => reader.error(
                        node.mark,
                        &path,
                        format!("expected a non-negative integer, found {text:?}"),
                    ),
                }
            }
        }
        let mut rules = Vec::new();
        if let Some((node, path)) = fields.take("rules") {
            if let Some(items) = reader.sequence(node, &path) {
                for (rule_index, item) in items.iter().enumerate() {
                    let rule_path = format!("{path}[{rule_index}]");
                    if let Some(rule) = read_rule(reader, item, &rule_path, context) {
                        rules.push(rule);
                    }
                }
            }
        }
        fields.finish(reader);
        if let Some(name) = name {
            groups.push(Group {
                file: file.to_owned(),
                name,
                interval,
                interval_text,
                limit,
                rules,
            });
        }
    }
    groups
}

fn read_rule(
    reader: &mut Reader<'_>,
    node: &Node,
    path: &str,
    context: &mut Context,
) -> Option<Rule> {
    let mut fields = Fields::of(reader, node, path)?;
    let errors_before = reader.errors.len();
    let alert = fields
        .take("alert")
        .and_then(|(node, path)| Some((scalar(reader, node, &path)?, node.mark, path)));
    let record = fields
        .take("record")
        .and_then(|(node, path)| Some((scalar(reader, node, &path)?, node.mark, path)));
    match (&alert, &record) {
        (Some((name, ..)), None) => context
            .rules
            .push((path.to_owned(), format!("alert {name:?}"))),
        (None, Some((name, ..))) => context
            .rules
            .push((path.to_owned(), format!("record {name:?}"))),
        (Some((_, mark, _)), Some(_)) => {
            reader.error(*mark, path, "only one of 'record' and 'alert' must be set")
        }
        (None, None) => reader.error(node.mark, path, "one of 'record' or 'alert' must be set"),
    }
    let expr = match fields.take("expr") {
        Some((expr_node, expr_path)) => {
            scalar(reader, expr_node, &expr_path).and_then(|text| match promql::compile(&text) {
                Ok(expr) => match beyond_history(&expr, context.limits) {
                    Some(problem) => {
                        reader.error(expr_node.mark, &expr_path, problem);
                        None
                    }
                    None => Some((expr, text)),
                },
                Err(error) => {
                    reader.error(expr_node.mark, &expr_path, error.to_string());
                    None
                }
            })
        }
        None => {
            reader.error(node.mark, path, "field 'expr' must be set in rule");
            None
        }
    };
    let mut duration = |reader: &mut Reader<'_>,
                        key: &'static str|
     -> Option<(std::time::Duration, String, Mark)> {
        let (node, path) = fields.take(key)?;
        let text = scalar(reader, node, &path)?;
        match parse_duration(&text) {
            Ok(duration) => Some((duration, text, node.mark)),
            Err(message) => {
                reader.error(node.mark, &path, message);
                None
            }
        }
    };
    let hold = duration(reader, "for");
    let keep_firing_for = duration(reader, "keep_firing_for");
    let labels = fields
        .take("labels")
        .and_then(|(node, path)| read_map(reader, node, &path, "label"));
    let annotations = fields
        .take("annotations")
        .and_then(|(node, path)| read_map(reader, node, &path, "annotation"));
    fields.finish(reader);

    if let Some((name, mark, name_path)) = &record {
        if alert.is_none() {
            if let Some(annotations) = &annotations {
                if !annotations.is_empty() {
                    reader.error(
                        *mark,
                        name_path,
                        "invalid field 'annotations' in recording rule",
                    );
                }
            }
            if hold
                .as_ref()
                .is_some_and(|(duration, ..)| !duration.is_zero())
            {
                reader.error(*mark, name_path, "invalid field 'for' in recording rule");
            }
            if keep_firing_for
                .as_ref()
                .is_some_and(|(duration, ..)| !duration.is_zero())
            {
                reader.error(
                    *mark,
                    name_path,
                    "invalid field 'keep_firing_for' in recording rule",
                );
            }
            if !is_valid_metric_name(name) {
                reader.error(
                    *mark,
                    name_path,
                    format!("invalid recording rule name: {name}"),
                );
            }
        }
    }
    if let Some((name, mark, name_path)) = &alert {
        if name.is_empty() {
            reader.error(*mark, name_path, "alert name must not be empty");
        }
    }
    let labels = labels.unwrap_or_default();
    let annotations = annotations.unwrap_or_default();
    let mut label_templates = BTreeMap::new();
    let mut annotation_templates = BTreeMap::new();
    if alert.is_some() {
        for (kind, source, target) in [
            ("label", &labels, &mut label_templates),
            ("annotation", &annotations, &mut annotation_templates),
        ] {
            for (key, (text, mark)) in source {
                match Template::parse(text) {
                    Ok(template) => {
                        target.insert(key.clone(), template);
                    }
                    Err(error) => reader.error(
                        *mark,
                        &format!("{path}.{kind}s.{key}"),
                        format!("{kind} {key:?}: {error}"),
                    ),
                }
            }
        }
    }
    if reader.errors.len() > errors_before {
        return None;
    }
    let (expr, expr_text) = expr?;
    if let Some((name, _, _)) = alert {
        return Some(Rule::Alerting(AlertingRule {
            name,
            expr,
            expr_text,
            hold: hold
                .as_ref()
                .map(|(duration, ..)| *duration)
                .unwrap_or_default(),
            hold_text: hold.map(|(_, text, _)| text),
            keep_firing_for: keep_firing_for
                .as_ref()
                .map(|(duration, ..)| *duration)
                .unwrap_or_default(),
            keep_firing_for_text: keep_firing_for.map(|(_, text, _)| text),
            labels: label_templates,
            annotations: annotation_templates,
        }));
    }
    let (name, _, _) = record?;
    Some(Rule::Recording(RecordingRule {
        name,
        expr,
        expr_text,
        labels: labels
            .into_iter()
            .map(|(key, (value, _))| (key, value))
            .collect(),
    }))
}

/// Why `expr` reads further back than the configured history holds, if it does. The history is in memory, so
/// its length is a budget the operator sets (the README's Alerts section: memory per series and per day of window).
fn beyond_history(expr: &promql::Expr, limits: LoadLimits) -> Option<String> {
    let limit = limits.history?;
    let reach = expr.reach_ms();
    let limit_ms = i64::try_from(limit.as_millis()).unwrap_or(i64::MAX);
    if reach <= limit_ms {
        return None;
    }
    let window = Duration::from_millis(reach.unsigned_abs());
    Some(format!(
        "the expression reads {} of history (its longest range or lookback plus offset), past the rule history \
         limit of {}: raise `global.rule_history_limit` in the configuration file (each series the rule \
         selects costs about {} KiB of memory per day of history at a 15 s evaluation interval), or \
         evaluate this rule in Prometheus",
        format_duration(window),
        format_duration(limit),
        HISTORY_KIB_PER_SERIES_DAY_AT_15S
    ))
}

/// The history's resident memory per selected series per day of window at a 15 s evaluation interval: 5,760
/// samples of 16 bytes, the quarter of slack trimming keeps, and the allocator's share, 23.6 bytes per sample
/// held in all (measured by `rules/benches/history_memory.rs`: 1,000 series over `[3d]`, 388.6 MiB).
pub const HISTORY_KIB_PER_SERIES_DAY_AT_15S: u64 = 133;

/// A mapping of label or annotation names to their text and position.
fn read_map(
    reader: &mut Reader<'_>,
    node: &Node,
    path: &str,
    kind: &str,
) -> Option<BTreeMap<String, (String, Mark)>> {
    let mut fields = Fields::of(reader, node, path)?;
    let mut map = BTreeMap::new();
    for (key, value) in fields.drain() {
        let child = format!("{path}.{}", key.name);
        if !is_valid_label_name(&key.name) || (kind == "label" && key.name == METRIC_NAME) {
            reader.error(
                key.mark,
                &child,
                format!("invalid {kind} name: {}", key.name),
            );
            continue;
        }
        let text = match &value.value {
            Value::Scalar { text, .. } => {
                if value.is_null() {
                    String::new()
                } else {
                    text.clone()
                }
            }
            _ => {
                reader.error(
                    value.mark,
                    &child,
                    format!("expected a string, found {}", value.kind()),
                );
                continue;
            }
        };
        map.insert(key.name.clone(), (text, value.mark));
    }
    Some(map)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errors(text: &str) -> Vec<String> {
        match parse_rule_file(Path::new("rules.yml"), text) {
            Ok(groups) => panic!("loaded {} groups", groups.len()),
            Err(RuleErrors(errors)) => errors.iter().map(ToString::to_string).collect(),
        }
    }

    #[test]
    fn a_valid_file_loads() {
        let groups = parse_rule_file(
            Path::new("rules.yml"),
            "groups:\n  - name: fleet\n    interval: 30s\n    rules:\n      - alert: high_latency\n        expr: db_query_latency_avg_seconds > 0.1\n        for: 5m\n        labels:\n          severity: warning\n        annotations:\n          summary: \"{{ $labels.target }} is slow: {{ $value | humanizeDuration }}\"\n      - record: target:db_up:sum\n        expr: sum by (target) (db_up)\n",
        )
        .expect("valid");
        assert_eq!(groups.len(), 1);
        assert_eq!(groups[0].rules.len(), 2);
        assert_eq!(groups[0].interval, Some(std::time::Duration::from_secs(30)));
        let Rule::Alerting(rule) = &groups[0].rules[0] else {
            panic!("alerting rule")
        };
        assert_eq!(rule.hold, std::time::Duration::from_secs(300));
    }

    #[test]
    fn every_problem_is_reported_with_group_and_rule() {
        let found = errors(
            "groups:\n  - name: g\n    rules:\n      - alert: a\n        expr: histogram_count(rate(x[5m])) > 0\n      - alert: b\n        expr: x > 1\n        fore: 5m\n        annotations:\n          summary: \"{{ query \\\"up\\\" }}\"\n      - record: bad name\n        expr: x\n        for: 1m\n  - name: g\n",
        );
        let all = found.join("\n");
        assert!(all.contains("rules.yml:5:15: groups[0].rules[0].expr (group \"g\", alert \"a\"): unsupported PromQL construct: the function `histogram_count` (native histograms"), "{all}");
        assert!(
            all.contains("(group \"g\", alert \"b\"): unknown key \"fore\""),
            "{all}"
        );
        assert!(
            all.contains(
                "annotation \"summary\": 1:4: the template function \"query\" is not supported"
            ),
            "{all}"
        );
        assert!(
            all.contains("invalid field 'for' in recording rule"),
            "{all}"
        );
        assert!(
            all.contains("invalid recording rule name: bad name"),
            "{all}"
        );
        assert!(all.contains("group name \"g\" is repeated"), "{all}");
    }

    #[test]
    fn structural_errors() {
        let all = errors("groups:\n  - rules:\n      - expr: x\n").join("\n");
        assert!(all.contains("missing key name"), "{all}");
        assert!(
            all.contains("one of 'record' or 'alert' must be set"),
            "{all}"
        );
        let all = errors("groups:\n  - name: g\n    rules:\n      - alert: a\n        record: b\n        expr: x\n").join("\n");
        assert!(all.contains("only one of 'record' and 'alert'"), "{all}");
        let all = errors("group: []\n").join("\n");
        assert!(all.contains("unknown key \"group\""), "{all}");
        let all = errors(
            "groups:\n  - name: g\n    rules:\n      - alert: a\n        expr: x\n        for: 5\n",
        )
        .join("\n");
        assert!(all.contains("not a valid duration"), "{all}");
        let all = errors("groups: [\n").join("\n");
        assert!(all.contains("invalid YAML"), "{all}");
    }

    #[test]
    fn windows_past_the_history_limit_are_refused_at_their_rule() {
        let file = |expr: &str| {
            format!(
                "groups:\n  - name: slo\n    rules:\n      - alert: burn\n        expr: '{expr}'\n"
            )
        };
        let within = |expr: &str, limit: Option<Duration>| {
            parse_rule_file_within(
                Path::new("slo.yml"),
                &file(expr),
                LoadLimits { history: limit },
            )
        };
        let three_days = Some(DEFAULT_HISTORY_LIMIT);
        // Exactly the limit is within it; Prometheus's files load unchanged without a limit.
        assert!(within("avg_over_time(x[3d]) > 0.001", three_days).is_ok());
        assert!(within("avg_over_time(x[30d]) > 0.001", None).is_ok());
        let refused = |expr: &str| match within(expr, three_days) {
            Ok(_) => panic!("{expr} loaded past a 3d limit"),
            Err(RuleErrors(errors)) => {
                assert_eq!(errors.len(), 1, "{errors:?}");
                errors[0].to_string()
            }
        };
        let message = refused("avg_over_time(x[5d]) > 0.001");
        assert!(
            message.starts_with("slo.yml:5:15: groups[0].rules[0].expr (group \"slo\", alert \"burn\"): the expression reads 5d of history"),
            "{message}"
        );
        assert!(
            message.contains("limit of 3d: raise `global.rule_history_limit`"),
            "{message}"
        );
        assert!(
            message.contains(&format!("about {HISTORY_KIB_PER_SERIES_DAY_AT_15S} KiB")),
            "{message}"
        );
        // Offsets and subqueries reach further back than their ranges.
        assert!(refused("avg_over_time(x[3d] offset 1h) > 0").contains("reads 3d1h of history"));
        assert!(refused("max_over_time(rate(x[5m])[3d:1m]) > 0").contains("reads 3d5m of history"));
        assert!(refused("x offset 3d > 0").contains("reads 3d5m of history"));
    }

    #[test]
    fn label_replace_keeps_its_dollar_references() {
        let groups = parse_rule_file(
            Path::new("r.yml"),
            "groups:\n  - name: g\n    rules:\n      - record: x:host\n        expr: label_replace(x, \"host\", \"${1}\", \"target\", \"(.*)\")\n",
        )
        .expect("valid");
        assert!(groups[0].rules[0].expr_text().contains("${1}"));
    }
}
