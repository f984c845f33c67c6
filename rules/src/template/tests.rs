use std::collections::BTreeMap;

use super::gofmt::{format_e, format_f, format_g, sprintf};
use super::tree::TValue;
use super::*;
use crate::labels::Metric;

fn expand(source: &str, value: f64) -> Result<String, TemplateError> {
    let labels = Metric::from_pairs([("target", "pg-main"), ("instance", "db1.example.com:5432")]);
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
        expand("{{ printf \"%5.1f|%-4s|\" $value \"ab\" }}", 2.34567).expect("valid test input"),
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
