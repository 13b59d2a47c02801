// sluicectl savepoint JOB DIR and sluicectl submit --from-savepoint DIR [FILE]:
// the leader's TakeSavepoint / RestoreSavepoint over the files of savepoint.h.
#include <filesystem>
#include <iostream>

#include "lib/common/config.h"
#include "lib/ctl/ctl.h"
#include "lib/ctl/savepoint.h"
#include "lib/engine/job_file.h"
#include "lib/engine/keyed.h"
#include "lib/rpc/driver_client.h"

namespace sluice::ctl {
namespace {

int32_t ReducePartitionsOf(const proto::JobSpec& spec) {
  Result<std::optional<engine::KeyedStage>> stage = engine::KeyedStageOf(spec);
  return stage.ok() && stage->has_value() ? (*stage)->reduce_partitions : 0;
}

}  // namespace

int Ctl::RunSavepoint(std::ostream& out, std::ostream& err) {
  if (int rc = Discover(err); rc != 0) return rc;
  Result<std::string> leader = rpc::FindServingLeader(*channels_, drivers_, std::chrono::milliseconds(timeout_ms_));
  if (!leader.ok()) {
    err << "sluicectl: " << leader.status().message() << "\n";
    return 1;
  }
  proto::TakeSavepointRequest request;
  request.set_job_id(job_id_);
  Result<proto::SavepointManifest> manifest =
      WriteSavepoint(savepoint_dir_, [&](const std::function<void(proto::SavepointChunk&&)>& consume) {
        return rpc::DriverClient(*channels_, *leader).TakeSavepoint(request, consume);
      });
  if (!manifest.ok()) {
    err << "sluicectl: savepoint of job " << job_id_ << ": " << manifest.status().message() << "\n";
    return 1;
  }
  out << DescribeSavepoint(savepoint_dir_, *manifest);
  return 0;
}

int Ctl::RunSubmitFromSavepoint(std::ostream& out, std::ostream& err) {
  Result<LoadedSavepoint> loaded = ReadSavepoint(from_savepoint_);
  if (!loaded.ok()) {
    err << "sluicectl: " << loaded.status().message() << "\n";
    return 1;
  }
  proto::SavepointHeader& header = loaded->header;
  std::error_code ec;
  const std::filesystem::path where = std::filesystem::absolute(from_savepoint_, ec);
  header.mutable_start()->set_savepoint(ec ? from_savepoint_ : where.lexically_normal().string());
  if (!job_file_.empty()) {
    // Another spec for the saved positions and state: checked here first, so
    // mistakes name the file on the user's machine.
    Result<proto::JobSpec> spec = engine::LoadJobFile(job_file_);
    if (!spec.ok()) {
      err << "sluicectl: " << spec.status().message() << "\n";
      return absl::IsNotFound(spec.status()) ? 1 : kExitUsage;
    }
    if (!loaded->state.empty() && ReducePartitionsOf(*spec) != ReducePartitionsOf(header.spec())) {
      err << "sluicectl: " << job_file_ << ": reduce_partitions " << ReducePartitionsOf(*spec)
          << " differs from the savepoint's " << ReducePartitionsOf(header.spec())
          << ": the state is partitioned by it\n";
      return kExitUsage;
    }
    *header.mutable_saved_spec() = header.spec();
    *header.mutable_spec() = *spec;
    header.set_job_id(spec->name());
  }
  if (int rc = Discover(err); rc != 0) return rc;
  Result<std::string> leader = rpc::FindServingLeader(*channels_, drivers_, std::chrono::milliseconds(timeout_ms_));
  if (!leader.ok()) {
    err << "sluicectl: " << leader.status().message() << "\n";
    return 1;
  }
  auto produce = [&](const rpc::ChunkWriter<proto::SavepointChunk>& write) -> Status {
    proto::SavepointChunk first;
    *first.mutable_header() = header;
    if (!write(first)) return absl::OkStatus();  // the answer says why
    for (const proto::StateChunk& c : loaded->state) {
      proto::SavepointChunk chunk;
      *chunk.mutable_state() = c;
      if (!write(chunk)) break;
    }
    return absl::OkStatus();
  };
  Result<proto::RestoreSavepointResponse> restored = rpc::DriverClient(*channels_, *leader).RestoreSavepoint(produce);
  if (!restored.ok()) {
    err << "sluicectl: restoring " << from_savepoint_ << ": " << restored.status().message() << "\n";
    return absl::IsInvalidArgument(restored.status()) ? kExitUsage : 1;
  }
  out << restored->job_id() << " restored from savepoint " << from_savepoint_ << " at batch "
      << loaded->manifest.last_committed_batch() << "\n";
  return 0;
}

}  // namespace sluice::ctl
