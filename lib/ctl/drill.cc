#include "lib/ctl/drill.h"

#include <algorithm>
#include <charconv>
#include <iomanip>
#include <ostream>
#include <sstream>


namespace sluice::ctl {
namespace {

constexpr char kFaultKinds[] =
    "leader-kill, leader-term, leader-pause[:DURATION], worker-kill[:ID], worker-pause[:DURATION], "
    "zk-server-loss[:DURATION]";

std::optional<int64_t> ToInt(std::string_view s) {
  int64_t v = 0;
  if (s.empty()) return std::nullopt;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || p != s.data() + s.size()) return std::nullopt;
  return v;
}

std::string Seconds(int64_t ms) {
  std::ostringstream s;
  s << std::fixed << std::setprecision(1) << ms / 1000.0 << "s";
  return s.str();
}

std::string JsonString(std::string_view s) {
  std::string out = "\"";
  for (char c : s) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\t': out += "\\t"; break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof(buf), "\\u%04x", c);
          out += buf;
        } else {
          out += c;
        }
    }
  }
  return out + "\"";
}

std::string JsonOpt(const std::optional<int64_t>& v) { return v ? std::to_string(*v) : "null"; }

std::string JsonList(const std::vector<std::string>& v) {
  std::string out = "[";
  for (size_t i = 0; i < v.size(); ++i) out += (i ? "," : "") + JsonString(v[i]);
  return out + "]";
}

}  // namespace

Result<std::chrono::milliseconds> ParseDuration(std::string_view text, std::string_view what) {
  size_t digits = 0;
  while (digits < text.size() && text[digits] >= '0' && text[digits] <= '9') ++digits;
  std::optional<int64_t> n = ToInt(text.substr(0, digits));
  const std::string_view unit = text.substr(digits);
  int64_t scale = 0;
  if (unit.empty() || unit == "ms") scale = 1;
  if (unit == "s") scale = 1000;
  if (unit == "m") scale = 60'000;
  if (!n || scale == 0 || *n <= 0 || *n * scale > 3'600'000) {
    return absl::InvalidArgumentError(
        fmt::format("{}: '{}' is not a duration like 500ms, 6s or 2m (more than 0, at most 1h)", what, text));
  }
  return std::chrono::milliseconds(*n * scale);
}

Result<std::vector<FaultSpec>> ParseFaults(std::string_view list) {
  std::vector<FaultSpec> faults;
  for (size_t from = 0; from <= list.size();) {
    size_t comma = list.find(',', from);
    if (comma == std::string_view::npos) comma = list.size();
    const std::string_view item = list.substr(from, comma - from);
    from = comma + 1;
    if (item.empty()) continue;
    FaultSpec f;
    f.text = std::string(item);
    const size_t colon = item.find(':');
    const std::string_view kind = item.substr(0, colon);
    const std::optional<std::string_view> arg =
        colon == std::string_view::npos ? std::nullopt : std::optional(item.substr(colon + 1));
    if (arg && arg->empty()) {
      return absl::InvalidArgumentError(fmt::format("--fault {}: nothing after ':'", item));
    }
    if (kind == "leader-kill" || kind == "leader-term") {
      if (arg) return absl::InvalidArgumentError(fmt::format("--fault {}: {} takes no argument", item, kind));
      f.kind = kind == "leader-kill" ? FaultKind::kLeaderKill : FaultKind::kLeaderTerm;
    } else if (kind == "leader-pause" || kind == "worker-pause" || kind == "zk-server-loss") {
      f.kind = kind == "leader-pause"   ? FaultKind::kLeaderPause
               : kind == "worker-pause" ? FaultKind::kWorkerPause
                                        : FaultKind::kZkServerLoss;
      f.pause = kDefaultPause;
      if (arg) {
        ASSIGN_OR_RETURN(f.pause, ParseDuration(*arg, fmt::format("--fault {}", item)));
      }
    } else if (kind == "worker-kill") {
      f.kind = FaultKind::kWorkerKill;
      if (arg) f.worker_id = std::string(*arg);
    } else {
      return absl::InvalidArgumentError(
          fmt::format("--fault {}: unknown fault '{}'; the faults are {}", item, kind, kFaultKinds));
    }
    faults.push_back(std::move(f));
  }
  if (faults.empty()) {
    return absl::InvalidArgumentError(fmt::format("--fault: name at least one fault: {}", kFaultKinds));
  }
  return faults;
}

