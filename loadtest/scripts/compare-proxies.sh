#!/usr/bin/env bash
# One tonic backend (`meshwork serve urlshortener`, embedded store) measured directly and
# behind the meshwork gateway, a bare Pingora proxy with the gateway's server settings and no
# logic (gateway/examples/bare_pingora.rs: the floor Pingora itself sets), the h2relay crate's
# frame-level relay with no gateway features (h2relay/examples/h2relay_proxy.rs: 2 worker threads,
# 2 upstream connections), nginx `grpc_pass` and HAProxy (h2 both sides), in one run with
# the same load: Resolve{code:"bench01", skip_click:true} (a cache hit, no click written).
#
# Per target: throughput at saturation with `meshwork load` and with h2load, p50/p99 at a
# fixed rate (`meshwork load --rps`, latency from when each call was due), and CPU per call
# of the proxy process (or of the backend for "direct") from /proc/<pid>/stat utime+stime
# over the saturation run. nginx and HAProxy come from Debian (installed with apt-get when
# missing); their configs are generated here. Loopback only; every process shares the cores.
#
# usage: loadtest/scripts/compare-proxies.sh [seconds per run] [fixed rate] [workers] [connections]
set -euo pipefail
cd "$(dirname "$0")/../.."
SECS=${1:-5}
RATE=${2:-5000}
C=${3:-256}
CONNS=${4:-8}
BIN=target/release/meshwork
BARE=target/release/examples/bare_pingora
HREL=target/release/examples/h2relay_proxy
[ -x "$BIN" ] || cargo build --release --locked --bin meshwork
[ -x "$BARE" ] || cargo build --release --locked -p meshwork-gateway --example bare_pingora
[ -x "$HREL" ] || cargo build --release --locked -p meshwork-h2relay --example h2relay_proxy

