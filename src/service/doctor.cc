#include "envsync/service/doctor.h"

#include <fmt/format.h>

#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <set>

#include "envsync/service/jobs.h"
#include "envsync/store/environment.h"
#include "envsync/sync/sync.h"

namespace envsync::service {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

const std::set<std::string> kSyncStates = {"running", "committing", "undoing",
                                           "success", "failure",    "undone"};
const std::set<std::string> kJobStates = {"queued",    "scheduled", "running",
                                          "succeeded", "failed",    "cancelled"};

// Collects findings of one check: ok unless a problem was added.
class Check {
 public:
  Check(DoctorReport& report, std::string name) : report_(report), name_(std::move(name)) {}
  ~Check() {
    if (problems_ == 0) report_.findings.push_back({name_, true, ok_detail_});
  }
  void Problem(std::string detail) {
    ++problems_;
    report_.findings.push_back({name_, false, std::move(detail)});
  }
  void Ok(std::string detail) { ok_detail_ = std::move(detail); }

 private:
  DoctorReport& report_;
  std::string name_;
  std::string ok_detail_;
  int problems_ = 0;
};

void CheckSyncsAndJobs(store::StateStore& state, bool judge_in_flight, DoctorReport& report,
                       std::map<std::string, store::SyncRun>* syncs_by_id) {
  auto syncs = state.ListSyncs();
  auto jobs = state.ListJobs();
  {
    Check check(report, "syncs");
    if (!syncs.ok()) {
      check.Problem("cannot list the syncs: " + syncs.status().message());
    } else {
      std::map<std::string, std::vector<std::string>> executions;  // comparison -> syncs
      for (const store::SyncRun& run : *syncs) {
        (*syncs_by_id)[run.id] = run;
        if (!kSyncStates.contains(run.status)) {
          check.Problem(fmt::format("sync {} has the unknown status '{}'", run.id, run.status));
          continue;
        }
        if (store::InFlight(run)) {
          if (judge_in_flight) {
            check.Problem(
                fmt::format("sync {} into {} was left {} by a stopped envsync: any envsync command "
                            "(`envsync history`, say) settles it to exactly before or after",
                            run.id, run.to, run.status));
          }
          continue;
        }
        if (run.finished_at.empty()) {
          check.Problem(fmt::format("sync {} is {} but has no finish time", run.id, run.status));
        }
        if (!run.test_import && run.status != "failure") {
          executions[run.comparison_id].push_back(run.id);
        }
      }
      for (const auto& [comparison, ids] : executions) {
        if (ids.size() > 1) {
          check.Problem(fmt::format("comparison {} was executed by {} syncs ({})", comparison,
                                    ids.size(), fmt::join(ids, ", ")));
        }
      }
      check.Ok(fmt::format("{} syncs", syncs->size()));
    }
  }
  Check check(report, "jobs");
  if (!jobs.ok()) {
    check.Problem("cannot list the jobs: " + jobs.status().message());
    return;
  }
  std::map<std::string, std::string> job_of_sync;
  for (const store::Job& job : *jobs) {
    if (!kJobStates.contains(job.state)) {
      check.Problem(fmt::format("job {} has the unknown state '{}'", job.id, job.state));
      continue;
    }
    if (job.state == "running") {
      if (judge_in_flight) {
        check.Problem(fmt::format(
            "job {} was left running by a stopped envsync (runner {}): the next `envsync serve` "
            "settles it",
            job.id, job.runner.empty() ? "unknown" : job.runner));
      }
      continue;
    }
    if ((job.state == "succeeded" || job.state == "failed") && job.finished_at.empty()) {
      check.Problem(fmt::format("job {} {} but has no finish time", job.id, job.state));
    }
    if (job.kind != "sync" || (job.state != "succeeded" && job.state != "failed")) continue;
    if (!SyncRequestFromJson(job.request).ok()) {
      check.Problem(fmt::format("job {}: its stored request cannot be read", job.id));
    }
    const json result = json::parse(job.result.empty() ? "{}" : job.result, nullptr, false);
    const std::string sync_id =
        result.is_object() && result.contains("sync_id") && result["sync_id"].is_string()
            ? result["sync_id"].get<std::string>()
            : "";
    if (sync_id.empty()) {
      // A sync job refused before it started (bad request, say) names no sync.
      if (job.state == "succeeded") {
        check.Problem(fmt::format("job {} succeeded but names no sync", job.id));
      }
      continue;
    }
    auto [other, fresh] = job_of_sync.emplace(sync_id, job.id);
    if (!fresh) {
      check.Problem(fmt::format("jobs {} and {} both ran sync {}", other->second, job.id, sync_id));
    }
    auto run = syncs_by_id->find(sync_id);
    if (run == syncs_by_id->end()) {
      check.Problem(
          fmt::format("job {} names sync {}, which is not in the history", job.id, sync_id));
    } else if (!store::InFlight(run->second)) {
      const bool ended_well = run->second.status == "success" || run->second.status == "undone";
      if (ended_well != (job.state == "succeeded")) {
        check.Problem(fmt::format("job {} {} but its sync {} ended '{}'", job.id, job.state,
                                  sync_id, run->second.status));
      }
    }
  }
  check.Ok(fmt::format("{} jobs", jobs->size()));
}

// The staging and trash folders of an assets folder that no sync needs: staging belongs to a
// sync in flight, trash to one in flight or successful (kept for undo).
void CheckWorkFolders(const EnvironmentConfig& env,
                      const std::map<std::string, store::SyncRun>& syncs, Check& check) {
  for (const char* kind : {"staging", "trash"}) {
    const fs::path dir = sync::WorkFolder(env.assets, kind);
    std::error_code ec;
    if (!fs::is_directory(dir, ec)) continue;
    for (const fs::directory_entry& entry : fs::directory_iterator(dir, ec)) {
      const std::string id = entry.path().filename().string();
      auto run = syncs.find(id);
      // A sync in flight needs both (its settling uses them); the sync's own finding tells.
      if (run != syncs.end() && store::InFlight(run->second)) continue;
      const bool needed =
          std::string(kind) == "trash" && run != syncs.end() && run->second.status == "success";
      if (!needed) {
        check.Problem(
            fmt::format("{} holds {}, which {}: nothing needs it; remove it once no envsync runs",
                        env.name, entry.path().string(),
                        run == syncs.end()
                            ? "belongs to no sync envsync knows"
                            : fmt::format("sync {} ({}) no longer needs", id, run->second.status)));
      }
    }
  }
}

}  // namespace

