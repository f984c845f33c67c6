//! promtool (Debian's prometheus package, installed by `deploy/local/fleet up tools`) as the reference linter
//! of exposition text.

use std::io::Write as _;
use std::process::{Command, Stdio};

/// `promtool check metrics` on `body`; panics with promtool's output when it refuses it.
pub fn check_metrics(body: &str) {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|error| {
            panic!("promtool is required (Debian package prometheus, installed by `make test`): {error}")
        });
    child
        .stdin
        .take()
        .expect("promtool stdin")
        .write_all(body.as_bytes())
        .expect("feed promtool");
    let output = child.wait_with_output().expect("promtool output");
    assert!(
        output.status.success(),
        "promtool check metrics failed:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}
