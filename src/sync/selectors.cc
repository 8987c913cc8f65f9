#include "sync/selectors.h"

#include <fmt/format.h>

#include <map>

namespace envsync::sync {

std::optional<Resolution> ParseResolution(std::string_view name) {
  if (name == "overwrite") return Resolution::kOverwrite;
  if (name == "insert_as_new") return Resolution::kInsertAsNew;
  if (name == "link") return Resolution::kLink;
  if (name == "merge") return Resolution::kMerge;
  return std::nullopt;
}

Result<ChosenRecords> ApplySelectors(const std::string& comparison_id,
                                     const std::vector<std::string>& refs,
                                     const std::vector<bool>& by_default,
                                     const SyncRequest& request) {
  std::map<std::string, size_t> by_ref;
  for (size_t i = 0; i < refs.size(); ++i) by_ref[refs[i]] = i;
  ChosenRecords chosen;
  chosen.selected = by_default;
  chosen.selected.resize(refs.size());
  chosen.resolution.assign(refs.size(), Resolution::kNone);
  auto find = [&](const std::string& ref, const std::string& flag) -> Result<size_t> {
    auto it = by_ref.find(ref);
    if (it == by_ref.end()) {
      return Status::InvalidArgument(fmt::format(
          "{} {}: comparison {} lists no such record (T:ID is the root table and the source "
          "ID, or the target ID for deletions)",
          flag, ref, comparison_id));
    }
    return it->second;
  };
  for (const std::string& ref : request.select) {
    auto i = find(ref, "--select");
    if (!i.ok()) return i.status();
    chosen.selected[*i] = true;
  }
  for (const std::string& ref : request.deselect) {
    auto i = find(ref, "--deselect");
    if (!i.ok()) return i.status();
    chosen.selected[*i] = false;
  }
  for (const std::string& item : request.resolve) {
    const size_t eq = item.rfind('=');
    if (eq == std::string::npos) {
      return Status::InvalidArgument(
          fmt::format("--resolve {}: expected T:ID=overwrite|insert_as_new|link|merge", item));
    }
    auto i = find(item.substr(0, eq), "--resolve");
    if (!i.ok()) return i.status();
    auto r = ParseResolution(item.substr(eq + 1));
    if (!r) {
      return Status::InvalidArgument(fmt::format(
          "--resolve {}: '{}' is not a resolution (overwrite, insert_as_new, link, merge)", item,
          item.substr(eq + 1)));
    }
    chosen.resolution[*i] = *r;
    chosen.selected[*i] = true;
  }
  return chosen;
}

}  // namespace envsync::sync
