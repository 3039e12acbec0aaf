#!/usr/bin/env bash
# Cost of tracing: Resolve through gateway + service with tracing off, 100% sampled and 10%
# sampled (parent-based ratio), all exported over OTLP to the embedded collector
# (`meshwork traces`), measured in one run with h2load, alternating configurations. Besides
# req/s it reports the CPU time the pair (gateway + service) and the collector spent per request,
# from /proc/<pid>/stat, since on a small machine the collector competes with the pair.
# CONFIGS picks the configurations (default "off all tenth"); "none" exports but samples nothing
# (ratio 0), which shows the cost of tracing being on for calls not sampled; "leantenth" samples
# 10% with the gateway's propagate_unsampled = false and the service rooting no traces (calls
# not sampled carry no traceparent); "deadtenth" samples
# 10% but exports to a closed port (spans are built, then dropped), which takes the collector and
# the OTLP send out of the picture; "rN" samples the share N (r0.01: 1%), "rN-dM" the same with
# exports every M ms at most (OTEL_BSP_SCHEDULE_DELAY; the default is 500); "offX" (offB, off2 ...)
# is another tracing-off configuration, a placebo that shows how far two identical ones differ.
# Every run starts a fresh pair (2 s of unmeasured load first), so that what is particular to one
# process instance averages out over the rounds instead of sticking to its configuration.
# RATE=N replaces h2load's closed loop by `meshwork load` at N calls/s (64 workers): every
# configuration then serves the same load, and CPU per request compares costs without the
# batching effects of different throughputs (req/s then only shows whether the rate was held).
# A configuration name ending in "@base" (tenth@base) runs the binary BASE instead of BIN: two
# builds side by side in one run.
# MEASURE=instructions runs the collector, the service and the gateway under valgrind's callgrind
# and reports user-space instructions per request instead of CPU time (RATE defaults to 150, what
# the three sustain under valgrind). Instruction counts do not depend on what else the machine is
# doing, so two configurations differ by their code, not by the noise of a shared host; they
# leave out the kernel (syscalls, loopback TCP) and cache misses. The callgrind profiles of the
# measured window stay in $KEEP/<round>-<name>-{gateway,service,collector}.cg when KEEP is set,
# for callgrind_annotate.
# WINDOWS=N starts the pairs of every configuration at once in each round and loads them in turn,
# N short runs each (seconds per run), in rotating order; ratios to tracing off are taken per
# window, and their median is given with a 90% bootstrap interval (rounds, then windows, drawn).
# Saturated throughput drifts with the host by 20-30% over minutes; windows a few seconds apart
# share most of that drift, which runs minutes apart do not.
# usage: [BIN=path/to/meshwork] [BASE=path/to/other/meshwork] [CONFIGS="off tenth ..."] [RATE=N] [MEASURE=cpu|instructions] [WINDOWS=N] [KEEP=dir] loadtest/scripts/bench-tracing.sh [seconds per run] [rounds]
set -euo pipefail
cd "$(dirname "$0")/../.."
SECS=${1:-10}
ROUNDS=${2:-5}
BIN=${BIN:-target/release/meshwork}
[ -x "$BIN" ] || cargo build --release --locked --bin meshwork
. loadtest/scripts/lib.sh
work_dir
MEASURE=${MEASURE:-cpu}
WRAP=()
case $MEASURE in
  cpu) UNIT=cpu_us ;;
  instructions)
    command -v valgrind >/dev/null || { echo "MEASURE=instructions needs valgrind" >&2; exit 2; }
    UNIT=instr; RATE=${RATE:-150}
    WRAP=(valgrind --tool=callgrind --dump-instr=no "--callgrind-out-file=$work/%p.cg") ;;
  *) echo "MEASURE is cpu or instructions" >&2; exit 2 ;;
