// NetnsHosts: simulated hosts for partition tests — one Linux network
// namespace per host, all on a private bridge, so daemons talk over real
// interfaces and a test can cut the network between any two of them.
//
// Part of sluice::test_harness. The layout (names unique per instance):
//
//   namespace sl<pid>x<k>-hub       the bridge br0, and one port per host
//   namespace sl<pid>x<k>-<i>       host i: eth0 = <subnet>.(10+i), lo up
//   the test's own namespace        veth sl<pid>x<k>o = <subnet>.1, a port of
//                                   the bridge too: the test (the "observer")
//                                   reaches every host, and no cut touches it
//
// The subnet is a /24 under 10.200.0.0/13 not routed anywhere else on the
// machine, and exists only inside these namespaces and on the observer's
// veth. Cuts are nftables rules in a `bridge`-family forward chain of the hub
// namespace that drop frames between two hosts' ports: a silent partition
// (packets vanish; connections stay open and time out, as when a switch or a
// link fails), both directions at once. Heal() removes every rule.
//
// Processes are started in a host with its Placement: `ip netns exec NS argv`,
// which execs, so the pid a test signals is the daemon's.
//
// Needs root, `ip` (iproute2) and `nft` (nftables); Available() names what is
// missing so tests can skip. The destructor removes the namespaces; an
// instance also removes those left by processes that no longer exist (a test
// that crashed), never those of another live test process.
//
// Thread-compatible: one owner makes the cuts.
#pragma once

#include <memory>
#include <set>
#include <string>
#include <vector>

#include "lib/common/status.h"
#include "test/harness/subprocess.h"

namespace sluice::testing {

class NetnsHosts {
 public:
  // OK if this process can make namespaces and cuts; else FAILED_PRECONDITION
  // saying why (not root, no `ip`, no `nft`).
  [[nodiscard]] static Status Available();

  // One host per name (names unique). The commands run and their output are
  // appended to `log_path`.
  [[nodiscard]] static Result<std::unique_ptr<NetnsHosts>> Create(const std::vector<std::string>& hosts,
                                                                  const std::string& log_path);
  ~NetnsHosts();
  NetnsHosts(const NetnsHosts&) = delete;
  NetnsHosts& operator=(const NetnsHosts&) = delete;

  const std::vector<std::string>& hosts() const { return hosts_; }
  bool Has(const std::string& host) const;
  // The host's address and its `ip netns exec` prefix. The host must exist.
  Placement placement(const std::string& host) const;
  std::string ip(const std::string& host) const { return placement(host).ip; }
  std::string observer_ip() const { return subnet_ + ".1"; }

  // Drops everything between hosts a and b, both ways (added to the cuts in
  // force).
  [[nodiscard]] Status Cut(const std::string& a, const std::string& b);
  // Cuts `host` from every other host except those in `except`.
  [[nodiscard]] Status Isolate(const std::string& host, const std::set<std::string>& except = {});
  // Removes every cut.
  [[nodiscard]] Status Heal();
  // The pairs cut now, for messages: "a|b, c|d".
  std::string Describe() const;

 private:
  NetnsHosts(std::vector<std::string> hosts, std::string prefix, std::string subnet, std::string log_path)
      : hosts_(std::move(hosts)), prefix_(std::move(prefix)), subnet_(std::move(subnet)), log_path_(std::move(log_path)) {}
  int Index(const std::string& host) const;
  std::string Namespace(int i) const { return prefix_ + "-" + std::to_string(i); }
  std::string Hub() const { return prefix_ + "-hub"; }
  [[nodiscard]] Status Run(const std::vector<std::string>& argv) const;
  [[nodiscard]] Status Build();
  [[nodiscard]] Status ApplyCuts();

  const std::vector<std::string> hosts_;
  const std::string prefix_;  // sl<pid>x<k>
  const std::string subnet_;  // "10.a.b"
  const std::string log_path_;
  std::set<std::pair<int, int>> cuts_;  // (i, j) with i < j
  std::vector<std::string> made_;       // namespaces made, removed by the destructor
};

}  // namespace sluice::testing
