#include "test/unit/golden.h"

#include <filesystem>
#include <map>
#include <memory>
#include <sstream>
#include <vector>

#include "google/protobuf/text_format.h"
#include "lib/driver/cluster_state.h"
#include "lib/engine/job_file.h"
#include "lib/common/version.h"
#include "lib/state/state_store.h"
#include "lib/wal/wal_store.h"
#include "lib/worker/block_store.h"
#include "proto/driver_log.pb.h"

namespace sluice::golden {
namespace {

namespace fs = std::filesystem;

// A keyed job over a socket source: a realistic spec, with a window and
// state, so that a change of the job language's protobuf shows here.
constexpr char kJobFile[] = R"(name: page-counts
batch_interval: 2s
sources: [clicks]
operators:
  - parse: {format: json}
  - filter: {expr: "country == 'NL' and amount > 10"}
  - key_by: [user, page]
  - window: {type: sliding, length: 30s, slide: 10s, event_time: ts, max_delay: 2s}
  - aggregate:
      - {fn: count}
      - {fn: sum, field: amount, as: total}
  - key_by: user
  - update_state: {running: [{fn: avg, field: total}], timeout: 10m}
reduce_partitions: 4
sink: {file: {path: /var/lib/sluice/out, format: jsonl}}
)";

proto::DriverRecord Source(const std::string& name, proto::SourceKind kind, int partitions) {
  proto::DriverRecord r;
  proto::SourceSpec* s = r.mutable_source_registered()->mutable_spec();
  s->set_name(name);
  s->set_kind(kind);
  s->set_partitions(partitions);
  return r;
}

proto::DriverRecord Blocks(const std::string& source, int32_t partition, std::vector<std::pair<int64_t, int64_t>> ranges,
                           const std::vector<std::string>& holders) {
  proto::DriverRecord r;
  for (auto [start, end] : ranges) {
    proto::BlockInfo* b = r.mutable_blocks_added()->add_blocks();
    b->mutable_range()->set_source(source);
    b->mutable_range()->set_partition(partition);
    b->mutable_range()->set_start_offset(start);
    b->mutable_range()->set_end_offset(end);
    b->set_records(end - start);
    b->set_bytes((end - start) * 100);
    for (const std::string& h : holders) b->add_holders(h);
  }
  return r;
}

proto::DriverRecord Job(const std::string& id, const proto::JobSpec& spec, int64_t at_ms) {
  proto::DriverRecord r;
  r.mutable_job_submitted()->set_job_id(id);
  *r.mutable_job_submitted()->mutable_spec() = spec;
  r.mutable_job_submitted()->set_submit_time_unix_ms(at_ms);
  return r;
}

proto::DriverRecord Plan(const std::string& job, int64_t batch, const std::string& source, int32_t partition,
                         int64_t start, int64_t end, int64_t at_ms) {
  proto::DriverRecord r;
  proto::BatchPlanned* p = r.mutable_batch_planned();
  p->set_job_id(job);
  p->set_batch_id(batch);
  p->set_batch_time_unix_ms(at_ms);
  proto::PartitionRange* range = p->add_ranges();
  range->set_source(source);
  range->set_partition(partition);
  range->set_start_offset(start);
  range->set_end_offset(end);
  return r;
}

proto::DriverRecord Commit(const std::string& job, int64_t batch, const std::string& source, int32_t partition,
                           int64_t next, int64_t at_ms) {
  proto::DriverRecord r;
  proto::BatchCommitted* c = r.mutable_batch_committed();
  c->set_job_id(job);
  c->set_batch_id(batch);
  c->set_input_count(next);
  c->set_output_count(next / 2);
  c->set_started_unix_ms(at_ms);
  c->set_finished_unix_ms(at_ms + 120);
  c->set_task_attempts(3);
  proto::SourceOffset* o = c->add_next_offsets();
  o->set_source(source);
  o->set_partition(partition);
  o->set_offset(next);
  return r;
}

proto::DriverRecord Marker(const std::string& client, int64_t seq) {
  proto::DriverRecord r;
  r.mutable_marker()->set_client_id(client);
  r.mutable_marker()->set_client_seq(seq);
  r.mutable_marker()->set_payload("golden marker " + std::to_string(seq));
  return r;
}

proto::DriverRecord Stop(const std::string& job, const std::string& reason) {
  proto::DriverRecord r;
  r.mutable_job_stopped()->set_job_id(job);
  r.mutable_job_stopped()->set_reason(reason);
  return r;
}

proto::WalRecord Leader(int64_t epoch, const std::string& id) {
  proto::WalRecord r;
  r.mutable_leader_change()->set_epoch(epoch);
  r.mutable_leader_change()->set_leader_id(id);
  return r;
}

proto::WalRecord Payload(const proto::DriverRecord& record) {
  proto::WalRecord r;
  r.set_payload(record.SerializeAsString());
  return r;
}

std::string Text(const google::protobuf::Message& m) {
  std::string out;
  google::protobuf::TextFormat::Printer printer;
  printer.SetSingleLineMode(true);
  printer.PrintToString(m, &out);
  while (!out.empty() && out.back() == ' ') out.pop_back();
  return out;
}

std::string Multiline(const google::protobuf::Message& m) {
  std::string out;
  google::protobuf::TextFormat::PrintToString(m, &out);
  return out;
}

// Bytes as text: printable ASCII as is, the rest as \xNN.
std::string Escaped(std::string_view s) {
  std::string out;
  for (unsigned char c : s) {
    if (c >= 0x20 && c < 0x7f && c != '\\') {
      out.push_back(static_cast<char>(c));
    } else {
      out += fmt::format("\\x{:02x}", c);
    }
  }
  return out;
}

// Removes what RocksDB writes beside its data and rewrites on every open.
void RemoveNoise(const std::string& dir) {
  for (const auto& e : fs::directory_iterator(dir)) {
    const std::string name = e.path().filename().string();
    if (name == "LOCK" || name.starts_with("LOG")) fs::remove(e.path());
  }
}

}  // namespace