bool DoctorReport::healthy() const {
  for (const DoctorFinding& f : findings) {
    if (!f.ok) return false;
  }
  return true;
}

Result<DoctorReport> Diagnose(const Workspace& workspace, store::StateStore& state) {
  DoctorReport report;
  {
    Check check(report, "state store");
    auto problems = state.CheckIntegrity();
    if (!problems.ok()) check.Problem(problems.status().message());
    for (const std::string& p : problems.ok() ? *problems : std::vector<std::string>{}) {
      check.Problem(p);
    }
    if (state.SchemaVersion() != store::kStateSchemaVersion) {
      check.Problem(fmt::format("schema version {} where this envsync writes {}",
                                state.SchemaVersion(), store::kStateSchemaVersion));
    }
    check.Ok(fmt::format("{}: integrity ok, schema version {}", workspace.config().state,
                         state.SchemaVersion()));
  }

  // In-flight work is judged only when nobody else works on the store: a live envsync's
  // running sync is not a problem.
  store::WorkLock lock;
  auto alone = lock.TryAcquire(workspace.config().state);
  const bool judge_in_flight = alone.ok() && *alone;
  if (!judge_in_flight) {
    report.findings.push_back(
        {"work in progress", true,
         "another envsync is working on the store: syncs and jobs in flight are not judged"});
  }
  std::map<std::string, store::SyncRun> syncs;
  CheckSyncsAndJobs(state, judge_in_flight, report, &syncs);
  {
    Check check(report, "identity map");
    auto identities = state.LoadIdentityMap();
    if (!identities.ok()) {
      check.Problem(identities.status().message());
    } else {
      check.Ok(fmt::format("{} pairs", identities->size()));
    }
  }
  {
    Check check(report, "comparisons");
    auto comparisons = state.ListComparisons();
    if (!comparisons.ok()) {
      check.Problem(comparisons.status().message());
    } else {
      check.Ok(fmt::format("{} stored", comparisons->size()));
    }
  }
  for (const auto& entry : workspace.config().environments) {
    // Named references, not structured bindings: the lambda below captures them.
    const std::string& name = entry.first;
    const EnvironmentConfig& env_config = entry.second;
    Check check(report, "environment " + name);
    auto env = store::OpenEnvironment(env_config, store::Access::kReadOnly);
    // Every problem names the environment's database, whoever found it.
    const auto problem = [&](const std::string& message) {
      check.Problem(message.find(env_config.database) != std::string::npos
                        ? message
                        : fmt::format("{} ({}): {}", name, env_config.database, message));
    };
    if (!env.ok()) {
      problem(env.status().message());
    } else {
      auto problems = (*env)->CheckIntegrity();
      if (!problems.ok()) problem(problems.status().message());
      for (const std::string& p : problems.ok() ? *problems : std::vector<std::string>{}) {
        problem(p);
      }
      auto tracking = (*env)->ReadTracking();
      if (!tracking.ok()) problem("reading its change tracking: " + tracking.status().message());
      if (tracking.ok() && *tracking) {
        for (const std::string& table : (*tracking)->broken) {
          check.Problem(fmt::format(
              "change tracking of {} on {} is broken (its triggers are gone): run `envsync "
              "track enable {}` again",
              table, name, name));
        }
      }
    }
    CheckWorkFolders(env_config, syncs, check);
    check.Ok(fmt::format("{}: opens, integrity ok", env_config.database));
  }
  return report;
}

}  // namespace envsync::service
