//! The shipped rules (`alerts/*.yml`) and their unit tests (`alerts/tests/*.yml`): every test file must pass in
//! both `promtool test rules` and `dbwatch rules test`, every shipped alert must be tested firing and not
//! firing, and the exported rules must pass `promtool check rules`.
//!
//! promtool is Debian's `prometheus` package (`/usr/bin/promtool`, 2.42); `PROMTOOL` overrides the path. These
//! tests fail, rather than skip, when it is missing: agreeing with promtool is the point.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use dbwatch::engines::shipped_rules as load_builtin;
use dbwatch_rules::model::Rule;
use dbwatch_rules::{export, load_rule_files, resolve_rule_files, run_tests, ExportFormat};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn promtool() -> PathBuf {
    let candidates = std::env::var_os("PROMTOOL")
        .map(PathBuf::from)
        .into_iter()
        .chain([PathBuf::from("/usr/bin/promtool")])
        .chain(std::env::var_os("PATH").into_iter().flat_map(|path| {
            std::env::split_paths(&path)
                .map(|dir| dir.join("promtool"))
                .collect::<Vec<_>>()
        }));
    for candidate in candidates {
        if candidate.is_file() {
            return candidate;
        }
    }
    panic!(
        "promtool not found: install Debian's prometheus package (`apt-get install prometheus`) or set PROMTOOL \
         to its path; the shipped rule tests must pass in promtool as well as in dbwatch"
    );
}

fn files(pattern: &str) -> Vec<PathBuf> {
    let found = resolve_rule_files(&[pattern.to_owned()], &root()).expect("valid pattern");
    assert!(!found.is_empty(), "no file matches {pattern}");
    found
}

fn rule_files() -> Vec<PathBuf> {
    files("alerts/*.yml")
}

fn test_files() -> Vec<PathBuf> {
    files("alerts/tests/*.yml")
}

