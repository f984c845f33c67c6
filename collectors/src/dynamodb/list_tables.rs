//! ListTables: the tables of the account and region, filtered by the target's include/exclude patterns. Also the
//! liveness probe of a poll: when it fails, DynamoDB is not readable at all.

use crate::metric::{MetricDesc, MetricKind, Sample};

use super::api_usage::{Api, PollUsage};
use super::client::{api_error, ApiError};

pub const VIEW: &str = "list_tables";

/// ListTables returns at most 100 names per page; a bound on pages keeps a runaway pagination from eating a poll.
const MAX_PAGES: usize = 1000;

pub static TABLES: MetricDesc = MetricDesc {
    name: "dynamodb_tables",
    help: "Tables monitored: listed, matching the include/exclude patterns, within max_tables",
    kind: MetricKind::Gauge,
    labels: &[],
};
pub static TABLES_SKIPPED: MetricDesc = MetricDesc {
    name: "dynamodb_tables_over_limit",
    help: "Tables matching the patterns but left unmonitored because max_tables was reached",
    kind: MetricKind::Gauge,
    labels: &[],
};

pub static DESCRIPTORS: &[&MetricDesc] = &[&TABLES, &TABLES_SKIPPED];

pub async fn fetch(
    client: &aws_sdk_dynamodb::Client,
    usage: &mut PollUsage,
) -> Result<Vec<String>, ApiError> {
    let mut names = Vec::new();
    let mut start: Option<String> = None;
    for _ in 0..MAX_PAGES {
        usage.call(Api::ListTables);
        let page = client
            .list_tables()
            .set_exclusive_start_table_name(start.take())
            .send()
            .await
            .map_err(|error| api_error(&error))?;
        names.extend(page.table_names().iter().cloned());
        match page.last_evaluated_table_name() {
            Some(last) => start = Some(last.to_owned()),
            None => return Ok(names),
        }
    }
    Err(ApiError::decode(format!(
        "more than {MAX_PAGES} pages of table names"
    )))
}

/// Which tables a target watches: include patterns (all tables when empty), minus exclude patterns.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TableFilter {
    pub include: Vec<String>,
    pub exclude: Vec<String>,
    pub max_tables: usize,
}

/// The tables to monitor, sorted, and how many matched but were cut by `max_tables`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selection {
    pub tables: Vec<String>,
    pub over_limit: usize,
}

impl TableFilter {
    pub fn matches(&self, table: &str) -> bool {
        let included = self.include.is_empty()
            || self
                .include
                .iter()
                .any(|pattern| glob_matches(pattern, table));
        included
            && !self
                .exclude
                .iter()
                .any(|pattern| glob_matches(pattern, table))
    }

    pub fn select(&self, mut listed: Vec<String>) -> Selection {
        listed.retain(|table| self.matches(table));
        listed.sort_unstable();
        listed.dedup();
        let over_limit = listed.len().saturating_sub(self.max_tables);
        listed.truncate(self.max_tables);
        Selection {
            tables: listed,
            over_limit,
        }
    }
}

impl Selection {
    pub fn samples(&self, out: &mut Vec<Sample>) {
        out.push(TABLES.sample(self.tables.len() as f64));
        out.push(TABLES_SKIPPED.sample(self.over_limit as f64));
    }
}

/// A simple glob: `*` matches any run of characters (also none), `?` exactly one, everything else itself.
/// Table names are `[a-zA-Z0-9_.-]+`, so no escaping is needed.
pub fn glob_matches(pattern: &str, text: &str) -> bool {
    let pattern: Vec<char> = pattern.chars().collect();
    let text: Vec<char> = text.chars().collect();
    let (mut p, mut t) = (0, 0);
    // Where the last `*` was and which text position it currently swallows up to: the classic backtracking
    // matcher, linear in practice and without recursion.
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        if p < pattern.len() && (pattern[p] == '?' || pattern[p] == text[t]) {
            p += 1;
            t += 1;
        } else if p < pattern.len() && pattern[p] == '*' {
            star = Some((p, t));
            p += 1;
        } else if let Some((star_p, star_t)) = star {
            p = star_p + 1;
            t = star_t + 1;
            star = Some((star_p, star_t + 1));
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|c| *c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_match_stars_and_question_marks() {
        assert!(glob_matches("*", "UserSessions"));
        assert!(glob_matches("User*", "UserSessions"));
        assert!(glob_matches("*Sessions", "UserSessions"));
        assert!(glob_matches("U*r*s", "UserSessions"));
        assert!(glob_matches("Shopping?art", "ShoppingCart"));
        assert!(glob_matches("", ""));
        assert!(!glob_matches("", "x"));
        assert!(!glob_matches("User", "UserSessions"));
        assert!(!glob_matches("*Cart", "UserSessions"));
        assert!(!glob_matches("a?c", "ac"));
    }

    #[test]
    fn selection_includes_excludes_sorts_and_caps() {
        let filter = TableFilter {
            include: vec!["*".into()],
            exclude: vec!["tmp-*".into()],
            max_tables: 2,
        };
        let listed = vec![
            "ShoppingCart".into(),
            "tmp-1".into(),
            "Notifications".into(),
            "UserSessions".into(),
        ];
        let selection = filter.select(listed);
        assert_eq!(selection.tables, vec!["Notifications", "ShoppingCart"]);
        assert_eq!(selection.over_limit, 1);

        let everything = TableFilter {
            max_tables: 10,
            ..TableFilter::default()
        };
        assert!(everything.matches("anything"));
    }
}
