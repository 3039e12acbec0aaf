#!/usr/bin/env bash
# Runs every cargo-fuzz target in fuzz/ for SECONDS each (default 60) on the nightly toolchain
# and prints, per target, the executions, executions per second, libFuzzer's coverage and the
# findings (crash, leak or timeout inputs written to fuzz/artifacts/<target>/).
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]
#
# Each run starts from the committed corpus (fuzz/corpus/<target>/, read only) and keeps what it
# discovers in a scratch corpus under the target dir, so the committed corpus only changes on
# purpose (`cargo +nightly fuzz cmin`). A finding stops its target's run, the others still run;
# the script exits 1 when anything was found. Fix the parser, copy the artifact into
# fuzz/corpus/<target>/ as a regression input: `cargo test -p meshwork-fuzz-bodies` replays it on
# stable. Environment: FUZZ_TARGET_DIR (default fuzz/target; relative to fuzz/), FUZZ_ARGS (more libFuzzer flags,
# e.g. `-runs=10000000` for a run of a fixed number of executions).
set -uo pipefail

cd "$(dirname "$0")/../fuzz"
seconds=${1:-60}
shift $(($# > 0 ? 1 : 0))
target_dir=${FUZZ_TARGET_DIR:-target}
export CARGO_INCREMENTAL=0
# No sanitizer (the parsers are safe Rust: what is looked for is panics, overflow, unbounded
# work), debug assertions on so that integer overflow panics.
flags=(-s none -a --target-dir "$target_dir")

if [ $# -gt 0 ]; then
    targets=("$@")
else
    mapfile -t targets < <(cargo +nightly fuzz list)
fi
cargo +nightly fuzz build "${flags[@]}" || exit 2

logs="$target_dir/fuzz-logs"
mkdir -p "$logs"
found=0
printf '%-24s %12s %10s %8s %8s  %s\n' target execs exec/s cov ft findings
for t in "${targets[@]}"; do
    work="$target_dir/fuzz-corpus/$t"
    mkdir -p "$work" "artifacts/$t"
    before=$(find "artifacts/$t" -type f | wc -l)
    # shellcheck disable=SC2086 # FUZZ_ARGS is a list of flags
    cargo +nightly fuzz run "${flags[@]}" "$t" "$work" "corpus/$t" -- \
        -max_total_time="$seconds" -print_final_stats=1 ${FUZZ_ARGS:-} >"$logs/$t.log" 2>&1
    rc=$?
    after=$(find "artifacts/$t" -type f | wc -l)
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$logs/$t.log" | tail -1)
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$logs/$t.log" | tail -1)
    cov=$(grep -o 'cov: [0-9]*' "$logs/$t.log" | tail -1 | cut -d' ' -f2)
    ft=$(grep -o 'ft: [0-9]*' "$logs/$t.log" | tail -1 | cut -d' ' -f2)
    new=$((after - before))
    summary="$new"
    if [ "$new" -gt 0 ] || [ "$rc" -ne 0 ]; then
        found=1
        summary="$new (exit $rc; see fuzz/artifacts/$t/ and $logs/$t.log)"
    fi
    printf '%-24s %12s %10s %8s %8s  %s\n' "$t" "${execs:-?}" "${rate:-?}" "${cov:-?}" "${ft:-?}" "$summary"
done
exit "$found"
