# Tools the tests run against dbwatch's output, from Debian's packages: promtool (Prometheus's linter and rule
# tester) and prometheus itself (tests/dashboards.rs scrapes dbwatch with it), amtool (Alertmanager's config
# checker and route tester), systemd-analyze (tests/deploy.rs verifies the unit), bubblewrap (tests/deploy.rs
# starts the shipped unit's and container's command lines under a read-only root), curl and headless chromium
# (tests/web.rs: TLS and the status page). No servers.

tools_install() {
  apt_install prometheus prometheus-alertmanager systemd bubblewrap curl chromium
}

tools_up() { :; }

tools_down() { :; }

tools_status() {
  status_line promtool "$(command -v promtool || echo missing)" promtool --version
  status_line amtool "$(command -v amtool || echo missing)" amtool --version
  status_line prometheus "$(command -v prometheus || echo missing)" prometheus --version
  status_line systemd-analyze "$(command -v systemd-analyze || echo missing)" systemd-analyze --version
  status_line bwrap "$(command -v bwrap || echo missing)" bwrap --version
  status_line chromium "$(command -v chromium || echo missing)" chromium --version
}

tools_env() {
  printf 'export DBWATCH_PROMTOOL=%s\n' "$(command -v promtool || echo promtool)"
}
