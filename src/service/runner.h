// The job runner's pieces that `envsync serve` (the module envsync-serve.so) and `envsync serve
// --once` (the command itself, without the module) share. Defined in runner.cc, which is part of
// the command, so the module uses the command's copy.
#ifndef ENVSYNC_SRC_SERVICE_RUNNER_H_
#define ENVSYNC_SRC_SERVICE_RUNNER_H_

#include <string>

#include "envsync/store/state_store.h"

namespace envsync::service {

// This process as the runner of the jobs it claims: host, process ID and a random tag.
std::string RunnerName();

// One log line per job transition, with the mail problem when a mail could not be delivered.
void LogJob(const store::Job& job);

// spdlog's default logger writes timestamped lines to stderr (once per process).
void UseStderrLogger();

}  // namespace envsync::service

#endif  // ENVSYNC_SRC_SERVICE_RUNNER_H_
