//! `SHOW GLOBAL STATUS`: throughput, slow queries, threads and the InnoDB buffer pool, in one statement.
//!
//! The counters are exported as counters, and their per-second rates over the last poll interval as gauges
//! (the interval is measured between the two answers, so a late poll does not inflate the rate). A counter
//! that went backwards, or an `Uptime` that did, means the server restarted: that interval has no rate (NaN).
//! This statement is also the poll's liveness probe.

use std::collections::HashMap;
use std::time::Duration;

use sqlx::mysql::MySqlConnection;

use crate::metric::{MetricDesc, MetricKind, Sample};

use super::query::{fetch_rows, QueryError};
use super::row::{parse_number, ShapeError, TextRow};

pub const VIEW: &str = "global_status";
const QUERY: &str = include_str!("global_status.sql");

/// The `command` label values and the status variables behind them.
pub const COMMANDS: [(&str, &str); 6] = [
    ("select", "Com_select"),
    ("insert", "Com_insert"),
    ("update", "Com_update"),
    ("delete", "Com_delete"),
    ("commit", "Com_commit"),
    ("rollback", "Com_rollback"),
];

pub static UPTIME: MetricDesc = MetricDesc {
    name: "mysql_uptime_seconds",
    help: "Seconds since the server started",
    kind: MetricKind::Gauge,
    labels: &[],
};
pub static QUESTIONS: MetricDesc = MetricDesc {
    name: "mysql_questions_total",
    help: "Statements sent by clients (Questions), statements inside stored programs excluded",
    kind: MetricKind::Counter,
    labels: &[],
};
pub static QUERIES: MetricDesc = MetricDesc {
    name: "mysql_queries_total",
    help: "Statements executed by the server (Queries), statements inside stored programs included",
    kind: MetricKind::Counter,
    labels: &[],
};
pub static COMMANDS_TOTAL: MetricDesc = MetricDesc {
    name: "mysql_commands_total",
    help: "Statements executed per command (Com_select, Com_insert, ...)",
    kind: MetricKind::Counter,
    labels: &["command"],
};
pub static QUESTIONS_RATE: MetricDesc = MetricDesc {
    name: "mysql_questions_per_second",
    help: "Questions per second over the last poll interval; NaN on the first poll and after a restart",
    kind: MetricKind::Gauge,
    labels: &[],
};
pub static QUERIES_RATE: MetricDesc = MetricDesc {
    name: "mysql_queries_per_second",
    help:
        "Queries per second over the last poll interval; NaN on the first poll and after a restart",
    kind: MetricKind::Gauge,
    labels: &[],
};
pub static COMMANDS_RATE: MetricDesc = MetricDesc {
    name: "mysql_commands_per_second",
    help: "Statements per second per command over the last poll interval; NaN on the first poll and after a restart",
    kind: MetricKind::Gauge,
    labels: &["command"],
};
pub static SLOW_QUERIES: MetricDesc = MetricDesc {
    name: "mysql_slow_queries_total",
    help: "Statements that took longer than long_query_time (Slow_queries), dbwatch's own excluded",
    kind: MetricKind::Counter,
    labels: &[],
};
pub static THREADS_CONNECTED: MetricDesc = MetricDesc {
    name: "mysql_threads_connected",
    help: "Open client connections (Threads_connected)",
    kind: MetricKind::Gauge,
    labels: &[],
};
pub static THREADS_RUNNING: MetricDesc = MetricDesc {
    name: "mysql_threads_running",
    help: "Connections executing a statement right now (Threads_running)",
    kind: MetricKind::Gauge,
    labels: &[],
};
pub static MAX_USED_CONNECTIONS: MetricDesc = MetricDesc {
    name: "mysql_max_used_connections",
    help: "Most connections open at once since the server started (Max_used_connections)",
    kind: MetricKind::Gauge,
    labels: &[],
};
pub static BUFFER_POOL_PAGES: MetricDesc = MetricDesc {
    name: "mysql_innodb_buffer_pool_pages",
    help: "InnoDB buffer pool pages by state; data, free and misc add up to the pool's size",
    kind: MetricKind::Gauge,
    labels: &["state"],
};
pub static BUFFER_POOL_DIRTY_PAGES: MetricDesc = MetricDesc {
    name: "mysql_innodb_buffer_pool_dirty_pages",
    help: "Buffer pool data pages modified in memory and not yet flushed to disk",
    kind: MetricKind::Gauge,
    labels: &[],
};
pub static BUFFER_POOL_SIZE_PAGES: MetricDesc = MetricDesc {
    name: "mysql_innodb_buffer_pool_size_pages",
    help: "Pages in the InnoDB buffer pool (Innodb_buffer_pool_pages_total)",
    kind: MetricKind::Gauge,
    labels: &[],
};
pub static BUFFER_POOL_DATA_BYTES: MetricDesc = MetricDesc {
    name: "mysql_innodb_buffer_pool_data_bytes",
    help: "Bytes of the buffer pool holding data, dirty or clean",
    kind: MetricKind::Gauge,
    labels: &[],
};
pub static BUFFER_POOL_DIRTY_BYTES: MetricDesc = MetricDesc {
    name: "mysql_innodb_buffer_pool_dirty_bytes",
    help: "Bytes of the buffer pool modified in memory and not yet flushed",
    kind: MetricKind::Gauge,
    labels: &[],
};
pub static BUFFER_POOL_READ_REQUESTS: MetricDesc = MetricDesc {
    name: "mysql_innodb_buffer_pool_read_requests_total",
    help: "Logical page reads served by the buffer pool or the disk (Innodb_buffer_pool_read_requests)",
    kind: MetricKind::Counter,
    labels: &[],
};
pub static BUFFER_POOL_DISK_READS: MetricDesc = MetricDesc {
    name: "mysql_innodb_buffer_pool_disk_reads_total",
    help:
        "Page reads the buffer pool could not serve and read from disk (Innodb_buffer_pool_reads)",
    kind: MetricKind::Counter,
    labels: &[],
};
pub static BUFFER_POOL_HIT_RATIO: MetricDesc = MetricDesc {
    name: "mysql_innodb_buffer_pool_hit_ratio",
    help: "Share of page reads served from memory over the last poll interval; NaN when there were none",
    kind: MetricKind::Gauge,
    labels: &[],
};
pub static BUFFER_POOL_CUMULATIVE_HIT_RATIO: MetricDesc = MetricDesc {
    name: "mysql_innodb_buffer_pool_cumulative_hit_ratio",
    help: "Share of page reads served from memory since the server started; NaN before any read",
    kind: MetricKind::Gauge,
    labels: &[],
};
pub static DIGEST_LOST: MetricDesc = MetricDesc {
    name: "mysql_perf_schema_digest_lost_total",
    help: "Statements not digested because performance_schema's digest table was full",
    kind: MetricKind::Counter,
    labels: &[],
};

