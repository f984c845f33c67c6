//! `replSetGetStatus`: each member's state, health and optime as the polled member sees them.
//!
//! Lag of a secondary is the PRIMARY's optimeDate minus the member's, not the newest optime in the set: seen from
//! a secondary, its own optime is fresher than the heartbeat-reported optime of the primary, and measuring
//! against it would invent lag for every other member. A negative difference (the primary's optime known only as
//! of its last heartbeat) is clamped to 0. An unreachable member reports health 0, state 8 and an optimeDate of
//! the epoch; its lag is unknown (NaN, unhealthy), never "now minus 1970".
//!
//! States are numbers (0 STARTUP … 10 REMOVED), not labels, so a state change does not start a new series.

use mongodb::bson::{doc, Bson, Document};

use super::connection::{Conn, MongoError};
use super::fields;
use crate::fleet;
use crate::metric::{MetricDesc, MetricKind, Sample};

pub const VIEW: &str = "repl_set_get_status";

pub const PRIMARY: i32 = 1;
pub const SECONDARY: i32 = 2;
pub const UNKNOWN: i32 = 6;
pub const ARBITER: i32 = 7;
pub const DOWN: i32 = 8;

pub static MY_STATE: MetricDesc = MetricDesc {
    name: "mongodb_replset_my_state",
    help: "Replica set state of the polled member as a number: 1 PRIMARY, 2 SECONDARY, 7 ARBITER, 8 DOWN, …",
    kind: MetricKind::Gauge,
    labels: &[],
};
pub static MEMBER_STATE: MetricDesc = MetricDesc {
    name: "mongodb_replset_member_state",
    help: "Replica set state of each member as the polled member sees it, as a number (1 PRIMARY, 2 SECONDARY, 8 DOWN, …)",
    kind: MetricKind::Gauge,
    labels: &["member"],
};
pub static MEMBER_HEALTH: MetricDesc = MetricDesc {
    name: "mongodb_replset_member_health",
    help: "1 when the member is up as the polled member sees it, 0 when it is unreachable",
    kind: MetricKind::Gauge,
    labels: &["member"],
};
pub static MEMBER_OPTIME: MetricDesc = MetricDesc {
    name: "mongodb_replset_member_optime_timestamp_seconds",
    help: "Time of the last operation the member applied (optimeDate); NaN when unknown",
    kind: MetricKind::Gauge,
    labels: &["member"],
};
pub static MEMBER_HEARTBEAT_AGE: MetricDesc = MetricDesc {
    name: "mongodb_replset_member_heartbeat_age_seconds",
    help: "Age of the last heartbeat received from the member, which is how stale its reported optime may be; NaN when none",
    kind: MetricKind::Gauge,
    labels: &["member"],
};

pub static DESCRIPTORS: &[&MetricDesc] = &[
    &MY_STATE,
    &MEMBER_STATE,
    &MEMBER_HEALTH,
    &MEMBER_OPTIME,
    &MEMBER_HEARTBEAT_AGE,
];

#[derive(Debug, Clone, PartialEq)]
pub struct ReplSetStatus {
    pub my_state: Option<i32>,
    /// The polled member's clock when it answered.
    pub date_millis: Option<i64>,
    pub members: Vec<Member>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Member {
    /// host:port, bounded by the set's size.
    pub name: String,
    pub state: i32,
    pub health: f64,
    pub optime_millis: Option<i64>,
    pub last_heartbeat_recv_millis: Option<i64>,
    pub is_self: bool,
}

pub async fn fetch(conn: &Conn) -> Result<ReplSetStatus, MongoError> {
    let answer = conn
        .command("admin", doc! { "replSetGetStatus": 1 })
        .await?;
    parse(&answer).map_err(MongoError::Decode)
}

pub fn parse(answer: &Document) -> Result<ReplSetStatus, fields::Missing> {
    let members = answer
        .get("members")
        .and_then(Bson::as_array)
        .ok_or("replSetGetStatus has no members")?;
    let mut parsed = Vec::with_capacity(members.len());
    for member in members {
        let member = member
            .as_document()
            .ok_or("replSetGetStatus member is not a document")?;
        let name = fields::str_at(member, "name").ok_or("replSetGetStatus member has no name")?;
        let state =
            fields::number_at(member, "state").ok_or("replSetGetStatus member has no state")?;
        let is_self = member.get_bool("self").unwrap_or(false);
        parsed.push(Member {
            name: name.to_owned(),
            state: state as i32,
            // The polled member may leave `health` out of its own entry; it is evidently up.
            health: fields::number_at(member, "health").unwrap_or(if is_self { 1.0 } else { 0.0 }),
            optime_millis: fields::date_millis_at(member, "optimeDate"),
            last_heartbeat_recv_millis: fields::date_millis_at(member, "lastHeartbeatRecv"),
            is_self,
        });
    }
    Ok(ReplSetStatus {
        my_state: fields::number_at(answer, "myState").map(|state| state as i32),
        date_millis: fields::date_millis_at(answer, "date"),
        members: parsed,
    })
}

impl Member {
    /// A data-bearing member that should be replicating from the primary.
    pub fn is_replica(&self) -> bool {
        self.state != PRIMARY && self.state != ARBITER
    }

