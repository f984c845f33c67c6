//! Helpers shared by the tests that run dbwatch against the local fleet (tests/dashboards.rs, tests/web.rs):
//! the fleet's settings from the environment, ephemeral ports, and child processes that never outlive a test.

#![allow(dead_code)] // each test crate uses its own subset

use std::process::{Child, ExitStatus};

/// A fleet setting exported by `deploy/local/fleet env`; panics (the test fails) when the fleet is not set up.
pub fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: run the tests through `make test`, which starts the fleet and exports its settings")
    })
}

/// (host, port) of a fleet URL such as mysql://dbwatch:dbwatch@127.0.0.1:13306/.
pub fn host_port(url: &str) -> (String, String) {
    let rest = url.rsplit_once('@').map_or(url, |(_, rest)| rest);
    let authority = rest.split('/').next().unwrap_or(rest);
    let (host, port) = authority
        .rsplit_once(':')
        .unwrap_or_else(|| panic!("no port in {url}"));
    (host.to_owned(), port.to_owned())
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("an ephemeral port")
        .port()
}

/// A child process killed when the test ends, however it ends.
pub struct Process(pub Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Process {
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.0.try_wait().ok().flatten()
    }
}

/// The `connection:` block (YAML flow style) for one of the fleet's servers, as the dbwatch account sees it:
/// `pg-primary`, `pg-replica`, `pgbouncer`, `mysql-primary`, `mysql-replica`, `mongodb`, `cassandra`,
/// `dynamodb`.
pub fn connection(server: &str) -> String {
    let sql = |variable: &str| {
        let (host, port) = host_port(&env(variable));
        format!("{{host: {host}, port: {port}, user: dbwatch, password: dbwatch}}")
    };
    match server {
        "pg-primary" => sql("DBWATCH_PG_PRIMARY_URL"),
        "pg-replica" => sql("DBWATCH_PG_REPLICA_URL"),
        "pgbouncer" => sql("DBWATCH_PGBOUNCER_URL"),
        "mysql-primary" => sql("DBWATCH_MYSQL_PRIMARY_URL"),
        "mysql-replica" => sql("DBWATCH_MYSQL_REPLICA_URL"),
        "mongodb" => format!("{{url: \"{}\"}}", env("DBWATCH_MONGODB_URL")),
        "cassandra" => {
            let points: Vec<String> = env("DBWATCH_CASSANDRA_CONTACT_POINTS")
                .split(',')
                .map(|point| format!("\"{point}\""))
                .collect();
            format!("{{contact_points: [{}]}}", points.join(", "))
        }
        "dynamodb" => format!(
            "{{endpoint_url: \"{}\", region: {}}}",
            env("DBWATCH_AWS_ENDPOINT_URL"),
            env("AWS_REGION")
        ),
        other => panic!("no fleet server named {other}"),
    }
}

/// `value` percent-encoded for a URL's query string (Prometheus's HTTP API takes PromQL there).
pub fn encode(value: &str) -> String {
    let mut out = String::new();
    for byte in value.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(byte as char)
            }
            other => out.push_str(&format!("%{other:02X}")),
        }
    }
    out
}
