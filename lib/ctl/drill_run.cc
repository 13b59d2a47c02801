// RunDrill: the part of sluicectl drill that talks to the cluster (drill.h).
//
// One thread does everything in a loop that polls every 100 ms: GetStatus of
// every driver (in parallel, so a paused one costs one deadline, not three)
// and DescribeJob of the probe's jobs on the serving leader; between polls it
// applies the next fault when its time has come (a pause is ended by a helper
// process, lib/common/drill.h; zk-server-loss pauses the ZooKeeper server
// process listening where the leader's session is connected, found through
// /proc: local_listener.h). Each poll closes what it can of every fault's
// measurements.
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <future>
#include <set>

#include "lib/common/config.h"
#include "lib/common/drill.h"
#include "lib/coord/coordinator.h"
#include "lib/ctl/drill.h"
#include "lib/ctl/local_listener.h"
#include "lib/ctl/zk_admin.h"
#include "lib/engine/job_file.h"
#include "lib/rpc/channel_cache.h"
#include "lib/rpc/rpc.h"
#include "lib/rpc/driver_client.h"
#include "lib/rpc/worker_client.h"
#include "lib/source/generator_source.h"

namespace sluice::ctl {
namespace {

using Ms = std::chrono::milliseconds;
namespace fs = std::filesystem;

constexpr Ms kPoll{100};
constexpr Ms kStatusDeadline{300};
constexpr Ms kDescribeDeadline{500};
constexpr int kWarmupBatches = 3;
constexpr Ms kWarmupLimit{60'000};
constexpr int kKeys = 100;
constexpr int kPayloadBytes = 128;

std::string Hostname() {
  char host[256] = {};
  return ::gethostname(host, sizeof(host) - 1) == 0 ? std::string(host) : std::string();
}

// Whether the daemon of `p` runs on this host, where its pid may be signalled:
// it says it runs on our hostname and that pid is a driverd/workerd here (a
// rebuilt binary shows as "driverd (deleted)").
bool IsLocal(const proto::ProcessInfo& p, const std::string& binary) {
  if (p.host().empty() || p.host() != Hostname() || p.pid() <= 0) return false;
  std::error_code ec;
  const fs::path exe = fs::read_symlink("/proc/" + std::to_string(p.pid()) + "/exe", ec);
  return !ec && exe.filename().string().rfind(binary, 0) == 0;
}

// The process answering at `address` now.
Result<proto::ProcessInfo> ProcessAt(rpc::ChannelCache& channels, const std::string& address, bool is_driver) {
  if (is_driver) {
    ASSIGN_OR_RETURN(proto::DriverStatus st, rpc::DriverClient(channels, address).GetStatus(kStatusDeadline));
    return st.process();
  }
  ASSIGN_OR_RETURN(proto::WorkerStatus st, rpc::WorkerClient(channels, address).GetStatus(kStatusDeadline));
  return st.process();
}

struct Observation {
  int64_t t_ms = 0;
  std::string leader_address;  // "" when no driver says it leads and serves
  proto::DriverStatus leader;
  std::map<std::string, proto::JobInfo> jobs;  // from the serving leader
};

// What a fault found when it was applied, to compare later polls with.
struct Applied {
  FaultResult result;
  int64_t epoch_before = 0;
  std::map<std::string, int64_t> committed_before;  // per job
  bool victim_gone = false;                          // killed or terminated
  // A new process answering at the victim's address (another pid or start
  // time: the membership would show the dead one's znode until its session
  // expires).
  std::optional<int64_t> back_ms;
  bool victim_is_driver = false;
  std::string victim_address;
  proto::ProcessInfo victim_process;
  int64_t last_back_check_ms = 0;
  // What a commit must exceed to count as the job's next one: committed_before,
  // or for zk-server-loss the last batch seen before its latest poll without
  // a serving leader (its leader may lose its session only once the client
  // notices, 2/3 T after the pause, and the election may flap after).
  std::map<std::string, int64_t> commit_baseline;
  // zk-server-loss: the longest stretch of polls without a serving leader
  // (and when the current one began).
  int64_t leaderless_ms = 0;
  std::optional<int64_t> leaderless_since;
  // Set when the next fault comes: what has not healed by then is not
  // measured further (a later fault's new leader is not this one's).
  bool closed = false;
};

class Runner {
 public:
  Runner(const DrillOptions& o, std::vector<std::string> drivers, const rpc::RpcOptions& transport, Clock* clock,
         std::ostream& out, std::ostream& err)
      : o_(o), probe_(transport), clock_(clock), out_(out), err_(err), start_(clock->Now()) {
    probe_.own_connections = true;
    for (std::string& d : drivers) drivers_.insert(std::move(d));
  }

  int Run();

 private:
  int64_t Elapsed() const {
    return std::chrono::duration_cast<Ms>(clock_->Now() - start_).count();
  }
  rpc::ChannelCache& Channels(const std::string& address) {
    // A channel per address, dropped when its daemon does not answer: a
    // restarted daemon is then reached at once, not after gRPC's reconnect
    // backoff.
    std::unique_ptr<rpc::ChannelCache>& c = channels_[address];
    if (!c) c = std::make_unique<rpc::ChannelCache>(probe_);
    return *c;
  }
  Observation Poll();
  void Measure(const Observation& ob);
  void SleepUntil(int64_t t_ms);
  // Polls and measures until `t_ms` (since the start), or until `done` says so.
  void PollUntil(int64_t t_ms, const std::function<bool(const Observation&)>& done = nullptr);
  void ApplyFault(const FaultSpec& fault, int worker_round);
  void Deliver(Applied& a, const proto::ProcessInfo& process, const std::string& address, bool is_driver);
  void PauseZkServer(Applied& a);
  Status SetUp();
  void Finish();
  template <typename Response, typename Call>
  Result<Response> OnLeader(Call&& call, Ms limit);

  const DrillOptions& o_;
  rpc::RpcOptions probe_;  // sluicectl's transport, on connections of their own
  Clock* const clock_;
  std::ostream& out_;
  std::ostream& err_;
  const Clock::TimePoint start_;
  std::set<std::string> drivers_;
  std::map<std::string, std::unique_ptr<rpc::ChannelCache>> channels_;
  std::vector<FaultSpec> faults_;
  Ms interval_{10'000};
  DrillTimes times_;
  std::vector<std::string> zk_hosts_;  // the coordinator's connect string, split; empty if not ZooKeeper
  std::string coordinator_;            // as the leader reports it
  std::string dir_;
  proto::SourceSpec source_;
  std::vector<std::string> jobs_;  // ids, counts
  Observation last_;
  std::vector<Applied> applied_;
  std::map<std::string, std::map<int64_t, proto::BatchSummary>> batches_;  // per job, every one seen
  std::map<std::string, int64_t> last_commit_t_, last_committed_;
  std::map<std::string, int> tasks_per_batch_;
  DrillReport report_;
};

Observation Runner::Poll() {
  Observation ob;
  std::vector<std::string> addresses(drivers_.begin(), drivers_.end());
  std::vector<std::future<Result<proto::DriverStatus>>> answers;
  for (const std::string& a : addresses) {
    rpc::ChannelCache& c = Channels(a);
    answers.push_back(std::async(std::launch::async, [&c, a] { return rpc::DriverClient(c, a).GetStatus(kStatusDeadline); }));
  }
  for (size_t i = 0; i < addresses.size(); ++i) {
    Result<proto::DriverStatus> st = answers[i].get();
    if (!st.ok()) {
      channels_.erase(addresses[i]);
      continue;
    }
    if (st->role() == proto::DRIVER_ROLE_LEADER && st->wal().serving() && st->epoch() >= ob.leader.epoch()) {
      ob.leader_address = addresses[i];
      ob.leader = *st;
    }
  }
  if (!ob.leader_address.empty()) {
    for (const proto::MemberInfo& d : ob.leader.drivers()) {
      if (!d.rpc_address().empty()) drivers_.insert(d.rpc_address());
    }
    for (const std::string& job : jobs_) {
      proto::DescribeJobRequest request;
      request.set_job_id(job);
      Result<proto::JobInfo> info =
          rpc::DriverClient(Channels(ob.leader_address), ob.leader_address).DescribeJob(request, kDescribeDeadline);
      if (info.ok()) ob.jobs[job] = *std::move(info);
    }
  }
  ob.t_ms = Elapsed();
  return ob;
}

void Runner::Measure(const Observation& ob) {
  for (const auto& [job, info] : ob.jobs) {
    for (const proto::BatchSummary& b : info.recent_batches()) batches_[job][b.batch_id()] = b;
    int64_t& last = last_committed_[job];
    if (info.last_committed_batch() > last) {
      if (last_commit_t_.count(job) != 0 && !applied_.empty()) {
        int64_t& gap = report_.longest_gap_ms[job];
        gap = std::max(gap, ob.t_ms - last_commit_t_[job]);
      }
      last = info.last_committed_batch();
      last_commit_t_[job] = ob.t_ms;
    }
  }
  for (Applied& a : applied_) {
    FaultResult& r = a.result;
    if (!r.error.empty() || !r.skipped.empty()) continue;
    // Whether a killed daemon is back counts until the end; asked twice a
    // second at most.
    if (a.victim_gone && !a.back_ms && ob.t_ms - a.last_back_check_ms >= 500) {
      a.last_back_check_ms = ob.t_ms;
      const std::string& addr = a.victim_address;
      const Result<proto::ProcessInfo> now = ProcessAt(Channels(addr), addr, a.victim_is_driver);
      if (!now.ok()) {
        channels_.erase(addr);
      } else if (now->pid() != a.victim_process.pid() ||
                 now->start_time_unix_ms() != a.victim_process.start_time_unix_ms()) {
        a.back_ms = ob.t_ms - r.at_ms;
      }
    }
    if (a.closed) continue;
    if (r.fault.kind == FaultKind::kZkServerLoss) {
      if (ob.leader_address.empty()) {
        if (!a.leaderless_since) a.leaderless_since = ob.t_ms;
        // What committed before the leader was lost is not the healing: wait
        // for a commit after it is back.
        for (auto& [job, ms] : r.next_commit_ms) {
          ms.reset();
          a.commit_baseline[job] = last_committed_[job];
        }
      } else if (a.leaderless_since) {
        a.leaderless_ms = std::max(a.leaderless_ms, ob.t_ms - *a.leaderless_since);
        a.leaderless_since.reset();
      }
    }
    if (r.fault.measures_leader() && !r.new_leader_ms && !ob.leader_address.empty() && ob.leader.epoch() > a.epoch_before) {
      r.new_leader_ms = ob.t_ms - r.at_ms;
    }
    for (auto& [job, ms] : r.next_commit_ms) {
      auto it = ob.jobs.find(job);
      if (!ms && it != ob.jobs.end() && it->second.last_committed_batch() > a.commit_baseline[job]) {
        ms = ob.t_ms - r.at_ms;
      }
    }
  }
}

void Runner::SleepUntil(int64_t t_ms) {
  const int64_t now = Elapsed();
  if (t_ms > now) clock_->SleepFor(Ms(t_ms - now));
}

void Runner::PollUntil(int64_t t_ms, const std::function<bool(const Observation&)>& done) {
  while (true) {
    const int64_t began = Elapsed();
    last_ = Poll();
    Measure(last_);
    if (done && done(last_)) return;
    if (Elapsed() >= t_ms) return;
    SleepUntil(std::min(t_ms, began + kPoll.count()));
  }
}

template <typename Response, typename Call>
Result<Response> Runner::OnLeader(Call&& call, Ms limit) {
  const int64_t until = Elapsed() + limit.count();
  Status last = absl::UnavailableError("no serving leader");
  while (Elapsed() < until) {
    std::vector<std::string> drivers(drivers_.begin(), drivers_.end());
    rpc::ChannelCache channels(probe_);
    Result<Response> r = rpc::CallLeader(channels, drivers, kStatusDeadline, call);
    if (r.ok() || !absl::IsUnavailable(r.status())) return r;
    last = r.status();
    clock_->SleepFor(Ms(300));
  }
  return last;
}

Status Runner::SetUp() {
  const int64_t now_s = clock_->UnixMillis() / 1000;
  report_.name = "drill-" + std::to_string(now_s);
  dir_ = o_.output.empty() ? std::string(kDefaultDrillOutput) + "/" + report_.name
                           : fs::absolute(o_.output).lexically_normal().string();
  report_.output_dir = dir_;
  jobs_ = {report_.name + "-ids", report_.name + "-counts"};

  // The probe's source: small events over ~100 keys, seeded by the time so
  // two drills never share a source, and known here to recompute every event.
  proto::RegisterSourceRequest reg;
  proto::SourceSpec* spec = reg.mutable_spec();
  spec->set_name(report_.name);
  spec->set_kind(proto::SOURCE_KIND_GENERATOR);
  spec->set_partitions(o_.partitions);
  spec->mutable_generator()->set_seed(static_cast<uint64_t>(now_s));
  spec->mutable_generator()->set_rate_per_partition(std::max<int64_t>(1, o_.rate / o_.partitions));
  spec->mutable_generator()->set_num_keys(kKeys);
  spec->mutable_generator()->set_payload_bytes(kPayloadBytes);
  ASSIGN_OR_RETURN(proto::RegisterSourceResponse registered,
                   OnLeader<proto::RegisterSourceResponse>(
                       [&](rpc::DriverClient& d) { return d.RegisterSource(reg, rpc::DriverClient::kRegisterSourceDeadline); },
                       Ms(20'000)));
  source_ = registered.spec();

  const std::string interval = std::to_string(times_.batch_interval.count()) + "ms";
  const std::string ids = fmt::format(
      "name: {}\nbatch_interval: {}\nsources: [{}]\noperators:\n"
      "  - parse: {{format: json}}\n  - project: {{fields: [id]}}\nsink:\n  file: {{path: {}/ids}}\n",
      jobs_[0], interval, report_.name, dir_);
  const std::string counts = fmt::format(
      "name: {}\nbatch_interval: {}\nsources: [{}]\noperators:\n"
      "  - parse: {{format: json}}\n  - key_by: key\n  - update_state: {{running: [{{fn: count, as: events}}]}}\n"
      "sink:\n  file: {{path: {}/counts}}\n",
      jobs_[1], interval, report_.name, dir_);
  for (const auto& [text, job] : {std::pair{ids, jobs_[0]}, std::pair{counts, jobs_[1]}}) {
    ASSIGN_OR_RETURN(proto::JobSpec job_spec, engine::ParseJobFile(text, "(drill job " + job + ")"));
    proto::SubmitJobRequest submit;
    *submit.mutable_spec() = job_spec;
    RETURN_IF_ERROR(OnLeader<proto::SubmitJobResponse>(
                        [&](rpc::DriverClient& d) { return d.SubmitJob(submit, rpc::DriverClient::kSubmitJobDeadline); },
                        Ms(30'000))
                        .status());
  }
  return absl::OkStatus();
}

void Runner::ApplyFault(const FaultSpec& fault, int worker_round) {
  Applied a;
  a.result.fault = fault;
  a.result.at_ms = Elapsed();
  a.result.target_ms = TargetFor(fault, times_).count();
  a.epoch_before = last_.leader.epoch();
  for (const std::string& job : jobs_) {
    a.result.next_commit_ms.emplace_back(job, std::nullopt);
    auto it = last_.jobs.find(job);
    a.committed_before[job] = it == last_.jobs.end() ? last_committed_[job] : it->second.last_committed_batch();
  }
  a.commit_baseline = a.committed_before;
  if (last_.leader_address.empty()) {
    a.result.error = "no serving leader to find the victim through";
  } else if (fault.kind == FaultKind::kZkServerLoss) {
    PauseZkServer(a);
  } else if (fault.on_leader()) {
    a.result.victim = last_.leader.process().id();
    a.victim_is_driver = true;
    Deliver(a, last_.leader.process(), last_.leader_address, true);
  } else {
    std::vector<proto::MemberInfo> workers(last_.leader.workers().begin(), last_.leader.workers().end());
    std::sort(workers.begin(), workers.end(), [](const auto& x, const auto& y) { return x.id() < y.id(); });
    const proto::MemberInfo* victim = nullptr;
    for (const proto::MemberInfo& w : workers) {
      if (w.id() == fault.worker_id) victim = &w;
    }
    if (fault.worker_id.empty() && !workers.empty()) victim = &workers[worker_round % workers.size()];
    if (victim == nullptr) {
      a.result.error = fault.worker_id.empty() ? "no live worker"
                                               : "no live worker " + fault.worker_id + " (see sluicectl status)";
    } else {
      a.result.victim = victim->id();
      rpc::ChannelCache channels(probe_);
      Result<proto::WorkerStatus> st = rpc::WorkerClient(channels, victim->rpc_address()).GetStatus(Ms(1000));
      if (!st.ok()) {
        a.result.error = "worker " + victim->id() + " at " + victim->rpc_address() + ": " + st.status().ToString();
      } else {
        Deliver(a, st->process(), victim->rpc_address(), false);
      }
    }
  }
  err_ << report_.name << ": fault " << applied_.size() + 1 << " " << fault.text << " at "
       << a.result.at_ms / 1000.0 << "s: "
       << (!a.result.error.empty()     ? "NOT APPLIED: " + a.result.error
           : !a.result.skipped.empty() ? "SKIPPED: " + a.result.skipped
                                       : a.result.delivery + " (" + a.result.victim + ")")
       << "\n";
  for (Applied& earlier : applied_) earlier.closed = true;
  applied_.push_back(std::move(a));
}

void Runner::Deliver(Applied& a, const proto::ProcessInfo& process, const std::string& address, bool is_driver) {
  a.victim_address = address;
  a.victim_process = process;
  const FaultKind k = a.result.fault.kind;
  const bool pause = k == FaultKind::kLeaderPause || k == FaultKind::kWorkerPause;
  const Ms pause_for = a.result.fault.pause;
  a.victim_gone = !pause;
  if (!o_.rpc && IsLocal(process, is_driver ? "driverd" : "workerd")) {
    const pid_t pid = static_cast<pid_t>(process.pid());
    const int sig = pause ? SIGSTOP : k == FaultKind::kLeaderTerm ? SIGTERM : SIGKILL;
    // A pause goes through a helper process that continues the daemon even
    // if this sluicectl is interrupted meanwhile; kill(pid, 0) first checks
    // that we may signal it at all.
    const bool sent = pause ? ::kill(pid, 0) == 0 && PauseProcess(pid, Ms(0), pause_for).ok() : ::kill(pid, sig) == 0;
    if (!sent) {
      a.result.error = fmt::format("signalling pid {} on this host: {}", pid, std::strerror(errno));
      return;
    }
    a.result.delivery = fmt::format("{} to pid {}{}", sig == SIGSTOP ? "SIGSTOP" : sig == SIGTERM ? "SIGTERM" : "SIGKILL",
                                    pid, pause ? fmt::format(", SIGCONT after {} ms", pause_for.count()) : "");
    return;
  }
  proto::DrillRequest request;
  request.set_fault(pause ? proto::DRILL_FAULT_PAUSE
                          : k == FaultKind::kLeaderTerm ? proto::DRILL_FAULT_TERM : proto::DRILL_FAULT_KILL);
  request.set_pause_ms(pause ? pause_for.count() : 0);
  rpc::ChannelCache channels(probe_);
  Status st = is_driver ? rpc::DriverClient(channels, address).Drill(request).status()
                        : rpc::WorkerClient(channels, address).Drill(request).status();
  if (!st.ok()) {
    a.result.error = fmt::format("Drill RPC to {}: {}", address, std::string(st.message()));
    return;
  }
  a.result.delivery = fmt::format("Drill RPC ({}) to {}", proto::DrillFault_Name(request.fault()), address);
}

// zk-server-loss: the server the leader's session is connected to (else the
// connect string's first) is paused where it runs, if that is this host.
void Runner::PauseZkServer(Applied& a) {
  const proto::ProcessInfo& leader = last_.leader.process();
  if (zk_hosts_.empty()) {
    a.result.skipped = fmt::format("the cluster's coordinator is not ZooKeeper ({})", coordinator_);
    return;
  }
  std::string server = last_.leader.zk_server();
  std::string whose = leader.id() + "'s session is on it";
  if (server.empty()) {
    server = zk_hosts_.front();
    whose = "the first of the connect string: the leader " + leader.id() + " does not say which its session is on";
  }
  a.result.zk_server = server;
  a.result.victim = server;
  // A loopback address names a server on the leader's own host.
  const bool loopback = server.rfind("127.", 0) == 0 || server.rfind("[::1]", 0) == 0 ||
                        server.rfind("localhost:", 0) == 0;
  if (loopback && leader.host() != Hostname()) {
    a.result.skipped = fmt::format("ZooKeeper server {} ({}) is on {}'s host {}, not this one: run the drill there",
                                   server, whose, leader.id(), leader.host());
    return;
  }
  Result<LocalListener> found = FindLocalListener(server);
  if (!found.ok()) {
    if (absl::IsNotFound(found.status())) {
      a.result.skipped = fmt::format("ZooKeeper server {} ({}) does not run on this host ({}): run the drill on its host",
                                     server, whose, std::string(found.status().message()));
    } else {
      a.result.error = fmt::format("finding ZooKeeper server {} here: {}", server, std::string(found.status().message()));
    }
    return;
  }
  // The address was looked up in this process's network namespace: if the
  // leader runs here in another one (ip netns, a container sharing the
  // hostname), the same address there may be another process entirely.
  if (leader.host() == Hostname() && leader.pid() > 0) {
    std::error_code ec;
    const fs::path theirs = fs::read_symlink(fmt::format("/proc/{}/ns/net", leader.pid()), ec);
    std::error_code own_ec;
    const fs::path ours = fs::read_symlink("/proc/self/ns/net", own_ec);
    if (!ec && !own_ec && theirs != ours) {
      a.result.skipped = fmt::format("the leader {} (pid {}) runs in another network namespace ({}, this is {}): "
                                     "ZooKeeper server {} cannot be told from here",
                                     leader.id(), leader.pid(), theirs.string(), ours.string(), server);
      return;
    }
  }
  // The server's main class (QuorumPeerMain or ZooKeeperServerMain) is in
  // this package; a broker with ZooKeeper's jar on its class path is not.
  if (found->cmdline.find("org.apache.zookeeper.server.") == std::string::npos) {
    a.result.skipped = fmt::format(
        "pid {} listening on {} here is not a ZooKeeper server (a proxy? the server then runs elsewhere): {}",
        found->pid, server, found->cmdline.substr(0, 80));
    return;
  }
  // Whether it leads the ensemble decides the target (ZkLossIsOutage); asked
  // before the pause, which would leave the question unanswered.
  Result<std::string> mode = ZkServerMode(server, Ms(1000));
  a.result.zk_mode = mode.ok() ? *mode : "";
  if (!mode.ok()) err_ << report_.name << ": ZooKeeper server " << server << " did not say its mode (" << mode.status().message() << ")\n";
  a.result.target_ms = ZkServerLossTarget(a.result.fault, times_, ZkLossIsOutage(times_.zk_servers, a.result.zk_mode)).count();
  const pid_t pid = static_cast<pid_t>(found->pid);
  if (::kill(pid, 0) != 0) {
    a.result.error = fmt::format("signalling ZooKeeper server pid {} on this host: {}", pid, std::strerror(errno));
    return;
  }
  if (Status paused = PauseProcess(pid, Ms(0), a.result.fault.pause); !paused.ok()) {
    a.result.error = fmt::format("pausing ZooKeeper server pid {}: {}", pid, std::string(paused.message()));
    return;
  }
  a.result.delivery = fmt::format("SIGSTOP to pid {}, SIGCONT after {} ms (ZooKeeper server {}, {}; {})", pid,
                                  a.result.fault.pause.count(), server,
                                  a.result.zk_mode.empty() ? "mode unknown" : a.result.zk_mode, whose);
}

// Reads every line of the regular, visible files directly in `dir` (the file
// sink's dot-files are unfinished; dead letters live in a subdirectory).
void ForEachLine(const std::string& dir, const std::function<void(const std::string& file, std::string_view)>& f) {
  std::error_code ec;
  for (const fs::directory_entry& e : fs::directory_iterator(dir, ec)) {
    const std::string name = e.path().filename().string();
    if (name.empty() || name[0] == '.' || !e.is_regular_file()) continue;
    std::ifstream in(e.path());
    std::string line;
    while (std::getline(in, line)) f(name, line);
  }
}

void Runner::Finish() {
  // A job that has not committed since its last batch is still in a gap.
  for (const auto& [job, t] : last_commit_t_) {
    int64_t& gap = report_.longest_gap_ms[job];
    gap = std::max(gap, last_.t_ms - t);
  }
  // Stop both jobs first, so their positions no longer move while the
  // output is read.
  for (const std::string& job : jobs_) {
    proto::StopJobRequest stop;
    stop.set_job_id(job);
    stop.set_reason("the drill " + report_.name + " is over");
    Result<proto::StopJobResponse> r = OnLeader<proto::StopJobResponse>(
        [&](rpc::DriverClient& d) { return d.StopJob(stop, rpc::DriverClient::kStopJobDeadline); }, Ms(30'000));
    if (!r.ok()) report_.problems.push_back("stopping " + job + ": " + std::string(r.status().message()));
  }
  std::map<std::string, proto::JobInfo> info;
  for (const std::string& job : jobs_) {
    proto::DescribeJobRequest request;
    request.set_job_id(job);
    Result<proto::JobInfo> r = OnLeader<proto::JobInfo>(
        [&](rpc::DriverClient& d) { return d.DescribeJob(request, rpc::DriverClient::kDescribeJobDeadline); },
        Ms(30'000));
    if (!r.ok()) {
      report_.problems.push_back("describing " + job + ": " + std::string(r.status().message()));
      continue;
    }
    info[job] = *r;
    for (const proto::BatchSummary& b : r->recent_batches()) batches_[job][b.batch_id()] = b;
    int64_t worst = 0;
    const int n = r->recent_batches_size();
    for (int i = std::max(0, n - 5); i < n; ++i) worst = std::max(worst, r->recent_batches(i).total_delay_ms());
    report_.last_total_delay_ms[job] = worst;
    if (r->stop_reason().rfind("FAILED", 0) == 0) report_.problems.push_back(job + " " + r->stop_reason());
  }
  if (info.size() != jobs_.size()) return;

  // Per fault: the batches committed from it until the next one.
  for (size_t i = 0; i < applied_.size(); ++i) {
    Applied& a = applied_[i];
    for (const std::string& job : jobs_) {
      const int64_t from = a.committed_before[job];
      const int64_t to = i + 1 < applied_.size() ? applied_[i + 1].committed_before[job]
                                                 : info[job].last_committed_batch();
      for (auto it = batches_[job].upper_bound(from); it != batches_[job].end() && it->first <= to; ++it) {
        a.result.reruns += std::max(0, it->second.task_attempts() - tasks_per_batch_[job]);
        a.result.blocks_fetched += it->second.blocks_fetched();
        a.result.blocks_recomputed += it->second.blocks_recomputed();
      }
    }
    if (a.result.fault.kind == FaultKind::kZkServerLoss && a.result.error.empty() && a.result.skipped.empty()) {
      // A stretch still open when the fault's measuring ended counts up to then.
      const int64_t until = i + 1 < applied_.size() ? applied_[i + 1].result.at_ms : last_.t_ms;
      const int64_t leaderless =
          std::max(a.leaderless_ms, a.leaderless_since ? until - *a.leaderless_since : int64_t{0});
      const std::string role = a.result.zk_mode.empty() ? "mode unknown" : a.result.zk_mode;
      a.result.note = fmt::format(
          "paused ZooKeeper server {} ({}, 1 of {}: {}); {}; {}", a.result.zk_server, role, times_.zk_servers,
          !KeepsQuorumWithoutOne(times_.zk_servers) ? "no quorum without it, an outage"
          : ZkLossIsOutage(times_.zk_servers, a.result.zk_mode)
              ? "the ensemble's leader: every session waits for it or a new leader, an outage"
              : "the others keep a quorum",
          a.result.new_leader_ms ? fmt::format("a new leader term after {:.1f}s", *a.result.new_leader_ms / 1000.0)
                                 : "the leader kept its term",
          leaderless > 0 ? fmt::format("{:.1f}s without a serving leader", leaderless / 1000.0)
                         : "a serving leader at every poll");
    }
    if (a.victim_gone && a.result.error.empty()) {
      a.result.note = a.back_ms ? fmt::format("{} was back after {:.1f}s (restarted outside the drill)", a.result.victim,
                                              *a.back_ms / 1000.0)
                                : a.result.victim + " is still down: restart it (a service manager does; the drill"
                                                    " never restarts a daemon)";
    }
    report_.faults.push_back(a.result);
  }

  // The ids job: every id below its committed positions, exactly once.
  std::map<int32_t, int64_t> positions;
  for (const proto::SourceOffset& p : info[jobs_[0]].positions()) positions[p.partition()] = p.offset();
  for (int32_t p = 0; p < source_.partitions(); ++p) positions.emplace(p, 0);
  std::vector<std::pair<int32_t, int64_t>> seen;
  ForEachLine(dir_ + "/ids", [&](const std::string&, std::string_view line) {
    if (auto id = ParseIdLine(line)) seen.push_back(*id);
  });
  report_.ids = CheckIds(positions, seen);

  // The counts job: each key's newest committed value against the events of
  // its committed offsets, recomputed from the generator.
  const int64_t committed = info[jobs_[1]].last_committed_batch();
  std::map<std::string, std::pair<int64_t, int64_t>> newest;  // key -> (batch, count)
  ForEachLine(dir_ + "/counts", [&](const std::string& file, std::string_view line) {
    std::optional<int64_t> batch = BatchOfFile(file);
    std::optional<std::pair<std::string, int64_t>> kv = ParseCountLine(line);
    if (!batch || !kv || *batch > committed) return;
    auto& [b, n] = newest[kv->first];
    if (*batch >= b) b = *batch, n = kv->second;
  });
  std::map<std::string, int64_t> got, expected;
  for (const auto& [key, bn] : newest) got[key] = bn.second;
  const proto::GeneratorSourceSpec& g = source_.generator();
  source::GeneratorSource generator({.name = source_.name(),
                                     .seed = g.seed(),
                                     .partitions = source_.partitions(),
                                     .rate_per_partition = g.rate_per_partition(),
                                     .num_keys = g.num_keys(),
                                     .payload_size = g.payload_bytes()},
                                    clock_);
  constexpr std::string_view kKey = "\"key\":\"";
  for (const proto::SourceOffset& p : info[jobs_[1]].positions()) {
    for (int64_t o = 0; o < p.offset(); ++o) {
      const std::string event = generator.EventString(p.partition(), o);
      const size_t at = event.find(kKey) + kKey.size();
      ++expected[event.substr(at, event.find('"', at) - at)];
    }
  }
  report_.counts = CheckCounts(expected, got);
}

int Runner::Run() {
  Result<CheckedDrillOptions> checked = CheckDrillOptions(o_);
  if (!checked.ok()) {
    err_ << "sluicectl: error: " << checked.status().message() << "\n";
    return kExitUsage;
  }
  faults_ = checked->faults;
  interval_ = checked->interval;
  times_.batch_interval = checked->batch_interval;
  const std::optional<Ms> session_flag = checked->session_timeout;
  const int rounds = o_.rounds > 0 ? o_.rounds : static_cast<int>(faults_.size());

  // The cluster as it is: a serving leader, and the session timeout it runs with.
  PollUntil(Elapsed() + 30'000, [](const Observation& ob) { return !ob.leader_address.empty(); });
  if (last_.leader_address.empty()) {
    err_ << "sluicectl: no serving leader among " << drivers_.size()
         << " driver(s): is the cluster up? (sluicectl status)\n";
    return 1;
  }
  if (last_.leader.session_timeout_ms() > 0) {
    times_.session_timeout = Ms(last_.leader.session_timeout_ms());
  } else if (session_flag) {
    times_.session_timeout = *session_flag;
  } else {
    err_ << "sluicectl: error: the drivers do not say their ZooKeeper session timeout (an older release):"
            " give it with --session-timeout\n";
    return kExitUsage;
  }
  coordinator_ = last_.leader.coordinator();
  if (Result<coord::CoordinatorSpec> spec = coord::CoordinatorSpec::Parse(coordinator_);
      spec.ok() && spec->kind == coord::CoordinatorSpec::Kind::kZooKeeper) {
    for (size_t from = 0; from <= spec->hosts.size();) {
      size_t comma = spec->hosts.find(',', from);
      if (comma == std::string::npos) comma = spec->hosts.size();
      if (comma > from) zk_hosts_.push_back(spec->hosts.substr(from, comma - from));
      from = comma + 1;
    }
  }
  times_.zk_servers = static_cast<int>(zk_hosts_.size());
  report_.times = times_;

  if (Status st = SetUp(); !st.ok()) {
    err_ << "sluicectl: setting up the drill's probe: " << st.message() << "\n";
    return absl::IsInvalidArgument(st) ? kExitUsage : 1;
  }
  err_ << report_.name << ": source " << report_.name << " (" << o_.partitions << " partitions, " << o_.rate
       << " events/s), jobs " << jobs_[0] << " and " << jobs_[1] << " writing under " << dir_
       << "; warming up\n";

  // Warm-up: a few committed batches of each job, and how many tasks a batch
  // has when nothing goes wrong (attempts beyond that are re-runs).
  PollUntil(Elapsed() + kWarmupLimit.count(), [&](const Observation& ob) {
    for (const std::string& job : jobs_) {
      auto it = ob.jobs.find(job);
      if (it == ob.jobs.end() || it->second.last_committed_batch() < kWarmupBatches) return false;
    }
    return true;
  });
  for (const std::string& job : jobs_) {
    int tasks = 0;
    for (const auto& [id, b] : batches_[job]) {
      if (b.task_attempts() > 0) tasks = tasks == 0 ? b.task_attempts() : std::min(tasks, b.task_attempts());
    }
    tasks_per_batch_[job] = tasks;
    if (last_committed_[job] < kWarmupBatches) {
      report_.problems.push_back(fmt::format("{} committed {} batches in the {} s warm-up; faults not applied", job,
                                             last_committed_[job], kWarmupLimit.count() / 1000));
    }
  }

  if (report_.problems.empty()) {
    int worker_round = 0;
    int64_t next = Elapsed();
    for (int i = 0; i < rounds; ++i) {
      PollUntil(next);
      const FaultSpec& f = faults_[i % faults_.size()];
      ApplyFault(f, f.on_leader() ? 0 : worker_round++);
      next = applied_.back().result.at_ms + interval_.count();
    }
    // Settle: an interval after the last fault, longer if a job has not
    // committed since (up to the fault's target and two batches more).
    const Applied& final_fault = applied_.back();
    PollUntil(next);
    PollUntil(final_fault.result.at_ms + final_fault.result.target_ms + 2 * times_.batch_interval.count(),
              [&](const Observation&) {
                return std::all_of(applied_.begin(), applied_.end(), [](const Applied& a) {
                  return !a.result.error.empty() || !a.result.skipped.empty() ||
                         std::all_of(a.result.next_commit_ms.begin(), a.result.next_commit_ms.end(),
                                     [](const auto& j) { return j.second.has_value(); });
                });
              });
  }
  err_ << report_.name << ": stopping the jobs and checking their output\n";
  Finish();
  if (o_.json) {
    out_ << ReportJson(report_) << "\n";
  } else {
    PrintReport(report_, out_);
  }
  if (!o_.keep) {
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }
  return report_.Pass() ? 0 : 1;
}

}  // namespace

int RunDrill(const DrillOptions& options, const std::vector<std::string>& drivers, const rpc::RpcOptions& transport,
             Clock* clock, std::ostream& out, std::ostream& err) {
  if (drivers.empty()) {
    err << "sluicectl: error: drill needs --coordinator or --driver\n";
    return kExitUsage;
  }
  return Runner(options, drivers, transport, clock, out, err).Run();
}

}  // namespace sluice::ctl
