// Unit tests of the driver's status page (lib/driver/status_page.h) over a
// ClusterState fed through the log's interface and a fake DriverStatus: the
// JSON's shape (parsed back), `since` queries, the leader-change timeline,
// escaping, the standby's banner, the security headers, the embedded files.
#include "lib/driver/status_page.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "lib/driver/cluster_state.h"
#include "lib/driver/embedded_file.h"
#include "simdjson.h"

namespace sluice::driver {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

proto::WalRecord LeaderChange(int64_t seq, int64_t epoch, const std::string& id) {
  proto::WalRecord r;
  r.set_seq(seq);
  r.set_epoch(epoch);
  r.mutable_leader_change()->set_epoch(epoch);
  r.mutable_leader_change()->set_leader_id(id);
  return r;
}

proto::WalRecord Payload(int64_t seq, const proto::DriverRecord& record) {
  proto::WalRecord r;
  r.set_seq(seq);
  r.set_payload(record.SerializeAsString());
  return r;
}

class StatusPageTest : public ::testing::Test {
 protected:
  void SetUp() override {
    status_.mutable_process()->set_id("d1");
    status_.mutable_process()->set_http_address("127.0.0.1:8081");
    status_.set_role(proto::DRIVER_ROLE_LEADER);
    status_.set_epoch(2);
    status_.mutable_leader()->set_id("d1");
    status_.mutable_leader()->set_epoch(2);
    status_.mutable_leader()->set_http_address("127.0.0.1:8081");
    proto::MemberInfo* d = status_.add_drivers();
    d->set_id("d1");
    d = status_.add_drivers();
    d->set_id("d2");
    proto::MemberInfo* w = status_.add_workers();
    w->set_id("w1");
    w->set_rpc_address("127.0.0.1:7200");
    w->set_slots(4);
    page_ = std::make_unique<StatusPage>([this] { return status_; }, &state_,
                                         [this](const std::string& address) -> Result<proto::WorkerStatus> {
                                           ++worker_calls_;
                                           proto::WorkerStatus s;
                                           s.mutable_store()->set_memory_bytes(1 << 20);
                                           s.mutable_store()->set_memory_budget_bytes(1 << 30);
                                           s.add_receivers()->set_paused(true);
                                           return s;
                                         },
                                         &clock_);
  }

  void Apply(const proto::WalRecord& r) { ASSERT_TRUE(state_.Apply(r).ok()); }

  // A job with `batches` committed batches of `interval_ms`, 100 events each.
  void AddJob(const std::string& id, int batches, int64_t interval_ms = 500) {
    proto::DriverRecord submit;
    submit.mutable_job_submitted()->set_job_id(id);
    submit.mutable_job_submitted()->mutable_spec()->set_name(id);
    submit.mutable_job_submitted()->mutable_spec()->set_batch_interval_ms(interval_ms);
    submit.mutable_job_submitted()->set_submit_time_unix_ms(t0_);
    Apply(Payload(++seq_, submit));
    for (int b = 1; b <= batches; ++b) {
      proto::DriverRecord plan;
      plan.mutable_batch_planned()->set_job_id(id);
      plan.mutable_batch_planned()->set_batch_id(b);
      plan.mutable_batch_planned()->set_batch_time_unix_ms(t0_ + b * interval_ms);
      Apply(Payload(++seq_, plan));
      proto::DriverRecord commit;
      proto::BatchCommitted* c = commit.mutable_batch_committed();
      c->set_job_id(id);
      c->set_batch_id(b);
      c->set_input_count(100);
      c->set_started_unix_ms(t0_ + b * interval_ms + 10);
      c->set_finished_unix_ms(t0_ + b * interval_ms + 60);
      Apply(Payload(++seq_, commit));
    }
  }

  simdjson::dom::element Parse(const http::Response& r) {
    EXPECT_EQ(r.content_type, "application/json; charset=utf-8");
    body_ = r.body;
    auto parsed = parser_.parse(body_);
    EXPECT_EQ(parsed.error(), simdjson::SUCCESS) << r.body;
    return parsed.value_unsafe();
  }