Status CopyDb(const std::string& from, const std::string& to) {
  std::error_code ec;
  fs::create_directories(to, ec);
  if (ec) return absl::InternalError(fmt::format("mkdir {}: {}", to, ec.message()));
  for (const auto& e : fs::directory_iterator(from, ec)) {
    const std::string name = e.path().filename().string();
    if (name == "LOCK" || name.starts_with("LOG")) continue;
    fs::copy_file(e.path(), fs::path(to) / name, fs::copy_options::overwrite_existing, ec);
    if (ec) return absl::InternalError(fmt::format("copy {}: {}", e.path().string(), ec.message()));
  }
  if (ec) return absl::InternalError(fmt::format("list {}: {}", from, ec.message()));
  return absl::OkStatus();
}

// ---- The driver's WAL ----
//
// Epoch 1 (driver-a): two sources, blocks, two jobs, batches, a marker,
// folded into a snapshot at record 10; then epoch 2 (driver-b): more
// blocks and batches, a job stopped, a marker — records 11..18 after the
// snapshot; then epoch 3 (driver-a): the job lifecycle (restart, drain,
// update, failed, delete, a submit from a savepoint) and data loss (a lost
// range, a reset) — records 19..27. Fence 3, commit point 27.
Status WriteWal(const std::string& dir) {
  ASSIGN_OR_RETURN(proto::JobSpec keyed, engine::ParseJobFile(kJobFile, "page-counts.yaml"));
  ASSIGN_OR_RETURN(proto::JobSpec plain,
                   engine::ParseJobFile("name: copy\nsources: [gen]\nsink: {stdout: {}}\n", "copy.yaml"));
  const int64_t t = 1'780'000'000'000;  // a fixed time
  std::vector<proto::WalRecord> first = {
      Leader(1, "driver-a"),
      Payload(Source("gen", proto::SOURCE_KIND_GENERATOR, 1)),
      Payload(Source("clicks", proto::SOURCE_KIND_SOCKET, 1)),
      Payload(Blocks("gen", 0, {{0, 100}, {100, 250}}, {"worker-1"})),
      Payload(Job("copy", plain, t)),
      Payload(Job("page-counts", keyed, t + 10)),
      Payload(Plan("copy", 1, "gen", 0, 0, 100, t + 1000)),
      Payload(Commit("copy", 1, "gen", 0, 100, t + 1100)),
      Payload(Marker("golden", 1)),
      Payload(Blocks("clicks", 0, {{0, 40}}, {"worker-1", "worker-2"})),
  };
  std::vector<proto::WalRecord> second = {
      Leader(2, "driver-b"),
      Payload(Plan("copy", 2, "gen", 0, 100, 250, t + 2000)),
      Payload(Plan("page-counts", 1, "clicks", 0, 0, 40, t + 2000)),
      Payload(Commit("copy", 2, "gen", 0, 250, t + 2100)),
      Payload(Commit("page-counts", 1, "clicks", 0, 40, t + 2200)),
      Payload(Blocks("gen", 0, {{250, 300}}, {"worker-2"})),
      Payload(Stop("copy", "stopped by golden")),
      Payload(Marker("golden", 2)),
  };
  // Epoch 3 (driver-a): the job lifecycle and data loss, records 19..27.
  proto::DriverRecord restarted, drain, updated, failed, deleted, resubmitted, lost, reset;
  restarted.mutable_job_restarted()->set_job_id("copy");
  restarted.mutable_job_restarted()->set_restart_unix_ms(t + 3000);
  drain.mutable_job_drain_requested()->set_job_id("page-counts");
  drain.mutable_job_drain_requested()->set_reason("drained by golden");
  drain.mutable_job_drain_requested()->set_emit_open_windows(true);
  proto::SourceOffset* until = drain.mutable_job_drain_requested()->add_until();
  until->set_source("clicks");
  until->set_offset(40);
  updated.mutable_job_updated()->set_job_id("copy");
  *updated.mutable_job_updated()->mutable_spec() = plain;
  updated.mutable_job_updated()->mutable_spec()->set_batch_interval_ms(250);
  updated.mutable_job_updated()->set_update_unix_ms(t + 3500);
  failed.mutable_job_stopped()->set_job_id("copy");
  failed.mutable_job_stopped()->set_reason("FAILED: golden");
  failed.mutable_job_stopped()->set_failed(true);
  deleted.mutable_job_deleted()->set_job_id("copy");
  resubmitted = Job("copy", plain, t + 4000);
  resubmitted.mutable_job_submitted()->mutable_from_savepoint()->set_last_committed_batch(1);
  resubmitted.mutable_job_submitted()->mutable_from_savepoint()->set_savepoint("/golden/savepoint at batch 1");
  proto::SourceOffset* at = resubmitted.mutable_job_submitted()->mutable_from_savepoint()->add_offsets();
  at->set_source("gen");
  at->set_offset(100);
  lost.mutable_source_data_lost()->set_source("gen");
  lost.mutable_source_data_lost()->set_from_offset(300);
  lost.mutable_source_data_lost()->set_to_offset(350);
  lost.mutable_source_data_lost()->set_reason("golden retention");
  lost.mutable_source_data_lost()->set_detected_unix_ms(t + 4500);
  reset.mutable_partition_reset()->set_source("gen");
  reset.mutable_partition_reset()->set_to_offset(400);
  reset.mutable_partition_reset()->set_to("400");
  reset.mutable_partition_reset()->set_reset_unix_ms(t + 4600);
  std::vector<proto::WalRecord> third = {
      Leader(3, "driver-a"), Payload(restarted), Payload(drain),       Payload(updated), Payload(failed),
      Payload(deleted),      Payload(resubmitted), Payload(lost),     Payload(reset),
  };
  ASSIGN_OR_RETURN(std::unique_ptr<wal::WalStore> store, wal::WalStore::Open({.path = dir}));
  driver::ClusterState state;
  int64_t seq = 0;
  auto append = [&](std::vector<proto::WalRecord> records, int64_t epoch) -> Status {
    for (proto::WalRecord& r : records) {
      r.set_seq(++seq);
      r.set_epoch(epoch);
      r.set_format(wal::WrittenFormat());
      RETURN_IF_ERROR(state.Apply(r));
    }
    return store->Append(records);
  };
  RETURN_IF_ERROR(store->SetFence(1));
  RETURN_IF_ERROR(append(first, 1));
  proto::WalSnapshot snap;
  snap.set_last_seq(seq);
  snap.set_last_epoch(1);
  snap.set_format(wal::WrittenFormat());
  snap.set_state(state.Snapshot());
  RETURN_IF_ERROR(store->SaveSnapshot(snap));
  RETURN_IF_ERROR(store->SetFence(2));
  RETURN_IF_ERROR(append(second, 2));
  RETURN_IF_ERROR(store->SetFence(3));
  RETURN_IF_ERROR(append(third, 3));
  RETURN_IF_ERROR(store->SetCommitSeq(seq));
  store.reset();
  RemoveNoise(dir);
  return absl::OkStatus();
}

