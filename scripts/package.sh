#!/usr/bin/env bash
# Builds Sluice's Debian package from the tree and prints its path:
#   scripts/package.sh [--build-dir DIR] [--out DIR] [--no-setup]
# By default a release build of its own in build-package/ (no tests or
# benchmarks, fault points compiled out, CMAKE_INSTALL_PREFIX=/usr), then
# CPack's DEB generator (cmake/SluicePackage.cmake) into --out (default: the
# build dir). --build-dir build reuses the development build (faster; its
# binaries keep the fault points): the package test does so, with --no-setup
# (scripts/setup.sh has run before any test). What the package
# holds and does: docs/operations.md.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${SLUICE_PACKAGE_BUILD_DIR:-build-package}
OUT=""
SETUP=1
while [ $# -gt 0 ]; do
  case "$1" in
    --build-dir) BUILD_DIR=$2; shift 2 ;;
    --out) OUT=$2; shift 2 ;;
    --no-setup) SETUP=0; shift ;;
    *) echo "usage: scripts/package.sh [--build-dir DIR] [--out DIR] [--no-setup]" >&2; exit 2 ;;
  esac
done
OUT=${OUT:-$BUILD_DIR}
JOBS=${SLUICE_JOBS:-$(nproc)}

if [ "$SETUP" = 1 ]; then
  scripts/setup.sh >&2
fi
if [ ! -f "$BUILD_DIR/CMakeCache.txt" ]; then
  cmake -S . -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_INSTALL_PREFIX=/usr \
    -DSLUICE_BUILD_TESTS=OFF -DSLUICE_BUILD_BENCH=OFF -DSLUICE_FAULT_POINTS=OFF >/dev/null
fi
cmake --build "$BUILD_DIR" -j "$JOBS" \
  --target driverd workerd sluicectl uppercase_plugin count_state_plugin man >&2
mkdir -p "$OUT"
cpack --config "$BUILD_DIR/CPackConfig.cmake" -B "$(cd "$OUT" && pwd)" ${SLUICE_CPACK_ARGS:-} >&2
rm -rf "$OUT/_CPack_Packages"
ls -t "$OUT"/sluice_*.deb | head -1
