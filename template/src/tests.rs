//! The semantics, against what Go's `text/template` prints for the same templates.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::gofmt::{format_e, format_f, format_g, sprintf};
use super::gotime::Time;
use super::*;

/// A struct with a field and methods with arguments, like Alertmanager's `KV`.
struct Person {
    name: String,
    tags: Vec<Value>,
}

impl Object for Person {
    fn type_name(&self) -> &str {
        "main.Person"
    }

    fn field(&self, name: &str) -> Option<Value> {
        match name {
            "Name" => Some(Value::from(self.name.as_str())),
            "Tags" => Some(Value::list(self.tags.clone())),
            _ => None,
        }
    }

    fn method(&self, name: &str, args: &[Value]) -> Option<Result<Value, String>> {
        match name {
            "Greet" => Some(match args {
                [Value::String(greeting)] => {
                    Ok(Value::String(format!("{greeting}, {}", self.name)))
                }
                _ => Err("Greet wants one string".to_owned()),
            }),
            "Self" => Some(Ok(Value::object(Person {
                name: self.name.clone(),
                tags: self.tags.clone(),
            }))),
            _ => None,
        }
    }

    fn display(&self, out: &mut String) {
        out.push('{');
        out.push_str(&self.name);
        out.push('}');
    }
}

fn data() -> Value {
    let mut map = BTreeMap::new();
    map.insert("b".to_owned(), Value::from("2"));
    map.insert("a".to_owned(), Value::from("1"));
    let mut root = BTreeMap::new();
    root.insert("Map".to_owned(), Value::Map(Arc::new(map)));
    root.insert(
        "List".to_owned(),
        Value::list(vec!["x".into(), "y".into(), "z".into()]),
    );
    root.insert("Empty".to_owned(), Value::list(Vec::new()));
    root.insert("Int".to_owned(), Value::Int(3));
    root.insert("Float".to_owned(), Value::Float(2.5));
    root.insert("Str".to_owned(), Value::from("hello"));
    root.insert(
        "Person".to_owned(),
        Value::object(Person {
            name: "Ada".to_owned(),
            tags: vec!["math".into()],
        }),
    );
    root.insert("Html".to_owned(), Value::from("<b>&'\"</b>"));
    root.insert(
        "Time".to_owned(),
        Time::from_unix_millis(1_700_000_000_123).value(),
    );
    Value::Map(Arc::new(root))
}

fn funcs() -> Funcs {
    let mut funcs = Funcs::new();
    funcs.add("upper", |args| match args {
        [value] => Ok(Value::String(
            value.as_str().unwrap_or_default().to_uppercase(),
        )),
        _ => Err("upper wants one argument".to_owned()),
    });
    funcs.add("double", |args| match args {
        [value] => {
            let text = value.as_str().unwrap_or_default();
            Ok(Value::String(format!("{text}{text}")))
        }
        _ => Err("double wants one argument".to_owned()),
    });
    funcs.add("fail", |_| Err("boom".to_owned()));
    funcs
}

fn run_with(source: &str, options: &Options) -> Result<String, Error> {
    let mut set = Set::new(funcs());
    set.parse("t", "t.tmpl", source)?;
    set.execute("t", &data(), &[], options)
}

fn run(source: &str) -> Result<String, Error> {
    run_with(source, &Options::default())
}

fn ok(source: &str) -> String {
    match run(source) {
        Ok(text) => text,
        Err(error) => panic!("{source}: {error}"),
    }
}

fn err(source: &str) -> Error {
    match run(source) {
        Ok(text) => panic!("{source} gave {text:?}"),
        Err(error) => error,
    }
}

#[test]
fn whitespace_trimming_and_comments() {
    assert_eq!(ok("a  {{- .Int -}}  b"), "a3b");
    assert_eq!(ok("a \n\t{{- .Int }} \n b"), "a3 \n b");
    assert_eq!(ok("{{ .Int }}\n  {{- /* note */ -}}\n  x"), "3x");
    assert_eq!(ok("{{/* a comment */}}y"), "y");
    // `-3` is a number, not a trim marker.
    assert_eq!(ok("1 {{-3}} 2"), "1 -3 2");
    assert_eq!(ok("{{ \"}}\" }}"), "}}");
}

