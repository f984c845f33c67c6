//! MySQL/MariaDB: the seed's OLTP flow on database `shop`.
//!
//! An order is one transaction on the primary: the customer (registered on first order, by email), the stock
//! decrement (a product out of stock is restocked by 1000 first, so the demo never runs dry), the order and its
//! captured payment. Once committed, the order's sale goes to the analytics warehouse (PostgreSQL) through a
//! `Sink`, so a slow or dead warehouse never holds up an order. The schema is the fleet's own file,
//! `deploy/local/mariadb/schema.sql`, applied again at start (it is idempotent).

use std::str::FromStr;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use sqlx::mysql::{MySqlConnectOptions, MySqlPool, MySqlPoolOptions};
use sqlx::{ConnectOptions, Connection};

use crate::driver::{Sink, Workload};
use crate::postgres::{Postgres, Sale};

/// The seed's transactional schema: the same file `fleet up` applies.
const SCHEMA: &str = include_str!("../../deploy/local/mariadb/schema.sql");

#[derive(Args, Debug, Clone)]
#[command(next_help_heading = "MySQL/MariaDB")]
pub struct MysqlArgs {
    /// URL of the primary's `shop` database (an account that may create it).
    #[arg(
        id = "mysql_url",
        long = "mysql-url",
        value_name = "URL",
        env = "DBWATCH_MYSQL_ADMIN_URL",
        hide_env_values = true
    )]
    pub url: Option<String>,

    /// Connections in the order pool.
    #[arg(
        id = "mysql_connections",
        long = "mysql-connections",
        value_name = "N",
        default_value_t = 8
    )]
    pub connections: u32,

    /// Customers are drawn from 1..=N (registered on their first order).
    #[arg(
        id = "mysql_customers",
        long = "mysql-customers",
        value_name = "N",
        default_value_t = 10_000
    )]
    pub customers: u32,

    /// Products are drawn from 1..=N (stocked on their first order).
    #[arg(
        id = "mysql_products",
        long = "mysql-products",
        value_name = "N",
        default_value_t = 500
    )]
    pub products: i32,

    /// Domain of the customers' email addresses; a run with its own domain has its own customers.
    #[arg(
        long = "mysql-email-domain",
        value_name = "DOMAIN",
        default_value = "shop.example"
    )]
    pub email_domain: String,
}

const UPSERT_CUSTOMER: &str = "\
INSERT INTO customers (email, password_hash, first_name, last_name)
VALUES (?, ?, ?, ?)
ON DUPLICATE KEY UPDATE customer_id = LAST_INSERT_ID(customer_id)";

/// Out of stock: restock by 1000, then take the order's quantity.
const TAKE_STOCK: &str = "\
INSERT INTO inventory (product_id, sku, quantity) VALUES (?, ?, 1000 - ?)
ON DUPLICATE KEY UPDATE quantity = IF(quantity >= ?, quantity, quantity + 1000) - ?";

const INSERT_ORDER: &str = "\
INSERT INTO orders (customer_id, order_status, total_amount) VALUES (?, 'confirmed', ? / 100)";

const INSERT_PAYMENT: &str = "\
INSERT INTO payments (order_id, amount, status) VALUES (?, ? / 100, 'captured')";

const ORDERS_LAST_HOUR: &str = "\
SELECT order_status, count(*), sum(total_amount)
  FROM orders
 WHERE created_at >= NOW() - INTERVAL 1 HOUR
 GROUP BY order_status";

const LOW_STOCK: &str = "\
SELECT product_id, sku, quantity FROM inventory ORDER BY quantity LIMIT 20";

const ANALYTICS: [(&str, &str); 2] = [
    ("orders_last_hour", ORDERS_LAST_HOUR),
    ("low_stock", LOW_STOCK),
];
const ANALYTICS_NAMES: &[&str] = &[ANALYTICS[0].0, ANALYTICS[1].0];

