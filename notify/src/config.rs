//! The routing file: the part of Alertmanager's `alertmanager.yml` schema dbwatch runs, read with the same
//! position-keeping reader as the main configuration so every problem comes with file:line:column and key path.
//!
//! Fields dbwatch does not implement are refused by name rather than ignored: a user who drops in their
//! alertmanager.yml must learn that, say, `mute_time_intervals` would not mute anything. `templates:` (globs
//! relative to the routing file's folder, as Alertmanager resolves them) are read and parsed here, and every
//! field Alertmanager templates is parsed against them (`template.rs`); a field it does not template refuses
//! `{{`. The shipped routing file and the test trees are also checked with `amtool check-config`
//! (tests/notify.rs).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use dbwatch_rules::model::parse_duration;
use dbwatch_yaml::node::{self as yaml, Node};
use dbwatch_yaml::read::{EnvLookup, Fields, Reader};
use dbwatch_yaml::{ConfigError, ConfigErrors};

use super::fields::{read_global, refuse, Global};
pub use super::integrations::http::MAX_RETRY_AFTER;
use super::integrations::{
    discord, email, msteams, msteamsv2, opsgenie, pagerduty, pushover, slack, sns, telegram,
    victorops, webex, webhook, Integration,
};
use super::matcher::{parse_matchers, MatchOp, Matcher};
use super::timeinterval::{self, NamedInterval};