pub static ROW_LOCK_WAITS: MetricDesc = MetricDesc {
    name: "mysql_innodb_row_lock_waits_total",
    help: "Times an InnoDB operation waited for a row lock (Innodb_row_lock_waits)",
    kind: MetricKind::Counter,
    labels: &[],
};
pub static ROW_LOCK_WAIT_SECONDS: MetricDesc = MetricDesc {
    name: "mysql_innodb_row_lock_wait_seconds_total",
    help:
        "Time spent waiting for InnoDB row locks (Innodb_row_lock_time, milliseconds in the server)",
    kind: MetricKind::Counter,
    labels: &[],
};
pub static ABORTED_CONNECTS: MetricDesc = MetricDesc {
    name: "mysql_aborted_connects_total",
    help: "Failed connection attempts: bad credentials, timeouts, refused handshakes (Aborted_connects)",
    kind: MetricKind::Counter,
    labels: &[],
};
pub static TABLE_OPEN_CACHE_MISSES: MetricDesc = MetricDesc {
    name: "mysql_table_open_cache_misses_total",
    help: "Table opens the table open cache could not serve (Table_open_cache_misses)",
    kind: MetricKind::Counter,
    labels: &[],
};

pub static DESCRIPTORS: &[&MetricDesc] = &[
    &UPTIME,
    &QUESTIONS,
    &QUERIES,
    &COMMANDS_TOTAL,
    &QUESTIONS_RATE,
    &QUERIES_RATE,
    &COMMANDS_RATE,
    &SLOW_QUERIES,
    &THREADS_CONNECTED,
    &THREADS_RUNNING,
    &MAX_USED_CONNECTIONS,
    &BUFFER_POOL_PAGES,
    &BUFFER_POOL_DIRTY_PAGES,
    &BUFFER_POOL_SIZE_PAGES,
    &BUFFER_POOL_DATA_BYTES,
    &BUFFER_POOL_DIRTY_BYTES,
    &BUFFER_POOL_READ_REQUESTS,
    &BUFFER_POOL_DISK_READS,
    &BUFFER_POOL_HIT_RATIO,
    &BUFFER_POOL_CUMULATIVE_HIT_RATIO,
    &DIGEST_LOST,
    &ROW_LOCK_WAITS,
    &ROW_LOCK_WAIT_SECONDS,
    &ABORTED_CONNECTS,
    &TABLE_OPEN_CACHE_MISSES,
];

