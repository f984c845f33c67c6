//! Shared by the workload's fleet tests: the environment `deploy/local/fleet env` prints, and the binary.
#![allow(dead_code)]

use std::process::{Command, Output};
use std::str::FromStr;

use sqlx::mysql::{MySqlConnectOptions, MySqlConnection};
use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::ConnectOptions;

pub const FLEET_HINT: &str = "run `deploy/local/fleet up` and `eval \"$(deploy/local/fleet env)\"`";

pub fn env(name: &str) -> String {
    match std::env::var(name) {
        Ok(value) if !value.is_empty() => value,
        _ => panic!("{name} is not set: {FLEET_HINT}"),
    }
}

/// The workload binary, with the fleet's environment inherited.
pub fn workload() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_dbwatch-workload"));
    command.env("NO_COLOR", "1");
    command
}

/// Runs it and returns its output; panics with both streams when it fails.
pub fn run(command: &mut Command) -> Output {
    let output = command.output().expect("the workload binary runs");
    assert!(
        output.status.success(),
        "{command:?} failed ({}):\nstdout:\n{}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

pub async fn pg(var: &str) -> PgConnection {
    PgConnectOptions::from_str(&env(var))
        .expect("a PostgreSQL URL")
        .connect()
        .await
        .unwrap_or_else(|error| {
            panic!("PostgreSQL at ${var} does not answer: {error}; {FLEET_HINT}")
        })
}

pub async fn mysql(var: &str) -> MySqlConnection {
    MySqlConnectOptions::from_str(&env(var))
        .expect("a MySQL URL")
        .connect()
        .await
        .unwrap_or_else(|error| panic!("MariaDB at ${var} does not answer: {error}; {FLEET_HINT}"))
}

/// A name no other test run uses.
pub fn unique(purpose: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .subsec_nanos();
    format!("{purpose}-{}-{nanos}", std::process::id())
}
