//! The README's lists of what dbwatch supports are the code's (PromQL aggregations and functions, receivers):
//! a name listed and refused, or supported and not listed, fails here.

use std::collections::BTreeSet;

use dbwatch_rules::promql::{compile, Func};

fn readme() -> String {
    std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).expect("README.md")
}

/// The words inside backticks of the README text from `start` to `end` (both must be present, in order).
fn backticked_words(text: &str, start: &str, end: &str) -> BTreeSet<String> {
    let from = text
        .find(start)
        .unwrap_or_else(|| panic!("README lost {start:?}"));
    let to = from
        + text[from..]
            .find(end)
            .unwrap_or_else(|| panic!("README lost {end:?} after {start:?}"));
    text[from + start.len()..to]
        .split('`')
        .skip(1)
        .step_by(2)
        .flat_map(str::split_whitespace)
        .map(str::to_owned)
        .collect()
}

/// Prometheus 2.42's aggregation operators, with an expression using each.
const AGGREGATIONS: &[(&str, &str)] = &[
    ("sum", "sum by (job) (x)"),
    ("avg", "avg(x)"),
    ("min", "min(x)"),
    ("max", "max(x)"),
    ("count", "count without (instance) (x)"),
    ("group", "group(x)"),
    ("stddev", "stddev(x)"),
    ("stdvar", "stdvar(x)"),
    ("topk", "topk(3, x)"),
    ("bottomk", "bottomk(3, x)"),
    ("quantile", "quantile(0.9, x)"),
    ("count_values", "count_values(\"value\", x)"),
];

#[test]
fn the_readme_lists_every_promql_aggregation_and_function_dbwatch_evaluates_and_no_other() {
    let text = readme();
    let listed = backticked_words(&text, "the aggregations ", " with `by`/`without`");
    let known: BTreeSet<String> = AGGREGATIONS
        .iter()
        .map(|(name, _)| (*name).to_owned())
        .collect();
    assert_eq!(
        listed, known,
        "README aggregations against Prometheus 2.42's"
    );
    for (name, expr) in AGGREGATIONS {
        compile(expr)
            .unwrap_or_else(|error| panic!("README lists {name}, dbwatch refuses {expr}: {error}"));
    }

    let mut listed = backticked_words(&text, "the functions ", ", with Prometheus's staleness");
    // "over classic `_bucket` series" qualifies histogram_quantile; it names no function.
    listed.remove("_bucket");
    let evaluated: BTreeSet<String> = Func::ALL
        .iter()
        .map(|func| func.name().to_owned())
        .collect();
    let unlisted: Vec<_> = evaluated.difference(&listed).collect();
    let refused: Vec<_> = listed.difference(&evaluated).collect();
    assert!(
        unlisted.is_empty(),
        "evaluated but not in the README: {unlisted:?}"
    );
    assert!(
        refused.is_empty(),
        "in the README but not evaluated: {refused:?}"
    );
}

#[test]
fn the_readme_lists_every_receiver_dbwatch_sends_to_and_every_one_it_refuses() {
    let text = readme();
    let listed = backticked_words(&text, "Receivers: ", ". Refused by name: ");
    let sent: BTreeSet<String> = dbwatch_notify::config::receiver_keys()
        .map(str::to_owned)
        .collect();
    assert_eq!(
        listed, sent,
        "README receivers against the routing file reader's"
    );
    let listed = backticked_words(&text, ". Refused by name: ", ".\n");
    let refused: BTreeSet<String> = dbwatch_notify::config::refused_receiver_keys()
        .map(str::to_owned)
        .collect();
    assert_eq!(listed, refused, "README refusals against the reader's");
}
