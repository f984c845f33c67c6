//! Alert state across restarts: one JSON file in the state folder, written through [`crate::storage`]
//! (atomic and durable, mode 0600), read once at startup. A file that cannot be parsed, or that has another
//! format version, is moved aside by the storage layer (kept, logged, counted) and the engine starts afresh;
//! the notifier then never resolves what it told as firing on the strength of that fresh start (alerts with
//! `for` come back pending; see `notify::Notifier::reconcile`).
//!
//! Unlike Prometheus, which only restores the `for` progress from `ALERTS_FOR_STATE`, dbwatch keeps the whole
//! lifecycle of every instance, so a restart neither re-pages a firing alert nor loses its resolution:
//!
//! - a state older than the outage tolerance (1 hour) is ignored: too much may have happened;
//! - firing and resolved instances come back as they were; the first evaluation resolves a firing instance
//!   whose condition no longer holds, and the notifier gets that transition;
//! - pending instances follow Prometheus' `RestoreForState`: rules whose `for` is shorter than the grace
//!   period (10 minutes) start over; otherwise the time spent down does not count towards `for`, and an alert
//!   that was about to fire waits at least the grace period, so a restart never pages at once.
//!
//! Instances are matched to rules by group name, rule name and the rule's rank among rules of the same name in
//! the group, so editing a threshold keeps the state while renaming a rule drops it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::alerting::{Alert, AlertState, RuleState};
use super::group::GroupState;
use super::labels::Metric;
use super::model::{millis, AlertingRule, Rule, RuleSet};

pub const STATE_FILE: &str = "alerts.json";
const FORMAT_VERSION: u32 = 1;

