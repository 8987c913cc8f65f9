#ifndef ENVSYNC_SYNC_ROW_WALKER_H_
#define ENVSYNC_SYNC_ROW_WALKER_H_

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <vector>

#include "envsync/store/environment.h"

namespace envsync::sync {

// The row of each of a rising sequence of IDs in `rows` (in ID order), or nullptr: a gallop from
// where the last was found, so the plan's 11,000 IDs in a million rows touch a few nearby cache
// lines each instead of a binary search's twenty scattered ones (≈ 20 ms of a 1M table's planning).
// An ID below the last one asked starts again from the first row.
class RowWalker {
 public:
  explicit RowWalker(const std::vector<store::RowDigest>& rows) : rows_(rows) {}

  const store::RowDigest* Find(int64_t id) {
    if (next_ > 0 && rows_[next_ - 1].id >= id) next_ = 0;
    // Every row before next_ is below `id`: widen the step until a row at or past `id`.
    size_t step = 1;
    while (next_ + step < rows_.size() && rows_[next_ + step].id < id) {
      next_ += step;
      step *= 2;
    }
    const auto first = rows_.begin() + static_cast<std::ptrdiff_t>(next_);
    const auto last =
        rows_.begin() + static_cast<std::ptrdiff_t>(std::min(rows_.size(), next_ + step + 1));
    const auto at = std::lower_bound(
        first, last, id, [](const store::RowDigest& row, int64_t value) { return row.id < value; });
    next_ = static_cast<size_t>(at - rows_.begin());
    return at != rows_.end() && at->id == id ? &*at : nullptr;
  }

 private:
  const std::vector<store::RowDigest>& rows_;
  size_t next_ = 0;  // where the last ID asked was, or would be
};

}  // namespace envsync::sync

#endif  // ENVSYNC_SYNC_ROW_WALKER_H_
