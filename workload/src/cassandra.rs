//! Cassandra: the seed's event log, `ecommerce_logs.user_events` (keyspace with replication factor 2, one
//! replica per node of the local cluster). The schema is the fleet's own file, `deploy/local/cassandra/schema.cql`
//! (its `ecommerce_logs` statements), applied again at start.
//!
//! Events arrive from the user actions of the DynamoDB flow (a `Sink`), or, when DynamoDB is not driven, one per
//! tick. Writes use the seed's consistency level, QUORUM by default: with two replicas that is both, so a node
//! down fails every write, as the seed's configuration would.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use clap::{Args, ValueEnum};
use rand::RngExt;
use scylla::client::session::Session;
use scylla::client::session_builder::SessionBuilder;
use scylla::statement::prepared::PreparedStatement;
use scylla::statement::Consistency;
use scylla::value::{CqlDate, CqlTimestamp};
use tokio::sync::OnceCell;
use uuid::Uuid;

use crate::driver::{FollowUp, Workload};

/// The fleet's CQL schema; only its `ecommerce_logs` statements are the workload's.
const SCHEMA: &str = include_str!("../../deploy/local/cassandra/schema.cql");

#[derive(Args, Debug, Clone)]
#[command(next_help_heading = "Cassandra")]
pub struct CassandraArgs {
    /// Contact points, host:port, comma-separated.
    #[arg(
        long = "cassandra-contact-points",
        value_name = "HOST:PORT,...",
        env = "DBWATCH_CASSANDRA_CONTACT_POINTS",
        value_delimiter = ','
    )]
    pub contact_points: Vec<String>,

    /// Consistency level of the event writes and reads (the seed's is QUORUM).
    #[arg(long = "cassandra-consistency", value_enum, default_value_t = Level::Quorum)]
    pub consistency: Level,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    One,
    Quorum,
    All,
}

impl Level {
    fn consistency(self) -> Consistency {
        match self {
            Level::One => Consistency::One,
            Level::Quorum => Consistency::Quorum,
            Level::All => Consistency::All,
        }
    }
}

const INSERT: &str = "\
INSERT INTO ecommerce_logs.user_events
  (user_id, event_date, event_time, event_type, event_data, session_id, ip_address, user_agent)
VALUES (?, ?, ?, ?, ?, ?, ?, ?)";

const RECENT: &str = "\
SELECT event_time, event_type FROM ecommerce_logs.user_events
 WHERE user_id = ? AND event_date = ? LIMIT 20";

/// One entry of the event log.
#[derive(Debug, Clone, PartialEq)]
pub struct UserEvent {
    pub user: u32,
    pub session_id: Uuid,
    pub event_type: &'static str,
    pub data: HashMap<String, String>,
    pub at: SystemTime,
}

/// User `n`'s id in every store: fixed, so the same shopper's sessions and events line up.
pub fn user_uuid(n: u32) -> Uuid {
    // "dbwatch\0" then the number.
    Uuid::from_u64_pair(0x6462_7761_7463_6800, u64::from(n))
}

/// A CQL `date`: days since the epoch, centred on 2^31.
fn cql_date(at: SystemTime) -> CqlDate {
    let days = at
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_secs() / 86_400);
    CqlDate((1u32 << 31).wrapping_add(days as u32))
}

fn cql_timestamp(at: SystemTime) -> CqlTimestamp {
    CqlTimestamp(
        at.duration_since(UNIX_EPOCH)
            .map_or(0, |since| since.as_millis() as i64),
    )
}

struct Connected {
    session: Session,
    insert: PreparedStatement,
    recent: PreparedStatement,
}

pub struct Cassandra {
    contact_points: Vec<String>,
    consistency: Consistency,
    timeout: Duration,
    users: u32,
    /// Built on first use, so a cluster that is down at start is not fatal; the driver reconnects by itself.
    connected: OnceCell<Connected>,
}

impl Cassandra {
    pub fn new(args: &CassandraArgs, timeout: Duration, users: u32) -> anyhow::Result<Self> {
        let contact_points: Vec<String> = args
            .contact_points
            .iter()
            .map(|point| point.trim().to_owned())
            .filter(|point| !point.is_empty())
            .collect();
        anyhow::ensure!(
            !contact_points.is_empty(),
            "no Cassandra contact points: pass --cassandra-contact-points or set \
             DBWATCH_CASSANDRA_CONTACT_POINTS (eval \"$(deploy/local/fleet env)\" sets it for the local fleet)"
        );
        tracing::info!("cassandra: events on {}", contact_points.join(", "));
        Ok(Cassandra {
            contact_points,
            consistency: args.consistency.consistency(),
            timeout,
            users,
            connected: OnceCell::new(),
        })
    }

