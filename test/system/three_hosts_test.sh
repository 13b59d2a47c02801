#!/usr/bin/env bash
# The three-host example configs (deploy/three-hosts/, shipped in
# /usr/share/doc/sluice/examples/three-hosts/) run a cluster: three network
# namespaces as hosts 192.0.2.11, .12 and .13 on one bridge, each running a
# ZooKeeper server (zoo.cfg), a driver (hostN/driverd.conf) and a worker
# (hostN/workerd-1.conf) with exactly those files. Only data directories move
# to a scratch directory: --data-dir on the command line (which wins over the
# file) and zoo.cfg's dataDir. Then: one leader and three workers, all at their
# advertised addresses, seen by `sluicectl --config sluicectl.conf status`; a
# job writes; kill -9 of the leader: a standby leads, the job writes on.
#   three_hosts_test.sh SOURCE_DIR BUILD_DIR
# Exits 77 (skipped), saying why, without root or `ip`.
set -euo pipefail
SRC=$1 BUILD=$2
# shellcheck source=test/system/lib.sh
source "$SRC/test/system/lib.sh"
CONF=$SRC/deploy/three-hosts
T0=$(date +%s.%N)
since() { awk -v a="$1" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }'; }
log() { echo "[$(since "$T0") s] $*"; }
skip() { echo "SKIP: $*"; exit 77; }
[ "$(id -u)" = 0 ] || skip "needs root (network namespaces)"
export PATH=$PATH:/usr/sbin:/sbin
command -v ip >/dev/null || skip "no ip (iproute2)"
[ -f /usr/share/java/zookeeper.jar ] || skip "no ZooKeeper (the zookeeper package)"

