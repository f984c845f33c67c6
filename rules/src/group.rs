//! One evaluation of a rule group: every rule's expression in order, recording rules' results written as
//! series, alerting rules' results handed to the alert state machine ([`crate::alerting`]), and everything
//! written into the history with staleness markers for what disappeared, so that later rules of the group
//! read what earlier ones wrote at the same instant.

use crate::alerting::{
    evaluate_alerting, AlertTransition, AlertingEval, EvalEnv, RuleState, SeriesNames,
};
use crate::eval::cache::EvalCache;
use crate::eval::evaluate;
use crate::history::{stale_nan, History};
use crate::labels::{FxHashSet, Metric};
use crate::model::{Group, RecordingRule, Rule};
use crate::value::Sample;

/// What a group keeps between evaluations: one state per rule, in rule order.
#[derive(Debug, Default)]
pub struct GroupState {
    pub rules: Vec<RuleState>,
    /// Whether the series the group writes are also handed out ([`GroupOutcome::exported`]), recorded or not
    /// in the history: what remote_write sends.
    pub export: bool,
}

impl GroupState {
    pub fn for_group(group: &Group) -> GroupState {
        GroupState {
            rules: group.rules.iter().map(|_| RuleState::default()).collect(),
            export: false,
        }
    }
}

/// A rule evaluation that failed; the rule's alerts keep their state.
#[derive(Debug, Clone, PartialEq)]
pub struct RuleFailure {
    pub rule: String,
    pub message: String,
}

#[derive(Debug, Default)]
pub struct GroupOutcome {
    pub transitions: Vec<AlertTransition>,
    pub failures: Vec<RuleFailure>,
    pub template_errors: u64,
    /// Series written (recording results, `ALERTS`, `ALERTS_FOR_STATE`).
    pub samples: usize,
    /// With [`GroupState::export`]: every series the group wrote at this instant, staleness markers of those
    /// it stopped writing included, as a Prometheus server appends them to its storage.
    pub exported: Vec<(Metric, f64)>,
}

/// Evaluates every rule of the group, in order, at `t` (Unix milliseconds).
pub fn evaluate_group(
    group: &Group,
    state: &mut GroupState,
    history: &mut History,
    cache: &mut EvalCache,
    t: i64,
    env: &EvalEnv,
) -> GroupOutcome {
    let mut outcome = GroupOutcome::default();
    let export = state.export;
    if state.rules.len() != group.rules.len() {
        *state = GroupState::for_group(group);
        state.export = export;
    }
    for (rule, rule_state) in group.rules.iter().zip(&mut state.rules) {
        rule_state.last_evaluation = Some(t);
        let result = evaluate(rule.expr(), history, cache, t).map_err(|error| error.to_string());
        let written = result.and_then(|value| {
            let vector = value.into_vector(t);
            match rule {
                Rule::Alerting(alerting) => evaluate_alerting(
                    alerting,
                    rule_state,
                    vector,
                    AlertingEval {
                        group: &group.name,
                        t,
                        limit: group.limit,
                        env,
                        names: SeriesNames::new(alerting, history, export),
                        transitions: &mut outcome.transitions,
                        template_errors: &mut outcome.template_errors,
                    },
                ),
                // Checked and counted against the limit even when no rule reads what it records.
                Rule::Recording(recording) => {
                    record(recording, vector, group.limit).map(|written| {
                        if export || history.keeps(&recording.name) {
                            written
                        } else {
                            Vec::new()
                        }
                    })
                }
            }
        });
        let written = match written {
            Ok(written) => written,
            Err(message) => {
                tracing::warn!(group = %group.name, rule = %rule.name(), error = %message, "rule evaluation failed");
                rule_state.last_error = Some(message.clone());
                outcome.failures.push(RuleFailure {
                    rule: rule.name().to_owned(),
                    message,
                });
                continue;
            }
        };
        rule_state.last_error = None;
        let mut returned = FxHashSet::default();
        for (metric, value) in written {
            let appended = history.append(&metric, t, value);
            if appended {
                outcome.samples += 1;
            }
            if export {
                outcome.exported.push((metric.clone(), value));
            }
            if appended || export {
                returned.insert(metric);
            }
        }
        for metric in &rule_state.written {
            if !returned.contains(metric) {
                history.append(metric, t, stale_nan());
                if export {
                    outcome.exported.push((metric.clone(), stale_nan()));
                }
            }
        }
        rule_state.written = returned;
    }
    outcome
}

