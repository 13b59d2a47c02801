#include "lib/http/daemon_http.h"

#include "lib/common/version.h"
#include "spdlog/spdlog.h"

namespace sluice::http {
namespace {

// A loop that has not moved for this long is stalled: the same bound as the
// watchdog's default (docs/service.md).
constexpr std::chrono::seconds kStalledAfter{10};

}  // namespace

DaemonHttp::DaemonHttp(std::string kind) : kind_(std::move(kind)) {}

DaemonHttp::~DaemonHttp() { Stop(); }

void DaemonHttp::SetServiceState(const sluice::ServiceState& state) {
  std::lock_guard<std::mutex> lock(mu_);
  state_ = state;
}

Status DaemonHttp::Start(const DaemonOptions& options, Liveness* liveness) {
  liveness_ = liveness;
  ASSIGN_OR_RETURN(process_, metrics::ProcessProbe::Create(&registry_, kind_, kVersion));
  if (options.http_address.empty()) return absl::OkStatus();
  server_.AddStandardRoutes(
      &registry_,
      [this] {
        const std::vector<std::string> stalled = liveness_->Stalled(std::chrono::steady_clock::now(), kStalledAfter);
        if (stalled.empty()) return Check{.ok = true, .detail = kind_ + " loops moving"};
        std::string names;
        for (const std::string& s : stalled) names += (names.empty() ? "" : ", ") + s;
        return Check{.ok = false, .detail = "stalled for over " + std::to_string(kStalledAfter.count()) + " s: " + names};
      },
      [this] {
        std::lock_guard<std::mutex> lock(mu_);
        return Check{.ok = state_.ready, .detail = state_.status};
      });
  RETURN_IF_ERROR(server_.Start(options.http_address));
  advertised_ = options.AdvertisedHttp(server_.address());
  spdlog::info("HTTP endpoint on {} (/metrics, /healthz, /readyz{})", server_.address(),
               kind_ == "driver" ? ", status page at /" : "");
  return absl::OkStatus();
}

void DaemonHttp::Stop() { server_.Stop(); }

}  // namespace sluice::http
