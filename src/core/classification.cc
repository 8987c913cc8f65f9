#include "envsync/core/classification.h"

namespace envsync {
namespace {

Classification Listed(Tab tab, Conflict conflict, Reason reason, bool selected) {
  return Classification{true, tab, conflict, reason, selected};
}

Classification ClassifyAll(const PairState& p) {
  const bool has_base = p.base.has_value();
  if (p.source && !p.target) {
    if (!has_base) {
      if (p.key_on_target_elsewhere) {
        return Listed(Tab::kConflicts, Conflict::kKeyClash, Reason::kNone, false);
      }
      return Listed(Tab::kNew, Conflict::kNone, Reason::kNone, true);
    }
    if (*p.source == *p.base) {
      return Listed(Tab::kNew, Conflict::kNone, Reason::kTargetDeleted, false);
    }
    return Listed(Tab::kConflicts, Conflict::kModifiedDeleted, Reason::kNone, false);
  }
  if (p.source && p.target) {
    if (*p.source == *p.target) return Classification{};
    if (!has_base) {
      if (p.keys_equal) return Listed(Tab::kModified, Conflict::kNone, Reason::kNone, true);
      return Listed(Tab::kConflicts, Conflict::kIdCollision, Reason::kNone, false);
    }
    const bool source_changed = *p.source != *p.base;
    const bool target_changed = *p.target != *p.base;
    if (source_changed && !target_changed) {
      return Listed(Tab::kModified, Conflict::kNone, Reason::kNone, true);
    }
    if (!source_changed && target_changed) {
      return Listed(Tab::kModified, Conflict::kNone, Reason::kTargetChanged, false);
    }
    return Listed(Tab::kConflicts, Conflict::kBothModified, Reason::kNone, false);
  }
  if (!p.source && p.target) {
    if (!has_base) return Listed(Tab::kDeleted, Conflict::kNone, Reason::kTargetOnly, false);
    if (*p.target == *p.base) return Listed(Tab::kDeleted, Conflict::kNone, Reason::kNone, true);
    return Listed(Tab::kConflicts, Conflict::kDeletedModified, Reason::kNone, false);
  }
  return Classification{};
}

}  // namespace

Classification Classify(const PairState& pair, Mode mode) {
  Classification c = ClassifyAll(pair);
  if (mode == Mode::kAll || !c.listed) return c;
  const bool plain_new = c.tab == Tab::kNew && c.reason == Reason::kNone;
  const bool new_conflict =
      c.conflict == Conflict::kKeyClash || c.conflict == Conflict::kIdCollision;
  if (plain_new || new_conflict) return c;
  return Classification{};
}

}  // namespace envsync