/// How each receiver key is read: one line per integration.
type ReadIntegration = fn(&mut Reader<'_>, &Node, &str, &Global) -> Option<Arc<dyn Integration>>;
const INTEGRATIONS: &[(&str, ReadIntegration)] = &[
    ("slack_configs", slack::read),
    ("pagerduty_configs", pagerduty::read),
    ("email_configs", email::read),
    ("webhook_configs", webhook::read),
    ("discord_configs", discord::read),
    ("telegram_configs", telegram::read),
    ("webex_configs", webex::read),
    ("opsgenie_configs", opsgenie::read),
    ("pushover_configs", pushover::read),
    ("victorops_configs", victorops::read),
    ("msteams_configs", msteams::read),
    ("msteamsv2_configs", msteamsv2::read),
    ("sns_configs", sns::read),
];

/// Alertmanager's defaults.
pub const DEFAULT_GROUP_WAIT: Duration = Duration::from_secs(30);
pub const DEFAULT_GROUP_INTERVAL: Duration = Duration::from_secs(5 * 60);
pub const DEFAULT_REPEAT_INTERVAL: Duration = Duration::from_secs(4 * 3600);

#[derive(Debug, Clone)]
pub struct NotifyConfig {
    pub file: PathBuf,
    pub route: Route,
    pub inhibit_rules: Vec<InhibitRule>,
    pub time_intervals: Vec<NamedInterval>,
    pub receivers: Vec<Receiver>,
    /// Not part of Alertmanager's schema (so not in the file): set by the daemon or by tests.
    pub delivery: DeliveryOptions,
}

impl NotifyConfig {
    pub fn receiver(&self, name: &str) -> Option<&Receiver> {
        self.receivers.iter().find(|receiver| receiver.name == name)
    }

    /// Whether `route`'s notifications are held at `at`: inside one of its `mute_time_intervals`, or outside
    /// all of its `active_time_intervals` (Alertmanager's time mute and time active stages).
    pub fn muted_at(&self, route: &Route, at: chrono::DateTime<chrono::Utc>) -> bool {
        let inside = |names: &[String]| {
            names.iter().any(|name| {
                self.time_intervals
                    .iter()
                    .any(|interval| interval.name == *name && interval.contains(at))
            })
        };
        inside(&route.mute_time_intervals)
            || (!route.active_time_intervals.is_empty() && !inside(&route.active_time_intervals))
    }
}

/// How the outbox retries.
#[derive(Debug, Clone)]
pub struct DeliveryOptions {
    /// Attempts before a notification is dead-lettered.
    pub max_attempts: u32,
    /// A notification's give-up time is this long after it was queued: an attempt that would fall later is not
    /// made and the notification is dead-lettered instead. Six hours is longer than the twelve attempts' own
    /// backoff (about 25 minutes) plus a few capped `Retry-After` waits (1 h each), and longer than the default
    /// `repeat_interval` (4 h), after which a still-firing group is queued afresh anyway; a notification that
    /// old describes a state the newer ones already carry, and an outbox that never gives up grows without end.
    pub max_age: Duration,
    /// The longest wait a receiver's `Retry-After` can impose; never more than [`MAX_RETRY_AFTER`].
    pub max_retry_after: Duration,
    /// Backoff before the second attempt; doubled each time, with full jitter between half and all of it.
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
    /// Bound of one HTTP request or SMTP session.
    pub timeout: Duration,
    /// The `externalURL` of webhook payloads and the link in messages.
    pub external_url: String,
    /// Alertmanagers (base URLs) that every alert is also pushed to, as Prometheus would.
    pub alertmanagers: Vec<String>,
    /// How often unchanged alerts are pushed to them again.
    pub alertmanager_resend: Duration,
}

impl Default for DeliveryOptions {
    fn default() -> Self {
        DeliveryOptions {
            max_attempts: 12,
            max_age: Duration::from_secs(6 * 3600),
            max_retry_after: MAX_RETRY_AFTER,
            initial_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(300),
            timeout: Duration::from_secs(10),
            external_url: String::new(),
            alertmanagers: Vec::new(),
            alertmanager_resend: Duration::from_secs(60),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GroupBy {
    /// `group_by: ['...']`: one group per label set.
    All,
    Labels(Vec<String>),
}

/// The names a route may refer to.
struct Known<'a> {
    receivers: &'a [&'a str],
    intervals: &'a [&'a str],
}

#[derive(Debug, Clone)]
pub struct Route {
    pub receiver: String,
    pub group_by: GroupBy,
    pub group_wait: Duration,
    pub group_interval: Duration,
    pub repeat_interval: Duration,
    pub matchers: Vec<Matcher>,
    pub continue_matching: bool,
    /// Names of `time_intervals` during which this route's notifications are held.
    pub mute_time_intervals: Vec<String>,
    /// Names of `time_intervals` outside of which this route's notifications are held.
    pub active_time_intervals: Vec<String>,
    pub routes: Vec<Route>,
}

#[derive(Debug, Clone)]
pub struct InhibitRule {
    pub source_matchers: Vec<Matcher>,
    pub target_matchers: Vec<Matcher>,
    pub equal: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct Receiver {
    pub name: String,
    pub integrations: Vec<Arc<dyn Integration>>,
}

#[derive(Debug, thiserror::Error)]
pub enum NotifyConfigErrors {
    #[error("cannot read routing file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Invalid(#[from] ConfigErrors),
}

/// Reads and validates a routing file, expanding `${VAR}` from the process environment.
pub fn load_file(path: &Path) -> Result<NotifyConfig, NotifyConfigErrors> {
    let text = std::fs::read_to_string(path).map_err(|source| NotifyConfigErrors::Read {
        path: path.to_owned(),
        source,
    })?;
    let env = |name: &str| std::env::var(name).ok();
    Ok(load_str(path, &text, &env)?)
}

/// Parses and validates routing text; `file` is only used in messages.
pub fn load_str(file: &Path, text: &str, env: EnvLookup<'_>) -> Result<NotifyConfig, ConfigErrors> {
    let invalid = |errors: Vec<ConfigError>| ConfigErrors {
        file: file.to_owned(),
        errors,
    };
    let root = yaml::parse(text).map_err(|error| {
        invalid(vec![ConfigError {
            line: error.mark.line,
            column: error.mark.column,
            path: String::new(),
            message: error.message,
        }])
    })?;
    let mut reader = Reader::new(env);
    let config = read_root(&mut reader, &root, file);
    match config {
        Some(config) if reader.errors.is_empty() => Ok(config),
        _ => {
            let mut errors = reader.errors;
            errors.sort_by_key(|error| (error.line, error.column));
            Err(invalid(errors))
        }
    }
}

/// The receiver keys (`slack_configs`, ...) dbwatch sends to, in the reader's order.
pub fn receiver_keys() -> impl Iterator<Item = &'static str> {
    INTEGRATIONS.iter().map(|(key, _)| *key)
}

/// The receiver keys of Alertmanager dbwatch refuses by name.
pub fn refused_receiver_keys() -> impl Iterator<Item = &'static str> {
    UNSUPPORTED_RECEIVER.iter().copied()
}

