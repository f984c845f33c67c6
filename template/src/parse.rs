//! Go's `text/template` lexer and parser: text and `{{ ... }}` actions (with `{{-`/`-}}` trimming and
//! comments) into [`Node`]s, `define`d and `block` templates apart. Functions and variables are checked at
//! parse time as Go does (an undefined function or variable is a parse error).

use std::sync::Arc;

use crate::error::{Error, ErrorKind};
use crate::tree::*;
use crate::value::Value;

/// Parenthesis and control-structure nesting past this is refused: the parser and the executor recurse.
pub const MAX_NESTING: usize = 100;

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    /// `.Name`
    Field(String),
    /// `.` alone
    Dot,
    /// `$name`; "" for `$`.
    Variable(String),
    Literal(LiteralValue),
    Pipe,
    LParen,
    RParen,
    Declare,
    Assign,
    Comma,
}

#[derive(Debug, Clone, PartialEq)]
enum LiteralValue {
    Str(String),
    Int(i64),
    Float(f64),
}

#[derive(Debug, Clone)]
struct Token {
    tok: Tok,
    pos: usize,
    space_before: bool,
}

enum Item {
    Text(String),
    Action { pos: usize, tokens: Vec<Token> },
}

/// What parsing one source gives: its top-level tree and the templates it `define`s (or `block`s).
pub struct Parsed {
    pub top: Tree,
    pub defined: Vec<Tree>,
}

/// Parses `source` as the template `name`; `is_function` says which function names exist, `variables` the
/// variables declared before the template runs (besides `$`).
pub fn parse(
    name: &str,
    source_name: &str,
    source: &str,
    is_function: &dyn Fn(&str) -> bool,
    variables: &[String],
) -> Result<Parsed, Error> {
    let source_name: Arc<str> = Arc::from(source_name);
    let source_arc: Arc<str> = Arc::from(source);
    let items = scan(source, &source_name)?;
    let mut parser = Parser {
        source,
        source_name: source_name.clone(),
        source_arc: source_arc.clone(),
        items,
        index: 0,
        is_function,
        vars: Vec::new(),
        base_vars: variables.to_vec(),
        defined: Vec::new(),
        range_depth: 0,
        nesting: 0,
    };
    parser.reset_vars();
    let (nodes, end) = parser.list_until(true)?;
    if let Some((pos, end)) = end {
        let word = match end {
            End::End => "end",
            End::Else(..) => "else",
        };
        return Err(parser.error(pos, format!("unexpected {{{{{word}}}}}")));
    }
    Ok(Parsed {
        top: Tree {
            name: name.to_owned(),
            source_name,
            source: source_arc,
            nodes,
        },
        defined: parser.defined,
    })
}

fn is_space(byte: u8) -> bool {
    matches!(byte, b' ' | b'\t' | b'\r' | b'\n')
}

fn trim_space_end(text: &str) -> &str {
    text.trim_end_matches([' ', '\t', '\r', '\n'])
}

fn trim_space_start(text: &str) -> &str {
    text.trim_start_matches([' ', '\t', '\r', '\n'])
}

