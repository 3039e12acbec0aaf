#!/usr/bin/env bash
# The gateway with fast_path off and on (issue 26), beside the backend alone: one urlshortener
# backend (embedded store), Resolve{code:"bench01", skip_click:true}; per round and target h2load
# at saturation (8 connections x 32 streams, SECS seconds) with the CPU per call of the gateway (of
# the backend for "direct"), then `meshwork load` at a fixed 5,000 calls/s through each gateway.
# Usage: loadtest/scripts/gateway-fast-path.sh [SECS=5] [ROUNDS=3] (needs target/release/meshwork,
# h2load, grpcurl).
set -euo pipefail
cd "$(dirname "$0")/../.."
SECS=${1:-5}; ROUNDS=${2:-3}
BIN=target/release/meshwork
. loadtest/scripts/lib.sh
# stop_all sends SIGINT: the gateway drains at once (its SIGTERM path waits for Pingora).
proc_dir
SVC_PORT=$(free_port); OFF_PORT=$(free_port); ON_PORT=$(free_port)
start_shortener "$SVC_PORT"
for mode in off on; do
  port=$OFF_PORT; fp=false; [ $mode = on ] && { port=$ON_PORT; fp=true; }
  gateway_toml "$port" "$SVC_PORT" -- "fast_path = $fp" "upgrade_sock = \"$work/gw-$mode.sock\"" >"$work/gw-$mode.toml"
  RUST_LOG=warn "$BIN" gateway --config "$work/gw-$mode.toml" >"$work/gw-$mode.log" 2>&1 &
  pids+=("$!"); eval "PID_$mode=$!"
done
for port in $SVC_PORT $OFF_PORT $ON_PORT; do
  for _ in $(seq 100); do
    grpcurl -plaintext -d '{"code":"x","skip_click":true}' 127.0.0.1:$port $SVC/Resolve 2>&1 | grep -q -i 'not.found' && break
    sleep 0.1
  done
done
grpcurl -plaintext -d '{"long_url":"https://example.com/bench","custom_alias":"bench01"}' 127.0.0.1:$SVC_PORT $SVC/Shorten >/dev/null
printf '\x00\x00\x00\x00\x0b\x0a\x07bench01\x18\x01' >"$work/resolve.grpc"
ticks() { awk '{print $14+$15}' /proc/$1/stat; }
TCK=$(getconf CLK_TCK)
for r in $(seq "$ROUNDS"); do
  # on+deadline: the fast path with a grpc-timeout on every call (the relay's deadline timer).
  for mode in direct off on on+deadline; do
    extra=(-H 'x-no-deadline: 1')
    case $mode in
      direct) port=$SVC_PORT; pid=$SVC_PID;;
      off) port=$OFF_PORT; pid=$PID_off;;
      on) port=$ON_PORT; pid=$PID_on;;
      on+deadline) port=$ON_PORT; pid=$PID_on; extra=(-H 'grpc-timeout: 5S');;
    esac
    b=$(ticks $pid)
    out=$(h2load -D "$SECS" -c 8 -m 32 -t 1 -H 'content-type: application/grpc' -H 'te: trailers' "${extra[@]}" \
      -d "$work/resolve.grpc" "http://127.0.0.1:$port/$SVC/Resolve" 2>&1)
    a=$(ticks $pid)
    rps=$(echo "$out" | sed -n 's/.*finished in [^,]*, \([0-9.]*\) req\/s.*/\1/p')
    done_=$(echo "$out" | sed -n 's/^requests: .* \([0-9]*\) succeeded.*/\1/p')
    st=$(echo "$out" | grep -E "^status codes" )
    cpu=$(python3 -c "print(f'{($a-$b)/$TCK*1e6/max($done_,1):.1f}')")
    echo "round $r $mode: ${rps} req/s, ${done_} ok, CPU ${cpu} µs/call ($( [ $mode = direct ] && echo backend || echo gateway)); $st"
  done
done
grpcurl -plaintext -d '{"code":"bench01","skip_click":true}' 127.0.0.1:$ON_PORT $SVC/Resolve >/dev/null
for mode in off on; do
  port=$OFF_PORT; [ $mode = on ] && port=$ON_PORT
  echo "meshwork load, fast_path $mode, 5000 calls/s for ${SECS}s:"
  "$BIN" load --insecure --call $SVC/Resolve -d '{"code":"bench01","skip_click":true}' -c 64 --connections 4 --rps 5000 -z "${SECS}s" 127.0.0.1:$port 2>&1 | grep -E "Requests/sec|(50|99) % in|\[[A-Za-z]+\]" | head -8
done
