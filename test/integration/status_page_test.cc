// The driver's status page on a real cluster (3 drivers, so the WAL keeps a
// quorum through a leader's death; 1 worker; ZooKeeper),
// rendered by headless Chromium: the leader's page shows the job, the
// leader's id and epoch, delays and drawn charts, with no network beyond the
// driver (dygraphs is embedded); the standby's page names the leader and
// links to its page; after kill -9 of the leader the new leader's page shows
// the higher epoch, the leader change in its timeline, and new batches.
//
// Saves a screenshot of the new leader's page in the test's directory, and
// in $SLUICE_SCREENSHOT_DIR when set (docs/images/status-page.png).
#include <signal.h>

#include <cstdio>
#include <filesystem>
#include <regex>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "test/harness/http_get.h"
#include "test/harness/local_cluster.h"
#include "test/harness/util.h"

namespace sluice {
namespace {

using ::testing::HasSubstr;
using std::chrono::milliseconds;
using testing::LocalCluster;
using testing::TempDir;

constexpr const char* kChromium = "/usr/bin/chromium";

constexpr const char* kJob = R"(name: checkout-events-eu
batch_interval: 500ms
sources:
  - {name: checkout, kind: generator, partitions: 2, rate: 4000, payload_bytes: 120}
operators:
  - parse: {format: json}
  - filter: "v > 10"
  - project: {fields: [id, key, v]}
sink: {null: {}}
)";

// Runs a shell command line; its stdout, or "" if it failed.
std::string RunShell(const std::string& command) {
  std::string out;
  FILE* pipe = popen(command.c_str(), "r");
  if (pipe == nullptr) return out;
  char buf[8192];
  size_t n;
  while ((n = fread(buf, 1, sizeof(buf), pipe)) > 0) out.append(buf, n);
  pclose(pipe);
  return out;
}

class StatusPageTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!std::filesystem::exists(kChromium)) GTEST_SKIP() << kChromium << " is missing (apt-get install chromium)";
    auto cluster = LocalCluster::Start({.dir = dir_.path(),
                                        .drivers = 3,
                                        .workers = 1,
                                        .driver_flags = {"--http-address", "127.0.0.1:0"}});
    ASSERT_TRUE(cluster.ok()) << cluster.status();
    cluster_ = std::move(*cluster);
    ASSERT_TRUE(testing::WaitUntil([&] { return Ctl({"list"}) == 0; }, milliseconds(20'000), milliseconds(200)));
  }

  int Ctl(const std::vector<std::string>& args) {
    return cluster_->Sluicectl(args, dir_.Sub("ctl" + std::to_string(runs_++) + ".log"));
  }

  std::string HttpAddress(int driver) {
    Result<proto::DriverStatus> st = testing::GetDriverStatus(cluster_->driver_address(driver));
    return st.ok() ? st->process().http_address() : "";
  }

  // Headless Chromium with a profile of its own; `what` is --dump-dom or
  // --screenshot=<path>. Virtual time stops while the page's fetches are
  // pending, so the budget covers several polls of the page.
  std::string Chromium(const std::string& what, const std::string& url) {
    const std::string profile = dir_.Sub("chromium-" + std::to_string(runs_++));
    last_log_ = profile + ".log";
    return RunShell("timeout 60 " + std::string(kChromium) +
               " --headless --no-sandbox --disable-gpu --disable-dev-shm-usage --no-first-run"
               " --hide-scrollbars --window-size=1400,1000 --virtual-time-budget=6000 --enable-logging=stderr --v=0"
               " --user-data-dir=" +
               profile + " " + what + " " + url + " 2>" + profile + ".log");
  }

  // The job's last committed batch as the page's API at `http` says.
  int64_t CommittedOnPage(const std::string& http) {
    Result<testing::HttpReply> r = testing::HttpGet(http, "/api/job?id=checkout-events-eu&limit=1");
    if (!r.ok() || r->status != 200) return -1;
    std::smatch m;
    if (!std::regex_search(r->body, m, std::regex("\"last_committed_batch\":(\\d+)"))) return -1;
    return std::stoll(m[1]);
  }

  static int64_t EpochBadge(const std::string& dom) {
    std::smatch m;
    if (!std::regex_search(dom, m, std::regex("id=\"epoch-badge\"[^>]*>epoch (\\d+)<"))) return -1;
    return std::stoll(m[1]);
  }

  TempDir dir_{"status-page"};
  std::unique_ptr<LocalCluster> cluster_;
  int runs_ = 0;
  std::string last_log_;  // the last Chromium run's stderr
};

TEST_F(StatusPageTest, LeaderAndStandbyPagesThroughALeaderKill) {
  const std::string job_file = dir_.Sub("job.yaml");
  ASSERT_TRUE(testing::WriteFile(job_file, kJob).ok());
  ASSERT_EQ(Ctl({"submit", job_file}), 0);
  const int leader = cluster_->LeaderIndex();
  ASSERT_GE(leader, 0);
  const int standby = (leader + 1) % cluster_->num_drivers();
  const std::string leader_http = HttpAddress(leader);
  const std::string standby_http = HttpAddress(standby);
  ASSERT_FALSE(leader_http.empty());
  ASSERT_FALSE(standby_http.empty());
  Result<proto::DriverStatus> leader_status = testing::GetDriverStatus(cluster_->driver_address(leader));
  ASSERT_TRUE(leader_status.ok());
  const int64_t epoch = leader_status->epoch();
  // Enough batches for charts worth a look.
  ASSERT_TRUE(testing::WaitUntil([&] { return CommittedOnPage(leader_http) >= 16; }, milliseconds(30'000),
                                 milliseconds(250)));

  // The page's own files: no CDN, the page works offline.
  Result<testing::HttpReply> js = testing::HttpGet(leader_http, "/static/dygraph.min.js");
  ASSERT_TRUE(js.ok());
  EXPECT_EQ(js->status, 200);
  EXPECT_THAT(js->content_type, HasSubstr("javascript"));
  Result<testing::HttpReply> index = testing::HttpGet(leader_http, "/");
  ASSERT_TRUE(index.ok());
  EXPECT_THAT(index->content_type, HasSubstr("text/html"));
  EXPECT_THAT(index->body, ::testing::Not(HasSubstr("https://")));

  const std::string dom = Chromium("--dump-dom", "http://" + leader_http + "/");
  ASSERT_FALSE(dom.empty()) << "chromium printed nothing; see " << dir_.path();
  EXPECT_THAT(dom, HasSubstr("checkout-events-eu"));
  EXPECT_THAT(dom, HasSubstr(cluster_->driver_id(leader)));
  EXPECT_EQ(EpochBadge(dom), epoch) << dom;
  EXPECT_THAT(dom, HasSubstr("data-charts-drawn=\"4\""));
  EXPECT_THAT(dom, HasSubstr("charts drawn: 4 of 4"));
  EXPECT_TRUE(std::regex_search(dom, std::regex("<td class=\"num[^\"]*\">\\d+ ms</td>"))) << "no delay figure";
  EXPECT_THAT(dom, HasSubstr(cluster_->worker_id(0)));
  EXPECT_THAT(dom, HasSubstr("Epoch " + std::to_string(epoch) + " — " + cluster_->driver_id(leader)));
  EXPECT_THAT(dom, ::testing::Not(HasSubstr("cannot reach this driver")));
  // Nothing the page does is refused by its own Content-Security-Policy,
  // and the script raised no error (Chromium logs the console).
  const std::string console = testing::ReadFile(last_log_).value_or("");
  EXPECT_THAT(console, ::testing::Not(HasSubstr("Content Security Policy"))) << console;
  EXPECT_THAT(console, ::testing::Not(HasSubstr("Uncaught"))) << console;

  // The standby's page: the banner names the leader and links to its page;
  // its jobs come from its own copy of the log.
  const std::string standby_dom = Chromium("--dump-dom", "http://" + standby_http + "/");
  EXPECT_THAT(standby_dom, HasSubstr("This driver is a standby. The leader is <b>" + cluster_->driver_id(leader) +
                                     "</b> (epoch " + std::to_string(epoch) + ")"));
  EXPECT_THAT(standby_dom, HasSubstr("href=\"http://" + leader_http + "/\""));
  EXPECT_THAT(standby_dom, HasSubstr("checkout-events-eu"));
  EXPECT_THAT(standby_dom, HasSubstr("data-charts-drawn=\"4\""));

  // kill -9 the leader: a standby leads with a higher epoch, its timeline
  // shows the change, and batches commit again.
  const int64_t before = CommittedOnPage(leader_http);
  const auto killed = std::chrono::steady_clock::now();
  cluster_->KillDriver(leader);
  int next = -1;
  ASSERT_TRUE(testing::WaitUntil(
      [&] {
        next = cluster_->LeaderIndex();
        return next >= 0 && next != leader;
      },
      milliseconds(30'000), milliseconds(100)));
  const std::string next_http = HttpAddress(next);
  ASSERT_TRUE(testing::WaitUntil([&] { return CommittedOnPage(next_http) >= before + 4; }, milliseconds(30'000),
                                 milliseconds(200)))
      << "no new batch on the new leader's page";
  std::printf("new batches on the new leader's page %.1f s after kill -9\n",
              std::chrono::duration<double>(std::chrono::steady_clock::now() - killed).count());
  const std::string after = Chromium("--dump-dom", "http://" + next_http + "/");
  const int64_t new_epoch = EpochBadge(after);
  EXPECT_GT(new_epoch, epoch) << after;
  EXPECT_THAT(after, ::testing::Not(HasSubstr("id=\"banner\"")));
  EXPECT_THAT(after, HasSubstr("Epoch " + std::to_string(new_epoch) + " — " + cluster_->driver_id(next)));
  EXPECT_THAT(after, HasSubstr("Epoch " + std::to_string(epoch) + " — " + cluster_->driver_id(leader)));
  EXPECT_THAT(after, HasSubstr("took over"));
  EXPECT_THAT(after, HasSubstr("data-charts-drawn=\"4\""));

  // The screenshot: the new leader's page a few seconds on, its charts
  // across the failover and both terms in its timeline.
  ASSERT_TRUE(testing::WaitUntil([&] { return CommittedOnPage(next_http) >= before + 12; }, milliseconds(20'000),
                                 milliseconds(200)));
  const std::string shot = dir_.Sub("status-page.png");
  Chromium("--screenshot=" + shot, "http://" + next_http + "/");
  ASSERT_TRUE(std::filesystem::exists(shot));
  EXPECT_GT(std::filesystem::file_size(shot), 20'000u);
  if (const char* out = std::getenv("SLUICE_SCREENSHOT_DIR"); out != nullptr && *out != '\0') {
    std::filesystem::copy_file(shot, std::string(out) + "/status-page.png",
                               std::filesystem::copy_options::overwrite_existing);
  }
}

}  // namespace
}  // namespace sluice
