//! `SHOW CONFIG`: the client connection limit.

use sqlx::postgres::PgConnection;

use crate::metric::{MetricDesc, MetricKind, Sample};

pub const VIEW: &str = "show_config";

pub static MAX_CLIENT_CONNECTIONS: MetricDesc = MetricDesc {
    name: "pgbouncer_config_max_client_connections",
    help: "The max_client_conn setting",
    kind: MetricKind::Gauge,
    labels: &[],
};

#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub max_client_conn: f64,
}

pub async fn fetch(connection: &mut PgConnection) -> Result<Config, sqlx::Error> {
    let rows = sqlx::raw_sql("SHOW CONFIG").fetch_all(connection).await?;
    for row in rows {
        if super::text(&row, "key")?.as_deref() != Some("max_client_conn") {
            continue;
        }
        let value = super::number(&row, "value")?;
        return value
            .map(|max_client_conn| Config { max_client_conn })
            .ok_or_else(|| sqlx::Error::Protocol("max_client_conn has no value".into()));
    }
    Err(sqlx::Error::Protocol(
        "SHOW CONFIG has no max_client_conn".into(),
    ))
}

impl Config {
    pub fn samples(&self, out: &mut Vec<Sample>) {
        out.push(MAX_CLIENT_CONNECTIONS.sample(self.max_client_conn));
    }
}
