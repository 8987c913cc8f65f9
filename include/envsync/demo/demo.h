#ifndef ENVSYNC_DEMO_DEMO_H_
#define ENVSYNC_DEMO_DEMO_H_

#include <cstdint>
#include <filesystem>

#include "envsync/core/status.h"

// The demo: a PROD and a TEST environment of the reference platform (SQLite databases plus
// assets folders) in the state right after their last synchronization, and the edits made on
// both sides since, so that a comparison TEST -> PROD fills every tab. docs/DEMO.md lists
// the content and the expected comparison.
//
// Thread safety: the functions below touch only files inside the demo directory; calls on
// distinct directories may run concurrently, calls on the same directory may not.
namespace envsync::demo {

struct DemoOptions {
  std::filesystem::path dir;  // the demo directory; created when missing
  int64_t records = 0;        // number of extra bulk cms_pages (ids 1001..1000+records)
};

// Paths used by the demo inside a directory.
struct DemoPaths {
  std::filesystem::path config;       // dir/envsync.toml
  std::filesystem::path state;        // dir/state.db (envsync's own store; not created here)
  std::filesystem::path prod_db;      // dir/prod.db
  std::filesystem::path test_db;      // dir/test.db
  std::filesystem::path prod_assets;  // dir/prod-assets
  std::filesystem::path test_assets;  // dir/test-assets
};

// Returns the demo's paths inside `dir`, made absolute (against the current directory) and
// lexically normal. Never fails: when the current directory cannot be read, the paths are
// relative.
DemoPaths PathsFor(const std::filesystem::path& dir);

// Creates `options.dir` (if missing) and both environments in their common state: the state
// right after the last sync, with identical synchronized content on both sides (gallery
// files included, real PNG bytes under each side's assets folder) plus environment-specific
// data that differs (users, orders, translations, promotion codes, other system settings),
// and `options.records` extra bulk CMS pages on both sides.
// Errors: InvalidArgument, naming the path, when the directory already holds a demo file or
// folder (envsync.toml, state.db, prod.db, test.db, prod-assets, test-assets): existing data
// is never overwritten; InvalidArgument when records is negative; IoError naming the path
// when a file cannot be written. On failure the files this call created are removed.
Status CreateCommonState(const DemoOptions& options);

// Writes dir/envsync.toml naming the demo's environments (home = "PROD", the state store and,
// per environment, database and assets, all absolute). Creates the directory when missing and
// replaces an existing config file atomically. Errors: InvalidArgument when a path is not
// valid UTF-8 (TOML cannot hold it); IoError naming the path when it cannot be written.
Status WriteConfig(const DemoOptions& options);

// Applies the pending work (the edits made on TEST and on PROD since the last sync, listed in
// docs/DEMO.md) to both environments made by CreateCommonState. Bulk pages are found in the
// TEST database itself, so `options.records` is not needed here.
// Errors: NotFound naming the path when a database is missing; InvalidArgument when the
// environments are not in the common state (e.g. the work was applied already); IoError or
// Internal naming the path when a write fails. Each database is changed in one transaction.
Status ApplyPendingWork(const DemoOptions& options);

}  // namespace envsync::demo

#endif  // ENVSYNC_DEMO_DEMO_H_
