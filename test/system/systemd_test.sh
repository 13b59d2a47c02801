#!/usr/bin/env bash
# Under a real systemd: the package installed in a Debian 12 container booted
# with systemd-nspawn, its units run as an operator would run them.
#   systemd_test.sh SOURCE_DIR DEB|DIR_WITH_DEB
# Steps: dpkg -i (the sluice user made, nothing started); the shipped configs
# run a one-host cluster without ZooKeeper; then, against a ZooKeeper in the
# container, sluice-driverd@{1,2,3} and sluice-workerd@{1,2}: STATUS= lines,
# a job (with a plugin: dlopen under MemoryDenyWriteExecute=), `systemctl kill
# -s KILL` of the leader's unit (a standby leads, systemd restarts the killed
# one), `systemctl reload` (log level), a config error (failed, no restart
# loop), `systemctl stop` of everything (clean); `dpkg --purge` with a daemon
# running.
#
# The root is made once and cached outside the tree (scripts/debian-root.sh,
# with the package's Depends and ZooKeeper); each run boots it with
# --volatile=overlay (changes go to memory) and --private-network (its own
# loopback: no port clashes with the host). Exits 77 (skipped), saying why,
# only where the container cannot be made or cannot boot.
# SLUICE_SYSTEMD_TEST_KEEP=1 keeps the work directory (journal, console).
# SLUICE_SYSTEMD_TEST_NO_NOTIFY=1 runs daemons that do not speak sd_notify
# (a drop-in makes the units Type=exec without watchdog) and leaves out what
# needs it — STATUS= lines, reload, sluicectl.conf, standalone registration —
# to tell a sandbox problem from a notification problem.
set -euo pipefail
NOTIFY=1
[ -z "${SLUICE_SYSTEMD_TEST_NO_NOTIFY:-}" ] || NOTIFY=0
SRC=$1 DEB=$2
# shellcheck source=test/system/lib.sh
source "$SRC/test/system/lib.sh"
[ ! -d "$DEB" ] || DEB=$(ls -t "$DEB"/sluice_*.deb 2>/dev/null | head -1)
T0=$(date +%s.%N)
since() { awk -v a="$1" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }'; }
log() { echo "[$(since "$T0") s] $*"; }
skip() { echo "SKIP: $*"; exit 77; }

[ "$(id -u)" = 0 ] || skip "needs root (systemd-nspawn)"
for tool in systemd-nspawn debootstrap nsenter; do
  command -v "$tool" >/dev/null || skip "$tool missing (scripts/setup.sh installs it)"
done
[ -f "$DEB" ] || { echo "FAIL: no package $DEB (package_test makes it)"; exit 1; }

deps=$(dpkg-deb -f "$DEB" Depends | tr ',' '\n' | sed -E 's/\([^)]*\)//g; s/[[:space:]]//g')
ROOT=$("$SRC/scripts/debian-root.sh" $deps zookeeper default-jre-headless) ||
  skip "no Debian 12 root to boot (scripts/debian-root.sh failed: above)"
log "root $ROOT ready"

WORK=$(mktemp -d /tmp/sluice-systemd.XXXXXX)
cp "$DEB" "$WORK/sluice.deb"
NSPAWN="" L=""
cleanup() {
  local rc=$?
  if [ -n "$L" ] && kill -0 "$L" 2>/dev/null; then
    nsenter -t "$L" -a journalctl --no-pager -o short-precise >"$WORK/journal.log" 2>&1 || true
    nsenter -t "$L" -a systemctl poweroff >/dev/null 2>&1 || true
  fi
  if [ -n "$NSPAWN" ]; then
    for _ in $(seq 50); do kill -0 "$NSPAWN" 2>/dev/null || break; sleep 0.2; done
    kill "$NSPAWN" 2>/dev/null || true
    wait "$NSPAWN" 2>/dev/null || true
  fi
  if [ "$rc" != 0 ] && [ "$rc" != 77 ] || [ -n "${SLUICE_SYSTEMD_TEST_KEEP:-}" ]; then
    echo "kept $WORK (journal.log: the container's journal; console.log)"
  else
    rm -rf "$WORK"
  fi
}
trap cleanup EXIT
fail() {
  echo "FAIL: $*" >&2
  if [ -n "$L" ]; then
    nsenter -t "$L" -a systemctl --no-pager status 'sluice-*' 2>&1 | tail -40 >&2 || true
  fi
  exit 1
}

