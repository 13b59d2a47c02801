#include "lib/state/state_probe.h"

#include <map>

#include "lib/state/state_store.h"

namespace sluice::state {

Result<std::unique_ptr<StateProbe>> StateProbe::Create(metrics::Registry* registry, StateStore* store,
                                                       JobOf job_of) {
  std::unique_ptr<StateProbe> p(new StateProbe(registry, store, std::move(job_of)));
  ASSIGN_OR_RETURN(p->partitions_, registry->AddGauge("sluice_state_partitions",
                                                      "Reduce partitions of the job whose state this worker holds",
                                                      {"job"}));
  ASSIGN_OR_RETURN(p->keys_, registry->AddGauge("sluice_state_keys",
                                                "Keys of the job's state held by this worker (owner and replica "
                                                "copies)",
                                                {"job"}));
  ASSIGN_OR_RETURN(p->bytes_, registry->AddGauge("sluice_state_bytes",
                                                 "Key and value bytes of the job's state held by this worker",
                                                 {"job"}));
  ASSIGN_OR_RETURN(metrics::Family<metrics::Gauge> * degraded,
                   registry->AddGauge("sluice_state_store_degraded", "1 while the state store refuses writes"));
  p->degraded_ = &degraded->Get();
  ASSIGN_OR_RETURN(metrics::Family<metrics::Gauge> * memory,
                   registry->AddGauge("sluice_state_store_memory_bytes",
                                      "Memory of the state store's RocksDB: block cache (with index and filter blocks) "
                                      "and memtables; within --state-memory-mb when set"));
  p->memory_ = &memory->Get();
  ASSIGN_OR_RETURN(metrics::Family<metrics::Gauge> * disk,
                   registry->AddGauge("sluice_state_disk_layout_bytes",
                                      "Approximate bytes of the state entries kept one per RocksDB key (the disk "
                                      "layout of --state-memory-mb), on disk and in memtables"));
  p->disk_ = &disk->Get();
  StateProbe* raw = p.get();
  p->collector_ = registry->AddCollector([raw] { raw->Collect(); });
  return p;
}

StateProbe::~StateProbe() { registry_->RemoveCollector(collector_); }

void StateProbe::Collect() {
  std::map<std::string, std::set<std::string>> names;  // job -> the store's names of its state
  if (Result<std::vector<std::pair<std::string, int32_t>>> parts = store_->Partitions(); parts.ok()) {
    for (const auto& [name, p] : *parts) names[job_of_ ? job_of_(name) : name].insert(name);
  }
  std::set<std::string> now;
  for (const auto& [job, of_job] : names) {
    StateStats sum;
    for (const std::string& name : of_job) {
      const StateStats s = store_->Stats(name);
      sum.partitions += s.partitions;
      sum.keys += s.keys;
      sum.bytes += s.bytes;
    }
    partitions_->With({job}).Set(static_cast<double>(sum.partitions));
    keys_->With({job}).Set(static_cast<double>(sum.keys));
    bytes_->With({job}).Set(static_cast<double>(sum.bytes));
    now.insert(job);
  }
  for (const std::string& gone : jobs_) {
    if (now.contains(gone)) continue;
    partitions_->Remove({gone});
    keys_->Remove({gone});
    bytes_->Remove({gone});
  }
  jobs_ = std::move(now);
  degraded_->Set(store_->health().degraded ? 1 : 0);
  memory_->Set(static_cast<double>(store_->MemoryBytes()));
  disk_->Set(static_cast<double>(store_->DiskLayoutBytes()));
}

}  // namespace sluice::state
