//! The notifier's durable state: the notification log (what each integration of each group was last told) and
//! the outbox (rendered notifications not yet delivered), in one file written atomically.
//!
//! Both live in one document so that deciding to notify and queueing the notification are one atomic write:
//! after a crash either both happened or neither did, so a restart neither loses a notification nor queues it
//! twice. The write is [`dbwatch_storage::write_atomic`]: unique temp file (0600), fsync, rename, fsync of the
//! folder. A file that cannot be parsed is moved aside by the storage layer and the notifier starts with an
//! empty log and outbox rather than not at all. The state is small (one entry per active
//! group and integration, plus undelivered notifications), so rewriting it whole costs less than a database
//! would, and the file stays readable with `jq` while debugging. Secrets never enter it: URLs and routing keys
//! are added at send time from the configuration.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub const STATE_FILE: &str = "notifications.json";
/// Dead letters kept for inspection; older ones are only in the log.
const DEAD_LETTERS_KEPT: usize = 100;

/// One alert as a notification shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertRecord {
    pub fingerprint: String,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    /// Unix milliseconds.
    pub starts_at: i64,
    /// Unix milliseconds; set once resolved.
    pub ends_at: Option<i64>,
}

/// What one integration of one group was last told.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogEntry {
    pub group_key: String,
    pub receiver: String,
    pub integration: usize,
    pub group_labels: BTreeMap<String, String>,
    /// The firing alerts of the last notification, kept whole so a resolve can be sent for an alert that has
    /// vanished from the engine's view (a restart after its resolved retention, for example).
    pub firing: Vec<AlertRecord>,
    pub resolved: Vec<String>,
    pub sent_at: i64,
    /// When the episode's first notification went out: the email thread's root.
    pub episode: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Payload {
    /// Slack's incoming-webhook body.
    Slack { body: serde_json::Value },
    /// A PagerDuty event without its `routing_key`, which is added at send time.
    PagerDuty { event: serde_json::Value },
    Email {
        subject: String,
        text: String,
        html: String,
        message_id: String,
        in_reply_to: Option<String>,
        /// Recipients, sender and extra headers as rendered (they may be templates); absent in entries queued
        /// before templating, which take them from the configuration.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        to: Option<Vec<String>>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        from: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        headers: Option<BTreeMap<String, String>>,
    },
    /// Alertmanager's webhook body.
    Webhook { body: serde_json::Value },
    /// A Discord webhook message (embeds).
    Discord { body: serde_json::Value },
    /// A Telegram `sendMessage` body; the bot token is in the URL, added at send time.
    Telegram { body: serde_json::Value },
    /// A Webex `messages` body.
    Webex { body: serde_json::Value },
    /// An Opsgenie alert: created (`close: false`, the create body) or closed (the close body), by alias; the
    /// API key is added at send time.
    #[serde(rename = "opsgenie")]
    OpsGenie {
        alias: String,
        close: bool,
        body: serde_json::Value,
    },
    /// A Pushover message without its `token` and `user`, which are added at send time.
    Pushover { body: serde_json::Value },
    /// A VictorOps (Splunk On-Call) REST event; the API and routing keys are in the URL, added at send time.
    #[serde(rename = "victorops")]
    VictorOps { body: serde_json::Value },
    /// A Microsoft Teams connector MessageCard.
    #[serde(rename = "msteams")]
    MsTeams { body: serde_json::Value },
    /// A Microsoft Teams Workflows message with an Adaptive Card.
    #[serde(rename = "msteamsv2")]
    MsTeamsV2 { body: serde_json::Value },
    /// An SNS `Publish` request's parameters, unsigned: the signature is made at send time.
    Sns { params: Vec<(String, String)> },
}

