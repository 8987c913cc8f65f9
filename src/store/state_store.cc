#include "envsync/store/state_store.h"

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

}  // namespace envsync::store
