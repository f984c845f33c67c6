# The two commands a new user needs (see README.md), plus the checks CI adds.

.PHONY: demo test lint

# The local fleet, a workload on it, and dbwatch watching it.
demo:
	deploy/local/demo

# Every test, against real servers that this installs and starts.
test:
	deploy/local/test

# Formatting, clippy on everything, and every engine feature built alone and with none (deploy/lint/each-feature,
# which installs cargo-hack when missing).
lint:
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets --all-features --locked -- -D warnings
	deploy/lint/each-feature

# Benchmarks, not tests: rendering /metrics and one PostgreSQL poll, one rules-engine cycle (criterion), then dbwatch side by side with
# postgres_exporter and mysqld_exporter (MariaDB and MySQL 8.0) on the local fleet. Method and figures: docs/benchmarks.md.
.PHONY: bench
bench:
	deploy/local/fleet up postgres mariadb mysql
	eval "$$(deploy/local/fleet env postgres)" && cargo bench --workspace --all-features --locked --bench render
	cargo bench --workspace --all-features --locked --bench rules
	cargo bench --workspace --all-features --locked --bench notify
	deploy/bench/pg_compare.sh
	deploy/bench/mysql_compare.sh
	SERVER=mysql8 deploy/bench/mysql_compare.sh
