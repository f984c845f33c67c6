//! A `promtool test rules` file read from YAML with positions (`dbwatch-yaml`), as rule files are: every
//! problem reported at once with its line, column and key path, unknown keys refused (promtool reads its
//! files strictly too). Scalars are kept as written, like Go's yaml.v2 decoding a number into a string, and
//! `${...}` is not expanded: promtool does not expand it.

use std::collections::BTreeMap;
use std::path::Path;

use dbwatch_yaml::node::{self as yaml, Node, Value};
use dbwatch_yaml::read::{Fields, Reader};

use crate::model::{millis, parse_duration};

#[derive(Debug, Default)]
pub(super) struct TestFile {
    pub rule_files: Vec<String>,
    pub evaluation_interval: Option<DurationText>,
    pub group_eval_order: Vec<String>,
    pub tests: Vec<TestGroup>,
}

#[derive(Debug, Default)]
pub(super) struct TestGroup {
    pub interval: Option<DurationText>,
    pub input_series: Vec<InputSeries>,
    pub alert_rule_test: Vec<AlertTest>,
    pub promql_expr_test: Vec<ExprTest>,
    pub external_labels: BTreeMap<String, Scalar>,
    pub external_url: String,
    pub name: String,
}

#[derive(Debug, Default)]
pub(super) struct InputSeries {
    pub series: String,
    pub values: Scalar,
}

#[derive(Debug, Default)]
pub(super) struct AlertTest {
    pub eval_time: DurationText,
    pub alertname: String,
    pub exp_alerts: Vec<ExpectedAlert>,
}

#[derive(Debug, Default)]
pub(super) struct ExpectedAlert {
    pub exp_labels: BTreeMap<String, Scalar>,
    pub exp_annotations: BTreeMap<String, Scalar>,
}

#[derive(Debug, Default)]
pub(super) struct ExprTest {
    pub expr: String,
    pub eval_time: DurationText,
    pub exp_samples: Vec<ExpectedSample>,
}

#[derive(Debug, Default)]
pub(super) struct ExpectedSample {
    pub labels: String,
    pub value: f64,
}

/// A YAML scalar as text: strings, numbers and booleans all read as strings, like Go's yaml.v2 into a string.
#[derive(Debug, Default, Clone)]
pub(super) struct Scalar(pub String);

/// A Prometheus duration written as text (or `0`), in milliseconds.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct DurationText(pub i64);

/// Reads a test file's text; the error lists every problem, each as `file:line:column: path: message`.
pub(super) fn read_test_file(path: &Path, text: &str) -> Result<TestFile, String> {
    let root = yaml::parse(text).map_err(|error| {
        format!(
            "{}:{}:{}: invalid YAML: {}",
            path.display(),
            error.mark.line,
            error.mark.column,
            error.message
        )
    })?;
    let no_env = |_: &str| -> Option<String> { None };
    let mut reader = Reader::new(&no_env);
    let file = test_file(&mut reader, &root);
    if reader.errors.is_empty() {
        return Ok(file);
    }
    let problems: Vec<String> = reader
        .errors
        .iter()
        .map(|error| {
            let at = if error.path.is_empty() {
                String::new()
            } else {
                format!("{}: ", error.path)
            };
            format!(
                "{}:{}:{}: {at}{}",
                path.display(),
                error.line,
                error.column,
                error.message
            )
        })
        .collect();
    Err(problems.join("\n    "))
}

fn test_file(reader: &mut Reader<'_>, root: &Node) -> TestFile {
    let mut file = TestFile::default();
    let Some(mut fields) = Fields::of(reader, root, "") else {
        return file;
    };
    file.rule_files = strings(reader, &mut fields, "rule_files");
    file.evaluation_interval = duration(reader, &mut fields, "evaluation_interval");
    file.group_eval_order = strings(reader, &mut fields, "group_eval_order");
    file.tests = list(reader, &mut fields, "tests", test_group);
    fields.finish(reader);
    file
}

