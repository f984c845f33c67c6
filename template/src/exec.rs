//! Executing a template of a [`Set`] over a value: Go's `text/template/exec.go` semantics (dot, variables and
//! their scopes, field and method chains, lazy `and`/`or`, `range` over slices and maps, template calls),
//! within the [`Limits`].

use crate::builtins;
use crate::error::{Error, ErrorKind};
use crate::gofmt::print_value;
use crate::tree::*;
use crate::value::Value;
use crate::{Escape, MissingKey, Options, Set};

/// Control structures and template calls nested in one execution: the walk recurses, and each template
/// may nest 100 levels of its own, so template calls times nesting must stay within a thread's stack.
const MAX_NESTING: usize = 400;

/// What walking a list ended with: `break` and `continue` unwind to the nearest `range`.
enum Flow {
    Normal,
    Break,
    Continue,
}

pub fn execute(
    set: &Set,
    name: &str,
    data: &Value,
    variables: &[(&str, Value)],
    options: &Options,
) -> std::result::Result<String, Error> {
    let Some(tree) = set.get(name) else {
        return Err(Error {
            source_name: name.to_owned(),
            line: 0,
            column: 0,
            kind: ErrorKind::Exec,
            message: format!("no template {name:?} is defined"),
        });
    };
    let mut vars = vec![(String::new(), data.clone())];
    vars.extend(
        variables
            .iter()
            .map(|(name, value)| ((*name).to_owned(), value.clone())),
    );
    let mut state = State {
        set,
        options,
        tree,
        out: String::new(),
        vars,
        depth: 0,
        nesting: 0,
        iterations: 0,
        computed: 0,
    };
    state.walk(data, &tree.nodes)?;
    Ok(state.out)
}

struct State<'s> {
    set: &'s Set,
    options: &'s Options,
    tree: &'s Tree,
    out: String,
    vars: Vec<(String, Value)>,
    depth: usize,
    /// Control structures and template calls being walked, for [`MAX_NESTING`].
    nesting: usize,
    iterations: usize,
    /// Bytes of every string functions returned: bounded so a loop building strings it never prints ends.
    computed: usize,
}

type Result<T> = std::result::Result<T, Error>;

impl<'s> State<'s> {
    fn error(&self, pos: usize, kind: ErrorKind, message: impl std::fmt::Display) -> Error {
        Error::at(
            &self.tree.source_name,
            &self.tree.source,
            pos,
            kind,
            format!("executing {:?}: {message}", self.tree.name),
        )
    }

    fn walk(&mut self, dot: &Value, nodes: &'s [Node]) -> Result<Flow> {
        for node in nodes {
            match self.node(dot, node)? {
                Flow::Normal => {}
                flow => return Ok(flow),
            }
        }
        Ok(Flow::Normal)
    }

    fn node(&mut self, dot: &Value, node: &'s Node) -> Result<Flow> {
        if matches!(
            node,
            Node::Text(_) | Node::Action(_) | Node::Break | Node::Continue
        ) {
            return self.leaf(dot, node);
        }
        if self.nesting >= MAX_NESTING {
            let pos = match node {
                Node::If(branch) | Node::With(branch) | Node::Range(branch) => branch.pos,
                Node::Template { pos, .. } => *pos,
                _ => 0,
            };
            return Err(self.error(
                pos,
                ErrorKind::DepthLimit,
                format!("control structures and template calls nested deeper than {MAX_NESTING}"),
            ));
        }
        self.nesting += 1;
        let flow = self.leaf(dot, node);
        self.nesting -= 1;
        flow
    }

