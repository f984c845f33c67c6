//! PromQL conformance: Prometheus 2.42's own `promql/testdata/*.test` files, read from
//! `shared/conformance/promql-testdata-v2.42.0/` beside the repository (never copied into it), run case by
//! case through dbwatch's evaluator (see `promqltest`).
//!
//! Every case must pass, or be refused by a construct named in `REFUSED` below (the list of what dbwatch
//! knowingly does not evaluate yet); a wrong answer fails the test, and so does a refusal not in the list,
//! or a listed refusal that no case hits any more (the list must stay true). A missing folder fails too:
//! the suite never skips.

mod promqltest;

use std::path::PathBuf;

use promqltest::{run_file, Outcome};

/// Constructs dbwatch refuses, by the name its compiler gives them, with why.
const REFUSED: &[(&str, &str)] = &[];

/// `shared/conformance/promql-testdata-v2.42.0/` beside the repository (`rules/../../shared/...`), or the
/// folder `DBWATCH_PROMQL_TESTDATA` names (a checkout elsewhere, such as a worktree).
fn testdata() -> PathBuf {
    match std::env::var_os("DBWATCH_PROMQL_TESTDATA") {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../../shared/conformance/promql-testdata-v2.42.0"),
    }
}

#[test]
fn prometheus_promql_test_files_pass() {
    let dir = testdata();
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|error| {
            panic!(
                "the PromQL test files must be at {} (or set DBWATCH_PROMQL_TESTDATA): {error}",
                dir.display()
            )
        })
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "test"))
        .collect();
    files.sort();
    assert!(
        files.len() >= 11,
        "expected Prometheus 2.42's 11 test files in {}, found {}",
        dir.display(),
        files.len()
    );

    let (mut cases, mut passed) = (0, 0);
    let mut refused: Vec<(String, String, String)> = Vec::new();
    let mut wrong: Vec<(String, String, String)> = Vec::new();
    for path in &files {
        let name = path
            .file_name()
            .map(|name| name.to_string_lossy().into_owned())
            .unwrap_or_default();
        let text = std::fs::read_to_string(path)
            .unwrap_or_else(|error| panic!("{}: {error}", path.display()));
        let results = run_file(&name, &text).unwrap_or_else(|error| panic!("{error}"));
        for (case, outcome) in results {
            cases += 1;
            match outcome {
                Outcome::Passed => passed += 1,
                Outcome::Refused(reason) => refused.push((case.name, case.expr, reason)),
                Outcome::Wrong(message) => wrong.push((case.name, case.expr, message)),
            }
        }
    }
    println!(
        "PromQL conformance (Prometheus 2.42 test files): {cases} cases, {passed} passed, {} refused, {} wrong",
        refused.len(),
        wrong.len()
    );
    let mut by_reason: Vec<(String, usize)> = Vec::new();
    for (_, _, reason) in &refused {
        match by_reason.iter_mut().find(|(known, _)| known == reason) {
            Some((_, count)) => *count += 1,
            None => by_reason.push((reason.clone(), 1)),
        }
    }
    for (reason, count) in &by_reason {
        println!("  refused {count}: {reason}");
    }
    for (name, expr, reason) in &refused {
        println!("    {name}: {expr}  ({reason})");
    }
    for (name, expr, message) in &wrong {
        println!("  WRONG {name}: {expr}: {message}");
    }
    assert!(wrong.is_empty(), "{} cases answered wrong", wrong.len());
    let unlisted: Vec<&String> = by_reason
        .iter()
        .map(|(reason, _)| reason)
        .filter(|reason| !REFUSED.iter().any(|(listed, _)| reason.contains(listed)))
        .collect();
    assert!(
        unlisted.is_empty(),
        "refused for reasons not listed in REFUSED: {unlisted:?}"
    );
    let stale: Vec<&str> = REFUSED
        .iter()
        .map(|(listed, _)| *listed)
        .filter(|listed| !by_reason.iter().any(|(reason, _)| reason.contains(listed)))
        .collect();
    assert!(
        stale.is_empty(),
        "REFUSED lists what no case is refused for any more: {stale:?}"
    );
}
