#!/usr/bin/env bash
# Every test: installs what is missing, checks formatting and clippy (-D warnings), then runs
# the whole workspace's tests (unit, storage conformance on memory/embedded/a real 3-member
# etcd cluster, service tests, end-to-end tests of the real binary with grpcurl and a
# generated Python client).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
# A one-shot CI build gains nothing from incremental compilation and its cache costs gigabytes.
if [ -n "${CI:-}" ]; then export CARGO_INCREMENTAL=0; fi
echo "== rustfmt"
cargo fmt --all -- --check
echo "== clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "== tests"
cargo test --workspace --all-targets --locked
