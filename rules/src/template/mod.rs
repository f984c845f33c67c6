//! Label and annotation templates: Go's `text/template` as Prometheus runs alert templates, on
//! `dbwatch-template`, with Prometheus's data and functions.
//!
//! A template sees what Prometheus gives it: `.Labels`, `.ExternalLabels`, `.ExternalURL`, `.Value`, the
//! variables `$labels`, `$externalLabels`, `$externalURL`, `$value` (and `$`), Go's `missingkey=zero` (a
//! missing label reads as ""). The whole of text/template is accepted as Prometheus accepts it: control
//! structures (`if`, `range`, `with`, `define`, `template`, `block`), variables, pipelines and the builtins
//! (`printf`, `index`, `len`, `eq`, ...); the Prometheus functions are `humanize`, `humanize1024`,
//! `humanizeDuration`, `humanizePercentage`, `humanizeTimestamp`, `toUpper`, `toLower`, `title`,
//! `stripPort` and `stripDomain` ([`functions`]).
//!
//! Refused at load, naming the function: the query functions (`query`, `first`, `label`, `value`,
//! `sortByLabel`, ...), since dbwatch templates cannot run queries, and any other function. An error while
//! expanding (a value that is not a number given to `humanize`, say, or a field the data does not have) is
//! the caller's to handle: the engine keeps the raw text and counts the failure.

mod functions;

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, LazyLock};

use dbwatch_template::{ErrorKind, Limits, MissingKey, Options, Set, Value};

use crate::labels::Metric;

pub use self::functions::{humanize, humanize1024, humanize_duration};

/// A template that cannot be used, or failed to expand: its message (with line and column).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct TemplateError(pub String);

#[derive(Debug, Clone, Copy)]
pub struct TemplateData<'a> {
    /// The result sample's labels (`$labels`).
    pub labels: &'a Metric,
    pub external_labels: &'a BTreeMap<String, String>,
    pub external_url: &'a str,
    pub value: f64,
}

/// The functions Prometheus defines that read the TSDB; refused by name.
pub const QUERY_FUNCTIONS: &[&str] = &[
    "query",
    "first",
    "label",
    "value",
    "strvalue",
    "sortByLabel",
];

const VARIABLES: &[&str] = &["labels", "externalLabels", "externalURL", "value"];

/// The empty set every template is parsed into: Prometheus's functions, its variables.
static BASE: LazyLock<Set> =
    LazyLock::new(|| Set::new(functions::prometheus()).with_variables(VARIABLES));

/// The name each template is parsed under (Prometheus names it after the alert; dbwatch's errors already
/// name the rule and the key).
const NAME: &str = "template";

/// Alert templates expand to label values and annotations; the output bound is above what one `printf` can
/// pad to (Go's width bound, 1e6), and one rule's runaway `range` must not hold the evaluation loop.
const OPTIONS: Options = Options {
    limits: Limits {
        max_output: 2 << 20,
        max_depth: 100,
        max_range_iterations: 100_000,
    },
    missing_key: MissingKey::Zero,
    escape: dbwatch_template::Escape::None,
};

/// A parsed template and its source.
#[derive(Debug, Clone)]
pub struct Template {
    source: String,
    /// `None` for a text without actions, which expands to itself.
    set: Option<Arc<Set>>,
}

impl Template {
    /// Parses a template, refusing what dbwatch cannot expand.
    pub fn parse(source: &str) -> Result<Template, TemplateError> {
        if !source.contains("{{") {
            return Ok(Template {
                source: source.to_owned(),
                set: None,
            });
        }
        let mut set = BASE.clone();
        set.parse(NAME, NAME, source).map_err(|error| match &error.kind {
            ErrorKind::UndefinedFunction(name) if QUERY_FUNCTIONS.contains(&name.as_str()) => {
                TemplateError(format!(
                    "{}:{}: the template function {name:?} is not supported: dbwatch templates cannot run queries",
                    error.line, error.column
                ))
            }
            ErrorKind::UndefinedFunction(name) => TemplateError(format!(
                "{}:{}: function {name:?} not defined (or not supported by dbwatch)",
                error.line, error.column
            )),
            _ => describe(&error),
        })?;
        Ok(Template {
            source: source.to_owned(),
            set: Some(Arc::new(set)),
        })
    }

    pub fn source(&self) -> &str {
        &self.source
    }

    /// True when the template has no actions: it expands to its source.
    pub fn is_static(&self) -> bool {
        self.set.is_none()
    }

    /// Expands the template; an error leaves the choice of fallback to the caller.
    pub fn expand(&self, data: &TemplateData<'_>) -> Result<String, TemplateError> {
        let Some(set) = &self.set else {
            return Ok(self.source.clone());
        };
        let labels = Value::Map(Arc::new(
            data.labels
                .pairs()
                .map(|(name, value)| (name.to_owned(), Value::from(value)))
                .collect(),
        ));
        let external = Value::string_map(data.external_labels);
        let url = Value::from(data.external_url);
        let value = Value::Float(data.value);
        let root = Value::object(Root {
            labels: labels.clone(),
            external_labels: external.clone(),
            external_url: url.clone(),
            value: value.clone(),
        });
        let variables = [
            ("labels", labels),
            ("externalLabels", external),
            ("externalURL", url),
            ("value", value),
        ];
        set.execute(NAME, &root, &variables, &OPTIONS)
            .map_err(|error| describe(&error))
    }
}

/// Prometheus's template data, a struct: a field it does not have is an error, not an empty string.
struct Root {
    labels: Value,
    external_labels: Value,
    external_url: Value,
    value: Value,
}

impl dbwatch_template::Object for Root {
    fn type_name(&self) -> &str {
        "struct { Labels map[string]string; ExternalLabels map[string]string; ExternalURL string; Value interface {} }"
    }

    fn field(&self, name: &str) -> Option<Value> {
        Some(match name {
            "Labels" => self.labels.clone(),
            "ExternalLabels" => self.external_labels.clone(),
            "ExternalURL" => self.external_url.clone(),
            "Value" => self.value.clone(),
            _ => return None,
        })
    }

    fn display(&self, out: &mut String) {
        out.push('{');
        for (index, value) in [
            &self.labels,
            &self.external_labels,
            &self.external_url,
            &self.value,
        ]
        .into_iter()
        .enumerate()
        {
            if index > 0 {
                out.push(' ');
            }
            dbwatch_template::fmt_value(value, out);
        }
        out.push('}');
    }
}

fn describe(error: &dbwatch_template::Error) -> TemplateError {
    if error.line == 0 {
        return TemplateError(error.message.clone());
    }
    TemplateError(format!(
        "{}:{}: {}",
        error.line, error.column, error.message
    ))
}

impl fmt::Display for Template {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

#[cfg(test)]
mod tests;
