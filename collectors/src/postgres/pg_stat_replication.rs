//! Replication seen from a primary: each standby's lag as PostgreSQL measures it, and each physical slot.
//!
//! `replay_lag` goes NULL once a standby has caught up and no WAL is flowing (PostgreSQL docs, "pg_stat_replication
//! view"): a streaming standby with nothing left to replay is at lag 0, not unknown. A slot whose standby is gone
//! is reported unhealthy with unknown lag, never dropped and never 0.

use sqlx::postgres::PgConnection;
use sqlx::Row;

use crate::fleet;
use crate::metric::{bool_value, MetricDesc, MetricKind, Sample};

pub const VIEW: &str = "pg_stat_replication";
const QUERY: &str = include_str!("pg_stat_replication.sql");

pub static LAG_SECONDS: MetricDesc = MetricDesc {
    name: "pg_replication_standby_lag_seconds",
    help: "Time between WAL being flushed on the primary and the standby confirming the step, as measured by the primary",
    kind: MetricKind::Gauge,
    labels: &["replica", "step"],
};
pub static LAG_BYTES: MetricDesc = MetricDesc {
    name: "pg_replication_standby_lag_bytes",
    help: "WAL bytes the standby has not replayed yet, measured on the primary; NaN when it is not streaming",
    kind: MetricKind::Gauge,
    labels: &["replica"],
};
pub static STREAMING: MetricDesc = MetricDesc {
    name: "pg_replication_standby_streaming",
    help: "1 when the standby is connected in the streaming state",
    kind: MetricKind::Gauge,
    labels: &["replica"],
};
pub static SLOT_ACTIVE: MetricDesc = MetricDesc {
    name: "pg_replication_slot_active",
    help: "1 when a standby is consuming the physical replication slot",
    kind: MetricKind::Gauge,
    labels: &["slot"],
};
pub static SLOT_RETAINED_BYTES: MetricDesc = MetricDesc {
    name: "pg_replication_slot_retained_bytes",
    help: "WAL retained on the primary for the physical slot",
    kind: MetricKind::Gauge,
    labels: &["slot"],
};

pub static DESCRIPTORS: &[&MetricDesc] = &[
    &LAG_SECONDS,
    &LAG_BYTES,
    &STREAMING,
    &SLOT_ACTIVE,
    &SLOT_RETAINED_BYTES,
];

#[derive(Debug, Clone, PartialEq)]
pub struct Standby {
    pub replica: String,
    pub state: Option<String>,
    pub slot: Option<String>,
    pub slot_active: bool,
    pub write_lag_seconds: Option<f64>,
    pub flush_lag_seconds: Option<f64>,
    pub replay_lag_seconds: Option<f64>,
    pub replay_lag_bytes: Option<f64>,
    pub slot_retained_bytes: Option<f64>,
}

pub async fn fetch(connection: &mut PgConnection) -> Result<Vec<Standby>, sqlx::Error> {
    let rows = sqlx::query(QUERY).fetch_all(connection).await?;
    let mut standbys = Vec::with_capacity(rows.len());
    for row in rows {
        standbys.push(Standby {
            replica: row
                .try_get::<Option<String>, _>("replica")?
                .unwrap_or_default(),
            state: row.try_get("state")?,
            slot: row.try_get("slot_name")?,
            slot_active: row.try_get("slot_active")?,
            write_lag_seconds: row.try_get("write_lag_seconds")?,
            flush_lag_seconds: row.try_get("flush_lag_seconds")?,
            replay_lag_seconds: row.try_get("replay_lag_seconds")?,
            replay_lag_bytes: row.try_get("replay_lag_bytes")?,
            slot_retained_bytes: row.try_get("slot_retained_bytes")?,
        });
    }
    Ok(standbys)
}

impl Standby {
    pub fn is_streaming(&self) -> bool {
        self.state.as_deref() == Some("streaming")
    }

    /// The replay lag in seconds, when it can be known.
    pub fn replay_lag(&self) -> Option<f64> {
        if !self.is_streaming() {
            return None;
        }
        match (self.replay_lag_seconds, self.replay_lag_bytes) {
            (Some(seconds), _) => Some(seconds),
            // NULL lag with nothing left to replay: caught up on an idle primary.
            (None, Some(bytes)) if bytes <= 0.0 => Some(0.0),
            _ => None,
        }
    }

    pub fn samples(&self, out: &mut Vec<Sample>) {
        let replica = self.replica.as_str();
        if self.state.is_some() {
            for (step, lag) in [
                ("write", self.write_lag_seconds),
                ("flush", self.flush_lag_seconds),
                ("replay", self.replay_lag_seconds),
            ] {
                let value = match lag {
                    Some(seconds) => seconds,
                    None if self.is_streaming() => 0.0,
                    None => f64::NAN,
                };
                out.push(LAG_SECONDS.sample_with([replica, step], value));
            }
            out.push(LAG_BYTES.sample_with([replica], self.replay_lag_bytes.unwrap_or(f64::NAN)));
        }
        out.push(STREAMING.sample_with([replica], bool_value(self.is_streaming())));
        if let Some(slot) = &self.slot {
            out.push(SLOT_ACTIVE.sample_with([slot.as_str()], bool_value(self.slot_active)));
            out.push(SLOT_RETAINED_BYTES.sample_with(
                [slot.as_str()],
                self.slot_retained_bytes.unwrap_or(f64::NAN),
            ));
        }
        out.extend(fleet::replication_samples(
            replica,
            self.replay_lag(),
            self.is_streaming(),
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn streaming(replay_lag_seconds: Option<f64>, replay_lag_bytes: f64) -> Standby {
        Standby {
            replica: "replica1".into(),
            state: Some("streaming".into()),
            slot: Some("replica1".into()),
            slot_active: true,
            write_lag_seconds: None,
            flush_lag_seconds: None,
            replay_lag_seconds,
            replay_lag_bytes: Some(replay_lag_bytes),
            slot_retained_bytes: Some(0.0),
        }
    }

    #[test]
    fn idle_caught_up_standby_is_at_zero_lag() {
        assert_eq!(streaming(None, 0.0).replay_lag(), Some(0.0));
        assert_eq!(streaming(Some(2.5), 4096.0).replay_lag(), Some(2.5));
        assert_eq!(streaming(None, 4096.0).replay_lag(), None);
    }

    #[test]
    fn standby_gone_but_slot_kept_is_broken_not_zero() {
        let gone = Standby {
            replica: "replica1".into(),
            state: None,
            slot: Some("replica1".into()),
            slot_active: false,
            write_lag_seconds: None,
            flush_lag_seconds: None,
            replay_lag_seconds: None,
            replay_lag_bytes: None,
            slot_retained_bytes: Some(1024.0),
        };
        let mut samples = Vec::new();
        gone.samples(&mut samples);
        let lag = samples
            .iter()
            .find(|sample| sample.name() == "db_replication_lag_seconds")
            .map(|sample| sample.value);
        let healthy = samples
            .iter()
            .find(|sample| sample.name() == "db_replication_healthy")
            .map(|sample| sample.value);
        assert!(lag.is_some_and(f64::is_nan));
        assert_eq!(healthy, Some(0.0));
    }
}
