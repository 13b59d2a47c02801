// Limits on the inputs of the job language: job files, expressions, plugin
// config and the JSON of events (docs/security.md "Limits on input").
//
// Module sluice::engine owns them. Every parser of the module checks its
// limit before it recurses or allocates in proportion to its input, so a
// malformed or hostile input is an INVALID_ARGUMENT naming the limit (a dead
// letter for an event), never a crash or an unbounded allocation.
//
// Pure functions and constants: thread-safe.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

#include "lib/common/status.h"
#include "proto/job.pb.h"

namespace sluice::engine {

// A job file's text (YAML or JSON).
inline constexpr size_t kMaxJobFileBytes = 1 << 20;
// Nesting of a job file's YAML: block indentation levels plus flow
// brackets ([ and {) open at once. Real job files nest 4 or 5 deep.
inline constexpr int kMaxJobFileDepth = 32;
// A job spec as submitted (the serialized JobSpec), however it was made.
inline constexpr size_t kMaxJobSpecBytes = 1 << 20;
// Rates (events/s) and batch bounds a job may set: far above any cluster,
// low enough that the leader's arithmetic on them cannot overflow.
inline constexpr int64_t kMaxRateSetting = 1'000'000'000'000;
// Operators of one job and inline sources of one job.
inline constexpr int kMaxOperators = 256;
// One expression's text (filter.expr, each value of map.fields).
inline constexpr size_t kMaxExprBytes = 8 << 10;
// An expression's nesting: parentheses, `not`, unary `-` and function calls
// open at once. Chains (a or b or c) do not nest; the length bounds them.
inline constexpr int kMaxExprDepth = 64;
// One plugin's config: the bytes of its keys and values together.
inline constexpr size_t kMaxPluginConfigBytes = 64 << 10;
// Nesting of objects and arrays in a JSON event (parse: {format: json}); a
// deeper event is a dead letter.
inline constexpr int kMaxJsonDepth = 64;

// INVALID_ARGUMENT "<file>: job file is N bytes, more than the limit of M"
// (or nested deeper than kMaxJobFileDepth, with the line) before any YAML
// parser sees `text`.
[[nodiscard]] Status CheckJobFileLimits(std::string_view text, std::string_view file);

// INVALID_ARGUMENT naming the field and the limit for a spec over any of the
// limits above (sizes and counts; expressions are checked by ParseExpr).
[[nodiscard]] Status CheckJobSpecLimits(const proto::JobSpec& spec);

}  // namespace sluice::engine