const UNSUPPORTED_RECEIVER: &[&str] = &[
    "wechat_configs",
    "jira_configs",
    "rocketchat_configs",
    "incidentio_configs",
    "mattermost_configs",
];

fn read_root(reader: &mut Reader<'_>, root: &Node, file: &Path) -> Option<NotifyConfig> {
    let mut fields = Fields::of(reader, root, "")?;
    let mut global = match fields.take("global") {
        Some((node, path)) => read_global(reader, node, &path),
        None => Global::default(),
    };
    // Before the receivers: their templated fields are parsed against these.
    if let Some((node, path)) = fields.take("templates") {
        let base = file.parent().unwrap_or_else(|| Path::new("."));
        for (index, item) in reader
            .sequence(node, &path)
            .unwrap_or(&[])
            .iter()
            .enumerate()
        {
            let item_path = format!("{path}[{index}]");
            let Some(glob) = reader.scalar(item, &item_path) else {
                continue;
            };
            if let Err(error) = global.templates.add_glob(base, &glob) {
                reader.error(item.mark, &item_path, error.to_string());
            }
        }
    }
    let receivers: Vec<Receiver> = match fields.take("receivers") {
        Some((node, path)) => {
            let items = reader.sequence(node, &path).unwrap_or(&[]);
            items
                .iter()
                .enumerate()
                .filter_map(|(index, item)| {
                    read_receiver(reader, item, &format!("{path}[{index}]"), &global)
                })
                .collect()
        }
        None => Vec::new(),
    };
    let names: Vec<&str> = receivers.iter().map(|r| r.name.as_str()).collect();
    for (index, name) in names.iter().enumerate() {
        if names[..index].contains(name) {
            reader.error(
                root.mark,
                "receivers",
                format!("receiver {name:?} is defined more than once"),
            );
        }
    }
    // `mute_time_intervals` is the older name of `time_intervals`; Alertmanager reads both into one namespace.
    let mut time_intervals: Vec<NamedInterval> = Vec::new();
    for key in ["mute_time_intervals", "time_intervals"] {
        let Some((node, path)) = fields.take(key) else {
            continue;
        };
        for (index, item) in reader
            .sequence(node, &path)
            .unwrap_or(&[])
            .iter()
            .enumerate()
        {
            let item_path = format!("{path}[{index}]");
            if let Some(named) = timeinterval::read_named(reader, item, &item_path) {
                if time_intervals.iter().any(|other| other.name == named.name) {
                    reader.error(
                        item.mark,
                        &item_path,
                        format!("time interval {:?} is defined more than once", named.name),
                    );
                }
                time_intervals.push(named);
            }
        }
    }
    let interval_names: Vec<&str> = time_intervals.iter().map(|t| t.name.as_str()).collect();
    let known = Known {
        receivers: &names,
        intervals: &interval_names,
    };
    let route = match fields.take("route") {
        Some((node, path)) => {
            let defaults = Route {
                receiver: String::new(),
                group_by: GroupBy::Labels(Vec::new()),
                group_wait: DEFAULT_GROUP_WAIT,
                group_interval: DEFAULT_GROUP_INTERVAL,
                repeat_interval: DEFAULT_REPEAT_INTERVAL,
                matchers: Vec::new(),
                continue_matching: false,
                mute_time_intervals: Vec::new(),
                active_time_intervals: Vec::new(),
                routes: Vec::new(),
            };
            read_route(reader, node, &path, &defaults, true, &known)
        }
        None => {
            reader.error(root.mark, "route", "a route is required");
            None
        }
    };
    let inhibit_rules = match fields.take("inhibit_rules") {
        Some((node, path)) => {
            let items = reader.sequence(node, &path).unwrap_or(&[]);
            items
                .iter()
                .enumerate()
                .filter_map(|(index, item)| read_inhibit(reader, item, &format!("{path}[{index}]")))
                .collect()
        }
        None => Vec::new(),
    };
    fields.finish(reader);
    Some(NotifyConfig {
        file: file.to_owned(),
        route: route?,
        inhibit_rules,
        time_intervals,
        receivers,
        delivery: DeliveryOptions::default(),
    })
}
fn read_route(
    reader: &mut Reader<'_>,
    node: &Node,
    path: &str,
    parent: &Route,
    root: bool,
    known: &Known<'_>,
) -> Option<Route> {
    let mut fields = Fields::of(reader, node, path)?;
    let receivers = known.receivers;
    let receiver = match fields.take("receiver") {
        Some((node, key_path)) => {
            let name = reader.string(node, &key_path);
            if let Some(name) = &name {
                if !receivers.contains(&name.as_str()) {
                    reader.error(node.mark, &key_path, format!("undefined receiver {name:?}"));
                }
            }
            name
        }
        None if root => {
            reader.error(node.mark, path, "the root route needs a receiver");
            None
        }
        None => Some(parent.receiver.clone()),
    };
    let group_by = match fields.strings(reader, "group_by") {
        Some(labels) if labels.iter().any(|label| label == "...") => {
            if labels.len() > 1 {
                reader.error(
                    node.mark,
                    &format!("{path}.group_by"),
                    "'...' must be the only entry of group_by",
                );
            }
            GroupBy::All
        }
        Some(labels) => GroupBy::Labels(labels),
        None => parent.group_by.clone(),
    };
    let mut duration =
        |reader: &mut Reader<'_>, key: &'static str, default: Duration| match fields.take(key) {
            Some((node, key_path)) => {
                let text = reader.string(node, &key_path)?;
                match parse_duration(&text) {
                    Ok(value) => Some(value),
                    Err(message) => {
                        reader.error(node.mark, &key_path, message);
                        None
                    }
                }
            }
            None => Some(default),
        };
    let group_wait = duration(reader, "group_wait", parent.group_wait);
    let group_interval = duration(reader, "group_interval", parent.group_interval);
    let repeat_interval = duration(reader, "repeat_interval", parent.repeat_interval);
    let mut matchers = Vec::new();
    if let Some((map_node, key_path)) = fields.take("match") {
        if let Some(labels) = reader.labels(map_node, &key_path) {
            for (name, value) in labels {
                push_matcher(
                    reader,
                    &mut matchers,
                    map_node,
                    &key_path,
                    &name,
                    MatchOp::Equal,
                    &value,
                );
            }
        }
    }
    if let Some((map_node, key_path)) = fields.take("match_re") {
        if let Some(labels) = reader.labels(map_node, &key_path) {
            for (name, value) in labels {
                push_matcher(
                    reader,
                    &mut matchers,
                    map_node,
                    &key_path,
                    &name,
                    MatchOp::Regex,
                    &value,
                );
            }
        }
    }
    matchers.extend(read_matcher_list(reader, &mut fields, "matchers"));
    if root && !matchers.is_empty() {
        reader.error(node.mark, path, "the root route must not have matchers");
    }
    let continue_matching = fields.boolean(reader, "continue").unwrap_or(false);
    if root && continue_matching {
        reader.error(node.mark, path, "the root route cannot have continue");
    }
    // Not inherited, as in Alertmanager: each route names its own.
    let mut intervals = |reader: &mut Reader<'_>, key: &'static str| -> Vec<String> {
        let Some((list, list_path)) = fields.take(key) else {
            return Vec::new();
        };
        if root {
            reader.error(
                list.mark,
                &list_path,
                format!("the root route cannot have {key}"),
            );
        }
        let mut names = Vec::new();
        for (index, item) in reader
            .sequence(list, &list_path)
            .unwrap_or(&[])
            .iter()
            .enumerate()
        {
            let item_path = format!("{list_path}[{index}]");
            if let Some(name) = reader.string(item, &item_path) {
                if !known.intervals.contains(&name.as_str()) {
                    reader.error(
                        item.mark,
                        &item_path,
                        format!("undefined time interval {name:?}"),
                    );
                }
                names.push(name);
            }
        }
        names
    };
    let mute_time_intervals = intervals(reader, "mute_time_intervals");
    let active_time_intervals = intervals(reader, "active_time_intervals");
    let mut this = Route {
        receiver: receiver?,
        group_by,
        group_wait: group_wait?,
        group_interval: group_interval?,
        repeat_interval: repeat_interval?,
        matchers,
        continue_matching,
        mute_time_intervals,
        active_time_intervals,
        routes: Vec::new(),
    };
    if this.group_interval.is_zero() {
        reader.error(node.mark, path, "group_interval cannot be zero");
    }
    if this.repeat_interval.is_zero() {
        reader.error(node.mark, path, "repeat_interval cannot be zero");
    }
    if let Some((routes_node, routes_path)) = fields.take("routes") {
        let items = reader.sequence(routes_node, &routes_path).unwrap_or(&[]);
        let children: Vec<Route> = items
            .iter()
            .enumerate()
            .filter_map(|(index, item)| {
                read_route(
                    reader,
                    item,
                    &format!("{routes_path}[{index}]"),
                    &this,
                    false,
                    known,
                )
            })
            .collect();
        this.routes = children;
    }
    fields.finish(reader);
    Some(this)
}

