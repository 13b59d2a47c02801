#include "lib/source/socket_source.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <thread>

#include "lib/common/config.h"
#include "spdlog/spdlog.h"

namespace sluice::source {
namespace {

class SocketReader final : public PartitionReader {
 public:
  SocketReader(SocketReaderOptions options, HostPort hp) : options_(std::move(options)), hp_(std::move(hp)) {}
  ~SocketReader() override { Close(); }

  Result<int64_t> ReadInto(int64_t max_records, int timeout_ms, format::BlockBuilder* builder) override {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
    int64_t added = Parse(max_records, builder);
    while (added == 0 && std::chrono::steady_clock::now() < deadline) {
      const int left = static_cast<int>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                            deadline - std::chrono::steady_clock::now())
                                            .count());
      if (fd_ < 0 && !Connect(std::max(1, left))) return 0;
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, std::max(0, left)) <= 0) break;
      char buf[64 * 1024];
      ssize_t n = ::recv(fd_, buf, sizeof(buf), 0);
      if (n > 0) {
        buf_.append(buf, n);
      } else if (n == 0 || (errno != EINTR && errno != EAGAIN)) {
        // The peer closed. Nothing of this connection carries over to the
        // next one (buf_ holds no complete record here): a last line without
        // its newline is still a line; a frame cut short is a dead letter; an
        // oversized event being skipped (already a dead letter) ends here.
        if (skip_ > 0) {
          skip_ = 0;
        } else if (!buf_.empty() && options_.framing == SocketReaderOptions::Framing::kLines) {
          buf_.push_back('\n');
        } else if (!buf_.empty()) {
          builder->AddDeadLetter(fmt::format("frame cut short by the connection's end after {} bytes", buf_.size()));
          ++added;
          buf_.clear();
        }
        spdlog::info("socket source {}: connection closed; reconnecting", options_.address);
        Close();
      }
      added += Parse(max_records - added, builder);
    }
    return added;
  }

  bool replayable() const override { return false; }

 private:
  bool Connect(int timeout_ms) {
    const auto now = std::chrono::steady_clock::now();
    if (now < next_attempt_) {
      std::this_thread::sleep_for(std::min(std::chrono::milliseconds(timeout_ms),
                                           std::chrono::duration_cast<std::chrono::milliseconds>(next_attempt_ - now)));
      return false;
    }
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    addrinfo* res = nullptr;
    if (::getaddrinfo(hp_.host.c_str(), std::to_string(hp_.port).c_str(), &hints, &res) != 0 || res == nullptr) {
      return Backoff("cannot resolve host");
    }
    int fd = ::socket(res->ai_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    int rc = ::connect(fd, res->ai_addr, res->ai_addrlen);
    ::freeaddrinfo(res);
    if (rc != 0 && errno == EINPROGRESS) {
      pollfd p{fd, POLLOUT, 0};
      int err = ETIMEDOUT;
      socklen_t len = sizeof(err);
      if (::poll(&p, 1, std::min(timeout_ms, 1000)) == 1) ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
      rc = err == 0 ? 0 : -1;
      errno = err;
    }
    if (rc != 0) {
      const std::string why = std::strerror(errno);
      ::close(fd);
      return Backoff(why);
    }
    fd_ = fd;
    backoff_ = std::chrono::milliseconds(100);
    spdlog::info("socket source: connected to {}", options_.address);
    return true;
  }

  bool Backoff(const std::string& why) {
    if (backoff_ >= std::chrono::milliseconds(1600) || backoff_ == std::chrono::milliseconds(100)) {
      spdlog::warn("socket source: cannot connect to {}: {}; retrying", options_.address, why);
    }
    next_attempt_ = std::chrono::steady_clock::now() + backoff_;
    backoff_ = std::min(backoff_ * 2, std::chrono::milliseconds(2000));
    return false;
  }

  void Close() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }

  // Moves complete records from buf_ into the builder.
  int64_t Parse(int64_t max_records, format::BlockBuilder* builder) {
    const int64_t max = options_.max_event_bytes;
    int64_t added = 0;
    size_t pos = 0;
    while (added < max_records && pos < buf_.size()) {
      if (options_.framing == SocketReaderOptions::Framing::kLines) {
        const char* nl = static_cast<const char*>(std::memchr(buf_.data() + pos, '\n', buf_.size() - pos));
        if (skip_ > 0) {  // inside an oversized line, already a dead letter
          if (nl == nullptr) {
            pos = buf_.size();
            break;
          }
          pos = nl - buf_.data() + 1;
          skip_ = 0;
          continue;
        }
        if (nl == nullptr) {
          // A trailing '\r' may be the start of its "\r\n", not of the event.
          const int64_t rest = static_cast<int64_t>(buf_.size() - pos) - (buf_.back() == '\r' ? 1 : 0);
          if (rest > max) {
            builder->AddDeadLetter(fmt::format("line longer than {} bytes", max));
            ++added;
            skip_ = 1;
            pos = buf_.size();
          }
          break;
        }
        size_t len = nl - (buf_.data() + pos);
        if (len > 0 && buf_[pos + len - 1] == '\r') --len;
        if (static_cast<int64_t>(len) > max) {
          builder->AddDeadLetter(fmt::format("line of {} bytes is over the {}-byte limit", len, max));
        } else {
          builder->Add(std::string_view(buf_.data() + pos, len));
        }
        ++added;
        pos = nl - buf_.data() + 1;
      } else {
        if (skip_ > 0) {  // the bytes of an oversized frame
          const size_t n = std::min<size_t>(skip_, buf_.size() - pos);
          skip_ -= n;
          pos += n;
          continue;
        }
        if (buf_.size() - pos < 4) break;
        const auto* p = reinterpret_cast<const unsigned char*>(buf_.data() + pos);
        const uint32_t len = (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) | (uint32_t{p[2]} << 8) | p[3];
        if (static_cast<int64_t>(len) > max) {
          builder->AddDeadLetter(fmt::format("frame of {} bytes is over the {}-byte limit", len, max));
          ++added;
          skip_ = len;
          pos += 4;
          continue;
        }
        if (buf_.size() - pos - 4 < len) break;
        builder->Add(std::string_view(buf_.data() + pos + 4, len));
        ++added;
        pos += 4 + len;
      }
    }
    buf_.erase(0, pos);
    return added;
  }

  const SocketReaderOptions options_;
  const HostPort hp_;
  int fd_ = -1;
  std::string buf_;   // bytes read, not yet parsed into records
  uint64_t skip_ = 0;  // lines: inside a dead line; frames: bytes still to skip
  std::chrono::steady_clock::time_point next_attempt_{};
  std::chrono::milliseconds backoff_{100};
};

}  // namespace

Result<std::unique_ptr<PartitionReader>> NewSocketReader(SocketReaderOptions options) {
  ASSIGN_OR_RETURN(HostPort hp, ParseHostPort(options.address, "socket address"));
  return std::unique_ptr<PartitionReader>(new SocketReader(std::move(options), std::move(hp)));
}

}  // namespace sluice::source