Result<std::string> DumpWal(const std::string& dir) {
  ASSIGN_OR_RETURN(std::unique_ptr<wal::WalStore> store, wal::WalStore::Open({.path = dir}));
  std::ostringstream out;
  out << "fence " << store->fence() << "\ncommit " << store->commit_seq() << "\nlast " << store->last_seq()
      << " epoch " << store->last_epoch() << "\n";
  driver::ClusterState state;
  if (std::optional<proto::WalSnapshot> snap = store->snapshot(); snap.has_value()) {
    out << "snapshot last_seq " << snap->last_seq() << " last_epoch " << snap->last_epoch() << " format "
        << static_cast<int>(snap->format()) << "\n";
    RETURN_IF_ERROR_PREPEND(state.Restore(snap->state()), "restoring the golden snapshot");
  }
  ASSIGN_OR_RETURN(std::vector<proto::WalRecord> records, store->Read(store->first_seq(), 1000));
  for (const proto::WalRecord& r : records) {
    out << "record " << r.seq() << " epoch " << r.epoch() << " format " << static_cast<int>(r.format()) << ": ";
    if (r.has_leader_change()) {
      out << "leader_change { " << Text(r.leader_change()) << " }\n";
    } else {
      proto::DriverRecord d;
      if (!d.ParseFromString(r.payload())) return absl::DataLossError(fmt::format("record {}: payload", r.seq()));
      out << Text(d) << "\n";
    }
    RETURN_IF_ERROR(state.Apply(r));
  }
  out << "cluster state:\n" << Multiline(*state.View());
  return out.str();
}

