//! Label and annotation templates: the subset of Go's `text/template` Prometheus alert templates use.
//!
//! Supported: text; `{{ ... }}` actions with `{{-`/`-}}` trimming and `{{/* comments */}}`; the variables
//! `$labels`, `$value`, `$externalLabels`, `$externalURL` and `$` (and `.Labels`, `.Value`, ...); field access
//! (`$labels.instance`); pipelines (`$value | humanize`); declarations (`{{ $v := ... }}`); string, number and
//! boolean literals; the functions `humanize`, `humanize1024`, `humanizeDuration`, `humanizePercentage`,
//! `humanizeTimestamp`, `printf`, `print`, `toUpper`, `toLower`, `title`, `stripPort`, `stripDomain`, `index`
//! and `len`, with Go's number formatting.
//!
//! Refused at load, naming the construct: control structures (`if`, `range`, `with`, `define`, `template`,
//! `block`), the query functions (`query`, `first`, `label`, `value`, `sortByLabel`, ...) and any other
//! function. An error while expanding (a value that is not a number given to `humanize`, say) is the caller's
//! to handle: the engine keeps the raw text and counts the failure.

use std::collections::BTreeMap;
use std::fmt;

use super::labels::Metric;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct TemplateError(pub String);

/// A parsed template and its source.
#[derive(Debug, Clone)]
pub struct Template {
    source: String,
    nodes: Vec<Node>,
}

/// What a template can see.
#[derive(Debug, Clone, Copy)]
pub struct TemplateData<'a> {
    /// The result sample's labels (`$labels`), read in place: most templates read one or two of them.
    pub labels: &'a Metric,
    pub external_labels: &'a BTreeMap<String, String>,
    pub external_url: &'a str,
    pub value: f64,
}

#[derive(Debug, Clone)]
enum Node {
    Text(String),
    Print(Pipeline),
    Declare(String, Pipeline),
}

#[derive(Debug, Clone)]
struct Pipeline {
    commands: Vec<Command>,
}

#[derive(Debug, Clone)]
struct Command {
    args: Vec<Operand>,
}

