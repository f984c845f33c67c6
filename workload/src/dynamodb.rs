//! DynamoDB (moto locally): the seed's low-latency state, tables UserSessions, ShoppingCart and Notifications
//! with their TTLs (24 hours, 30 days, 90 days). The tables are created at start when missing, exactly as the
//! fleet's `deploy/local/moto/seed.py` creates them (same keys, index and capacities), and TTL is enabled when off.
//!
//! A tick is a user action: a session refresh, then a cart change or a cart read, now and then a notification;
//! each action is also logged as an event in Cassandra (a `Sink`), the seed's "User Action (DynamoDB) → Event
//! Bus → Log Event (Cassandra)".

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region};
use aws_sdk_dynamodb::error::DisplayErrorContext;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, GlobalSecondaryIndex, KeySchemaElement,
    KeyType, Projection, ProjectionType, ProvisionedThroughput, ScalarAttributeType,
    TimeToLiveSpecification, TimeToLiveStatus,
};
use aws_sdk_dynamodb::Client;
use clap::Args;
use rand::RngExt;
use uuid::Uuid;

use crate::cassandra::{Cassandra, UserEvent};
use crate::driver::{Sink, Workload};

#[derive(Args, Debug, Clone)]
#[command(next_help_heading = "DynamoDB")]
pub struct DynamodbArgs {
    /// Endpoint of a DynamoDB-compatible server (moto locally); AWS itself when unset. Region and credentials
    /// come from the standard AWS chain (AWS_REGION, AWS_ACCESS_KEY_ID, ...).
    #[arg(
        long = "aws-endpoint-url",
        value_name = "URL",
        env = "DBWATCH_AWS_ENDPOINT_URL"
    )]
    pub endpoint_url: Option<String>,
}

/// One table of the seed: name, sort key, TTL attribute, time to live, capacities (read, write).
pub struct TableSpec {
    pub name: &'static str,
    pub sort_key: &'static str,
    pub ttl_attribute: &'static str,
    pub ttl: Duration,
    pub capacity: (i64, i64),
}

const DAY: u64 = 86_400;

pub const TABLES: [TableSpec; 3] = [
    TableSpec {
        name: "UserSessions",
        sort_key: "session_id",
        ttl_attribute: "expires_at",
        ttl: Duration::from_secs(DAY),
        capacity: (100, 50),
    },
    TableSpec {
        name: "ShoppingCart",
        sort_key: "product_id",
        ttl_attribute: "expires_at",
        ttl: Duration::from_secs(30 * DAY),
        capacity: (50, 50),
    },
    TableSpec {
        name: "Notifications",
        sort_key: "notification_id",
        ttl_attribute: "ttl",
        ttl: Duration::from_secs(90 * DAY),
        capacity: (25, 25),
    },
];

/// The AWS SDK config of the fleet (or of AWS), bounded like every other call of the workload.
pub async fn sdk_config(endpoint_url: Option<&str>, timeout: Duration) -> aws_config::SdkConfig {
    let mut loader = aws_config::defaults(BehaviorVersion::latest()).timeout_config(
        TimeoutConfig::builder()
            .connect_timeout(timeout)
            .operation_timeout(timeout)
            .build(),
    );
    if std::env::var_os("AWS_REGION").is_none() && std::env::var_os("AWS_DEFAULT_REGION").is_none()
    {
        loader = loader.region(Region::new("us-east-1"));
    }
    if let Some(url) = endpoint_url.filter(|url| !url.is_empty()) {
        loader = loader.endpoint_url(url);
    }
    loader.load().await
}

fn aws_error(error: impl std::error::Error) -> anyhow::Error {
    anyhow::anyhow!("{}", DisplayErrorContext(error))
}

fn string_key(name: &str, key_type: KeyType) -> anyhow::Result<KeySchemaElement> {
    Ok(KeySchemaElement::builder()
        .attribute_name(name)
        .key_type(key_type)
        .build()?)
}

fn string_attribute(name: &str) -> anyhow::Result<AttributeDefinition> {
    Ok(AttributeDefinition::builder()
        .attribute_name(name)
        .attribute_type(ScalarAttributeType::S)
        .build()?)
}

fn throughput((read, write): (i64, i64)) -> anyhow::Result<ProvisionedThroughput> {
    Ok(ProvisionedThroughput::builder()
        .read_capacity_units(read)
        .write_capacity_units(write)
        .build()?)
}

/// Seconds since the epoch, `after` from now: the TTL attribute's format.
fn expires(after: Duration) -> String {
    let at = SystemTime::now() + after;
    at.duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_secs())
        .to_string()
}

pub struct Dynamodb {
    client: Client,
    users: u32,
    products: u32,
    events: Option<Sink<Cassandra>>,
}

impl Dynamodb {
    pub async fn new(
        args: &DynamodbArgs,
        timeout: Duration,
        users: u32,
        products: u32,
        events: Option<Sink<Cassandra>>,
    ) -> anyhow::Result<Self> {
        let config = sdk_config(args.endpoint_url.as_deref(), timeout).await;
        tracing::info!(
            "dynamodb: sessions on {} ({})",
            args.endpoint_url.as_deref().unwrap_or("AWS"),
            config
                .region()
                .map_or("no region", |region| region.as_ref())
        );
        Ok(Dynamodb {
            client: Client::new(&config),
            users,
            products,
            events,
        })
    }

    /// Waits for the events in flight to Cassandra.
    pub async fn close(&self, drain: Duration) {
        if let Some(events) = &self.events {
            events.drain(drain).await;
        }
    }

