#include "envsync/core/identity_map.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace envsync {
namespace {

constexpr char kTable[] = "cms_pages";

// The map of SYNC-SEMANTICS §1's example: TEST 8 <-> PROD 63 is known.
IdentityMap Test8IsProd63() {
  IdentityMap map;
  map.Add(kTable, /*prod_id=*/63, /*test_id=*/8);
  return map;
}

// Without any pair every ID is direct and matched with the same ID on the other side.
TEST(IdentityMap, EmptyMapMatchesIdsDirectly) {
  const IdentityMap map;
  EXPECT_TRUE(map.empty());
  EXPECT_TRUE(map.IsDirect(kTable, 8));
  EXPECT_EQ(map.Counterpart(kTable, Side::kTest, 8), std::optional<int64_t>(8));
  EXPECT_EQ(map.Counterpart(kTable, Side::kProd, 8), std::optional<int64_t>(8));
}

// IDs that take part in no pair stay direct although the table has pairs.
TEST(IdentityMap, UnpairedIdStaysDirect) {
  const IdentityMap map = Test8IsProd63();
  EXPECT_TRUE(map.IsDirect(kTable, 9));
  EXPECT_EQ(map.Counterpart(kTable, Side::kTest, 9), std::optional<int64_t>(9));
  EXPECT_EQ(map.Counterpart(kTable, Side::kProd, 9), std::optional<int64_t>(9));
}

// A pair of one table leaves the same IDs of another table direct.
TEST(IdentityMap, PairsAreKeptPerTable) {
  const IdentityMap map = Test8IsProd63();
  EXPECT_TRUE(map.IsDirect("gallery_files", 8));
  EXPECT_EQ(map.Counterpart("gallery_files", Side::kTest, 8), std::optional<int64_t>(8));
}

// Both IDs of a pair are no longer direct.
TEST(IdentityMap, PairedIdsAreNotDirect) {
  const IdentityMap map = Test8IsProd63();
  EXPECT_FALSE(map.IsDirect(kTable, 8));
  EXPECT_FALSE(map.IsDirect(kTable, 63));
}

// PairedIds lists exactly the IDs IsDirect refuses, in order, once each, after pairs replaced
// each other and across a swap (PROD 5 <-> TEST 9 and PROD 9 <-> TEST 5 name 5 and 9 once).
TEST(IdentityMap, PairedIdsAreTheIdsThatAreNotDirectAscending) {
  IdentityMap map = Test8IsProd63();
  map.Add(kTable, 5, 9);
  map.Add(kTable, 9, 5);
  map.Add(kTable, 40, 2);
  map.Add(kTable, 40, 3);  // replaces PROD 40 <-> TEST 2: 2 is direct again
  map.Add("gallery_files", 1, 7);
  const std::vector<int64_t> paired = map.PairedIds(kTable);
  EXPECT_EQ(paired, (std::vector<int64_t>{3, 5, 8, 9, 40, 63}));
  for (int64_t id = 0; id <= 70; ++id) {
    EXPECT_EQ(map.IsDirect(kTable, id), !std::binary_search(paired.begin(), paired.end(), id))
        << id;
  }
  EXPECT_TRUE(map.PairedIds("menus").empty());
}

// TEST 8's counterpart is PROD 63.
TEST(IdentityMap, CounterpartFromTestToProd) {
  const IdentityMap map = Test8IsProd63();
  EXPECT_EQ(map.Counterpart(kTable, Side::kTest, 8), std::optional<int64_t>(63));
}

// PROD 63's counterpart is TEST 8.
TEST(IdentityMap, CounterpartFromProdToTest) {
  const IdentityMap map = Test8IsProd63();
  EXPECT_EQ(map.Counterpart(kTable, Side::kProd, 63), std::optional<int64_t>(8));
}

// PROD 8 is orphaned: TEST 8 is paired with PROD 63, so PROD 8 has no counterpart.
TEST(IdentityMap, SameIdOfPairedIdHasNoCounterpart) {
  const IdentityMap map = Test8IsProd63();
  EXPECT_EQ(map.Counterpart(kTable, Side::kProd, 8), std::nullopt);
}

// TEST 63 is orphaned likewise: PROD 63 is paired with TEST 8.
TEST(IdentityMap, OtherSidesSameIdHasNoCounterpart) {
  const IdentityMap map = Test8IsProd63();
  EXPECT_EQ(map.Counterpart(kTable, Side::kTest, 63), std::nullopt);
}

// Both IDs of a pair give the same canonical token.
TEST(IdentityMap, CanonicalIsEqualForAPair) {
  const IdentityMap map = Test8IsProd63();
  EXPECT_EQ(map.Canonical(kTable, Side::kTest, Value(int64_t{8})),
            map.Canonical(kTable, Side::kProd, Value(int64_t{63})));
}

// A direct ID gives the same canonical token on both sides.
TEST(IdentityMap, CanonicalIsEqualForADirectId) {
  const IdentityMap map = Test8IsProd63();
  EXPECT_EQ(map.Canonical(kTable, Side::kTest, Value(int64_t{9})),
            map.Canonical(kTable, Side::kProd, Value(int64_t{9})));
}

// An orphan's token equals no token of the other side's IDs (PROD 8, TEST 63).
TEST(IdentityMap, CanonicalOfOrphansEqualsNothingOnTheOtherSide) {
  const IdentityMap map = Test8IsProd63();
  const Value prod8 = map.Canonical(kTable, Side::kProd, Value(int64_t{8}));
  const Value test63 = map.Canonical(kTable, Side::kTest, Value(int64_t{63}));
  EXPECT_NE(prod8, test63);
  for (int64_t id = 0; id <= 100; ++id) {
    EXPECT_NE(prod8, map.Canonical(kTable, Side::kTest, Value(id))) << "TEST " << id;
    EXPECT_NE(test63, map.Canonical(kTable, Side::kProd, Value(id))) << "PROD " << id;
  }
}

// A non-integer ID (a settings key) is its own token.
TEST(IdentityMap, CanonicalKeepsTextIds) {
  const IdentityMap map = Test8IsProd63();
  const Value key(std::string("integrations.mobile_app.home"));
  EXPECT_EQ(map.Canonical(kTable, Side::kTest, key), key);
}

// A later pair for the same PROD ID replaces the earlier one and frees the old TEST ID.
TEST(IdentityMap, AddReplacesPairOfSameProdId) {
  IdentityMap map = Test8IsProd63();
  map.Add(kTable, 63, 9);
  EXPECT_EQ(map.size(), 1u);
  EXPECT_EQ(map.Counterpart(kTable, Side::kProd, 63), std::optional<int64_t>(9));
  EXPECT_EQ(map.Counterpart(kTable, Side::kTest, 9), std::optional<int64_t>(63));
  EXPECT_TRUE(map.IsDirect(kTable, 8));
  EXPECT_EQ(map.Counterpart(kTable, Side::kTest, 8), std::optional<int64_t>(8));
}

// A later pair for the same TEST ID replaces the earlier one and frees the old PROD ID.
TEST(IdentityMap, AddReplacesPairOfSameTestId) {
  IdentityMap map = Test8IsProd63();
  map.Add(kTable, 70, 8);
  EXPECT_EQ(map.size(), 1u);
  EXPECT_EQ(map.Counterpart(kTable, Side::kTest, 8), std::optional<int64_t>(70));
  EXPECT_TRUE(map.IsDirect(kTable, 63));
  EXPECT_EQ(map.Counterpart(kTable, Side::kProd, 63), std::optional<int64_t>(63));
  EXPECT_EQ((map.Pairs(kTable)), (std::map<int64_t, int64_t>{{70, 8}}));
}

// Pairs lists a table's pairs as PROD ID -> TEST ID.
TEST(IdentityMap, PairsListsProdToTest) {
  IdentityMap map = Test8IsProd63();
  map.Add(kTable, 64, 10);
  map.Add("gallery_files", 55, 63);
  EXPECT_EQ((map.Pairs(kTable)), (std::map<int64_t, int64_t>{{63, 8}, {64, 10}}));
  EXPECT_EQ(map.size(), 3u);
}

// SideOf maps environment names to sides; Other flips a side.
TEST(IdentityMap, SideOfAndOther) {
  EXPECT_EQ(SideOf("PROD"), Side::kProd);
  EXPECT_EQ(SideOf("TEST"), Side::kTest);
  EXPECT_EQ(Other(Side::kProd), Side::kTest);
  EXPECT_EQ(Other(Side::kTest), Side::kProd);
}

}  // namespace
}  // namespace envsync
