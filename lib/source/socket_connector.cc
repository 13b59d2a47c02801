// The socket source's connector: one TCP connection per partition, to the
// partition's host:port (SocketReader). Not replayable: what was read cannot
// be asked for again, so a range is never read twice and blocks go through
// the receiver WAL (replication 2 by default).
#include <algorithm>

#include "lib/common/config.h"
#include "lib/source/internal/connector_kind.h"
#include "lib/source/socket_source.h"

namespace sluice::source {
namespace {

using internal::SpecError;

class SocketConnector final : public SourceConnector {
 public:
  explicit SocketConnector(const proto::SourceSpec& spec) : SourceConnector(spec) {}

  Result<int32_t> Partitions() override { return spec().partitions(); }

  Result<OpenedReader> OpenReader(int32_t partition, int64_t offset) override {
    RETURN_IF_ERROR(CheckPartition(partition));
    const proto::SocketSourceSpec& s = spec().socket();
    if (partition >= s.addresses_size()) {
      return SpecError(spec(), "socket.addresses", fmt::format("no address for partition {}", partition));
    }
    ASSIGN_OR_RETURN(std::unique_ptr<PartitionReader> reader,
                     NewSocketReader({.address = s.addresses(partition),
                                      .framing = s.framing() == "frames" ? SocketReaderOptions::Framing::kFrames
                                                                         : SocketReaderOptions::Framing::kLines,
                                      .max_event_bytes = spec().max_event_bytes()}));
    // Offsets count records from where the receiver starts.
    return OpenedReader{std::move(reader), std::max<int64_t>(offset, 0)};
  }

  Result<format::Block> ReadRange(int32_t partition, int64_t start_offset, int64_t end_offset,
                          std::chrono::milliseconds /*timeout*/) override {
    RETURN_IF_ERROR(CheckPartition(partition));
    if (end_offset <= start_offset) return format::Block({spec().name(), partition, start_offset, start_offset}, "", 0);
    return absl::DataLossError(fmt::format(
        "source '{}': partition {} offsets {}..{}: a socket source is not replayable; the range cannot be read again",
        spec().name(), partition, start_offset, end_offset));
  }
};

Status Normalize(proto::SourceSpec* spec) {
  proto::SocketSourceSpec* s = spec->mutable_socket();
  if (s->addresses().empty()) {
    return SpecError(*spec, "socket.addresses", "must not be empty (host:port per partition)");
  }
  for (int i = 0; i < s->addresses_size(); ++i) {
    Result<HostPort> hp = ParseHostPort(s->addresses(i), fmt::format("socket.addresses[{}]", i));
    if (!hp.ok()) {
      return absl::InvalidArgumentError(
          fmt::format("source '{}': {}", spec->name(), std::string(hp.status().message())));
    }
  }
  if (spec->partitions() != 0 && spec->partitions() != s->addresses_size()) {
    return SpecError(*spec, "partitions",
                     fmt::format("{} partitions but {} socket addresses", spec->partitions(), s->addresses_size()));
  }
  spec->set_partitions(s->addresses_size());
  if (s->framing().empty()) s->set_framing("lines");
  if (s->framing() != "lines" && s->framing() != "frames") {
    return SpecError(*spec, "socket.framing", fmt::format("'{}' is not lines or frames", s->framing()));
  }
  return internal::CheckPartitionCount(*spec);
}

Result<std::unique_ptr<SourceConnector>> Create(const proto::SourceSpec& spec, Clock* /*clock*/) {
  return std::unique_ptr<SourceConnector>(new SocketConnector(spec));
}

}  // namespace

namespace internal {
const ConnectorKind kSocketKind{.kind = proto::SOURCE_KIND_SOCKET,
                                .name = "socket",
                                .replayable = false,
                                .commits_positions = false,
                                .initial_next_offset = 0,
                                .default_replication = 2,  // the receiver WAL: block log + a replica
                                .normalize = &Normalize,
                                .create = &Create};
}  // namespace internal

}  // namespace sluice::source
