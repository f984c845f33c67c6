//! DynamoDB collector against the local moto server (`deploy/local/fleet up moto`), plus parser tests on AWS
//! documentation examples for the Contributor Insights APIs moto does not implement.
//!
//! Environment (printed by `deploy/local/fleet env moto`): DBWATCH_AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID,
//! AWS_SECRET_ACCESS_KEY, AWS_REGION. The moto tests fail, never skip, when they are missing or moto is down.
//!
//! CloudWatch data points are published by the tests with PutMetricData as DynamoDB publishes them (namespace
//! AWS/DynamoDB, dimensions TableName, TableName + Operation, TableName + GlobalSecondaryIndexName), inside the
//! period the collector reads, and must come back as exact per-second rates. Every test uses its own tables.
#![cfg(feature = "dynamodb")]

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use aws_sdk_cloudwatch::primitives::DateTime;
use aws_sdk_cloudwatch::types::{Dimension, MetricDatum, StatisticSet};
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, GlobalSecondaryIndex, KeySchemaElement,
    KeyType, Projection, ProjectionType, ProvisionedThroughput, ScalarAttributeType,
    TimeToLiveSpecification,
};
use dbwatch_collectors::dynamodb::describe_contributor_insights::{ContributorInsights, KeyKind};
use dbwatch_collectors::dynamodb::get_insight_rule_report::{fnv1a_64, top_keys};
use dbwatch_collectors::dynamodb::get_metric_data::Window;
use dbwatch_collectors::dynamodb::item_size::ITEM_SIZE_BUCKETS;
use dbwatch_collectors::dynamodb::{DynamoDbCollector, DynamoDbOptions};
use dbwatch_collectors::{Collected, Collector};
use tokio::time::Instant;

const FLEET_HINT: &str =
    "run `deploy/local/fleet up moto` and `eval \"$(deploy/local/fleet env moto)\"`";

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("{name} is not set: {FLEET_HINT}"))
}

fn endpoint() -> String {
    env("AWS_ACCESS_KEY_ID");
    env("AWS_SECRET_ACCESS_KEY");
    env("DBWATCH_AWS_ENDPOINT_URL")
}

/// A table name no other test run uses.
fn unique_table(purpose: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .expect("clock after 1970")
        .subsec_nanos();
    format!("dbwatch-it-{purpose}-{}-{nanos}", std::process::id())
}

struct Aws {
    dynamodb: aws_sdk_dynamodb::Client,
    cloudwatch: aws_sdk_cloudwatch::Client,
}

async fn aws() -> Aws {
    let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new(env("AWS_REGION")))
        .endpoint_url(endpoint())
        .load()
        .await;
    let aws = Aws {
        dynamodb: aws_sdk_dynamodb::Client::new(&config),
        cloudwatch: aws_sdk_cloudwatch::Client::new(&config),
    };
    aws.dynamodb
        .list_tables()
        .limit(1)
        .send()
        .await
        .unwrap_or_else(|error| {
            panic!(
                "moto does not answer at {}: {error:?}; {FLEET_HINT}",
                endpoint()
            )
        });
    // aws-sdk-cloudwatch speaks only Smithy RPC v2 CBOR, which moto 5.2.5 does not route (404).
    aws.cloudwatch
        .list_metrics()
        .namespace("dbwatch/preflight")
        .send()
        .await
        .unwrap_or_else(|error| {
            panic!(
                "moto at {} does not answer CloudWatch in the RPC v2 CBOR protocol: {error:?}; start moto through \
                 collectors/tests/fixtures/dynamodb/moto_cbor_server.py (see its docstring)",
                endpoint()
            )
        });
    aws
}

fn options(table: &str) -> DynamoDbOptions {
    DynamoDbOptions {
        target: "moto".into(),
        endpoint_url: Some(endpoint()),
        region: env("AWS_REGION"),
        include_tables: vec![table.to_owned()],
        operations: vec!["GetItem".into(), "PutItem".into()],
        item_size_sampling: false,
        contributor_insights: true,
        api_timeout: Duration::from_secs(5),
        ..DynamoDbOptions::default()
    }
}

fn string_key(name: &str, key_type: KeyType) -> KeySchemaElement {
    KeySchemaElement::builder()
        .attribute_name(name)
        .key_type(key_type)
        .build()
        .expect("key schema")
}

fn string_attribute(name: &str) -> AttributeDefinition {
    AttributeDefinition::builder()
        .attribute_name(name)
        .attribute_type(ScalarAttributeType::S)
        .build()
        .expect("attribute definition")
}

fn throughput(read: i64, write: i64) -> ProvisionedThroughput {
    ProvisionedThroughput::builder()
        .read_capacity_units(read)
        .write_capacity_units(write)
        .build()
        .expect("throughput")
}

