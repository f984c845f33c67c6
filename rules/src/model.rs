//! The loaded rule set: Prometheus rule files, validated, their expressions compiled and templates parsed.
//!
//! The schema is Prometheus 2.42's (`groups[].name/interval/limit/rules[]`, rules with `alert` or `record`,
//! `expr`, `for`, `keep_firing_for`, `labels`, `annotations`), so the same files load into Prometheus and
//! pass `promtool check rules`. The text of every field is kept for `dbwatch rules export`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use super::promql::Expr;
use super::template::Template;

/// Every group of every rule file, in file order then group order.
#[derive(Debug, Default)]
pub struct RuleSet {
    pub groups: Vec<Group>,
}

impl RuleSet {
    pub fn alerting_rules(&self) -> impl Iterator<Item = (&Group, &AlertingRule)> {
        self.groups.iter().flat_map(|group| {
            group.rules.iter().filter_map(move |rule| match rule {
                Rule::Alerting(alerting) => Some((group, alerting)),
                Rule::Recording(_) => None,
            })
        })
    }

    pub fn rule_count(&self) -> usize {
        self.groups.iter().map(|group| group.rules.len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.groups.is_empty()
    }
}

/// Rules evaluated one after another with the same evaluation time.
#[derive(Debug)]
pub struct Group {
    /// The file the group was read from.
    pub file: PathBuf,
    pub name: String,
    /// `None`: the engine's default evaluation interval.
    pub interval: Option<Duration>,
    pub interval_text: Option<String>,
    /// Most alerts per alerting rule or series per recording rule; 0 for no limit.
    pub limit: usize,
    pub rules: Vec<Rule>,
}

#[derive(Debug)]
pub enum Rule {
    Alerting(AlertingRule),
    Recording(RecordingRule),
}

impl Rule {
    pub fn name(&self) -> &str {
        match self {
            Rule::Alerting(rule) => &rule.name,
            Rule::Recording(rule) => &rule.name,
        }
    }

    pub fn expr(&self) -> &Expr {
        match self {
            Rule::Alerting(rule) => &rule.expr,
            Rule::Recording(rule) => &rule.expr,
        }
    }

    pub fn expr_text(&self) -> &str {
        match self {
            Rule::Alerting(rule) => &rule.expr_text,
            Rule::Recording(rule) => &rule.expr_text,
        }
    }
}

#[derive(Debug)]
pub struct AlertingRule {
    pub name: String,
    pub expr: Expr,
    pub expr_text: String,
    /// `for`: how long the expression must hold before the alert fires.
    pub hold: Duration,
    pub hold_text: Option<String>,
    pub keep_firing_for: Duration,
    pub keep_firing_for_text: Option<String>,
    /// Label templates, sorted by name.
    pub labels: BTreeMap<String, Template>,
    /// Annotation templates, sorted by name.
    pub annotations: BTreeMap<String, Template>,
}

#[derive(Debug)]
pub struct RecordingRule {
    /// The metric name the results are recorded under.
    pub name: String,
    pub expr: Expr,
    pub expr_text: String,
    /// Plain labels (recording rules do not template), sorted by name.
    pub labels: BTreeMap<String, String>,
}

/// Parses a Prometheus duration (`model.ParseDuration`): `0`, or units from largest to smallest, each at most
/// once, among `y w d h m s ms`, e.g. `1h30m`, `5m`, `500ms`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    const UNITS: [(&str, u64); 7] = [
        ("y", 365 * 24 * 3600 * 1000),
        ("w", 7 * 24 * 3600 * 1000),
        ("d", 24 * 3600 * 1000),
        ("h", 3600 * 1000),
        ("m", 60 * 1000),
        ("s", 1000),
        ("ms", 1),
    ];
    let invalid =
        || format!("not a valid duration string: {text:?} (write it like 30s, 5m, 1h30m or 1d)");
    if text == "0" {
        return Ok(Duration::ZERO);
    }
    if text.is_empty() {
        return Err(invalid());
    }
    let bytes = text.as_bytes();
    let mut position = 0;
    let mut next_unit = 0;
    let mut total: u64 = 0;
    while position < bytes.len() {
        let start = position;
        while position < bytes.len() && bytes[position].is_ascii_digit() {
            position += 1;
        }
        if position == start {
            return Err(invalid());
        }
        let number: u64 = text[start..position].parse().map_err(|_| invalid())?;
        let unit_start = position;
        while position < bytes.len() && bytes[position].is_ascii_alphabetic() {
            position += 1;
        }
        let unit = &text[unit_start..position];
        let Some(offset) = UNITS[next_unit..]
            .iter()
            .position(|(name, _)| *name == unit)
        else {
            return Err(invalid());
        };
        let index = next_unit + offset;
        next_unit = index + 1;
        total = number
            .checked_mul(UNITS[index].1)
            .and_then(|millis| total.checked_add(millis))
            .ok_or_else(invalid)?;
    }
    Ok(Duration::from_millis(total))
}

/// Formats a duration the way Prometheus prints `model.Duration`: `1h30m`, `5m`, `0s`.
pub fn format_duration(duration: Duration) -> String {
    let mut millis = u64::try_from(duration.as_millis()).unwrap_or(u64::MAX);
    if millis == 0 {
        return "0s".to_owned();
    }
    let mut out = String::new();
    for (unit, size) in [
        ("y", 365 * 24 * 3600 * 1000u64),
        ("w", 7 * 24 * 3600 * 1000),
        ("d", 24 * 3600 * 1000),
        ("h", 3600 * 1000),
        ("m", 60 * 1000),
        ("s", 1000),
        ("ms", 1),
    ] {
        if millis >= size {
            out.push_str(&format!("{}{unit}", millis / size));
            millis %= size;
        }
    }
    out
}

/// Milliseconds of a duration as the evaluator's signed time unit.
pub fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_follow_prometheus() {
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("1d"), Ok(Duration::from_secs(86400)));
        assert_eq!(parse_duration("1s500ms"), Ok(Duration::from_millis(1500)));
        assert!(parse_duration("30m1h").is_err());
        assert!(parse_duration("5").is_err());
        assert!(parse_duration("1.5h").is_err());
        assert!(parse_duration("-5m").is_err());
        assert!(parse_duration("").is_err());
        assert_eq!(format_duration(Duration::from_secs(5400)), "1h30m");
        assert_eq!(format_duration(Duration::ZERO), "0s");
    }
}
