//! The thresholds the sparklines mark, read from the alerting rules the daemon runs: every rule whose
//! expression is a plain `metric > number` (or `>=`, `<`, `<=`), as the seed's `high_latency`,
//! `connection_pool_exhausted` and `replication_lag` are. Rules of any other shape mark nothing; the page
//! never guesses a threshold.

use std::collections::BTreeMap;

use dbwatch_rules::model::Rule;
use dbwatch_rules::RuleSet;

#[derive(Debug, Clone, PartialEq)]
pub struct Threshold {
    pub alertname: String,
    pub op: &'static str,
    pub value: f64,
}

/// Thresholds by metric name; the first rule on a metric wins.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Thresholds {
    pub by_metric: BTreeMap<String, Threshold>,
}

impl Thresholds {
    pub fn from_rules(rules: &RuleSet) -> Thresholds {
        let mut by_metric = BTreeMap::new();
        for group in &rules.groups {
            for rule in &group.rules {
                let Rule::Alerting(alerting) = rule else {
                    continue;
                };
                if let Some((metric, op, value)) = parse(&alerting.expr_text) {
                    by_metric.entry(metric.to_owned()).or_insert(Threshold {
                        alertname: alerting.name.clone(),
                        op,
                        value,
                    });
                }
            }
        }
        Thresholds { by_metric }
    }

    pub fn get(&self, metric: &str) -> Option<&Threshold> {
        self.by_metric.get(metric)
    }
}

/// `name OP number` → its parts.
fn parse(expr: &str) -> Option<(&str, &'static str, f64)> {
    let expr = expr.trim();
    let end = expr
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
        .unwrap_or(expr.len());
    let (name, rest) = expr.split_at(end);
    if name.is_empty() || name.starts_with(|c: char| c.is_ascii_digit()) {
        return None;
    }
    let rest = rest.trim_start();
    let op = [">=", "<=", ">", "<"]
        .into_iter()
        .find(|op| rest.starts_with(op))?;
    let number: f64 = rest[op.len()..].trim().parse().ok()?;
    number.is_finite().then_some((name, op, number))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_comparisons_of_a_metric_with_a_number_are_thresholds() {
        assert_eq!(
            parse("db_query_latency_avg_seconds > 0.1"),
            Some(("db_query_latency_avg_seconds", ">", 0.1))
        );
        assert_eq!(parse(" x:y <= 3e2 "), Some(("x:y", "<=", 300.0)));
        for other in [
            "db_up == 0",
            "rate(x[5m]) > 1",
            "x{a=\"b\"} > 1",
            "x > y",
            "1 > 0",
            "x > NaN",
        ] {
            assert_eq!(parse(other), None, "{other}");
        }
    }

    #[test]
    fn the_shipped_fleet_rules_mark_the_seed_thresholds() {
        let rules = crate::engines::shipped_rules().expect("shipped rules");
        let thresholds = Thresholds::from_rules(&rules);
        let value = |metric: &str| thresholds.get(metric).map(|threshold| threshold.value);
        assert_eq!(value("db_query_latency_avg_seconds"), Some(0.1));
        assert_eq!(value("db_connections_utilization_ratio"), Some(0.9));
        assert_eq!(value("db_replication_lag_seconds"), Some(300.0));
    }
}
