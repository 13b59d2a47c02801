// workerd: a Sluice worker. Hosts receivers, the block store and executors.
// See lib/worker.
#include <malloc.h>

#include "lib/common/daemon_main.h"
#include "lib/worker/worker.h"

int main(int argc, char** argv) {
  // Blocks are large and short-lived: keep freed buffers in the heap for the
  // next ones rather than returning them to the kernel and faulting them in
  // again (measured in bench/ingest_bench; docs/data-path.md).
  mallopt(M_MMAP_THRESHOLD, 1 << 30);
  mallopt(M_TRIM_THRESHOLD, 1 << 30);
  return sluice::RunDaemonMain<sluice::worker::WorkerOptions, sluice::worker::Worker>(
      "workerd", "Sluice worker: runs receivers and the tasks of micro-batches", argc, argv);
}
