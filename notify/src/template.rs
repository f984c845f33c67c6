//! Alertmanager's notification templates: the routing file's `templates:` files, Alertmanager 0.25's named
//! defaults (`default.tmpl`, dbwatch's own text with the same output) and functions, its template data
//! (`.Receiver`, `.Status`, `.Alerts`, `.GroupLabels`, `.CommonLabels`, `.CommonAnnotations`, `.ExternalURL`),
//! and [`TemplatedField`], the one way an integration reads and renders a field that may hold a template.
//!
//! Reading a field (in an integration's `read`, next to `fields::plain`):
//!
//! ```text
//! title: TemplatedField::read(reader, &mut fields, "title", &global.templates),   // Option<TemplatedField>
//! ```
//!
//! Rendering it (in the integration's `render`, where the outbox payload is built):
//!
//! ```text
//! // Not set: the built-in text. Set: the template, or the built-in text when the template fails.
//! let title = render_or(&config.title, notice, || notice.title());
//! // A field with no built-in text: "" when unset or failed (then leave it out of the payload).
//! let channel = render_or(&config.channel, notice, String::new);
//! ```
//!
//! A field that is not set keeps dbwatch's built-in rendering: that is what users get by default. The named
//! defaults (`slack.default.title`, ...) exist for templates that call them. A template that fails to render
//! (a runtime error, a cap hit) never drops the notification: the field gets the fallback text, and the
//! failure is recorded on the notice (its [`Templating`]) for the notifier to count
//! (`dbwatch_notification_template_failures_total`) and log with receiver, integration and field.
//!
//! This module knows nothing of `Notice` (`render.rs` comes after it and implements [`TemplateInput`] for it),
//! so that the routing file's `Global` (`fields.rs`) can hold the [`Templates`] without an import loop.

use std::cell::{OnceCell, RefCell};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock};

use dbwatch_template::gotime::Time;
pub use dbwatch_template::Value;
use dbwatch_template::{Escape, Funcs, Limits, MissingKey, Object, Options, Set};
use dbwatch_yaml::read::{Fields, Reader};

use crate::store::AlertRecord;

/// Alertmanager's default templates, in dbwatch's words.
const DEFAULT_TEMPLATES: &str = include_str!("default.tmpl");

/// One rendered field: far more than any receiver accepts, and a hostile `range` must not hold the notifier.
const OPTIONS: Options = Options {
    limits: Limits {
        max_output: 256 * 1024,
        max_depth: 100,
        max_range_iterations: 100_000,
    },
    // Alertmanager sets `missingkey=zero`: a missing label reads as "".
    missing_key: MissingKey::Zero,
    escape: Escape::None,
};

/// The name a field's own text is parsed under.
const FIELD: &str = "__field";

static DEFAULTS: LazyLock<Set> = LazyLock::new(|| {
    let mut set = Set::new(alertmanager_funcs());
    // The defaults are part of the binary and checked by the tests: a failure here is a build defect.
    if let Err(error) = set.parse("default.tmpl", "default.tmpl", DEFAULT_TEMPLATES) {
        tracing::error!(error = %error, "dbwatch's default notification templates do not parse");
    }
    set
});