#[derive(Debug, Clone, PartialEq)]
pub struct GlobalStatus {
    pub uptime_seconds: f64,
    pub questions: f64,
    pub queries: f64,
    /// In the order of [`COMMANDS`].
    pub commands: [f64; COMMANDS.len()],
    pub slow_queries: f64,
    pub threads_connected: f64,
    pub threads_running: f64,
    pub max_used_connections: f64,
    /// `None` when the server runs without InnoDB.
    pub buffer_pool: Option<BufferPool>,
    /// `None` when the server was built without performance_schema.
    pub digest_lost: Option<f64>,
    /// Counters every supported server has; `None` (not exported) where a build lacks one.
    pub row_lock_waits: Option<f64>,
    pub row_lock_time_ms: Option<f64>,
    pub aborted_connects: Option<f64>,
    pub table_open_cache_misses: Option<f64>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BufferPool {
    pub pages_data: f64,
    pub pages_free: f64,
    pub pages_misc: f64,
    pub pages_dirty: f64,
    pub pages_total: f64,
    pub bytes_data: Option<f64>,
    pub bytes_dirty: Option<f64>,
    pub read_requests: f64,
    pub disk_reads: f64,
}

pub async fn fetch(
    connection: &mut MySqlConnection,
    timeout: Duration,
) -> Result<GlobalStatus, QueryError> {
    let rows = fetch_rows(connection, QUERY, timeout).await?;
    Ok(GlobalStatus::from_rows(&rows)?)
}

/// `Variable_name`/`Value` rows as a map keyed by the lower-cased name.
fn name_value_map(rows: &[TextRow]) -> Result<HashMap<String, String>, ShapeError> {
    let mut map = HashMap::with_capacity(rows.len());
    for row in rows {
        let name = row.column(&["Variable_name"])?.unwrap_or_default();
        let value = row.column(&["Value"])?.unwrap_or_default();
        map.insert(name.to_ascii_lowercase(), value.to_owned());
    }
    Ok(map)
}

struct Values(HashMap<String, String>);

impl Values {
    fn optional(&self, name: &str) -> Result<Option<f64>, ShapeError> {
        match self.0.get(&name.to_ascii_lowercase()) {
            None => Ok(None),
            Some(text) => parse_number(name, text).map(Some),
        }
    }

