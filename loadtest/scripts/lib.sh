# Shared by the benchmark scripts in this folder: `. loadtest/scripts/lib.sh` from the repo root.

# work_dir : sets $work to a fresh temporary directory, removed on exit after the script's
# background jobs are stopped
work_dir() {
  work=$(mktemp -d)
  trap 'kill $(jobs -p) 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"' EXIT
}

# free_port : prints a loopback TCP port nothing listens on, from below the kernel's ephemeral
# range (a port released after bind(:0) may go to any outgoing connection before it is used),
# and never one it printed before in this script (they are listed in $work/ports once work_dir
# has run: a port not yet bound would otherwise be free to draw again)
free_port() { python3 -c '
import os, random, socket, sys
given = sys.argv[1]
taken = set(open(given).read().split()) if given and os.path.exists(given) else set()
low = int(open("/proc/sys/net/ipv4/ip_local_port_range").read().split()[0])
def free(port):
    if str(port) in taken:
        return False
    try:
        socket.socket().bind(("127.0.0.1", port)); return True
    except OSError:
        return False
port = next((p for p in random.sample(range(10000, low), max(low - 10000, 0)) if free(p)), None)
if port is None:  # no room below the ephemeral range: let the kernel pick
    s = socket.socket(); s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]
if given:
    open(given, "a").write(f"{port}\n")
print(port)' "${work:+$work/ports}"; }

# wait_healthy PORT [SECONDS] : waits (up to SECONDS, 10 unless given) until the gRPC health
# service on PORT answers
wait_healthy() {
  for _ in $(seq $((${2:-10} * 10))); do
    grpcurl -plaintext "127.0.0.1:$1" grpc.health.v1.Health/Check >/dev/null 2>&1 && return
    sleep 0.1
  done
}

# cpu_ticks PID... : user + system clock ticks used so far by the processes (all their threads;
# a process that has exited counts 0)
cpu_ticks() {
  local t=0 p
  for p in "$@"; do
    [ -r "/proc/$p/stat" ] && t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat")))
  done
  echo "$t"
}

