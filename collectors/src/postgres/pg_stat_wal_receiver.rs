//! Replication seen from a standby: receive against replay, and the WAL receiver's state.
//!
//! When everything received has been replayed the standby is caught up, whatever the age of the last replayed
//! transaction: an idle primary is not lag (postgres_exporter #385). When replay trails receive, the lag is the
//! age of the last replayed transaction. With no WAL receiver running, the lag is unknown and replication is
//! reported broken: the series stays, as NaN.

use sqlx::postgres::PgConnection;
use sqlx::Row;

use crate::fleet;
use crate::metric::{bool_value, MetricDesc, MetricKind, Sample};

pub const VIEW: &str = "pg_stat_wal_receiver";
const QUERY: &str = include_str!("pg_stat_wal_receiver.sql");

pub static RECEIVER_STREAMING: MetricDesc = MetricDesc {
    name: "pg_standby_wal_receiver_streaming",
    help: "1 when the standby's WAL receiver is streaming from its primary",
    kind: MetricKind::Gauge,
    labels: &[],
};
pub static REPLAY_PENDING_BYTES: MetricDesc = MetricDesc {
    name: "pg_standby_replay_pending_bytes",
    help: "WAL received by the standby but not replayed yet",
    kind: MetricKind::Gauge,
    labels: &[],
};
pub static LAST_REPLAY_AGE: MetricDesc = MetricDesc {
    name: "pg_standby_last_replay_age_seconds",
    help: "Age of the last transaction the standby replayed; grows on an idle primary, so it is not lag by itself",
    kind: MetricKind::Gauge,
    labels: &[],
};
pub static LAST_MESSAGE_AGE: MetricDesc = MetricDesc {
    name: "pg_standby_last_message_age_seconds",
    help: "Time since the WAL receiver last heard from the primary; NaN without a receiver",
    kind: MetricKind::Gauge,
    labels: &[],
};
pub static REPLAY_PAUSED: MetricDesc = MetricDesc {
    name: "pg_standby_replay_paused",
    help: "1 when WAL replay is paused (pg_wal_replay_pause)",
    kind: MetricKind::Gauge,
    labels: &[],
};

pub static DESCRIPTORS: &[&MetricDesc] = &[
    &RECEIVER_STREAMING,
    &REPLAY_PENDING_BYTES,
    &LAST_REPLAY_AGE,
    &LAST_MESSAGE_AGE,
    &REPLAY_PAUSED,
];

#[derive(Debug, Clone, PartialEq)]
pub struct StandbyStatus {
    pub receiver_status: Option<String>,
    pub caught_up: bool,
    pub replay_pending_bytes: Option<f64>,
    pub since_last_replay_seconds: Option<f64>,
    pub since_last_message_seconds: Option<f64>,
    pub replay_paused: bool,
}

pub async fn fetch(connection: &mut PgConnection) -> Result<StandbyStatus, sqlx::Error> {
    let row = sqlx::query(QUERY).fetch_one(connection).await?;
    Ok(StandbyStatus {
        receiver_status: row.try_get("receiver_status")?,
        caught_up: row
            .try_get::<Option<bool>, _>("caught_up")?
            .unwrap_or(false),
        replay_pending_bytes: row.try_get("replay_pending_bytes")?,
        since_last_replay_seconds: row.try_get("since_last_replay_seconds")?,
        since_last_message_seconds: row.try_get("since_last_message_seconds")?,
        replay_paused: row.try_get("replay_paused")?,
    })
}

impl StandbyStatus {
    pub fn receiver_streaming(&self) -> bool {
        self.receiver_status.as_deref() == Some("streaming")
    }

    pub fn lag_seconds(&self) -> Option<f64> {
        if !self.receiver_streaming() {
            return None;
        }
        if self.caught_up {
            return Some(0.0);
        }
        // Replay trails receive but nothing was ever replayed since start: no timestamp to measure from.
        self.since_last_replay_seconds.map(|age| age.max(0.0))
    }

    /// `replica` names this standby in the fleet signals: the target's own name.
    pub fn samples(&self, replica: &str, out: &mut Vec<Sample>) {
        out.push(RECEIVER_STREAMING.sample(bool_value(self.receiver_streaming())));
        out.push(REPLAY_PENDING_BYTES.sample(self.replay_pending_bytes.unwrap_or(f64::NAN)));
        out.push(LAST_REPLAY_AGE.sample(self.since_last_replay_seconds.unwrap_or(f64::NAN)));
        out.push(LAST_MESSAGE_AGE.sample(self.since_last_message_seconds.unwrap_or(f64::NAN)));
        out.push(REPLAY_PAUSED.sample(bool_value(self.replay_paused)));
        out.extend(fleet::replication_samples(
            replica,
            self.lag_seconds(),
            self.receiver_streaming(),
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(receiver: Option<&str>, caught_up: bool, age: Option<f64>) -> StandbyStatus {
        StandbyStatus {
            receiver_status: receiver.map(str::to_owned),
            caught_up,
            replay_pending_bytes: Some(0.0),
            since_last_replay_seconds: age,
            since_last_message_seconds: Some(1.0),
            replay_paused: false,
        }
    }

    #[test]
    fn idle_primary_is_not_lag() {
        assert_eq!(
            status(Some("streaming"), true, Some(3600.0)).lag_seconds(),
            Some(0.0)
        );
    }

    #[test]
    fn replay_behind_receive_is_the_age_of_the_last_replay() {
        assert_eq!(
            status(Some("streaming"), false, Some(12.5)).lag_seconds(),
            Some(12.5)
        );
    }

    #[test]
    fn no_receiver_is_unknown_lag() {
        assert_eq!(status(None, true, Some(1.0)).lag_seconds(), None);
        assert_eq!(status(Some("waiting"), true, Some(1.0)).lag_seconds(), None);
    }
}
