#ifndef ENVSYNC_SYNC_IDS_H_
#define ENVSYNC_SYNC_IDS_H_

#include <chrono>
#include <string>
#include <string_view>

namespace envsync::sync {

// The wall clock `ahead` from now as ISO-8601 UTC to the second (2026-11-25T03:07:56Z).
std::string UtcIn(std::chrono::system_clock::duration ahead);
// The current time, as UtcIn.
inline std::string UtcNow() { return UtcIn({}); }

// `prefix` followed by 12 random hex digits: comparison (c-) and sync (s-) IDs.
std::string RandomId(std::string_view prefix);

}  // namespace envsync::sync

#endif  // ENVSYNC_SYNC_IDS_H_