fn push_matcher(
    reader: &mut Reader<'_>,
    matchers: &mut Vec<Matcher>,
    node: &Node,
    path: &str,
    name: &str,
    op: MatchOp,
    value: &str,
) {
    match Matcher::new(name, op, value) {
        Ok(matcher) => matchers.push(matcher),
        Err(message) => reader.error(node.mark, &format!("{path}.{name}"), message),
    }
}

fn read_matcher_list(
    reader: &mut Reader<'_>,
    fields: &mut Fields<'_>,
    key: &'static str,
) -> Vec<Matcher> {
    let Some((node, path)) = fields.take(key) else {
        return Vec::new();
    };
    let items = reader.sequence(node, &path).unwrap_or(&[]);
    let mut matchers = Vec::new();
    for (index, item) in items.iter().enumerate() {
        let item_path = format!("{path}[{index}]");
        let Some(text) = reader.string(item, &item_path) else {
            continue;
        };
        match parse_matchers(&text) {
            Ok(parsed) => matchers.extend(parsed),
            Err(message) => reader.error(item.mark, &item_path, message),
        }
    }
    matchers
}

fn read_inhibit(reader: &mut Reader<'_>, node: &Node, path: &str) -> Option<InhibitRule> {
    let mut fields = Fields::of(reader, node, path)?;
    let _ = fields.take("name");
    let mut source_matchers = read_matcher_list(reader, &mut fields, "source_matchers");
    let mut target_matchers = read_matcher_list(reader, &mut fields, "target_matchers");
    for (key, op, target) in [
        ("source_match", MatchOp::Equal, false),
        ("source_match_re", MatchOp::Regex, false),
        ("target_match", MatchOp::Equal, true),
        ("target_match_re", MatchOp::Regex, true),
    ] {
        if let Some((map_node, key_path)) = fields.take(key) {
            if let Some(labels) = reader.labels(map_node, &key_path) {
                for (name, value) in labels {
                    let list = if target {
                        &mut target_matchers
                    } else {
                        &mut source_matchers
                    };
                    push_matcher(reader, list, map_node, &key_path, &name, op, &value);
                }
            }
        }
    }
    let equal = fields.strings(reader, "equal").unwrap_or_default();
    fields.finish(reader);
    Some(InhibitRule {
        source_matchers,
        target_matchers,
        equal,
    })
}