/// A rendered notification waiting for delivery.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutboxEntry {
    pub id: u64,
    pub receiver: String,
    pub integration: usize,
    pub integration_kind: String,
    pub group_key: String,
    pub payload: Payload,
    pub created_at: i64,
    pub attempts: u32,
    /// Unix milliseconds before which the entry is not tried again.
    pub not_before: i64,
    pub last_error: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeadLetter {
    pub entry: OutboxEntry,
    pub reason: String,
    pub at: i64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct State {
    pub next_id: u64,
    /// Keyed by [`log_key`].
    pub log: BTreeMap<String, LogEntry>,
    /// In enqueue order, which is the delivery order within a group.
    pub outbox: Vec<OutboxEntry>,
    pub dead_letters: Vec<DeadLetter>,
}

impl State {
    pub fn enqueue(&mut self, mut entry: OutboxEntry) {
        self.next_id += 1;
        entry.id = self.next_id;
        self.outbox.push(entry);
    }

    pub fn take(&mut self, id: u64) -> Option<OutboxEntry> {
        let index = self.outbox.iter().position(|entry| entry.id == id)?;
        Some(self.outbox.remove(index))
    }

    pub fn dead_letter(&mut self, entry: OutboxEntry, reason: String, at: i64) {
        self.dead_letters.push(DeadLetter { entry, reason, at });
        let excess = self.dead_letters.len().saturating_sub(DEAD_LETTERS_KEPT);
        self.dead_letters.drain(..excess);
    }
}

pub fn log_key(group_key: &str, receiver: &str, integration: usize) -> String {
    format!("{receiver}\u{1f}{integration}\u{1f}{group_key}")
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot read notifier state {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write notifier state {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The state saved in `dir`, or an empty one when there is none yet or it was corrupt (then moved aside).
pub fn load(dir: &Path) -> Result<State, StoreError> {
    Ok(read_json(dir, STATE_FILE)?.unwrap_or_default())
}

/// Replaces the saved state atomically and durably.
pub fn save(dir: &Path, state: &State) -> Result<(), StoreError> {
    write_atomically(dir, STATE_FILE, state)
}

/// Writes `value` as JSON to `dir/name` through [`dbwatch_storage::write_atomic`], so a crash leaves either the
/// old file or the new one, never a torn one, and two writers never share a temp file.
pub fn write_atomically<T: Serialize>(dir: &Path, name: &str, value: &T) -> Result<(), StoreError> {
    let write_error = |source| StoreError::Write {
        path: dir.join(name),
        source,
    };
    let bytes =
        serde_json::to_vec(value).map_err(|error| write_error(std::io::Error::other(error)))?;
    dbwatch_storage::write_atomic(dir, name, &bytes).map_err(write_error)
}

/// The JSON in `dir/name`; `None` when the file does not exist, or when it is not valid JSON of that shape:
/// then it has been moved aside to `name.corrupt-<time>`, logged and counted. Only an unreadable file (a
/// permission or I/O error, not its contents) is an error, so that it is never overwritten unread.
pub fn read_json<T: for<'de> Deserialize<'de>>(
    dir: &Path,
    name: &str,
) -> Result<Option<T>, StoreError> {
    dbwatch_storage::load(dir, name, |bytes| serde_json::from_slice::<T>(bytes)).map_err(|source| {
        StoreError::Read {
            path: dir.join(name),
            source,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saved_state_reads_back_and_ids_grow() {
        let dir = tempfile::tempdir().expect("temp dir");
        assert_eq!(load(dir.path()).expect("empty"), State::default());
        let mut state = State::default();
        for _ in 0..2 {
            state.enqueue(OutboxEntry {
                id: 0,
                receiver: "r".into(),
                integration: 0,
                integration_kind: "webhook".into(),
                group_key: "g".into(),
                payload: Payload::Webhook {
                    body: serde_json::json!({"x": 1}),
                },
                created_at: 1,
                attempts: 0,
                not_before: 0,
                last_error: None,
            });
        }
        save(dir.path(), &state).expect("save");
        let loaded = load(dir.path()).expect("load");
        assert_eq!(loaded, state);
        assert_eq!(
            loaded.outbox.iter().map(|e| e.id).collect::<Vec<_>>(),
            [1, 2]
        );
    }

    #[test]
    fn a_truncated_state_is_moved_aside_and_the_notifier_starts_empty() {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut state = State::default();
        state.log.insert(
            "k".into(),
            LogEntry {
                group_key: "g".into(),
                receiver: "r".into(),
                integration: 0,
                group_labels: BTreeMap::new(),
                firing: Vec::new(),
                resolved: Vec::new(),
                sent_at: 1,
                episode: 1,
            },
        );
        save(dir.path(), &state).expect("save");
        let bytes = std::fs::read(dir.path().join(STATE_FILE)).expect("read");
        std::fs::write(dir.path().join(STATE_FILE), &bytes[..bytes.len() / 2]).expect("truncate");
        assert_eq!(load(dir.path()).expect("starts"), State::default());
        let kept: Vec<String> = std::fs::read_dir(dir.path())
            .expect("read dir")
            .filter_map(|entry| entry.ok())
            .map(|entry| entry.file_name().to_string_lossy().into_owned())
            .filter(|name| name.starts_with("notifications.json.corrupt-"))
            .collect();
        assert_eq!(kept.len(), 1, "{kept:?}");
        assert_eq!(
            std::fs::read(dir.path().join(&kept[0])).expect("kept"),
            &bytes[..bytes.len() / 2]
        );
    }
}
