//! PostgreSQL: the seed's analytics flow on database `shop`, schema `analytics`.
//!
//! A sale (an order placed in MySQL, or on its own when MySQL is not driven) inserts one row into
//! `analytics.fact_sales` and adds its total to the customer's lifetime value in `analytics.dim_customers`
//! (created on the customer's first order), in one transaction, through PgBouncer. The schema is the fleet's
//! own file, `deploy/local/postgres/schema.sql`, applied again at start (it is idempotent).
//! The analytics reads (revenue by segment over 30 days, a monthly cohort report) go to the replica when one is
//! given, else through the same PgBouncer.
//!
//! PgBouncer runs in transaction pooling mode, where a server connection belongs to a client only for the
//! length of a transaction. So: the order's statements run inside an explicit transaction and are never
//! prepared under a name (`persistent(false)`: a named statement would be left on whichever server connection
//! happened to serve it), and the analytics queries, which have no parameters, use the simple query protocol.

use std::str::FromStr;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use rand::RngExt;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{ConnectOptions, Connection};

use crate::driver::{FollowUp, Workload};

/// The seed's analytics schema: the same file `fleet up` applies.
const SCHEMA: &str = include_str!("../../deploy/local/postgres/schema.sql");

#[derive(Args, Debug, Clone)]
#[command(next_help_heading = "PostgreSQL")]
pub struct PostgresArgs {
    /// URL the orders go to, normally PgBouncer's `shop` database.
    #[arg(
        long = "pg-url",
        value_name = "URL",
        env = "DBWATCH_PGBOUNCER_SHOP_URL",
        hide_env_values = true
    )]
    pub url: Option<String>,

    /// URL of a streaming replica for the analytics reads; they go to --pg-url when none is given. The replica
    /// is read in --pg-url's database (`shop`), whichever database this URL names (the fleet's names `postgres`).
    #[arg(
        long = "pg-replica-url",
        value_name = "URL",
        env = "DBWATCH_PG_REPLICA_ADMIN_URL",
        hide_env_values = true
    )]
    pub replica_url: Option<String>,

    /// Run the analytics reads through --pg-url even when a replica URL is set.
    #[arg(long = "pg-no-replica")]
    pub no_replica: bool,

    /// Connections in the order pool (PgBouncer's pool for `shop` has 10 server connections).
    #[arg(long = "pg-connections", value_name = "N", default_value_t = 8)]
    pub connections: u32,

    /// Customers are drawn from 1..=N.
    #[arg(long = "pg-customers", value_name = "N", default_value_t = 10_000)]
    pub customers: i32,

    /// Products are drawn from 1..=N.
    #[arg(long = "pg-products", value_name = "N", default_value_t = 500)]
    pub products: i32,
}

const INSERT_SALE: &str = "\
INSERT INTO analytics.fact_sales (customer_id, product_id, order_date, quantity, unit_price, total_amount)
VALUES ($1, $2, CURRENT_DATE, $3, $4::numeric / 100, $5::numeric / 100)";

/// A first order registers the customer (segment and registration date fixed per customer, so cohorts are
/// stable); every order adds its total to the lifetime value.
const UPSERT_CUSTOMER: &str = "\
INSERT INTO analytics.dim_customers AS c (customer_id, customer_segment, registration_date, lifetime_value, last_updated)
VALUES ($1, $2, CURRENT_DATE - $3::int, $4::numeric / 100, CURRENT_TIMESTAMP)
ON CONFLICT (customer_id) DO UPDATE
   SET lifetime_value = COALESCE(c.lifetime_value, 0) + EXCLUDED.lifetime_value,
       last_updated = EXCLUDED.last_updated";

const REVENUE_BY_SEGMENT: &str = "\
SELECT COALESCE(c.customer_segment, 'unknown') AS segment,
       count(*) AS orders,
       count(DISTINCT s.customer_id) AS customers,
       sum(s.total_amount) AS revenue,
       avg(s.total_amount) AS avg_order_value
  FROM analytics.fact_sales s
  LEFT JOIN analytics.dim_customers c ON c.customer_id = s.customer_id
 WHERE s.order_date >= CURRENT_DATE - 30
 GROUP BY 1
 ORDER BY revenue DESC";

const COHORT: &str = "\
SELECT date_trunc('month', c.registration_date)::date AS cohort,
       count(DISTINCT c.customer_id) AS customers,
       count(s.sale_id) AS orders_30d,
       COALESCE(sum(s.total_amount), 0) AS revenue_30d,
       round(avg(c.lifetime_value), 2) AS avg_lifetime_value
  FROM analytics.dim_customers c
  LEFT JOIN analytics.fact_sales s
    ON s.customer_id = c.customer_id AND s.order_date >= CURRENT_DATE - 30
 GROUP BY 1
 ORDER BY 1";

