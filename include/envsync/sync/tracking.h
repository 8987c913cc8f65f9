#ifndef ENVSYNC_SYNC_TRACKING_H_
#define ENVSYNC_SYNC_TRACKING_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "envsync/core/config.h"
#include "envsync/core/manifest.h"
#include "envsync/core/status.h"
#include "envsync/store/environment.h"
#include "envsync/store/state_store.h"

namespace envsync::sync {

// Opt-in change tracking (`envsync track`): triggers in an environment's database log the IDs
// of the records the platform's writes touch, so that a comparison reads only what changed since
// the last one (see store::TrackingState and store::TrackingMark). Off by default; disabling it
// removes every trigger and table it added.

// Whether a log of `table` can stand for its records: not a gallery table (their bytes are
// files, which no trigger sees), and no natural key naming another table's record (whose key
// can change without this table's rows changing).
bool IsTrackable(const TableSpec& table);
// The tables tracking covers in `manifest`: every IsTrackable root table with its child tables.
std::vector<store::TrackedTable> TrackableTables(const Manifest& manifest);

// Where one environment's tracking stands, and what the state store's marks say of it.
struct TrackingReport {
  std::string environment;
  std::optional<store::TrackingState> state;  // nullopt: not enabled
  // The log positions the marks of this epoch still read from: `prune` deletes what all of
  // them have passed.
  std::vector<std::string> needed;
  std::vector<std::string> marked_tables;  // tables with a mark of this epoch
};

// Installs tracking in `environment` (a new epoch: the next comparison reads the tables whole
// once, then from the log). Returns the tables tracked.
Result<std::vector<std::string>> EnableTracking(const Manifest& manifest,
                                                const EnvironmentConfig& environment,
                                                const std::string& now);
Status DisableTracking(const EnvironmentConfig& environment);
Result<TrackingReport> ReportTracking(const EnvironmentConfig& environment,
                                      store::StateStore& state);
// Deletes the log entries that every mark in `state` has passed. Returns how many.
Result<int64_t> PruneTracking(const EnvironmentConfig& environment, store::StateStore& state);

}  // namespace envsync::sync

#endif  // ENVSYNC_SYNC_TRACKING_H_
