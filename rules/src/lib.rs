//! Alerting and recording rules: Prometheus rule files evaluated over the latest samples of every target.
//!
//! This crate consumes samples ([`source`]) and produces alert states ([`AlertsView`]); it knows nothing of
//! collectors, HTTP or notifications.
//!
//! ```text
//!  rule files ──► load (validate, compile PromQL, parse templates) ──► RuleSet
//!                                                                        │
//!  SampleSource ───read every evaluation──► History ──► eval (PromQL) ──► alerting (state machine)
//!                                             ▲                            │ ALERTS, recorded series
//!                                             └────────────────────────────┘
//!                                   engine: AlertsHandle (/metrics), state file, transitions → notifier
//! ```
//!
//! - [`load`] reads rule files in Prometheus 2.42's format and refuses, naming file, group, rule and
//!   construct, anything dbwatch would not evaluate exactly like Prometheus ([`promql`]; [`template`], Go's
//!   text/template from `dbwatch-template` with Prometheus's data and functions, the query functions refused).
//! - [`history`] is a bounded in-memory series store fed from snapshots; its module documentation explains how
//!   snapshots map onto Prometheus' scrapes and staleness markers.
//! - [`value`] holds what expressions evaluate to and the errors they end in, shared by all of [`eval`].
//! - [`eval`] is a pure PromQL evaluator (the time is an argument) matching Prometheus 2.42 bit for bit: the
//!   tree walk, then operators, aggregation and functions over evaluated values; `eval::matching` pairs and
//!   groups vectors by their labels, and [`eval::cache`] (owned by the engine, passed to every evaluation)
//!   shares results between rules and keeps pairings and groupings while the operands hold the same series.
//! - [`group`] evaluates a group's rules in order and writes what they produce; [`alerting`] is the alert
//!   state machine: `for`, `keep_firing_for`, templating, `ALERTS`/`ALERTS_FOR_STATE`.
//! - [`state`] persists alert state across restarts; [`engine`] is the task that ties it all together.
//! - [`unittest`] runs `promtool test rules` files on a virtual clock; [`export`] writes rules back out for a
//!   Prometheus server, and holds the shipped rules (`alerts/*.yml`) built into the binary.

pub mod alerting;
pub mod engine;
pub mod eval;
pub mod export;
pub(crate) mod gofloat;
pub mod group;
pub mod history;
pub mod labels;
pub mod load;
pub mod model;
pub mod promql;
pub mod source;
pub mod state;
pub mod template;
pub mod trends;
pub mod unittest;
pub mod value;

pub use alerting::{AlertState, AlertTransition};
pub use engine::{
    AlertSummary, AlertsHandle, AlertsView, EngineOptions, RuleMetrics, RuleUpdate, RulesEngine,
    WrittenSink, DEFAULT_EVALUATION_INTERVAL,
};
#[cfg(test)]
pub(crate) use export::load_builtin;
pub use export::{export, load_embedded, ExportError, ExportFormat};
pub use load::{
    load_rule_files, load_rule_files_within, resolve_rule_files, LoadLimits, RuleError, RuleErrors,
    DEFAULT_HISTORY_LIMIT, HISTORY_KIB_PER_SERIES_DAY_AT_15S,
};
pub use model::RuleSet;
pub use source::{Latest, SampleSource, TargetSamples, TargetScrape};
pub use trends::{TrendSeries, Trends};
pub use unittest::{run_tests, TestError, TestReport};
