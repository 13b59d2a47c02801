#include "test/harness/netns_hosts.h"

#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cctype>
#include <cerrno>
#include <filesystem>
#include <mutex>

#include "test/harness/subprocess.h"
#include "test/harness/util.h"

namespace sluice::testing {
namespace {

// `ip` and `nft` live in /usr/sbin, which a test's PATH may lack.
std::string FindProgram(const std::string& name) {
  std::string path = getenv("PATH") != nullptr ? getenv("PATH") : "";
  path += ":/usr/sbin:/sbin:/usr/bin:/bin";
  size_t start = 0;
  while (start <= path.size()) {
    size_t end = path.find(':', start);
    if (end == std::string::npos) end = path.size();
    const std::string dir = path.substr(start, end - start);
    if (!dir.empty() && ::access((dir + "/" + name).c_str(), X_OK) == 0) return dir + "/" + name;
    start = end + 1;
  }
  return "";
}

// Namespaces and links are named sl<pid>x<k>...: true if <pid> is a process
// that no longer exists (a test that crashed before its destructor ran).
bool OwnerIsGone(const std::string& name) {
  if (!name.starts_with("sl")) return false;
  size_t i = 2;
  pid_t pid = 0;
  while (i < name.size() && std::isdigit(static_cast<unsigned char>(name[i]))) pid = pid * 10 + (name[i++] - '0');
  if (i == 2 || i >= name.size() || name[i] != 'x' || pid <= 0) return false;
  return ::kill(pid, 0) != 0 && errno == ESRCH;
}

Result<std::string> Capture(const std::vector<std::string>& argv) {
  const std::string out = fmt::format("/tmp/sluice-netns-{}-capture.txt", ::getpid());
  std::filesystem::remove(out);
  ASSIGN_OR_RETURN(int code, RunCommand(argv, out, std::chrono::seconds(10)));
  Result<std::string> text = ReadFile(out);
  std::filesystem::remove(out);
  if (code != 0) return absl::InternalError(fmt::format("{} exited with {}", argv[0], code));
  return text;
}

std::atomic<int> instances{0};

}  // namespace

Status NetnsHosts::Available() {
  static std::once_flag once;
  static Status* verdict = nullptr;  // never destroyed
  std::call_once(once, [] {
    verdict = new Status(absl::OkStatus());
    const std::string ip = FindProgram("ip"), nft = FindProgram("nft");
    if (::geteuid() != 0) {
      *verdict = absl::FailedPreconditionError("network namespaces need root; this test runs as uid " +
                                               std::to_string(::geteuid()));
    } else if (ip.empty()) {
      *verdict = absl::FailedPreconditionError("no `ip` (iproute2) in PATH, /usr/sbin or /sbin");
    } else if (nft.empty()) {
      *verdict = absl::FailedPreconditionError("no `nft` (the nftables package) in PATH, /usr/sbin or /sbin");
    } else {
      // Root is not always enough (a container without CAP_SYS_ADMIN or
      // CAP_NET_ADMIN): try it once.
      const std::string probe = fmt::format("sl{}x0-probe", ::getpid());
      Result<std::string> made = Capture({ip, "netns", "add", probe});
      if (!made.ok()) {
        *verdict = absl::FailedPreconditionError("`ip netns add` fails here: " + std::string(made.status().message()));
      } else {
        Result<std::string> listed = Capture({ip, "netns", "exec", probe, nft, "list", "ruleset"});
        if (!listed.ok()) {
          *verdict = absl::FailedPreconditionError("`nft` fails inside a namespace: " +
                                                   std::string(listed.status().message()));
        }
        (void)Capture({ip, "netns", "del", probe});
      }
    }
  });
  return *verdict;
}

Result<std::unique_ptr<NetnsHosts>> NetnsHosts::Create(const std::vector<std::string>& hosts,
                                                       const std::string& log_path) {
  RETURN_IF_ERROR(Available());
  if (hosts.empty() || hosts.size() > 200) return absl::InvalidArgumentError("NetnsHosts: 1..200 hosts");
  for (size_t i = 0; i < hosts.size(); ++i) {
    for (size_t j = i + 1; j < hosts.size(); ++j) {
      if (hosts[i] == hosts[j]) return absl::InvalidArgumentError("NetnsHosts: host '" + hosts[i] + "' twice");
    }
  }
  const std::string ip = FindProgram("ip");
  // Leftovers of crashed runs: their bind mounts under /run/netns stay until
  // removed, and their observer links keep a route to their subnet.
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator("/run/netns", ec)) {
    const std::string name = e.path().filename().string();
    if (OwnerIsGone(name)) (void)RunCommand({ip, "netns", "del", name}, log_path, std::chrono::seconds(10));
  }
  for (const auto& e : std::filesystem::directory_iterator("/sys/class/net", ec)) {
    const std::string name = e.path().filename().string();
    if (OwnerIsGone(name)) (void)RunCommand({ip, "link", "del", name}, log_path, std::chrono::seconds(10));
  }

