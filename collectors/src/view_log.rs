//! Logging of failed views without flooding: a view that fails at every poll (a missing grant, a view the
//! server lacks) logs at warn the first time, then at debug until it succeeds again, when one info line says it
//! recovered. Kept per collector, so per target (and per node for Cassandra, whose nodes fail apart).

use std::collections::HashSet;
use std::fmt::Display;

#[derive(Debug, Clone, Default)]
pub struct ViewLog {
    target: String,
    node: Option<String>,
    failing: HashSet<&'static str>,
}

impl ViewLog {
    pub fn new(target: &str) -> Self {
        ViewLog {
            target: target.to_owned(),
            node: None,
            failing: HashSet::new(),
        }
    }

    /// The log of one node of a cluster target.
    pub fn for_node(target: &str, node: &str) -> Self {
        ViewLog {
            node: Some(node.to_owned()),
            ..ViewLog::new(target)
        }
    }

    /// The target the log is for.
    pub fn target(&self) -> &str {
        &self.target
    }

    /// Records a failure; returns whether it was logged at warn (the first of a run of failures).
    pub fn failed(&mut self, view: &'static str, error: &dyn Display) -> bool {
        let node = self.node.as_deref();
        if self.failing.insert(view) {
            tracing::warn!(target_name = %self.target, node, view, error = %error,
                "view failed (logged at debug while it keeps failing)");
            true
        } else {
            tracing::debug!(target_name = %self.target, node, view, error = %error, "view failed again");
            false
        }
    }

    /// Records a success; a view that was failing logs that it recovered.
    pub fn succeeded(&mut self, view: &'static str) {
        if !self.failing.is_empty() && self.failing.remove(view) {
            tracing::info!(target_name = %self.target, node = self.node.as_deref(), view, "view recovered");
        }
    }

    /// Whether `view` failed at its last run.
    pub fn is_failing(&self, view: &str) -> bool {
        self.failing.contains(view)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_view_warns_once_per_run_of_failures() {
        let mut log = ViewLog::new("pg-main");
        assert!(log.failed("pg_stat_statements", &"permission denied"));
        assert!(!log.failed("pg_stat_statements", &"permission denied"));
        assert!(!log.failed("pg_stat_statements", &"permission denied"));
        // Another view of the same target has its own run.
        assert!(log.failed("pg_stat_archiver", &"timeout"));
        log.succeeded("pg_stat_statements");
        assert!(!log.is_failing("pg_stat_statements"));
        assert!(log.is_failing("pg_stat_archiver"));
        // After a recovery the next failure warns again.
        assert!(log.failed("pg_stat_statements", &"permission denied"));
        // Per node for clusters: two nodes' logs are apart.
        let mut first = ViewLog::for_node("events", "127.0.0.1");
        let mut second = ViewLog::for_node("events", "127.0.0.2");
        assert!(first.failed("thread_pools", &"x"));
        assert!(second.failed("thread_pools", &"x"));
    }
}
