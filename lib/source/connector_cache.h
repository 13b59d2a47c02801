// ConnectorCache: source connectors kept by source, for code that reads now
// one source, now another (an executor recomputing lost blocks), so that a
// connector's consumers are reused rather than made per block.
//
// Module sluice::source owns it. Bounded: at most `capacity` connectors, the
// least recently used dropped first (a connector in use stays alive until
// its user lets go). A spec that differs from the cached one under the same
// name replaces it.
//
// Thread-safe.
#pragma once

#include <cstdint>
#include <list>
#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "lib/common/clock.h"
#include "lib/common/status.h"
#include "lib/source/source_connector.h"

namespace sluice::source {

class ConnectorCache {
 public:
  // `clock` must outlive the cache and the connectors it hands out.
  explicit ConnectorCache(Clock* clock, size_t capacity = 8) : clock_(clock), capacity_(capacity) {}

  // The connector of `spec`, made on first use (SourceConnector::Create's errors).
  [[nodiscard]] Result<std::shared_ptr<SourceConnector>> Get(const proto::SourceSpec& spec);

  size_t size() const;

 private:
  struct Entry {
    std::string spec;  // serialised
    std::shared_ptr<SourceConnector> connector;
  };
  Clock* const clock_;
  const size_t capacity_;
  mutable absl::Mutex mu_;
  std::list<Entry> entries_ ABSL_GUARDED_BY(mu_);  // most recently used first
};

}  // namespace sluice::source
