#include "lib/worker/receiver.h"

#include <future>

#include "spdlog/spdlog.h"

namespace sluice::worker {

Receiver::Receiver(ReceiverOptions options, std::unique_ptr<source::PartitionReader> reader,
                   BlockStore* store, Reporter reporter, Clock* clock)
    : options_(std::move(options)),
      reader_(std::move(reader)),
      store_(store),
      reporter_(std::move(reporter)),
      clock_(clock),
      rate_limit_per_s_(options_.rate_limit_per_s),
      max_block_offsets_(options_.max_block_offsets) {
  stats_.next_offset = options_.start_offset;
  stats_.rate_limit_per_s = options_.rate_limit_per_s;
}

Receiver::~Receiver() { Stop(); }

void Receiver::Start() { thread_ = std::thread([this] { Run(); }); }

void Receiver::Stop() {
  stop_ = true;
  if (thread_.joinable()) thread_.join();
}

ReceiverStats Receiver::Stats() const {
  std::lock_guard<std::mutex> lock(mu_);
  ReceiverStats out = stats_;
  out.end_offset = end_offset_.load(std::memory_order_relaxed);
  return out;
}

void Receiver::SetLimits(int64_t rate_limit_per_s, int64_t max_block_offsets) {
  rate_limit_per_s_ = std::max<int64_t>(0, rate_limit_per_s);
  max_block_offsets_ = std::max<int64_t>(0, max_block_offsets);
  std::lock_guard<std::mutex> lock(mu_);
  stats_.rate_limit_per_s = rate_limit_per_s_;
}

int64_t Receiver::Allowance() {
  const int64_t rate = rate_limit_per_s_.load();
  const Clock::TimePoint now = clock_->Now();
  const double elapsed = refilled_ == Clock::TimePoint{} ? 0 : std::chrono::duration<double>(now - refilled_).count();
  refilled_ = now;
  if (rate <= 0) {
    tokens_ = 0;
    return INT64_MAX;
  }
  // At most one block interval's worth saved up: an idle spell does not
  // turn into a burst past the limit.
  const double burst = std::max(1.0, static_cast<double>(rate) *
                                         std::chrono::duration<double>(options_.block_interval).count());
  tokens_ = std::min(burst, tokens_ + elapsed * static_cast<double>(rate));
  return static_cast<int64_t>(tokens_);
}

namespace {

bool IsPause(const Status& st) { return absl::IsResourceExhausted(st) || absl::IsUnavailable(st) ||
                                        absl::IsDeadlineExceeded(st); }

}  // namespace

void Receiver::Run() {
  Status end = RunLoop();
  std::lock_guard<std::mutex> lock(mu_);
  stats_.stopped = true;
  stats_.paused = false;
  if (!end.ok()) {
    spdlog::error("receiver {}[{}] stopped: {}", options_.source, options_.partition, end.ToString());
    stats_.error = std::move(end);
  }
}

Status Receiver::RunLoop() {
  format::BlockBuilder builder(options_.source, options_.partition, options_.start_offset);
  std::chrono::milliseconds backoff(50);
  std::future<Status> in_flight;  // durable: the block being written
  while (!stop_) {
    // READING: until the block interval is over, or the block is full.
    const auto cut_at = clock_->Now() + options_.block_interval;
    auto room = [&] {
      int64_t left = options_.max_block_records - builder.records();
      if (const int64_t max_offsets = max_block_offsets_.load(); max_offsets > 0) {
        left = std::min(left, max_offsets - (builder.next_offset() - builder.start_offset()));
      }
      return left;
    };
    while (!stop_ && clock_->Now() < cut_at && room() > 0) {
      const int64_t budget = Allowance();
      if (budget <= 0) {
        clock_->SleepFor(std::chrono::milliseconds(2));
        continue;
      }
      const int64_t allowed = std::min(room(), budget);
      const int64_t dead_before = builder.dead_letters();
      Result<int64_t> n = reader_->ReadInto(std::min<int64_t>(allowed, 10'000), 20, &builder);
      if (!n.ok() && absl::IsUnavailable(n.status())) {
        // A broker that is down: retry with backoff; nothing is skipped, the
        // next read starts at the same offset.
        spdlog::warn("receiver {}[{}]: {}; retrying in {} ms", options_.source, options_.partition,
                     n.status().ToString(), backoff.count());
        clock_->SleepFor(backoff);
        backoff = std::min(backoff * 2, std::chrono::milliseconds(2000));
        continue;
      }
      if (!n.ok()) return n.status();
      if (const int64_t end = reader_->EndOffset(); end >= 0) end_offset_.store(end, std::memory_order_relaxed);
      backoff = std::chrono::milliseconds(50);
      if (budget != INT64_MAX) tokens_ -= static_cast<double>(*n);
      if (builder.dead_letters() != dead_before) NoteDeadLetters(builder, dead_before);
    }
    if (builder.empty()) continue;
    format::Block block = builder.Cut();
    builder.Reserve(block.bytes());  // the next block is likely as large
    if (!options_.durable) {
      RETURN_IF_ERROR(Hand(std::move(block)));
      continue;
    }
    // A durable block's synced write overlaps reading the next one; at most
    // one is in flight, so blocks are still stored and reported in order.
    if (in_flight.valid()) RETURN_IF_ERROR(in_flight.get());
    in_flight = std::async(std::launch::async, [this, b = std::move(block)]() mutable { return Hand(std::move(b)); });
  }
  if (in_flight.valid()) RETURN_IF_ERROR(in_flight.get());
  return absl::OkStatus();
}

// CUT, then PAUSED while the store has no room or the reporter says wait:
// the block is held, and reading stops at the next cut.
Status Receiver::Hand(format::Block block) {
  const HeldBlock held{block.lineage(), block.records(), block.bytes(), options_.durable};
  bool paused = false;
  auto pause = [&] {
    if (!paused) {
      paused = true;
      std::lock_guard<std::mutex> lock(mu_);
      stats_.paused = true;
      ++stats_.pauses;
    }
    clock_->SleepFor(std::chrono::milliseconds(10));
  };
  bool stored = false, put_here = false;
  while (!stop_) {
    Status st = store_->Put(&block, options_.durable);
    if (st.ok() || absl::IsAlreadyExists(st)) {  // exists: the same block, e.g. a replica of it
      stored = true;
      put_here = st.ok();
      break;
    }
    if (!IsPause(st)) return st;
    pause();
  }
  bool reported = false;
  while (stored && !stop_) {
    Status st = reporter_(held);
    if (st.ok()) {
      reported = true;
      break;
    }
    if (!IsPause(st)) {
      // Refused for good: the block will never be reported; free its room.
      if (put_here) store_->Drop({held.lineage.source, held.lineage.partition, held.lineage.start_offset});
      return st;
    }
    pause();
  }
  if (!reported) {
    // Stopped while paused: the block was never reported; do not leave it
    // behind to hold budget (the partition's next owner reads it again).
    if (put_here) store_->Drop({held.lineage.source, held.lineage.partition, held.lineage.start_offset});
    return absl::OkStatus();
  }
  std::lock_guard<std::mutex> lock(mu_);
  stats_.paused = false;
  ++stats_.blocks;
  stats_.records += held.records;
  stats_.next_offset = held.lineage.end_offset;
  return absl::OkStatus();
}

void Receiver::NoteDeadLetters(const format::BlockBuilder& builder, int64_t before) {
  const int64_t now = builder.dead_letters();
  // Every dead letter is counted; the log shows the first ten and then one in
  // a thousand, so a flood of bad input cannot flood the log.
  if (before < 10 || now / 1000 != before / 1000) {
    spdlog::warn("receiver {}[{}]: dead letter #{} at {}", options_.source, options_.partition, now,
                 builder.last_dead_letter());
  }
  std::lock_guard<std::mutex> lock(mu_);
  stats_.dead_letters = now;
  stats_.last_dead_letter = builder.last_dead_letter();
}

}  // namespace sluice::worker
