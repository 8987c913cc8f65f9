#ifndef ENVSYNC_SYNC_COMPARE_H_
#define ENVSYNC_SYNC_COMPARE_H_

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "envsync/core/comparison.h"
#include "envsync/core/manifest.h"
#include "envsync/core/status.h"
#include "envsync/store/environment.h"
#include "envsync/store/state_store.h"

namespace envsync::sync {

// What the user asked to compare.
struct CompareRequest {
  Mode mode = Mode::kAll;
  std::vector<std::string> modules;  // empty = every module of the manifest
  std::vector<std::string> folders;  // gallery folders (with their subfolders); empty = all
};

// How far a comparison has got: records read so far over both sides, and the table at hand.
struct CompareProgress {
  std::string table;
  int64_t records = 0;
  bool done = false;
  uint64_t bytes_read = 0;  // row bytes received from database servers (both sides) so far
};

// What a comparison needs from its surroundings, injected so tests control time and IDs.
struct CompareContext {
  std::function<std::string()> now;                      // ISO-8601 UTC timestamp
  std::function<std::string()> new_id;                   // a fresh comparison ID
  std::function<void(const CompareProgress&)> progress;  // may be empty
};

// The default context: the system clock, random IDs, no progress reports.
CompareContext DefaultCompareContext();

// Whether `env` can be read and written under `manifest`: it has every table the manifest
// names (Unavailable, "not a platform database", otherwise) and the manifest fits its columns
// (Manifest::CheckAgainst: InvalidArgument naming the manifest line). Every command that builds
// SQL from the manifest checks its environments with it first: compare both, sync both, undo the
// target, `track enable` its own.
Status CheckEnvironmentSchema(const Manifest& manifest, store::Environment& env);

// Compares `source` with `target` as SYNC-SEMANTICS §1-3 define it and stores the comparison
// in `state`. Reads each side in one read transaction, one thread per side, streaming rows in
// ID order, so memory grows with the number of differences, not with the environments.
// Records the base of every record pair found equal. Writes nothing to either environment.
//
// Errors: InvalidArgument for a module that is not synchronizable, an unknown folder, or a
// manifest that does not fit an environment's schema (naming the manifest line); Unavailable
// when an environment cannot be read (naming it and its path).
Result<Comparison> Compare(const Manifest& manifest, store::Environment& source,
                           store::Environment& target, store::StateStore& state,
                           const CompareRequest& request, const CompareContext& context);

}  // namespace envsync::sync

#endif  // ENVSYNC_SYNC_COMPARE_H_