    fn required(&self, name: &str) -> Result<f64, ShapeError> {
        self.optional(name)?
            .ok_or_else(|| ShapeError::MissingColumn(name.to_owned()))
    }
}

impl GlobalStatus {
    pub fn from_rows(rows: &[TextRow]) -> Result<Self, ShapeError> {
        let values = Values(name_value_map(rows)?);
        let mut commands = [0.0; COMMANDS.len()];
        for (slot, (_, variable)) in commands.iter_mut().zip(COMMANDS) {
            *slot = values.required(variable)?;
        }
        let buffer_pool = match values.optional("Innodb_buffer_pool_pages_total")? {
            None => None,
            Some(pages_total) => Some(BufferPool {
                pages_data: values.required("Innodb_buffer_pool_pages_data")?,
                pages_free: values.required("Innodb_buffer_pool_pages_free")?,
                pages_misc: values.required("Innodb_buffer_pool_pages_misc")?,
                pages_dirty: values.required("Innodb_buffer_pool_pages_dirty")?,
                pages_total,
                bytes_data: values.optional("Innodb_buffer_pool_bytes_data")?,
                bytes_dirty: values.optional("Innodb_buffer_pool_bytes_dirty")?,
                read_requests: values.required("Innodb_buffer_pool_read_requests")?,
                disk_reads: values.required("Innodb_buffer_pool_reads")?,
            }),
        };
        Ok(GlobalStatus {
            uptime_seconds: values.required("Uptime")?,
            questions: values.required("Questions")?,
            queries: values.required("Queries")?,
            commands,
            slow_queries: values.required("Slow_queries")?,
            threads_connected: values.required("Threads_connected")?,
            threads_running: values.required("Threads_running")?,
            max_used_connections: values.required("Max_used_connections")?,
            buffer_pool,
            digest_lost: values.optional("Performance_schema_digest_lost")?,
            row_lock_waits: values.optional("Innodb_row_lock_waits")?,
            row_lock_time_ms: values.optional("Innodb_row_lock_time")?,
            aborted_connects: values.optional("Aborted_connects")?,
            table_open_cache_misses: values.optional("Table_open_cache_misses")?,
        })
    }

