// A savepoint's files (lib/ctl/savepoint.h): what is written reads back
// whole; a non-empty directory is refused; a flipped byte, a cut file, a
// missing manifest and an unknown format are refused with the reason.
#include "lib/ctl/savepoint.h"

#include <stdlib.h>

#include <filesystem>
#include <fstream>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace sluice::ctl {
namespace {

using ::testing::HasSubstr;

class SavepointFilesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string templ = ::testing::TempDir() + "/sluice-savepoint-XXXXXX";
    ASSERT_NE(::mkdtemp(templ.data()), nullptr);
    root_ = templ;
  }
  void TearDown() override { std::filesystem::remove_all(root_); }

  // A header and two partitions' state (partition 1 in two chunks).
  Status Take(const std::function<void(proto::SavepointChunk&&)>& consume) {
    proto::SavepointChunk h;
    h.mutable_header()->set_format(kSavepointFormat);
    h.mutable_header()->set_job_id("totals");
    h.mutable_header()->mutable_spec()->set_name("totals");
    h.mutable_header()->mutable_start()->set_last_committed_batch(42);
    proto::SourceOffset* o = h.mutable_header()->mutable_start()->add_offsets();
    o->set_source("clicks");
    o->set_offset(1234);
    consume(std::move(h));
    for (auto [p, n, last] : {std::tuple{0, 3, true}, std::tuple{1, 2, false}, std::tuple{1, 1, true}}) {
      proto::SavepointChunk c;
      c.mutable_state()->set_partition(p);
      c.mutable_state()->set_base_batch(42);
      c.mutable_state()->set_snapshot(true);
      c.mutable_state()->set_last(last);
      for (int i = 0; i < n; ++i) {
        proto::StateEntry* e = c.mutable_state()->add_entries();
        e->set_key("k" + std::to_string(p) + std::to_string(i) + (last ? "b" : "a"));
        e->set_value(std::string(100, 'v'));
      }
      consume(std::move(c));
    }
    return absl::OkStatus();
  }

  std::string root_;
};

TEST_F(SavepointFilesTest, WrittenReadsBackAndDamageIsRefused) {
  const std::string dir = root_ + "/sp";
  Result<proto::SavepointManifest> m = WriteSavepoint(dir, [&](const auto& consume) { return Take(consume); });
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_EQ(m->last_committed_batch(), 42);
  ASSERT_EQ(m->state_files_size(), 2);
  EXPECT_EQ(m->state_files(1).chunks(), 2);
  EXPECT_EQ(m->state_files(1).entries(), 3);
  for (const auto& f : std::filesystem::directory_iterator(dir)) {
    EXPECT_FALSE(f.path().filename().string().starts_with(".")) << "a temporary file left: " << f.path();
  }
  Result<LoadedSavepoint> read = ReadSavepoint(dir);
  ASSERT_TRUE(read.ok()) << read.status();
  EXPECT_EQ(read->header.job_id(), "totals");
  EXPECT_EQ(read->header.start().offsets(0).offset(), 1234);
  ASSERT_EQ(read->state.size(), 3u);
  EXPECT_EQ(read->state[2].partition(), 1);
  EXPECT_TRUE(read->state[2].last());
  EXPECT_THAT(DescribeSavepoint(dir, *m), HasSubstr("clicks/0@1234"));

  // Not into a directory that has files.
  Result<proto::SavepointManifest> again = WriteSavepoint(dir, [&](const auto& consume) { return Take(consume); });
  EXPECT_TRUE(absl::IsFailedPrecondition(again.status())) << again.status();
  EXPECT_THAT(again.status().message(), HasSubstr("not empty"));

  // A leader that fails midway leaves no savepoint.
  const std::string failed = root_ + "/failed";
  Result<proto::SavepointManifest> broken = WriteSavepoint(failed, [&](const auto& consume) {
    proto::SavepointChunk h;
    h.mutable_header()->set_format(kSavepointFormat);
    consume(std::move(h));
    return absl::UnavailableError("job totals reduce partition 3: no live holder");
  });
  EXPECT_TRUE(absl::IsUnavailable(broken.status())) << broken.status();
  EXPECT_THAT(ReadSavepoint(failed).status().message(), HasSubstr("not a whole savepoint"));

  const std::string state_file = dir + "/" + m->state_files(1).file();
  std::string bytes;
  {
    std::ifstream in(state_file, std::ios::binary);
    bytes.assign(std::istreambuf_iterator<char>(in), {});
  }
  auto rewrite = [&](const std::string& data) {
    std::ofstream(state_file, std::ios::binary | std::ios::trunc) << data;
  };
  std::string flipped = bytes;
  flipped[flipped.size() / 2] ^= 1;
  rewrite(flipped);
  EXPECT_THAT(ReadSavepoint(dir).status().message(), HasSubstr("SHA-256"));
  rewrite(bytes.substr(0, bytes.size() - 1));
  EXPECT_THAT(ReadSavepoint(dir).status().message(), HasSubstr("truncated"));
  rewrite(bytes);
  ASSERT_TRUE(ReadSavepoint(dir).ok());

  // A format this release does not know.
  const std::string manifest = dir + "/" + kSavepointManifest;
  std::string json;
  {
    std::ifstream in(manifest);
    json.assign(std::istreambuf_iterator<char>(in), {});
  }
  const size_t at = json.find("\"format\": 1");
  ASSERT_NE(at, std::string::npos) << json;
  std::string future = json;
  future.replace(at, 11, "\"format\": 2");
  std::ofstream(manifest, std::ios::trunc) << future;
  EXPECT_THAT(ReadSavepoint(dir).status().message(), HasSubstr("format 2"));
}

}  // namespace
}  // namespace sluice::ctl