std::chrono::milliseconds TargetFor(const FaultSpec& fault, const DrillTimes& times) {
  using std::chrono::milliseconds;
  const milliseconds t = times.session_timeout, b2 = 2 * times.batch_interval;
  switch (fault.kind) {
    case FaultKind::kLeaderKill:
      return t + milliseconds(2000) + b2;
    case FaultKind::kLeaderTerm:
      return milliseconds(1000) + b2;
    case FaultKind::kLeaderPause:
      return fault.pause > t ? t + milliseconds(2000) + b2 : fault.pause + b2;
    case FaultKind::kWorkerKill:
    case FaultKind::kWorkerPause:
      return t + b2;
    case FaultKind::kZkServerLoss:
      return ZkServerLossTarget(fault, times, !KeepsQuorumWithoutOne(times.zk_servers));
  }
  return t + b2;
}

std::chrono::milliseconds ZkServerLossTarget(const FaultSpec& fault, const DrillTimes& times, bool outage) {
  using std::chrono::milliseconds;
  return (outage ? fault.pause : milliseconds(0)) + times.session_timeout + milliseconds(2000) +
         2 * times.batch_interval;
}

bool FaultPasses(const FaultResult& r) {
  if (!r.skipped.empty()) return true;
  if (!r.error.empty() || r.next_commit_ms.empty()) return false;
  for (const auto& [job, ms] : r.next_commit_ms) {
    if (!ms || *ms > r.target_ms) return false;
  }
  return true;
}

std::string_view FaultVerdict(const FaultResult& r) {
  if (!r.skipped.empty()) return "SKIPPED";
  return FaultPasses(r) ? "PASS" : "FAIL";
}

IdCheck CheckIds(const std::map<int32_t, int64_t>& positions, const std::vector<std::pair<int32_t, int64_t>>& seen) {
  IdCheck c;
  std::map<int32_t, std::vector<uint8_t>> hits;  // per partition, a count per offset below the position
  for (const auto& [p, pos] : positions) {
    hits[p].assign(static_cast<size_t>(std::max<int64_t>(0, pos)), 0);
    c.expected += std::max<int64_t>(0, pos);
  }
  for (const auto& [p, o] : seen) {
    auto it = hits.find(p);
    if (it == hits.end() || o < 0 || o >= static_cast<int64_t>(it->second.size())) {
      ++c.beyond;
      continue;
    }
    uint8_t& n = it->second[static_cast<size_t>(o)];
    if (n > 0) {
      ++c.duplicated;
      if (c.examples.size() < 5) c.examples.push_back(fmt::format("{}-{} duplicated", p, o));
    }
    if (n < 255) ++n;
  }
  for (const auto& [p, counts] : hits) {
    for (size_t o = 0; o < counts.size(); ++o) {
      if (counts[o] != 0) continue;
      ++c.lost;
      if (c.examples.size() < 5) c.examples.push_back(fmt::format("{}-{} lost", p, o));
    }
  }
  return c;
}

CountCheck CheckCounts(const std::map<std::string, int64_t>& expected, const std::map<std::string, int64_t>& got) {
  CountCheck c;
  c.keys = static_cast<int64_t>(expected.size());
  for (const auto& [key, n] : expected) {
    c.events += n;
    auto it = got.find(key);
    if (it != got.end() && it->second == n) continue;
    ++c.wrong;
    if (c.examples.size() < 5) {
      c.examples.push_back(fmt::format("{}: {} expected, {}", key, n,
                                       it == got.end() ? "none found" : std::to_string(it->second) + " found"));
    }
  }
  for (const auto& [key, n] : got) {
    if (expected.count(key) != 0) continue;
    ++c.wrong;  // counted an event the committed offsets do not hold
    if (c.examples.size() < 5) c.examples.push_back(fmt::format("{}: none expected, {} found", key, n));
  }
  return c;
}