P=sl3h$$
WORK=$(mktemp -d /tmp/sluice-3hosts.XXXXXX)
PIDS=()
cleanup() {
  local rc=$?
  # Every process in the hosts' namespaces (the daemons are children of the
  # subshells started with &), then the namespaces.
  for ns in "$P-1" "$P-2" "$P-3"; do
    ip netns pids "$ns" 2>/dev/null | xargs -r kill -9 2>/dev/null || true
  done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  for ns in "$P-1" "$P-2" "$P-3" "$P-hub"; do ip netns del "$ns" 2>/dev/null || true; done
  if [ "$rc" != 0 ] && [ "$rc" != 77 ]; then echo "kept $WORK (logs)"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
wait_for() {  # wait_for SECONDS WHAT COMMAND...
  local deadline=$(( $(date +%s) + $1 )) what=$2
  shift 2
  until "$@" >/dev/null 2>&1; do
    [ "$(date +%s)" -lt "$deadline" ] || fail "waited for $what"
    sleep 0.3
  done
}

# ---- Hosts: namespaces on a bridge in its own namespace.
ip netns add "$P-hub"
ip -n "$P-hub" link add br0 type bridge
ip -n "$P-hub" link set br0 up
for n in 1 2 3; do
  ip netns add "$P-$n"
  ip link add "${P}v$n" type veth peer name eth0 netns "$P-$n"
  ip link set "${P}v$n" netns "$P-hub"
  ip -n "$P-hub" link set "${P}v$n" master br0 up
  ip -n "$P-$n" addr add "192.0.2.1$n/24" dev eth0
  ip -n "$P-$n" link set eth0 up
  ip -n "$P-$n" link set lo up
done
at() { local n=$1; shift; ip netns exec "$P-$n" "$@"; }
log "hosts 192.0.2.11-13 up"

# ---- ZooKeeper: zoo.cfg as shipped, its dataDir in the scratch directory.
for n in 1 2 3; do
  mkdir -p "$WORK/zk$n"
  echo "$n" >"$WORK/zk$n/myid"
  sed "s|^dataDir=.*|dataDir=$WORK/zk$n|" "$CONF/zoo.cfg" >"$WORK/zoo$n.cfg"
  at "$n" java -Xmx256m -XX:+UseSerialGC -Dzookeeper.root.logger=INFO,CONSOLE \
    -Dlog4j.configuration=file:/etc/zookeeper/conf/log4j.properties \
    -cp /usr/share/java/zookeeper.jar:/usr/share/java/slf4j-log4j12.jar:/usr/share/java/log4j-1.2.jar \
    org.apache.zookeeper.server.quorum.QuorumPeerMain "$WORK/zoo$n.cfg" >"$WORK/zk$n.log" 2>&1 &
  PIDS+=($!)
done
zk_quorum() {
  at 1 bash -c 'exec 3<>/dev/tcp/192.0.2.12/2181 && echo stat >&3 && grep -qE "Mode: (leader|follower)" <&3'
}
wait_for 60 "the ZooKeeper ensemble" zk_quorum
log "ZooKeeper ensemble formed"

# ---- A driver and a worker per host, with the shipped files; the
# certificates (the files name /etc/sluice/tls) from gen-certs.sh, each with
# its host's address.
for n in 1 2 3; do
  "$SRC/scripts/gen-certs.sh" -d "$WORK/tls" --host "192.0.2.1$n" "driver-$n:driver" "worker-$n:worker" >/dev/null
done
"$SRC/scripts/gen-certs.sh" -d "$WORK/tls" admin:admin >/dev/null
tls() { echo --tls-cert "$WORK/tls/$1.pem" --tls-key "$WORK/tls/$1.key" --tls-ca "$WORK/tls/ca.pem"; }
for n in 1 2 3; do
  # shellcheck disable=SC2046
  at "$n" "$BUILD/cmd/driverd/driverd" --config "$CONF/host$n/driverd.conf" $(tls "driver-$n") \
    --data-dir "$WORK/data$n/driver-$n" --output-dirs "$WORK/out" >"$WORK/driver$n.log" 2>&1 &
  PIDS+=($!)
done
for n in 1 2 3; do
  # shellcheck disable=SC2046
  at "$n" "$BUILD/cmd/workerd/workerd" --config "$CONF/host$n/workerd-1.conf" $(tls "worker-$n") \
    --data-dir "$WORK/data$n/worker-$n" --output-dirs "$WORK/out" >"$WORK/worker$n.log" 2>&1 &
  PIDS+=($!)
done
# shellcheck disable=SC2046
ctl() { at 1 "$BUILD/cmd/sluicectl/sluicectl" --config "$CONF/sluicectl.conf" $(tls admin) "$@"; }
cluster_up() {
  local s
  s=$(ctl status) || return 1
  [ "$(grep -c LEADER <<<"$s")" = 1 ] && grep -q 'LEADER.*workers=3' <<<"$s" &&
    for n in 1 2 3; do
      grep -qE "^driver +driver-$n +192\.0\.2\.1$n:7100 " <<<"$s" &&
        grep -qE "^worker +worker-$n +192\.0\.2\.1$n:7200 " <<<"$s" || return 1
    done
}
wait_for 60 "3 drivers, one leading, and 3 workers at their advertised addresses" cluster_up
log "cluster up:"
ctl status

# ---- A job, then kill -9 of the leader.
mkdir -p "$WORK/out"
chmod 777 "$WORK/out"
cat >"$WORK/job.yaml" <<EOF
name: three-hosts
batch_interval: 500ms
sources:
  - {name: gen, kind: generator, partitions: 3, rate: 100}
operators:
  - parse: {format: json}
  - project: {fields: [id, key]}
sink:
  file: {path: $WORK/out, format: jsonl}
EOF
ctl submit "$WORK/job.yaml" >/dev/null || fail "sluicectl submit"
lines() { cat "$WORK"/out/*.jsonl 2>/dev/null | wc -l; }
has_lines() { [ "$(lines)" -gt "${1:-0}" ]; }
wait_for 30 "the job's output" has_lines
read -r leader leader_pid < <(ctl status | awk '/LEADER/ { print $2, $5 }')
n=${leader#driver-}
before=$(lines)
t=$(date +%s.%N)
kill -9 "$leader_pid"   # the pid sluicectl reports: the daemon itself
new_leader() { local l; l=$(ctl status 2>/dev/null | awk '/LEADER/ { print $2 }'); [ -n "$l" ] && [ "$l" != "$leader" ]; }
wait_for 60 "a standby to lead after kill -9 of $leader" new_leader
took=$(since "$t")
wait_for 30 "the job to write again" has_lines "$before"
resumed=$(since "$t")
# Liveness: the next batch committed within T + 2 s + 2B (the configs' T =
# 10 s, B = 0.5 s: 13 s), and 1 s for this script's polling.
awk -v r="$resumed" 'BEGIN { exit !(r <= 14.0) }' ||
  fail "the job wrote again only $resumed s after the leader's kill (bound 14 s)"
# Safety: every event below each partition's highest output offset, once.
verdict=$(cat "$WORK"/out/*.jsonl 2>/dev/null | exactly_once) ||
  fail "the job's output across the failover is not exactly once: $verdict"
log "kill -9 of $leader (host $n): $(ctl status | awk '/LEADER/ { print $2 }') leads after $took s;" \
    "the job commits again after $resumed s; output $verdict"
echo "PASS: the three-host example configs in $(since "$T0") s"
