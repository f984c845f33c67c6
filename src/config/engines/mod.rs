//! The `connection:` and `collectors:` keys of each engine besides PostgreSQL, one file per engine.

#[cfg(feature = "cassandra")]
pub mod cassandra;
#[cfg(feature = "dynamodb")]
pub mod dynamodb;
#[cfg(feature = "mongodb")]
pub mod mongodb;
#[cfg(feature = "mysql")]
pub mod mysql;