std::optional<std::pair<int32_t, int64_t>> ParseIdLine(std::string_view line) {
  constexpr std::string_view kId = "\"id\":\"";
  const size_t at = line.find(kId);
  if (at == std::string_view::npos) return std::nullopt;
  const size_t start = at + kId.size();
  const size_t dash = line.find('-', start);
  const size_t end = line.find('"', start);
  if (dash == std::string_view::npos || end == std::string_view::npos || dash > end) return std::nullopt;
  std::optional<int64_t> p = ToInt(line.substr(start, dash - start));
  std::optional<int64_t> o = ToInt(line.substr(dash + 1, end - dash - 1));
  if (!p || !o) return std::nullopt;
  return std::pair{static_cast<int32_t>(*p), *o};
}

std::optional<std::pair<std::string, int64_t>> ParseCountLine(std::string_view line) {
  constexpr std::string_view kKey = "\"key\":[\"", kEvents = "\"events\":";
  const size_t k = line.find(kKey);
  if (k == std::string_view::npos) return std::nullopt;
  const size_t kstart = k + kKey.size();
  const size_t kend = line.find('"', kstart);
  const size_t e = line.find(kEvents);
  if (kend == std::string_view::npos || e == std::string_view::npos) return std::nullopt;
  size_t estart = e + kEvents.size(), eend = estart;
  while (eend < line.size() && line[eend] >= '0' && line[eend] <= '9') ++eend;
  std::optional<int64_t> n = ToInt(line.substr(estart, eend - estart));
  if (!n) return std::nullopt;
  return std::pair{std::string(line.substr(kstart, kend - kstart)), *n};
}

std::optional<int64_t> BatchOfFile(std::string_view name) {
  constexpr std::string_view kBatch = "-batch-", kPart = "-part-";
  const size_t b = name.rfind(kBatch);
  if (b == std::string_view::npos) return std::nullopt;
  const size_t start = b + kBatch.size();
  const size_t p = name.find(kPart, start);
  if (p == std::string_view::npos) return std::nullopt;
  return ToInt(name.substr(start, p - start));
}

Result<CheckedDrillOptions> CheckDrillOptions(const DrillOptions& o) {
  CheckedDrillOptions c;
  ASSIGN_OR_RETURN(c.faults, ParseFaults(o.faults));
  ASSIGN_OR_RETURN(c.interval, ParseDuration(o.interval, "--interval"));
  ASSIGN_OR_RETURN(c.batch_interval, ParseDuration(o.batch_interval, "--batch-interval"));
  if (!o.session_timeout.empty()) {
    ASSIGN_OR_RETURN(c.session_timeout, ParseDuration(o.session_timeout, "--session-timeout"));
  }
  if (o.partitions < 1 || o.partitions > 64) {
    return absl::InvalidArgumentError(fmt::format("--partitions: {} is not in 1..64", o.partitions));
  }
  if (o.rate < o.partitions || o.rate > 1'000'000) {
    return absl::InvalidArgumentError(
        fmt::format("--rate: {} is not in {}..1000000 (at least one event/s per partition)", o.rate, o.partitions));
  }
  if (o.rounds < 0) return absl::InvalidArgumentError("--rounds: must not be negative");
  return c;
}

bool DrillReport::Pass() const {
  if (!problems.empty() || !ids.ok() || !counts.ok() || faults.empty()) return false;
  return std::all_of(faults.begin(), faults.end(), FaultPasses);
}

int DrillReport::Skipped() const {
  return static_cast<int>(std::count_if(faults.begin(), faults.end(), [](const FaultResult& f) {
    return !f.skipped.empty();
  }));
}

