#ifndef ENVSYNC_SYNC_SYNC_H_
#define ENVSYNC_SYNC_SYNC_H_

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "envsync/core/config.h"
#include "envsync/core/manifest.h"
#include "envsync/core/status.h"
#include "envsync/store/environment.h"
#include "envsync/store/state_store.h"

namespace envsync::sync {

// How a conflict is resolved (SYNC-SEMANTICS §4).
enum class Resolution { kNone, kOverwrite, kInsertAsNew, kLink, kMerge };

// What the user asked a sync to do with a reviewed comparison. `T:ID` names a record by its
// root table and source ID (target ID for deletions), as Change::Ref() does.
struct SyncRequest {
  std::string comparison_id;
  std::vector<std::string> select;    // T:ID
  std::vector<std::string> deselect;  // T:ID
  std::vector<std::string> resolve;   // T:ID=overwrite|insert_as_new|link|merge
  bool test_import = false;
  std::string started_by = "cli";
  std::string job_id;  // the job running it ("" from the CLI); kept on the sync, not in requests
};

struct AppliedCounts {
  int64_t new_records = 0;
  int64_t modified = 0;
  int64_t deleted = 0;
};

// How a sync ended. A sync that was refused before it started is an error Status instead.
struct SyncOutcome {
  std::string sync_id;
  bool success = false;
  bool test_import = false;
  AppliedCounts applied;
  std::map<std::string, AppliedCounts> per_module;
  int64_t files = 0;  // gallery files written (or that would be)
  // Seconds spent per phase, in order: plan, drift_guard, checks, stage_files, apply, then
  // rollback (test import) or journal, commit, files, base.
  std::vector<std::pair<std::string, double>> timings;
  std::string error;
};

struct SyncContext {
  std::function<std::string()> now;
  std::function<std::string()> new_id;
};

SyncContext DefaultSyncContext();

// A fresh job ID (`j-` and 12 random hex digits).
std::string RandomJobId();

// Executes (or test-imports) a stored comparison's selection on its target, as SYNC-SEMANTICS
// §2, §4 and §5 define it: one transaction on the target database, parents before children and
// deletions in reverse, child rows replaced whole, local columns left to the target,
// references rewritten through the identity map, gallery files staged and verified, put in
// place after the commit under a journal; the drift guard re-hashes every selected record
// first. After success the base and the identity map are updated and the record pre-images are
// kept for undo. A test import runs everything and then rolls it back.
//
// `target` must be opened for writing. Errors (nothing written): InvalidArgument for an unknown
// comparison or T:ID, a comparison already executed, a resolution that does not fit, an
// unresolved conflict, or a selection that would leave a reference dangling (naming both
// records); Unavailable when an environment cannot be read or the target stays locked.
Result<SyncOutcome> ExecuteSync(const Manifest& manifest, store::Environment& source,
                                store::Environment& target, store::StateStore& state,
                                const SyncRequest& request, const SyncContext& context);

// Undoes a successful sync from its pre-images, database and files together, and restores the
// base it replaced. Refuses (InvalidArgument, naming them) when the target changed any of those
// records since the sync.
Result<SyncOutcome> UndoSync(const Manifest& manifest, store::Environment& source,
                             store::Environment& target, store::StateStore& state,
                             const std::string& sync_id, const SyncContext& context);

// Finishes or rolls back a sync that was interrupted (the process killed) between writing its
// journal and finishing: when the target database committed, the files are put in place and
// the base updated; otherwise the staged files are removed. `open` opens an environment by
// name for writing. With `only_target`, only syncs into that environment are settled (the
// caller holds its lock). Returns the IDs of the syncs it settled.
Result<std::vector<std::string>> RecoverInterruptedSyncs(
    const Manifest& manifest, store::StateStore& state,
    const std::function<Result<std::unique_ptr<store::Environment>>(const std::string&)>& open,
    const std::string& only_target = "");

// The folder where syncs keep their work of `kind` inside an assets folder, beside (not inside)
// the gallery: "staging" (files staged before the commit) or "trash" (files replaced, kept for
// undo), each sync in a subfolder named by its ID.
std::string WorkFolder(const std::string& assets, const std::string& kind);

}  // namespace envsync::sync

#endif  // ENVSYNC_SYNC_SYNC_H_
