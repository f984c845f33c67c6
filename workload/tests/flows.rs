//! The workload against the real fleet (`deploy/local/fleet up`, `eval "$(deploy/local/fleet env)"`): every
//! store's schema is in place after a run, and N orders become N orders (with payments) in MariaDB and N sales in
//! the PostgreSQL warehouse. Fails, never skips, without the fleet.

mod common;

use std::collections::BTreeMap;

use aws_sdk_dynamodb::types::TimeToLiveStatus;
use common::{env, mysql, pg, run, unique, workload};
use mongodb::bson::doc;
use scylla::client::session_builder::SessionBuilder;
use sqlx::Row;

const ORDERS: u64 = 12;

/// `store: done after ...: unit N, queries Q, errors E (...)` → (N, E).
fn summary(stderr: &str, store: &str, unit: &str) -> (u64, u64) {
    let line = stderr
        .lines()
        .find(|line| line.contains(&format!("{store}: done after")))
        .unwrap_or_else(|| panic!("no summary of {store} in:\n{stderr}"));
    let number_after = |word: &str| -> u64 {
        let rest = &line[line
            .find(word)
            .unwrap_or_else(|| panic!("no {word} in {line}"))
            + word.len()..];
        rest.split(|c: char| !c.is_ascii_digit())
            .find(|part| !part.is_empty())
            .and_then(|digits| digits.parse().ok())
            .unwrap_or_else(|| panic!("no number after {word} in {line}"))
    };
    (number_after(&format!(": {unit} ")), number_after("errors "))
}