/// Splits the source into text and actions, applying the trim markers and dropping comments.
fn scan(source: &str, source_name: &str) -> Result<Vec<Item>, Error> {
    let error =
        |pos: usize, message: &str| Error::at(source_name, source, pos, ErrorKind::Parse, message);
    let bytes = source.as_bytes();
    let mut items = Vec::new();
    let mut at = 0;
    let mut trim_next = false;
    while at < source.len() {
        let Some(found) = source[at..].find("{{") else {
            let mut text = &source[at..];
            if trim_next {
                text = trim_space_start(text);
            }
            if !text.is_empty() {
                items.push(Item::Text(text.to_owned()));
            }
            break;
        };
        let open = at + found;
        let mut body = open + 2;
        let trim_left =
            bytes.get(body) == Some(&b'-') && bytes.get(body + 1).is_some_and(|&b| is_space(b));
        let mut text = &source[at..open];
        if trim_next {
            text = trim_space_start(text);
        }
        if trim_left {
            text = trim_space_end(text);
            body += 2;
        }
        if !text.is_empty() {
            items.push(Item::Text(text.to_owned()));
        }
        // A comment is the whole action: `{{/* ... */}}` or `{{- /* ... */ -}}`.
        let after_spaces = if trim_left {
            body + source[body..].len() - trim_space_start(&source[body..]).len()
        } else {
            body
        };
        if source[after_spaces..].starts_with("/*") {
            let Some(end) = source[after_spaces + 2..].find("*/") else {
                return Err(error(open, "unclosed comment"));
            };
            let close = after_spaces + 2 + end + 2;
            let rest = &source[close..];
            if let Some(stripped) = rest.strip_prefix("}}") {
                trim_next = false;
                at = source.len() - stripped.len();
            } else if rest.len() > 3 && is_space(rest.as_bytes()[0]) && rest[1..].starts_with("-}}")
            {
                trim_next = true;
                at = close + 4;
            } else {
                return Err(error(close, "comment ends before closing delimiter"));
            }
            continue;
        }
        let (tokens, end, trim_right) = lex_action(source, body, source_name)?;
        items.push(Item::Action { pos: open, tokens });
        trim_next = trim_right;
        at = end;
    }
    Ok(items)
}

/// Lexes one action from `start` (after `{{` and any trim marker) to its closing delimiter; returns the
/// tokens, the offset after the delimiter and whether it trims the text after it.
fn lex_action(
    source: &str,
    start: usize,
    source_name: &str,
) -> Result<(Vec<Token>, usize, bool), Error> {
    let error = |pos: usize, message: String| {
        Error::at(source_name, source, pos, ErrorKind::Parse, message)
    };
    let bytes = source.as_bytes();
    let mut tokens = Vec::new();
    let mut index = start;
    let mut space_before = false;
    let is_ident = |c: char| c.is_alphanumeric() || c == '_';
    let ident_end = |from: usize| -> usize {
        source[from..]
            .char_indices()
            .find(|&(_, c)| !is_ident(c))
            .map_or(source.len(), |(offset, _)| from + offset)
    };
    loop {
        let Some(c) = source[index..].chars().next() else {
            return Err(error(start, "unclosed action".to_owned()));
        };
        if c == ' ' || c == '\t' || c == '\r' || c == '\n' {
            if source[index + 1..].starts_with("-}}") {
                return Ok((tokens, index + 4, true));
            }
            index += 1;
            space_before = true;
            continue;
        }
        if source[index..].starts_with("}}") {
            return Ok((tokens, index + 2, false));
        }
        let pos = index;
        let push = |tokens: &mut Vec<Token>, tok: Tok| {
            tokens.push(Token {
                tok,
                pos,
                space_before,
            })
        };
        match c {
            '|' => {
                push(&mut tokens, Tok::Pipe);
                index += 1;
            }
            '(' => {
                push(&mut tokens, Tok::LParen);
                index += 1;
            }
            ')' => {
                push(&mut tokens, Tok::RParen);
                index += 1;
            }
            ',' => {
                push(&mut tokens, Tok::Comma);
                index += 1;
            }
            ':' if bytes.get(index + 1) == Some(&b'=') => {
                push(&mut tokens, Tok::Declare);
                index += 2;
            }
            '=' => {
                push(&mut tokens, Tok::Assign);
                index += 1;
            }
            '$' => {
                let end = ident_end(index + 1);
                push(
                    &mut tokens,
                    Tok::Variable(source[index + 1..end].to_owned()),
                );
                index = end;
            }
            '.' if !bytes.get(index + 1).is_some_and(u8::is_ascii_digit) => {
                let end = ident_end(index + 1);
                if end == index + 1 {
                    push(&mut tokens, Tok::Dot);
                } else {
                    push(&mut tokens, Tok::Field(source[index + 1..end].to_owned()));
                }
                index = end;
            }
            '"' => {
                let (text, end) =
                    unquote(source, index).map_err(|message| error(index, message))?;
                push(&mut tokens, Tok::Literal(LiteralValue::Str(text)));
                index = end;
            }
            '`' => {
                let Some(end) = source[index + 1..].find('`') else {
                    return Err(error(index, "unterminated raw quoted string".to_owned()));
                };
                let text = source[index + 1..index + 1 + end].to_owned();
                push(&mut tokens, Tok::Literal(LiteralValue::Str(text)));
                index += end + 2;
            }
            '\'' => {
                let (value, end) =
                    char_constant(source, index).map_err(|message| error(index, message))?;
                push(&mut tokens, Tok::Literal(LiteralValue::Int(value)));
                index = end;
            }
            c if c.is_ascii_digit()
                || ((c == '-' || c == '+' || c == '.')
                    && bytes
                        .get(index + 1)
                        .is_some_and(|b| b.is_ascii_digit() || *b == b'.')) =>
            {
                let mut end = index + 1;
                while end < bytes.len()
                    && (bytes[end].is_ascii_alphanumeric()
                        || bytes[end] == b'.'
                        || bytes[end] == b'_'
                        || ((bytes[end] == b'-' || bytes[end] == b'+')
                            && matches!(bytes[end - 1], b'e' | b'E' | b'p' | b'P')))
                {
                    end += 1;
                }
                let text = &source[index..end];
                let literal = parse_number(text)
                    .ok_or_else(|| error(index, format!("bad number syntax: {text:?}")))?;
                push(&mut tokens, Tok::Literal(literal));
                index = end;
            }
            c if is_ident(c) => {
                let end = ident_end(index);
                push(&mut tokens, Tok::Ident(source[index..end].to_owned()));
                index = end;
            }
            other => {
                return Err(error(
                    index,
                    format!("unrecognized character in action: {other:?}"),
                ));
            }
        }
        space_before = false;
    }
}

