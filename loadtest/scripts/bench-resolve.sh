#!/usr/bin/env bash
# Resolve throughput and latency of the URL shortener, directly and through the meshwork
# gateway, in one run on the same replica (h2load with a prepared gRPC body).
#
# h2load counts HTTP status only, and a gRPC error is HTTP 200; so every Resolve counts a
# click, and the script checks afterwards that total_clicks equals the number of requests
# h2load reported as done: then every call returned grpc-status 0.
#
# usage: loadtest/scripts/bench-resolve.sh [requests per run] [clients] [streams per client]
set -euo pipefail
cd "$(dirname "$0")/../.."
N=${1:-100000}
C=${2:-16}
M=${3:-32}
BIN=target/release/meshwork
[ -x "$BIN" ] || cargo build --release --locked --bin meshwork
. loadtest/scripts/lib.sh
work_dir

SVC_PORT=$(free_port)
GW_PORT=$(free_port)
RUST_LOG=warn "$BIN" serve urlshortener --listen 127.0.0.1:$SVC_PORT --store "embedded:$work/store" \
  --public-url "http://127.0.0.1:$GW_PORT" >"$work/serve.log" 2>&1 &
gateway_toml "$GW_PORT" "$SVC_PORT" >"$work/gw.toml"
RUST_LOG=warn "$BIN" gateway --config "$work/gw.toml" >"$work/gw.log" 2>&1 &
wait_healthy "$GW_PORT"

SVC=meshwork.urlshortener.v1.UrlShortener
grpcurl -plaintext -d '{"long_url":"https://example.com/bench","custom_alias":"bench01"}' \
  127.0.0.1:$GW_PORT $SVC/Shorten >/dev/null
# ResolveRequest{code:"bench01"}: field 1, length 7; gRPC frame: flag 0, 4-byte length 9.
printf '\x00\x00\x00\x00\x09\x0a\x07bench01' >"$work/resolve.grpc"

run() { # name port
  h2load -n "$N" -c "$C" -m "$M" -t 2 -H 'content-type: application/grpc' -H 'te: trailers' \
    --log-file="$work/$1.log" -d "$work/resolve.grpc" "http://127.0.0.1:$2/$SVC/Resolve" >"$work/$1.txt"
  local rps done
  rps=$(awk '/^finished in/ {print $4}' "$work/$1.txt")
  done=$(awk '/^requests:/ {print $8}' "$work/$1.txt")
  # --log-file: one line per request, "start(us) status duration(us)".
  python3 - "$work/$1.log" "$1" "$rps" "$done" <<'PY'
import sys
d = sorted(int(l.split()[2]) for l in open(sys.argv[1]) if l.strip())
q = lambda p: d[min(len(d) - 1, int(p * len(d)))] / 1000
print(f"{sys.argv[2]:9} req/s={sys.argv[3]:>10} done={sys.argv[4]:>7} p50={q(.5):.2f}ms p95={q(.95):.2f}ms p99={q(.99):.2f}ms")
PY
  echo "$done" >"$work/$1.done"
}
run direct "$SVC_PORT"
run gateway "$GW_PORT"
run direct2 "$SVC_PORT"
run gateway2 "$GW_PORT"
sleep 2 # one click flush interval
# GetStats needs the owner or an admin: asked directly on the service's loopback port, where a
# `meshwork-identity` header is trusted (base64url of {"v":1,"sub":"bench","roles":["admin"],"method":"jwt"}).
admin=$(printf '{"v":1,"sub":"bench","roles":["admin"],"method":"jwt"}' | base64 -w0 | tr '+/' '-_' | tr -d '=')
total=$(grpcurl -plaintext -H "meshwork-identity: $admin" -d '{"code":"bench01"}' 127.0.0.1:$SVC_PORT $SVC/GetStats | python3 -c 'import json,sys; print(json.load(sys.stdin).get("totalClicks","0"))')
expected=$(( $(cat "$work/direct.done") + $(cat "$work/gateway.done") + $(cat "$work/direct2.done") + $(cat "$work/gateway2.done") ))
echo "clicks counted=$total requests done=$expected"
[ "$total" = "$expected" ] || { echo "MISMATCH: some calls did not return grpc-status 0" >&2; exit 1; }
