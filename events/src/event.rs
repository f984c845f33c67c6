//! What the history records: one [`Event`] per line of a segment, as JSON. Plain strings and maps only, so
//! that this crate stays below every crate that records into it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Bytes kept of any one free-text field (an annotation, a receiver's answer, a silence comment): a
/// template or a receiver cannot make one event, and so one line and one API answer, unbounded.
pub const MAX_TEXT_BYTES: usize = 2048;
/// Labels or annotations kept per event; beyond it the rest is dropped (the alert's own labels are bounded by
/// the rule, but a rule's labels come from a database's names).
pub const MAX_ENTRIES: usize = 64;

/// One recorded event: its place in the log, when it happened, and what happened.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Increases by one per event written, across restarts: the paging cursor.
    pub seq: u64,
    /// Unix milliseconds of the happening (the evaluation time for an alert transition).
    pub at: i64,
    #[serde(flatten)]
    pub body: Body,
}

/// The kinds of events, as the `kind` field and filter name them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Alert,
    Notification,
    Silence,
    Reload,
    Target,
}

impl Kind {
    pub const ALL: [Kind; 5] = [
        Kind::Alert,
        Kind::Notification,
        Kind::Silence,
        Kind::Reload,
        Kind::Target,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Alert => "alert",
            Kind::Notification => "notification",
            Kind::Silence => "silence",
            Kind::Reload => "reload",
            Kind::Target => "target",
        }
    }

    pub fn parse(text: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|kind| kind.as_str() == text)
    }
}

/// What happened.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Body {
    /// An alert instance changed state (`inactive`, `pending`, `firing`).
    Alert {
        alertname: String,
        group: String,
        from: String,
        to: String,
        /// Every label of the instance, `alertname` included.
        labels: BTreeMap<String, String>,
        annotations: BTreeMap<String, String>,
        /// The expression's value; `None` when it is not a finite number (JSON has no NaN).
        value: Option<f64>,
        /// Unix milliseconds the condition first held.
        active_at: i64,
    },
    /// One delivery attempt of one notification to one integration of a receiver, and its answer.
    Notification {
        receiver: String,
        /// The integration's type (`slack`, `pagerduty`, `email`, `webhook`).
        integration: String,
        /// Its place among the receiver's integrations.
        index: usize,
        group_key: String,
        /// The alerts the notification is about, as far as the notifier's log names them.
        alertnames: Vec<String>,
        targets: Vec<String>,
        /// 1 for the first attempt.
        attempt: u32,
        outcome: NotificationOutcome,
        /// The receiver's answer or the failure, as the integration reported it; `None` when delivered.
        answer: Option<String>,
        /// When the next attempt is due, for a retry.
        retry_in_ms: Option<u64>,
    },
    /// A silence was created, updated or expired.
    Silence {
        action: SilenceAction,
        id: String,
        /// The silence's author (`createdBy`), or who expired it when known.
        by: Option<String>,
        /// `name="value"`, `name=~"regex"`, as Alertmanager prints them.
        matchers: Vec<String>,
        comment: Option<String>,
        /// Unix milliseconds.
        ends_at: Option<i64>,
    },
    /// The configuration was reloaded, or a reload was refused.
    Reload {
        success: bool,
        /// `sighup` or `http`.
        trigger: String,
        /// The problem that refused it.
        error: Option<String>,
    },
    /// A target went up or down.
    Target {
        target: String,
        db: String,
        up: bool,
        /// The bounded kind of the failure when down (`connect`, `auth`, `timeout`…).
        error_kind: Option<String>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NotificationOutcome {
    Delivered,
    /// Failed; it will be tried again.
    Retry,
    /// Refused for good, or given up on: it left the outbox undelivered.
    DeadLettered,
}

impl NotificationOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            NotificationOutcome::Delivered => "delivered",
            NotificationOutcome::Retry => "retry",
            NotificationOutcome::DeadLettered => "dead_lettered",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SilenceAction {
    Created,
    Updated,
    Expired,
}

impl SilenceAction {
    pub fn as_str(self) -> &'static str {
        match self {
            SilenceAction::Created => "created",
            SilenceAction::Updated => "updated",
            SilenceAction::Expired => "expired",
        }
    }
}

impl Body {
    pub fn kind(&self) -> Kind {
        match self {
            Body::Alert { .. } => Kind::Alert,
            Body::Notification { .. } => Kind::Notification,
            Body::Silence { .. } => Kind::Silence,
            Body::Reload { .. } => Kind::Reload,
            Body::Target { .. } => Kind::Target,
        }
    }

