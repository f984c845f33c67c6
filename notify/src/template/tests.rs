//! Alertmanager's template data, functions and named defaults, against what Alertmanager 0.25 renders.

use std::collections::BTreeMap;

use super::*;

fn record(instance: &str, resolved: bool) -> AlertRecord {
    AlertRecord {
        fingerprint: format!("fp-{instance}"),
        labels: [
            ("alertname", "HighLatency"),
            ("severity", "critical"),
            ("target", "pg-main"),
            ("instance", instance),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect(),
        annotations: [("summary", "latency is high")]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect(),
        starts_at: 1_700_000_000_000,
        ends_at: resolved.then_some(1_700_000_600_000),
    }
}

fn common(maps: &[&BTreeMap<String, String>]) -> BTreeMap<String, String> {
    let mut out = maps[0].clone();
    for map in &maps[1..] {
        out.retain(|key, value| map.get(key) == Some(value));
    }
    out
}

struct Input {
    templating: Templating,
    data: Value,
}

impl TemplateInput for Input {
    fn templating(&self) -> &Templating {
        &self.templating
    }

    fn template_data(&self) -> Value {
        self.data.clone()
    }
}

fn input(alerts: &[AlertRecord]) -> Input {
    let group: BTreeMap<String, String> =
        [("alertname".to_owned(), "HighLatency".to_owned())].into();
    let labels: Vec<&BTreeMap<String, String>> = alerts.iter().map(|a| &a.labels).collect();
    let annotations: Vec<&BTreeMap<String, String>> =
        alerts.iter().map(|a| &a.annotations).collect();
    let firing = alerts.iter().any(|alert| alert.ends_at.is_none());
    Input {
        templating: Templating::default(),
        data: data(DataParts {
            receiver: "team db",
            status: if firing { "firing" } else { "resolved" },
            alerts: alerts.iter(),
            group_labels: &group,
            common_labels: &common(&labels),
            common_annotations: &common(&annotations),
            external_url: "http://am.example:9093",
        }),
    }
}

fn render(text: &str, input: &Input) -> String {
    let field = TemplatedField::parse("test", text, &Templates::default()).expect("parses");
    let out = field.render(input, || "FALLBACK".to_owned());
    assert!(input.templating.take_failures().is_empty(), "{text} failed");
    out
}

#[test]
fn subject_and_links_read_as_alertmanager_renders_them() {
    let firing = input(&[record("db1:5432", false), record("db2:5432", false)]);
    assert_eq!(
        render("{{ template \"__subject\" . }}", &firing),
        "[FIRING:2] HighLatency (critical pg-main)"
    );
    assert_eq!(
        render("{{ template \"slack.default.title\" . }}", &firing),
        "[FIRING:2] HighLatency (critical pg-main)"
    );
    assert_eq!(
        render("{{ template \"__alertmanagerURL\" . }}", &firing),
        "http://am.example:9093/#/alerts?receiver=team+db"
    );
    assert_eq!(
        render("{{ template \"slack.default.fallback\" . }}", &firing),
        "[FIRING:2] HighLatency (critical pg-main) | http://am.example:9093/#/alerts?receiver=team+db"
    );
    assert_eq!(
        render("{{ template \"slack.default.username\" . }}", &firing),
        "Alertmanager"
    );
    let resolved = input(&[record("db1:5432", true)]);
    // One alert: every label is common, the instance too.
    assert_eq!(
        render("{{ template \"__subject\" . }}", &resolved),
        "[RESOLVED] HighLatency (db1:5432 critical pg-main)"
    );
}

#[test]
fn alert_lists_and_sections() {
    let mixed = input(&[record("db1:5432", false), record("db2:5432", true)]);
    let list = "Labels:\n - alertname = HighLatency\n - instance = db1:5432\n - severity = critical\n - target = pg-main\nAnnotations:\n - summary = latency is high\nSource: \n";
    assert_eq!(
        render(
            "{{ template \"__text_alert_list\" .Alerts.Firing }}",
            &mixed
        ),
        list
    );
    let resolved_list = list.replace("db1", "db2");
    assert_eq!(
        render("{{ template \"opsgenie.default.description\" . }}", &mixed),
        format!("latency is high\nAlerts Firing:\n{list}\nAlerts Resolved:\n{resolved_list}")
    );
    assert_eq!(
        render("{{ template \"pushover.default.message\" . }}", &mixed),
        format!(
            "latency is high\n\nAlerts Firing:\n{list}\n\n\nAlerts Resolved:\n{resolved_list}\n\n"
        )
    );
    let only_firing = input(&[record("db1:5432", false)]);
    assert_eq!(
        render(
            "{{ template \"telegram.default.message\" . }}",
            &only_firing
        ),
        format!("\n\nAlerts Firing:\n{list}\n\n\n")
    );
    assert_eq!(
        render(
            "{{ template \"victorops.default.state_message\" . }}",
            &only_firing
        ),
        format!("latency is high\nAlerts Firing:\n{list}\n")
    );
}

#[test]
fn data_fields_and_kv_methods() {
    let mixed = input(&[record("db1:5432", false), record("db2:5432", true)]);
    assert_eq!(
        render(
            "{{ .Receiver }}|{{ .Status }}|{{ len .Alerts }}|{{ len .Alerts.Resolved }}",
            &mixed
        ),
        "team db|firing|2|1"
    );
    assert_eq!(
        render(
            "{{ range .CommonLabels.SortedPairs }}{{ .Name }}={{ .Value }};{{ end }}",
            &mixed
        ),
        "alertname=HighLatency;severity=critical;target=pg-main;"
    );
    assert_eq!(
        render("{{ .CommonLabels.Names }} {{ (.CommonLabels.Remove (stringSlice \"severity\")).Values }}", &mixed),
        "[alertname severity target] [HighLatency pg-main]"
    );
    assert_eq!(
        render(
            "{{ .CommonLabels.severity }} {{ .CommonLabels.nope }}",
            &mixed
        ),
        "critical "
    );
    assert_eq!(
        render("{{ range .Alerts }}{{ .Status }} {{ .StartsAt.Format \"2006-01-02 15:04\" }} {{ .EndsAt.IsZero }}|{{ end }}", &mixed),
        "firing 2023-11-14 22:13 true|resolved 2023-11-14 22:13 false|"
    );
    assert_eq!(
        render(
            "{{ (index .Alerts 1).EndsAt }} {{ (index .Alerts 0).Fingerprint }}",
            &mixed
        ),
        "2023-11-14 22:23:20 +0000 UTC fp-db1:5432"
    );
}

#[test]
fn alertmanager_functions() {
    let one = input(&[record("db1:5432", false)]);
    assert_eq!(
        render("{{ title \"hELLO wORLD-x\" }}", &one),
        "Hello World-X"
    );
    assert_eq!(
        render("{{ toUpper \"ab\" }}{{ toLower \"CD\" }}", &one),
        "ABcd"
    );
    assert_eq!(
        render("{{ stringSlice \"a\" \"b\" | join \", \" }}", &one),
        "a, b"
    );
    assert_eq!(
        render("{{ match \"^db[0-9]\" .CommonLabels.instance }}", &one),
        "true"
    );
    assert_eq!(
        render(
            "{{ reReplaceAll \"(.*):(.*)\" \"$2 on $1\" .CommonLabels.instance }}",
            &one
        ),
        "5432 on db1"
    );
    let field = TemplatedField::parse(
        "html",
        "<b>{{ \"<i>\" }}</b>{{ safeHtml \"<br>\" }}",
        &Templates::default(),
    )
    .expect("parses");
    assert_eq!(field.render_html(&one, String::new), "<b>&lt;i&gt;</b><br>");
}

#[test]
fn a_failing_template_falls_back_and_is_recorded() {
    let one = input(&[record("db1:5432", false)]);
    let templates = Templates::default();
    for text in [
        "{{ .Nope }}",
        "{{ reReplaceAll \"(\" \"\" \"x\" }}",
        "{{ template \"missing\" . }}",
        "{{ printf \"%100000d\" 1 }}{{ printf \"%100000d\" 1 }}{{ printf \"%100000d\" 1 }}",
    ] {
        let field = TemplatedField::parse("title", text, &templates).expect("parses");
        assert_eq!(
            field.render(&one, || "built-in".to_owned()),
            "built-in",
            "{text}"
        );
        let failures = one.templating.take_failures();
        assert_eq!(failures.len(), 1, "{text}");
        assert_eq!(failures[0].field, "title");
        assert!(
            failures[0].error.starts_with("template: title:1:"),
            "{}",
            failures[0].error
        );
    }
}

#[test]
fn template_files_are_read_by_glob_relative_to_the_routing_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::create_dir(dir.path().join("tmpl")).expect("mkdir");
    std::fs::write(
        dir.path().join("tmpl/a.tmpl"),
        "{{ define \"custom.title\" }}[{{ .Status | toUpper }}] {{ .CommonLabels.alertname }}{{ end }}",
    )
    .expect("write");
    let mut templates = Templates::default();
    templates
        .add_glob(dir.path(), "tmpl/*.tmpl")
        .expect("loads");
    templates
        .add_glob(dir.path(), "none/*.tmpl")
        .expect("nothing matched is fine");
    assert!(templates.contains("custom.title"));
    assert!(templates.contains("a.tmpl"));
    let field = TemplatedField::parse("title", "{{ template \"custom.title\" . }}", &templates)
        .expect("parses");
    assert_eq!(
        field.render(&input(&[record("db1", false)]), String::new),
        "[FIRING] HighLatency"
    );
    std::fs::write(
        dir.path().join("tmpl/b.tmpl"),
        "ok\n{{ define \"x\" }}{{ nope }}{{ end }}",
    )
    .expect("write");
    let error = templates
        .add_glob(dir.path(), "tmpl/*.tmpl")
        .expect_err("parse error");
    let message = error.to_string();
    assert!(message.contains("b.tmpl:2:"), "{message}");
    assert!(
        message.contains("function \"nope\" not defined"),
        "{message}"
    );
}

