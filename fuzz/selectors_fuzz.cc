// Fuzzes the `T:ID` selectors of a sync request (`--select`, `--deselect`, `--resolve
// T:ID=how`, and the same lists in POST /api/v1/syncs): sync::ApplySelectors in
// src/sync/selectors.h, which ExecuteSync's plan uses.
//
// The input is lines: `+T:ID` or `-T:ID` is a record of the comparison, selected by default or
// not; `sT:ID`, `dT:ID` and `rT:ID=how` add to the request's select, deselect and resolve lists;
// other lines are ignored.
//
// Holds ApplySelectors to its contract: it never crashes, hangs or leaks; an error is
// InvalidArgument naming the flag (`--select …`, `--deselect …`, `--resolve …`); a success
// gives one choice per record: select, then deselect, then resolve applied in order to the
// record a `T:ID` names (its last listing), a resolved record selected with its resolution, and
// every other record left as it was by default, without a resolution.
#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "envsync/sync/sync.h"
#include "fuzz/fuzz_check.h"
#include "sync/selectors.h"

namespace {

using envsync::sync::Resolution;

bool StartsWith(const std::string& text, std::string_view prefix) {
  return text.compare(0, prefix.size(), prefix) == 0;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string input(reinterpret_cast<const char*>(data), size);
  std::vector<std::string> refs;
  std::vector<bool> by_default;
  envsync::sync::SyncRequest request;
  size_t start = 0;
  while (start < input.size()) {
    size_t end = input.find('\n', start);
    if (end == std::string::npos) end = input.size();
    const std::string line = input.substr(start, end - start);
    start = end + 1;
    if (line.empty()) continue;
    const std::string rest = line.substr(1);
    switch (line[0]) {
      case '+':
      case '-':
        refs.push_back(rest);
        by_default.push_back(line[0] == '+');
        break;
      case 's':
        request.select.push_back(rest);
        break;
      case 'd':
        request.deselect.push_back(rest);
        break;
      case 'r':
        request.resolve.push_back(rest);
        break;
      default:
        break;
    }
  }

  auto chosen = envsync::sync::ApplySelectors("c-fuzz", refs, by_default, request);
  if (!chosen.ok()) {
    ENVSYNC_FUZZ_CHECK(chosen.status().IsInvalidArgument());
    const std::string& message = chosen.status().message();
    ENVSYNC_FUZZ_CHECK(StartsWith(message, "--select ") || StartsWith(message, "--deselect ") ||
                       StartsWith(message, "--resolve "));
    return 0;
  }

  // The model: what each record should end up as.
  std::map<std::string, size_t> last;
  for (size_t i = 0; i < refs.size(); ++i) last[refs[i]] = i;
  std::vector<bool> selected = by_default;
  std::vector<Resolution> resolution(refs.size(), Resolution::kNone);
  for (const std::string& ref : request.select) {
    ENVSYNC_FUZZ_CHECK(last.contains(ref));
    selected[last[ref]] = true;
  }
  for (const std::string& ref : request.deselect) {
    ENVSYNC_FUZZ_CHECK(last.contains(ref));
    selected[last[ref]] = false;
  }
  for (const std::string& item : request.resolve) {
    const size_t eq = item.rfind('=');
    ENVSYNC_FUZZ_CHECK(eq != std::string::npos);
    const std::string ref = item.substr(0, eq);
    const auto how = envsync::sync::ParseResolution(item.substr(eq + 1));
    ENVSYNC_FUZZ_CHECK(last.contains(ref) && how.has_value() && *how != Resolution::kNone);
    selected[last[ref]] = true;
    resolution[last[ref]] = *how;
  }
  ENVSYNC_FUZZ_CHECK(chosen->selected == selected);
  ENVSYNC_FUZZ_CHECK(chosen->resolution == resolution);
  return 0;
}
