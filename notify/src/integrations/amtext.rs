//! The texts Alertmanager's default templates (`template/default.tmpl`) produce, built in: the `__subject` title
//! and the `__text_alert_list` blocks, in the exact shapes its receivers' defaults arrange them, so that a team's
//! Discord, Telegram, Opsgenie, … messages read the same after the switch. Values are passed through the
//! receiver's escaping (HTML for Telegram's default parse mode) because labels come from database names.

use std::fmt::Write as _;

use crate::render::Notice;
use crate::store::AlertRecord;

/// Text as given: for receivers that show plain text.
pub fn verbatim(text: &str) -> String {
    text.to_owned()
}

/// `[FIRING:2] <group label values> (<other common label values>)`: Alertmanager's `__subject`, its trailing
/// space included when there are no other common labels.
pub fn subject(notice: &Notice<'_>) -> String {
    let mut subject = if notice.is_firing() {
        format!("[FIRING:{}]", notice.firing.len())
    } else {
        "[RESOLVED]".to_owned()
    };
    let values: Vec<&str> = notice.group_labels.values().map(String::as_str).collect();
    let _ = write!(subject, " {} ", values.join(" "));
    let common = notice.common_labels();
    if common.len() > notice.group_labels.len() {
        let rest: Vec<&str> = common
            .iter()
            .filter(|(name, _)| !notice.group_labels.contains_key(*name))
            .map(|(_, value)| value.as_str())
            .collect();
        let _ = write!(subject, "({})", rest.join(" "));
    }
    subject
}

/// The common annotations' values, sorted by name, joined by spaces (`.CommonAnnotations.SortedPairs.Values`).
pub fn common_annotation_values(notice: &Notice<'_>) -> String {
    let common = notice.common_annotations();
    common
        .values()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .join(" ")
}

/// `__text_alert_list`: each alert's labels, annotations and source.
pub fn alert_list(alerts: &[AlertRecord], source: &str, escape: fn(&str) -> String) -> String {
    let mut out = String::new();
    for alert in alerts {
        out.push_str("Labels:\n");
        for (name, value) in &alert.labels {
            let _ = writeln!(out, " - {} = {}", escape(name), escape(value));
        }
        out.push_str("Annotations:\n");
        for (name, value) in &alert.annotations {
            let _ = writeln!(out, " - {} = {}", escape(name), escape(value));
        }
        let _ = writeln!(out, "Source: {}", escape(source));
    }
    out
}

/// `__text_alert_list_markdown` (Alertmanager 0.27 on): blank-line separated, two-space indented items.
pub fn alert_list_markdown(alerts: &[AlertRecord], source: &str) -> String {
    let mut out = String::new();
    for alert in alerts {
        out.push_str("\nLabels:\n");
        for (name, value) in &alert.labels {
            let _ = writeln!(out, "  - {name} = {value}");
        }
        out.push_str("\nAnnotations:\n");
        for (name, value) in &alert.annotations {
            let _ = writeln!(out, "  - {name} = {value}");
        }
        let _ = writeln!(out, "\nSource: {source}");
    }
    out
}

/// The firing and resolved blocks as `discord.default.message` and `telegram.default.message` lay them out.
pub fn alert_blocks(notice: &Notice<'_>, escape: fn(&str) -> String) -> String {
    let mut out = String::from("\n");
    if !notice.firing.is_empty() {
        let _ = write!(
            out,
            "\nAlerts Firing:\n{}\n",
            alert_list(&notice.firing, notice.external_url, escape)
        );
    }
    out.push('\n');
    if !notice.resolved.is_empty() {
        let _ = write!(
            out,
            "\nAlerts Resolved:\n{}\n",
            alert_list(&notice.resolved, notice.external_url, escape)
        );
    }
    out.push('\n');
    out
}

/// The common annotations, then the blocks: `webex.default.message`, `pushover.default.message` and
/// `sns.default.message`.
pub fn annotated_blocks(notice: &Notice<'_>, escape: fn(&str) -> String) -> String {
    let mut out = escape(&common_annotation_values(notice));
    out.push('\n');
    if !notice.firing.is_empty() {
        let _ = write!(
            out,
            "\nAlerts Firing:\n{}\n",
            alert_list(&notice.firing, notice.external_url, escape)
        );
    }
    out.push('\n');
    if !notice.resolved.is_empty() {
        let _ = write!(
            out,
            "\nAlerts Resolved:\n{}\n",
            alert_list(&notice.resolved, notice.external_url, escape)
        );
    }
    out.push('\n');
    out
}

