// DataPath's part in losses of source data (docs/data-path.md "When the
// source loses data"): a partition whose receiver found offsets gone is
// recorded as a SourceDataLost and goes on (on_data_loss: skip), or stays
// stopped with the lost range named (fail) until sluicectl source reset,
// which records the skipped range and a PartitionReset.
//
// The lost range is always taken from the log, never from the worker: it
// starts at the partition's next offset (where the next accepted block must
// start) and ends at the first offset the source still holds, so accepted
// blocks and lost ranges cover the partition with no gap and no overlap.
#include <charconv>
#include <optional>
#include <vector>

#include "lib/common/logging.h"
#include "lib/driver/cluster_state.h"
#include "lib/driver/data_path.h"
#include "lib/driver/driver_log.h"
#include "lib/driver/leadership.h"
#include "lib/source/source_connector.h"
#include "spdlog/spdlog.h"

namespace sluice::driver {

DataPath::~DataPath() = default;

Result<source::SourceConnector*> DataPath::ConnectorOf(const proto::SourceSpec& spec) {
  std::lock_guard<std::mutex> lock(connectors_mu_);
  auto it = connectors_.find(spec.name());
  if (it == connectors_.end()) {
    ASSIGN_OR_RETURN(std::unique_ptr<source::SourceConnector> made, source::SourceConnector::Create(spec, clock_));
    it = connectors_.emplace(spec.name(), std::move(made)).first;
  }
  return it->second.get();
}

Status DataPath::AppendLoss(const std::string& source, int32_t partition, int64_t from, int64_t to,
                            const std::string& reason, bool by_reset) {
  proto::DriverRecord record;
  proto::SourceDataLost* lost = record.mutable_source_data_lost();
  lost->set_source(source);
  lost->set_partition(partition);
  lost->set_from_offset(from);
  lost->set_to_offset(to);
  lost->set_reason(reason);
  lost->set_detected_unix_ms(clock_->UnixMillis());
  lost->set_by_reset(by_reset);
  Result<int64_t> seq = log_->Append(record);
  if (!seq.ok()) {
    std::lock_guard<std::mutex> lock(mu_);
    term_ = 0;  // an append fails only when the term ends (see AppendBlocks)
    return seq.status();
  }
  return absl::OkStatus();
}

void DataPath::ResolveLosses(int64_t epoch) {
  struct Loss {
    proto::SourceSpec spec;
    int32_t partition = 0;
    std::string error;
    int64_t lost_at = -1;
  };
  std::vector<Loss> losses;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (term_ != epoch) return;
    for (const auto& [name, s] : sources_) {
      for (size_t i = 0; i < s.partitions.size(); ++i) {
        const Partition& p = s.partitions[i];
        if (p.data_lost) losses.push_back({s.spec, static_cast<int32_t>(i), p.error, p.lost_at});
      }
    }
  }
  for (const Loss& loss : losses) {
    const std::string& name = loss.spec.name();
    // Asked outside every lock: the brokers may be slow.
    Result<source::SourceConnector*> connector = ConnectorOf(loss.spec);
    Result<std::pair<int64_t, int64_t>> held =
        connector.ok() ? (*connector)->HeldRange(loss.partition) : Result<std::pair<int64_t, int64_t>>(connector.status());
    if (!held.ok() && absl::IsUnavailable(held.status())) {
      SLUICE_LOG_EVERY(std::chrono::seconds(5), spdlog::level::warn, "source {}[{}]: asking what it still holds: {}",
                       name, loss.partition, held.status().ToString());
      continue;  // the next round asks again
    }
    std::lock_guard<std::mutex> append(append_mu_);
    if (!leadership_->Serving() || leadership_->epoch() != epoch) return;
    const std::shared_ptr<const proto::ClusterState> view = log_->View();
    const proto::PartitionState* ps = FindPartitionState(*view, name, loss.partition);
    if (ps == nullptr) continue;
    const int64_t from = ps->next_offset() >= 0 ? ps->next_offset() : loss.lost_at;
    std::string error;
    if (!held.ok()) {
      error = fmt::format("{}; the source cannot say what it holds: {}", loss.error, held.status().ToString());
    } else if (from < 0 || held->first <= from) {
      // The source holds the next offset: nothing can be skipped (a gap
      // inside what it holds, e.g. a compacted topic).
      error = fmt::format("{}; the source holds {}..{}, from the partition's next offset {}: nothing to skip; "
                          "sluicectl source reset {} {} --to OFFSET goes on elsewhere",
                          loss.error, held->first, held->second, from, name, loss.partition);
    } else if (source::SkipsLostData(loss.spec)) {
      const std::string reason = loss.error;
      if (Status st = AppendLoss(name, loss.partition, from, held->first, reason, false); !st.ok()) {
        spdlog::warn("source {}[{}]: recording the loss of offsets {}..{}: {}", name, loss.partition, from,
                     held->first - 1, st.ToString());
        return;
      }
      spdlog::warn("source {}[{}]: offsets {}..{} ({} offsets) are gone from the source; on_data_loss is skip: "
                   "recorded, reading goes on at {}",
                   name, loss.partition, from, held->first - 1, held->first - from, held->first);
      std::lock_guard<std::mutex> lock(mu_);
      if (Partition* p = FindLocked(name, loss.partition); p != nullptr && term_ == epoch) {
        p->error.clear();  // assigned again next round, at the new next offset
        p->data_lost = false;
      }
      continue;
    } else {
      error = fmt::format("offsets {}..{} are gone from the source (it holds {}..{}); on_data_loss is fail: "
                          "`sluicectl source reset {} {} --to earliest` skips them ({})",
                          from, held->first - 1, held->first, held->second, name, loss.partition, loss.error);
    }
    spdlog::error("source {}[{}] FAILED: {}", name, loss.partition, error);
    std::lock_guard<std::mutex> lock(mu_);
    if (Partition* p = FindLocked(name, loss.partition); p != nullptr && term_ == epoch) {
      p->error = std::move(error);
      p->data_lost = false;
    }
  }
}