pub struct Mysql {
    pool: MySqlPool,
    /// The server without a default database, for the schema (which creates `shop`).
    server: MySqlConnectOptions,
    customers: u32,
    products: i32,
    email_domain: String,
    sales: Option<Sink<Postgres>>,
}

impl Mysql {
    /// Builds the pool; connections open on first use.
    pub fn new(
        args: &MysqlArgs,
        timeout: Duration,
        sales: Option<Sink<Postgres>>,
    ) -> anyhow::Result<Self> {
        let url = args.url.as_deref().filter(|url| !url.is_empty()).context(
            "no MySQL URL: pass --mysql-url or set DBWATCH_MYSQL_ADMIN_URL \
             (eval \"$(deploy/local/fleet env)\" sets it for the local fleet)",
        )?;
        anyhow::ensure!(
            args.connections >= 1,
            "--mysql-connections must be at least 1"
        );
        anyhow::ensure!(
            args.customers >= 1 && args.products >= 1,
            "--mysql-customers and --mysql-products must be at least 1"
        );
        let options =
            MySqlConnectOptions::from_str(url).context("--mysql-url is not a valid MySQL URL")?;
        let server = MySqlConnectOptions::from_str(&server_url(url))
            .context("--mysql-url is not a valid MySQL URL")?;
        let options = if options.get_database().is_none() {
            options.database("shop")
        } else {
            options
        };
        tracing::info!(
            "mysql: orders via {}@{}:{}/{}",
            options.get_username(),
            options.get_host(),
            options.get_port(),
            options.get_database().unwrap_or("")
        );
        let pool = MySqlPoolOptions::new()
            .max_connections(args.connections)
            .acquire_timeout(timeout)
            .connect_lazy_with(options);
        Ok(Mysql {
            pool,
            server,
            customers: args.customers,
            products: args.products,
            email_domain: args.email_domain.clone(),
            sales,
        })
    }

    /// Waits for the sales in flight to the warehouse, then closes the pool.
    pub async fn close(&self, drain: Duration) {
        if let Some(sales) = &self.sales {
            sales.drain(drain).await;
        }
        self.pool.close().await;
    }
}

/// The URL without its database path (and query), e.g. `mysql://u:p@h:1/shop` → `mysql://u:p@h:1/`.
fn server_url(url: &str) -> String {
    let after_scheme = url.find("://").map_or(0, |at| at + 3);
    match url[after_scheme..].find('/') {
        Some(slash) => url[..after_scheme + slash + 1].to_owned(),
        None => format!("{url}/"),
    }
}