esac
[ -z "${KEEP:-}" ] || mkdir -p "$KEEP"
# mark PID : a reading of what PID has used so far: its CPU clock ticks, or under callgrind 0,
# after dumping (and so restarting) its instruction count
mark() {
  if [ "$MEASURE" = cpu ]; then cpu_ticks "$1"; else callgrind_control -d "$1" >/dev/null 2>&1; echo 0; fi
}
# newest_profile PID : the file of the latest callgrind dump of PID
newest_profile() { echo "$work/$1.cg.$(find "$work" -maxdepth 1 -name "$1.cg.*" | sed 's/.*\.//' | sort -n | tail -1)"; }
# per_request PID MARK REQUESTS [LABEL] : what PID used since MARK, per request, in UNIT (the
# profile of the window is kept as $KEEP/LABEL.cg when KEEP is set)
per_request() {
  if [ "$MEASURE" = cpu ]; then
    echo $(( ($(cpu_ticks "$1") - $2) * 1000000 / HZ / $3 ))
  else
    callgrind_control -d "$1" >/dev/null 2>&1
    local profile
    profile=$(newest_profile "$1")
    [ -z "${KEEP:-}" ] || [ -z "${4:-}" ] || cp "$profile" "$KEEP/$4.cg"
    echo $(( $(awk '/^totals:/ {print $2}' "$profile") / $3 ))
  fi
}
G=$(free_port); H=$(free_port); U=$(free_port)
RUST_LOG=warn "${WRAP[@]}" "$BIN" traces --otlp-grpc 127.0.0.1:$G --otlp-http 127.0.0.1:$H --trace-ui 127.0.0.1:$U --data-dir "$work/traces" >"$work/traces.log" 2>&1 &
COLLECTOR=$!
# faults_switches PID... : minor page faults, context switches (every thread, voluntary and
# not) and read/write-family system calls (syscr + syscw of /proc/PID/io: socket writes, which
# show how much h2 batches per write, plus eventfd and file I/O; socket reads go through recv,
# which it does not count) of the processes so far, "faults switches syscalls"; threads that
# have exited are not counted in the switches
faults_switches() {
  local f=0 c=0 s=0 p
  for p in "$@"; do
    f=$((f + $(awk '{print $10}' "/proc/$p/stat")))
    c=$((c + $(cat /proc/"$p"/task/*/status 2>/dev/null | awk '/ctxt_switches/ {s += $2} END {print s + 0}')))
    s=$((s + $(awk '/^sysc[rw]:/ {n += $2} END {print n + 0}' "/proc/$p/io")))
  done
  echo "$f $c $s"
}
HZ=$(getconf CLK_TCK)
SVC=meshwork.urlshortener.v1.UrlShortener
printf '\x00\x00\x00\x00\x09\x0a\x07bench01' >"$work/resolve.grpc"

# start_pair NAME ENV... : one service + one gateway with the given OTEL_* environment (and
# SVC_ENV for the service alone, GW_TOML as extra top-level lines of the gateway's configuration)
start_pair() {
  local name=$1; shift
  local sp gp
  sp=$(free_port); gp=$(free_port)
  local bin=$BIN
  [[ $name == *@base ]] && bin=$BASE
  env "$@" "${SVC_ENV[@]}" RUST_LOG=warn "${WRAP[@]}" "$bin" serve urlshortener --listen 127.0.0.1:$sp --store "embedded:$work/$name" >"$work/$name-svc.log" 2>&1 &
  local svc_pid=$!
  gateway_toml "$gp" "$sp" -- ${GW_TOML:+"$GW_TOML"} >"$work/$name.toml"
  env "$@" RUST_LOG=warn "${WRAP[@]}" "$bin" gateway --config "$work/$name.toml" >"$work/$name-gw.log" 2>&1 &
  echo "$svc_pid $!" >"$work/$name.pids"
  wait_healthy "$gp" 60
  grpcurl -plaintext -d '{"long_url":"https://example.com/bench","custom_alias":"bench01"}' 127.0.0.1:$gp $SVC/Shorten >/dev/null
  echo "$gp" >"$work/$name.port"
}
OTLP="OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:$G"
# config_env NAME : sets ENV to the environment of configuration NAME (an @base suffix aside);
# fails for a name it does not know
config_env() {
  local plain=${1%@base}
  SVC_ENV=(); GW_TOML=""
  # ratio SHARE [VAR=VALUE...] : parent-based ratio sampling of SHARE, exported to the collector
  ratio() { ENV=("$OTLP" OTEL_TRACES_SAMPLER=parentbased_traceidratio OTEL_TRACES_SAMPLER_ARG="$1" "${@:2}"); }
  case $plain in
    off*) ENV=(OTEL_SDK_DISABLED=true) ;;
    all) ENV=("$OTLP" OTEL_TRACES_SAMPLER=parentbased_always_on) ;;
    tenth) ratio 0.1 ;;
    leantenth) ratio 0.1; GW_TOML="propagate_unsampled = false"; SVC_ENV=(OTEL_TRACES_SAMPLER=parentbased_always_off) ;;
    none) ratio 0 ;;
    deadtenth) ENV=(OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:$(free_port)"
      OTEL_TRACES_SAMPLER=parentbased_traceidratio OTEL_TRACES_SAMPLER_ARG=0.1) ;;
    r[0-9]*-d[0-9]*) local share=${plain%-d*}; ratio "${share#r}" OTEL_BSP_SCHEDULE_DELAY="${plain##*-d}" ;;
    r[0-9]*) ratio "${plain#r}" ;;
    *) return 1 ;;
  esac
}
# start NAME : starts the pair of configuration NAME
start() {
  config_env "$1"
  start_pair "$1" "${ENV[@]}"
}
# stop NAME : stops the pair of configuration NAME
stop() {
  local pid
  for pid in $(cat "$work/$1.pids"); do kill "$pid" 2>/dev/null || true; done
  for pid in $(cat "$work/$1.pids"); do while kill -0 "$pid" 2>/dev/null; do sleep 0.05; done; done
  rm -rf "${work:?}/$1"
}
read -r -a names <<<"${CONFIGS:-off all tenth}"
for name in "${names[@]}"; do
  [[ $name != *@base ]] || [ -x "${BASE:-}" ] || { echo "$name needs BASE=path/to/another/meshwork" >&2; exit 2; }
  config_env "$name" ||
    { echo "unknown configuration $name (use off, all, tenth, leantenth, none, deadtenth, rN, rN-dM; offX is a second off)" >&2; exit 2; }
done
[ "${names[0]}" = off ] || { echo "CONFIGS must start with off (the ratios are against it)" >&2; exit 2; }

# settle : waits (up to 30 s) until the collector has stored its backlog (no CPU used for 1 s),
# so that no run pays for the spans of the one before
settle() {
  local before after
  for _ in $(seq 30); do
    before=$(cpu_ticks $COLLECTOR); sleep 1; after=$(cpu_ticks $COLLECTOR)
    [ "$after" -le $((before + 1)) ] && return
  done
}

# warm NAME : starts a fresh pair for NAME and gives it 2 s of load, not measured, to connect and
# warm up. A fresh pair for every round, so that a bias of one process instance (memory layout,
# thread placement) is noise across rounds instead of a constant of its configuration.
warm() {
  start "$1"
  "$BIN" load --insecure --call "$SVC/Resolve" -d '{"code":"bench01"}' -r "${RATE:-5000}" -z 2s -c 64 \
    "127.0.0.1:$(cat "$work/$1.port")" >/dev/null
}
# measure NAME ROUND WINDOW SECONDS : loads NAME's pair for SECONDS and prints
# its result line (WINDOW: which runs' ratios to tracing off go together)
measure() {
  local name=$1 round=$2 window=$3 secs=$4 svc_pid gw_pid gw0 svc0 col0 flt0 csw0 sys0 flt1 csw1 sys1 rps done_n
  read -r svc_pid gw_pid <"$work/$name.pids"
  gw0=$(mark "$gw_pid"); svc0=$(mark "$svc_pid"); col0=$(mark $COLLECTOR)
  read -r flt0 csw0 sys0 < <(faults_switches "$svc_pid" "$gw_pid")
  if [ -n "${RATE:-}" ]; then
    "$BIN" load --insecure --call "$SVC/Resolve" -d '{"code":"bench01"}' -r "$RATE" -z "${secs}s" -c 64 -O json \
      "127.0.0.1:$(cat "$work/$name.port")" >"$work/load.json"
    read -r rps done_n < <(python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); ok=r["statusCodeDistribution"].get("OK",0); print(round(r["rps"],1), ok)' "$work/load.json")
  else
    h2load -D "$secs" -c 16 -m 32 -t 2 -H 'content-type: application/grpc' -H 'te: trailers' -d "$work/resolve.grpc" \
      "http://127.0.0.1:$(cat "$work/$name.port")/$SVC/Resolve" >"$work/h2load.out"
    rps=$(awk '/^finished in/ {print $4}' "$work/h2load.out")
    done_n=$(awk '/^requests:/ {print $8}' "$work/h2load.out")
  fi
  # The exporters flush every 500 ms: let the collector store the last batches before reading.
  settle
  read -r flt1 csw1 sys1 < <(faults_switches "$svc_pid" "$gw_pid")
  local gw svc col
  gw=$(per_request "$gw_pid" "$gw0" "$done_n" "$window-$name-gateway")
  svc=$(per_request "$svc_pid" "$svc0" "$done_n" "$window-$name-service")
  col=$(per_request $COLLECTOR "$col0" "$done_n" "$window-$name-collector")
  # per 1000 requests, as integers
  local flt_k=$(( (flt1 - flt0) * 1000 / done_n )) csw_k=$(( (csw1 - csw0) * 1000 / done_n ))
  local sys_k=$(( (sys1 - sys0) * 1000 / done_n ))
  echo "round $round  window=$window  tracing=$name  req/s=$rps  pair_${UNIT}/req=$((gw + svc))  gateway=$gw  service=$svc  collector_${UNIT}/req=$col  faults/kreq=$flt_k  switches/kreq=$csw_k  syscalls/kreq=$sys_k" | tee -a "$work/results"
}

for round in $(seq "$ROUNDS"); do
  if [ -z "${WINDOWS:-}" ]; then
    for i in $(seq 0 $(( ${#names[@]} - 1 ))); do
      name=${names[$(( (round + i) % ${#names[@]} ))]}
      warm "$name"
      settle
      measure "$name" "$round" "$round" "$SECS"
      stop "$name"
    done
  else
    # Every pair of the round up at once; each loaded in turn for a short window, WINDOWS times.
    for name in "${names[@]}"; do warm "$name"; done
    settle
    for w in $(seq "$WINDOWS"); do
      for i in $(seq 0 $(( ${#names[@]} - 1 ))); do
        measure "${names[$(( (w + i) % ${#names[@]} ))]}" "$round" "$round.$w" "$SECS"
      done
    done
    for name in "${names[@]}"; do stop "$name"; done
  fi
done
# Medians over the rounds, and each round's ratio to tracing off in the same round.
python3 - "$work/results" "$UNIT" "${names[@]}" <<'PY'
import random, re, statistics, sys
rows = [dict(re.findall(r"(\S+)=(\S+)", line)) | {"round": line.split()[1]} for line in open(sys.argv[1])]
unit, names = sys.argv[2], sys.argv[3:]
PAIR, COLLECTOR = f"pair_{unit}/req", f"collector_{unit}/req"
by = {name: [r for r in rows if r["tracing"] == name] for name in names}
off = {r["window"]: float(r["req/s"]) for r in by["off"]}
off_cpu = {r["window"]: int(r[PAIR]) for r in by["off"]}
off_all = {r["window"]: int(r[PAIR]) + int(r[COLLECTOR]) for r in by["off"]}
labels = {n: n for n in names if n.startswith("off")} | {"off": "off", "all": "100%", "tenth": "10%", "none": "0%", "deadtenth": "10%, no collector", "leantenth": "10%, propagate_unsampled = false"}
def label_of(n):
    base, plain = n.endswith("@base"), n.removesuffix("@base")
    if plain in labels:
        text = labels[plain]
    else:
        text = f"{float(plain[1:].split('-d')[0]):.0%}" + (f", every {plain.split('-d')[1]} ms" if "-d" in plain else "")
    return text + (" (BASE binary)" if base else "")
def spread(rows, ratios):
    # every round's ratio, or for many windows their quartiles and a 90% bootstrap interval of
    # their median (how far the median itself may be off: compare it with the placebo's). The
    # windows of one round share their processes, so the resampling draws rounds first, then
    # windows within each round drawn.
    if len(ratios) <= 12:
        return "rounds " + " ".join(f"{x:.2f}" for x in ratios)
    q1, _, q3 = statistics.quantiles(ratios, n=4)
    rounds = {}
    for row, ratio in zip(rows, ratios):
        rounds.setdefault(row["round"], []).append(ratio)
    groups, draw = list(rounds.values()), random.Random(1)
    medians = sorted(
        statistics.median([x for g in draw.choices(groups, k=len(groups)) for x in draw.choices(g, k=len(g))])
        for _ in range(2000)
    )
    return f"{len(ratios)} windows, quartiles {q1:.2f}-{q3:.2f}, median's 90% interval {medians[100]:.3f}-{medians[1899]:.3f}"
for name, label in ((n, label_of(n)) for n in names):
    rps = [float(r["req/s"]) for r in by[name]]
    ratios = [float(r["req/s"]) / off[r["window"]] for r in by[name]]
    pair = [int(r[PAIR]) for r in by[name]]
    pair_ratios = [int(r[PAIR]) / off_cpu[r["window"]] for r in by[name]]
    col = [int(r[COLLECTOR]) for r in by[name]]
    all_ratios = [(int(r[PAIR]) + int(r[COLLECTOR])) / off_all[r["window"]] for r in by[name]]
    gw = [int(r["gateway"]) for r in by[name]]
    svc = [int(r["service"]) for r in by[name]]
    flt = [int(r["faults/kreq"]) for r in by[name]]
    csw = [int(r["switches/kreq"]) for r in by[name]]
    sysc = [int(r["syscalls/kreq"]) for r in by[name]]
    print(f"median {label}: req/s={statistics.median(rps):,.0f}  vs off={statistics.median(ratios):.3f}x "
          f"({spread(by[name], ratios)})  {PAIR}={statistics.median(pair)} "
          f"({statistics.median(pair_ratios):.3f}x off; gateway {statistics.median(gw)}, service {statistics.median(svc)})  "
          f"{COLLECTOR}={statistics.median(col)}  pair+collector {statistics.median(all_ratios):.3f}x off  pair faults/kreq={statistics.median(flt)}  "
          f"switches/kreq={statistics.median(csw)}  syscalls/kreq={statistics.median(sysc)}")
PY
spans=$(python3 -c "import json,urllib.request; d=json.load(urllib.request.urlopen('http://127.0.0.1:$U/api/traces?service=urlshortener&limit=10000')); print(sum(len(t['spans']) for t in d['data']))")
echo "spans stored by the collector (last 10000 traces): $spans"
