#!/usr/bin/env bash
# Sluice's demo: installs what is missing, builds, starts a local cluster of
# real processes on loopback (ZooKeeper, 3 driverd, 2 workerd, the Kafka mock
# broker), shows it with sluicectl, declares a Kafka source and a generator
# source, runs a job that filters the generator's events into files, and
# runs a failover drill with sluicectl drill (kill -9 of the leader, then of
# a worker), which prints its measurements and a verdict. Every connection is
# mutual TLS, with certificates scripts/gen-certs.sh makes for the demo.
# Everything stops when the demo ends; pass --keep to leave the cluster up
# until Ctrl-C, with its status page (the address is printed) and
# `sluicectl watch` to look at it.
set -euo pipefail
cd "$(dirname "$0")/.."
KEEP=0
[ "${1:-}" = "--keep" ] && KEEP=1

scripts/setup.sh
echo "== building"
scripts/build.sh driverd workerd sluicectl sluice-local-cluster kafka-mock kafka-tool >/dev/null
BUILD_DIR=${SLUICE_BUILD_DIR:-build}
BIN="$PWD/$BUILD_DIR"
SLUICECTL="$BIN/cmd/sluicectl/sluicectl"

DEMO_DIR=$(mktemp -d /tmp/sluice-demo-XXXXXX)
CLUSTER_PID=""
cleanup() {
  if [ -n "$CLUSTER_PID" ] && kill -0 "$CLUSTER_PID" 2>/dev/null; then
    kill -TERM "$CLUSTER_PID" 2>/dev/null || true
    wait "$CLUSTER_PID" 2>/dev/null || true
  fi
  echo "== stopped; logs are in $DEMO_DIR"
}
trap cleanup EXIT

echo "== scripts/gen-certs.sh: a development CA and a certificate per process kind and per role;"
echo "   every connection is mutual TLS, and a caller may do what its certificate's role allows"
scripts/gen-certs.sh -d "$DEMO_DIR/certs" driver:driver worker:worker admin:admin viewer:viewer \
  client:admin+driver | sed 's/^/   /'
# The cluster's daemons use driver.pem and worker.pem; sluicectl uses admin.pem.
export SLUICE_TEST_CERTS="$DEMO_DIR/certs"
cat >"$DEMO_DIR/sluicectl.conf" <<EOF
tls-cert = $DEMO_DIR/certs/admin.pem
tls-key = $DEMO_DIR/certs/admin.key
tls-ca = $DEMO_DIR/certs/ca.pem
EOF
export SLUICECTL_CONFIG="$DEMO_DIR/sluicectl.conf"

echo
echo "== starting ZooKeeper, the Kafka mock, 3 drivers and 2 workers in $DEMO_DIR"
"$BIN/test/harness/sluice-local-cluster" --dir "$DEMO_DIR" --drivers 3 --workers 2 --restart-exited --http \
  --kafka-topic events:8 --ready-file "$DEMO_DIR/cluster.env" >"$DEMO_DIR/cluster.log" 2>&1 &
CLUSTER_PID=$!
for _ in $(seq 1 600); do
  [ -f "$DEMO_DIR/cluster.env" ] && break
  if ! kill -0 "$CLUSTER_PID" 2>/dev/null; then
    echo "demo: the cluster did not start:" >&2
    cat "$DEMO_DIR/cluster.log" >&2
    exit 1
  fi
  sleep 0.1
