#!/usr/bin/env bash
# Query cost of the embedded collector (`meshwork traces`): how long the Jaeger API calls that a
# UI makes take on a store filled to its span limit (200,000 spans by default: TRACES traces of
# 5 spans from the collector_load example), and how much a client polling the query API slows
# ingest down (queries hold the store's read lock; ingest needs its write lock). Give several
# meshwork binaries to compare them in one run (alternating by round, a fresh data dir each).
# usage: loadtest/scripts/bench-queries.sh [traces] [rounds] [meshwork binary...]
set -euo pipefail
cd "$(dirname "$0")/../.."
REPEATS=${REPEATS:-15}
. loadtest/scripts/lib.sh
collector_bench_args "$@"
work_dir

# ms URL : the median over REPEATS calls of URL's time to the last byte, in ms, and its size
ms() {
  local i
  for i in $(seq "$REPEATS"); do curl -sf -o /dev/null -w '%{time_total} %{size_download}\n' "$1"; done |
    python3 -c 'import statistics,sys; r=[l.split() for l in sys.stdin]; print(f"{statistics.median(float(t) for t, _ in r)*1000:.1f} ms  {r[0][1]} bytes")'
}

for round in $(seq "$ROUNDS"); do
  for bin in "${BINS[@]}"; do
    start_collector "$bin"
    "$LOAD" "http://127.0.0.1:$G" "$pid" "$TRACES" >/dev/null
    api="http://127.0.0.1:$U/api"
    now_us=$(($(date +%s) * 1000000))
    window="start=$((now_us - 3600000000))&end=$((now_us + 60000000))"
    id=$(curl -sf "$api/traces?service=urlshortener&limit=1" | python3 -c 'import json,sys; print(json.load(sys.stdin)["data"][0]["traceID"])')
    tag=$(python3 -c 'import urllib.parse; print(urllib.parse.quote("{\"cache.hit\":\"true\"}"))')
    echo "round $round  $bin  store of $TRACES traces"
    for q in "services" "services/urlshortener/operations" \
      "traces?service=urlshortener&limit=20&$window" \
      "traces?service=gateway&operation=/meshwork.urlshortener.v1.UrlShortener/Resolve&limit=20&$window" \
      "traces?service=urlshortener&tags=$tag&limit=20&$window" \
      "traces?service=urlshortener&minDuration=1s&limit=20&$window" \
      "traces/$id" "dependencies?endTs=$((now_us / 1000 + 60000))&lookback=3600000" \
      "v3/services" "v3/traces?query.service_name=urlshortener&query.search_depth=20"; do
      printf '  %-60.60s %s\n' "/api/$q" "$(ms "$api/$q")"
    done
    # Ingest alone, then with a client asking for services and the default search back to back.
    alone=$("$LOAD" "http://127.0.0.1:$G" "$pid" "$TRACES")
    (while :; do
      curl -sf -o /dev/null "$api/services"
      curl -sf -o /dev/null "$api/traces?service=urlshortener&limit=20&$window"
    done) &
    poller=$!
    polled=$("$LOAD" "http://127.0.0.1:$G" "$pid" "$TRACES")
    kill "$poller"; wait "$poller" 2>/dev/null || true
    # Only the send time compares: the collector's CPU while polled is mostly the queries'.
    echo "  ingest alone:        $alone"
    echo "  ingest while polled: $(grep -o 'send_s=[0-9.]*' <<<"$polled")"
    kill "$pid"; wait "$pid" 2>/dev/null || true
  done
done
