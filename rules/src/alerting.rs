//! One evaluation of a rule group: recording rules write series, alerting rules move their alerts through the
//! Prometheus 2.42 state machine (`rules/alerting.go`), and both write their output, `ALERTS` and
//! `ALERTS_FOR_STATE` included, into the history with staleness markers for what disappeared.
//!
//! An alert instance is identified by its labels: the result sample's labels without `__name__`, the rule's
//! templated labels on top, and `alertname`. A new instance is pending at the evaluation time; it fires once
//! it has been active for `for`; a firing instance missing from the result stays firing for `keep_firing_for`
//! and then resolves; a pending instance missing from the result is dropped. Resolved instances are kept 15
//! minutes, like Prometheus, so that a notifier can still see them.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::eval::{evaluate, Sample};
use super::history::{stale_nan, History};
use super::labels::{FxHashMap, FxHashSet, Label, Metric, ALERT_NAME};
use super::model::{millis, AlertingRule, Group, RecordingRule, Rule};
use super::template::{Template, TemplateData};

/// How long a resolved alert is kept (Prometheus' `resolvedRetention`).
pub const RESOLVED_RETENTION_MS: i64 = 15 * 60 * 1000;

pub const ALERTS_METRIC: &str = "ALERTS";
pub const ALERTS_FOR_STATE_METRIC: &str = "ALERTS_FOR_STATE";

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum AlertState {
    Inactive,
    Pending,
    Firing,
}

impl AlertState {
    pub fn as_str(self) -> &'static str {
        match self {
            AlertState::Inactive => "inactive",
            AlertState::Pending => "pending",
            AlertState::Firing => "firing",
        }
    }
}

/// One alert instance of one alerting rule.
#[derive(Debug, Clone, PartialEq)]
pub struct Alert {
    /// The instance's identity, `alertname` included, never `__name__`.
    pub labels: Metric,
    pub annotations: BTreeMap<String, String>,
    pub state: AlertState,
    /// Unix milliseconds of the evaluation that first saw the condition hold.
    pub active_at: i64,
    pub fired_at: Option<i64>,
    pub resolved_at: Option<i64>,
    pub keep_firing_since: Option<i64>,
    /// The expression's value at the last evaluation where the condition held.
    pub value: f64,
}

/// A change of an alert's state, as the notifier receives it.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertTransition {
    pub group: String,
    /// The alerting rule's name (the `alertname` label).
    pub alertname: String,
    /// Every label of the instance, `alertname` included.
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    pub from: AlertState,
    pub to: AlertState,
    pub value: f64,
    pub active_at: SystemTime,
    pub fired_at: Option<SystemTime>,
    pub resolved_at: Option<SystemTime>,
    /// The evaluation time at which the change happened.
    pub at: SystemTime,
}

/// What a rule keeps between evaluations.
#[derive(Debug, Default)]
pub struct RuleState {
    pub alerts: FxHashMap<Metric, Alert>,
    /// The series the rule wrote at its last successful evaluation, to mark stale when they disappear.
    pub written: FxHashSet<Metric>,
    pub last_error: Option<String>,
    pub last_evaluation: Option<i64>,
}

/// What a group keeps between evaluations: one state per rule, in rule order.
#[derive(Debug, Default)]
pub struct GroupState {
    pub rules: Vec<RuleState>,
}

impl GroupState {
    pub fn for_group(group: &Group) -> GroupState {
        GroupState {
            rules: group.rules.iter().map(|_| RuleState::default()).collect(),
        }
    }
}

/// Labels and URL shown to templates.
#[derive(Debug, Clone, Default)]
pub struct EvalEnv {
    pub external_labels: BTreeMap<String, String>,
    pub external_url: String,
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
}

