// Savepoints end to end on two clusters of real processes (each its own
// ZooKeeper, driverd, two workerd and data directories):
//
// - A keyed job of running totals (count and sum per key) and a stateless
//   job read a paced, deterministic generator on cluster A. A savepoint of
//   each is taken while they run; A's jobs stop; cluster B restores both
//   (sluicectl submit --from-savepoint). The totals B emits continue A's as
//   of the savepoint's batch exactly: each key's last total equals the count
//   (and sum) of its events over every offset read, computed here from the
//   generator itself, so a lost or doubled batch of state shows; A's totals
//   at the savepoint's batch equal the counts over the savepoint's
//   positions. The stateless job's output on B is exactly the events from
//   the saved positions on.
// - Refused, with the reason: a savepoint into a non-empty directory, a
//   restore under a name that exists, a savepoint whose state file was
//   corrupted (checksum) or cut short, and one without its manifest.
// - Liveness: the time from submit --from-savepoint to B's first committed
//   batch, printed and bounded.
#include <cmath>
#include <algorithm>
#include <filesystem>
#include <iterator>
#include <limits>
#include <map>
#include <set>
#include <sstream>
#include <thread>

#include "google/protobuf/util/json_util.h"
#include "gtest/gtest.h"
#include "lib/common/clock.h"
#include "lib/source/generator_source.h"
#include "test/harness/local_cluster.h"
#include "test/harness/sink_output.h"
#include "test/harness/util.h"

namespace sluice {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;
using testing::LocalCluster;
using testing::FieldOf;
using testing::KeyOf;
using testing::OutputLines;
using testing::TempDir;

constexpr int kPartitions = 2;
constexpr int64_t kRate = 500;  // events/s per partition
constexpr int64_t kKeys = 20;
constexpr int kPayload = 100;
constexpr uint64_t kSeed = 7;

std::string Unquoted(std::string_view s) {
  if (s.size() >= 2 && s.front() == '"') s = s.substr(1, s.size() - 2);
  return std::string(s);
}

double NumberOf(std::string_view s) { return std::strtod(std::string(s).c_str(), nullptr); }

struct Totals {
  std::map<std::string, int64_t> count;
  std::map<std::string, double> sum;
};

// Each key's last running total in the output up to batch `last`.
Totals LastTotals(const std::string& dir, int64_t last) {
  Totals t;
  for (const auto& [batch, line] : OutputLines(dir, last)) {
    const std::string key = KeyOf(line);
    t.count[key] = static_cast<int64_t>(NumberOf(FieldOf(line, "total")));
    t.sum[key] = NumberOf(FieldOf(line, "total_v"));
  }
  return t;
}

// The counts and sums per key of the generator's events [0, end[p]).
Totals Expected(const std::map<int32_t, int64_t>& end) {
  source::GeneratorSource gen({.name = "clicks",
                               .seed = kSeed,
                               .partitions = kPartitions,
                               .rate_per_partition = 0,
                               .num_keys = kKeys,
                               .payload_size = kPayload},
                              Clock::Real());
  Totals t;
  for (const auto& [p, n] : end) {
    for (int64_t o = 0; o < n; ++o) {
      const std::string e = gen.EventString(p, o);
      const std::string key = Unquoted(FieldOf(e, "key"));
      ++t.count[key];
      t.sum[key] += NumberOf(FieldOf(e, "v"));
    }
  }
  return t;
}

std::map<int32_t, int64_t> PositionsOf(const google::protobuf::RepeatedPtrField<proto::SourceOffset>& offsets) {
  std::map<int32_t, int64_t> out;
  for (const proto::SourceOffset& o : offsets) out[o.partition()] = o.offset();
  return out;
}

class SavepointTest : public ::testing::Test {
 protected:
  std::unique_ptr<LocalCluster> Start(const std::string& name) {
    auto cluster = LocalCluster::Start(
        {.dir = dir_.Sub(name), .drivers = 1, .workers = 2, .output_dirs = dir_.path(), .zk_root = "/sluice/" + name});
    EXPECT_TRUE(cluster.ok()) << cluster.status();
    return cluster.ok() ? std::move(*cluster) : nullptr;
  }

  int Ctl(LocalCluster& c, std::vector<std::string> args) {
    last_log_ = dir_.Sub("ctl" + std::to_string(runs_++) + ".log");
    return c.Sluicectl(args, last_log_, seconds(120));
  }
  std::string LastCtlLog() { return testing::ReadFile(last_log_).value_or(""); }

