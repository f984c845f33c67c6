//! The alert state machine of Prometheus 2.42 (`rules/alerting.go`): how one alerting rule's result moves its
//! alerts, and the `ALERTS` and `ALERTS_FOR_STATE` series that show them. [`crate::group`] evaluates the
//! rules and writes what they produce.
//!
//! An alert instance is identified by its labels: the result sample's labels without `__name__`, the rule's
//! templated labels on top, and `alertname`. A new instance is pending at the evaluation time; it fires once
//! it has been active for `for`; a firing instance missing from the result stays firing for `keep_firing_for`
//! and then resolves; a pending instance missing from the result is dropped. Resolved instances are kept 15
//! minutes, like Prometheus, so that a notifier can still see them.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::history::History;
use super::labels::{FxHashMap, FxHashSet, Label, Metric, ALERT_NAME};
use super::model::{millis, AlertingRule};
use super::template::{Template, TemplateData};
use super::value::Sample;

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

/// Labels and URL shown to templates.
#[derive(Debug, Clone, Default)]
pub struct EvalEnv {
    pub external_labels: BTreeMap<String, String>,
    pub external_url: String,
}

/// Where and when an alerting rule is evaluated, and where the changes it makes besides its state go.
pub(crate) struct AlertingEval<'a> {
    pub group: &'a str,
    pub t: i64,
    /// The group's `limit` (0: none).
    pub limit: usize,
    pub env: &'a EvalEnv,
    pub names: SeriesNames,
    pub transitions: &'a mut Vec<AlertTransition>,
    pub template_errors: &'a mut u64,
}

/// Moves the rule's alerts by the result `vector` of its expression; returns the `ALERTS` and
/// `ALERTS_FOR_STATE` samples to write. On an error the rule's state is left as it was, except for a broken
/// limit, which drops every alert as Prometheus does.
pub(crate) fn evaluate_alerting(
    rule: &AlertingRule,
    state: &mut RuleState,
    vector: Vec<Sample>,
    eval: AlertingEval<'_>,
) -> Result<Vec<(Metric, f64)>, String> {
    let AlertingEval {
        group,
        t,
        limit,
        env,
        names,
        transitions,
        template_errors,
    } = eval;
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
                    let value = expand(template, &data, template_errors, &rule.name);
                    builder.set(name, &value)
                }
            };
        }
        builder.set_arc(&names.alertname_label, &names.alertname);
        let labels = builder.build();
        for template in rule.annotations.values() {
            texts.push(expand(template, &data, template_errors, &rule.name));
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
            transitions.push(transition(group, rule, alert, from, to, t));
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
pub(crate) struct SeriesNames {
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
    /// With `export`, `ALERTS` and `ALERTS_FOR_STATE` are written whether or not a rule reads them.
    pub(crate) fn new(rule: &AlertingRule, history: &History, export: bool) -> SeriesNames {
        SeriesNames {
            keep_alerts: export || history.keeps(ALERTS_METRIC),
            keep_for_state: export || history.keeps(ALERTS_FOR_STATE_METRIC),
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
