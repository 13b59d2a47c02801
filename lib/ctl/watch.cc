#include "lib/ctl/watch.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <termios.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <ctime>
#include <ostream>

#include "absl/strings/str_cat.h"
#include "spdlog/fmt/fmt.h"

namespace sluice::ctl {
namespace {

// "07:10:03" (UTC).
std::string TimeOfDay(int64_t unix_ms) {
  const std::time_t t = static_cast<std::time_t>(unix_ms / 1000);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[16];
  std::strftime(buf, sizeof buf, "%H:%M:%S", &tm);
  return buf;
}

// "850 ms", "4.2 s", "3m12s".
std::string Duration(int64_t ms) {
  if (ms < 1000) return fmt::format("{} ms", ms);
  if (ms < 120'000) return fmt::format("{:.1f} s", ms / 1000.0);
  return fmt::format("{}m{:02}s", ms / 60'000, (ms / 1000) % 60);
}

// "1,234,567".
std::string Count(int64_t n) {
  std::string digits = std::to_string(n < 0 ? -n : n);
  std::string out;
  for (size_t i = 0; i < digits.size(); ++i) {
    if (i > 0 && (digits.size() - i) % 3 == 0) out += ',';
    out += digits[i];
  }
  return n < 0 ? "-" + out : out;
}

// Events/s over the job's recent committed batches: their input over their
// batch intervals. -1 if none committed yet.
double InputRate(const proto::JobInfo& j) {
  const int n = std::min(j.recent_batches_size(), 5);
  if (n == 0 || j.spec().batch_interval_ms() <= 0) return -1;
  int64_t input = 0;
  for (int i = j.recent_batches_size() - n; i < j.recent_batches_size(); ++i)
    input += j.recent_batches(i).input_count();
  return static_cast<double>(input) * 1000.0 / (static_cast<double>(n) * j.spec().batch_interval_ms());
}

void RenderJob(const proto::JobInfo& j, int64_t now_ms, std::vector<std::string>* lines) {
  const int64_t waiting = std::max<int64_t>(0, j.last_planned_batch() - j.last_committed_batch());
  lines->push_back(fmt::format("JOB {}  {}  batch every {} ms  committed {}  planned {}{}", j.job_id(), j.state(),
                               j.spec().batch_interval_ms(), j.last_committed_batch(), j.last_planned_batch(),
                               waiting > 1 ? fmt::format("  ({} batches waiting)", waiting) : ""));
  if (j.state() != "running") {
    if (!j.stop_reason().empty()) lines->push_back(fmt::format("  {:<13}{}", j.state() + ":", j.stop_reason()));
  } else if (j.has_in_flight()) {
    const proto::BatchProgress& p = j.in_flight();
    lines->push_back(fmt::format("  in flight:   batch {} {} {}/{} tasks  running {}{}", p.batch_id(),
                                 ProgressBar(p.tasks_done(), p.tasks_total(), 20), p.tasks_done(), p.tasks_total(),
                                 Duration(p.running_ms()),
                                 p.attempt() > 1 ? fmt::format("  (attempt {})", p.attempt()) : ""));
  } else if (waiting > 0) {
    lines->push_back(fmt::format("  in flight:   batch {} waiting to start", j.last_committed_batch() + 1));
  } else {
    lines->push_back(fmt::format("  in flight:   none (next batch at its batch time)"));
  }
  const double rate = InputRate(j);
  std::string limit = j.rate_limit() > 0 ? Count(j.rate_limit()) + "/s" : "none";
  if (!j.rate_limit_reason().empty()) limit += " (" + j.rate_limit_reason() + ")";
  lines->push_back(fmt::format("  input rate:  {}   rate limit: {}",
                               rate < 0 ? std::string("-") : Count(static_cast<int64_t>(rate + 0.5)) + " events/s",
                               limit));
  if (!j.recent_batches().empty()) {
    const proto::BatchSummary& b = *j.recent_batches().rbegin();
    lines->push_back(
        fmt::format("  last batch:  {}  scheduling delay {} ms  processing {} ms  total delay {} ms  "
                    "({} in, {} out, {} task attempts, committed {} ago)",
                    b.batch_id(), b.scheduling_delay_ms(), b.processing_ms(), b.total_delay_ms(),
                    Count(b.input_count()), Count(b.output_count()), b.task_attempts(),
                    Duration(std::max<int64_t>(0, now_ms - b.batch_time_unix_ms() - b.total_delay_ms()))));
  }
  lines->push_back(fmt::format("  records:     {} in, {} out, {} dead letters", Count(j.total_input()),
                               Count(j.total_output()), Count(j.total_dead_letters())));
}

// Cuts `line` to `width` columns (the view is ASCII but for job ids and
// reasons; a UTF-8 sequence is not split).
std::string Cut(std::string line, int width) {
  if (width <= 0 || static_cast<int>(line.size()) <= width) return line;
  size_t end = static_cast<size_t>(width);
  while (end > 0 && (static_cast<unsigned char>(line[end]) & 0xC0) == 0x80) --end;
  line.resize(end);
  return line;
}

// The terminal while the view is drawn: the alternate screen, no cursor,
// stdin without line buffering or echo; all restored by Restore().
class Terminal {
 public:
  Terminal() = default;
  Terminal(const Terminal&) = delete;
  Terminal& operator=(const Terminal&) = delete;
  // On every way out, an exception included, the screen is given back.
  ~Terminal() {
    if (out_ != nullptr) Restore(*out_);
  }
  void Enter(std::ostream& out) {
    out_ = &out;
    if (isatty(STDIN_FILENO) && tcgetattr(STDIN_FILENO, &saved_) == 0) {
      termios raw = saved_;
      raw.c_lflag &= ~static_cast<tcflag_t>(ICANON | ECHO);
      raw.c_cc[VMIN] = 0;
      raw.c_cc[VTIME] = 0;
      if (tcsetattr(STDIN_FILENO, TCSANOW, &raw) == 0) stdin_raw_ = true;
    }
    out << "\x1b[?1049h\x1b[?25l\x1b[H\x1b[2J" << std::flush;
    entered_ = true;
  }
  void Restore(std::ostream& out) {
    if (!entered_) return;
    out.clear();  // whatever happened to the last frame, the screen is restored
    out << "\x1b[?1049l\x1b[?25h" << std::flush;
    if (stdin_raw_) tcsetattr(STDIN_FILENO, TCSANOW, &saved_);
    entered_ = false;
  }
  bool reads_keys() const { return stdin_raw_; }
  // Columns and rows of stdout (80 x 24 if unknown).
  static std::pair<int, int> Size() {
    winsize ws{};
    if (ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0 && ws.ws_row > 0) return {ws.ws_col, ws.ws_row};
    return {80, 24};
  }

 private:
  termios saved_{};
  bool stdin_raw_ = false;
  bool entered_ = false;
  std::ostream* out_ = nullptr;  // where Enter drew
};

// Signals to the watch loop through a pipe: SIGINT, SIGTERM, SIGHUP end it,
// SIGWINCH redraws.
int signal_pipe[2] = {-1, -1};

void OnSignal(int sig) {
  const int saved = errno;
  const char c = static_cast<char>(sig);
  [[maybe_unused]] ssize_t n = write(signal_pipe[1], &c, 1);
  errno = saved;
}

class SignalCatcher {
 public:
  SignalCatcher() {
    if (pipe2(signal_pipe, O_CLOEXEC | O_NONBLOCK) != 0) return;
    struct sigaction sa {};
    sa.sa_handler = OnSignal;
    // Writes to the terminal go on after a signal (a failed one would leave
    // the stream bad and the screen unrestored); poll() wakes regardless.
    sa.sa_flags = SA_RESTART;
    sigemptyset(&sa.sa_mask);
    for (size_t i = 0; i < kSignals.size(); ++i) sigaction(kSignals[i], &sa, &saved_[i]);
    ok_ = true;
  }
  ~SignalCatcher() {
    if (!ok_) return;
    for (size_t i = 0; i < kSignals.size(); ++i) sigaction(kSignals[i], &saved_[i], nullptr);
    close(signal_pipe[0]);
    close(signal_pipe[1]);
    signal_pipe[0] = signal_pipe[1] = -1;
  }
  int fd() const { return ok_ ? signal_pipe[0] : -1; }

 private:
  static constexpr std::array<int, 4> kSignals = {SIGINT, SIGTERM, SIGHUP, SIGWINCH};
  std::array<struct sigaction, 4> saved_{};
  bool ok_ = false;
};

enum class Wake { kTimeout, kQuit, kResize };

// Waits up to `ms` for a key ('q' quits), or a signal.
Wake WaitFor(int64_t ms, int signal_fd, bool keys) {
  const auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(ms);
  for (;;) {
    const int64_t left =
        std::chrono::duration_cast<std::chrono::milliseconds>(until - std::chrono::steady_clock::now()).count();
    if (left <= 0) return Wake::kTimeout;
    pollfd fds[2] = {{signal_fd, POLLIN, 0}, {keys ? STDIN_FILENO : -1, POLLIN, 0}};
    const int n = ::poll(fds, 2, static_cast<int>(left));
    if (n < 0 && errno != EINTR) return Wake::kQuit;
    if (n <= 0) continue;
    if (fds[0].revents & POLLIN) {
      char c = 0;
      Wake wake = Wake::kTimeout;
      while (read(signal_fd, &c, 1) == 1) wake = c == SIGWINCH && wake != Wake::kQuit ? Wake::kResize : Wake::kQuit;
      if (wake != Wake::kTimeout) return wake;
    }
    if (fds[1].revents & (POLLIN | POLLHUP)) {
      char buf[64];
      const ssize_t got = read(STDIN_FILENO, buf, sizeof buf);
      if (got == 0 && (fds[1].revents & POLLHUP)) keys = false;  // stdin closed: keys no longer come
      for (ssize_t i = 0; i < got; ++i) {
        if (buf[i] == 'q' || buf[i] == 'Q' || buf[i] == 3 /* Ctrl-C without ISIG */) return Wake::kQuit;
      }
    }
  }
}

}  // namespace

std::string ProgressBar(int64_t done, int64_t total, int width) {
  const int filled = total <= 0 ? 0 : static_cast<int>(std::clamp<int64_t>(done * width / total, 0, width));
  return "[" + std::string(filled, '#') + std::string(width - filled, '.') + "]";
}

void WatchHistory::Observe(const WatchSnapshot& s) {
  if (first_) {
    first_ = false;
    last_leader_unix_ms_ = s.taken_unix_ms;
  }
  if (!s.has_leader) {
    has_leader_ = false;
    return;
  }
  if (!leader_id_.empty() && (s.leader_id != leader_id_ || s.epoch != epoch_)) {
    failovers_.push_back({.at_unix_ms = s.taken_unix_ms,
                          .from = leader_id_,
                          .to = s.leader_id,
                          .epoch = s.epoch,
                          .no_leader_ms = std::max<int64_t>(0, s.taken_unix_ms - last_leader_unix_ms_)});
    if (failovers_.size() > kMaxFailovers) failovers_.erase(failovers_.begin());
  }
  has_leader_ = true;
  leader_id_ = s.leader_id;
  epoch_ = s.epoch;
  last_leader_unix_ms_ = s.taken_unix_ms;
}

std::vector<std::string> RenderWatch(const WatchOptions& options, const WatchSnapshot& s, const WatchHistory& history,
                                     int width) {
  std::vector<std::string> lines;
  lines.push_back(fmt::format("sluicectl watch {}  {} UTC  every {:.1f} s{}",
                              options.job.empty() ? "(all jobs)" : options.job, TimeOfDay(s.taken_unix_ms),
                              options.interval_s, options.terminal ? "  (q or Ctrl-C quits)" : ""));
  if (s.has_leader) {
    lines.push_back(fmt::format("leader {} at {}  epoch {}  drivers {}  workers {}", s.leader_id, s.leader_address,
                                s.epoch, s.drivers, s.workers));
  } else {
    const int64_t since = history.no_leader_since_unix_ms();
    lines.push_back(fmt::format("no leader ({} s){}{}", since > 0 ? (s.taken_unix_ms - since) / 1000 : 0,
                                history.last_leader().empty() ? "" : "; last leader " + history.last_leader(),
                                s.error.empty() ? "" : ": " + s.error));
  }
  lines.push_back("");
  if (s.has_leader && !s.error.empty()) lines.push_back("jobs: " + s.error);
  if (s.has_leader && s.error.empty() && s.jobs.empty()) lines.push_back("no jobs");
  for (const proto::JobInfo& j : s.jobs) {
    RenderJob(j, s.taken_unix_ms, &lines);
    lines.push_back("");
  }
  if (history.failovers().empty()) {
    lines.push_back("failovers seen: none");
  } else {
    lines.push_back(fmt::format("failovers seen ({}):", history.failovers().size()));
    for (auto it = history.failovers().rbegin(); it != history.failovers().rend(); ++it) {
      lines.push_back(fmt::format("  {}  leader {} -> {} (epoch {}), no leader answered for {}",
                                  TimeOfDay(it->at_unix_ms), it->from, it->to, it->epoch, Duration(it->no_leader_ms)));
    }
  }
  for (std::string& l : lines) l = Cut(std::move(l), width);
  return lines;
}

int RunWatch(const WatchOptions& options, const std::function<WatchSnapshot()>& poll, std::ostream& out) {
  WatchHistory history;
  if (options.once) {
    WatchSnapshot s = poll();
    history.Observe(s);
    for (const std::string& l : RenderWatch(options, s, history, 0)) out << l << "\n";
    out << std::flush;
    return s.has_leader ? 0 : 1;
  }
  SignalCatcher signals;
  Terminal terminal;
  if (options.terminal) terminal.Enter(out);
  const int64_t interval_ms = std::max<int64_t>(100, static_cast<int64_t>(options.interval_s * 1000));
  WatchSnapshot s;
  bool polled = false;
  for (;;) {
    if (!polled) {
      s = poll();
      history.Observe(s);
    }
    if (options.terminal) {
      const auto [cols, rows] = Terminal::Size();
      std::vector<std::string> lines = RenderWatch(options, s, history, cols);
      if (static_cast<int>(lines.size()) > rows) lines.resize(rows);
      std::string frame = "\x1b[H";
      for (size_t i = 0; i < lines.size(); ++i) {
        absl::StrAppend(&frame, lines[i], "\x1b[K", i + 1 < lines.size() ? "\r\n" : "");
      }
      absl::StrAppend(&frame, "\x1b[J");
      out << frame << std::flush;
    } else {
      for (const std::string& l : RenderWatch(options, s, history, 0)) out << l << "\n";
      out << "\n" << std::flush;
    }
    const Wake wake = WaitFor(interval_ms, signals.fd(), options.terminal && terminal.reads_keys());
    if (wake == Wake::kQuit) break;
    polled = wake == Wake::kResize;  // a resize redraws what was polled
  }
  terminal.Restore(out);
  return 0;
}

}  // namespace sluice::ctl