#[test]
fn if_else_if_else_and_truth() {
    let source = "{{ if eq .Int 1 }}one{{ else if eq .Int 3 }}three{{ else }}other{{ end }}";
    assert_eq!(ok(source), "three");
    for (condition, want) in [
        (".Empty", "no"),
        (".List", "yes"),
        (".Map", "yes"),
        (".Map.missing", "no"),
        ("0", "no"),
        ("0.0", "no"),
        ("\"\"", "no"),
        ("\"0\"", "yes"),
        (".Person", "yes"),
    ] {
        assert_eq!(
            ok(&format!(
                "{{{{ if {condition} }}}}yes{{{{ else }}}}no{{{{ end }}}}"
            )),
            want,
            "{condition}"
        );
    }
}

#[test]
fn range_over_lists_and_maps() {
    assert_eq!(ok("{{ range .List }}[{{ . }}]{{ end }}"), "[x][y][z]");
    assert_eq!(
        ok("{{ range $i, $e := .List }}{{ $i }}={{ $e }} {{ end }}"),
        "0=x 1=y 2=z "
    );
    assert_eq!(
        ok("{{ range $k, $v := .Map }}{{ $k }}:{{ $v }};{{ end }}"),
        "a:1;b:2;"
    );
    assert_eq!(ok("{{ range $e := .List }}{{ $e }}{{ end }}"), "xyz");
    assert_eq!(ok("{{ range .Empty }}x{{ else }}none{{ end }}"), "none");
    assert_eq!(ok("{{ range .Map.missing }}x{{ else }}nil{{ end }}"), "nil");
    assert_eq!(
        ok("{{ range .List }}{{ if eq . \"y\" }}{{ continue }}{{ end }}{{ . }}{{ end }}"),
        "xz"
    );
    assert_eq!(
        ok("{{ range .List }}{{ if eq . \"y\" }}{{ break }}{{ end }}{{ . }}{{ end }}"),
        "x"
    );
    assert!(err("{{ range .Int }}{{ end }}")
        .message
        .contains("range can't iterate over 3"));
    assert!(err("{{ break }}").message.contains("outside {{range}}"));
}

#[test]
fn with_and_variables() {
    assert_eq!(ok("{{ with .Str }}{{ . }}!{{ end }}"), "hello!");
    assert_eq!(ok("{{ with .Empty }}x{{ else }}empty{{ end }}"), "empty");
    assert_eq!(ok("{{ with $x := .Int }}{{ $x }}{{ end }}"), "3");
    assert_eq!(
        ok("{{ $x := 1 }}{{ if true }}{{ $x = 2 }}{{ end }}{{ $x }}"),
        "2"
    );
    // A variable declared inside a block ends with it.
    assert!(err("{{ if true }}{{ $y := 1 }}{{ end }}{{ $y }}")
        .message
        .contains("undefined variable \"$y\""));
    assert_eq!(ok("{{ range .List }}{{ $.Int }}{{ end }}"), "333");
    assert!(err("{{ $nope = 1 }}")
        .message
        .contains("undefined variable"));
}

#[test]
fn define_template_and_block() {
    let mut set = Set::new(funcs());
    set.parse(
        "lib.tmpl",
        "lib.tmpl",
        "{{ define \"greet\" }}Hi {{ .Name }}{{ end }}{{ define \"list\" }}{{ range . }}<{{ . }}>{{ end }}{{ end }}",
    )
    .expect("valid");
    set.parse(
        "main",
        "main.tmpl",
        "{{ template \"greet\" .Person }} {{ template \"list\" .List }} {{ block \"b\" .Int }}[{{ . }}]{{ end }}",
    )
    .expect("valid");
    let text = set
        .execute("main", &data(), &[], &Options::default())
        .expect("runs");
    assert_eq!(text, "Hi Ada <x><y><z> [3]");
    // A later define replaces an earlier one; an empty file does not blank a template of its name.
    set.parse("lib2", "lib2.tmpl", "{{ define \"greet\" }}Hello{{ end }}")
        .expect("valid");
    set.parse("greet", "x", "  ").expect("valid");
    assert_eq!(
        set.execute("greet", &data(), &[], &Options::default())
            .expect("runs"),
        "Hello"
    );
    let missing = set.parse("m", "m.tmpl", "{{ template \"nope\" . }}");
    assert!(missing.is_ok());
    let error = set
        .execute("m", &data(), &[], &Options::default())
        .expect_err("no such template");
    assert!(
        error.message.contains("no such template \"nope\""),
        "{error}"
    );
}