/// The analytics queries by name, run in turn.
const ANALYTICS: [(&str, &str); 2] = [
    ("revenue_by_segment", REVENUE_BY_SEGMENT),
    ("cohort", COHORT),
];
const ANALYTICS_NAMES: &[&str] = &[ANALYTICS[0].0, ANALYTICS[1].0];

pub struct Postgres {
    orders: PgPool,
    /// The replica's pool, or a second pool on the order URL.
    reads: PgPool,
    customers: i32,
    products: i32,
}

impl Postgres {
    /// Builds the pools; connections open on first use, so a server that is still starting is not fatal.
    pub fn new(args: &PostgresArgs, timeout: Duration) -> anyhow::Result<Self> {
        let url = args.url.as_deref().filter(|url| !url.is_empty()).context(
            "no PostgreSQL URL: pass --pg-url or set DBWATCH_PGBOUNCER_SHOP_URL \
             (eval \"$(deploy/local/fleet env)\" sets it for the local fleet)",
        )?;
        anyhow::ensure!(args.connections >= 1, "--pg-connections must be at least 1");
        anyhow::ensure!(
            args.customers >= 1 && args.products >= 1,
            "--pg-customers and --pg-products must be at least 1"
        );
        let order_options = PgConnectOptions::from_str(url)
            .context("--pg-url is not a valid PostgreSQL URL")?
            .application_name("dbwatch-workload");
        let database = order_options.get_database().unwrap_or("shop").to_owned();
        let orders = PgPoolOptions::new()
            .max_connections(args.connections)
            .acquire_timeout(timeout)
            .connect_lazy_with(order_options.clone());
        tracing::info!("postgres: orders via {}", describe(&order_options));

        let replica_url = args
            .replica_url
            .as_deref()
            .filter(|url| !url.is_empty() && !args.no_replica);
        let (read_options, where_) = match replica_url {
            Some(url) => (
                PgConnectOptions::from_str(url)
                    .context("--pg-replica-url is not a valid PostgreSQL URL")?
                    .database(&database)
                    .application_name("dbwatch-workload-analytics"),
                "replica",
            ),
            None => (
                order_options.application_name("dbwatch-workload-analytics"),
                "the order URL",
            ),
        };
        tracing::info!(
            "postgres: analytics reads on {} ({where_})",
            describe(&read_options)
        );
        // Analytics queries run one at a time.
        let reads = PgPoolOptions::new()
            .max_connections(1)
            .acquire_timeout(timeout)
            .connect_lazy_with(read_options);

        Ok(Postgres {
            orders,
            reads,
            customers: args.customers,
            products: args.products,
        })
    }

    /// Checks both servers and the schema once, on a connection of its own (a pool would only say "timed
    /// out"), to say early what is wrong. Never fatal: the run starts anyway and counts the errors.
    pub async fn probe(&self) {
        tokio::join!(
            probe_one("orders", &self.orders),
            probe_one("analytics", &self.reads)
        );
    }
}

async fn probe_one(name: &str, pool: &PgPool) {
    let check = async {
        let mut connection = pool.connect_options().connect().await?;
        sqlx::raw_sql("SELECT 1 FROM analytics.fact_sales, analytics.dim_customers LIMIT 0")
            .execute(&mut connection)
            .await?;
        connection.close().await
    };
    match tokio::time::timeout(Duration::from_secs(5), check).await {
        Ok(Ok(())) => {}
        Ok(Err(error)) => tracing::warn!(
            "postgres: {name} connection not usable (carrying on, errors are counted): {error}"
        ),
        Err(_) => tracing::warn!(
            "postgres: {name} connection did not answer within 5s (carrying on, errors are counted)"
        ),
    }
}

/// `user@host:port/database`, never the password.
fn describe(options: &PgConnectOptions) -> String {
    format!(
        "{}@{}:{}/{}",
        options.get_username(),
        options.get_host(),
        options.get_port(),
        options.get_database().unwrap_or("")
    )
}

/// One sale's values, drawn before the first await (the thread-local generator is not `Send`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sale {
    pub customer_id: i32,
    pub product_id: i32,
    pub quantity: i32,
    pub unit_price_cents: i64,
    pub total_cents: i64,
    pub segment: &'static str,
    /// Days between the customer's registration and today.
    pub registered_days_ago: i32,
}

impl Sale {
    pub fn random(customers: i32, products: i32) -> Self {
        let mut rng = rand::rng();
        let customer_id = rng.random_range(1..=customers);
        let quantity = rng.random_range(1..=5);
        let unit_price_cents = rng.random_range(199..=49_999);
        Sale {
            customer_id,
            product_id: rng.random_range(1..=products),
            quantity,
            unit_price_cents,
            total_cents: unit_price_cents * i64::from(quantity),
            segment: segment_of(customer_id),
            // Spread over two years, fixed per customer.
            registered_days_ago: customer_id.wrapping_mul(7919).rem_euclid(730),
        }
    }
}

