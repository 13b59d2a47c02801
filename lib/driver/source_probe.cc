#include "lib/driver/source_probe.h"

#include "lib/driver/cluster_state.h"
#include "lib/driver/leadership.h"

namespace sluice::driver {

Result<std::unique_ptr<SourceProbe>> SourceProbe::Create(metrics::Registry* registry, Leadership* leadership,
                                                         ClusterState* state) {
  std::unique_ptr<SourceProbe> p(new SourceProbe(registry, leadership, state));
  ASSIGN_OR_RETURN(p->lost_offsets_,
                   registry->AddCounter("sluice_source_lost_offsets_total",
                                        "Offsets of a source partition the source no longer held, skipped "
                                        "(on_data_loss: skip, or sluicectl source reset) and recorded",
                                        {"source", "partition"}));
  SourceProbe* raw = p.get();
  p->collector_ = registry->AddCollector([raw] { raw->Collect(); });
  return p;
}

SourceProbe::~SourceProbe() { registry_->RemoveCollector(collector_); }

void SourceProbe::Collect() {
  const std::shared_ptr<const proto::ClusterState> view = state_->View();
  const bool serving = leadership_ == nullptr || leadership_->Serving();
  std::lock_guard<std::mutex> lock(mu_);
  std::set<std::pair<std::string, int32_t>> now;
  if (serving) {
    for (const auto& [name, source] : view->sources()) {
      for (const proto::PartitionState& ps : source.partitions()) {
        now.emplace(name, ps.partition());
        lost_offsets_->With({name, std::to_string(ps.partition())})
            .RaiseTo(static_cast<double>(ps.lost_offsets()));
      }
    }
  }
  for (const auto& [name, partition] : exported_) {
    if (!now.contains({name, partition})) lost_offsets_->Remove({name, std::to_string(partition)});
  }
  exported_ = std::move(now);
}

}  // namespace sluice::driver
