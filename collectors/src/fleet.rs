//! The fleet signals: one contract every engine fills, so one rule covers all five databases.
//!
//! Every series carries `target` and `db` (added by the daemon). `db_up` is written by the daemon from the poll's
//! outcome; the others by each collector. Unknown never reads as healthy: where replication lag cannot be known,
//! `db_replication_lag_seconds` stays present with the value NaN and `db_replication_healthy` is 0.

use crate::metric::{MetricDesc, MetricKind, Sample};

pub static DB_UP: MetricDesc = MetricDesc {
    name: "db_up",
    help: "1 when the last poll of the target succeeded, 0 when the target could not be reached or read",
    kind: MetricKind::Gauge,
    labels: &[],
};

pub static DB_QUERY_LATENCY_AVG_SECONDS: MetricDesc = MetricDesc {
    name: "db_query_latency_avg_seconds",
    help: "Mean execution time of the queries that completed during the last poll interval; NaN when none completed",
    kind: MetricKind::Gauge,
    labels: &[],
};

pub static DB_CONNECTIONS_ACTIVE: MetricDesc = MetricDesc {
    name: "db_connections_active",
    help: "Client connections currently open on the target",
    kind: MetricKind::Gauge,
    labels: &[],
};

pub static DB_CONNECTIONS_MAX: MetricDesc = MetricDesc {
    name: "db_connections_max",
    help: "Client connections the target accepts, reserved slots excluded",
    kind: MetricKind::Gauge,
    labels: &[],
};

pub static DB_CONNECTIONS_UTILIZATION_RATIO: MetricDesc = MetricDesc {
    name: "db_connections_utilization_ratio",
    help: "db_connections_active divided by db_connections_max",
    kind: MetricKind::Gauge,
    labels: &[],
};

pub static DB_REPLICATION_LAG_SECONDS: MetricDesc = MetricDesc {
    name: "db_replication_lag_seconds",
    help: "How far the replica's applied state trails its source, per replica; NaN when it cannot be known",
    kind: MetricKind::Gauge,
    labels: &["replica"],
};

pub static DB_REPLICATION_HEALTHY: MetricDesc = MetricDesc {
    name: "db_replication_healthy",
    help: "1 when replication to the replica is running and its lag is known, 0 when it is stopped, broken or unknown",
    kind: MetricKind::Gauge,
    labels: &["replica"],
};

pub static DESCRIPTORS: &[&MetricDesc] = &[
    &DB_UP,
    &DB_QUERY_LATENCY_AVG_SECONDS,
    &DB_CONNECTIONS_ACTIVE,
    &DB_CONNECTIONS_MAX,
    &DB_CONNECTIONS_UTILIZATION_RATIO,
    &DB_REPLICATION_LAG_SECONDS,
    &DB_REPLICATION_HEALTHY,
];

/// The three connection signals from one pair of numbers. A zero maximum yields NaN utilization, never 0.
pub fn connection_samples(active: f64, max: f64) -> [Sample; 3] {
    let utilization = if max > 0.0 { active / max } else { f64::NAN };
    [
        DB_CONNECTIONS_ACTIVE.sample(active),
        DB_CONNECTIONS_MAX.sample(max),
        DB_CONNECTIONS_UTILIZATION_RATIO.sample(utilization),
    ]
}

/// The replication signals of one replica. `None` lag means unknown: NaN and unhealthy.
pub fn replication_samples(replica: &str, lag_seconds: Option<f64>, running: bool) -> [Sample; 2] {
    let healthy = running && lag_seconds.is_some();
    [
        DB_REPLICATION_LAG_SECONDS.sample_with([replica], lag_seconds.unwrap_or(f64::NAN)),
        DB_REPLICATION_HEALTHY.sample_with([replica], crate::metric::bool_value(healthy)),
    ]
}

/// The mean latency over an interval from the change in a (count, total seconds) pair of counters.
///
/// NaN when nothing completed or a counter went backwards (a reset): an interval without data has no mean.
pub fn average_latency(previous: Option<(f64, f64)>, current: (f64, f64)) -> f64 {
    let Some((previous_count, previous_total)) = previous else {
        return f64::NAN;
    };
    let (count, total) = current;
    let delta_count = count - previous_count;
    let delta_total = total - previous_total;
    if delta_count <= 0.0 || delta_total < 0.0 {
        return f64::NAN;
    }
    delta_total / delta_count
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utilization_is_nan_without_a_maximum() {
        let [_, _, utilization] = connection_samples(3.0, 0.0);
        assert!(utilization.value.is_nan());
        let [_, _, utilization] = connection_samples(9.0, 60.0);
        assert_eq!(utilization.value, 0.15);
    }

    #[test]
    fn unknown_lag_is_nan_and_unhealthy() {
        let [lag, healthy] = replication_samples("replica1", None, true);
        assert!(lag.value.is_nan());
        assert_eq!(healthy.value, 0.0);
        let [lag, healthy] = replication_samples("replica1", Some(0.0), true);
        assert_eq!(lag.value, 0.0);
        assert_eq!(healthy.value, 1.0);
        let [_, healthy] = replication_samples("replica1", Some(3.0), false);
        assert_eq!(healthy.value, 0.0);
    }

    #[test]
    fn average_latency_uses_deltas_and_refuses_resets() {
        assert!(average_latency(None, (10.0, 1.0)).is_nan());
        assert_eq!(average_latency(Some((10.0, 1.0)), (14.0, 2.0)), 0.25);
        assert!(average_latency(Some((10.0, 1.0)), (10.0, 1.0)).is_nan());
        assert!(average_latency(Some((10.0, 1.0)), (3.0, 0.5)).is_nan());
    }
}
