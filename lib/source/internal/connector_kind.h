// ConnectorKind: what the registry (source_connector.cc) knows of each kind
// of source — its name, its traits and the functions that normalise its spec
// and make its connector. Each kind's file defines one.
//
// Internal to sluice::source. Constant data, safe from any thread.
#pragma once

#include <memory>
#include <string>
#include <string_view>

#include "lib/common/clock.h"
#include "lib/common/status.h"
#include "lib/source/source_connector.h"
#include "proto/job.pb.h"

namespace sluice::source::internal {

struct ConnectorKind {
  proto::SourceKind kind;
  std::string_view name;  // in job files and on sluicectl's command line
  bool replayable;
  bool commits_positions;
  int64_t initial_next_offset;  // InitialNextOffset
  int32_t default_replication;
  // Fills the kind's defaults and checks its fields (the common fields are
  // checked before).
  Status (*normalize)(proto::SourceSpec* spec);
  Result<std::unique_ptr<SourceConnector>> (*create)(const proto::SourceSpec& spec, Clock* clock);
  // Optional: StampSourceSpec's part, and copying that stamp from a recorded spec.
  void (*stamp)(proto::SourceSpec* spec, int64_t now_unix_ms) = nullptr;
  void (*copy_stamp)(const proto::SourceSpec& from, proto::SourceSpec* to) = nullptr;
};

// The kinds, one per file; the registry lists them.
extern const ConnectorKind kGeneratorKind;
extern const ConnectorKind kKafkaKind;
extern const ConnectorKind kSocketKind;

// INVALID_ARGUMENT "source '<name>': <field>: <why>".
Status SpecError(const proto::SourceSpec& spec, std::string_view field, std::string_view why);

// A partition count a spec fixes: 1..4096.
Status CheckPartitionCount(const proto::SourceSpec& spec);

}  // namespace sluice::source::internal
