//! The opt-in consistency-level canary: each poll writes and reads one small row at each configured level.
//!
//! Cassandra counts unavailable and timed-out requests per consistency level only in JMX (and in 6.0's
//! `system_metrics`), so over CQL the way to know whether QUORUM or ALL can currently succeed is to try. Each
//! level owns one row (its id is the level's protocol code) of a table shaped
//! `(id int PRIMARY KEY, ts timestamp)`, so levels never contend. Statements run once (no retry policy, no
//! speculative execution) under the canary's own timeout, which should exceed the server's
//! `write_request_timeout`/`read_request_timeout` so that a slow cluster answers with its own timeout error
//! rather than the client giving up first. The coordinator is picked by the session's default policy.
//!
//! Outcomes: `success`; `unavailable` (the coordinator knew too few replicas were alive); `timeout` (replicas
//! did not answer in time, server or client side); `other` (anything else: no coordinator reachable, overload,
//! a missing table). Levels run concurrently; within a level the read follows the write.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use scylla::client::session::Session;
use scylla::errors::{DbError, ExecutionError, RequestAttemptError};
use scylla::policies::retry::FallthroughRetryPolicy;
use scylla::statement::{Consistency, Statement};
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::session::{classify, quote_identifier};
use crate::error::ErrorKind;
use crate::metric::{bool_value, MetricDesc, MetricKind, Sample};
use crate::ViewOutcome;

pub const WRITE_VIEW: &str = "canary_write";
pub const READ_VIEW: &str = "canary_read";
const WRITE_QUERY: &str = include_str!("canary_write.cql");
const READ_QUERY: &str = include_str!("canary_read.cql");

pub static REQUESTS: MetricDesc = MetricDesc {
    name: "cassandra_canary_requests_total",
    help: "Canary writes and reads by consistency level and outcome (success, unavailable, timeout, other)",
    kind: MetricKind::Counter,
    labels: &["consistency", "operation", "outcome"],
};
pub static SUCCESS: MetricDesc = MetricDesc {
    name: "cassandra_canary_success",
    help:
        "1 when both the canary write and read at this consistency level succeeded in the last poll",
    kind: MetricKind::Gauge,
    labels: &["consistency"],
};
pub static LATENCY: MetricDesc = MetricDesc {
    name: "cassandra_canary_latency_seconds",
    help:
        "Round trip of the last canary write or read at this consistency level; NaN when it failed",
    kind: MetricKind::Gauge,
    labels: &["consistency", "operation"],
};

pub static DESCRIPTORS: &[&MetricDesc] = &[&REQUESTS, &SUCCESS, &LATENCY];

/// What the canary writes to, at which levels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CanaryOptions {
    /// Keyspace of the canary table. Case-sensitive as stored (unquoted CQL names are stored lowercase).
    pub keyspace: String,
    /// The canary table, shaped `(id int PRIMARY KEY, ts timestamp)`; dbwatch never creates it.
    pub table: String,
    /// Levels to exercise each poll; by default ONE, QUORUM and ALL.
    pub consistency_levels: Vec<CanaryConsistency>,
    /// Client-side timeout of each canary statement; keep it above the server's request timeouts.
    pub timeout: Duration,
}

impl Default for CanaryOptions {
    fn default() -> Self {
        CanaryOptions {
            keyspace: "dbwatch_canary".into(),
            table: "probe".into(),
            consistency_levels: vec![
                CanaryConsistency::One,
                CanaryConsistency::Quorum,
                CanaryConsistency::All,
            ],
            timeout: Duration::from_secs(12),
        }
    }
}

/// The consistency levels a canary can use (serial levels apply to LWTs only and are not offered).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CanaryConsistency {
    One,
    Two,
    Three,
    Quorum,
    All,
    LocalQuorum,
    EachQuorum,
    LocalOne,
}

impl CanaryConsistency {
    pub const NAMES: [&'static str; 8] = [
        "one",
        "two",
        "three",
        "quorum",
        "all",
        "local_quorum",
        "each_quorum",
        "local_one",
    ];

