#include "envsync/service/jobs.h"

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <tuple>

#include "envsync/service/time_zone.h"
#include "envsync/store/fault_injection.h"

namespace envsync::service {
namespace {

using nlohmann::json;

}  // namespace

std::string SyncRequestToJson(const sync::SyncRequest& r) {
  return json{{"comparison_id", r.comparison_id}, {"select", r.select},
              {"deselect", r.deselect},           {"resolve", r.resolve},
              {"test_import", r.test_import},     {"started_by", r.started_by}}
      .dump();
}

Result<sync::SyncRequest> SyncRequestFromJson(const std::string& text) {
  json j = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (!j.is_object()) return Status::Unavailable("a stored job's request is not valid JSON");
  try {
    sync::SyncRequest r;
    r.comparison_id = j.at("comparison_id").get<std::string>();
    r.select = j.at("select").get<std::vector<std::string>>();
    r.deselect = j.at("deselect").get<std::vector<std::string>>();
    r.resolve = j.at("resolve").get<std::vector<std::string>>();
    r.test_import = j.at("test_import").get<bool>();
    r.started_by = j.at("started_by").get<std::string>();
    return r;
  } catch (const std::exception& e) {
    return Status::Unavailable(fmt::format("a stored job's request is malformed: {}", e.what()));
  }
}

Result<store::Job> ScheduleSync(store::StateStore& state, const sync::SyncRequest& request,
                                const std::string& run_at, const std::string& user,
                                const std::string& zone, const std::string& now,
                                const std::string& job_id) {
  store::Job job;
  job.id = job_id;
  job.kind = "sync";
  job.state = run_at.empty() ? "queued" : "scheduled";
  job.created_at = now;
  job.run_at = run_at.empty() ? now : run_at;
  job.started_by = user;
  job.request = SyncRequestToJson(request);
  ENVSYNC_RETURN_IF_ERROR(state.SaveJob(job));
  if (run_at.empty()) return job;
  store::Message message;
  message.user = user;
  message.created_at = now;
  message.job_id = job.id;
  message.title = "Synchronization process";
  message.body = fmt::format(
      "The synchronization of comparison {}{} is scheduled for {}. Do not change the "
      "environments until it has finished: a record changed since the comparison stops the "
      "sync. To cancel it: the Cancel action here, or envsync cancel {}",
      request.comparison_id, request.test_import ? " (test import)" : "", ShowInZone(run_at, zone),
      job.id);
  auto added = state.AddMessage(message);
  if (!added.ok()) return added.status();
  return job;
}

Result<store::Job> QueueCompare(store::StateStore& state, const std::string& request,
                                const std::string& user, const std::string& now,
                                const std::string& job_id) {
  store::Job job;
  job.id = job_id;
  job.kind = "compare";
  job.state = "queued";
  job.created_at = now;
  job.run_at = now;
  job.started_by = user;
  job.request = request;
  ENVSYNC_RETURN_IF_ERROR(state.SaveJob(job));
  return job;
}

Status CancelJob(store::StateStore& state, const std::string& job_id, const std::string& user,
                 const std::string& now) {
  auto job = state.LoadJob(job_id);
  if (!job.ok()) return job.status();
  if (job->state != "scheduled" && job->state != "queued") {
    return Status::InvalidArgument(fmt::format(
        "job {} is {}: only a job that has not started can be cancelled", job_id, job->state));
  }
  job->state = "cancelled";
  job->finished_at = now;
  auto cancelled = state.SaveJobIf(*job, {"scheduled", "queued"});
  if (!cancelled.ok()) return cancelled.status();
  if (!*cancelled) {  // it started (or was cancelled) meanwhile
    auto now_state = state.LoadJob(job_id);
    return Status::InvalidArgument(
        fmt::format("job {} is {}: only a job that has not started can be cancelled", job_id,
                    now_state.ok() ? now_state->state : std::string("gone")));
  }
  store::Message message;
  message.user = job->started_by;
  message.created_at = now;
  message.job_id = job_id;
  message.title =
      job->kind == "sync" ? "Synchronization process cancelled" : "Comparison cancelled";
  message.body =
      fmt::format("The {} scheduled for {} (UTC) was cancelled by {}.",
                  job->kind == "sync" ? "synchronization" : "comparison", job->run_at, user);
  auto added = state.AddMessage(message);
  return added.ok() ? Status::Ok() : added.status();
}

Status NoteWaiting(store::StateStore& state, store::Job& job, const std::string& why,
                   const std::string& now) {
  json result = json::parse(job.result.empty() ? "{}" : job.result, nullptr, false);
  if (!result.is_object()) result = json::object();
  if (result.value("waiting_noted", false)) return Status::Ok();
  result["waiting_noted"] = true;
  job.result = result.dump();
  auto saved = state.SaveJobIf(job, {"queued", "scheduled"});
  if (!saved.ok()) return saved.status();
  if (!*saved) return Status::Ok();  // it started or was cancelled meanwhile
  store::Message message;
  message.user = job.started_by;
  message.created_at = now;
  message.job_id = job.id;
  message.title = "Synchronization process waiting";
  message.body =
      fmt::format("Job {} is due but waits: {}. It starts as soon as that ends.", job.id, why);
  auto added = state.AddMessage(message);
  return added.ok() ? Status::Ok() : added.status();
}

store::Message ComparisonFinishedMessage(const Comparison& c, const std::string& user) {
  const TabCounts counts = c.Counts();
  store::Message message;
  message.user = user;
  message.created_at = c.created_at;
  message.title = "Comparison finished";
  message.body = fmt::format(
      "Comparison {} ({} -> {}) is ready: {} conflicts, {} new, {} modified, {} deleted. "
      "Review: envsync show {}",
      c.id, c.from, c.to, counts.conflicts, counts.new_records, counts.modified, counts.deleted,
      c.id);
  return message;
}

namespace {
constexpr const char* kSyncSucceeded = "Success: Synchronization process";
constexpr const char* kSyncFailed = "FAILURE: Synchronization process";
}  // namespace

bool TellsHowASyncEnded(const store::Message& message) {
  return message.title == kSyncSucceeded || message.title == kSyncFailed;
}

store::Message SyncEndedMessage(const sync::SyncOutcome& o, const std::string& user,
                                const std::string& now, const std::string& job_id) {
  store::Message message;
  message.user = user;
  message.created_at = now;
  message.job_id = job_id;
  message.title = o.success ? kSyncSucceeded : kSyncFailed;
  message.body =
      o.success ? fmt::format("Sync {}{} completed: {} new, {} modified, {} deleted, {} files.",
                              o.sync_id, o.test_import ? " (test import, nothing kept)" : "",
                              o.applied.new_records, o.applied.modified, o.applied.deleted, o.files)
                : fmt::format("Sync {} failed: {}", o.sync_id, o.error);
  return message;
}

namespace {

bool Due(const store::Job& job, const std::string& now) {
  return job.state == "queued" || (job.state == "scheduled" && job.run_at <= now);
}

// The target environment of a sync job, from its comparison ("" when unknown).
std::string TargetOf(store::StateStore& state, const store::Job& job) {
  auto request = SyncRequestFromJson(job.request);
  if (!request.ok()) return "";
  auto comparison = state.LoadComparisonHeader(request->comparison_id);
  return comparison.ok() ? comparison->first.to : "";
}

std::string LockedElsewhere(const std::string& target) {
  return fmt::format("another synchronization into {} is running in another envsync process",
                     target);
}

// Tells the user of every due sync that it waits for `why` (once per job).
Status NoteWaitingAll(store::StateStore& state, const std::string& now, const std::string& why) {
  auto jobs = state.ListJobs();
  if (!jobs.ok()) return jobs.status();
  for (store::Job& job : *jobs) {
    if (job.kind == "sync" && Due(job, now))
      ENVSYNC_RETURN_IF_ERROR(NoteWaiting(state, job, why, now));
  }
  return Status::Ok();
}

}  // namespace

Result<std::vector<std::string>> RecoverInterruptedJobs(
    store::StateStore& state, const std::string& now,
    const std::function<std::string(const store::Message&, const std::string&)>& notify) {
  std::vector<std::string> settled;
  auto jobs = state.ListJobs();
  if (!jobs.ok()) return jobs.status();
  std::vector<store::SyncRun> runs;
  bool runs_loaded = false;
  for (store::Job& job : *jobs) {
    if (job.state != "running") continue;
    const store::SyncRun* ran = nullptr;
    if (job.kind == "sync") {
      if (!runs_loaded) {
        auto listed = state.ListSyncs();
        if (!listed.ok()) return listed.status();
        runs = std::move(*listed);
        runs_loaded = true;
      }
      auto request = SyncRequestFromJson(job.request);
      for (const store::SyncRun& run : runs) {
        if (store::InFlight(run)) continue;
        // A sync names its job. One saved before syncs did (schema 8) is matched by comparison,
        // user and time, which a clock jumping back can defeat.
        const bool its_sync = run.job_id.empty()
                                  ? request.ok() && run.comparison_id == request->comparison_id &&
                                        run.started_by == request->started_by &&
                                        run.created_at >= job.started_at
                                  : run.job_id == job.id;
        if (its_sync) ran = &run;
      }
    }
    json result = json::parse(job.result.empty() ? "{}" : job.result, nullptr, false);
    if (!result.is_object()) result = json::object();
    if (ran == nullptr) {
      // Killed before it wrote anything: it runs again.
      job.state = "queued";
      job.started_at.clear();
      result["restarted"] = true;
      job.result = result.dump();
      ENVSYNC_RETURN_IF_ERROR(state.SaveJob(job));
      settled.push_back(job.id);
      continue;
    }
    const bool success = ran->status == "success" || ran->status == "undone";
    job.state = success ? "succeeded" : "failed";
    job.finished_at = now;
    job.error = success ? "" : ran->error;
    result["sync_id"] = ran->id;
    result["success"] = success;
    result["recovered"] = true;
    store::Message message;
    message.user = job.started_by;
    message.created_at = now;
    message.job_id = job.id;
    message.title = success ? kSyncSucceeded : kSyncFailed;
    message.body = success ? fmt::format(
                                 "Sync {} was interrupted after its commit and was completed "
                                 "when envsync restarted.",
                                 ran->id)
                           : fmt::format(
                                 "Sync {} was interrupted and rolled back when envsync "
                                 "restarted: {}. Nothing was written.",
                                 ran->id, ran->error);
    // Killed after telling the user (the message is stored last): not told twice.
    auto told = state.ListMessages(job.started_by);
    if (!told.ok()) return told.status();
    const bool already_told = std::any_of(told->begin(), told->end(), [&](const store::Message& m) {
      return m.job_id == job.id && TellsHowASyncEnded(m);
    });
    if (!already_told) {
      const std::string mail_problem = notify(message, "/syncs/" + ran->id);
      result["mail"] = mail_problem.empty() ? json() : json(mail_problem);
    }
    job.result = result.dump();
    ENVSYNC_RETURN_IF_ERROR(state.SaveJob(job));
    settled.push_back(job.id);
  }
  return settled;
}

Result<std::vector<std::string>> RunDueJobs(store::StateStore& state, const JobHandlers& h) {
  std::vector<std::string> ran;
  auto jobs = state.ListJobs();
  if (!jobs.ok()) return jobs.status();
  // Syncs due together run one after the other; each one that waits for an earlier one into the
  // same environment is told so before it waits.
  const std::string first_look = h.now();
  std::map<std::string, std::string> first_into;  // environment -> the job that goes first
  for (store::Job& job : *jobs) {
    if (job.kind != "sync" || !Due(job, first_look) || (!h.kind.empty() && h.kind != "sync")) {
      continue;
    }
    const std::string target = TargetOf(state, job);
    auto [it, first] = first_into.emplace(target, job.id);
    if (!first) {
      ENVSYNC_RETURN_IF_ERROR(NoteWaiting(
          state, job,
          fmt::format("another synchronization into {} (job {}) runs first", target, it->second),
          first_look));
    }
  }
  for (;;) {
    if (h.stop && h.stop()) break;
    // Held while the job is claimed and runs: settling (which takes the store exclusively)
    // never mistakes it for one a killed process left.
    store::WorkLock job_lock;
    if (!h.state_location.empty()) {
      auto held = job_lock.TryAcquireJob(h.state_location);
      if (!held.ok()) return held.status();
      if (!*held) {
        // Another envsync holds the whole store while it settles what a stopped process left:
        // due syncs wait, and their users are told.
        if (h.kind.empty() || h.kind == "sync") {
          ENVSYNC_RETURN_IF_ERROR(NoteWaitingAll(state, h.now(),
                                                 "another envsync process is settling work a "
                                                 "stopped process left in the state store"));
        }
        break;
      }
    }
    const std::string started = h.now();
    // A sync holds its target environment: two syncs into one environment never overlap, even
    // from two processes. The target of the job the claim would take is locked first, so a
    // sync that must wait stays "queued" and is never shown "running" for the moment of a poll.
    std::shared_ptr<void> target_lock;
    std::string locked_target;
    std::string locked_for;  // the job looked at, whose target is locked
    if (h.lock_target && (h.kind.empty() || h.kind == "sync")) {
      auto next = state.NextDueJob(h.kind, started);
      if (!next.ok()) return next.status();
      if (next->has_value() && (*next)->kind == "sync") {
        store::Job& waiting = **next;
        const std::string target = TargetOf(state, waiting);
        auto held = h.lock_target(target);
        if (!held.ok()) return held.status();
        if (*held == nullptr) {
          ENVSYNC_RETURN_IF_ERROR(NoteWaiting(state, waiting, LockedElsewhere(target), started));
          break;  // it is the oldest due: the others wait behind it
        }
        target_lock = std::move(*held);
        locked_target = target;
        locked_for = waiting.id;
      }
    }
    auto claimed = state.ClaimDueJob(h.kind, started, h.runner);
    if (!claimed.ok()) return claimed.status();
    if (!claimed->has_value()) break;
    store::Job job = std::move(**claimed);
    const std::string claimed_from = job.state;
    const bool was_scheduled = job.state == "scheduled";
    job.state = "running";
    job.started_at = started;
    job.runner = h.runner;
    const bool looked_at = target_lock != nullptr && job.id == locked_for;
    if (!looked_at) target_lock.reset();
    const std::string target = looked_at            ? locked_target
                               : job.kind == "sync" ? TargetOf(state, job)
                                                    : "";
    if (job.kind == "sync" && h.lock_target && target_lock == nullptr) {
      // The claim took another job than the one looked at (another runner claimed that one
      // meanwhile): its target is locked now, and it goes back if another process holds it.
      auto held = h.lock_target(target);
      if (!held.ok() || *held == nullptr) {
        store::Job back = job;
        back.state = claimed_from;
        back.started_at.clear();
        back.runner.clear();
        auto returned = state.SaveJobIf(back, {"running"});
        if (!returned.ok()) return returned.status();
        if (!held.ok()) return held.status();
        ENVSYNC_RETURN_IF_ERROR(NoteWaiting(state, back, LockedElsewhere(target), started));
        break;  // it is the oldest due: the others wait behind it
      }
      target_lock = std::move(*held);
    }
    if (h.on_change) h.on_change(job);
    store::CrashPoint("job_claimed");
    json result = json::parse(job.result.empty() ? "{}" : job.result, nullptr, false);
    if (!result.is_object()) result = json::object();
    store::Message message;
    std::string link;
    bool success = false;
    if (job.kind == "compare") {
      Result<Comparison> comparison = h.run_compare(job);
      success = comparison.ok();
      job.finished_at = h.now();
      if (success) {
        const TabCounts counts = comparison->Counts();
        result["comparison_id"] = comparison->id;
        result["counts"] = {{"conflicts", counts.conflicts},
                            {"new", counts.new_records},
                            {"modified", counts.modified},
                            {"deleted", counts.deleted}};
        message = ComparisonFinishedMessage(*comparison, job.started_by);
        message.job_id = job.id;
        link = "/comparisons/" + comparison->id;
      } else {
        job.error = comparison.status().message();
        message.user = job.started_by;
        message.created_at = job.finished_at;
        message.job_id = job.id;
        message.title = "FAILURE: Comparison";
        message.body = "The comparison failed: " + job.error;
        link = "/jobs/" + job.id;
      }
    } else {
      auto request = SyncRequestFromJson(job.request);
      if (request.ok()) request->job_id = job.id;
      Result<sync::SyncOutcome> outcome =
          request.ok() ? h.run_sync(*request) : Result<sync::SyncOutcome>(request.status());
      sync::SyncOutcome ended;
      if (outcome.ok()) {
        ended = *outcome;
      } else {
        ended.error = outcome.status().message();
      }
      success = ended.success;
      job.finished_at = h.now();
      job.error = ended.success ? "" : ended.error;
      result["sync_id"] = ended.sync_id;
      result["success"] = ended.success;
      result["applied"] = {{"new", ended.applied.new_records},
                           {"modified", ended.applied.modified},
                           {"deleted", ended.applied.deleted}};
      message = SyncEndedMessage(ended, job.started_by, job.finished_at, job.id);
      const long late = SecondsBetween(job.run_at, started);
      if (was_scheduled && late > 60) {
        message.body +=
            fmt::format(" It ran late: scheduled for {} (UTC), started {}.", job.run_at, started);
        result["ran_late_seconds"] = late;
      }
      link = ended.sync_id.empty() ? "/jobs/" + job.id : "/syncs/" + ended.sync_id;
    }
    job.state = success ? "succeeded" : "failed";
    store::CrashPoint("job_worked");
    const std::string mail_problem = h.notify(message, link);
    store::CrashPoint("job_notified");
    result["mail"] = mail_problem.empty() ? json() : json(mail_problem);
    job.result = result.dump();
    ENVSYNC_RETURN_IF_ERROR(state.SaveJob(job));
    store::CrashPoint("job_saved");
    if (h.on_change) h.on_change(job);
    ran.push_back(job.id);
  }
  return ran;
}

}  // namespace envsync::service
