#!/usr/bin/env bash
# Builds Sluice's libFuzzer targets (test/fuzz) with clang under
# AddressSanitizer and UBSan into ${SLUICE_FUZZ_BUILD_DIR:-build-fuzz} (the
# main build stays g++), and runs each from its seed corpus
# (test/fuzz/corpus/<target>) plus what earlier runs found
# (<build dir>/corpus/<target>).
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]   each target SECONDS (default 300)
#   scripts/fuzz.sh --ci                    every target ~8 s (about a minute
#                                           in all); what ctest runs. Exit 77
#                                           (skipped) without clang.
#
# A finding stops the run: the input is saved as
# <build dir>/artifacts/<target>-crash-* (reproduce: <build dir>/test/fuzz/
# <target>_fuzz FILE); fix it and add the input to the target's seed corpus.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${SLUICE_FUZZ_BUILD_DIR:-build-fuzz}
ALL=(expr job_file event block shuffle state wal)

seconds=300
ci=0
if [ "${1:-}" = "--ci" ]; then
  ci=1
  seconds=${SLUICE_FUZZ_CI_SECONDS:-8}
  shift
elif [[ "${1:-}" =~ ^[0-9]+$ ]]; then
  seconds=$1
  shift
fi
targets=("$@")
[ ${#targets[@]} -eq 0 ] && targets=("${ALL[@]}")

if ! command -v clang++ >/dev/null 2>&1; then
  echo "fuzz: clang++ not found (scripts/setup.sh installs clang); skipping" >&2
  [ "$ci" = 1 ] && exit 77
  exit 1
fi

if [ ! -f "$BUILD_DIR/CMakeCache.txt" ]; then
  CC=clang CXX=clang++ cmake -S . -B "$BUILD_DIR" -DSLUICE_FUZZ=ON -DSLUICE_BUILD_TESTS=OFF \
    -DSLUICE_BUILD_BENCH=OFF -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
fi
cmake --build "$BUILD_DIR" -j "${SLUICE_JOBS:-$(nproc)}" --target fuzz_targets >"$BUILD_DIR/fuzz-build.log" 2>&1 || {
  tail -40 "$BUILD_DIR/fuzz-build.log" >&2
  echo "fuzz: build failed (log: $BUILD_DIR/fuzz-build.log)" >&2
  exit 1
}

mkdir -p "$BUILD_DIR/artifacts"
start=$(date +%s)
status=0
for t in "${targets[@]}"; do
  bin="$BUILD_DIR/test/fuzz/${t}_fuzz"
  work="$BUILD_DIR/corpus/$t"
  mkdir -p "$work"
  log="$BUILD_DIR/artifacts/$t.log"
  # -max_len: expressions are refused over 8 KiB, job files over 1 MiB;
  # 64 KiB lets the inputs cross every nesting limit. -rss_limit_mb and
  # -malloc_limit_mb make an allocation that grows with the input a finding.
  if "$bin" -max_total_time="$seconds" -max_len=65536 -timeout=10 -rss_limit_mb=2048 -malloc_limit_mb=1024 \
       -print_final_stats=1 -artifact_prefix="$BUILD_DIR/artifacts/$t-" "$work" "test/fuzz/corpus/$t" \
       >"$log" 2>&1; then
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log")
    echo "fuzz: $t: ${runs:-?} runs in ${seconds} s (${rate:-?}/s), corpus $(ls "$work" | wc -l) inputs, no finding"
  else
    status=1
    echo "fuzz: $t: FINDING (log: $log)" >&2
    grep -E "ERROR|SUMMARY|Test unit written|==[0-9]+==" "$log" | head -20 >&2 || true
    grep -A30 "ERROR: " "$log" | grep -E "^ +#[0-9]+ " | head -15 >&2 || true
  fi
done
echo "fuzz: ${#targets[@]} targets in $(( $(date +%s) - start )) s"
exit $status