  // A /24 no other interface or route of this namespace uses (another test
  // process may be running its own hosts right now).
  const int k = ++instances;
  ASSIGN_OR_RETURN(std::string routes, Capture({ip, "-4", "route", "show", "table", "all"}));
  std::string subnet;
  for (int attempt = 0; attempt < 2048 && subnet.empty(); ++attempt) {
    const unsigned h = static_cast<unsigned>(::getpid()) * 2654435761u + static_cast<unsigned>(k * 40503 + attempt);
    const std::string candidate = fmt::format("10.{}.{}", 200 + (h >> 8) % 8, h % 256);
    if (routes.find(candidate + ".") == std::string::npos) subnet = candidate;
  }
  if (subnet.empty()) return absl::ResourceExhaustedError("NetnsHosts: no free /24 under 10.200.0.0/13");

  std::unique_ptr<NetnsHosts> n(
      new NetnsHosts(hosts, fmt::format("sl{}x{}", ::getpid(), k), subnet, log_path));
  Status built = n->Build();
  if (!built.ok()) {
    std::string log = ReadFile(log_path).value_or("");
    return absl::InternalError(fmt::format("cannot build the hosts' network ({}); {} ends:\n{}",
                                           std::string(built.message()), log_path,
                                           log.substr(log.size() > 1500 ? log.size() - 1500 : 0)));
  }
  return n;
}

Status NetnsHosts::Run(const std::vector<std::string>& argv) const {
  ASSIGN_OR_RETURN(int code, RunCommand(argv, log_path_, std::chrono::seconds(10)));
  if (code != 0) {
    std::string cmd;
    for (const std::string& a : argv) cmd += (cmd.empty() ? "" : " ") + a;
    return absl::InternalError(fmt::format("`{}` exited with {}", cmd, code));
  }
  return absl::OkStatus();
}

Status NetnsHosts::Build() {
  const std::string ip = FindProgram("ip"), nft = FindProgram("nft");
  const std::string hub = Hub();
  RETURN_IF_ERROR(Run({ip, "netns", "add", hub}));
  made_.push_back(hub);
  RETURN_IF_ERROR(Run({ip, "-n", hub, "link", "add", "br0", "type", "bridge"}));
  RETURN_IF_ERROR(Run({ip, "-n", hub, "link", "set", "br0", "up"}));
  for (int i = 0; i < static_cast<int>(hosts_.size()); ++i) {
    const std::string ns = Namespace(i), port = "p" + std::to_string(i);
    RETURN_IF_ERROR(Run({ip, "netns", "add", ns}));
    made_.push_back(ns);
    // Made inside the hub, the peer moved straight to the host: no name is
    // ever taken in the test's own namespace.
    RETURN_IF_ERROR(Run({ip, "-n", hub, "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", ns}));
    RETURN_IF_ERROR(Run({ip, "-n", hub, "link", "set", port, "master", "br0", "up"}));
    RETURN_IF_ERROR(Run({ip, "-n", ns, "addr", "add", fmt::format("{}.{}/24", subnet_, 10 + i), "dev", "eth0"}));
    RETURN_IF_ERROR(Run({ip, "-n", ns, "link", "set", "eth0", "up"}));
    RETURN_IF_ERROR(Run({ip, "-n", ns, "link", "set", "lo", "up"}));
  }
  // The observer: this process's namespace gets a port of the bridge too.
  const std::string mine = prefix_ + "o";
  RETURN_IF_ERROR(Run({ip, "-n", hub, "link", "add", "pobs", "type", "veth", "peer", "name", mine, "netns",
                       std::to_string(::getpid())}));
  RETURN_IF_ERROR(Run({ip, "-n", hub, "link", "set", "pobs", "master", "br0", "up"}));
  RETURN_IF_ERROR(Run({ip, "addr", "add", observer_ip() + "/24", "dev", mine}));
  RETURN_IF_ERROR(Run({ip, "link", "set", mine, "up"}));
  const std::string rules = log_path_ + ".nft";
  RETURN_IF_ERROR(WriteFile(rules,
                            "table bridge sluice {\n"
                            "  chain cuts {\n"
                            "    type filter hook forward priority 0; policy accept;\n"
                            "  }\n"
                            "}\n"));
  RETURN_IF_ERROR(Run({ip, "netns", "exec", hub, nft, "-f", rules}));
  // The observer must reach every host before anything is started there.
  for (int i = 0; i < static_cast<int>(hosts_.size()); ++i) {
    const std::string addr = fmt::format("{}.{}", subnet_, 10 + i);
    bool up = WaitUntil([&] {
      // A refused connection (nothing listens yet) proves the path works.
      int fd = ConnectTcp(addr, 9);
      if (fd >= 0) ::close(fd);
      return fd >= 0 || errno == ECONNREFUSED;
    }, std::chrono::seconds(10), std::chrono::milliseconds(50));
    if (!up) return absl::UnavailableError(fmt::format("host {} at {} is not reachable", hosts_[i], addr));
  }
  return absl::OkStatus();
}