    fn leaf(&mut self, dot: &Value, node: &'s Node) -> Result<Flow> {
        match node {
            Node::Text(text) => self.write(0, text)?,
            Node::Action(pipe) => {
                let value = self.pipe(dot, pipe)?;
                if pipe.decl.is_empty() {
                    let mut text = String::new();
                    print_value(&value, &mut text);
                    if self.options.escape == Escape::Html && !matches!(value, Value::Html(_)) {
                        text = builtins::html_template_escape(&text);
                    }
                    self.write(pipe.pos, &text)?;
                }
            }
            Node::If(branch) | Node::With(branch) => {
                let mark = self.vars.len();
                let value = self.pipe(dot, &branch.pipe)?;
                let flow = if value.truthy() {
                    let dot = if matches!(node, Node::With(_)) {
                        &value
                    } else {
                        dot
                    };
                    self.walk(dot, &branch.list)?
                } else if let Some(list) = &branch.else_list {
                    self.walk(dot, list)?
                } else {
                    Flow::Normal
                };
                self.vars.truncate(mark);
                return Ok(flow);
            }
            Node::Range(branch) => return self.range(dot, branch),
            Node::Template { pos, name, pipe } => {
                let Some(tree) = self.set.get(name) else {
                    return Err(self.error(
                        *pos,
                        ErrorKind::Exec,
                        format!("no such template {name:?}"),
                    ));
                };
                if self.depth >= self.options.limits.max_depth {
                    return Err(self.error(
                        *pos,
                        ErrorKind::DepthLimit,
                        format!(
                            "template calls nested deeper than {}",
                            self.options.limits.max_depth
                        ),
                    ));
                }
                let data = match pipe {
                    Some(pipe) => self.pipe(dot, pipe)?,
                    None => Value::Nil,
                };
                let saved_vars =
                    std::mem::replace(&mut self.vars, vec![(String::new(), data.clone())]);
                let saved_tree = std::mem::replace(&mut self.tree, tree);
                self.depth += 1;
                let result = self.walk(&data, &tree.nodes);
                self.depth -= 1;
                self.tree = saved_tree;
                self.vars = saved_vars;
                result?;
            }
            Node::Break => return Ok(Flow::Break),
            Node::Continue => return Ok(Flow::Continue),
        }
        Ok(Flow::Normal)
    }

    fn write(&mut self, pos: usize, text: &str) -> Result<()> {
        if self.out.len() + text.len() > self.options.limits.max_output {
            return Err(self.error(
                pos,
                ErrorKind::OutputLimit,
                format!(
                    "output longer than {} bytes",
                    self.options.limits.max_output
                ),
            ));
        }
        self.out.push_str(text);
        Ok(())
    }

    fn range(&mut self, dot: &Value, branch: &'s Branch) -> Result<Flow> {
        let mark = self.vars.len();
        let value = self.commands(dot, &branch.pipe)?;
        let items: Vec<(Value, Value)> = match &value {
            Value::Nil => Vec::new(),
            value => {
                if let Some(list) = value.as_list() {
                    list.iter()
                        .enumerate()
                        .map(|(index, item)| (Value::Int(index as i64), item.clone()))
                        .collect()
                } else if let Some(map) = value.as_map() {
                    map.iter()
                        .map(|(key, item)| (Value::String(key.clone()), item.clone()))
                        .collect()
                } else {
                    let mut text = String::new();
                    crate::gofmt::fmt_value(value, &mut text);
                    return Err(self.error(
                        branch.pos,
                        ErrorKind::Exec,
                        format!("range can't iterate over {text}"),
                    ));
                }
            }
        };
        if items.is_empty() {
            let flow = match &branch.else_list {
                Some(list) => self.walk(dot, list)?,
                None => Flow::Normal,
            };
            self.vars.truncate(mark);
            return Ok(flow);
        }
        for (key, item) in items {
            self.iterations += 1;
            if self.iterations > self.options.limits.max_range_iterations {
                return Err(self.error(
                    branch.pos,
                    ErrorKind::RangeLimit,
                    format!(
                        "more than {} range iterations",
                        self.options.limits.max_range_iterations
                    ),
                ));
            }
            match branch.pipe.decl.as_slice() {
                [] => {}
                [element] => self.vars.push((element.clone(), item.clone())),
                [index, element, ..] => {
                    self.vars.push((index.clone(), key));
                    self.vars.push((element.clone(), item.clone()));
                }
            }
            let flow = self.walk(&item, &branch.list)?;
            self.vars.truncate(mark);
            if let Flow::Break = flow {
                break;
            }
        }
        Ok(Flow::Normal)
    }