#[test]
fn fields_methods_and_pipelines() {
    assert_eq!(ok("{{ .Person.Name }}"), "Ada");
    assert_eq!(ok("{{ .Person.Greet \"Hello\" }}"), "Hello, Ada");
    assert_eq!(ok("{{ \"Hey\" | .Person.Greet }}"), "Hey, Ada");
    assert_eq!(ok("{{ .Person.Self.Self.Name }}"), "Ada");
    assert_eq!(ok("{{ (.Person.Greet \"Yo\") | upper }}"), "YO, ADA");
    assert_eq!(ok("{{ (index .List 1) }}{{ (.Person).Name }}"), "yAda");
    assert_eq!(ok("{{ .Str | upper | double }}"), "HELLOHELLO");
    assert_eq!(ok("{{ .Person }}"), "{Ada}");
    assert!(err("{{ .Person.Nope }}")
        .message
        .contains("can't evaluate field Nope in type main.Person"));
    assert!(err("{{ .Person.Name \"x\" }}")
        .message
        .contains("cannot be invoked"));
    assert!(err("{{ .Int.X }}")
        .message
        .contains("can't evaluate field X in type int"));
    assert!(err("{{ .Str 1 }}")
        .message
        .contains("is not a method but has arguments"));
    assert!(err("{{ 1 | 2 }}")
        .message
        .contains("non executable command"));
    assert!(err("{{ fail }}")
        .message
        .contains("error calling fail: boom"));
}

#[test]
fn missing_keys() {
    assert_eq!(ok("{{ .Map.missing }}"), "<no value>");
    let zero = Options {
        missing_key: MissingKey::Zero,
        ..Options::default()
    };
    assert_eq!(run_with("[{{ .Map.missing }}]", &zero).expect("runs"), "[]");
    assert_eq!(ok("[{{ index .Map \"missing\" }}]"), "[]");
}

#[test]
fn builtins_follow_go() {
    assert_eq!(
        ok("{{ and 1 0 2 }}|{{ and 1 2 }}|{{ or 0 \"\" }}|{{ or 0 \"x\" }}"),
        "0|2||x"
    );
    // Lazy: the failing function after a deciding argument is never called.
    assert_eq!(ok("{{ or 1 fail }}{{ and 0 fail }}"), "10");
    assert_eq!(ok("{{ not .Empty }} {{ not 1 }}"), "true false");
    assert_eq!(
        ok("{{ len .List }} {{ len .Map }} {{ len \"héllo\" }}"),
        "3 2 6"
    );
    assert_eq!(
        ok("{{ index .List 2 }} {{ index .Map \"b\" }} {{ index \"abc\" 1 }}"),
        "z 2 98"
    );
    assert!(err("{{ index .List 5 }}")
        .message
        .contains("index out of range: 5"));
    assert_eq!(ok("{{ slice .Str 1 3 }} {{ slice .List 1 }}"), "el [y z]");
    assert_eq!(ok("{{ print 1 2 \"a\" \"b\" 3 }}"), "1 2ab3");
    assert_eq!(ok("{{ println 1 \"a\" }}"), "1 a\n");
    assert_eq!(
        ok("{{ eq .Int 1 2 3 }} {{ eq \"a\" \"b\" }} {{ ne 1 2 }}"),
        "true false true"
    );
    assert_eq!(
        ok("{{ lt 1 2 }} {{ le 2 2 }} {{ gt \"b\" \"a\" }} {{ ge 1.5 2.5 }}"),
        "true true true false"
    );
    assert!(err("{{ lt 1 1.5 }}")
        .message
        .contains("incompatible types for comparison"));
    assert!(err("{{ eq 1 \"1\" }}")
        .message
        .contains("incompatible types for comparison"));
    assert_eq!(ok("{{ eq .Map.missing \"x\" }}"), "false");
    assert!(err("{{ lt true false }}")
        .message
        .contains("invalid type for comparison"));
    assert!(err("{{ eq .List .List }}")
        .message
        .contains("non-comparable"));
    assert_eq!(ok("{{ html .Html }}"), "&lt;b&gt;&amp;&#39;&#34;&lt;/b&gt;");
    assert_eq!(ok("{{ js \"a'b<c>\" }}"), "a\\'b\\u003Cc\\u003E");
    assert_eq!(ok("{{ urlquery \"a b&c=d/é\" }}"), "a+b%26c%3Dd%2F%C3%A9");
    assert_eq!(
        ok("{{ .List }} {{ .Map }} {{ .Float }} {{ .Int }}"),
        "[x y z] map[a:1 b:2] 2.5 3"
    );
}

