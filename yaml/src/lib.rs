//! YAML read the way dbwatch reads every file it is given (configuration, rule files, the routing file): parsed
//! into a tree that remembers positions ([`node`]), then read into typed values that collect every problem with
//! its line, column and key path ([`read`]) instead of stopping at the first.

pub mod node;
pub mod read;

mod problem;

pub use problem::{ConfigError, ConfigErrors};
