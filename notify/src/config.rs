//! The routing file: the part of Alertmanager's `alertmanager.yml` schema dbwatch runs, read with the same
//! position-keeping reader as the main configuration so every problem comes with file:line:column and key path.
//!
//! Fields dbwatch does not implement are refused by name rather than ignored: a user who drops in their
//! alertmanager.yml must learn that, say, `mute_time_intervals` would not mute anything. Values containing Go
//! templates (`{{ ... }}`) are refused too: dbwatch renders its own messages and never lets a template bug drop
//! a notification. The shipped routing file and the test trees are also checked with `amtool check-config`
//! (tests/notify.rs).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use dbwatch_rules::model::parse_duration;
use dbwatch_secret::{PasswordSource, Secret};
use dbwatch_yaml::node::{self as yaml, Node};
use dbwatch_yaml::read::{EnvLookup, Fields, Reader};
use dbwatch_yaml::{ConfigError, ConfigErrors};

use super::matcher::{parse_matchers, MatchOp, Matcher};

/// Alertmanager's defaults.
pub const DEFAULT_GROUP_WAIT: Duration = Duration::from_secs(30);
pub const DEFAULT_GROUP_INTERVAL: Duration = Duration::from_secs(5 * 60);
pub const DEFAULT_REPEAT_INTERVAL: Duration = Duration::from_secs(4 * 3600);
pub const DEFAULT_PAGERDUTY_URL: &str = "https://events.pagerduty.com/v2/enqueue";

#[derive(Debug, Clone)]
pub struct NotifyConfig {
    pub file: PathBuf,
    pub route: Route,
    pub inhibit_rules: Vec<InhibitRule>,
    pub receivers: Vec<Receiver>,
    /// Not part of Alertmanager's schema (so not in the file): set by the daemon or by tests.
    pub delivery: DeliveryOptions,
}

impl NotifyConfig {
    pub fn receiver(&self, name: &str) -> Option<&Receiver> {
        self.receivers.iter().find(|receiver| receiver.name == name)
    }
}

/// How long a receiver's `Retry-After` may hold a destination back. Slack and PagerDuty ask for seconds to a
/// minute; an hour still honours any real rate-limit window or maintenance hint, while a broken or hostile
/// header (`Retry-After: 9300000000000000000`, or a date years ahead) can delay a page by an hour at most, and
/// never past the notification's own give-up time (`DeliveryOptions::max_age`).
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

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

#[derive(Debug, Clone)]
pub struct Route {
    pub receiver: String,
    pub group_by: GroupBy,
    pub group_wait: Duration,
    pub group_interval: Duration,
    pub repeat_interval: Duration,
    pub matchers: Vec<Matcher>,
    pub continue_matching: bool,
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
    pub integrations: Vec<Integration>,
}

#[derive(Debug, Clone)]
pub enum Integration {
    Slack(SlackConfig),
    PagerDuty(PagerDutyConfig),
    Email(EmailConfig),
    Webhook(WebhookConfig),
}

impl Integration {
    /// The `integration` label of the metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Integration::Slack(_) => "slack",
            Integration::PagerDuty(_) => "pagerduty",
            Integration::Email(_) => "email",
            Integration::Webhook(_) => "webhook",
        }
    }

    pub fn send_resolved(&self) -> bool {
        match self {
            Integration::Slack(config) => config.send_resolved,
            Integration::PagerDuty(config) => config.send_resolved,
            Integration::Email(config) => config.send_resolved,
            Integration::Webhook(config) => config.send_resolved,
        }
    }
}

#[derive(Debug, Clone)]
pub struct SlackConfig {
    /// The incoming webhook URL: a secret.
    pub api_url: PasswordSource,
    pub channel: Option<String>,
    pub username: Option<String>,
    pub icon_emoji: Option<String>,
    pub icon_url: Option<String>,
    pub send_resolved: bool,
}