#[tokio::test(flavor = "multi_thread")]
async fn n_orders_become_n_orders_in_mysql_and_n_sales_in_the_warehouse() {
    let domain = format!("{}.example", unique("it"));
    let mut pg_shop = pg("DBWATCH_PG_ADMIN_URL").await;
    let started: String = sqlx::query_scalar("SELECT now()::text")
        .fetch_one(&mut pg_shop)
        .await
        .expect("now() on the primary");

    let output = run(workload().args([
        "--count",
        &ORDERS.to_string(),
        // 12 ticks at 4/s take at least 2.75 s, so the 1 s progress line is printed before the end.
        "--rate",
        "4",
        "--timeout",
        "30s",
        "--progress-interval",
        "1s",
        "--mysql-email-domain",
        &domain,
    ]));
    let stderr = String::from_utf8_lossy(&output.stderr);
    for (store, unit) in [
        ("mysql", "orders"),
        ("postgres", "sales"),
        ("mongodb", "visits"),
        ("dynamodb", "actions"),
        ("cassandra", "events"),
    ] {
        assert_eq!(
            summary(&stderr, store, unit),
            (ORDERS, 0),
            "{store}, in:\n{stderr}"
        );
    }
    assert!(
        stderr.contains("postgres: sales "),
        "no progress line:\n{stderr}"
    );

    // MariaDB: the run's customers have exactly N orders, each with its captured payment.
    let mut shop = mysql("DBWATCH_MYSQL_ADMIN_URL").await;
    let rows = sqlx::query(
        "SELECT o.customer_id, CAST(o.total_amount * 100 AS SIGNED), count(p.payment_id)
           FROM orders o
           JOIN customers c ON c.customer_id = o.customer_id
           LEFT JOIN payments p ON p.order_id = o.order_id AND p.status = 'captured' AND p.amount = o.total_amount
          WHERE c.email LIKE ?
          GROUP BY o.order_id",
    )
    .bind(format!("%@{domain}"))
    .fetch_all(&mut shop)
    .await
    .expect("the run's orders");
    assert_eq!(rows.len() as u64, ORDERS);
    let mut mysql_orders: BTreeMap<(i64, i64), u32> = BTreeMap::new();
    for row in &rows {
        let customer: i64 = row.try_get(0).expect("customer_id");
        let total: i64 = row.try_get(1).expect("total");
        let payments: i64 = row.try_get(2).expect("payments");
        assert_eq!(
            payments, 1,
            "order of customer {customer} has {payments} payments"
        );
        *mysql_orders.entry((customer, total)).or_default() += 1;
    }

    // PostgreSQL: the same N sales, by customer and amount.
    let customers: Vec<i32> = mysql_orders
        .keys()
        .map(|(customer, _)| *customer as i32)
        .collect();
    let sales = sqlx::query(
        "SELECT customer_id, (total_amount * 100)::int8 FROM analytics.fact_sales
          WHERE customer_id = ANY($1) AND created_at >= $2::timestamptz",
    )
    .bind(&customers)
    .bind(&started)
    .fetch_all(&mut pg_shop)
    .await
    .expect("the run's sales");
    let mut pg_sales: BTreeMap<(i64, i64), u32> = BTreeMap::new();
    for row in &sales {
        let customer: i32 = row.try_get(0).expect("customer_id");
        let total: i64 = row.try_get(1).expect("total");
        *pg_sales.entry((i64::from(customer), total)).or_default() += 1;
    }
    assert_eq!(pg_sales, mysql_orders);

    // MariaDB schema.
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT CAST(TABLE_NAME AS CHAR) FROM information_schema.TABLES WHERE TABLE_SCHEMA = 'shop' ORDER BY 1",
    )
    .fetch_all(&mut shop)
    .await
    .expect("shop's tables");
    for table in ["customers", "inventory", "orders", "payments"] {
        assert!(
            tables.iter().any(|t| t == table),
            "{table} missing: {tables:?}"
        );
    }

    // MongoDB: the catalog's indexes and the seed's product documents.
    let client = mongodb::Client::with_uri_str(env("DBWATCH_MONGODB_URL"))
        .await
        .expect("mongodb client");
    let products = client
        .database("catalog")
        .collection::<mongodb::bson::Document>("products");
    let indexes = products.list_index_names().await.expect("index names");
    for index in ["sku_1", "category.id_1", "search_tags_1"] {
        assert!(
            indexes.iter().any(|name| name == index),
            "{index} missing: {indexes:?}"
        );
    }
    // The whole catalog (`--mongodb-products`, 200 by default), inserted in one batch where missing.
    let last = products
        .find_one(doc! { "sku": "SKU-000200" })
        .await
        .expect("find");
    assert!(last.is_some(), "SKU-000200 missing");
    let product = products
        .find_one(doc! { "sku": "SKU-000001" })
        .await
        .expect("find")
        .expect("SKU-000001 exists");
    assert!(product
        .get_array("search_tags")
        .is_ok_and(|tags| !tags.is_empty()));
    assert_eq!(
        product
            .get_document("category")
            .and_then(|category| category.get_str("path"))
            .ok(),
        Some("electronics/computers/laptops")
    );

    // Cassandra: the event log with two replicas.
    let points: Vec<String> = env("DBWATCH_CASSANDRA_CONTACT_POINTS")
        .split(',')
        .map(str::to_owned)
        .collect();
    let session = SessionBuilder::new()
        .known_nodes(&points)
        .build()
        .await
        .expect("cassandra session");
    let replication = session
        .query_unpaged(
            "SELECT replication FROM system_schema.keyspaces WHERE keyspace_name = 'ecommerce_logs'",
            (),
        )
        .await
        .expect("keyspace")
        .into_rows_result()
        .expect("rows")
        .single_row::<(std::collections::HashMap<String, String>,)>()
        .expect("one keyspace")
        .0;
    assert_eq!(
        replication.get("replication_factor").map(String::as_str),
        Some("2")
    );
    let columns = session
        .query_unpaged(
            "SELECT column_name FROM system_schema.columns WHERE keyspace_name = 'ecommerce_logs' AND table_name = 'user_events'",
            (),
        )
        .await
        .expect("columns")
        .into_rows_result()
        .expect("rows")
        .rows_num();
    assert_eq!(columns, 8);

    // DynamoDB: the three tables with their TTL on.
    let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(env("DBWATCH_AWS_ENDPOINT_URL"))
        .load()
        .await;
    let dynamodb = aws_sdk_dynamodb::Client::new(&config);
    for (table, attribute) in [
        ("UserSessions", "expires_at"),
        ("ShoppingCart", "expires_at"),
        ("Notifications", "ttl"),
    ] {
        let ttl = dynamodb
            .describe_time_to_live()
            .table_name(table)
            .send()
            .await
            .unwrap_or_else(|error| panic!("{table}: {error:?}"));
        let description = ttl.time_to_live_description().expect("a TTL description");
        assert_eq!(
            description.time_to_live_status(),
            Some(&TimeToLiveStatus::Enabled),
            "{table}"
        );
        assert_eq!(description.attribute_name(), Some(attribute), "{table}");
    }
}

#[test]
fn summaries_are_read_back() {
    let stderr = "x INFO mysql: done after 1s: orders 12, queries 0, errors 0 (0 orders, 0 queries), skipped 0";
    assert_eq!(summary(stderr, "mysql", "orders"), (12, 0));
}