fn parse_number(text: &str) -> Option<LiteralValue> {
    let cleaned = text.replace('_', "");
    let (negative, digits) = match cleaned.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, cleaned.strip_prefix('+').unwrap_or(&cleaned)),
    };
    let radix = if digits.len() > 2 {
        match &digits[..2] {
            "0x" | "0X" => Some(16),
            "0o" | "0O" => Some(8),
            "0b" | "0B" => Some(2),
            _ => None,
        }
    } else {
        None
    };
    if let Some(radix) = radix {
        let magnitude = i64::from_str_radix(&digits[2..], radix).ok()?;
        return Some(LiteralValue::Int(if negative {
            -magnitude
        } else {
            magnitude
        }));
    }
    if digits.len() > 1 && digits.starts_with('0') && digits.bytes().all(|b| b.is_ascii_digit()) {
        let magnitude = i64::from_str_radix(&digits[1..], 8).ok()?;
        return Some(LiteralValue::Int(if negative {
            -magnitude
        } else {
            magnitude
        }));
    }
    if let Ok(value) = cleaned.parse::<i64>() {
        return Some(LiteralValue::Int(value));
    }
    if cleaned
        .bytes()
        .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'e' | b'E' | b'-' | b'+'))
    {
        return cleaned
            .parse::<f64>()
            .ok()
            .filter(|v| v.is_finite())
            .map(LiteralValue::Float);
    }
    None
}

/// Go's interpreted string literal starting at `start` (a `"`): its value and the offset after it.
fn unquote(source: &str, start: usize) -> Result<(String, usize), String> {
    let mut out = String::new();
    let mut chars = source[start + 1..].char_indices();
    while let Some((offset, c)) = chars.next() {
        match c {
            '"' => return Ok((out, start + 1 + offset + 1)),
            '\n' => return Err("unterminated quoted string".to_owned()),
            '\\' => {
                let Some((_, escaped)) = chars.next() else {
                    break;
                };
                out.push(escape(escaped, &mut chars, '"')?);
            }
            c => out.push(c),
        }
    }
    Err("unterminated quoted string".to_owned())
}

