//! Property tests of the collectors' pure parsers: whatever a server answers (any row shape, any column text,
//! any BSON document, any CQL value, any DynamoDB item), parsing may refuse it, and the samples derived from
//! what it accepts are built, but nothing panics. No server is needed.
//!
//! Case counts are modest so `make test` stays fast; `PROPTEST_CASES=5000` runs a longer search.
#![cfg(all(
    feature = "mysql",
    feature = "mongodb",
    feature = "cassandra",
    feature = "dynamodb"
))]

use std::collections::HashMap;
use std::time::Duration;

use proptest::prelude::*;
use proptest::test_runner::Config;

use dbwatch_collectors::Sample;

const CASES: u32 = 256;

fn config() -> Config {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(CASES);
    Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    }
}

/// Column text a server could send: numbers at the edges, booleans in every spelling, and anything.
fn column_text() -> impl Strategy<Value = Option<String>> {
    prop_oneof![
        1 => Just(None),
        4 => prop::sample::select(vec![
            "0", "1", "-1", "18446744073709551615", "99999999999999999999999", "1e308", "1e400", "-0", "NaN",
            "inf", "ON", "OFF", "Yes", "No", "", " ", "8.0.36", "10.11.6-MariaDB", "5.7.44-log", "ROW",
            "STATEMENT", "MIXED", "mysql-bin.000001", "0.5", "1.7976931348623157e309", "९",
        ])
        .prop_map(|text| Some(text.to_owned())),
        2 => "\\PC{0,16}".prop_map(Some),
    ]
}

/// Column names the MySQL parsers look for, in both spellings and cases, and others.
fn column_name() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => prop::sample::select(vec![
            "Variable_name", "Value", "VARIABLE_NAME", "VARIABLE_VALUE", "Log_name", "File_size", "Encrypted",
            "Replica_IO_Running", "Slave_IO_Running", "Replica_SQL_Running", "Slave_SQL_Running",
            "Seconds_Behind_Source", "Seconds_Behind_Master", "Channel_Name", "Last_IO_Errno", "Last_SQL_Errno",
            "version", "version_comment", "DIGEST", "SCHEMA_NAME", "COUNT_STAR", "SUM_TIMER_WAIT", "read_only",
            "log_bin", "binlog_format", "max_connections", "performance_schema", "Source_Host", "Master_Host",
        ])
        .prop_map(str::to_owned),
        1 => "\\PC{0,10}",
    ]
}

/// Status variable names, so that name/value rows often hit the variables global_status requires.
fn status_name() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "Com_select",
            "Com_insert",
            "Com_update",
            "Com_delete",
            "Questions",
            "Queries",
            "Uptime",
            "Threads_connected",
            "Threads_running",
            "Connections",
            "Aborted_connects",
            "Slow_queries",
            "Innodb_buffer_pool_read_requests",
            "Innodb_buffer_pool_reads",
            "Bytes_received",
            "Bytes_sent",
            "Innodb_row_lock_waits",
            "Innodb_row_lock_time",
            "Created_tmp_disk_tables",
            "Max_used_connections",
        ])
        .prop_map(str::to_owned),
        "\\PC{0,10}",
    ]
}

fn text_row() -> impl Strategy<Value = dbwatch_collectors::mysql::row::TextRow> {
    prop::collection::vec((column_name(), column_text()), 0..12)
        .prop_map(dbwatch_collectors::mysql::row::TextRow::new)
}

fn name_value_rows() -> impl Strategy<Value = Vec<dbwatch_collectors::mysql::row::TextRow>> {
    prop::collection::vec(
        (status_name(), column_text()).prop_map(|(name, value)| {
            dbwatch_collectors::mysql::row::TextRow::new(vec![
                ("Variable_name".into(), Some(name)),
                ("Value".into(), value),
            ])
        }),
        0..40,
    )
}

