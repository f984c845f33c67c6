//! Go's `text/template`, as Prometheus rule templates and Alertmanager notification templates use it.
//!
//! ```text
//!  source ──► parse (parse.rs: lexer, trim markers, comments, defines; functions and variables checked)
//!         ──► Tree (tree.rs) in a named Set ──► exec.rs over a Value (value.rs) ──► String, bounded by Limits
//! ```
//!
//! Supported: text and actions with `{{-`/`-}}` trimming and `{{/* comments */}}`; `if`/`else if`/`else`,
//! `range` (slices, maps in key order, `$i, $e :=`, `else`, `break`, `continue`), `with`/`else with`/`else`,
//! `define`, `template "name" pipeline`, `block`; variables (`:=`, `=`, scoped to their control structure);
//! pipelines, parenthesized pipelines, field chains, and methods with arguments on caller-defined objects
//! ([`Object`]); Go's truth; the builtins `and or not len index slice print printf println eq ne lt le gt ge
//! html js urlquery` with Go's semantics (lazy `and`/`or`, `eq` against several values, comparisons of
//! mixed `int`/`float64` refused as Go refuses them). Functions beyond the builtins come from the caller
//! ([`Funcs`]); an unknown function is a parse error, as in Go.
//!
//! Execution is bounded ([`Limits`]): the output (and any string a function returns), the depth of template
//! calls and the number of `range` iterations; passing one is an error of its own kind, never a panic or a
//! hang. Errors name the file (or field) the template came from, line and column.
//!
//! Not supported: complex numbers, `call`, channels, `range` over an integer (Go 1.22, after the
//! Alertmanager and Prometheus versions dbwatch matches), custom delimiters.

mod builtins;
mod error;
mod exec;
pub mod gofmt;
pub mod gotime;
mod parse;
mod tree;
mod value;

use std::collections::HashMap;
use std::sync::Arc;

pub use builtins::{html_escape, js_escape, query_escape};
pub use error::{Error, ErrorKind};
pub use gofmt::{fmt_list, fmt_map, fmt_value, print_value};
pub use value::{Object, Value};

/// A function callable from templates: its arguments (the piped value last), its result or an error message.
pub type Func = Arc<dyn Fn(&[Value]) -> Result<Value, String> + Send + Sync>;

/// The caller's functions, by name (Go's `FuncMap`). A name shadows a builtin of the same name.
#[derive(Clone, Default)]
pub struct Funcs {
    map: HashMap<String, Func>,
}

impl Funcs {
    pub fn new() -> Funcs {
        Funcs::default()
    }

    pub fn add(
        &mut self,
        name: &str,
        function: impl Fn(&[Value]) -> Result<Value, String> + Send + Sync + 'static,
    ) -> &mut Funcs {
        self.map.insert(name.to_owned(), Arc::new(function));
        self
    }

    pub fn get(&self, name: &str) -> Option<&Func> {
        self.map.get(name)
    }

    pub fn contains(&self, name: &str) -> bool {
        self.map.contains_key(name) || builtins::is_builtin(name)
    }
}

impl std::fmt::Debug for Funcs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut names: Vec<&String> = self.map.keys().collect();
        names.sort();
        f.debug_struct("Funcs").field("names", &names).finish()
    }
}

/// What a missing map key gives (Go's `missingkey` option).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MissingKey {
    /// Go's default: the invalid value, printed `<no value>` (Alertmanager).
    #[default]
    Invalid,
    /// The zero value, `""` for the string maps templates see (Prometheus's `missingkey=zero`).
    Zero,
}

/// How printed values are escaped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Escape {
    #[default]
    None,
    /// Every value an action prints is HTML-escaped unless it is [`Value::Html`] (`safeHtml`): the text-context
    /// part of Go's `html/template`, which Alertmanager's email bodies are executed with.
    Html,
}

/// Bounds on one execution, so that a hostile or mistaken template cannot exhaust memory or time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Bytes of output, and of any string a function returns; also a tenth of the budget of all strings
    /// computed (so that a loop building strings it never prints still ends).
    pub max_output: usize,
    /// Nested `{{template}}` calls.
    pub max_depth: usize,
    /// `range` iterations in the whole execution.
    pub max_range_iterations: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_output: 1 << 20,
            max_depth: 100,
            max_range_iterations: 100_000,
        }
    }
}

/// How a template runs.
#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    pub limits: Limits,
    pub missing_key: MissingKey,
    pub escape: Escape,
}

/// A set of named templates sharing functions (Go's associated templates): each parsed source adds its
/// top-level template under the name given and every `define` and `block` under theirs.
#[derive(Clone, Debug)]
pub struct Set {
    templates: HashMap<String, Arc<tree::Tree>>,
    funcs: Arc<Funcs>,
    variables: Arc<[String]>,
}

impl Set {
    pub fn new(funcs: Funcs) -> Set {
        Set {
            templates: HashMap::new(),
            funcs: Arc::new(funcs),
            variables: Arc::from(Vec::new()),
        }
    }

    /// Variables (without `$`) the caller declares before every execution, as Prometheus declares `$labels`.
    pub fn with_variables(mut self, names: &[&str]) -> Set {
        self.variables = names.iter().map(|name| (*name).to_owned()).collect();
        self
    }

    /// Parses `text` as the template `name`; `source_name` (a file, a field) is what errors name. Defined
    /// templates replace those of the same name, except that an empty body does not replace a non-empty one
    /// (Go's rule, so that a file of `define`s does not blank a template named like it).
    pub fn parse(&mut self, name: &str, source_name: &str, text: &str) -> Result<(), Error> {
        let funcs = self.funcs.clone();
        let is_function = move |name: &str| funcs.contains(name);
        let parsed = parse::parse(name, source_name, text, &is_function, &self.variables)?;
        for tree in parsed
            .defined
            .into_iter()
            .chain(std::iter::once(parsed.top))
        {
            if tree.is_empty() && self.templates.contains_key(&tree.name) {
                continue;
            }
            self.templates.insert(tree.name.clone(), Arc::new(tree));
        }
        Ok(())
    }

    pub fn contains(&self, name: &str) -> bool {
        self.templates.contains_key(name)
    }

    /// The names defined, sorted.
    pub fn names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self.templates.keys().map(String::as_str).collect();
        names.sort_unstable();
        names
    }

    /// Runs the template `name` with `data` as `.` and `$`, and the declared variables' values.
    pub fn execute(
        &self,
        name: &str,
        data: &Value,
        variables: &[(&str, Value)],
        options: &Options,
    ) -> Result<String, Error> {
        exec::execute(self, name, data, variables, options)
    }

    fn get(&self, name: &str) -> Option<&Arc<tree::Tree>> {
        self.templates.get(name)
    }
}

#[cfg(test)]
mod tests;
