//! Typed reading of a [`Node`](crate::node::Node) tree, collecting every problem instead of stopping at
//! the first, each with its position and key path (`targets[2].timeout`).
//!
//! `${VAR}` and `${VAR:-default}` are expanded inside scalar values, after parsing, so an environment value can
//! never change the document's structure and an unset variable is reported at the key that uses it.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::node::{Key, Mark, Node, Value};
use crate::ConfigError;

/// Looks up an environment variable. Taken as an argument so tests never touch the process environment.
pub type EnvLookup<'a> = &'a dyn Fn(&str) -> Option<String>;

pub struct Reader<'a> {
    /// `None`: scalars are taken literally, for formats defined without `${VAR}` (the exporter-toolkit's web
    /// configuration, where a `$` belongs to a bcrypt hash).
    env: Option<EnvLookup<'a>>,
    pub errors: Vec<ConfigError>,
}

impl<'a> Reader<'a> {
    pub fn new(env: EnvLookup<'a>) -> Self {
        Reader {
            env: Some(env),
            errors: Vec::new(),
        }
    }

    /// A reader that expands nothing: every scalar is the text as written.
    pub fn literal() -> Reader<'static> {
        Reader {
            env: None,
            errors: Vec::new(),
        }
    }

    pub fn error(&mut self, mark: Mark, path: &str, message: impl Into<String>) {
        self.errors.push(ConfigError {
            line: mark.line,
            column: mark.column,
            path: path.to_owned(),
            message: message.into(),
        });
    }

    /// The scalar's text with `${...}` expanded.
    pub fn scalar(&mut self, node: &Node, path: &str) -> Option<String> {
        let Value::Scalar { text, .. } = &node.value else {
            self.error(
                node.mark,
                path,
                format!("expected a scalar, found {}", node.kind()),
            );
            return None;
        };
        let Some(env) = self.env else {
            return Some(text.clone());
        };
        match interpolate(text, env) {
            Ok(expanded) => Some(expanded),
            Err(message) => {
                self.error(node.mark, path, message);
                None
            }
        }
    }

    pub fn string(&mut self, node: &Node, path: &str) -> Option<String> {
        if node.is_null() {
            self.error(node.mark, path, "expected a string, found null");
            return None;
        }
        let text = self.scalar(node, path)?;
        if text.is_empty() {
            self.error(node.mark, path, "must not be empty");
            return None;
        }
        Some(text)
    }

    pub fn integer<T: TryFrom<u64>>(&mut self, node: &Node, path: &str, what: &str) -> Option<T> {
        let text = self.scalar(node, path)?;
        let parsed = text
            .trim()
            .parse::<u64>()
            .ok()
            .and_then(|value| T::try_from(value).ok());
        if parsed.is_none() {
            self.error(node.mark, path, format!("expected {what}, found {text:?}"));
        }
        parsed
    }

    pub fn boolean(&mut self, node: &Node, path: &str) -> Option<bool> {
        let text = self.scalar(node, path)?;
        match text.as_str() {
            "true" | "True" | "TRUE" => Some(true),
            "false" | "False" | "FALSE" => Some(false),
            _ => {
                self.error(
                    node.mark,
                    path,
                    format!("expected true or false, found {text:?}"),
                );
                None
            }
        }
    }

    /// A duration such as `15s`, `500ms`, `1m30s`; a bare number is refused, its unit being ambiguous.
    pub fn duration(&mut self, node: &Node, path: &str) -> Option<Duration> {
        let text = self.scalar(node, path)?;
        match humantime::parse_duration(text.trim()) {
            Ok(duration) => Some(duration),
            Err(error) => {
                self.error(
                    node.mark,
                    path,
                    format!(
                        "invalid duration {text:?}: {error} (write it like 15s, 500ms or 1m30s)"
                    ),
                );
                None
            }
        }
    }

    /// A mapping of label names to string values.
    pub fn labels(&mut self, node: &Node, path: &str) -> Option<BTreeMap<String, String>> {
        let mut fields = Fields::of(self, node, path)?;
        let mut labels = BTreeMap::new();
        for (key, value) in fields.drain() {
            let child = format!("{path}.{}", key.name);
            if let Some(text) = self.scalar(value, &child) {
                labels.insert(key.name.clone(), text);
            }
        }
        Some(labels)
    }

    pub fn sequence<'n>(&mut self, node: &'n Node, path: &str) -> Option<&'n [Node]> {
        match &node.value {
            Value::Sequence(items) => Some(items),
            _ if node.is_null() => Some(&[]),
            _ => {
                self.error(
                    node.mark,
                    path,
                    format!("expected a list, found {}", node.kind()),
                );
                None
            }
        }
    }
}