fn escape(
    escaped: char,
    chars: &mut std::str::CharIndices<'_>,
    quote: char,
) -> Result<char, String> {
    let mut hex = |count: usize| -> Result<char, String> {
        let mut value = 0u32;
        for _ in 0..count {
            let digit = chars
                .next()
                .and_then(|(_, c)| c.to_digit(16))
                .ok_or_else(|| "invalid syntax in escape".to_owned())?;
            value = value * 16 + digit;
        }
        char::from_u32(value).ok_or_else(|| "invalid Unicode code point in escape".to_owned())
    };
    Ok(match escaped {
        'a' => '\u{7}',
        'b' => '\u{8}',
        'f' => '\u{c}',
        'n' => '\n',
        'r' => '\r',
        't' => '\t',
        'v' => '\u{b}',
        '\\' => '\\',
        'x' => hex(2)?,
        'u' => hex(4)?,
        'U' => hex(8)?,
        c if c == quote => c,
        c @ '0'..='7' => {
            let mut value = c.to_digit(8).unwrap_or(0);
            for _ in 0..2 {
                let digit = chars
                    .next()
                    .and_then(|(_, c)| c.to_digit(8))
                    .ok_or_else(|| "invalid octal escape".to_owned())?;
                value = value * 8 + digit;
            }
            char::from_u32(value)
                .filter(|_| value < 256)
                .ok_or_else(|| "invalid octal escape".to_owned())?
        }
        other => return Err(format!("invalid escape \\{other} in quoted string")),
    })
}

/// Go's character constant (`'a'`, `'\n'`): an int.
fn char_constant(source: &str, start: usize) -> Result<(i64, usize), String> {
    let mut chars = source[start + 1..].char_indices();
    let value = match chars.next() {
        Some((_, '\\')) => {
            let (_, escaped) = chars.next().ok_or("unterminated character constant")?;
            escape(escaped, &mut chars, '\'')?
        }
        Some((_, '\'')) | Some((_, '\n')) | None => {
            return Err("malformed character constant".to_owned())
        }
        Some((_, c)) => c,
    };
    match chars.next() {
        Some((offset, '\'')) => Ok((i64::from(u32::from(value)), start + 1 + offset + 1)),
        _ => Err("unterminated character constant".to_owned()),
    }
}

struct Parser<'a> {
    source: &'a str,
    source_name: Arc<str>,
    source_arc: Arc<str>,
    items: Vec<Item>,
    index: usize,
    is_function: &'a dyn Fn(&str) -> bool,
    vars: Vec<String>,
    base_vars: Vec<String>,
    defined: Vec<Tree>,
    range_depth: usize,
    nesting: usize,
}

/// A list and what ended it (none at the end of the source), with the terminator's position.
type Listed = (Vec<Node>, Option<(usize, End)>);

/// What ended a list: `end` or `else` (with what follows `else`).
enum End {
    End,
    Else(usize, Vec<Token>),
}

