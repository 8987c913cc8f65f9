#ifndef ENVSYNC_SYNC_SELECTORS_H_
#define ENVSYNC_SYNC_SELECTORS_H_

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "envsync/core/status.h"
#include "envsync/sync/sync.h"

namespace envsync::sync {

// The resolution called `name` (overwrite, insert_as_new, link, merge), or nullopt.
std::optional<Resolution> ParseResolution(std::string_view name);

// What a sync request's `T:ID` selectors choose among the records of a comparison.
struct ChosenRecords {
  std::vector<bool> selected;          // per record
  std::vector<Resolution> resolution;  // per record; kNone where none was given
};

// Applies a request's selectors to a comparison's records, in this order: `select`, then
// `deselect`, then `resolve` (`T:ID=how`, split at its last '='; a resolved record is selected).
// `refs[i]` is record i's `T:ID` (Change::Ref()) and `by_default[i]` whether it is selected by
// default; a `T:ID` listed twice names its last record. Pure function. Errors are
// InvalidArgument naming the flag and the item: a `T:ID` that names no record of comparison
// `comparison_id`, a resolve item without '=', or an unknown resolution.
Result<ChosenRecords> ApplySelectors(const std::string& comparison_id,
                                     const std::vector<std::string>& refs,
                                     const std::vector<bool>& by_default,
                                     const SyncRequest& request);

}  // namespace envsync::sync

#endif  // ENVSYNC_SYNC_SELECTORS_H_