fn record(
    rule: &RecordingRule,
    vector: Vec<Sample>,
    limit: usize,
) -> Result<Vec<(Metric, f64)>, String> {
    let name: std::sync::Arc<str> = std::sync::Arc::from(rule.name.as_str());
    let mut out = Vec::with_capacity(vector.len());
    let mut seen = FxHashSet::default();
    for sample in vector {
        let metric = if rule.labels.is_empty() {
            sample.metric.with_name(std::sync::Arc::clone(&name))
        } else {
            let mut builder = sample
                .metric
                .with_name(std::sync::Arc::clone(&name))
                .builder();
            for (label, value) in &rule.labels {
                builder.set(label, value);
            }
            builder.build()
        };
        if !seen.insert(metric.clone()) {
            return Err(
                "vector contains metrics with the same labelset after applying rule labels"
                    .to_owned(),
            );
        }
        out.push((metric, sample.value));
    }
    if limit > 0 && out.len() > limit {
        return Err(format!(
            "exceeded limit of {limit} with {} series",
            out.len()
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alerting::AlertState;
    use crate::history::NameFilter;
    use crate::labels::ALERT_NAME;
    use crate::load::parse_rule_file;
    use std::path::Path;

    const MINUTE: i64 = 60_000;

    fn group(text: &str) -> Group {
        let mut groups = parse_rule_file(Path::new("test.yml"), text).expect("valid rules");
        groups.remove(0)
    }

    fn firing(state: &GroupState) -> Vec<(String, AlertState)> {
        let mut out: Vec<_> = state.rules[0]
            .alerts
            .values()
            .map(|alert| (alert.labels.to_string(), alert.state))
            .collect();
        out.sort();
        out
    }

    #[test]
    fn an_alert_goes_pending_fires_keeps_firing_and_resolves() {
        let group = group(
            "groups:\n  - name: g\n    rules:\n      - alert: lag\n        expr: lag > 300\n        for: 2m\n        keep_firing_for: 2m\n        labels:\n          severity: warning\n        annotations:\n          summary: \"{{ $labels.target }} lags {{ $value }}s\"\n",
        );
        let mut state = GroupState::for_group(&group);
        let mut history = History::new(NameFilter::All, None);
        let mut cache = EvalCache::default();
        let metric = Metric::from_pairs([("__name__", "lag"), ("target", "a")]);
        let env = EvalEnv::default();
        let mut transitions = Vec::new();
        // Values per minute: above the threshold (and growing) for 0..=4, then back to normal.
        for minute in 0..=10 {
            let value = if minute <= 4 {
                400.0 + minute as f64
            } else {
                10.0
            };
            history.append(&metric, minute * MINUTE, value);
            let outcome = evaluate_group(
                &group,
                &mut state,
                &mut history,
                &mut cache,
                minute * MINUTE,
                &env,
            );
            assert!(outcome.failures.is_empty(), "{:?}", outcome.failures);
            for transition in outcome.transitions {
                transitions.push((minute, transition.from, transition.to));
            }
            // The annotations follow the value at every evaluation while the alert is active.
            let summary = state.rules[0]
                .alerts
                .values()
                .map(|alert| alert.annotations["summary"].clone())
                .next();
            let latest = 400 + minute.min(4);
            assert_eq!(
                summary,
                Some(format!("a lags {latest}s")),
                "minute {minute}"
            );
            match minute {
                0 | 1 => assert_eq!(firing(&state)[0].1, AlertState::Pending),
                2..=6 => assert_eq!(firing(&state)[0].1, AlertState::Firing, "minute {minute}"),
                7..=10 => assert_eq!(firing(&state)[0].1, AlertState::Inactive, "minute {minute}"),
                _ => {}
            }
        }
        assert_eq!(
            transitions,
            vec![
                (0, AlertState::Inactive, AlertState::Pending),
                (2, AlertState::Pending, AlertState::Firing),
                (7, AlertState::Firing, AlertState::Inactive),
            ]
        );
        let alert = state.rules[0]
            .alerts
            .values()
            .next()
            .expect("kept after resolving");
        assert_eq!(alert.annotations["summary"], "a lags 404s");
        assert_eq!(
            alert.labels.to_string(),
            "{alertname=\"lag\", severity=\"warning\", target=\"a\"}"
        );
    }

    #[test]
    fn an_exporting_group_hands_out_what_it_wrote_and_marks_what_it_stopped_writing_stale() {
        let group = group("groups:\n  - name: g\n    rules:\n      - record: fleet:down:count\n        expr: count(db_up == 0)\n      - alert: down\n        expr: db_up == 0\n");
        let mut state = GroupState::for_group(&group);
        state.export = true;
        // The history keeps only what the rules select: neither the recording nor ALERTS.
        let mut names = FxHashSet::default();
        names.insert(std::sync::Arc::from("db_up"));
        let mut history = History::new(
            NameFilter::Only {
                names,
                patterns: Vec::new(),
            },
            None,
        );
        let mut cache = EvalCache::default();
        let metric = Metric::from_pairs([("__name__", "db_up"), ("target", "a")]);
        let exported = |outcome: &GroupOutcome| {
            let mut out: Vec<String> = outcome
                .exported
                .iter()
                .map(|(metric, value)| {
                    let value = if value.to_bits() == stale_nan().to_bits() {
                        "stale".to_owned()
                    } else {
                        value.to_string()
                    };
                    format!("{metric} {value}")
                })
                .collect();
            out.sort();
            out
        };
        history.append(&metric, 0, 0.0);
        let outcome = evaluate_group(
            &group,
            &mut state,
            &mut history,
            &mut cache,
            0,
            &EvalEnv::default(),
        );
        assert_eq!(
            exported(&outcome),
            [
                "{__name__=\"ALERTS\", alertname=\"down\", alertstate=\"firing\", target=\"a\"} 1",
                "{__name__=\"ALERTS_FOR_STATE\", alertname=\"down\", target=\"a\"} 0",
                "{__name__=\"fleet:down:count\"} 1",
            ]
        );
        history.append(&metric, MINUTE, 1.0);
        let outcome = evaluate_group(
            &group,
            &mut state,
            &mut history,
            &mut cache,
            MINUTE,
            &EvalEnv::default(),
        );
        assert_eq!(
            exported(&outcome),
            [
                "{__name__=\"ALERTS\", alertname=\"down\", alertstate=\"firing\", target=\"a\"} stale",
                "{__name__=\"ALERTS_FOR_STATE\", alertname=\"down\", target=\"a\"} stale",
                "{__name__=\"fleet:down:count\"} stale",
            ]
        );
        // Not exporting: the same group hands out nothing.
        let mut quiet = GroupState::for_group(&group);
        let outcome = evaluate_group(
            &group,
            &mut quiet,
            &mut history,
            &mut cache,
            2 * MINUTE,
            &EvalEnv::default(),
        );
        assert!(outcome.exported.is_empty());
    }

    #[test]
    fn a_pending_alert_that_clears_is_dropped() {
        let group = group("groups:\n  - name: g\n    rules:\n      - alert: up\n        expr: db_up == 0\n        for: 5m\n");
        let mut state = GroupState::for_group(&group);
        let mut history = History::new(NameFilter::All, None);
        let mut cache = EvalCache::default();
        let metric = Metric::from_pairs([("__name__", "db_up"), ("target", "a")]);
        history.append(&metric, 0, 0.0);
        evaluate_group(
            &group,
            &mut state,
            &mut history,
            &mut cache,
            0,
            &EvalEnv::default(),
        );
        history.append(&metric, MINUTE, 1.0);
        let outcome = evaluate_group(
            &group,
            &mut state,
            &mut history,
            &mut cache,
            MINUTE,
            &EvalEnv::default(),
        );
        assert!(state.rules[0].alerts.is_empty());
        assert_eq!(outcome.transitions.len(), 1);
        assert_eq!(outcome.transitions[0].to, AlertState::Inactive);
        assert!(outcome.transitions[0].fired_at.is_none());
    }

    #[test]
    fn alerts_series_are_written_and_go_stale() {
        let group = group(
            "groups:\n  - name: g\n    rules:\n      - alert: down\n        expr: db_up == 0\n",
        );
        let mut state = GroupState::for_group(&group);
        let mut history = History::new(NameFilter::All, None);
        let mut cache = EvalCache::default();
        let metric = Metric::from_pairs([("__name__", "db_up"), ("target", "a")]);
        history.append(&metric, 0, 0.0);
        evaluate_group(
            &group,
            &mut state,
            &mut history,
            &mut cache,
            0,
            &EvalEnv::default(),
        );
        let query = |history: &History, at: i64| {
            let expr = crate::promql::compile("ALERTS").expect("valid");
            crate::eval::evaluate(&expr, history, &mut EvalCache::default(), at)
                .expect("evaluates")
                .into_vector(at)
        };
        let alerts = query(&history, 0);
        assert_eq!(alerts.len(), 1);
        assert_eq!(alerts[0].metric.get("alertstate"), Some("firing"));
        history.append(&metric, MINUTE, 1.0);
        evaluate_group(
            &group,
            &mut state,
            &mut history,
            &mut cache,
            MINUTE,
            &EvalEnv::default(),
        );
        assert!(query(&history, MINUTE).is_empty());
    }

    #[test]
    fn alert_series_no_rule_selects_are_not_stored_but_the_alerts_are_kept() {
        let group = group(
            "groups:\n  - name: g\n    rules:\n      - alert: down\n        expr: db_up == 0\n        labels:\n          team: '{{ $labels.target }}-db'\n",
        );
        let selectors = [crate::promql::compile("db_up").expect("valid")];
        let filter = NameFilter::for_selectors(selectors.iter().filter_map(|expr| match expr {
            crate::promql::Expr::Vector(selector) => Some(selector),
            _ => None,
        }));
        let mut state = GroupState::for_group(&group);
        let mut history = History::new(filter, None);
        let mut cache = EvalCache::default();
        history.append(
            &Metric::from_pairs([("__name__", "db_up"), ("target", "a")]),
            0,
            0.0,
        );
        let outcome = evaluate_group(
            &group,
            &mut state,
            &mut history,
            &mut cache,
            0,
            &EvalEnv::default(),
        );
        assert_eq!(history.stats().series, 1, "only db_up is stored");
        assert_eq!(outcome.samples, 0);
        assert_eq!(outcome.transitions.len(), 1);
        let alert = state.rules[0].alerts.values().next().expect("one alert");
        assert_eq!(alert.state, AlertState::Firing);
        assert_eq!(alert.labels.get("team"), Some("a-db"));
        assert_eq!(alert.labels.get(ALERT_NAME), Some("down"));
    }

    #[test]
    fn a_template_error_keeps_the_alert_with_the_raw_text() {
        let group = group(
            "groups:\n  - name: g\n    rules:\n      - alert: a\n        expr: x > 0\n        annotations:\n          summary: \"{{ $labels.target | humanize }}\"\n",
        );
        let mut state = GroupState::for_group(&group);
        let mut history = History::new(NameFilter::All, None);
        let mut cache = EvalCache::default();
        history.append(
            &Metric::from_pairs([("__name__", "x"), ("target", "pg")]),
            0,
            1.0,
        );
        let outcome = evaluate_group(
            &group,
            &mut state,
            &mut history,
            &mut cache,
            0,
            &EvalEnv::default(),
        );
        assert_eq!(outcome.template_errors, 1);
        let alert = state.rules[0].alerts.values().next().expect("alert kept");
        assert_eq!(
            alert.annotations["summary"],
            "{{ $labels.target | humanize }}"
        );
        assert_eq!(alert.state, AlertState::Firing);
    }

    #[test]
    fn recording_rules_write_series_that_later_rules_read() {
        let group = group(
            "groups:\n  - name: g\n    rules:\n      - record: target:x:sum\n        expr: sum by (target) (x)\n        labels:\n          source: rule\n      - alert: big\n        expr: target:x:sum > 5\n",
        );
        let mut state = GroupState::for_group(&group);
        let mut history = History::new(NameFilter::All, None);
        let mut cache = EvalCache::default();
        history.append(
            &Metric::from_pairs([("__name__", "x"), ("target", "a"), ("i", "1")]),
            0,
            4.0,
        );
        history.append(
            &Metric::from_pairs([("__name__", "x"), ("target", "a"), ("i", "2")]),
            0,
            4.0,
        );
        evaluate_group(
            &group,
            &mut state,
            &mut history,
            &mut cache,
            0,
            &EvalEnv::default(),
        );
        assert_eq!(state.rules[1].alerts.len(), 1);
        let alert = state.rules[1].alerts.values().next().expect("alert");
        assert_eq!(
            alert.labels.to_string(),
            "{alertname=\"big\", source=\"rule\", target=\"a\"}"
        );
        assert_eq!(alert.value, 8.0);
    }

    #[test]
    fn a_selection_shared_by_rules_sees_what_a_recording_rule_wrote_at_the_same_instant() {
        // The first alert reads target:x:sum before the recording rule writes it, the third after: the
        // selection shared within the instant must not hand the third rule the first one's empty result.
        let group = group(
            "groups:\n  - name: g\n    rules:\n      - alert: early\n        expr: target:x:sum > 5\n      - record: target:x:sum\n        expr: sum by (target) (x)\n      - alert: late\n        expr: target:x:sum > 5\n      - alert: rate_early\n        expr: rate(x[1m]) > 0\n",
        );
        let mut state = GroupState::for_group(&group);
        let mut history = History::new(NameFilter::All, None);
        let mut cache = EvalCache::default();
        let x = Metric::from_pairs([("__name__", "x"), ("target", "a")]);
        history.append(&x, 0, 4.0);
        history.append(&x, 30_000, 9.0);
        evaluate_group(
            &group,
            &mut state,
            &mut history,
            &mut cache,
            30_000,
            &EvalEnv::default(),
        );
        assert_eq!(state.rules[0].alerts.len(), 0);
        assert_eq!(state.rules[2].alerts.len(), 1);
        assert_eq!(state.rules[3].alerts.len(), 1);
        // A new sample at the same instant (a late poll merged in) changes what later rules select.
        history.append(
            &Metric::from_pairs([("__name__", "x"), ("target", "b")]),
            30_000,
            7.0,
        );
        evaluate_group(
            &group,
            &mut state,
            &mut history,
            &mut cache,
            30_000,
            &EvalEnv::default(),
        );
        assert_eq!(state.rules[2].alerts.len(), 2);
    }

    #[test]
    fn evaluation_errors_keep_the_state() {
        let group =
            group("groups:\n  - name: g\n    rules:\n      - alert: a\n        expr: x + on() y\n");
        let mut state = GroupState::for_group(&group);
        let mut history = History::new(NameFilter::All, None);
        let mut cache = EvalCache::default();
        history.append(&Metric::from_pairs([("__name__", "x"), ("i", "1")]), 0, 1.0);
        history.append(&Metric::from_pairs([("__name__", "y"), ("i", "1")]), 0, 1.0);
        history.append(&Metric::from_pairs([("__name__", "y"), ("i", "2")]), 0, 1.0);
        let outcome = evaluate_group(
            &group,
            &mut state,
            &mut history,
            &mut cache,
            0,
            &EvalEnv::default(),
        );
        assert_eq!(outcome.failures.len(), 1);
        assert!(
            outcome.failures[0].message.contains("many-to-many"),
            "{:?}",
            outcome.failures
        );
        assert!(state.rules[0].last_error.is_some());
    }
}
