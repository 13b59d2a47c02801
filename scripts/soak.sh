#!/usr/bin/env bash
# The long failover drill: a local cluster (ZooKeeper, 3 driverd, 3 workerd,
# daemons restarted when they exit, as systemd would) and `sluicectl drill`
# with a fault every 10 s for 5 minutes — leader kill -9, worker kill -9,
# leader SIGTERM, worker pause, leader pause, in turn — on a probe of 20,000
# events/s. Prints the drill's table and verdict, then each daemon process's
# memory over the run (sampled every 5 s); exits with the drill's status.
# The CI runs the short version (test/integration/drill_test.cc).
#   SOAK_ROUNDS=30 SOAK_INTERVAL=10s SOAK_RATE=20000 scripts/soak.sh [more drill flags, e.g. --json]
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/build.sh driverd workerd sluicectl sluice-local-cluster >/dev/null
BIN="$PWD/${SLUICE_BUILD_DIR:-build}"
DIR=$(mktemp -d /tmp/sluice-soak-XXXXXX)
"$BIN/test/harness/sluice-local-cluster" --dir "$DIR" --drivers 3 --workers 3 --restart-exited \
  --ready-file "$DIR/cluster.env" >"$DIR/cluster.log" 2>&1 &
CLUSTER=$!
trap 'kill -TERM $CLUSTER 2>/dev/null; wait $CLUSTER 2>/dev/null; echo "logs: $DIR"' EXIT
for _ in $(seq 1 600); do
  [ -f "$DIR/cluster.env" ] && break
  kill -0 $CLUSTER 2>/dev/null || { cat "$DIR/cluster.log" >&2; exit 1; }
  sleep 0.1
done
# shellcheck disable=SC1091
source "$DIR/cluster.env"
# Every 5 s, each daemon's resident memory: "unix-time id pid kB".
sample_memory() {
  set +e  # a process that exits between pgrep and /proc is skipped, not fatal
  while true; do
    local now pid id rss
    now=$(date +%s)
    for pid in $(pgrep -f -- "--data-dir $DIR/"); do
      id=$(tr '\0' '\n' <"/proc/$pid/cmdline" 2>/dev/null | grep -A1 -x -- --id | tail -1)
      rss=$(awk '/^VmRSS/ {print $2}' "/proc/$pid/status" 2>/dev/null)
      [ -n "$id" ] && [ -n "$rss" ] && echo "$now $id $pid $rss"
    done
    sleep 5
  done >"$DIR/memory.log"
}
sample_memory &
SAMPLER=$!
trap 'kill $SAMPLER 2>/dev/null; kill -TERM $CLUSTER 2>/dev/null; wait $CLUSTER 2>/dev/null; echo "logs: $DIR"' EXIT
status=0
"$BIN/cmd/sluicectl/sluicectl" --coordinator "$COORDINATOR" drill \
  --fault leader-kill,worker-kill,leader-term,worker-pause,leader-pause \
  --rounds "${SOAK_ROUNDS:-30}" --interval "${SOAK_INTERVAL:-10s}" --rate "${SOAK_RATE:-20000}" \
  --output "$DIR/probe" "$@" || status=$?
# Per process (a restarted daemon is a new one): how long it was sampled and
# its memory first, at most and last. The longest-lived show whether memory
# stays bounded.
echo
echo "memory (resident, MB) of each daemon process:"
awk '{ key = $2 " pid " $3
       if (!(key in first)) { first[key] = $4; t0[key] = $1; order[n++] = key }
       last[key] = $4; t1[key] = $1; if ($4 > max[key]) max[key] = $4 }
     END { printf "  %-28s %8s %7s %7s %7s\n", "process", "sampled", "first", "max", "last"
           for (i = 0; i < n; i++) { k = order[i]
             printf "  %-28s %7ds %7.1f %7.1f %7.1f\n", k, t1[k] - t0[k], first[k] / 1024, max[k] / 1024, last[k] / 1024 } }' \
  "$DIR/memory.log"
exit $status
