#ifndef ENVSYNC_CORE_CLASSIFICATION_H_
#define ENVSYNC_CORE_CLASSIFICATION_H_

#include <cstdint>
#include <optional>

#include "envsync/core/comparison.h"

namespace envsync {

// What is known about one record pair when it is classified. Hashes are content hashes in
// the side-independent form (references through the identity map, local columns left out).
struct PairState {
  std::optional<uint64_t> source;        // absent when the record is not on the source
  std::optional<uint64_t> target;        // absent when the record is not on the target
  std::optional<uint64_t> base;          // absent before envsync ever saw the two sides equal
  bool keys_equal = true;                // both present: do the natural keys agree?
  bool key_on_target_elsewhere = false;  // source only: natural key exists under another ID
};

// Where a record pair lands: SYNC-SEMANTICS §3, one row of its table per case.
struct Classification {
  bool listed = false;
  Tab tab = Tab::kNew;
  Conflict conflict = Conflict::kNone;
  Reason reason = Reason::kNone;
  bool selected = false;
};

// Classifies a pair under `mode`. In mode `new` only records new on the source are listed:
// plain New records and the conflicts of new records (key_clash, id_collision). Pure function.
Classification Classify(const PairState& pair, Mode mode);

}  // namespace envsync

#endif  // ENVSYNC_CORE_CLASSIFICATION_H_