namespace {

// `to` as a number: the whole of it, not negative.
std::optional<int64_t> ParseOffset(const std::string& to) {
  int64_t v = 0;
  const char* end = to.data() + to.size();
  auto [ptr, ec] = std::from_chars(to.data(), end, v);
  if (ec != std::errc() || ptr != end || v < 0) return std::nullopt;
  return v;
}

}  // namespace

Result<proto::ResetPartitionResponse> DataPath::ResetPartition(const proto::ResetPartitionRequest& request) {
  const std::string& name = request.source();
  const std::string& to = request.to();
  if (!leadership_->Serving()) {
    return absl::UnavailableError(fmt::format("driver {} is not the serving leader", driver_id_));
  }
  const int64_t epoch = leadership_->epoch();
  proto::SourceSpec spec;
  {
    std::lock_guard<std::mutex> lock(mu_);
    EnsureTermLocked(epoch);
    auto it = sources_.find(name);
    if (it == sources_.end()) return absl::NotFoundError(fmt::format("no source '{}'", name));
    spec = it->second.spec;
  }
  if (request.partition() < 0 || request.partition() >= spec.partitions()) {
    return absl::InvalidArgumentError(fmt::format("source '{}' has partitions 0..{}; there is no partition {}", name,
                                                  spec.partitions() - 1, request.partition()));
  }
  const std::optional<int64_t> number = ParseOffset(to);
  if (!number && to != "earliest" && to != "latest") {
    return absl::InvalidArgumentError(fmt::format("--to '{}' is not earliest, latest or an offset", to));
  }
  std::pair<int64_t, int64_t> held{-1, -1};
  if (!number) {
    ASSIGN_OR_RETURN(source::SourceConnector * connector, ConnectorOf(spec));
    ASSIGN_OR_RETURN(held, connector->HeldRange(request.partition()));
  }
  std::lock_guard<std::mutex> append(append_mu_);
  if (!leadership_->Serving() || leadership_->epoch() != epoch) {
    return absl::UnavailableError(fmt::format("driver {} is no longer the serving leader", driver_id_));
  }
  const std::shared_ptr<const proto::ClusterState> view = log_->View();
  const proto::PartitionState* ps = FindPartitionState(*view, name, request.partition());
  if (ps == nullptr) return absl::NotFoundError(fmt::format("no partition {} of source '{}'", request.partition(), name));
  const int64_t next = ps->next_offset();
  int64_t target = 0;
  if (number) {
    target = *number;
  } else if (to == "latest") {
    target = held.second;
  } else {
    target = std::max(held.first, next);  // the next offset, if it is still held
  }
  if (next >= 0 && target < next) {
    return absl::FailedPreconditionError(fmt::format(
        "--to {} is before the partition's next offset {}: offsets already read are not read again", target, next));
  }
  std::vector<proto::DriverRecord> records;
  if (next >= 0 && target > next) {
    proto::SourceDataLost* lost = records.emplace_back().mutable_source_data_lost();
    lost->set_source(name);
    lost->set_partition(request.partition());
    lost->set_from_offset(next);
    lost->set_to_offset(target);
    lost->set_reason(fmt::format("sluicectl source reset --to {}", to));
    lost->set_detected_unix_ms(clock_->UnixMillis());
    lost->set_by_reset(true);
  }
  proto::PartitionReset* reset = records.emplace_back().mutable_partition_reset();
  reset->set_source(name);
  reset->set_partition(request.partition());
  reset->set_to_offset(target);
  reset->set_to(to);
  reset->set_reset_unix_ms(clock_->UnixMillis());
  Result<int64_t> seq = log_->AppendBatch(records);
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!seq.ok()) {
      term_ = 0;  // see AppendBlocks
      return seq.status();
    }
    if (Partition* p = FindLocked(name, request.partition()); p != nullptr && term_ == epoch) {
      // Assigned again next round at the new next offset; a receiver still
      // running at the old one has its next block refused and restarts there.
      p->error.clear();
      p->data_lost = false;
    }
  }
  spdlog::warn("source {}[{}] reset --to {}: from offset {} to {}{}", name, request.partition(), to, next, target,
               next >= 0 && target > next ? fmt::format(" ({} offsets skipped, recorded)", target - next) : "");
  proto::ResetPartitionResponse response;
  response.set_from_offset(next);
  response.set_to_offset(target);
  return response;
}

}  // namespace sluice::driver
