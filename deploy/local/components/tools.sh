# Tools the tests run against dbwatch's output, from Debian's packages: promtool (Prometheus's linter and rule
# tester) and amtool (Alertmanager's config checker and route tester). No servers.

tools_install() {
  apt_install prometheus prometheus-alertmanager
}

tools_up() { :; }

tools_down() { :; }

tools_status() {
  status_line promtool "$(command -v promtool || echo missing)" promtool --version
  status_line amtool "$(command -v amtool || echo missing)" amtool --version
}

tools_env() {
  printf 'export DBWATCH_PROMTOOL=%s\n' "$(command -v promtool || echo promtool)"
}
