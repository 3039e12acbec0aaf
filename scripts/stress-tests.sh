#!/usr/bin/env bash
# Runs the workspace's test binaries again and again, with more tests at once than `cargo test`
# runs on this machine (and, with BUSY=1, a core kept busy), to find tests that pass in CI only
# by luck of timing: a port taken between a check and a bind, state one test leaves for the
# next, a bound that a slow machine misses. Every failing run's output is kept.
# usage: [THREADS=16] [BUSY=1] [ONLY=regex] scripts/stress-tests.sh [runs per binary]
# ONLY picks the binaries by name (e.g. ONLY='^(gateway|dataplane)$'; the end-to-end ones are
# e2e_*). Not part of the README's test command: it takes as long as you let it.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-10}
THREADS=${THREADS:-16}
out=$(mktemp -d /tmp/meshwork-stress.XXXXXX)
# name, package directory and executable of every test binary
cargo test --workspace --all-targets --locked --no-run --message-format=json 2>/dev/null | ONLY=${ONLY:-} python3 -c '
import json, os, re, sys
only = re.compile(os.environ["ONLY"])
for line in sys.stdin:
    try:
        m = json.loads(line)
    except ValueError:
        continue
    # libtest harnesses only: examples and criterion benches are built too, but take no test flags
    kinds = set(m.get("target", {}).get("kind", []))
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["profile"]["test"] and not kinds & {"bench", "example"}:
        if only.search(m["target"]["name"]):
            print(m["target"]["name"], os.path.dirname(m["manifest_path"]), m["executable"])
' >"$out/binaries"
[ -s "$out/binaries" ] || { echo "no test binary matches ONLY=${ONLY:-}" >&2; exit 2; }
busy=""
if [ "${BUSY:-0}" = 1 ]; then
  yes >/dev/null &
  busy=$!
  trap 'kill $busy 2>/dev/null || true' EXIT
fi
failed=0
while read -r name dir exe; do
  bad=0
  for run in $(seq "$RUNS"); do
    if ! (cd "$dir" && timeout 600 "$exe" -q --test-threads="$THREADS" >"$out/$name.$run.log" 2>&1); then
      bad=$((bad + 1))
      { grep -h "panicked at" "$out/$name.$run.log" || echo "(no panic line; see the log)"; } | sed "s/^/  $name run $run: /" | head -3
    else
      rm -f "$out/$name.$run.log"
    fi
  done
  echo "$name: $bad of $RUNS runs failed"
  failed=$((failed + bad))
done <"$out/binaries"
echo "failing runs' output: $out"
[ "$failed" = 0 ]
