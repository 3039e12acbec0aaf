#!/usr/bin/env bash
# Instructions per proxied call (valgrind --tool=callgrind), repeatable on a shared host: one
# `meshwork serve urlshortener` backend (native), and under callgrind the meshwork gateway with
# `fast_path` on (the default), the gateway with `fast_path = false` (Pingora's HTTP/2 proxy) and
# the bare h2relay example. Each gets a warm-up, then a window of RATE calls/s for SECS seconds
# of Resolve{code:"bench01", skip_click:true} with `meshwork load`, counters dumped around the
# window (`callgrind_control -d`); ROUNDS rounds. Prints calls, errors and instructions per call.
#
# usage: [RATE=150] [SECS=10] [ROUNDS=2] loadtest/scripts/callgrind-proxies.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
RATE=${RATE:-150}; SECS=${SECS:-10}; ROUNDS=${ROUNDS:-2}
BIN=target/release/meshwork; HREL=target/release/examples/h2relay_proxy
[ -x "$BIN" ] || cargo build --release --locked --bin meshwork
[ -x "$HREL" ] || cargo build --release --locked -p meshwork-h2relay --example h2relay_proxy
command -v valgrind >/dev/null || { echo "valgrind is needed (apt-get install valgrind)" >&2; exit 1; }
. loadtest/scripts/lib.sh
work_dir
SVC=meshwork.urlshortener.v1.UrlShortener
SP=$(free_port); GP=$(free_port); OP=$(free_port); HP=$(free_port)
RUST_LOG=warn "$BIN" serve urlshortener --listen 127.0.0.1:$SP --store "embedded:$work/store" >"$work/serve.log" 2>&1 &
gateway_toml "$GP" "$SP" -- "fast_path = true" >"$work/gw.toml"
gateway_toml "$OP" "$SP" -- "fast_path = false" >"$work/gw-off.toml"
CG=(valgrind --tool=callgrind --dump-instr=no "--callgrind-out-file=$work/%p.cg")
RUST_LOG=warn "${CG[@]}" "$BIN" gateway --config "$work/gw.toml" >"$work/gw.log" 2>&1 &
GWP=$!
RUST_LOG=warn "${CG[@]}" "$BIN" gateway --config "$work/gw-off.toml" >"$work/gw-off.log" 2>&1 &
OFFP=$!
"${CG[@]}" "$HREL" 127.0.0.1:$HP 127.0.0.1:$SP 2 >"$work/hrel.log" 2>&1 &
HRP=$!
start=$(date +%s)
TRIES=1200 wait_resolving $SP $GP $OP $HP
echo "ready after $(( $(date +%s) - start )) s" >&2
grpcurl -plaintext -d '{"long_url":"https://example.com/bench","custom_alias":"bench01"}' 127.0.0.1:$SP $SVC/Shorten >/dev/null
DATA='{"code":"bench01","skip_click":true}'
newest() { echo "$work/$1.cg.$(find "$work" -maxdepth 1 -name "$1.cg.*" | sed 's/.*\.//' | sort -n | tail -1)"; }
for r in $(seq "$ROUNDS"); do
  for t in "gateway-fast-path $GP $GWP" "gateway-pingora-h2 $OP $OFFP" "h2relay $HP $HRP"; do
    set -- $t
    # warm-up (connections, pools), then the measured window
    "$BIN" load --insecure --call $SVC/Resolve -d "$DATA" -c 16 --connections 4 --rps "$RATE" -z 3s -O json -o "$work/warm.json" 127.0.0.1:$2 >/dev/null
    callgrind_control -d "$3" >/dev/null 2>&1
    "$BIN" load --insecure --call $SVC/Resolve -d "$DATA" -c 16 --connections 4 --rps "$RATE" -z "${SECS}s" -O json -o "$work/$1-$r.json" 127.0.0.1:$2 >/dev/null
    callgrind_control -d "$3" >/dev/null 2>&1
    sleep 1
    prof=$(newest "$3")
    [ -z "${KEEP:-}" ] || cp "$prof" "$KEEP/$r-$1.cg"
    python3 - "$1" "$r" "$work/$1-$r.json" "$prof" <<'PY'
import json, sys
name, r, js, prof = sys.argv[1:]
d = json.load(open(js))
tot = next(int(l.split()[1]) for l in open(prof) if l.startswith("totals:"))
errs = sum(d["errorDistribution"].values())
print(f"round {r} {name}: {d['count']} calls, {errs} errors, {tot} instr, {tot / max(d['count'], 1):,.0f} instr/call")
PY
  done
done
