// Unit tests of the job expression language (lib/engine/expr.h).
#include "lib/engine/expr.h"

#include <map>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace sluice::engine {
namespace {

using ::testing::HasSubstr;

// Evaluates `text` against an event given as field -> value.
Value Eval(const std::string& text, const std::map<std::string, Value>& event = {}) {
  static std::vector<std::unique_ptr<Expr>> keep;  // string results view into literals
  static std::deque<std::string> scratch;
  Result<std::unique_ptr<Expr>> e = ParseExpr(text);
  EXPECT_TRUE(e.ok()) << text << ": " << e.status();
  if (!e.ok()) return Null{};
  keep.push_back(std::move(*e));
  return keep.back()->Eval(
      [&](std::string_view name) {
        auto it = event.find(std::string(name));
        return it == event.end() ? Value(Null{}) : it->second;
      },
      &scratch);
}

std::string ErrorOf(const std::string& text) {
  Result<std::unique_ptr<Expr>> e = ParseExpr(text);
  EXPECT_FALSE(e.ok()) << text;
  return e.ok() ? "" : std::string(e.status().message());
}

TEST(ExprTest, ComparesNumbersAndStringsAndCombinesWithAndOrNot) {
  const std::map<std::string, Value> ev = {{"country", std::string_view("NL")}, {"amount", 12.5}, {"vip", true}};
  EXPECT_EQ(Eval("country == 'NL' and amount > 10", ev), Value(true));
  EXPECT_EQ(Eval("country == \"DE\" or amount >= 12.5", ev), Value(true));
  EXPECT_EQ(Eval("not vip", ev), Value(false));
  EXPECT_EQ(Eval("not (amount < 5) and country != 'BE'", ev), Value(true));
  EXPECT_EQ(Eval("amount * 2 - 5 == 20", ev), Value(true));
  EXPECT_EQ(Eval("1 + 2 * 3", ev), Value(7.0));  // precedence
  EXPECT_EQ(Eval("-amount < 0", ev), Value(true));
  EXPECT_EQ(Eval("7 % 4", ev), Value(3.0));
}

TEST(ExprTest, MissingFieldsAndMixedTypesAreNeverEqual) {
  const std::map<std::string, Value> ev = {{"n", 1.0}, {"s", std::string_view("1")}};
  EXPECT_EQ(Eval("missing == 1", ev), Value(false));
  EXPECT_EQ(Eval("missing != 1", ev), Value(true));
  EXPECT_EQ(Eval("n == s", ev), Value(false));  // a number is not a string
  EXPECT_EQ(Eval("missing + 1", ev), Value(Null{}));
  EXPECT_EQ(Eval("n / 0", ev), Value(Null{}));
  EXPECT_EQ(Eval("missing == null", ev), Value(false));  // null equals nothing
  EXPECT_FALSE(Truthy(Eval("missing and true", ev)));
}

TEST(ExprTest, StringFunctions) {
  const std::map<std::string, Value> ev = {{"url", std::string_view("https://example.org/cart")},
                                           {"user.name", std::string_view("Ada")}};
  EXPECT_EQ(Eval("contains(url, 'example')", ev), Value(true));
  EXPECT_EQ(Eval("starts_with(url, 'http:')", ev), Value(false));
  EXPECT_EQ(Eval("ends_with(url, '/cart')", ev), Value(true));
  EXPECT_EQ(Eval("lower(user.name) == 'ada'", ev), Value(true));
  EXPECT_EQ(Eval("length(user.name)", ev), Value(3.0));
  EXPECT_EQ(Eval("contains(missing, 'x')", ev), Value(false));
}

TEST(ExprTest, MistakesNameTheirColumn) {
  EXPECT_THAT(ErrorOf("amount > "), HasSubstr("column 10: expected a value, found end of expression"));
  EXPECT_THAT(ErrorOf("country = 'NL'"), HasSubstr("column 9: '=' is not an operator; compare with '=='"));
  EXPECT_THAT(ErrorOf("regon('x')"), HasSubstr("column 1: unknown function 'regon'"));
  EXPECT_THAT(ErrorOf("contains(url)"), HasSubstr("contains() takes 2 arguments, not 1"));
  EXPECT_THAT(ErrorOf("'open"), HasSubstr("column 1: unterminated string"));
  EXPECT_THAT(ErrorOf("(a > 1"), HasSubstr("expected ')'"));
  EXPECT_THAT(ErrorOf("a > 1 b"), HasSubstr("column 7: unexpected 'b'"));
  EXPECT_THAT(ErrorOf("and a"), HasSubstr("'and' needs a value before it"));
  EXPECT_THAT(ErrorOf("  "), HasSubstr("empty"));
  EXPECT_THAT(ErrorOf("a # b"), HasSubstr("column 3: unexpected '#'"));
}

}  // namespace
}  // namespace sluice::engine