// ---- The state store ----
//
// Job "page-counts", reduce partitions 0 and 3: partition 0 folded up to
// batch 12 (a snapshot at 10, deltas 11 and 12 folded, delta 13 written and
// not folded); partition 3 installed as of batch 5 (a copy from another
// worker). From format 2 also a partition in the disk layout (below).
Status WriteState(const std::string& dir) {
  {
    ASSIGN_OR_RETURN(std::unique_ptr<state::StateStore> store, state::StateStore::Open(dir));
    const std::string job = "page-counts";
    ASSIGN_OR_RETURN(bool created, store->Prepare(job, 0, -1));
    if (!created) return absl::InternalError("Prepare(-1) refused");
    for (int64_t b = 0; b <= 13; ++b) {
      std::vector<state::Change> delta;
      delta.push_back({fmt::format("user-{}", b % 4), fmt::format("count={} total={}", b + 1, 10 * b)});
      delta.push_back({fmt::format("batch-{:02d}", b), std::string("\x00\x01\xff", 3)});
      if (b >= 2) delta.push_back({fmt::format("batch-{:02d}", b - 2), std::nullopt});  // a tombstone
      RETURN_IF_ERROR(store->WriteDelta(job, 0, b, delta));
      if (b <= 12) {
        ASSIGN_OR_RETURN(bool folded, store->Prepare(job, 0, b));
        if (!folded) return absl::InternalError(fmt::format("Prepare({}) refused", b));
      }
    }
    std::vector<state::Change> copy = {{"user-7", "count=70"}, {"user-8", ""}, {"\x01key", "binary\x02"}};
    RETURN_IF_ERROR(store->Install(job, 3, 5, copy));
  }
  if (version::kStateStoreFormat >= 2) {
    // Format 2: job "sessions" partition 1 in the disk layout (a budget):
    // folded to batch 2, delta 3 written and not folded; page-counts stays
    // in memory (a partition is converted only once loaded).
    ASSIGN_OR_RETURN(std::unique_ptr<state::StateStore> store,
                     state::StateStore::Open(dir, nullptr, {.memory_budget_bytes = 16 << 20}));
    ASSIGN_OR_RETURN(bool created, store->Prepare("sessions", 1, -1));
    if (!created) return absl::InternalError("Prepare(-1) refused");
    for (int64_t b = 0; b <= 3; ++b) {
      std::vector<state::Change> delta = {{fmt::format("s-{}", b), fmt::format("open={}", b)},
                                          {"s-last", std::string("\x00", 1) + std::to_string(b)}};
      if (b == 2) delta.push_back({"s-0", std::nullopt});
      RETURN_IF_ERROR(store->WriteDelta("sessions", 1, b, delta));
      if (b <= 2) {
        ASSIGN_OR_RETURN(bool folded, store->Prepare("sessions", 1, b));
        if (!folded) return absl::InternalError(fmt::format("Prepare({}) refused", b));
      }
    }
  }
  RemoveNoise(dir);
  return absl::OkStatus();
}

