// SessionProbe: the coordination session's metrics — whether the ZooKeeper
// session is connected now, and how often it was expired, lost and made
// anew (each new session drops the ephemeral registrations).
//
// Module sluice::coord owns it; each daemon makes one on its registry for
// its coordinator. With the standalone coordinator (no ZooKeeper) it
// registers nothing. The gauge is read at each scrape; the counters are
// counted by a session listener.
//
// Thread-safe.
#pragma once

#include <memory>

#include "lib/common/status.h"
#include "lib/metrics/metrics.h"

namespace sluice::coord {

class Coordinator;
class ZkSession;

class SessionProbe {
 public:
  // `coordinator` must outlive the probe.
  [[nodiscard]] static Result<std::unique_ptr<SessionProbe>> Create(metrics::Registry* registry,
                                                                    Coordinator* coordinator);
  ~SessionProbe();
  SessionProbe(const SessionProbe&) = delete;
  SessionProbe& operator=(const SessionProbe&) = delete;

 private:
  SessionProbe(metrics::Registry* registry, ZkSession* session) : registry_(registry), session_(session) {}

  metrics::Registry* const registry_;
  ZkSession* const session_;  // null: standalone
  int collector_ = 0;
  int listener_ = 0;
  metrics::Gauge* connected_ = nullptr;
  metrics::Counter* expirations_ = nullptr;
  metrics::Counter* disconnects_ = nullptr;
  metrics::Counter* sessions_ = nullptr;
};

}  // namespace sluice::coord
