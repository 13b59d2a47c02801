// Watch: `sluicectl watch [JOB]`, a live view of the cluster and its jobs that
// redraws in place, like top (docs/operations.md "Watching a cluster").
//
// Module sluice::ctl owns it. Every interval a poll asks the serving leader
// for its status and the jobs; RenderWatch turns what it found, and what
// WatchHistory remembers of earlier polls (the leader changes seen and how
// long no leader answered), into lines. RunWatch draws them: on a terminal
// with ANSI escapes on the alternate screen, truncated to the terminal's size
// (TIOCGWINSZ), until 'q', Ctrl-C (SIGINT), SIGTERM or SIGHUP, restoring the
// screen and the cursor; elsewhere as plain text, one snapshot per interval
// (or one, with `once`).
//
// Thread-compatible; RunWatch installs signal handlers for its duration.
#pragma once

#include <cstdint>
#include <functional>
#include <iosfwd>
#include <string>
#include <vector>

#include "lib/common/clock.h"
#include "proto/driver.pb.h"

namespace sluice::ctl {

struct WatchOptions {
  std::string job;          // "" for every job
  double interval_s = 1.0;  // between polls
  bool once = false;        // one snapshot, then exit
  bool terminal = false;    // draw in place with ANSI escapes (stdout is a tty)
};

// What one poll found.
struct WatchSnapshot {
  int64_t taken_unix_ms = 0;
  bool has_leader = false;
  std::string leader_id, leader_address;
  int64_t epoch = 0;
  int drivers = 0, workers = 0;
  std::string error;  // why there is no leader, or why the jobs could not be read
  std::vector<proto::JobInfo> jobs;
};

// One leader change seen while watching.
struct WatchFailover {
  int64_t at_unix_ms = 0;    // when the new leader first answered
  std::string from, to;      // leader ids ("" if none was seen before)
  int64_t epoch = 0;         // the new leader's
  int64_t no_leader_ms = 0;  // from the old leader's last answer to the new one's first
};

// What the polls so far have seen.
class WatchHistory {
 public:
  static constexpr size_t kMaxFailovers = 5;

  void Observe(const WatchSnapshot& s);
  // The leader changes seen, oldest first (the last kMaxFailovers).
  const std::vector<WatchFailover>& failovers() const { return failovers_; }
  // Since when no leader has answered (0 while one does).
  int64_t no_leader_since_unix_ms() const { return has_leader_ ? 0 : last_leader_unix_ms_; }
  const std::string& last_leader() const { return leader_id_; }

 private:
  bool has_leader_ = false;
  std::string leader_id_;
  int64_t epoch_ = 0;
  int64_t last_leader_unix_ms_ = 0;  // the last poll a leader answered (or the first poll)
  bool first_ = true;
  std::vector<WatchFailover> failovers_;
};

// The view of `s`: a header (time, leader, epoch, drivers, workers), a block
// per job (state, batch in flight with a progress bar, input rate, rate
// limit, the last batch's delays, records in and out), then the failovers
// seen. Lines are cut to `width` columns (0: not cut).
std::vector<std::string> RenderWatch(const WatchOptions& options, const WatchSnapshot& s, const WatchHistory& history,
                                     int width);

// "[#####.....]": `done` of `total` as a bar `width` characters wide.
std::string ProgressBar(int64_t done, int64_t total, int width);

// Polls with `poll` every interval and draws; returns the exit code (0; with
// `once`, 1 if no leader answered). Writes to `out` (stdout's fd 1 for the
// terminal size), reads 'q' from stdin when it is a terminal.
int RunWatch(const WatchOptions& options, const std::function<WatchSnapshot()>& poll, std::ostream& out);

}  // namespace sluice::ctl
