#include "lib/driver/status_page.h"

#include <algorithm>
#include <charconv>

#include "lib/driver/batch_history.h"
#include "lib/driver/cluster_state.h"
#include "lib/driver/embedded_file.h"
#include "spdlog/spdlog.h"

namespace sluice::driver {
namespace {

// Batches a job's overview figures (rate, delays) are averaged over.
constexpr int kOverviewBatches = 10;
// The most batches one /api/job answer carries.
constexpr int kMaxBatchesPerAnswer = 5000;

// A small JSON writer: values appended in order, commas placed for us.
class Json {
 public:
  Json& Open(char c) {
    Comma();
    out_.push_back(c);
    first_ = true;
    return *this;
  }
  Json& Close(char c) {
    out_.push_back(c);
    first_ = false;
    return *this;
  }
  Json& Key(std::string_view key) {
    Comma();
    out_ += JsonString(key);
    out_.push_back(':');
    first_ = true;  // the value follows without a comma
    return *this;
  }
  Json& Str(std::string_view v) {
    Comma();
    out_ += JsonString(v);
    return *this;
  }
  Json& Int(int64_t v) {
    Comma();
    char buf[24];
    auto [end, ec] = std::to_chars(buf, buf + sizeof(buf), v);
    out_.append(buf, end);
    return *this;
  }
  Json& Num(double v) {
    Comma();
    out_ += fmt::format("{:.6g}", v);
    return *this;
  }
  Json& Bool(bool v) {
    Comma();
    out_ += v ? "true" : "false";
    return *this;
  }
  Json& Null() {
    Comma();
    out_ += "null";
    return *this;
  }
  Json& KStr(std::string_view k, std::string_view v) { return Key(k).Str(v); }
  Json& KInt(std::string_view k, int64_t v) { return Key(k).Int(v); }
  Json& KBool(std::string_view k, bool v) { return Key(k).Bool(v); }
  std::string Take() { return std::move(out_); }

 private:
  void Comma() {
    if (!first_) out_.push_back(',');
    first_ = false;
  }
  std::string out_;
  bool first_ = true;
};

const char* kBatchColumns[] = {"batch_id",      "batch_time_unix_ms", "input_count",   "output_count",
                               "scheduling_delay_ms", "processing_ms", "total_delay_ms", "dead_letters",
                               "task_attempts", "blocks_fetched",     "blocks_recomputed"};

void WriteBatchRow(Json& j, const BatchPoint& p) {
  j.Open('[')
      .Int(p.batch_id)
      .Int(p.batch_time_unix_ms)
      .Int(p.input_count)
      .Int(p.output_count)
      .Int(p.scheduling_delay_ms)
      .Int(p.processing_ms)
      .Int(p.total_delay_ms)
      .Int(p.dead_letters)
      .Int(p.task_attempts)
      .Int(p.blocks_fetched)
      .Int(p.blocks_recomputed)
      .Close(']');
}

const char* RoleName(proto::DriverRole role) {
  return role == proto::DRIVER_ROLE_LEADER ? "leader" : "standby";
}

std::string SinkName(const proto::SinkSpec& sink) {
  std::string text = sink.ShortDebugString();
  const size_t colon = text.find(' ');
  return colon == std::string::npos ? text : text.substr(0, colon);
}

http::Response Answer(int status, std::string content_type, std::string body) {
  return http::Response{.status = status,
                        .content_type = std::move(content_type),
                        .body = std::move(body),
                        .headers = StatusPageHeaders()};
}

http::Response JsonAnswer(int status, std::string body) {
  http::Response r = Answer(status, "application/json; charset=utf-8", std::move(body));
  r.headers["Cache-Control"] = "no-store";
  return r;
}

const EmbeddedFile* FindFile(std::string_view name) {
  for (const EmbeddedFile& f : StatusPageFiles()) {
    if (f.name == name) return &f;
  }
  return nullptr;
}

std::string ContentType(std::string_view name) {
  if (name.ends_with(".js")) return "text/javascript; charset=utf-8";
  if (name.ends_with(".css")) return "text/css; charset=utf-8";
  return "text/html; charset=utf-8";
}

void ReplaceAll(std::string& text, std::string_view from, std::string_view to) {
  for (size_t at = text.find(from); at != std::string::npos; at = text.find(from, at + to.size())) {
    text.replace(at, from.size(), to);
  }
}

bool ParseInt(const std::map<std::string, std::string>& params, const std::string& key, int64_t* out) {
  auto it = params.find(key);
  if (it == params.end() || it->second.empty()) return true;
  const char* begin = it->second.data();
  const char* end = begin + it->second.size();
  auto [ptr, ec] = std::from_chars(begin, end, *out);
  return ec == std::errc() && ptr == end;
}

}  // namespace

std::string HtmlEscape(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (char c : text) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      case '\'': out += "&#39;"; break;
      default: out.push_back(c);
    }
  }
  return out;
}