done
# shellcheck disable=SC1091
source "$DEMO_DIR/cluster.env"
echo "ZooKeeper:  $ZK"
echo "Kafka mock: $KAFKA"
PAGES=""
for a in ${DRIVERS_HTTP//,/ }; do PAGES="$PAGES http://$a/"; done
echo "Status page (every driver serves it; a standby's links to the leader's):$PAGES"
echo "Metrics:    http://<driver or worker>/metrics (workers: ${WORKERS_HTTP//,/ })"

echo
echo "== ZooKeeper answers (srvr):"
ZK_PORT=${ZK##*:}
exec 3<>"/dev/tcp/127.0.0.1/$ZK_PORT"
printf 'srvr' >&3
grep -E "^(Zookeeper version|Mode)" <&3 || true
exec 3>&-

echo
echo "== sluicectl --coordinator $COORDINATOR status"
"$SLUICECTL" --coordinator "$COORDINATOR" status

echo
echo "== 10,000 JSON events of 600 bytes into the Kafka mock's topic 'events' (8 partitions),"
echo "   {\"id\":N,\"g\":N%10,\"pad\":...}; every 997th is not JSON"
"$BIN/test/tools/kafka-tool" produce --brokers "$KAFKA" --topic events --count 10000 --size 600 --json \
  --malformed-every 997

echo
echo "== two sources: the Kafka topic, and a generator of 4 partitions x 5,000 events/s"
"$SLUICECTL" --coordinator "$COORDINATOR" source add events --kind kafka --brokers "$KAFKA" --topic events
"$SLUICECTL" --coordinator "$COORDINATOR" source add clicks --kind generator --partitions 4 --rate 5000
sleep 2
echo "== sluicectl sources: receivers on both workers cut 200 ms blocks, reported to the leader"
"$SLUICECTL" --coordinator "$COORDINATOR" sources

echo
echo "== a job: parse the generator's JSON events, keep the large values, project, write files"
echo "   (under $DEMO_DIR: the cluster's output-dirs; a file sink elsewhere is refused at submit)"
cat >"$DEMO_DIR/big-values.yaml" <<EOF
name: big-values
batch_interval: 1s
sources: [clicks]
operators:
  - parse: {format: json}
  - filter: "v > 900000"
  - project: {fields: [id, key, v]}
sink:
  file: {path: $DEMO_DIR/out}
EOF
cat "$DEMO_DIR/big-values.yaml"
echo "== sluicectl submit (returns once the job is committed in the replicated WAL)"
"$SLUICECTL" --coordinator "$COORDINATOR" submit "$DEMO_DIR/big-values.yaml"

echo
echo "== a second job reads the Kafka topic: group 7 only; malformed events become dead letters"
cat >"$DEMO_DIR/group-7.yaml" <<EOF
name: group-7
sources: [events]
operators:
  - parse: {format: json}
  - filter: "g == 7"
  - project: {fields: [id, g]}
sink:
  file: {path: $DEMO_DIR/group-7}
EOF
"$SLUICECTL" --coordinator "$COORDINATOR" submit "$DEMO_DIR/group-7.yaml"
echo "== and a keyed job on the same topic: a running count of the events per group g — a shuffle"
echo "   between the workers, the state in their RocksDB, each batch's change copied to the other worker"
cat >"$DEMO_DIR/per-group.yaml" <<EOF
name: per-group
sources: [events]
reduce_partitions: 2
operators:
  - parse: {format: json}
  - key_by: g
  - update_state: {running: [{fn: count, as: events}]}
sink:
  file: {path: $DEMO_DIR/per-group}
EOF
"$SLUICECTL" --coordinator "$COORDINATOR" submit "$DEMO_DIR/per-group.yaml"
sleep 3
"$SLUICECTL" --coordinator "$COORDINATOR" list
echo "== a viewer's certificate may look but not act:"
"$SLUICECTL" --coordinator "$COORDINATOR" --tls-cert "$DEMO_DIR/certs/viewer.pem" \
  --tls-key "$DEMO_DIR/certs/viewer.key" stop per-group 2>&1 | sed 's/^/   /' || true
echo "output lines: $(cat "$DEMO_DIR"/group-7/*.jsonl | wc -l) (1,000 events have g == 7)," \
  "dead letters: $(cat "$DEMO_DIR"/group-7/dead-letters/*.jsonl | wc -l), e.g.:"
head -n 1 "$(ls "$DEMO_DIR"/group-7/dead-letters/*.jsonl | head -n 1)" | cut -c1-150

echo
echo "== failover drill: sluicectl drill kills the leader (kill -9), then a worker, while its own probe"
echo "   (a generator source and two jobs) runs beside the demo's jobs; it measures how soon every job"
echo "   commits again, checks the probe's output is exactly once, and prints a verdict (docs/drills.md)."
echo "   sluice-local-cluster --restart-exited starts again what the drill killed, as systemd would."
"$SLUICECTL" --coordinator "$COORDINATOR" drill --fault leader-kill,worker-kill --interval 8s \
  --partitions 2 --rate 1000 --output "$DEMO_DIR/drill" || echo "demo: the drill failed (exit $?)"

echo
echo "== the demo's jobs went on through both faults: batches committed, one file per batch and partition"
"$SLUICECTL" --coordinator "$COORDINATOR" --timeout-ms 1000 list 2>&1 | grep -v "^sluicectl: driver at" || true
ls "$DEMO_DIR/out" | tail -n 2
echo "lines written in all: $(cat "$DEMO_DIR"/out/*.jsonl | wc -l)"
echo "== sluicectl describe: the job's last batches, with scheduling delay, processing time, total delay"
"$SLUICECTL" --coordinator "$COORDINATOR" --timeout-ms 1000 describe big-values 2>&1 | grep -v "^sluicectl: driver at" | tail -n 6 || true
echo
echo "== the keyed job after both faults: each group's running total (1,000 events, less the"
echo "   malformed ones), and its state as sluicectl describe shows it"
cat "$DEMO_DIR"/per-group/*.jsonl | sed -E 's/.*"key":\[([0-9]+)\],"events":([0-9]+).*/\1 \2/' |
  sort -k1,1n -k2,2n | awk '{last[$1] = $2} END {for (g in last) printf "g=%s: %s\n", g, last[g]}' | sort -t= -k2,2n | paste -sd' '
"$SLUICECTL" --coordinator "$COORDINATOR" --timeout-ms 1000 describe per-group 2>&1 | grep -E "^  (events|state):" || true

if [ "$KEEP" = 1 ]; then
  echo
  echo "== the cluster stays up; Ctrl-C stops it. Look at it:"
  echo "   status page:$PAGES"
  echo "   $SLUICECTL --coordinator $COORDINATOR watch"
  wait "$CLUSTER_PID"
fi
