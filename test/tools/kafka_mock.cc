// kafka-mock: a Kafka-protocol broker cluster on loopback, for tests and the demo.
//
// There is no Kafka broker package in Debian 12; librdkafka's mock cluster
// (rdkafka_mock.h) speaks the real wire protocol, so every librdkafka client
// (and kcat) reaches it like a broker. Limits (PLATFORM.md): about 5 MiB kept
// per partition, transactions not isolated.
//
//   kafka-mock --topic events:8 [--topic out:4] [--brokers 1] [--ready-file F]
//
// Prints "bootstrap=<host:port,...>" on stdout once the topics exist (and
// writes the bootstrap list to the ready file, atomically), then runs until
// SIGINT or SIGTERM.
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#include <cstdio>
#include <iostream>
#include <string>
#include <vector>

#include "CLI/CLI.hpp"
#include "lib/common/config.h"
#include "lib/common/signals.h"

int main(int argc, char** argv) {
  sluice::BlockTerminationSignals();
  CLI::App app("Kafka-protocol mock broker cluster on loopback (librdkafka)", "kafka-mock");
  std::vector<std::string> topics;
  int brokers = 1;
  std::string ready_file;
  app.add_option("--topic", topics, "Topic to create, NAME:PARTITIONS (repeatable)");
  app.add_option("--brokers", brokers, "Number of brokers")->capture_default_str();
  app.add_option("--ready-file", ready_file, "File to write the bootstrap list to when ready");
  if (std::optional<int> code = sluice::ParseCommandLine(app, argc, argv)) return *code;
  if (brokers < 1) {
    std::cerr << "kafka-mock: error: --brokers must be >= 1\n";
    return sluice::kExitUsage;
  }

  char errstr[512];
  rd_kafka_conf_t* conf = rd_kafka_conf_new();
  rd_kafka_conf_set(conf, "log_level", "4", errstr, sizeof(errstr));
  rd_kafka_t* rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
  if (rk == nullptr) {
    std::cerr << "kafka-mock: error: rd_kafka_new: " << errstr << "\n";
    return 1;
  }
  rd_kafka_mock_cluster_t* mcluster = rd_kafka_mock_cluster_new(rk, brokers);
  if (mcluster == nullptr) {
    std::cerr << "kafka-mock: error: cannot create the mock cluster\n";
    return 1;
  }
  for (const std::string& spec : topics) {
    size_t colon = spec.rfind(':');
    int partitions = 0;
    if (colon == std::string::npos || colon == 0 ||
        (partitions = std::atoi(spec.c_str() + colon + 1)) < 1) {
      std::cerr << "kafka-mock: error: --topic '" << spec << "' is not NAME:PARTITIONS\n";
      return sluice::kExitUsage;
    }
    std::string name = spec.substr(0, colon);
    rd_kafka_resp_err_t err =
        rd_kafka_mock_topic_create(mcluster, name.c_str(), partitions, std::min(brokers, 3));
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
      std::cerr << "kafka-mock: error: creating topic " << name << ": " << rd_kafka_err2str(err) << "\n";
      return 1;
    }
  }
  std::string bootstrap = rd_kafka_mock_cluster_bootstraps(mcluster);
  if (!ready_file.empty()) {
    std::string tmp = ready_file + ".tmp";
    FILE* f = std::fopen(tmp.c_str(), "w");
    if (f == nullptr || std::fputs(bootstrap.c_str(), f) < 0 || std::fclose(f) != 0 ||
        std::rename(tmp.c_str(), ready_file.c_str()) != 0) {
      std::cerr << "kafka-mock: error: cannot write " << ready_file << "\n";
      return 1;
    }
  }
  std::cout << "bootstrap=" << bootstrap << std::endl;

  int sig = sluice::WaitForTerminationSignal();
  std::cerr << "kafka-mock: signal " << sig << ", stopping\n";
  rd_kafka_mock_cluster_destroy(mcluster);
  rd_kafka_destroy(rk);
  return 0;
}
