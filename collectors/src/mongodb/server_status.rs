//! `serverStatus`: operation and document counters, operation latencies, connections.
//!
//! Asked with the sections this collector does not read switched off, so the answer stays a few kilobytes
//! (wiredTiger and locks alone are tens). Rates are per second of the server's own uptime between two answers,
//! so a slow poll does not distort them; a restart (uptime going backwards) or a counter going backwards gives
//! NaN for that interval, never a negative or an epoch-sized rate.
//!
//! FerretDB 1.x answers `serverStatus` with `uptimeMillis` and `metrics.commands.<name>.{total,failed}` only:
//! no opcounters, opLatencies, metrics.document or connections. What is absent is reported through the
//! capability gauge, and the fleet signals built from it are NaN (unknown).

use std::time::Duration;

use mongodb::bson::{doc, Bson, Document};

use super::connection::{Conn, MongoError};
use super::fields;
use crate::fleet;
use crate::metric::{MetricDesc, MetricKind, Sample};

pub const VIEW: &str = "server_status";

/// Top-level sections switched off. Servers skip names they do not have, so one list serves every version.
const EXCLUDED_SECTIONS: &[&str] = &[
    "asserts",
    "batchedDeletes",
    "bucketCatalog",
    "catalogStats",
    "changeStreamPreImages",
    "collectionCatalog",
    "defaultRWConcern",
    "electionMetrics",
    "encryptionAtRest",
    "extra_info",
    "flowControl",
    "globalLock",
    "health",
    "indexBuilds",
    "indexBulkBuilder",
    "indexStats",
    "internalTransactions",
    "locks",
    "logicalSessionRecordCache",
    "mem",
    "network",
    "opReadConcernCounters",
    "opWorkingTime",
    "opWriteConcernCounters",
    "oplogTruncation",
    "planCache",
    "queryAnalyzers",
    "querySettings",
    "queues",
    "readConcernCounters",
    "readPreferenceCounters",
    "repl",
    "scramCache",
    "security",
    "sharding",
    "shardingStatistics",
    "shardedIndexConsistency",
    "spillWiredTiger",
    "storageEngine",
    "tcmalloc",
    "tenantMigrations",
    "trafficRecording",
    "transactions",
    "transportSecurity",
    "twoPhaseCommitCoordinator",
    "watchdog",
    "wiredTiger",
    "writeBacksQueued",
];

/// Sub-trees of `metrics` switched off. Embedded exclusion exists since 6.0 and takes booleans, as in the docs'
/// `metrics: { query: { multiPlanner: { histograms: false } } }`; older servers send these sub-trees anyway.
const EXCLUDED_METRICS: &[&str] = &[
    "aggStageCounters",
    "operatorCounters",
    "query",
    "queryExecutor",
    "repl",
    "ttl",
    "cursor",
    "network",
    "abortExpiredTransactions",
];

/// opcounters / opcountersRepl fields, in the server's order.
pub const OPERATIONS: [&str; 6] = ["insert", "query", "update", "delete", "getmore", "command"];
/// metrics.document fields.
pub const DOCUMENT_OPERATIONS: [&str; 4] = ["deleted", "inserted", "returned", "updated"];
/// opLatencies sections; latency in microseconds.
pub const LATENCY_KINDS: [&str; 4] = ["reads", "writes", "commands", "transactions"];
/// The latency sections that make up the fleet's query latency: everything a client waited for.
const FLEET_LATENCY_KINDS: [&str; 3] = ["reads", "writes", "commands"];
/// metrics.commands entries exported: the data path only, so the label stays bounded whatever the server adds.
pub const COMMANDS: [&str; 9] = [
    "aggregate",
    "count",
    "delete",
    "distinct",
    "find",
    "findAndModify",
    "getMore",
    "insert",
    "update",
];

