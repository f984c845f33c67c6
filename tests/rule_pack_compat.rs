//! A team's existing alert rules load unchanged: every file of a widely used community pack
//! (`tests/fixtures/awesome-prometheus-alerts/`, 112 files, 954 alerts, all accepted by `promtool check rules`)
//! must load in dbwatch.
//!
//! A rule dbwatch still refuses is counted by the reason it gives; [`REFUSED_ALERTS`] is the exact number of
//! alerts refused today, so the test fails both when more are refused and when fewer are (then lower it).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;

use dbwatch_rules as rules;

/// Alerts of the pack dbwatch refuses today (31 before it evaluated `histogram_quantile`, `count_values` and
/// subqueries).
const REFUSED_ALERTS: usize = 0;

fn pack() -> Vec<PathBuf> {
    let dir =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/awesome-prometheus-alerts");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|error| panic!("{}: {error}", dir.display()))
        .map(|entry| entry.expect("entry").path())
        .filter(|path| path.extension().is_some_and(|extension| extension == "yml"))
        .collect();
    files.sort();
    assert_eq!(files.len(), 112, "the pack's 112 rule files");
    files
}

fn promtool_accepts(files: &[PathBuf]) {
    let output = Command::new("promtool")
        .args(["check", "rules"])
        .args(files)
        .output()
        .expect("promtool runs (Debian's prometheus package, installed by `make test`)");
    assert!(
        output.status.success(),
        "promtool check rules refuses the pack:\n{}",
        String::from_utf8_lossy(&output.stdout)
    );
}

/// The reason a rule was refused, without the rule's own text: the construct it names.
fn reason(message: &str) -> String {
    let mut parts = message.splitn(3, ": ");
    let kind = parts.next().unwrap_or(message);
    let construct = parts.next().unwrap_or("");
    format!("{kind}: {construct}").chars().take(100).collect()
}

#[test]
fn a_community_rule_pack_loads_unchanged() {
    let files = pack();
    promtool_accepts(&files);
    let total_alerts: usize = files
        .iter()
        .map(|file| {
            std::fs::read_to_string(file)
                .expect("read rule file")
                .lines()
                .filter(|line| line.trim_start().starts_with("- alert:"))
                .count()
        })
        .sum();
    assert_eq!(total_alerts, 954);

    let mut refused_alerts = 0;
    let mut by_reason: BTreeMap<String, usize> = BTreeMap::new();
    for file in &files {
        if let Err(errors) = rules::load_rule_files(std::slice::from_ref(file)) {
            for error in &errors.0 {
                if error
                    .rule
                    .as_deref()
                    .is_some_and(|rule| rule.starts_with("alert"))
                {
                    refused_alerts += 1;
                }
                *by_reason.entry(reason(&error.message)).or_default() += 1;
            }
        }
    }
    let mut reasons: Vec<(usize, String)> = by_reason
        .into_iter()
        .map(|(reason, count)| (count, reason))
        .collect();
    reasons.sort_by(|a, b| b.cmp(a));
    let listed: Vec<String> = reasons
        .iter()
        .map(|(count, reason)| format!("  {count:4}  {reason}"))
        .collect();
    eprintln!(
        "community pack: {} of {total_alerts} alerts load, {refused_alerts} refused",
        total_alerts - refused_alerts
    );
    assert_eq!(
        refused_alerts,
        REFUSED_ALERTS,
        "alerts refused, by reason:\n{}",
        listed.join("\n")
    );
}
