// Mutual TLS and roles between real processes: every method of every service
// refuses the roles it does not allow (PERMISSION_DENIED naming the role it
// needs, logged with the caller's name), a client without a certificate of
// the cluster's CA cannot talk at all, sluicectl as a viewer lists but cannot
// stop, and a daemon's certificate is replaced on SIGHUP without a restart.
#include <csignal>
#include <filesystem>
#include <thread>

#include "gmock/gmock.h"
#include "grpcpp/generic/generic_stub.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "lib/rpc/auth.h"
#include "lib/rpc/channel_cache.h"
#include "lib/rpc/driver_client.h"
#include "lib/rpc/rpc.h"
#include "lib/rpc/tls.h"
#include "lib/rpc/worker_client.h"
#include "proto/driver.grpc.pb.h"
#include "test/harness/certs.h"
#include "test/harness/local_cluster.h"
#include "test/harness/paths.h"
#include "test/harness/subprocess.h"
#include "test/harness/util.h"

namespace sluice {
namespace {

using ::testing::HasSubstr;
using std::chrono::milliseconds;
using testing::LocalCluster;
using testing::TempDir;

rpc::RpcOptions Transport(const TlsOptions& tls) {
  rpc::RpcOptions options;
  options.own_connections = true;
  Result<std::shared_ptr<rpc::TlsIdentity>> id = rpc::TlsIdentity::Load(tls, "", std::nullopt);
  EXPECT_TRUE(id.ok()) << id.status();
  if (id.ok()) options.tls = *id;
  return options;
}

// Calls "Service.Method" with an empty message, whatever its kind (a
// streaming method gets one message and the end of its stream): the
// authorization check comes before anything reads the request.
grpc::Status CallEmpty(const std::shared_ptr<grpc::Channel>& channel, const std::string& method) {
  const std::string path = "/sluice.proto." + method.substr(0, method.find('.')) + "/" +
                           method.substr(method.find('.') + 1);
  grpc::GenericStub stub(channel);
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
  grpc::CompletionQueue cq;
  grpc::Slice empty("");
  grpc::ByteBuffer request(&empty, 1), response;
  grpc::Status status;
  std::unique_ptr<grpc::GenericClientAsyncResponseReader> call =
      stub.PrepareUnaryCall(&context, path, request, &cq);
  call->StartCall();
  call->Finish(&response, &status, reinterpret_cast<void*>(1));
  void* tag = nullptr;
  bool ok = false;
  EXPECT_TRUE(cq.Next(&tag, &ok));
  cq.Shutdown();
  while (cq.Next(&tag, &ok)) {
  }
  return status;
}

bool Allowed(const std::vector<rpc::Role>& allowed, rpc::Role role) {
  for (rpc::Role a : allowed) {
    if (a == role || (role == rpc::Role::kAdmin && a == rpc::Role::kViewer)) return true;
  }
  return false;
}

// Each wrong file is a one-line error naming the option and the file.
TEST(Security, CertificateFilesAreCheckedWithClearErrors) {
  TempDir dir;
  const TlsOptions good = testing::TestTls("worker");
  ASSERT_TRUE(rpc::CheckCertificateFiles(good).ok());
  Result<rpc::CertificateInfo> info = rpc::CheckCertificateFiles(good);
  EXPECT_EQ(info->common_name, "worker");
  EXPECT_EQ(rpc::RoleList(info->roles), "worker");
  EXPECT_GT(info->seconds_left, 700 * 86400);

  auto error = [](TlsOptions t) { return std::string(rpc::CheckCertificateFiles(t).status().message()); };
  TlsOptions t = good;
  t.cert = dir.Sub("missing.pem");
  EXPECT_THAT(error(t), HasSubstr("tls-cert: cannot read " + t.cert));
  ASSERT_TRUE(testing::WriteFile(dir.Sub("junk.pem"), "not a certificate\n").ok());
  t = good;
  t.ca = dir.Sub("junk.pem");
  EXPECT_THAT(error(t), HasSubstr("tls-ca: " + t.ca + " holds no PEM certificate"));
  t = good;
  t.key = testing::TestTls("admin").key;
  EXPECT_THAT(error(t), HasSubstr("tls-key: " + t.key + " is not the key of the certificate in " + good.cert));
  t = good;
  t.key = good.cert;
  EXPECT_THAT(error(t), HasSubstr("holds no unencrypted PEM private key"));
  t = good;
  t.ca = good.cert;  // not the CA that signed it
  EXPECT_THAT(error(t), HasSubstr("tls-cert: " + good.cert + " is not valid under tls-ca " + good.cert));

  // A daemon's certificate must grant its own role.
  Result<std::shared_ptr<rpc::TlsIdentity>> wrong =
      rpc::TlsIdentity::Load(testing::TestTls("viewer"), "", rpc::Role::kWorker);
  ASSERT_FALSE(wrong.ok());
  EXPECT_THAT(std::string(wrong.status().message()),
              HasSubstr("grants the roles viewer; this process needs worker (a URI SAN sluice:role=worker)"));
  EXPECT_EQ(rpc::RoleList(rpc::RolesFromUris({"sluice:role=admin", "spiffe://x", "sluice:role=root",
                                              "sluice:role=viewer", "sluice:role=admin"})),
            "admin, viewer");
}

TEST(Security, EveryMethodRefusesTheRolesItDoesNotAllow) {
  TempDir dir;
  auto c = LocalCluster::Start({.dir = dir.path(), .drivers = 1, .workers = 1});
  ASSERT_TRUE(c.ok()) << c.status();
  LocalCluster& cluster = **c;

  int refused = 0;
  for (const char* who : {"driver", "worker", "admin", "viewer"}) {
    const rpc::Role role = *rpc::ParseRole(who);
    rpc::ChannelCache channels(Transport(testing::TestTls(who)));
    for (const std::string& method : rpc::MethodsWithRoles()) {
      const std::vector<rpc::Role> allowed = rpc::RolesFor(method);
      if (Allowed(allowed, role)) continue;
      const bool on_worker = method.rfind("WorkerService.", 0) == 0;
      grpc::Status st = CallEmpty(channels.Get(on_worker ? cluster.worker_address(0) : cluster.driver_address(0)),
                                  method);
      EXPECT_EQ(st.error_code(), grpc::StatusCode::PERMISSION_DENIED) << who << " calling " << method << ": "
                                                                      << st.error_message();
      EXPECT_THAT(st.error_message(), HasSubstr(method + " needs the role "));
      EXPECT_THAT(st.error_message(), HasSubstr("(CN=" + std::string(who) + ") grants " + who));
      ++refused;
    }
  }
  // driver 22, worker 27, admin 17, viewer 32 methods it may not call (the
  // job lifecycle's, source reset's, savepoints', worker drain's and
  // rebalance's eight are admin's; the leader may read and install state for
  // savepoints, and alone asks a worker to warm a copy of state or to
  // re-split it): a table that lost its entries would show here too.
  EXPECT_EQ(refused, 22 + 27 + 17 + 32);
  const std::string log = testing::ReadFile(cluster.driver_log(0)).value_or("");
  EXPECT_THAT(log, HasSubstr("refused DriverService.SubmitJob to CN=worker (roles: worker) at ipv4:127.0.0.1:"));
  EXPECT_THAT(log, HasSubstr("it needs the role admin"));

  // Allowed calls go through: a viewer lists, an admin asks for a drill
  // (refused by the daemon's own setting, not by its role).
  rpc::ChannelCache viewer(Transport(testing::TestTls("viewer")));
  EXPECT_TRUE(rpc::DriverClient(viewer, cluster.driver_address(0)).ListJobs({}, milliseconds(3000)).ok());
  rpc::ChannelCache admin(Transport(testing::TestTls("admin")));
  Result<proto::DrillResponse> drill =
      rpc::WorkerClient(admin, cluster.worker_address(0)).Drill(proto::DrillRequest(), milliseconds(3000));
  EXPECT_TRUE(absl::IsFailedPrecondition(drill.status())) << drill.status();
}

TEST(Security, OnlyCertificatesOfTheClustersCaGetIn) {
  TempDir dir;
  auto c = LocalCluster::Start({.dir = dir.path(), .drivers = 1, .workers = 1});
  ASSERT_TRUE(c.ok()) << c.status();
  LocalCluster& cluster = **c;

  // Plaintext: no connection at all.
  rpc::ChannelCache plain({.own_connections = true});
  Result<proto::DriverStatus> st = rpc::DriverClient(plain, cluster.driver_address(0)).GetStatus(milliseconds(2000));
  EXPECT_TRUE(absl::IsUnavailable(st.status())) << st.status();

  // A certificate saying admin, signed by another CA: refused in the handshake.
  const std::string other = dir.Sub("other-ca");
  ASSERT_EQ(testing::RunCommand({std::string(testing::kSourceDir) + "/scripts/gen-certs.sh", "-d", other,
                                 "intruder:admin"},
                                dir.Sub("gen.log"), std::chrono::seconds(30))
                .value_or(-1),
            0);
  TlsOptions intruder;
  intruder.cert = other + "/intruder.pem";
  intruder.key = other + "/intruder.key";
  intruder.ca = testing::TestCertsDir() + "/ca.pem";  // it trusts our CA; we do not trust its
  // Its own files do not check out against our CA.
  EXPECT_FALSE(rpc::CheckCertificateFiles(intruder).ok());
  intruder.ca = other + "/ca.pem";
  rpc::ChannelCache theirs(Transport(intruder));
  st = rpc::DriverClient(theirs, cluster.driver_address(0)).GetStatus(milliseconds(2000));
  EXPECT_TRUE(absl::IsUnavailable(st.status())) << st.status();

  // A client of our CA must see a server role on the other end: a server
  // presenting a viewer's certificate (say, a dashboard's stolen key) is
  // refused in the handshake; the same server with a worker's is answered.
  for (const char* who : {"viewer", "worker"}) {
    Result<std::shared_ptr<rpc::TlsIdentity>> id = rpc::TlsIdentity::Load(testing::TestTls(who), "", std::nullopt);
    ASSERT_TRUE(id.ok()) << id.status();
    rpc::RpcOptions server_options;
    server_options.tls = *id;
    proto::DriverService::Service unimplemented;  // every method answers UNIMPLEMENTED
    auto server = rpc::RpcServer::Start("127.0.0.1:0", {&unimplemented}, server_options);
    ASSERT_TRUE(server.ok()) << server.status();
    rpc::ChannelCache ours(Transport(testing::TestTls("admin")));
    Status got = rpc::DriverClient(ours, (*server)->address()).GetStatus(milliseconds(2000)).status();
    if (std::string(who) == "viewer") {
      EXPECT_TRUE(absl::IsUnavailable(got)) << got;
    } else {
      EXPECT_TRUE(absl::IsUnimplemented(got)) << got;  // reached: no service there
    }
  }

  // sluicectl as a viewer: list yes, stop no (exit 1, the role named).
  const std::string job = dir.Sub("job.yaml");
  auto ctl = [&](const char* who, std::vector<std::string> args) {
    const TlsOptions t = testing::TestTls(who);
    std::vector<std::string> argv = {testing::kSluicectlPath, "--coordinator", cluster.coordinator(), "--tls-cert",
                                     t.cert, "--tls-key", t.key, "--tls-ca", t.ca};
    argv.insert(argv.end(), args.begin(), args.end());
    const std::string log = dir.Sub(std::string(who) + "-ctl.log");
    int code = testing::RunCommand(argv, log, std::chrono::seconds(30)).value_or(-1);
    return std::pair{code, testing::ReadFile(log).value_or("")};
  };
  auto [list_code, list_out] = ctl("viewer", {"list"});
  EXPECT_EQ(list_code, 0) << list_out;
  auto [stop_code, stop_out] = ctl("viewer", {"stop", "nothing"});
  EXPECT_EQ(stop_code, 1);
  EXPECT_THAT(stop_out, HasSubstr("DriverService.StopJob needs the role admin"));
  ASSERT_TRUE(testing::WriteFile(job, "name: j\nsources: [clicks]\nsink: {null: {}}\n").ok());
  auto [submit_code, submit_out] = ctl("worker", {"submit", job});
  EXPECT_EQ(submit_code, 1);
  EXPECT_THAT(submit_out, HasSubstr("DriverService.SubmitJob needs the role admin"));
  // And without certificates sluicectl says what to set.
  auto [none_code, none_out] = [&] {
    const std::string log = dir.Sub("none-ctl.log");
    int code = testing::RunCommand({testing::kSluicectlPath, "--coordinator", cluster.coordinator(), "list"}, log,
                                   std::chrono::seconds(30))
                   .value_or(-1);
    return std::pair{code, testing::ReadFile(log).value_or("")};
  }();
  EXPECT_EQ(none_code, 2);
  EXPECT_THAT(none_out, HasSubstr("or set tls = off for plaintext"));
}

// A worker's certificate is replaced on SIGHUP: new connections see the new
// one (here: from a second CA, which the worker trusts too), while a broken
// replacement is refused and the running certificate stays.
TEST(Security, SighupReplacesTheCertificateWithoutARestart) {
  TempDir dir;
  const std::string ca2 = dir.Sub("ca2");
  ASSERT_EQ(testing::RunCommand({std::string(testing::kSourceDir) + "/scripts/gen-certs.sh", "-d", ca2,
                                 "worker:worker", "client:admin"},
                                dir.Sub("gen.log"), std::chrono::seconds(30))
                .value_or(-1),
            0);
  namespace fs = std::filesystem;
  const TlsOptions first = testing::TestTls("worker");
  const std::string cert = dir.Sub("worker.pem"), key = dir.Sub("worker.key"), cas = dir.Sub("cas.pem");
  fs::copy_file(first.cert, cert);
  fs::copy_file(first.key, key);
  fs::permissions(key, fs::perms::owner_read | fs::perms::owner_write);
  ASSERT_TRUE(testing::WriteFile(cas, testing::ReadFile(first.ca).value() +
                                          testing::ReadFile(ca2 + "/ca.pem").value())
                  .ok());
  const std::string address = "127.0.0.1:" + std::to_string(testing::FreePort());
  auto worker = testing::Subprocess::Start(
      {testing::kWorkerdPath, "--id", "w1", "--rpc-address", address, "--data-dir", dir.Sub("w1"), "--coordinator",
       "standalone://127.0.0.1:" + std::to_string(testing::FreePort()), "--tls-cert", cert, "--tls-key", key,
       "--tls-ca", cas},
      {.log_path = dir.Sub("w1.log")});
  ASSERT_TRUE(worker.ok()) << worker.status();

  TlsOptions second_client;
  second_client.cert = ca2 + "/client.pem";
  second_client.key = ca2 + "/client.key";
  second_client.ca = ca2 + "/ca.pem";
  auto status_as = [&](const TlsOptions& who) {
    rpc::ChannelCache channels(Transport(who));
    return rpc::WorkerClient(channels, address).GetStatus(milliseconds(1000)).status();
  };
  ASSERT_TRUE(testing::WaitUntil([&] { return status_as(testing::TestTls("client")).ok(); }, milliseconds(10'000)))
      << testing::ReadFile(dir.Sub("w1.log")).value_or("");
  // A client that trusts only the second CA does not trust this worker yet.
  EXPECT_FALSE(status_as(second_client).ok());

  // A key that is not the certificate's: refused, the worker goes on as before.
  fs::copy_file(ca2 + "/client.key", key, fs::copy_options::overwrite_existing);
  ASSERT_TRUE((*worker)->Signal(SIGHUP).ok());
  ASSERT_TRUE(testing::WaitUntil(
      [&] {
        return testing::ReadFile(dir.Sub("w1.log")).value_or("").find("the running TLS certificate stays") !=
               std::string::npos;
      },
      milliseconds(5000)));
  EXPECT_THAT(testing::ReadFile(dir.Sub("w1.log")).value_or(""), HasSubstr("is not the key of the certificate"));
  std::this_thread::sleep_for(milliseconds(1500));  // past gRPC's look at the files
  EXPECT_TRUE(status_as(testing::TestTls("client")).ok());

  // The second CA's certificate: in use within seconds, no restart.
  fs::copy_file(ca2 + "/worker.pem", cert, fs::copy_options::overwrite_existing);
  fs::copy_file(ca2 + "/worker.key", key, fs::copy_options::overwrite_existing);
  const int pid = (*worker)->pid();
  ASSERT_TRUE((*worker)->Signal(SIGHUP).ok());
  EXPECT_TRUE(testing::WaitUntil([&] { return status_as(second_client).ok(); }, milliseconds(5000)))
      << testing::ReadFile(dir.Sub("w1.log")).value_or("");
  EXPECT_FALSE(status_as(testing::TestTls("client")).ok());
  EXPECT_EQ((*worker)->pid(), pid);
  EXPECT_TRUE((*worker)->Running());
  EXPECT_THAT(testing::ReadFile(dir.Sub("w1.log")).value_or(""),
              HasSubstr("reload: TLS certificate /CN=worker (roles: worker"));
}

// Kafka properties that would make librdkafka run code on the cluster's
// hosts are refused at submit and when a source is declared.
TEST(Security, KafkaPropertiesThatRunCodeAreRefused) {
  TempDir dir;
  auto c = LocalCluster::Start({.dir = dir.path(), .drivers = 1, .workers = 1});
  ASSERT_TRUE(c.ok()) << c.status();
  LocalCluster& cluster = **c;
  const std::string job = dir.Sub("job.yaml");
  ASSERT_TRUE(testing::WriteFile(job, "name: j\nsources: [clicks]\nsink:\n  kafka:\n    brokers: 127.0.0.1:1\n"
                                      "    topic: t\n    properties: {plugin.library.paths: /tmp/evil.so}\n")
                  .ok());
  EXPECT_EQ(cluster.Sluicectl({"submit", job}, dir.Sub("submit.log")), 2);
  EXPECT_THAT(testing::ReadFile(dir.Sub("submit.log")).value_or(""),
              HasSubstr("sink.kafka.properties.plugin.library.paths: refused: it loads shared libraries"));
  // Past sluicectl, straight to the leader: the same answer.
  proto::SubmitJobRequest request;
  request.mutable_spec()->set_name("j");
  request.mutable_spec()->set_batch_interval_ms(1000);
  request.mutable_spec()->add_sources("clicks");
  request.mutable_spec()->mutable_sink()->mutable_kafka()->set_brokers("127.0.0.1:1");
  request.mutable_spec()->mutable_sink()->mutable_kafka()->set_topic("t");
  (*request.mutable_spec()->mutable_sink()->mutable_kafka()->mutable_properties())["ssl.engine.location"] = "/x.so";
  Result<proto::SubmitJobResponse> submitted =
      rpc::DriverClient(testing::Channels(), cluster.driver_address(0)).SubmitJob(request, milliseconds(5000));
  EXPECT_TRUE(absl::IsInvalidArgument(submitted.status())) << submitted.status();
  EXPECT_THAT(std::string(submitted.status().message()), HasSubstr("ssl.engine.location: refused"));

  EXPECT_EQ(cluster.Sluicectl({"source", "add", "k", "--kind", "kafka", "--brokers", "127.0.0.1:1", "--topic", "t",
                               "--partitions", "1", "--property", "sasl.kerberos.kinit.cmd=touch " + dir.Sub("pwned")},
                              dir.Sub("source.log")),
            2);
  EXPECT_THAT(testing::ReadFile(dir.Sub("source.log")).value_or(""),
              HasSubstr("kafka.properties.sasl.kerberos.kinit.cmd: refused: it runs a shell command"));
  EXPECT_FALSE(std::filesystem::exists(dir.Sub("pwned")));
}

// A viewer (a dashboard) sees a job's spec without the credentials in its
// Kafka properties; an admin sees them.
TEST(Security, ViewersDoNotSeeCredentials) {
  TempDir dir;
  auto c = LocalCluster::Start({.dir = dir.path(), .drivers = 1, .workers = 1});
  ASSERT_TRUE(c.ok()) << c.status();
  LocalCluster& cluster = **c;
  const std::string job = dir.Sub("secretive.yaml");
  ASSERT_TRUE(testing::WriteFile(job, "name: secretive\n"
                                      "sources:\n  - {name: sgen, kind: generator, partitions: 1, rate: 10}\n"
                                      "sink:\n  kafka:\n    brokers: 127.0.0.1:1\n    topic: t\n"
                                      "    properties: {sasl.password: hunter2, acks: all}\n")
                  .ok());
  ASSERT_EQ(cluster.Sluicectl({"submit", job}, dir.Sub("submit.log")), 0)
      << testing::ReadFile(dir.Sub("submit.log")).value_or("");

  proto::DescribeJobRequest describe;
  describe.set_job_id("secretive");
  auto properties_as = [&](const char* who) {
    rpc::ChannelCache channels(Transport(testing::TestTls(who)));
    Result<proto::JobInfo> info = rpc::DriverClient(channels, cluster.driver_address(0)).DescribeJob(describe);
    EXPECT_TRUE(info.ok()) << info.status();
    Result<proto::ListJobsResponse> list = rpc::DriverClient(channels, cluster.driver_address(0)).ListJobs({});
    EXPECT_TRUE(list.ok() && list->jobs_size() == 1);
    if (list.ok() && list->jobs_size() == 1) {
      EXPECT_EQ(list->jobs(0).spec().sink().kafka().properties().at("sasl.password"),
                info->spec().sink().kafka().properties().at("sasl.password"));
    }
    return info.ok() ? info->spec().sink().kafka().properties() : google::protobuf::Map<std::string, std::string>();
  };
  auto viewer = properties_as("viewer");
  EXPECT_EQ(viewer["sasl.password"], "<redacted>");
  EXPECT_EQ(viewer["acks"], "all");
  EXPECT_EQ(properties_as("admin")["sasl.password"], "hunter2");
}

// tls = off is plaintext, said in the log at start.
TEST(Security, TlsOffIsPlaintextWithAWarning) {
  TempDir dir;
  const std::string address = "127.0.0.1:" + std::to_string(testing::FreePort());
  auto driver = testing::Subprocess::Start({testing::kDriverdPath, "--id", "d1", "--rpc-address", address,
                                            "--data-dir", dir.Sub("d1"), "--coordinator", "standalone", "--tls", "off"},
                                           {.log_path = dir.Sub("d1.log")});
  ASSERT_TRUE(driver.ok()) << driver.status();
  rpc::ChannelCache plain({.own_connections = true});
  EXPECT_TRUE(testing::WaitUntil(
      [&] { return rpc::DriverClient(plain, address).GetStatus(milliseconds(1000)).ok(); }, milliseconds(10'000)));
  EXPECT_THAT(testing::ReadFile(dir.Sub("d1.log")).value_or(""),
              HasSubstr("tls = off: every connection of this driver is plaintext and no caller is authenticated"));
  // A TLS client does not get an answer from it.
  rpc::ChannelCache tls(Transport(testing::TestTls("client")));
  EXPECT_FALSE(rpc::DriverClient(tls, address).GetStatus(milliseconds(1000)).ok());
}

}  // namespace
}  // namespace sluice