NetnsHosts::~NetnsHosts() {
  const std::string ip = FindProgram("ip");
  // Deleting the hub deletes its ports and so their peers, the observer's too.
  for (auto it = made_.rbegin(); it != made_.rend(); ++it) {
    (void)RunCommand({ip, "netns", "del", *it}, log_path_, std::chrono::seconds(10));
  }
}

int NetnsHosts::Index(const std::string& host) const {
  for (int i = 0; i < static_cast<int>(hosts_.size()); ++i) {
    if (hosts_[i] == host) return i;
  }
  return -1;
}

bool NetnsHosts::Has(const std::string& host) const { return Index(host) >= 0; }

Placement NetnsHosts::placement(const std::string& host) const {
  const int i = Index(host);
  if (i < 0) return {};
  return {.ip = fmt::format("{}.{}", subnet_, 10 + i),
          .exec_prefix = {FindProgram("ip"), "netns", "exec", Namespace(i)}};
}

Status NetnsHosts::Cut(const std::string& a, const std::string& b) {
  const int i = Index(a), j = Index(b);
  if (i < 0 || j < 0) return absl::InvalidArgumentError(fmt::format("Cut: no host '{}'", i < 0 ? a : b));
  if (i == j) return absl::InvalidArgumentError("Cut: a host from itself");
  cuts_.insert({std::min(i, j), std::max(i, j)});
  return ApplyCuts();
}

Status NetnsHosts::Isolate(const std::string& host, const std::set<std::string>& except) {
  const int i = Index(host);
  if (i < 0) return absl::InvalidArgumentError(fmt::format("Isolate: no host '{}'", host));
  for (const std::string& e : except) {
    if (!Has(e)) return absl::InvalidArgumentError(fmt::format("Isolate: no host '{}'", e));
  }
  for (int j = 0; j < static_cast<int>(hosts_.size()); ++j) {
    if (j != i && !except.contains(hosts_[j])) cuts_.insert({std::min(i, j), std::max(i, j)});
  }
  return ApplyCuts();
}

Status NetnsHosts::Heal() {
  cuts_.clear();
  return ApplyCuts();
}

std::string NetnsHosts::Describe() const {
  std::string out;
  for (const auto& [i, j] : cuts_) out += (out.empty() ? "" : ", ") + hosts_[i] + "|" + hosts_[j];
  return out.empty() ? "none" : out;
}

// One nft transaction: the old cuts go and the new ones come in at once.
Status NetnsHosts::ApplyCuts() {
  std::string rules = "flush chain bridge sluice cuts\n";
  for (const auto& [i, j] : cuts_) {
    rules += fmt::format("add rule bridge sluice cuts iifname \"p{0}\" oifname \"p{1}\" drop\n", i, j);
    rules += fmt::format("add rule bridge sluice cuts iifname \"p{1}\" oifname \"p{0}\" drop\n", i, j);
  }
  const std::string path = log_path_ + ".nft";
  RETURN_IF_ERROR(WriteFile(path, rules));
  return Run({FindProgram("ip"), "netns", "exec", Hub(), FindProgram("nft"), "-f", path});
}

}  // namespace sluice::testing
