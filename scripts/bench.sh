#!/usr/bin/env bash
# Builds and runs Sluice's benchmarks (bench/). Each prints its figures and a
# ratio against a baseline measured in the same run. Not part of the tests.
#   scripts/bench.sh            all benchmarks
#   scripts/bench.sh wal_bench  one, with its own flags after it
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
BUILD_DIR=${SLUICE_BUILD_DIR:-build}
BENCHES=(ingest_bench kafka_ingest_bench wal_bench pipeline_bench e2e_bench kafka_job_bench backlog_bench status_page_bench keyed_scale_bench state_move_bench)
if [ $# -gt 0 ]; then
  name=$1; shift
  scripts/build.sh "$name" >/dev/null
  exec "$BUILD_DIR/bench/$name" "$@"
fi
scripts/build.sh "${BENCHES[@]}" >/dev/null
for b in "${BENCHES[@]}"; do
  echo "=== $b"
  "$BUILD_DIR/bench/$b"
done
