#include "lib/driver/driver_log.h"

namespace sluice::driver {

Result<int64_t> DriverLog::Append(const proto::DriverRecord& record) {
  return log_->Append(record.SerializeAsString());
}

Result<int64_t> DriverLog::AppendBatch(const std::vector<proto::DriverRecord>& records) {
  std::vector<std::string> payloads;
  payloads.reserve(records.size());
  for (const proto::DriverRecord& r : records) payloads.push_back(r.SerializeAsString());
  return log_->AppendBatch(std::move(payloads));
}

}  // namespace sluice::driver
