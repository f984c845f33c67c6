//! The parsed form of a template: Go's `text/template/parse` nodes, each with its byte offset in the source
//! so that an error can name line and column. The parser builds it and the executor walks it; it imports
//! neither.

use std::sync::Arc;

use crate::value::Value;

/// One parsed template: a named list of nodes and the source it came from.
#[derive(Debug)]
pub struct Tree {
    pub name: String,
    /// The file (or field) the template was parsed from, named in errors.
    pub source_name: Arc<str>,
    pub source: Arc<str>,
    pub nodes: Vec<Node>,
}

impl Tree {
    /// Go's `parse.IsEmptyTree`: only whitespace text (a file of `define`s). An empty tree does not replace
    /// a template of the same name.
    pub fn is_empty(&self) -> bool {
        self.nodes.iter().all(|node| match node {
            Node::Text(text) => text.trim().is_empty(),
            _ => false,
        })
    }
}

#[derive(Debug)]
pub enum Node {
    Text(String),
    /// `{{ pipeline }}`: printed unless it declares or assigns.
    Action(Pipe),
    If(Branch),
    With(Branch),
    Range(Branch),
    Template {
        pos: usize,
        name: String,
        pipe: Option<Pipe>,
    },
    Break,
    Continue,
}

/// The shared shape of `if`, `with` and `range`.
#[derive(Debug)]
pub struct Branch {
    pub pos: usize,
    pub pipe: Pipe,
    pub list: Vec<Node>,
    pub else_list: Option<Vec<Node>>,
}

#[derive(Debug)]
pub struct Pipe {
    pub pos: usize,
    /// Declared (`:=`) or assigned (`=`) variables, without the `$`.
    pub decl: Vec<String>,
    pub is_assign: bool,
    pub cmds: Vec<Command>,
}

#[derive(Debug)]
pub struct Command {
    pub pos: usize,
    pub args: Vec<Arg>,
}

#[derive(Debug)]
pub enum Arg {
    /// `.A.B`; empty for `.` itself.
    Field(Vec<String>),
    /// `$name.A.B` (`$` alone is named "").
    Variable(String, Vec<String>),
    /// `(pipeline).A.B`.
    Chain(Box<Pipe>, Vec<String>),
    /// A parenthesized pipeline.
    Pipe(Box<Pipe>),
    /// A function name.
    Function(String),
    Literal(Value),
    Nil,
}