# ---- Boot (PLATFORM.md's recipe).
T_BOOT=$(date +%s.%N)
systemd-nspawn -q -D "$ROOT" --volatile=overlay --private-network -b --register=no --keep-unit \
  -M "sluice-test-$$" --bind-ro="$WORK:/mnt/sluice" </dev/null >"$WORK/console.log" 2>&1 &
NSPAWN=$!
for _ in $(seq 100); do
  # The container's init (nspawn may have another child for a moment).
  L=$(pgrep -P "$NSPAWN" -x systemd | head -1 || true)
  [ -n "$L" ] && break
  kill -0 "$NSPAWN" 2>/dev/null || break
  sleep 0.1
done
[ -n "$L" ] || skip "the container did not start: $(tail -3 "$WORK/console.log" | tr '\n' ' ')"
ns() { nsenter -t "$L" -a "$@"; }   # run in the container
state=""
for _ in $(seq 300); do   # 60 s: a boot beside a busy test run has taken over 30
  state=$(ns systemctl is-system-running 2>/dev/null || true)
  case "$state" in running|degraded) break ;; esac
  sleep 0.2
done
case "$state" in running|degraded) ;; *) skip "the container's systemd did not boot ($state)" ;; esac
log "container booted ($state) in $(since "$T_BOOT") s"

show() { ns systemctl show -p "$1" --value "$2"; }
status_text() { show StatusText "$1"; }
wait_for() {  # wait_for SECONDS WHAT COMMAND...: until COMMAND succeeds
  local deadline=$(( $(date +%s) + $1 )) what=$2
  shift 2
  until "$@" >/dev/null 2>&1; do
    [ "$(date +%s)" -lt "$deadline" ] || fail "waited for $what"
    sleep 0.2
  done
}

# ---- Install: the user and directories made, nothing started or enabled.
ns dpkg -i /mnt/sluice/sluice.deb >"$WORK/dpkg.log" 2>&1 || { cat "$WORK/dpkg.log"; fail "dpkg -i"; }
ns getent passwd sluice >/dev/null || fail "no sluice user after install"
[ "$(ns stat -c %U /var/lib/sluice)" = sluice ] || fail "/var/lib/sluice is not sluice's"
for u in sluice-driverd.service sluice-workerd@1.service; do
  [ "$(show ActiveState $u)" = inactive ] || fail "$u is $(show ActiveState $u) after install"
  [ "$(ns systemctl is-enabled $u 2>/dev/null || true)" = disabled ] || fail "$u enabled by install"
done
log "dpkg -i: user sluice made, nothing started"

if [ "$NOTIFY" = 0 ]; then
  for u in sluice-driverd sluice-driverd@ sluice-workerd@; do
    ns mkdir -p "/etc/systemd/system/$u.service.d"
    ns sh -c "printf '[Service]\nType=exec\nWatchdogSec=0\n' >/etc/systemd/system/$u.service.d/no-notify.conf"
  done
  ns systemctl daemon-reload
  log "NO_NOTIFY: units overridden to Type=exec, no watchdog; STATUS, reload, sluicectl.conf," \
      "standalone registration not checked"
fi

units_status() { ns systemctl --no-pager status "$@" 2>&1 | grep -E '^[●×○] |Status:|Active:' || true; }

# ---- Out of the box: the shipped configs, one host, no ZooKeeper.
t=$(date +%s.%N)
ns systemctl start sluice-driverd sluice-workerd@1 sluice-workerd@2 ||
  fail "starting the shipped one-host cluster"
log "shipped configs: driver and 2 workers ready in $(since "$t") s"
units_status sluice-driverd sluice-workerd@1 sluice-workerd@2
if [ "$NOTIFY" = 1 ]; then
  workers_registered() {
    ns sluicectl --coordinator standalone://127.0.0.1:7100 status | grep -q 'LEADER.*workers=2'
  }
  wait_for 20 "the standalone driver to count 2 workers" workers_registered
  ns sluicectl --coordinator standalone://127.0.0.1:7100 status
fi
# The shipped configs' HTTP endpoints, under the units' sandbox: the driver
# ready on 7180, the workers' metrics on 7281 and 7282.
http_get() {  # http_get PORT PATH: the whole answer, headers first
  ns bash -c "exec 3<>/dev/tcp/127.0.0.1/$1 && printf 'GET $2 HTTP/1.0\r\n\r\n' >&3 && cat <&3"
}
driver_ready_http() { http_get 7180 /readyz | grep -q '^HTTP/1.1 200'; }
wait_for 20 "the driver's /readyz on 7180" driver_ready_http
for port in 7281 7282; do
  http_get "$port" /metrics | grep -q '^sluice_build_info{kind="worker"' ||
    fail "no worker metrics on 127.0.0.1:$port/metrics"