#[derive(Debug, Clone)]
enum Operand {
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
enum Function {
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
    fn from_name(name: &str) -> Option<Function> {
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
    fn arity(self) -> (usize, usize) {
        match self {
            Function::Printf => (1, usize::MAX),
            Function::Print => (0, usize::MAX),
            Function::Index => (2, 2),
            _ => (1, 1),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
enum TValue {
    String(String),
    Float(f64),
    Int(i64),
    Bool(bool),
    Map(BTreeMap<String, String>),
    Root,
    Nil,
}

impl TValue {
    fn type_name(&self) -> &'static str {
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

impl Template {
    /// Parses a template, refusing what dbwatch cannot expand.
    pub fn parse(source: &str) -> Result<Template, TemplateError> {
        let nodes = Parser::new(source).parse()?;
        Ok(Template {
            source: source.to_owned(),
            nodes,
        })
    }

    pub fn source(&self) -> &str {
        &self.source
    }

    /// True when the template has no actions: it expands to its source.
    pub fn is_static(&self) -> bool {
        self.nodes.iter().all(|node| matches!(node, Node::Text(_)))
    }

    /// Expands the template; an error leaves the choice of fallback to the caller.
    pub fn expand(&self, data: &TemplateData<'_>) -> Result<String, TemplateError> {
        let mut scope = Scope {
            data,
            variables: Vec::new(),
        };
        let mut out = String::with_capacity(self.source.len());
        for node in &self.nodes {
            match node {
                Node::Text(text) => out.push_str(text),
                Node::Print(pipeline) => {
                    let value = scope.pipeline(pipeline)?;
                    print_value(&value, &mut out);
                }
                Node::Declare(name, pipeline) => {
                    let value = scope.pipeline(pipeline)?;
                    scope.variables.push((name.clone(), value));
                }
            }
        }
        Ok(out)
    }
}

// === Parsing ===

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Pipe,
    Open,
    Close,
    Declare,
    Assign,
    Variable(String),
    /// `.a.b`; empty for `.` alone.
    Field(Vec<String>),
    /// `.a.b` right after a variable or `)`.
    Chain(Vec<String>),
    Identifier(String),
    String(String),
    Number(String),
}

struct Parser<'a> {
    source: &'a str,
}

const KEYWORDS: &[&str] = &[
    "if", "else", "end", "range", "with", "define", "template", "block", "break", "continue",
];
const QUERY_FUNCTIONS: &[&str] = &[
    "query",
    "first",
    "label",
    "value",
    "strvalue",
    "sortByLabel",
];

impl<'a> Parser<'a> {
    fn new(source: &'a str) -> Self {
        Parser { source }
    }

    fn parse(&self) -> Result<Vec<Node>, TemplateError> {
        let mut nodes = Vec::new();
        let mut rest = self.source;
        let mut trim_next_text = false;
        while !rest.is_empty() {
            let Some(open) = rest.find("{{") else {
                push_text(&mut nodes, rest, trim_next_text, false);
                break;
            };
            let after_open = &rest[open + 2..];
            let trim_left = after_open.starts_with("- ")
                || after_open.starts_with("-\t")
                || after_open.starts_with("-\n")
                || after_open.starts_with("-\r");
            push_text(&mut nodes, &rest[..open], trim_next_text, trim_left);
            let body_start = if trim_left {
                &after_open[2..]
            } else {
                after_open
            };
            let (body, trim_right, remainder) = split_action(body_start)?;
            trim_next_text = trim_right;
            rest = remainder;
            let trimmed = body.trim();
            if trimmed.starts_with("/*") {
                if !trimmed.ends_with("*/") {
                    return Err(TemplateError("unclosed comment".to_owned()));
                }
                continue;
            }
            let tokens = lex(body)?;
            nodes.push(parse_action(&tokens)?);
        }
        Ok(nodes)
    }
}

fn push_text(nodes: &mut Vec<Node>, text: &str, trim_start: bool, trim_end: bool) {
    let mut text = text;
    if trim_start {
        text = text.trim_start_matches([' ', '\t', '\n', '\r']);
    }
    if trim_end {
        text = text.trim_end_matches([' ', '\t', '\n', '\r']);
    }
    if !text.is_empty() {
        nodes.push(Node::Text(text.to_owned()));
    }
}

/// Splits `body}}rest` at the closing delimiter, skipping `}}` inside quoted strings.
fn split_action(input: &str) -> Result<(&str, bool, &str), TemplateError> {
    let bytes = input.as_bytes();
    let mut index = 0;
    let mut quote: Option<u8> = None;
    while index < bytes.len() {
        let byte = bytes[index];
        match quote {
            Some(q) => {
                if byte == b'\\' && q != b'`' {
                    index += 1;
                } else if byte == q {
                    quote = None;
                }
            }
            None => {
                if byte == b'"' || byte == b'`' || byte == b'\'' {
                    quote = Some(byte);
                // Compared as bytes: `index` walks bytes and may be inside a multi-byte character, where a
                // `str` slice would panic. The delimiters are ASCII, so where they match, `index` is a boundary.
                } else if bytes[index..].starts_with(b" -}}")
                    || bytes[index..].starts_with(b"\t-}}")
                    || bytes[index..].starts_with(b"\n-}}")
                {
                    return Ok((&input[..index], true, &input[index + 4..]));
                } else if bytes[index..].starts_with(b"}}") {
                    return Ok((&input[..index], false, &input[index + 2..]));
                }
            }
        }
        index += 1;
    }
    Err(TemplateError("unclosed action".to_owned()))
}

fn lex(body: &str) -> Result<Vec<Token>, TemplateError> {
    let chars: Vec<char> = body.chars().collect();
    let mut tokens = Vec::new();
    let mut index = 0;
    let is_ident = |c: char| c.is_alphanumeric() || c == '_';
    while index < chars.len() {
        let c = chars[index];
        match c {
            ' ' | '\t' | '\n' | '\r' => index += 1,
            '|' => {
                tokens.push(Token::Pipe);
                index += 1;
            }
            '(' => {
                tokens.push(Token::Open);
                index += 1;
            }
            ')' => {
                tokens.push(Token::Close);
                index += 1;
            }
            ':' if chars.get(index + 1) == Some(&'=') => {
                tokens.push(Token::Declare);
                index += 2;
            }
            '=' => {
                tokens.push(Token::Assign);
                index += 1;
            }
            '$' => {
                let start = index + 1;
                index = start;
                while index < chars.len() && is_ident(chars[index]) {
                    index += 1;
                }
                tokens.push(Token::Variable(chars[start..index].iter().collect()));
            }
            '.' if !chars.get(index + 1).is_some_and(char::is_ascii_digit) => {
                // A chain right after a variable or a parenthesis, without space, belongs to it.
                let attached = index > 0
                    && !chars[index - 1].is_whitespace()
                    && matches!(tokens.last(), Some(Token::Variable(_)) | Some(Token::Close));
                let mut fields = Vec::new();
                while index < chars.len() && chars[index] == '.' {
                    let start = index + 1;
                    index = start;
                    while index < chars.len() && is_ident(chars[index]) {
                        index += 1;
                    }
                    if index == start {
                        if !fields.is_empty() {
                            return Err(TemplateError("empty field name after '.'".to_owned()));
                        }
                        break;
                    }
                    fields.push(chars[start..index].iter().collect());
                }
                if attached && !fields.is_empty() {
                    tokens.push(Token::Chain(fields));
                } else {
                    tokens.push(Token::Field(fields));
                }
            }
            '"' => {
                let mut text = String::new();
                index += 1;
                loop {
                    let Some(&c) = chars.get(index) else {
                        return Err(TemplateError("unterminated quoted string".to_owned()));
                    };
                    index += 1;
                    match c {
                        '"' => break,
                        '\\' => {
                            let Some(&escaped) = chars.get(index) else {
                                return Err(TemplateError("unterminated quoted string".to_owned()));
                            };
                            index += 1;
                            match escaped {
                                'n' => text.push('\n'),
                                't' => text.push('\t'),
                                'r' => text.push('\r'),
                                '\\' => text.push('\\'),
                                '"' => text.push('"'),
                                '\'' => text.push('\''),
                                other => {
                                    return Err(TemplateError(format!(
                                        "unsupported escape \\{other} in a quoted string"
                                    )))
                                }
                            }
                        }
                        c => text.push(c),
                    }
                }
                tokens.push(Token::String(text));
            }
            '`' => {
                let start = index + 1;
                let Some(end) = chars[start..].iter().position(|&c| c == '`') else {
                    return Err(TemplateError("unterminated raw string".to_owned()));
                };
                tokens.push(Token::String(chars[start..start + end].iter().collect()));
                index = start + end + 1;
            }
            '\'' => {
                return Err(TemplateError(
                    "character constants are not supported".to_owned(),
                ))
            }
            c if c.is_ascii_digit()
                || ((c == '-' || c == '+' || c == '.')
                    && chars.get(index + 1).is_some_and(char::is_ascii_digit)) =>
            {
                let start = index;
                index += 1;
                while index < chars.len()
                    && (chars[index].is_ascii_alphanumeric()
                        || chars[index] == '.'
                        || chars[index] == '_'
                        || ((chars[index] == '-' || chars[index] == '+')
                            && matches!(chars[index - 1], 'e' | 'E')))
                {
                    index += 1;
                }
                tokens.push(Token::Number(chars[start..index].iter().collect()));
            }
            c if is_ident(c) => {
                let start = index;
                while index < chars.len() && is_ident(chars[index]) {
                    index += 1;
                }
                tokens.push(Token::Identifier(chars[start..index].iter().collect()));
            }
            other => return Err(TemplateError(format!("unexpected {other:?} in action"))),
        }
    }
    Ok(tokens)
}

fn parse_action(tokens: &[Token]) -> Result<Node, TemplateError> {
    if let Some(Token::Identifier(word)) = tokens.first() {
        if KEYWORDS.contains(&word.as_str()) {
            return Err(TemplateError(format!(
                "the template construct {{{{{word}}}}} is not supported by dbwatch (no control structures)"
            )));
        }
    }
    if tokens.is_empty() {
        return Err(TemplateError("missing value for command".to_owned()));
    }
    if let [Token::Variable(name), Token::Declare, rest @ ..] = tokens {
        let (pipeline, used) = parse_pipeline(rest)?;
        if used != rest.len() {
            return Err(TemplateError("unexpected ')' in action".to_owned()));
        }
        return Ok(Node::Declare(name.clone(), pipeline));
    }
    if tokens.contains(&Token::Assign) {
        return Err(TemplateError(
            "variable assignment is not supported by dbwatch".to_owned(),
        ));
    }
    let (pipeline, used) = parse_pipeline(tokens)?;
    if used != tokens.len() {
        return Err(TemplateError("unexpected ')' in action".to_owned()));
    }
    Ok(Node::Print(pipeline))
}

/// Parses a pipeline up to an unmatched `)` or the end; returns it and the tokens used.
fn parse_pipeline(tokens: &[Token]) -> Result<(Pipeline, usize), TemplateError> {
    let mut commands = Vec::new();
    let mut args = Vec::new();
    let mut index = 0;
    while index < tokens.len() {
        match &tokens[index] {
            Token::Close => break,
            Token::Pipe => {
                if args.is_empty() {
                    return Err(TemplateError("missing command before '|'".to_owned()));
                }
                commands.push(Command {
                    args: std::mem::take(&mut args),
                });
                index += 1;
            }
            Token::Open => {
                let (inner, used) = parse_pipeline(&tokens[index + 1..])?;
                index += 1 + used;
                if tokens.get(index) != Some(&Token::Close) {
                    return Err(TemplateError("unclosed left paren".to_owned()));
                }
                index += 1;
                let mut fields = Vec::new();
                if let Some(Token::Chain(chain)) = tokens.get(index) {
                    fields = chain.clone();
                    index += 1;
                }
                args.push(Operand::Pipeline(Box::new(inner), fields));
            }
            Token::Variable(name) => {
                index += 1;
                let mut fields = Vec::new();
                if let Some(Token::Chain(chain)) = tokens.get(index) {
                    fields = chain.clone();
                    index += 1;
                }
                check_variable(name, &fields)?;
                args.push(Operand::Variable(name.clone(), fields));
            }
            Token::Field(fields) | Token::Chain(fields) => {
                check_root_fields(fields)?;
                args.push(Operand::Dot(fields.clone()));
                index += 1;
            }
            Token::String(text) => {
                args.push(Operand::String(text.clone()));
                index += 1;
            }
            Token::Number(text) => {
                args.push(parse_number(text)?);
                index += 1;
            }
            Token::Identifier(word) => {
                index += 1;
                let operand = match word.as_str() {
                    "true" => Operand::Bool(true),
                    "false" => Operand::Bool(false),
                    "nil" => Operand::Nil,
                    word if KEYWORDS.contains(&word) => {
                        return Err(TemplateError(format!(
                            "the template construct {{{{{word}}}}} is not supported by dbwatch (no control structures)"
                        )))
                    }
                    word if QUERY_FUNCTIONS.contains(&word) => {
                        return Err(TemplateError(format!(
                            "the template function {word:?} is not supported: dbwatch templates cannot run queries"
                        )))
                    }
                    word => match Function::from_name(word) {
                        Some(function) => Operand::Function(function),
                        None => {
                            return Err(TemplateError(format!(
                                "function {word:?} not defined (or not supported by dbwatch)"
                            )))
                        }
                    },
                };
                args.push(operand);
            }
            Token::Declare | Token::Assign => {
                return Err(TemplateError(
                    "unexpected ':=' or '=' in a pipeline".to_owned(),
                ))
            }
        }
    }
    if args.is_empty() {
        return Err(TemplateError("missing value for command".to_owned()));
    }
    commands.push(Command { args });
    for (position, command) in commands.iter().enumerate() {
        let is_function = matches!(command.args[0], Operand::Function(_));
        if !is_function && command.args.len() > 1 {
            return Err(TemplateError(
                "can't give argument to non-function".to_owned(),
            ));
        }
        if !is_function && position > 0 {
            return Err(TemplateError(format!(
                "non executable command in pipeline stage {}",
                position + 1
            )));
        }
        if command.args[1..]
            .iter()
            .any(|arg| matches!(arg, Operand::Function(_)))
        {
            return Err(TemplateError(
                "a function as an argument needs parentheses".to_owned(),
            ));
        }
        if let Operand::Function(function) = command.args[0] {
            let given = command.args.len() - 1 + usize::from(position > 0);
            let (min, max) = function.arity();
            if given < min || given > max {
                return Err(TemplateError(format!(
                    "wrong number of args for {function:?}: want {min}, got {given}"
                )));
            }
        }
    }
    Ok((Pipeline { commands }, index))
}

fn parse_number(text: &str) -> Result<Operand, TemplateError> {
    let cleaned = text.replace('_', "");
    if let Ok(int) = cleaned.parse::<i64>() {
        return Ok(Operand::Int(int));
    }
    cleaned
        .parse::<f64>()
        .map(Operand::Float)
        .map_err(|_| TemplateError(format!("bad number syntax: {text:?}")))
}

fn check_variable(name: &str, fields: &[String]) -> Result<(), TemplateError> {
    match name {
        "" => check_root_fields(fields),
        "labels" | "externalLabels" => {
            if fields.len() > 1 {
                return Err(TemplateError(format!(
                    "${name}.{} has no field {:?}: a label value is a string",
                    fields[0], fields[1]
                )));
            }
            Ok(())
        }
        "value" | "externalURL" if !fields.is_empty() => Err(TemplateError(format!(
            "can't evaluate field {} of ${name}",
            fields[0]
        ))),
        _ => Ok(()),
    }
}

fn check_root_fields(fields: &[String]) -> Result<(), TemplateError> {
    let Some(first) = fields.first() else {
        return Ok(());
    };
    match first.as_str() {
        "Labels" | "ExternalLabels" => {
            if fields.len() > 2 {
                return Err(TemplateError(format!(".{first}.{} is a string", fields[1])));
            }
            Ok(())
        }
        "Value" | "ExternalURL" if fields.len() == 1 => Ok(()),
        other => Err(TemplateError(format!(
            "can't evaluate field {other}: the data has Labels, ExternalLabels, ExternalURL and Value"
        ))),
    }
}

// === Execution ===

struct Scope<'d, 'a> {
    data: &'d TemplateData<'a>,
    variables: Vec<(String, TValue)>,
}

impl Scope<'_, '_> {
    fn pipeline(&mut self, pipeline: &Pipeline) -> Result<TValue, TemplateError> {
        let mut piped: Option<TValue> = None;
        for command in &pipeline.commands {
            let value = match &command.args[0] {
                Operand::Function(function) => {
                    let mut args = Vec::with_capacity(command.args.len());
                    for arg in &command.args[1..] {
                        args.push(self.operand(arg)?);
                    }
                    if let Some(value) = piped.take() {
                        args.push(value);
                    }
                    call(*function, args)?
                }
                operand => self.operand(operand)?,
            };
            piped = Some(value);
        }
        Ok(piped.unwrap_or(TValue::Nil))
    }

    /// The label `fields[0]` of the result sample ("" when absent: missingkey=zero), then the other fields.
    fn label_field(&self, fields: &[String]) -> Result<TValue, TemplateError> {
        let value = self.data.labels.get(&fields[0]).unwrap_or_default();
        fields_of(TValue::String(value.to_owned()), &fields[1..], self.data)
    }

    fn operand(&mut self, operand: &Operand) -> Result<TValue, TemplateError> {
        match operand {
            Operand::Function(_) => Err(TemplateError(
                "a function as an argument needs parentheses".to_owned(),
            )),
            Operand::String(text) => Ok(TValue::String(text.clone())),
            Operand::Int(value) => Ok(TValue::Int(*value)),
            Operand::Float(value) => Ok(TValue::Float(*value)),
            Operand::Bool(value) => Ok(TValue::Bool(*value)),
            Operand::Nil => Ok(TValue::Nil),
            // `.Labels.x` and `$labels.x`, the most common uses, read one label instead of copying them all.
            Operand::Dot(fields) if fields.len() >= 2 && fields[0] == "Labels" => {
                self.label_field(&fields[1..])
            }
            Operand::Dot(fields) => fields_of(TValue::Root, fields, self.data),
            Operand::Variable(name, fields) if name == "labels" && !fields.is_empty() => {
                self.label_field(fields)
            }
            Operand::Variable(name, fields) => {
                let base = match name.as_str() {
                    "" => TValue::Root,
                    "labels" => TValue::Map(self.data.labels.to_map()),
                    "externalLabels" => TValue::Map(self.data.external_labels.clone()),
                    "externalURL" => TValue::String(self.data.external_url.to_owned()),
                    "value" => TValue::Float(self.data.value),
                    other => match self.variables.iter().rev().find(|(name, _)| name == other) {
                        Some((_, value)) => value.clone(),
                        None => {
                            return Err(TemplateError(format!("undefined variable \"${other}\"")))
                        }
                    },
                };
                fields_of(base, fields, self.data)
            }
            Operand::Pipeline(pipeline, fields) => {
                let value = self.pipeline(pipeline)?;
                fields_of(value, fields, self.data)
            }
        }
    }
}

fn fields_of(
    mut value: TValue,
    fields: &[String],
    data: &TemplateData<'_>,
) -> Result<TValue, TemplateError> {
    for field in fields {
        value = match value {
            TValue::Root => match field.as_str() {
                "Labels" => TValue::Map(data.labels.to_map()),
                "ExternalLabels" => TValue::Map(data.external_labels.clone()),
                "ExternalURL" => TValue::String(data.external_url.to_owned()),
                "Value" => TValue::Float(data.value),
                other => {
                    return Err(TemplateError(format!(
                        "can't evaluate field {other} in type struct"
                    )))
                }
            },
            // missingkey=zero: a missing label reads as "".
            TValue::Map(map) => TValue::String(map.get(field).cloned().unwrap_or_default()),
            other => {
                return Err(TemplateError(format!(
                    "can't evaluate field {field} in type {}",
                    other.type_name()
                )))
            }
        };
    }
    Ok(value)
}

fn call(function: Function, mut args: Vec<TValue>) -> Result<TValue, TemplateError> {
    let text = |value: TValue, function: Function| match value {
        TValue::String(text) => Ok(text),
        other => Err(TemplateError(format!(
            "wrong type for value in {function:?}; expected string; got {}",
            other.type_name()
        ))),
    };
    Ok(match function {
        Function::Humanize => TValue::String(humanize(to_float(args.remove(0))?)),
        Function::Humanize1024 => TValue::String(humanize1024(to_float(args.remove(0))?)),
        Function::HumanizeDuration => TValue::String(humanize_duration(to_float(args.remove(0))?)),
        Function::HumanizePercentage => TValue::String(format!(
            "{}%",
            format_g(to_float(args.remove(0))? * 100.0, Some(4))
        )),
        Function::HumanizeTimestamp => {
            TValue::String(humanize_timestamp(to_float(args.remove(0))?)?)
        }
        Function::ToUpper => TValue::String(text(args.remove(0), function)?.to_uppercase()),
        Function::ToLower => TValue::String(text(args.remove(0), function)?.to_lowercase()),
        Function::Title => TValue::String(title(&text(args.remove(0), function)?)),
        Function::StripPort => TValue::String(strip_port(&text(args.remove(0), function)?)),
        Function::StripDomain => TValue::String(strip_domain(&text(args.remove(0), function)?)),
        Function::Printf => {
            let format = text(args.remove(0), function)?;
            TValue::String(sprintf(&format, &args))
        }
        Function::Print => {
            let mut out = String::new();
            for (index, arg) in args.iter().enumerate() {
                let is_string = matches!(arg, TValue::String(_));
                let previous_string = index > 0 && matches!(args[index - 1], TValue::String(_));
                if index > 0 && !is_string && !previous_string {
                    out.push(' ');
                }
                print_value(arg, &mut out);
            }
            TValue::String(out)
        }
        Function::Index => {
            let key = args.pop().unwrap_or(TValue::Nil);
            match (args.pop(), key) {
                (Some(TValue::Map(map)), TValue::String(key)) => {
                    TValue::String(map.get(&key).cloned().unwrap_or_default())
                }
                (Some(other), _) => {
                    return Err(TemplateError(format!(
                        "can't index item of type {}",
                        other.type_name()
                    )))
                }
                (None, _) => return Err(TemplateError("index of nothing".to_owned())),
            }
        }
        Function::Len => match args.remove(0) {
            TValue::String(text) => TValue::Int(text.len() as i64),
            TValue::Map(map) => TValue::Int(map.len() as i64),
            other => return Err(TemplateError(format!("len of type {}", other.type_name()))),
        },
    })
}

/// Prometheus' `convertToFloat`.
fn to_float(value: TValue) -> Result<f64, TemplateError> {
    match value {
        TValue::Float(value) => Ok(value),
        TValue::Int(value) => Ok(value as f64),
        TValue::String(text) => parse_go_float(&text).ok_or_else(|| {
            TemplateError(format!(
                "strconv.ParseFloat: parsing {text:?}: invalid syntax"
            ))
        }),
        other => Err(TemplateError(format!(
            "can't convert {} to float",
            other.type_name()
        ))),
    }
}

fn parse_go_float(text: &str) -> Option<f64> {
    match text.to_ascii_lowercase().as_str() {
        "inf" | "+inf" | "infinity" | "+infinity" => return Some(f64::INFINITY),
        "-inf" | "-infinity" => return Some(f64::NEG_INFINITY),
        "nan" => return Some(f64::NAN),
        _ => {}
    }
    text.parse::<f64>().ok()
}

/// How text/template prints a value.
fn print_value(value: &TValue, out: &mut String) {
    match value {
        TValue::String(text) => out.push_str(text),
        TValue::Float(value) => out.push_str(&format_g(*value, None)),
        TValue::Int(value) => out.push_str(&value.to_string()),
        TValue::Bool(value) => out.push_str(if *value { "true" } else { "false" }),
        TValue::Map(map) => {
            out.push_str("map[");
            for (index, (key, value)) in map.iter().enumerate() {
                if index > 0 {
                    out.push(' ');
                }
                out.push_str(key);
                out.push(':');
                out.push_str(value);
            }
            out.push(']');
        }
        TValue::Root => out.push_str("{map[] map[]  0}"),
        TValue::Nil => out.push_str("<no value>"),
    }
}

fn humanize(value: f64) -> String {
    if value == 0.0 || value.is_nan() || value.is_infinite() {
        return format_g(value, Some(4));
    }
    let mut value = value;
    let mut prefix = "";
    if value.abs() >= 1.0 {
        for unit in ["k", "M", "G", "T", "P", "E", "Z", "Y"] {
            if value.abs() < 1000.0 {
                break;
            }
            prefix = unit;
            value /= 1000.0;
        }
        return format!("{}{prefix}", format_g(value, Some(4)));
    }
    for unit in ["m", "u", "n", "p", "f", "a", "z", "y"] {
        if value.abs() >= 1.0 {
            break;
        }
        prefix = unit;
        value *= 1000.0;
    }
    format!("{}{prefix}", format_g(value, Some(4)))
}

fn humanize1024(value: f64) -> String {
    if value.abs() <= 1.0 || value.is_nan() || value.is_infinite() {
        return format_g(value, Some(4));
    }
    let mut value = value;
    let mut prefix = "";
    for unit in ["ki", "Mi", "Gi", "Ti", "Pi", "Ei", "Zi", "Yi"] {
        if value.abs() < 1024.0 {
            break;
        }
        prefix = unit;
        value /= 1024.0;
    }
    format!("{}{prefix}", format_g(value, Some(4)))
}

fn humanize_duration(value: f64) -> String {
    if value.is_nan() || value.is_infinite() {
        return format_g(value, Some(4));
    }
    if value == 0.0 {
        return format!("{}s", format_g(value, Some(4)));
    }
    if value.abs() >= 1.0 {
        let (sign, value) = if value < 0.0 {
            ("-", -value)
        } else {
            ("", value)
        };
        let duration = value as i64;
        let seconds = duration % 60;
        let minutes = (duration / 60) % 60;
        let hours = (duration / 60 / 60) % 24;
        let days = duration / 60 / 60 / 24;
        if days != 0 {
            return format!("{sign}{days}d {hours}h {minutes}m {seconds}s");
        }
        if hours != 0 {
            return format!("{sign}{hours}h {minutes}m {seconds}s");
        }
        if minutes != 0 {
            return format!("{sign}{minutes}m {seconds}s");
        }
        return format!("{sign}{}s", format_g(value, Some(4)));
    }
    let mut value = value;
    let mut prefix = "";
    for unit in ["m", "u", "n", "p", "f", "a", "z", "y"] {
        if value.abs() >= 1.0 {
            break;
        }
        prefix = unit;
        value *= 1000.0;
    }
    format!("{}{prefix}s", format_g(value, Some(4)))
}

/// Go's `fmt.Sprint(time.Time)` of the millisecond-truncated instant, in UTC.
fn humanize_timestamp(value: f64) -> Result<String, TemplateError> {
    if value.is_nan() || value.is_infinite() {
        return Ok(format_g(value, Some(4)));
    }
    let nanos = value * 1e9;
    if !(-9.223_372_036_854_776e18..=9.223_372_036_854_776e18).contains(&nanos) {
        return Err(TemplateError(format!(
            "{} cannot be represented as a nanoseconds timestamp since it overflows int64",
            format_g(value, None)
        )));
    }
    let millis = (nanos as i64) / 1_000_000;
    let seconds = millis.div_euclid(1000);
    let fraction = millis.rem_euclid(1000);
    let days = seconds.div_euclid(86_400);
    let of_day = seconds.rem_euclid(86_400);
    let (year, month, day) = super::eval::civil_from_days(days);
    let mut out = format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}",
        of_day / 3600,
        (of_day % 3600) / 60,
        of_day % 60
    );
    if fraction != 0 {
        let digits = format!("{fraction:03}");
        out.push('.');
        out.push_str(digits.trim_end_matches('0'));
    }
    out.push_str(" +0000 UTC");
    Ok(out)
}

/// Go's deprecated `strings.Title`: upper-cases the first letter of each word.
fn title(text: &str) -> String {
    let is_separator = |c: char| {
        if c.is_ascii() {
            !(c.is_ascii_alphanumeric() || c == '_')
        } else {
            c.is_whitespace()
        }
    };
    let mut out = String::with_capacity(text.len());
    let mut previous = ' ';
    for c in text.chars() {
        if is_separator(previous) {
            out.extend(c.to_uppercase());
        } else {
            out.push(c);
        }
        previous = c;
    }
    out
}

/// `host:port` → `host`; anything `net.SplitHostPort` refuses is returned unchanged.
fn strip_port(host_port: &str) -> String {
    split_host_port(host_port).map_or_else(|| host_port.to_owned(), |(host, _)| host.to_owned())
}

fn strip_domain(host_port: &str) -> String {
    let (host, port) = split_host_port(host_port).unwrap_or((host_port, ""));
    if host.parse::<std::net::IpAddr>().is_ok() {
        return host_port.to_owned();
    }
    let short = host.split('.').next().unwrap_or(host);
    if port.is_empty() {
        short.to_owned()
    } else if short.contains(':') {
        format!("[{short}]:{port}")
    } else {
        format!("{short}:{port}")
    }
}

fn split_host_port(host_port: &str) -> Option<(&str, &str)> {
    if let Some(rest) = host_port.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        let port = after.strip_prefix(':')?;
        return Some((host, port));
    }
    let (host, port) = host_port.rsplit_once(':')?;
    if host.contains(':') {
        return None;
    }
    Some((host, port))
}

// === Go's number formatting ===

/// Go's `%g` (`precision` `None`: shortest, as `%v` prints a float64).
pub fn format_g(value: f64, precision: Option<usize>) -> String {
    if let Some(special) = special_float(value) {
        return special.to_owned();
    }
    let (negative, digits, exponent) = match precision {
        None => decimal_digits(value, None),
        Some(precision) => decimal_digits(value, Some(precision.max(1))),
    };
    let digit_count = digits.len() as i32;
    let decimal_point = exponent + 1;
    let mut eprec = match precision {
        None => 6,
        Some(precision) => precision.max(1) as i32,
    };
    if precision.is_some() && eprec > digit_count && digit_count >= decimal_point {
        eprec = digit_count;
    }
    let mut out = String::new();
    if negative {
        out.push('-');
    }
    if exponent < -4 || exponent >= eprec {
        out.push_str(&digits[..1]);
        if digits.len() > 1 {
            out.push('.');
            out.push_str(&digits[1..]);
        }
        push_exponent(&mut out, exponent);
    } else {
        let decimals = (digit_count - decimal_point).max(0) as usize;
        out.push_str(&fixed_from_digits(&digits, decimal_point, decimals));
    }
    out
}

/// Go's `%e` with `precision` digits after the point.
fn format_e(value: f64, precision: usize) -> String {
    if let Some(special) = special_float(value) {
        return special.to_owned();
    }
    let formatted = format!("{value:.precision$e}");
    let (mantissa, exponent) = formatted.split_once('e').unwrap_or((&formatted, "0"));
    let mut out = mantissa.to_owned();
    push_exponent(&mut out, exponent.parse().unwrap_or(0));
    out
}

/// Go's `%f` with `precision` digits after the point.
fn format_f(value: f64, precision: usize) -> String {
    if let Some(special) = special_float(value) {
        return special.to_owned();
    }
    format!("{value:.precision$}")
}

fn special_float(value: f64) -> Option<&'static str> {
    if value.is_nan() {
        Some("NaN")
    } else if value == f64::INFINITY {
        Some("+Inf")
    } else if value == f64::NEG_INFINITY {
        Some("-Inf")
    } else {
        None
    }
}

