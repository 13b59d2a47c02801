#include "lib/sink/sink.h"

#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <mutex>

#include "lib/sink/kafka_sink.h"

namespace sluice::sink {
namespace {

// Temporary files of a write that never finished (its worker was killed)
// are hidden (".<name>.<pid>-<n>.tmp", which readers skip) and removed by
// the next sink opened on the directory once they are older than any
// attempt can take (a task's deadline is a minute).
constexpr auto kStaleTemporary = std::chrono::minutes(5);

void RemoveStaleTemporaries(const std::string& dir) {
  std::error_code ec;
  const auto now = std::filesystem::file_time_type::clock::now();
  for (const auto& e : std::filesystem::directory_iterator(dir, ec)) {
    const std::string name = e.path().filename().string();
    if (name.empty() || name[0] != '.' || !name.ends_with(".tmp")) continue;
    std::error_code age_error;
    const auto written = std::filesystem::last_write_time(e.path(), age_error);
    if (!age_error && now - written > kStaleTemporary) std::filesystem::remove(e.path(), age_error);
  }
}

class FileSink : public Sink {
 public:
  explicit FileSink(proto::FileSinkSpec spec) : spec_(std::move(spec)) { RemoveStaleTemporaries(spec_.path()); }

  Result<WriteResult> Write(const WriteRequest& request, std::string_view lines) override {
    const std::string name =
        BatchFileName(request.job_id, request.batch_id, request.task, spec_.format() == "csv" ? "csv" : "jsonl");
    RETURN_IF_ERROR(WriteFileAtomically(spec_.path(), name, lines));
    return WriteResult{.name = spec_.path() + "/" + name};
  }

 private:
  const proto::FileSinkSpec spec_;
};

class StdoutSink : public Sink {
 public:
  Result<WriteResult> Write(const WriteRequest&, std::string_view lines) override {
    std::lock_guard<std::mutex> lock(mu_);  // one task's lines stay together
    std::cout << lines << std::flush;
    return WriteResult{.name = "stdout"};
  }

 private:
  std::mutex mu_;
};

class NullSink : public Sink {
 public:
  Result<WriteResult> Write(const WriteRequest&, std::string_view) override { return WriteResult{.name = "null"}; }
};

}  // namespace

std::string BatchFileName(const std::string& job_id, int64_t batch_id, int32_t task, std::string_view extension) {
  return fmt::format("{}-batch-{:08d}-part-{:04d}.{}", job_id, batch_id, task, extension);
}

Status WriteFileAtomically(const std::string& dir, const std::string& name, std::string_view data) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  // A temporary name of its own: two attempts at the same batch (a zombie
  // task, a retry elsewhere) never write into each other's file; whichever
  // renames last leaves a whole file, the same either way.
  static std::atomic<uint64_t> attempts{0};
  const std::string tmp = fmt::format("{}/.{}.{}-{}.tmp", dir, name, ::getpid(), attempts.fetch_add(1));
  const std::string final_path = dir + "/" + name;
  int fd = ::open(tmp.c_str(), O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0644);
  if (fd < 0) return absl::UnavailableError(fmt::format("file sink: cannot create {}: {}", tmp, std::strerror(errno)));
  auto fail = [&](const std::string& what) {
    const int err = errno;
    ::close(fd);
    ::unlink(tmp.c_str());
    return absl::UnavailableError(fmt::format("file sink: {} {}: {}", what, tmp, std::strerror(err)));
  };
  size_t done = 0;
  while (done < data.size()) {
    ssize_t n = ::write(fd, data.data() + done, data.size() - done);
    if (n <= 0) return fail("writing");
    done += n;
  }
  if (::fsync(fd) != 0) return fail("fsync of");
  if (::close(fd) != 0) {
    ::unlink(tmp.c_str());
    return absl::UnavailableError("file sink: closing " + tmp);
  }
  if (::rename(tmp.c_str(), final_path.c_str()) != 0) {
    const int err = errno;
    ::unlink(tmp.c_str());
    return absl::UnavailableError(fmt::format("file sink: renaming {}: {}", tmp, std::strerror(err)));
  }
  int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    ::fsync(dfd);
    ::close(dfd);
  }
  return absl::OkStatus();
}

Result<std::unique_ptr<Sink>> OpenSink(const proto::SinkSpec& spec) {
  switch (spec.sink_case()) {
    case proto::SinkSpec::kFile:
      return std::unique_ptr<Sink>(new FileSink(spec.file()));
    case proto::SinkSpec::kKafka:
      return OpenKafkaSink(spec.kafka());
    case proto::SinkSpec::kStdout:
      return std::unique_ptr<Sink>(new StdoutSink());
    case proto::SinkSpec::kNull:
      return std::unique_ptr<Sink>(new NullSink());
    case proto::SinkSpec::SINK_NOT_SET:
      break;
  }
  return absl::InvalidArgumentError("the job has no sink");
}

}  // namespace sluice::sink
