//! amtool (Debian's prometheus-alertmanager package, installed by `deploy/local/fleet up tools`) as the
//! reference for routing files: what it accepts and where it routes a label set.

use std::path::Path;
use std::process::Command;

/// Whether `amtool check-config` accepts the file, with its output when it does not.
pub fn check(file: &Path) -> Result<(), String> {
    let output = Command::new("amtool")
        .arg("check-config")
        .arg(file)
        .output()
        .expect("amtool runs (deploy/local/fleet up tools installs it)");
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ))
    }
}

/// The receivers `amtool config routes test` picks for a label set, in its order.
pub fn receivers(file: &Path, labels: &[(&str, &str)]) -> Vec<String> {
    let output = Command::new("amtool")
        .arg("config")
        .arg("routes")
        .arg("test")
        .arg(format!("--config.file={}", file.display()))
        .args(labels.iter().map(|(k, v)| format!("{k}={v}")))
        .output()
        .expect("amtool runs (deploy/local/fleet up tools installs it)");
    assert!(
        output.status.success(),
        "amtool config routes test failed on {}: {}",
        file.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout)
        .trim()
        .split(',')
        .map(|name| name.trim().to_owned())
        .collect()
}