/// Alertmanager 0.25's template functions.
fn alertmanager_funcs() -> Funcs {
    let mut funcs = Funcs::new();
    funcs
        .add("toUpper", |args| {
            one_string(args).map(|t| Value::from(t.to_uppercase()))
        })
        .add("toLower", |args| {
            one_string(args).map(|t| Value::from(t.to_lowercase()))
        })
        .add("title", |args| {
            one_string(args).map(|t| Value::from(title(t)))
        })
        .add("join", |args| match args {
            [separator, list] => {
                let separator = string(separator)?;
                let items = list.as_list().ok_or_else(|| {
                    format!(
                        "wrong type for value; expected []string; got {}",
                        list.type_name()
                    )
                })?;
                let parts: Result<Vec<&str>, String> = items.iter().map(string).collect();
                Ok(Value::from(parts?.join(separator)))
            }
            _ => Err(format!(
                "wrong number of args for join: want 2 got {}",
                args.len()
            )),
        })
        .add("match", |args| match args {
            [pattern, text] => Ok(Value::Bool(
                regex(string(pattern)?)?.is_match(string(text)?),
            )),
            _ => Err(format!(
                "wrong number of args for match: want 2 got {}",
                args.len()
            )),
        })
        .add("reReplaceAll", |args| match args {
            [pattern, replacement, text] => Ok(Value::from(
                regex(string(pattern)?)?
                    .replace_all(string(text)?, string(replacement)?)
                    .into_owned(),
            )),
            _ => Err(format!(
                "wrong number of args for reReplaceAll: want 3 got {}",
                args.len()
            )),
        })
        .add("safeHtml", |args| {
            one_string(args).map(|t| Value::Html(t.to_owned()))
        })
        .add("stringSlice", |args| {
            let items: Result<Vec<Value>, String> = args
                .iter()
                .map(|arg| string(arg).map(Value::from))
                .collect();
            Ok(Value::list(items?))
        });
    funcs
}

fn string(value: &Value) -> Result<&str, String> {
    value.as_str().ok_or_else(|| {
        format!(
            "wrong type for value; expected string; got {}",
            value.type_name()
        )
    })
}

fn one_string(args: &[Value]) -> Result<&str, String> {
    match args {
        [value] => string(value),
        _ => Err(format!("wrong number of args: want 1 got {}", args.len())),
    }
}

/// Go's RE2 and Rust's `regex` share their syntax for what templates use; the size limit bounds a hostile
/// pattern's memory.
fn regex(pattern: &str) -> Result<regex::Regex, String> {
    regex::RegexBuilder::new(pattern)
        .size_limit(1 << 20)
        .build()
        .map_err(|error| format!("error parsing regexp: {error}"))
}

/// `cases.Title(language.AmericanEnglish)`: each word's first letter upper-cased, the rest lower-cased.
fn title(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut in_word = false;
    for c in text.chars() {
        if c.is_alphanumeric() || (in_word && c == '\'') {
            if in_word {
                out.extend(c.to_lowercase());
            } else {
                out.extend(c.to_uppercase());
            }
            in_word = true;
        } else {
            out.push(c);
            in_word = false;
        }
    }
    out
}

/// The routing file's templates on top of the defaults; what every templated field is parsed against.
#[derive(Clone)]
pub struct Templates {
    set: Arc<Set>,
    /// The files read, for messages and tests.
    pub files: Vec<PathBuf>,
}

// The parsed trees are large and say nothing a reader of a configuration dump needs.
impl std::fmt::Debug for Templates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Templates")
            .field("files", &self.files)
            .field("templates", &self.set.names().len())
            .finish()
    }
}

impl Default for Templates {
    fn default() -> Self {
        Templates {
            set: Arc::new(DEFAULTS.clone()),
            files: Vec::new(),
        }
    }
}

/// A `templates:` entry that could not be used.
#[derive(Debug, thiserror::Error)]
pub enum TemplateFileError {
    #[error("invalid glob {glob:?}: {message}")]
    Glob { glob: String, message: String },
    #[error("cannot read template file {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Parse(#[from] dbwatch_template::Error),
}