    /// Whether `self` can be the start of an interval ending at `later`: same server run, no counter reset.
    fn precedes(&self, later: &GlobalStatus) -> bool {
        later.uptime_seconds >= self.uptime_seconds
            && later.questions >= self.questions
            && later.queries >= self.queries
    }
}

/// Share of reads served from memory: 1 - disk reads / read requests; NaN without requests.
pub fn hit_ratio(read_requests: f64, disk_reads: f64) -> f64 {
    if read_requests <= 0.0 || disk_reads < 0.0 {
        return f64::NAN;
    }
    (1.0 - disk_reads / read_requests).clamp(0.0, 1.0)
}

/// Change per second; NaN without a usable interval or when the counter went backwards.
fn per_second(previous: f64, current: f64, elapsed_seconds: f64) -> f64 {
    if elapsed_seconds <= 0.0 || current < previous {
        return f64::NAN;
    }
    (current - previous) / elapsed_seconds
}

/// The previous answer, for interval rates and ratios.
#[derive(Debug, Default)]
pub struct StatusHistory {
    previous: Option<(tokio::time::Instant, GlobalStatus)>,
}

impl StatusHistory {
    /// Samples of this answer, received at `at`, and remembers it as the start of the next interval.
    pub fn samples(
        &mut self,
        current: GlobalStatus,
        at: tokio::time::Instant,
        out: &mut Vec<Sample>,
    ) {
        let previous = self
            .previous
            .as_ref()
            .filter(|(_, previous)| previous.precedes(&current))
            .map(|(then, previous)| (previous, at.duration_since(*then).as_secs_f64()));
        samples(previous, &current, out);
        self.previous = Some((at, current));
    }
}

/// The samples of `current`, with rates over the interval since `previous` (status, elapsed seconds).
pub fn samples(
    previous: Option<(&GlobalStatus, f64)>,
    current: &GlobalStatus,
    out: &mut Vec<Sample>,
) {
    let rate = |pick: &dyn Fn(&GlobalStatus) -> f64| match previous {
        Some((previous, elapsed)) => per_second(pick(previous), pick(current), elapsed),
        None => f64::NAN,
    };
    out.push(UPTIME.sample(current.uptime_seconds));
    out.push(QUESTIONS.sample(current.questions));
    out.push(QUERIES.sample(current.queries));
    out.push(QUESTIONS_RATE.sample(rate(&|status| status.questions)));
    out.push(QUERIES_RATE.sample(rate(&|status| status.queries)));
    for (index, (command, _)) in COMMANDS.iter().enumerate() {
        out.push(COMMANDS_TOTAL.sample_with([command], current.commands[index]));
        out.push(COMMANDS_RATE.sample_with([command], rate(&|status| status.commands[index])));
    }
    out.push(SLOW_QUERIES.sample(current.slow_queries));
    out.push(THREADS_CONNECTED.sample(current.threads_connected));
    out.push(THREADS_RUNNING.sample(current.threads_running));
    out.push(MAX_USED_CONNECTIONS.sample(current.max_used_connections));
    if let Some(lost) = current.digest_lost {
        out.push(DIGEST_LOST.sample(lost));
    }
    for (desc, value) in [
        (&ROW_LOCK_WAITS, current.row_lock_waits),
        (
            &ROW_LOCK_WAIT_SECONDS,
            current.row_lock_time_ms.map(|ms| ms / 1000.0),
        ),
        (&ABORTED_CONNECTS, current.aborted_connects),
        (&TABLE_OPEN_CACHE_MISSES, current.table_open_cache_misses),
    ] {
        if let Some(value) = value {
            out.push(desc.sample(value));
        }
    }
    let Some(pool) = current.buffer_pool else {
        return;
    };
    out.push(BUFFER_POOL_PAGES.sample_with(["data"], pool.pages_data));
    out.push(BUFFER_POOL_PAGES.sample_with(["free"], pool.pages_free));
    out.push(BUFFER_POOL_PAGES.sample_with(["misc"], pool.pages_misc));
    out.push(BUFFER_POOL_DIRTY_PAGES.sample(pool.pages_dirty));
    out.push(BUFFER_POOL_SIZE_PAGES.sample(pool.pages_total));
    if let Some(bytes) = pool.bytes_data {
        out.push(BUFFER_POOL_DATA_BYTES.sample(bytes));
    }
    if let Some(bytes) = pool.bytes_dirty {
        out.push(BUFFER_POOL_DIRTY_BYTES.sample(bytes));
    }
    out.push(BUFFER_POOL_READ_REQUESTS.sample(pool.read_requests));
    out.push(BUFFER_POOL_DISK_READS.sample(pool.disk_reads));
    let interval_ratio = previous
        .and_then(|(previous, _)| previous.buffer_pool)
        .filter(|before| {
            pool.read_requests >= before.read_requests && pool.disk_reads >= before.disk_reads
        })
        .map_or(f64::NAN, |before| {
            hit_ratio(
                pool.read_requests - before.read_requests,
                pool.disk_reads - before.disk_reads,
            )
        });
    out.push(BUFFER_POOL_HIT_RATIO.sample(interval_ratio));
    out.push(
        BUFFER_POOL_CUMULATIVE_HIT_RATIO.sample(hit_ratio(pool.read_requests, pool.disk_reads)),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(name: &str, value: &str) -> TextRow {
        TextRow::new(vec![
            ("Variable_name".into(), Some(name.into())),
            ("Value".into(), Some(value.into())),
        ])
    }

    fn status_rows(questions: u64, requests: u64, reads: u64, uptime: u64) -> Vec<TextRow> {
        let mut rows = vec![
            row("Uptime", &uptime.to_string()),
            row("Questions", &questions.to_string()),
            row("Queries", &(questions + 5).to_string()),
            row("Slow_queries", "2"),
            row("Threads_connected", "7"),
            row("Threads_running", "2"),
            row("Max_used_connections", "9"),
            row("Innodb_buffer_pool_pages_data", "3000"),
            row("Innodb_buffer_pool_pages_free", "1000"),
            row("Innodb_buffer_pool_pages_misc", "96"),
            row("Innodb_buffer_pool_pages_dirty", "12"),
            row("Innodb_buffer_pool_pages_total", "4096"),
            row("Innodb_buffer_pool_bytes_data", "49152000"),
            row("Innodb_buffer_pool_bytes_dirty", "196608"),
            row("Innodb_buffer_pool_read_requests", &requests.to_string()),
            row("Innodb_buffer_pool_reads", &reads.to_string()),
        ];
        for (_, variable) in COMMANDS {
            rows.push(row(variable, &questions.to_string()));
        }
        rows
    }

    fn value(samples: &[Sample], name: &str, label: Option<(&str, &str)>) -> f64 {
        samples
            .iter()
            .find(|sample| {
                sample.name() == name
                    && label.is_none_or(|(label, wanted)| sample.label(label) == Some(wanted))
            })
            .map(|sample| sample.value)
            .unwrap_or(f64::NEG_INFINITY)
    }

    #[test]
    fn the_sql_asks_for_every_variable_the_parser_reads() {
        let names = [
            "Uptime",
            "Questions",
            "Queries",
            "Slow_queries",
            "Threads_connected",
            "Threads_running",
            "Max_used_connections",
            "Innodb_buffer_pool_pages_data",
            "Innodb_buffer_pool_pages_free",
            "Innodb_buffer_pool_pages_misc",
            "Innodb_buffer_pool_pages_dirty",
            "Innodb_buffer_pool_pages_total",
            "Innodb_buffer_pool_bytes_data",
            "Innodb_buffer_pool_bytes_dirty",
            "Innodb_buffer_pool_read_requests",
            "Innodb_buffer_pool_reads",
            "Performance_schema_digest_lost",
        ];
        for name in names
            .iter()
            .chain(COMMANDS.iter().map(|(_, variable)| variable))
        {
            assert!(
                QUERY.contains(&format!("'{name}'")),
                "{name} missing from the SQL"
            );
        }
    }

    #[test]
    fn rates_come_from_deltas_over_the_measured_interval() {
        let first = GlobalStatus::from_rows(&status_rows(1000, 10_000, 100, 50)).expect("first");
        let second = GlobalStatus::from_rows(&status_rows(1500, 12_000, 150, 60)).expect("second");
        let mut out = Vec::new();
        samples(None, &first, &mut out);
        assert!(value(&out, "mysql_questions_per_second", None).is_nan());
        assert!(value(&out, "mysql_innodb_buffer_pool_hit_ratio", None).is_nan());
        assert_eq!(
            value(&out, "mysql_innodb_buffer_pool_cumulative_hit_ratio", None),
            0.99
        );
        let mut out = Vec::new();
        samples(Some((&first, 10.0)), &second, &mut out);
        assert_eq!(value(&out, "mysql_questions_per_second", None), 50.0);
        assert_eq!(value(&out, "mysql_queries_per_second", None), 50.0);
        assert_eq!(
            value(
                &out,
                "mysql_commands_per_second",
                Some(("command", "select"))
            ),
            50.0
        );
        assert_eq!(
            value(&out, "mysql_commands_total", Some(("command", "commit"))),
            1500.0
        );
        // 2000 requests, 50 from disk in the interval.
        assert_eq!(
            value(&out, "mysql_innodb_buffer_pool_hit_ratio", None),
            0.975
        );
        assert_eq!(
            value(
                &out,
                "mysql_innodb_buffer_pool_pages",
                Some(("state", "misc"))
            ),
            96.0
        );
        assert_eq!(
            value(&out, "mysql_innodb_buffer_pool_size_pages", None),
            4096.0
        );
    }

    #[test]
    fn a_restart_leaves_the_interval_without_a_rate() {
        let before =
            GlobalStatus::from_rows(&status_rows(1000, 10_000, 100, 5000)).expect("before");
        let after = GlobalStatus::from_rows(&status_rows(20, 50, 40, 3)).expect("after");
        let mut history = StatusHistory::default();
        let start = tokio::time::Instant::now();
        history.samples(before, start, &mut Vec::new());
        let mut out = Vec::new();
        history.samples(after, start + Duration::from_secs(10), &mut out);
        assert!(value(&out, "mysql_questions_per_second", None).is_nan());
        assert!(value(&out, "mysql_innodb_buffer_pool_hit_ratio", None).is_nan());
    }

    #[test]
    fn hit_ratio_is_unknown_without_requests() {
        assert!(hit_ratio(0.0, 0.0).is_nan());
        assert_eq!(hit_ratio(1000.0, 0.0), 1.0);
        assert_eq!(hit_ratio(100.0, 150.0), 0.0);
    }

    #[test]
    fn a_missing_counter_is_a_shape_error() {
        let rows = vec![row("Uptime", "5")];
        assert!(matches!(
            GlobalStatus::from_rows(&rows),
            Err(ShapeError::MissingColumn(_))
        ));
    }
}