/// How long an outage may last for the saved state to still apply (Prometheus' `--rules.alert.for-outage-tolerance`).
pub const OUTAGE_TOLERANCE_MS: i64 = 60 * 60 * 1000;
/// The least time a restored pending alert waits before firing (Prometheus' `--rules.alert.for-grace-period`).
pub const FOR_GRACE_PERIOD_MS: i64 = 10 * 60 * 1000;

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("cannot write alert state to {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot read alert state from {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StateFile {
    pub version: u32,
    /// When the state was written, Unix milliseconds.
    pub saved_at: i64,
    pub rules: Vec<RuleRecord>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleRecord {
    pub group: String,
    pub rule: String,
    /// The rule's rank among rules of the same name in the group.
    pub rank: usize,
    pub alerts: Vec<AlertRecord>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertRecord {
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    pub state: AlertState,
    pub active_at: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fired_at: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolved_at: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_firing_since: Option<i64>,
    /// As text, since JSON has no NaN.
    pub value: String,
}

/// What a restore did, for the log.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RestoreReport {
    pub restored: usize,
    pub dropped: usize,
    /// The whole file was older than the outage tolerance.
    pub expired: bool,
}

/// The state of every alerting rule, ready to write.
pub fn snapshot(rules: &RuleSet, states: &[GroupState], saved_at: i64) -> StateFile {
    let mut records = Vec::new();
    for (group, state) in rules.groups.iter().zip(states) {
        let mut ranks: BTreeMap<&str, usize> = BTreeMap::new();
        for (rule, rule_state) in group.rules.iter().zip(&state.rules) {
            let Rule::Alerting(alerting) = rule else {
                continue;
            };
            let rank = ranks.entry(alerting.name.as_str()).or_default();
            let current = *rank;
            *rank += 1;
            if rule_state.alerts.is_empty() {
                continue;
            }
            let mut alerts: Vec<AlertRecord> = rule_state
                .alerts
                .values()
                .map(|alert| AlertRecord {
                    labels: alert.labels.to_map(),
                    annotations: alert.annotations.clone(),
                    state: alert.state,
                    active_at: alert.active_at,
                    fired_at: alert.fired_at,
                    resolved_at: alert.resolved_at,
                    keep_firing_since: alert.keep_firing_since,
                    value: alert.value.to_string(),
                })
                .collect();
            alerts.sort_by(|a, b| a.labels.cmp(&b.labels));
            records.push(RuleRecord {
                group: group.name.clone(),
                rule: alerting.name.clone(),
                rank: current,
                alerts,
            });
        }
    }
    StateFile {
        version: FORMAT_VERSION,
        saved_at,
        rules: records,
    }
}

/// Writes the state file atomically and durably.
pub fn save(dir: &Path, state: &StateFile) -> Result<(), StateError> {
    let fail = |source| StateError::Write {
        path: dir.join(STATE_FILE),
        source,
    };
    let mut json =
        serde_json::to_vec_pretty(state).map_err(|error| fail(std::io::Error::other(error)))?;
    json.push(b'\n');
    dbwatch_storage::write_atomic(dir, STATE_FILE, &json).map_err(fail)
}

/// Reads the state file; `None` when there is none yet, or when it was corrupt and has been moved aside.
pub fn load(dir: &Path) -> Result<Option<StateFile>, StateError> {
    dbwatch_storage::load(dir, STATE_FILE, |bytes| {
        let state: StateFile = serde_json::from_slice(bytes).map_err(|error| error.to_string())?;
        if state.version != FORMAT_VERSION {
            return Err(format!(
                "format version {} is not {FORMAT_VERSION}",
                state.version
            ));
        }
        Ok(state)
    })
    .map_err(|source| StateError::Read {
        path: dir.join(STATE_FILE),
        source,
    })
}

/// Puts saved alerts back into the groups' states at startup time `now`.
pub fn restore(
    file: &StateFile,
    rules: &RuleSet,
    states: &mut [GroupState],
    now: i64,
) -> RestoreReport {
    let mut report = RestoreReport::default();
    let total: usize = file.rules.iter().map(|rule| rule.alerts.len()).sum();
    if now - file.saved_at > OUTAGE_TOLERANCE_MS {
        report.expired = true;
        report.dropped = total;
        return report;
    }
    let down_at = file.saved_at;
    for record in &file.rules {
        let Some((rule, rule_state)) = slot(record, rules, states) else {
            report.dropped += record.alerts.len();
            continue;
        };
        let hold = millis(rule.hold);
        for saved in &record.alerts {
            let mut alert = alert_of(saved);
            if alert.state == AlertState::Pending {
                if hold < FOR_GRACE_PERIOD_MS {
                    report.dropped += 1;
                    continue;
                }
                let spent = down_at - alert.active_at;
                let remaining = hold - spent;
                if remaining <= 0 {
                    // It would have fired while dbwatch was down: it fires at the next evaluation if still true.
                } else if remaining < FOR_GRACE_PERIOD_MS {
                    alert.active_at = now + FOR_GRACE_PERIOD_MS - hold;
                } else {
                    alert.active_at += now - down_at;
                }
            }
            rule_state.alerts.insert(alert.labels.clone(), alert);
            report.restored += 1;
        }
    }
    report
}

/// Carries the alert state of a running engine into a reloaded rule set, matching rules as [`restore`] does
/// (group name, rule name, rank among rules of that name): unlike a restart there was no outage, so pending
/// alerts keep their start time exactly and fire when they would have without the reload.
pub fn carry(file: &StateFile, rules: &RuleSet, states: &mut [GroupState]) -> RestoreReport {
    let mut report = RestoreReport::default();
    for record in &file.rules {
        let Some((_, rule_state)) = slot(record, rules, states) else {
            report.dropped += record.alerts.len();
            continue;
        };
        for saved in &record.alerts {
            let alert = alert_of(saved);
            rule_state.alerts.insert(alert.labels.clone(), alert);
            report.restored += 1;
        }
    }
    report
}

/// The rule (and its state) a saved record belongs to: the one identity rule of restarts and reloads.
fn slot<'a>(
    record: &RuleRecord,
    rules: &'a RuleSet,
    states: &'a mut [GroupState],
) -> Option<(&'a AlertingRule, &'a mut RuleState)> {
    rules
        .groups
        .iter()
        .zip(states.iter_mut())
        .find_map(|(group, state)| {
            if group.name != record.group {
                return None;
            }
            let mut rank = 0;
            for (rule, rule_state) in group.rules.iter().zip(state.rules.iter_mut()) {
                let Rule::Alerting(alerting) = rule else {
                    continue;
                };
                if alerting.name != record.rule {
                    continue;
                }
                if rank == record.rank {
                    return Some((alerting, rule_state));
                }
                rank += 1;
            }
            None
        })
}