void PrintReport(const DrillReport& r, std::ostream& out) {
  // The jobs' columns are named by what follows the drill's name ("ids").
  std::vector<std::string> jobs;
  if (!r.faults.empty()) {
    for (const auto& [job, ms] : r.faults.front().next_commit_ms) {
      jobs.push_back(job.rfind(r.name + "-", 0) == 0 ? job.substr(r.name.size() + 1) : job);
    }
  }
  // The victim column fits a ZooKeeper server's address.
  int victim_width = 11;
  for (const FaultResult& f : r.faults) victim_width = std::max<int>(victim_width, static_cast<int>(f.victim.size()) + 2);
  out << "drill " << r.name << ": T (session timeout) " << Seconds(r.times.session_timeout.count())
      << ", B (batch interval) " << Seconds(r.times.batch_interval.count()) << "\n\n";
  out << std::left << std::setw(4) << "#" << std::setw(20) << "FAULT" << std::setw(10) << "AT" << std::setw(victim_width)
      << "VICTIM" << std::setw(9) << "TARGET" << std::setw(13) << "NEW LEADER";
  for (const std::string& j : jobs) out << std::setw(std::max<int>(13, static_cast<int>(j.size()) + 2)) << j;
  out << std::setw(8) << "RERUNS" << std::setw(16) << "BLOCKS F/R" << "VERDICT\n";
  for (size_t i = 0; i < r.faults.size(); ++i) {
    const FaultResult& f = r.faults[i];
    out << std::left << std::setw(4) << i + 1 << std::setw(20) << f.fault.text << std::setw(10)
        << Seconds(f.at_ms) << std::setw(victim_width) << (f.victim.empty() ? "-" : f.victim) << std::setw(9)
        << Seconds(f.target_ms) << std::setw(13)
        << (!f.fault.measures_leader() ? "n/a"
            : !f.skipped.empty()       ? "-"
            : f.new_leader_ms          ? Seconds(*f.new_leader_ms)
                                       : "none");
    for (size_t j = 0; j < jobs.size(); ++j) {
      const auto& ms = j < f.next_commit_ms.size() ? f.next_commit_ms[j].second : std::nullopt;
      out << std::setw(std::max<int>(13, static_cast<int>(jobs[j].size()) + 2))
          << (ms ? Seconds(*ms) : f.skipped.empty() ? "none" : "-");
    }
    out << std::setw(8) << f.reruns << std::setw(16)
        << (std::to_string(f.blocks_fetched) + "/" + std::to_string(f.blocks_recomputed))
        << FaultVerdict(f) << "\n";
    if (!f.error.empty()) out << "     fault not applied: " << f.error << "\n";
    if (!f.skipped.empty()) out << "     skipped: " << f.skipped << "\n";
    if (!f.note.empty()) out << "     " << f.note << "\n";
  }
  out << "\nNEW LEADER: from the fault to a serving leader of a newer epoch. ";
  for (size_t j = 0; j < jobs.size(); ++j) out << (j ? ", " : "") << jobs[j];
  out << ": from the fault to the next\ncommitted batch of job " << r.name
      << "-<that>. RERUNS: task attempts beyond a batch's tasks. BLOCKS F/R: blocks\nfetched from another worker"
         " / made again from lineage, in the batches until the next fault.\n\n";
  for (const auto& [job, ms] : r.longest_gap_ms) {
    out << "longest time without a committed batch, " << job << ": " << Seconds(ms);
    auto d = r.last_total_delay_ms.find(job);
    if (d != r.last_total_delay_ms.end()) out << "; last batches' total delay at most " << d->second << " ms";
    out << "\n";
  }
  out << "exactly once, ids:    " << r.ids.expected << " expected below the committed positions, " << r.ids.lost
      << " lost, " << r.ids.duplicated << " duplicated (" << r.ids.beyond << " past them, not committed)"
      << (r.ids.ok() ? "" : "  FAIL") << "\n";
  for (const std::string& e : r.ids.examples) out << "    " << e << "\n";
  out << "exactly once, counts: " << r.counts.keys << " keys over " << r.counts.events << " events, "
      << r.counts.wrong << " wrong" << (r.counts.ok() ? "" : "  FAIL") << "\n";
  for (const std::string& e : r.counts.examples) out << "    " << e << "\n";
  for (const std::string& p : r.problems) out << "problem: " << p << "\n";
  out << "\nverdict: " << (r.Pass() ? "PASS" : "FAIL");
  if (const int skipped = r.Skipped(); skipped > 0) {
    out << ", " << skipped << " of " << r.faults.size() << " fault" << (r.faults.size() == 1 ? "" : "s")
        << " SKIPPED (not applied, see above)";
  }
  out << "\n";
}

