//! The parsed form of a template and the values it computes with, shared by the parser, the executor and
//! the functions; it imports none of them.

use std::collections::BTreeMap;

use crate::labels::Metric;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct TemplateError(pub String);

#[derive(Debug, Clone, Copy)]
pub struct TemplateData<'a> {
    /// The result sample's labels (`$labels`), read in place: most templates read one or two of them.
    pub labels: &'a Metric,
    pub external_labels: &'a BTreeMap<String, String>,
    pub external_url: &'a str,
    pub value: f64,
}

#[derive(Debug, Clone)]
pub(super) enum Node {
    Text(String),
    Print(Pipeline),
    Declare(String, Pipeline),
}

#[derive(Debug, Clone)]
pub(super) struct Pipeline {
    pub(super) commands: Vec<Command>,
}

#[derive(Debug, Clone)]
pub(super) struct Command {
    pub(super) args: Vec<Operand>,
}

#[derive(Debug, Clone)]
pub(super) enum Operand {
    Function(Function),
    /// `$name` (`$` alone is the root) followed by fields.
    Variable(String, Vec<String>),
    /// `.` followed by fields.
    Dot(Vec<String>),
    String(String),
    Int(i64),
    Float(f64),
    Bool(bool),
    Nil,
    Pipeline(Box<Pipeline>, Vec<String>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Function {
    Humanize,
    Humanize1024,
    HumanizeDuration,
    HumanizePercentage,
    HumanizeTimestamp,
    Printf,
    Print,
    ToUpper,
    ToLower,
    Title,
    StripPort,
    StripDomain,
    Index,
    Len,
}

impl Function {
    pub(super) fn from_name(name: &str) -> Option<Function> {
        Some(match name {
            "humanize" => Function::Humanize,
            "humanize1024" => Function::Humanize1024,
            "humanizeDuration" => Function::HumanizeDuration,
            "humanizePercentage" => Function::HumanizePercentage,
            "humanizeTimestamp" => Function::HumanizeTimestamp,
            "printf" => Function::Printf,
            "print" => Function::Print,
            "toUpper" => Function::ToUpper,
            "toLower" => Function::ToLower,
            "title" => Function::Title,
            "stripPort" => Function::StripPort,
            "stripDomain" => Function::StripDomain,
            "index" => Function::Index,
            "len" => Function::Len,
            _ => return None,
        })
    }

    /// (minimum, maximum) arguments, the piped value included.
    pub(super) fn arity(self) -> (usize, usize) {
        match self {
            Function::Printf => (1, usize::MAX),
            Function::Print => (0, usize::MAX),
            Function::Index => (2, 2),
            _ => (1, 1),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub(super) enum TValue {
    String(String),
    Float(f64),
    Int(i64),
    Bool(bool),
    Map(BTreeMap<String, String>),
    Root,
    Nil,
}

impl TValue {
    pub(super) fn type_name(&self) -> &'static str {
        match self {
            TValue::String(_) => "string",
            TValue::Float(_) => "float64",
            TValue::Int(_) => "int",
            TValue::Bool(_) => "bool",
            TValue::Map(_) => "map[string]string",
            TValue::Root => "struct",
            TValue::Nil => "nil",
        }
    }
}