fn push_exponent(out: &mut String, exponent: i32) {
    out.push('e');
    out.push(if exponent < 0 { '-' } else { '+' });
    let magnitude = exponent.unsigned_abs();
    if magnitude < 10 {
        out.push('0');
    }
    out.push_str(&magnitude.to_string());
}

/// The significant digits (trailing zeros removed) and decimal exponent of a finite value: shortest
/// round-trip digits, or rounded to `significant` digits.
fn decimal_digits(value: f64, significant: Option<usize>) -> (bool, String, i32) {
    let negative = value.is_sign_negative() && value != 0.0;
    let magnitude = value.abs();
    let formatted = match significant {
        None => format!("{magnitude:e}"),
        Some(count) => format!("{magnitude:.prec$e}", prec = count - 1),
    };
    let (mantissa, exponent) = formatted.split_once('e').unwrap_or((&formatted, "0"));
    let mut digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    while digits.len() > 1 && digits.ends_with('0') {
        digits.pop();
    }
    (negative, digits, exponent.parse().unwrap_or(0))
}

/// Places `digits` (d.ddd × 10^(decimal_point-1)) as a fixed-point number with `decimals` decimals.
fn fixed_from_digits(digits: &str, decimal_point: i32, decimals: usize) -> String {
    let mut out = String::new();
    if decimal_point <= 0 {
        out.push('0');
    } else {
        for index in 0..decimal_point as usize {
            out.push(digits.as_bytes().get(index).map_or('0', |&b| b as char));
        }
    }
    if decimals > 0 {
        out.push('.');
        for position in 0..decimals as i32 {
            let index = decimal_point + position;
            let digit = if index < 0 {
                '0'
            } else {
                digits
                    .as_bytes()
                    .get(index as usize)
                    .map_or('0', |&b| b as char)
            };
            out.push(digit);
        }
    }
    out
}

