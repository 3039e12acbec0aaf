#!/usr/bin/env bash
# The gateway's tail right after a saturation burst, two gateways side by side in front of one
# `meshwork serve urlshortener` backend: "default" with mimalloc's own options, "tuned" with
# MIMALLOC_PURGE_DELAY=B_DELAY (default -1: freed memory never returned to the OS). Per round
# and gateway (order alternating): SECS at saturation (-c 256, 8 connections), then SECS at
# 5,000 calls/s twice; prints each gateway's p99 of the run right after the burst and of the
# one after that, per round, and their medians.
#
# usage: [B_DELAY=-1] loadtest/scripts/burst-p99.sh [rounds=6] [seconds=5]
set -euo pipefail
cd "$(dirname "$0")/../.."
ROUNDS=${1:-6}; SECS=${2:-5}
BIN=target/release/meshwork
[ -x "$BIN" ] || cargo build --release --locked --bin meshwork
. loadtest/scripts/lib.sh
proc_dir
SP=$(free_port); AP=$(free_port); BP=$(free_port)
start_shortener "$SP"
gateway_toml "$AP" "$SP" >"$work/a.toml"; gateway_toml "$BP" "$SP" >"$work/b.toml"
RUST_LOG=warn "$BIN" gateway --config "$work/a.toml" >"$work/a.log" 2>&1 & pids+=($!)
MIMALLOC_PURGE_DELAY=${B_DELAY:--1} RUST_LOG=warn "$BIN" gateway --config "$work/b.toml" >"$work/b.log" 2>&1 & pids+=($!)
declare -A PORT=([default]=$AP [tuned]=$BP)
wait_resolving $SP $AP $BP
grpcurl -plaintext -d '{"long_url":"https://example.com/bench","custom_alias":"bench01"}' 127.0.0.1:$SP $SVC/Shorten >/dev/null
DATA='{"code":"bench01","skip_click":true}'
one() {
  "$BIN" load --insecure --call $SVC/Resolve -d "$DATA" -c 256 --connections 8 -z "${SECS}s" -O json -o "$work/$1-sat-$2.json" 127.0.0.1:${PORT[$1]} >/dev/null
  "$BIN" load --insecure --call $SVC/Resolve -d "$DATA" -c 64 --connections 4 --rps 5000 -z "${SECS}s" -O json -o "$work/$1-rate-$2.json" 127.0.0.1:${PORT[$1]} >/dev/null
  "$BIN" load --insecure --call $SVC/Resolve -d "$DATA" -c 64 --connections 4 --rps 5000 -z "${SECS}s" -O json -o "$work/$1-rate2-$2.json" 127.0.0.1:${PORT[$1]} >/dev/null
}
for r in $(seq "$ROUNDS"); do
  if [ $((r % 2)) = 1 ]; then one default $r; one tuned $r; else one tuned $r; one default $r; fi
done
python3 - "$work" "$ROUNDS" <<'PY'
import json, statistics, sys
work, rounds = sys.argv[1], int(sys.argv[2])
def p(f):
    d = json.load(open(f)); pct = {l["percentage"]: l["latency"] / 1e6 for l in d.get("latencyDistribution") or []}
    return pct.get(99, 0)
for n in ("default", "tuned"):
    a = [p(f"{work}/{n}-rate-{r}.json") for r in range(1, rounds + 1)]
    b = [p(f"{work}/{n}-rate2-{r}.json") for r in range(1, rounds + 1)]
    print(n, "p99 right after burst", " ".join(f"{x:.2f}" for x in a), "median %.2f" % statistics.median(a))
    print(n, "p99 in the run after ", " ".join(f"{x:.2f}" for x in b), "median %.2f" % statistics.median(b))
PY