/// The keys of one mapping, taken one by one; whatever was not taken is reported as unknown.
pub struct Fields<'n> {
    entries: &'n [(Key, Node)],
    taken: Vec<bool>,
    known: Vec<&'static str>,
    path: String,
    drained: bool,
}

impl<'n> Fields<'n> {
    /// The fields of a mapping node; reports a non-mapping and duplicate keys.
    pub fn of(reader: &mut Reader<'_>, node: &'n Node, path: &str) -> Option<Fields<'n>> {
        let entries: &'n [(Key, Node)] = match &node.value {
            Value::Mapping(entries) => entries,
            _ if node.is_null() => &[],
            _ => {
                reader.error(
                    node.mark,
                    path,
                    format!("expected a mapping, found {}", node.kind()),
                );
                return None;
            }
        };
        for (index, (key, _)) in entries.iter().enumerate() {
            if entries[..index]
                .iter()
                .any(|(earlier, _)| earlier.name == key.name)
            {
                reader.error(key.mark, &join(path, &key.name), "duplicate key");
            }
        }
        Some(Fields {
            entries,
            taken: vec![false; entries.len()],
            known: Vec::new(),
            path: path.to_owned(),
            drained: false,
        })
    }

    /// The node under `key` and its path, when present and not null.
    pub fn take(&mut self, key: &'static str) -> Option<(&'n Node, String)> {
        self.known.push(key);
        let index = self
            .entries
            .iter()
            .position(|(entry, _)| entry.name == key)?;
        self.taken[index] = true;
        let node = &self.entries[index].1;
        if node.is_null() {
            return None;
        }
        Some((node, join(&self.path, key)))
    }

    /// A string under `key`, reported and `None` when it has the wrong shape.
    pub fn string(&mut self, reader: &mut Reader<'_>, key: &'static str) -> Option<String> {
        let (node, path) = self.take(key)?;
        reader.string(node, &path)
    }

    /// A scalar kept as written (an empty string allowed), e.g. a password.
    pub fn scalar(&mut self, reader: &mut Reader<'_>, key: &'static str) -> Option<String> {
        let (node, path) = self.take(key)?;
        reader.scalar(node, &path)
    }

    pub fn duration(&mut self, reader: &mut Reader<'_>, key: &'static str) -> Option<Duration> {
        let (node, path) = self.take(key)?;
        reader.duration(node, &path)
    }

    pub fn boolean(&mut self, reader: &mut Reader<'_>, key: &'static str) -> Option<bool> {
        let (node, path) = self.take(key)?;
        reader.boolean(node, &path)
    }

    pub fn integer<T: TryFrom<u64>>(
        &mut self,
        reader: &mut Reader<'_>,
        key: &'static str,
        what: &str,
    ) -> Option<T> {
        let (node, path) = self.take(key)?;
        reader.integer(node, &path, what)
    }

    pub fn number(&mut self, reader: &mut Reader<'_>, key: &'static str) -> Option<f64> {
        let (node, path) = self.take(key)?;
        let text = reader.scalar(node, &path)?;
        match text.trim().parse::<f64>() {
            Ok(value) if value.is_finite() && value >= 0.0 => Some(value),
            _ => {
                reader.error(
                    node.mark,
                    &path,
                    format!("expected a non-negative number, found {text:?}"),
                );
                None
            }
        }
    }

    /// A list of strings.
    pub fn strings(&mut self, reader: &mut Reader<'_>, key: &'static str) -> Option<Vec<String>> {
        let (node, path) = self.take(key)?;
        let items = reader.sequence(node, &path)?;
        let mut values = Vec::with_capacity(items.len());
        for (index, item) in items.iter().enumerate() {
            if let Some(value) = reader.string(item, &format!("{path}[{index}]")) {
                values.push(value);
            }
        }
        Some(values)
    }

    /// Every entry, for mappings with free-form keys such as labels.
    pub fn drain(&mut self) -> impl Iterator<Item = (&'n Key, &'n Node)> {
        self.drained = true;
        self.entries.iter().map(|(key, node)| (key, node))
    }

    /// The position of the mapping's first key, or of nothing when it is empty.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// Reports every key that was never taken.
    pub fn finish(self, reader: &mut Reader<'_>) {
        if self.drained {
            return;
        }
        for ((key, _), taken) in self.entries.iter().zip(&self.taken) {
            if *taken {
                continue;
            }
            let mut known = self.known.clone();
            known.sort_unstable();
            known.dedup();
            reader.error(
                key.mark,
                &join(&self.path, &key.name),
                format!(
                    "unknown key {:?}, expected one of: {}",
                    key.name,
                    known.join(", ")
                ),
            );
        }
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

/// Expands `${VAR}` and `${VAR:-default}`; `$$` is a literal `$`.
pub fn interpolate(text: &str, env: EnvLookup<'_>) -> Result<String, String> {
    if !text.contains('$') {
        return Ok(text.to_owned());
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(dollar) = rest.find('$') {
        out.push_str(&rest[..dollar]);
        let after = &rest[dollar + 1..];
        if let Some(stripped) = after.strip_prefix('$') {
            out.push('$');
            rest = stripped;
            continue;
        }
        let Some(body_start) = after.strip_prefix('{') else {
            out.push('$');
            rest = after;
            continue;
        };
        // The value may be a secret (an inline password that happens to hold `${`), so the errors locate the
        // problem by character position and never echo the value or the text inside the braces.
        let position = text[..text.len() - rest.len() + dollar].chars().count() + 1;
        let Some(end) = body_start.find('}') else {
            return Err(format!(
                "unterminated ${{...}}: the ${{ at character {position} of the value has no closing }} (write $$ for a literal $)"
            ));
        };
        let body = &body_start[..end];
        let (name, default) = match body.split_once(":-") {
            Some((name, default)) => (name, Some(default)),
            None => (body, None),
        };
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(format!(
                "invalid variable name in the ${{...}} at character {position} of the value: names are letters, digits and _ (write $$ for a literal $)"
            ));
        }
        match (env(name), default) {
            (Some(value), _) if !(value.is_empty() && default.is_some()) => out.push_str(&value),
            (_, Some(default)) => out.push_str(default),
            (_, None) => return Err(format!("environment variable {name} is not set")),
        }
        rest = &body_start[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "PORT" => Some("15432".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    #[test]
    fn interpolation_expands_defaults_and_escapes() {
        assert_eq!(interpolate("${PORT}", &env).as_deref(), Ok("15432"));
        assert_eq!(
            interpolate("h:${MISSING:-5432}", &env).as_deref(),
            Ok("h:5432")
        );
        assert_eq!(interpolate("${EMPTY:-x}", &env).as_deref(), Ok("x"));
        assert_eq!(interpolate("$$HOME $1", &env).as_deref(), Ok("$HOME $1"));
        assert_eq!(
            interpolate("${MISSING}", &env),
            Err("environment variable MISSING is not set".to_owned())
        );
        assert!(interpolate("${PORT", &env).is_err());
    }

    #[test]
    fn errors_locate_the_problem_without_echoing_the_value() {
        for (secret, expected) in [
            (
                "hunter2${unterminated-s3cret",
                "unterminated ${...}: the ${ at character 8 of the value has no closing }",
            ),
            (
                "ünïcode${bad name s3cret}",
                "invalid variable name in the ${...} at character 8 of the value",
            ),
            (
                "${} hunter2-s3cret",
                "invalid variable name in the ${...} at character 1",
            ),
            ("$${x} ${-s3cret}", "at character 7 of the value"),
        ] {
            let error = interpolate(secret, &env).expect_err("refused");
            assert!(error.contains(expected), "{secret:?}: {error}");
            assert!(!error.contains("s3cret"), "{secret:?}: {error}");
            assert!(!error.contains("hunter2"), "{secret:?}: {error}");
        }
    }
}