    /// Whether the event concerns the alert named `alertname`.
    pub fn is_about_alert(&self, alertname: &str) -> bool {
        match self {
            Body::Alert {
                alertname: name, ..
            } => name == alertname,
            Body::Notification { alertnames, .. } => {
                alertnames.iter().any(|name| name == alertname)
            }
            Body::Silence { matchers, .. } => matchers
                .iter()
                .any(|matcher| matcher == &format!("alertname=\"{alertname}\"")),
            Body::Reload { .. } | Body::Target { .. } => false,
        }
    }

    /// Whether the event concerns the target named `target`.
    pub fn is_about_target(&self, target: &str) -> bool {
        match self {
            Body::Alert { labels, .. } => labels.get("target").is_some_and(|value| value == target),
            Body::Notification { targets, .. } => targets.iter().any(|name| name == target),
            Body::Target { target: name, .. } => name == target,
            Body::Silence { matchers, .. } => matchers
                .iter()
                .any(|matcher| matcher == &format!("target=\"{target}\"")),
            Body::Reload { .. } => false,
        }
    }

    /// Cuts every free-text field to [`MAX_TEXT_BYTES`] and every map and list to [`MAX_ENTRIES`], so that
    /// one event stays a few tens of KiB at most whatever a rule or a receiver produced.
    pub(crate) fn bound(&mut self) {
        fn text(value: &mut String) {
            if value.len() > MAX_TEXT_BYTES {
                let mut end = MAX_TEXT_BYTES;
                while !value.is_char_boundary(end) {
                    end -= 1;
                }
                value.truncate(end);
                value.push('…');
            }
        }
        fn map(values: &mut BTreeMap<String, String>) {
            while values.len() > MAX_ENTRIES {
                values.pop_last();
            }
            for value in values.values_mut() {
                text(value);
            }
        }
        fn list(values: &mut Vec<String>) {
            values.truncate(MAX_ENTRIES);
            values.iter_mut().for_each(text);
        }
        match self {
            Body::Alert {
                labels,
                annotations,
                value,
                ..
            } => {
                map(labels);
                map(annotations);
                *value = value.filter(|value| value.is_finite());
            }
            Body::Notification {
                alertnames,
                targets,
                answer,
                group_key,
                ..
            } => {
                list(alertnames);
                list(targets);
                answer.iter_mut().for_each(text);
                text(group_key);
            }
            Body::Silence {
                matchers,
                comment,
                by,
                ..
            } => {
                list(matchers);
                comment.iter_mut().for_each(text);
                by.iter_mut().for_each(text);
            }
            Body::Reload { error, .. } => error.iter_mut().for_each(text),
            Body::Target { .. } => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_one_flat_json_object_with_their_kind() {
        let event = Event {
            seq: 7,
            at: 1_700_000_000_000,
            body: Body::Target {
                target: "pg".into(),
                db: "postgres".into(),
                up: false,
                error_kind: Some("connect".into()),
            },
        };
        let line = serde_json::to_string(&event).expect("serialises");
        assert_eq!(
            line,
            r#"{"seq":7,"at":1700000000000,"kind":"target","target":"pg","db":"postgres","up":false,"error_kind":"connect"}"#
        );
        let back: Event = serde_json::from_str(&line).expect("parses");
        assert_eq!(back, event);
    }

    #[test]
    fn bounding_cuts_long_text_on_a_char_boundary_and_drops_nan() {
        let mut body = Body::Alert {
            alertname: "a".into(),
            group: "g".into(),
            from: "pending".into(),
            to: "firing".into(),
            labels: (0..100).map(|i| (format!("l{i:03}"), "v".into())).collect(),
            annotations: [("summary".to_owned(), "é".repeat(MAX_TEXT_BYTES))].into(),
            value: Some(f64::NAN),
            active_at: 0,
        };
        body.bound();
        let Body::Alert {
            labels,
            annotations,
            value,
            ..
        } = body
        else {
            unreachable!("still an alert")
        };
        assert_eq!(labels.len(), MAX_ENTRIES);
        assert_eq!(labels.keys().last().map(String::as_str), Some("l063"));
        let summary = &annotations["summary"];
        assert!(summary.len() <= MAX_TEXT_BYTES + '…'.len_utf8());
        assert!(summary.ends_with('…'));
        assert_eq!(value, None);
    }
}
