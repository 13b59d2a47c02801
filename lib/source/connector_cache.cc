#include "lib/source/connector_cache.h"

#include <vector>

#include "google/protobuf/io/coded_stream.h"
#include "google/protobuf/io/zero_copy_stream_impl_lite.h"

namespace sluice::source {

Result<std::shared_ptr<SourceConnector>> ConnectorCache::Get(const proto::SourceSpec& spec) {
  // Deterministic: map fields (Kafka properties) in key order, so one spec
  // always finds its connector.
  std::string key;
  {
    google::protobuf::io::StringOutputStream stream(&key);
    google::protobuf::io::CodedOutputStream coded(&stream);
    coded.SetSerializationDeterministic(true);
    spec.SerializeToCodedStream(&coded);
  }
  std::vector<std::shared_ptr<SourceConnector>> dropped;  // released after the lock
  absl::MutexLock lock(&mu_);
  for (auto it = entries_.begin(); it != entries_.end(); ++it) {
    if (it->spec == key) {
      entries_.splice(entries_.begin(), entries_, it);
      return entries_.front().connector;
    }
    if (it->connector->spec().name() == spec.name()) {
      // Another spec under this name: the old one goes.
      dropped.push_back(std::move(it->connector));
      entries_.erase(it);
      break;
    }
  }
  ASSIGN_OR_RETURN(std::unique_ptr<SourceConnector> made, SourceConnector::Create(spec, clock_));
  entries_.push_front({key, std::move(made)});
  if (entries_.size() > capacity_) {
    dropped.push_back(std::move(entries_.back().connector));
    entries_.pop_back();
  }
  return entries_.front().connector;
}

size_t ConnectorCache::size() const {
  absl::MutexLock lock(&mu_);
  return entries_.size();
}

}  // namespace sluice::source