std::string JsonString(std::string_view text) {
  std::string out;
  out.reserve(text.size() + 2);
  out.push_back('"');
  for (unsigned char c : text) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      case '<': out += "\\u003c"; break;
      case '>': out += "\\u003e"; break;
      case '&': out += "\\u0026"; break;
      default:
        if (c < 0x20) {
          out += fmt::format("\\u{:04x}", c);
        } else {
          out.push_back(static_cast<char>(c));
        }
    }
  }
  out.push_back('"');
  return out;
}

std::map<std::string, std::string> StatusPageHeaders() {
  return {
      // Everything from this driver, nothing inline, nothing framed: the page
      // only reads its own JSON.
      {"Content-Security-Policy",
       "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
       "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"},
      {"X-Content-Type-Options", "nosniff"},
      {"Referrer-Policy", "no-referrer"},
      {"X-Frame-Options", "DENY"},
  };
}

StatusPage::StatusPage(StatusFn status, const ClusterState* state, WorkerStatusFn worker_status, Clock* clock,
                       StatusPageOptions options)
    : status_(std::move(status)),
      state_(state),
      worker_status_(std::move(worker_status)),
      clock_(clock),
      options_(options) {}

StatusPage::~StatusPage() { Stop(); }

void StatusPage::Register(http::HttpServer* server) {
  server->Get("/", [this](const http::Request&) { return Index(); });
  server->Get("/index.html", [this](const http::Request&) { return Index(); });
  for (const EmbeddedFile& f : StatusPageFiles()) {
    if (f.name == "index.html") continue;
    server->Get("/static/" + std::string(f.name), [&f](const http::Request&) {
      http::Response r = Answer(200, ContentType(f.name), std::string(f.data));
      // Revalidated on each page load: a driver upgraded in place serves
      // its new script with its new page.
      r.headers["Cache-Control"] = "no-cache";
      return r;
    });
  }
  server->Get("/api/status", [this](const http::Request&) { return StatusJson(); });
  server->Get("/api/job", [this](const http::Request& request) { return JobJson(request); });
  if (worker_status_ && !thread_.joinable()) thread_ = std::thread([this] { WorkerLoop(); });
}

void StatusPage::Stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void StatusPage::Watched() {
  bool wake = false;
  {
    std::lock_guard<std::mutex> lock(mu_);
    const Clock::TimePoint now = clock_->Now();
    // Someone looks again after a while: bring the cache up to date at once.
    wake = now - last_request_ > options_.worker_refresh;
    last_request_ = now;
  }
  if (wake) cv_.notify_all();
}

void StatusPage::WorkerLoop() {
  std::unique_lock<std::mutex> lock(mu_);
  while (!stopping_) {
    const bool watched = clock_->Now() - last_request_ < options_.watched_for;
    if (watched) {
      lock.unlock();
      RefreshWorkers();
      lock.lock();
    }
    if (stopping_) break;
    cv_.wait_for(lock, options_.worker_refresh);
  }
}

void StatusPage::RefreshWorkers() {
  const proto::DriverStatus status = status_();
  std::map<std::string, WorkerDetails> fresh;
  if (status.role() == proto::DRIVER_ROLE_LEADER && worker_status_) {
    // One call per worker, one worker at a time, each with a short deadline:
    // a few hundred workers cost this thread a round every few seconds and
    // never a page request.
    for (const proto::MemberInfo& w : status.workers()) {
      {
        std::lock_guard<std::mutex> lock(mu_);
        if (stopping_) return;
      }
      WorkerDetails d;
      Result<proto::WorkerStatus> got = worker_status_(w.rpc_address());
      d.as_of_unix_ms = clock_->UnixMillis();
      if (got.ok()) {
        d.status = *std::move(got);
      } else {
        d.error = std::string(got.status().message());
      }
      fresh.emplace(w.id(), std::move(d));
    }
  }
  std::lock_guard<std::mutex> lock(mu_);
  workers_ = std::move(fresh);
}

