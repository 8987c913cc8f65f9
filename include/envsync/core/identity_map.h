#ifndef ENVSYNC_CORE_IDENTITY_MAP_H_
#define ENVSYNC_CORE_IDENTITY_MAP_H_

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "envsync/core/value.h"

namespace envsync {

// The two environments by role in the identity map; the map is direction-independent.
enum class Side { kProd, kTest };

Side SideOf(const std::string& environment);  // "PROD" -> kProd, anything else -> kTest
Side Other(Side side);

// IdentityMap remembers, per root table, which PROD ID and which TEST ID name the same record
// where the two differ (learnt when a sync re-numbers a record or links two records).
// Records are matched by internal ID everywhere else (SYNC-SEMANTICS §1): an ID that takes
// part in a pair is matched only through its pair, so once TEST 8 <-> PROD 63 is known,
// TEST 8 is no longer compared with PROD 8.
//
// Thread safety: const methods may be called from several threads at once.
class IdentityMap {
 public:
  // Records that `prod_id` on PROD and `test_id` on TEST are the same record of `table`.
  // A later pair for either ID replaces the earlier one.
  void Add(const std::string& table, int64_t prod_id, int64_t test_id);

  bool empty() const { return tables_.empty(); }
  size_t size() const;

  // True when `id` takes part in no pair on either side of `table`, so it is matched with
  // the same ID on the other side.
  bool IsDirect(const std::string& table, int64_t id) const;

  // Every ID of `table` that takes part in a pair on either side, ascending and once each:
  // the IDs that are not direct, for a caller that walks a million IDs in order (one step an
  // ID instead of IsDirect's lookups; see DirectIds in compare.cc).
  std::vector<int64_t> PairedIds(const std::string& table) const;

  // The ID on `to` that matches `id` on `from`, or nullopt when that ID can have no
  // counterpart (the same ID on `to` is paired with another record).
  std::optional<int64_t> Counterpart(const std::string& table, Side from, int64_t id) const;

  // A side-independent token for a reference to `id` on `side`: both sides' IDs of one
  // record give the same token (the PROD ID); an ID with no possible counterpart gives a
  // token that equals nothing on the other side. Non-integer IDs are returned unchanged.
  Value Canonical(const std::string& table, Side side, const Value& id) const;

  // Every pair of `table`, PROD ID -> TEST ID.
  std::map<int64_t, int64_t> Pairs(const std::string& table) const;

 private:
  struct TablePairs {
    std::unordered_map<int64_t, int64_t> prod_to_test;
    std::unordered_map<int64_t, int64_t> test_to_prod;
  };
  const TablePairs* Find(const std::string& table) const;

  std::map<std::string, TablePairs> tables_;
};

}  // namespace envsync

#endif  // ENVSYNC_CORE_IDENTITY_MAP_H_