/// Go's largest accepted width or precision: `fmt`'s `tooLarge` bound.
const GO_FMT_MAX_NUMBER: usize = 1_000_000;

/// Reads a width or precision as Go's `fmt.parsenum` does: `Some(None)` when there are no digits,
/// `Some(Some(n))` for a number, `None` when the number passed [`GO_FMT_MAX_NUMBER`] (Go then stops
/// formatting, and the rest of the format is consumed).
fn go_parsenum(chars: &mut std::iter::Peekable<std::str::Chars<'_>>) -> Option<Option<usize>> {
    let mut number: Option<usize> = None;
    while let Some(digit) = chars.peek().and_then(|c| c.to_digit(10)) {
        let so_far = number.unwrap_or(0);
        if so_far > GO_FMT_MAX_NUMBER {
            chars.by_ref().for_each(drop);
            return None;
        }
        number = Some(so_far * 10 + digit as usize);
        chars.next();
    }
    Some(number)
}

/// A subset of Go's `fmt.Sprintf`: flags `-+ 0`, width, precision, verbs `v s d f F e E g G x X q %`.
fn sprintf(format: &str, args: &[TValue]) -> String {
    let mut out = String::new();
    let mut chars = format.chars().peekable();
    let mut next_arg = 0;
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let (mut minus, mut plus, mut zero, mut space) = (false, false, false, false);
        while let Some(&flag) = chars.peek() {
            match flag {
                '-' => minus = true,
                '+' => plus = true,
                '0' => zero = true,
                ' ' => space = true,
                '#' => {}
                _ => break,
            }
            chars.next();
        }
        // Go's fmt refuses a width or precision past 1e6 (parsenum's tooLarge) and gives up on the rest of the
        // format, so no template can overflow the arithmetic or ask for a gigabyte of padding.
        let Some(width) = go_parsenum(&mut chars) else {
            out.push_str("%!(NOVERB)");
            break;
        };
        let mut precision = None;
        if chars.peek() == Some(&'.') {
            chars.next();
            let Some(value) = go_parsenum(&mut chars) else {
                out.push_str("%!(NOVERB)");
                break;
            };
            precision = Some(value.unwrap_or(0));
        }
        let Some(verb) = chars.next() else {
            out.push_str("%!(NOVERB)");
            break;
        };
        if verb == '%' {
            out.push('%');
            continue;
        }
        let Some(arg) = args.get(next_arg) else {
            out.push_str(&format!("%!{verb}(MISSING)"));
            continue;
        };
        next_arg += 1;
        let formatted = match (verb, arg) {
            ('v' | 'g' | 'G', TValue::Float(value)) => format_g(*value, precision),
            ('f' | 'F', TValue::Float(value)) => format_f(*value, precision.unwrap_or(6)),
            ('e' | 'E', TValue::Float(value)) => {
                let text = format_e(*value, precision.unwrap_or(6));
                if verb == 'E' {
                    text.to_uppercase()
                } else {
                    text
                }
            }
            ('v' | 'd', TValue::Int(value)) => value.to_string(),
            ('x', TValue::Int(value)) => format!("{value:x}"),
            ('X', TValue::Int(value)) => format!("{value:X}"),
            ('f' | 'F', TValue::Int(value)) => format!("%!{verb}(int={value})"),
            ('v' | 's', TValue::String(text)) => match precision {
                Some(limit) => text.chars().take(limit).collect(),
                None => text.clone(),
            },
            ('q', TValue::String(text)) => super::labels::go_quote(text),
            ('v' | 't', TValue::Bool(value)) => value.to_string(),
            ('v' | 's', other) => {
                let mut text = String::new();
                print_value(other, &mut text);
                text
            }
            (verb, other) => {
                let mut text = String::new();
                print_value(other, &mut text);
                format!("%!{verb}({}={text})", other.type_name())
            }
        };
        let numeric = matches!(arg, TValue::Float(_) | TValue::Int(_));
        let mut formatted = formatted;
        if numeric && !formatted.starts_with('-') && !formatted.starts_with('+') {
            if plus {
                formatted.insert(0, '+');
            } else if space {
                formatted.insert(0, ' ');
            }
        }
        let length = formatted.chars().count();
        match width {
            Some(width) if width > length => {
                let padding = width - length;
                if minus {
                    out.push_str(&formatted);
                    out.extend(std::iter::repeat_n(' ', padding));
                } else if zero && numeric {
                    let (sign, digits) = match formatted.chars().next() {
                        Some(sign @ ('-' | '+' | ' ')) => (Some(sign), &formatted[1..]),
                        _ => (None, formatted.as_str()),
                    };
                    if let Some(sign) = sign {
                        out.push(sign);
                    }
                    out.extend(std::iter::repeat_n('0', padding));
                    out.push_str(digits);
                } else {
                    out.extend(std::iter::repeat_n(' ', padding));
                    out.push_str(&formatted);
                }
            }
            _ => out.push_str(&formatted),
        }
    }
    if next_arg < args.len() {
        out.push_str("%!(EXTRA ");
        for (index, arg) in args[next_arg..].iter().enumerate() {
            if index > 0 {
                out.push_str(", ");
            }
            let mut text = String::new();
            print_value(arg, &mut text);
            out.push_str(&format!("{}={text}", arg.type_name()));
        }
        out.push(')');
    }
    out
}

