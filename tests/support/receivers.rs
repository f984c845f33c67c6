//! One test's slice of the fleet's HTTP receivers (deploy/local/receivers/http_receivers.py): a bucket of its
//! own, the answers it scripts, and what reached it, for the tests that deliver to Slack, PagerDuty and webhooks.

#![allow(dead_code)] // each test crate uses its own subset

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

/// One test's slice of the HTTP receivers.
pub struct Receivers {
    base: String,
    pub bucket: String,
    client: reqwest::Client,
}

impl Receivers {
    pub async fn new(name: &str, script: &[&str], default: &str) -> Receivers {
        let base = std::env::var("DBWATCH_RECEIVERS_URL").unwrap_or_else(|_| {
            panic!("DBWATCH_RECEIVERS_URL is not set: run `deploy/local/fleet up receivers` and `eval \"$(deploy/local/fleet env)\"` (make test does both)")
        });
        Receivers::at(base, name, script, default).await
    }

    /// A bucket on the receivers at `base` (a copy a test started itself, [`Own`]).
    pub async fn at(base: String, name: &str, script: &[&str], default: &str) -> Receivers {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("clock")
            .as_nanos();
        let receivers = Receivers {
            base,
            bucket: format!("{name}-{}-{nanos}", std::process::id()),
            client: reqwest::Client::new(),
        };
        receivers.script(script, default).await;
        receivers
    }

    pub async fn script(&self, script: &[&str], default: &str) {
        let response = self
            .client
            .put(format!("{}/_control/{}", self.base, self.bucket))
            .body(json!({"script": script, "default": default}).to_string())
            .send()
            .await
            .expect("the receivers answer");
        assert!(response.status().is_success());
    }

    pub fn url(&self, kind: &str) -> String {
        match kind {
            "pagerduty" => format!("{}/pagerduty/{}/v2/enqueue", self.base, self.bucket),
            // Base URLs the integration appends its API path to.
            "opsgenie" | "victorops" => format!("{}/{kind}/{}/", self.base, self.bucket),
            "pushover" => format!("{}/pushover/{}/1/messages.json", self.base, self.bucket),
            _ => format!("{}/{kind}/{}", self.base, self.bucket),
        }
    }

    pub async fn requests(&self) -> Vec<Value> {
        let text = self
            .client
            .get(format!("{}/_requests/{}", self.base, self.bucket))
            .send()
            .await
            .expect("the receivers answer")
            .text()
            .await
            .expect("a body");
        serde_json::from_str(&text).expect("a JSON list")
    }

    /// Polls until `done` holds for the requests seen so far.
    pub async fn wait(
        &self,
        what: &str,
        timeout: Duration,
        done: impl Fn(&[Value]) -> bool,
    ) -> Vec<Value> {
        let deadline = Instant::now() + timeout;
        loop {
            let requests = self.requests().await;
            if done(&requests) {
                return requests;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; requests so far: {requests:#?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// A copy of the HTTP receivers this test process runs itself (`http_receivers.py --port 0` on a free port,
/// with the system's python3), for endpoints the fleet's long-running copy may predate; stopped on drop.
pub struct Own {
    child: std::process::Child,
    pub base: String,
}

impl Own {
    pub fn start(repo: &std::path::Path) -> Own {
        use std::io::BufRead as _;
        let script = repo.join("deploy/local/receivers/http_receivers.py");
        let mut child = std::process::Command::new("python3")
            .arg(&script)
            .args(["--port", "0"])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::inherit())
            .spawn()
            .unwrap_or_else(|error| panic!("python3 {}: {error}", script.display()));
        let stdout = child.stdout.take().expect("stdout");
        let mut line = String::new();
        std::io::BufReader::new(stdout)
            .read_line(&mut line)
            .expect("the receivers print their port");
        let port = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .to_owned();
        Own {
            child,
            base: format!("http://127.0.0.1:{port}"),
        }
    }
}

impl Drop for Own {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
