#include "lib/coord/standalone_coordinator.h"

#include <fcntl.h>
#include <unistd.h>

#include <fstream>

#include "spdlog/spdlog.h"

namespace sluice::coord {
namespace {

Status WriteEpochFile(const std::string& path, int64_t epoch) {
  const std::string tmp = path + ".tmp";
  const std::string text = std::to_string(epoch) + "\n";
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return absl::FailedPreconditionError(fmt::format("cannot write {}", tmp));
  bool ok = ::write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size()) &&
            ::fsync(fd) == 0;
  ::close(fd);
  if (!ok || ::rename(tmp.c_str(), path.c_str()) != 0) {
    return absl::FailedPreconditionError(fmt::format("cannot write {}", path));
  }
  return absl::OkStatus();
}

}  // namespace

Result<std::shared_ptr<StandaloneGroup>> StandaloneGroup::Create(std::string epoch_file) {
  int64_t last = 0;
  if (!epoch_file.empty()) {
    std::ifstream in(epoch_file);
    if (in && !(in >> last)) {
      return absl::DataLossError(fmt::format("{} does not hold an epoch", epoch_file));
    }
  }
  return std::shared_ptr<StandaloneGroup>(new StandaloneGroup(std::move(epoch_file), last));
}

StandaloneGroup::~StandaloneGroup() = default;

void StandaloneGroup::ElectLocked() {
  if (candidates_.empty() || candidates_.front().leading) return;
  Candidate& c = candidates_.front();
  ++epoch_;
  if (!epoch_file_.empty()) {
    Status st = WriteEpochFile(epoch_file_, epoch_);
    if (!st.ok()) {
      // Never lead with an epoch that a restart could hand out again.
      spdlog::error("standalone election: {}; not leading", st.ToString());
      return;
    }
  }
  c.leading = true;
  c.info.set_epoch(epoch_);
  spdlog::info("standalone election: {} leads with epoch {}", c.info.id(), epoch_);
  auto elected = c.callbacks.elected;
  int64_t e = epoch_;
  if (elected) executor_.Post([elected, e] { elected(e); });
  NotifyLeaderLocked();
}

int StandaloneGroup::AddCandidate(proto::LeaderInfo self, LeaderElector::Callbacks callbacks) {
  std::lock_guard<std::mutex> lock(mu_);
  self.set_epoch(0);
  int id = next_id_++;
  candidates_.push_back(Candidate{id, std::move(self), std::move(callbacks)});
  ElectLocked();
  if (candidates_.size() == 1) NotifyLeaderLocked();
  return id;
}

void StandaloneGroup::RemoveCandidate(int id) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = std::find_if(candidates_.begin(), candidates_.end(),
                         [&](const Candidate& c) { return c.id == id; });
  if (it == candidates_.end()) return;
  if (it->leading && it->callbacks.lost) executor_.Post(it->callbacks.lost);
  candidates_.erase(it);
  ElectLocked();
  NotifyLeaderLocked();
}

bool StandaloneGroup::Leads(int id) {
  std::lock_guard<std::mutex> lock(mu_);
  return !candidates_.empty() && candidates_.front().id == id && candidates_.front().leading;
}

int64_t StandaloneGroup::Epoch(int id) {
  std::lock_guard<std::mutex> lock(mu_);
  for (const Candidate& c : candidates_) {
    if (c.id == id) return c.info.epoch();
  }
  return 0;
}

std::optional<proto::LeaderInfo> StandaloneGroup::Leader() {
  std::lock_guard<std::mutex> lock(mu_);
  if (candidates_.empty()) return std::nullopt;
  return candidates_.front().info;
}

void StandaloneGroup::NotifyLeaderLocked() {
  std::optional<proto::LeaderInfo> leader;
  if (!candidates_.empty()) leader = candidates_.front().info;
  for (const auto& l : leader_listeners_) executor_.Post([l, leader] { l(leader); });
}

void StandaloneGroup::WatchLeader(LeaderDetector::Listener listener) {
  std::lock_guard<std::mutex> lock(mu_);
  std::optional<proto::LeaderInfo> leader;
  if (!candidates_.empty()) leader = candidates_.front().info;
  executor_.Post([listener, leader] { listener(leader); });
  leader_listeners_.push_back(std::move(listener));
}

Status StandaloneGroup::Join(Group group, const proto::MemberInfo& self) {
  std::lock_guard<std::mutex> lock(mu_);
  auto [it, inserted] = members_[group].emplace(self.id(), self);
  if (!inserted) {
    return absl::AlreadyExistsError(
        fmt::format("{} id '{}' is already registered", GroupName(group), self.id()));
  }
  NotifyMembersLocked(group);
  return absl::OkStatus();
}

void StandaloneGroup::Leave(Group group, const std::string& id) {
  std::lock_guard<std::mutex> lock(mu_);
  if (members_[group].erase(id) > 0) NotifyMembersLocked(group);
}

std::vector<proto::MemberInfo> StandaloneGroup::Members(Group group) {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<proto::MemberInfo> out;
  for (const auto& [id, m] : members_[group]) out.push_back(m);
  return out;
}

void StandaloneGroup::NotifyMembersLocked(Group group) {
  std::vector<proto::MemberInfo> members;
  for (const auto& [id, m] : members_[group]) members.push_back(m);
  for (const auto& l : member_listeners_[group]) executor_.Post([l, members] { l(members); });
}