fn mysql_rows(rows: &[dbwatch_collectors::mysql::row::TextRow]) {
    use dbwatch_collectors::mysql::*;
    let mut out: Vec<Sample> = Vec::new();
    if let Ok(status) = global_status::GlobalStatus::from_rows(rows) {
        global_status::samples(None, &status, &mut out);
        global_status::samples(Some((&status, 0.0)), &status, &mut out);
        global_status::samples(Some((&status, -1.0)), &status, &mut out);
    }
    if let Ok(variables) = global_variables::GlobalVariables::from_rows(rows) {
        variables.samples(&mut out);
    }
    let _ = global_variables::performance_schema_from_rows(rows);
    if let Ok(logs) = binary_logs::BinaryLogs::from_rows(rows) {
        logs.samples(&mut out);
    }
    if let Ok(channels) = replica_status::parse(rows) {
        for channel in &channels {
            channel.samples(&mut out);
        }
        replica_status::samples("replica", &channels, &mut out);
        let _ = replica_status::fleet_state(&channels);
    }
    for row in rows {
        if let Ok(version) = server_version::ServerVersion::from_row(row) {
            version.samples(&mut out);
            let _ = version.session_settings(Duration::from_secs(2));
            let _ = version.replica_status_statement();
        }
    }
    if let Ok(digests) = events_statements_summary_by_digest::parse(rows) {
        events_statements_summary_by_digest::top_samples(&digests, &mut out);
    }
    let _ = events_statements_summary_global_by_event_name::StatementTotals::from_rows(rows);
}

/// BSON keys the MongoDB parsers read, so that random documents reach their branches.
fn bson_key() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => prop::sample::select(vec![
            "uptimeMillis", "opcounters", "opcountersRepl", "insert", "query", "update", "delete", "getmore",
            "command", "metrics", "document", "returned", "inserted", "opLatencies", "reads", "writes",
            "commands", "transactions", "latency", "ops", "connections", "current", "available",
            "totalCreated", "wiredTiger", "cache", "bytes currently in the cache", "maximum bytes configured",
            "concurrentTransactions", "asserts", "repl", "members", "optimeDate", "optime", "ts", "t",
            "stateStr", "state", "name", "health", "self", "myState", "set", "version", "versionArray",
            "gitVersion", "modules", "storageEngines", "ok", "setName", "isWritablePrimary", "ismaster",
            "secondary", "hosts", "msg", "accesses", "key", "since", "ops", "ns", "shards", "shard",
            "numOwnedDocuments", "ownedSizeBytes", "orphanedSizeBytes", "mode", "inBalancerRound",
            "numBalancerRounds", "_id", "count", "lastHeartbeat", "syncSourceHost", "electionDate",
        ])
        .prop_map(str::to_owned),
        1 => "\\PC{0,8}",
    ]
}

fn bson_leaf() -> impl Strategy<Value = mongodb::bson::Bson> {
    use mongodb::bson::{Bson, DateTime, Timestamp};
    prop_oneof![
        any::<i32>().prop_map(Bson::Int32),
        any::<i64>().prop_map(Bson::Int64),
        any::<f64>().prop_map(Bson::Double),
        prop::sample::select(vec![f64::NAN, f64::INFINITY, -0.0, 1e300, -1.0])
            .prop_map(Bson::Double),
        "\\PC{0,12}".prop_map(Bson::String),
        prop::sample::select(vec![
            "PRIMARY",
            "SECONDARY",
            "ARBITER",
            "7.0.14",
            "8.0.0-rc1",
            "4",
            "..",
            "x.y.z"
        ])
        .prop_map(|text| Bson::String(text.to_owned())),
        any::<bool>().prop_map(Bson::Boolean),
        Just(Bson::Null),
        any::<i64>().prop_map(|millis| Bson::DateTime(DateTime::from_millis(millis))),
        (any::<u32>(), any::<u32>())
            .prop_map(|(time, increment)| Bson::Timestamp(Timestamp { time, increment })),
    ]
}

fn bson_value() -> impl Strategy<Value = mongodb::bson::Bson> {
    use mongodb::bson::{Bson, Document};
    bson_leaf().prop_recursive(4, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Bson::Array),
            prop::collection::vec((bson_key(), inner), 0..8)
                .prop_map(|pairs| Bson::Document(pairs.into_iter().collect::<Document>())),
        ]
    })
}

fn document() -> impl Strategy<Value = mongodb::bson::Document> {
    prop::collection::vec((bson_key(), bson_value()), 0..12)
        .prop_map(|pairs| pairs.into_iter().collect())
}

fn mongodb_documents(
    first: &mongodb::bson::Document,
    second: &mongodb::bson::Document,
    rows: &[mongodb::bson::Document],
) {
    use dbwatch_collectors::mongodb::*;
    let mut out: Vec<Sample> = Vec::new();
    let before = server_status::parse(first);
    let after = server_status::parse(second);
    server_status::derive(None, &after, &mut out);
    server_status::derive(Some((&before, Duration::from_secs(15))), &after, &mut out);
    server_status::derive(Some((&before, Duration::ZERO)), &after, &mut out);
    if let Ok(build) = build_info::parse(first) {
        let _ = build.sample();
        let topology = hello::parse(second);
        let _ = Capabilities::detect(&build, &topology);
    }
    if let Ok(status) = repl_set_get_status::parse(first) {
        status.samples(&mut out);
        if let Some(primary) = status.primary() {
            let _ = status.lag_seconds(primary);
        }
    }
    if let Ok(status) = balancer_status::parse(second) {
        status.samples(&mut out);
    }
    let _ = oplog::entry_seconds(first);
    let _ = index_stats::parse("shop", "orders", rows);
    let _ = sharded_data_distribution::parse(rows);
    let chunks = config_chunks::parse(rows);
    config_chunks::samples(&chunks, &mut out);
}

