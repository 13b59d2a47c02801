#!/usr/bin/env bash
# Makes (once) and prints the path of a Debian 12 root that boots under
# systemd-nspawn, for testing the package under a real systemd
# (test/integration/systemd_test.sh, docs/operations.md). Root only.
#
#   scripts/debian-root.sh [PACKAGE...]
#
# The root lives outside the tree, in ${SLUICE_TEST_ROOT:-/var/cache/sluice-test/bookworm-root},
# and is made with debootstrap (minbase + systemd, dbus) from the mirror apt
# already uses (or ${SLUICE_MIRROR}); about a minute the first time here
# (debootstrap 40-60 s, the packages 30-45 s), then nothing. PACKAGEs not yet in the root are installed into it with apt (e.g. a
# package's Depends, so that `dpkg -i` works inside without the network). A lock
# beside the root makes concurrent runs wait for one another rather than race.
# The test boots the root with --volatile=overlay, so it stays as made here.
set -euo pipefail

ROOT=${SLUICE_TEST_ROOT:-/var/cache/sluice-test/bookworm-root}
SUITE=bookworm
log() { echo "debian-root: $*" >&2; }

if [ "$(id -u)" -ne 0 ]; then
  log "error: needs root (debootstrap, systemd-nspawn)"
  exit 1
fi
for tool in debootstrap systemd-nspawn; do
  if ! command -v "$tool" >/dev/null; then
    log "error: $tool missing (scripts/setup.sh installs it)"
    exit 1
  fi
done

# The archive apt already uses, so a local mirror or proxy is used here too.
mirror() {
  if [ -n "${SLUICE_MIRROR:-}" ]; then echo "$SLUICE_MIRROR"; return; fi
  local m
  m=$(grep -hsE '^(URIs:|deb )' /etc/apt/sources.list /etc/apt/sources.list.d/*.sources \
        /etc/apt/sources.list.d/*.list 2>/dev/null |
      grep -v security | grep -oE 'https?://[^ ]*debian/?' | head -1 || true)
  echo "${m:-http://deb.debian.org/debian}"
}

mkdir -p "$(dirname "$ROOT")"
exec 9>"$ROOT.lock"
if ! flock -n 9; then
  log "waiting for another run to finish $ROOT"
  flock 9
fi

if [ ! -f "$ROOT/.sluice-root" ]; then
  rm -rf "$ROOT.tmp"
  start=$(date +%s)
  log "debootstrap $SUITE into $ROOT from $(mirror) (a minute or more, once)"
  debootstrap --variant=minbase --include=systemd,dbus "$SUITE" "$ROOT.tmp" "$(mirror)" \
    >"$ROOT.debootstrap.log" 2>&1 || {
      log "error: debootstrap failed; last lines of $ROOT.debootstrap.log:"
      tail -5 "$ROOT.debootstrap.log" >&2
      exit 1
    }
  # Security and point-release updates, as on a real host.
  cat >"$ROOT.tmp/etc/apt/sources.list" <<EOF
deb $(mirror) $SUITE main
deb $(mirror) $SUITE-updates main
deb http://deb.debian.org/debian-security $SUITE-security main
EOF
  echo sluice-test >"$ROOT.tmp/etc/hostname"
  # No getty on a console nobody reads; a quieter, faster boot.
  ln -sf /dev/null "$ROOT.tmp/etc/systemd/system/console-getty.service"
  touch "$ROOT.tmp/.sluice-root"
  mv "$ROOT.tmp" "$ROOT"
  log "made $ROOT in $(( $(date +%s) - start )) s"
fi

# What the root has: installed packages and the names they provide
# (libspdlog1.10 provides libspdlog1.10-fmt9).
have=$(chroot "$ROOT" dpkg-query -W -f='${db:Status-Abbrev} ${Package} ${Provides}\n' |
       awk '$1 == "ii" { for (i = 2; i <= NF; i++) { gsub(/,/, "", $i)
                         if ($i !~ /^[(<>=]/ && $i !~ /\)$/) print $i } }' | sort -u)
missing=()
for p in "$@"; do
  # A Depends alternative "a | b" is satisfied by either; test the first.
  p=${p%%|*}
  p=${p// /}
  [ -n "$p" ] || continue
  grep -qxF "$p" <<<"$have" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  log "installing into the root: ${missing[*]}"
  start=$(date +%s)
  systemd-nspawn -q -D "$ROOT" --register=no --keep-unit --pipe \
    env DEBIAN_FRONTEND=noninteractive sh -c \
    "apt-get update -qq && apt-get install -y -qq --no-install-recommends ${missing[*]} >/dev/null && apt-get clean" \
    >"$ROOT.apt.log" 2>&1 </dev/null || {
      log "error: apt-get in the root failed; last lines of $ROOT.apt.log:"
      tail -5 "$ROOT.apt.log" >&2
      exit 1
    }
  log "installed in $(( $(date +%s) - start )) s"
fi
echo "$ROOT"
