//! Go's predefined template functions (`len`, `index`, `slice`, `print*`, the comparisons, the escapers),
//! over values already computed. `and` and `or` are lazy and live in the executor.

use std::cmp::Ordering;

use crate::gofmt::fmt_value;
use crate::gofmt::sprintf;
use crate::value::Value;

const BUILTINS: &[&str] = &[
    "and", "or", "not", "len", "index", "slice", "print", "printf", "println", "eq", "ne", "lt",
    "le", "gt", "ge", "html", "js", "urlquery",
];

pub fn is_builtin(name: &str) -> bool {
    BUILTINS.contains(&name)
}

fn want(name: &str, args: &[Value], count: usize) -> Result<(), String> {
    if args.len() != count {
        return Err(format!(
            "wrong number of args for {name}: want {count} got {}",
            args.len()
        ));
    }
    Ok(())
}

/// Calls the builtin `name`.
pub fn call(name: &str, args: &[Value]) -> Result<Value, String> {
    match name {
        "not" => {
            want(name, args, 1)?;
            Ok(Value::Bool(!args[0].truthy()))
        }
        "len" => {
            want(name, args, 1)?;
            length(&args[0]).map(|n| Value::Int(n as i64))
        }
        "index" => {
            let Some((item, indices)) = args.split_first() else {
                return Err("wrong number of args for index: want at least 1 got 0".to_owned());
            };
            let mut item = item.clone();
            for index in indices {
                item = index_one(&item, index)?;
            }
            Ok(item)
        }
        "slice" => slice(args),
        "print" => Ok(Value::String(sprint(args))),
        "println" => {
            let mut out = String::new();
            for (position, arg) in args.iter().enumerate() {
                if position > 0 {
                    out.push(' ');
                }
                fmt_value(arg, &mut out);
            }
            out.push('\n');
            Ok(Value::String(out))
        }
        "printf" => {
            let Some((format, rest)) = args.split_first() else {
                return Err("wrong number of args for printf: want at least 1 got 0".to_owned());
            };
            let Some(format) = format.as_str() else {
                return Err(format!(
                    "wrong type for value; expected string; got {}",
                    format.type_name()
                ));
            };
            // Go's own width bound keeps this under a megabyte; the executor holds it to the output limit.
            Ok(Value::String(sprintf(format, rest)))
        }
        "eq" => {
            let Some((first, rest)) = args.split_first() else {
                return Err("missing argument for comparison".to_owned());
            };
            if rest.is_empty() {
                return Err("missing argument for comparison".to_owned());
            }
            for other in rest {
                if equal(first, other)? {
                    return Ok(Value::Bool(true));
                }
            }
            Ok(Value::Bool(false))
        }
        "ne" => {
            want(name, args, 2)?;
            Ok(Value::Bool(!equal(&args[0], &args[1])?))
        }
        "lt" | "le" | "gt" | "ge" => {
            want(name, args, 2)?;
            let ordering = compare(&args[0], &args[1])?;
            Ok(Value::Bool(match name {
                "lt" => ordering == Ordering::Less,
                "le" => ordering != Ordering::Greater,
                "gt" => ordering == Ordering::Greater,
                _ => ordering != Ordering::Less,
            }))
        }
        "html" => Ok(Value::String(html_escape(&escaper_text(args)))),
        "js" => Ok(Value::String(js_escape(&escaper_text(args)))),
        "urlquery" => Ok(Value::String(query_escape(&escaper_text(args)))),
        other => Err(format!("function {other:?} not defined")),
    }
}

/// Go's `fmt.Sprint`: a space between operands when neither is a string.
pub fn sprint(args: &[Value]) -> String {
    let mut out = String::new();
    for (position, arg) in args.iter().enumerate() {
        let is_string = arg.as_str().is_some();
        if position > 0 && !is_string && args[position - 1].as_str().is_none() {
            out.push(' ');
        }
        fmt_value(arg, &mut out);
    }
    out
}

/// What the escapers escape: one string argument as is, anything else through `fmt.Sprint`.
fn escaper_text(args: &[Value]) -> String {
    if let [single] = args {
        if let Some(text) = single.as_str() {
            return text.to_owned();
        }
    }
    sprint(args)
}

fn length(value: &Value) -> Result<usize, String> {
    if let Some(text) = value.as_str() {
        return Ok(text.len());
    }
    if let Some(list) = value.as_list() {
        return Ok(list.len());
    }
    if let Some(map) = value.as_map() {
        return Ok(map.len());
    }
    match value {
        Value::Nil => Err("len of nil pointer".to_owned()),
        other => Err(format!("len of type {}", other.type_name())),
    }
}

fn int_index(index: &Value) -> Result<i64, String> {
    match index {
        Value::Int(value) => Ok(*value),
        Value::Nil => Err("cannot index slice/array with nil".to_owned()),
        other => Err(format!(
            "cannot index slice/array with type {}",
            other.type_name()
        )),
    }
}

fn index_one(item: &Value, index: &Value) -> Result<Value, String> {
    if let Some(list) = item.as_list() {
        let position = int_index(index)?;
        return usize::try_from(position)
            .ok()
            .and_then(|position| list.get(position))
            .cloned()
            .ok_or_else(|| format!("index out of range: {position}"));
    }
    if let Some(map) = item.as_map() {
        let Some(key) = index.as_str() else {
            return Err(format!(
                "value has type {}; should be string",
                index.type_name()
            ));
        };
        // Go gives the element type's zero value; the maps templates see hold strings.
        return Ok(map
            .get(key)
            .cloned()
            .unwrap_or_else(|| Value::String(String::new())));
    }
    if let Some(text) = item.as_str() {
        let position = int_index(index)?;
        return usize::try_from(position)
            .ok()
            .and_then(|position| text.as_bytes().get(position))
            .map(|&byte| Value::Int(i64::from(byte)))
            .ok_or_else(|| format!("index out of range: {position}"));
    }
    match item {
        Value::Nil => Err("index of untyped nil".to_owned()),
        other => Err(format!("can't index item of type {}", other.type_name())),
    }
}

