#ifndef ENVSYNC_BENCH_BENCH_PROCESS_H_
#define ENVSYNC_BENCH_BENCH_PROCESS_H_

// What the benchmarks share: running one command as its own process (wall time, peak RSS, exit
// status), the median of samples, and restoring a file from its pristine copy, flushed to disk
// before anything is timed (RestoreFile, FlushFileSystem).

#include <fcntl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <string>
#include <system_error>
#include <vector>

namespace envsync::bench {

struct Sample {
  double seconds = 0;
  long peak_kib = 0;
  int exit_code = 0;  // 128 when killed by a signal
};

// Runs `argv` with stdout into `stdout_path` and stderr into `stderr_path` ("" = /dev/null).
inline Sample RunProcess(const std::vector<std::string>& argv, const std::string& stdout_path,
                         const std::string& stderr_path = "") {
  std::fflush(stdout);  // the child must not print what the parent had buffered
  const auto start = std::chrono::steady_clock::now();
  const pid_t pid = fork();
  if (pid == 0) {
    const std::string out = stdout_path.empty() ? "/dev/null" : stdout_path;
    if (!freopen(out.c_str(), "w", stdout)) _exit(126);
    const std::string err = stderr_path.empty() ? "/dev/null" : stderr_path;
    if (!freopen(err.c_str(), "w", stderr)) _exit(126);
    std::vector<char*> args;
    for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    execvp(args[0], args.data());
    _exit(127);
  }
  int status = 0;
  struct rusage usage {};
  wait4(pid, &status, 0, &usage);
  Sample sample;
  sample.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  sample.peak_kib = usage.ru_maxrss;
  sample.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128;
  return sample;
}

// Flushes the file system that holds `path` (syncfs). A bench calls it after restoring its
// files and before a timed run: otherwise the run also pays for the restore's writeback (on
// ext4, the first fsync of the run waits for the journal, and with it the copied data).
inline void FlushFileSystem(const std::filesystem::path& path) {
  const int fd = ::open(path.c_str(), O_RDONLY);
  if (fd < 0) return;
  ::syncfs(fd);
  ::close(fd);
}

// Copies the database `from` over `to`, dropping `to`'s -journal, -wal and -shm first (a stale
// WAL beside a restored file would be read as its own), and flushes the copy to disk. On
// failure, returns false with the reason in `error`.
inline bool RestoreFile(const std::filesystem::path& from, const std::filesystem::path& to,
                        std::string* error) {
  std::error_code ec;
  for (const char* suffix : {"-journal", "-wal", "-shm"}) {
    std::filesystem::remove(to.string() + suffix, ec);
  }
  std::filesystem::copy_file(from, to, std::filesystem::copy_options::overwrite_existing, ec);
  if (ec) {
    *error = "cannot copy " + from.string() + " to " + to.string() + ": " + ec.message();
    return false;
  }
  const int fd = ::open(to.c_str(), O_RDONLY);
  if (fd >= 0) {
    ::fsync(fd);
    ::close(fd);
  }
  return true;
}

// Whether every flag on the command line comes with its value, each bench taking only
// `--flag value` pairs; else prints which flag has none and `usage`. A lone flag (`--help`)
// must not start a run of several minutes with the defaults.
inline bool FlagsHaveValues(int argc, char** argv, const char* usage) {
  if (argc % 2 == 1) return true;
  const char* last = argv[argc - 1];
  std::fprintf(stderr, "%s %s\nusage: %s\n", last,
               std::strncmp(last, "--", 2) == 0 ? "needs a value" : "is not a flag", usage);
  return false;
}

// The median of `v` (the mean of the middle two for an even count).
inline double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.size() % 2 == 1 ? v[v.size() / 2] : (v[v.size() / 2 - 1] + v[v.size() / 2]) / 2;
}

}  // namespace envsync::bench

#endif  // ENVSYNC_BENCH_BENCH_PROCESS_H_