#[derive(Debug, Clone)]
pub struct PagerDutyConfig {
    pub routing_key: PasswordSource,
    pub url: String,
    /// A fixed severity; without it the alert's `severity` label is mapped.
    pub severity: Option<String>,
    pub client: String,
    pub client_url: Option<String>,
    pub class: Option<String>,
    pub component: Option<String>,
    pub group: Option<String>,
    pub source: Option<String>,
    pub details: BTreeMap<String, String>,
    pub links: Vec<(String, String)>,
    pub send_resolved: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsSettings {
    pub ca_file: Option<PathBuf>,
    pub server_name: Option<String>,
    pub insecure_skip_verify: bool,
}

#[derive(Debug, Clone)]
pub struct EmailConfig {
    pub to: Vec<String>,
    pub from: String,
    /// `host:port`.
    pub smarthost: String,
    pub hello: String,
    pub auth_username: Option<String>,
    pub auth_password: Option<PasswordSource>,
    pub auth_identity: Option<String>,
    pub require_tls: bool,
    /// Port 465 or `force_implicit_tls`: TLS from the first byte; otherwise STARTTLS.
    pub implicit_tls: bool,
    pub tls: TlsSettings,
    pub headers: BTreeMap<String, String>,
    pub send_resolved: bool,
}

#[derive(Debug, Clone)]
pub struct WebhookConfig {
    pub url: PasswordSource,
    pub max_alerts: usize,
    pub send_resolved: bool,
}

/// Why the routing file cannot be used.
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

/// Keys of Alertmanager's schema that dbwatch refuses, with the reason.
const UNSUPPORTED_TOP: &[(&str, &str)] = &[
    (
        "templates",
        "dbwatch renders its own messages; Go templates are not supported",
    ),
    (
        "time_intervals",
        "mute and active time intervals are not supported",
    ),
    (
        "mute_time_intervals",
        "mute and active time intervals are not supported",
    ),
];
const UNSUPPORTED_ROUTE: &[(&str, &str)] = &[
    (
        "mute_time_intervals",
        "mute and active time intervals are not supported",
    ),
    (
        "active_time_intervals",
        "mute and active time intervals are not supported",
    ),
];
const UNSUPPORTED_RECEIVER: &[&str] = &[
    "discord_configs",
    "msteams_configs",
    "msteamsv2_configs",
    "opsgenie_configs",
    "pushover_configs",
    "sns_configs",
    "telegram_configs",
    "victorops_configs",
    "webex_configs",
    "wechat_configs",
    "jira_configs",
    "rocketchat_configs",
    "incidentio_configs",
];

#[derive(Default)]
struct Global {
    smtp_from: Option<String>,
    smtp_smarthost: Option<String>,
    smtp_hello: Option<String>,
    smtp_auth_username: Option<String>,
    smtp_auth_password: Option<PasswordSource>,
    smtp_auth_identity: Option<String>,
    smtp_require_tls: Option<bool>,
    slack_api_url: Option<PasswordSource>,
    pagerduty_url: Option<String>,
}

fn refuse(reader: &mut Reader<'_>, fields: &mut Fields<'_>, key: &'static str, why: &str) {
    if let Some((node, path)) = fields.take(key) {
        reader.error(
            node.mark,
            &path,
            format!("{key} is not supported by dbwatch: {why}"),
        );
    }
}

fn read_root(reader: &mut Reader<'_>, root: &Node, file: &Path) -> Option<NotifyConfig> {
    let mut fields = Fields::of(reader, root, "")?;
    for (key, why) in UNSUPPORTED_TOP {
        refuse(reader, &mut fields, key, why);
    }
    let global = match fields.take("global") {
        Some((node, path)) => read_global(reader, node, &path),
        None => Global::default(),
    };
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
                routes: Vec::new(),
            };
            read_route(reader, node, &path, &defaults, true, &names)
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
        receivers,
        delivery: DeliveryOptions::default(),
    })
}