fn alert_of(saved: &AlertRecord) -> Alert {
    Alert {
        labels: Metric::from_pairs(&saved.labels),
        annotations: saved.annotations.clone(),
        state: saved.state,
        active_at: saved.active_at,
        fired_at: saved.fired_at,
        resolved_at: saved.resolved_at,
        keep_firing_since: saved.keep_firing_since,
        value: saved.value.parse().unwrap_or(f64::NAN),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alerting::EvalEnv;
    use crate::eval::cache::EvalCache;
    use crate::group::evaluate_group;
    use crate::history::{History, NameFilter};
    use crate::load::parse_rule_file;

    const MINUTE: i64 = 60_000;

    fn rules() -> RuleSet {
        RuleSet {
            groups: parse_rule_file(
                Path::new("r.yml"),
                "groups:\n  - name: g\n    rules:\n      - alert: down\n        expr: db_up == 0\n        for: 20m\n      - alert: fast\n        expr: db_up == 0\n",
            )
            .expect("valid"),
        }
    }

    fn run(rules: &RuleSet, states: &mut [GroupState], history: &mut History, t: i64, up: f64) {
        history.append(
            &Metric::from_pairs([("__name__", "db_up"), ("target", "a")]),
            t,
            up,
        );
        for (group, state) in rules.groups.iter().zip(states.iter_mut()) {
            evaluate_group(
                group,
                state,
                history,
                &mut EvalCache::default(),
                t,
                &EvalEnv::default(),
            );
        }
    }

    #[test]
    fn state_survives_a_restart() {
        let rules = rules();
        let mut states: Vec<GroupState> = rules.groups.iter().map(GroupState::for_group).collect();
        let mut history = History::new(NameFilter::All, None);
        for minute in 0..=5 {
            run(&rules, &mut states, &mut history, minute * MINUTE, 0.0);
        }
        let saved = snapshot(&rules, &states, 5 * MINUTE);
        let dir = tempfile::tempdir().expect("temp dir");
        save(dir.path(), &saved).expect("saved");
        let loaded = load(dir.path()).expect("readable").expect("present");
        assert_eq!(loaded, saved);

        // Down 10 minutes: the pending alert had 15 of 20 minutes left, so it waits them again.
        let mut restored: Vec<GroupState> =
            rules.groups.iter().map(GroupState::for_group).collect();
        let report = restore(&loaded, &rules, &mut restored, 15 * MINUTE);
        assert_eq!(
            report,
            RestoreReport {
                restored: 2,
                dropped: 0,
                expired: false
            }
        );
        let pending = restored[0].rules[0]
            .alerts
            .values()
            .next()
            .expect("pending restored");
        assert_eq!(pending.state, AlertState::Pending);
        assert_eq!(pending.active_at, 10 * MINUTE);
        let firing = restored[0].rules[1]
            .alerts
            .values()
            .next()
            .expect("firing restored");
        assert_eq!(firing.state, AlertState::Firing);
        assert_eq!(firing.fired_at, Some(0));

        // The first evaluation after the restart sends no new firing transition.
        let mut history = History::new(NameFilter::All, None);
        history.append(
            &Metric::from_pairs([("__name__", "db_up"), ("target", "a")]),
            15 * MINUTE,
            0.0,
        );
        let outcome = evaluate_group(
            &rules.groups[0],
            &mut restored[0],
            &mut history,
            &mut EvalCache::default(),
            15 * MINUTE,
            &EvalEnv::default(),
        );
        assert!(outcome.transitions.is_empty(), "{:?}", outcome.transitions);
    }

    #[test]
    fn an_old_state_is_ignored() {
        let rules = rules();
        let file = StateFile {
            version: FORMAT_VERSION,
            saved_at: 0,
            rules: vec![RuleRecord {
                group: "g".into(),
                rule: "fast".into(),
                rank: 0,
                alerts: vec![AlertRecord {
                    labels: BTreeMap::from([("alertname".to_owned(), "fast".to_owned())]),
                    annotations: BTreeMap::new(),
                    state: AlertState::Firing,
                    active_at: 0,
                    fired_at: Some(0),
                    resolved_at: None,
                    keep_firing_since: None,
                    value: "NaN".into(),
                }],
            }],
        };
        let mut states: Vec<GroupState> = rules.groups.iter().map(GroupState::for_group).collect();
        let report = restore(&file, &rules, &mut states, OUTAGE_TOLERANCE_MS + 1);
        assert!(report.expired);
        assert!(states[0].rules[1].alerts.is_empty());
        let fresh = restore(&file, &rules, &mut states, MINUTE);
        assert_eq!(fresh.restored, 1);
        assert!(states[0].rules[1]
            .alerts
            .values()
            .next()
            .is_some_and(|alert| alert.value.is_nan()));
    }

    #[test]
    fn a_corrupt_or_foreign_file_is_moved_aside_and_the_state_starts_empty() {
        let dir = tempfile::tempdir().expect("temp dir");
        let aside = |dir: &Path| -> Vec<String> {
            let mut names: Vec<String> = std::fs::read_dir(dir)
                .expect("read dir")
                .filter_map(|entry| entry.ok())
                .map(|entry| entry.file_name().to_string_lossy().into_owned())
                .filter(|name| name.starts_with("alerts.json.corrupt-"))
                .collect();
            names.sort();
            names
        };
        std::fs::write(dir.path().join(STATE_FILE), b"{not json").expect("written");
        assert!(load(dir.path()).expect("no error").is_none());
        assert!(!dir.path().join(STATE_FILE).exists());
        let kept = aside(dir.path());
        assert_eq!(kept.len(), 1, "{kept:?}");
        assert_eq!(
            std::fs::read(dir.path().join(&kept[0])).expect("kept"),
            b"{not json"
        );

        let newer = serde_json::json!({"version": FORMAT_VERSION + 1, "saved_at": 0, "rules": []});
        std::fs::write(dir.path().join(STATE_FILE), newer.to_string()).expect("written");
        assert!(load(dir.path()).expect("no error").is_none());
        assert_eq!(aside(dir.path()).len(), 2);

        assert!(load(&dir.path().join("missing"))
            .expect("no error")
            .is_none());
    }

    #[test]
    fn the_saved_file_is_private() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().expect("temp dir");
        save(dir.path(), &snapshot(&rules(), &[], 0)).expect("saved");
        let mode = std::fs::metadata(dir.path().join(STATE_FILE))
            .expect("metadata")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}
