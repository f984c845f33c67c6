//! Go's `fmt` where templates show numbers and values: `%g`, `%e`, `%f` as Go prints them (shortest
//! representation that reads back, Go's exponent form), `printf`'s verbs, and `%v` of a template value.

use std::collections::BTreeMap;

use crate::value::Value;

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
pub fn format_e(value: f64, precision: usize) -> String {
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
pub fn format_f(value: f64, precision: usize) -> String {
    if let Some(special) = special_float(value) {
        return special.to_owned();
    }
    format!("{value:.precision$}")
}

pub fn special_float(value: f64) -> Option<&'static str> {
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

pub fn push_exponent(out: &mut String, exponent: i32) {
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
pub fn decimal_digits(value: f64, significant: Option<usize>) -> (bool, String, i32) {
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
pub fn fixed_from_digits(digits: &str, decimal_point: i32, decimals: usize) -> String {
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
pub const GO_FMT_MAX_NUMBER: usize = 1_000_000;

/// Reads a width or precision as Go's `fmt.parsenum` does: `Some(None)` when there are no digits,
/// `Some(Some(n))` for a number, `None` when the number passed [`GO_FMT_MAX_NUMBER`] (Go then stops
/// formatting, and the rest of the format is consumed).
pub fn go_parsenum(chars: &mut std::iter::Peekable<std::str::Chars<'_>>) -> Option<Option<usize>> {
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
pub fn sprintf(format: &str, args: &[Value]) -> String {
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
        if verb == 'T' {
            match args.get(next_arg) {
                Some(Value::Nil) => out.push_str("<nil>"),
                Some(arg) => out.push_str(&arg.type_name()),
                None => out.push_str("%!T(MISSING)"),
            }
            next_arg += 1;
            continue;
        }
        let Some(arg) = args.get(next_arg) else {
            out.push_str(&format!("%!{verb}(MISSING)"));
            continue;
        };
        next_arg += 1;
        let formatted = match (verb, arg) {
            ('v' | 'g' | 'G', Value::Float(value)) => format_g(*value, precision),
            ('f' | 'F', Value::Float(value)) => format_f(*value, precision.unwrap_or(6)),
            ('e' | 'E', Value::Float(value)) => {
                let text = format_e(*value, precision.unwrap_or(6));
                if verb == 'E' {
                    text.to_uppercase()
                } else {
                    text
                }
            }
            ('v' | 'd', Value::Int(value)) => value.to_string(),
            // Go prints a sign and the magnitude, never the two's complement.
            ('x' | 'X' | 'o' | 'b', Value::Int(value)) => {
                let magnitude = value.unsigned_abs();
                let digits = match verb {
                    'x' => format!("{magnitude:x}"),
                    'X' => format!("{magnitude:X}"),
                    'o' => format!("{magnitude:o}"),
                    _ => format!("{magnitude:b}"),
                };
                if *value < 0 {
                    format!("-{digits}")
                } else {
                    digits
                }
            }
            ('c', Value::Int(value)) => u32::try_from(*value)
                .ok()
                .and_then(char::from_u32)
                .unwrap_or('\u{FFFD}')
                .to_string(),
            ('f' | 'F', Value::Int(value)) => format!("%!{verb}(int={value})"),
            ('v' | 's', Value::String(text) | Value::Html(text)) => match precision {
                Some(limit) => text.chars().take(limit).collect(),
                None => text.clone(),
            },
            ('q', Value::String(text)) => go_quote(text),
            ('v' | 't', Value::Bool(value)) => value.to_string(),
            ('v' | 's', other) => {
                let mut text = String::new();
                fmt_value(other, &mut text);
                text
            }
            (verb, other) => {
                let mut text = String::new();
                fmt_value(other, &mut text);
                format!("%!{verb}({}={text})", other.type_name())
            }
        };
        let numeric = matches!(arg, Value::Float(_) | Value::Int(_));
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
            fmt_value(arg, &mut text);
            out.push_str(&format!("{}={text}", arg.type_name()));
        }
        out.push(')');
    }
    out
}

/// Go's `strconv.Quote` (`%q`), for the characters label values carry.
pub fn go_quote(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => out.push_str(&format!("\\x{:02x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// How an action prints a value: Go's `fmt.Fprint`, except that nil prints `<no value>`.
pub fn print_value(value: &Value, out: &mut String) {
    match value {
        Value::Nil => out.push_str("<no value>"),
        other => fmt_value(other, out),
    }
}

/// Go's `%v`.
pub fn fmt_value(value: &Value, out: &mut String) {
    match value {
        Value::Nil => out.push_str("<nil>"),
        Value::Bool(value) => out.push_str(if *value { "true" } else { "false" }),
        Value::Int(value) => out.push_str(&value.to_string()),
        Value::Float(value) => out.push_str(&format_g(*value, None)),
        Value::String(text) | Value::Html(text) => out.push_str(text),
        Value::List(items) => fmt_list(items, out),
        Value::Map(map) => fmt_map(map, out),
        Value::Object(object) => object.display(out),
    }
}

/// `[a b c]`.
pub fn fmt_list(items: &[Value], out: &mut String) {
    out.push('[');
    for (index, item) in items.iter().enumerate() {
        if index > 0 {
            out.push(' ');
        }
        fmt_value(item, out);
    }
    out.push(']');
}

/// `map[a:1 b:2]`, keys sorted as Go's `fmt` sorts them.
pub fn fmt_map(map: &BTreeMap<String, Value>, out: &mut String) {
    out.push_str("map[");
    for (index, (key, value)) in map.iter().enumerate() {
        if index > 0 {
            out.push(' ');
        }
        out.push_str(key);
        out.push(':');
        fmt_value(value, out);
    }
    out.push(']');
}