impl fmt::Display for Template {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn expand(source: &str, value: f64) -> Result<String, TemplateError> {
        let labels =
            Metric::from_pairs([("target", "pg-main"), ("instance", "db1.example.com:5432")]);
        let external = BTreeMap::new();
        let data = TemplateData {
            labels: &labels,
            external_labels: &external,
            external_url: "http://dbwatch",
            value,
        };
        Template::parse(source)?.expand(&data)
    }

    #[test]
    fn go_float_formatting() {
        let cases = [
            (1e6, "1e+06", "1e+06"),
            (123456.0, "123456", "1.235e+05"),
            (1234567.0, "1.234567e+06", "1.235e+06"),
            (0.15, "0.15", "0.15"),
            (1e-5, "1e-05", "1e-05"),
            (0.0001, "0.0001", "0.0001"),
            (1e21, "1e+21", "1e+21"),
            (300.0, "300", "300"),
            (-2.5, "-2.5", "-2.5"),
            (0.0, "0", "0"),
            (100000.0, "100000", "1e+05"),
            (0.00012345, "0.00012345", "0.0001234"),
            (1.0005, "1.0005", "1"),
        ];
        for (value, shortest, four) in cases {
            assert_eq!(format_g(value, None), shortest, "%v of {value}");
            assert_eq!(format_g(value, Some(4)), four, "%.4g of {value}");
        }
        assert_eq!(format_g(f64::NAN, None), "NaN");
        assert_eq!(format_g(f64::INFINITY, Some(4)), "+Inf");
        assert_eq!(format_e(0.125, 3), "1.250e-01");
        assert_eq!(format_f(12345.5, 0), "12346");
    }