fn cql_value() -> impl Strategy<Value = scylla::value::CqlValue> {
    use scylla::value::CqlValue;
    prop_oneof![
        any::<i32>().prop_map(CqlValue::Int),
        any::<i64>().prop_map(CqlValue::BigInt),
        any::<i16>().prop_map(CqlValue::SmallInt),
        any::<i8>().prop_map(CqlValue::TinyInt),
        any::<f64>().prop_map(CqlValue::Double),
        any::<f32>().prop_map(CqlValue::Float),
        any::<i64>().prop_map(|value| CqlValue::Counter(scylla::value::Counter(value))),
        "\\PC{0,12}".prop_map(CqlValue::Text),
        any::<bool>().prop_map(CqlValue::Boolean),
        Just(CqlValue::Empty),
    ]
}

fn attribute_value() -> impl Strategy<Value = aws_sdk_dynamodb::types::AttributeValue> {
    use aws_sdk_dynamodb::primitives::Blob;
    use aws_sdk_dynamodb::types::AttributeValue;
    let leaf = prop_oneof![
        "\\PC{0,16}".prop_map(AttributeValue::S),
        prop::sample::select(vec![
            "0",
            "-1",
            "1e125",
            "99999999999999999999999999999999999999",
            "x",
            ""
        ])
        .prop_map(|number| AttributeValue::N(number.to_owned())),
        any::<Vec<u8>>().prop_map(|bytes| AttributeValue::B(Blob::new(bytes))),
        any::<bool>().prop_map(AttributeValue::Bool),
        any::<bool>().prop_map(AttributeValue::Null),
        prop::collection::vec("\\PC{0,6}", 0..4).prop_map(AttributeValue::Ss),
        prop::collection::vec("[0-9.e-]{0,6}", 0..4).prop_map(AttributeValue::Ns),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(AttributeValue::L),
            prop::collection::hash_map("\\PC{0,6}", inner, 0..5).prop_map(AttributeValue::M),
        ]
    })
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn mysql_parsers_never_panic_on_any_rows(rows in prop::collection::vec(text_row(), 0..6)) {
        mysql_rows(&rows);
    }

    #[test]
    fn mysql_status_parsers_never_panic_on_any_name_value_rows(rows in name_value_rows()) {
        mysql_rows(&rows);
    }

    #[test]
    fn mongodb_parsers_never_panic_on_any_document(
        first in document(),
        second in document(),
        rows in prop::collection::vec(document(), 0..4),
    ) {
        mongodb_documents(&first, &second, &rows);
    }

    #[test]
    fn cassandra_value_readers_never_panic(value in prop::option::of(cql_value()), text in prop::option::of("\\PC{0,24}")) {
        use dbwatch_collectors::cassandra::*;
        let _ = values::number(value.as_ref());
        let _ = settings::ConnectionLimit::parse(text.as_deref()).value();
        let _ = gossip_info::announced(text.as_deref());
        let _ = sstable_tasks::normalize_kind(text.as_deref().unwrap_or(""));
    }

    #[test]
    fn dynamodb_item_sizes_never_panic(item in prop::collection::hash_map("\\PC{0,8}", attribute_value(), 0..8)) {
        let item: HashMap<_, _> = item;
        let _ = dbwatch_collectors::dynamodb::item_size::item_size(&item);
    }

    #[test]
    fn dynamodb_limits_never_panic(values in prop::collection::vec(prop::option::of(any::<i64>()), 4)) {
        let output = aws_sdk_dynamodb::operation::describe_limits::DescribeLimitsOutput::builder()
            .set_account_max_read_capacity_units(values[0])
            .set_account_max_write_capacity_units(values[1])
            .set_table_max_read_capacity_units(values[2])
            .set_table_max_write_capacity_units(values[3])
            .build();
        let _ = dbwatch_collectors::dynamodb::describe_limits::TableQuota::from_output(&output);
    }
}
