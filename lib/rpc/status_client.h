// GetDriverStatus / GetWorkerStatus: one GetStatus call to a daemon, with a
// deadline — what sluicectl, the test harness and the benchmarks ask.
//
// Module sluice::rpc owns it. Thread-safe (a channel per call).
#pragma once

#include <chrono>
#include <string>

#include "lib/common/status.h"
#include "proto/driver.pb.h"
#include "proto/worker.pb.h"

namespace sluice::rpc {

[[nodiscard]] Result<proto::DriverStatus> GetDriverStatus(const std::string& address,
                                                          std::chrono::milliseconds deadline);
[[nodiscard]] Result<proto::WorkerStatus> GetWorkerStatus(const std::string& address,
                                                          std::chrono::milliseconds deadline);

}  // namespace sluice::rpc