/// A secret given inline under `key` or as a file under `key_file`, never both.
fn secret(
    reader: &mut Reader<'_>,
    fields: &mut Fields<'_>,
    key: &'static str,
    file_key: &'static str,
) -> Option<PasswordSource> {
    let inline = fields.take(key);
    let file = fields.take(file_key);
    match (inline, file) {
        (Some((node, path)), Some(_)) => {
            reader.error(
                node.mark,
                &path,
                format!("set {key} or {file_key}, not both"),
            );
            None
        }
        (Some((node, path)), None) => reader
            .string(node, &path)
            .map(|value| PasswordSource::Inline(Secret::new(value))),
        (None, Some((node, path))) => reader
            .string(node, &path)
            .map(|value| PasswordSource::File(PathBuf::from(value))),
        (None, None) => None,
    }
}

/// A plain string that must not be a Go template.
fn plain(reader: &mut Reader<'_>, fields: &mut Fields<'_>, key: &'static str) -> Option<String> {
    let (node, path) = fields.take(key)?;
    let value = reader.string(node, &path)?;
    if value.contains("{{") {
        reader.error(
            node.mark,
            &path,
            "templates are not supported by dbwatch: it renders its own messages",
        );
        return None;
    }
    Some(value)
}

fn read_global(reader: &mut Reader<'_>, node: &Node, path: &str) -> Global {
    let Some(mut fields) = Fields::of(reader, node, path) else {
        return Global::default();
    };
    // Accepted for compatibility: dbwatch's alerts always carry explicit resolves, so there is nothing to time out.
    let _ = fields.take("resolve_timeout");
    refuse(
        reader,
        &mut fields,
        "http_config",
        "proxies and custom HTTP settings are not supported",
    );
    refuse(
        reader,
        &mut fields,
        "smtp_auth_secret",
        "CRAM-MD5 is not supported; use smtp_auth_password",
    );
    let global = Global {
        smtp_from: plain(reader, &mut fields, "smtp_from"),
        smtp_smarthost: plain(reader, &mut fields, "smtp_smarthost"),
        smtp_hello: plain(reader, &mut fields, "smtp_hello"),
        smtp_auth_username: plain(reader, &mut fields, "smtp_auth_username"),
        smtp_auth_password: secret(
            reader,
            &mut fields,
            "smtp_auth_password",
            "smtp_auth_password_file",
        ),
        smtp_auth_identity: plain(reader, &mut fields, "smtp_auth_identity"),
        smtp_require_tls: fields.boolean(reader, "smtp_require_tls"),
        slack_api_url: secret(reader, &mut fields, "slack_api_url", "slack_api_url_file"),
        pagerduty_url: plain(reader, &mut fields, "pagerduty_url"),
    };
    fields.finish(reader);
    global
}

fn read_route(
    reader: &mut Reader<'_>,
    node: &Node,
    path: &str,
    parent: &Route,
    root: bool,
    receivers: &[&str],
) -> Option<Route> {
    let mut fields = Fields::of(reader, node, path)?;
    for (key, why) in UNSUPPORTED_ROUTE {
        refuse(reader, &mut fields, key, why);
    }
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
    let mut this = Route {
        receiver: receiver?,
        group_by,
        group_wait: group_wait?,
        group_interval: group_interval?,
        repeat_interval: repeat_interval?,
        matchers,
        continue_matching,
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
                    receivers,
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
            "this integration is not implemented",
        );
    }
    let name = fields.string(reader, "name");
    if name.is_none() {
        reader.error(node.mark, path, "a receiver needs a name");
    }
    let mut integrations = Vec::new();
    let mut each =
        |reader: &mut Reader<'_>,
         fields: &mut Fields<'_>,
         key: &'static str,
         read: &dyn Fn(&mut Reader<'_>, &Node, &str, &Global) -> Option<Integration>| {
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
        };
    each(reader, &mut fields, "slack_configs", &read_slack);
    each(reader, &mut fields, "pagerduty_configs", &read_pagerduty);
    each(reader, &mut fields, "email_configs", &read_email);
    each(reader, &mut fields, "webhook_configs", &read_webhook);
    fields.finish(reader);
    Some(Receiver {
        name: name?,
        integrations,
    })
}

