//! The structure ARCHITECTURE.md promises, checked: the crate graph follows the data flow, and no crate's
//! modules import each other in a loop.
//!
//! Both checks read only what is on disk (`cargo metadata` for the graph, the sources for the imports), so they
//! need no fleet and run in a second.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Each workspace crate and the workspace crates it depends on (normal dependencies only: a test may use
/// anything).
fn crate_graph() -> BTreeMap<String, BTreeSet<String>> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let output = Command::new(cargo)
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
        ])
        .current_dir(root())
        .output()
        .expect("cargo metadata runs");
    assert!(
        output.status.success(),
        "cargo metadata: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let metadata: Value = serde_json::from_slice(&output.stdout).expect("cargo metadata is JSON");
    let packages = metadata["packages"].as_array().expect("packages");
    let members: BTreeSet<String> = packages
        .iter()
        .filter_map(|package| package["name"].as_str().map(str::to_owned))
        .collect();
    packages
        .iter()
        .map(|package| {
            let name = package["name"].as_str().expect("name").to_owned();
            let depends: BTreeSet<String> = package["dependencies"]
                .as_array()
                .expect("dependencies")
                .iter()
                .filter(|dependency| dependency["kind"].is_null())
                .filter_map(|dependency| dependency["name"].as_str())
                .filter(|dependency| members.contains(*dependency))
                .map(str::to_owned)
                .collect();
            (name, depends)
        })
        .collect()
}

#[test]
fn the_crate_graph_follows_the_data_flow() {
    let graph = crate_graph();
    let allowed: &[(&str, &[&str])] = &[
        ("dbwatch-metric", &[]),
        ("dbwatch-secret", &[]),
        ("dbwatch-yaml", &[]),
        ("dbwatch-storage", &[]),
        ("dbwatch-template", &[]),
        ("dbwatch-events", &[]),
        ("dbwatch-httpclient", &["dbwatch-yaml", "dbwatch-secret"]),
        (
            "dbwatch-remote-write",
            &["dbwatch-httpclient", "dbwatch-yaml"],
        ),
        ("dbwatch-collectors", &["dbwatch-metric", "dbwatch-secret"]),
        (
            "dbwatch-rules",
            &[
                "dbwatch-metric",
                "dbwatch-yaml",
                "dbwatch-storage",
                "dbwatch-template",
                "dbwatch-events",
            ],
        ),
        (
            "dbwatch-notify",
            &[
                "dbwatch-rules",
                "dbwatch-template",
                "dbwatch-yaml",
                "dbwatch-secret",
                "dbwatch-httpclient",
                "dbwatch-storage",
                "dbwatch-events",
            ],
        ),
        ("dbwatch-workload", &[]),
    ];
    for (name, may_use) in allowed {
        let depends = graph
            .get(*name)
            .unwrap_or_else(|| panic!("{name} is not a workspace member"));
        let beyond: Vec<&String> = depends
            .iter()
            .filter(|dependency| !may_use.contains(&dependency.as_str()))
            .collect();
        assert!(
            beyond.is_empty(),
            "{name} depends on {beyond:?}: it may depend only on {may_use:?} (ARCHITECTURE.md, Crates)"
        );
    }
    let daemon = &graph["dbwatch"];
    for lower in [
        "dbwatch-collectors",
        "dbwatch-rules",
        "dbwatch-notify",
        "dbwatch-events",
        "dbwatch-remote-write",
    ] {
        assert!(daemon.contains(lower), "the daemon wires {lower}");
    }
    let named: BTreeSet<&str> = allowed.iter().map(|(name, _)| *name).collect();
    for member in graph.keys() {
        assert!(
            member == "dbwatch" || named.contains(member.as_str()),
            "{member} is a new crate: say here (and in ARCHITECTURE.md) what it may depend on"
        );
    }
}

/// A source file of a crate, as the module path it defines (`eval::functions` for `src/eval/functions.rs`).
#[derive(Debug)]
struct Module {
    path: Vec<String>,
    file: PathBuf,
}