Result<std::string> DumpState(const std::string& dir) {
  ASSIGN_OR_RETURN(std::unique_ptr<state::StateStore> store, state::StateStore::Open(dir));
  std::ostringstream out;
  ASSIGN_OR_RETURN(auto parts, store->Partitions());
  for (const auto& [job, p] : parts) {
    ASSIGN_OR_RETURN(std::optional<int64_t> folded, store->FoldedBatch(job, p));
    out << "partition " << job << "[" << p << "] folded " << folded.value_or(-2) << "\n";
    RETURN_IF_ERROR(store->Scan(job, p, "", [&](std::string_view k, std::string_view v) {
      out << "  " << Escaped(k) << " = " << Escaped(v) << "\n";
      return true;
    }));
    for (int64_t b = folded.value_or(0) + 1; b <= folded.value_or(0) + 3; ++b) {
      Result<std::vector<state::Change>> delta = store->ReadDelta(job, p, b);
      if (absl::IsNotFound(delta.status())) continue;
      if (!delta.ok()) return delta.status();
      out << "  delta " << b << ":";
      for (const state::Change& c : *delta) {
        out << " " << Escaped(c.key) << (c.value.has_value() ? "=" + Escaped(*c.value) : " erased");
      }
      out << "\n";
    }
    state::StateStats stats = store->PartitionStats(job, p);
    out << "  keys " << stats.keys << " bytes " << stats.bytes << "\n";
  }
  return out.str();
}

// ---- The block log ----
//
// Blocks of socket source "clicks": partition 0 offsets 0..3 and 3..5,
// partition 1 offsets 100..102 (one record empty, one binary).
Status WriteBlockLog(const std::string& dir) {
  const std::string spill = dir + ".spill";
  {
    ASSIGN_OR_RETURN(std::unique_ptr<worker::BlockStore> store,
                     worker::BlockStore::Open({.spill_path = spill, .log_path = dir}));
    auto put = [&](int32_t p, int64_t start, const std::vector<std::string>& records) -> Status {
      format::BlockBuilder b("clicks", p, start);
      for (const std::string& r : records) b.Add(r);
      format::Block block = b.Cut();
      return store->Put(&block, /*durable=*/true);
    };
    RETURN_IF_ERROR(put(0, 0, {R"({"user":"u1","amount":12})", R"({"user":"u2","amount":3})", "not json"}));
    RETURN_IF_ERROR(put(0, 3, {R"({"user":"u1","amount":40})", R"({"user":"u3","amount":11})"}));
    RETURN_IF_ERROR(put(1, 100, {"", std::string("\x00\x01\x02\xff", 4)}));
  }
  std::error_code ec;
  fs::remove_all(spill, ec);
  RemoveNoise(dir);
  return absl::OkStatus();
}

Result<std::string> DumpBlockLog(const std::string& dir) {
  const std::string spill = dir + ".spill";
  ASSIGN_OR_RETURN(std::unique_ptr<worker::BlockStore> store,
                   worker::BlockStore::Open({.spill_path = spill, .log_path = dir}));
  std::ostringstream out;
  for (const worker::HeldBlock& h : store->Holdings()) {
    out << "block " << h.lineage.source << "[" << h.lineage.partition << "] " << h.lineage.start_offset << ".."
        << h.lineage.end_offset << " records " << h.records << " bytes " << h.bytes
        << (h.durable ? " durable" : "") << "\n";
    ASSIGN_OR_RETURN(format::Block block,
                     store->Get({h.lineage.source, h.lineage.partition, h.lineage.start_offset}));
    RETURN_IF_ERROR(block.ForEach([&](std::string_view r) { out << "  " << Escaped(r) << "\n"; }));
  }
  return out.str();
}

}  // namespace sluice::golden