done
log "HTTP: driver /readyz 200 on 7180; worker /metrics on 7281 and 7282"
ns systemctl stop sluice-driverd sluice-workerd@1 sluice-workerd@2
ns sh -c 'rm -rf /var/lib/sluice/driver-* /var/lib/sluice/worker-*'

# ---- ZooKeeper in the container.
cat >"$WORK/zoo.cfg" <<EOF
tickTime=500
dataDir=/var/lib/zookeeper-test
clientPort=2181
clientPortAddress=127.0.0.1
admin.enableServer=false
4lw.commands.whitelist=*
EOF
cat >"$WORK/zookeeper-test.service" <<'EOF'
[Unit]
Description=ZooKeeper for the Sluice systemd test
[Service]
StateDirectory=zookeeper-test
ExecStart=/usr/bin/java -Xmx256m -XX:+UseSerialGC -Dzookeeper.root.logger=INFO,CONSOLE \
  -Dlog4j.configuration=file:/etc/zookeeper/conf/log4j.properties \
  -cp /usr/share/java/zookeeper.jar:/usr/share/java/slf4j-log4j12.jar:/usr/share/java/log4j-1.2.jar \
  org.apache.zookeeper.server.quorum.QuorumPeerMain /mnt/sluice/zoo.cfg
EOF
ns cp /mnt/sluice/zookeeper-test.service /etc/systemd/system/
ns systemctl daemon-reload
ns systemctl start zookeeper-test
zk_ok() { ns bash -c 'exec 3<>/dev/tcp/127.0.0.1/2181 && echo ruok >&3 && grep -q imok <&3'; }
wait_for 30 "ZooKeeper" zk_ok
log "ZooKeeper up"

# ---- Three drivers and two workers on one host, through the templates.
ZK=zookeeper://127.0.0.1:2181/sluice
ctl() { ns sluicectl --coordinator "$ZK" "$@"; }
for n in 1 2 3; do
  cat >"$WORK/driverd-$n.conf" <<EOF
id = driver-$n
rpc-address = 127.0.0.1:710$n
data-dir = /var/lib/sluice/driver-$n
coordinator = $ZK
zk-session-timeout-ms = 4000
wal-group-size = 3
log-level = info
tls-cert = /etc/sluice/tls/driver-$n.pem
tls-key = /etc/sluice/tls/driver-$n.key
tls-ca = /etc/sluice/tls/ca.pem
plugin-dirs = /usr/lib/sluice/plugins
output-dirs = /var/lib/sluice/output
EOF
done
for n in 1 2 3; do
  cat >"$WORK/workerd-$n.conf" <<EOF
id = worker-$n
rpc-address = 127.0.0.1:720$n
data-dir = /var/lib/sluice/worker-$n
coordinator = $ZK
zk-session-timeout-ms = 4000
slots = 2
log-level = info
tls-cert = /etc/sluice/tls/worker-$n.pem
tls-key = /etc/sluice/tls/worker-$n.key
tls-ca = /etc/sluice/tls/ca.pem
plugin-dirs = /usr/lib/sluice/plugins
output-dirs = /var/lib/sluice/output
EOF
done
echo "no-such-key = 1" >>"$WORK/workerd-3.conf"   # the config error, below
printf 'coordinator = %s\ntls-cert = /etc/sluice/tls/admin.pem\ntls-key = /etc/sluice/tls/admin.key\ntls-ca = /etc/sluice/tls/ca.pem\n' \
  "$ZK" >"$WORK/sluicectl.conf"
# Certificates for the daemons the shipped set lacks, from the CA postinst made.
ns sh -c '/usr/share/sluice/gen-certs.sh -d /etc/sluice/tls driver-2:driver driver-3:driver worker-3:worker \
          >/dev/null && chown sluice:sluice /etc/sluice/tls/driver-[23].key /etc/sluice/tls/worker-3.key' ||
  fail "gen-certs.sh in the container"
ns sh -c 'cp /mnt/sluice/*.conf /etc/sluice/ && chown root:sluice /etc/sluice/d*.conf /etc/sluice/w*.conf &&
          chmod 640 /etc/sluice/d*.conf /etc/sluice/w*.conf'