#[test]
fn printf_formats() {
    assert_eq!(
        ok("{{ printf \"%d|%5d|%-5d|%05d\" 42 42 42 42 }}"),
        "42|   42|42   |00042"
    );
    assert_eq!(
        ok("{{ printf \"%.2f|%e|%g|%v\" 3.14159 1234.5678 0.00001 2.0 }}"),
        "3.14|1.234568e+03|1e-05|2"
    );
    assert_eq!(ok("{{ printf \"%s=%q\" \"k\" \"v\\\"\" }}"), "k=\"v\\\"\"");
    assert_eq!(
        ok("{{ printf \"%x %X %t %%\" 255 255 true }}"),
        "ff FF true %"
    );
    assert_eq!(ok("{{ printf \"%d\" }}"), "%!d(MISSING)");
    assert_eq!(ok("{{ printf \"%d\" 1 2 }}"), "1%!(EXTRA int=2)");
    assert_eq!(ok("{{ printf \"%d\" \"x\" }}"), "%!d(string=x)");
    assert_eq!(ok("{{ printf \"%v\" .List }}"), "[x y z]");
    assert_eq!(format_g(1e6, None), "1e+06");
    assert_eq!(format_g(123456.0, None), "123456");
    assert_eq!(format_g(1234567.0, Some(4)), "1.235e+06");
    assert_eq!(format_e(0.125, 3), "1.250e-01");
    assert_eq!(format_f(12345.5, 0), "12346");
    assert_eq!(sprintf("%.3s", &[Value::from("abcdef")]), "abc");
}

#[test]
fn time_printing_and_layouts() {
    assert_eq!(ok("{{ .Time }}"), "2023-11-14 22:13:20.123 +0000 UTC");
    assert_eq!(
        ok("{{ .Time.Format \"2006-01-02T15:04:05Z07:00\" }}"),
        "2023-11-14T22:13:20Z"
    );
    assert_eq!(
        ok("{{ .Time.Format \"Mon Jan _2 3:04PM MST 2006 .000 .999 -0700\" }}"),
        "Tue Nov 14 10:13PM UTC 2023 .123 .123 +0000"
    );
    assert_eq!(
        ok("{{ .Time.Unix }} {{ .Time.UnixMilli }}"),
        "1700000000 1700000000123"
    );
    assert_eq!(
        ok("{{ .Time.Format \"January 2, 2006\" }}"),
        "November 14, 2023"
    );
    let zero = Time::zero();
    assert_eq!(
        zero.format(gotime::DEFAULT_LAYOUT),
        "0001-01-01 00:00:00 +0000 UTC"
    );
}

#[test]
fn html_escaping_mode() {
    let options = Options {
        escape: Escape::Html,
        ..Options::default()
    };
    let mut funcs = funcs();
    funcs.add("safe", |args| {
        Ok(Value::Html(
            args.first()
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
        ))
    });
    let mut set = Set::new(funcs);
    set.parse("t", "t", "<p>{{ .Html }}</p>{{ .Html | safe }}")
        .expect("valid");
    assert_eq!(
        set.execute("t", &data(), &[], &options).expect("runs"),
        "<p>&lt;b&gt;&amp;&#39;&#34;&lt;/b&gt;</p><b>&'\"</b>"
    );
}