impl Parser<'_> {
    fn error(&self, pos: usize, message: impl Into<String>) -> Error {
        Error::at(
            &self.source_name,
            self.source,
            pos,
            ErrorKind::Parse,
            message,
        )
    }

    fn reset_vars(&mut self) {
        self.vars = vec![String::new()];
        self.vars.extend(self.base_vars.iter().cloned());
    }

    /// Nodes up to `{{end}}`/`{{else}}` (or the end of the source at the top level), and what ended them.
    fn list_until(&mut self, top: bool) -> Result<Listed, Error> {
        let mut nodes = Vec::new();
        while self.index < self.items.len() {
            let index = self.index;
            self.index += 1;
            let (pos, tokens) = match &mut self.items[index] {
                Item::Text(text) => {
                    nodes.push(Node::Text(std::mem::take(text)));
                    continue;
                }
                Item::Action { pos, tokens } => (*pos, std::mem::take(tokens)),
            };
            let keyword = match tokens.first().map(|token| &token.tok) {
                Some(Tok::Ident(word)) => word.as_str(),
                _ => "",
            };
            match keyword {
                "end" => {
                    if tokens.len() > 1 {
                        return Err(self.error(tokens[1].pos, "unexpected token in {{end}}"));
                    }
                    return Ok((nodes, Some((pos, End::End))));
                }
                "else" => return Ok((nodes, Some((pos, End::Else(pos, tokens[1..].to_vec()))))),
                "define" => {
                    if !top {
                        return Err(self.error(pos, "{{define}} is allowed only at the top level"));
                    }
                    self.define(pos, &tokens[1..])?;
                }
                _ => nodes.push(self.action(pos, &tokens)?),
            }
        }
        if top {
            Ok((nodes, None))
        } else {
            Err(self.error(self.source.len(), "unexpected EOF"))
        }
    }

    fn template_name(&self, pos: usize, tokens: &[Token], what: &str) -> Result<String, Error> {
        match tokens.first() {
            Some(Token {
                tok: Tok::Literal(LiteralValue::Str(name)),
                ..
            }) => Ok(name.clone()),
            _ => Err(self.error(pos, format!("{what} needs a quoted template name"))),
        }
    }

    fn define(&mut self, pos: usize, tokens: &[Token]) -> Result<(), Error> {
        let name = self.template_name(pos, tokens, "{{define}}")?;
        if tokens.len() > 1 {
            return Err(self.error(tokens[1].pos, "unexpected token in {{define}}"));
        }
        let saved = std::mem::take(&mut self.vars);
        let saved_range = std::mem::replace(&mut self.range_depth, 0);
        self.reset_vars();
        let (nodes, end) = self.nested_list()?;
        self.vars = saved;
        self.range_depth = saved_range;
        if let End::Else(else_pos, _) = end {
            return Err(self.error(else_pos, "unexpected {{else}} in {{define}}"));
        }
        self.defined.push(Tree {
            name,
            source_name: self.source_name.clone(),
            source: self.source_arc.clone(),
            nodes,
        });
        Ok(())
    }

    /// A list that must end with `end` or `else`.
    fn nested_list(&mut self) -> Result<(Vec<Node>, End), Error> {
        self.nesting += 1;
        if self.nesting > MAX_NESTING {
            return Err(self.error(
                self.items_pos(),
                format!("control structures nested deeper than {MAX_NESTING}"),
            ));
        }
        let (nodes, end) = self.list_until(false)?;
        self.nesting -= 1;
        match end {
            Some((_, end)) => Ok((nodes, end)),
            None => Err(self.error(self.source.len(), "unexpected EOF")),
        }
    }

    fn items_pos(&self) -> usize {
        match self.items.get(self.index.saturating_sub(1)) {
            Some(Item::Action { pos, .. }) => *pos,
            _ => 0,
        }
    }

    fn action(&mut self, pos: usize, tokens: &[Token]) -> Result<Node, Error> {
        let keyword = match tokens.first().map(|token| &token.tok) {
            Some(Tok::Ident(word)) => word.clone(),
            _ => String::new(),
        };
        match keyword.as_str() {
            "if" => self.control(pos, &tokens[1..], "if"),
            "with" => self.control(pos, &tokens[1..], "with"),
            "range" => self.control(pos, &tokens[1..], "range"),
            "break" | "continue" => {
                if self.range_depth == 0 {
                    return Err(self.error(pos, format!("{{{{{keyword}}}}} outside {{{{range}}}}")));
                }
                if tokens.len() > 1 {
                    return Err(self.error(
                        tokens[1].pos,
                        format!("unexpected token in {{{{{keyword}}}}}"),
                    ));
                }
                Ok(if keyword == "break" {
                    Node::Break
                } else {
                    Node::Continue
                })
            }
            "template" => {
                let name = self.template_name(pos, &tokens[1..], "{{template}}")?;
                let pipe = if tokens.len() > 2 {
                    Some(self.pipeline(&tokens[2..], "template", false)?)
                } else {
                    None
                };
                Ok(Node::Template { pos, name, pipe })
            }
            "block" => {
                let name = self.template_name(pos, &tokens[1..], "{{block}}")?;
                if tokens.len() < 3 {
                    return Err(self.error(pos, "missing pipeline in {{block}}"));
                }
                let pipe = self.pipeline(&tokens[2..], "block", false)?;
                let saved = std::mem::take(&mut self.vars);
                let saved_range = std::mem::replace(&mut self.range_depth, 0);
                self.reset_vars();
                let (nodes, end) = self.nested_list()?;
                self.vars = saved;
                self.range_depth = saved_range;
                if let End::Else(else_pos, _) = end {
                    return Err(self.error(else_pos, "unexpected {{else}} in {{block}}"));
                }
                self.defined.push(Tree {
                    name: name.clone(),
                    source_name: self.source_name.clone(),
                    source: self.source_arc.clone(),
                    nodes,
                });
                Ok(Node::Template {
                    pos,
                    name,
                    pipe: Some(pipe),
                })
            }
            _ => {
                let pipe = self.pipeline(tokens, "command", true)?;
                Ok(Node::Action(pipe))
            }
        }
    }

    fn control(&mut self, pos: usize, tokens: &[Token], kind: &'static str) -> Result<Node, Error> {
        if tokens.is_empty() {
            return Err(self.error(pos, format!("missing value for {kind}")));
        }
        let mark = self.vars.len();
        let pipe = self.pipeline(tokens, kind, true)?;
        if kind == "range" {
            self.range_depth += 1;
        }
        let (list, end) = self.nested_list()?;
        if kind == "range" {
            self.range_depth -= 1;
        }
        let else_list = match end {
            End::End => None,
            End::Else(else_pos, rest) => {
                let chained = match rest.first().map(|token| &token.tok) {
                    Some(Tok::Ident(word))
                        if (word == "if" && kind == "if") || (word == "with" && kind == "with") =>
                    {
                        true
                    }
                    None => false,
                    Some(_) => {
                        return Err(self.error(
                            else_pos,
                            format!("unexpected token after {{{{else}}}} in {{{{{kind}}}}}"),
                        ))
                    }
                };
                if chained {
                    // `{{else if x}}` is `{{else}}{{if x}}...{{end}}` sharing the one `{{end}}`.
                    self.vars.truncate(mark);
                    let nested = self.control(else_pos, &rest[1..], kind)?;
                    Some(vec![nested])
                } else {
                    let (list, end) = self.nested_list()?;
                    if let End::Else(pos, _) = end {
                        return Err(self.error(
                            pos,
                            format!("expected end; found {{{{else}}}} in {{{{{kind}}}}}"),
                        ));
                    }
                    Some(list)
                }
            }
        };
        self.vars.truncate(mark);
        let branch = Branch {
            pos,
            pipe,
            list,
            else_list,
        };
        Ok(match kind {
            "if" => Node::If(branch),
            "with" => Node::With(branch),
            _ => Node::Range(branch),
        })
    }

    /// A pipeline with its optional declaration; `allow_decl` for actions and control structures.
    fn pipeline(
        &mut self,
        tokens: &[Token],
        context: &str,
        allow_decl: bool,
    ) -> Result<Pipe, Error> {
        let pos = tokens.first().map_or(0, |token| token.pos);
        let mut decl = Vec::new();
        let mut is_assign = false;
        let mut rest = tokens;
        if allow_decl {
            let variable = |token: Option<&Token>| match token.map(|token| &token.tok) {
                Some(Tok::Variable(name)) => Some(name.clone()),
                _ => None,
            };
            match (tokens.first(), tokens.get(1).map(|t| &t.tok)) {
                (Some(first), Some(Tok::Declare | Tok::Assign))
                    if variable(Some(first)).is_some() =>
                {
                    decl.push(variable(Some(first)).unwrap_or_default());
                    is_assign = tokens[1].tok == Tok::Assign;
                    rest = &tokens[2..];
                }
                (Some(first), Some(Tok::Comma))
                    if context == "range" && variable(Some(first)).is_some() =>
                {
                    let second = variable(tokens.get(2));
                    match (second, tokens.get(3).map(|t| &t.tok)) {
                        (Some(second), Some(Tok::Declare | Tok::Assign)) => {
                            decl.push(variable(Some(first)).unwrap_or_default());
                            decl.push(second);
                            is_assign = tokens[3].tok == Tok::Assign;
                            rest = &tokens[4..];
                        }
                        _ => {
                            return Err(self.error(first.pos, "range can only initialize variables"))
                        }
                    }
                }
                _ => {}
            }
        }
        if is_assign {
            for name in &decl {
                if !self.vars.contains(name) {
                    return Err(self.error(pos, format!("undefined variable \"${name}\"")));
                }
            }
        }
        let (cmds, used) = self.commands(rest, 0)?;
        if used != rest.len() {
            return Err(self.error(rest[used].pos, "unexpected \")\" in operand"));
        }
        if cmds.is_empty() {
            return Err(self.error(pos, format!("missing value for {context}")));
        }
        if !is_assign {
            self.vars.extend(decl.iter().cloned());
        }
        Ok(Pipe {
            pos,
            decl,
            is_assign,
            cmds,
        })
    }

    /// Commands up to an unmatched `)` or the end; returns them and the tokens used.
    fn commands(&mut self, tokens: &[Token], depth: usize) -> Result<(Vec<Command>, usize), Error> {
        if depth > MAX_NESTING {
            let pos = tokens.first().map_or(0, |token| token.pos);
            return Err(self.error(pos, format!("parentheses nested deeper than {MAX_NESTING}")));
        }
        let mut cmds: Vec<Command> = Vec::new();
        let mut args: Vec<Arg> = Vec::new();
        let mut cmd_pos = tokens.first().map_or(0, |token| token.pos);
        let mut index = 0;
        while index < tokens.len() {
            let token = &tokens[index];
            match &token.tok {
                Tok::RParen => break,
                Tok::Pipe => {
                    if args.is_empty() {
                        return Err(self.error(token.pos, "missing command"));
                    }
                    cmds.push(Command {
                        pos: cmd_pos,
                        args: std::mem::take(&mut args),
                    });
                    index += 1;
                    cmd_pos = tokens.get(index).map_or(token.pos, |token| token.pos);
                    continue;
                }
                _ => {}
            }
            if !args.is_empty() && !token.space_before && !matches!(token.tok, Tok::LParen) {
                // Go requires space between operands.
                if !matches!(tokens[index - 1].tok, Tok::LParen) {
                    return Err(self.error(token.pos, "missing space between operands"));
                }
            }
            let (arg, used) = self.operand(&tokens[index..], depth)?;
            args.push(arg);
            index += used;
        }
        if !args.is_empty() {
            cmds.push(Command { pos: cmd_pos, args });
        } else if !cmds.is_empty() {
            return Err(self.error(cmd_pos, "missing command"));
        }
        for (stage, cmd) in cmds.iter().enumerate() {
            let literal = matches!(cmd.args[0], Arg::Literal(_) | Arg::Nil)
                || matches!(&cmd.args[0], Arg::Field(fields) if fields.is_empty());
            if stage > 0 && literal {
                return Err(self.error(
                    cmd.pos,
                    format!("non executable command in pipeline stage {}", stage + 1),
                ));
            }
            if matches!(cmd.args[0], Arg::Nil) && cmd.args.len() == 1 && cmds.len() == 1 {
                return Err(self.error(cmd.pos, "nil is not a command"));
            }
        }
        Ok((cmds, index))
    }

    /// One operand: a term and any field chain attached to it.
    fn operand(&mut self, tokens: &[Token], depth: usize) -> Result<(Arg, usize), Error> {
        let token = &tokens[0];
        let mut used = 1;
        let mut arg = match &token.tok {
            Tok::Dot => Arg::Field(Vec::new()),
            Tok::Field(name) => {
                let mut fields = vec![name.clone()];
                while let Some(Token {
                    tok: Tok::Field(next),
                    space_before: false,
                    ..
                }) = tokens.get(used)
                {
                    fields.push(next.clone());
                    used += 1;
                }
                return Ok((Arg::Field(fields), used));
            }
            Tok::Variable(name) => {
                if !self.vars.contains(name) {
                    return Err(self.error(token.pos, format!("undefined variable \"${name}\"")));
                }
                Arg::Variable(name.clone(), Vec::new())
            }
            Tok::Literal(literal) => Arg::Literal(match literal {
                LiteralValue::Str(text) => Value::String(text.clone()),
                LiteralValue::Int(value) => Value::Int(*value),
                LiteralValue::Float(value) => Value::Float(*value),
            }),
            Tok::Ident(word) => match word.as_str() {
                "true" => Arg::Literal(Value::Bool(true)),
                "false" => Arg::Literal(Value::Bool(false)),
                "nil" => Arg::Nil,
                "if" | "else" | "end" | "range" | "with" | "define" | "template" | "block"
                | "break" | "continue" => {
                    return Err(self.error(token.pos, format!("unexpected <{word}> in operand")));
                }
                name => {
                    if !(self.is_function)(name) {
                        return Err(Error::at(
                            &self.source_name,
                            self.source,
                            token.pos,
                            ErrorKind::UndefinedFunction(name.to_owned()),
                            format!("function {name:?} not defined"),
                        ));
                    }
                    Arg::Function(name.to_owned())
                }
            },
            Tok::LParen => {
                let (cmds, inner) = self.commands(&tokens[1..], depth + 1)?;
                used += inner;
                if !matches!(tokens.get(used).map(|t| &t.tok), Some(Tok::RParen)) {
                    return Err(self.error(token.pos, "unclosed left paren"));
                }
                used += 1;
                if cmds.is_empty() {
                    return Err(self.error(token.pos, "missing command in parentheses"));
                }
                Arg::Pipe(Box::new(Pipe {
                    pos: token.pos,
                    decl: Vec::new(),
                    is_assign: false,
                    cmds,
                }))
            }
            Tok::RParen | Tok::Pipe => {
                return Err(self.error(token.pos, "unexpected token in operand"))
            }
            Tok::Declare | Tok::Assign => {
                return Err(self.error(token.pos, "unexpected \":=\" or \"=\" in operand"))
            }
            Tok::Comma => return Err(self.error(token.pos, "unexpected \",\" in operand")),
        };
        let mut chain = Vec::new();
        while let Some(Token {
            tok: Tok::Field(next),
            space_before: false,
            ..
        }) = tokens.get(used)
        {
            chain.push(next.clone());
            used += 1;
        }
        if !chain.is_empty() {
            arg = match arg {
                Arg::Variable(name, _) => Arg::Variable(name, chain),
                Arg::Pipe(pipe) => Arg::Chain(pipe, chain),
                Arg::Field(_) | Arg::Literal(_) | Arg::Nil | Arg::Function(_) | Arg::Chain(..) => {
                    return Err(self.error(token.pos, "unexpected . after term"));
                }
            };
        }
        Ok((arg, used))
    }
}
