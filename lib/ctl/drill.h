// Drill: sluicectl drill, a failover drill on a running cluster — faults
// applied in turn (leader kill/term/pause, worker kill/pause, the pause of
// the leader's ZooKeeper server), the time each
// takes to heal measured, exactly-once checked on a probe's output, and a
// PASS/FAIL verdict against fixed targets (docs/drills.md).
//
//   sluicectl [--coordinator zookeeper://...] drill --fault F[,F...] [--rounds N]
//       [--interval 10s] [--rate EV_PER_S] [--partitions P] [--batch-interval 1s]
//       [--output DIR] [--json] [--keep] [--rpc]
//
// Module sluice::ctl owns it. The pure parts are here, where the unit test
// reaches them: the --fault grammar, the targets, the verdict, the
// exactly-once counting and the report's two renderings. RunDrill
// (drill_run.cc) is the part that talks to the cluster.
//
// Pure functions and plain data: thread-compatible.
#pragma once

#include <chrono>
#include <cstdint>
#include <iosfwd>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "lib/common/clock.h"
#include "lib/common/status.h"

namespace sluice::rpc {
class ChannelCache;
struct RpcOptions;
}

namespace sluice::ctl {

enum class FaultKind { kLeaderKill, kLeaderTerm, kLeaderPause, kWorkerKill, kWorkerPause, kZkServerLoss };

// One item of --fault.
struct FaultSpec {
  FaultKind kind = FaultKind::kLeaderKill;
  std::string worker_id;               // worker-kill:ID; "" lets the drill choose
  std::chrono::milliseconds pause{0};  // the pauses and zk-server-loss: SIGSTOP, SIGCONT after this
  std::string text;                    // as written, for the report

  bool on_leader() const {
    return kind == FaultKind::kLeaderKill || kind == FaultKind::kLeaderTerm || kind == FaultKind::kLeaderPause;
  }
  // Whether a newer leader is looked for (NEW LEADER): the leader faults, and
  // zk-server-loss, which the leader may keep its term through or not.
  bool measures_leader() const { return on_leader() || kind == FaultKind::kZkServerLoss; }
};

inline constexpr std::chrono::milliseconds kDefaultPause{6000};

// "500ms", "6s", "2m", or a number of milliseconds; positive, at most an hour.
// INVALID_ARGUMENT naming `what`.
[[nodiscard]] Result<std::chrono::milliseconds> ParseDuration(std::string_view text, std::string_view what);

// "leader-kill,worker-pause:3s,worker-kill:worker-2" -> the faults in order.
// INVALID_ARGUMENT naming the item and listing the kinds.
[[nodiscard]] Result<std::vector<FaultSpec>> ParseFaults(std::string_view list);

// The numbers the targets are made of: T, the ZooKeeper session timeout, and
// B, the probe jobs' batch interval; and the ZooKeeper servers the
// coordinator's connect string names (does the ensemble keep a quorum
// without one of them?).
struct DrillTimes {
  std::chrono::milliseconds session_timeout{10'000};
  std::chrono::milliseconds batch_interval{1000};
  int zk_servers = 1;
};

// Whether an ensemble of `servers` keeps its quorum with one of them down.
inline bool KeepsQuorumWithoutOne(int servers) { return servers >= 3; }

// Whether pausing a ZooKeeper server of `mode` ("leader", "follower", ...;
// "" if unknown) in an ensemble of `servers` stops ZooKeeper as a whole: too
// few servers left for a quorum, or the paused one leads the ensemble (every
// session's clock is the leader's: past T, it expires them all on resuming,
// even those its followers would have kept; docs/drills.md).
inline bool ZkLossIsOutage(int servers, std::string_view mode) {
  return !KeepsQuorumWithoutOne(servers) || mode == "leader" || mode == "standalone";
}
// zk-server-loss's target: T + 2 s + 2B, plus the pause if it is an outage.
std::chrono::milliseconds ZkServerLossTarget(const FaultSpec& fault, const DrillTimes& times, bool outage);

// How soon after `fault` the next batch of every job must commit:
//   leader-kill                  T + 2 s + 2B  (the session expires, a standby leads)
//   leader-term                  1 s + 2B      (the leader hands over at once)
//   leader-pause longer than T   as a kill
//   leader-pause up to T         the pause + 2B (the leader keeps its session)
//   worker-kill, worker-pause    T + 2B        (its tasks move once it is gone)
//   zk-server-loss, 3+ servers   T + 2 s + 2B  (the sessions on it move; a
//                                               leader may lose its term)
//   zk-server-loss, 1-2 servers  the pause + T + 2 s + 2B (an outage; as is
//                                the pause of the ensemble's leader: the drill
//                                asks the server, ZkLossIsOutage)
std::chrono::milliseconds TargetFor(const FaultSpec& fault, const DrillTimes& times);

// What one fault did, as measured.
struct FaultResult {
  FaultSpec fault;
  int64_t at_ms = 0;        // since the drill's start
  int64_t target_ms = 0;
  // zk-server-loss: the server (ip:port) and its mode before the pause
  // ("leader", "follower", "standalone"; "" if it did not say).
  std::string zk_server, zk_mode;
  std::string victim;       // the daemon's id
  std::string delivery;     // "SIGKILL to pid 123", "Drill RPC to 10.0.0.5:7100"
  std::string error;        // the fault could not be applied: why
  // Not applied, and not a failure: its target is not on this host (a
  // zk-server-loss whose server runs elsewhere). Why.
  std::string skipped;
  // Leader faults: from the fault to a serving leader of a newer epoch
  // (none for a pause the leader rode out).
  std::optional<int64_t> new_leader_ms;
  // Per probe job: from the fault to its next committed batch (none: not seen).
  std::vector<std::pair<std::string, std::optional<int64_t>>> next_commit_ms;
  int64_t reruns = 0;              // task attempts beyond a batch's tasks
  int64_t blocks_fetched = 0;      // in the batches committed until the next fault
  int64_t blocks_recomputed = 0;
  std::string note;                // e.g. that a killed daemon is still down
};

// PASS if the fault was applied and every job's next commit came within the
// target; a skipped fault passes (it fails nothing, and says so).
bool FaultPasses(const FaultResult& r);
// "PASS", "FAIL" or "SKIPPED".
std::string_view FaultVerdict(const FaultResult& r);

// The exactly-once check of the ids job: every id "p-o" with o below the
// job's committed position of partition p.
struct IdCheck {
  int64_t expected = 0;
  int64_t lost = 0;        // expected, found nowhere
  int64_t duplicated = 0;  // found more than once (each extra copy counts)
  int64_t beyond = 0;      // at or past the position: batches not committed (yet)
  std::vector<std::string> examples;  // a few lost or duplicated ids
  bool ok() const { return lost == 0 && duplicated == 0; }
};

// `positions`: partition -> committed next offset; `seen`: every (p, o) read
// from the output, with repeats.
IdCheck CheckIds(const std::map<int32_t, int64_t>& positions, const std::vector<std::pair<int32_t, int64_t>>& seen);

// The counts job: each key's value in the newest committed batch that
// emitted it, against the events of that key among the committed offsets.
struct CountCheck {
  int64_t keys = 0;   // keys expected
  int64_t wrong = 0;  // missing, or a different count
  int64_t events = 0; // events the expected counts add up to
  std::vector<std::string> examples;
  bool ok() const { return wrong == 0; }
};

CountCheck CheckCounts(const std::map<std::string, int64_t>& expected, const std::map<std::string, int64_t>& got);

// Lines of the probe's output files: {"id":"0001-000000000042"} and
// {"key":["k00000003"],"events":1244}; nullopt for anything else.
std::optional<std::pair<int32_t, int64_t>> ParseIdLine(std::string_view line);
std::optional<std::pair<std::string, int64_t>> ParseCountLine(std::string_view line);
// The batch of a file sink's file "<job>-batch-<N>-part-<task>.<ext>".
std::optional<int64_t> BatchOfFile(std::string_view name);

struct DrillReport {
  std::string name;  // drill-<unix seconds>: the source and the jobs' prefix
  DrillTimes times;
  std::vector<FaultResult> faults;
  IdCheck ids;
  CountCheck counts;
  std::map<std::string, int64_t> longest_gap_ms;       // per job: longest time without a commit
  std::map<std::string, int64_t> last_total_delay_ms;  // per job: the last batches' worst total delay
  std::vector<std::string> problems;                   // anything else that fails the drill
  std::string output_dir;