/// The compact form with trimmed blank lines: `opsgenie.default.description` and
/// `victorops.default.state_message`.
pub fn description(notice: &Notice<'_>) -> String {
    let mut out = common_annotation_values(notice);
    out.push('\n');
    if !notice.firing.is_empty() {
        out.push_str("Alerts Firing:\n");
        out.push_str(&alert_list(&notice.firing, notice.external_url, verbatim));
    }
    out.push('\n');
    if !notice.resolved.is_empty() {
        out.push_str("Alerts Resolved:\n");
        out.push_str(&alert_list(&notice.resolved, notice.external_url, verbatim));
    }
    out
}

/// `msteams.default.text` and `msteamsv2.default.text`: Markdown headings over the Markdown lists.
pub fn markdown_blocks(notice: &Notice<'_>) -> String {
    let mut out = String::from("\n");
    if !notice.firing.is_empty() {
        let _ = write!(
            out,
            "\n# Alerts Firing:\n{}\n",
            alert_list_markdown(&notice.firing, notice.external_url)
        );
    }
    out.push('\n');
    if !notice.resolved.is_empty() {
        let _ = write!(
            out,
            "\n# Alerts Resolved:\n{}\n",
            alert_list_markdown(&notice.resolved, notice.external_url)
        );
    }
    out.push('\n');
    out
}

/// At most `max` bytes of `text`, cut on a character boundary (Webex counts bytes).
pub fn truncate_bytes(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_owned()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn alert(pairs: &[(&str, &str)], resolved: bool) -> AlertRecord {
        let labels: BTreeMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        AlertRecord {
            fingerprint: crate::render::fingerprint(&labels),
            labels,
            annotations: [("summary".to_owned(), "lagging".to_owned())].into(),
            starts_at: 1_700_000_000_000,
            ends_at: resolved.then_some(1_700_000_100_000),
        }
    }

    #[test]
    fn the_subject_and_blocks_are_alertmanagers_default_text() {
        let group: BTreeMap<String, String> = [("alertname".to_owned(), "lag".to_owned())].into();
        let notice = Notice {
            receiver: "r",
            group_key: "{}:{alertname=\"lag\"}",
            group_labels: &group,
            firing: vec![alert(&[("alertname", "lag"), ("db", "a")], false)],
            resolved: vec![alert(&[("alertname", "lag"), ("db", "b")], true)],
            external_url: "http://dbw",
            now: 1_700_000_000_000,
            episode: 1_700_000_000_000,
            first_of_episode: true,
            templating: Default::default(),
        };
        // `db` differs between the two alerts, so it is not a common label: nothing in parentheses.
        assert_eq!(subject(&notice), "[FIRING:1] lag ");
        let list = "Labels:\n - alertname = lag\n - db = a\nAnnotations:\n - summary = lagging\nSource: http://dbw\n";
        let resolved_list = list.replace("db = a", "db = b");
        assert_eq!(
            alert_blocks(&notice, verbatim),
            format!("\n\nAlerts Firing:\n{list}\n\n\nAlerts Resolved:\n{resolved_list}\n\n")
        );
        assert_eq!(
            description(&notice),
            format!("lagging\nAlerts Firing:\n{list}\nAlerts Resolved:\n{resolved_list}")
        );
        let one = Notice {
            resolved: Vec::new(),
            ..notice.clone()
        };
        assert_eq!(subject(&one), "[FIRING:1] lag (a)");
        assert_eq!(
            annotated_blocks(&one, verbatim),
            format!("lagging\n\nAlerts Firing:\n{list}\n\n\n")
        );
        let resolved = Notice {
            firing: Vec::new(),
            ..notice
        };
        assert_eq!(subject(&resolved), "[RESOLVED] lag (b)");
    }

    #[test]
    fn bytes_are_cut_on_a_character_boundary() {
        assert_eq!(truncate_bytes("aé", 2), "a");
        assert_eq!(truncate_bytes("abc", 3), "abc");
    }
}
