#!/usr/bin/env bash
# The gateway under a steady load while a replica dies and comes back: two `meshwork serve
# urlshortener` replicas (each on its own embedded store, both holding the code "bench01")
# behind one `meshwork gateway` whose route marks Resolve idempotent. First the saturation rate
# through the gateway (`meshwork load`, -c 64 --connections 4, 10 s), then a soak at 80% of it
# (`--rps`, SECONDS long) during which replica B is SIGKILLed at a third of the soak and started
# again on the same port and data a few seconds later. `meshwork load` does not retry: every
# call it counts as failed is one the gateway let through as an error. Prints the soak's calls,
# errors by code, p50/p99 and the gateway's retry count.
#
# usage: loadtest/scripts/gateway-soak.sh [soak seconds=60] [down seconds=5]
set -euo pipefail
cd "$(dirname "$0")/../.."
SOAK=${1:-60}
DOWN=${2:-5}
BIN=target/release/meshwork
[ -x "$BIN" ] || cargo build --release --locked --bin meshwork
command -v grpcurl >/dev/null || { echo "grpcurl is needed (scripts/install-deps.sh)" >&2; exit 1; }

. loadtest/scripts/lib.sh
work_dir
A_PORT=$(free_port); B_PORT=$(free_port); GW_PORT=$(free_port); ADMIN_PORT=$(free_port)
SVC=meshwork.urlshortener.v1.UrlShortener

serve() { # port dir
  RUST_LOG=warn "$BIN" serve urlshortener --listen "127.0.0.1:$1" --store "embedded:$2" >>"$2.log" 2>&1 &
}
serve "$A_PORT" "$work/a"
serve "$B_PORT" "$work/b"
B_PID=$!

gateway_toml "$GW_PORT" "$A_PORT" "$B_PORT" -- "admin_listen = \"127.0.0.1:$ADMIN_PORT\"" 'idempotent_methods = ["Resolve"]' >"$work/gw.toml"
RUST_LOG=warn "$BIN" gateway --config "$work/gw.toml" >"$work/gw.log" 2>&1 &

for port in $A_PORT $B_PORT; do
  wait_healthy "$port" 20
  grpcurl -plaintext -d '{"long_url":"https://example.com/bench","custom_alias":"bench01"}' \
    "127.0.0.1:$port" $SVC/Shorten >/dev/null
done
wait_healthy "$GW_PORT" 20
DATA='{"code":"bench01","skip_click":true}'

"$BIN" load --insecure --call $SVC/Resolve -d "$DATA" -c 64 --connections 4 -z 10s -O json \
  -o "$work/sat.json" "127.0.0.1:$GW_PORT"
RATE=$(python3 -c "import json; print(int(json.load(open('$work/sat.json'))['rps'] * 0.8))")
echo "saturation $(python3 -c "import json; print(round(json.load(open('$work/sat.json'))['rps']))") calls/s; soak at $RATE/s for ${SOAK}s, replica B killed at $((SOAK / 3))s for ${DOWN}s" >&2

"$BIN" load --insecure --call $SVC/Resolve -d "$DATA" -c 64 --connections 4 --rps "$RATE" -z "${SOAK}s" \
  -O json -o "$work/soak.json" "127.0.0.1:$GW_PORT" &
LOAD_PID=$!
sleep $((SOAK / 3))
kill -KILL "$B_PID"
echo "replica B killed" >&2
sleep "$DOWN"
serve "$B_PORT" "$work/b"
echo "replica B started again" >&2
wait "$LOAD_PID"

retries=$(curl -s "http://127.0.0.1:$ADMIN_PORT/metrics" | awk '$1 == "meshwork_gateway_retries_total" {print $2}')
python3 - "$work/soak.json" "$retries" <<'PY'
import json, sys
soak = json.load(open(sys.argv[1]))
pct = {l["percentage"]: l["latency"] for l in soak.get("latencyDistribution") or []}
errors = soak["errorDistribution"]
print(f"soak: {soak['count']:,} calls at {soak['rps']:,.0f}/s, errors {sum(errors.values())} {errors or ''}, "
      f"p50 {pct.get(50, 0) / 1e6:.2f} ms, p99 {pct.get(99, 0) / 1e6:.2f} ms, gateway retries {sys.argv[2]}")
PY
