#include "envsync/sync/tracking.h"

#include <fmt/format.h>

#include <algorithm>

#include "envsync/sync/compare.h"
#include "sync/ids.h"

namespace envsync::sync {
namespace {

// The mark's position of this environment, when the mark is of its epoch.
std::optional<std::string> PositionIn(const store::TrackingMark& mark,
                                      const EnvironmentConfig& environment,
                                      const std::string& epoch) {
  const bool prod = SideOf(environment.name) == Side::kProd;
  if ((prod ? mark.prod_epoch : mark.test_epoch) != epoch) return std::nullopt;
  return prod ? mark.prod_position : mark.test_position;
}

}  // namespace

bool IsTrackable(const TableSpec& table) {
  if (table.asset || !table.folder_path.empty() || !table.folder.empty()) return false;
  return std::none_of(table.key.begin(), table.key.end(),
                      [&](const std::string& column) { return table.ReferenceOf(column); });
}

std::vector<store::TrackedTable> TrackableTables(const Manifest& manifest) {
  std::vector<store::TrackedTable> tables;
  for (const ModuleSpec& module : manifest.modules()) {
    for (const TableSpec& table : module.tables) {
      if (!IsTrackable(table)) continue;
      store::TrackedTable tracked{table.name, table.id, {}};
      for (const ChildSpec& child : table.children) {
        tracked.children.push_back({child.table, child.parent, child.id});
      }
      tables.push_back(std::move(tracked));
    }
  }
  return tables;
}

Result<std::vector<std::string>> EnableTracking(const Manifest& manifest,
                                                const EnvironmentConfig& environment,
                                                const std::string& now) {
  auto env = store::OpenEnvironment(environment, store::Access::kReadWrite);
  if (!env.ok()) return env.status();
  ENVSYNC_RETURN_IF_ERROR(CheckEnvironmentSchema(manifest, **env));
  return (*env)->EnableTracking(TrackableTables(manifest), RandomId("t-"), now);
}

Status DisableTracking(const EnvironmentConfig& environment) {
  auto env = store::OpenEnvironment(environment, store::Access::kReadWrite);
  if (!env.ok()) return env.status();
  return (*env)->DisableTracking();
}

Result<TrackingReport> ReportTracking(const EnvironmentConfig& environment,
                                      store::StateStore& state) {
  auto env = store::OpenEnvironment(environment, store::Access::kReadOnly);
  if (!env.ok()) return env.status();
  TrackingReport report;
  report.environment = environment.name;
  auto tracking = (*env)->ReadTracking();
  if (!tracking.ok()) return tracking.status();
  report.state = std::move(*tracking);
  if (!report.state) return report;
  auto marks = state.ListTrackingMarks();
  if (!marks.ok()) return marks.status();
  for (const store::TrackingMark& mark : *marks) {
    auto position = PositionIn(mark, environment, report.state->epoch);
    if (!position) continue;
    report.marked_tables.push_back(mark.table);
    report.needed.push_back(*position);
  }
  return report;
}

Result<int64_t> PruneTracking(const EnvironmentConfig& environment, store::StateStore& state) {
  auto report = ReportTracking(environment, state);
  if (!report.ok()) return report.status();
  if (!report->state) {
    return Status::InvalidArgument(fmt::format(
        "change tracking is not enabled on {}: nothing to prune (envsync track enable {})",
        environment.name, environment.name));
  }
  // Only once every tracked table has a mark of this epoch is any entry surely passed.
  for (const std::string& table : report->state->tables) {
    if (std::find(report->marked_tables.begin(), report->marked_tables.end(), table) ==
        report->marked_tables.end()) {
      return int64_t{0};
    }
  }
  if (report->needed.empty()) return int64_t{0};
  auto env = store::OpenEnvironment(environment, store::Access::kReadWrite);
  if (!env.ok()) return env.status();
  return (*env)->PruneTracking(report->needed);
}

}  // namespace envsync::sync