    #[test]
    fn multi_byte_characters_inside_actions_are_not_split() {
        // Found by tests/properties.rs: the closing-delimiter scan sliced the text inside 'Σ'.
        assert!(Template::parse("{{Σ $labels.target }}").is_err());
        assert_eq!(
            expand("{{ \"Σ→\" }}{{ printf \"%s\" \"𝄞\" -}} x", 0.0).expect("valid test input"),
            "Σ→𝄞x"
        );
    }

    #[test]
    fn printf_width_and_precision_are_capped_like_go() {
        // Up to Go's bound the width pads as asked.
        let padded = expand("{{ printf \"%1000000d\" 1 }}", 0.0).expect("valid test input");
        assert_eq!(padded.len(), 1_000_000);
        assert!(padded.ends_with(" 1"));
        // Past it Go stops: no padding at all, the rest of the format dropped, the argument reported as extra.
        for format in [
            "%99999999d",
            "%99999999999999999999999999d",
            "%.99999999f",
            "%5.99999999999999999999999999999f",
        ] {
            let text = expand(&format!("{{{{ printf \"{format}|tail\" 1 }}}}"), 0.0)
                .expect("valid test input");
            assert!(text.starts_with("%!(NOVERB)"), "{format}: {text}");
            assert!(!text.contains("tail"), "{format}: {text}");
            assert!(text.len() < 64, "{format}: {} bytes", text.len());
        }
        assert_eq!(sprintf("%.3s", &[TValue::String("abcdef".into())]), "abc");
        assert_eq!(sprintf("%.s", &[TValue::String("abcdef".into())]), "");
    }

