#!/usr/bin/env bash
# Sluice's test command: installs what is missing, builds, and runs the whole
# suite (unit and integration tests with real ZooKeeper, Kafka-mock, driverd
# and workerd processes) with ctest. Extra arguments go to ctest, e.g.
#   scripts/test.sh -L unit          only the unit tests
#   scripts/test.sh -R ZooKeeper     tests whose name matches
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/build.sh
BUILD_DIR=${SLUICE_BUILD_DIR:-build}
cd "$BUILD_DIR"
ctest -j "${SLUICE_TEST_JOBS:-2}" --output-on-failure --timeout 600 "$@"
