// Unit tests of the socket source's reader (lib/source/socket_source.h) against
// a listening socket on 127.0.0.1 owned by the test: lines and length-prefixed
// frames split across send() calls at awkward places, each event's offset,
// "\r\n", oversized events as dead letters that keep their offset without
// breaking the framing, the last line at EOF, and reconnecting to the same
// listener with offsets continuing.
//
// The test drives both ends from one thread: the reader's connect completes
// through the listen backlog, and after each send() the reader is pumped until
// it has read everything there is, so every send() is a separate recv() on
// the reader's side — the chunk boundaries below are the ones it sees.
#include "lib/source/socket_source.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <memory>
#include <ostream>
#include <string>
#include <string_view>
#include <vector>

#include "gtest/gtest.h"

namespace sluice::source {
namespace {

using Framing = SocketReaderOptions::Framing;
using Clock = std::chrono::steady_clock;

constexpr auto kDeadline = std::chrono::milliseconds(1500);

// A listening socket on 127.0.0.1, port chosen by the kernel.
class Listener {
 public:
  Listener() {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    EXPECT_GE(fd_, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = 0;
    EXPECT_EQ(::bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof(a)), 0);
    EXPECT_EQ(::listen(fd_, 4), 0);
    socklen_t len = sizeof(a);
    EXPECT_EQ(::getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len), 0);
    port_ = ntohs(a.sin_port);
  }
  ~Listener() { ::close(fd_); }
  int fd() const { return fd_; }
  int port() const { return port_; }

 private:
  int fd_ = -1;
  int port_ = 0;
};

// One event as the reader delivered it: a record or a dead letter, at an offset.
struct Event {
  int64_t offset;
  bool dead;
  std::string data;
  bool operator==(const Event& o) const { return offset == o.offset && dead == o.dead && data == o.data; }
};
std::ostream& operator<<(std::ostream& os, const Event& e) {
  return os << "{" << e.offset << (e.dead ? " dead" : " \"" + e.data + "\"") << "}";
}
Event Rec(int64_t offset, std::string data) { return {offset, false, std::move(data)}; }
Event Dead(int64_t offset) { return {offset, true, ""}; }

// The reader under test, its builder, and the server end of its connection.
class SocketSourceTest : public ::testing::Test {
 protected:
  static constexpr int64_t kStart = 100;  // offsets count from the receiver's start

  void Open(Framing framing, int64_t max_event_bytes) {
    auto r = NewSocketReader({.address = "127.0.0.1:" + std::to_string(listener_.port()),
                              .framing = framing,
                              .max_event_bytes = max_event_bytes});
    ASSERT_TRUE(r.ok()) << r.status();
    reader_ = std::move(*r);
    EXPECT_FALSE(reader_->replayable());
    Accept();
  }
  void TearDown() override { CloseConn(); }

  // Pumps the reader (which connects, or reconnects after a close) until the
  // listener has a connection to accept.
  void Accept() {
    ASSERT_LT(conn_, 0);
    const auto deadline = Clock::now() + kDeadline;
    while (Clock::now() < deadline) {
      Pump(10);
      pollfd p{listener_.fd(), POLLIN, 0};
      if (::poll(&p, 1, 0) == 1) {
        conn_ = ::accept4(listener_.fd(), nullptr, nullptr, SOCK_CLOEXEC);
        ASSERT_GE(conn_, 0);
        return;
      }
    }
    FAIL() << "the reader did not connect";
  }
  void CloseConn() {
    if (conn_ >= 0) ::close(conn_);
    conn_ = -1;
  }