    /// A pipeline's value, declaring or assigning its variables.
    fn pipe(&mut self, dot: &Value, pipe: &'s Pipe) -> Result<Value> {
        let value = self.commands(dot, pipe)?;
        for name in &pipe.decl {
            if pipe.is_assign {
                match self.vars.iter_mut().rev().find(|(var, _)| var == name) {
                    Some((_, slot)) => *slot = value.clone(),
                    None => {
                        return Err(self.error(
                            pipe.pos,
                            ErrorKind::Exec,
                            format!("undefined variable: ${name}"),
                        ))
                    }
                }
            } else {
                self.vars.push((name.clone(), value.clone()));
            }
        }
        Ok(value)
    }

    fn commands(&mut self, dot: &Value, pipe: &'s Pipe) -> Result<Value> {
        let mut value: Option<Value> = None;
        for cmd in &pipe.cmds {
            value = Some(self.command(dot, cmd, value)?);
        }
        Ok(value.unwrap_or(Value::Nil))
    }

    fn not_a_function(&self, cmd: &Command, last: &Option<Value>, what: &str) -> Result<()> {
        if cmd.args.len() > 1 || last.is_some() {
            return Err(self.error(
                cmd.pos,
                ErrorKind::Exec,
                format!("can't give argument to non-function {what}"),
            ));
        }
        Ok(())
    }

    fn command(&mut self, dot: &Value, cmd: &'s Command, last: Option<Value>) -> Result<Value> {
        let args = &cmd.args[1..];
        match &cmd.args[0] {
            Arg::Field(fields) if fields.is_empty() => {
                self.not_a_function(cmd, &last, ".")?;
                Ok(dot.clone())
            }
            Arg::Field(fields) => self.chain(cmd.pos, dot, dot.clone(), fields, args, last),
            Arg::Variable(name, fields) => {
                let value = self.variable(cmd.pos, name)?;
                if fields.is_empty() {
                    self.not_a_function(cmd, &last, &format!("${name}"))?;
                    return Ok(value);
                }
                self.chain(cmd.pos, dot, value, fields, args, last)
            }
            Arg::Chain(pipe, fields) => {
                let value = self.commands(dot, pipe)?;
                self.chain(cmd.pos, dot, value, fields, args, last)
            }
            Arg::Pipe(pipe) => {
                self.not_a_function(cmd, &last, "(pipeline)")?;
                self.commands(dot, pipe)
            }
            Arg::Function(name) => self.function(cmd.pos, dot, name, args, last),
            Arg::Literal(value) => {
                let mut text = String::new();
                crate::gofmt::fmt_value(value, &mut text);
                self.not_a_function(cmd, &last, &text)?;
                Ok(value.clone())
            }
            Arg::Nil => Err(self.error(cmd.pos, ErrorKind::Exec, "nil is not a command")),
        }
    }

    fn variable(&self, pos: usize, name: &str) -> Result<Value> {
        match self.vars.iter().rev().find(|(var, _)| var == name) {
            Some((_, value)) => Ok(value.clone()),
            None => Err(self.error(pos, ErrorKind::Exec, format!("undefined variable: ${name}"))),
        }
    }

    fn arg(&mut self, dot: &Value, arg: &'s Arg, pos: usize) -> Result<Value> {
        match arg {
            Arg::Field(fields) if fields.is_empty() => Ok(dot.clone()),
            Arg::Field(fields) => self.chain(pos, dot, dot.clone(), fields, &[], None),
            Arg::Variable(name, fields) => {
                let value = self.variable(pos, name)?;
                self.chain(pos, dot, value, fields, &[], None)
            }
            Arg::Chain(pipe, fields) => {
                let value = self.commands(dot, pipe)?;
                self.chain(pos, dot, value, fields, &[], None)
            }
            Arg::Pipe(pipe) => self.commands(dot, pipe),
            // A function as an argument is called with no arguments, as Go does.
            Arg::Function(name) => self.function(pos, dot, name, &[], None),
            Arg::Literal(value) => Ok(value.clone()),
            Arg::Nil => Ok(Value::Nil),
        }
    }

