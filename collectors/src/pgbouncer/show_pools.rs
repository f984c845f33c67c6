//! `SHOW POOLS`: per database and user, clients served and waiting, server connections, the longest wait.

use sqlx::postgres::PgConnection;

use crate::metric::{MetricDesc, MetricKind, Sample};

pub const VIEW: &str = "show_pools";

pub static CLIENTS: MetricDesc = MetricDesc {
    name: "pgbouncer_pool_client_connections",
    help:
        "Client connections of the pool by state (active, waiting, active_cancel, waiting_cancel)",
    kind: MetricKind::Gauge,
    labels: &["database", "user", "state"],
};
pub static SERVERS: MetricDesc = MetricDesc {
    name: "pgbouncer_pool_server_connections",
    help: "Server connections of the pool by state (active, idle, used, tested, login)",
    kind: MetricKind::Gauge,
    labels: &["database", "user", "state"],
};
pub static MAX_WAIT: MetricDesc = MetricDesc {
    name: "pgbouncer_pool_client_max_wait_seconds",
    help: "How long the oldest waiting client of the pool has waited",
    kind: MetricKind::Gauge,
    labels: &["database", "user"],
};

#[derive(Debug, Clone, PartialEq)]
pub struct Pool {
    pub database: String,
    pub user: String,
    pub clients: Vec<(&'static str, f64)>,
    pub servers: Vec<(&'static str, f64)>,
    pub max_wait_seconds: f64,
}

const CLIENT_COLUMNS: [(&str, &str); 4] = [
    ("active", "cl_active"),
    ("waiting", "cl_waiting"),
    ("active_cancel", "cl_active_cancel_req"),
    ("waiting_cancel", "cl_waiting_cancel_req"),
];
const SERVER_COLUMNS: [(&str, &str); 5] = [
    ("active", "sv_active"),
    ("idle", "sv_idle"),
    ("used", "sv_used"),
    ("tested", "sv_tested"),
    ("login", "sv_login"),
];

pub async fn fetch(connection: &mut PgConnection) -> Result<Vec<Pool>, sqlx::Error> {
    let rows = sqlx::raw_sql("SHOW POOLS").fetch_all(connection).await?;
    let mut pools = Vec::with_capacity(rows.len());
    for row in rows {
        let mut clients = Vec::new();
        for (state, column) in CLIENT_COLUMNS {
            if let Some(value) = super::number(&row, column)? {
                clients.push((state, value));
            }
        }
        let mut servers = Vec::new();
        for (state, column) in SERVER_COLUMNS {
            if let Some(value) = super::number(&row, column)? {
                servers.push((state, value));
            }
        }
        let max_wait = super::number(&row, "maxwait")?.unwrap_or(0.0);
        let max_wait_us = super::number(&row, "maxwait_us")?.unwrap_or(0.0);
        pools.push(Pool {
            database: super::text(&row, "database")?.unwrap_or_default(),
            user: super::text(&row, "user")?.unwrap_or_default(),
            clients,
            servers,
            max_wait_seconds: max_wait + max_wait_us / 1e6,
        });
    }
    Ok(pools)
}

impl Pool {
    /// Every client connection the pool holds, served or waiting.
    pub fn clients(&self) -> f64 {
        self.clients.iter().map(|(_, count)| count).sum()
    }

    pub fn samples(&self, out: &mut Vec<Sample>) {
        let (database, user) = (self.database.as_str(), self.user.as_str());
        for (state, count) in &self.clients {
            out.push(CLIENTS.sample_with([database, user, state], *count));
        }
        for (state, count) in &self.servers {
            out.push(SERVERS.sample_with([database, user, state], *count));
        }
        out.push(MAX_WAIT.sample_with([database, user], self.max_wait_seconds));
    }
}
