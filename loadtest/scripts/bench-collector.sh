#!/usr/bin/env bash
# Collector ingest cost: CPU time per span of `meshwork traces` (persisting to its data dir),
# fed OTLP/gRPC exports of gateway/service-shaped spans by the collector_load example. Give
# several collector binaries to compare them in one run (alternating, fresh data dir each,
# the same number of traces pushed twice per run so that the second pass also evicts).
# usage: loadtest/scripts/bench-collector.sh [traces per pass] [rounds] [meshwork binary...]
set -euo pipefail
cd "$(dirname "$0")/../.."
. loadtest/scripts/lib.sh
collector_bench_args "$@"
work_dir
for round in $(seq "$ROUNDS"); do
  for bin in "${BINS[@]}"; do
    # The store keeps 200000 spans by default: the second pass of 40000 traces (5 spans each)
    # evicts a trace per trace it adds.
    start_collector "$bin"
    for pass in 1 2; do
      echo "round $round  pass $pass  $bin  $("$LOAD" "http://127.0.0.1:$G" "$pid" "$TRACES")"
    done
    kill "$pid"; wait "$pid" 2>/dev/null || true
  done
done