pub static DOCUMENTS: MetricDesc = MetricDesc {
    name: "mongodb_documents_total",
    help: "Documents deleted, inserted, returned or updated by the server (serverStatus metrics.document)",
    kind: MetricKind::Counter,
    labels: &["operation"],
};
pub static DOCUMENTS_RATE: MetricDesc = MetricDesc {
    name: "mongodb_documents_per_second",
    help: "Documents per second over the last poll interval, by operation; NaN on the first poll and after a reset",
    kind: MetricKind::Gauge,
    labels: &["operation"],
};
pub static OPERATIONS_TOTAL: MetricDesc = MetricDesc {
    name: "mongodb_operations_total",
    help: "Operations received by type since the server started (serverStatus opcounters)",
    kind: MetricKind::Counter,
    labels: &["operation"],
};
pub static OPERATIONS_RATE: MetricDesc = MetricDesc {
    name: "mongodb_operations_per_second",
    help: "Operations per second over the last poll interval, by type; NaN on the first poll and after a reset",
    kind: MetricKind::Gauge,
    labels: &["operation"],
};
pub static REPLICATED_OPERATIONS: MetricDesc = MetricDesc {
    name: "mongodb_replicated_operations_total",
    help: "Operations applied from replication by type (serverStatus opcountersRepl)",
    kind: MetricKind::Counter,
    labels: &["operation"],
};
pub static COMMANDS_TOTAL: MetricDesc = MetricDesc {
    name: "mongodb_commands_total",
    help: "Data commands executed, failed ones included (serverStatus metrics.commands.<command>.total)",
    kind: MetricKind::Counter,
    labels: &["command"],
};
pub static COMMANDS_FAILED: MetricDesc = MetricDesc {
    name: "mongodb_commands_failed_total",
    help: "Data commands that failed (serverStatus metrics.commands.<command>.failed)",
    kind: MetricKind::Counter,
    labels: &["command"],
};
pub static COMMANDS_RATE: MetricDesc = MetricDesc {
    name: "mongodb_commands_per_second",
    help: "Data commands per second over the last poll interval; NaN on the first poll and after a reset",
    kind: MetricKind::Gauge,
    labels: &["command"],
};
pub static LATENCY_SECONDS: MetricDesc = MetricDesc {
    name: "mongodb_operation_latency_seconds_total",
    help: "Total execution time of the operations of a kind since the server started (serverStatus opLatencies)",
    kind: MetricKind::Counter,
    labels: &["kind"],
};
pub static LATENCY_OPERATIONS: MetricDesc = MetricDesc {
    name: "mongodb_operation_latency_operations_total",
    help: "Operations of a kind counted in mongodb_operation_latency_seconds_total",
    kind: MetricKind::Counter,
    labels: &["kind"],
};
pub static LATENCY_AVG: MetricDesc = MetricDesc {
    name: "mongodb_operation_latency_avg_seconds",
    help: "Mean execution time of the operations of a kind completed in the last poll interval; NaN when none",
    kind: MetricKind::Gauge,
    labels: &["kind"],
};
pub static CONNECTIONS_CREATED: MetricDesc = MetricDesc {
    name: "mongodb_connections_created_total",
    help: "Incoming connections the server accepted since it started",
    kind: MetricKind::Counter,
    labels: &[],
};
pub static UPTIME: MetricDesc = MetricDesc {
    name: "mongodb_uptime_seconds",
    help: "Time since the server process started",
    kind: MetricKind::Gauge,
    labels: &[],
};

pub static DESCRIPTORS: &[&MetricDesc] = &[
    &DOCUMENTS,
    &DOCUMENTS_RATE,
    &OPERATIONS_TOTAL,
    &OPERATIONS_RATE,
    &REPLICATED_OPERATIONS,
    &COMMANDS_TOTAL,
    &COMMANDS_FAILED,
    &COMMANDS_RATE,
    &LATENCY_SECONDS,
    &LATENCY_OPERATIONS,
    &LATENCY_AVG,
    &CONNECTIONS_CREATED,
    &UPTIME,
];