    /// Parses the label form, case-insensitively (`quorum`, `LOCAL_QUORUM`).
    pub fn parse(name: &str) -> Option<Self> {
        Some(match name.to_ascii_lowercase().as_str() {
            "one" => CanaryConsistency::One,
            "two" => CanaryConsistency::Two,
            "three" => CanaryConsistency::Three,
            "quorum" => CanaryConsistency::Quorum,
            "all" => CanaryConsistency::All,
            "local_quorum" => CanaryConsistency::LocalQuorum,
            "each_quorum" => CanaryConsistency::EachQuorum,
            "local_one" => CanaryConsistency::LocalOne,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            CanaryConsistency::One => "one",
            CanaryConsistency::Two => "two",
            CanaryConsistency::Three => "three",
            CanaryConsistency::Quorum => "quorum",
            CanaryConsistency::All => "all",
            CanaryConsistency::LocalQuorum => "local_quorum",
            CanaryConsistency::EachQuorum => "each_quorum",
            CanaryConsistency::LocalOne => "local_one",
        }
    }

    fn driver(self) -> Consistency {
        match self {
            CanaryConsistency::One => Consistency::One,
            CanaryConsistency::Two => Consistency::Two,
            CanaryConsistency::Three => Consistency::Three,
            CanaryConsistency::Quorum => Consistency::Quorum,
            CanaryConsistency::All => Consistency::All,
            CanaryConsistency::LocalQuorum => Consistency::LocalQuorum,
            CanaryConsistency::EachQuorum => Consistency::EachQuorum,
            CanaryConsistency::LocalOne => Consistency::LocalOne,
        }
    }

    /// The native protocol's code of the level, used as the level's row id.
    fn code(self) -> i32 {
        match self {
            CanaryConsistency::One => 1,
            CanaryConsistency::Two => 2,
            CanaryConsistency::Three => 3,
            CanaryConsistency::Quorum => 4,
            CanaryConsistency::All => 5,
            CanaryConsistency::LocalQuorum => 6,
            CanaryConsistency::EachQuorum => 7,
            CanaryConsistency::LocalOne => 10,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Operation {
    Write,
    Read,
}

impl Operation {
    const ALL: [Operation; 2] = [Operation::Write, Operation::Read];

    fn as_str(self) -> &'static str {
        match self {
            Operation::Write => "write",
            Operation::Read => "read",
        }
    }

    fn view(self) -> &'static str {
        match self {
            Operation::Write => WRITE_VIEW,
            Operation::Read => READ_VIEW,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Outcome {
    Success,
    Unavailable,
    Timeout,
    Other,
}

impl Outcome {
    const ALL: [Outcome; 4] = [
        Outcome::Success,
        Outcome::Unavailable,
        Outcome::Timeout,
        Outcome::Other,
    ];

    fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Unavailable => "unavailable",
            Outcome::Timeout => "timeout",
            Outcome::Other => "other",
        }
    }

    /// The outcome of one canary statement, from its error if it failed.
    pub fn of(error: Option<&ExecutionError>) -> Self {
        let Some(error) = error else {
            return Outcome::Success;
        };
        match error {
            ExecutionError::RequestTimeout(_) => Outcome::Timeout,
            ExecutionError::LastAttemptError(RequestAttemptError::DbError(db_error, _)) => {
                match db_error {
                    DbError::Unavailable { .. } => Outcome::Unavailable,
                    DbError::ReadTimeout { .. } | DbError::WriteTimeout { .. } => Outcome::Timeout,
                    _ => Outcome::Other,
                }
            }
            _ => Outcome::Other,
        }
    }
}

/// How one statement went.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Attempt {
    pub level: CanaryConsistency,
    pub operation: Operation,
    pub outcome: Outcome,
    pub elapsed: Duration,
    /// The bounded class of a failure that is not a measurement (the canary could not run as meant).
    pub error: Option<ErrorKind>,
}

/// The canary's statements and its counters since dbwatch started.
#[derive(Debug)]
pub struct Canary {
    options: CanaryOptions,
    counters: BTreeMap<(CanaryConsistency, Operation, Outcome), f64>,
}

impl Canary {
    pub fn new(options: CanaryOptions) -> Self {
        let mut counters = BTreeMap::new();
        for level in &options.consistency_levels {
            for operation in Operation::ALL {
                for outcome in Outcome::ALL {
                    counters.insert((*level, operation, outcome), 0.0);
                }
            }
        }
        Canary { options, counters }
    }

    pub fn options(&self) -> &CanaryOptions {
        &self.options
    }

    fn statement(&self, level: CanaryConsistency, operation: Operation) -> Statement {
        let template = match operation {
            Operation::Write => WRITE_QUERY,
            Operation::Read => READ_QUERY,
        };
        let cql = template
            .replace("{keyspace}", &quote_identifier(&self.options.keyspace))
            .replace("{table}", &quote_identifier(&self.options.table))
            .replace("{id}", &level.code().to_string());
        let mut statement = Statement::new(cql);
        statement.set_consistency(level.driver());
        statement.set_request_timeout(Some(self.options.timeout));
        statement.set_retry_policy(Some(Arc::new(FallthroughRetryPolicy)));
        statement.set_is_idempotent(true);
        statement
    }

    /// Runs every level once, levels concurrently. Dropping the future aborts the statements in flight.
    pub async fn run(&self, session: &Arc<Session>) -> Vec<Attempt> {
        let mut tasks = JoinSet::new();
        for level in self.options.consistency_levels.iter().copied() {
            let session = Arc::clone(session);
            let write = self.statement(level, Operation::Write);
            let read = self.statement(level, Operation::Read);
            tasks.spawn(async move {
                let mut attempts = Vec::with_capacity(2);
                for (operation, statement) in [(Operation::Write, write), (Operation::Read, read)] {
                    let started = Instant::now();
                    let failure = session.query_unpaged(statement, ()).await.err();
                    let elapsed = started.elapsed();
                    let outcome = Outcome::of(failure.as_ref());
                    if let Some(error) = &failure {
                        tracing::debug!(consistency = level.as_str(), operation = operation.as_str(), error = %error, "canary failed");
                    }
                    let error = match (&failure, outcome) {
                        (Some(error), Outcome::Other) => Some(classify(error)),
                        _ => None,
                    };
                    attempts.push(Attempt {
                        level,
                        operation,
                        outcome,
                        elapsed,
                        error,
                    });
                }
                attempts
            });
        }
        let mut attempts = Vec::new();
        while let Some(joined) = tasks.join_next().await {
            match joined {
                Ok(level_attempts) => attempts.extend(level_attempts),
                Err(error) => tracing::warn!(error = %error, "canary task ended abnormally"),
            }
        }
        attempts.sort_by_key(|attempt| (attempt.level, attempt.operation));
        attempts
    }

    /// Counts the attempts and emits the canary's series; levels that did not run read as failed.
    pub fn samples(&mut self, attempts: &[Attempt], out: &mut Vec<Sample>) {
        for attempt in attempts {
            *self
                .counters
                .entry((attempt.level, attempt.operation, attempt.outcome))
                .or_default() += 1.0;
        }
        for ((level, operation, outcome), count) in &self.counters {
            out.push(REQUESTS.sample_with(
                [level.as_str(), operation.as_str(), outcome.as_str()],
                *count,
            ));
        }
        for level in &self.options.consistency_levels {
            let level_attempts: Vec<&Attempt> = attempts
                .iter()
                .filter(|attempt| attempt.level == *level)
                .collect();
            let succeeded = level_attempts.len() == Operation::ALL.len()
                && level_attempts
                    .iter()
                    .all(|attempt| attempt.outcome == Outcome::Success);
            out.push(SUCCESS.sample_with([level.as_str()], bool_value(succeeded)));
            for operation in Operation::ALL {
                let latency = level_attempts
                    .iter()
                    .find(|attempt| {
                        attempt.operation == operation && attempt.outcome == Outcome::Success
                    })
                    .map_or(f64::NAN, |attempt| attempt.elapsed.as_secs_f64());
                out.push(LATENCY.sample_with([level.as_str(), operation.as_str()], latency));
            }
        }
    }
}

/// Each canary statement as a view outcome: a measured failure (unavailable, timeout) is the canary working,
/// so only `other` failures carry an error class.
pub fn view_outcomes(attempts: &[Attempt], views: &mut Vec<ViewOutcome>) {
    for attempt in attempts {
        views.push(ViewOutcome {
            view: attempt.operation.view(),
            duration: attempt.elapsed,
            error: attempt.error,
        });
    }
}

#[cfg(test)]
mod tests {
    use scylla::errors::WriteType;

    use super::*;

    fn db_error(error: DbError) -> ExecutionError {
        ExecutionError::LastAttemptError(RequestAttemptError::DbError(error, "message".into()))
    }

    #[test]
    fn errors_map_to_the_four_outcomes() {
        assert_eq!(Outcome::of(None), Outcome::Success);
        let unavailable = db_error(DbError::Unavailable {
            consistency: Consistency::All,
            required: 2,
            alive: 1,
        });
        assert_eq!(Outcome::of(Some(&unavailable)), Outcome::Unavailable);
        let write_timeout = db_error(DbError::WriteTimeout {
            consistency: Consistency::Quorum,
            received: 1,
            required: 2,
            write_type: WriteType::Simple,
        });
        assert_eq!(Outcome::of(Some(&write_timeout)), Outcome::Timeout);
        let client_timeout = ExecutionError::RequestTimeout(Duration::from_secs(12));
        assert_eq!(Outcome::of(Some(&client_timeout)), Outcome::Timeout);
        assert_eq!(
            Outcome::of(Some(&db_error(DbError::Overloaded))),
            Outcome::Other
        );
        assert_eq!(
            Outcome::of(Some(&ExecutionError::EmptyPlan)),
            Outcome::Other
        );
    }

    #[test]
    fn statements_quote_names_and_use_the_level_code_as_id() {
        let canary = Canary::new(CanaryOptions::default());
        let write = canary.statement(CanaryConsistency::Quorum, Operation::Write);
        assert!(write
            .contents
            .contains("INSERT INTO \"dbwatch_canary\".\"probe\" (id, ts) VALUES (4,"));
        assert_eq!(write.get_consistency(), Some(Consistency::Quorum));
        let read = canary.statement(CanaryConsistency::All, Operation::Read);
        assert!(read.contents.contains("WHERE id = 5"));
    }

    #[test]
    fn counters_exist_from_the_start_and_success_needs_both_operations() {
        let mut canary = Canary::new(CanaryOptions::default());
        let attempt = |level, operation, outcome| Attempt {
            level,
            operation,
            outcome,
            elapsed: Duration::from_millis(3),
            error: None,
        };
        let attempts = [
            attempt(CanaryConsistency::One, Operation::Write, Outcome::Success),
            attempt(CanaryConsistency::One, Operation::Read, Outcome::Success),
            attempt(
                CanaryConsistency::Quorum,
                Operation::Write,
                Outcome::Unavailable,
            ),
            attempt(
                CanaryConsistency::Quorum,
                Operation::Read,
                Outcome::Unavailable,
            ),
            attempt(
                CanaryConsistency::All,
                Operation::Write,
                Outcome::Unavailable,
            ),
        ];
        let mut out = Vec::new();
        canary.samples(&attempts, &mut out);
        let requests = out
            .iter()
            .filter(|sample| sample.name() == REQUESTS.name)
            .count();
        assert_eq!(requests, 3 * 2 * 4);
        let success = |level: &str| {
            out.iter()
                .find(|sample| {
                    sample.name() == SUCCESS.name && sample.label("consistency") == Some(level)
                })
                .map(|sample| sample.value)
        };
        assert_eq!(success("one"), Some(1.0));
        assert_eq!(success("quorum"), Some(0.0));
        assert_eq!(
            success("all"),
            Some(0.0),
            "a level with a missing read is not a success"
        );
        let unavailable_quorum_writes = out
            .iter()
            .find(|sample| {
                sample.name() == REQUESTS.name
                    && sample.label("consistency") == Some("quorum")
                    && sample.label("operation") == Some("write")
                    && sample.label("outcome") == Some("unavailable")
            })
            .map(|sample| sample.value);
        assert_eq!(unavailable_quorum_writes, Some(1.0));
    }
}
