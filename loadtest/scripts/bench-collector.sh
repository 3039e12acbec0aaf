#!/usr/bin/env bash
# Collector ingest cost: CPU time per span of `meshwork traces` (persisting to its data dir),
# fed OTLP/gRPC exports of gateway/service-shaped spans by the collector_load example. Give
# several collector binaries to compare them in one run (alternating, fresh data dir each,
# the same number of traces pushed twice per run so that the second pass also evicts).
# usage: loadtest/scripts/bench-collector.sh [traces per pass] [rounds] [meshwork binary...]
set -euo pipefail
cd "$(dirname "$0")/../.."
TRACES=${1:-40000}
ROUNDS=${2:-3}
shift 2 || true
BINS=("$@")
[ ${#BINS[@]} -gt 0 ] || BINS=(target/release/meshwork)
LOAD=${LOAD:-target/release/examples/collector_load}
[ -x "$LOAD" ] || cargo build --release --locked -p meshwork-observability --example collector_load
. loadtest/scripts/lib.sh
work_dir
for round in $(seq "$ROUNDS"); do
  for bin in "${BINS[@]}"; do
    G=$(free_port); H=$(free_port); U=$(free_port)
    rm -rf "$work/traces"
    # The store keeps 200000 spans by default: the second pass of 40000 traces (5 spans each)
    # evicts a trace per trace it adds.
    RUST_LOG=warn "$bin" traces --otlp-grpc 127.0.0.1:$G --otlp-http 127.0.0.1:$H --trace-ui 127.0.0.1:$U \
      --data-dir "$work/traces" >"$work/traces.log" 2>&1 &
    pid=$!
    for _ in $(seq 100); do (echo >/dev/tcp/127.0.0.1/$G) 2>/dev/null && break; sleep 0.1; done
    for pass in 1 2; do
      echo "round $round  pass $pass  $bin  $("$LOAD" "http://127.0.0.1:$G" "$pid" "$TRACES")"
    done
    kill "$pid"; wait "$pid" 2>/dev/null || true
  done
done
