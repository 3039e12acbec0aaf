#!/usr/bin/env bash
# Issue 21's measure: home-timeline reads per second beside the URL shortener's Resolve in the
# same `meshwork up`, and the CPU per call of that process (gateway, services and store; the
# load generator is another process).
#
# One `meshwork up` on a fresh data dir (release, --no-traces, --celebrity-threshold 2000),
# then the timeline scenario once (setup: 10,000 users, 120,000 follows, 5,200 posts; then its
# 20 s mix), Resolve of one alias, then ROUNDS times: the mix again (its setup cut to the 200
# celebrity posts that give Like its keys), Resolve, home reads alone, Resolve. Resolve and the
# reads are `meshwork load` with 64 workers on 4 connections for SECS seconds; the mix runs as
# the scenario says (64 workers, 4 connections, 20 s: `-z` does not override a scenario's
# duration). Each timeline round's ratio divides by the mean of the Resolve rounds on either
# side.
#
# usage: loadtest/scripts/timeline-vs-resolve.sh [ROUNDS=2] [SECS=10]
set -euo pipefail
cd "$(dirname "$0")/../.."
ROUNDS=${1:-2}
SECS=${2:-10}
BIN=target/release/meshwork
[ -x "$BIN" ] || cargo build --release --locked --bin meshwork
. loadtest/scripts/lib.sh
work_dir

GW=$(free_port)
RUST_LOG=warn "$BIN" up --data-dir "$work/data" --listen "127.0.0.1:$GW" \
  --admin-listen "127.0.0.1:$(free_port)" --loki-listen "127.0.0.1:$(free_port)" \
  --otlp-grpc "127.0.0.1:$(free_port)" --otlp-http "127.0.0.1:$(free_port)" \
  --trace-ui "127.0.0.1:$(free_port)" --no-traces --no-self-logs \
  --celebrity-threshold 2000 >"$work/up.log" 2>&1 &
UP=$!
wait_healthy "$GW" 60
grpcurl -plaintext -d '{"long_url":"https://example.com/sale","custom_alias":"sale"}' \
  "127.0.0.1:$GW" meshwork.urlshortener.v1.UrlShortener/Shorten >/dev/null

# The mix without the user and follow setup: only the celebrity posts (Like's keys) are made.
python3 - loadtest/scenarios/timeline.toml "$work/mix.toml" <<'PY'
import re, sys
text = open(sys.argv[1]).read()
head, *blocks = re.split(r'(?m)^(?=\[\[(?:setup|mix)\]\])', text)
keep = [b for b in blocks if not b.startswith('[[setup]]') or 'bench-celeb-' in b]
open(sys.argv[2], 'w').write(head + ''.join(keep).replace('bench-celeb-', 'bench-celeb-again-{{newUUID}}-'))
PY

# round NAME ARGS... : runs `meshwork load`, prints NAME, calls/s per call, and µs of CPU of
# `meshwork up` per call
round() {
  local name=$1 before after
  shift
  before=$(cpu_ticks "$UP")
  "$BIN" load --insecure "$@" >"$work/$name.txt" 2>&1
  after=$(cpu_ticks "$UP")
  python3 - "$work/$name.txt" "$name" "$before" "$after" "$(getconf CLK_TCK)" "$work/rates" <<'PY'
import re, sys
path, name, before, after, hz, rates = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), sys.argv[6]
text = open(path).read()
total = 0
# --scenario: "| call | share | count | req/s | errors | p50 | p90 | p95 | p99 | p99.9 |"
for m in re.finditer(r'(?m)^\| ([^|]+?) \| \d+% \| (\d+) \| (\d+) \| (\d+) \| ([^|]+) \| [^|]+ \| ([^|]+) \|', text):
    call, count, rps, errors, p50, p95 = m.groups()
    if call == 'all':
        total = int(count)
    if call == 'GetHomeTimeline':
        open(rates, 'a').write(f"{name} {rps}\n")
    print(f"  {name:10} {call:26} {rps:>7} calls/s  p50 {p50:>9}  p95 {p95:>9}  errors {errors}")
# --call: "Count:", "Requests/sec:", "95 % in"
count = re.search(r'Count:\s+(\d+)', text)
if count and not total:
    total = int(count[1])
    rps = re.search(r'Requests/sec:\s+([\d.]+)', text)[1]
    p95 = re.search(r'95 % in ([^\n]+?)\s*$', text, re.M)
    errors = total - int((re.search(r'\[OK\]\s+(\d+)', text) or [0, 0])[1])
    open(rates, 'a').write(f"{name} {rps}\n")
    print(f"  {name:10} {'':26} {float(rps):>7.0f} calls/s  p95 {p95[1] if p95 else '?':>9}  errors {errors}")
if not total:
    sys.exit(f"{name}: no result in {path}:\n{text}")
print(f"  {name:10} CPU of meshwork up: {(after - before) / hz * 1e6 / total:.0f} us per call over {total} calls")
PY
}

resolve() { round "$1" --call meshwork.urlshortener.v1.UrlShortener/Resolve -d '{"code":"sale","skip_click":true}' \
  -c 64 --connections 4 -z "${SECS}s" "127.0.0.1:$GW"; }
reads() { round "$1" --call meshwork.timeline.v1.Timeline/GetHomeTimeline \
  -d '{"user":"bu{{randomInt 0 10000}}","page_size":20}' -c 64 --connections 4 -z "${SECS}s" "127.0.0.1:$GW"; }

echo "setup and first mix (loadtest/scenarios/timeline.toml)"
"$BIN" load --insecure --scenario loadtest/scenarios/timeline.toml "127.0.0.1:$GW" >"$work/setup.txt" 2>&1 ||
  { cat "$work/setup.txt"; exit 1; }
grep -E '^\|' "$work/setup.txt" | tail -7
resolve resolve0
for r in $(seq "$ROUNDS"); do
  round "mix$r" --scenario "$work/mix.toml" "127.0.0.1:$GW"
  resolve "resolve${r}a"
  reads "reads$r"
  resolve "resolve${r}b"
done

# Home reads (in the mix, and alone) over the mean of the Resolve rounds on either side.
python3 - "$work/rates" <<'PY'
import sys
rows = [l.split() for l in open(sys.argv[1])]
for i, (name, rate) in enumerate(rows):
    if name.startswith('resolve'):
        continue
    before = next(float(r) for n, r in reversed(rows[:i]) if n.startswith('resolve'))
    after = next((float(r) for n, r in rows[i + 1:] if n.startswith('resolve')), before)
    print(f"{name:8} home reads {float(rate):8.0f}/s  Resolve {before:6.0f} / {after:6.0f}  ratio {float(rate) / ((before + after) / 2):.2f}x")
PY
