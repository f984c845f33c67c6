//! The template lexer and parser: text and `{{ ... }}` actions into [`Node`]s, refusing at parse time, by
//! name, what dbwatch does not expand.

use super::tree::*;

#[derive(Debug, Clone, PartialEq)]
pub(super) enum Token {
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

pub(super) struct Parser<'a> {
    source: &'a str,
}

pub(super) const KEYWORDS: &[&str] = &[
    "if", "else", "end", "range", "with", "define", "template", "block", "break", "continue",
];
pub(super) const QUERY_FUNCTIONS: &[&str] = &[
    "query",
    "first",
    "label",
    "value",
    "strvalue",
    "sortByLabel",
];

impl<'a> Parser<'a> {
    pub(super) fn new(source: &'a str) -> Self {
        Parser { source }
    }

    pub(super) fn parse(&self) -> Result<Vec<Node>, TemplateError> {
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

pub(super) fn push_text(nodes: &mut Vec<Node>, text: &str, trim_start: bool, trim_end: bool) {
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
pub(super) fn split_action(input: &str) -> Result<(&str, bool, &str), TemplateError> {
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

pub(super) fn lex(body: &str) -> Result<Vec<Token>, TemplateError> {
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

pub(super) fn parse_action(tokens: &[Token]) -> Result<Node, TemplateError> {
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
pub(super) fn parse_pipeline(tokens: &[Token]) -> Result<(Pipeline, usize), TemplateError> {
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

pub(super) fn parse_number(text: &str) -> Result<Operand, TemplateError> {
    let cleaned = text.replace('_', "");
    if let Ok(int) = cleaned.parse::<i64>() {
        return Ok(Operand::Int(int));
    }
    cleaned
        .parse::<f64>()
        .map(Operand::Float)
        .map_err(|_| TemplateError(format!("bad number syntax: {text:?}")))
}

pub(super) fn check_variable(name: &str, fields: &[String]) -> Result<(), TemplateError> {
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

pub(super) fn check_root_fields(fields: &[String]) -> Result<(), TemplateError> {
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
