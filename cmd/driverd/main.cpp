// driverd: a Sluice driver. The leader plans and schedules micro-batches;
// standbys replicate its WAL and take over when it dies. See lib/driver.
#include "lib/common/daemon_main.h"
#include "lib/driver/driver.h"

int main(int argc, char** argv) {
  return sluice::RunDaemonMain<sluice::driver::DriverOptions, sluice::driver::Driver>(
      "driverd", "Sluice driver: plans and schedules micro-batches (leader) or stands by",
      argc, argv);
}
