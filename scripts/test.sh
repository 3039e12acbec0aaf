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
# Licences, bans and sources of the dependency tree (deny.toml). Not `advisories`: the
# advisory database is fetched from GitHub, which this project's machines cannot reach.
echo "== cargo deny (licenses bans sources)"
cargo deny --locked check --hide-inclusion-graph licenses bans sources
echo "== rustfmt"
cargo fmt --all -- --check
echo "== clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "== protos (buf lint, format, breaking)"
scripts/check-protos.sh
echo "== Rust SDK (meshwork-proto: every generated client example compiles; the crate packages)"
cargo test --doc -p meshwork-proto --locked
cargo package -p meshwork-proto --locked --allow-dirty --quiet
echo "== tests"
cargo test --workspace --all-targets --locked