fn run(command: &mut Command) -> (bool, String) {
    let output = command.output().expect("promtool runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

#[test]
fn every_rule_file_passes_promtool_check() {
    let (ok, output) = run(Command::new(promtool())
        .arg("check")
        .arg("rules")
        .args(rule_files()));
    assert!(ok, "promtool check rules failed:\n{output}");
}

#[test]
fn every_test_file_passes_in_promtool() {
    for file in test_files() {
        let (ok, output) = run(Command::new(promtool()).arg("test").arg("rules").arg(&file));
        assert!(
            ok,
            "promtool test rules {} failed:\n{output}",
            file.display()
        );
    }
}

#[test]
fn every_test_file_passes_in_dbwatch() {
    let report = run_tests(&test_files()).expect("test files given");
    assert!(report.passed(), "dbwatch rules test failed:\n{report}");
    assert_eq!(report.files.len(), test_files().len());
}

/// A wrong expectation must fail in both tools, with the same alert named.
#[test]
fn both_tools_fail_the_same_wrong_test() {
    let dir = tempfile::tempdir().expect("temp dir");
    let rules = root().join("alerts/fleet.yml");
    let wrong = format!(
        "rule_files: [{}]\nevaluation_interval: 1m\ntests:\n  - interval: 1m\n    input_series:\n      - series: 'db_up{{target=\"pg\", db=\"postgres\"}}'\n        values: '0x5'\n    alert_rule_test:\n      - eval_time: 5m\n        alertname: target_down\n        exp_alerts: []\n",
        rules.display()
    );
    let path = dir.path().join("wrong_test.yml");
    std::fs::write(&path, wrong).expect("written");
    let (ok, output) = run(Command::new(promtool()).arg("test").arg("rules").arg(&path));
    assert!(!ok, "promtool passed a wrong test:\n{output}");
    assert!(output.contains("alertname: target_down"), "{output}");
    let report = run_tests(&[path]).expect("runs");
    assert!(!report.passed());
    assert!(
        report.to_string().contains("alertname: target_down"),
        "{report}"
    );
}

/// Every shipped alert has a test where it fires and one where it does not.
#[test]
fn every_shipped_alert_is_tested_firing_and_not_firing() {
    let rules = load_rule_files(&rule_files()).unwrap_or_else(|errors| panic!("{errors}"));
    let alerts: BTreeSet<String> = rules
        .alerting_rules()
        .map(|(_, rule)| rule.name.clone())
        .collect();
    let mut coverage: BTreeMap<String, (bool, bool)> = BTreeMap::new();
    for file in test_files() {
        let text = std::fs::read_to_string(&file).expect("readable");
        let document: serde_yaml::Value = serde_yaml::from_str(&text).expect("valid YAML");
        for test in document["tests"].as_sequence().into_iter().flatten() {
            for case in test["alert_rule_test"].as_sequence().into_iter().flatten() {
                let name = case["alertname"].as_str().unwrap_or_default().to_owned();
                let fires = case["exp_alerts"]
                    .as_sequence()
                    .is_some_and(|alerts| !alerts.is_empty());
                let entry = coverage.entry(name).or_default();
                if fires {
                    entry.0 = true;
                } else {
                    entry.1 = true;
                }
            }
        }
    }
    for alert in &alerts {
        let (fires, quiet) = coverage.get(alert).copied().unwrap_or_default();
        assert!(fires, "no test in alerts/tests expects {alert} to fire");
        assert!(quiet, "no test in alerts/tests expects {alert} not to fire");
    }
    let unknown: Vec<&String> = coverage
        .keys()
        .filter(|name| !alerts.contains(*name))
        .collect();
    assert!(
        unknown.is_empty(),
        "tests name alerts no rule defines: {unknown:?}"
    );
}

/// The copy built into the binary is the `alerts/` folder.
#[test]
fn the_builtin_rules_are_the_alerts_folder() {
    let on_disk: BTreeSet<String> = rule_files()
        .iter()
        .map(|path| {
            path.file_name()
                .expect("a file")
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    let built_in: BTreeSet<String> = dbwatch::engines::rule_files()
        .iter()
        .map(|(name, _)| (*name).to_owned())
        .collect();
    if dbwatch::engines::all_compiled() {
        assert_eq!(
            on_disk, built_in,
            "every alerts/*.yml is the RULES of an engine at the seam (src/engines/), or fleet.yml"
        );
    } else {
        // A build without some engines ships their packs neither.
        assert!(built_in.is_subset(&on_disk), "{built_in:?}");
    }
    for (name, text) in dbwatch::engines::rule_files() {
        let disk = std::fs::read_to_string(root().join("alerts").join(name)).expect("readable");
        assert_eq!(&disk, text, "{name}");
    }
    load_builtin().unwrap_or_else(|errors| panic!("{errors}"));
}

#[test]
fn exported_rules_pass_promtool_check() {
    let rules = load_builtin().unwrap_or_else(|errors| panic!("{errors}"));
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("dbwatch-rules.yml");
    std::fs::write(
        &path,
        export(&rules, &ExportFormat::Prometheus).expect("exported"),
    )
    .expect("written");
    let (ok, output) = run(Command::new(promtool())
        .arg("check")
        .arg("rules")
        .arg(&path));
    assert!(ok, "promtool check rules on the export failed:\n{output}");
    assert!(
        output.contains(&format!("SUCCESS: {} rules found", rules.rule_count())),
        "{output}"
    );
}

/// A rule dbwatch cannot evaluate exactly is refused, naming the file, group, rule and construct.
#[test]
fn unsupported_promql_is_refused_at_load() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("bad.yml");
    std::fs::write(
        &path,
        "groups:\n  - name: custom\n    rules:\n      - alert: spiky\n        expr: histogram_count(rate(x_total[1m])) > 5\n",
    )
    .expect("written");
    let errors = load_rule_files(std::slice::from_ref(&path))
        .expect_err("refused")
        .to_string();
    assert!(
        errors.contains(&format!("{}:5:15", path.display())),
        "{errors}"
    );
    assert!(
        errors.contains("group \"custom\", alert \"spiky\""),
        "{errors}"
    );
    assert!(
        errors.contains(
            "unsupported PromQL construct: the function `histogram_count` (native histograms"
        ),
        "{errors}"
    );
}

/// Every metric a shipped rule selects is one the collectors or the daemon can expose. A build ships the rule
/// packs of the engines it holds, so this holds in any build.
#[test]
fn shipped_rules_use_only_existing_metrics() {
    let mut known: BTreeSet<&str> = dbwatch_collectors::all_descriptors()
        .iter()
        .map(|desc| desc.name)
        .collect();
    known.extend(
        dbwatch::self_metrics::SNAPSHOT_DESCRIPTORS
            .iter()
            .map(|desc| desc.name),
    );
    let rules = load_builtin().unwrap_or_else(|errors| panic!("{errors}"));
    for group in &rules.groups {
        for rule in &group.rules {
            rule.expr().visit_selectors(&mut |selector, _| {
                let name = selector.name.as_deref().unwrap_or("(no name)");
                assert!(
                    known.contains(name),
                    "{} in {}: no metric {name}",
                    rule.name(),
                    Path::new(&group.file).display()
                );
            });
            if let Rule::Recording(_) = rule {
                panic!("shipped rules are alerts only");
            }
        }
    }
}

/// The binary's `rules test` is what CI and users run; it must agree with the library and promtool.
#[test]
fn dbwatch_rules_test_passes_every_test_file() {
    let files = test_files();
    let (ok, output) = run(Command::new(env!("CARGO_BIN_EXE_dbwatch"))
        .args(["rules", "test"])
        .args(&files));
    assert!(ok, "dbwatch rules test failed:\n{output}");
    assert_eq!(output.matches("SUCCESS").count(), files.len(), "{output}");
    let (ok, output) = run(Command::new(env!("CARGO_BIN_EXE_dbwatch"))
        .args(["rules", "check"])
        .args(rule_files()));
    assert!(ok, "dbwatch rules check failed:\n{output}");
}

/// `check-config` reads the rule files the configuration names and reports their problems, named.
#[test]
fn check_config_covers_rule_files() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("dbwatch.yml");
    std::fs::write(
        &config,
        "rule_files: [rules/*.yml]\ntargets:\n  - name: a\n    type: postgres\n    connection: {host: h, user: u}\n",
    )
    .expect("written");
    std::fs::create_dir(dir.path().join("rules")).expect("folder");
    std::fs::write(
        dir.path().join("rules/bad.yml"),
        "groups:\n  - name: g\n    rules:\n      - alert: broken\n        expr: db_up ==\n",
    )
    .expect("written");
    let (ok, output) = run(Command::new(env!("CARGO_BIN_EXE_dbwatch"))
        .arg("check-config")
        .arg(&config));
    assert!(!ok, "check-config passed a broken rule file:\n{output}");
    assert!(output.contains("rules/bad.yml:5:15"), "{output}");
    assert!(output.contains("alert \"broken\""), "{output}");

    std::fs::write(
        dir.path().join("rules/bad.yml"),
        "groups:\n  - name: g\n    rules:\n      - alert: down\n        expr: db_up == 0\n",
    )
    .expect("written");
    let (ok, output) = run(Command::new(env!("CARGO_BIN_EXE_dbwatch"))
        .arg("check-config")
        .arg(&config));
    assert!(ok, "check-config refused a good rule file:\n{output}");
    assert!(
        output.contains("1 target, 1 rule in 1 rule file"),
        "{output}"
    );
}
