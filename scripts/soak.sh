#!/usr/bin/env bash
# The long failover drill: a local cluster (ZooKeeper, 3 driverd, 3 workerd,
# daemons restarted when they exit, as systemd would) and `sluicectl drill`
# with a fault every 10 s for 5 minutes — leader kill -9, worker kill -9,
# leader SIGTERM, worker pause, leader pause, in turn — on a probe of 20,000
# events/s. Prints the drill's table and verdict; exits with its status.
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
"$BIN/cmd/sluicectl/sluicectl" --coordinator "$COORDINATOR" drill \
  --fault leader-kill,worker-kill,leader-term,worker-pause,leader-pause \
  --rounds "${SOAK_ROUNDS:-30}" --interval "${SOAK_INTERVAL:-10s}" --rate "${SOAK_RATE:-20000}" \
  --output "$DIR/probe" "$@"
