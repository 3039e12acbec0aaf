#!/usr/bin/env bash
# Write and read rates of the storage backends in one run: embedded (fjall, fsync per group)
# and etcd as a 3-member cluster on loopback (started here, removed afterwards).
# usage: loadtest/scripts/bench-storage.sh [seconds per figure]
set -euo pipefail
cd "$(dirname "$0")/../.."
SECS=${1:-3}
. loadtest/scripts/lib.sh
work_dir
declare -a C P
for i in 1 2 3; do C[$i]=$(free_port); P[$i]=$(free_port); done
cluster="n1=http://127.0.0.1:${P[1]},n2=http://127.0.0.1:${P[2]},n3=http://127.0.0.1:${P[3]}"
for i in 1 2 3; do
  etcd --name n$i --data-dir "$work/n$i" --listen-client-urls http://127.0.0.1:${C[$i]} \
    --advertise-client-urls http://127.0.0.1:${C[$i]} --listen-peer-urls http://127.0.0.1:${P[$i]} \
    --initial-advertise-peer-urls http://127.0.0.1:${P[$i]} --initial-cluster "$cluster" \
    --initial-cluster-state new --initial-cluster-token bench >"$work/n$i.log" 2>&1 &
done
for _ in $(seq 100); do
  python3 -c "import urllib.request,sys; sys.exit(0 if b'\"health\":\"true\"' in urllib.request.urlopen('http://127.0.0.1:${C[1]}/health', timeout=1).read() else 1)" 2>/dev/null && break
  sleep 0.2
done
cargo run --release --locked -q -p meshwork-storage --example storebench -- --secs "$SECS" \
  --etcd "etcd://127.0.0.1:${C[1]},127.0.0.1:${C[2]},127.0.0.1:${C[3]}"
