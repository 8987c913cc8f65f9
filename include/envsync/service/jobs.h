#ifndef ENVSYNC_SERVICE_JOBS_H_
#define ENVSYNC_SERVICE_JOBS_H_

#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "envsync/core/comparison.h"
#include "envsync/core/status.h"
#include "envsync/store/state_store.h"
#include "envsync/sync/sync.h"

namespace envsync::service {

// Parses an ISO-8601 date and time with its zone (`2026-11-25T10:00:00+01:00`, `…Z`; seconds
// optional) and returns it in UTC as `YYYY-MM-DDTHH:MM:SSZ`. InvalidArgument naming the text
// for anything else, a time without a zone included (it would be ambiguous).
Result<std::string> ParseScheduleTime(std::string_view text);

// Stores a sync of `request` to run at `run_at` (UTC) as a scheduled job, with the
// "Synchronization process" message to `user` that says when and how to cancel it.
Result<store::Job> ScheduleSync(store::StateStore& state, const sync::SyncRequest& request,
                                const std::string& run_at, const std::string& user,
                                const std::string& now, const std::string& job_id);

// Cancels a job that has not started. InvalidArgument naming it when it already ran, runs or
// was cancelled; NotFound for an unknown ID.
Status CancelJob(store::StateStore& state, const std::string& job_id, const std::string& user,
                 const std::string& now);

// Runs every scheduled job whose time has come, oldest first, each through `run`, and hands a
// "Success: Synchronization process" or "FAILURE: Synchronization process" message for the user
// who scheduled it (saying when it ran late) to `notify`, which stores and mails it and returns
// what went wrong with the mail ("" when nothing did); the job's result keeps that. Returns the
// IDs of the jobs it ran.
Result<std::vector<std::string>> RunDueJobs(
    store::StateStore& state, const std::function<std::string()>& now,
    const std::function<Result<sync::SyncOutcome>(const sync::SyncRequest&)>& run,
    const std::function<std::string(const store::Message&)>& notify);

// The messages the seed describes.
store::Message ComparisonFinishedMessage(const Comparison& comparison, const std::string& user);
store::Message SyncEndedMessage(const sync::SyncOutcome& outcome, const std::string& user,
                                const std::string& now, const std::string& job_id);

// JSON of a sync request, as jobs keep it, and back.
std::string SyncRequestToJson(const sync::SyncRequest& request);
Result<sync::SyncRequest> SyncRequestFromJson(const std::string& text);

}  // namespace envsync::service

#endif  // ENVSYNC_SERVICE_JOBS_H_
