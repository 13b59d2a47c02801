#include "lib/ctl/savepoint.h"

#include <fcntl.h>
#include <openssl/evp.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <sstream>

#include "google/protobuf/io/coded_stream.h"
#include "google/protobuf/io/zero_copy_stream_impl_lite.h"
#include "google/protobuf/util/delimited_message_util.h"
#include "google/protobuf/util/json_util.h"

namespace sluice::ctl {
namespace {

constexpr char kHeaderFile[] = "header.pb";

std::string Sha256Hex(std::string_view data) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_Digest(data.data(), data.size(), md, &len, EVP_sha256(), nullptr);
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  for (unsigned int i = 0; i < len; ++i) {
    out += kHex[md[i] >> 4];
    out += kHex[md[i] & 15];
  }
  return out;
}

Status Errno(std::string_view what, const std::string& path) {
  return absl::FailedPreconditionError(fmt::format("{} {}: {}", what, path, std::strerror(errno)));
}

Status Fsync(const std::string& path, int flags) {
  const int fd = ::open(path.c_str(), flags | O_CLOEXEC);
  if (fd < 0) return Errno("opening", path);
  const int rc = ::fsync(fd);
  ::close(fd);
  if (rc != 0) return Errno("fsync of", path);
  return absl::OkStatus();
}

// `bytes` as dir/name: written under a temporary name, fsynced, renamed.
Status WriteDurably(const std::string& dir, const std::string& name, std::string_view bytes) {
  const std::string tmp = dir + "/." + name + ".tmp";
  const std::string path = dir + "/" + name;
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return Errno("creating", tmp);
  size_t done = 0;
  while (done < bytes.size()) {
    const ssize_t n = ::write(fd, bytes.data() + done, bytes.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      Status st = Errno("writing", tmp);
      ::close(fd);
      return st;
    }
    done += static_cast<size_t>(n);
  }
  if (::fsync(fd) != 0) {
    Status st = Errno("fsync of", tmp);
    ::close(fd);
    return st;
  }
  ::close(fd);
  if (::rename(tmp.c_str(), path.c_str()) != 0) return Errno("renaming to", path);
  return absl::OkStatus();
}

Result<std::string> ReadWhole(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::FailedPreconditionError(fmt::format("cannot read {}: {}", path, std::strerror(errno)));
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

std::string StateFileName(int32_t partition) { return fmt::format("state-{:05d}.chunks", partition); }

// The file's bytes, checked against what the manifest says of them.
Result<std::string> ReadChecked(const std::string& dir, const std::string& name, int64_t bytes,
                                const std::string& sha256) {
  ASSIGN_OR_RETURN(std::string data, ReadWhole(dir + "/" + name));
  if (static_cast<int64_t>(data.size()) != bytes) {
    return absl::FailedPreconditionError(fmt::format(
        "savepoint {}: {} has {} bytes, the manifest says {} (truncated or corrupt)", dir, name, data.size(), bytes));
  }
  if (Sha256Hex(data) != sha256) {
    return absl::FailedPreconditionError(
        fmt::format("savepoint {}: {} does not match its SHA-256 in the manifest (corrupt)", dir, name));
  }
  return data;
}

}  // namespace

Result<proto::SavepointManifest> WriteSavepoint(
    const std::string& dir,
    const std::function<Status(const std::function<void(proto::SavepointChunk&&)>&)>& take) {
  std::error_code ec;
  if (std::filesystem::exists(dir, ec)) {
    if (!std::filesystem::is_directory(dir, ec)) {
      return absl::FailedPreconditionError(fmt::format("{} exists and is not a directory", dir));
    }
    if (!std::filesystem::is_empty(dir, ec)) {
      return absl::FailedPreconditionError(
          fmt::format("{} is not empty: a savepoint goes into a new or empty directory", dir));
    }
  } else if (!std::filesystem::create_directories(dir, ec)) {
    return absl::FailedPreconditionError(fmt::format("cannot create {}: {}", dir, ec.message()));
  }

  std::optional<proto::SavepointHeader> header;
  std::map<int32_t, std::string> files;  // partition -> its chunks, delimited
  std::map<int32_t, proto::SavepointStateFile> stats;
  Status bad;
  RETURN_IF_ERROR(take([&](proto::SavepointChunk&& chunk) {
    if (chunk.has_header()) {
      if (header.has_value()) bad = absl::DataLossError("the leader sent two savepoint headers");
      header = chunk.header();
      return;
    }
    const proto::StateChunk& c = chunk.state();
    google::protobuf::io::StringOutputStream stream(&files[c.partition()]);
    if (!google::protobuf::util::SerializeDelimitedToZeroCopyStream(c, &stream)) {
      bad = absl::InternalError("cannot serialise a state chunk");
    }
    proto::SavepointStateFile& f = stats[c.partition()];
    f.set_partition(c.partition());
    f.set_chunks(f.chunks() + 1);
    f.set_entries(f.entries() + c.entries_size());
  }));
  RETURN_IF_ERROR(bad);
  if (!header.has_value()) return absl::DataLossError("the leader sent no savepoint header");

  proto::SavepointManifest manifest;
  manifest.set_format(header->format());
  manifest.set_job_id(header->job_id());
  manifest.set_last_committed_batch(header->start().last_committed_batch());
  *manifest.mutable_positions() = header->start().offsets();
  manifest.set_state_keys(header->start().state_keys());
  manifest.set_state_bytes(header->start().state_bytes());
  manifest.set_taken_unix_ms(header->taken_unix_ms());
  manifest.set_cluster(header->cluster());
  manifest.set_reduce_partitions(header->spec().reduce_partitions());
  const std::string header_bytes = header->SerializeAsString();
  RETURN_IF_ERROR(WriteDurably(dir, kHeaderFile, header_bytes));
  manifest.set_header_file(kHeaderFile);
  manifest.set_header_sha256(Sha256Hex(header_bytes));
  for (auto& [p, data] : files) {
    proto::SavepointStateFile& f = stats[p];
    f.set_file(StateFileName(p));
    f.set_bytes(static_cast<int64_t>(data.size()));
    f.set_sha256(Sha256Hex(data));
    RETURN_IF_ERROR(WriteDurably(dir, f.file(), data));
    *manifest.add_state_files() = f;
  }
  std::string json;
  google::protobuf::util::JsonPrintOptions options;
  options.add_whitespace = true;
  options.preserve_proto_field_names = true;
  if (!google::protobuf::util::MessageToJsonString(manifest, &json, options).ok()) {
    return absl::InternalError("cannot print the savepoint manifest");
  }
  // The manifest last: until it is there, the directory is no savepoint.
  RETURN_IF_ERROR(WriteDurably(dir, kSavepointManifest, json));
  RETURN_IF_ERROR(Fsync(dir, O_RDONLY | O_DIRECTORY));
  return manifest;
}

Result<LoadedSavepoint> ReadSavepoint(const std::string& dir) {
  const std::string manifest_path = dir + "/" + kSavepointManifest;
  if (!std::filesystem::exists(manifest_path)) {
    return absl::FailedPreconditionError(fmt::format(
        "{} is not a whole savepoint: it has no {} (a savepoint cut short, or not one at all)", dir,
        kSavepointManifest));
  }
  LoadedSavepoint out;
  ASSIGN_OR_RETURN(std::string json, ReadWhole(manifest_path));
  if (!google::protobuf::util::JsonStringToMessage(json, &out.manifest).ok()) {
    return absl::FailedPreconditionError(fmt::format("savepoint {}: {} does not parse (corrupt)", dir,
                                                     kSavepointManifest));
  }
  if (out.manifest.format() != kSavepointFormat) {
    return absl::FailedPreconditionError(fmt::format(
        "savepoint {} has format {}; this sluicectl reads format {}", dir, out.manifest.format(), kSavepointFormat));
  }
  ASSIGN_OR_RETURN(std::string header_bytes, ReadWhole(dir + "/" + out.manifest.header_file()));
  if (Sha256Hex(header_bytes) != out.manifest.header_sha256()) {
    return absl::FailedPreconditionError(fmt::format(
        "savepoint {}: {} does not match its SHA-256 in the manifest (corrupt)", dir, out.manifest.header_file()));
  }
  if (!out.header.ParseFromString(header_bytes)) {
    return absl::FailedPreconditionError(fmt::format("savepoint {}: {} does not parse", dir,
                                                     out.manifest.header_file()));
  }
  for (const proto::SavepointStateFile& f : out.manifest.state_files()) {
    ASSIGN_OR_RETURN(std::string data, ReadChecked(dir, f.file(), f.bytes(), f.sha256()));
    google::protobuf::io::ArrayInputStream stream(data.data(), static_cast<int>(data.size()));
    int64_t chunks = 0;
    for (;;) {
      proto::StateChunk c;
      bool clean_eof = false;
      if (!google::protobuf::util::ParseDelimitedFromZeroCopyStream(&c, &stream, &clean_eof)) {
        if (clean_eof) break;
        return absl::FailedPreconditionError(fmt::format("savepoint {}: {} does not parse", dir, f.file()));
      }
      if (c.partition() != f.partition()) {
        return absl::FailedPreconditionError(fmt::format("savepoint {}: {} holds state of partition {}", dir,
                                                         f.file(), c.partition()));
      }
      out.state.push_back(std::move(c));
      ++chunks;
    }
    if (chunks != f.chunks() || out.state.empty() || !out.state.back().last()) {
      return absl::FailedPreconditionError(
          fmt::format("savepoint {}: {} has {} chunks, the manifest says {}", dir, f.file(), chunks, f.chunks()));
    }
  }
  return out;
}

std::string DescribeSavepoint(const std::string& dir, const proto::SavepointManifest& m) {
  std::string positions;
  for (const proto::SourceOffset& o : m.positions()) {
    positions += fmt::format("{}{}/{}@{}", positions.empty() ? "" : " ", o.source(), o.partition(), o.offset());
  }
  int64_t entries = 0;
  for (const proto::SavepointStateFile& f : m.state_files()) entries += f.entries();
  return fmt::format(
      "savepoint {}: job {} as of batch {} (cluster {})\n  positions: {}\n  state: {} reduce partitions with state, "
      "{} keys\n",
      dir, m.job_id(), m.last_committed_batch(), m.cluster(), positions.empty() ? "-" : positions,
      m.state_files_size(), entries);
}

}  // namespace sluice::ctl
