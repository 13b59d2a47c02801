// ServiceNotifier and Liveness (lib/common/service_notify.h): no-ops without
// NOTIFY_SOCKET; the messages on a socket of the test's own; the watchdog
// pings only while every loop beats; the wedge hook blocks its loop.
#include "lib/common/service_notify.h"

#include <stdlib.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <filesystem>
#include <thread>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace sluice {
namespace {

using std::chrono::milliseconds;

// A bound datagram socket at a fresh path; Receive() returns "" on timeout.
class Socket {
 public:
  Socket() {
    path_ = std::filesystem::temp_directory_path() / ("notify-test-" + std::to_string(::getpid()) + ".sock");
    fd_ = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::snprintf(addr.sun_path, sizeof(addr.sun_path), "%s", path_.c_str());
    ::unlink(path_.c_str());
    EXPECT_EQ(::bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
    timeval tv{.tv_sec = 0, .tv_usec = 50'000};
    ::setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  }
  ~Socket() {
    ::close(fd_);
    ::unlink(path_.c_str());
  }
  const std::string& path() const { return path_; }
  std::string Receive() {
    char buf[1024];
    ssize_t n = ::recv(fd_, buf, sizeof(buf), 0);
    return n > 0 ? std::string(buf, n) : "";
  }
  // Every message within `window`.
  std::vector<std::string> Drain(milliseconds window) {
    std::vector<std::string> out;
    auto end = std::chrono::steady_clock::now() + window;
    while (std::chrono::steady_clock::now() < end) {
      if (std::string m = Receive(); !m.empty()) out.push_back(m);
    }
    return out;
  }

 private:
  std::string path_;
  int fd_;
};

TEST(ServiceNotifier, NoSocketNoOp) {
  ::unsetenv("NOTIFY_SOCKET");
  ::setenv("WATCHDOG_USEC", "100000", 1);
  ServiceNotifier n;
  EXPECT_FALSE(n.enabled());
  EXPECT_EQ(n.watchdog_interval().count(), 0);
  Liveness liveness;
  n.Ready("x");
  n.Status("y");
  n.StartWatchdog(&liveness);
  n.Stopping("z");
  ::unsetenv("WATCHDOG_USEC");
}

TEST(ServiceNotifier, SendsReadyOnceStatusOnChangeAndStopping) {
  Socket sock;
  ::setenv("NOTIFY_SOCKET", sock.path().c_str(), 1);
  ::unsetenv("WATCHDOG_USEC");
  ServiceNotifier n;
  ASSERT_TRUE(n.enabled());
  n.Status("starting");
  EXPECT_EQ(sock.Receive(), "STATUS=starting");
  n.Status("starting");  // unchanged: not sent again
  n.Ready("leader epoch 7,\n3 workers");
  EXPECT_EQ(sock.Receive(), "READY=1\nSTATUS=leader epoch 7, 3 workers");
  n.Ready("again");
  n.Stopping("stopping on signal 15");
  EXPECT_EQ(sock.Receive(), "STOPPING=1\nSTATUS=stopping on signal 15");
  EXPECT_EQ(sock.Receive(), "");
  ::unsetenv("NOTIFY_SOCKET");
}

TEST(Liveness, NamesLoopsThatStoppedBeating) {
  Liveness liveness;
  LoopBeat* a = liveness.Register("a");
  LoopBeat* b = liveness.Register("b");
  auto t = std::chrono::steady_clock::now();
  a->Beat();
  b->Beat();
  EXPECT_TRUE(liveness.Stalled(t, milliseconds(100)).empty());
  a->Beat();
  EXPECT_TRUE(liveness.Stalled(t + milliseconds(50), milliseconds(100)).empty());  // b: within the gap
  a->Beat();
  EXPECT_EQ(liveness.Stalled(t + milliseconds(150), milliseconds(100)), std::vector<std::string>{"b"});
  b->Beat();
  EXPECT_TRUE(liveness.Stalled(t + milliseconds(160), milliseconds(100)).empty());
}

TEST(ServiceNotifier, WatchdogPingsOnlyWhileEveryLoopBeats) {
  Socket sock;
  ::setenv("NOTIFY_SOCKET", sock.path().c_str(), 1);
  ::setenv("WATCHDOG_USEC", "400000", 1);  // checks every 100 ms, a loop may pause 200 ms
  ServiceNotifier n;
  ::unsetenv("WATCHDOG_USEC");
  ASSERT_EQ(n.watchdog_interval().count(), 400'000);
  Liveness liveness;
  LoopBeat* loop = liveness.Register("loop");
  std::atomic<bool> beating{true}, stop{false};
  std::thread t([&] {
    while (!stop) {
      if (beating) loop->Beat();
      std::this_thread::sleep_for(milliseconds(20));
    }
  });
  n.StartWatchdog(&liveness);
  auto pings = [](const std::vector<std::string>& ms) {
    return std::count(ms.begin(), ms.end(), std::string("WATCHDOG=1"));
  };
  EXPECT_GE(pings(sock.Drain(milliseconds(600))), 4);
  beating = false;
  sock.Drain(milliseconds(400));  // the gap passes
  EXPECT_EQ(pings(sock.Drain(milliseconds(600))), 0);
  beating = true;
  EXPECT_GE(pings(sock.Drain(milliseconds(600))), 3);
  n.StopWatchdog();
  stop = true;
  t.join();
  ::unsetenv("NOTIFY_SOCKET");
}

#ifdef SLUICE_FAULT_POINTS
TEST(LoopBeat, TheWedgeHookBlocksItsLoopWhileTheFileExists) {
  const std::string file = std::filesystem::temp_directory_path() / ("wedge-" + std::to_string(::getpid()));
  ::setenv("SLUICE_TEST_WEDGE_LOOP", "plan", 1);
  ::setenv("SLUICE_TEST_WEDGE_FILE", file.c_str(), 1);
  LoopBeat plan("plan"), other("other");
  ::unsetenv("SLUICE_TEST_WEDGE_LOOP");
  ::unsetenv("SLUICE_TEST_WEDGE_FILE");
  { std::FILE* f = std::fopen(file.c_str(), "w"); std::fclose(f); }
  std::atomic<bool> done{false};
  std::thread t([&] {
    plan.Beat();
    done = true;
  });
  other.Beat();  // not the named loop: never blocks
  EXPECT_EQ(other.count(), 1u);
  std::this_thread::sleep_for(milliseconds(200));
  EXPECT_FALSE(done);
  EXPECT_EQ(plan.count(), 0u);
  std::filesystem::remove(file);
  t.join();
  EXPECT_EQ(plan.count(), 1u);
}
#endif

}  // namespace
}  // namespace sluice
