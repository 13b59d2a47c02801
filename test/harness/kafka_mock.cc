#include "test/harness/kafka_mock.h"

#include "test/harness/paths.h"
#include "test/harness/util.h"

namespace sluice::testing {

Result<std::unique_ptr<KafkaMock>> KafkaMock::Start(const std::string& dir,
                                                    const std::vector<KafkaTopic>& topics,
                                                    int brokers) {
  std::unique_ptr<KafkaMock> mock(new KafkaMock());
  const std::string ready = dir + "/kafka-mock.ready";
  std::vector<std::string> argv = {kKafkaMockPath, "--brokers", std::to_string(brokers),
                                   "--ready-file", ready};
  for (const KafkaTopic& t : topics) {
    argv.push_back("--topic");
    argv.push_back(fmt::format("{}:{}", t.name, t.partitions));
  }
  ASSIGN_OR_RETURN(mock->process_, Subprocess::Start(argv, {.log_path = dir + "/kafka-mock.log"}));
  bool ok = WaitUntil([&] { return ReadFile(ready).ok() || !mock->process_->Running(); },
                      std::chrono::seconds(20));
  Result<std::string> bootstrap = ReadFile(ready);
  if (!ok || !bootstrap.ok() || bootstrap->empty()) {
    return absl::UnavailableError(fmt::format("kafka-mock did not start; see {}/kafka-mock.log", dir));
  }
  mock->bootstrap_ = *bootstrap;
  return mock;
}

KafkaMock::~KafkaMock() {
  if (process_) process_->Stop(std::chrono::seconds(5));
}

}  // namespace sluice::testing
