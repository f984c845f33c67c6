//! The integrations, one module each holding its configuration reading, its rendering and its sending, behind
//! [`Integration`]. Adding a receiver type is its module here plus one line in the routing file reader's table
//! (`config::INTEGRATIONS`). A field Alertmanager templates is read with
//! `crate::template::TemplatedField::read(reader, &mut fields, "key", &global.templates)` and rendered with
//! `crate::template::render_or(&config.field, notice, || built_in_text)` (see `template.rs`).
//!
//! This module only defines what every integration shares; it imports none of them, so that each integration
//! may use it without an import loop.

pub mod email;
pub mod http;
pub mod pagerduty;
pub mod slack;
pub mod webhook;

pub mod amtext;
pub mod discord;
pub mod msteams;
pub mod msteamsv2;
pub mod opsgenie;
pub mod pushover;
pub mod sigv4;
pub mod sns;
pub mod telegram;
pub mod victorops;
pub mod webex;

#[cfg(test)]
mod testkit;
#[cfg(test)]
mod tests;

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use super::render::Notice;
use super::store::Payload;
use dbwatch_secret::PasswordSource;

/// The kind of an integration: the `integration` label of the metrics and the name in logs and the outbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    Slack,
    PagerDuty,
    Email,
    Webhook,
    Discord,
    Telegram,
    Webex,
    OpsGenie,
    Pushover,
    VictorOps,
    MsTeams,
    MsTeamsV2,
    Sns,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Slack => "slack",
            Kind::PagerDuty => "pagerduty",
            Kind::Email => "email",
            Kind::Webhook => "webhook",
            Kind::Discord => "discord",
            Kind::Telegram => "telegram",
            Kind::Webex => "webex",
            Kind::OpsGenie => "opsgenie",
            Kind::Pushover => "pushover",
            Kind::VictorOps => "victorops",
            Kind::MsTeams => "msteams",
            Kind::MsTeamsV2 => "msteamsv2",
            Kind::Sns => "sns",
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What became of one delivery attempt.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Delivered,
    Retry {
        reason: String,
        retry_after: Option<Duration>,
    },
    Permanent {
        reason: String,
    },
}

/// A boxed future: sending is async, and the notifier holds its integrations as trait objects.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// One configured integration of a receiver (one entry of `slack_configs`, `email_configs`, …).
pub trait Integration: fmt::Debug + Send + Sync {
    fn kind(&self) -> Kind;

    /// Whether resolved alerts are sent (Alertmanager's per-integration `send_resolved`).
    fn send_resolved(&self) -> bool;

    /// The message for one group's notification; built-in, so it cannot fail.
    fn render(&self, notice: &Notice<'_>) -> Payload;

    /// Sends a payload this integration rendered; never panics, every failure becomes an [`Outcome`].
    fn send<'a>(
        &'a self,
        client: &'a reqwest::Client,
        payload: &'a Payload,
        timeout: Duration,
    ) -> BoxFuture<'a, Outcome>;

    /// The least time between two messages to this destination (Slack allows about one per second).
    fn spacing(&self) -> Option<Duration> {
        None
    }
}

/// The answer to a payload of another integration's kind: the receiver's configuration changed under a
/// queued notification.
pub(crate) fn mismatch(kind: Kind) -> Outcome {
    Outcome::Permanent {
        reason: format!("the receiver's {kind} integration no longer matches this notification"),
    }
}

/// A secret's value; a file that cannot be read is retried, since it may be mid-rotation.
pub(crate) fn read_secret(source: &PasswordSource, what: &str) -> Result<String, Outcome> {
    source
        .read()
        .map(|secret| secret.expose().to_owned())
        .map_err(|error| Outcome::Retry {
            reason: format!("cannot read the {what} file: {error}"),
            retry_after: None,
        })
}
