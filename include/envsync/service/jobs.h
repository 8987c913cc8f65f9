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

// Stores a sync of `request` as a job: scheduled to run at `run_at` (UTC), or queued to run
// as soon as the service can when `run_at` is empty. A scheduled one leaves `user` the
// "Synchronization process" message with the time shown in `zone` and how to cancel it.
Result<store::Job> ScheduleSync(store::StateStore& state, const sync::SyncRequest& request,
                                const std::string& run_at, const std::string& user,
                                const std::string& zone, const std::string& now,
                                const std::string& job_id);

// Stores a comparison to run in the background (`request` as CompareOptionsToJson writes it).
Result<store::Job> QueueCompare(store::StateStore& state, const std::string& request,
                                const std::string& user, const std::string& now,
                                const std::string& job_id);

// Cancels a job that has not started. InvalidArgument naming it when it already ran, runs or
// was cancelled; NotFound for an unknown ID.
Status CancelJob(store::StateStore& state, const std::string& job_id, const std::string& user,
                 const std::string& now);

// Tells the user of a due sync job that it waits (`why`), once per job.
Status NoteWaiting(store::StateStore& state, store::Job& job, const std::string& why,
                   const std::string& now);

// What RunDueJobs runs each kind of job with, and whom it tells.
struct JobHandlers {
  std::function<std::string()> now;
  std::function<Result<sync::SyncOutcome>(const sync::SyncRequest&)> run_sync;
  std::function<Result<Comparison>(const store::Job&)> run_compare;
  // Stores and mails a message; returns what went wrong with the mail ("" when nothing did).
  std::function<std::string(const store::Message&, const std::string& link_path)> notify;
  std::function<void(const store::Job&)> on_change;  // may be empty
  std::function<bool()> stop;                        // may be empty
  std::string kind;  // run only jobs of this kind ("compare" or "sync"); "" = all
  // Where the state store is, for the work locks (see store::WorkLock); "" runs without them.
  std::string state_location;
  std::string runner;  // who claims the jobs (kept on each job)
  // Takes the right to sync into a target environment (see Workspace::LockTarget), or gives
  // null while another process holds it; may be empty (no target lock).
  std::function<Result<std::shared_ptr<void>>(const std::string& target)> lock_target;
};

// Runs every job that is due (queued, or scheduled with its time come), oldest first, claiming
// each with StateStore::ClaimDueJob so several processes sharing a store run each job once. With
// a state location, each job runs under the store's job lock and a sync also under its target's
// lock; a sync whose target another process holds is left waiting (not claimed), and its user is
// told. A sync ends with a "Success: / FAILURE: Synchronization process" message for the user who
// asked for it (saying when it ran late), a comparison with "Comparison finished". A due sync that
// has to wait for another one into the same environment is told so first. The job keeps how the
// mail went. Returns the IDs of the jobs it ran.
Result<std::vector<std::string>> RunDueJobs(store::StateStore& state, const JobHandlers& handlers);

// Settles the jobs a killed service left "running" (after RecoverInterruptedSyncs has settled
// their syncs): a sync job takes the end of its sync (completed or rolled back) and its user is
// told through `notify`, unless the killed service had already told them (its message is in the
// store: Workspace::Notify mails first and stores the message last); a job that had written
// nothing yet is queued again. Returns their IDs.
Result<std::vector<std::string>> RecoverInterruptedJobs(
    store::StateStore& state, const std::string& now,
    const std::function<std::string(const store::Message&, const std::string& link_path)>& notify);

// The messages the seed describes.
store::Message ComparisonFinishedMessage(const Comparison& comparison, const std::string& user);
store::Message SyncEndedMessage(const sync::SyncOutcome& outcome, const std::string& user,
                                const std::string& now, const std::string& job_id);
// Whether `message` is the one that tells how a sync ended (success or failure).
bool TellsHowASyncEnded(const store::Message& message);

// JSON of a sync request, as jobs keep it, and back.
std::string SyncRequestToJson(const sync::SyncRequest& request);
Result<sync::SyncRequest> SyncRequestFromJson(const std::string& text);

}  // namespace envsync::service

#endif  // ENVSYNC_SERVICE_JOBS_H_
