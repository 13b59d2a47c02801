// MakeProcessInfo: what a daemon says about itself in its GetStatus answers.
//
// Module sluice::rpc owns it (it fills a proto/common.proto message).
#pragma once

#include <string>

#include "lib/common/clock.h"
#include "proto/common.pb.h"

namespace sluice::rpc {

// Id, bound address, version, pid, hostname and a start time read from
// `clock` now.
proto::ProcessInfo MakeProcessInfo(const std::string& id, const std::string& rpc_address,
                                   Clock* clock);

}  // namespace sluice::rpc
