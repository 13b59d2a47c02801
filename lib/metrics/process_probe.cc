#include "lib/metrics/process_probe.h"

#include <dirent.h>
#include <unistd.h>

#include <ctime>
#include <fstream>
#include <sstream>

namespace sluice::metrics {
namespace {

// Fields of /proc/self/stat after the command's closing parenthesis,
// numbered as proc(5) numbers them (state is field 3).
std::vector<std::string> StatFields() {
  std::ifstream in("/proc/self/stat");
  std::string line;
  std::getline(in, line);
  std::vector<std::string> out;
  const size_t paren = line.rfind(')');
  if (paren == std::string::npos) return out;
  std::istringstream rest(line.substr(paren + 1));
  out.resize(3);  // fields 1 and 2 (pid, comm) are not needed
  std::string f;
  while (rest >> f) out.push_back(f);
  return out;
}

double BootTimeSeconds() {
  std::ifstream in("/proc/stat");
  std::string key;
  while (in >> key) {
    if (key == "btime") {
      double v = 0;
      in >> v;
      return v;
    }
    in.ignore(1 << 20, '\n');
  }
  return 0;
}

int CountOpenFds() {
  DIR* dir = opendir("/proc/self/fd");
  if (dir == nullptr) return 0;
  int n = 0;
  while (dirent* e = readdir(dir)) n += e->d_name[0] != '.';
  closedir(dir);
  return n - 1;  // the directory stream's own descriptor
}

}  // namespace

Result<std::unique_ptr<ProcessProbe>> ProcessProbe::Create(Registry* registry, const std::string& kind,
                                                           const std::string& version) {
  std::unique_ptr<ProcessProbe> p(new ProcessProbe(registry));
  ASSIGN_OR_RETURN(Family<Gauge>* resident,
                   registry->AddGauge("sluice_process_resident_memory_bytes", "Resident memory of the process"));
  ASSIGN_OR_RETURN(Family<Gauge>* virt,
                   registry->AddGauge("sluice_process_virtual_memory_bytes", "Virtual memory of the process"));
  ASSIGN_OR_RETURN(Family<Counter>* cpu, registry->AddCounter("sluice_process_cpu_seconds_total",
                                                              "CPU time the process used, user and system"));
  ASSIGN_OR_RETURN(Family<Gauge>* threads, registry->AddGauge("sluice_process_threads", "Threads of the process"));
  ASSIGN_OR_RETURN(Family<Gauge>* fds,
                   registry->AddGauge("sluice_process_open_fds", "Open file descriptors of the process"));
  ASSIGN_OR_RETURN(Family<Gauge>* start, registry->AddGauge("sluice_process_start_time_seconds",
                                                            "When the process started, seconds since the epoch"));
  ASSIGN_OR_RETURN(Family<Gauge>* info, registry->AddGauge("sluice_build_info",
                                                           "Always 1; the labels name the daemon and its version",
                                                           {"kind", "version"}));
  info->With({kind, version}).Set(1);
  p->resident_ = &resident->Get();
  p->virtual_ = &virt->Get();
  p->cpu_ = &cpu->Get();
  p->threads_ = &threads->Get();
  p->open_fds_ = &fds->Get();
  p->start_time_ = &start->Get();
  ProcessProbe* raw = p.get();
  p->collector_ = registry->AddCollector([raw] { raw->Collect(); });
  return p;
}

ProcessProbe::~ProcessProbe() {
  if (collector_ != 0) registry_->RemoveCollector(collector_);
}

void ProcessProbe::Collect() {
  const std::vector<std::string> f = StatFields();
  if (f.size() < 25) return;
  const double tick = static_cast<double>(sysconf(_SC_CLK_TCK));
  const double page = static_cast<double>(sysconf(_SC_PAGESIZE));
  // proc(5): 14 utime, 15 stime, 20 num_threads, 22 starttime (ticks after
  // boot), 23 vsize (bytes), 24 rss (pages).
  cpu_->RaiseTo((std::stod(f[14]) + std::stod(f[15])) / tick);
  threads_->Set(std::stod(f[20]));
  virtual_->Set(std::stod(f[23]));
  resident_->Set(std::stod(f[24]) * page);
  if (start_time_->value() == 0) start_time_->Set(BootTimeSeconds() + std::stod(f[22]) / tick);
  open_fds_->Set(CountOpenFds());
}

}  // namespace sluice::metrics