    async fn ensure_table(&self, spec: &TableSpec) -> anyhow::Result<()> {
        let exists = match self
            .client
            .describe_table()
            .table_name(spec.name)
            .send()
            .await
        {
            Ok(_) => true,
            Err(error)
                if error
                    .as_service_error()
                    .is_some_and(|e| e.is_resource_not_found_exception()) =>
            {
                false
            }
            Err(error) => {
                return Err(aws_error(error)).context(format!("describe table {}", spec.name))
            }
        };
        if !exists {
            let mut create = self
                .client
                .create_table()
                .table_name(spec.name)
                .attribute_definitions(string_attribute("user_id")?)
                .attribute_definitions(string_attribute(spec.sort_key)?)
                .key_schema(string_key("user_id", KeyType::Hash)?)
                .key_schema(string_key(spec.sort_key, KeyType::Range)?)
                .billing_mode(BillingMode::Provisioned)
                .provisioned_throughput(throughput(spec.capacity)?);
            if spec.name == "UserSessions" {
                create = create.global_secondary_indexes(
                    GlobalSecondaryIndex::builder()
                        .index_name("SessionIdIndex")
                        .key_schema(string_key("session_id", KeyType::Hash)?)
                        .projection(
                            Projection::builder()
                                .projection_type(ProjectionType::All)
                                .build(),
                        )
                        .provisioned_throughput(throughput((50, 25))?)
                        .build()?,
                );
            }
            match create.send().await {
                Ok(_) => tracing::info!("dynamodb: table {} created", spec.name),
                // Created by someone else in between.
                Err(error)
                    if error
                        .as_service_error()
                        .is_some_and(|e| e.is_resource_in_use_exception()) => {}
                Err(error) => {
                    return Err(aws_error(error)).context(format!("create table {}", spec.name))
                }
            }
        }
        let ttl = self
            .client
            .describe_time_to_live()
            .table_name(spec.name)
            .send()
            .await
            .map_err(aws_error)
            .with_context(|| format!("describe the TTL of {}", spec.name))?;
        let status = ttl
            .time_to_live_description()
            .and_then(|description| description.time_to_live_status());
        if !matches!(
            status,
            Some(TimeToLiveStatus::Enabled | TimeToLiveStatus::Enabling)
        ) {
            self.client
                .update_time_to_live()
                .table_name(spec.name)
                .time_to_live_specification(
                    TimeToLiveSpecification::builder()
                        .enabled(true)
                        .attribute_name(spec.ttl_attribute)
                        .build()?,
                )
                .send()
                .await
                .map_err(aws_error)
                .with_context(|| format!("enable the TTL of {}", spec.name))?;
        }
        Ok(())
    }
}

fn s(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

fn n(value: impl ToString) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

impl Workload for Dynamodb {
    fn name(&self) -> &'static str {
        "dynamodb"
    }

    async fn prepare(&self) -> anyhow::Result<()> {
        for spec in &TABLES {
            self.ensure_table(spec).await?;
        }
        Ok(())
    }

    async fn tick(&self) -> anyhow::Result<()> {
        let (user, product, quantity, action, session_id, notify) = {
            let mut rng = rand::rng();
            (
                rng.random_range(1..=self.users),
                rng.random_range(1..=self.products),
                rng.random_range(1..=3u32),
                rng.random_range(0..2u32),
                Uuid::from_u128(rng.random()),
                rng.random_range(0..10u32) == 0,
            )
        };
        let user_id = format!("user{user}");
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |since| since.as_millis());
        let [sessions, carts, notifications] = &TABLES;

        self.client
            .put_item()
            .table_name(sessions.name)
            .item("user_id", s(&user_id))
            .item("session_id", s(session_id.to_string()))
            .item("session_timestamp", n(now_ms))
            .item("device", s("web"))
            .item(sessions.ttl_attribute, n(expires(sessions.ttl)))
            .send()
            .await
            .map_err(aws_error)
            .context("put a session")?;

        let sku = crate::mongodb::sku(product);
        let event_type = if action == 0 {
            self.client
                .put_item()
                .table_name(carts.name)
                .item("user_id", s(&user_id))
                .item("product_id", s(&sku))
                .item("quantity", n(quantity))
                .item("added_at", n(now_ms))
                .item(carts.ttl_attribute, n(expires(carts.ttl)))
                .send()
                .await
                .map_err(aws_error)
                .context("put a cart item")?;
            "add_to_cart"
        } else {
            self.client
                .query()
                .table_name(carts.name)
                .key_condition_expression("user_id = :u")
                .expression_attribute_values(":u", s(&user_id))
                .send()
                .await
                .map_err(aws_error)
                .context("read a cart")?;
            "view_cart"
        };

        if notify {
            self.client
                .put_item()
                .table_name(notifications.name)
                .item("user_id", s(&user_id))
                .item(
                    "notification_id",
                    s(Uuid::from_u128(session_id.as_u128() ^ 1).to_string()),
                )
                .item("message", s("Your cart is waiting"))
                .item(notifications.ttl_attribute, n(expires(notifications.ttl)))
                .send()
                .await
                .map_err(aws_error)
                .context("put a notification")?;
        }

        if let Some(events) = &self.events {
            events.submit(UserEvent {
                user,
                session_id,
                event_type,
                data: HashMap::from([
                    ("sku".to_owned(), sku),
                    ("quantity".to_owned(), quantity.to_string()),
                ]),
                at: SystemTime::now(),
            });
        }
        Ok(())
    }

    fn analytics_queries(&self) -> &'static [&'static str] {
        &[]
    }

    async fn analytics(&self, _index: usize) -> anyhow::Result<()> {
        Ok(())
    }
}