impl Templates {
    /// Adds the files matching `glob`, relative to `base` (the routing file's folder) as Alertmanager resolves
    /// them; a glob matching nothing is not an error. Each file's top-level text is a template named after the
    /// file; its `define`s add to (or replace in) the set.
    pub fn add_glob(&mut self, base: &Path, glob: &str) -> Result<(), TemplateFileError> {
        let pattern = if Path::new(glob).is_absolute() {
            PathBuf::from(glob)
        } else {
            base.join(glob)
        };
        let paths =
            glob::glob(&pattern.to_string_lossy()).map_err(|error| TemplateFileError::Glob {
                glob: glob.to_owned(),
                message: error.to_string(),
            })?;
        let mut files: Vec<PathBuf> = paths
            .filter_map(Result::ok)
            .filter(|path| path.is_file())
            .collect();
        files.sort();
        let set = Arc::make_mut(&mut self.set);
        for path in files {
            let text =
                std::fs::read_to_string(&path).map_err(|source| TemplateFileError::Read {
                    path: path.clone(),
                    source,
                })?;
            let name = path.file_name().map_or_else(
                || path.to_string_lossy().into_owned(),
                |name| name.to_string_lossy().into_owned(),
            );
            set.parse(&name, &path.to_string_lossy(), &text)?;
            self.files.push(path);
        }
        Ok(())
    }

    pub fn contains(&self, name: &str) -> bool {
        self.set.contains(name)
    }
}

/// A field that may hold a template: parsed at load against the routing file's templates, rendered when the
/// payload is built.
#[derive(Clone)]
pub struct TemplatedField {
    field: String,
    source: String,
    /// `None` for text without actions.
    set: Option<Arc<Set>>,
}

impl std::fmt::Debug for TemplatedField {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TemplatedField")
            .field("field", &self.field)
            .field("source", &self.source)
            .finish()
    }
}

impl TemplatedField {
    /// Reads `key` as [`crate::fields::plain`] does (absent, null or empty is `None`), parsing it as a
    /// template; a parse error is reported at the key with the template's line and column.
    pub fn read(
        reader: &mut Reader<'_>,
        fields: &mut Fields<'_>,
        key: &'static str,
        templates: &Templates,
    ) -> Option<TemplatedField> {
        let (node, path) = fields.take(key)?;
        if node.is_null() {
            return None;
        }
        let text = reader.scalar(node, &path)?;
        if text.is_empty() {
            return None;
        }
        match TemplatedField::parse(key, &text, templates) {
            Ok(field) => Some(field),
            Err(error) => {
                reader.error(node.mark, &path, error.to_string());
                None
            }
        }
    }

    /// Parses `text` as the template of `field` (named in errors and logs).
    pub fn parse(
        field: &str,
        text: &str,
        templates: &Templates,
    ) -> Result<TemplatedField, dbwatch_template::Error> {
        if !text.contains("{{") {
            return Ok(TemplatedField {
                field: field.to_owned(),
                source: text.to_owned(),
                set: None,
            });
        }
        let mut set = (*templates.set).clone();
        set.parse(FIELD, field, text)?;
        Ok(TemplatedField {
            field: field.to_owned(),
            source: text.to_owned(),
            set: Some(Arc::new(set)),
        })
    }

    /// The text as written.
    pub fn source(&self) -> &str {
        &self.source
    }

    pub fn field(&self) -> &str {
        &self.field
    }

    /// The field rendered over the notice's Alertmanager data; on failure `fallback()`, the failure recorded
    /// on the notice.
    pub fn render(&self, notice: &impl TemplateInput, fallback: impl FnOnce() -> String) -> String {
        self.run(notice, fallback, Escape::None)
    }

    /// As [`TemplatedField::render`], HTML-escaping what actions print unless `safeHtml` (Alertmanager runs
    /// email bodies through `html/template`).
    pub fn render_html(
        &self,
        notice: &impl TemplateInput,
        fallback: impl FnOnce() -> String,
    ) -> String {
        self.run(notice, fallback, Escape::Html)
    }

    fn run(
        &self,
        notice: &impl TemplateInput,
        fallback: impl FnOnce() -> String,
        escape: Escape,
    ) -> String {
        let Some(set) = &self.set else {
            return self.source.clone();
        };
        let templating = notice.templating();
        let data = templating
            .data
            .get_or_init(|| notice.template_data())
            .clone();
        let options = Options { escape, ..OPTIONS };
        match set.execute(FIELD, &data, &[], &options) {
            Ok(text) => text,
            Err(error) => {
                templating.failures.borrow_mut().push(TemplateFailure {
                    field: self.field.clone(),
                    error: error.to_string(),
                });
                fallback()
            }
        }
    }
}