/// Refusals shared by every integration.
fn refuse_common(reader: &mut Reader<'_>, fields: &mut Fields<'_>) {
    refuse(
        reader,
        fields,
        "http_config",
        "proxies and custom HTTP settings are not supported",
    );
}

fn read_slack(
    reader: &mut Reader<'_>,
    node: &Node,
    path: &str,
    global: &Global,
) -> Option<Integration> {
    let mut fields = Fields::of(reader, node, path)?;
    refuse_common(reader, &mut fields);
    for key in [
        "title",
        "title_link",
        "text",
        "pretext",
        "fallback",
        "color",
        "footer",
        "fields",
        "actions",
        "callback_id",
        "image_url",
        "thumb_url",
        "short_fields",
        "link_names",
        "mrkdwn_in",
        "update_message",
        "app_token",
        "app_token_file",
        "app_url",
    ] {
        refuse(
            reader,
            &mut fields,
            key,
            "dbwatch builds the Slack message itself (Block Kit, incoming webhook)",
        );
    }
    let api_url = secret(reader, &mut fields, "api_url", "api_url_file")
        .or_else(|| global.slack_api_url.clone());
    let config = SlackConfig {
        api_url: api_url.or_else(|| {
            reader.error(
                node.mark,
                path,
                "no api_url, api_url_file or global slack_api_url",
            );
            None
        })?,
        channel: plain(reader, &mut fields, "channel"),
        username: plain(reader, &mut fields, "username"),
        icon_emoji: plain(reader, &mut fields, "icon_emoji"),
        icon_url: plain(reader, &mut fields, "icon_url"),
        send_resolved: fields.boolean(reader, "send_resolved").unwrap_or(false),
    };
    fields.finish(reader);
    Some(Integration::Slack(config))
}

const PAGERDUTY_SEVERITIES: [&str; 4] = ["critical", "error", "warning", "info"];

fn read_pagerduty(
    reader: &mut Reader<'_>,
    node: &Node,
    path: &str,
    global: &Global,
) -> Option<Integration> {
    let mut fields = Fields::of(reader, node, path)?;
    refuse_common(reader, &mut fields);
    refuse(
        reader,
        &mut fields,
        "service_key",
        "the Events API v1 is not supported; use routing_key",
    );
    refuse(
        reader,
        &mut fields,
        "service_key_file",
        "the Events API v1 is not supported; use routing_key_file",
    );
    for key in ["description", "images", "timeout"] {
        refuse(
            reader,
            &mut fields,
            key,
            "dbwatch builds the PagerDuty event itself",
        );
    }
    let routing_key = secret(reader, &mut fields, "routing_key", "routing_key_file");
    if routing_key.is_none() {
        reader.error(
            node.mark,
            path,
            "routing_key or routing_key_file is required",
        );
    }
    if let Some(PasswordSource::Inline(key)) = &routing_key {
        if key.expose().len() != 32 {
            reader.error(
                node.mark,
                &format!("{path}.routing_key"),
                "a routing key has 32 characters",
            );
        }
    }
    let severity = match fields.take("severity") {
        Some((sev_node, sev_path)) => {
            let value = reader.string(sev_node, &sev_path);
            if let Some(value) = &value {
                if !PAGERDUTY_SEVERITIES.contains(&value.as_str()) {
                    reader.error(
                        sev_node.mark,
                        &sev_path,
                        format!("expected one of critical, error, warning, info, found {value:?}"),
                    );
                }
            }
            value
        }
        None => None,
    };
    let details = match fields.take("details") {
        Some((details_node, details_path)) => reader
            .labels(details_node, &details_path)
            .unwrap_or_default(),
        None => BTreeMap::new(),
    };
    if details.values().any(|value| value.contains("{{")) {
        reader.error(
            node.mark,
            &format!("{path}.details"),
            "templates are not supported by dbwatch",
        );
    }
    let mut links = Vec::new();
    if let Some((links_node, links_path)) = fields.take("links") {
        for (index, item) in reader
            .sequence(links_node, &links_path)
            .unwrap_or(&[])
            .iter()
            .enumerate()
        {
            let item_path = format!("{links_path}[{index}]");
            if let Some(mut link) = Fields::of(reader, item, &item_path) {
                let href = plain(reader, &mut link, "href");
                let text = plain(reader, &mut link, "text").unwrap_or_default();
                link.finish(reader);
                if let Some(href) = href {
                    links.push((href, text));
                }
            }
        }
    }
    let config = PagerDutyConfig {
        routing_key: routing_key?,
        url: plain(reader, &mut fields, "url")
            .or_else(|| global.pagerduty_url.clone())
            .unwrap_or_else(|| DEFAULT_PAGERDUTY_URL.to_owned()),
        severity,
        client: plain(reader, &mut fields, "client").unwrap_or_else(|| "dbwatch".to_owned()),
        client_url: plain(reader, &mut fields, "client_url"),
        class: plain(reader, &mut fields, "class"),
        component: plain(reader, &mut fields, "component"),
        group: plain(reader, &mut fields, "group"),
        source: plain(reader, &mut fields, "source"),
        details,
        links,
        send_resolved: fields.boolean(reader, "send_resolved").unwrap_or(true),
    };
    fields.finish(reader);
    Some(Integration::PagerDuty(config))
}