/// A provisioned table (100 RCU / 50 WCU) with a GSI `ByEmail` (50 / 25) and TTL on `expires_at`, like the seed's
/// UserSessions.
async fn create_provisioned_table(aws: &Aws, table: &str) {
    aws.dynamodb
        .create_table()
        .table_name(table)
        .attribute_definitions(string_attribute("pk"))
        .attribute_definitions(string_attribute("email"))
        .key_schema(string_key("pk", KeyType::Hash))
        .billing_mode(BillingMode::Provisioned)
        .provisioned_throughput(throughput(100, 50))
        .global_secondary_indexes(
            GlobalSecondaryIndex::builder()
                .index_name("ByEmail")
                .key_schema(string_key("email", KeyType::Hash))
                .projection(
                    Projection::builder()
                        .projection_type(ProjectionType::All)
                        .build(),
                )
                .provisioned_throughput(throughput(50, 25))
                .build()
                .expect("gsi"),
        )
        .send()
        .await
        .expect("create table");
    aws.dynamodb
        .update_time_to_live()
        .table_name(table)
        .time_to_live_specification(
            TimeToLiveSpecification::builder()
                .enabled(true)
                .attribute_name("expires_at")
                .build()
                .expect("ttl spec"),
        )
        .send()
        .await
        .expect("enable ttl");
}

async fn create_on_demand_table(aws: &Aws, table: &str) {
    aws.dynamodb
        .create_table()
        .table_name(table)
        .attribute_definitions(string_attribute("pk"))
        .key_schema(string_key("pk", KeyType::Hash))
        .billing_mode(BillingMode::PayPerRequest)
        .send()
        .await
        .expect("create on-demand table");
}

async fn drop_table(aws: &Aws, table: &str) {
    // Best effort: moto forgets everything on restart anyway.
    let _ = aws.dynamodb.delete_table().table_name(table).send().await;
}

fn dimension(name: &str, value: &str) -> Dimension {
    Dimension::builder().name(name).value(value).build()
}

/// One datum as DynamoDB would publish it: a Sum (or a statistic set) for one period and dimension set.
struct Published {
    metric: &'static str,
    dimensions: Vec<Dimension>,
    datum: Datum,
}

enum Datum {
    /// A single value: the period's Sum.
    Sum(f64),
    /// A statistic set, for Average and SampleCount.
    Statistics { count: f64, sum: f64 },
}

/// Publishes the data into the window the collector will read, and the windows either side of it, so a minute
/// boundary passing between here and the poll changes nothing.
async fn publish(aws: &Aws, window: Window, data: &[Published]) {
    for shift in [-1i64, 0, 1] {
        let at = window.start + shift * (window.end - window.start) + 30;
        let mut request = aws.cloudwatch.put_metric_data().namespace("AWS/DynamoDB");
        for published in data {
            let datum = MetricDatum::builder()
                .metric_name(published.metric)
                .set_dimensions(Some(published.dimensions.clone()))
                .timestamp(DateTime::from_secs(at));
            let datum = match published.datum {
                Datum::Sum(sum) => datum.value(sum),
                Datum::Statistics { count, sum } => datum.statistic_values(
                    StatisticSet::builder()
                        .sample_count(count)
                        .sum(sum)
                        .minimum(sum / count)
                        .maximum(sum / count)
                        .build(),
                ),
            };
            request = request.metric_data(datum.build());
        }
        request.send().await.expect("put metric data");
    }
}

fn value(collected: &Collected, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    collected
        .samples
        .iter()
        .find(|sample| {
            sample.name() == name
                && labels
                    .iter()
                    .all(|(label, expected)| sample.label(label) == Some(*expected))
        })
        .map(|sample| sample.value)
}