/// Reads `key` as [`crate::fields::plain`] does, for a field Alertmanager templates and dbwatch takes as
/// written (`why`: what it is read for at load); a template there is refused saying so, rather than sent as text.
pub fn untemplated(
    reader: &mut Reader<'_>,
    fields: &mut Fields<'_>,
    key: &'static str,
    why: &str,
) -> Option<String> {
    let (node, path) = fields.take(key)?;
    if node.is_null() {
        return None;
    }
    let text = reader.scalar(node, &path)?;
    if text.contains("{{") {
        reader.error(
            node.mark,
            &path,
            format!("a templated {key} is not supported by dbwatch ({why})"),
        );
        return None;
    }
    (!text.is_empty()).then_some(text)
}

/// `field` rendered, or `builtin()` when it is not set or its template fails: the one call most fields need.
pub fn render_or(
    field: &Option<TemplatedField>,
    notice: &impl TemplateInput,
    builtin: impl FnOnce() -> String,
) -> String {
    match field {
        Some(field) => field.render(notice, builtin),
        None => builtin(),
    }
}

/// A field whose template failed while rendering one notice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateFailure {
    pub field: String,
    pub error: String,
}

/// What templating keeps per notice: the template data, built once for all its fields, and the failures.
#[derive(Debug, Clone, Default)]
pub struct Templating {
    data: OnceCell<Value>,
    failures: RefCell<Vec<TemplateFailure>>,
}

/// What a template renders over: a notice (`render.rs`).
pub trait TemplateInput {
    fn templating(&self) -> &Templating;

    /// Alertmanager's template data for it ([`data`]); built once per notice.
    fn template_data(&self) -> Value;
}

impl Templating {
    /// Records a failure found after rendering (a rendered value the service cannot take), counted as a
    /// template's own.
    pub fn record(&self, field: &str, error: String) {
        self.failures.borrow_mut().push(TemplateFailure {
            field: field.to_owned(),
            error,
        });
    }

    /// The failures recorded so far, emptied.
    pub fn take_failures(&self) -> Vec<TemplateFailure> {
        std::mem::take(&mut *self.failures.borrow_mut())
    }
}

/// What Alertmanager's template data is made of.
pub struct DataParts<'a, I> {
    pub receiver: &'a str,
    pub status: &'a str,
    pub alerts: I,
    pub group_labels: &'a BTreeMap<String, String>,
    pub common_labels: &'a BTreeMap<String, String>,
    pub common_annotations: &'a BTreeMap<String, String>,
    pub external_url: &'a str,
}

/// Alertmanager's template data (`template.Data`).
pub fn data<'a>(parts: DataParts<'a, impl Iterator<Item = &'a AlertRecord>>) -> Value {
    let alerts: Vec<Value> = parts.alerts.map(alert).collect();
    Value::object(Data {
        receiver: Value::from(parts.receiver),
        status: Value::from(parts.status),
        alerts: Value::object(Alerts(alerts)),
        group_labels: kv(parts.group_labels),
        common_labels: kv(parts.common_labels),
        common_annotations: kv(parts.common_annotations),
        external_url: Value::from(parts.external_url),
    })
}

fn alert(record: &AlertRecord) -> Value {
    Value::object(Alert {
        status: Value::from(if record.ends_at.is_some() {
            "resolved"
        } else {
            "firing"
        }),
        labels: kv(&record.labels),
        annotations: kv(&record.annotations),
        starts_at: Time::from_unix_millis(record.starts_at).value(),
        // A firing alert has no end yet: Go's zero time, which `.EndsAt.IsZero` tells.
        ends_at: record
            .ends_at
            .map_or_else(Time::zero, Time::from_unix_millis)
            .value(),
        fingerprint: Value::from(record.fingerprint.as_str()),
    })
}