fn read_email(
    reader: &mut Reader<'_>,
    node: &Node,
    path: &str,
    global: &Global,
) -> Option<Integration> {
    let mut fields = Fields::of(reader, node, path)?;
    for key in ["html", "text", "threading"] {
        refuse(
            reader,
            &mut fields,
            key,
            "dbwatch builds the message itself (text and HTML, threaded per group)",
        );
    }
    refuse(
        reader,
        &mut fields,
        "auth_secret",
        "CRAM-MD5 is not supported; use auth_password",
    );
    refuse(
        reader,
        &mut fields,
        "auth_secret_file",
        "CRAM-MD5 is not supported; use auth_password_file",
    );
    let to = plain(reader, &mut fields, "to");
    if to.is_none() {
        reader.error(node.mark, path, "to is required");
    }
    let from = plain(reader, &mut fields, "from").or_else(|| global.smtp_from.clone());
    if from.is_none() {
        reader.error(node.mark, path, "no from and no global smtp_from");
    }
    let smarthost =
        plain(reader, &mut fields, "smarthost").or_else(|| global.smtp_smarthost.clone());
    if smarthost.is_none() {
        reader.error(node.mark, path, "no smarthost and no global smtp_smarthost");
    }
    if let Some(host) = &smarthost {
        if !host
            .rsplit_once(':')
            .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok())
        {
            reader.error(
                node.mark,
                &format!("{path}.smarthost"),
                format!("expected host:port, found {host:?}"),
            );
        }
    }
    let force_implicit_tls = fields.boolean(reader, "force_implicit_tls");
    let tls = match fields.take("tls_config") {
        Some((tls_node, tls_path)) => read_tls(reader, tls_node, &tls_path),
        None => TlsSettings {
            ca_file: None,
            server_name: None,
            insecure_skip_verify: false,
        },
    };
    let headers = match fields.take("headers") {
        Some((headers_node, headers_path)) => {
            let headers = reader
                .labels(headers_node, &headers_path)
                .unwrap_or_default();
            if headers.values().any(|value| value.contains("{{")) {
                reader.error(
                    headers_node.mark,
                    &headers_path,
                    "templates are not supported by dbwatch",
                );
            }
            headers
        }
        None => BTreeMap::new(),
    };
    let auth_password = secret(reader, &mut fields, "auth_password", "auth_password_file")
        .or_else(|| global.smtp_auth_password.clone());
    let config = EmailConfig {
        to: to?
            .split(',')
            .map(|address| address.trim().to_owned())
            .filter(|address| !address.is_empty())
            .collect(),
        from: from?,
        implicit_tls: force_implicit_tls
            .unwrap_or_else(|| smarthost.as_deref().is_some_and(|h| h.ends_with(":465"))),
        smarthost: smarthost?,
        hello: plain(reader, &mut fields, "hello")
            .or_else(|| global.smtp_hello.clone())
            .unwrap_or_else(|| "localhost".to_owned()),
        auth_username: plain(reader, &mut fields, "auth_username")
            .or_else(|| global.smtp_auth_username.clone()),
        auth_password,
        auth_identity: plain(reader, &mut fields, "auth_identity")
            .or_else(|| global.smtp_auth_identity.clone()),
        require_tls: fields
            .boolean(reader, "require_tls")
            .or(global.smtp_require_tls)
            .unwrap_or(true),
        tls,
        headers,
        send_resolved: fields.boolean(reader, "send_resolved").unwrap_or(false),
    };
    fields.finish(reader);
    Some(Integration::Email(config))
}