fn modules(src: &Path) -> Vec<Module> {
    let mut found = Vec::new();
    let mut stack = vec![src.to_owned()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("read source folder") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            if path.extension().is_none_or(|extension| extension != "rs") {
                continue;
            }
            let relative = path.strip_prefix(src).expect("inside src");
            let mut segments: Vec<String> = relative
                .iter()
                .map(|segment| segment.to_string_lossy().trim_end_matches(".rs").to_owned())
                .collect();
            if matches!(
                segments.last().map(String::as_str),
                Some("mod" | "lib" | "main")
            ) {
                segments.pop();
            }
            found.push(Module {
                path: segments,
                file: path,
            });
        }
    }
    found
}

/// The code of a file without its comments (a doc link is not an import) and without its `#[cfg(test)]`
/// module (by convention the end of the file): tests may import from anywhere in their crate.
fn non_test_code(text: &str) -> String {
    let code = match text.find("#[cfg(test)]\nmod tests") {
        Some(at) => &text[..at],
        None => text,
    };
    code.lines()
        .filter(|line| !line.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Every module path a file names through `crate::…` or `super::…`, grouped imports (`crate::{a, b::c}`)
/// included, relative paths resolved against the file's own module.
fn referenced_paths(code: &str, own: &[String]) -> Vec<Vec<String>> {
    let mut paths = Vec::new();
    let bytes = code.as_bytes();
    for keyword in ["crate::", "super::"] {
        let mut from = 0;
        while let Some(found) = code[from..].find(keyword) {
            let start = from + found;
            from = start + keyword.len();
            let preceded_by_ident = start > 0 && {
                let before = bytes[start - 1];
                before.is_ascii_alphanumeric() || before == b'_' || before == b':'
            };
            if preceded_by_ident {
                continue;
            }
            // `super::super::x` and the like.
            let mut base: Vec<String> = if keyword == "crate::" {
                Vec::new()
            } else {
                parent(own)
            };
            let mut rest = &code[from..];
            while let Some(stripped) = rest.strip_prefix("super::") {
                base.pop();
                rest = stripped;
            }
            for tail in expand(rest) {
                let mut path = base.clone();
                path.extend(tail);
                paths.push(path);
            }
        }
    }
    paths
}

/// The module a `super::` inside `own` names (a `mod.rs` file already stands for its folder's module).
fn parent(own: &[String]) -> Vec<String> {
    let mut parent = own.to_vec();
    parent.pop();
    parent
}

/// The paths after `crate::`: `a::b::C` or a group `{a, b::{c, d}}`, as segment lists (identifiers only).
fn expand(rest: &str) -> Vec<Vec<String>> {
    if let Some(group) = rest.strip_prefix('{') {
        let mut depth = 1;
        let mut end = 0;
        for (index, c) in group.char_indices() {
            match c {
                '{' => depth += 1,
                '}' => {
                    depth -= 1;
                    if depth == 0 {
                        end = index;
                        break;
                    }
                }
                _ => {}
            }
        }
        let inner = &group[..end];
        let mut items = Vec::new();
        let mut depth = 0;
        let mut item_start = 0;
        for (index, c) in inner.char_indices() {
            match c {
                '{' => depth += 1,
                '}' => depth -= 1,
                ',' if depth == 0 => {
                    items.push(&inner[item_start..index]);
                    item_start = index + 1;
                }
                _ => {}
            }
        }
        items.push(&inner[item_start..]);
        return items
            .into_iter()
            .map(str::trim)
            .filter(|item| !item.is_empty())
            .flat_map(expand)
            .collect();
    }
    let mut segments = Vec::new();
    let mut rest = rest;
    loop {
        let end = rest
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(rest.len());
        if end == 0 {
            break;
        }
        segments.push(rest[..end].to_owned());
        rest = &rest[end..];
        match rest.strip_prefix("::") {
            Some(next) if next.starts_with('{') => {
                return expand(next)
                    .into_iter()
                    .map(|tail| segments.iter().cloned().chain(tail).collect())
                    .collect();
            }
            Some(next) => rest = next,
            None => break,
        }
    }
    vec![segments]
}

/// The longest prefix of `path` that is a module of the crate.
fn resolve(path: &[String], known: &BTreeSet<Vec<String>>) -> Option<Vec<String>> {
    (1..=path.len())
        .rev()
        .map(|length| path[..length].to_vec())
        .find(|prefix| known.contains(prefix))
}

/// The groups of more than one module that all reach each other (strongly connected components).
fn loops(edges: &BTreeMap<Vec<String>, BTreeSet<Vec<String>>>) -> Vec<Vec<Vec<String>>> {
    let nodes: Vec<&Vec<String>> = edges.keys().collect();
    let index_of: BTreeMap<&Vec<String>, usize> = nodes
        .iter()
        .enumerate()
        .map(|(i, node)| (*node, i))
        .collect();
    // Reachability by repeated search is plenty for a few dozen modules per crate.
    let reach = |from: usize| -> BTreeSet<usize> {
        let mut seen = BTreeSet::new();
        let mut stack = vec![from];
        while let Some(node) = stack.pop() {
            for next in &edges[nodes[node]] {
                if let Some(&next) = index_of.get(next) {
                    if seen.insert(next) {
                        stack.push(next);
                    }
                }
            }
        }
        seen
    };
    let reachable: Vec<BTreeSet<usize>> = (0..nodes.len()).map(reach).collect();
    let mut assigned = vec![false; nodes.len()];
    let mut found = Vec::new();
    for a in 0..nodes.len() {
        if assigned[a] || !reachable[a].contains(&a) {
            continue;
        }
        let component: Vec<usize> = (0..nodes.len())
            .filter(|&b| reachable[a].contains(&b) && reachable[b].contains(&a))
            .collect();
        for &member in &component {
            assigned[member] = true;
        }
        if component.len() > 1 {
            found.push(component.iter().map(|&m| nodes[m].clone()).collect());
        }
    }
    found
}

#[test]
fn no_crate_has_an_import_loop_among_its_modules() {
    let crates = [
        "src",
        "metric/src",
        "secret/src",
        "yaml/src",
        "storage/src",
        "template/src",
        "collectors/src",
        "rules/src",
        "notify/src",
        "workload/src",
    ];
    let mut report = Vec::new();
    for src in crates {
        let src = root().join(src);
        let modules = modules(&src);
        let known: BTreeSet<Vec<String>> =
            modules.iter().map(|module| module.path.clone()).collect();
        let mut edges: BTreeMap<Vec<String>, BTreeSet<Vec<String>>> = BTreeMap::new();
        for module in &modules {
            let text = std::fs::read_to_string(&module.file).expect("read source");
            let targets = edges.entry(module.path.clone()).or_default();
            for path in referenced_paths(&non_test_code(&text), &module.path) {
                let Some(target) = resolve(&path, &known) else {
                    continue;
                };
                // A module composing its own submodules (`mod x; pub use x::Y;`) is not a loop; a submodule
                // reaching back up to its parent, or across to a sibling, is what can close one.
                let is_own_descendant = target.len() > module.path.len()
                    && target[..module.path.len()] == module.path[..];
                if target != module.path && !is_own_descendant {
                    targets.insert(target);
                }
            }
        }
        for found in loops(&edges) {
            let names: Vec<String> = found
                .iter()
                .map(|path| {
                    if path.is_empty() {
                        "(crate root)".to_owned()
                    } else {
                        path.join("::")
                    }
                })
                .collect();
            report.push(format!("{}: {}", src.display(), names.join(" <-> ")));
        }
    }
    assert!(
        report.is_empty(),
        "modules that import each other in a loop (move what both need into a module of its own):\n{}",
        report.join("\n")
    );
}