fn kv(map: &BTreeMap<String, String>) -> Value {
    Value::object(Kv(map
        .iter()
        .map(|(key, value)| (key.clone(), Value::from(value.as_str())))
        .collect()))
}

struct Data {
    receiver: Value,
    status: Value,
    alerts: Value,
    group_labels: Value,
    common_labels: Value,
    common_annotations: Value,
    external_url: Value,
}

impl Object for Data {
    fn type_name(&self) -> &str {
        "*template.Data"
    }

    fn field(&self, name: &str) -> Option<Value> {
        Some(match name {
            "Receiver" => self.receiver.clone(),
            "Status" => self.status.clone(),
            "Alerts" => self.alerts.clone(),
            "GroupLabels" => self.group_labels.clone(),
            "CommonLabels" => self.common_labels.clone(),
            "CommonAnnotations" => self.common_annotations.clone(),
            "ExternalURL" => self.external_url.clone(),
            _ => return None,
        })
    }

    fn display(&self, out: &mut String) {
        out.push_str("&{");
        for (index, value) in [
            &self.receiver,
            &self.status,
            &self.alerts,
            &self.group_labels,
            &self.common_labels,
            &self.common_annotations,
            &self.external_url,
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

struct Alert {
    status: Value,
    labels: Value,
    annotations: Value,
    starts_at: Value,
    ends_at: Value,
    fingerprint: Value,
}

impl Object for Alert {
    fn type_name(&self) -> &str {
        "template.Alert"
    }

    fn field(&self, name: &str) -> Option<Value> {
        Some(match name {
            "Status" => self.status.clone(),
            "Labels" => self.labels.clone(),
            "Annotations" => self.annotations.clone(),
            "StartsAt" => self.starts_at.clone(),
            "EndsAt" => self.ends_at.clone(),
            // dbwatch's alerts carry no link to a query UI.
            "GeneratorURL" => Value::from(""),
            "Fingerprint" => self.fingerprint.clone(),
            _ => return None,
        })
    }

    fn display(&self, out: &mut String) {
        out.push('{');
        for (index, value) in [
            &self.status,
            &self.labels,
            &self.annotations,
            &self.starts_at,
            &self.ends_at,
            &Value::from(""),
            &self.fingerprint,
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

/// `template.Alerts`: a slice with `Firing` and `Resolved`.
struct Alerts(Vec<Value>);

impl Alerts {
    fn with_status(&self, status: &str) -> Value {
        Value::list(
            self.0
                .iter()
                .filter(|alert| match alert {
                    Value::Object(object) => object
                        .field("Status")
                        .is_some_and(|value| value.as_str() == Some(status)),
                    _ => false,
                })
                .cloned()
                .collect(),
        )
    }
}

impl Object for Alerts {
    fn type_name(&self) -> &str {
        "template.Alerts"
    }

    fn method(&self, name: &str, args: &[Value]) -> Option<Result<Value, String>> {
        let status = match name {
            "Firing" => "firing",
            "Resolved" => "resolved",
            _ => return None,
        };
        Some(no_args(name, args).map(|()| self.with_status(status)))
    }

    fn list(&self) -> Option<&[Value]> {
        Some(&self.0)
    }

    fn display(&self, out: &mut String) {
        dbwatch_template::fmt_list(&self.0, out);
    }
}

fn no_args(name: &str, args: &[Value]) -> Result<(), String> {
    if args.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "wrong number of args for {name}: want 0 got {}",
            args.len()
        ))
    }
}

/// `template.KV`: a string map with `SortedPairs` (`alertname` first, then by name), `Names`, `Values` and
/// `Remove`.
struct Kv(BTreeMap<String, Value>);

impl Kv {
    fn sorted_pairs(&self) -> Vec<(&str, &Value)> {
        let mut pairs: Vec<(&str, &Value)> = Vec::with_capacity(self.0.len());
        if let Some(name) = self.0.get("alertname") {
            pairs.push(("alertname", name));
        }
        pairs.extend(
            self.0
                .iter()
                .filter(|(key, _)| key.as_str() != "alertname")
                .map(|(key, value)| (key.as_str(), value)),
        );
        pairs
    }
}

impl Object for Kv {
    fn type_name(&self) -> &str {
        "template.KV"
    }

    fn method(&self, name: &str, args: &[Value]) -> Option<Result<Value, String>> {
        Some(match name {
            "SortedPairs" => no_args(name, args).map(|()| {
                Value::object(Pairs(
                    self.sorted_pairs()
                        .into_iter()
                        .map(|(key, value)| {
                            Value::object(Pair {
                                name: Value::from(key),
                                value: value.clone(),
                            })
                        })
                        .collect(),
                ))
            }),
            "Names" => no_args(name, args).map(|()| {
                Value::list(
                    self.sorted_pairs()
                        .into_iter()
                        .map(|(key, _)| Value::from(key))
                        .collect(),
                )
            }),
            "Values" => no_args(name, args).map(|()| {
                Value::list(
                    self.sorted_pairs()
                        .into_iter()
                        .map(|(_, value)| value.clone())
                        .collect(),
                )
            }),
            "Remove" => match args {
                [keys] => match keys.as_list() {
                    Some(keys) => {
                        let drop: Vec<&str> = keys.iter().filter_map(Value::as_str).collect();
                        Ok(Value::object(Kv(self
                            .0
                            .iter()
                            .filter(|(key, _)| !drop.contains(&key.as_str()))
                            .map(|(key, value)| (key.clone(), value.clone()))
                            .collect())))
                    }
                    None => Err(format!(
                        "wrong type for value; expected []string; got {}",
                        keys.type_name()
                    )),
                },
                _ => Err(format!(
                    "wrong number of args for Remove: want 1 got {}",
                    args.len()
                )),
            },
            _ => return None,
        })
    }

    fn map(&self) -> Option<&BTreeMap<String, Value>> {
        Some(&self.0)
    }

    fn field(&self, name: &str) -> Option<Value> {
        self.0.get(name).cloned()
    }

    fn display(&self, out: &mut String) {
        dbwatch_template::fmt_map(&self.0, out);
    }
}

/// `template.Pairs`: a slice of pairs with `Names` and `Values`.
struct Pairs(Vec<Value>);

impl Object for Pairs {
    fn type_name(&self) -> &str {
        "template.Pairs"
    }

    fn method(&self, name: &str, args: &[Value]) -> Option<Result<Value, String>> {
        let field = match name {
            "Names" => "Name",
            "Values" => "Value",
            _ => return None,
        };
        Some(no_args(name, args).map(|()| {
            Value::list(
                self.0
                    .iter()
                    .filter_map(|pair| match pair {
                        Value::Object(object) => object.field(field),
                        _ => None,
                    })
                    .collect(),
            )
        }))
    }

    fn list(&self) -> Option<&[Value]> {
        Some(&self.0)
    }

    fn display(&self, out: &mut String) {
        dbwatch_template::fmt_list(&self.0, out);
    }
}

struct Pair {
    name: Value,
    value: Value,
}

impl Object for Pair {
    fn type_name(&self) -> &str {
        "template.Pair"
    }

    fn field(&self, name: &str) -> Option<Value> {
        match name {
            "Name" => Some(self.name.clone()),
            "Value" => Some(self.value.clone()),
            _ => None,
        }
    }

    fn display(&self, out: &mut String) {
        out.push('{');
        dbwatch_template::fmt_value(&self.name, out);
        out.push(' ');
        dbwatch_template::fmt_value(&self.value, out);
        out.push('}');
    }
}

#[cfg(test)]
mod tests;
