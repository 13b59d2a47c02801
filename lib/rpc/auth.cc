#include "lib/rpc/auth.h"

#include <chrono>
#include <map>
#include <mutex>

#include "grpcpp/grpcpp.h"
#include "grpcpp/security/auth_context.h"
#include "lib/common/version.h"
#include "lib/rpc/rpc.h"
#include "spdlog/spdlog.h"

namespace sluice::rpc {
namespace {

constexpr Role kDriver = Role::kDriver;
constexpr Role kWorker = Role::kWorker;
constexpr Role kAdmin = Role::kAdmin;
constexpr Role kViewer = Role::kViewer;

const std::map<std::string_view, std::vector<Role>>& Table() {
  static const auto* const table = new std::map<std::string_view, std::vector<Role>>{
      {"DriverService.GetStatus", {kDriver, kWorker, kAdmin, kViewer}},
      {"DriverService.AppendMarker", {kAdmin}},
      {"DriverService.ReadWal", {kDriver, kAdmin}},
      {"DriverService.RegisterSource", {kAdmin}},
      {"DriverService.ListSources", {kViewer}},
      {"DriverService.RegisterWorker", {kWorker}},
      {"DriverService.ReportBlocks", {kWorker}},
      {"DriverService.SubmitJob", {kAdmin}},
      {"DriverService.ListJobs", {kViewer}},
      {"DriverService.DescribeJob", {kViewer}},
      {"DriverService.StopJob", {kAdmin}},
      {"DriverService.DeleteJob", {kAdmin}},
      {"DriverService.RestartJob", {kAdmin}},
      {"DriverService.UpdateJob", {kAdmin}},
      {"DriverService.ResetPartition", {kAdmin}},
      {"DriverService.TakeSavepoint", {kAdmin}},
      {"DriverService.RestoreSavepoint", {kAdmin}},
      {"DriverService.JoinGroup", {kWorker}},
      {"DriverService.Drill", {kAdmin}},
      {"DriverService.DrainWorker", {kAdmin}},
      {"DriverService.Rebalance", {kAdmin}},
      {"WalService.Append", {kDriver}},
      {"WalService.Fetch", {kDriver}},
      {"WalService.InstallSnapshot", {kDriver}},
      {"WorkerService.GetStatus", {kDriver, kWorker, kAdmin, kViewer}},
      {"WorkerService.LeaderHeartbeat", {kDriver}},
      {"WorkerService.AssignReceivers", {kDriver}},
      {"WorkerService.FetchBlock", {kDriver, kWorker}},
      {"WorkerService.ReplicateBlock", {kWorker}},
      {"WorkerService.RunTask", {kDriver}},
      {"WorkerService.DropBlocks", {kDriver}},
      {"WorkerService.PushShuffle", {kWorker}},
      // The leader too: savepoints read a job's state and restore it.
      {"WorkerService.ReplicateState", {kWorker, kDriver}},
      {"WorkerService.FetchState", {kWorker, kDriver}},
      // The leader re-splits a rescaled job's state (lib/driver/rescale.h).
      {"WorkerService.ResplitState", {kDriver}},
      {"WorkerService.Drill", {kAdmin}},
      {"WorkerService.WarmState", {kDriver}},
  };
  return *table;
}

std::vector<std::string> Values(const grpc::AuthContext& auth, const char* property) {
  std::vector<std::string> out;
  for (const grpc::string_ref& v : auth.FindPropertyValues(property)) out.emplace_back(v.data(), v.size());
  return out;
}

// At most one log line per caller and method every 10 s: a misconfigured
// client retrying in a loop must not flood the log.
bool ShouldLog(const std::string& key, int* suppressed) {
  static std::mutex mu;
  static std::map<std::string, std::pair<std::chrono::steady_clock::time_point, int>> last;
  std::lock_guard<std::mutex> lock(mu);
  auto now = std::chrono::steady_clock::now();
  auto [it, fresh] = last.try_emplace(key, now, 0);
  if (!fresh && now - it->second.first < std::chrono::seconds(10)) {
    ++it->second.second;
    return false;
  }
  *suppressed = it->second.second;
  it->second = {now, 0};
  if (last.size() > 10'000) last.clear();
  return true;
}

}  // namespace

std::vector<Role> RolesFor(std::string_view method) {
  auto it = Table().find(method);
  return it == Table().end() ? std::vector<Role>{} : it->second;
}

std::vector<std::string> MethodsWithRoles() {
  std::vector<std::string> out;
  for (const auto& [m, roles] : Table()) out.emplace_back(m);
  return out;
}

namespace {

bool OverTls(const grpc::AuthContext* auth) {
  std::vector<std::string> security =
      auth ? Values(*auth, GRPC_TRANSPORT_SECURITY_TYPE_PROPERTY_NAME) : std::vector<std::string>{};
  return !security.empty() &&
         (security.front() == GRPC_TLS_TRANSPORT_SECURITY_TYPE || security.front() == GRPC_SSL_TRANSPORT_SECURITY_TYPE);
}

// The roles of an authenticated TLS peer. URI SANs only: a CA that lets
// anyone ask for a DNS or e-mail name "sluice:role=admin" grants nothing by it.
std::vector<Role> PeerRoles(const grpc::AuthContext& auth) {
  if (!auth.IsPeerAuthenticated()) return {};
  return RolesFromUris(Values(auth, GRPC_PEER_URI_PROPERTY_NAME));
}

// Whether holding `held` allows what needs `needed` (admin includes viewer).
bool Grants(Role held, Role needed) { return held == needed || (held == kAdmin && needed == kViewer); }

}  // namespace

bool CallerHasRole(const grpc::ServerContext* context, Role role) {
  std::shared_ptr<const grpc::AuthContext> auth = context->auth_context();
  if (!OverTls(auth.get())) return !ServesTls();
  for (Role r : PeerRoles(*auth)) {
    if (Grants(r, role)) return true;
  }
  return false;
}

grpc::Status CheckProtocol(const grpc::ServerContext* context, std::string_view method) {
  if (method.ends_with(".GetStatus")) return grpc::Status::OK;  // any version may look
  int peer = 1;  // a caller from before the header existed
  const auto& metadata = context->client_metadata();
  auto it = metadata.find(grpc::string_ref(version::kProtocolHeader.data(), version::kProtocolHeader.size()));
  if (it != metadata.end()) peer = version::ParseFormat(std::string_view(it->second.data(), it->second.size()));
  Status st = version::CheckPeerProtocol(fmt::format("the caller of {} at {}", method, context->peer()), peer);
  if (st.ok()) return grpc::Status::OK;
  int suppressed = 0;
  if (ShouldLog("protocol " + context->peer(), &suppressed)) {
    spdlog::warn("refused: {}{}", std::string(st.message()),
                 suppressed > 0 ? fmt::format(" ({} more refusals not logged)", suppressed) : "");
  }
  return grpc::Status(grpc::StatusCode::FAILED_PRECONDITION, std::string(st.message()));
}

grpc::Status Authorize(const grpc::ServerContext* context, std::string_view method) {
  if (grpc::Status st = CheckProtocol(context, method); !st.ok()) return st;
  std::shared_ptr<const grpc::AuthContext> auth = context->auth_context();
  if (!OverTls(auth.get())) {
    // A plaintext server (`tls = off`) has no identity to check; a call that
    // did not come over TLS to a process that serves TLS is refused.
    if (!ServesTls()) return grpc::Status::OK;
    return grpc::Status(grpc::StatusCode::PERMISSION_DENIED,
                        fmt::format("{}: the call did not come over TLS, which this process requires", method));
  }
  std::vector<Role> needed = RolesFor(method);
  std::vector<std::string> cns = Values(*auth, GRPC_X509_CN_PROPERTY_NAME);
  std::string who = cns.empty() ? "(no common name)" : "CN=" + cns.front();
  const std::vector<Role> roles = PeerRoles(*auth);
  for (Role r : roles) {
    for (Role n : needed) {
      if (Grants(r, n)) return grpc::Status::OK;
    }
  }
  std::string names;
  for (Role n : needed) names += std::string(names.empty() ? "" : " or ") + std::string(RoleName(n));
  std::string need = needed.empty() ? "a role no certificate has (unknown method)" : "the role " + names;
  int suppressed = 0;
  if (ShouldLog(who + " " + std::string(method), &suppressed)) {
    spdlog::warn("refused {} to {} (roles: {}) at {}: it needs {}{}", method, who, RoleList(roles), context->peer(),
                 need, suppressed > 0 ? fmt::format(" ({} more refusals not logged)", suppressed) : "");
  }
  return grpc::Status(grpc::StatusCode::PERMISSION_DENIED,
                      fmt::format("{} needs {}; the caller's certificate ({}) grants {}", method, need, who,
                                  RoleList(roles)));
}

}  // namespace sluice::rpc