    /// `receiver.A.B args`: every field but the last evaluated without arguments.
    fn chain(
        &mut self,
        pos: usize,
        dot: &Value,
        mut receiver: Value,
        fields: &[String],
        args: &'s [Arg],
        last: Option<Value>,
    ) -> Result<Value> {
        let Some((final_field, leading)) = fields.split_last() else {
            return Ok(receiver);
        };
        for field in leading {
            receiver = self.field(pos, receiver, field, Vec::new(), false)?;
        }
        let mut values = Vec::with_capacity(args.len() + 1);
        for arg in args {
            values.push(self.arg(dot, arg, pos)?);
        }
        let has_args = !args.is_empty() || last.is_some();
        values.extend(last);
        self.field(pos, receiver, final_field, values, has_args)
    }

    fn field(
        &mut self,
        pos: usize,
        receiver: Value,
        name: &str,
        args: Vec<Value>,
        has_args: bool,
    ) -> Result<Value> {
        let missing = |options: &Options| match options.missing_key {
            MissingKey::Invalid => Value::Nil,
            MissingKey::Zero => Value::String(String::new()),
        };
        match &receiver {
            // Go: a field of an invalid value (a missing key) is invalid again, not an error.
            Value::Nil => Ok(Value::Nil),
            Value::Object(object) => {
                if let Some(result) = object.method(name, &args) {
                    let value = result.map_err(|message| {
                        self.error(
                            pos,
                            ErrorKind::Exec,
                            format!("error calling {name}: {message}"),
                        )
                    })?;
                    self.account(pos, &value)?;
                    return Ok(value);
                }
                if let Some(value) = object.field(name) {
                    if has_args {
                        return Err(self.error(
                            pos,
                            ErrorKind::Exec,
                            format!("{name} has arguments but cannot be invoked as function"),
                        ));
                    }
                    return Ok(value);
                }
                if object.map().is_some() {
                    return Ok(missing(self.options));
                }
                Err(self.error(
                    pos,
                    ErrorKind::Exec,
                    format!("can't evaluate field {name} in type {}", object.type_name()),
                ))
            }
            Value::Map(map) => {
                if has_args {
                    return Err(self.error(
                        pos,
                        ErrorKind::Exec,
                        format!("{name} is not a method but has arguments"),
                    ));
                }
                Ok(map
                    .get(name)
                    .cloned()
                    .unwrap_or_else(|| missing(self.options)))
            }
            other => Err(self.error(
                pos,
                ErrorKind::Exec,
                format!("can't evaluate field {name} in type {}", other.type_name()),
            )),
        }
    }

    fn function(
        &mut self,
        pos: usize,
        dot: &Value,
        name: &str,
        args: &'s [Arg],
        last: Option<Value>,
    ) -> Result<Value> {
        let user = self.set.funcs.get(name).cloned();
        if user.is_none() && (name == "and" || name == "or") {
            // Lazy, as Go 1.18+: the first argument that decides is the result.
            if args.is_empty() && last.is_none() {
                return Err(self.error(
                    pos,
                    ErrorKind::Exec,
                    format!("wrong number of args for {name}: want at least 1 got 0"),
                ));
            }
            let mut value = Value::Nil;
            for arg in args {
                value = self.arg(dot, arg, pos)?;
                if value.truthy() == (name == "or") {
                    return Ok(value);
                }
            }
            return Ok(last.unwrap_or(value));
        }
        let mut values = Vec::with_capacity(args.len() + 1);
        for arg in args {
            values.push(self.arg(dot, arg, pos)?);
        }
        values.extend(last);
        let result = match user {
            Some(function) => function(&values),
            None => builtins::call(name, &values),
        };
        let value = result.map_err(|message| {
            self.error(
                pos,
                ErrorKind::Exec,
                format!("error calling {name}: {message}"),
            )
        })?;
        self.account(pos, &value)?;
        Ok(value)
    }

    /// Counts a computed string against the limits.
    fn account(&mut self, pos: usize, value: &Value) -> Result<()> {
        let Some(text) = value.as_str() else {
            return Ok(());
        };
        let max = self.options.limits.max_output;
        self.computed = self.computed.saturating_add(text.len());
        if text.len() > max || self.computed > max.saturating_mul(10) {
            return Err(self.error(
                pos,
                ErrorKind::OutputLimit,
                format!("computed strings longer than the output limit ({max} bytes)"),
            ));
        }
        Ok(())
    }
}