/// The statements of a SQL script: `--` comments dropped, split on `;` (the fleet's scripts have no `;` inside
/// strings or bodies).
pub fn statements(script: &str) -> Vec<String> {
    let without_comments: String = script
        .lines()
        .map(|line| match line.find("--") {
            Some(at) => &line[..at],
            None => line,
        })
        .collect::<Vec<_>>()
        .join("\n");
    without_comments
        .split(';')
        .map(str::trim)
        .filter(|statement| !statement.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Customer `n`'s registration values.
fn customer(n: u32, domain: &str) -> (String, String, String) {
    const FIRST: [&str; 8] = [
        "Ana", "Luis", "Marta", "Jorge", "Lucia", "Pablo", "Sofia", "Diego",
    ];
    const LAST: [&str; 8] = [
        "Garcia", "Lopez", "Martin", "Sanchez", "Perez", "Gomez", "Ruiz", "Diaz",
    ];
    (
        format!("customer{n}@{domain}"),
        FIRST[n as usize % FIRST.len()].to_owned(),
        LAST[(n as usize / FIRST.len()) % LAST.len()].to_owned(),
    )
}

impl Workload for Mysql {
    fn name(&self) -> &'static str {
        "mysql"
    }

    async fn prepare(&self) -> anyhow::Result<()> {
        // One connection of its own: the script's `USE shop` must apply to the statements after it.
        let mut connection = self.server.connect().await.context("connect")?;
        for statement in statements(SCHEMA) {
            // The fleet's own script, compiled in.
            sqlx::raw_sql(sqlx::AssertSqlSafe(statement.as_str()))
                .execute(&mut connection)
                .await
                .with_context(|| {
                    format!("applying deploy/local/mariadb/schema.sql: {statement}")
                })?;
        }
        connection.close().await?;
        Ok(())
    }

    async fn tick(&self) -> anyhow::Result<()> {
        let (n, mut sale) = {
            let mut rng = rand::rng();
            let n = rand::RngExt::random_range(&mut rng, 1..=self.customers);
            (n, Sale::random(i32::MAX, self.products))
        };
        let (email, first_name, last_name) = customer(n, &self.email_domain);
        let mut tx = self.pool.begin().await.context("begin")?;
        let customer_id = sqlx::query(UPSERT_CUSTOMER)
            .bind(&email)
            .bind("$argon2id$v=19$m=65536,t=3,p=4$workload")
            .bind(&first_name)
            .bind(&last_name)
            .execute(&mut *tx)
            .await
            .context("upsert into customers")?
            .last_insert_id();
        sqlx::query(TAKE_STOCK)
            .bind(sale.product_id)
            .bind(format!("SKU-{:06}", sale.product_id))
            .bind(sale.quantity)
            .bind(sale.quantity)
            .bind(sale.quantity)
            .execute(&mut *tx)
            .await
            .context("update inventory")?;
        let order_id = sqlx::query(INSERT_ORDER)
            .bind(customer_id)
            .bind(sale.total_cents)
            .execute(&mut *tx)
            .await
            .context("insert into orders")?
            .last_insert_id();
        sqlx::query(INSERT_PAYMENT)
            .bind(order_id)
            .bind(sale.total_cents)
            .execute(&mut *tx)
            .await
            .context("insert into payments")?;
        tx.commit().await.context("commit")?;
        if let Some(sales) = &self.sales {
            // The warehouse keys customers by the OLTP id.
            sale.customer_id = i32::try_from(customer_id).with_context(|| {
                format!("customer id {customer_id} does not fit the warehouse's INT")
            })?;
            sale.segment = crate::postgres::segment_of(sale.customer_id);
            sales.submit(sale);
        }
        Ok(())
    }

    fn analytics_queries(&self) -> &'static [&'static str] {
        ANALYTICS_NAMES
    }

    async fn analytics(&self, index: usize) -> anyhow::Result<()> {
        let (name, sql) = *ANALYTICS
            .get(index)
            .with_context(|| format!("no analytics query #{index}"))?;
        let rows = sqlx::raw_sql(sql).fetch_all(&self.pool).await?;
        tracing::debug!("mysql: {name} returned {} rows", rows.len());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_server_url_drops_the_database() {
        assert_eq!(
            server_url("mysql://fleet_admin:admin@127.0.0.1:13306/shop"),
            "mysql://fleet_admin:admin@127.0.0.1:13306/"
        );
        assert_eq!(server_url("mysql://u:p@h:1"), "mysql://u:p@h:1/");
        assert_eq!(server_url("mysql://u:p@h:1/"), "mysql://u:p@h:1/");
    }

    #[test]
    fn the_fleet_schema_splits_into_its_statements() {
        let statements = statements(SCHEMA);
        assert!(statements[0].starts_with("CREATE DATABASE IF NOT EXISTS shop"));
        assert_eq!(statements[1], "USE shop");
        for table in ["customers", "orders", "inventory", "payments"] {
            assert!(
                statements
                    .iter()
                    .any(|s| s.starts_with(&format!("CREATE TABLE IF NOT EXISTS {table} "))),
                "{table} missing from {statements:?}"
            );
        }
        assert!(statements.iter().all(|s| !s.contains("--")));
    }

    #[test]
    fn customers_are_fixed_per_number_and_domain() {
        assert_eq!(
            customer(9, "run.example"),
            (
                "customer9@run.example".into(),
                "Luis".into(),
                "Lopez".into()
            )
        );
    }
}
