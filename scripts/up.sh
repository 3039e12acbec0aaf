#!/usr/bin/env bash
# The main job: installs what is missing, builds meshwork (release) and runs the whole mesh
# on one machine on the embedded store: `scripts/up.sh [meshwork up flags...]`.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
cargo build --release --locked --bin meshwork
exec target/release/meshwork up "$@"