/// Polls until `done` holds for a poll's samples, for at most 30 s; returns the last poll.
async fn poll_until(
    collector: &mut DynamoDbCollector,
    done: impl Fn(&Collected) -> bool,
) -> Collected {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let collected = collector.collect().await.expect("poll of moto");
        if done(&collected) || Instant::now() > deadline {
            return collected;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test]
async fn cloudwatch_sums_come_back_as_exact_rates_and_utilization() {
    let aws = aws().await;
    let table = unique_table("capacity");
    create_provisioned_table(&aws, &table).await;
    let mut collector = DynamoDbCollector::new(options(&table));
    let window = collector.window_at(SystemTime::now());
    let t = table.as_str();
    publish(
        &aws,
        window,
        &[
            // 3000 RCU in 60 s: 50/s of 100 provisioned.
            Published {
                metric: "ConsumedReadCapacityUnits",
                dimensions: vec![dimension("TableName", t)],
                datum: Datum::Sum(3000.0),
            },
            // 600 WCU: 10/s of 50.
            Published {
                metric: "ConsumedWriteCapacityUnits",
                dimensions: vec![dimension("TableName", t)],
                datum: Datum::Sum(600.0),
            },
            // The GSI: 2700 RCU, 45/s of 50 = 0.9, the most saturated series.
            Published {
                metric: "ConsumedReadCapacityUnits",
                dimensions: vec![
                    dimension("TableName", t),
                    dimension("GlobalSecondaryIndexName", "ByEmail"),
                ],
                datum: Datum::Sum(2700.0),
            },
            // 600 successful GetItems averaging 4 ms.
            Published {
                metric: "SuccessfulRequestLatency",
                dimensions: vec![dimension("TableName", t), dimension("Operation", "GetItem")],
                datum: Datum::Statistics {
                    count: 600.0,
                    sum: 2400.0,
                },
            },
            // 120 PutItems averaging 9 ms.
            Published {
                metric: "SuccessfulRequestLatency",
                dimensions: vec![dimension("TableName", t), dimension("Operation", "PutItem")],
                datum: Datum::Statistics {
                    count: 120.0,
                    sum: 1080.0,
                },
            },
        ],
    )
    .await;

    let table_read = [("table", t), ("index", ""), ("operation", "read")];
    let collected = poll_until(&mut collector, |collected| {
        value(
            collected,
            "dynamodb_consumed_capacity_units_per_second",
            &table_read,
        ) == Some(50.0)
    })
    .await;
    let consumed = |labels: &[(&str, &str)]| {
        value(
            &collected,
            "dynamodb_consumed_capacity_units_per_second",
            labels,
        )
    };
    let utilization =
        |labels: &[(&str, &str)]| value(&collected, "dynamodb_capacity_utilization_ratio", labels);
    assert_eq!(consumed(&table_read), Some(50.0));
    assert_eq!(utilization(&table_read), Some(0.5));
    let table_write = [("table", t), ("index", ""), ("operation", "write")];
    assert_eq!(consumed(&table_write), Some(10.0));
    assert_eq!(utilization(&table_write), Some(0.2));
    let gsi_read = [("table", t), ("index", "ByEmail"), ("operation", "read")];
    assert_eq!(consumed(&gsi_read), Some(45.0));
    assert_eq!(utilization(&gsi_read), Some(0.9));
    // No data point for the GSI's writes: nothing consumed.
    let gsi_write = [("table", t), ("index", "ByEmail"), ("operation", "write")];
    assert_eq!(consumed(&gsi_write), Some(0.0));
    assert_eq!(utilization(&gsi_write), Some(0.0));

    let get_item = [("table", t), ("operation", "GetItem")];
    let put_item = [("table", t), ("operation", "PutItem")];
    assert_eq!(
        value(
            &collected,
            "dynamodb_request_latency_avg_seconds",
            &get_item
        ),
        Some(0.004)
    );
    assert_eq!(
        value(
            &collected,
            "dynamodb_request_latency_avg_seconds",
            &put_item
        ),
        Some(0.009)
    );
    assert_eq!(
        value(
            &collected,
            "dynamodb_successful_requests_per_second",
            &get_item
        ),
        Some(10.0)
    );
    assert_eq!(
        value(
            &collected,
            "dynamodb_successful_requests_per_second",
            &put_item
        ),
        Some(2.0)
    );

    // Fleet: the GSI's reads are the most saturated; latency is the request-weighted mean,
    // (600 x 4 ms + 120 x 9 ms) / 720 = 4.8333 ms.
    assert_eq!(
        value(&collected, "db_connections_utilization_ratio", &[]),
        Some(0.9)
    );
    assert_eq!(value(&collected, "db_connections_active", &[]), Some(45.0));
    assert_eq!(value(&collected, "db_connections_max", &[]), Some(50.0));
    let latency = value(&collected, "db_query_latency_avg_seconds", &[]).expect("fleet latency");
    assert!(
        (latency - 0.0048333333).abs() < 1e-9,
        "fleet latency {latency}"
    );

    // Cost accounting: 4 x 2 throughput units + 2 key-range + 4 x 2 operations + 1 account = 19 metrics.
    assert_eq!(
        value(&collected, "dynamodb_cloudwatch_metrics_requested", &[]),
        Some(19.0)
    );
    assert_eq!(
        value(
            &collected,
            "dynamodb_api_calls",
            &[("api", "GetMetricData")]
        ),
        Some(1.0)
    );
    drop_table(&aws, &table).await;
}

#[tokio::test]
async fn throttle_events_appear_as_throttling() {
    let aws = aws().await;
    let table = unique_table("throttle");
    create_provisioned_table(&aws, &table).await;
    let mut collector = DynamoDbCollector::new(options(&table));
    let window = collector.window_at(SystemTime::now());
    let t = table.as_str();
    publish(
        &aws,
        window,
        &[
            Published {
                metric: "ReadThrottleEvents",
                dimensions: vec![dimension("TableName", t)],
                datum: Datum::Sum(120.0),
            },
            Published {
                metric: "WriteThrottleEvents",
                dimensions: vec![
                    dimension("TableName", t),
                    dimension("GlobalSecondaryIndexName", "ByEmail"),
                ],
                datum: Datum::Sum(30.0),
            },
            Published {
                metric: "ThrottledRequests",
                dimensions: vec![dimension("TableName", t), dimension("Operation", "GetItem")],
                datum: Datum::Sum(90.0),
            },
            Published {
                metric: "ReadKeyRangeThroughputThrottleEvents",
                dimensions: vec![dimension("TableName", t)],
                datum: Datum::Sum(6.0),
            },
            Published {
                metric: "SystemErrors",
                dimensions: vec![dimension("TableName", t), dimension("Operation", "PutItem")],
                datum: Datum::Sum(3.0),
            },
        ],
    )
    .await;

    let table_read = [("table", t), ("index", ""), ("operation", "read")];
    let collected = poll_until(&mut collector, |collected| {
        value(
            collected,
            "dynamodb_throttle_events_per_second",
            &table_read,
        ) == Some(2.0)
    })
    .await;
    assert_eq!(
        value(
            &collected,
            "dynamodb_throttle_events_per_second",
            &table_read
        ),
        Some(2.0)
    );
    let gsi_write = [("table", t), ("index", "ByEmail"), ("operation", "write")];
    assert_eq!(
        value(
            &collected,
            "dynamodb_throttle_events_per_second",
            &gsi_write
        ),
        Some(0.5)
    );
    let get_item = [("table", t), ("operation", "GetItem")];
    assert_eq!(
        value(
            &collected,
            "dynamodb_throttled_requests_per_second",
            &get_item
        ),
        Some(1.5)
    );
    // Throttle counts CloudWatch has no point for are zero, not missing.
    let put_item = [("table", t), ("operation", "PutItem")];
    assert_eq!(
        value(
            &collected,
            "dynamodb_throttled_requests_per_second",
            &put_item
        ),
        Some(0.0)
    );
    assert_eq!(
        value(
            &collected,
            "dynamodb_key_range_throttle_events_per_second",
            &[("table", t), ("operation", "read")]
        ),
        Some(0.1)
    );
    assert_eq!(
        value(
            &collected,
            "dynamodb_key_range_throttle_events_per_second",
            &[("table", t), ("operation", "write")]
        ),
        Some(0.0)
    );
    assert_eq!(
        value(&collected, "dynamodb_system_errors_per_second", &put_item),
        Some(0.05)
    );
    // No latency was published: unknown, never 0.
    assert!(value(
        &collected,
        "dynamodb_request_latency_avg_seconds",
        &get_item
    )
    .is_some_and(f64::is_nan));
    drop_table(&aws, &table).await;
}

#[tokio::test]
async fn ttl_gsi_and_capacity_settings_are_reported() {
    let aws = aws().await;
    let provisioned = unique_table("settings");
    let on_demand = unique_table("ondemand");
    create_provisioned_table(&aws, &provisioned).await;
    create_on_demand_table(&aws, &on_demand).await;
    let mut collector = DynamoDbCollector::new(DynamoDbOptions {
        include_tables: vec![provisioned.clone(), on_demand.clone()],
        ..options(&provisioned)
    });
    let collected = collector.collect().await.expect("poll of moto");
    let p = provisioned.as_str();
    let o = on_demand.as_str();

    assert_eq!(value(&collected, "dynamodb_tables", &[]), Some(2.0));
    assert_eq!(
        value(
            &collected,
            "dynamodb_table_ttl_enabled",
            &[("table", p), ("attribute", "expires_at")]
        ),
        Some(1.0)
    );
    assert_eq!(
        value(&collected, "dynamodb_table_ttl_enabled", &[("table", o)]),
        Some(0.0)
    );
    let provisioned_units = |labels: &[(&str, &str)]| {
        value(
            &collected,
            "dynamodb_provisioned_capacity_units_per_second",
            labels,
        )
    };
    assert_eq!(
        provisioned_units(&[("table", p), ("index", ""), ("operation", "read")]),
        Some(100.0)
    );
    assert_eq!(
        provisioned_units(&[("table", p), ("index", ""), ("operation", "write")]),
        Some(50.0)
    );
    assert_eq!(
        provisioned_units(&[("table", p), ("index", "ByEmail"), ("operation", "read")]),
        Some(50.0)
    );
    assert_eq!(
        provisioned_units(&[("table", p), ("index", "ByEmail"), ("operation", "write")]),
        Some(25.0)
    );
    assert_eq!(
        value(
            &collected,
            "dynamodb_table_active",
            &[("table", p), ("index", "ByEmail")]
        ),
        Some(1.0)
    );
    assert_eq!(
        value(&collected, "dynamodb_table_on_demand", &[("table", p)]),
        Some(0.0)
    );

    // On demand: no provisioned ceiling, so utilization is against the account's per-table quota.
    assert_eq!(
        value(&collected, "dynamodb_table_on_demand", &[("table", o)]),
        Some(1.0)
    );
    assert!(
        provisioned_units(&[("table", o), ("index", ""), ("operation", "read")])
            .is_some_and(f64::is_nan)
    );
    let quota = value(
        &collected,
        "dynamodb_account_table_max_units_per_second",
        &[("operation", "read")],
    )
    .expect("DescribeLimits quota");
    assert!(quota > 0.0);
    assert_eq!(
        value(
            &collected,
            "dynamodb_capacity_utilization_ratio",
            &[("table", o), ("index", ""), ("operation", "read")]
        ),
        Some(0.0)
    );

    // moto lacks Contributor Insights: detected once, exported as a capability, not an error every poll.
    assert_eq!(
        value(
            &collected,
            "dynamodb_capability_available",
            &[("capability", "contributor_insights")]
        ),
        Some(0.0)
    );
    let second = collector.collect().await.expect("second poll");
    assert_eq!(
        value(
            &second,
            "dynamodb_api_calls",
            &[("api", "DescribeContributorInsights")]
        ),
        Some(0.0)
    );
    assert_eq!(
        value(&second, "dynamodb_api_calls", &[("api", "DescribeTable")]),
        Some(0.0)
    );
    assert_eq!(
        value(&second, "dynamodb_api_calls", &[("api", "ListTables")]),
        Some(1.0)
    );
    drop_table(&aws, &provisioned).await;
    drop_table(&aws, &on_demand).await;
}

/// The seed's tables (deploy/local/moto/seed.py) as the collector sees them, and what a poll of them costs:
/// run with `--nocapture` for the API calls, CloudWatch metrics and wall time per poll.
#[tokio::test]
async fn seed_tables_report_their_ttl_gsi_and_capacity() {
    let _aws = aws().await;
    let mut collector = DynamoDbCollector::new(DynamoDbOptions {
        include_tables: vec![
            "UserSessions".into(),
            "ShoppingCart".into(),
            "Notifications".into(),
        ],
        operations: DynamoDbOptions::default().operations,
        item_size_sampling: true,
        ..options("UserSessions")
    });
    let mut polls = Vec::new();
    for _ in 0..3 {
        let started = Instant::now();
        let collected = collector.collect().await.expect("poll of moto");
        polls.push((started.elapsed(), collected));
    }
    let (_, first) = &polls[0];
    assert_eq!(value(first, "dynamodb_tables", &[]), Some(3.0));
    let provisioned = |table: &str, index: &str, operation: &str| {
        value(
            first,
            "dynamodb_provisioned_capacity_units_per_second",
            &[("table", table), ("index", index), ("operation", operation)],
        )
    };
    assert_eq!(provisioned("UserSessions", "", "read"), Some(100.0));
    assert_eq!(provisioned("UserSessions", "", "write"), Some(50.0));
    assert_eq!(
        provisioned("UserSessions", "SessionIdIndex", "read"),
        Some(50.0)
    );
    assert_eq!(
        provisioned("UserSessions", "SessionIdIndex", "write"),
        Some(25.0)
    );
    assert_eq!(provisioned("ShoppingCart", "", "read"), Some(50.0));
    assert_eq!(provisioned("Notifications", "", "write"), Some(25.0));
    for (table, attribute) in [
        ("UserSessions", "expires_at"),
        ("ShoppingCart", "expires_at"),
        ("Notifications", "ttl"),
    ] {
        assert_eq!(
            value(
                first,
                "dynamodb_table_ttl_enabled",
                &[("table", table), ("attribute", attribute)]
            ),
            Some(1.0),
            "{table}"
        );
    }
    for (poll, (elapsed, collected)) in polls.iter().enumerate() {
        let calls: Vec<String> = collected
            .samples
            .iter()
            .filter(|sample| sample.name() == "dynamodb_api_calls" && sample.value > 0.0)
            .map(|sample| format!("{}={}", sample.label("api").unwrap_or("?"), sample.value))
            .collect();
        eprintln!(
            "poll {poll}: {elapsed:?}, {} metrics requested, calls: {}",
            value(collected, "dynamodb_cloudwatch_metrics_requested", &[]).unwrap_or(f64::NAN),
            calls.join(" ")
        );
    }
}

/// An item of `7 + pad` bytes: "pk" (2) + a 2-byte key, "pad" (3) + `pad` bytes.
fn padded_item(key: &str, pad: usize) -> HashMap<String, AttributeValue> {
    HashMap::from([
        ("pk".to_owned(), AttributeValue::S(key.to_owned())),
        ("pad".to_owned(), AttributeValue::S("x".repeat(pad))),
    ])
}

#[tokio::test]
async fn item_size_histogram_has_the_exact_bucket_counts_of_the_items_written() {
    let aws = aws().await;
    let table = unique_table("sizes");
    create_on_demand_table(&aws, &table).await;
    let mut items = vec![
        padded_item("a0", 33),
        padded_item("a1", 33),
        padded_item("a2", 33),
        padded_item("b0", 93),
        padded_item("b1", 93),
        padded_item("c0", 2993),
        padded_item("d0", 99_993),
    ];
    // 25 bytes by the documented rules: "pk" 2 + "e0" 2; "n" 1 + 12345 (5 digits: 3 + 1 = 4);
    // "l" 1 + list (3 + (1 + "ab" 2) + (1 + true 1)) = 9; "m" 1 + map (3 + (1 + "k" 1 + null 1)) = 6.
    items.push(HashMap::from([
        ("pk".to_owned(), AttributeValue::S("e0".into())),
        ("n".to_owned(), AttributeValue::N("12345".into())),
        (
            "l".to_owned(),
            AttributeValue::L(vec![
                AttributeValue::S("ab".into()),
                AttributeValue::Bool(true),
            ]),
        ),
        (
            "m".to_owned(),
            AttributeValue::M(HashMap::from([(
                "k".to_owned(),
                AttributeValue::Null(true),
            )])),
        ),
    ]));
    for item in items {
        aws.dynamodb
            .put_item()
            .table_name(&table)
            .set_item(Some(item))
            .send()
            .await
            .expect("put item");
    }
    let mut collector = DynamoDbCollector::new(DynamoDbOptions {
        item_size_sampling: true,
        sample_read_capacity_budget: 1000.0,
        ..options(&table)
    });
    let collected = collector.collect().await.expect("poll of moto");

    let histogram = collector
        .item_size_histogram(&table)
        .expect("the table was sampled");
    let expected_cumulative: Vec<(f64, u64)> = ITEM_SIZE_BUCKETS
        .iter()
        .copied()
        .chain([f64::INFINITY])
        .map(|le| {
            let count = match le {
                le if le < 128.0 => 4,
                le if le < 4096.0 => 6,
                le if le < 131_072.0 => 7,
                _ => 8,
            };
            (le, count)
        })
        .collect();
    assert_eq!(histogram.cumulative_buckets(), expected_cumulative);
    assert_eq!(histogram.count(), 8);
    assert_eq!(
        histogram.sum(),
        (3 * 40 + 2 * 100 + 3000 + 100_000 + 25) as f64
    );

    let t = table.as_str();
    // The exported histogram carries the same cumulative counts.
    let series = |suffix: &str, le: Option<&str>| {
        collected
            .samples
            .iter()
            .find(|sample| {
                sample.name() == "dynamodb_item_size_bytes"
                    && sample.suffix == suffix
                    && sample.label("table") == Some(t)
                    && sample.label("le") == le
            })
            .map(|sample| sample.value)
    };
    assert_eq!(series("_bucket", Some("64")), Some(4.0));
    assert_eq!(series("_bucket", Some("2048")), Some(6.0));
    assert_eq!(series("_bucket", Some("4096")), Some(7.0));
    assert_eq!(series("_bucket", Some("65536")), Some(7.0));
    assert_eq!(series("_bucket", Some("131072")), Some(8.0));
    assert_eq!(series("_bucket", Some("+Inf")), Some(8.0));
    assert_eq!(series("_count", None), Some(8.0));
    assert_eq!(
        series("_sum", None),
        Some((3 * 40 + 2 * 100 + 3000 + 100_000 + 25) as f64)
    );
    assert_eq!(
        value(&collected, "dynamodb_item_size_max_bytes", &[("table", t)]),
        Some(100_000.0)
    );
    let spent = value(
        &collected,
        "dynamodb_item_size_sample_read_capacity_units_total",
        &[("table", t)],
    )
    .expect("read units spent");
    assert!(spent > 0.0);
    assert!(value(&collected, "dynamodb_api_calls", &[("api", "Scan")])
        .is_some_and(|calls| calls >= 1.0));
    drop_table(&aws, &table).await;
}

#[tokio::test]
async fn a_server_that_is_down_fails_the_poll() {
    let mut collector = DynamoDbCollector::new(DynamoDbOptions {
        endpoint_url: Some("http://127.0.0.1:9".into()),
        region: "us-east-1".into(),
        connect_timeout: Duration::from_millis(500),
        api_timeout: Duration::from_secs(2),
        max_attempts: 1,
        ..DynamoDbOptions::default()
    });
    // Credentials come from the environment chain; without them the failure is auth, with them connect.
    let error = collector
        .collect()
        .await
        .expect_err("nothing listens on port 9");
    assert!(matches!(
        error.kind(),
        dbwatch_collectors::ErrorKind::Connect | dbwatch_collectors::ErrorKind::Auth
    ));
    // The next poll backs off without touching the network.
    let again = collector.collect().await.expect_err("still down");
    assert!(again.to_string().contains("backing off"), "{again}");
}

// === Parser tests on AWS documentation examples (moto implements neither API) ===

mod fixtures {
    //! A minimal JSON reader for the documentation fixtures; the crate has no JSON dependency of its own.

    #[derive(Debug, Clone, PartialEq)]
    pub enum Json {
        Null,
        Bool(bool),
        Number(f64),
        Text(String),
        Array(Vec<Json>),
        Object(Vec<(String, Json)>),
    }

    impl Json {
        pub fn get(&self, key: &str) -> Option<&Json> {
            match self {
                Json::Object(entries) => entries
                    .iter()
                    .find(|(name, _)| name == key)
                    .map(|(_, value)| value),
                _ => None,
            }
        }

        pub fn text(&self) -> Option<&str> {
            match self {
                Json::Text(text) => Some(text),
                _ => None,
            }
        }

        pub fn number(&self) -> Option<f64> {
            match self {
                Json::Number(number) => Some(*number),
                _ => None,
            }
        }

        pub fn items(&self) -> &[Json] {
            match self {
                Json::Array(items) => items,
                _ => &[],
            }
        }
    }

    /// Reads a fixture: `#` comment lines (the source citation) first, then one JSON document.
    pub fn load(name: &str) -> Json {
        let path = format!(
            "{}/tests/fixtures/dynamodb/{name}",
            env!("CARGO_MANIFEST_DIR")
        );
        let contents =
            std::fs::read_to_string(&path).unwrap_or_else(|error| panic!("{path}: {error}"));
        let document: String = contents
            .lines()
            .filter(|line| !line.starts_with('#'))
            .collect::<Vec<_>>()
            .join("\n");
        let mut parser = Parser {
            chars: document.chars().collect(),
            at: 0,
        };
        let value = parser.value();
        parser.skip_space();
        assert_eq!(parser.at, parser.chars.len(), "trailing content in {path}");
        value
    }

    struct Parser {
        chars: Vec<char>,
        at: usize,
    }

    impl Parser {
        fn skip_space(&mut self) {
            while self.chars.get(self.at).is_some_and(|c| c.is_whitespace()) {
                self.at += 1;
            }
        }

        fn expect(&mut self, wanted: char) {
            self.skip_space();
            assert_eq!(self.chars.get(self.at), Some(&wanted), "at {}", self.at);
            self.at += 1;
        }

        fn value(&mut self) -> Json {
            self.skip_space();
            match self.chars.get(self.at).copied() {
                Some('{') => self.object(),
                Some('[') => self.array(),
                Some('"') => Json::Text(self.string()),
                Some('t') => self.word("true", Json::Bool(true)),
                Some('f') => self.word("false", Json::Bool(false)),
                Some('n') => self.word("null", Json::Null),
                _ => self.number(),
            }
        }

        fn word(&mut self, word: &str, value: Json) -> Json {
            for expected in word.chars() {
                assert_eq!(self.chars.get(self.at), Some(&expected));
                self.at += 1;
            }
            value
        }

        fn number(&mut self) -> Json {
            let start = self.at;
            while self
                .chars
                .get(self.at)
                .is_some_and(|c| c.is_ascii_digit() || matches!(c, '-' | '+' | '.' | 'e' | 'E'))
            {
                self.at += 1;
            }
            let text: String = self.chars[start..self.at].iter().collect();
            Json::Number(
                text.parse()
                    .unwrap_or_else(|_| panic!("bad number {text:?}")),
            )
        }

        fn string(&mut self) -> String {
            self.expect('"');
            let mut text = String::new();
            loop {
                let c = self.chars[self.at];
                self.at += 1;
                match c {
                    '"' => return text,
                    '\\' => {
                        let escaped = self.chars[self.at];
                        self.at += 1;
                        text.push(match escaped {
                            'n' => '\n',
                            't' => '\t',
                            other => other,
                        });
                    }
                    other => text.push(other),
                }
            }
        }

        fn array(&mut self) -> Json {
            self.expect('[');
            let mut items = Vec::new();
            self.skip_space();
            if self.chars.get(self.at) == Some(&']') {
                self.at += 1;
                return Json::Array(items);
            }
            loop {
                items.push(self.value());
                self.skip_space();
                let next = self.chars[self.at];
                self.at += 1;
                if next == ']' {
                    return Json::Array(items);
                }
                assert_eq!(next, ',');
            }
        }

        fn object(&mut self) -> Json {
            self.expect('{');
            let mut entries = Vec::new();
            self.skip_space();
            if self.chars.get(self.at) == Some(&'}') {
                self.at += 1;
                return Json::Object(entries);
            }
            loop {
                self.skip_space();
                let key = self.string();
                self.expect(':');
                entries.push((key, self.value()));
                self.skip_space();
                let next = self.chars[self.at];
                self.at += 1;
                if next == '}' {
                    return Json::Object(entries);
                }
                assert_eq!(next, ',');
            }
        }
    }
}

/// The AWS CLI reference's DescribeContributorInsights output: enabled, four rules, of which the collector reads
/// the partition-key ones (PKC accessed, PKT throttled).
#[test]
fn describe_contributor_insights_documentation_example() {
    use aws_sdk_dynamodb::operation::describe_contributor_insights::DescribeContributorInsightsOutput;
    use aws_sdk_dynamodb::types::ContributorInsightsStatus;

    let json = fixtures::load("describe_contributor_insights.txt");
    let rules: Vec<String> = json
        .get("ContributorInsightsRuleList")
        .map(|rules| {
            rules
                .items()
                .iter()
                .filter_map(|rule| rule.text().map(str::to_owned))
                .collect()
        })
        .expect("rule list");
    let output = DescribeContributorInsightsOutput::builder()
        .set_table_name(
            json.get("TableName")
                .and_then(|v| v.text())
                .map(str::to_owned),
        )
        .set_index_name(
            json.get("IndexName")
                .and_then(|v| v.text())
                .map(str::to_owned),
        )
        .set_contributor_insights_rule_list(Some(rules))
        .contributor_insights_status(ContributorInsightsStatus::from(
            json.get("ContributorInsightsStatus")
                .and_then(|v| v.text())
                .expect("status"),
        ))
        .last_update_date_time(aws_sdk_dynamodb::primitives::DateTime::from_secs_f64(
            json.get("LastUpdateDateTime")
                .and_then(|v| v.number())
                .expect("timestamp"),
        ))
        .build();

    let insights = ContributorInsights::from_output(&output);
    assert!(insights.enabled);
    let read: Vec<(&str, KeyKind)> = insights
        .rules
        .iter()
        .map(|rule| (rule.name.as_str(), rule.kind))
        .collect();
    assert_eq!(
        read,
        vec![
            (
                "DynamoDBContributorInsights-PKC-MusicCollection-1576629651520",
                KeyKind::Accessed
            ),
            (
                "DynamoDBContributorInsights-PKT-MusicCollection-1576629651520",
                KeyKind::Throttled
            ),
        ]
    );
}

/// The AWS CLI example's GetInsightRuleReport output (15-minute window, one contributor with 0.5): the key is
/// exported hashed by default, in clear on request, as events per second of the window.
#[test]
fn get_insight_rule_report_documentation_example() {
    use aws_sdk_cloudwatch::operation::get_insight_rule_report::GetInsightRuleReportOutput;
    use aws_sdk_cloudwatch::types::{InsightRuleContributor, InsightRuleContributorDatapoint};

    let json = fixtures::load("get_insight_rule_report.txt");
    let mut output = GetInsightRuleReportOutput::builder()
        .set_key_labels(json.get("KeyLabels").map(|labels| {
            labels
                .items()
                .iter()
                .filter_map(|l| l.text().map(str::to_owned))
                .collect()
        }))
        .set_aggregation_statistic(
            json.get("AggregationStatistic")
                .and_then(|v| v.text())
                .map(str::to_owned),
        )
        .set_aggregate_value(json.get("AggregateValue").and_then(|v| v.number()))
        .set_approximate_unique_count(
            json.get("ApproximateUniqueCount")
                .and_then(|v| v.number())
                .map(|count| count as i64),
        );
    for contributor in json
        .get("Contributors")
        .map(|c| c.items())
        .unwrap_or_default()
    {
        let mut built = InsightRuleContributor::builder()
            .set_keys(contributor.get("Keys").map(|keys| {
                keys.items()
                    .iter()
                    .filter_map(|k| k.text().map(str::to_owned))
                    .collect()
            }))
            .set_approximate_aggregate_value(
                contributor
                    .get("ApproximateAggregateValue")
                    .and_then(|v| v.number()),
            );
        for point in contributor
            .get("Datapoints")
            .map(|p| p.items())
            .unwrap_or_default()
        {
            let timestamp = aws_sdk_cloudwatch::primitives::DateTime::from_str(
                point
                    .get("Timestamp")
                    .and_then(|v| v.text())
                    .expect("timestamp"),
                aws_sdk_cloudwatch::primitives::DateTimeFormat::DateTimeWithOffset,
            )
            .expect("RFC 3339 timestamp");
            built = built.datapoints(
                InsightRuleContributorDatapoint::builder()
                    .timestamp(timestamp)
                    .set_approximate_value(point.get("ApproximateValue").and_then(|v| v.number()))
                    .build(),
            );
        }
        output = output.contributors(built.build());
    }
    let output = output.build();

    // --start-time 2024-10-13T20:15:00Z --end-time 2024-10-13T20:30:00Z
    let window = Window {
        start: 1_728_850_500,
        end: 1_728_851_400,
    };
    let hashed = top_keys(&output, window, 10, true);
    assert_eq!(hashed.len(), 1);
    assert_eq!(hashed[0].key, format!("{:016x}", fnv1a_64(b"RequestID")));
    assert_eq!(hashed[0].events_per_second, 0.5 / 900.0);
    let plain = top_keys(&output, window, 10, false);
    assert_eq!(plain[0].key, "RequestID");
}