http::Response StatusPage::Index() {
  Watched();
  const EmbeddedFile* f = FindFile("index.html");
  if (f == nullptr) return Answer(500, "text/plain; charset=utf-8", "the status page is not built in\n");
  const proto::DriverStatus status = status_();
  std::string html(f->data);
  const bool leads = status.role() == proto::DRIVER_ROLE_LEADER;
  // The banner is in the page itself, so it shows before (and without) the script.
  std::string banner;
  if (!leads) {
    const proto::LeaderInfo& leader = status.leader();
    if (leader.id().empty()) {
      banner = "<div id=\"banner\" class=\"banner\">This driver is a standby; no leader is known now.</div>";
    } else {
      std::string link = leader.http_address().empty()
                             ? "(the leader serves no status page)"
                             : fmt::format("<a id=\"leader-link\" href=\"http://{0}/\">Open the leader&#39;s page "
                                           "at {0}</a>",
                                           HtmlEscape(leader.http_address()));
      banner = fmt::format(
          "<div id=\"banner\" class=\"banner\">This driver is a standby. The leader is <b>{}</b> "
          "(epoch {}). {}</div>",
          HtmlEscape(leader.id()), leader.epoch(), link);
    }
  }
  ReplaceAll(html, "{{driver_id}}", HtmlEscape(status.process().id()));
  ReplaceAll(html, "{{role}}", RoleName(status.role()));
  ReplaceAll(html, "{{banner}}", banner);
  http::Response r = Answer(200, "text/html; charset=utf-8", std::move(html));
  r.headers["Cache-Control"] = "no-store";
  return r;
}

http::Response StatusPage::StatusJson() {
  Watched();
  return JsonAnswer(200, RenderStatus(status_()));
}

