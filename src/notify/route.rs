//! The routing tree walk and inhibition, with Alertmanager's semantics: the root matches everything, children
//! are tried in order, the first match wins unless it has `continue: true`, and an alert no child takes stays
//! with the current node.

use std::collections::BTreeMap;

use super::config::{GroupBy, InhibitRule, Route};
use super::matcher::all_match;

/// A route an alert landed on, with the path of child indexes from the root (`""` for the root, `"1/0"` for
/// the first child of the second child) that makes group keys unique per route.
#[derive(Debug, Clone, Copy)]
pub struct Matched<'a> {
    pub route: &'a Route,
    pub id: &'a str,
}

/// A route tree with each node's path precomputed, so matching allocates nothing per node.
#[derive(Debug, Clone)]
pub struct RouteTree {
    node: IdNode,
}

#[derive(Debug, Clone)]
struct IdNode {
    id: String,
    children: Vec<IdNode>,
}

impl RouteTree {
    pub fn new(root: &Route) -> RouteTree {
        fn build(route: &Route, id: String) -> IdNode {
            let children = route
                .routes
                .iter()
                .enumerate()
                .map(|(index, child)| {
                    let child_id = if id.is_empty() {
                        index.to_string()
                    } else {
                        format!("{id}/{index}")
                    };
                    build(child, child_id)
                })
                .collect();
            IdNode { id, children }
        }
        RouteTree {
            node: build(root, String::new()),
        }
    }

    /// Every route the alert with `labels` is handled by, in tree order.
    pub fn matches<'a>(
        &'a self,
        root: &'a Route,
        labels: &BTreeMap<String, String>,
    ) -> Vec<Matched<'a>> {
        let mut out = Vec::new();
        walk(root, &self.node, labels, &mut out);
        out
    }
}

fn walk<'a>(
    route: &'a Route,
    node: &'a IdNode,
    labels: &BTreeMap<String, String>,
    out: &mut Vec<Matched<'a>>,
) {
    let before = out.len();
    for (child, child_node) in route.routes.iter().zip(&node.children) {
        if !all_match(&child.matchers, labels) {
            continue;
        }
        walk(child, child_node, labels, out);
        if !child.continue_matching {
            break;
        }
    }
    if out.len() == before {
        out.push(Matched {
            route,
            id: &node.id,
        });
    }
}

/// The receivers an alert with `labels` goes to, as `amtool config routes test` prints them.
pub fn receivers_for(root: &Route, labels: &BTreeMap<String, String>) -> Vec<String> {
    RouteTree::new(root)
        .matches(root, labels)
        .iter()
        .map(|matched| matched.route.receiver.clone())
        .collect()
}

/// The labels an alert is grouped by on `route`.
pub fn group_labels(route: &Route, labels: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    match &route.group_by {
        GroupBy::All => labels.clone(),
        GroupBy::Labels(names) => names
            .iter()
            .filter_map(|name| labels.get(name).map(|value| (name.clone(), value.clone())))
            .collect(),
    }
}

/// True when a firing alert among `firing` inhibits the alert with `target` labels. An alert that matches both
/// sides of a rule is not inhibited by alerts that also match both sides, so it never inhibits itself.
pub fn inhibited<'a>(
    rules: &[InhibitRule],
    target: &BTreeMap<String, String>,
    firing: impl Iterator<Item = &'a BTreeMap<String, String>> + Clone,
) -> bool {
    rules.iter().any(|rule| {
        if !all_match(&rule.target_matchers, target) {
            return false;
        }
        let two_sided = all_match(&rule.source_matchers, target);
        firing.clone().any(|source| {
            source != target
                && all_match(&rule.source_matchers, source)
                && !(two_sided && all_match(&rule.target_matchers, source))
                && rule.equal.iter().all(|name| {
                    source.get(name).map(String::as_str).unwrap_or("")
                        == target.get(name).map(String::as_str).unwrap_or("")
                })
        })
    })
}
