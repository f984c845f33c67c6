use std::collections::BTreeMap;

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
fn control_structures_run_as_in_prometheus() {
    assert_eq!(
        expand("{{ if gt $value 1.0 }}high{{ else }}low{{ end }}", 2.0).expect("valid test input"),
        "high"
    );
    assert_eq!(
        expand(
            "{{ range $k, $v := $labels }}{{ $k }}={{ $v }};{{ end }}",
            0.0
        )
        .expect("valid test input"),
        "instance=db1.example.com:5432;target=pg-main;"
    );
    assert_eq!(
        expand(
            "{{ with $labels.target }}on {{ . }}{{ end }}{{ with $labels.nope }}x{{ end }}",
            0.0
        )
        .expect("valid test input"),
        "on pg-main"
    );
    assert_eq!(
        expand(
            "{{ define \"t\" }}[{{ . }}]{{ end }}{{ template \"t\" $labels.target }}",
            0.0
        )
        .expect("valid test input"),
        "[pg-main]"
    );
    // Go refuses comparing an int with a float64: the expansion fails and the engine keeps the raw text.
    assert!(expand("{{ if gt $value 1 }}x{{ end }}", 2.0).is_err());
}

#[test]
fn unsupported_functions_are_refused_at_parse() {
    for (source, needle) in [
        ("{{ query \"up\" | first | value }}", "cannot run queries"),
        (
            "{{ reReplaceAll \"a\" \"b\" $labels.target }}",
            "not defined",
        ),
        ("{{ $value", "unclosed action"),
        ("{{ if true }}x", "unexpected EOF"),
        ("{{ $value | $labels }}", "can't give argument"),
        ("{{ 1 | 2 }}", "non executable"),
    ] {
        match Template::parse(source).and_then(|t| {
            t.expand(&TemplateData {
                labels: &Metric::from_pairs([("a", "b")]),
                external_labels: &BTreeMap::new(),
                external_url: "",
                value: 0.0,
            })
        }) {
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
    assert!(expand("{{ .Nope }}", 0.0).is_err());
    assert!(expand("{{ humanize }}", 0.0).is_err());
}
