#include "lib/wal/wal_probe.h"

#include "lib/wal/replicated_log.h"

namespace sluice::wal {

std::vector<double> CommitBuckets() {
  return {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};
}

Result<std::unique_ptr<WalProbe>> WalProbe::Create(metrics::Registry* registry, ReplicatedLog* log) {
  std::unique_ptr<WalProbe> p(new WalProbe(registry, log));
  ASSIGN_OR_RETURN(metrics::Family<metrics::Histogram> * commit,
                   registry->AddHistogram("sluice_wal_commit_seconds",
                                          "Leader: from an append to its commit on a quorum of the WAL group",
                                          CommitBuckets()));
  ASSIGN_OR_RETURN(metrics::Family<metrics::Counter> * appended,
                   registry->AddCounter("sluice_wal_appended_records_total",
                                        "Leader: records this driver appended and saw committed"));
  ASSIGN_OR_RETURN(metrics::Family<metrics::Gauge> * last,
                   registry->AddGauge("sluice_wal_last_seq", "The last record in this driver's WAL"));
  ASSIGN_OR_RETURN(metrics::Family<metrics::Gauge> * committed,
                   registry->AddGauge("sluice_wal_commit_seq", "The last record this driver knows committed"));
  ASSIGN_OR_RETURN(metrics::Family<metrics::Gauge> * serving,
                   registry->AddGauge("sluice_wal_serving", "1 while this driver's WAL takes appends (leader, caught up)"));
  ASSIGN_OR_RETURN(metrics::Family<metrics::Gauge> * degraded,
                   registry->AddGauge("sluice_wal_store_degraded", "1 while this driver's WAL store refuses writes"));
  ASSIGN_OR_RETURN(p->peer_lag_, registry->AddGauge("sluice_wal_peer_lag_records",
                                                    "Leader: records durable here and not yet acknowledged by "
                                                    "the standby `peer`",
                                                    {"peer"}));
  p->commit_seconds_ = &commit->Get();
  p->appended_ = &appended->Get();
  p->last_seq_ = &last->Get();
  p->commit_seq_ = &committed->Get();
  p->serving_ = &serving->Get();
  p->degraded_ = &degraded->Get();
  WalProbe* raw = p.get();
  p->collector_ = registry->AddCollector([raw] { raw->Collect(); });
  log->set_probe(raw);
  return p;
}

WalProbe::~WalProbe() {
  log_->set_probe(nullptr);
  registry_->RemoveCollector(collector_);
}

void WalProbe::Committed(int64_t records, double seconds) {
  commit_seconds_->Observe(seconds);
  appended_->Inc(static_cast<double>(records));
}

void WalProbe::Collect() {
  const WalStats s = log_->Stats();
  last_seq_->Set(static_cast<double>(s.last_seq));
  commit_seq_->Set(static_cast<double>(s.commit_seq));
  serving_->Set(s.serving ? 1 : 0);
  degraded_->Set(s.store.degraded ? 1 : 0);
  std::set<std::string> now;
  for (const WalPeerStats& peer : s.peers) {
    peer_lag_->With({peer.id}).Set(static_cast<double>(peer.lag));
    now.insert(peer.id);
  }
  for (const std::string& gone : peers_) {
    if (!now.contains(gone)) peer_lag_->Remove({gone});
  }
  peers_ = std::move(now);
}

}  // namespace sluice::wal
