//! `hello`: what kind of node answers — standalone, replica set member or mongos — read once per connection.
//!
//! A replica set member carries `setName`; a mongos answers `msg: "isdbgrid"`. Whether this member is the primary
//! changes without a reconnect, so it is read from replSetGetStatus (`myState`) on every poll instead.

use mongodb::bson::{doc, Document};

use super::connection::{Conn, MongoError};
use super::fields;

pub const VIEW: &str = "hello";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Topology {
    Standalone,
    ReplicaSetMember { set_name: String, arbiter: bool },
    Mongos,
}

pub async fn fetch(conn: &Conn) -> Result<Topology, MongoError> {
    let answer = conn.command("admin", doc! { "hello": 1 }).await?;
    Ok(parse(&answer))
}

pub fn parse(answer: &Document) -> Topology {
    if fields::str_at(answer, "msg") == Some("isdbgrid") {
        return Topology::Mongos;
    }
    match fields::str_at(answer, "setName") {
        Some(set_name) => Topology::ReplicaSetMember {
            set_name: set_name.to_owned(),
            arbiter: answer.get_bool("arbiterOnly").unwrap_or(false),
        },
        None => Topology::Standalone,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_kinds() {
        assert_eq!(
            parse(&doc! { "isWritablePrimary": true, "ok": 1.0 }),
            Topology::Standalone
        );
        assert_eq!(
            parse(&doc! { "isWritablePrimary": true, "msg": "isdbgrid", "ok": 1.0 }),
            Topology::Mongos
        );
        assert_eq!(
            parse(&doc! { "isWritablePrimary": false, "secondary": true, "setName": "rs0" }),
            Topology::ReplicaSetMember {
                set_name: "rs0".into(),
                arbiter: false
            }
        );
        assert_eq!(
            parse(&doc! { "setName": "rs0", "arbiterOnly": true }),
            Topology::ReplicaSetMember {
                set_name: "rs0".into(),
                arbiter: true
            }
        );
    }
}