  std::string JobFile(const std::string& name, const std::string& out, bool keyed) {
    const std::string path = dir_.Sub(name + ".yaml");
    std::string body = fmt::format(R"(name: {}
batch_interval: 200ms
reduce_partitions: 4
sources:
  - {{name: clicks, kind: generator, partitions: {}, rate: {}, keys: {}, payload_bytes: {}, seed: {}}}
operators:
  - parse: {{format: json}}
)",
                                   name, kPartitions, kRate, kKeys, kPayload, kSeed);
    if (keyed) {
      body += "  - key_by: key\n  - update_state: {running: [{fn: count, as: total}, {fn: sum, field: v, as: total_v}]}\n";
    }
    body += "sink:\n  file: {path: " + out + "}\n";
    EXPECT_TRUE(testing::WriteFile(path, body).ok());
    return path;
  }

  TempDir dir_{"savepoint"};
  std::string last_log_;
  int runs_ = 0;
};

TEST_F(SavepointTest, RunningTotalsContinueExactlyOnAnotherCluster) {
  std::unique_ptr<LocalCluster> a = Start("a");
  ASSERT_TRUE(a);
  const std::string out_a = dir_.Sub("a-out");
  ASSERT_TRUE(testing::WaitUntil([&] { return Ctl(*a, {"list"}) == 0; }, milliseconds(20'000), milliseconds(200)));
  ASSERT_EQ(Ctl(*a, {"submit", JobFile("totals", out_a + "/totals", true)}), 0) << LastCtlLog();
  ASSERT_EQ(Ctl(*a, {"submit", JobFile("copy", out_a + "/copy", false)}), 0) << LastCtlLog();
  ASSERT_TRUE(testing::WaitUntil(
      [&] {
        std::optional<proto::JobInfo> t = a->DescribeJob("totals");
        std::optional<proto::JobInfo> c = a->DescribeJob("copy");
        return t && c && t->total_input() >= 4 * kRate && c->total_input() >= 4 * kRate;
      },
      milliseconds(60'000), milliseconds(200)));

  // Savepoints while the jobs run.
  const std::string sp_totals = dir_.Sub("sp-totals");
  const std::string sp_copy = dir_.Sub("sp-copy");
  const auto taking = std::chrono::steady_clock::now();
  ASSERT_EQ(Ctl(*a, {"savepoint", "totals", sp_totals}), 0) << LastCtlLog();
  const int64_t take_ms =
      std::chrono::duration_cast<milliseconds>(std::chrono::steady_clock::now() - taking).count();
  std::cout << LastCtlLog();
  ASSERT_EQ(Ctl(*a, {"savepoint", "copy", sp_copy}), 0) << LastCtlLog();
  ASSERT_TRUE(std::filesystem::exists(sp_totals + "/MANIFEST.json"));
  // Into a directory that is not empty: refused, nothing written.
  ASSERT_NE(Ctl(*a, {"savepoint", "totals", sp_totals}), 0);
  EXPECT_NE(LastCtlLog().find("is not empty"), std::string::npos) << LastCtlLog();

  // The jobs ran on past the savepoints; stop them.
  std::this_thread::sleep_for(seconds(2));
  ASSERT_EQ(Ctl(*a, {"stop", "totals"}), 0) << LastCtlLog();
  ASSERT_EQ(Ctl(*a, {"stop", "copy"}), 0) << LastCtlLog();
  // A stopped job's savepoint is as of its last committed batch.
  const std::string sp_stopped = dir_.Sub("sp-stopped");
  ASSERT_EQ(Ctl(*a, {"savepoint", "totals", sp_stopped}), 0) << LastCtlLog();
  {
    std::optional<proto::JobInfo> stopped = a->DescribeJob("totals");
    ASSERT_TRUE(stopped);
    EXPECT_NE(LastCtlLog().find(fmt::format("as of batch {} ", stopped->last_committed_batch())), std::string::npos)
        << LastCtlLog() << " vs " << stopped->ShortDebugString();
  }
  // A name that exists (stopped) is refused.
  ASSERT_NE(Ctl(*a, {"submit", "--from-savepoint", sp_totals}), 0);
  EXPECT_NE(LastCtlLog().find("exists"), std::string::npos) << LastCtlLog();

  // What the savepoints say, and A's totals as of the savepoint's batch.
  Result<std::string> manifest = testing::ReadFile(sp_totals + "/MANIFEST.json");
  ASSERT_TRUE(manifest.ok());
  proto::SavepointManifest m;
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(*manifest, &m).ok()) << *manifest;
  const int64_t saved_batch = m.last_committed_batch();
  const std::map<int32_t, int64_t> saved = PositionsOf(m.positions());
  ASSERT_EQ(saved.size(), static_cast<size_t>(kPartitions)) << *manifest;
  int64_t saved_events = 0;
  for (const auto& [p, o] : saved) saved_events += o;
  std::cout << fmt::format("savepoint of totals: batch {}, {} events read, {} state files, {} keys; took {} ms\n",
                           saved_batch, saved_events, m.state_files_size(), m.state_keys(), take_ms);
  ASSERT_GT(saved_events, 0);
  const Totals at_savepoint = LastTotals(out_a + "/totals", saved_batch);
  const Totals expected_at_savepoint = Expected(saved);
  EXPECT_EQ(at_savepoint.count, expected_at_savepoint.count) << "A's totals as of the savepoint's batch";
  EXPECT_GT(m.state_files_size(), 0);

  // Corrupt, cut short, or no manifest: refused before anything is sent.
  ASSERT_FALSE(m.state_files().empty());
  const std::string bad = dir_.Sub("sp-bad");
  const std::string cut = dir_.Sub("sp-cut");
  const std::string partial = dir_.Sub("sp-partial");
  for (const std::string& d : {bad, cut, partial}) {
    std::filesystem::copy(sp_totals, d, std::filesystem::copy_options::recursive);
  }
  const std::string state_file = m.state_files(0).file();
  {
    std::string data = *testing::ReadFile(bad + "/" + state_file);
    data[data.size() / 2] ^= 0x20;
    ASSERT_TRUE(testing::WriteFile(bad + "/" + state_file, data).ok());
    std::filesystem::resize_file(cut + "/" + state_file, std::filesystem::file_size(cut + "/" + state_file) - 3);
    std::filesystem::remove(partial + "/MANIFEST.json");
  }

  // Cluster B: its own ZooKeeper, drivers, workers and data.
  std::unique_ptr<LocalCluster> b = Start("b");
  ASSERT_TRUE(b);
  ASSERT_TRUE(testing::WaitUntil([&] { return Ctl(*b, {"list"}) == 0; }, milliseconds(20'000), milliseconds(200)));
  ASSERT_NE(Ctl(*b, {"submit", "--from-savepoint", bad}), 0);
  EXPECT_NE(LastCtlLog().find("SHA-256"), std::string::npos) << LastCtlLog();
  ASSERT_NE(Ctl(*b, {"submit", "--from-savepoint", cut}), 0);
  EXPECT_NE(LastCtlLog().find("truncated"), std::string::npos) << LastCtlLog();
  ASSERT_NE(Ctl(*b, {"submit", "--from-savepoint", partial}), 0);
  EXPECT_NE(LastCtlLog().find("not a whole savepoint"), std::string::npos) << LastCtlLog();
  EXPECT_FALSE(b->DescribeJob("totals").has_value()) << "a refused restore left a job";

  const auto restoring = std::chrono::steady_clock::now();
  // With job files of their own: the same jobs, writing under B's directory.
  const std::string out_b = dir_.Sub("b-out");
  ASSERT_EQ(Ctl(*b, {"submit", "--from-savepoint", sp_totals, JobFile("totals", out_b + "/totals", true)}), 0)
      << LastCtlLog();
  const int64_t restore_ms =
      std::chrono::duration_cast<milliseconds>(std::chrono::steady_clock::now() - restoring).count();
  ASSERT_TRUE(testing::WaitUntil(
      [&] {
        std::optional<proto::JobInfo> t = b->DescribeJob("totals");
        return t && t->last_committed_batch() > saved_batch;
      },
      milliseconds(30'000), milliseconds(50)));
  const int64_t first_batch_ms =
      std::chrono::duration_cast<milliseconds>(std::chrono::steady_clock::now() - restoring).count();
  ASSERT_EQ(Ctl(*b, {"submit", "--from-savepoint", sp_copy, JobFile("copy", out_b + "/copy", false)}), 0)
      << LastCtlLog();
  ASSERT_EQ(Ctl(*b, {"describe", "totals"}), 0);
  EXPECT_NE(LastCtlLog().find("from savepoint " + sp_totals + " at batch " + std::to_string(saved_batch)),
            std::string::npos)
      << LastCtlLog();
  ASSERT_TRUE(testing::WaitUntil(
      [&] {
        std::optional<proto::JobInfo> t = b->DescribeJob("totals");
        std::optional<proto::JobInfo> c = b->DescribeJob("copy");
        return t && c && t->total_input() >= 3 * kRate && c->total_input() >= 3 * kRate;
      },
      milliseconds(90'000), milliseconds(200)));
  const int64_t input_ms =
      std::chrono::duration_cast<milliseconds>(std::chrono::steady_clock::now() - restoring).count();
  ASSERT_EQ(Ctl(*b, {"stop", "totals"}), 0) << LastCtlLog();
  ASSERT_EQ(Ctl(*b, {"stop", "copy"}), 0) << LastCtlLog();
  std::optional<proto::JobInfo> totals_b = b->DescribeJob("totals");
  std::optional<proto::JobInfo> copy_b = b->DescribeJob("copy");
  ASSERT_TRUE(totals_b && copy_b);
  std::cout << fmt::format(
      "restore on B: submit --from-savepoint {} ms; to B's first committed batch {} ms; to {} events read on B {} "
      "ms (the generator's offsets on B come at its pace from its registration)\n",
      restore_ms, first_batch_ms, 3 * kRate, input_ms);
  EXPECT_LT(first_batch_ms, 15'000) << "B's first batch after the restore";

  // B's totals continue A's: each key's last total is its count over every
  // offset read, on A before the savepoint and on B after it.
  const std::map<int32_t, int64_t> end_b = PositionsOf(totals_b->positions());
  const Totals expected = Expected(end_b);
  std::map<std::string, int64_t> b_count;
  std::map<std::string, double> b_sum;
  int64_t b_lines = 0;
  for (const auto& [batch, line] : OutputLines(out_b + "/totals", totals_b->last_committed_batch())) {
    EXPECT_GT(batch, saved_batch) << "B wrote a batch at or before the savepoint's";
    const std::string key = KeyOf(line);
    b_count[key] = static_cast<int64_t>(NumberOf(FieldOf(line, "total")));
    b_sum[key] = NumberOf(FieldOf(line, "total_v"));
    ++b_lines;
  }
  int64_t events_b = 0;
  for (const auto& [p, o] : end_b) events_b += o - saved.at(p);
  std::cout << fmt::format("B read {} events after the savepoint, up to batch {}; {} lines of totals\n", events_b,
                           totals_b->last_committed_batch(), b_lines);
  ASSERT_GT(events_b, 0);
  int64_t wrong = 0;
  for (const auto& [key, n] : expected.count) {
    if (b_count[key] != n && wrong++ < 5) {
      ADD_FAILURE() << "running total of " << key << " on B: " << b_count[key] << ", expected " << n << " ("
                    << (at_savepoint.count.contains(key) ? at_savepoint.count.at(key) : 0) << " at the savepoint)";
    }
    if (std::abs(b_sum[key] - expected.sum.at(key)) > 1e-6 * std::max(1.0, expected.sum.at(key)) && wrong++ < 5) {
      ADD_FAILURE() << "running sum of " << key << " on B: " << b_sum[key] << ", expected " << expected.sum.at(key);
    }
  }
  EXPECT_EQ(wrong, 0);
  EXPECT_EQ(b_count.size(), expected.count.size());

  // The stateless job: on B exactly the events from the saved positions on.
  Result<std::string> copy_manifest = testing::ReadFile(sp_copy + "/MANIFEST.json");
  ASSERT_TRUE(copy_manifest.ok());
  proto::SavepointManifest cm;
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(*copy_manifest, &cm).ok());
  EXPECT_EQ(cm.state_files_size(), 0);
  const std::map<int32_t, int64_t> copy_saved = PositionsOf(cm.positions());
  const std::map<int32_t, int64_t> copy_end = PositionsOf(copy_b->positions());
  std::set<std::string> ids;
  int64_t twice = 0;
  for (const auto& [batch, line] : OutputLines(out_b + "/copy", copy_b->last_committed_batch())) {
    EXPECT_GT(batch, cm.last_committed_batch());
    // "0001-000000001167": partition 1, offset 1167
    const std::string id = Unquoted(FieldOf(line, "id"));
    const size_t dash = id.find('-');
    const std::string normal = dash == std::string::npos
                                   ? id
                                   : fmt::format("{}-{}", std::strtoll(id.substr(0, dash).c_str(), nullptr, 10),
                                                 std::strtoll(id.c_str() + dash + 1, nullptr, 10));
    if (!ids.insert(normal).second) ++twice;
  }
  EXPECT_EQ(twice, 0);
  std::set<std::string> expected_ids;
  for (const auto& [p, end] : copy_end) {
    for (int64_t o = copy_saved.at(p); o < end; ++o) expected_ids.insert(fmt::format("{}-{}", p, o));
  }
  std::cout << fmt::format("copy: savepoint at batch {}; B wrote {} events, expected {}\n", cm.last_committed_batch(),
                           ids.size(), expected_ids.size());
  EXPECT_GT(expected_ids.size(), 0u);
  std::vector<std::string> missing, extra;
  std::set_difference(expected_ids.begin(), expected_ids.end(), ids.begin(), ids.end(), std::back_inserter(missing));
  std::set_difference(ids.begin(), ids.end(), expected_ids.begin(), expected_ids.end(), std::back_inserter(extra));
  EXPECT_TRUE(missing.empty() && extra.empty())
      << "B's output of the stateless job is not exactly the events after the savepoint: " << missing.size()
      << " missing (first " << (missing.empty() ? "-" : missing[0]) << "), " << extra.size() << " extra (first "
      << (extra.empty() ? "-" : extra[0]) << ")";
}

}  // namespace
}  // namespace sluice