std::string StatusPage::RenderStatus(const proto::DriverStatus& status) {
  const std::shared_ptr<const proto::ClusterState> state = state_->View();
  const BatchHistory& history = state_->history();
  const bool leads = status.role() == proto::DRIVER_ROLE_LEADER;
  Json j;
  j.Open('{');
  j.KInt("now_unix_ms", clock_->UnixMillis());
  j.Key("driver").Open('{');
  j.KStr("id", status.process().id());
  j.KStr("role", RoleName(status.role()));
  j.KInt("epoch", status.epoch());
  j.KStr("rpc_address", status.process().rpc_address());
  j.KStr("http_address", status.process().http_address());
  j.KStr("version", status.process().version());
  j.KStr("host", status.process().host());
  j.KInt("pid", status.process().pid());
  j.KInt("start_time_unix_ms", status.process().start_time_unix_ms());
  j.Close('}');
  j.Key("leader");
  if (status.has_leader() && !status.leader().id().empty()) {
    j.Open('{')
        .KStr("id", status.leader().id())
        .KInt("epoch", status.leader().epoch())
        .KStr("rpc_address", status.leader().rpc_address())
        .KStr("http_address", status.leader().http_address())
        .Close('}');
  } else {
    j.Null();
  }
  j.KStr("coordinator", status.coordinator());
  j.KStr("zk_server", status.zk_server());
  const proto::WalInfo& wal = status.wal();
  j.Key("wal").Open('{');
  j.KInt("last_seq", wal.last_seq()).KInt("commit_seq", wal.commit_seq()).KInt("snapshot_seq", wal.snapshot_seq());
  j.KInt("fence", wal.fence()).KBool("serving", wal.serving()).KBool("store_degraded", wal.store_degraded());
  j.KStr("store_error", wal.store_error());
  j.Key("peers").Open('[');
  for (const proto::WalPeerInfo& p : wal.peers()) {
    j.Open('{').KStr("id", p.id()).KInt("acked_seq", p.acked_seq()).KInt("lag", p.lag());
    j.KInt("last_contact_unix_ms", p.last_contact_unix_ms()).KStr("last_error", p.last_error());
    j.KStr("state", p.state()).Close('}');
  }
  j.Close(']').Close('}');

  j.Key("drivers").Open('[');
  std::vector<proto::MemberInfo> drivers(status.drivers().begin(), status.drivers().end());
  std::sort(drivers.begin(), drivers.end(), [](const auto& a, const auto& b) { return a.id() < b.id(); });
  for (const proto::MemberInfo& d : drivers) {
    const bool leader = d.id() == status.leader().id();
    const proto::WalPeerInfo* peer = nullptr;
    for (const proto::WalPeerInfo& p : wal.peers()) {
      if (p.id() == d.id()) peer = &p;
    }
    j.Open('{').KStr("id", d.id()).KStr("rpc_address", d.rpc_address()).KStr("http_address", d.http_address());
    j.KStr("role", leader ? "leader" : "standby").KInt("epoch", leader ? status.leader().epoch() : 0);
    j.KBool("self", d.id() == status.process().id());
    if (peer != nullptr) j.KInt("wal_lag", peer->lag()).KInt("wal_acked_seq", peer->acked_seq());
    j.Close('}');
  }
  j.Close(']');

  std::map<std::string, WorkerDetails> details;
  {
    std::lock_guard<std::mutex> lock(mu_);
    details = workers_;
  }
  j.KBool("worker_details", leads);
  j.Key("workers").Open('[');
  std::vector<proto::MemberInfo> workers(status.workers().begin(), status.workers().end());
  std::sort(workers.begin(), workers.end(), [](const auto& a, const auto& b) { return a.id() < b.id(); });
  for (const proto::MemberInfo& w : workers) {
    j.Open('{').KStr("id", w.id()).KStr("rpc_address", w.rpc_address()).KStr("http_address", w.http_address());
    j.KInt("slots", w.slots());
    auto it = details.find(w.id());
    if (it != details.end()) {
      const WorkerDetails& d = it->second;
      const proto::BlockStoreInfo& store = d.status.store();
      j.Key("details").Open('{');
      j.KInt("as_of_unix_ms", d.as_of_unix_ms).KStr("error", d.error);
      j.KStr("version", d.status.process().version());
      j.KInt("start_time_unix_ms", d.status.process().start_time_unix_ms());
      j.KInt("memory_bytes", store.memory_bytes()).KInt("memory_budget_bytes", store.memory_budget_bytes());
      j.KInt("disk_bytes", store.disk_bytes()).KInt("disk_budget_bytes", store.disk_budget_bytes());
      j.KInt("blocks_in_memory", store.blocks_in_memory()).KInt("blocks_on_disk", store.blocks_on_disk());
      j.KStr("degraded", store.degraded()).KInt("unreported_blocks", d.status.unreported_blocks());
      int paused = 0;
      int stopped = 0;
      int64_t records = 0;
      for (const proto::ReceiverState& r : d.status.receivers()) {
        paused += r.paused();
        stopped += r.stopped();
        records += r.records();
      }
      j.KInt("receivers", d.status.receivers_size()).KInt("receivers_paused", paused);
      j.KInt("receivers_stopped", stopped).KInt("receiver_records", records);
      j.Close('}');
    }
    j.Close('}');
  }
  j.Close(']');

  // By id: protobuf's map has no order of its own.
  std::vector<std::pair<const std::string*, const proto::JobState*>> sorted;
  sorted.reserve(state->jobs().size());
  for (const auto& [id, job] : state->jobs()) sorted.emplace_back(&id, &job);
  std::sort(sorted.begin(), sorted.end(), [](const auto& a, const auto& b) { return *a.first < *b.first; });
  j.Key("jobs").Open('[');
  for (const auto& [id_ptr, job_ptr] : sorted) {
    const std::string& id = *id_ptr;
    const proto::JobState& job = *job_ptr;
    const proto::JobSpec& spec = job.spec();
    j.Open('{').KStr("id", id).KStr("state", JobStateName(job));
    j.KStr("stop_reason", job.stop_reason()).KInt("batch_interval_ms", spec.batch_interval_ms());
    j.Key("sources").Open('[');
    for (const std::string& s : spec.sources()) j.Str(s);
    j.Close(']');
    j.KStr("sink", SinkName(spec.sink())).KBool("keyed", spec.reduce_partitions() > 0);
    j.KInt("submit_time_unix_ms", job.submit_time_unix_ms());
    j.KInt("last_planned_batch", job.last_planned_batch()).KInt("last_committed_batch", job.last_committed_batch());
    j.KInt("in_flight", job.in_flight_size());
    j.KInt("total_input", job.total_input()).KInt("total_output", job.total_output());
    j.KInt("total_dead_letters", job.total_dead_letters()).KInt("total_late_events", job.total_late_events());
    j.KInt("state_keys", job.state_keys()).KInt("state_bytes", job.state_bytes());
    std::vector<BatchPoint> last = history.Last(id, kOverviewBatches);
    if (last.empty()) {
      for (const proto::BatchSummary& s : job.recent_batches()) last.push_back(ToPoint(s));
      if (last.size() > kOverviewBatches) last.erase(last.begin(), last.end() - kOverviewBatches);
    }
    if (!last.empty()) {
      int64_t input = 0;
      int64_t delay = 0;
      int64_t max_delay = 0;
      for (const BatchPoint& p : last) {
        input += p.input_count;
        delay += p.total_delay_ms;
        max_delay = std::max<int64_t>(max_delay, p.total_delay_ms);
      }
      const int64_t span_ms = static_cast<int64_t>(last.size()) * std::max<int64_t>(1, spec.batch_interval_ms());
      j.Key("input_rate").Num(1000.0 * static_cast<double>(input) / static_cast<double>(span_ms));
      j.KInt("avg_total_delay_ms", delay / static_cast<int64_t>(last.size())).KInt("max_total_delay_ms", max_delay);
      j.Key("last_batch");
      WriteBatchRow(j, last.back());
    }
    j.Close('}');
  }
  j.Close(']');

  j.Key("leader_terms").Open('[');
  for (const proto::LeaderTerm& t : state->leader_terms()) {
    j.Open('{').KInt("epoch", t.epoch()).KStr("leader_id", t.leader_id()).KInt("seq", t.seq());
    j.KInt("first_seen_unix_ms", t.first_seen_unix_ms()).KInt("last_seen_unix_ms", t.last_seen_unix_ms());
    j.Close('}');
  }
  j.Close(']');
  j.Key("batch_columns").Open('[');
  for (const char* c : kBatchColumns) j.Str(c);
  j.Close(']');
  j.Key("history").Open('{');
  j.KInt("batches", history.size()).KInt("jobs", history.jobs());
  j.KInt("memory_bytes", static_cast<int64_t>(history.MemoryBytes()));
  j.KInt("per_job", history.options().per_job).KInt("global", history.options().global);
  j.Close('}');
  j.Close('}');
  return j.Take();
}

