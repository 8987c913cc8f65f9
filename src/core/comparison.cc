#include "envsync/core/comparison.h"

#include <array>
#include <utility>

namespace envsync {
namespace {

template <typename E, size_t N>
std::optional<E> Lookup(const std::array<std::pair<E, std::string_view>, N>& names,
                        std::string_view name) {
  for (const auto& [value, text] : names) {
    if (text == name && !text.empty()) return value;
  }
  return std::nullopt;
}

template <typename E, size_t N>
std::string_view NameOf(const std::array<std::pair<E, std::string_view>, N>& names, E value) {
  for (const auto& [v, text] : names) {
    if (v == value) return text;
  }
  return "";
}

constexpr std::array<std::pair<Tab, std::string_view>, 4> kTabs{{
    {Tab::kConflicts, "conflicts"},
    {Tab::kNew, "new"},
    {Tab::kModified, "modified"},
    {Tab::kDeleted, "deleted"},
}};
constexpr std::array<std::pair<Conflict, std::string_view>, 6> kConflicts{{
    {Conflict::kNone, ""},
    {Conflict::kKeyClash, "key_clash"},
    {Conflict::kModifiedDeleted, "modified_deleted"},
    {Conflict::kIdCollision, "id_collision"},
    {Conflict::kBothModified, "both_modified"},
    {Conflict::kDeletedModified, "deleted_modified"},
}};
constexpr std::array<std::pair<Reason, std::string_view>, 4> kReasons{{
    {Reason::kNone, ""},
    {Reason::kTargetDeleted, "target_deleted"},
    {Reason::kTargetChanged, "target_changed"},
    {Reason::kTargetOnly, "target_only"},
}};
constexpr std::array<std::pair<Mode, std::string_view>, 2> kModes{{
    {Mode::kAll, "all"},
    {Mode::kNew, "new"},
}};

}  // namespace

std::string_view TabName(Tab tab) { return NameOf(kTabs, tab); }
std::string_view ConflictName(Conflict conflict) { return NameOf(kConflicts, conflict); }
std::string_view ReasonName(Reason reason) { return NameOf(kReasons, reason); }
std::string_view ModeName(Mode mode) { return NameOf(kModes, mode); }
std::optional<Tab> ParseTab(std::string_view name) { return Lookup(kTabs, name); }
std::optional<Mode> ParseMode(std::string_view name) { return Lookup(kModes, name); }
std::optional<Conflict> ParseConflict(std::string_view name) { return Lookup(kConflicts, name); }
std::optional<Reason> ParseReason(std::string_view name) { return Lookup(kReasons, name); }

std::string Change::Ref() const {
  return RecordRef(table, IsNull(source_id) ? target_id : source_id);
}

TabCounts Comparison::Counts() const {
  TabCounts counts;
  for (const Change& change : changes) {
    switch (change.tab) {
      case Tab::kConflicts:
        ++counts.conflicts;
        break;
      case Tab::kNew:
        ++counts.new_records;
        break;
      case Tab::kModified:
        ++counts.modified;
        break;
      case Tab::kDeleted:
        ++counts.deleted;
        break;
    }
  }
  return counts;
}

}  // namespace envsync
