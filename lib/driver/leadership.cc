#include "lib/driver/leadership.h"

#include "spdlog/spdlog.h"

namespace sluice::driver {

Leadership::Leadership(coord::Coordinator* coordinator, proto::LeaderInfo self,
                       wal::ReplicatedLog* log)
    : coordinator_(coordinator), self_(std::move(self)), log_(log) {}

Leadership::~Leadership() { Stop(); }

Status Leadership::Start() {
  log_->SetOnFenced([this](int64_t epoch) {
    log_->Abort();
    Push({Kind::kFenced, epoch});
  });
  {
    std::lock_guard<std::mutex> lock(mu_);
    RETURN_IF_ERROR(Enter());
  }
  thread_ = std::thread([this] { Loop(); });
  return absl::OkStatus();
}

Status Leadership::Enter() {
  auto elector = coordinator_->NewElector(self_);
  coord::LeaderElector* raw = elector.get();
  electors_.push_back(std::move(elector));
  elector_ = raw;  // before Start: its callbacks check it
  RETURN_IF_ERROR(raw->Start(
      {.elected =
           [this, raw](int64_t epoch) {
             spdlog::info("elected with epoch {}; catching up the WAL", epoch);
             if (elector_.load() == raw) Push({Kind::kElected, epoch, log_->abort_generation()});
           },
       .lost =
           [this, raw] {
             const int64_t lost_epoch = epoch();
             if (lost_epoch > 0) {
               spdlog::warn("lost the leadership of epoch {}: now STANDBY", lost_epoch);
             } else {
               spdlog::warn("now STANDBY");
             }
             if (elector_.load() != raw) return;
             log_->Abort();
             Push({Kind::kLost, 0});
           }}));
  return absl::OkStatus();
}

void Leadership::GiveUp(int64_t epoch, const std::string& why) {
  coord::LeaderElector* e = elector_.load();
  if (e == nullptr || e->epoch() != epoch) return;  // that term is over already
  spdlog::warn("giving up leadership of epoch {}: {}", epoch, why);
  log_->Abort();  // waiting appends fail now, not when the loop gets to it
  Push({Kind::kFenced, epoch});
}

void Leadership::Push(Event e) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    events_.push_back(e);
  }
  cv_.notify_all();
}

void Leadership::Loop() {
  while (true) {
    Event e;
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [&] { return stopping_ || !events_.empty(); });
      if (stopping_) return;
      e = events_.front();
      events_.pop_front();
    }
    switch (e.kind) {
      case Kind::kElected: {
        coord::LeaderElector* elector = elector_.load();
        if (elector == nullptr || elector->epoch() != e.epoch) break;  // a stale event
        Status st = log_->BecomeLeader(e.epoch, e.generation);
        if (st.ok()) {
          spdlog::info("now LEADER with epoch {}: the WAL serves", e.epoch);
        } else if (absl::IsFailedPrecondition(st) ||
                   (elector_.load() == elector && elector->IsLeader() && elector->epoch() == e.epoch)) {
          // Fenced, or the catch-up failed while we still hold the election
          // (a peer timed out, a read failed): no driver would serve this
          // term, so give it up and stand again.
          spdlog::warn("cannot serve epoch {} ({}); standing for election again", e.epoch,
                       st.ToString());
          Push({Kind::kFenced, e.epoch});
        }
        break;
      }
      case Kind::kLost:
        log_->StepDown();
        break;
      case Kind::kFenced: {
        log_->StepDown();
        std::lock_guard<std::mutex> lock(mu_);  // against Stop: no elector starts after it
        if (stopping_) break;
        coord::LeaderElector* old = elector_.exchange(nullptr);
        if (old != nullptr) old->Stop();
        Status st = Enter();
        if (!st.ok()) spdlog::error("cannot re-enter the election: {}", st.ToString());
        break;
      }
    }
  }
}

void Leadership::Stop() {
  coord::LeaderElector* e;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopping_) return;
    stopping_ = true;
    e = elector_.exchange(nullptr);
  }
  cv_.notify_all();
  if (e != nullptr) e->Stop();  // first: hand over at once (docs/design.md, rule 6)
  log_->Close();                // no term starts now, and a catch-up gives up
  if (thread_.joinable()) thread_.join();
  log_->StepDown();
  std::lock_guard<std::mutex> lock(mu_);
  electors_.clear();
}

bool Leadership::IsLeader() const {
  coord::LeaderElector* e = elector_.load();
  return e != nullptr && e->IsLeader();
}

int64_t Leadership::epoch() const {
  coord::LeaderElector* e = elector_.load();
  return e != nullptr ? e->epoch() : 0;
}

}  // namespace sluice::driver
