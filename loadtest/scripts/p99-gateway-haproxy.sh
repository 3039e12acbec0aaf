#!/usr/bin/env bash
# Latency at a fixed rate, the meshwork gateway (fast path) and HAProxy in alternating rounds
# in front of one `meshwork serve urlshortener` backend: `meshwork load --rps RATE` for SECS
# seconds per round (-c 64 --connections 4, latency from when each call was due), ROUNDS
# rounds each, gateway first in odd rounds and HAProxy first in even ones. Prints each round's
# p50/p99 and the medians. (compare-proxies.sh measures one fixed-rate run per target per run;
# this gives the tail more samples on a noisy host.)
#
# usage: loadtest/scripts/p99-gateway-haproxy.sh [rate=5000] [seconds=10] [rounds=7]
set -euo pipefail
cd "$(dirname "$0")/../.."
RATE=${1:-5000}; SECS=${2:-10}; ROUNDS=${3:-7}
BIN=target/release/meshwork
[ -x "$BIN" ] || cargo build --release --locked --bin meshwork
HAPROXY=$(command -v haproxy || echo /usr/sbin/haproxy)
[ -x "$HAPROXY" ] || { echo "haproxy is needed (compare-proxies.sh installs it)" >&2; exit 1; }
. loadtest/scripts/lib.sh
proc_dir
SP=$(free_port); GP=$(free_port); HP=$(free_port)
start_shortener "$SP"
gateway_toml "$GP" "$SP" -- ${GW_EXTRA:+"$GW_EXTRA"} >"$work/gw.toml"
RUST_LOG=warn "$BIN" gateway --config "$work/gw.toml" >"$work/gw.log" 2>&1 &
pids+=($!)
haproxy_cfg "$HP" "$SP" >"$work/haproxy.cfg"
"$HAPROXY" -db -f "$work/haproxy.cfg" >"$work/haproxy.out" 2>&1 &
pids+=($!)
wait_resolving $SP $GP $HP
grpcurl -plaintext -d '{"long_url":"https://example.com/bench","custom_alias":"bench01"}' 127.0.0.1:$SP $SVC/Shorten >/dev/null
DATA='{"code":"bench01","skip_click":true}'
one() { # name port round
  "$BIN" load --insecure --call $SVC/Resolve -d "$DATA" -c 64 --connections 4 --rps "$RATE" -z "${SECS}s" \
    -O json -o "$work/$1-$3.json" 127.0.0.1:$2 >/dev/null
}
for r in $(seq "$ROUNDS"); do
  if [ $((r % 2)) = 1 ]; then one gateway "$GP" "$r"; one haproxy "$HP" "$r"; else one haproxy "$HP" "$r"; one gateway "$GP" "$r"; fi
done
python3 - "$work" "$ROUNDS" "$RATE" <<'PY'
import json, statistics, sys
work, rounds, rate = sys.argv[1], int(sys.argv[2]), sys.argv[3]
res = {}
for name in ("gateway", "haproxy"):
    for r in range(1, rounds + 1):
        d = json.load(open(f"{work}/{name}-{r}.json"))
        pct = {l["percentage"]: l["latency"] / 1e6 for l in d.get("latencyDistribution") or []}
        res.setdefault(name, []).append((pct.get(50, 0), pct.get(99, 0), sum(d["errorDistribution"].values())))
print(f"| round | gateway p50 / p99 | HAProxy p50 / p99 | (at {rate}/s) |\n|---|---|---|---|")
for r in range(rounds):
    g, h = res["gateway"][r], res["haproxy"][r]
    print(f"| {r + 1} | {g[0]:.2f} / {g[1]:.2f} ms | {h[0]:.2f} / {h[1]:.2f} ms | errors {g[2]} / {h[2]} |")
med = lambda name, i: statistics.median(x[i] for x in res[name])
print(f"| median | {med('gateway', 0):.2f} / {med('gateway', 1):.2f} ms | {med('haproxy', 0):.2f} / {med('haproxy', 1):.2f} ms | |")
PY
