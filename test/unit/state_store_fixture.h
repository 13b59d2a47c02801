// The fixture of the StateStore unit tests (state_store_test.cc,
// state_copy_test.cc): a store in a fresh directory, in the layout the test
// parameter names (false: in memory; true: on disk, a budget of 16 MiB).
#pragma once

#include <stdlib.h>

#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "gtest/gtest.h"
#include "lib/state/state_store.h"

namespace sluice::state {

inline Change Put(std::string key, std::string value) { return Change{std::move(key), std::move(value)}; }
inline Change Erase(std::string key) { return Change{std::move(key), std::nullopt}; }

// Every test runs over both layouts: in memory (no budget) and on disk (a
// budget of 16 MiB).
class StateStoreTest : public ::testing::TestWithParam<bool> {
 protected:
  void SetUp() override {
    std::string templ = ::testing::TempDir() + "/sluice-state-XXXXXX";
    ASSERT_NE(::mkdtemp(templ.data()), nullptr);
    dir_ = templ;
    Reopen();
  }
  void TearDown() override {
    store_.reset();
    std::filesystem::remove_all(dir_);
  }
  void Reopen() {
    store_.reset();
    auto s = StateStore::Open(dir_ + "/state", nullptr, Options());
    ASSERT_TRUE(s.ok()) << s.status();
    store_ = std::move(*s);
  }

  StateStoreOptions Options() const { return {.memory_budget_bytes = GetParam() ? int64_t{16} << 20 : 0}; }
  void ReopenWith(int64_t budget) {
    store_.reset();
    auto s = StateStore::Open(dir_ + "/state", nullptr, {.memory_budget_bytes = budget});
    ASSERT_TRUE(s.ok()) << s.status();
    store_ = std::move(*s);
  }

  bool Prepare(const std::string& job, int32_t p, int64_t base) {
    Result<bool> r = store_->Prepare(job, p, base);
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() && *r;
  }
  void Delta(const std::string& job, int32_t p, int64_t batch, std::vector<Change> changes) {
    Status s = store_->WriteDelta(job, p, batch, changes);
    ASSERT_TRUE(s.ok()) << s;
  }
  std::optional<std::string> Get(const std::string& job, int32_t p, std::string_view key) {
    auto r = store_->Get(job, p, key);
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() ? *r : std::nullopt;
  }
  std::optional<int64_t> Folded(const std::string& job, int32_t p) {
    auto r = store_->FoldedBatch(job, p);
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() ? *r : std::nullopt;
  }
  std::vector<std::pair<std::string, std::string>> All(const std::string& job, int32_t p,
                                                       std::string_view prefix = "") {
    std::vector<std::pair<std::string, std::string>> out;
    Status s = store_->Scan(job, p, prefix, [&](std::string_view k, std::string_view v) {
      out.emplace_back(k, v);
      return true;
    });
    EXPECT_TRUE(s.ok()) << s;
    return out;
  }

  std::string dir_;
  std::unique_ptr<StateStore> store_;
};

inline std::string LayoutName(const ::testing::TestParamInfo<bool>& info) { return info.param ? "Disk" : "Memory"; }

}  // namespace sluice::state