/// The parts of a serverStatus answer this collector reads. A section the server did not send is `None`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ServerStatus {
    pub uptime_millis: Option<f64>,
    pub opcounters: Option<Vec<(&'static str, f64)>>,
    pub opcounters_repl: Option<Vec<(&'static str, f64)>>,
    pub documents: Option<Vec<(&'static str, f64)>>,
    /// (kind, total latency in microseconds, operations).
    pub latencies: Option<Vec<(&'static str, f64, f64)>>,
    pub connections: Option<Connections>,
    /// (command, total, failed); `None` when the server has no metrics.commands at all.
    pub commands: Option<Vec<(&'static str, f64, f64)>>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Connections {
    pub current: f64,
    pub available: f64,
    pub total_created: Option<f64>,
}

pub fn command() -> Document {
    let mut command = doc! { "serverStatus": 1 };
    for section in EXCLUDED_SECTIONS {
        command.insert(*section, 0);
    }
    let mut metrics = Document::new();
    for subtree in EXCLUDED_METRICS {
        metrics.insert(*subtree, false);
    }
    command.insert("metrics", metrics);
    command
}

pub async fn fetch(conn: &Conn) -> Result<ServerStatus, MongoError> {
    let answer = conn.command("admin", command()).await?;
    Ok(parse(&answer))
}

/// Picks the known fields out of an answer. Missing sections stay `None`; nothing here fails, because every
/// server flavour omits something and a partial answer is still worth exporting.
pub fn parse(answer: &Document) -> ServerStatus {
    ServerStatus {
        uptime_millis: fields::number_at(answer, "uptimeMillis"),
        opcounters: named_numbers(answer, "opcounters", &OPERATIONS),
        opcounters_repl: named_numbers(answer, "opcountersRepl", &OPERATIONS),
        documents: named_numbers(answer, "metrics.document", &DOCUMENT_OPERATIONS),
        latencies: fields::document_at(answer, "opLatencies").map(|section| {
            LATENCY_KINDS
                .iter()
                .filter_map(|kind| {
                    let entry = section.get_document(kind).ok()?;
                    Some((
                        *kind,
                        fields::number_at(entry, "latency")?,
                        fields::number_at(entry, "ops")?,
                    ))
                })
                .collect()
        }),
        connections: fields::document_at(answer, "connections").and_then(|section| {
            Some(Connections {
                current: fields::number_at(section, "current")?,
                available: fields::number_at(section, "available")?,
                total_created: fields::number_at(section, "totalCreated"),
            })
        }),
        // A command appears in metrics.commands once it has run since the start (the docs' "Initialization"
        // note), so an absent one has run zero times: reporting 0 keeps its series and its first rate.
        commands: fields::document_at(answer, "metrics.commands").map(|section| {
            COMMANDS
                .iter()
                .map(|command| {
                    let entry = section.get(command).and_then(Bson::as_document);
                    let count = |field| entry.and_then(|entry| fields::number_at(entry, field));
                    (
                        *command,
                        count("total").unwrap_or(0.0),
                        count("failed").unwrap_or(0.0),
                    )
                })
                .collect()
        }),
    }
}

fn named_numbers(
    answer: &Document,
    path: &str,
    names: &[&'static str],
) -> Option<Vec<(&'static str, f64)>> {
    let section = fields::document_at(answer, path)?;
    Some(
        names
            .iter()
            .filter_map(|name| Some((*name, fields::number_at(section, name)?)))
            .collect(),
    )
}

/// The previous answer, kept to turn counters into rates and latency totals into interval means.
#[derive(Debug, Default)]
pub struct ServerStatusState {
    previous: Option<(ServerStatus, tokio::time::Instant)>,
}

impl ServerStatusState {
    /// A new connection may be to a restarted server: rates restart from the next answer.
    pub fn forget(&mut self) {
        self.previous = None;
    }

    pub fn samples(
        &mut self,
        current: ServerStatus,
        now: tokio::time::Instant,
        out: &mut Vec<Sample>,
    ) {
        let previous = self.previous.as_ref().map(|(status, at)| {
            let elapsed = now.saturating_duration_since(*at);
            (status, elapsed)
        });
        derive(previous, &current, out);
        self.previous = Some((current, now));
    }
}

/// Samples from the current answer and, for rates and interval means, the previous one with the local time
/// elapsed between them (used only when the server reports no uptime).
pub fn derive(
    previous: Option<(&ServerStatus, Duration)>,
    current: &ServerStatus,
    out: &mut Vec<Sample>,
) {
    let interval =
        previous.and_then(|(before, elapsed)| interval_seconds(before, current, elapsed));
    let before = previous.map(|(before, _)| before);

    if let Some(uptime) = current.uptime_millis {
        out.push(UPTIME.sample(uptime / 1000.0));
    }
    if let Some(documents) = &current.documents {
        let earlier = before.and_then(|status| status.documents.as_deref());
        counters_with_rates(
            &DOCUMENTS,
            &DOCUMENTS_RATE,
            documents,
            earlier,
            interval,
            out,
        );
    }
    if let Some(operations) = &current.opcounters {
        let earlier = before.and_then(|status| status.opcounters.as_deref());
        counters_with_rates(
            &OPERATIONS_TOTAL,
            &OPERATIONS_RATE,
            operations,
            earlier,
            interval,
            out,
        );
    }
    if let Some(replicated) = &current.opcounters_repl {
        for (operation, value) in replicated {
            out.push(REPLICATED_OPERATIONS.sample_with([operation], *value));
        }
    }
    if let Some(commands) = &current.commands {
        let earlier = before.and_then(|status| status.commands.as_deref());
        for (command, total, failed) in commands {
            out.push(COMMANDS_TOTAL.sample_with([command], *total));
            out.push(COMMANDS_FAILED.sample_with([command], *failed));
            let previous_total = earlier.and_then(|earlier| {
                earlier
                    .iter()
                    .find(|(name, _, _)| name == command)
                    .map(|(_, total, _)| *total)
            });
            out.push(COMMANDS_RATE.sample_with([command], rate(previous_total, *total, interval)));
        }
    }
    if let Some(latencies) = &current.latencies {
        let earlier = before.and_then(|status| status.latencies.as_deref());
        for (kind, micros, ops) in latencies {
            let seconds = micros / 1_000_000.0;
            out.push(LATENCY_SECONDS.sample_with([kind], seconds));
            out.push(LATENCY_OPERATIONS.sample_with([kind], *ops));
            let previous_pair = earlier.and_then(|earlier| {
                earlier
                    .iter()
                    .find(|(name, _, _)| name == kind)
                    .map(|(_, micros, ops)| (*ops, micros / 1_000_000.0))
            });
            out.push(LATENCY_AVG.sample_with(
                [kind],
                fleet::average_latency(previous_pair, (*ops, seconds)),
            ));
        }
    }
    out.push(fleet::DB_QUERY_LATENCY_AVG_SECONDS.sample(fleet_latency(
        before.and_then(|status| status.latencies.as_deref()),
        current.latencies.as_deref(),
    )));

    match current.connections {
        Some(connections) => {
            // `available` is what is left of the limit (net.maxIncomingConnections or the ulimit), so the
            // limit itself is the sum.
            out.extend(fleet::connection_samples(
                connections.current,
                connections.current + connections.available,
            ));
            if let Some(created) = connections.total_created {
                out.push(CONNECTIONS_CREATED.sample(created));
            }
        }
        None => out.extend(fleet::connection_samples(f64::NAN, f64::NAN)),
    }
}

/// Seconds between two answers by the server's uptime; `None` after a restart (uptime went backwards).
fn interval_seconds(
    before: &ServerStatus,
    current: &ServerStatus,
    elapsed: Duration,
) -> Option<f64> {
    match (before.uptime_millis, current.uptime_millis) {
        (Some(before), Some(now)) => Some((now - before) / 1000.0).filter(|seconds| *seconds > 0.0),
        _ => Some(elapsed.as_secs_f64()).filter(|seconds| *seconds > 0.0),
    }
}

fn rate(previous: Option<f64>, current: f64, interval: Option<f64>) -> f64 {
    match (previous, interval) {
        (Some(previous), Some(seconds)) if current >= previous => (current - previous) / seconds,
        _ => f64::NAN,
    }
}

fn counters_with_rates(
    counter: &'static MetricDesc,
    gauge: &'static MetricDesc,
    current: &[(&'static str, f64)],
    previous: Option<&[(&'static str, f64)]>,
    interval: Option<f64>,
    out: &mut Vec<Sample>,
) {
    for (name, value) in current {
        out.push(counter.sample_with([name], *value));
        let before = previous.and_then(|previous| {
            previous
                .iter()
                .find(|(earlier, _)| earlier == name)
                .map(|(_, value)| *value)
        });
        out.push(gauge.sample_with([name], rate(before, *value, interval)));
    }
}

/// Mean latency of reads, writes and commands together over the interval.
fn fleet_latency(
    previous: Option<&[(&'static str, f64, f64)]>,
    current: Option<&[(&'static str, f64, f64)]>,
) -> f64 {
    let Some(current) = current else {
        return f64::NAN;
    };
    let sum = |latencies: &[(&'static str, f64, f64)]| {
        latencies
            .iter()
            .filter(|(kind, _, _)| FLEET_LATENCY_KINDS.contains(kind))
            .fold((0.0, 0.0), |(ops, seconds), (_, micros, count)| {
                (ops + count, seconds + micros / 1_000_000.0)
            })
    };
    fleet::average_latency(previous.map(sum), sum(current))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(uptime: i64, inserted: i64, reads: (i64, i64), current: i32) -> Document {
        doc! {
            "uptimeMillis": uptime,
            "opcounters": { "insert": inserted, "query": 10_i64, "update": 0_i64, "delete": 0_i64,
                            "getmore": 0_i64, "command": 5_i64 },
            "metrics": { "document": { "deleted": 0_i64, "inserted": inserted, "returned": 4_i64,
                                       "updated": 0_i64 },
                         "commands": { "insert": { "failed": 0_i64, "total": inserted },
                                       "dropDatabase": { "failed": 0_i64, "total": 1_i64 } } },
            "opLatencies": {
                "reads": { "latency": reads.0, "ops": reads.1 },
                "writes": { "latency": 0_i64, "ops": 0_i64 },
                "commands": { "latency": 0_i64, "ops": 0_i64 },
            },
            "connections": { "current": current, "available": 100 - current, "totalCreated": 9_i64 },
        }
    }

    fn value(samples: &[Sample], name: &str, label: Option<&str>) -> Option<f64> {
        samples
            .iter()
            .find(|sample| {
                sample.name() == name
                    && label.is_none_or(|label| sample.labels.iter().any(|(_, v)| v == label))
            })
            .map(|sample| sample.value)
    }

    #[test]
    fn the_command_switches_off_heavy_sections_but_keeps_the_read_ones() {
        let command = command();
        assert_eq!(
            command.keys().next().map(String::as_str),
            Some("serverStatus")
        );
        assert_eq!(command.get_i32("wiredTiger"), Ok(0));
        assert_eq!(command.get_i32("repl"), Ok(0));
        assert!(command.get("opcounters").is_none());
        assert!(command.get("opLatencies").is_none());
        assert!(command.get("connections").is_none());
        let metrics = command.get_document("metrics").expect("metrics");
        assert!(metrics.get("document").is_none());
        assert!(metrics.get("commands").is_none());
    }

    #[test]
    fn rates_use_the_server_uptime_and_refuse_resets() {
        let first = parse(&status(10_000, 100, (1_000, 10), 3));
        let second = parse(&status(20_000, 150, (5_000, 12), 4));
        let mut samples = Vec::new();
        derive(None, &first, &mut samples);
        assert!(
            value(&samples, "mongodb_operations_per_second", Some("insert"))
                .is_some_and(f64::is_nan)
        );
        assert!(value(&samples, "db_query_latency_avg_seconds", None).is_some_and(f64::is_nan));

        let mut samples = Vec::new();
        // The local clock says 60 s; the server's uptime says 10 s, and the server is right.
        derive(
            Some((&first, Duration::from_secs(60))),
            &second,
            &mut samples,
        );
        assert_eq!(
            value(&samples, "mongodb_operations_per_second", Some("insert")),
            Some(5.0)
        );
        assert_eq!(
            value(&samples, "mongodb_documents_per_second", Some("inserted")),
            Some(5.0)
        );
        assert_eq!(
            value(&samples, "mongodb_commands_per_second", Some("insert")),
            Some(5.0)
        );
        assert_eq!(
            value(&samples, "mongodb_documents_total", Some("inserted")),
            Some(150.0)
        );
        // 4000 µs over 2 reads.
        assert_eq!(
            value(&samples, "db_query_latency_avg_seconds", None),
            Some(0.002)
        );
        assert_eq!(
            value(
                &samples,
                "mongodb_operation_latency_avg_seconds",
                Some("reads")
            ),
            Some(0.002)
        );
        assert!(value(
            &samples,
            "mongodb_operation_latency_avg_seconds",
            Some("writes")
        )
        .is_some_and(f64::is_nan));
        assert_eq!(value(&samples, "db_connections_active", None), Some(4.0));
        assert_eq!(value(&samples, "db_connections_max", None), Some(100.0));
        assert_eq!(
            value(&samples, "db_connections_utilization_ratio", None),
            Some(0.04)
        );
        // Commands outside the exported set never become a label value.
        assert!(!samples
            .iter()
            .any(|sample| sample.label("command") == Some("dropDatabase")));

        let restarted = parse(&status(1_000, 3, (10, 1), 1));
        let mut samples = Vec::new();
        derive(
            Some((&second, Duration::from_secs(10))),
            &restarted,
            &mut samples,
        );
        assert!(
            value(&samples, "mongodb_operations_per_second", Some("insert"))
                .is_some_and(f64::is_nan)
        );
        assert!(value(&samples, "db_query_latency_avg_seconds", None).is_some_and(f64::is_nan));
    }

    #[test]
    fn a_server_without_the_sections_yields_unknown_fleet_signals() {
        // FerretDB 1.x's answer, abridged.
        let ferret = parse(&doc! {
            "uptimeMillis": 5_000_i64,
            "metrics": { "commands": { "find": { "total": 3_i64, "failed": 0_i64 } } },
            "ferretdbVersion": "v1.24.2",
        });
        assert!(ferret.opcounters.is_none());
        assert!(ferret.latencies.is_none());
        assert!(ferret.connections.is_none());
        assert!(ferret.documents.is_none());
        let mut samples = Vec::new();
        derive(None, &ferret, &mut samples);
        assert_eq!(
            value(&samples, "mongodb_commands_total", Some("find")),
            Some(3.0)
        );
        assert_eq!(
            value(&samples, "mongodb_commands_total", Some("insert")),
            Some(0.0)
        );
        for name in [
            "db_query_latency_avg_seconds",
            "db_connections_active",
            "db_connections_max",
            "db_connections_utilization_ratio",
        ] {
            assert!(
                value(&samples, name, None).is_some_and(f64::is_nan),
                "{name}"
            );
        }
    }
}