    async fn session(&self) -> anyhow::Result<&Session> {
        Ok(&self.connected().await?.session)
    }

    async fn connected(&self) -> anyhow::Result<&Connected> {
        self.connected
            .get_or_try_init(|| async {
                let session = SessionBuilder::new()
                    .known_nodes(&self.contact_points)
                    .connection_timeout(self.timeout)
                    .build()
                    .await
                    .context("connect")?;
                // The schema first: preparing needs the table.
                for statement in schema_statements() {
                    session
                        .query_unpaged(statement.as_str(), ())
                        .await
                        .with_context(|| {
                            format!("applying deploy/local/cassandra/schema.cql: {statement}")
                        })?;
                }
                let mut insert = session
                    .prepare(INSERT)
                    .await
                    .context("prepare the insert")?;
                insert.set_consistency(self.consistency);
                let mut recent = session.prepare(RECENT).await.context("prepare the read")?;
                recent.set_consistency(self.consistency);
                anyhow::Ok(Connected {
                    session,
                    insert,
                    recent,
                })
            })
            .await
    }

    /// A shopper's event when no DynamoDB flow feeds the log.
    fn random_event(&self) -> UserEvent {
        let mut rng = rand::rng();
        UserEvent {
            user: rng.random_range(1..=self.users),
            session_id: Uuid::from_u128(rng.random()),
            event_type: ["page_view", "search", "add_to_cart"][rng.random_range(0..3)],
            data: HashMap::from([("source".to_owned(), "workload".to_owned())]),
            at: SystemTime::now(),
        }
    }

    async fn insert(&self, event: UserEvent) -> anyhow::Result<()> {
        let connected = self.connected().await?;
        let ip = IpAddr::V4(Ipv4Addr::new(
            10,
            0,
            (event.user >> 8) as u8,
            event.user as u8,
        ));
        connected
            .session
            .execute_unpaged(
                &connected.insert,
                (
                    user_uuid(event.user),
                    cql_date(event.at),
                    cql_timestamp(event.at),
                    event.event_type,
                    event.data,
                    event.session_id,
                    ip,
                    "Mozilla/5.0 (dbwatch-workload)",
                ),
            )
            .await
            .context("insert into ecommerce_logs.user_events")?;
        Ok(())
    }
}

/// The fleet schema's statements about the event log (the canary keyspace is dbwatch's, not the shop's).
fn schema_statements() -> Vec<String> {
    crate::mysql::statements(SCHEMA)
        .into_iter()
        .filter(|statement| statement.contains("ecommerce_logs"))
        .collect()
}

impl FollowUp for Cassandra {
    type Item = UserEvent;

    async fn write(&self, event: UserEvent) -> anyhow::Result<()> {
        self.insert(event).await
    }
}

impl Workload for Cassandra {
    fn name(&self) -> &'static str {
        "cassandra"
    }

    async fn prepare(&self) -> anyhow::Result<()> {
        // Connecting applies the schema; run it again in case the session predates a dropped keyspace.
        let session = self.session().await?;
        for statement in schema_statements() {
            session.query_unpaged(statement.as_str(), ()).await?;
        }
        Ok(())
    }

    async fn tick(&self) -> anyhow::Result<()> {
        self.insert(self.random_event()).await
    }

    fn analytics_queries(&self) -> &'static [&'static str] {
        &["recent_events_of_a_user"]
    }

    async fn analytics(&self, _index: usize) -> anyhow::Result<()> {
        let user = rand::rng().random_range(1..=self.users);
        let connected = self.connected().await?;
        connected
            .session
            .execute_unpaged(
                &connected.recent,
                (user_uuid(user), cql_date(SystemTime::now())),
            )
            .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_event_log_statements_are_applied() {
        let statements = schema_statements();
        assert_eq!(statements.len(), 2, "{statements:?}");
        assert!(statements[0].starts_with("CREATE KEYSPACE IF NOT EXISTS ecommerce_logs"));
        assert!(statements[0].contains("'replication_factor': 2"));
        assert!(statements[1].starts_with("CREATE TABLE IF NOT EXISTS ecommerce_logs.user_events"));
    }

    #[test]
    fn dates_count_days_from_the_centred_epoch() {
        assert_eq!(cql_date(UNIX_EPOCH), CqlDate(1 << 31));
        let day_two = UNIX_EPOCH + Duration::from_secs(86_400 * 2 + 5);
        assert_eq!(cql_date(day_two), CqlDate((1 << 31) + 2));
        assert_eq!(cql_timestamp(day_two), CqlTimestamp(172_805_000));
    }

    #[test]
    fn users_have_fixed_distinct_ids() {
        assert_eq!(user_uuid(7), user_uuid(7));
        assert_ne!(user_uuid(7), user_uuid(8));
    }
}