#[test]
fn errors_name_file_line_and_column() {
    let error = err("line one\n  {{ .Int }} {{ nope 1 }}");
    assert_eq!(error.kind, ErrorKind::UndefinedFunction("nope".to_owned()));
    assert_eq!((error.line, error.column), (2, 17));
    assert_eq!(
        error.to_string(),
        "template: t.tmpl:2:17: function \"nope\" not defined"
    );
    let error = err("a\nb {{ if }}");
    assert_eq!((error.source_name.as_str(), error.line), ("t.tmpl", 2));
    assert!(err("{{ if true }}x").message.contains("unexpected EOF"));
    assert!(err("{{ end }}").message.contains("unexpected {{end}}"));
    assert!(err("{{ .Int").message.contains("unclosed action"));
    assert!(err("{{ $undefined }}")
        .message
        .contains("undefined variable"));
    let error = err("x\n{{ .Person.Nope }}");
    assert_eq!(
        (error.line, error.column, &error.kind),
        (2, 4, &ErrorKind::Exec)
    );
    assert!(error.to_string().contains("executing \"t\""), "{error}");
}

#[test]
fn hostile_templates_hit_their_caps() {
    let small = Options {
        limits: Limits {
            max_output: 1000,
            max_depth: 10,
            max_range_iterations: 50,
        },
        ..Options::default()
    };
    let run_small = |source: &str| match run_with(source, &small) {
        Ok(text) => panic!("{source} not capped: {text:?}"),
        Err(error) => error,
    };
    assert_eq!(
        run_small(
            "{{ define \"loop\" }}x{{ template \"loop\" . }}{{ end }}{{ template \"loop\" . }}"
        )
        .kind,
        ErrorKind::DepthLimit
    );
    assert_eq!(
        run_small("{{ range .List }}{{ range $.List }}{{ range $.List }}{{ range $.List }}{{ end }}{{ end }}{{ end }}{{ end }}").kind,
        ErrorKind::RangeLimit
    );
    assert_eq!(
        run_small("{{ printf \"%2000d\" 1 }}").kind,
        ErrorKind::OutputLimit
    );
    assert_eq!(
        run_small("{{ range .List }}{{ range $.List }}{{ printf \"%300d\" 1 }}{{ end }}{{ end }}")
            .kind,
        ErrorKind::OutputLimit
    );
    // Strings built and never printed are bounded too.
    let built = run_small("{{ $s := \"ab\" }}{{ range .List }}{{ range $.List }}{{ $s = double $s }}{{ end }}{{ end }}");
    assert_eq!(built.kind, ErrorKind::OutputLimit, "{built}");
    // Template calls that each nest control structures are bounded together, on a thread's default stack.
    let nested_calls = format!(
        "{{{{ define \"n\" }}}}{}{{{{ template \"n\" . }}}}{}{{{{ end }}}}{{{{ template \"n\" . }}}}",
        "{{ if true }}".repeat(90),
        "{{ end }}".repeat(90)
    );
    let error = std::thread::spawn(move || run(&nested_calls).expect_err("capped"))
        .join()
        .expect("no stack overflow");
    assert_eq!(error.kind, ErrorKind::DepthLimit, "{error}");
    // Deep nesting is refused at parse time rather than overflowing the stack.
    let deep = format!("{{{{ {}1{} }}}}", "(".repeat(500), ")".repeat(500));
    assert_eq!(err(&deep).kind, ErrorKind::Parse);
    let nested = format!(
        "{}x{}",
        "{{ if true }}".repeat(500),
        "{{ end }}".repeat(500)
    );
    assert_eq!(err(&nested).kind, ErrorKind::Parse);
}

#[test]
fn predeclared_variables() {
    let mut set = Set::new(Funcs::new()).with_variables(&["value"]);
    set.parse("t", "t", "{{ $value }} {{ $.Int }}")
        .expect("valid");
    assert_eq!(
        set.execute(
            "t",
            &data(),
            &[("value", Value::Float(0.5))],
            &Options::default()
        )
        .expect("runs"),
        "0.5 3"
    );
}

#[test]
fn literals() {
    assert_eq!(ok("{{ 0x1F }} {{ 1_000 }} {{ 'a' }} {{ 1e3 }} {{ -2.5 }} {{ `raw\\n` }} {{ \"\\u00e9\\t\" }}"), "31 1000 97 1000 -2.5 raw\\n é\t");
    assert!(err("{{ \"\\q\" }}").message.contains("invalid escape"));
}
