#!/usr/bin/env bash
# Cost of tracing: Resolve through gateway + service with tracing off, 100% sampled and 10%
# sampled (parent-based ratio), all exported over OTLP to the embedded collector
# (`meshwork traces`), measured in one run with h2load, alternating configurations. Besides
# req/s it reports the CPU time the pair (gateway + service) and the collector spent per request,
# from /proc/<pid>/stat, since on a small machine the collector competes with the pair.
# usage: [BIN=path/to/meshwork] loadtest/scripts/bench-tracing.sh [requests per run] [rounds]
set -euo pipefail
cd "$(dirname "$0")/../.."
N=${1:-60000}
ROUNDS=${2:-2}
BIN=${BIN:-target/release/meshwork}
[ -x "$BIN" ] || cargo build --release --locked --bin meshwork
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"' EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
G=$(free_port); H=$(free_port); U=$(free_port)
RUST_LOG=warn "$BIN" traces --otlp-grpc 127.0.0.1:$G --otlp-http 127.0.0.1:$H --trace-ui 127.0.0.1:$U --data-dir "$work/traces" >"$work/traces.log" 2>&1 &
COLLECTOR=$!
# cpu_ticks PID... : user + system clock ticks used so far by the processes
cpu_ticks() { local t=0 p; for p in "$@"; do t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat"))); done; echo "$t"; }
HZ=$(getconf CLK_TCK)
SVC=meshwork.urlshortener.v1.UrlShortener
printf '\x00\x00\x00\x00\x09\x0a\x07bench01' >"$work/resolve.grpc"

# start_pair NAME ENV... : one service + one gateway with the given OTEL_* environment
start_pair() {
  local name=$1; shift
  local sp gp
  sp=$(free_port); gp=$(free_port)
  env "$@" RUST_LOG=warn "$BIN" serve urlshortener --listen 127.0.0.1:$sp --store "embedded:$work/$name" >"$work/$name-svc.log" 2>&1 &
  local svc_pid=$!
  cat >"$work/$name.toml" <<TOML
listen = "127.0.0.1:$gp"
[pools.urlshortener]
endpoints = ["127.0.0.1:$sp"]
[[routes]]
service = "$SVC"
pool = "urlshortener"
TOML
  env "$@" RUST_LOG=warn "$BIN" gateway --config "$work/$name.toml" >"$work/$name-gw.log" 2>&1 &
  echo "$svc_pid $!" >"$work/$name.pids"
  for _ in $(seq 100); do
    grpcurl -plaintext 127.0.0.1:$gp grpc.health.v1.Health/Check >/dev/null 2>&1 && break
    sleep 0.1
  done
  grpcurl -plaintext -d '{"long_url":"https://example.com/bench","custom_alias":"bench01"}' 127.0.0.1:$gp $SVC/Shorten >/dev/null
  echo "$gp" >"$work/$name.port"
}
OTLP="OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:$G"
start_pair off OTEL_SDK_DISABLED=true
start_pair all "$OTLP" OTEL_TRACES_SAMPLER=parentbased_always_on
start_pair tenth "$OTLP" OTEL_TRACES_SAMPLER=parentbased_traceidratio OTEL_TRACES_SAMPLER_ARG=0.1

# settle : waits (up to 30 s) until the collector has stored its backlog (no CPU used for 1 s),
# so that no run pays for the spans of the one before
settle() {
  local before after
  for _ in $(seq 30); do
    before=$(cpu_ticks $COLLECTOR); sleep 1; after=$(cpu_ticks $COLLECTOR)
    [ "$after" -le $((before + 1)) ] && return
  done
}

for round in $(seq "$ROUNDS"); do
  for name in off all tenth; do
    settle
    # shellcheck disable=SC2046
    pair0=$(cpu_ticks $(cat "$work/$name.pids")); col0=$(cpu_ticks $COLLECTOR)
    rps=$(h2load -n "$N" -c 16 -m 32 -t 2 -H 'content-type: application/grpc' -H 'te: trailers' -d "$work/resolve.grpc" \
      "http://127.0.0.1:$(cat "$work/$name.port")/$SVC/Resolve" | awk '/^finished in/ {print $4}')
    # The exporters flush every 500 ms: let the collector store the last batches before reading.
    settle
    # shellcheck disable=SC2046
    pair1=$(cpu_ticks $(cat "$work/$name.pids")); col1=$(cpu_ticks $COLLECTOR)
    pair_us=$(( (pair1 - pair0) * 1000000 / HZ / N )); col_us=$(( (col1 - col0) * 1000000 / HZ / N ))
    echo "round $round  tracing=$name  req/s=$rps  pair_cpu_us/req=$pair_us  collector_cpu_us/req=$col_us"
  done
done
spans=$(python3 -c "import json,urllib.request; d=json.load(urllib.request.urlopen('http://127.0.0.1:$U/api/traces?service=urlshortener&limit=10000')); print(sum(len(t['spans']) for t in d['data']))")
echo "spans stored by the collector (last 10000 traces): $spans"
