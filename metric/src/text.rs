//! The primitives of Prometheus's text exposition format, shared by `/metrics` and the rules engine's own
//! series (`ALERTS`), so both escape and spell values the same way.

use std::fmt::Write as _;

/// Writes `name="value"`, with the value escaped as the text format requires (`\\`, `\"`, `\n`).
pub fn write_label(out: &mut String, name: &str, value: &str) {
    out.push_str(name);
    out.push_str("=\"");
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Writes a `# HELP` text, escaped as the text format requires (`\\`, `\n`).
pub fn write_help(out: &mut String, help: &str) {
    for c in help.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// Prometheus spells the special values `NaN`, `+Inf` and `-Inf`.
pub fn write_value(out: &mut String, value: f64) {
    if value.is_nan() {
        out.push_str("NaN");
    } else if value == f64::INFINITY {
        out.push_str("+Inf");
    } else if value == f64::NEG_INFINITY {
        out.push_str("-Inf");
    } else {
        // Writing to a String cannot fail.
        let _ = write!(out, "{value}");
    }
}
