//! Hostile templates: whatever the text, parsing and executing end, without a panic, within the limits.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use dbwatch_template::{Funcs, Limits, Options, Set, Value};
use proptest::prelude::*;

const SEEDS: &[&str] = &[
    "{{ range $i, $e := .List }}{{ if eq $i 1 }}{{ break }}{{ end }}{{ $e }}{{ else }}none{{ end }}",
    "{{ define \"t\" }}{{ template \"t\" . }}{{ end }}{{ template \"t\" . }}",
    "{{ with $x := .Map }}{{ range $k, $v := $x }}{{ $k }}={{ $v | printf \"%q\" }}{{ end }}{{ end }}",
    "{{- if and .List (gt (len .List) 0) -}} {{ index .List 0 }} {{- else if .Map -}} m {{- end -}}",
    "{{ $s := \"ab\" }}{{ range .List }}{{ $s = printf \"%s%s\" $s $s }}{{ end }}{{ len $s }}",
    "{{ block \"b\" .Map }}{{ .a }}{{ end }}{{ slice \"hello\" 1 3 }}{{ html \"<\" }}{{ js \"'\" }}{{ urlquery \"a b\" }}",
    "{{/* c */}}{{ print 1 2.5 \"x\" nil true }}{{ println .List }}{{ printf \"%5.2f|%-4d|%x\" 3.14159 7 255 }}",
];

const TOKENS: &[&str] = &[
    "{{",
    "}}",
    "{{-",
    "-}}",
    " ",
    "(",
    ")",
    "|",
    "$",
    "$x",
    ":=",
    "=",
    ".",
    ".List",
    ".Map.a",
    "\"",
    "`",
    "'",
    "if ",
    "else ",
    "end",
    "range ",
    "with ",
    "define \"d\"",
    "template \"t\" .",
    "block \"b\" .",
    "break",
    "continue",
    "nil",
    "eq ",
    "lt 1 1.5",
    "index ",
    "printf \"%1000000d\" 1",
    "/*",
    "*/",
    ",",
    "0x",
    "1e9",
    "-",
    "\n",
    "é",
    "{{ range .List }}",
    "{{ end }}",
];

fn edit() -> impl Strategy<Value = (usize, usize, usize)> {
    (any::<usize>(), any::<usize>(), 0usize..3)
}

fn mutated() -> impl Strategy<Value = String> {
    (
        prop::sample::select(SEEDS),
        prop::collection::vec(edit(), 1..8),
    )
        .prop_map(|(seed, edits)| {
            let mut text: Vec<char> = seed.chars().collect();
            for (at, pick, kind) in edits {
                let at = at % (text.len() + 1);
                match kind {
                    0 => {
                        let token: Vec<char> = TOKENS[pick % TOKENS.len()].chars().collect();
                        text.splice(at..at, token);
                    }
                    1 if at < text.len() => {
                        text.remove(at);
                    }
                    _ => {
                        let end = (at + pick % 8).min(text.len());
                        text.drain(at..end);
                    }
                }
            }
            text.into_iter().collect()
        })
}

fn data() -> Value {
    let mut map = BTreeMap::new();
    map.insert("a".to_owned(), Value::from("1"));
    map.insert(
        "b".to_owned(),
        Value::list(vec![Value::Int(1), Value::Float(2.5)]),
    );
    let mut root = BTreeMap::new();
    root.insert(
        "List".to_owned(),
        Value::list((0..20).map(Value::Int).collect()),
    );
    root.insert("Map".to_owned(), Value::Map(Arc::new(map)));
    Value::Map(Arc::new(root))
}

fn run(source: &str) {
    let mut set = Set::new(Funcs::new());
    let options = Options {
        limits: Limits {
            max_output: 64 * 1024,
            max_depth: 50,
            max_range_iterations: 10_000,
        },
        ..Options::default()
    };
    let started = Instant::now();
    if set.parse("t", "t", source).is_ok() {
        if let Ok(text) = set.execute("t", &data(), &[], &options) {
            assert!(text.len() <= options.limits.max_output, "{source}");
        }
    }
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{source} took {:?}",
        started.elapsed()
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn mutated_templates_end_without_panicking(source in mutated()) {
        run(&source);
    }

    #[test]
    fn arbitrary_text_ends_without_panicking(source in "\\PC{0,120}") {
        run(&source);
    }
}

#[test]
fn the_seeds_run() {
    for seed in SEEDS {
        let mut set = Set::new(Funcs::new());
        set.parse("t", "t", seed)
            .unwrap_or_else(|error| panic!("{seed}: {error}"));
    }
}
