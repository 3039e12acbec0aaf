#!/usr/bin/env bash
# `meshwork load` against h2load on the same server at equal concurrency, alternating, in one
# run: is the load generator ever the bottleneck? One `meshwork serve urlshortener` (embedded
# store); the call is Resolve{code:"bench01", skip_click:true} (cache hit, no click written).
# h2load's -c connections x -m streams equals meshwork load's --connections x -c workers.
#
# usage: loadtest/scripts/bench-loadgen.sh [seconds per run] [connections] [streams per connection] [rounds]
set -euo pipefail
cd "$(dirname "$0")/../.."
SECS=${1:-5}
CONNS=${2:-16}
M=${3:-32}
ROUNDS=${4:-2}
BIN=target/release/meshwork
[ -x "$BIN" ] || cargo build --release --locked --bin meshwork
. loadtest/scripts/lib.sh
work_dir
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
RUST_LOG=warn "$BIN" serve urlshortener --listen 127.0.0.1:$PORT --store "embedded:$work/store" >"$work/serve.log" 2>&1 &
SVC=meshwork.urlshortener.v1.UrlShortener
for _ in $(seq 100); do
  grpcurl -plaintext -d '{"long_url":"https://example.com/bench","custom_alias":"bench01"}' 127.0.0.1:$PORT $SVC/Shorten >/dev/null 2>&1 && break
  sleep 0.1
done
printf '\x00\x00\x00\x00\x0b\x0a\x07bench01\x18\x01' >"$work/resolve.grpc"
C=$(( CONNS * M ))
echo "| round | h2load -c $CONNS -m $M req/s | meshwork load -c $C --connections $CONNS req/s | ratio |"
echo "|---|---|---|---|"
for r in $(seq "$ROUNDS"); do
  h2load -D "$SECS" -c "$CONNS" -m "$M" -t 2 -H 'content-type: application/grpc' -H 'te: trailers' \
    -d "$work/resolve.grpc" "http://127.0.0.1:$PORT/$SVC/Resolve" >"$work/h2load.txt"
  h2=$(awk '/^finished in/ {gsub(",", "", $4); print $4}' "$work/h2load.txt")
  "$BIN" load --insecure --call $SVC/Resolve -d '{"code":"bench01","skip_click":true}' \
    -c "$C" --connections "$CONNS" -z "${SECS}s" -O json -o "$work/load.json" 127.0.0.1:$PORT
  python3 - "$r" "$h2" "$work/load.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[3]))
ok = r["statusCodeDistribution"].get("OK", 0)
assert ok == r["count"], f"errors: {r['statusCodeDistribution']}"
h2 = float(sys.argv[2])
print(f"| {sys.argv[1]} | {h2:,.0f} | {r['rps']:,.0f} | {r['rps'] / h2:.2f} |")
PY
done
