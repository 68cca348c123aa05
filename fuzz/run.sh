#!/usr/bin/env bash
# Runs every fuzz target for SECONDS (default 600), two at a time, niced,
# growing the corpus in fuzz/corpus/<target>/. Crashes land in
# fuzz/artifacts/<target>/; logs in fuzz/logs/<target>.log.
#
# Needs cargo-fuzz (`cargo install cargo-fuzz --locked`). On a stable
# toolchain RUSTC_BOOTSTRAP=1 unlocks the nightly flags cargo-fuzz passes to
# rustc; the targets are built without a sanitizer (the code is safe Rust:
# what we look for is panics, overflows and broken properties), with debug
# assertions and overflow checks on.
#
#   fuzz/run.sh [SECONDS]          every target
#   TARGETS="tus ranges" fuzz/run.sh 60
#   FUZZ_PARALLEL=1 fuzz/run.sh    one at a time
set -euo pipefail
seconds=${1:-600}
parallel=${FUZZ_PARALLEL:-2}
cd "$(dirname "$0")"
export RUSTC_BOOTSTRAP=1
export CARGO_BUILD_JOBS=${CARGO_BUILD_JOBS:-1}
nice -n 19 cargo fuzz build -s none -a
targets=${TARGETS:-$(cargo fuzz list)}
logs=${FUZZ_LOGS:-logs}
mkdir -p "$logs"
run_one() {
    local target=$1 seconds=$2
    mkdir -p "corpus/$target"
    echo "fuzzing $target for ${seconds}s (log: fuzz/$logs/$target.log)"
    nice -n 19 cargo fuzz run -s none -a "$target" "corpus/$target" -- \
        -max_total_time="$seconds" -max_len=4096 -timeout=10 -rss_limit_mb=2048 \
        -print_final_stats=1 >"$logs/$target.log" 2>&1 \
        && echo "$target: done, $(grep -ao 'Done [0-9]* runs in [0-9]* second(s)' "$logs/$target.log" | tail -1)" \
        || { echo "$target: FAILED, see fuzz/$logs/$target.log and fuzz/artifacts/$target/"; return 1; }
}
export logs
export -f run_one
printf '%s\n' $targets | xargs -P "$parallel" -I{} bash -c "run_one {} $seconds"
