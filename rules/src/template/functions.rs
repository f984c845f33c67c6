//! The template functions Prometheus defines (`humanize`, `printf`, `title`, `stripPort`...), over values
//! already computed.

use dbwatch_template::gofmt::format_g;
use dbwatch_template::{Funcs, Value};

/// Prometheus's template functions that dbwatch runs (printf, index, len and the rest are Go's builtins).
pub(super) fn prometheus() -> Funcs {
    let mut funcs = Funcs::new();
    funcs
        .add("humanize", |args| {
            number(args).map(|v| Value::String(humanize(v)))
        })
        .add("humanize1024", |args| {
            number(args).map(|v| Value::String(humanize1024(v)))
        })
        .add("humanizeDuration", |args| {
            number(args).map(|v| Value::String(humanize_duration(v)))
        })
        .add("humanizePercentage", |args| {
            number(args).map(|v| Value::String(format!("{}%", format_g(v * 100.0, Some(4)))))
        })
        .add("humanizeTimestamp", |args| {
            humanize_timestamp(number(args)?).map(Value::String)
        })
        .add("toUpper", |args| {
            text(args).map(|t| Value::String(t.to_uppercase()))
        })
        .add("toLower", |args| {
            text(args).map(|t| Value::String(t.to_lowercase()))
        })
        .add("title", |args| text(args).map(|t| Value::String(title(t))))
        .add("stripPort", |args| {
            text(args).map(|t| Value::String(strip_port(t)))
        })
        .add("stripDomain", |args| {
            text(args).map(|t| Value::String(strip_domain(t)))
        });
    funcs
}

fn one(args: &[Value]) -> Result<&Value, String> {
    match args {
        [value] => Ok(value),
        _ => Err(format!("wrong number of args: want 1 got {}", args.len())),
    }
}

fn text(args: &[Value]) -> Result<&str, String> {
    let value = one(args)?;
    value.as_str().ok_or_else(|| {
        format!(
            "wrong type for value; expected string; got {}",
            value.type_name()
        )
    })
}

fn number(args: &[Value]) -> Result<f64, String> {
    to_float(one(args)?)
}

/// Prometheus' `convertToFloat`.
pub(super) fn to_float(value: &Value) -> Result<f64, String> {
    match value {
        Value::Float(value) => Ok(*value),
        Value::Int(value) => Ok(*value as f64),
        Value::String(text) => parse_go_float(text)
            .ok_or_else(|| format!("strconv.ParseFloat: parsing {text:?}: invalid syntax")),
        other => Err(format!("can't convert {} to float", other.type_name())),
    }
}

pub(super) fn parse_go_float(text: &str) -> Option<f64> {
    match text.to_ascii_lowercase().as_str() {
        "inf" | "+inf" | "infinity" | "+infinity" => return Some(f64::INFINITY),
        "-inf" | "-infinity" => return Some(f64::NEG_INFINITY),
        "nan" => return Some(f64::NAN),
        _ => {}
    }
    text.parse::<f64>().ok()
}

pub fn humanize(value: f64) -> String {
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

pub fn humanize1024(value: f64) -> String {
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

pub fn humanize_duration(value: f64) -> String {
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
pub(super) fn humanize_timestamp(value: f64) -> Result<String, String> {
    if value.is_nan() || value.is_infinite() {
        return Ok(format_g(value, Some(4)));
    }
    let nanos = value * 1e9;
    if !(-9.223_372_036_854_776e18..=9.223_372_036_854_776e18).contains(&nanos) {
        return Err(format!(
            "{} cannot be represented as a nanoseconds timestamp since it overflows int64",
            format_g(value, None)
        ));
    }
    let millis = (nanos as i64) / 1_000_000;
    let seconds = millis.div_euclid(1000);
    let fraction = millis.rem_euclid(1000);
    let days = seconds.div_euclid(86_400);
    let of_day = seconds.rem_euclid(86_400);
    let (year, month, day) = crate::eval::dates::civil_from_days(days);
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
pub(super) fn title(text: &str) -> String {
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
pub(super) fn strip_port(host_port: &str) -> String {
    split_host_port(host_port).map_or_else(|| host_port.to_owned(), |(host, _)| host.to_owned())
}

pub(super) fn strip_domain(host_port: &str) -> String {
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

pub(super) fn split_host_port(host_port: &str) -> Option<(&str, &str)> {
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
