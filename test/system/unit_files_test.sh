#!/usr/bin/env bash
# The installed systemd units tell the truth and are hardened:
#   unit_files_test.sh BUILD_DIR
# installs the build into a scratch root with prefix /usr (as the package does),
# then for each unit: it runs the installed binary under Type=notify with the
# settings the daemons' contract needs, `systemd-analyze verify` passes, and
# `systemd-analyze security --offline=yes` rates its exposure at most 2.5.
# verify fails on an ExecStart= binary that does not exist, so it checks a
# copy of the units whose /usr/sbin points into the scratch root (the installed
# units are checked to name /usr/sbin), with MANPATH at the scratch man pages
# (it also checks Documentation=man:...).
set -euo pipefail
BUILD=$1
MAX_EXPOSURE=${MAX_EXPOSURE:-2.5}
WORK=$(mktemp -d /tmp/sluice-units.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

DESTDIR=$WORK/root cmake --install "$BUILD" --prefix /usr >/dev/null
UNITDIR=$WORK/root/lib/systemd/system
mkdir "$WORK/units"
declare -A BINARY=([sluice-driverd.service]=driverd [sluice-driverd@.service]=driverd
                   [sluice-workerd@.service]=workerd)
declare -A INSTANCE=([sluice-driverd.service]=sluice-driverd.service
                     [sluice-driverd@.service]=sluice-driverd@1.service
                     [sluice-workerd@.service]=sluice-workerd@1.service)
[ "$(ls "$UNITDIR")" = "$(printf '%s\n' "${!BINARY[@]}" | sort)" ] ||
  fail "units installed: $(ls "$UNITDIR" | tr '\n' ' ')"

for unit in $(printf '%s\n' "${!BINARY[@]}" | sort); do
  file=$UNITDIR/$unit
  bin=${BINARY[$unit]}
  [ -x "$WORK/root/usr/sbin/$bin" ] || fail "$unit: /usr/sbin/$bin is not installed"
  grep -q "^ExecStart=/usr/sbin/$bin --config /etc/sluice/" "$file" ||
    fail "$unit: ExecStart= does not run /usr/sbin/$bin with a config in /etc/sluice"
  for want in Type=notify NotifyAccess=main WatchdogSec=10s 'ExecReload=/bin/kill -HUP $MAINPID' \
              Restart=on-failure RestartPreventExitStatus=2 User=sluice StateDirectory=sluice \
              LogsDirectory=sluice UMask=0077 ProtectSystem=strict CapabilityBoundingSet= \
              MemoryDenyWriteExecute=yes SystemCallFilter=@system-service; do
    grep -qxF "$want" "$file" || fail "$unit: no line '$want'"
  done
  ! grep -q '@[A-Z]*@' "$file" || fail "$unit: an unsubstituted @VARIABLE@"
  sed "s|=/usr/sbin/|=$WORK/root/usr/sbin/|" "$file" >"$WORK/units/$unit"
done

cd "$WORK/units"
for unit in $(printf '%s\n' "${!INSTANCE[@]}" | sort); do
  instance=${INSTANCE[$unit]}
  if ! out=$(MANPATH=$WORK/root/usr/share/man systemd-analyze verify "./$instance" 2>&1) ||
     [ -n "$out" ]; then
    fail "systemd-analyze verify $instance: $out"
  fi
  line=$(systemd-analyze security --offline=yes --no-pager "./$instance" | tail -1)
  score=$(sed -E 's/.*: ([0-9.]+) .*/\1/' <<<"$line")
  echo "$instance: verify ok; exposure $score (${line##*: })"
  awk -v s="$score" -v m="$MAX_EXPOSURE" 'BEGIN { exit !(s != "" && s <= m) }' ||
    fail "$instance: exposure $score above $MAX_EXPOSURE"
done
echo "PASS: ${#INSTANCE[@]} units verified, exposure <= $MAX_EXPOSURE"