void StandaloneGroup::WatchMembers(Group group, Membership::Listener listener) {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<proto::MemberInfo> members;
  for (const auto& [id, m] : members_[group]) members.push_back(m);
  executor_.Post([listener, members] { listener(members); });
  member_listeners_[group].push_back(std::move(listener));
}

Status StandaloneGroup::JoinLeased(Group group, const proto::MemberInfo& self, std::chrono::milliseconds lease) {
  std::lock_guard<std::mutex> lock(mu_);
  auto& leases = leases_[group];
  auto& members = members_[group];
  auto member = members.find(self.id());
  auto held = leases.find(self.id());
  if (member != members.end() && held == leases.end()) {
    return absl::AlreadyExistsError(
        fmt::format("{} id '{}' is already registered", GroupName(group), self.id()));
  }
  if (lease.count() <= 0) {
    if (held != leases.end()) {
      leases.erase(held);
      members.erase(self.id());
      spdlog::info("standalone membership: {} left {}", self.id(), GroupName(group));
      NotifyMembersLocked(group);
    }
    return absl::OkStatus();
  }
  leases[self.id()] = std::chrono::steady_clock::now() + lease;
  if (member == members.end() || member->second.SerializeAsString() != self.SerializeAsString()) {
    if (member == members.end()) {
      spdlog::info("standalone membership: {} at {} joined {}", self.id(), self.rpc_address(), GroupName(group));
    }
    members[self.id()] = self;
    NotifyMembersLocked(group);
  }
  std::string id = self.id();
  executor_.PostAfter(lease + std::chrono::milliseconds(10), [this, group, id] { ExpireLease(group, id); });
  return absl::OkStatus();
}

void StandaloneGroup::ExpireLease(Group group, const std::string& id) {
  std::lock_guard<std::mutex> lock(mu_);
  auto& leases = leases_[group];
  auto held = leases.find(id);
  if (held == leases.end() || held->second > std::chrono::steady_clock::now()) return;
  leases.erase(held);
  members_[group].erase(id);
  spdlog::warn("standalone membership: {}'s lease in {} lapsed", id, GroupName(group));
  NotifyMembersLocked(group);
}

Status StandaloneRemoteMembership::Join(const proto::MemberInfo& self) {
  std::lock_guard<std::mutex> lock(mu_);
  if (thread_.joinable()) return absl::FailedPreconditionError("already joined");
  stopping_ = false;
  thread_ = std::thread([this, self] { Loop(self); });
  return absl::OkStatus();
}

void StandaloneRemoteMembership::Loop(proto::MemberInfo self) {
  const auto every = std::min(std::chrono::milliseconds(1000), lease_ / 3);
  bool joined = false;
  int failures = 0;
  std::unique_lock<std::mutex> lock(mu_);
  while (!stopping_) {
    lock.unlock();
    Status st = join_(which_, self, lease_);
    if (st.ok() && !joined) {
      spdlog::info("joined the {} group at the standalone driver {}", GroupName(which_), driver_);
    } else if (!st.ok() && joined) {
      spdlog::warn("renewing the {} membership at the standalone driver {}: {}", GroupName(which_), driver_,
                   st.ToString());
    } else if (!st.ok() && failures++ % 50 == 0) {
      spdlog::warn("joining the {} group at the standalone driver {}: {}", GroupName(which_), driver_,
                    st.ToString());
    }
    joined = st.ok();
    if (joined) failures = 0;
    lock.lock();
    cv_.wait_for(lock, joined ? every : std::chrono::milliseconds(200), [this] { return stopping_; });
  }
  lock.unlock();
  if (joined) {
    Status st = join_(which_, self, std::chrono::milliseconds(0));  // leave at once
    if (!st.ok()) spdlog::debug("leaving the {} group: {}", GroupName(which_), st.ToString());
  }
}

void StandaloneRemoteMembership::Leave() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

Result<std::vector<proto::MemberInfo>> StandaloneRemoteMembership::Members() {
  return absl::FailedPreconditionError(
      fmt::format("in standalone mode the driver at {} holds the {} group", driver_, GroupName(which_)));
}

Status StandaloneLeaderElector::Start(Callbacks callbacks) {
  if (id_ != 0) return absl::FailedPreconditionError("elector already started");
  id_ = group_->AddCandidate(self_, std::move(callbacks));
  return absl::OkStatus();
}

void StandaloneLeaderElector::Stop() {
  if (id_ == 0) return;
  last_epoch_ = group_->Epoch(id_);
  group_->RemoveCandidate(id_);
  id_ = 0;
}

Result<std::optional<proto::LeaderInfo>> StandaloneLeaderDetector::Current() {
  if (fixed_) return fixed_;
  return group_->Leader();
}

void StandaloneLeaderDetector::Watch(Listener listener) {
  if (fixed_) {
    listener(fixed_);
    return;
  }
  group_->WatchLeader(std::move(listener));
}

Status StandaloneMembership::Join(const proto::MemberInfo& self) {
  RETURN_IF_ERROR(group_->Join(which_, self));
  std::lock_guard<std::mutex> lock(mu_);
  joined_id_ = self.id();
  return absl::OkStatus();
}

void StandaloneMembership::Leave() {
  std::string id;
  {
    std::lock_guard<std::mutex> lock(mu_);
    id.swap(joined_id_);
  }
  if (!id.empty()) group_->Leave(which_, id);
}

}  // namespace sluice::coord