/// 10 % premium, 30 % standard, 60 % basic; fixed per customer.
pub fn segment_of(customer_id: i32) -> &'static str {
    match customer_id.rem_euclid(10) {
        0 => "premium",
        1..=3 => "standard",
        _ => "basic",
    }
}

impl Postgres {
    async fn insert_sale(&self, order: Sale) -> anyhow::Result<()> {
        let mut tx = self.orders.begin().await.context("begin")?;
        sqlx::query(INSERT_SALE)
            .persistent(false)
            .bind(order.customer_id)
            .bind(order.product_id)
            .bind(order.quantity)
            .bind(order.unit_price_cents)
            .bind(order.total_cents)
            .execute(&mut *tx)
            .await
            .context("insert into analytics.fact_sales")?;
        sqlx::query(UPSERT_CUSTOMER)
            .persistent(false)
            .bind(order.customer_id)
            .bind(order.segment)
            .bind(order.registered_days_ago)
            .bind(order.total_cents)
            .execute(&mut *tx)
            .await
            .context("upsert into analytics.dim_customers")?;
        tx.commit().await.context("commit")?;
        Ok(())
    }

    pub async fn close(&self) {
        self.orders.close().await;
        self.reads.close().await;
    }
}

impl FollowUp for Postgres {
    type Item = Sale;

    async fn write(&self, sale: Sale) -> anyhow::Result<()> {
        self.insert_sale(sale).await
    }
}

impl Workload for Postgres {
    fn name(&self) -> &'static str {
        "postgres"
    }

    async fn prepare(&self) -> anyhow::Result<()> {
        // One multi-statement simple query: a single round trip, and no prepared statement left on a pooled
        // server connection.
        sqlx::raw_sql(SCHEMA)
            .execute(&self.orders)
            .await
            .context("applying deploy/local/postgres/schema.sql")?;
        Ok(())
    }

    async fn tick(&self) -> anyhow::Result<()> {
        self.insert_sale(Sale::random(self.customers, self.products))
            .await
    }

    fn analytics_queries(&self) -> &'static [&'static str] {
        ANALYTICS_NAMES
    }

    async fn analytics(&self, index: usize) -> anyhow::Result<()> {
        let (name, sql) = *ANALYTICS
            .get(index)
            .with_context(|| format!("no analytics query #{index}"))?;
        let rows = sqlx::raw_sql(sql).fetch_all(&self.reads).await?;
        tracing::debug!("postgres: {name} returned {} rows", rows.len());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn orders_stay_in_range_and_add_up() {
        for _ in 0..1000 {
            let order = Sale::random(50, 7);
            assert!((1..=50).contains(&order.customer_id));
            assert!((1..=7).contains(&order.product_id));
            assert!((1..=5).contains(&order.quantity));
            assert_eq!(
                order.total_cents,
                order.unit_price_cents * i64::from(order.quantity)
            );
            assert!((0..730).contains(&order.registered_days_ago));
            assert_eq!(order.segment, segment_of(order.customer_id));
        }
    }

    #[test]
    fn segments_are_fixed_per_customer() {
        assert_eq!(segment_of(10), "premium");
        assert_eq!(segment_of(12), "standard");
        assert_eq!(segment_of(17), "basic");
    }

    #[test]
    fn the_description_has_no_password() {
        let options =
            PgConnectOptions::from_str("postgres://fleet_admin:s3cret@127.0.0.1:16432/shop")
                .expect("valid url");
        let text = describe(&options);
        assert_eq!(text, "fleet_admin@127.0.0.1:16432/shop");
        assert!(!text.contains("s3cret"));
    }

    #[test]
    fn the_replica_is_read_in_the_order_database() {
        let args = PostgresArgs {
            url: Some("postgres://a:b@127.0.0.1:16432/shop".into()),
            replica_url: Some("postgres://a:b@127.0.0.1:15433/postgres".into()),
            no_replica: false,
            connections: 2,
            customers: 10,
            products: 10,
        };
        // connect_lazy_with needs a runtime, but opens nothing.
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let workload = runtime
            .block_on(async { Postgres::new(&args, Duration::from_secs(1)) })
            .expect("valid args");
        let options = workload.reads.connect_options();
        assert_eq!(options.get_port(), 15433);
        assert_eq!(options.get_database(), Some("shop"));
    }

    #[test]
    fn a_missing_url_is_an_error_that_says_what_to_do() {
        let args = PostgresArgs {
            url: None,
            replica_url: None,
            no_replica: false,
            connections: 2,
            customers: 10,
            products: 10,
        };
        let error = Postgres::new(&args, Duration::from_secs(1))
            .err()
            .expect("an error");
        assert!(format!("{error}").contains("DBWATCH_PGBOUNCER_SHOP_URL"));
    }
}
