#include "envsync/store/environment.h"

namespace envsync::store {

bool RowCursor::Next(std::vector<Value>* row) {
  if (!NextView(&views_)) return false;
  row->resize(views_.size());
  for (size_t i = 0; i < views_.size(); ++i) (*row)[i] = ToValue(views_[i]);
  return true;
}

}  // namespace envsync::store