  proto::DriverStatus status_;
  ClusterState state_;
  FakeClock clock_;
  int worker_calls_ = 0;
  int64_t seq_ = 0;
  const int64_t t0_ = 1'700'000'000'000;
  std::unique_ptr<StatusPage> page_;
  simdjson::dom::parser parser_;
  std::string body_;
};

TEST_F(StatusPageTest, StatusHasTheClusterJobsAndLeaderTerms) {
  Apply(LeaderChange(++seq_, 1, "d2"));
  AddJob("clicks", 30);
  Apply(LeaderChange(++seq_, 2, "d1"));
  AddJob("views", 3, 1000);
  page_->RefreshWorkers();
  EXPECT_EQ(worker_calls_, 1);

  simdjson::dom::element s = Parse(page_->StatusJson());
  EXPECT_EQ(std::string_view(s["driver"]["id"]), "d1");
  EXPECT_EQ(std::string_view(s["driver"]["role"]), "leader");
  EXPECT_EQ(int64_t(s["driver"]["epoch"]), 2);
  EXPECT_EQ(std::string_view(s["leader"]["id"]), "d1");
  simdjson::dom::array drivers = s["drivers"];
  ASSERT_EQ(drivers.size(), 2u);
  EXPECT_EQ(std::string_view(drivers.at(0)["role"]), "leader");
  EXPECT_EQ(std::string_view(drivers.at(1)["role"]), "standby");
  simdjson::dom::array workers = s["workers"];
  ASSERT_EQ(workers.size(), 1u);
  EXPECT_EQ(int64_t(workers.at(0)["slots"]), 4);
  EXPECT_EQ(int64_t(workers.at(0)["details"]["memory_bytes"]), 1 << 20);
  EXPECT_EQ(int64_t(workers.at(0)["details"]["receivers_paused"]), 1);

  simdjson::dom::array jobs = s["jobs"];
  ASSERT_EQ(jobs.size(), 2u);
  simdjson::dom::element clicks = jobs.at(0);
  EXPECT_EQ(std::string_view(clicks["id"]), "clicks");
  EXPECT_EQ(std::string_view(clicks["state"]), "running");
  EXPECT_EQ(int64_t(clicks["last_committed_batch"]), 30);
  EXPECT_DOUBLE_EQ(double(clicks["input_rate"]), 200.0);  // 100 events per 500 ms
  EXPECT_EQ(int64_t(clicks["avg_total_delay_ms"]), 60);
  simdjson::dom::array last = clicks["last_batch"];
  EXPECT_EQ(int64_t(last.at(0)), 30);
  EXPECT_EQ(int64_t(last.at(4)), 10);  // scheduling delay
  EXPECT_EQ(int64_t(last.at(5)), 50);  // processing
  EXPECT_EQ(int64_t(last.at(6)), 60);  // total delay
  // The overview carries figures, not series.
  EXPECT_THAT(body_, Not(HasSubstr("\"batches\":[")));

  simdjson::dom::array terms = s["leader_terms"];
  ASSERT_EQ(terms.size(), 2u);
  EXPECT_EQ(int64_t(terms.at(0)["epoch"]), 1);
  EXPECT_EQ(std::string_view(terms.at(0)["leader_id"]), "d2");
  EXPECT_EQ(int64_t(terms.at(0)["seq"]), 1);
  // The leader's clock as the term's records carry it.
  EXPECT_EQ(int64_t(terms.at(0)["first_seen_unix_ms"]), t0_);
  EXPECT_EQ(int64_t(terms.at(0)["last_seen_unix_ms"]), t0_ + 30 * 500 + 60);
  EXPECT_EQ(int64_t(terms.at(1)["epoch"]), 2);
  EXPECT_EQ(int64_t(terms.at(1)["first_seen_unix_ms"]), t0_);  // the second job's submit time
  EXPECT_EQ(int64_t(s["history"]["batches"]), 33);
}

TEST_F(StatusPageTest, LeaderTermsAreBoundedAndSurviveASnapshot) {
  for (int e = 1; e <= ClusterState::kLeaderTerms + 5; ++e) Apply(LeaderChange(++seq_, e, "d" + std::to_string(e)));
  ClusterState restored;
  ASSERT_TRUE(restored.Restore(state_.Snapshot()).ok());
  const auto view = restored.View();
  ASSERT_EQ(view->leader_terms_size(), ClusterState::kLeaderTerms);
  EXPECT_EQ(view->leader_terms(0).epoch(), 6);
  EXPECT_EQ(view->leader_terms(ClusterState::kLeaderTerms - 1).epoch(), ClusterState::kLeaderTerms + 5);
}

TEST_F(StatusPageTest, JobAnswersTheBatchesSinceOne) {
  AddJob("clicks", 50);
  simdjson::dom::element j = Parse(page_->JobJson({.path = "/api/job", .params = {{"id", "clicks"}, {"since", "45"}}}));
  EXPECT_EQ(std::string_view(j["id"]), "clicks");
  EXPECT_EQ(int64_t(j["batch_interval_ms"]), 500);
  EXPECT_EQ(int64_t(j["newest"]), 50);
  simdjson::dom::array columns = j["columns"];
  EXPECT_EQ(std::string_view(columns.at(0)), "batch_id");
  EXPECT_EQ(std::string_view(columns.at(6)), "total_delay_ms");
  simdjson::dom::array batches = j["batches"];
  ASSERT_EQ(batches.size(), 5u);
  EXPECT_EQ(int64_t(batches.at(0).at(0)), 46);
  EXPECT_EQ(int64_t(batches.at(4).at(0)), 50);
  EXPECT_EQ(int64_t(batches.at(4).at(1)), t0_ + 50 * 500);
  EXPECT_EQ(simdjson::dom::array(batches.at(0)).size(), columns.size());

  j = Parse(page_->JobJson({.path = "/api/job", .params = {{"id", "clicks"}, {"since", "50"}}}));
  EXPECT_EQ(simdjson::dom::array(j["batches"]).size(), 0u);
  j = Parse(page_->JobJson({.path = "/api/job", .params = {{"id", "clicks"}, {"limit", "7"}}}));
  EXPECT_EQ(simdjson::dom::array(j["batches"]).size(), 7u);
  EXPECT_TRUE(bool(j["truncated"]));

  EXPECT_EQ(page_->JobJson({.path = "/api/job", .params = {{"id", "nope"}}}).status, 404);
  EXPECT_EQ(page_->JobJson({.path = "/api/job", .params = {}}).status, 400);
  EXPECT_EQ(page_->JobJson({.path = "/api/job", .params = {{"id", "clicks"}, {"since", "4x"}}}).status, 400);
  EXPECT_EQ(page_->JobJson({.path = "/api/job", .params = {{"id", "clicks"}, {"limit", "-1"}}}).status, 400);
}

TEST(StatusPageEscapeTest, EscapesHtmlAndJson) {
  EXPECT_EQ(HtmlEscape("<script>alert('x')</script> & \"q\""),
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &quot;q&quot;");
  EXPECT_EQ(JsonString("a\"b\\c\n</script>&\x01"), "\"a\\\"b\\\\c\\n\\u003c/script\\u003e\\u0026\\u0001\"");
  EXPECT_EQ(JsonString("ünï"), "\"ünï\"");
}

TEST_F(StatusPageTest, HostileNamesStayText) {
  // Job ids are validated at submit; the page escapes whatever the log holds.
  AddJob("<img src=x onerror=alert(1)>\"", 2);
  const http::Response r = page_->StatusJson();
  EXPECT_THAT(r.body, Not(HasSubstr("<img")));
  simdjson::dom::element s = Parse(r);
  EXPECT_EQ(std::string_view(simdjson::dom::array(s["jobs"]).at(0)["id"]), "<img src=x onerror=alert(1)>\"");

  status_.mutable_process()->set_id("<b>d1</b>");
  status_.set_role(proto::DRIVER_ROLE_STANDBY);
  status_.mutable_leader()->set_id("<i>d2</i>");
  status_.mutable_leader()->set_http_address("h\"><script>:1");
  const http::Response page = page_->Index();
  EXPECT_THAT(page.body, Not(HasSubstr("<b>d1")));
  EXPECT_THAT(page.body, Not(HasSubstr("<i>d2")));
  EXPECT_THAT(page.body, Not(HasSubstr("\"><script>")));
  EXPECT_THAT(page.body, HasSubstr("&lt;b&gt;d1&lt;/b&gt;"));
}

TEST_F(StatusPageTest, AStandbyNamesTheLeaderAndLinksToItsPage) {
  http::Response leader_page = page_->Index();
  EXPECT_EQ(leader_page.status, 200);
  EXPECT_EQ(leader_page.content_type, "text/html; charset=utf-8");
  EXPECT_THAT(leader_page.body, Not(HasSubstr("id=\"banner\"")));
  EXPECT_THAT(leader_page.body, Not(HasSubstr("{{")));

  status_.set_role(proto::DRIVER_ROLE_STANDBY);
  status_.set_epoch(0);
  status_.mutable_process()->set_id("d2");
  status_.mutable_leader()->set_id("d1");
  status_.mutable_leader()->set_epoch(7);
  status_.mutable_leader()->set_http_address("10.0.0.1:8081");
  const http::Response standby_page = page_->Index();
  EXPECT_THAT(standby_page.body, HasSubstr("The leader is <b>d1</b> (epoch 7)"));
  EXPECT_THAT(standby_page.body, HasSubstr("href=\"http://10.0.0.1:8081/\""));

  // A standby shows the workers, without asking them anything.
  page_->RefreshWorkers();
  EXPECT_EQ(worker_calls_, 0);
  simdjson::dom::element s = Parse(page_->StatusJson());
  EXPECT_FALSE(bool(s["worker_details"]));
  EXPECT_EQ(simdjson::dom::array(s["workers"]).size(), 1u);
}

TEST_F(StatusPageTest, EveryAnswerCarriesTheSecurityHeaders) {
  AddJob("clicks", 1);
  for (const http::Response& r :
       {page_->Index(), page_->StatusJson(), page_->JobJson({.path = "/api/job", .params = {{"id", "clicks"}}})}) {
    ASSERT_TRUE(r.headers.contains("Content-Security-Policy"));
    EXPECT_THAT(r.headers.at("Content-Security-Policy"), HasSubstr("default-src 'none'"));
    EXPECT_THAT(r.headers.at("Content-Security-Policy"), HasSubstr("script-src 'self'"));
    EXPECT_EQ(r.headers.at("X-Content-Type-Options"), "nosniff");
  }
}

TEST(StatusPageFilesTest, ThePageAndDygraphsAreEmbedded) {
  std::map<std::string, std::string_view> files;
  for (const EmbeddedFile& f : StatusPageFiles()) files[std::string(f.name)] = f.data;
  ASSERT_TRUE(files.contains("dygraph.min.js"));
  EXPECT_GT(files["dygraph.min.js"].size(), 50'000u);
  EXPECT_THAT(std::string(files["dygraph.min.js"].substr(0, 200)), HasSubstr("@license"));
  EXPECT_TRUE(files.contains("dygraph.min.css"));
  EXPECT_THAT(std::string(files["index.html"]), HasSubstr("/static/app.js"));
  EXPECT_THAT(std::string(files["app.js"]), HasSubstr("/api/status"));
  EXPECT_TRUE(files.contains("style.css"));
}

}  // namespace
}  // namespace sluice::driver
