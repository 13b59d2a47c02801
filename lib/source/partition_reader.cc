#include "lib/source/partition_reader.h"

#include <thread>

namespace sluice::source {
namespace {

class GeneratorReader final : public PartitionReader {
 public:
  GeneratorReader(const GeneratorSource* g, int32_t p) : g_(g), p_(p) {}
  Result<int64_t> ReadInto(int64_t max_records, int timeout_ms, format::BlockBuilder* builder) override {
    int64_t n = g_->ReadInto(p_, INT64_MAX, max_records, builder);
    if (n == 0 && timeout_ms > 0) {
      // Paced and caught up: wait a little for the next events.
      std::this_thread::sleep_for(std::chrono::milliseconds(std::min(timeout_ms, 5)));
      n = g_->ReadInto(p_, INT64_MAX, max_records, builder);
    }
    return n;
  }
  bool replayable() const override { return true; }

 private:
  const GeneratorSource* g_;
  const int32_t p_;
};

class KafkaReader final : public PartitionReader {
 public:
  KafkaReader(KafkaSource* k, int32_t p) : k_(k), p_(p) {}
  Result<int64_t> ReadInto(int64_t max_records, int timeout_ms, format::BlockBuilder* builder) override {
    return k_->ReadInto(p_, INT64_MAX, max_records, timeout_ms, builder);
  }
  bool replayable() const override { return true; }
  int64_t EndOffset() const override { return k_->CachedHighWatermark(p_); }

 private:
  KafkaSource* k_;
  const int32_t p_;
};

}  // namespace

std::unique_ptr<PartitionReader> NewGeneratorReader(const GeneratorSource* generator, int32_t partition) {
  return std::make_unique<GeneratorReader>(generator, partition);
}

std::unique_ptr<PartitionReader> NewKafkaReader(KafkaSource* kafka, int32_t partition) {
  return std::make_unique<KafkaReader>(kafka, partition);
}

}  // namespace sluice::source
