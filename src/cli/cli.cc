#include "envsync/cli/cli.h"

#include <fmt/format.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>

#include "envsync/core/config.h"
#include "envsync/core/embedded_data.h"
#include "envsync/core/manifest.h"
#include "envsync/demo/demo.h"
#include "envsync/service/jobs.h"
#include "envsync/service/mail.h"
#include "envsync/store/environment.h"
#include "envsync/store/json_codec.h"
#include "envsync/store/state_store.h"
#include "envsync/sync/compare.h"
#include "envsync/sync/sync.h"

namespace envsync::cli {
namespace {

// The one place where a Status becomes an exit status.
int ExitCodeOf(const Status& status) {
  switch (status.code()) {
    case Status::Code::kOk:
      return kExitOk;
    case Status::Code::kInvalidArgument:
    case Status::Code::kNotFound:
      return kExitBadInput;
    default:
      return kExitUnavailable;
  }
}

int Fail(std::ostream& err, const Status& status) {
  err << "envsync: error: " << status.message() << "\n";
  return ExitCodeOf(status);
}

std::string Thousands(int64_t n) {
  std::string digits = std::to_string(n);
  std::string out;
  for (size_t i = 0; i < digits.size(); ++i) {
    if (i > 0 && (digits.size() - i) % 3 == 0) out.push_back(',');
    out.push_back(digits[i]);
  }
  return out;
}

std::string_view ConflictText(Conflict conflict) {
  switch (conflict) {
    case Conflict::kKeyClash:
      return "its natural key exists on the target under another ID";
    case Conflict::kModifiedDeleted:
      return "changed on the source, deleted on the target";
    case Conflict::kIdCollision:
      return "the same ID names two different records";
    case Conflict::kBothModified:
      return "both sides changed it since the last sync";
    case Conflict::kDeletedModified:
      return "deleted on the source, changed on the target";
    case Conflict::kNone:
      break;
  }
  return "";
}

std::string_view ReasonText(Reason reason) {
  switch (reason) {
    case Reason::kTargetDeleted:
      return "the target deleted it since the last sync";
    case Reason::kTargetChanged:
      return "syncing would revert the target's own edit";
    case Reason::kTargetOnly:
      return "nothing shows it was ever on the source";
    case Reason::kNone:
      break;
  }
  return "";
}

std::string TabTitle(Tab tab) {
  switch (tab) {
    case Tab::kConflicts:
      return "Conflicts";
    case Tab::kNew:
      return "New";
    case Tab::kModified:
      return "Modified";
    case Tab::kDeleted:
      return "Deleted";
  }
  return "";
}

int64_t CountOf(const TabCounts& counts, Tab tab) {
  switch (tab) {
    case Tab::kConflicts:
      return counts.conflicts;
    case Tab::kNew:
      return counts.new_records;
    case Tab::kModified:
      return counts.modified;
    case Tab::kDeleted:
      return counts.deleted;
  }
  return 0;
}

// The readable summary: counts per tab, then the records of each tab with key and reason.
void PrintSummary(const Comparison& c, std::optional<Tab> only_tab, int64_t limit,
                  std::ostream& out) {
  out << fmt::format("Comparison {}: {} -> {} (mode {}), {}\n", c.id, c.from, c.to,
                     ModeName(c.mode), c.created_at);
  std::string modules;
  for (const std::string& m : c.modules) modules += (modules.empty() ? "" : ", ") + m;
  out << "Modules: " << modules << "\n";
  if (!c.folders.empty()) {
    std::string folders;
    for (const std::string& f : c.folders) folders += (folders.empty() ? "" : ", ") + f;
    out << "Gallery folders: " << folders << "\n";
  }
  for (const ForcedModule& f : c.forced) {
    std::string folders;
    for (const std::string& name : f.folders) folders += (folders.empty() ? "" : ", ") + name;
    out << fmt::format("Forced: {} (required by {}{}{})\n", f.module, f.required_by,
                       folders.empty() ? "" : "; folders: ", folders);
  }
  out << fmt::format("Records compared: {}\n\n", Thousands(c.records_compared));
  const TabCounts counts = c.Counts();
  for (Tab tab : {Tab::kConflicts, Tab::kNew, Tab::kModified, Tab::kDeleted}) {
    out << fmt::format("  {:<10} {:>8}\n", TabTitle(tab), Thousands(CountOf(counts, tab)));
  }
  for (Tab tab : {Tab::kConflicts, Tab::kNew, Tab::kModified, Tab::kDeleted}) {
    if (only_tab && tab != *only_tab) continue;
    const int64_t total = CountOf(counts, tab);
    if (total == 0) continue;
    out << fmt::format("\n{} ({})\n", TabTitle(tab), Thousands(total));
    int64_t shown = 0;
    for (const Change& change : c.changes) {
      if (change.tab != tab) continue;
      if (limit > 0 && shown == limit) {
        out << fmt::format("  ... and {} more: envsync show {} --tab {} --limit 0\n",
                           Thousands(total - shown), c.id, TabName(tab));
        break;
      }
      ++shown;
      std::string note;
      if (change.conflict != Conflict::kNone) {
        note = fmt::format("{}: {}", ConflictName(change.conflict), ConflictText(change.conflict));
        if (change.mergeable) note += " (mergeable: they changed different fields)";
      } else if (change.reason != Reason::kNone) {
        note = fmt::format("{}: {}", ReasonName(change.reason), ReasonText(change.reason));
      }
      std::string ids = change.Ref();
      if (!IsNull(change.source_id) && !IsNull(change.target_id) &&
          CompareValues(change.source_id, change.target_id) != 0) {
        ids += fmt::format(" (on {}: {})", c.to, RenderValue(change.target_id));
      }
      out << fmt::format("  [{}] {:<22} {}", change.selected ? "x" : " ", ids, change.key);
      if (!note.empty()) out << "  -- " << note;
      out << "\n";
      if (!IsNull(change.source_id) && !IsNull(change.target_id)) {
        std::string fields;
        for (const FieldDiff& f : change.fields) fields += (fields.empty() ? "" : ", ") + f.field;
        if (!fields.empty()) out << "        fields: " << fields << "\n";
      }
      if (!change.required_by.empty()) {
        std::string by;
        for (const std::string& r : change.required_by) by += (by.empty() ? "" : ", ") + r;
        out << "        required by: " << by << "\n";
      }
    }
  }
  if (!c.warnings.empty()) {
    out << fmt::format("\nWarnings ({})\n", c.warnings.size());
    for (const Warning& w : c.warnings) out << fmt::format("  {}: {}\n", w.environment, w.message);
  }
  out << "\n[x] = selected by default. Details: envsync show " << c.id << " --json\n";
}

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

std::string ConfigPath(const std::string& flag) {
  if (!flag.empty()) return flag;
  if (const char* env = std::getenv("ENVSYNC_CONFIG"); env != nullptr && *env != '\0') return env;
  return "envsync.toml";
}

Result<std::unique_ptr<store::Environment>> OpenForWriting(const Config& config,
                                                           const std::string& name) {
  const EnvironmentConfig* env = config.Find(name);
  if (env == nullptr) {
    return Status::InvalidArgument(fmt::format("unknown environment '{}'", name));
  }
  return store::OpenEnvironment(*env, store::Access::kReadWrite);
}

// Opens the state store and settles any sync a killed process left half-done, so every
// command sees the environments either fully before or fully after each sync.
// With `lock` set, the command needs the state store's work lock for itself (a sync or an
// undo) and is refused while another process holds it; without, it settles interrupted syncs
// only when no other process is running one.
Result<std::unique_ptr<store::StateStore>> OpenState(const Config& config, const Manifest& manifest,
                                                     std::ostream& err,
                                                     store::WorkLock* lock = nullptr) {
  auto state = store::OpenStateStore(config.state);
  if (!state.ok()) return state;
  store::WorkLock probe;
  store::WorkLock* held = lock != nullptr ? lock : &probe;
  auto acquired = held->TryAcquire(config.state);
  if (!acquired.ok()) return acquired.status();
  if (!*acquired) {
    if (lock == nullptr) return state;  // a sync is running: nothing was interrupted
    return Status::Unavailable(fmt::format(
        "another envsync is running a sync or an undo with state '{}': try again when it ends",
        config.state));
  }
  auto settled = sync::RecoverInterruptedSyncs(
      manifest, **state, [&](const std::string& name) { return OpenForWriting(config, name); });
  if (!settled.ok()) return settled.status().WithContext("recovering an interrupted sync");
  for (const std::string& id : *settled) {
    err << "envsync: settled sync " << id << ", which an earlier run left unfinished\n";
  }
  return state;
}

// Who runs this command: $ENVSYNC_USER, else $USER, else "cli". Messages go to that user.
std::string CurrentUser() {
  for (const char* name : {"ENVSYNC_USER", "USER"}) {
    const char* value = std::getenv(name);
    if (value != nullptr && *value != '\0') return value;
  }
  return "cli";
}

struct CompareFlags {
  std::string from;
  std::string to;
  std::string mode = "all";
  std::vector<std::string> modules;
  std::vector<std::string> folders;
  bool json = false;
  int64_t limit = 50;
};

// Opens the environment `name` for the flag `flag`, refusing names the config does not know.
Result<std::unique_ptr<store::Environment>> OpenNamed(const Config& config, const std::string& name,
                                                      const std::string& flag) {
  const EnvironmentConfig* env = config.Find(name);
  if (env == nullptr) {
    return Status::InvalidArgument(
        fmt::format("unknown environment '{}' ({}): {} configures PROD and TEST", name, flag,
                    config.source_name));
  }
  return store::OpenEnvironment(*env);
}

// Leaves `message` for its user and, when the user is an e-mail address, mails it (retrying
// with backoff). A mail that cannot be delivered never fails the work: it is reported on stderr
// and returned ("" when all went well).
std::string Notify(const Config& config, store::StateStore& state, const store::Message& message,
                   const std::string& link_path, std::ostream& err) {
  std::string problem;
  auto added = state.AddMessage(message);
  if (!added.ok()) problem = added.status().message();
  if (service::IsMailAddress(message.user)) {
    auto delivered = service::Deliver(
        config.mail, service::MailFor(message, config.mail, link_path), 3,
        [](int ms) { std::this_thread::sleep_for(std::chrono::milliseconds(ms)); });
    if (!delivered.ok()) problem = delivered.status().message();
  }
  if (!problem.empty()) err << "envsync: warning: " << problem << "\n";
  return problem;
}

Result<Comparison> RunCompare(const Config& config, const CompareFlags& flags, bool quiet,
                              std::ostream& err) {
  if (config.home != "PROD") {
    return Status::InvalidArgument(
        fmt::format("{}: home is {}: comparisons and syncs can be started only from PROD",
                    config.source_name, config.home));
  }
  auto mode = ParseMode(flags.mode);
  if (!mode) {
    return Status::InvalidArgument(
        fmt::format("--mode '{}' is not a mode: use all or new", flags.mode));
  }
  if (config.Find(flags.from) != nullptr && flags.from == flags.to) {
    return Status::InvalidArgument(fmt::format(
        "--from and --to both name {}: a sync runs from one environment to the other", flags.from));
  }
  for (const auto& [name, flag] : {std::pair{flags.from, "--from"}, std::pair{flags.to, "--to"}}) {
    if (config.Find(name) == nullptr) {
      return Status::InvalidArgument(
          fmt::format("unknown environment '{}' ({}): {} configures PROD and TEST", name, flag,
                      config.source_name));
    }
  }
  auto manifest = LoadManifest(config);
  if (!manifest.ok()) return manifest.status();
  // Checked before anything is opened, so a bad name is bad input even with a database missing.
  ENVSYNC_RETURN_IF_ERROR(manifest->CheckModuleNames(flags.modules));
  auto source = OpenNamed(config, flags.from, "--from");
  if (!source.ok()) return source.status();
  auto target = OpenNamed(config, flags.to, "--to");
  if (!target.ok()) return target.status();
  auto state = OpenState(config, *manifest, err);
  if (!state.ok()) return state.status();

  sync::CompareRequest request;
  request.mode = *mode;
  request.modules = flags.modules;
  request.folders = flags.folders;
  sync::CompareContext context = sync::DefaultCompareContext();
  const auto started = std::chrono::steady_clock::now();
  auto seconds_since = [started] {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  };
  const bool tty = !quiet && isatty(STDERR_FILENO) == 1 && &err == &std::cerr;
  if (tty) {
    context.progress = [&](const sync::CompareProgress& p) {
      if (p.done) return;
      const double s = seconds_since();
      err << fmt::format("\rcomparing {}: {} records, {:.0f} records/s   ", p.table,
                         Thousands(p.records), s > 0 ? p.records / s : 0.0)
          << std::flush;
    };
  }
  auto comparison = sync::Compare(*manifest, **source, **target, **state, request, context);
  if (tty) err << "\r" << std::string(70, ' ') << "\r";
  if (comparison.ok() && !quiet) {
    Notify(config, **state, service::ComparisonFinishedMessage(*comparison, CurrentUser()),
           "/comparisons/" + comparison->id, err);
  }
  if (comparison.ok() && !quiet) {
    const double s = seconds_since();
    err << fmt::format("compared {} records in {:.2f} s ({:.0f} records/s)\n",
                       Thousands(comparison->records_compared), s,
                       s > 0 ? comparison->records_compared / s : 0.0);
  }
  return comparison;
}

// Opens the comparison's two environments (the target for writing) and executes `request`;
// the caller holds the state store's work lock.
Result<sync::SyncOutcome> RunSyncNow(const Config& config, const Manifest& manifest,
                                     store::StateStore& state, const sync::SyncRequest& request) {
  auto comparison = state.LoadComparison(request.comparison_id);
  if (!comparison.ok()) return comparison.status();
  auto source = OpenNamed(config, comparison->from, "source");
  if (!source.ok()) return source.status();
  auto target = OpenForWriting(config, comparison->to);
  if (!target.ok()) return target.status();
  return sync::ExecuteSync(manifest, **source, **target, state, request,
                           sync::DefaultSyncContext());
}

std::atomic<bool> g_stop{false};
void RequestStop(int) { g_stop = true; }

// `envsync serve`: runs scheduled jobs when they are due, until SIGTERM (or once).
int Serve(const Config& config, const Manifest& manifest, bool once, int poll_seconds,
          std::ostream& err) {
  auto state = store::OpenStateStore(config.state);
  if (!state.ok()) return Fail(err, state.status());
  g_stop = false;
  std::signal(SIGTERM, RequestStop);
  std::signal(SIGINT, RequestStop);
  err << fmt::format("envsync serve: running scheduled jobs from {} every {} s\n", config.state,
                     poll_seconds)
      << std::flush;
  while (!g_stop) {
    store::WorkLock lock;
    auto acquired = lock.TryAcquire(config.state);
    if (!acquired.ok()) return Fail(err, acquired.status());
    if (*acquired) {
      auto settled = sync::RecoverInterruptedSyncs(
          manifest, **state, [&](const std::string& name) { return OpenForWriting(config, name); });
      if (!settled.ok()) return Fail(err, settled.status());
      auto ran = service::RunDueJobs(
          **state, sync::DefaultSyncContext().now,
          [&](const sync::SyncRequest& request) {
            return RunSyncNow(config, manifest, **state, request);
          },
          [&](const store::Message& message) {
            return Notify(config, **state, message, "/jobs/" + message.job_id, err);
          });
      if (!ran.ok()) return Fail(err, ran.status());
      for (const std::string& id : *ran) {
        auto job = (*state)->LoadJob(id);
        err << fmt::format("envsync serve: job {} {}{}\n", id, job.ok() ? job->state : "?",
                           job.ok() && !job->error.empty() ? ": " + job->error : "")
            << std::flush;
      }
    }
    if (once) break;
    for (int i = 0; i < poll_seconds * 10 && !g_stop; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
  }
  err << "envsync serve: stopped\n";
  return kExitOk;
}

nlohmann::json OutcomeJson(const sync::SyncOutcome& o) {
  nlohmann::json timings = nlohmann::json::object();
  for (const auto& [phase, seconds] : o.timings) timings[phase] = seconds;
  nlohmann::json modules = nlohmann::json::object();
  for (const auto& [name, c] : o.per_module) {
    modules[name] = {{"new", c.new_records}, {"modified", c.modified}, {"deleted", c.deleted}};
  }
  return {{"sync_id", o.sync_id},
          {"status", o.success ? "success" : "failure"},
          {"test_import", o.test_import},
          {"applied",
           {{"new", o.applied.new_records},
            {"modified", o.applied.modified},
            {"deleted", o.applied.deleted}}},
          {"modules", modules},
          {"files", o.files},
          {"timings", timings},
          {"error", o.success ? nlohmann::json() : nlohmann::json(o.error)}};
}

int DemoInit(const std::string& dir, int64_t records, std::ostream& out, std::ostream& err) {
  demo::DemoOptions options{dir, records};
  const auto started = std::chrono::steady_clock::now();
  Status status = demo::CreateCommonState(options);
  if (status.ok()) status = demo::WriteConfig(options);
  if (!status.ok()) return Fail(err, status);
  const demo::DemoPaths paths = demo::PathsFor(dir);
  auto config = LoadConfig(paths.config.string());
  if (!config.ok()) return Fail(err, config.status());
  // The last sync left both sides equal: a comparison now records that common state as the
  // base, and the pending work made since is applied on top.
  CompareFlags flags;
  flags.from = "TEST";
  flags.to = "PROD";
  auto baseline = RunCompare(*config, flags, /*quiet=*/true, err);
  if (!baseline.ok()) return Fail(err, baseline.status());
  status = demo::ApplyPendingWork(options);
  if (!status.ok()) return Fail(err, status);
  const double s =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  out << fmt::format(
      "Demo environments written to {} in {:.1f} s ({} records per side):\n"
      "  config  {}\n  PROD    {}  (assets {})\n  TEST    {}  (assets {})\n  state   {}\n"
      "Both sides were synchronized once (base recorded by comparison {}), then edited.\n"
      "Next: envsync --config {} compare --from TEST --to PROD\n",
      paths.config.parent_path().string(), s, Thousands(baseline->records_compared / 2),
      paths.config.string(), paths.prod_db.string(), paths.prod_assets.string(),
      paths.test_db.string(), paths.test_assets.string(), paths.state.string(), baseline->id,
      paths.config.string());
  return kExitOk;
}

}  // namespace

static int RunCommand(const std::vector<std::string>& args, std::ostream& out, std::ostream& err);

int Run(const std::vector<std::string>& args, std::ostream& out, std::ostream& err) {
  // Third-party exceptions are caught where they are met; this is the last guard, so that even
  // a bug ends with a message and a status rather than an abort.
  try {
    return RunCommand(args, out, err);
  } catch (const std::exception& e) {
    err << "envsync: error: internal error (nothing more was written): " << e.what() << "\n";
    return kExitUnavailable;
  }
}

static int RunCommand(const std::vector<std::string>& args, std::ostream& out, std::ostream& err) {
  CLI::App app{"envsync: compare and synchronize content between PROD and TEST"};
  app.name("envsync");
  app.require_subcommand(1);
  std::string config_flag;
  app.add_option("--config", config_flag,
                 "configuration file (default: $ENVSYNC_CONFIG, then ./envsync.toml)");

  CompareFlags compare_flags;
  CLI::App* compare = app.add_subcommand("compare", "compare two environments");
  compare->add_option("--from", compare_flags.from, "source environment (PROD or TEST)")
      ->required();
  compare->add_option("--to", compare_flags.to, "target environment (PROD or TEST)")->required();
  compare->add_option("--mode", compare_flags.mode, "all (default) or new");
  compare->add_option("--modules", compare_flags.modules, "modules to compare (default: all)")
      ->delimiter(',');
  compare->add_option("--folders", compare_flags.folders, "gallery folders (default: all)")
      ->delimiter(',');
  compare->add_flag("--json", compare_flags.json, "print the comparison as JSON");
  compare->add_option("--limit", compare_flags.limit,
                      "records shown per tab in the summary (0 = all)");

  std::string show_id;
  std::string show_tab;
  bool show_json = false;
  int64_t show_limit = 50;
  CLI::App* show = app.add_subcommand("show", "print a stored comparison");
  show->add_option("COMPARISON_ID", show_id, "the comparison")->required();
  show->add_option("--tab", show_tab, "only one tab: conflicts, new, modified or deleted");
  show->add_flag("--json", show_json, "print as JSON");
  show->add_option("--limit", show_limit, "records shown per tab (0 = all)");

  std::string sync_id_arg;
  std::vector<std::string> select;
  std::vector<std::string> deselect;
  std::vector<std::string> resolve;
  bool test_import = false;
  std::string at;
  bool sync_json = false;
  CLI::App* sync_cmd = app.add_subcommand("sync", "execute (or test-import) a comparison");
  sync_cmd->add_option("COMPARISON_ID", sync_id_arg, "the reviewed comparison")->required();
  sync_cmd->add_option("--select", select, "also select T:ID (e.g. cms_pages:57)")
      ->expected(1)
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeAll);
  sync_cmd->add_option("--deselect", deselect, "leave T:ID out")
      ->expected(1)
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeAll);
  sync_cmd->add_option("--resolve", resolve, "T:ID=overwrite|insert_as_new|link|merge")
      ->expected(1)
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeAll);
  sync_cmd->add_flag("--test-import", test_import, "run everything, then roll it back");
  sync_cmd->add_option("--at", at, "schedule for an ISO-8601 time (needs the service)");
  sync_cmd->add_flag("--json", sync_json, "print the result as JSON");

  std::string undo_id;
  bool undo_json = false;
  CLI::App* undo_cmd = app.add_subcommand("undo", "undo a successful sync");
  undo_cmd->add_option("SYNC_ID", undo_id, "the sync")->required();
  undo_cmd->add_flag("--json", undo_json, "print the result as JSON");

  bool history_json = false;
  CLI::App* history_cmd = app.add_subcommand("history", "list syncs and how they ended");
  history_cmd->add_flag("--json", history_json, "print as JSON");

  bool jobs_json = false;
  CLI::App* jobs_cmd = app.add_subcommand("jobs", "list scheduled and finished jobs");
  jobs_cmd->add_flag("--json", jobs_json, "print as JSON");
  std::string cancel_id;
  CLI::App* cancel_cmd = app.add_subcommand("cancel", "cancel a scheduled sync");
  cancel_cmd->add_option("JOB_ID", cancel_id, "the job")->required();
  bool messages_json = false;
  bool messages_all = false;
  CLI::App* messages_cmd = app.add_subcommand("messages", "your messages, newest first");
  messages_cmd->add_flag("--json", messages_json, "print as JSON");
  messages_cmd->add_flag("--all", messages_all, "every user's messages");
  bool serve_once = false;
  int serve_poll = 5;
  CLI::App* serve_cmd = app.add_subcommand("serve", "run scheduled syncs when they are due");
  serve_cmd->add_flag("--once", serve_once, "run the due jobs once and stop");
  serve_cmd->add_option("--poll", serve_poll, "seconds between looks at the schedule")
      ->check(CLI::Range(1, 3600));

  CLI::App* demo_cmd = app.add_subcommand("demo", "demo environments");
  demo_cmd->require_subcommand(1);
  std::string demo_dir;
  int64_t demo_records = 0;
  CLI::App* demo_init = demo_cmd->add_subcommand("init", "write a demo PROD and TEST");
  demo_init->add_option("DIR", demo_dir, "directory to create")->required();
  demo_init->add_option("--records", demo_records, "extra CMS pages per side (e.g. 1000000)")
      ->check(CLI::NonNegativeNumber);

  std::vector<std::string> reversed(args.rbegin(), args.rend());
  try {
    app.parse(reversed);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e, out, err);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e, out, err);
  } catch (const CLI::ParseError& e) {
    err << "envsync: error: " << e.what() << " (see envsync --help)\n";
    return kExitBadInput;
  }
  for (const std::string& flag : compare_flags.modules) {
    if (flag.empty()) return Fail(err, Status::InvalidArgument("--modules holds an empty name"));
  }

  if (demo_init->parsed()) return DemoInit(demo_dir, demo_records, out, err);

  auto config = LoadConfig(ConfigPath(config_flag));
  if (!config.ok()) return Fail(err, config.status());

  if (jobs_cmd->parsed() || cancel_cmd->parsed() || messages_cmd->parsed() || serve_cmd->parsed()) {
    auto manifest = LoadManifest(*config);
    if (!manifest.ok()) return Fail(err, manifest.status());
    if (serve_cmd->parsed()) return Serve(*config, *manifest, serve_once, serve_poll, err);
    auto state = OpenState(*config, *manifest, err);
    if (!state.ok()) return Fail(err, state.status());
    if (cancel_cmd->parsed()) {
      Status cancelled =
          service::CancelJob(**state, cancel_id, CurrentUser(), sync::DefaultSyncContext().now());
      if (!cancelled.ok()) return Fail(err, cancelled);
      out << "Cancelled job " << cancel_id << ".\n";
      return kExitOk;
    }
    if (jobs_cmd->parsed()) {
      auto jobs = (*state)->ListJobs();
      if (!jobs.ok()) return Fail(err, jobs.status());
      nlohmann::json list = nlohmann::json::array();
      for (const store::Job& j : *jobs) {
        list.push_back(
            {{"job_id", j.id},
             {"kind", j.kind},
             {"state", j.state},
             {"run_at", j.run_at},
             {"created_at", j.created_at},
             {"started_at", j.started_at},
             {"finished_at", j.finished_at},
             {"started_by", j.started_by},
             {"request", nlohmann::json::parse(j.request, nullptr, false)},
             {"result", j.result.empty() ? nlohmann::json()
                                         : nlohmann::json::parse(j.result, nullptr, false)},
             {"error", j.error.empty() ? nlohmann::json() : nlohmann::json(j.error)}});
      }
      if (jobs_json) {
        out << list.dump(2) << "\n";
      } else {
        for (const store::Job& j : *jobs) {
          out << fmt::format("{}  {}  {:<10} at {}  by {}{}\n", j.id, j.kind, j.state, j.run_at,
                             j.started_by, j.error.empty() ? "" : "  -- " + j.error);
        }
        if (jobs->empty()) out << "No jobs.\n";
      }
      return kExitOk;
    }
    auto messages = (*state)->ListMessages(messages_all ? "" : CurrentUser());
    if (!messages.ok()) return Fail(err, messages.status());
    nlohmann::json list = nlohmann::json::array();
    for (const store::Message& m : *messages) {
      list.push_back({{"id", m.id},
                      {"user", m.user},
                      {"created_at", m.created_at},
                      {"title", m.title},
                      {"body", m.body},
                      {"job_id", m.job_id},
                      {"read", m.read}});
    }
    if (messages_json) {
      out << list.dump(2) << "\n";
    } else {
      for (const store::Message& m : *messages) {
        out << fmt::format("{}  {}\n    {}\n", m.created_at, m.title, m.body);
      }
      if (messages->empty()) out << "No messages.\n";
    }
    return kExitOk;
  }

  if (compare->parsed()) {
    auto comparison = RunCompare(*config, compare_flags, /*quiet=*/false, err);
    if (!comparison.ok()) return Fail(err, comparison.status());
    if (compare_flags.json) {
      out << store::ComparisonToJson(*comparison, std::nullopt, 2) << "\n";
    } else {
      PrintSummary(*comparison, std::nullopt, compare_flags.limit, out);
    }
    return kExitOk;
  }
  if (sync_cmd->parsed() || undo_cmd->parsed() || history_cmd->parsed()) {
    auto manifest = LoadManifest(*config);
    if (!manifest.ok()) return Fail(err, manifest.status());
    if (!history_cmd->parsed() && config->home != "PROD") {
      return Fail(err, Status::InvalidArgument(fmt::format(
                           "{}: home is {}: comparisons and syncs can be started only from PROD",
                           config->source_name, config->home)));
    }
    store::WorkLock lock;
    auto state = OpenState(*config, *manifest, err, history_cmd->parsed() ? nullptr : &lock);
    if (!state.ok()) return Fail(err, state.status());
    if (history_cmd->parsed()) {
      auto runs = (*state)->ListSyncs();
      if (!runs.ok()) return Fail(err, runs.status());
      nlohmann::json list = nlohmann::json::array();
      for (const store::SyncRun& r : *runs) {
        list.push_back({{"sync_id", r.id},
                        {"comparison_id", r.comparison_id},
                        {"from", r.from},
                        {"to", r.to},
                        {"started_by", r.started_by},
                        {"started_at", r.created_at},
                        {"finished_at", r.finished_at},
                        {"test_import", r.test_import},
                        {"status", r.status},
                        {"applied", nlohmann::json::parse(r.applied.empty() ? "{}" : r.applied)},
                        {"error", r.error.empty() ? nlohmann::json() : nlohmann::json(r.error)}});
      }
      if (history_json) {
        out << list.dump(2) << "\n";
      } else {
        for (const auto& r : list) {
          out << fmt::format(
              "{}  {}  {} -> {}  {}{}  by {}  comparison {}  new {} modified {} "
              "deleted {}{}\n",
              r["sync_id"].get<std::string>(), r["started_at"].get<std::string>(),
              r["from"].get<std::string>(), r["to"].get<std::string>(),
              r["status"].get<std::string>(), r["test_import"].get<bool>() ? " (test import)" : "",
              r["started_by"].get<std::string>(), r["comparison_id"].get<std::string>(),
              r["applied"].value("new", 0), r["applied"].value("modified", 0),
              r["applied"].value("deleted", 0),
              r["error"].is_null() ? "" : "  -- " + r["error"].get<std::string>());
        }
        if (list.empty()) out << "No syncs yet.\n";
      }
      return kExitOk;
    }
    std::string from;
    std::string to;
    if (sync_cmd->parsed()) {
      auto comparison = (*state)->LoadComparison(sync_id_arg);
      if (!comparison.ok()) return Fail(err, comparison.status());
      if (!at.empty()) {
        auto run_at = service::ParseScheduleTime(at);
        if (!run_at.ok()) return Fail(err, run_at.status());
        sync::SyncRequest request{sync_id_arg, select,      deselect,
                                  resolve,     test_import, CurrentUser()};
        const sync::SyncContext ids = sync::DefaultSyncContext();
        auto job = service::ScheduleSync(**state, request, *run_at, CurrentUser(), ids.now(),
                                         sync::RandomJobId());
        if (!job.ok()) return Fail(err, job.status());
        if (sync_json) {
          out << nlohmann::json{{"sync_id", job->id},
                                {"status", "scheduled"},
                                {"test_import", test_import},
                                {"applied", {{"new", 0}, {"modified", 0}, {"deleted", 0}}},
                                {"run_at", job->run_at},
                                {"error", nullptr}}
                     .dump(2)
              << "\n";
        } else {
          out << fmt::format(
              "Scheduled: job {} runs comparison {} at {} (UTC), when `envsync serve` is "
              "running. Cancel: envsync cancel {}\n",
              job->id, sync_id_arg, job->run_at, job->id);
        }
        return kExitOk;
      }
      from = comparison->from;
      to = comparison->to;
    } else {
      auto run = (*state)->LoadSync(undo_id);
      if (!run.ok()) return Fail(err, run.status());
      from = run->from;
      to = run->to;
    }
    auto source = OpenNamed(*config, from, "source");
    if (!source.ok()) return Fail(err, source.status());
    auto target = OpenForWriting(*config, to);
    if (!target.ok()) return Fail(err, target.status());
    sync::SyncContext context = sync::DefaultSyncContext();
    Result<sync::SyncOutcome> outcome = Status::Internal("not run");
    if (sync_cmd->parsed()) {
      sync::SyncRequest request;
      request.comparison_id = sync_id_arg;
      request.select = select;
      request.deselect = deselect;
      request.resolve = resolve;
      request.test_import = test_import;
      request.started_by = CurrentUser();
      outcome = sync::ExecuteSync(*manifest, **source, **target, **state, request, context);
      if (outcome.ok()) {
        Notify(*config, **state,
               service::SyncEndedMessage(*outcome, CurrentUser(), context.now(), ""),
               "/syncs/" + outcome->sync_id, err);
      }
    } else {
      outcome = sync::UndoSync(*manifest, **source, **target, **state, undo_id, context);
    }
    if (!outcome.ok()) return Fail(err, outcome.status());
    const bool json_out = sync_cmd->parsed() ? sync_json : undo_json;
    if (json_out) {
      out << OutcomeJson(*outcome).dump(2) << "\n";
    } else if (undo_cmd->parsed()) {
      out << fmt::format("Undid sync {}: {} records restored, {} removed.\n", undo_id,
                         outcome->applied.modified + outcome->applied.new_records,
                         outcome->applied.deleted);
    } else {
      out << fmt::format("{}: {} {} -> {}{}: new {}, modified {}, deleted {}, files {}\n",
                         outcome->success ? "Success" : "FAILURE", outcome->sync_id, from, to,
                         outcome->test_import ? " (test import: nothing was kept)" : "",
                         outcome->applied.new_records, outcome->applied.modified,
                         outcome->applied.deleted, outcome->files);
      if (!outcome->success) out << "Reason: " << outcome->error << "\n";
      std::string phases;
      for (const auto& [phase, seconds] : outcome->timings) {
        phases += fmt::format("{}{} {:.2f} s", phases.empty() ? "" : ", ", phase, seconds);
      }
      if (!phases.empty()) err << "time: " << phases << "\n";
    }
    return outcome->success ? kExitOk : kExitUnavailable;
  }
  if (show->parsed()) {
    std::optional<Tab> tab;
    if (!show_tab.empty()) {
      tab = ParseTab(show_tab);
      if (!tab) {
        return Fail(err, Status::InvalidArgument(fmt::format(
                             "--tab '{}' is not a tab: use conflicts, new, modified or deleted",
                             show_tab)));
      }
    }
    auto state = store::OpenStateStore(config->state);
    if (!state.ok()) return Fail(err, state.status());
    auto comparison = (*state)->LoadComparison(show_id);
    if (!comparison.ok()) return Fail(err, comparison.status());
    if (show_json) {
      out << store::ComparisonToJson(*comparison, tab, 2) << "\n";
    } else {
      PrintSummary(*comparison, tab, show_limit, out);
    }
    return kExitOk;
  }
  return kExitBadInput;
}

}  // namespace envsync::cli
