#ifndef ENVSYNC_CLI_CLI_H_
#define ENVSYNC_CLI_CLI_H_

#include <ostream>
#include <string>
#include <vector>

namespace envsync::cli {

// Exit statuses of the `envsync` command (SYNC-SEMANTICS §7).
inline constexpr int kExitOk = 0;
inline constexpr int kExitUnavailable = 1;  // an environment or the state cannot be read
inline constexpr int kExitBadInput = 2;     // bad usage or input

// Runs the `envsync` command with `args` (without the program name), printing results to
// `out` and errors and progress to `err`. Returns the exit status. Thread safety: one call at
// a time per process (it reads the environment variable ENVSYNC_CONFIG).
int Run(const std::vector<std::string>& args, std::ostream& out, std::ostream& err);

}  // namespace envsync::cli

#endif  // ENVSYNC_CLI_CLI_H_
