#ifndef ENVSYNC_SERVICE_WORKSPACE_H_
#define ENVSYNC_SERVICE_WORKSPACE_H_

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "envsync/core/comparison.h"
#include "envsync/core/config.h"
#include "envsync/core/manifest.h"
#include "envsync/core/status.h"
#include "envsync/store/state_store.h"
#include "envsync/sync/compare.h"
#include "envsync/sync/sync.h"

namespace envsync::service {

// What to compare, as the CLI's flags and the API's body give it.
struct CompareOptions {
  std::string from;
  std::string to;
  std::string mode = "all";
  std::vector<std::string> modules;
  std::vector<std::string> folders;
};

std::string CompareOptionsToJson(const CompareOptions& options, const std::string& started_by);
Result<CompareOptions> CompareOptionsFromJson(const std::string& text);

// One configured envsync: its config and manifest, and the operations the CLI and the server
// share. Every operation takes the state store it works on, so each thread can have its own.
class Workspace {
 public:
  // Reads the manifest the config names (or the built-in one).
  static Result<std::unique_ptr<Workspace>> Open(Config config);

  const Config& config() const { return config_; }
  const Manifest& manifest() const { return manifest_; }

  // Opens the state store and settles any sync a killed process left half-done, and deletes
  // any comparison it left half stored (reporting each through `log`), when no other process is
  // working on the store, so every caller sees the environments fully before or after each
  // sync.
  Result<std::unique_ptr<store::StateStore>> OpenState(
      const std::function<void(const std::string&)>& log) const;

  // Deletes the comparisons a killed compare left half stored
  // (StateStore::DiscardHalfStoredComparisons), reporting each through `log`. Only under the
  // store's exclusive lock, as OpenState and the job runner settle.
  static Status DiscardHalfStored(store::StateStore& state,
                                  const std::function<void(const std::string&)>& log);

  // The right to write into one environment: the store's job lock (shared) and the target's
  // lock (see store::WorkLock), held until destroyed.
  struct TargetLock {
    store::WorkLock job;
    store::WorkLock target;
  };
  // Takes them without waiting, for a sync or an undo into `target`, and settles any sync into
  // it that a killed process left half-done (only the holder of the target's lock may). Null
  // while another process holds the target or the whole store (see TargetBusy).
  Result<std::unique_ptr<TargetLock>> LockTarget(
      store::StateStore& state, const std::string& target,
      const std::function<void(const std::string&)>& log) const;
  // Why LockTarget gave nothing, for the user.
  static Status TargetBusy(const std::string& target);

  // Checks what a comparison would need (home, mode, environments, module names) without
  // opening anything. InvalidArgument naming the field at fault, written `<prefix><field>`
  // (the CLI passes "--" so its flags are named).
  Status CheckCompare(const CompareOptions& options, std::string_view prefix = "") const;
  // Compares and stores the comparison. It does not notify anyone.
  Result<Comparison> Compare(store::StateStore& state, const CompareOptions& options,
                             const sync::CompareContext& context,
                             std::string_view prefix = "") const;
  // Executes (or test-imports) a sync now; the caller holds the work lock.
  Result<sync::SyncOutcome> Sync(store::StateStore& state, const sync::SyncRequest& request) const;
  // Undoes a sync; the caller holds the work lock.
  Result<sync::SyncOutcome> Undo(store::StateStore& state, const std::string& sync_id) const;

  // The gallery folders of environment `name`, as paths, sorted. InvalidArgument for an
  // unknown environment; Unavailable when its database cannot be read.
  Result<std::vector<std::string>> Folders(const std::string& name) const;

  // Leaves `message` for its user and, when the user is an e-mail address, mails it (retrying
  // with backoff). A mail that cannot be delivered never fails the work: what went wrong is
  // returned ("" when nothing did).
  std::string Notify(store::StateStore& state, const store::Message& message,
                     const std::string& link_path) const;

  // Runs the jobs of `kind` ("compare" or "sync"; "" = both) that are due (queued, or
  // scheduled with their time come), oldest first, claimed for `runner` and under the work
  // locks (see service::RunDueJobs). `on_change` hears of each job as it starts and ends;
  // `progress` of a comparison's progress; `stop` is asked between jobs.
  Result<std::vector<std::string>> RunDueJobs(
      store::StateStore& state, const std::string& kind,
      const std::function<void(const store::Job&)>& on_change,
      const std::function<void(const std::string& job_id, const sync::CompareProgress&)>& progress,
      const std::function<bool()>& stop, const std::string& runner) const;

 private:
  Workspace(Config config, Manifest manifest)
      : config_(std::move(config)), manifest_(std::move(manifest)) {}
  Config config_;
  Manifest manifest_;
};

}  // namespace envsync::service

#endif  // ENVSYNC_SERVICE_WORKSPACE_H_
