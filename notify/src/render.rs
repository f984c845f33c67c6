//! What every integration's message is made of: one group's notification ([`Notice`]) and the helpers the
//! built-in renderings share (titles, times, fingerprints, escaping, truncation). Each integration renders
//! its own message in its module under `integrations/`, kept within its destination's limits so that a large
//! group is summarised ("+N more") rather than rejected.
//!
//! The built-in rendering cannot fail, and it is what a field gets when the routing file sets no template
//! for it. A field that is templated (`template.rs`, [`crate::template::TemplatedField`]) is rendered over
//! Alertmanager's template data ([`Notice`] is its [`TemplateInput`]); when its template fails the field
//! falls back to the built-in text, so no template bug can drop a notification.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::{Duration, UNIX_EPOCH};

use sha2::{Digest, Sha256};

use super::store::AlertRecord;
use super::template::{self, DataParts, TemplateInput, Templating};

/// One group's notification as every integration renders it.
#[derive(Debug, Clone)]
pub struct Notice<'a> {
    pub receiver: &'a str,
    pub group_key: &'a str,
    pub group_labels: &'a BTreeMap<String, String>,
    pub firing: Vec<AlertRecord>,
    pub resolved: Vec<AlertRecord>,
    pub external_url: &'a str,
    /// Unix milliseconds.
    pub now: i64,
    /// When the group's episode started (its first notification): the email thread root.
    pub episode: i64,
    /// No notification of this episode went to this integration before: the email starts the thread.
    pub first_of_episode: bool,
    /// The template data (built once, when a templated field first needs it) and the fields whose template
    /// failed; `Templating::default()` when building a notice.
    pub templating: Templating,
}

impl TemplateInput for Notice<'_> {
    fn templating(&self) -> &Templating {
        &self.templating
    }

    fn template_data(&self) -> dbwatch_template::Value {
        template::data(DataParts {
            receiver: self.receiver,
            status: self.status(),
            alerts: self.alerts(),
            group_labels: self.group_labels,
            common_labels: &self.common_labels(),
            common_annotations: &self.common_annotations(),
            external_url: self.external_url,
        })
    }
}

impl Notice<'_> {
    pub fn is_firing(&self) -> bool {
        !self.firing.is_empty()
    }

    pub fn status(&self) -> &'static str {
        if self.is_firing() {
            "firing"
        } else {
            "resolved"
        }
    }

    pub fn alerts(&self) -> impl Iterator<Item = &AlertRecord> {
        self.firing.iter().chain(&self.resolved)
    }

    /// `[FIRING:2] high_latency (cluster="analytics")`, Alertmanager's default title.
    pub fn title(&self) -> String {
        let mut title = if self.is_firing() {
            format!("[FIRING:{}]", self.firing.len())
        } else {
            "[RESOLVED]".to_owned()
        };
        let alertname = self
            .group_labels
            .get("alertname")
            .cloned()
            .or_else(|| common(self.alerts().map(|alert| &alert.labels)).remove("alertname"));
        if let Some(name) = alertname {
            let _ = write!(title, " {name}");
        }
        let rest: Vec<String> = self
            .group_labels
            .iter()
            .filter(|(name, _)| name.as_str() != "alertname")
            .map(|(name, value)| format!("{name}={value:?}"))
            .collect();
        if !rest.is_empty() {
            let _ = write!(title, " ({})", rest.join(", "));
        }
        title
    }

    pub fn common_labels(&self) -> BTreeMap<String, String> {
        common(self.alerts().map(|alert| &alert.labels))
    }

    pub fn common_annotations(&self) -> BTreeMap<String, String> {
        common(self.alerts().map(|alert| &alert.annotations))
    }
}

/// The entries every map shares.
fn common<'a>(
    mut maps: impl Iterator<Item = &'a BTreeMap<String, String>>,
) -> BTreeMap<String, String> {
    let Some(first) = maps.next() else {
        return BTreeMap::new();
    };
    let mut out = first.clone();
    for map in maps {
        out.retain(|key, value| map.get(key) == Some(value));
    }
    out
}

/// At most `max` characters, the last replaced by an ellipsis when cut.
pub fn truncate(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_owned();
    }
    let mut out: String = text.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// The last millisecond humantime can format (9999-12-31T23:59:59.999Z); past it its `Display` fails, and
/// `to_string` would panic on a time from a hand-edited or foreign state file.
const RFC3339_MAX_MILLIS: i64 = 253_402_300_799_999;

pub fn rfc3339(millis: i64) -> String {
    let millis = millis.clamp(0, RFC3339_MAX_MILLIS);
    let time = UNIX_EPOCH + Duration::from_millis(u64::try_from(millis).unwrap_or(0));
    humantime::format_rfc3339_millis(time).to_string()
}

/// A short stable hash of the group key, for PagerDuty's `dedup_key` and email threading.
pub fn group_hash(group_key: &str) -> String {
    let digest = Sha256::digest(group_key.as_bytes());
    digest
        .iter()
        .fold(String::with_capacity(64), |mut out, byte| {
            let _ = write!(out, "{byte:02x}");
            out
        })
}

/// A stable identity of an alert: a hash of its sorted labels.
pub fn fingerprint(labels: &BTreeMap<String, String>) -> String {
    let mut hasher = Sha256::new();
    for (name, value) in labels {
        hasher.update(name.as_bytes());
        hasher.update([0xff]);
        hasher.update(value.as_bytes());
        hasher.update([0xfe]);
    }
    hasher.finalize()[..8]
        .iter()
        .fold(String::with_capacity(16), |mut out, byte| {
            let _ = write!(out, "{byte:02x}");
            out
        })
}

/// Text for a Slack mrkdwn field, with the three characters Slack reserves for its control sequences escaped
/// (`&amp;`, `&lt;`, `&gt;`, as Slack's "Formatting text" page asks). Without it a database named `<!channel>`
/// pings the whole channel and one named `<https://evil.example|Runbook>` shows as a disguised link: label and
/// annotation values come from rule templates over database-controlled names.
pub fn slack_escape(text: &str) -> String {
    crate::html::escape_markup(text)
}

/// `url` when it is a plain http(s) URL that can stand in a link (`<url|text>` in Slack, `href` elsewhere):
/// no whitespace and none of `<`, `>`, `|`, `"`, which would end the link or start another, and at most 2 KiB.
pub fn link_url(url: &str) -> Option<&str> {
    let url = url.trim();
    let scheme_ok =
        (url.starts_with("https://") || url.starts_with("http://")) && url.len() <= 2048;
    let clean = !url
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '<' | '>' | '|' | '"'));
    (scheme_ok && clean).then_some(url)
}

pub fn alert_line(alert: &AlertRecord) -> String {
    let name = alert
        .labels
        .get("alertname")
        .map(String::as_str)
        .unwrap_or("alert");
    let text = alert
        .annotations
        .get("summary")
        .or_else(|| alert.annotations.get("description"))
        .map(String::as_str)
        .unwrap_or("");
    let labels: Vec<String> = alert
        .labels
        .iter()
        .filter(|(label, _)| label.as_str() != "alertname")
        .map(|(label, value)| format!("{label}={value}"))
        .collect();
    format!("{name}: {text} [{}]", labels.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_persisted_time_formats() {
        assert_eq!(rfc3339(i64::MAX), "9999-12-31T23:59:59.999Z");
        assert_eq!(rfc3339(i64::MIN), "1970-01-01T00:00:00.000Z");
    }

    #[test]
    fn truncation_counts_characters_not_bytes() {
        assert_eq!(truncate("ééé", 2), "é…");
        assert_eq!(truncate("abc", 3), "abc");
    }
}