need=()
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || need+=(nginx)
command -v haproxy >/dev/null || [ -x /usr/sbin/haproxy ] || need+=(haproxy)
command -v h2load >/dev/null || need+=(nghttp2-client)
command -v grpcurl >/dev/null || { echo "grpcurl is needed (scripts/install-deps.sh)" >&2; exit 1; }
if [ ${#need[@]} -gt 0 ]; then
  # Keep the packages' own services from starting (no systemd here; we run our own configs).
  added_policy=0
  if [ ! -e /usr/sbin/policy-rc.d ]; then printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d; chmod +x /usr/sbin/policy-rc.d; added_policy=1; fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  [ "$added_policy" = 1 ] && rm -f /usr/sbin/policy-rc.d
fi
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
HAPROXY=$(command -v haproxy || echo /usr/sbin/haproxy)

. loadtest/scripts/lib.sh
proc_dir

SVC_PORT=$(free_port); GW_PORT=$(free_port); NGX_PORT=$(free_port); HAP_PORT=$(free_port); BARE_PORT=$(free_port); HREL_PORT=$(free_port)

start_shortener "$SVC_PORT"

gateway_toml "$GW_PORT" "$SVC_PORT" >"$work/gw.toml"
RUST_LOG=warn "$BIN" gateway --config "$work/gw.toml" >"$work/gw.log" 2>&1 &
GW_PID=$!; pids+=("$GW_PID")
"$BARE" 127.0.0.1:$BARE_PORT 127.0.0.1:$SVC_PORT 2 >"$work/bare.log" 2>&1 &
BARE_PID=$!; pids+=("$BARE_PID")
"$HREL" 127.0.0.1:$HREL_PORT 127.0.0.1:$SVC_PORT 2 >"$work/h2relay.log" 2>&1 &
HREL_PID=$!; pids+=("$HREL_PID")

mkdir -p "$work/nginx"
cat >"$work/nginx.conf" <<NGX
worker_processes 2;
daemon off;
pid $work/nginx/nginx.pid;
error_log $work/nginx/error.log warn;
events { worker_connections 8192; }
http {
  access_log off;
  client_body_temp_path $work/nginx/body;
  proxy_temp_path $work/nginx/proxy;
  fastcgi_temp_path $work/nginx/fastcgi;
  uwsgi_temp_path $work/nginx/uwsgi;
  scgi_temp_path $work/nginx/scgi;
  # nginx sends one call per upstream connection at a time: keep many of them open.
  upstream backend { server 127.0.0.1:$SVC_PORT; keepalive 512; keepalive_requests 1000000; }
  server {
    listen 127.0.0.1:$NGX_PORT http2;
    http2_max_concurrent_streams 1024;
    keepalive_requests 1000000;
    location / { grpc_pass grpc://backend; }
  }
}
NGX
"$NGINX" -c "$work/nginx.conf" >"$work/nginx.out" 2>&1 &
NGX_PID=$!; pids+=("$NGX_PID")

haproxy_cfg "$HAP_PORT" "$SVC_PORT" >"$work/haproxy.cfg"
"$HAPROXY" -db -f "$work/haproxy.cfg" >"$work/haproxy.out" 2>&1 &
HAP_PID=$!; pids+=("$HAP_PID")

wait_resolving $SVC_PORT $GW_PORT $BARE_PORT $HREL_PORT $NGX_PORT $HAP_PORT
grpcurl -plaintext -d '{"long_url":"https://example.com/bench","custom_alias":"bench01"}' 127.0.0.1:$SVC_PORT $SVC/Shorten >/dev/null
DATA='{"code":"bench01","skip_click":true}'
# ResolveRequest{code:"bench01", skip_click:true}: 0a 07 "bench01" 18 01 -> 11 bytes.
printf '\x00\x00\x00\x00\x0b\x0a\x07bench01\x18\x01' >"$work/resolve.grpc"

# CPU seconds (user+system) of a process and its children threads, from /proc/<pid>/stat;
# for nginx, of the master and its workers.
cpu() {
  # shellcheck disable=SC2046
  cpu_ticks "$@" $(for q in "$@"; do pgrep -P "$q" || true; done)
}
TICKS=$(getconf CLK_TCK)

printf '| target | meshwork load req/s | h2load req/s | p50 at %s/s | p99 at %s/s | errors | CPU µs/call (proxy, or backend when direct) |\n|---|---|---|---|---|---|---|\n' "$RATE" "$RATE" >"$work/table.md"
measure() { # name port pid...
  local name=$1 port=$2; shift 2
  echo "measuring $name (127.0.0.1:$port)" >&2
  local before after
  before=$(cpu "$@")
  "$BIN" load --insecure --call $SVC/Resolve -d "$DATA" -c "$C" --connections "$CONNS" -z "${SECS}s" -O json -o "$work/$name-sat.json" 127.0.0.1:$port
  after=$(cpu "$@")
  h2load -D "$SECS" -c "$CONNS" -m $(( C / CONNS )) -t 1 -H 'content-type: application/grpc' -H 'te: trailers' \
    -d "$work/resolve.grpc" "http://127.0.0.1:$port/$SVC/Resolve" >"$work/$name-h2load.txt" 2>&1 || true
  "$BIN" load --insecure --call $SVC/Resolve -d "$DATA" -c 64 --connections 4 --rps "$RATE" -z "${SECS}s" -O json -o "$work/$name-rate.json" 127.0.0.1:$port
  python3 - "$name" "$work" "$before" "$after" "$TICKS" >>"$work/table.md" <<'PY'
import json, re, sys
name, work, before, after, ticks = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
sat = json.load(open(f"{work}/{name}-sat.json"))
rate = json.load(open(f"{work}/{name}-rate.json"))
h2 = open(f"{work}/{name}-h2load.txt").read()
m = re.search(r"finished in [^,]+, ([\d.]+) req/s", h2)
h2rps = f"{float(m.group(1)):,.0f}" if m else "n/a"
pct = {l["percentage"]: l["latency"] for l in rate.get("latencyDistribution") or []}
ms = lambda ns: f"{ns / 1e6:.2f} ms" if ns else "-"
errors = sum(sat["errorDistribution"].values()) + sum(rate["errorDistribution"].values())
cpu_us = (after - before) / ticks * 1e6 / max(sat["count"], 1)
print(f"| {name} | {sat['rps']:,.0f} | {h2rps} | {ms(pct.get(50))} | {ms(pct.get(99))} | {errors} | {cpu_us:.1f} |")
PY
}
measure direct "$SVC_PORT" "$SVC_PID"
measure meshwork-gateway "$GW_PORT" "$GW_PID"
measure bare-pingora "$BARE_PORT" "$BARE_PID"
measure h2relay "$HREL_PORT" "$HREL_PID"
measure nginx "$NGX_PORT" "$NGX_PID"
measure haproxy "$HAP_PORT" "$HAP_PID"
echo
echo "versions: $("$NGINX" -v 2>&1 | sed 's/.*\///'), haproxy $("$HAPROXY" -v | awk 'NR==1{print $3}'), $(h2load --version | head -1)"
echo "load: ${SECS}s per run; saturation with -c $C --connections $CONNS (h2load -c $CONNS -m $(( C / CONNS ))); fixed rate $RATE/s with -c 64 --connections 4"
cat "$work/table.md"
