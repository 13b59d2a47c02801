// KafkaMock: the project's Kafka-protocol mock broker (test/tools/kafka_mock.cc)
// run as a separate process on loopback, for tests.
//
// Part of sluice::test_harness. Mind the mock's limits (PLATFORM.md): about
// 5 MiB kept per partition, so tests consume while producing or pace the
// producer; transactions are not isolated. Thread-compatible.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "lib/common/status.h"
#include "test/harness/subprocess.h"

namespace sluice::testing {

struct KafkaTopic {
  std::string name;
  int partitions = 1;
};

class KafkaMock {
 public:
  // Starts the mock with `topics` created; its log is <dir>/kafka-mock.log.
  [[nodiscard]] static Result<std::unique_ptr<KafkaMock>> Start(const std::string& dir,
                                                                const std::vector<KafkaTopic>& topics,
                                                                int brokers = 1);
  ~KafkaMock();

  // "127.0.0.1:port[,...]" for bootstrap.servers.
  const std::string& bootstrap() const { return bootstrap_; }
  Subprocess& process() { return *process_; }

 private:
  KafkaMock() = default;
  std::unique_ptr<Subprocess> process_;
  std::string bootstrap_;
};

}  // namespace sluice::testing