fn test_group(reader: &mut Reader<'_>, node: &Node, path: &str) -> TestGroup {
    let mut group = TestGroup::default();
    let Some(mut fields) = Fields::of(reader, node, path) else {
        return group;
    };
    group.interval = duration(reader, &mut fields, "interval");
    group.input_series = list(reader, &mut fields, "input_series", |reader, node, path| {
        let mut input = InputSeries::default();
        if let Some(mut fields) = Fields::of(reader, node, path) {
            input.series = required(reader, &mut fields, node, path, "series");
            input.values = Scalar(text(reader, &mut fields, "values"));
            fields.finish(reader);
        }
        input
    });
    group.alert_rule_test = list(reader, &mut fields, "alert_rule_test", alert_test);
    group.promql_expr_test = list(reader, &mut fields, "promql_expr_test", expr_test);
    group.external_labels = scalars(reader, &mut fields, "external_labels");
    group.external_url = text(reader, &mut fields, "external_url");
    group.name = text(reader, &mut fields, "name");
    fields.finish(reader);
    group
}

fn alert_test(reader: &mut Reader<'_>, node: &Node, path: &str) -> AlertTest {
    let mut test = AlertTest::default();
    let Some(mut fields) = Fields::of(reader, node, path) else {
        return test;
    };
    test.eval_time = duration(reader, &mut fields, "eval_time").unwrap_or_default();
    test.alertname = text(reader, &mut fields, "alertname");
    test.exp_alerts = list(reader, &mut fields, "exp_alerts", |reader, node, path| {
        let mut alert = ExpectedAlert::default();
        if let Some(mut fields) = Fields::of(reader, node, path) {
            alert.exp_labels = scalars(reader, &mut fields, "exp_labels");
            alert.exp_annotations = scalars(reader, &mut fields, "exp_annotations");
            fields.finish(reader);
        }
        alert
    });
    fields.finish(reader);
    test
}

fn expr_test(reader: &mut Reader<'_>, node: &Node, path: &str) -> ExprTest {
    let mut test = ExprTest::default();
    let Some(mut fields) = Fields::of(reader, node, path) else {
        return test;
    };
    test.expr = required(reader, &mut fields, node, path, "expr");
    test.eval_time = duration(reader, &mut fields, "eval_time").unwrap_or_default();
    test.exp_samples = list(reader, &mut fields, "exp_samples", |reader, node, path| {
        let mut sample = ExpectedSample::default();
        if let Some(mut fields) = Fields::of(reader, node, path) {
            sample.labels = text(reader, &mut fields, "labels");
            sample.value = match fields.take("value") {
                Some((node, path)) => float(reader, node, &path),
                None => {
                    reader.error(node.mark, path, "missing key \"value\"");
                    0.0
                }
            };
            fields.finish(reader);
        }
        sample
    });
    fields.finish(reader);
    test
}

/// A scalar's text as written; null reads as the empty string, a list or a mapping is reported.
fn scalar_text(reader: &mut Reader<'_>, node: &Node, path: &str) -> String {
    match &node.value {
        _ if node.is_null() => String::new(),
        Value::Scalar { text, .. } => text.clone(),
        _ => {
            reader.error(
                node.mark,
                path,
                format!("expected a scalar, found {}", node.kind()),
            );
            String::new()
        }
    }
}

/// The scalar under `key` as text, empty when absent.
fn text(reader: &mut Reader<'_>, fields: &mut Fields<'_>, key: &'static str) -> String {
    match fields.take(key) {
        Some((node, path)) => scalar_text(reader, node, &path),
        None => String::new(),
    }
}

/// The scalar under `key`, reported at the mapping when absent.
fn required(
    reader: &mut Reader<'_>,
    fields: &mut Fields<'_>,
    mapping: &Node,
    path: &str,
    key: &'static str,
) -> String {
    match fields.take(key) {
        Some((node, path)) => scalar_text(reader, node, &path),
        None => {
            reader.error(mapping.mark, path, format!("missing key {key:?}"));
            String::new()
        }
    }
}

fn duration(
    reader: &mut Reader<'_>,
    fields: &mut Fields<'_>,
    key: &'static str,
) -> Option<DurationText> {
    let (node, path) = fields.take(key)?;
    let text = scalar_text(reader, node, &path);
    match parse_duration(&text) {
        Ok(duration) => Some(DurationText(millis(duration))),
        Err(message) => {
            reader.error(node.mark, &path, message);
            None
        }
    }
}

