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