    #[test]
    fn prometheus_functions() {
        assert_eq!(
            expand("{{ $value | humanize }}", 1234567.0).expect("valid test input"),
            "1.235M"
        );
        assert_eq!(
            expand("{{ $value | humanize }}", 0.0123).expect("valid test input"),
            "12.3m"
        );
        assert_eq!(
            expand("{{ humanize1024 $value }}", 2048.0).expect("valid test input"),
            "2ki"
        );
        assert_eq!(
            expand("{{ $value | humanizeDuration }}", 3725.0).expect("valid test input"),
            "1h 2m 5s"
        );
        assert_eq!(
            expand("{{ $value | humanizeDuration }}", 0.25).expect("valid test input"),
            "250ms"
        );
        assert_eq!(
            expand("{{ $value | humanizeDuration }}", 42.5).expect("valid test input"),
            "42.5s"
        );
        assert_eq!(
            expand("{{ $value | humanizePercentage }}", 0.9342).expect("valid test input"),
            "93.42%"
        );
        assert_eq!(
            expand("{{ $value | humanizeTimestamp }}", 1.5).expect("valid test input"),
            "1970-01-01 00:00:01.5 +0000 UTC"
        );
        assert_eq!(
            expand("{{ printf \"%.2f\" $value }}", 2.34567).expect("valid test input"),
            "2.35"
        );
        assert_eq!(
            expand("{{ printf \"%5.1f|%-4s|\" $value \"ab\" }}", 2.34567)
                .expect("valid test input"),
            "  2.3|ab  |"
        );
        assert_eq!(
            expand("{{ $labels.target | toUpper }}", 0.0).expect("valid test input"),
            "PG-MAIN"
        );
        assert_eq!(
            expand("{{ $labels.instance | stripPort }}", 0.0).expect("valid test input"),
            "db1.example.com"
        );
        assert_eq!(
            expand("{{ $labels.instance | stripDomain }}", 0.0).expect("valid test input"),
            "db1:5432"
        );
        assert_eq!(
            expand("{{ title \"hello db_world-x\" }}", 0.0).expect("valid test input"),
            "Hello Db_world-X"
        );
        assert_eq!(
            expand("{{ index $labels \"target\" }}", 0.0).expect("valid test input"),
            "pg-main"
        );
    }

