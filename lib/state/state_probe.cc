#include "lib/state/state_probe.h"

#include "lib/state/state_store.h"

namespace sluice::state {

Result<std::unique_ptr<StateProbe>> StateProbe::Create(metrics::Registry* registry, StateStore* store) {
  std::unique_ptr<StateProbe> p(new StateProbe(registry, store));
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
  std::set<std::string> now;
  if (Result<std::vector<std::pair<std::string, int32_t>>> parts = store_->Partitions(); parts.ok()) {
    for (const auto& [job, p] : *parts) now.insert(job);
  }
  for (const std::string& job : now) {
    const StateStats s = store_->Stats(job);
    partitions_->With({job}).Set(static_cast<double>(s.partitions));
    keys_->With({job}).Set(static_cast<double>(s.keys));
    bytes_->With({job}).Set(static_cast<double>(s.bytes));
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
