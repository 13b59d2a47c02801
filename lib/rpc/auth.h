// Who may call what: the role each RPC method needs, and the check every
// service handler makes first.
//
// Module sluice::rpc owns it. A caller's roles come from its certificate
// (tls.h: URI SANs sluice:role=NAME), verified by the TLS handshake; admin
// includes viewer. Over plaintext (`tls = off`) nothing is checked: there is
// no identity to check.
//
//   DriverService  GetStatus: any role · ListSources, ListJobs, DescribeJob:
//                  viewer · SubmitJob, StopJob, RegisterSource, AppendMarker,
//                  Drill: admin · ReadWal: driver, admin · RegisterWorker,
//                  ReportBlocks, JoinGroup: worker
//   WalService     every method: driver
//   WorkerService  GetStatus: any role · LeaderHeartbeat, AssignReceivers,
//                  RunTask, DropBlocks: driver · FetchBlock: driver, worker ·
//                  ReplicateBlock, PushShuffle, ReplicateState, FetchState:
//                  worker · Drill: admin
//
// A refusal is PERMISSION_DENIED naming the method and the roles it needs,
// and is logged (rate-limited) with the caller's identity and address.
// Before the roles, the caller's protocol (metadata "sluice-protocol", set by
// every client of this module; absent = 1) must be one this build talks to
// (lib/common/version.h: N-1, N, N+1), else FAILED_PRECONDITION naming both;
// GetStatus is answered to any protocol, so an operator sees a mixed cluster.
//
// Thread-safe.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "lib/rpc/tls.h"

namespace grpc {
class ServerContext;
class Status;
}  // namespace grpc

namespace sluice::rpc {

// The roles that may call `method` ("DriverService.SubmitJob"); empty if the
// method is unknown (then nobody may).
std::vector<Role> RolesFor(std::string_view method);
// Every method with roles, for tests.
std::vector<std::string> MethodsWithRoles();

// OK if the caller of `context` may call `method`, else PERMISSION_DENIED
// (or FAILED_PRECONDITION for a protocol this build does not talk to).
grpc::Status Authorize(const grpc::ServerContext* context, std::string_view method);

// OK if the caller's protocol is one this build talks to (see above).
grpc::Status CheckProtocol(const grpc::ServerContext* context, std::string_view method);

// Whether the caller's certificate grants `role` (admin includes viewer).
// True over plaintext (`tls = off`), where nobody is told apart.
bool CallerHasRole(const grpc::ServerContext* context, Role role);

}  // namespace sluice::rpc

// The first line of every service handler:
//   SLUICE_AUTHORIZE(context, "DriverService.SubmitJob");
#define SLUICE_AUTHORIZE(context, method)                                         \
  if (::grpc::Status sluice_denied_ = ::sluice::rpc::Authorize(context, method); \
      !sluice_denied_.ok())                                                       \
  return sluice_denied_
