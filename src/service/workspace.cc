#include "envsync/service/workspace.h"

#include <fmt/format.h>

#include <chrono>
#include <fstream>
#include <future>
#include <nlohmann/json.hpp>
#include <sstream>
#include <system_error>
#include <thread>

#include "envsync/core/embedded_data.h"
#include "envsync/service/jobs.h"
#include "envsync/service/mail.h"
#include "envsync/store/environment.h"

namespace envsync::service {
namespace {

using nlohmann::json;

Result<Manifest> LoadManifest(const Config& config) {
  if (config.manifest.empty()) return Manifest::Parse(EmbeddedManifest(), kEmbeddedManifestName);
  std::ifstream in(config.manifest, std::ios::binary);
  if (!in) {
    return Status::InvalidArgument(
        fmt::format("{}: manifest file '{}' cannot be read", config.source_name, config.manifest));
  }
  std::stringstream text;
  text << in.rdbuf();
  return Manifest::Parse(text.str(), config.manifest);
}

// Opens the environment `name` (named by `field` in messages), refusing names the config does
// not know.
Result<std::unique_ptr<store::Environment>> OpenNamed(const Config& config, const std::string& name,
                                                      const std::string& field,
                                                      store::Access access) {
  const EnvironmentConfig* env = config.Find(name);
  if (env == nullptr) {
    return Status::InvalidArgument(
        fmt::format("unknown environment '{}' ({}): {} configures PROD and TEST", name, field,
                    config.source_name));
  }
  return store::OpenEnvironment(*env, access);
}

// A comparison's or a sync's two environments, opened at once: opening one may be a connection
// to a database server (TCP, authentication, the first queries), and the two need not wait for
// each other. The source's error is the one reported when both fail, and it is reported as soon
// as the source's open has failed: the target's open is left to end on its own thread (a server
// that does not answer holds it until its connect timeout), which then closes what it opened.
struct OpenedPair {
  std::unique_ptr<store::Environment> source;
  std::unique_ptr<store::Environment> target;
};

Result<OpenedPair> OpenPair(const Config& config, const std::string& source,
                            const std::string& source_field, const std::string& target,
                            const std::string& target_field, store::Access target_access) {
  using Opened = Result<std::unique_ptr<store::Environment>>;
  // The thread owns what it needs: it may outlive this call, and the config with it.
  auto target_opened = std::make_shared<std::promise<Opened>>();
  std::future<Opened> target_env = target_opened->get_future();
  auto open_target = [target_opened, config = config, target, target_field, target_access] {
    try {
      target_opened->set_value(OpenNamed(config, target, target_field, target_access));
    } catch (...) {
      target_opened->set_exception(std::current_exception());  // rethrown by get(), as before
    }
  };
  bool on_thread = true;
  try {
    std::thread(open_target).detach();
  } catch (const std::system_error&) {
    on_thread = false;  // no thread to spare: the target opens here, after the source
  }
  auto source_env = OpenNamed(config, source, source_field, store::Access::kReadOnly);
  if (!source_env.ok()) return source_env.status();
  if (!on_thread) open_target();
  Opened opened = target_env.get();
  if (!opened.ok()) return opened.status();
  return OpenedPair{std::move(*source_env), std::move(*opened)};
}

Status CheckHome(const Config& config) {
  if (config.home == "PROD") return Status::Ok();
  return Status::InvalidArgument(
      fmt::format("{}: home is {}: comparisons and syncs can be started only from PROD",
                  config.source_name, config.home));
}

}  // namespace

std::string CompareOptionsToJson(const CompareOptions& o, const std::string& started_by) {
  return json{{"from", o.from},       {"to", o.to},           {"mode", o.mode},
              {"modules", o.modules}, {"folders", o.folders}, {"started_by", started_by}}
      .dump();
}

Result<CompareOptions> CompareOptionsFromJson(const std::string& text) {
  json j = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (!j.is_object()) return Status::Unavailable("a stored comparison request is not valid JSON");
  try {
    CompareOptions o;
    o.from = j.at("from").get<std::string>();
    o.to = j.at("to").get<std::string>();
    o.mode = j.at("mode").get<std::string>();
    o.modules = j.at("modules").get<std::vector<std::string>>();
    o.folders = j.at("folders").get<std::vector<std::string>>();
    return o;
  } catch (const std::exception& e) {
    return Status::Unavailable(
        fmt::format("a stored comparison request is malformed: {}", e.what()));
  }
}

Result<std::unique_ptr<Workspace>> Workspace::Open(Config config) {
  auto manifest = LoadManifest(config);
  if (!manifest.ok()) return manifest.status();
  return std::unique_ptr<Workspace>(new Workspace(std::move(config), std::move(*manifest)));
}

Result<std::unique_ptr<store::StateStore>> Workspace::OpenState(
    const std::function<void(const std::string&)>& log) const {
  auto state = store::OpenStateStore(config_.state);
  if (!state.ok()) return state;
  store::WorkLock lock;
  auto acquired = lock.TryAcquire(config_.state);
  if (!acquired.ok()) return acquired.status();
  if (!*acquired) return state;  // another process works on the store: it settles, or is alive
  auto settled = sync::RecoverInterruptedSyncs(manifest_, **state, [&](const std::string& name) {
    return OpenNamed(config_, name, "environment", store::Access::kReadWrite);
  });
  if (!settled.ok()) return settled.status().WithContext("recovering an interrupted sync");
  for (const std::string& id : *settled) {
    if (log) log(fmt::format("settled sync {}, which an earlier run left unfinished", id));
  }
  ENVSYNC_RETURN_IF_ERROR(DiscardHalfStored(**state, log));
  return state;
}

Status Workspace::DiscardHalfStored(store::StateStore& state,
                                    const std::function<void(const std::string&)>& log) {
  auto discarded = state.DiscardHalfStoredComparisons();
  if (!discarded.ok()) {
    return discarded.status().WithContext("deleting a comparison an earlier run left half stored");
  }
  for (const std::string& id : *discarded) {
    if (log) log(fmt::format("deleted comparison {}, which an earlier run left half stored", id));
  }
  return Status::Ok();
}

Status Workspace::TargetBusy(const std::string& target) {
  return Status::Unavailable(
      fmt::format("another envsync is running a sync or an undo into {}, or settling one: try "
                  "again when it ends",
                  target));
}

Result<std::unique_ptr<Workspace::TargetLock>> Workspace::LockTarget(
    store::StateStore& state, const std::string& target,
    const std::function<void(const std::string&)>& log) const {
  auto lock = std::make_unique<TargetLock>();
  auto job = lock->job.TryAcquireJob(config_.state);
  if (!job.ok()) return job.status();
  auto held = *job ? lock->target.TryAcquireTarget(config_.state, target) : Result<bool>(false);
  if (!held.ok()) return held.status();
  if (!*held) return std::unique_ptr<TargetLock>();
  auto settled = sync::RecoverInterruptedSyncs(
      manifest_, state,
      [&](const std::string& name) {
        return OpenNamed(config_, name, "environment", store::Access::kReadWrite);
      },
      target);
  if (!settled.ok()) return settled.status().WithContext("recovering an interrupted sync");
  for (const std::string& id : *settled) {
    if (log) log(fmt::format("settled sync {}, which an earlier run left unfinished", id));
  }
  return lock;
}

Status Workspace::CheckCompare(const CompareOptions& o, std::string_view prefix) const {
  ENVSYNC_RETURN_IF_ERROR(CheckHome(config_));
  if (!ParseMode(o.mode)) {
    return Status::InvalidArgument(
        fmt::format("{}mode '{}' is not a mode: use all or new", prefix, o.mode));
  }
  if (config_.Find(o.from) != nullptr && o.from == o.to) {
    return Status::InvalidArgument(fmt::format(
        "{0}from and {0}to both name {1}: a sync runs from one environment to the other", prefix,
        o.from));
  }
  for (const auto& [name, field] : {std::pair{o.from, "from"}, std::pair{o.to, "to"}}) {
    if (config_.Find(name) == nullptr) {
      return Status::InvalidArgument(
          fmt::format("unknown environment '{}' ({}{}): {} configures PROD and TEST", name, prefix,
                      field, config_.source_name));
    }
  }
  for (const std::string& m : o.modules) {
    if (m.empty())
      return Status::InvalidArgument(fmt::format("{}modules holds an empty name", prefix));
  }
  return manifest_.CheckModuleNames(o.modules);
}

Result<Comparison> Workspace::Compare(store::StateStore& state, const CompareOptions& o,
                                      const sync::CompareContext& context,
                                      std::string_view prefix) const {
  ENVSYNC_RETURN_IF_ERROR(CheckCompare(o, prefix));
  auto pair = OpenPair(config_, o.from, std::string(prefix) + "from", o.to,
                       std::string(prefix) + "to", store::Access::kReadOnly);
  if (!pair.ok()) return pair.status();
  sync::CompareRequest request;
  request.mode = *ParseMode(o.mode);
  request.modules = o.modules;
  request.folders = o.folders;
  return sync::Compare(manifest_, *pair->source, *pair->target, state, request, context);
}

Result<sync::SyncOutcome> Workspace::Sync(store::StateStore& state,
                                          const sync::SyncRequest& request) const {
  ENVSYNC_RETURN_IF_ERROR(CheckHome(config_));
  // Only the environments here: the sync itself loads the changes.
  auto header = state.LoadComparisonHeader(request.comparison_id);
  if (!header.ok()) return header.status();
  const Comparison* comparison = &header->first;
  auto pair = OpenPair(config_, comparison->from, "source", comparison->to, "target",
                       store::Access::kReadWrite);
  if (!pair.ok()) return pair.status();
  return sync::ExecuteSync(manifest_, *pair->source, *pair->target, state, request,
                           sync::DefaultSyncContext());
}

Result<sync::SyncOutcome> Workspace::Undo(store::StateStore& state,
                                          const std::string& sync_id) const {
  ENVSYNC_RETURN_IF_ERROR(CheckHome(config_));
  auto run = state.LoadSync(sync_id);
  if (!run.ok()) return run.status();
  auto pair = OpenPair(config_, run->from, "source", run->to, "target", store::Access::kReadWrite);
  if (!pair.ok()) return pair.status();
  return sync::UndoSync(manifest_, *pair->source, *pair->target, state, sync_id,
                        sync::DefaultSyncContext());
}

Result<std::vector<std::string>> Workspace::Folders(const std::string& name) const {
  auto env = OpenNamed(config_, name, "environment", store::Access::kReadOnly);
  if (!env.ok()) return env.status();
  std::vector<std::string> out;
  const TableSpec* table = manifest_.FolderTable();
  if (table == nullptr) return out;
  ENVSYNC_RETURN_IF_ERROR((*env)->BeginSnapshot());
  store::ScanRequest request;
  request.table = table->name;
  request.columns = {table->folder_path};
  request.order_by = {table->folder_path};
  request.filter = table->filter;
  auto cursor = (*env)->Scan(request);
  if (!cursor.ok()) return cursor.status();
  std::vector<Value> row;
  while ((*cursor)->Next(&row)) {
    if (const auto* path = std::get_if<std::string>(&row[0])) out.push_back(*path);
  }
  ENVSYNC_RETURN_IF_ERROR((*cursor)->status());
  ENVSYNC_RETURN_IF_ERROR((*env)->EndSnapshot());
  return out;
}

std::string Workspace::Notify(store::StateStore& state, const store::Message& message,
                              const std::string& link_path) const {
  // The mail goes first and the message is stored last: a process killed in between sends the
  // mail again when its work is settled (at least once), and a stored message means the user
  // was told (RecoverInterruptedJobs tells no one twice).
  std::string problem;
  if (IsMailAddress(message.user)) {
    auto delivered =
        Deliver(config_.mail, MailFor(message, config_.mail, link_path), 3,
                [](int ms) { std::this_thread::sleep_for(std::chrono::milliseconds(ms)); });
    if (!delivered.ok()) problem = delivered.status().message();
  }
  auto added = state.AddMessage(message);
  if (!added.ok() && problem.empty()) problem = added.status().message();
  return problem;
}

Result<std::vector<std::string>> Workspace::RunDueJobs(
    store::StateStore& state, const std::string& kind,
    const std::function<void(const store::Job&)>& on_change,
    const std::function<void(const std::string&, const sync::CompareProgress&)>& progress,
    const std::function<bool()>& stop, const std::string& runner) const {
  JobHandlers handlers;
  handlers.now = sync::DefaultSyncContext().now;
  handlers.run_sync = [&](const sync::SyncRequest& request) { return Sync(state, request); };
  handlers.run_compare = [&](const store::Job& job) -> Result<Comparison> {
    auto options = CompareOptionsFromJson(job.request);
    if (!options.ok()) return options.status();
    sync::CompareContext context = sync::DefaultCompareContext();
    if (progress) {
      context.progress = [&](const sync::CompareProgress& p) { progress(job.id, p); };
    }
    return Compare(state, *options, context);
  };
  handlers.notify = [&](const store::Message& message, const std::string& link) {
    return Notify(state, message, link);
  };
  handlers.on_change = on_change;
  handlers.stop = stop;
  handlers.kind = kind;
  handlers.state_location = config_.state;
  handlers.runner = runner;
  handlers.lock_target = [&](const std::string& target) -> Result<std::shared_ptr<void>> {
    auto lock = LockTarget(state, target, nullptr);
    if (!lock.ok()) return lock.status();
    return std::shared_ptr<void>(std::move(*lock));  // null when busy: the job waits
  };
  return service::RunDueJobs(state, handlers);
}

}  // namespace envsync::service