  // One ReadInto of at most one event; a block is cut per event so each one's
  // offset is known. Returns how many were added.
  int64_t Pump(int timeout_ms) {
    const int64_t before = builder_.next_offset();
    auto n = reader_->ReadInto(1, timeout_ms, &builder_);
    EXPECT_TRUE(n.ok()) << n.status();
    if (!n.ok()) return 0;
    EXPECT_LE(*n, 1);
    EXPECT_EQ(builder_.next_offset() - before, *n) << "every event takes exactly one offset";
    if (*n == 0) return 0;
    format::Block b = builder_.Cut();
    Event e{b.lineage().start_offset, b.records() == 0, ""};
    EXPECT_TRUE(b.ForEach([&](std::string_view rec) { e.data = std::string(rec); }).ok());
    events_.push_back(std::move(e));
    return *n;
  }
  // Reads until the reader has parsed all it received and found the socket
  // empty (a ReadInto that adds nothing).
  void Settle() {
    const auto deadline = Clock::now() + kDeadline;
    while (Pump(15) > 0 && Clock::now() < deadline) {
    }
  }
  // Sends each chunk as its own send(), letting the reader take it in between.
  void Send(const std::vector<std::string>& chunks) {
    for (const std::string& c : chunks) {
      ASSERT_EQ(::send(conn_, c.data(), c.size(), MSG_NOSIGNAL), static_cast<ssize_t>(c.size()));
      Settle();
    }
  }
  // Pumps until `n` events in all have come (or the deadline).
  void WaitFor(size_t n) {
    const auto deadline = Clock::now() + kDeadline;
    while (events_.size() < n && Clock::now() < deadline) Pump(20);
  }

