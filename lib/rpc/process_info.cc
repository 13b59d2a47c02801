#include "lib/rpc/process_info.h"

#include <unistd.h>

#include "lib/common/version.h"

namespace sluice::rpc {

proto::ProcessInfo MakeProcessInfo(const std::string& id, const std::string& rpc_address,
                                   Clock* clock) {
  proto::ProcessInfo info;
  info.set_id(id);
  info.set_rpc_address(rpc_address);
  info.set_version(kVersion);
  info.set_protocol(version::kProtocol);
  info.set_start_time_unix_ms(clock->UnixMillis());
  info.set_pid(::getpid());
  char host[256] = {};
  if (::gethostname(host, sizeof(host) - 1) == 0) info.set_host(host);
  return info;
}

}  // namespace sluice::rpc
