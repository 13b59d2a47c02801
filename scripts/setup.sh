#!/usr/bin/env bash
# Installs every Debian 12 package Sluice needs to build, test and run.
# Idempotent and quick when everything is there. Run as root (or with sudo).
# Why each package is here: docs/dependencies.md.
set -euo pipefail

PACKAGES=(
  # Toolchain
  cmake g++ pkg-config ccache
  # Libraries the code links
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler
  libzookeeper-mt-dev librdkafka-dev librocksdb-dev libspdlog-dev libsystemd-dev
  libcli11-dev libyaml-cpp-dev libsimdjson-dev
  # The daemons' HTTP endpoint (metrics, health, status page) and the page's charts
  libcpp-httplib-dev libjs-dygraphs
  # TLS: certificate checks (libssl-dev), scripts/gen-certs.sh (openssl)
  libssl-dev openssl
  # Tests; clang builds the fuzz targets (scripts/fuzz.sh: libFuzzer, ASan, UBSan)
  libgtest-dev libgmock-dev clang libclang-rt-dev
  # Servers and tools the tests and the demo run
  zookeeper default-jre-headless kcat
  # Benchmarks: plots of events/s and delay over time (bench/e2e_bench --plot-dir)
  gnuplot-nox
  # The status page in a real browser; sluicectl watch in a real terminal
  chromium tmux
  # Partition tests: network namespaces and cuts between them
  iproute2 nftables
  # The package (scripts/package.sh): man pages from --help, dpkg-shlibdeps;
  # the unit and package tests: systemd-analyze, systemd-sysusers, systemd-tmpfiles
  help2man dpkg-dev systemd
  # The package under a real systemd: a Debian root booted in a container
  debootstrap systemd-container
)

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi

echo "setup: installing ${missing[*]}"
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then SUDO="sudo"; else
    echo "setup: error: need root (or sudo) to install: ${missing[*]}" >&2
    exit 1
  fi
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "setup: done"