std::string ReportJson(const DrillReport& r) {
  std::ostringstream o;
  o << "{\"name\":" << JsonString(r.name) << ",\"verdict\":\"" << (r.Pass() ? "PASS" : "FAIL") << "\""
    << ",\"session_timeout_ms\":" << r.times.session_timeout.count()
    << ",\"batch_interval_ms\":" << r.times.batch_interval.count() << ",\"output_dir\":" << JsonString(r.output_dir)
    << ",\"faults\":[";
  for (size_t i = 0; i < r.faults.size(); ++i) {
    const FaultResult& f = r.faults[i];
    o << (i ? "," : "") << "{\"fault\":" << JsonString(f.fault.text) << ",\"at_ms\":" << f.at_ms
      << ",\"target_ms\":" << f.target_ms << ",\"victim\":" << JsonString(f.victim)
      << ",\"delivery\":" << JsonString(f.delivery) << ",\"error\":" << JsonString(f.error)
      << ",\"new_leader_ms\":" << JsonOpt(f.new_leader_ms) << ",\"next_commit_ms\":{";
    for (size_t j = 0; j < f.next_commit_ms.size(); ++j) {
      o << (j ? "," : "") << JsonString(f.next_commit_ms[j].first) << ":" << JsonOpt(f.next_commit_ms[j].second);
    }
    o << "},\"reruns\":" << f.reruns << ",\"blocks_fetched\":" << f.blocks_fetched
      << ",\"blocks_recomputed\":" << f.blocks_recomputed << ",\"note\":" << JsonString(f.note)
      << ",\"verdict\":\"" << FaultVerdict(f) << "\",\"skipped\":" << JsonString(f.skipped);
    if (f.fault.kind == FaultKind::kZkServerLoss) {
      o << ",\"zk_server\":" << JsonString(f.zk_server) << ",\"zk_mode\":" << JsonString(f.zk_mode);
    }
    o << "}";
  }
  o << "],\"longest_gap_ms\":{";
  bool first = true;
  for (const auto& [job, ms] : r.longest_gap_ms) {
    o << (first ? "" : ",") << JsonString(job) << ":" << ms;
    first = false;
  }
  o << "},\"last_total_delay_ms\":{";
  first = true;
  for (const auto& [job, ms] : r.last_total_delay_ms) {
    o << (first ? "" : ",") << JsonString(job) << ":" << ms;
    first = false;
  }
  o << "},\"ids\":{\"expected\":" << r.ids.expected << ",\"lost\":" << r.ids.lost
    << ",\"duplicated\":" << r.ids.duplicated << ",\"beyond\":" << r.ids.beyond
    << ",\"examples\":" << JsonList(r.ids.examples) << "}";
  o << ",\"counts\":{\"keys\":" << r.counts.keys << ",\"events\":" << r.counts.events << ",\"wrong\":" << r.counts.wrong
    << ",\"examples\":" << JsonList(r.counts.examples) << "}";
  o << ",\"problems\":" << JsonList(r.problems) << ",\"skipped\":" << r.Skipped()
    << ",\"zk_servers\":" << r.times.zk_servers << "}";
  return o.str();
}

}  // namespace sluice::ctl
