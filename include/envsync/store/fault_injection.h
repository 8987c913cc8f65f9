#ifndef ENVSYNC_STORE_FAULT_INJECTION_H_
#define ENVSYNC_STORE_FAULT_INJECTION_H_

#include <chrono>

namespace envsync::store {

// Fault injection for the crash tests, a no-op unless the process's environment asks for it:
//  - ENVSYNC_CRASH_AT=<point> or <point>#<n>: the process kills itself with SIGKILL (as
//    `kill -9` would) when it reaches `point` for the first (or the n-th) time;
//  - ENVSYNC_CRASH_TRACE=<file>: every point reached is appended to `file` as a line
//    "<point>#<n>", so a test can learn the points of a run and pick some to crash at;
//  - ENVSYNC_PAUSE_AT=<point>: the process pauses there for ENVSYNC_PAUSE_MS (default 3000)
//    after touching the file ENVSYNC_PAUSE_FILE, so a test can act mid-work (drop its
//    connection, say).
// Points are named for what has just happened ("staged", "table_applied", ...). Thread safety:
// any thread may reach a point; the counts are shared.
void CrashPoint(const char* point);

// The wall clock envsync stamps and schedules by: std::chrono::system_clock::now(), moved by
// ENVSYNC_CLOCK_SKEW seconds (signed) when that is set, so a test can make the clock jump
// forward or back between two runs. Thread safety: any thread.
std::chrono::system_clock::time_point WallClockNow();

}  // namespace envsync::store

#endif  // ENVSYNC_STORE_FAULT_INJECTION_H_
