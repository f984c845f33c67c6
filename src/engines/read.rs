//! What every engine's reading and validation share: values with their position, the sink validation problems
//! go to, and the keys most engines have (`connection`, `collectors`, `password`/`password_file`).
//!
//! It sits here, below `config`, so that `config` uses the engines and no engine uses `config`.

// A build with no engine at all (`cargo hack --each-feature` checks it) reads no engine's keys.
#![cfg_attr(
    not(any(
        feature = "postgres",
        feature = "mysql",
        feature = "mongodb",
        feature = "cassandra",
        feature = "dynamodb"
    )),
    allow(dead_code)
)]

use std::path::PathBuf;
use std::time::Duration;

use dbwatch_secret::{PasswordSource, Secret};
use dbwatch_yaml::node::Mark;
use dbwatch_yaml::read::{Fields, Reader};
use dbwatch_yaml::ConfigError;

/// A value with where it was written, for validation messages.
#[derive(Debug, Clone, PartialEq)]
pub struct Spanned<T> {
    pub value: T,
    pub mark: Mark,
    pub path: String,
}

/// Where validation problems go; every problem names its line, column and key path.
pub struct Errors<'a>(pub &'a mut Vec<ConfigError>);

impl Errors<'_> {
    pub fn at(&mut self, mark: Mark, path: &str, message: impl Into<String>) {
        self.0.push(ConfigError {
            line: mark.line,
            column: mark.column,
            path: path.to_owned(),
            message: message.into(),
        });
    }
}

/// What validation of an engine's part knows of the target around it.
#[derive(Debug, Clone, Copy)]
pub struct TargetLimits<'a> {
    pub name: &'a str,
    /// The poll's client-side deadline: every engine's own timeouts stay inside it.
    pub timeout: Duration,
}

/// A duration under `key`, with its position.
pub fn spanned_duration(
    reader: &mut Reader<'_>,
    fields: &mut Fields<'_>,
    key: &'static str,
) -> Option<Spanned<Duration>> {
    let (node, path) = fields.take(key)?;
    let value = reader.duration(node, &path)?;
    Some(Spanned {
        value,
        mark: node.mark,
        path,
    })
}

/// A zero duration is refused where a timeout is meant.
pub fn check_positive(errors: &mut Errors<'_>, duration: &Spanned<Duration>) {
    if duration.value.is_zero() {
        errors.at(duration.mark, &duration.path, "must be longer than 0s");
    }
}

/// `password` or `password_file`, never both.
pub fn read_password(
    reader: &mut Reader<'_>,
    fields: &mut Fields<'_>,
    mark: Mark,
) -> Option<PasswordSource> {
    let inline = fields.scalar(reader, "password").map(Secret::new);
    let file = fields.string(reader, "password_file").map(PathBuf::from);
    match (inline, file) {
        (Some(_), Some(_)) => {
            reader.error(
                mark,
                fields.path(),
                "password and password_file are both set; keep one",
            );
            None
        }
        (Some(secret), None) => Some(PasswordSource::Inline(secret)),
        (None, Some(path)) => Some(PasswordSource::File(path)),
        (None, None) => None,
    }
}

/// The `connection:` mapping of a target, reported when missing.
pub fn connection_fields<'n>(
    reader: &mut Reader<'_>,
    fields: &mut Fields<'n>,
    target_mark: Mark,
    hint: &str,
) -> Option<(Fields<'n>, Mark)> {
    let Some((node, path)) = fields.take("connection") else {
        reader.error(
            target_mark,
            &format!("{}.connection", fields.path()),
            format!("missing key connection: {hint}"),
        );
        return None;
    };
    Some((Fields::of(reader, node, &path)?, node.mark))
}

/// The optional `collectors:` mapping of a target.
pub fn collector_fields<'n>(
    reader: &mut Reader<'_>,
    fields: &mut Fields<'n>,
) -> Option<Fields<'n>> {
    let (node, path) = fields.take("collectors")?;
    Fields::of(reader, node, &path)
}