DRIVERS="sluice-driverd@1 sluice-driverd@2 sluice-driverd@3"
WORKERS="sluice-workerd@1 sluice-workerd@2"
t=$(date +%s.%N)
ns systemctl start $DRIVERS || fail "starting $DRIVERS"
log "3 drivers ready (systemctl start returned) in $(since "$t") s"
t=$(date +%s.%N)
ns systemctl start $WORKERS || fail "starting $WORKERS"
log "2 workers ready in $(since "$t") s"
leader_count() {
  [ "$(ctl status | grep -c 'LEADER')" = 1 ] && ctl status | grep -q 'LEADER.*workers=2'
}
wait_for 30 "one leader with 2 workers" leader_count
ctl status

# STATUS= lines a person understands.
check_status_lines() {
  local leaders=0 standbys=0 s
  for u in $DRIVERS; do
    s=$(status_text "$u")
    case "$s" in leader\ epoch*) leaders=$((leaders + 1)) ;; standby*) standbys=$((standbys + 1)) ;; esac
  done
  [ "$leaders" = 1 ] && [ "$standbys" = 2 ] || return 1
  for u in $WORKERS; do case "$(status_text "$u")" in worker*) ;; *) return 1 ;; esac; done
}
[ "$NOTIFY" = 0 ] || wait_for 15 \
  "STATUS= lines: one 'leader epoch ...', two 'standby ...', workers 'worker ...'" check_status_lines
units_status $DRIVERS $WORKERS

# ---- A job, with a plugin loaded by the workers by name from the shipped plugin-dirs (dlopen
# under MemoryDenyWriteExecute=), writing under the shipped output-dirs (the tmpfiles line).
cat >"$WORK/upper.yaml" <<'EOF'
name: upper
batch_interval: 500ms
sources:
  - {name: gen, kind: generator, partitions: 2, rate: 200}
operators:
  - parse: {format: json}
  - plugin: {name: uppercase_plugin, config: {field: key, as: ukey}}
  - project: {fields: [id, ukey]}
sink:
  file: {path: /var/lib/sluice/output/upper, format: jsonl}
EOF
ctl submit /mnt/sluice/upper.yaml || fail "sluicectl submit"
output_lines() { ns sh -c 'cat /var/lib/sluice/output/upper/*.jsonl 2>/dev/null' | grep -c '"ukey":"K' || true; }
has_output() { [ "$(output_lines)" -gt 0 ]; }
wait_for 30 "the job's output (upper-cased by the plugin)" has_output
log "job 'upper' writes: $(output_lines) upper-cased records so far"

