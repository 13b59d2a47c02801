// libFuzzer target: what a driver reads back from its WAL or receives from
// the leader: a WAL record (lib/wal: the generic log's envelope) applied to
// the driver's state machine (lib/driver/cluster_state.h, which decodes the
// payload as a DriverRecord), or a snapshot restored into it. The first byte
// picks which. Any input must apply or be refused with an error, never
// crash.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "lib/driver/cluster_state.h"
#include "lib/wal/wal_store.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace sluice;
  if (size == 0) return 0;
  const std::string_view in(reinterpret_cast<const char*>(data) + 1, size - 1);
  driver::ClusterState state;
  switch (data[0] % 3) {
    case 0: {
      proto::WalRecord record;
      if (!record.ParseFromArray(in.data(), static_cast<int>(in.size()))) return 0;
      (void)state.Apply(record);
      (void)state.Apply(record);  // again: a duplicate
      break;
    }
    case 1: {
      proto::WalSnapshot snap;
      if (!snap.ParseFromArray(in.data(), static_cast<int>(in.size()))) return 0;
      if (!wal::CheckSnapshotFormat(snap).ok()) return 0;
      (void)state.Restore(snap.state());
      (void)state.Snapshot();
      break;
    }
    default:
      // A snapshot's state machine bytes, as they are.
      if (state.Restore(in).ok()) (void)state.Snapshot();
      break;
  }
  return 0;
}
