//! The one error type of parsing and executing, with where it happened.

/// What went wrong, for callers that react to a kind (a caller refusing a function by name, a test
/// checking that a cap was hit).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ErrorKind {
    Parse,
    /// A function neither built in nor in the caller's registry: Go refuses it at parse time.
    UndefinedFunction(String),
    Exec,
    /// The output (or a value computed on the way) passed [`crate::Limits::max_output`].
    OutputLimit,
    /// Templates called templates past [`crate::Limits::max_depth`].
    DepthLimit,
    /// `range` iterations passed [`crate::Limits::max_range_iterations`].
    RangeLimit,
}

/// A parse or execution error, naming the file (or field) the template came from, line and column:
/// `template: slack.tmpl:3:14: executing "slack.title" at <.Nope>: can't evaluate field Nope in type ...`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("template: {source_name}:{line}:{column}: {message}")]
pub struct Error {
    pub source_name: String,
    /// 1-based; 0 when the error has no place (a template name that is not defined, asked by the caller).
    pub line: usize,
    pub column: usize,
    pub kind: ErrorKind,
    pub message: String,
}

impl Error {
    pub(crate) fn at(
        source_name: &str,
        source: &str,
        pos: usize,
        kind: ErrorKind,
        message: impl Into<String>,
    ) -> Error {
        let (line, column) = line_column(source, pos);
        Error {
            source_name: source_name.to_owned(),
            line,
            column,
            kind,
            message: message.into(),
        }
    }
}

/// 1-based line and column (in characters) of byte offset `pos`.
pub(crate) fn line_column(source: &str, pos: usize) -> (usize, usize) {
    let mut pos = pos.min(source.len());
    while !source.is_char_boundary(pos) {
        pos -= 1;
    }
    let before = &source[..pos];
    let line = 1 + before.matches('\n').count();
    let line_start = before.rfind('\n').map_or(0, |index| index + 1);
    (line, 1 + before[line_start..].chars().count())
}
