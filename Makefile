# The two commands a new user needs (see README.md), plus the checks CI adds.

.PHONY: demo test lint

# The local fleet, a workload on it, and dbwatch watching it.
demo:
	deploy/local/demo

# Every test, against real servers that this installs and starts.
test:
	deploy/local/test

lint:
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets --all-features --locked -- -D warnings
