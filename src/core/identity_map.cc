#include "envsync/core/identity_map.h"

#include <algorithm>

namespace envsync {

Side SideOf(const std::string& environment) {
  return environment == "PROD" ? Side::kProd : Side::kTest;
}

Side Other(Side side) { return side == Side::kProd ? Side::kTest : Side::kProd; }

void IdentityMap::Add(const std::string& table, int64_t prod_id, int64_t test_id) {
  TablePairs& pairs = tables_[table];
  if (auto old = pairs.prod_to_test.find(prod_id); old != pairs.prod_to_test.end()) {
    pairs.test_to_prod.erase(old->second);
  }
  if (auto old = pairs.test_to_prod.find(test_id); old != pairs.test_to_prod.end()) {
    pairs.prod_to_test.erase(old->second);
  }
  pairs.prod_to_test[prod_id] = test_id;
  pairs.test_to_prod[test_id] = prod_id;
}

size_t IdentityMap::size() const {
  size_t n = 0;
  for (const auto& [table, pairs] : tables_) n += pairs.prod_to_test.size();
  return n;
}

const IdentityMap::TablePairs* IdentityMap::Find(const std::string& table) const {
  auto it = tables_.find(table);
  return it == tables_.end() ? nullptr : &it->second;
}

bool IdentityMap::IsDirect(const std::string& table, int64_t id) const {
  const TablePairs* pairs = Find(table);
  if (pairs == nullptr) return true;
  return !pairs->prod_to_test.contains(id) && !pairs->test_to_prod.contains(id);
}

std::vector<int64_t> IdentityMap::PairedIds(const std::string& table) const {
  std::vector<int64_t> ids;
  if (const TablePairs* pairs = Find(table)) {
    ids.reserve(pairs->prod_to_test.size() * 2);
    for (const auto& [prod, test] : pairs->prod_to_test) {
      ids.push_back(prod);
      ids.push_back(test);
    }
    std::sort(ids.begin(), ids.end());
    ids.erase(std::unique(ids.begin(), ids.end()), ids.end());
  }
  return ids;
}

std::optional<int64_t> IdentityMap::Counterpart(const std::string& table, Side from,
                                                int64_t id) const {
  const TablePairs* pairs = Find(table);
  if (pairs == nullptr) return id;
  const auto& mine = from == Side::kProd ? pairs->prod_to_test : pairs->test_to_prod;
  const auto& theirs = from == Side::kProd ? pairs->test_to_prod : pairs->prod_to_test;
  if (auto it = mine.find(id); it != mine.end()) return it->second;
  if (theirs.contains(id)) return std::nullopt;
  return id;
}

Value IdentityMap::Canonical(const std::string& table, Side side, const Value& id) const {
  const auto* number = std::get_if<int64_t>(&id);
  if (number == nullptr) return id;
  const TablePairs* pairs = Find(table);
  if (pairs == nullptr) return id;
  std::optional<int64_t> other = Counterpart(table, side, *number);
  if (!other) return std::string(side == Side::kProd ? "PROD#" : "TEST#") + std::to_string(*number);
  return side == Side::kProd ? *number : *other;
}

std::map<int64_t, int64_t> IdentityMap::Pairs(const std::string& table) const {
  std::map<int64_t, int64_t> out;
  if (const TablePairs* pairs = Find(table)) {
    out.insert(pairs->prod_to_test.begin(), pairs->prod_to_test.end());
  }
  return out;
}

}  // namespace envsync