    #[test]
    fn text_variables_and_trimming() {
        assert_eq!(
            expand(
                "Target {{ $labels.target }} at {{ $value }}s ({{ .Labels.target }}, {{ .Value }})",
                0.25
            )
            .expect("valid test input"),
            "Target pg-main at 0.25s (pg-main, 0.25)"
        );
        assert_eq!(
            expand("{{ $labels.missing }}", 0.0).expect("valid test input"),
            ""
        );
        assert_eq!(
            expand("a  {{- \"b\" -}}  c", 0.0).expect("valid test input"),
            "abc"
        );
        assert_eq!(
            expand("{{/* comment */}}x", 0.0).expect("valid test input"),
            "x"
        );
        assert_eq!(
            expand("{{ $v := $value }}{{ $v | humanize }}", 2000.0).expect("valid test input"),
            "2k"
        );
        assert_eq!(expand("{{ \"}}\" }}", 0.0).expect("valid test input"), "}}");
        assert_eq!(
            expand("{{ $externalURL }}", 0.0).expect("valid test input"),
            "http://dbwatch"
        );
        assert_eq!(
            expand("no actions", 0.0).expect("valid test input"),
            "no actions"
        );
    }

    #[test]
    fn unsupported_constructs_are_refused_at_parse() {
        for (source, needle) in [
            ("{{ if gt $value 1.0 }}x{{ end }}", "{{if}}"),
            ("{{ range $labels }}{{ end }}", "{{range}}"),
            ("{{ query \"up\" | first | value }}", "cannot run queries"),
            (
                "{{ reReplaceAll \"a\" \"b\" $labels.target }}",
                "not defined",
            ),
            ("{{ .Nope }}", "can't evaluate field Nope"),
            ("{{ $value", "unclosed action"),
            ("{{ humanize }}", "wrong number of args"),
            ("{{ $value | $labels }}", "non executable"),
        ] {
            match Template::parse(source) {
                Err(TemplateError(message)) => {
                    assert!(message.contains(needle), "{source}: {message}")
                }
                Ok(_) => panic!("{source} parsed"),
            }
        }
    }

    #[test]
    fn runtime_errors_are_reported() {
        assert!(expand("{{ $labels.target | humanize }}", 0.0).is_err());
        assert!(expand("{{ $undefined }}", 0.0).is_err());
    }
}
