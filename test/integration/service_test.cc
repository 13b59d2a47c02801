// The daemons as systemd runs them (docs/service.md): each real daemon is
// started with NOTIFY_SOCKET naming this test's own unix datagram socket, and
// what it sends is checked against what it does — READY=1 only once it
// serves, STATUS= lines, WATCHDOG=1 while its loops make progress and not
// while the test hook wedges one, STOPPING=1 on SIGTERM; SIGHUP reloads the
// log level and does not kill; --check-config exits 0 or 2. And standalone
// mode (no ZooKeeper): one driver, two workers, a job with exact results,
// and sluicectl through /etc/sluice/sluicectl.conf's stand-in.
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <map>
#include <mutex>
#include <set>
#include <sstream>
#include <thread>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "lib/rpc/driver_client.h"
#include "lib/source/generator_source.h"
#include "test/harness/certs.h"
#include "test/harness/local_cluster.h"
#include "test/harness/paths.h"
#include "test/harness/subprocess.h"
#include "test/harness/util.h"
#include "test/harness/zk_cluster.h"

namespace sluice::testing {
namespace {

using ::testing::HasSubstr;
using std::chrono::milliseconds;
using Steady = std::chrono::steady_clock;

// A unix datagram socket that records every notification sent to it.
class NotifyListener {
 public:
  explicit NotifyListener(std::string path) : path_(std::move(path)) {
    fd_ = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::snprintf(addr.sun_path, sizeof(addr.sun_path), "%s", path_.c_str());
    ::unlink(path_.c_str());
    bound_ = ::bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
    timeval tv{.tv_sec = 0, .tv_usec = 100'000};
    ::setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    thread_ = std::thread([this] { Loop(); });
  }
  ~NotifyListener() {
    stop_ = true;
    thread_.join();
    ::close(fd_);
    ::unlink(path_.c_str());
  }
  bool bound() const { return bound_; }
  std::string env() const { return "NOTIFY_SOCKET=" + path_; }

  struct Message {
    Steady::time_point at;
    std::string text;
  };
  std::vector<Message> Messages() {
    std::lock_guard<std::mutex> lock(mu_);
    return messages_;
  }
  // Messages holding `line` (a whole line, e.g. "READY=1").
  int Count(const std::string& line, Steady::time_point since = {}) {
    int n = 0;
    for (const Message& m : Messages()) n += m.at >= since && HasLine(m.text, line);
    return n;
  }
  bool WaitFor(const std::string& line, milliseconds timeout) {
    return WaitUntil([&] { return Count(line) > 0; }, timeout, milliseconds(10));
  }
  // The last STATUS= value sent.
  std::string LastStatus() {
    std::string status;
    for (const Message& m : Messages()) {
      std::istringstream lines(m.text);
      for (std::string l; std::getline(lines, l);) {
        if (l.rfind("STATUS=", 0) == 0) status = l.substr(7);
      }
    }
    return status;
  }
  // Called (on the listener's thread) for each message as it arrives.
  void OnMessage(std::function<void(const std::string&)> fn) {
    std::lock_guard<std::mutex> lock(mu_);
    on_message_ = std::move(fn);
  }

  static bool HasLine(const std::string& text, const std::string& line) {
    std::istringstream lines(text);
    for (std::string l; std::getline(lines, l);) {
      if (l == line) return true;
    }
    return false;
  }

 private:
  void Loop() {
    char buf[4096];
    while (!stop_) {
      ssize_t n = ::recv(fd_, buf, sizeof(buf), 0);
      if (n <= 0) continue;
      std::string text(buf, n);
      std::function<void(const std::string&)> fn;
      {
        std::lock_guard<std::mutex> lock(mu_);
        messages_.push_back({Steady::now(), text});
        fn = on_message_;
      }
      if (fn) fn(text);
    }
  }

  const std::string path_;
  int fd_ = -1;
  bool bound_ = false;
  std::atomic<bool> stop_{false};
  std::mutex mu_;
  std::vector<Message> messages_;
  std::function<void(const std::string&)> on_message_;
  std::thread thread_;
};

struct RunResult {
  int code = -1;
  std::string output;
};

class ServiceTest : public ::testing::Test {
 protected:
  RunResult Run(std::vector<std::string> argv, std::vector<std::string> env = {}) {
    const std::string log = dir_.Sub("run" + std::to_string(runs_++) + ".log");
    if (!env.empty()) {
      std::vector<std::string> with = {"/usr/bin/env"};
      with.insert(with.end(), env.begin(), env.end());
      with.insert(with.end(), argv.begin(), argv.end());
      argv = std::move(with);
    }
    Result<int> code = RunCommand(argv, log, std::chrono::seconds(30));
    return {code.ok() ? *code : -1, ReadFile(log).value_or("")};
  }

