//! Collection discovery for the per-collection views: `listDatabases`, then `listCollections` per database.
//!
//! Only plain collections (`type: "collection"`, so no views and no time series) outside `system.*` count, in
//! database then collection order, up to a cap: the per-collection commands are the expensive part of a poll on
//! a server with thousands of collections (mongodb_exporter #646), so what lies beyond the cap is counted, not read.

use mongodb::bson::{doc, Bson};

use super::connection::{Conn, MongoError};
use super::fields;

pub const VIEW: &str = "list_collections";

/// Which databases to look into.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatabaseFilter {
    /// When not empty, only these databases.
    pub include: Vec<String>,
    pub exclude: Vec<String>,
}

impl DatabaseFilter {
    pub fn selects(&self, database: &str) -> bool {
        if self.exclude.iter().any(|excluded| excluded == database) {
            return false;
        }
        self.include.is_empty() || self.include.iter().any(|included| included == database)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Namespace {
    pub database: String,
    pub collection: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Discovery {
    /// The collections to read, at most the cap.
    pub namespaces: Vec<Namespace>,
    /// Collections found beyond the cap.
    pub skipped: usize,
}

pub async fn fetch(
    conn: &Conn,
    filter: &DatabaseFilter,
    cap: usize,
) -> Result<Discovery, MongoError> {
    let answer = conn
        .command(
            "admin",
            doc! { "listDatabases": 1, "nameOnly": true, "authorizedDatabases": true },
        )
        .await?;
    let mut databases: Vec<String> = answer
        .get("databases")
        .and_then(Bson::as_array)
        .ok_or_else(|| MongoError::decode("listDatabases has no databases"))?
        .iter()
        .filter_map(Bson::as_document)
        .filter_map(|database| fields::str_at(database, "name"))
        .filter(|name| filter.selects(name))
        .map(str::to_owned)
        .collect();
    databases.sort_unstable();

    let mut discovery = Discovery::default();
    for database in databases {
        let listed = conn
            .documents(
                &database,
                doc! {
                    "listCollections": 1,
                    "filter": { "type": "collection" },
                    "nameOnly": true,
                    "authorizedCollections": true,
                },
            )
            .await?;
        let mut names: Vec<&str> = listed
            .iter()
            .filter_map(|collection| fields::str_at(collection, "name"))
            .filter(|name| !name.starts_with("system."))
            .collect();
        names.sort_unstable();
        for name in names {
            if discovery.namespaces.len() < cap {
                discovery.namespaces.push(Namespace {
                    database: database.clone(),
                    collection: name.to_owned(),
                });
            } else {
                discovery.skipped += 1;
            }
        }
    }
    Ok(discovery)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exclusion_wins_over_inclusion() {
        let all_but_internal = DatabaseFilter {
            include: Vec::new(),
            exclude: vec!["admin".into(), "local".into(), "config".into()],
        };
        assert!(all_but_internal.selects("catalog"));
        assert!(!all_but_internal.selects("local"));
        let only = DatabaseFilter {
            include: vec!["catalog".into(), "local".into()],
            exclude: vec!["local".into()],
        };
        assert!(only.selects("catalog"));
        assert!(!only.selects("shop"));
        assert!(!only.selects("local"));
    }
}