/// A float as Go's yaml.v2 reads one: decimal, exponent, `.inf`/`.nan` spellings.
fn float(reader: &mut Reader<'_>, node: &Node, path: &str) -> f64 {
    if let Value::Scalar { quoted: true, text } = &node.value {
        reader.error(
            node.mark,
            path,
            format!("expected a number, found the string {text:?}"),
        );
        return 0.0;
    }
    let text = scalar_text(reader, node, path);
    let value = match text.trim() {
        ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF" => Some(f64::INFINITY),
        "-.inf" | "-.Inf" | "-.INF" => Some(f64::NEG_INFINITY),
        ".nan" | ".NaN" | ".NAN" => Some(f64::NAN),
        other => other.replace('_', "").parse::<f64>().ok(),
    };
    value.unwrap_or_else(|| {
        reader.error(
            node.mark,
            path,
            format!("expected a number, found {text:?}"),
        );
        0.0
    })
}

fn strings(reader: &mut Reader<'_>, fields: &mut Fields<'_>, key: &'static str) -> Vec<String> {
    list(reader, fields, key, scalar_text)
}

/// A mapping of scalars (labels, annotations).
fn scalars(
    reader: &mut Reader<'_>,
    fields: &mut Fields<'_>,
    key: &'static str,
) -> BTreeMap<String, Scalar> {
    let mut out = BTreeMap::new();
    let Some((node, path)) = fields.take(key) else {
        return out;
    };
    let Some(mut entries) = Fields::of(reader, node, &path) else {
        return out;
    };
    let entries: Vec<_> = entries.drain().collect();
    for (name, value) in entries {
        let text = scalar_text(reader, value, &format!("{path}.{}", name.name));
        out.insert(name.name.clone(), Scalar(text));
    }
    out
}

/// The list under `key`, each item read by `item`.
fn list<T>(
    reader: &mut Reader<'_>,
    fields: &mut Fields<'_>,
    key: &'static str,
    mut item: impl FnMut(&mut Reader<'_>, &Node, &str) -> T,
) -> Vec<T> {
    let Some((node, path)) = fields.take(key) else {
        return Vec::new();
    };
    let Some(items) = reader.sequence(node, &path) else {
        return Vec::new();
    };
    items
        .iter()
        .enumerate()
        .map(|(index, node)| item(reader, node, &format!("{path}[{index}]")))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_test_file_reads_with_scalars_as_written() {
        let text = "rule_files: [a.yml]\nevaluation_interval: 1m\ntests:\n  - interval: 30s\n    input_series:\n      - series: 'up{job=\"x\"}'\n        values: 1 0 1\n      - series: n\n        values: 5\n    external_labels:\n      region: 3\n    promql_expr_test:\n      - expr: up\n        eval_time: 1m\n        exp_samples:\n          - labels: 'up{job=\"x\"}'\n            value: 1e0\n";
        let file = read_test_file(Path::new("t.yml"), text).expect("valid");
        assert_eq!(file.rule_files, ["a.yml"]);
        assert_eq!(file.evaluation_interval.map(|d| d.0), Some(60_000));
        let group = &file.tests[0];
        assert_eq!(group.interval.map(|d| d.0), Some(30_000));
        assert_eq!(group.input_series[0].values.0, "1 0 1");
        assert_eq!(group.input_series[1].values.0, "5");
        assert_eq!(group.external_labels["region"].0, "3");
        assert_eq!(group.promql_expr_test[0].eval_time.0, 60_000);
        assert_eq!(group.promql_expr_test[0].exp_samples[0].value, 1.0);
    }

    #[test]
    fn unknown_keys_and_bad_values_are_named_with_their_place() {
        let text = "tests:\n  - intervall: 1m\n    promql_expr_test:\n      - expr: up\n        exp_samples:\n          - value: '1'\n";
        let error = read_test_file(Path::new("t.yml"), text).expect_err("invalid");
        assert!(
            error.contains("t.yml:2:5: tests[0].intervall: unknown key \"intervall\""),
            "{error}"
        );
        assert!(
            error.contains("tests[0].promql_expr_test[0].exp_samples[0].value: expected a number, found the string \"1\""),
            "{error}"
        );
    }
}