    fn reachable(&self) -> bool {
        self.health >= 1.0 && self.state != DOWN && self.state != UNKNOWN
    }

    /// Replicating normally: a healthy SECONDARY.
    pub fn replicating(&self) -> bool {
        self.reachable() && self.state == SECONDARY
    }
}

impl ReplSetStatus {
    pub fn primary(&self) -> Option<&Member> {
        self.members
            .iter()
            .find(|member| member.state == PRIMARY && member.reachable())
    }

    /// Seconds the member trails the primary; `None` when either optime is unknown or there is no primary.
    pub fn lag_seconds(&self, member: &Member) -> Option<f64> {
        if !member.reachable() {
            return None;
        }
        let primary = self.primary()?.optime_millis?;
        let optime = member.optime_millis?;
        Some((primary - optime).max(0) as f64 / 1000.0)
    }

    pub fn samples(&self, out: &mut Vec<Sample>) {
        if let Some(state) = self.my_state {
            out.push(MY_STATE.sample(f64::from(state)));
        }
        for member in &self.members {
            let name = member.name.as_str();
            out.push(MEMBER_STATE.sample_with([name], f64::from(member.state)));
            out.push(MEMBER_HEALTH.sample_with([name], member.health));
            out.push(
                MEMBER_OPTIME.sample_with(
                    [name],
                    member
                        .optime_millis
                        .map_or(f64::NAN, |millis| millis as f64 / 1000.0),
                ),
            );
            if !member.is_self {
                let age = match (self.date_millis, member.last_heartbeat_recv_millis) {
                    (Some(now), Some(received)) => (now - received).max(0) as f64 / 1000.0,
                    _ => f64::NAN,
                };
                out.push(MEMBER_HEARTBEAT_AGE.sample_with([name], age));
            }
            if member.is_replica() {
                out.extend(fleet::replication_samples(
                    name,
                    self.lag_seconds(member),
                    member.replicating(),
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mongodb::bson::DateTime;

    fn member(name: &str, state: i32, health: f64, optime_seconds: i64) -> Document {
        doc! {
            "name": name, "state": state, "health": health,
            "optimeDate": DateTime::from_millis(optime_seconds * 1000),
        }
    }

    fn lag(status: &ReplSetStatus, name: &str) -> (Option<f64>, Option<f64>) {
        let mut samples = Vec::new();
        status.samples(&mut samples);
        let find = |metric: &str| {
            samples
                .iter()
                .find(|sample| sample.name() == metric && sample.label("replica") == Some(name))
                .map(|sample| sample.value)
        };
        (
            find("db_replication_lag_seconds"),
            find("db_replication_healthy"),
        )
    }

    #[test]
    fn lag_is_against_the_primary_and_unknown_without_one() {
        let status = parse(&doc! {
            "myState": 2,
            "members": [
                member("a:1", PRIMARY, 1.0, 1_000),
                member("b:1", SECONDARY, 1.0, 990),
                // Fresher than the primary's heartbeat-reported optime: clamped, not negative.
                member("c:1", SECONDARY, 1.0, 1_004),
                member("d:1", DOWN, 0.0, 0),
                member("e:1", ARBITER, 1.0, 0),
            ],
        })
        .expect("status");
        assert_eq!(lag(&status, "b:1"), (Some(10.0), Some(1.0)));
        assert_eq!(lag(&status, "c:1"), (Some(0.0), Some(1.0)));
        let (down_lag, down_healthy) = lag(&status, "d:1");
        assert!(down_lag.is_some_and(f64::is_nan));
        assert_eq!(down_healthy, Some(0.0));
        assert_eq!(lag(&status, "a:1"), (None, None));
        assert_eq!(lag(&status, "e:1"), (None, None));

        let leaderless = parse(&doc! {
            "members": [member("b:1", SECONDARY, 1.0, 990), member("c:1", SECONDARY, 1.0, 995)],
        })
        .expect("status");
        let (lag_value, healthy) = lag(&leaderless, "b:1");
        assert!(lag_value.is_some_and(f64::is_nan));
        assert_eq!(healthy, Some(0.0));
    }

    #[test]
    fn members_without_name_or_state_are_refused() {
        assert!(parse(&doc! { "ok": 1.0 }).is_err());
        assert!(parse(&doc! { "members": [{ "state": 1 }] }).is_err());
    }
}
