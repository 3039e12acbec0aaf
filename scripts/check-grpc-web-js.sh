#!/usr/bin/env bash
# Manual check that the official grpc-web JS client (npm `grpc-web`) works against the gateway:
# installs grpc-web and esbuild from npm into a temporary folder, bundles
# tests/grpc_web_js/entry.js, starts `meshwork up` (the debug binary, built if missing) and a
# static server for the page on another port (another origin), loads the page in headless
# Chromium and checks what the client decoded: Shorten and Resolve succeed (grpc-status 0 from
# the trailer frame), an unknown code fails NOT_FOUND with its meshwork-link-state metadata, in
# both text and binary mode. Not part of CI (it needs the npm registry).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
target=${CARGO_TARGET_DIR:-$root/target}
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT

[ -x "$target/debug/meshwork" ] || (cd "$root" && cargo build --bin meshwork)
cp "$target/debug/meshwork" "$work/meshwork"   # a copy: a parallel build may replace the binary
. "$root/loadtest/scripts/lib.sh"   # free_port
gw=$(free_port); admin=$(free_port); page=$(free_port)

(cd "$work" && npm init -y >/dev/null && npm install --no-audit --no-fund grpc-web@1.5.0 esbuild@0.28 >/dev/null)
cp "$root/tests/grpc_web_js/entry.js" "$work/entry.js"   # esbuild resolves grpc-web next to it
"$work/node_modules/.bin/esbuild" "$work/entry.js" --bundle --format=iife \
  --outfile="$work/www/bundle.js" --log-level=warning
cat > "$work/www/index.html" <<HTML
<!doctype html><html><body><pre id="out">pending</pre>
<script>window.GATEWAY = "http://127.0.0.1:$gw";</script><script src="bundle.js"></script></body></html>
HTML

"$work/meshwork" up --listen "127.0.0.1:$gw" --admin-listen "127.0.0.1:$admin" --data-dir "$work/data" \
  --no-traces > "$work/up.log" 2>&1 &
pids+=($!)
python3 -m http.server "$page" --bind 127.0.0.1 --directory "$work/www" > /dev/null 2>&1 &
pids+=($!)
for _ in $(seq 100); do grep -q "meshwork ready" "$work/up.log" && break; sleep 0.2; done

out=$(chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
  --user-data-dir="$work/profile" --virtual-time-budget=15000 --dump-dom \
  "http://127.0.0.1:$page/index.html" 2>/dev/null | sed -n '/<pre/,/<\/pre>/p')
echo "$out"
fail=0
for mode in text binary; do
  for want in "$mode shorten err=null code=[A-Za-z0-9_-]* status=0" \
              "$mode resolve err=null url=https://example.com/grpc-web-js-$mode status=0" \
              "$mode missing err={\"code\":5,.*\"meshwork-link-state\":\"unknown\"}} status=5"; do
    grep -Eq "$want" <<<"$out" || { echo "MISSING: $want"; fail=1; }
  done
done
[ "$fail" = 0 ] && echo "grpc-web JS client: 6 passed, 0 failed" || { echo "grpc-web JS client: failed"; exit 1; }
