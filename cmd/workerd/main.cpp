// workerd: a Sluice worker. Hosts receivers, the block store and executors.
// See lib/worker.
#include "lib/common/daemon_main.h"
#include "lib/worker/worker.h"

int main(int argc, char** argv) {
  return sluice::RunDaemonMain<sluice::worker::WorkerOptions, sluice::worker::Worker>(
      "workerd", "Sluice worker: runs receivers and the tasks of micro-batches", argc, argv);
}