#[test]
fn every_named_default_exists() {
    let templates = Templates::default();
    for name in [
        "__subject",
        "__description",
        "__text_alert_list",
        "__alertmanagerURL",
        "slack.default.title",
        "slack.default.text",
        "slack.default.titlelink",
        "slack.default.footer",
        "pagerduty.default.description",
        "pagerduty.default.client",
        "pagerduty.default.clientURL",
        "pagerduty.default.instances",
        "email.default.subject",
        "email.default.html",
        "opsgenie.default.message",
        "opsgenie.default.description",
        "opsgenie.default.source",
        "telegram.default.message",
        "discord.default.title",
        "discord.default.message",
        "webex.default.message",
        "pushover.default.title",
        "pushover.default.message",
        "pushover.default.url",
        "victorops.default.state_message",
        "victorops.default.entity_display_name",
        "victorops.default.monitoring_tool",
        "msteams.default.title",
        "msteams.default.text",
        "msteams.default.summary",
        "sns.default.subject",
        "sns.default.message",
    ] {
        assert!(templates.contains(name), "{name}");
    }
    let html = render(
        "{{ template \"email.default.html\" . }}",
        &input(&[record("<db1>", false)]),
    );
    assert!(
        html.contains("instance = <db1>"),
        "the text template does not escape: {html}"
    );
}
