#include "envsync/store/fault_injection.h"

#include <fcntl.h>
#include <unistd.h>

#include <chrono>
#include <csignal>
#include <cstdlib>
#include <fstream>
#include <map>
#include <mutex>
#include <string>
#include <thread>

namespace envsync::store {
namespace {

// What the environment asks for. Read at every point (a handful per table or file, never per
// record), so a test may set it in its own process between runs.
struct Wanted {
  std::string crash_point;
  long crash_hit = 1;
  std::string trace_file;
  std::string pause_point;
  std::string pause_file;
  int pause_ms = 3000;
  bool any = false;
};

Wanted ReadWanted() {
  Wanted w;
  if (const char* at = std::getenv("ENVSYNC_CRASH_AT")) {
    w.crash_point = at;
    const size_t hash = w.crash_point.find('#');
    if (hash != std::string::npos) {
      w.crash_hit = std::strtol(w.crash_point.c_str() + hash + 1, nullptr, 10);
      w.crash_point.resize(hash);
    }
  }
  if (const char* trace = std::getenv("ENVSYNC_CRASH_TRACE")) w.trace_file = trace;
  if (const char* pause = std::getenv("ENVSYNC_PAUSE_AT")) w.pause_point = pause;
  if (const char* file = std::getenv("ENVSYNC_PAUSE_FILE")) w.pause_file = file;
  if (const char* ms = std::getenv("ENVSYNC_PAUSE_MS")) w.pause_ms = std::atoi(ms);
  w.any = !w.crash_point.empty() || !w.trace_file.empty() || !w.pause_point.empty();
  return w;
}

}  // namespace

void CrashPoint(const char* point) {
  const Wanted wanted = ReadWanted();
  if (!wanted.any) return;
  static std::mutex mutex;
  static std::map<std::string, long> hits;
  long hit = 0;
  {
    std::lock_guard<std::mutex> lock(mutex);
    hit = ++hits[point];
    if (!wanted.trace_file.empty()) {
      // One write(2) per line with O_APPEND: the line is in the file even if the next point
      // kills the process.
      const std::string line = std::string(point) + "#" + std::to_string(hit) + "\n";
      const int fd = ::open(wanted.trace_file.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
      if (fd >= 0) {
        (void)!::write(fd, line.data(), line.size());
        ::close(fd);
      }
    }
  }
  if (wanted.crash_point == point && wanted.crash_hit == hit) std::raise(SIGKILL);
  if (wanted.pause_point == point) {
    if (!wanted.pause_file.empty()) std::ofstream(wanted.pause_file) << point;
    std::this_thread::sleep_for(std::chrono::milliseconds(wanted.pause_ms));
  }
}

std::chrono::system_clock::time_point WallClockNow() {
  const auto now = std::chrono::system_clock::now();
  const char* skew = std::getenv("ENVSYNC_CLOCK_SKEW");
  if (skew == nullptr) return now;
  return now + std::chrono::seconds(std::strtoll(skew, nullptr, 10));
}

}  // namespace envsync::store
