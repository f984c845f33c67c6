//! Connections: client backends by state, against `max_connections` less the reserved slots.

use sqlx::postgres::PgConnection;
use sqlx::Row;

use crate::fleet;
use crate::metric::{MetricDesc, MetricKind, Sample};

pub const VIEW: &str = "pg_stat_activity";
const QUERY: &str = include_str!("pg_stat_activity.sql");

pub static BACKENDS: MetricDesc = MetricDesc {
    name: "pg_connections_backends",
    help: "Client backends by state",
    kind: MetricKind::Gauge,
    labels: &["state"],
};
pub static WAITING_ON_LOCK: MetricDesc = MetricDesc {
    name: "pg_connections_waiting_on_lock",
    help: "Client backends waiting for a heavyweight lock",
    kind: MetricKind::Gauge,
    labels: &[],
};
pub static OLDEST_TRANSACTION: MetricDesc = MetricDesc {
    name: "pg_oldest_transaction_seconds",
    help: "Age of the oldest open transaction of a client backend",
    kind: MetricKind::Gauge,
    labels: &[],
};
pub static OLDEST_IDLE_IN_TRANSACTION: MetricDesc = MetricDesc {
    name: "pg_idle_in_transaction_oldest_seconds",
    help: "How long the longest-idle session inside a transaction has been idle (it holds its locks and snapshot); 0 when none is",
    kind: MetricKind::Gauge,
    labels: &[],
};
pub static MAX_CONNECTIONS: MetricDesc = MetricDesc {
    name: "pg_settings_max_connections",
    help: "The max_connections setting",
    kind: MetricKind::Gauge,
    labels: &[],
};
pub static RESERVED_CONNECTIONS: MetricDesc = MetricDesc {
    name: "pg_settings_reserved_connections",
    help: "Connection slots reserved for superusers and pg_use_reserved_connections members",
    kind: MetricKind::Gauge,
    labels: &[],
};
pub static IN_RECOVERY: MetricDesc = MetricDesc {
    name: "pg_in_recovery",
    help: "1 when the server is a standby (in recovery), 0 on a primary",
    kind: MetricKind::Gauge,
    labels: &[],
};

pub static DESCRIPTORS: &[&MetricDesc] = &[
    &BACKENDS,
    &WAITING_ON_LOCK,
    &OLDEST_TRANSACTION,
    &OLDEST_IDLE_IN_TRANSACTION,
    &MAX_CONNECTIONS,
    &RESERVED_CONNECTIONS,
    &IN_RECOVERY,
];

#[derive(Debug, Clone, PartialEq)]
pub struct Activity {
    pub max_connections: f64,
    pub superuser_reserved_connections: f64,
    pub reserved_connections: f64,
    pub in_recovery: bool,
    pub client_backends: f64,
    pub active: f64,
    pub idle: f64,
    pub idle_in_transaction: f64,
    pub idle_in_transaction_aborted: f64,
    pub waiting_on_lock: f64,
    pub oldest_transaction_seconds: f64,
    pub oldest_idle_in_transaction_seconds: f64,
}

pub async fn fetch(connection: &mut PgConnection) -> Result<Activity, sqlx::Error> {
    let row = sqlx::query(QUERY).fetch_one(connection).await?;
    Ok(Activity {
        max_connections: row.try_get("max_connections")?,
        superuser_reserved_connections: row.try_get("superuser_reserved_connections")?,
        reserved_connections: row.try_get("reserved_connections")?,
        in_recovery: row.try_get("in_recovery")?,
        client_backends: row.try_get("client_backends")?,
        active: row.try_get("active")?,
        idle: row.try_get("idle")?,
        idle_in_transaction: row.try_get("idle_in_transaction")?,
        idle_in_transaction_aborted: row.try_get("idle_in_transaction_aborted")?,
        waiting_on_lock: row.try_get("waiting_on_lock")?,
        oldest_transaction_seconds: row.try_get("oldest_transaction_seconds")?,
        oldest_idle_in_transaction_seconds: row.try_get("oldest_idle_in_transaction_seconds")?,
    })
}

impl Activity {
    /// Slots ordinary clients can use.
    pub fn usable_connections(&self) -> f64 {
        (self.max_connections - self.superuser_reserved_connections - self.reserved_connections)
            .max(0.0)
    }

    pub fn samples(&self, out: &mut Vec<Sample>) {
        let other = self.client_backends
            - self.active
            - self.idle
            - self.idle_in_transaction
            - self.idle_in_transaction_aborted;
        for (state, count) in [
            ("active", self.active),
            ("idle", self.idle),
            ("idle_in_transaction", self.idle_in_transaction),
            (
                "idle_in_transaction_aborted",
                self.idle_in_transaction_aborted,
            ),
            ("other", other.max(0.0)),
        ] {
            out.push(BACKENDS.sample_with([state], count));
        }
        out.push(WAITING_ON_LOCK.sample(self.waiting_on_lock));
        out.push(OLDEST_TRANSACTION.sample(self.oldest_transaction_seconds));
        out.push(
            OLDEST_IDLE_IN_TRANSACTION.sample(self.oldest_idle_in_transaction_seconds.max(0.0)),
        );
        out.push(MAX_CONNECTIONS.sample(self.max_connections));
        out.push(
            RESERVED_CONNECTIONS
                .sample(self.superuser_reserved_connections + self.reserved_connections),
        );
        out.push(IN_RECOVERY.sample(crate::metric::bool_value(self.in_recovery)));
        out.extend(fleet::connection_samples(
            self.client_backends,
            self.usable_connections(),
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn activity() -> Activity {
        Activity {
            max_connections: 60.0,
            superuser_reserved_connections: 3.0,
            reserved_connections: 2.0,
            in_recovery: false,
            client_backends: 11.0,
            active: 2.0,
            idle: 7.0,
            idle_in_transaction: 1.0,
            idle_in_transaction_aborted: 0.0,
            waiting_on_lock: 1.0,
            oldest_transaction_seconds: 4.5,
            oldest_idle_in_transaction_seconds: 3.0,
        }
    }

    #[test]
    fn utilization_counts_every_client_backend_against_usable_slots() {
        let mut samples = Vec::new();
        activity().samples(&mut samples);
        let value = |name: &str| {
            samples
                .iter()
                .find(|sample| sample.name() == name)
                .map(|sample| sample.value)
        };
        assert_eq!(value("db_connections_active"), Some(11.0));
        assert_eq!(value("db_connections_max"), Some(55.0));
        assert_eq!(value("db_connections_utilization_ratio"), Some(11.0 / 55.0));
        assert_eq!(value("pg_idle_in_transaction_oldest_seconds"), Some(3.0));
        let other = samples
            .iter()
            .find(|sample| sample.label("state") == Some("other"))
            .map(|sample| sample.value);
        assert_eq!(other, Some(1.0));
    }
}
