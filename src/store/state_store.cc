#include "envsync/store/state_store.h"

#include <algorithm>

namespace envsync::store {

Result<std::vector<BaseDigests>> StateStore::LoadBaseDigests(const std::string& table) {
  auto cursor = ScanDirectBase(table);
  if (!cursor.ok()) return cursor.status();
  std::vector<BaseDigests> digests;
  SyncBase base;
  while ((*cursor)->Next(&base)) {
    const auto* id = std::get_if<int64_t>(&base.prod_id);
    if (id == nullptr || !base.prod_digest || !base.test_digest) continue;
    digests.push_back(BaseDigests{*id, *base.prod_digest, *base.test_digest});
  }
  ENVSYNC_RETURN_IF_ERROR((*cursor)->status());
  return digests;
}

PositionRange PageOfTab(int64_t first, int64_t count, int64_t offset, int64_t limit) {
  const int64_t skip = std::clamp<int64_t>(offset, 0, count);
  const int64_t left = count - skip;
  const int64_t take = limit < 0 ? left : std::min(limit, left);
  return {first + skip, first + skip + take};
}

const char* TabCountColumn(Tab tab) {
  switch (tab) {
    case Tab::kConflicts:
      return "conflicts";
    case Tab::kNew:
      return "new_records";
    case Tab::kModified:
      return "modified";
    case Tab::kDeleted:
      return "deleted";
  }
  return "conflicts";
}

}  // namespace envsync::store