fn slice(args: &[Value]) -> Result<Value, String> {
    let Some((item, indices)) = args.split_first() else {
        return Err("wrong number of args for slice: want at least 1 got 0".to_owned());
    };
    let length = match item {
        Value::String(text) | Value::Html(text) => text.len(),
        other => match other.as_list() {
            Some(list) => list.len(),
            None => return Err(format!("can't slice item of type {}", other.type_name())),
        },
    };
    if indices.len() > 3 || (indices.len() == 3 && item.as_str().is_some()) {
        return Err("too many slice indexes".to_owned());
    }
    let mut bounds = Vec::with_capacity(indices.len());
    for index in indices {
        let position = int_index(index)?;
        let position =
            usize::try_from(position).map_err(|_| format!("index out of range: {position}"))?;
        if position > length {
            return Err(format!("index out of range: {position}"));
        }
        bounds.push(position);
    }
    let low = bounds.first().copied().unwrap_or(0);
    let high = bounds.get(1).copied().unwrap_or(length);
    if low > high {
        return Err(format!("invalid slice index: {low} > {high}"));
    }
    if let Some(&cap) = bounds.get(2) {
        if high > cap {
            return Err(format!("invalid slice index: {high} > {cap}"));
        }
    }
    match item {
        Value::String(text) | Value::Html(text) => text
            .get(low..high)
            .map(|part| Value::String(part.to_owned()))
            .ok_or_else(|| "slice splits a UTF-8 character".to_owned()),
        other => Ok(Value::list(
            other
                .as_list()
                .map(|list| list[low..high].to_vec())
                .unwrap_or_default(),
        )),
    }
}

/// Go's basic kinds, which comparisons need.
#[derive(PartialEq, Eq, Clone, Copy)]
enum Kind {
    Invalid,
    Bool,
    Int,
    Float,
    String,
    Other,
}

fn kind(value: &Value) -> Kind {
    match value {
        Value::Nil => Kind::Invalid,
        Value::Bool(_) => Kind::Bool,
        Value::Int(_) => Kind::Int,
        Value::Float(_) => Kind::Float,
        Value::String(_) | Value::Html(_) => Kind::String,
        _ => Kind::Other,
    }
}

const INCOMPATIBLE: &str = "incompatible types for comparison";

/// Go's `eq` for two values: different kinds are an error unless one is nil (then unequal).
fn equal(left: &Value, right: &Value) -> Result<bool, String> {
    let (k1, k2) = (kind(left), kind(right));
    if k1 != k2 {
        if k1 == Kind::Invalid || k2 == Kind::Invalid {
            return Ok(false);
        }
        return Err(INCOMPATIBLE.to_owned());
    }
    Ok(match (left, right) {
        (Value::Nil, Value::Nil) => true,
        (Value::Bool(a), Value::Bool(b)) => a == b,
        (Value::Int(a), Value::Int(b)) => a == b,
        (Value::Float(a), Value::Float(b)) => a == b,
        (a, b) if k1 == Kind::String => a.as_str() == b.as_str(),
        (other, _) => return Err(format!("non-comparable type {}", other.type_name())),
    })
}

/// Go's ordering for `lt` and friends: ints, floats and strings, each only with its own kind.
fn compare(left: &Value, right: &Value) -> Result<Ordering, String> {
    let (k1, k2) = (kind(left), kind(right));
    let basic = |k: Kind| matches!(k, Kind::Bool | Kind::Int | Kind::Float | Kind::String);
    if !basic(k1) || !basic(k2) {
        return Err("invalid type for comparison".to_owned());
    }
    if k1 != k2 {
        return Err(INCOMPATIBLE.to_owned());
    }
    match (left, right) {
        (Value::Int(a), Value::Int(b)) => Ok(a.cmp(b)),
        // With a NaN Go's `lt` and `le` are false and `gt`/`ge` (their negations) true: "greater".
        (Value::Float(a), Value::Float(b)) => Ok(a.partial_cmp(b).unwrap_or(Ordering::Greater)),
        (a, b) if k1 == Kind::String => Ok(a.as_str().cmp(&b.as_str())),
        _ => Err("invalid type for comparison".to_owned()),
    }
}

/// Go's `template.HTMLEscapeString`.
pub fn html_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '\'' => out.push_str("&#39;"),
            '"' => out.push_str("&#34;"),
            '\0' => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    out
}

/// What Go's `html/template` escapes a value to in HTML text (its `htmlEscaper`: `+` too, unlike
/// [`html_escape`]).
pub fn html_template_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '\'' => out.push_str("&#39;"),
            '"' => out.push_str("&#34;"),
            '+' => out.push_str("&#43;"),
            '\0' => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    out
}

/// Go's `template.JSEscapeString`.
pub fn js_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\'' => out.push_str("\\'"),
            '"' => out.push_str("\\\""),
            '<' => out.push_str("\\u003C"),
            '>' => out.push_str("\\u003E"),
            '&' => out.push_str("\\u0026"),
            '=' => out.push_str("\\u003D"),
            c if (c as u32) < 0x20 || c.is_control() => {
                out.push_str(&format!("\\u{:04X}", c as u32));
            }
            c => out.push(c),
        }
    }
    out
}

/// Go's `url.QueryEscape`.
pub fn query_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(byte as char)
            }
            b' ' => out.push('+'),
            other => out.push_str(&format!("%{other:02X}")),
        }
    }
    out
}
