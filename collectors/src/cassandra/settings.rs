//! The native-transport connection cap from `system_views.settings`, read once per node connection.

use std::sync::Arc;
use std::time::Duration;

use scylla::client::session::Session;
use scylla::cluster::Node;

use super::session::{self, CqlError};

pub const VIEW: &str = "system_views.settings";
const QUERY: &str = include_str!("settings.cql");

/// How many client connections a node accepts.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ConnectionLimit {
    /// `-1`, the default: the node sets no cap of its own (file descriptors and memory still do).
    Unlimited,
    Limit(f64),
    /// The setting is missing or unreadable.
    Unknown,
}

impl ConnectionLimit {
    /// The setting's text as the server prints it: `-1` (or any negative number) is unlimited.
    pub fn parse(value: Option<&str>) -> Self {
        let Some(text) = value else {
            return ConnectionLimit::Unknown;
        };
        match text.trim().parse::<i64>() {
            Ok(limit) if limit < 0 => ConnectionLimit::Unlimited,
            // i64 to f64: a connection cap is far below 2^53.
            Ok(limit) => ConnectionLimit::Limit(limit as f64),
            Err(_) => ConnectionLimit::Unknown,
        }
    }

    /// The gauge value: +Inf for unlimited (Prometheus has it), NaN for unknown.
    pub fn value(self) -> f64 {
        match self {
            ConnectionLimit::Unlimited => f64::INFINITY,
            ConnectionLimit::Limit(limit) => limit,
            ConnectionLimit::Unknown => f64::NAN,
        }
    }
}

pub async fn fetch(
    session: &Session,
    node: &Arc<Node>,
    timeout: Duration,
) -> Result<ConnectionLimit, CqlError> {
    let rows = session::rows(session, session::pinned(QUERY, node, timeout)).await?;
    let row: Option<(String, Option<String>)> = rows.maybe_first_row().map_err(CqlError::decode)?;
    Ok(ConnectionLimit::parse(
        row.as_ref().and_then(|(_, value)| value.as_deref()),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minus_one_is_unlimited_and_garbage_is_unknown() {
        assert_eq!(
            ConnectionLimit::parse(Some("-1")),
            ConnectionLimit::Unlimited
        );
        assert_eq!(
            ConnectionLimit::parse(Some("500")),
            ConnectionLimit::Limit(500.0)
        );
        assert_eq!(
            ConnectionLimit::parse(Some("lots")),
            ConnectionLimit::Unknown
        );
        assert_eq!(ConnectionLimit::parse(None), ConnectionLimit::Unknown);
        assert!(ConnectionLimit::Unlimited.value().is_infinite());
        assert!(ConnectionLimit::Unknown.value().is_nan());
    }
}
