// Unit tests of lib/common/status.h macros and helpers.
#include "lib/common/status.h"

#include "gtest/gtest.h"
#include "lib/common/fs.h"

namespace sluice {
namespace {

Result<int> Half(int x) {
  if (x % 2 != 0) return absl::InvalidArgumentError("odd");
  return x / 2;
}

Result<int> Quarter(int x) {
  ASSIGN_OR_RETURN(int h, Half(x));
  ASSIGN_OR_RETURN(int q, Half(h));
  return q;
}

Status CheckEven(int x) {
  RETURN_IF_ERROR_PREPEND(Half(x).status(), "checking " + std::to_string(x));
  return absl::OkStatus();
}

TEST(Status, AssignOrReturnPropagates) {
  EXPECT_EQ(*Quarter(8), 2);
  EXPECT_EQ(Quarter(6).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(Status, PrependAddsContextKeepsCode) {
  Status st = CheckEven(3);
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(st.message(), "checking 3: odd");
  EXPECT_TRUE(CheckEven(4).ok());
  EXPECT_TRUE(Annotate(absl::OkStatus(), "x").ok());
}

TEST(Status, AnnotateKeepsPayloads) {
  Status st = absl::UnavailableError("no answer");
  st.SetPayload("type.sluice/peers", absl::Cord("worker-2"));
  const Status annotated = Annotate(st, "copying");
  EXPECT_EQ(annotated.message(), "copying: no answer");
  ASSERT_TRUE(annotated.GetPayload("type.sluice/peers").has_value());
  EXPECT_EQ(std::string(*annotated.GetPayload("type.sluice/peers")), "worker-2");
}

TEST(ValidateId, AcceptsAndRejects) {
  EXPECT_TRUE(ValidateId("driver-1.a_b", "id").ok());
  for (const char* bad : {"", ".hidden", "a/b", "a b", "ü"}) {
    EXPECT_EQ(ValidateId(bad, "id").code(), absl::StatusCode::kInvalidArgument) << bad;
  }
  EXPECT_FALSE(ValidateId(std::string(65, 'a'), "id").ok());
}

}  // namespace
}  // namespace sluice
