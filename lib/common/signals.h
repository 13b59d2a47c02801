// Termination signals of the Sluice daemons.
//
// Module sluice::common owns it. A daemon calls BlockTerminationSignals() first
// thing in main(), before any thread exists, so every thread inherits the mask
// and SIGINT/SIGTERM/SIGHUP are only ever taken by WaitForTerminationSignal().
// SIGPIPE is ignored (a closed peer is an error return, not a death).
#pragma once

#include <chrono>

namespace sluice {

void BlockTerminationSignals();

// Blocks until SIGINT, SIGTERM or SIGHUP arrives; returns its number.
int WaitForTerminationSignal();
// As above, for at most `timeout`; 0 if none arrived.
int WaitForTerminationSignal(std::chrono::milliseconds timeout);

}  // namespace sluice