http::Response StatusPage::JobJson(const http::Request& request) {
  Watched();
  auto id = request.params.find("id");
  if (id == request.params.end() || id->second.empty()) {
    return JsonAnswer(400, "{\"error\":\"id: the job's id is required\"}");
  }
  int64_t since = 0;
  int64_t limit = kMaxBatchesPerAnswer;
  if (!ParseInt(request.params, "since", &since) || !ParseInt(request.params, "limit", &limit) || limit < 0) {
    return JsonAnswer(400, "{\"error\":\"since and limit: whole numbers\"}");
  }
  limit = std::min<int64_t>(limit, kMaxBatchesPerAnswer);
  const std::shared_ptr<const proto::ClusterState> state = state_->View();
  auto job = state->jobs().find(id->second);
  if (job == state->jobs().end()) {
    return JsonAnswer(404, "{\"error\":" + JsonString("no job " + id->second) + "}");
  }
  const BatchHistory::Slice slice = state_->history().Since(id->second, since, static_cast<int>(limit));
  Json j;
  j.Open('{');
  j.KStr("id", id->second).KStr("state", JobStateName(job->second));
  j.KInt("batch_interval_ms", job->second.spec().batch_interval_ms());
  j.KInt("last_committed_batch", job->second.last_committed_batch());
  j.KInt("since", since).KInt("oldest_kept", slice.oldest_kept).KInt("newest", slice.newest);
  j.KBool("truncated", slice.truncated);
  j.Key("columns").Open('[');
  for (const char* c : kBatchColumns) j.Str(c);
  j.Close(']');
  j.Key("batches").Open('[');
  for (const BatchPoint& p : slice.points) WriteBatchRow(j, p);
  j.Close(']');
  j.Close('}');
  return JsonAnswer(200, j.Take());
}

}  // namespace sluice::driver
