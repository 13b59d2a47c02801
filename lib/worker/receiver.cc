#include "lib/worker/receiver.h"

#include "spdlog/spdlog.h"

namespace sluice::worker {

Receiver::Receiver(ReceiverOptions options, std::unique_ptr<source::PartitionReader> reader,
                   BlockStore* store, Reporter reporter, Clock* clock)
    : options_(std::move(options)),
      reader_(std::move(reader)),
      store_(store),
      reporter_(std::move(reporter)),
      clock_(clock) {
  stats_.next_offset = options_.start_offset;
}

Receiver::~Receiver() { Stop(); }

void Receiver::Start() { thread_ = std::thread([this] { Run(); }); }

void Receiver::Stop() {
  stop_ = true;
  if (thread_.joinable()) thread_.join();
}

ReceiverStats Receiver::Stats() const {
  std::lock_guard<std::mutex> lock(mu_);
  return stats_;
}

void Receiver::Run() {
  source::BlockBuilder builder(options_.source, options_.partition, options_.start_offset);
  const auto started = clock_->Now();
  int64_t read_total = 0;
  while (!stop_) {
    // READING: until the block interval is over.
    const auto cut_at = clock_->Now() + options_.block_interval;
    while (!stop_ && clock_->Now() < cut_at && builder.records() < options_.max_block_records) {
      int64_t allowed = options_.max_block_records - builder.records();
      if (options_.rate_limit_per_s > 0) {
        const double elapsed = std::chrono::duration<double>(clock_->Now() - started).count();
        const int64_t budget = static_cast<int64_t>(elapsed * options_.rate_limit_per_s) - read_total;
        if (budget <= 0) {
          clock_->SleepFor(std::chrono::milliseconds(2));
          continue;
        }
        allowed = std::min(allowed, budget);
      }
      Result<int64_t> n = reader_->ReadInto(std::min<int64_t>(allowed, 10'000), 20, &builder);
      if (!n.ok()) {
        spdlog::error("receiver {}[{}] stopped: {}", options_.source, options_.partition,
                      n.status().ToString());
        std::lock_guard<std::mutex> lock(mu_);
        stats_.error = n.status();
        return;
      }
      read_total += *n;
    }
    if (builder.records() == 0) continue;
    // CUT, then PAUSED while the store has no room: hold the block, read nothing.
    source::Block block = builder.Cut();
    builder.Reserve(block.bytes());  // the next block is likely as large
    const source::BlockLineage lineage = block.lineage();
    const int64_t records = block.records();
    bool paused = false;
    while (!stop_) {
      Status st = store_->Put(&block);
      if (st.ok()) break;
      if (!absl::IsResourceExhausted(st)) {
        std::lock_guard<std::mutex> lock(mu_);
        stats_.error = st;
        return;
      }
      if (!paused) {
        paused = true;
        std::lock_guard<std::mutex> lock(mu_);
        stats_.paused = true;
        ++stats_.pauses;
      }
      clock_->SleepFor(std::chrono::milliseconds(10));
    }
    if (stop_) return;
    {
      std::lock_guard<std::mutex> lock(mu_);
      stats_.paused = false;
      ++stats_.blocks;
      stats_.records += records;
      stats_.next_offset = lineage.end_offset;
    }
    reporter_(lineage);
  }
}

}  // namespace sluice::worker
