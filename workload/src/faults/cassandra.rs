//! The Cassandra fault.

use super::*;

pub(super) fn cassandra_node(args: &FaultArgs, action: &str) -> anyhow::Result<()> {
    let tool = args.cassandra_node_ctl.as_ref().context(
        "no --cassandra-node-ctl: pass it or set DBWATCH_CASSANDRA_NODE_CTL \
         (eval \"$(deploy/local/fleet env)\" sets it for the local fleet)",
    )?;
    let node = args.cassandra_node.to_string();
    let status = Command::new(tool)
        .args([action, &node])
        .stdin(Stdio::null())
        .status()
        .with_context(|| format!("running {} {action} {node}", tool.display()))?;
    anyhow::ensure!(
        status.success(),
        "{} {action} {node} failed ({status})",
        tool.display()
    );
    say(&format!(
        "cassandra-node-down: node {node} {}",
        if action == "stop" {
            "stopped"
        } else {
            "started, both nodes up"
        }
    ));
    Ok(())
}
