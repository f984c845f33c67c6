//! dbwatch: one daemon that watches PostgreSQL, MySQL, MongoDB, Cassandra and DynamoDB.
//!
//! Data flow: [`config`] is read and validated once; [`scheduler`] runs one task per target that polls its
//! collector (from the `dbwatch-collectors` crate) and publishes a [`store::Snapshot`]; [`http`] serves the
//! latest snapshots at `/metrics` through [`exposition`]. See ARCHITECTURE.md for the map and its invariants.

pub mod app;
pub mod config;
pub mod engines;
pub mod exposition;
pub mod http;
pub mod load;
pub mod logging;
pub mod reload;
pub mod remote_write;
pub mod scheduler;
pub mod self_metrics;
pub mod store;
pub mod supervise;
pub mod target_events;
pub mod web;
