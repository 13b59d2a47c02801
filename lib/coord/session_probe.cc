#include "lib/coord/session_probe.h"

#include "lib/coord/coordinator.h"
#include "lib/coord/zk_session.h"

namespace sluice::coord {

Result<std::unique_ptr<SessionProbe>> SessionProbe::Create(metrics::Registry* registry, Coordinator* coordinator) {
  std::unique_ptr<SessionProbe> p(new SessionProbe(registry, coordinator->zk_session()));
  if (p->session_ == nullptr) return p;
  ASSIGN_OR_RETURN(metrics::Family<metrics::Gauge> * connected,
                   registry->AddGauge("sluice_zk_session_connected",
                                      "1 while the ZooKeeper session is connected (and authenticated), else 0"));
  ASSIGN_OR_RETURN(metrics::Family<metrics::Counter> * expired,
                   registry->AddCounter("sluice_zk_session_expirations_total",
                                        "ZooKeeper sessions of this process that the server expired"));
  ASSIGN_OR_RETURN(metrics::Family<metrics::Counter> * lost,
                   registry->AddCounter("sluice_zk_session_disconnects_total",
                                        "Times the ZooKeeper connection was lost (the session may come back)"));
  ASSIGN_OR_RETURN(metrics::Family<metrics::Counter> * sessions,
                   registry->AddCounter("sluice_zk_sessions_total",
                                        "New ZooKeeper sessions this process made after its first"));
  p->connected_ = &connected->Get();
  p->expirations_ = &expired->Get();
  p->disconnects_ = &lost->Get();
  p->sessions_ = &sessions->Get();
  SessionProbe* raw = p.get();
  p->connected_->Set(p->session_->connected() ? 1 : 0);
  p->collector_ = registry->AddCollector([raw] { raw->connected_->Set(raw->session_->connected() ? 1 : 0); });
  // The session may call a listener just after RemoveListener (it calls
  // them outside its lock): the listener holds the counters, which live as
  // long as the registry, never the probe.
  p->listener_ = p->session_->AddListener([expirations = p->expirations_, disconnects = p->disconnects_,
                                           sessions = p->sessions_](ZkSession::Event e) {
    switch (e) {
      case ZkSession::Event::kExpired:
        expirations->Inc();
        break;
      case ZkSession::Event::kDisconnected:
        disconnects->Inc();
        break;
      case ZkSession::Event::kConnected:
        sessions->Inc();
        break;
      case ZkSession::Event::kReconnected:
        break;
    }
  });
  return p;
}

SessionProbe::~SessionProbe() {
  if (session_ == nullptr) return;
  session_->RemoveListener(listener_);
  registry_->RemoveCollector(collector_);
}

}  // namespace sluice::coord
