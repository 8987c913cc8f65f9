// RowWalker (sync/row_walker.h) finds what a binary search finds, for IDs asked in any order:
// rising (its gallop), repeated, past either end, and falling (it starts again).
#include "sync/row_walker.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <random>
#include <vector>

namespace envsync::sync {
namespace {

const store::RowDigest* BinarySearch(const std::vector<store::RowDigest>& rows, int64_t id) {
  auto at =
      std::lower_bound(rows.begin(), rows.end(), id,
                       [](const store::RowDigest& row, int64_t value) { return row.id < value; });
  return at != rows.end() && at->id == id ? &*at : nullptr;
}

TEST(RowWalker, FindsWhatABinarySearchFindsInAnyOrder) {
  std::mt19937_64 random(7);
  std::vector<store::RowDigest> rows;
  int64_t id = -5000;
  for (int i = 0; i < 100000; ++i) {
    id += 1 + static_cast<int64_t>(random() % 7);  // gaps of 0 to 6 IDs
    rows.push_back({id, random(), static_cast<uint64_t>(i)});
  }
  const int64_t lowest = rows.front().id;
  const int64_t highest = rows.back().id;
  // Rising, with gaps from one ID to thousands, repeats, and both ends passed.
  std::vector<int64_t> asked = {lowest - 10, lowest, lowest, lowest + 1};
  for (int64_t next = lowest + 2; next < highest;) {
    asked.push_back(next);
    if (random() % 10 == 0) asked.push_back(next);  // asked again
    next += 1 + static_cast<int64_t>(random() % (random() % 4 == 0 ? 5000 : 40));
  }
  asked.insert(asked.end(), {highest, highest + 1, highest + 1000});
  // Then a few falling back.
  asked.insert(asked.end(),
               {highest - 1, lowest + 3, lowest - 1, rows[rows.size() / 2].id, lowest});
  RowWalker walker(rows);
  size_t found = 0;
  for (int64_t want : asked) {
    const store::RowDigest* expected = BinarySearch(rows, want);
    ASSERT_EQ(walker.Find(want), expected) << "ID " << want;
    if (expected != nullptr) ++found;
  }
  EXPECT_GT(found, asked.size() / 8);  // about a quarter of the IDs asked are rows
  std::vector<store::RowDigest> none;
  RowWalker empty(none);
  EXPECT_EQ(empty.Find(1), nullptr);
}

}  // namespace
}  // namespace envsync::sync