/// Evaluates every rule of the group, in order, at `t` (Unix milliseconds).
pub fn evaluate_group(
    group: &Group,
    state: &mut GroupState,
    history: &mut History,
    t: i64,
    env: &EvalEnv,
) -> GroupOutcome {
    let mut outcome = GroupOutcome::default();
    if state.rules.len() != group.rules.len() {
        *state = GroupState::for_group(group);
    }
    for (rule, rule_state) in group.rules.iter().zip(&mut state.rules) {
        rule_state.last_evaluation = Some(t);
        let result = evaluate(rule.expr(), history, t).map_err(|error| error.to_string());
        let written = result.and_then(|value| {
            let vector = value.into_vector(t);
            match rule {
                Rule::Alerting(alerting) => evaluate_alerting(
                    alerting,
                    &group.name,
                    rule_state,
                    vector,
                    t,
                    group.limit,
                    env,
                    SeriesNames::new(alerting, history),
                    &mut outcome,
                ),
                // Checked and counted against the limit even when no rule reads what it records.
                Rule::Recording(recording) => {
                    record(recording, vector, group.limit).map(|written| {
                        if history.keeps(&recording.name) {
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
            if history.append(&metric, t, value) {
                outcome.samples += 1;
                returned.insert(metric);
            }
        }
        for metric in &rule_state.written {
            if !returned.contains(metric) {
                history.append(metric, t, stale_nan());
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

#[allow(clippy::too_many_arguments)]
fn evaluate_alerting(
    rule: &AlertingRule,
    group: &str,
    state: &mut RuleState,
    vector: Vec<Sample>,
    t: i64,
    limit: usize,
    env: &EvalEnv,
    names: SeriesNames,
    outcome: &mut GroupOutcome,
) -> Result<Vec<(Metric, f64)>, String> {
    let hold = millis(rule.hold);
    let keep_firing_for = millis(rule.keep_firing_for);

    // The result's alerts, checked in full before the state changes, so that an error leaves it as it was.
    // The expanded annotations of result `i` are `texts[i * per_result..]`, in the rule's order.
    let per_result = rule.annotations.len();
    let mut results = Vec::with_capacity(vector.len());
    let mut texts: Vec<String> = Vec::with_capacity(vector.len() * per_result);
    let mut in_result: FxHashSet<Metric> = FxHashSet::default();
    in_result.reserve(vector.len());
    for sample in vector {
        let data = TemplateData {
            labels: &sample.metric,
            external_labels: &env.external_labels,
            external_url: &env.external_url,
            value: sample.value,
        };
        let mut builder = sample.metric.builder();
        builder.del_name();
        for ((name, template), fixed) in rule.labels.iter().zip(&names.static_labels) {
            match fixed {
                Some((name, value)) => builder.set_arc(name, value),
                None => {
                    let value = expand(template, &data, &mut outcome.template_errors, &rule.name);
                    builder.set(name, &value)
                }
            };
        }
        builder.set_arc(&names.alertname_label, &names.alertname);
        let labels = builder.build();
        for template in rule.annotations.values() {
            texts.push(expand(
                template,
                &data,
                &mut outcome.template_errors,
                &rule.name,
            ));
        }
        if !in_result.insert(labels.clone()) {
            return Err(
                "vector contains metrics with the same labelset after applying alert labels"
                    .to_owned(),
            );
        }
        results.push((labels, sample.value));
    }

    // The state before this evaluation of each instance the result (re)starts; the others' is read below
    // before they change. Only new instances are listed, not every instance at every evaluation.
    let mut started: FxHashMap<Metric, AlertState> = FxHashMap::default();
    for (index, (labels, value)) in results.into_iter().enumerate() {
        let texts = &mut texts[index * per_result..(index + 1) * per_result];
        let previous = match state.alerts.get_mut(&labels) {
            Some(existing) if existing.state != AlertState::Inactive => {
                existing.value = value;
                set_annotations(&mut existing.annotations, &rule.annotations, texts);
                continue;
            }
            Some(existing) => existing.state,
            None => AlertState::Inactive,
        };
        let annotations = rule
            .annotations
            .keys()
            .cloned()
            .zip(texts.iter_mut().map(std::mem::take))
            .collect();
        started.insert(labels.clone(), previous);
        state.alerts.insert(
            labels.clone(),
            Alert {
                labels,
                annotations,
                state: AlertState::Pending,
                active_at: t,
                fired_at: None,
                resolved_at: None,
                keep_firing_since: None,
                value,
            },
        );
    }

    let mut active_or_pending = 0usize;
    let mut removed = Vec::new();
    let mut written = Vec::with_capacity(names.per_alert() * state.alerts.len());
    for (key, alert) in state.alerts.iter_mut() {
        let from = started.get(key).copied().unwrap_or(alert.state);
        let mut remove = false;
        let mut active = true;
        if !in_result.contains(key) {
            let mut keep_firing = false;
            if alert.state == AlertState::Firing && keep_firing_for > 0 {
                let since = *alert.keep_firing_since.get_or_insert(t);
                if t - since < keep_firing_for {
                    keep_firing = true;
                }
            }
            remove = alert.state == AlertState::Pending
                || alert
                    .resolved_at
                    .is_some_and(|resolved| t - resolved > RESOLVED_RETENTION_MS);
            if alert.state != AlertState::Inactive && !keep_firing {
                alert.state = AlertState::Inactive;
                alert.resolved_at = Some(t);
            }
            active = keep_firing;
        } else {
            alert.keep_firing_since = None;
        }
        if active {
            active_or_pending += 1;
            if alert.state == AlertState::Pending && t - alert.active_at >= hold {
                alert.state = AlertState::Firing;
                alert.fired_at = Some(t);
            }
            if names.keep_alerts {
                written.push((names.alerts_series(alert), 1.0));
            }
            if names.keep_for_state {
                written.push((
                    names.for_state_series(alert),
                    alert.active_at.div_euclid(1000) as f64,
                ));
            }
        }
        let to = if remove {
            AlertState::Inactive
        } else {
            alert.state
        };
        if from != to {
            outcome
                .transitions
                .push(transition(group, rule, alert, from, to, t));
        }
        if remove {
            removed.push(key.clone());
        }
    }
    for key in removed {
        state.alerts.remove(&key);
    }

    if limit > 0 && active_or_pending > limit {
        state.alerts.clear();
        return Err(format!(
            "exceeded limit of {limit} with {active_or_pending} alerts"
        ));
    }
    Ok(written)
}

/// Writes an alert's newly expanded annotations over its current ones. An alert has the same annotation names
/// at every evaluation, so the map is kept and only the texts that changed are replaced.
fn set_annotations(
    current: &mut BTreeMap<String, String>,
    templates: &BTreeMap<String, Template>,
    texts: &mut [String],
) {
    if !current.keys().eq(templates.keys()) {
        *current = templates
            .keys()
            .cloned()
            .zip(texts.iter_mut().map(std::mem::take))
            .collect();
        return;
    }
    for (value, text) in current.values_mut().zip(texts) {
        if value != text {
            std::mem::swap(value, text);
        }
    }
}

/// The label names and values of one rule's `ALERTS` and `ALERTS_FOR_STATE` series, made once per
/// evaluation rather than once per alert. A series no rule selects is not written to the history: only rules
/// read it there (`/metrics` shows `ALERTS` from the alerts themselves), and a storm would otherwise write two
/// series per alert at every evaluation.
struct SeriesNames {
    keep_alerts: bool,
    keep_for_state: bool,
    alerts: Arc<str>,
    for_state: Arc<str>,
    alertname_label: Arc<str>,
    alertname: Arc<str>,
    alertstate_label: Arc<str>,
    /// The rule's labels as written (templates unexpanded), under the alert's own.
    rule_labels: Vec<Label>,
    /// For each of the rule's labels in order, the label itself when its template has no actions: set as is
    /// on every alert, without expanding or copying it.
    static_labels: Vec<Option<Label>>,
}

impl SeriesNames {
    fn new(rule: &AlertingRule, history: &History) -> SeriesNames {
        SeriesNames {
            keep_alerts: history.keeps(ALERTS_METRIC),
            keep_for_state: history.keeps(ALERTS_FOR_STATE_METRIC),
            alerts: Arc::from(ALERTS_METRIC),
            for_state: Arc::from(ALERTS_FOR_STATE_METRIC),
            alertname_label: Arc::from(ALERT_NAME),
            alertname: Arc::from(rule.name.as_str()),
            alertstate_label: Arc::from("alertstate"),
            rule_labels: rule
                .labels
                .iter()
                .filter(|(_, template)| !template.source().is_empty())
                .map(|(name, template)| (Arc::from(name.as_str()), Arc::from(template.source())))
                .collect(),
            static_labels: rule
                .labels
                .iter()
                .map(|(name, template)| {
                    template
                        .is_static()
                        .then(|| (Arc::from(name.as_str()), Arc::from(template.source())))
                })
                .collect(),
        }
    }

    fn per_alert(&self) -> usize {
        usize::from(self.keep_alerts) + usize::from(self.keep_for_state)
    }

    /// `ALERTS{<rule labels as written, then the alert's>, alertname, alertstate}`.
    fn alerts_series(&self, alert: &Alert) -> Metric {
        let state: Arc<str> = Arc::from(alert.state.as_str());
        self.series(
            &self.alerts,
            alert,
            Some((Arc::clone(&self.alertstate_label), state)),
        )
    }

    /// `ALERTS_FOR_STATE{<labels>, alertname}`, whose value is when the alert became active.
    fn for_state_series(&self, alert: &Alert) -> Metric {
        self.series(&self.for_state, alert, None)
    }

    fn series(&self, name: &Arc<str>, alert: &Alert, extra: Option<Label>) -> Metric {
        let own = alert.labels.labels();
        let mut labels: Vec<Label> = Vec::with_capacity(own.len() + self.rule_labels.len() + 2);
        labels.extend(own.iter().cloned());
        for (label, value) in &self.rule_labels {
            if !own.iter().any(|(existing, _)| existing == label) {
                labels.push((Arc::clone(label), Arc::clone(value)));
            }
        }
        labels.retain(|(label, _)| {
            *label != self.alertname_label && extra.as_ref().is_none_or(|(extra, _)| label != extra)
        });
        labels.push((
            Arc::clone(&self.alertname_label),
            Arc::clone(&self.alertname),
        ));
        labels.extend(extra);
        labels.sort_by(|a, b| a.0.cmp(&b.0));
        Metric::from_sorted(Some(Arc::clone(name)), labels)
    }
}

fn expand(template: &Template, data: &TemplateData<'_>, errors: &mut u64, rule: &str) -> String {
    match template.expand(data) {
        Ok(text) => text,
        Err(error) => {
            *errors += 1;
            tracing::warn!(rule = %rule, error = %error, "expanding a template failed; using its raw text");
            template.source().to_owned()
        }
    }
}

fn transition(
    group: &str,
    rule: &AlertingRule,
    alert: &Alert,
    from: AlertState,
    to: AlertState,
    t: i64,
) -> AlertTransition {
    AlertTransition {
        group: group.to_owned(),
        alertname: rule.name.clone(),
        labels: alert.labels.to_map(),
        annotations: alert.annotations.clone(),
        from,
        to,
        value: alert.value,
        active_at: system_time(alert.active_at),
        fired_at: alert.fired_at.map(system_time),
        resolved_at: if to == AlertState::Inactive {
            Some(system_time(alert.resolved_at.unwrap_or(t)))
        } else {
            None
        },
        at: system_time(t),
    }
}

/// Unix milliseconds as a `SystemTime`.
pub fn system_time(millis: i64) -> SystemTime {
    if millis >= 0 {
        UNIX_EPOCH + Duration::from_millis(millis as u64)
    } else {
        UNIX_EPOCH - Duration::from_millis(millis.unsigned_abs())
    }
}

/// A `SystemTime` as Unix milliseconds.
pub fn unix_millis(time: SystemTime) -> i64 {
    match time.duration_since(UNIX_EPOCH) {
        Ok(since) => i64::try_from(since.as_millis()).unwrap_or(i64::MAX),
        Err(before) => -i64::try_from(before.duration().as_millis()).unwrap_or(i64::MAX),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::NameFilter;
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
            let outcome = evaluate_group(&group, &mut state, &mut history, minute * MINUTE, &env);
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
    fn a_pending_alert_that_clears_is_dropped() {
        let group = group("groups:\n  - name: g\n    rules:\n      - alert: up\n        expr: db_up == 0\n        for: 5m\n");
        let mut state = GroupState::for_group(&group);
        let mut history = History::new(NameFilter::All, None);
        let metric = Metric::from_pairs([("__name__", "db_up"), ("target", "a")]);
        history.append(&metric, 0, 0.0);
        evaluate_group(&group, &mut state, &mut history, 0, &EvalEnv::default());
        history.append(&metric, MINUTE, 1.0);
        let outcome = evaluate_group(
            &group,
            &mut state,
            &mut history,
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
        let metric = Metric::from_pairs([("__name__", "db_up"), ("target", "a")]);
        history.append(&metric, 0, 0.0);
        evaluate_group(&group, &mut state, &mut history, 0, &EvalEnv::default());
        let query = |history: &History, at: i64| {
            let expr = crate::promql::compile("ALERTS").expect("valid");
            crate::eval::evaluate(&expr, history, at)
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
        history.append(
            &Metric::from_pairs([("__name__", "db_up"), ("target", "a")]),
            0,
            0.0,
        );
        let outcome = evaluate_group(&group, &mut state, &mut history, 0, &EvalEnv::default());
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
        history.append(
            &Metric::from_pairs([("__name__", "x"), ("target", "pg")]),
            0,
            1.0,
        );
        let outcome = evaluate_group(&group, &mut state, &mut history, 0, &EvalEnv::default());
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
        evaluate_group(&group, &mut state, &mut history, 0, &EvalEnv::default());
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
        let x = Metric::from_pairs([("__name__", "x"), ("target", "a")]);
        history.append(&x, 0, 4.0);
        history.append(&x, 30_000, 9.0);
        evaluate_group(
            &group,
            &mut state,
            &mut history,
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
        history.append(&Metric::from_pairs([("__name__", "x"), ("i", "1")]), 0, 1.0);
        history.append(&Metric::from_pairs([("__name__", "y"), ("i", "1")]), 0, 1.0);
        history.append(&Metric::from_pairs([("__name__", "y"), ("i", "2")]), 0, 1.0);
        let outcome = evaluate_group(&group, &mut state, &mut history, 0, &EvalEnv::default());
        assert_eq!(outcome.failures.len(), 1);
        assert!(
            outcome.failures[0].message.contains("many-to-many"),
            "{:?}",
            outcome.failures
        );
        assert!(state.rules[0].last_error.is_some());
    }
}