# collector_bench_args [TRACES] [ROUNDS] [BIN...] : the arguments of the collector benchmarks:
# sets TRACES (40000), ROUNDS (3), BINS (the release meshwork unless given) and LOAD (the
# collector_load example, built if missing)
collector_bench_args() {
  TRACES=${1:-40000}
  ROUNDS=${2:-3}
  shift $(($# < 2 ? $# : 2))
  BINS=("$@")
  [ ${#BINS[@]} -gt 0 ] || BINS=(target/release/meshwork)
  LOAD=${LOAD:-target/release/examples/collector_load}
  [ -x "$LOAD" ] || cargo build --release --locked -p meshwork-collector --example collector_load
}

# start_collector BIN : starts `BIN traces` on fresh ports with an empty data dir under $work;
# sets G, H, U (OTLP/gRPC, OTLP/HTTP and query ports) and pid, and waits until OTLP/gRPC listens
start_collector() {
  G=$(free_port); H=$(free_port); U=$(free_port)
  rm -rf "$work/traces"
  RUST_LOG=warn "$1" traces --otlp-grpc 127.0.0.1:$G --otlp-http 127.0.0.1:$H --trace-ui 127.0.0.1:$U \
    --data-dir "$work/traces" >"$work/traces.log" 2>&1 &
  pid=$!
  for _ in $(seq 100); do (echo >/dev/tcp/127.0.0.1/$G) 2>/dev/null && break; sleep 0.1; done
}

# proc_dir : sets $work to a fresh temporary directory and $pids to an empty list; on exit the
# processes in $pids are stopped (stop_all), background jobs waited for and $work removed
# (KEEP_LOGS=1 prints the tail of its logs first)
proc_dir() {
  work=$(mktemp -d)
  pids=()
  trap stop_procs EXIT
}
stop_procs() {
  [ -z "${KEEP_LOGS:-}" ] || tail -n 20 "$work"/*.log "$work"/*.out >&2 || true
  stop_all "${pids[@]}"
  wait 2>/dev/null || true
  rm -rf "$work"
}

# start_shortener PORT : starts `$BIN serve urlshortener` on loopback PORT over an embedded
# store in $work (its log in $work/serve.log); adds it to $pids and sets SVC_PID and SVC (the
# gRPC service's name)
start_shortener() {
  RUST_LOG=warn "$BIN" serve urlshortener --listen "127.0.0.1:$1" --store "embedded:$work/store" >"$work/serve.log" 2>&1 &
  SVC_PID=$!
  pids+=("$SVC_PID")
  SVC=meshwork.urlshortener.v1.UrlShortener
}

# stop_all PID... : stops benchmark processes: SIGINT first (Pingora's SIGTERM waits out a
# grace period), then, after 2 s, SIGKILL to whatever is left and its children. A background
# job of a non-interactive shell ignores SIGINT (haproxy, the relay example) and would keep
# the script's output pipe open forever.
stop_all() {
  local p
  for p in "$@"; do kill -INT "$p" 2>/dev/null || true; done
  for _ in $(seq 20); do
    local alive=0
    for p in "$@"; do kill -0 "$p" 2>/dev/null && alive=1; done
    [ "$alive" = 0 ] && return
    sleep 0.1
  done
  for p in "$@"; do pkill -KILL -P "$p" 2>/dev/null || true; kill -KILL "$p" 2>/dev/null || true; done
}

# gateway_toml PORT BACKEND_PORT... [-- EXTRA_LINE...] : prints a gateway config listening on PORT
# that routes the URL shortener to a pool of the backend ports on loopback; extra top-level
# lines (fast_path = false, admin_listen = ..., ...) follow `--`, and lines starting with
# `idempotent_methods` go to the route
gateway_toml() {
  local listen=$1 endpoints="" extra=() route=() p
  shift
  while [ $# -gt 0 ] && [ "$1" != "--" ]; do endpoints+="${endpoints:+, }\"127.0.0.1:$1\""; shift; done
  [ "${1:-}" = "--" ] && shift
  for p in "$@"; do if [[ $p == idempotent_methods* ]]; then route+=("$p"); else extra+=("$p"); fi; done
  echo "listen = \"127.0.0.1:$listen\""
  [ ${#extra[@]} -gt 0 ] && printf '%s\n' "${extra[@]}"
  printf '[pools.urlshortener]\nendpoints = [%s]\n[[routes]]\nservice = "meshwork.urlshortener.v1.UrlShortener"\npool = "urlshortener"\n' "$endpoints"
  [ ${#route[@]} -gt 0 ] && printf '%s\n' "${route[@]}"
  return 0
}

# haproxy_cfg PORT BACKEND_PORT : prints an HAProxy config that proxies gRPC (h2 on both sides,
# 2 threads) from PORT to BACKEND_PORT on loopback, as the proxy comparisons run it
haproxy_cfg() {
  cat <<HAP
global
  nbthread 2
  maxconn 8000
defaults
  mode http
  timeout connect 5s
  timeout client 60s
  timeout server 60s
frontend grpc
  bind 127.0.0.1:$1 proto h2
  default_backend backend
backend backend
  server s1 127.0.0.1:$2 proto h2
HAP
}

# wait_resolving PORT... : waits (up to 10 s each, or TRIES x 0.1 s) until the URL shortener
# answers Resolve through each port (NotFound for an unknown code)
wait_resolving() {
  local port out
  for port in "$@"; do
    for _ in $(seq "${TRIES:-100}"); do
      # Not a pipeline: with pipefail, grpcurl's NotFound exit status would fail it.
      out=$(grpcurl -plaintext -d '{"code":"x","skip_click":true}' "127.0.0.1:$port" \
        meshwork.urlshortener.v1.UrlShortener/Resolve 2>&1 || true)
      grep -q -i 'not.found' <<<"$out" && break
      sleep 0.1
    done
  done
}
