# Shared by the benchmark scripts in this folder: `. loadtest/scripts/lib.sh` from the repo root.

# work_dir : sets $work to a fresh temporary directory, removed on exit after the script's
# background jobs are stopped
work_dir() {
  work=$(mktemp -d)
  trap 'kill $(jobs -p) 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"' EXIT
}

# free_port : prints a loopback TCP port nothing listens on
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

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