fn read_tls(reader: &mut Reader<'_>, node: &Node, path: &str) -> TlsSettings {
    let mut settings = TlsSettings {
        ca_file: None,
        server_name: None,
        insecure_skip_verify: false,
    };
    let Some(mut fields) = Fields::of(reader, node, path) else {
        return settings;
    };
    for key in [
        "cert_file",
        "key_file",
        "min_version",
        "max_version",
        "ca",
        "cert",
        "key",
    ] {
        refuse(
            reader,
            &mut fields,
            key,
            "only ca_file, server_name and insecure_skip_verify are supported",
        );
    }
    settings.ca_file = plain(reader, &mut fields, "ca_file").map(PathBuf::from);
    settings.server_name = plain(reader, &mut fields, "server_name");
    settings.insecure_skip_verify = fields
        .boolean(reader, "insecure_skip_verify")
        .unwrap_or(false);
    fields.finish(reader);
    settings
}

fn read_webhook(
    reader: &mut Reader<'_>,
    node: &Node,
    path: &str,
    _global: &Global,
) -> Option<Integration> {
    let mut fields = Fields::of(reader, node, path)?;
    refuse_common(reader, &mut fields);
    refuse(
        reader,
        &mut fields,
        "timeout",
        "the delivery timeout is the daemon's",
    );
    let url = secret(reader, &mut fields, "url", "url_file");
    if url.is_none() {
        reader.error(node.mark, path, "url or url_file is required");
    }
    let config = WebhookConfig {
        url: url?,
        max_alerts: fields
            .integer(reader, "max_alerts", "a non-negative integer")
            .unwrap_or(0),
        send_resolved: fields.boolean(reader, "send_resolved").unwrap_or(true),
    };
    fields.finish(reader);
    Some(Integration::Webhook(config))
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
        let found = errors(
            "route:\n  receiver: a\n  mute_time_intervals: [x]\nreceivers:\n  - name: a\n    opsgenie_configs: [{api_key: k}]\n    slack_configs:\n      - api_url: http://h/x\n        title: '{{ .Status }}'\n",
        );
        assert_eq!(found.len(), 3, "{found:?}");
        assert!(
            found[0].starts_with(
                "3:24: route.mute_time_intervals: mute_time_intervals is not supported"
            ),
            "{found:?}"
        );
        assert!(
            found[1].contains("receivers[0].opsgenie_configs: opsgenie_configs is not supported"),
            "{found:?}"
        );
        assert!(
            found[2].starts_with("9:16: receivers[0].slack_configs[0].title:"),
            "{found:?}"
        );
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
}
