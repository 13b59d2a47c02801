// Expressions of job files: `filter.expr` and the values of `map.fields`.
//
// Module sluice::engine owns the language (docs/jobs.md):
//
//   expr    := or
//   or      := and ("or" and)*
//   and     := not ("and" not)*
//   not     := "not" not | compare
//   compare := sum (("==" | "!=" | "<" | "<=" | ">" | ">=") sum)?
//   sum     := product (("+" | "-") product)*
//   product := unary (("*" | "/" | "%") unary)*
//   unary   := "-" unary | primary
//   primary := number | 'string' | "string" | true | false | null
//            | field | function "(" expr ("," expr)* ")" | "(" expr ")"
//   field   := name ("." name)*        (a missing field is null)
//   function:= contains | starts_with | ends_with | lower | upper | length
//
// Values are null, booleans, numbers (double) and strings. Comparing a
// number with a string, or anything with null, is false (`!=` true);
// arithmetic on a non-number is null; `and`/`or`/`not` treat null as false.
// Parse() checks names and arity, so a job with a bad expression is refused
// at submit time with the column of the mistake; and the limits of
// limits.h (kMaxExprBytes of text, kMaxExprDepth of nesting) before it
// recurses, so no input can exhaust its stack.
//
// An Expr is immutable after Parse: thread-safe to Eval from many threads.
#pragma once

#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "lib/common/status.h"

namespace sluice::engine {

struct Null {
  bool operator==(const Null&) const = default;
};
// Strings are views: into the event being evaluated, or the expression's
// own literals; both outlive one Eval. Functions that make new strings
// (lower, upper) keep them in `scratch` (a deque: views into it stay valid as
// it grows).
using Value = std::variant<Null, bool, double, std::string_view>;

// Looks up a field of the current event ("a.b" for nested); Null if missing.
using FieldLookup = std::function<Value(std::string_view name)>;

class Expr {
 public:
  virtual ~Expr() = default;
  virtual Value Eval(const FieldLookup& fields, std::deque<std::string>* scratch) const = 0;
  // The fields it reads, for the planner and error messages.
  virtual void Fields(std::vector<std::string>* out) const = 0;
};

// INVALID_ARGUMENT "column N: ..." for a malformed expression.
[[nodiscard]] Result<std::unique_ptr<Expr>> ParseExpr(std::string_view text);

// Truthiness for filters: true only for `true`, a non-zero number, a
// non-empty string.
bool Truthy(const Value& v);

}  // namespace sluice::engine