fn read_receiver(
    reader: &mut Reader<'_>,
    node: &Node,
    path: &str,
    global: &Global,
) -> Option<Receiver> {
    let mut fields = Fields::of(reader, node, path)?;
    for key in UNSUPPORTED_RECEIVER {
        refuse(
            reader,
            &mut fields,
            key,
            "dbwatch sends to the receivers of Alertmanager 0.25 but wechat_configs, plus msteams_configs and \
             msteamsv2_configs; send this receiver's alerts through an Alertmanager (alerting.alertmanagers) or a \
             webhook bridge",
        );
    }
    let name = fields.string(reader, "name");
    if name.is_none() {
        reader.error(node.mark, path, "a receiver needs a name");
    }
    let mut integrations = Vec::new();
    for (key, read) in INTEGRATIONS {
        if let Some((list, list_path)) = fields.take(key) {
            for (index, item) in reader
                .sequence(list, &list_path)
                .unwrap_or(&[])
                .iter()
                .enumerate()
            {
                if let Some(integration) =
                    read(reader, item, &format!("{list_path}[{index}]"), global)
                {
                    integrations.push(integration);
                }
            }
        }
    }
    fields.finish(reader);
    Some(Receiver {
        name: name?,
        integrations,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    fn errors(text: &str) -> Vec<String> {
        match load_str(Path::new("r.yml"), text, &no_env) {
            Ok(_) => Vec::new(),
            Err(errors) => errors
                .errors
                .iter()
                .map(|e| format!("{}:{}: {}: {}", e.line, e.column, e.path, e.message))
                .collect(),
        }
    }

    #[test]
    fn unsupported_fields_are_refused_by_name_with_position() {
        // `templates` matching nothing and a templated title load; the missing integration is refused.
        let found = errors(
            "route:\n  receiver: a\ntemplates: [x]\nreceivers:\n  - name: a\n    wechat_configs: [{api_secret: k}]\n    slack_configs:\n      - api_url: http://h/x\n        title: '{{ .Status }}'\n",
        );
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(
            found[0].contains("receivers[0].wechat_configs: wechat_configs is not supported by dbwatch: dbwatch sends to the receivers of Alertmanager 0.25 but wechat_configs"),
            "{found:?}"
        );
    }

    #[test]
    fn templates_are_read_relative_to_the_routing_file_and_parse_errors_name_file_and_line() {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::create_dir(dir.path().join("templates")).expect("mkdir");
        std::fs::write(
            dir.path().join("templates/slack.tmpl"),
            "{{ define \"team.title\" }}{{ .Status | toUpper }}{{ end }}\n",
        )
        .expect("write");
        let routing = dir.path().join("alertmanager.yml");
        let text = "route:\n  receiver: a\ntemplates: ['templates/*.tmpl', 'missing/*.tmpl']\nreceivers:\n  - name: a\n    slack_configs:\n      - api_url: http://h/x\n        title: '{{ template \"team.title\" . }}'\n        text: '{{ .CommonAnnotations.summary }}'\n";
        let config = load_str(&routing, text, &no_env).expect("loads");
        assert_eq!(config.receivers[0].integrations.len(), 1);
        std::fs::write(
            dir.path().join("templates/broken.tmpl"),
            "line one\n{{ define \"x\" }}{{ if }}{{ end }}\n",
        )
        .expect("write");
        let errors = load_str(&routing, text, &no_env).expect_err("a parse error");
        let message = errors.to_string();
        assert!(message.contains("templates[0]"), "{message}");
        assert!(message.contains("broken.tmpl:2:"), "{message}");
        assert!(message.contains("missing value for if"), "{message}");
        // A field's own template error names the field, with line and column inside it.
        let found = errors_of(&routing, "route:\n  receiver: a\nreceivers:\n  - name: a\n    slack_configs:\n      - api_url: http://h/x\n        text: '{{ nope }}'\n");
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(
            found[0].starts_with("7:15: receivers[0].slack_configs[0].text: template: text:1:4: function \"nope\" not defined"),
            "{found:?}"
        );
    }

    fn errors_of(file: &Path, text: &str) -> Vec<String> {
        match load_str(file, text, &no_env) {
            Ok(_) => Vec::new(),
            Err(errors) => errors
                .errors
                .iter()
                .map(|e| format!("{}:{}: {}: {}", e.line, e.column, e.path, e.message))
                .collect(),
        }
    }

    #[test]
    fn undefined_receivers_and_bad_matchers_are_reported_together() {
        let found = errors(
            "route:\n  receiver: a\n  routes:\n    - receiver: b\n      matchers: ['x=~(']\nreceivers:\n  - name: a\n",
        );
        assert_eq!(found.len(), 2, "{found:?}");
        assert!(
            found[0].contains("route.routes[0].receiver: undefined receiver \"b\""),
            "{found:?}"
        );
        assert!(
            found[1].contains("route.routes[0].matchers[0]: invalid regular expression"),
            "{found:?}"
        );
    }

    #[test]
    fn secrets_never_print() {
        let env = |name: &str| {
            (name == "SLACK_URL")
                .then(|| "https://hooks.slack.com/services/T0/B0/sekrit".to_owned())
        };
        let config = load_str(
            Path::new("r.yml"),
            "global:\n  smtp_auth_password: hunter2\n  smtp_smarthost: h:25\n  smtp_from: a@b.c\nroute:\n  receiver: a\nreceivers:\n  - name: a\n    slack_configs: [{api_url: '${SLACK_URL}'}]\n    pagerduty_configs: [{routing_key: 0123456789abcdef0123456789abcdef}]\n    email_configs: [{to: x@y.z, auth_username: u}]\n",
            &env,
        )
        .expect("valid");
        let printed = format!("{config:?}");
        for secret in ["sekrit", "hunter2", "0123456789abcdef0123456789abcdef"] {
            assert!(!printed.contains(secret), "{secret} printed");
        }
    }

    #[test]
    fn global_keys_of_missing_receivers_are_refused_by_name_and_the_others_read() {
        let found = errors(
            "global:\n  wechat_api_secret: s\n  opsgenie_api_key: k\n  victorops_api_key: v\n  telegram_api_url: http://t\n  webex_api_url: http://w\n  rocketchat_token: r\nroute:\n  receiver: a\nreceivers:\n  - name: a\n    opsgenie_configs: [{}]\n    victorops_configs: [{routing_key: db}]\n",
        );
        assert_eq!(found.len(), 2, "{found:?}");
        assert!(
            found[0].contains("global.wechat_api_secret: wechat_api_secret is not supported by dbwatch: dbwatch has no wechat_configs"),
            "{found:?}"
        );
        assert!(
            found[1].contains("global.rocketchat_token: rocketchat_token is not supported by dbwatch: dbwatch has no rocketchat_configs"),
            "{found:?}"
        );
    }

    #[test]
    fn the_new_receivers_secrets_never_print() {
        let config = load_str(
            Path::new("r.yml"),
            "global:\n  opsgenie_api_key: og-sekrit\nroute:\n  receiver: a\nreceivers:\n  - name: a\n    opsgenie_configs: [{}]\n    telegram_configs: [{bot_token: tg-sekrit, chat_id: 1}]\n    pushover_configs: [{token: po-sekrit, user_key: pu-sekrit}]\n    victorops_configs: [{api_key: vo-sekrit, routing_key: r}]\n    discord_configs: [{webhook_url: 'https://discord.com/api/webhooks/1/dc-sekrit'}]\n    sns_configs: [{topic_arn: 'arn:aws:sns:us-east-1:1:t', sigv4: {access_key: AK, secret_key: sns-sekrit}}]\n",
            &no_env,
        )
        .expect("valid");
        let printed = format!("{config:?}");
        for secret in [
            "og-sekrit",
            "tg-sekrit",
            "po-sekrit",
            "pu-sekrit",
            "vo-sekrit",
            "dc-sekrit",
            "sns-sekrit",
        ] {
            assert!(!printed.contains(secret), "{secret} printed");
        }
    }

    #[test]
    fn children_inherit_timers_and_grouping() {
        let config = load_str(
            Path::new("r.yml"),
            "route:\n  receiver: a\n  group_by: [alertname]\n  group_wait: 0s\n  repeat_interval: 1d\n  routes:\n    - matchers: [severity=\"page\"]\n      group_interval: 1m\nreceivers:\n  - name: a\n",
            &no_env,
        )
        .expect("valid");
        let child = &config.route.routes[0];
        assert_eq!(child.receiver, "a");
        assert_eq!(child.group_by, GroupBy::Labels(vec!["alertname".into()]));
        assert_eq!(child.group_wait, Duration::ZERO);
        assert_eq!(child.group_interval, Duration::from_secs(60));
        assert_eq!(child.repeat_interval, Duration::from_secs(86_400));
    }

    #[test]
    fn routes_name_time_intervals_that_mute_or_activate_them() {
        let config = load_str(
            Path::new("r.yml"),
            "time_intervals:\n  - name: nights\n    time_intervals: [{times: [{start_time: '22:00', end_time: '24:00'}]}]\nmute_time_intervals:\n  - name: weekdays\n    time_intervals: [{weekdays: ['monday:friday']}]\nroute:\n  receiver: a\n  routes:\n    - matchers: [severity=\"warning\"]\n      mute_time_intervals: [nights]\n    - matchers: [severity=\"ticket\"]\n      active_time_intervals: [weekdays]\n      routes: [{matchers: [team=\"db\"]}]\nreceivers:\n  - name: a\n",
            &no_env,
        )
        .expect("valid");
        let at = |text: &str| {
            chrono::DateTime::parse_from_rfc3339(text)
                .expect("instant")
                .with_timezone(&chrono::Utc)
        };
        let warning = &config.route.routes[0];
        let ticket = &config.route.routes[1];
        // 2024-03-08 is a Friday, 2024-03-09 a Saturday.
        assert!(config.muted_at(warning, at("2024-03-08T22:30:00Z")));
        assert!(!config.muted_at(warning, at("2024-03-08T21:59:00Z")));
        assert!(!config.muted_at(ticket, at("2024-03-08T22:30:00Z")));
        assert!(config.muted_at(ticket, at("2024-03-09T10:00:00Z")));
        // Not inherited, as in Alertmanager.
        assert!(!config.muted_at(&ticket.routes[0], at("2024-03-09T10:00:00Z")));
        assert!(!config.muted_at(&config.route, at("2024-03-08T22:30:00Z")));

        let found = errors(
            "time_intervals:\n  - name: x\n    time_intervals: []\n  - name: x\n    time_intervals: []\nroute:\n  receiver: a\n  active_time_intervals: [x]\n  routes:\n    - mute_time_intervals: [y]\nreceivers:\n  - name: a\n",
        );
        assert_eq!(found.len(), 3, "{found:?}");
        assert!(
            found[0].contains("time_intervals[1]: time interval \"x\" is defined more than once"),
            "{found:?}"
        );
        assert!(
            found[1].contains(
                "route.active_time_intervals: the root route cannot have active_time_intervals"
            ),
            "{found:?}"
        );
        assert!(
            found[2]
                .contains("route.routes[0].mute_time_intervals[0]: undefined time interval \"y\""),
            "{found:?}"
        );
    }
}
