#ifndef ENVSYNC_CORE_COMPARISON_H_
#define ENVSYNC_CORE_COMPARISON_H_

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "envsync/core/value.h"

namespace envsync {

// The four review tabs of SYNC-SEMANTICS §3.
enum class Tab { kConflicts, kNew, kModified, kDeleted };

// Why a record is in the Conflicts tab.
enum class Conflict {
  kNone,
  kKeyClash,         // new on the source; its natural key exists on the target under another ID
  kModifiedDeleted,  // changed on the source since the base, deleted on the target
  kIdCollision,      // the same ID names two different records (no base, keys differ)
  kBothModified,     // both sides changed it since the base
  kDeletedModified,  // deleted on the source, changed on the target since the base
};

// The note shown beside a record that is listed but not selected by default.
enum class Reason { kNone, kTargetDeleted, kTargetChanged, kTargetOnly };

enum class Mode { kAll, kNew };

std::string_view TabName(Tab tab);
std::string_view ConflictName(Conflict conflict);  // "" for kNone
std::string_view ReasonName(Reason reason);        // "" for kNone
std::string_view ModeName(Mode mode);
std::optional<Tab> ParseTab(std::string_view name);
std::optional<Mode> ParseMode(std::string_view name);
std::optional<Conflict> ParseConflict(std::string_view name);
std::optional<Reason> ParseReason(std::string_view name);

// One field's difference. Its base (Base()) is the value at the last common state where envsync
// can tell it (`base_known`); a field changed on both sides since the base has no known value.
// `json` marks values that are JSON text (child rows), which JSON output embeds as JSON.
struct FieldDiff {
  // Where the base is held: in `base`, or it is the side that did not change since it (most
  // known bases), which is not held twice.
  enum class BaseIs { kOwn, kSource, kTarget };

  std::string field;
  Value source;
  Value target;
  Value base;  // the base when base_is is kOwn
  BaseIs base_is = BaseIs::kOwn;
  bool base_known = false;
  bool json = false;

  const Value& Base() const {
    return base_is == BaseIs::kSource ? source : base_is == BaseIs::kTarget ? target : base;
  }
};

// One listed record pair of a comparison.
struct Change {
  Tab tab = Tab::kNew;
  std::string module;
  std::string table;
  Value source_id;  // NULL where absent on the source
  Value target_id;  // NULL where absent on the target
  std::string key;  // the natural key, e.g. a slug or `banners/summer/beach.png`
  bool selected = false;
  Conflict conflict = Conflict::kNone;
  bool mergeable = false;
  Reason reason = Reason::kNone;
  std::vector<std::string> required_by;  // `table:id` of the selected records that need this one
  std::vector<FieldDiff> fields;
  std::optional<uint64_t> source_hash;  // content hashes at comparison time (drift guard)
  std::optional<uint64_t> target_hash;

  // `table:id` as the CLI names the record: its source ID, or its target ID for deletions.
  std::string Ref() const;
};

// A module forced into a comparison, and by which module (e.g. gallery by system_config).
struct ForcedModule {
  std::string module;
  std::string required_by;
  std::vector<std::string> folders;  // the folders the forcing module needs, if any
};

// A problem found while reading that does not stop the comparison, e.g. a gallery file whose
// bytes are missing or do not match its recorded SHA-256.
struct Warning {
  std::string environment;
  std::string record;  // `table:id`, or "" when not about one record
  std::string message;
};

struct TabCounts {
  int64_t conflicts = 0;
  int64_t new_records = 0;
  int64_t modified = 0;
  int64_t deleted = 0;
};

// The stored result of comparing a source with a target environment.
struct Comparison {
  std::string id;
  std::string from;
  std::string to;
  Mode mode = Mode::kAll;
  std::vector<std::string> modules;  // in dependency order, forced ones included
  std::vector<std::string> folders;  // gallery folder restriction; empty = all folders
  std::vector<ForcedModule> forced;
  std::string created_at;  // ISO-8601 UTC
  int64_t records_compared = 0;
  std::vector<Change> changes;
  std::vector<Warning> warnings;
  // Tables read through both environments' change logs (envsync track): only the records the
  // logs list and those unequal last time were read. Reported by the run; not stored.
  std::vector<std::string> tracked_tables;

  TabCounts Counts() const;
};

}  // namespace envsync

#endif  // ENVSYNC_CORE_COMPARISON_H_
