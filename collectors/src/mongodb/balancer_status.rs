//! `balancerStatus` on a mongos: whether the balancer is on and whether it is in a balancing round.
//!
//! `mode: "full"` means the balancer is enabled ("off" stopped, "autoSplitOnly" before 6.1 balances nothing);
//! `inBalancerRound` is true while it moves data and may stay true briefly after it is switched off.

use mongodb::bson::{doc, Document};

use super::connection::{Conn, MongoError};
use super::fields;
use crate::metric::{bool_value, MetricDesc, MetricKind, Sample};

pub const VIEW: &str = "balancer_status";

pub static ENABLED: MetricDesc = MetricDesc {
    name: "mongodb_sharding_balancer_enabled",
    help: "1 when the balancer is enabled (balancerStatus mode \"full\")",
    kind: MetricKind::Gauge,
    labels: &[],
};
pub static RUNNING: MetricDesc = MetricDesc {
    name: "mongodb_sharding_balancer_running",
    help:
        "1 while the balancer is in a balancing round, moving data (balancerStatus inBalancerRound)",
    kind: MetricKind::Gauge,
    labels: &[],
};
pub static ROUNDS: MetricDesc = MetricDesc {
    name: "mongodb_sharding_balancer_rounds_total",
    help:
        "Balancer rounds since the config server primary started (balancerStatus numBalancerRounds)",
    kind: MetricKind::Counter,
    labels: &[],
};

pub static DESCRIPTORS: &[&MetricDesc] = &[&ENABLED, &RUNNING, &ROUNDS];

#[derive(Debug, Clone, PartialEq)]
pub struct BalancerStatus {
    pub enabled: bool,
    pub in_round: bool,
    pub rounds: Option<f64>,
}

pub async fn fetch(conn: &Conn) -> Result<BalancerStatus, MongoError> {
    let answer = conn.command("admin", doc! { "balancerStatus": 1 }).await?;
    parse(&answer).map_err(MongoError::Decode)
}

pub fn parse(answer: &Document) -> Result<BalancerStatus, fields::Missing> {
    let mode = fields::str_at(answer, "mode").ok_or("balancerStatus has no mode")?;
    Ok(BalancerStatus {
        enabled: mode == "full",
        in_round: answer.get_bool("inBalancerRound").unwrap_or(false),
        rounds: fields::number_at(answer, "numBalancerRounds"),
    })
}

impl BalancerStatus {
    pub fn samples(&self, out: &mut Vec<Sample>) {
        out.push(ENABLED.sample(bool_value(self.enabled)));
        out.push(RUNNING.sample(bool_value(self.in_round)));
        if let Some(rounds) = self.rounds {
            out.push(ROUNDS.sample(rounds));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn off_is_disabled_even_inside_a_round() {
        let status = parse(&doc! { "mode": "off", "inBalancerRound": true, "ok": 1.0 })
            .expect("balancerStatus");
        assert!(!status.enabled);
        assert!(status.in_round);
        assert_eq!(status.rounds, None);
        assert!(parse(&doc! { "ok": 1.0 }).is_err());
    }
}
