// A savepoint on disk: what `sluicectl savepoint JOB DIR` writes and
// `sluicectl submit --from-savepoint DIR` reads (docs/jobs.md "Savepoints").
//
// Module sluice::ctl owns it. DIR holds
//
//   header.pb             the SavepointHeader (spec, positions, batch, sources)
//   state-<p>.chunks      reduce partition p's state: length-delimited StateChunks
//   MANIFEST.json         a SavepointManifest: the figures, each file's size and
//                         SHA-256; written last
//
// Every file is written under a temporary name, fsynced and renamed, the
// manifest last and the directory fsynced, so a savepoint cut short by a
// crash has no MANIFEST.json and is refused, never read as whole. Reading
// checks every file's size and SHA-256 against the manifest.
//
// Thread-compatible (free functions over files).
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "lib/common/status.h"
#include "proto/driver.pb.h"

namespace sluice::ctl {

inline constexpr int kSavepointFormat = 1;
inline constexpr char kSavepointManifest[] = "MANIFEST.json";

// Writes the chunks `take` hands to its consumer (header first) into `dir`,
// which must be missing or empty (FAILED_PRECONDITION otherwise). Returns
// the manifest written.
[[nodiscard]] Result<proto::SavepointManifest> WriteSavepoint(
    const std::string& dir,
    const std::function<Status(const std::function<void(proto::SavepointChunk&&)>&)>& take);

struct LoadedSavepoint {
  proto::SavepointManifest manifest;
  proto::SavepointHeader header;
  std::vector<proto::StateChunk> state;  // by partition, in order
};

// Reads and checks `dir`. FAILED_PRECONDITION for a directory that is not a
// whole savepoint, a format this release does not know, or a file whose
// size or checksum differs from the manifest (corrupt or truncated).
[[nodiscard]] Result<LoadedSavepoint> ReadSavepoint(const std::string& dir);

// The manifest in a few lines, for the user.
std::string DescribeSavepoint(const std::string& dir, const proto::SavepointManifest& manifest);

}  // namespace sluice::ctl
