// Status and Result<T>: the error type of every Sluice module.
//
// Module sluice::common owns it. They are Abseil's absl::Status and
// absl::StatusOr<T>, whose codes are gRPC's canonical codes, so an RPC error maps
// one to one (lib/rpc converts). The codes carry Abseil's retry meaning:
//   UNAVAILABLE          transient; retry the same call
//   ABORTED              retry the whole transaction (e.g. a lost CAS)
//   FAILED_PRECONDITION  the system is not in a state for this; do not retry
//                        (also: a stale leader epoch, docs/design.md, rule 4)
// No exception crosses a module boundary; both types are [[nodiscard]].
#pragma once

#include <string_view>
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "fmt/format.h"

namespace sluice {

using Status = absl::Status;
template <typename T>
using Result = absl::StatusOr<T>;

// Returns `s` with `context` prepended to its message ("context: message"), the
// code and payloads kept. OK stays OK.
[[nodiscard]] Status Annotate(const Status& s, std::string_view context);

// Swallows a status on purpose; the reason is for the reader.
inline void IgnoreError(const Status& /*s*/, const char* /*why*/) {}

}  // namespace sluice

#define SLUICE_CONCAT_INNER_(a, b) a##b
#define SLUICE_CONCAT_(a, b) SLUICE_CONCAT_INNER_(a, b)

// Returns from the current function if `expr` (a Status) is not OK.
#define RETURN_IF_ERROR(expr)                         \
  do {                                                \
    ::sluice::Status _sluice_st = (expr);             \
    if (!_sluice_st.ok()) return _sluice_st;          \
  } while (0)

// As RETURN_IF_ERROR, prefixing the error with `context`.
#define RETURN_IF_ERROR_PREPEND(expr, context)                         \
  do {                                                                 \
    ::sluice::Status _sluice_st = (expr);                              \
    if (!_sluice_st.ok()) return ::sluice::Annotate(_sluice_st, context); \
  } while (0)

// `ASSIGN_OR_RETURN(auto x, F())`: unwraps a Result or returns its error.
#define ASSIGN_OR_RETURN(lhs, expr) \
  ASSIGN_OR_RETURN_IMPL_(SLUICE_CONCAT_(_sluice_res_, __LINE__), lhs, expr)
#define ASSIGN_OR_RETURN_IMPL_(res, lhs, expr) \
  auto res = (expr);                           \
  if (!res.ok()) return res.status();          \
  lhs = std::move(res).value()