  std::unique_ptr<Subprocess> StartDaemon(const std::string& binary, std::vector<std::string> args,
                                          const std::string& name, std::vector<std::string> env = {}) {
    std::vector<std::string> argv = {binary};
    argv.insert(argv.end(), args.begin(), args.end());
    for (std::string& f : TlsFlags(binary == kDriverdPath ? "driver" : "worker")) argv.push_back(std::move(f));
    Result<std::unique_ptr<Subprocess>> p = Subprocess::Start(argv, {.log_path = dir_.Sub(name + ".log"), .env = env});
    EXPECT_TRUE(p.ok()) << p.status();
    return p.ok() ? std::move(*p) : nullptr;
  }

  std::string Log(const std::string& name) { return ReadFile(dir_.Sub(name + ".log")).value_or(""); }

  TempDir dir_{"service"};
  int runs_ = 0;
};

std::string Addr(int port) { return "127.0.0.1:" + std::to_string(port); }

// A standalone driver: READY=1 once it leads with a serving WAL, with its
// STATUS line; a worker started before it is not READY until it has
// registered with it; WATCHDOG=1 stops while the plan loop is wedged and
// comes back after; SIGHUP changes the log level and kills nobody; SIGTERM
// sends STOPPING=1 and exits 0.
TEST_F(ServiceTest, NotifiesReadyStatusWatchdogStopping) {
  NotifyListener driver_sock(dir_.Sub("driver.sock"));
  NotifyListener worker_sock(dir_.Sub("worker.sock"));
  ASSERT_TRUE(driver_sock.bound() && worker_sock.bound());
  const std::string driver = Addr(FreePort());
  const std::string wedge = dir_.Sub("wedge");
  const std::string conf = dir_.Sub("driverd.conf");
  ASSERT_TRUE(WriteFile(conf, "log-level = info\n").ok());

  // The worker first: the driver is not there, so it cannot be ready.
  auto worker = StartDaemon(kWorkerdPath,
                            {"--id", "w1", "--rpc-address", Addr(FreePort()), "--data-dir", dir_.Sub("w1"),
                             "--coordinator", "standalone://" + driver, "--zk-session-timeout-ms", "3000"},
                            "w1", {worker_sock.env(), "WATCHDOG_USEC=2000000"});
  ASSERT_NE(worker, nullptr);
  std::this_thread::sleep_for(milliseconds(2000));
  EXPECT_EQ(worker_sock.Count("READY=1"), 0) << worker_sock.LastStatus();
  EXPECT_THAT(worker_sock.LastStatus(), HasSubstr("worker, waiting for the leader"));

  // At the moment the driver says READY=1, it leads and its WAL serves.
  std::atomic<int> ready_checks{0}, ready_ok{0};
  driver_sock.OnMessage([&](const std::string& text) {
    if (!NotifyListener::HasLine(text, "READY=1")) return;
    Result<proto::DriverStatus> st = GetDriverStatus(driver, milliseconds(2000));
    ++ready_checks;
    if (st.ok() && st->role() == proto::DRIVER_ROLE_LEADER && st->wal().serving()) {
      ++ready_ok;
    } else {
      ADD_FAILURE() << "READY=1 from a driver that does not serve: "
                    << (st.ok() ? st->ShortDebugString() : st.status().ToString());
    }
  });
  auto d = StartDaemon(kDriverdPath,
                       {"--config", conf, "--id", "d1", "--rpc-address", driver, "--data-dir", dir_.Sub("d1"),
                        "--coordinator", "standalone", "--wal-group-size", "1"},
                       "d1",
                       {driver_sock.env(), "WATCHDOG_USEC=2000000", "SLUICE_TEST_WEDGE_LOOP=plan",
                        "SLUICE_TEST_WEDGE_FILE=" + wedge});
  ASSERT_NE(d, nullptr);
  ASSERT_TRUE(driver_sock.WaitFor("READY=1", milliseconds(10'000))) << Log("d1");
  EXPECT_TRUE(WaitUntil([&] { return ready_checks.load() > 0; }, milliseconds(2000)));
  EXPECT_EQ(ready_ok.load(), 1);
  EXPECT_EQ(driver_sock.Count("READY=1"), 1);
  EXPECT_THAT(driver_sock.LastStatus(), ::testing::StartsWith("leader epoch "));

  // The worker: READY=1 once the driver lists it and it has registered.
  ASSERT_TRUE(worker_sock.WaitFor("READY=1", milliseconds(10'000))) << Log("w1");
  Result<proto::DriverStatus> st = GetDriverStatus(driver);
  ASSERT_TRUE(st.ok()) << st.status();
  ASSERT_EQ(st->workers_size(), 1);
  EXPECT_EQ(st->workers(0).id(), "w1");
  EXPECT_THAT(worker_sock.LastStatus(), ::testing::MatchesRegex("worker, 0 receivers, 0 tasks, leader d1 epoch [0-9]+"));
  EXPECT_TRUE(WaitUntil([&] { return driver_sock.LastStatus().find("1 worker, 0 jobs") != std::string::npos; },
                        milliseconds(3000)))
      << driver_sock.LastStatus();

  // Watchdog pings (every 0.5 s) while healthy.
  Steady::time_point t0 = Steady::now();
  std::this_thread::sleep_for(milliseconds(2500));
  EXPECT_GE(driver_sock.Count("WATCHDOG=1", t0), 3);
  EXPECT_GE(worker_sock.Count("WATCHDOG=1", t0), 3);

  // Wedge the driver's plan loop: after half the interval (1 s) the pings stop.
  ASSERT_TRUE(WriteFile(wedge, "").ok());
  std::this_thread::sleep_for(milliseconds(1600));
  Steady::time_point t1 = Steady::now();
  std::this_thread::sleep_for(milliseconds(2500));
  EXPECT_EQ(driver_sock.Count("WATCHDOG=1", t1), 0);
  EXPECT_GE(worker_sock.Count("WATCHDOG=1", t1), 3);  // the worker is not wedged
  EXPECT_THAT(Log("d1"), HasSubstr("loop(s) plan made no progress"));
  // Released, it pings again.
  std::filesystem::remove(wedge);
  Steady::time_point t2 = Steady::now();
  EXPECT_TRUE(WaitUntil([&] { return driver_sock.Count("WATCHDOG=1", t2) >= 2; }, milliseconds(3000)));

  // SIGHUP: the file's new log level applies; the daemon lives on.
  EXPECT_THAT(Log("d1"), ::testing::Not(HasSubstr(" D driverd ")));
  ASSERT_TRUE(WriteFile(conf, "log-level = debug\n").ok());
  ASSERT_TRUE(d->Signal(SIGHUP).ok());
  EXPECT_TRUE(WaitUntil([&] { return Log("d1").find("reload: log level is now debug") != std::string::npos; },
                        milliseconds(3000)))
      << Log("d1");
  EXPECT_THAT(Log("d1"), HasSubstr(" D driverd reload: log level is now debug"));
  ASSERT_TRUE(worker->Signal(SIGHUP).ok());
  std::this_thread::sleep_for(milliseconds(500));
  EXPECT_TRUE(d->Running());
  EXPECT_TRUE(worker->Running());
  EXPECT_TRUE(GetDriverStatus(driver).ok());
  EXPECT_THAT(Log("w1"), HasSubstr("reload: no --config file"));

  // SIGTERM: STOPPING=1, then a clean exit.
  EXPECT_EQ(worker->Stop(), 0);
  EXPECT_EQ(worker_sock.Count("STOPPING=1"), 1);
  EXPECT_EQ(d->Stop(), 0);
  EXPECT_EQ(driver_sock.Count("STOPPING=1"), 1);
  // STOPPING=1 was the last thing each said.
  EXPECT_TRUE(NotifyListener::HasLine(driver_sock.Messages().back().text, "STOPPING=1"));
}

// With ZooKeeper: a standby is READY only once a leader exists and its WAL
// has reached the leader's commit point; its STATUS names the leader.
TEST_F(ServiceTest, AStandbyIsReadyOnceCaughtUp) {
  auto zk = ZkCluster::Start({.base_dir = dir_.Sub("zk")});
  ASSERT_TRUE(zk.ok()) << zk.status();
  const std::string coordinator = "zookeeper://" + (*zk)->connect_string() + "/sluice/service";
  NotifyListener s1(dir_.Sub("d1.sock")), s2(dir_.Sub("d2.sock")), s3(dir_.Sub("d3.sock"));
  const std::string a1 = Addr(FreePort()), a2 = Addr(FreePort()), a3 = Addr(FreePort());
  auto driver = [&](const std::string& id, const std::string& addr, NotifyListener& sock) {
    return StartDaemon(kDriverdPath,
                       {"--id", id, "--rpc-address", addr, "--data-dir", dir_.Sub(id), "--coordinator", coordinator,
                        "--zk-session-timeout-ms", "2000", "--wal-group-size", "3"},
                       id, {sock.env()});
  };
  // d1 alone cannot commit (a group of 3 needs 2): not ready.
  auto d1 = driver("d1", a1, s1);
  ASSERT_TRUE(WaitUntil([&] { return s1.LastStatus().find("catching up") != std::string::npos; },
                        milliseconds(15'000)))
      << Log("d1");
  std::this_thread::sleep_for(milliseconds(1000));
  EXPECT_EQ(s1.Count("READY=1"), 0) << s1.LastStatus();
  auto d2 = driver("d2", a2, s2);
  ASSERT_TRUE(s1.WaitFor("READY=1", milliseconds(15'000))) << Log("d1");
  EXPECT_THAT(s1.LastStatus(), ::testing::StartsWith("leader epoch "));
  ASSERT_TRUE(s2.WaitFor("READY=1", milliseconds(15'000))) << Log("d2");
  EXPECT_EQ(s2.LastStatus(), "standby, following d1, WAL caught up");
  // Records for a third driver to catch up.
  proto::AppendMarkerRequest mark;
  mark.set_client_id("t");
  mark.set_count(2000);
  ASSERT_TRUE(rpc::DriverClient(Channels(), a1).AppendMarker(mark).ok());
  std::atomic<int64_t> commit_at_ready{-1};
  s3.OnMessage([&](const std::string& text) {
    if (!NotifyListener::HasLine(text, "READY=1")) return;
    Result<proto::DriverStatus> st = GetDriverStatus(a3, milliseconds(2000));
    if (st.ok()) commit_at_ready = st->wal().commit_seq();
  });
  auto d3 = driver("d3", a3, s3);
  ASSERT_TRUE(s3.WaitFor("READY=1", milliseconds(15'000))) << Log("d3");
  EXPECT_EQ(s3.LastStatus(), "standby, following d1, WAL caught up");
  EXPECT_TRUE(WaitUntil([&] { return commit_at_ready.load() >= 0; }, milliseconds(3000)));
  EXPECT_GE(commit_at_ready.load(), 2001);  // the leader's change and the markers
  EXPECT_EQ(d3->Stop(), 0);
  EXPECT_EQ(d2->Stop(), 0);
  EXPECT_EQ(d1->Stop(), 0);
}

TEST_F(ServiceTest, CheckConfigPrintsSettingsOrTheErrorWithExitTwo) {
  const std::string conf = dir_.Sub("driverd.conf");
  ASSERT_TRUE(WriteFile(conf, "id = d1\nrpc-address = 127.0.0.1:7100\ndata-dir = " + dir_.Sub("never") +
                                  "\nallow-drills = true\n")
                  .ok());
  const std::vector<std::string> tls = TlsFlags("driver");
  auto with_tls = [&](std::vector<std::string> argv) {
    argv.insert(argv.end(), tls.begin(), tls.end());
    return argv;
  };
  // TLS is on by default: without certificates the configuration is not valid.
  RunResult no_certs = Run({kDriverdPath, "--config", conf, "--check-config"});
  EXPECT_EQ(no_certs.code, 2);
  EXPECT_THAT(no_certs.output, HasSubstr("tls is on (the default) but tls-cert, tls-key, tls-ca are not set"));
  EXPECT_EQ(Run({kDriverdPath, "--config", conf, "--check-config", "--tls", "off"}).code, 0);
  RunResult ok = Run(with_tls({kDriverdPath, "--config", conf, "--check-config", "--log-level", "warn"}));
  EXPECT_EQ(ok.code, 0) << ok.output;
  EXPECT_THAT(ok.output, HasSubstr("configuration is valid"));
  EXPECT_THAT(ok.output, HasSubstr("\nid = d1\n"));
  EXPECT_THAT(ok.output, HasSubstr("\nlog-level = warn\n"));  // the command line's
  EXPECT_THAT(ok.output, HasSubstr("\nallow-drills = true\n"));
  EXPECT_THAT(ok.output, HasSubstr("\ncoordinator = standalone\n"));  // the default
  EXPECT_THAT(ok.output, HasSubstr("\nheartbeat-interval-ms = 500\n"));
  EXPECT_FALSE(std::filesystem::exists(dir_.Sub("never"))) << "check-config created the data directory";

  ASSERT_TRUE(WriteFile(conf, "id = d1\nrpc-address = 0.0.0.0:7100\n").ok());
  RunResult bad = Run({kDriverdPath, "--config", conf, "--check-config"});
  EXPECT_EQ(bad.code, 2);
  EXPECT_THAT(bad.output, HasSubstr("advertise-address: must be set"));
  ASSERT_TRUE(WriteFile(conf, "id = d1\nrpc-address = 0.0.0.0:7100\nadvertise-address = 10.0.0.1:7100\n").ok());
  EXPECT_EQ(Run(with_tls({kDriverdPath, "--config", conf, "--check-config"})).code, 0);
  EXPECT_EQ(Run({kDriverdPath, "--config", dir_.Sub("missing.conf"), "--check-config"}).code, 2);
  RunResult level = Run({kDriverdPath, "--id", "d1", "--log-level", "loud", "--check-config"});
  EXPECT_EQ(level.code, 2);
  EXPECT_THAT(level.output, HasSubstr("log-level: unknown level 'loud'"));

  RunResult w = Run({kWorkerdPath, "--id", "w1", "--check-config", "--tls", "off"});
  EXPECT_EQ(w.code, 0) << w.output;
  EXPECT_THAT(w.output, HasSubstr("\ncoordinator = standalone://127.0.0.1:7100\n"));
  EXPECT_THAT(w.output, HasSubstr("\nslots = 2\n"));
  RunResult wbad = Run({kWorkerdPath, "--id", "w1", "--coordinator", "standalone", "--check-config"});
  EXPECT_EQ(wbad.code, 2);
  EXPECT_THAT(wbad.output, HasSubstr("a worker needs to know its driver"));
  EXPECT_EQ(Run({kWorkerdPath, "--id", "w 1", "--check-config"}).code, 2);
  EXPECT_EQ(Run({kWorkerdPath, "--check-config"}).code, 2);  // no id
}

// Standalone mode: one driver without ZooKeeper, two workers that follow it,
// a job whose committed output is exactly the generator's matching events;
// sluicectl finds everything from its config file alone. The file sink's
// directory is allowed by output-dirs: a flag on the driver, a list in the
// workers' config file.
TEST_F(ServiceTest, StandaloneDriverTwoWorkersAndAJob) {
  const std::string driver = Addr(FreePort());
  auto d = StartDaemon(kDriverdPath,
                       {"--id", "d1", "--rpc-address", driver, "--data-dir", dir_.Sub("d1"), "--coordinator",
                        "standalone", "--output-dirs", dir_.path()},
                       "d1");
  const std::string worker_conf = dir_.Sub("workerd.conf");
  ASSERT_TRUE(WriteFile(worker_conf, "output-dirs = /nonexistent/out," + dir_.path() + "\n").ok());
  std::vector<std::unique_ptr<Subprocess>> workers;
  for (const char* id : {"w1", "w2"}) {
    workers.push_back(StartDaemon(kWorkerdPath,
                                  {"--config", worker_conf, "--id", id, "--rpc-address", Addr(FreePort()),
                                   "--data-dir", dir_.Sub(id), "--coordinator", "standalone://" + driver},
                                  id));
  }
  ASSERT_TRUE(WaitUntil(
      [&] {
        Result<proto::DriverStatus> st = GetDriverStatus(driver);
        return st.ok() && st->workers_size() == 2 && st->wal().serving();
      },
      milliseconds(15'000)))
      << Log("d1");

  // sluicectl with nothing but its config file.
  const std::string ctl_conf = dir_.Sub("sluicectl.conf");
  const TlsOptions client = TestTls("admin");
  ASSERT_TRUE(WriteFile(ctl_conf, "coordinator = standalone://" + driver + "\ntimeout-ms = 3000\ntls-cert = " +
                                      client.cert + "\ntls-key = " + client.key + "\ntls-ca = " + client.ca + "\n")
                  .ok());
  const std::vector<std::string> ctl_env = {"SLUICECTL_CONFIG=" + ctl_conf};
  RunResult status = Run({kSluicectlPath, "status"}, ctl_env);
  ASSERT_EQ(status.code, 0) << status.output;
  EXPECT_THAT(status.output, HasSubstr("LEADER epoch=1 workers=2"));
  EXPECT_THAT(status.output, ::testing::ContainsRegex("\nworker +w1 "));
  EXPECT_THAT(status.output, ::testing::ContainsRegex("\nworker +w2 "));
  // A flag wins over the file: an address nobody serves fails.
  EXPECT_EQ(Run({kSluicectlPath, "--coordinator", "standalone://" + Addr(FreePort()), "list"}, ctl_env).code, 1);
  // A bad file is a usage error.
  ASSERT_TRUE(WriteFile(dir_.Sub("bad.conf"), "coordinater = x\n").ok());
  RunResult bad = Run({kSluicectlPath, "status"}, {"SLUICECTL_CONFIG=" + dir_.Sub("bad.conf")});
  EXPECT_EQ(bad.code, 2);
  EXPECT_THAT(bad.output, HasSubstr("unknown key 'coordinater'"));

  const std::string out = dir_.Sub("out");
  const std::string job = dir_.Sub("job.yaml");
  ASSERT_TRUE(WriteFile(job, fmt::format(R"(name: solo
batch_interval: 300ms
sources:
  - {{name: ev, kind: generator, partitions: 4, rate: 2000, keys: 10, payload_bytes: 100}}
operators:
  - parse: {{format: json}}
  - filter: "key == 'k00000003'"
  - project: {{fields: [id, key]}}
sink:
  file: {{path: {}}}
)",
                                         out))
                  .ok());
  RunResult submit = Run({kSluicectlPath, "submit", job}, ctl_env);
  ASSERT_EQ(submit.code, 0) << submit.output;
  auto committed_batches = [&] {
    RunResult list = Run({kSluicectlPath, "list"}, ctl_env);
    std::istringstream lines(list.output);
    for (std::string line; std::getline(lines, line);) {
      std::istringstream cols(line);
      std::string id, state, interval;
      int64_t planned = 0, committed = 0;
      if (cols >> id >> state >> interval >> planned >> committed && id == "solo") return committed;
    }
    return int64_t{-1};
  };
  ASSERT_TRUE(WaitUntil([&] { return committed_batches() >= 5; }, milliseconds(30'000), milliseconds(300)))
      << Run({kSluicectlPath, "describe", "solo"}, ctl_env).output << Log("d1");
  ASSERT_EQ(Run({kSluicectlPath, "stop", "solo"}, ctl_env).code, 0);

  // Exactness: every committed batch's output is the generator's matching
  // events of its ranges, once each; both workers registered.
  proto::ReadWalRequest request;
  request.set_from_seq(1);
  request.set_max_records(10'000);
  Result<proto::ReadWalResponse> wal = rpc::DriverClient(Channels(), driver).ReadWal(request);
  ASSERT_TRUE(wal.ok()) << wal.status();
  std::map<int64_t, proto::BatchPlanned> planned;
  std::set<int64_t> committed;
  proto::SourceSpec source;
  for (const proto::DriverLogEntry& e : wal->records()) {
    const proto::DriverRecord& r = e.record();
    if (r.has_batch_planned() && r.batch_planned().job_id() == "solo") planned[r.batch_planned().batch_id()] = r.batch_planned();
    if (r.has_batch_committed() && r.batch_committed().job_id() == "solo") committed.insert(r.batch_committed().batch_id());
    if (r.has_source_registered() && r.source_registered().spec().name() == "ev") source = r.source_registered().spec();
  }
  ASSERT_GE(committed.size(), 5u);
  source::GeneratorSource gen({.name = "ev",
                               .seed = source.generator().seed(),
                               .partitions = 4,
                               .rate_per_partition = source.generator().rate_per_partition(),
                               .num_keys = source.generator().num_keys(),
                               .payload_size = source.generator().payload_bytes(),
                               .available_from_unix_ms = source.generator().available_from_unix_ms()},
                              Clock::Real());
  std::set<std::string> expected;
  int64_t events = 0;
  for (int64_t b : committed) {
    for (const proto::PartitionRange& r : planned[b].ranges()) {
      for (int64_t o = r.start_offset(); o < r.end_offset(); ++o) {
        ++events;
        const std::string e = gen.EventString(r.partition(), o);
        if (e.find("\"key\":\"k00000003\"") != std::string::npos) {
          expected.insert(e.substr(0, e.find("\",\"key\"") + 1));
        }
      }
    }
  }
  ASSERT_FALSE(expected.empty());
  std::multiset<std::string> seen;
  for (int64_t b : committed) {
    for (int t = 0; t < planned[b].ranges_size(); ++t) {
      const std::string path = fmt::format("{}/solo-batch-{:08d}-part-{:04d}.jsonl", out, b, t);
      Result<std::string> text = ReadFile(path);
      ASSERT_TRUE(text.ok()) << path;
      std::istringstream lines(*text);
      for (std::string line; std::getline(lines, line);) seen.insert(line.substr(0, line.find("\",\"key\"") + 1));
    }
  }
  EXPECT_EQ(seen.size(), expected.size());
  EXPECT_EQ(std::set<std::string>(seen.begin(), seen.end()), expected);
  std::cout << "standalone: " << committed.size() << " batches, " << events << " events, " << seen.size()
            << " output lines, exact\n";
  for (const char* id : {"w1", "w2"}) {
    EXPECT_THAT(Log(id), HasSubstr("registered with the leader")) << id;
  }

  // A worker that goes away leaves the driver's group (its lease lapses or
  // it leaves on SIGTERM).
  EXPECT_EQ(workers[1]->Stop(), 0);
  EXPECT_TRUE(WaitUntil(
      [&] {
        Result<proto::DriverStatus> st = GetDriverStatus(driver);
        return st.ok() && st->workers_size() == 1;
      },
      milliseconds(5000)));
  EXPECT_EQ(workers[0]->Stop(), 0);
  EXPECT_EQ(d->Stop(), 0);
}

}  // namespace
}  // namespace sluice::testing