  Listener listener_;
  std::unique_ptr<PartitionReader> reader_;
  format::BlockBuilder builder_{"sock", 0, kStart};
  int conn_ = -1;
  std::vector<Event> events_;
};

// The 4-byte big-endian length prefix alone.
std::string Header(uint32_t n) {
  return {static_cast<char>(n >> 24), static_cast<char>(n >> 16), static_cast<char>(n >> 8), static_cast<char>(n)};
}
std::string Frame(const std::string& body) { return Header(static_cast<uint32_t>(body.size())) + body; }

TEST(SocketReader, MalformedAddressIsInvalidArgument) {
  auto r = NewSocketReader({.address = "no-port-here"});
  ASSERT_FALSE(r.ok());
  EXPECT_TRUE(absl::IsInvalidArgument(r.status())) << r.status();
}

TEST_F(SocketSourceTest, LinesSplitMidLineAreRecordsAtConsecutiveOffsets) {
  Open(Framing::kLines, 64);
  Send({"al", "pha\nbe", "ta\n", "\n", "gam", "ma\ndelta\nep", "silon\n"});
  EXPECT_EQ(events_, (std::vector<Event>{Rec(100, "alpha"), Rec(101, "beta"), Rec(102, ""), Rec(103, "gamma"),
                                         Rec(104, "delta"), Rec(105, "epsilon")}));
  EXPECT_EQ(builder_.next_offset(), 106);
  EXPECT_EQ(builder_.dead_letters(), 0);
}

TEST_F(SocketSourceTest, ReadIntoAddsAtMostMaxRecordsAndWaitsAtMostTheTimeout) {
  Open(Framing::kLines, 64);
  ASSERT_EQ(::send(conn_, "1\n2\n3\n4\n5\n", 10, MSG_NOSIGNAL), 10);
  std::vector<int64_t> counts;
  const auto deadline = Clock::now() + kDeadline;
  while (builder_.next_offset() < 105 && Clock::now() < deadline) {
    auto n = reader_->ReadInto(2, 100, &builder_);
    ASSERT_TRUE(n.ok()) << n.status();
    if (*n > 0) counts.push_back(*n);
  }
  EXPECT_EQ(counts, (std::vector<int64_t>{2, 2, 1}));
  format::Block b = builder_.Cut();
  EXPECT_EQ(b.lineage().start_offset, 100);
  EXPECT_EQ(b.lineage().end_offset, 105);
  std::vector<std::string> seen;
  ASSERT_TRUE(b.ForEach([&](std::string_view r) { seen.emplace_back(r); }).ok());
  EXPECT_EQ(seen, (std::vector<std::string>{"1", "2", "3", "4", "5"}));
  // Nothing to read: it returns 0 after about the timeout, not much later.
  const auto t0 = Clock::now();
  auto n = reader_->ReadInto(10, 50, &builder_);
  ASSERT_TRUE(n.ok());
  EXPECT_EQ(*n, 0);
  EXPECT_LT(Clock::now() - t0, std::chrono::milliseconds(500));
}

TEST_F(SocketSourceTest, CrLfEndsALineAndOnlyTheTrailingCrIsStripped) {
  Open(Framing::kLines, 8);
  Send({"one\r", "\ntwo\r\n", "\r\n", "a\rb\n", "x\r\r\n"});
  EXPECT_EQ(events_, (std::vector<Event>{Rec(100, "one"), Rec(101, "two"), Rec(102, ""), Rec(103, "a\rb"),
                                         Rec(104, "x\r")}));
}

TEST_F(SocketSourceTest, LineAtTheLimitWithCrLfSplitBeforeTheNewlineIsARecord) {
  // 8 bytes is within an 8-byte limit; its "\r\n" is not part of the event,
  // wherever TCP happens to cut it.
  Open(Framing::kLines, 8);
  Send({"12345678\r", "\n", "87654321", "\r", "\n", "123456789\r", "\nok\n"});
  EXPECT_EQ(events_, (std::vector<Event>{Rec(100, "12345678"), Rec(101, "87654321"), Dead(102), Rec(103, "ok")}));
}

TEST_F(SocketSourceTest, LongLineIsOneDeadLetterAndTheFollowingLinesAreIntact) {
  Open(Framing::kLines, 16);
  Send({"ok\n" + std::string(30, 'a') + "\nnext\n" + std::string(16, 'b') + "\n" + std::string(17, 'c') +
        "\nlast\n"});
  EXPECT_EQ(events_, (std::vector<Event>{Rec(100, "ok"), Dead(101), Rec(102, "next"),
                                         Rec(103, std::string(16, 'b')), Dead(104), Rec(105, "last")}));
  EXPECT_EQ(builder_.dead_letters(), 2);
  EXPECT_NE(builder_.last_dead_letter().find("offset 104"), std::string::npos) << builder_.last_dead_letter();
}

TEST_F(SocketSourceTest, LongLineInChunksIsOneDeadLetter) {
  Open(Framing::kLines, 16);
  const std::string a20(20, 'a'), a10(10, 'a');
  // Chunks each over the limit before the newline comes.
  Send({"first\n", a20, a20, a20 + "\nsecond\n", "third\n"});
  // Chunks each under the limit that add up to more than it.
  Send({a10, a10, "aa\nfourth\n"});
  // A long line whose newline comes with the start of the next line.
  Send({a20 + a10, "a\nfif", "th\n"});
  EXPECT_EQ(events_, (std::vector<Event>{Rec(100, "first"), Dead(101), Rec(102, "second"), Rec(103, "third"),
                                         Dead(104), Rec(105, "fourth"), Dead(106), Rec(107, "fifth")}));
  EXPECT_EQ(builder_.dead_letters(), 3);
}

TEST_F(SocketSourceTest, LastLineWithoutNewlineIsDeliveredAtEof) {
  Open(Framing::kLines, 16);
  Send({"a\n", "ta", "il"});
  EXPECT_EQ(events_, (std::vector<Event>{Rec(100, "a")}));  // "tail" may go on: not a line yet
  CloseConn();
  WaitFor(2);
  EXPECT_EQ(events_, (std::vector<Event>{Rec(100, "a"), Rec(101, "tail")}));
}

TEST_F(SocketSourceTest, ReconnectsToTheSameListenerAndOffsetsContinue) {
  Open(Framing::kLines, 16);
  Send({"a\nb", "\n"});
  CloseConn();
  Accept();  // the reader saw the close and connected again
  Send({"c\n", "d\n"});
  CloseConn();
  Accept();
  Send({"e", "\n"});
  EXPECT_EQ(events_, (std::vector<Event>{Rec(100, "a"), Rec(101, "b"), Rec(102, "c"), Rec(103, "d"), Rec(104, "e")}));
}

TEST_F(SocketSourceTest, LongLineCutByTheCloseDoesNotSwallowTheNextConnection) {
  Open(Framing::kLines, 16);
  Send({"a\n", std::string(20, 'x')});  // a dead letter, skipped to a newline that never comes
  CloseConn();
  Accept();
  Send({"b\n", "c\n"});
  EXPECT_EQ(events_, (std::vector<Event>{Rec(100, "a"), Dead(101), Rec(102, "b"), Rec(103, "c")}));
}

TEST_F(SocketSourceTest, FramesSplitMidLengthPrefixAndMidBody) {
  Open(Framing::kFrames, 16);
  const std::string all = Frame("abc") + Frame("") + Frame("hello world") + Frame(std::string(16, 'm')) + Frame("z");
  // Cut at: inside the first prefix, inside its body, inside the empty
  // frame's prefix, between frames, one byte into a prefix, ...
  std::vector<std::string> chunks;
  size_t from = 0;
  for (size_t at : {1u, 2u, 5u, 9u, 11u, 13u, 20u, 26u, 27u, 30u, 50u}) {
    chunks.push_back(all.substr(from, at - from));
    from = at;
  }
  chunks.push_back(all.substr(from));
  Send(chunks);
  EXPECT_EQ(events_, (std::vector<Event>{Rec(100, "abc"), Rec(101, ""), Rec(102, "hello world"),
                                         Rec(103, std::string(16, 'm')), Rec(104, "z")}));
  EXPECT_EQ(builder_.dead_letters(), 0);
}

TEST_F(SocketSourceTest, OversizedFrameIsSkippedExactly) {
  Open(Framing::kFrames, 16);
  // The bodies look like frames themselves: skipping a byte too few or too
  // many would parse garbage.
  std::string body40;
  for (int i = 0; i < 8; ++i) body40 += Frame("q");
  body40.resize(40, '\0');
  // In one chunk with what follows it.
  Send({Frame("a") + Header(40) + body40 + Frame("next")});
  // Split: mid prefix, body in chunks larger than the limit, the next
  // frame's prefix cut after two bytes.
  const std::string rest = Frame("after");
  Send({Header(40).substr(0, 2), Header(40).substr(2), body40.substr(0, 20), body40.substr(20, 20) + rest.substr(0, 2),
        rest.substr(2), Frame(std::string(17, 'o')), Frame("end")});
  EXPECT_EQ(events_, (std::vector<Event>{Rec(100, "a"), Dead(101), Rec(102, "next"), Dead(103), Rec(104, "after"),
                                         Dead(105), Rec(106, "end")}));
  EXPECT_EQ(builder_.dead_letters(), 3);
}

TEST_F(SocketSourceTest, FrameCutShortByTheCloseIsADeadLetterAndTheNextConnectionParses) {
  Open(Framing::kFrames, 16);
  Send({Frame("a") + Header(5) + "xy"});
  CloseConn();
  Accept();
  Send({Frame("b"), Frame("c")});
  EXPECT_EQ(events_, (std::vector<Event>{Rec(100, "a"), Dead(101), Rec(102, "b"), Rec(103, "c")}));
}

TEST_F(SocketSourceTest, OversizedFrameCutShortByTheCloseDoesNotSkipIntoTheNextConnection) {
  Open(Framing::kFrames, 16);
  Send({Header(100) + std::string(10, 'x')});
  CloseConn();
  Accept();
  Send({Frame("b"), Frame("c")});
  EXPECT_EQ(events_, (std::vector<Event>{Dead(100), Rec(101, "b"), Rec(102, "c")}));
}

}  // namespace
}  // namespace sluice::source