# ---- systemctl kill -s KILL the leader's unit.
leader=$(ctl status | awk '/LEADER/ { print $2 }')
case "$leader" in driver-[123]) ;; *) fail "no leader in sluicectl status ($leader)" ;; esac
lunit=sluice-driverd@${leader#driver-}
old_pid=$(show MainPID "$lunit")
before=$(output_lines)
t=$(date +%s.%N)
ns systemctl kill -s KILL "$lunit"
new_leader() {
  local l
  l=$(ctl status 2>/dev/null | awk '/LEADER/ { print $2 }')
  [ -n "$l" ] && [ "$l" != "$leader" ]
}
wait_for 40 "a standby to lead after the kill of $leader" new_leader
took=$(since "$t")
restarted() {
  [ "$(show ActiveState "$lunit")" = active ] && [ "$(show NRestarts "$lunit")" = 1 ] &&
    [ "$(show MainPID "$lunit")" != "$old_pid" ]
}
wait_for 30 "systemd to restart $lunit" restarted
more_output() { [ "$(output_lines)" -gt "$before" ]; }
wait_for 30 "the job to write again after the failover" more_output
resumed=$(since "$t")
# Liveness: the next batch committed within T + 2 s + 2B (T = 4 s, B = 0.5 s:
# 7 s), and 1 s for this script's polling through nsenter.
awk -v r="$resumed" 'BEGIN { exit !(r <= 8.0) }' ||
  fail "the job wrote again only $resumed s after the leader's kill (bound 8 s)"
# Safety: every event below each partition's highest output offset, once.
verdict=$(ns sh -c 'cat /var/lib/sluice/output/upper/*.jsonl 2>/dev/null' | exactly_once) ||
  fail "the job's output across the failover is not exactly once: $verdict"
log "killed $lunit ($leader): $(ctl status | awk '/LEADER/ { print $2 }') leads after $took s," \
    "the job commits again after $resumed s; output $verdict;" \
    "$lunit restarted by systemd (NRestarts=1, now $(status_text "$lunit"))"

# ---- systemctl reload: the log level, same process.
if [ "$NOTIFY" = 1 ]; then
pid=$(show MainPID sluice-workerd@1)
ns sed -i 's/^log-level = info/log-level = debug/' /etc/sluice/workerd-1.conf
cursor=$(ns journalctl -u sluice-workerd@1 -n 0 --show-cursor --no-pager | sed -n 's/^-- cursor: //p')
ns systemctl reload sluice-workerd@1 || fail "systemctl reload sluice-workerd@1"
debug_logged() { ns journalctl -u sluice-workerd@1 --after-cursor "$cursor" --no-pager | grep -qi debug; }
wait_for 15 "debug lines in the journal after the reload" debug_logged
[ "$(show MainPID sluice-workerd@1)" = "$pid" ] && [ "$(show ActiveState sluice-workerd@1)" = active ] ||
  fail "reload did not keep the worker running in the same process"
log "reload: sluice-workerd@1 (pid $pid) logs at debug, not restarted"
fi

# ---- A config error: failed at once, not restarted.
if ns systemctl start sluice-workerd@3 2>/dev/null && [ "$NOTIFY" = 1 ]; then
  fail "a bad config started"
fi
sleep 5   # > RestartSec=2s: a restart would have happened
[ "$(show ActiveState sluice-workerd@3)" = failed ] && [ "$(show NRestarts sluice-workerd@3)" = 0 ] &&
  [ "$(show ExecMainStatus sluice-workerd@3)" = 2 ] ||
  fail "sluice-workerd@3: $(show ActiveState sluice-workerd@3), NRestarts=$(show NRestarts sluice-workerd@3), status $(show ExecMainStatus sluice-workerd@3)"
log "config error: sluice-workerd@3 failed with status 2, NRestarts=0:" \
    "$(ns journalctl -u sluice-workerd@3 --no-pager -o cat | grep -m1 'error')"

# ---- sluicectl with no flags finds the cluster through /etc/sluice/sluicectl.conf.
if [ "$NOTIFY" = 1 ]; then
  ns sluicectl status >"$WORK/ctl.log" 2>&1 || true
  grep -q 'LEADER' "$WORK/ctl.log" && [ "$(grep -c '^worker ' "$WORK/ctl.log")" = 2 ] ||
    fail "sluicectl status (no flags) did not find the cluster through /etc/sluice/sluicectl.conf: $(cat "$WORK/ctl.log")"
  log "sluicectl status with no flags: the leader and 2 workers, through /etc/sluice/sluicectl.conf"
fi

# ---- systemctl stop, everything, cleanly.
t=$(date +%s.%N)
ns systemctl stop $WORKERS $DRIVERS
for u in $WORKERS $DRIVERS; do
  [ "$(show ActiveState "$u")" = inactive ] && [ "$(show Result "$u")" = success ] ||
    fail "$u after stop: $(show ActiveState "$u"), result $(show Result "$u")"
done
log "stopped 5 units cleanly in $(since "$t") s"


# ---- Purge while a daemon runs: stopped, its files and data gone, the user kept.
# (--no-block: alone of its group of 3, this driver cannot serve, so would not be ready.)
ns systemctl start --no-block sluice-driverd@1
running() { [ "$(show MainPID sluice-driverd@1)" != 0 ]; }
wait_for 10 "sluice-driverd@1 to run" running
ns systemctl enable -q sluice-workerd@1
ns dpkg --purge sluice >"$WORK/purge.log" 2>&1 || { cat "$WORK/purge.log"; fail "dpkg --purge"; }
[ "$(show ActiveState sluice-driverd@1)" = inactive ] || fail "sluice-driverd@1 runs after purge"
# (/etc/sluice itself stays: it holds the test's own driverd-N.conf, which
# are the operator's files, not the package's.)
for f in /etc/sluice/driverd.conf /var/lib/sluice /var/log/sluice /usr/sbin/driverd \
         /lib/systemd/system/sluice-driverd@.service \
         /etc/systemd/system/multi-user.target.wants/sluice-workerd@1.service; do
  ! ns test -e "$f" || fail "$f left after purge"
done
ns getent passwd sluice >/dev/null || fail "purge removed the sluice user"
log "dpkg --purge: the running driver stopped; its files, data and enablement gone; user kept"
echo "PASS: under systemd in $(since "$T0") s"