  bool Pass() const;
  int Skipped() const;  // faults skipped
};

void PrintReport(const DrillReport& report, std::ostream& out);
std::string ReportJson(const DrillReport& report);

// sluicectl drill's flags.
// Where the probe jobs write by default: under the packaged output-dirs
// (deploy/config); the workers refuse a directory outside their output-dirs.
inline constexpr const char* kDefaultDrillOutput = "/var/lib/sluice/output";

struct DrillOptions {
  std::string faults;
  int rounds = 0;  // 0: one per fault listed
  std::string interval = "10s";
  int64_t rate = 2000;  // events/s over all partitions
  int partitions = 4;
  std::string batch_interval = "1s";
  std::string output;  // default kDefaultDrillOutput/<name>
  std::string session_timeout;  // when the drivers do not say
  bool json = false;
  bool keep = false;
  bool rpc = false;
};

// The flags' values, checked: INVALID_ARGUMENT naming the flag (exit code 2,
// before anything is asked of the cluster).
struct CheckedDrillOptions {
  std::vector<FaultSpec> faults;
  std::chrono::milliseconds interval{0};
  std::chrono::milliseconds batch_interval{0};
  std::optional<std::chrono::milliseconds> session_timeout;
};
[[nodiscard]] Result<CheckedDrillOptions> CheckDrillOptions(const DrillOptions& options);

// Runs the drill on the cluster whose drivers are at `drivers`; prints the
// report to `out`, progress and errors to `err`. Returns the exit code: 0 on
// PASS, 1 on FAIL (or an unreachable cluster), 2 on bad usage.
// `transport` is sluicectl's (TLS identity and all).
int RunDrill(const DrillOptions& options, const std::vector<std::string>& drivers, const rpc::RpcOptions& transport,
             Clock* clock, std::ostream& out, std::ostream& err);

}  // namespace sluice::ctl
