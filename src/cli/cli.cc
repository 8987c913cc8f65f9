#include "envsync/cli/cli.h"

#include <fmt/format.h>
#include <malloc.h>
#include <termios.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>

#include "envsync/core/config.h"
#include "envsync/core/embedded_data.h"
#include "envsync/core/manifest.h"
#include "envsync/demo/demo.h"
#include "envsync/service/doctor.h"
#include "envsync/service/jobs.h"
#include "envsync/service/mail.h"
#include "envsync/service/server.h"
#include "envsync/service/time_zone.h"
#include "envsync/service/users.h"
#include "envsync/service/views.h"
#include "envsync/service/workspace.h"
#include "envsync/store/environment.h"
#include "envsync/store/json_codec.h"
#include "envsync/store/state_store.h"
#include "envsync/sync/compare.h"
#include "envsync/sync/sync.h"
#include "envsync/sync/tracking.h"
#include "store/shared_library.h"

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

// `envsync doctor`: opens the state store as it is (settling nothing, so what a stopped process
// left shows) and prints every finding. Exit 0 when all is sound, 1 when anything is not.
int Doctor(const service::Workspace& ws, bool as_json, std::ostream& out, std::ostream& err) {
  auto state = store::OpenStateStore(ws.config().state);
  if (!state.ok()) return Fail(err, state.status());
  auto report = service::Diagnose(ws, **state);
  if (!report.ok()) return Fail(err, report.status());
  if (as_json) {
    nlohmann::json findings = nlohmann::json::array();
    for (const service::DoctorFinding& f : report->findings) {
      findings.push_back({{"check", f.check}, {"ok", f.ok}, {"detail", f.detail}});
    }
    out << nlohmann::json{{"healthy", report->healthy()}, {"findings", findings}}.dump(2) << "\n";
  } else {
    for (const service::DoctorFinding& f : report->findings) {
      out << fmt::format("{:<8} {}{}{}\n", f.ok ? "ok" : "PROBLEM", f.check,
                         f.detail.empty() ? "" : ": ", f.detail);
    }
    out << (report->healthy() ? "envsync doctor: everything is sound.\n"
                              : "envsync doctor: problems found (see above).\n");
  }
  return report->healthy() ? kExitOk : kExitUnavailable;
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

std::string ConfigPath(const std::string& flag) {
  if (!flag.empty()) return flag;
  if (const char* env = std::getenv("ENVSYNC_CONFIG"); env != nullptr && *env != '\0') return env;
  return "envsync.toml";
}

// Who runs this command: --as, else $ENVSYNC_USER, else $USER, else "cli". Messages and mail
// go to that user.
std::string g_as;
std::string CurrentUser() {
  if (!g_as.empty()) return g_as;
  for (const char* name : {"ENVSYNC_USER", "USER"}) {
    const char* value = std::getenv(name);
    if (value != nullptr && *value != '\0') return value;
  }
  return "cli";
}

struct CompareFlags {
  service::CompareOptions options;
  bool json = false;
  int64_t limit = 50;
};

void Log(std::ostream& err, const std::string& line) { err << "envsync: " << line << "\n"; }

// Records who did what in the audit log; a failure to record is reported, not fatal.
void Audit(store::StateStore& state, const std::string& action, const std::string& target,
           const nlohmann::json& detail, std::ostream& err) {
  store::AuditEntry entry;
  entry.at = sync::DefaultSyncContext().now();
  entry.user = CurrentUser();
  entry.action = action;
  entry.target = target;
  entry.detail = detail.dump();
  Status added = state.AddAudit(entry);
  if (!added.ok()) err << "envsync: warning: audit log: " << added.message() << "\n";
}

std::string Notify(const service::Workspace& ws, store::StateStore& state,
                   const store::Message& message, const std::string& link, std::ostream& err) {
  std::string problem = ws.Notify(state, message, link);
  if (!problem.empty()) err << "envsync: warning: " << problem << "\n";
  return problem;
}

// Compares as `flags` say; the state store it opened is handed to `*open_state` when given (the
// caller closes it), else closed before this returns.
Result<Comparison> RunCompare(const service::Workspace& ws, const CompareFlags& flags, bool quiet,
                              std::ostream& err,
                              std::unique_ptr<store::StateStore>* open_state = nullptr) {
  // Checked before anything is opened, so a bad name is bad input even with a database missing.
  ENVSYNC_RETURN_IF_ERROR(ws.CheckCompare(flags.options, "--"));
  auto state = ws.OpenState([&](const std::string& line) { Log(err, line); });
  if (!state.ok()) return state.status();
  sync::CompareContext context = sync::DefaultCompareContext();
  const auto started = std::chrono::steady_clock::now();
  auto seconds_since = [started] {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  };
  const bool tty = !quiet && isatty(STDERR_FILENO) == 1 && &err == &std::cerr;
  uint64_t bytes_read = 0;
  context.progress = [&](const sync::CompareProgress& p) {
    bytes_read = p.bytes_read;
    if (tty && !p.done) {
      const double s = seconds_since();
      err << fmt::format("\rcomparing {}: {} records, {:.0f} records/s   ", p.table,
                         Thousands(p.records), s > 0 ? p.records / s : 0.0)
          << std::flush;
    }
  };
  auto comparison = ws.Compare(**state, flags.options, context, "--");
  if (tty) err << "\r" << std::string(70, ' ') << "\r";
  if (comparison.ok() && !quiet) {
    Audit(**state, "compare", comparison->id,
          nlohmann::json::parse(service::CompareOptionsToJson(flags.options, CurrentUser())), err);
    Notify(ws, **state, service::ComparisonFinishedMessage(*comparison, CurrentUser()),
           "/comparisons/" + comparison->id, err);
    const double s = seconds_since();
    err << fmt::format("compared {} records in {:.3f} s ({:.0f} records/s){}\n",
                       Thousands(comparison->records_compared), s,
                       s > 0 ? comparison->records_compared / s : 0.0,
                       bytes_read > 0 ? fmt::format("; read {} bytes from the database servers",
                                                    Thousands(static_cast<int64_t>(bytes_read)))
                                      : "");
    if (!comparison->tracked_tables.empty()) {
      std::string tables;
      for (const std::string& t : comparison->tracked_tables) {
        tables += (tables.empty() ? "" : ", ") + t;
      }
      err << fmt::format("read through the change logs (envsync track): {}\n", tables);
    }
  }
  if (open_state != nullptr) *open_state = std::move(*state);
  return comparison;
}

// `envsync serve`'s code: the module envsync-serve.so, beside this executable, else where the build
// put it (src/service/CMakeLists.txt says why the server is a module).
Result<service::ServeFunction> LoadServer() {
  std::vector<std::filesystem::path> places;
  std::error_code error;
  const std::filesystem::path self = std::filesystem::read_symlink("/proc/self/exe", error);
  if (!error) places.push_back(self.parent_path() / "envsync-serve.so");
  if (places.empty() || places.front() != ENVSYNC_SERVE_MODULE) {
    places.emplace_back(ENVSYNC_SERVE_MODULE);
  }
  for (const std::filesystem::path& place : places) {
    if (!std::filesystem::is_regular_file(place, error)) continue;
    auto module = store::SharedLibrary::Open(place.string(), "envsync serve");
    if (!module.ok()) return module.status();
    service::ServeFunction (*serve_function)() = nullptr;
    ENVSYNC_RETURN_IF_ERROR(module->Take("envsync_serve_function", &serve_function));
    return serve_function();
  }
  std::string tried;
  for (const std::filesystem::path& place : places) {
    tried += (tried.empty() ? "" : " nor at ") + place.string();
  }
  return Status::Unavailable(
      fmt::format("envsync serve needs its module envsync-serve.so, not found at {}", tried));
}

std::atomic<bool> g_stop{false};
void RequestStop(int) { g_stop = true; }

// Reads a password from stdin: without echo from a terminal, else the first line.
Result<std::string> ReadPassword(std::ostream& err) {
  const bool tty = isatty(STDIN_FILENO) == 1;
  termios saved{};
  if (tty) {
    err << "Password: " << std::flush;
    tcgetattr(STDIN_FILENO, &saved);
    termios quiet = saved;
    quiet.c_lflag &= ~static_cast<tcflag_t>(ECHO);
    tcsetattr(STDIN_FILENO, TCSANOW, &quiet);
  }
  std::string password;
  const bool read = static_cast<bool>(std::getline(std::cin, password));
  if (tty) {
    tcsetattr(STDIN_FILENO, TCSANOW, &saved);
    err << "\n";
  }
  if (!read) return Status::InvalidArgument("no password on stdin: pipe it in or type it");
  if (!password.empty() && password.back() == '\r') password.pop_back();
  return password;
}

int DemoInit(const std::string& dir, int64_t records, const std::string& admin, std::ostream& out,
             std::ostream& err) {
  demo::DemoOptions options{dir, records};
  const auto started = std::chrono::steady_clock::now();
  Status status = demo::CreateCommonState(options);
  if (status.ok()) status = demo::WriteConfig(options);
  if (!status.ok()) return Fail(err, status);
  const demo::DemoPaths paths = demo::PathsFor(dir);
  auto config = LoadConfig(paths.config.string());
  if (!config.ok()) return Fail(err, config.status());
  auto ws = service::Workspace::Open(*config);
  if (!ws.ok()) return Fail(err, ws.status());
  // The last sync left both sides equal: a comparison now records that common state as the
  // base, and the pending work made since is applied on top.
  CompareFlags flags;
  flags.options.from = "TEST";
  flags.options.to = "PROD";
  auto baseline = RunCompare(**ws, flags, /*quiet=*/true, err);
  if (!baseline.ok()) return Fail(err, baseline.status());
  status = demo::ApplyPendingWork(options);
  if (!status.ok()) return Fail(err, status);
  // A demo admin with a fresh random password, written beside the config for the demo script.
  const std::string password = service::RandomToken(9);
  {
    auto state = store::OpenStateStore(config->state);
    if (!state.ok()) return Fail(err, state.status());
    status = service::AddUser(**state, admin, "admin", password, "UTC",
                              sync::DefaultSyncContext().now());
    if (!status.ok()) return Fail(err, status);
  }
  const std::filesystem::path login_file = paths.config.parent_path() / "demo-login.txt";
  {
    std::ofstream login(login_file, std::ios::trunc);
    login << admin << "\n" << password << "\n";
    if (!login) return Fail(err, Status::Unavailable("cannot write " + login_file.string()));
  }
  std::filesystem::permissions(
      login_file, std::filesystem::perms::owner_read | std::filesystem::perms::owner_write);
  const double s =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  out << fmt::format(
      "Demo environments written to {} in {:.1f} s ({} records per side):\n"
      "  config  {}\n  PROD    {}  (assets {})\n  TEST    {}  (assets {})\n  state   {}\n"
      "Both sides were synchronized once (base recorded by comparison {}), then edited.\n"
      "Demo admin: {} (password in {})\n"
      "Next: envsync --config {} compare --from TEST --to PROD\n",
      paths.config.parent_path().string(), s, Thousands(baseline->records_compared / 2),
      paths.config.string(), paths.prod_db.string(), paths.prod_assets.string(),
      paths.test_db.string(), paths.test_assets.string(), paths.state.string(), baseline->id, admin,
      login_file.string(), paths.config.string());
  return kExitOk;
}

}  // namespace

// `envsync track enable|disable|status|prune ENV`.
static int Track(const service::Workspace& ws, const std::vector<CLI::App*>& subs,
                 const std::string& name, bool json, std::ostream& out, std::ostream& err) {
  const EnvironmentConfig* environment = ws.config().Find(name);
  if (environment == nullptr) {
    return Fail(err, Status::InvalidArgument(
                         fmt::format("ENV '{}' is not an environment of {}: use PROD or TEST", name,
                                     ws.config().source_name)));
  }
  if (subs[0]->parsed()) {
    auto tables =
        sync::EnableTracking(ws.manifest(), *environment, sync::DefaultSyncContext().now());
    if (!tables.ok()) return Fail(err, tables.status());
    if (json) {
      out << nlohmann::json{{"environment", name}, {"enabled", true}, {"tables", *tables}}.dump(2)
          << "\n";
    } else {
      std::string list;
      for (const std::string& table : *tables) list += (list.empty() ? "" : ", ") + table;
      out << fmt::format(
          "Change tracking is on in {}: triggers log every write to {}. The next comparison "
          "reads these tables whole once; later ones read only what the log lists.\n",
          name, list);
    }
    return kExitOk;
  }
  if (subs[1]->parsed()) {
    Status disabled = sync::DisableTracking(*environment);
    if (!disabled.ok()) return Fail(err, disabled);
    if (json) {
      out << nlohmann::json{{"environment", name}, {"enabled", false}}.dump(2) << "\n";
    } else {
      out << fmt::format("Change tracking is off in {}: its triggers and log are gone.\n", name);
    }
    return kExitOk;
  }
  auto state = ws.OpenState([&](const std::string& line) { Log(err, line); });
  if (!state.ok()) return Fail(err, state.status());
  if (subs[3]->parsed()) {
    auto pruned = sync::PruneTracking(*environment, **state);
    if (!pruned.ok()) return Fail(err, pruned.status());
    if (json) {
      out << nlohmann::json{{"environment", name}, {"pruned", *pruned}}.dump(2) << "\n";
    } else {
      out << fmt::format("Pruned {} log entries from {}.\n", Thousands(*pruned), name);
    }
    return kExitOk;
  }
  auto report = sync::ReportTracking(*environment, **state);
  if (!report.ok()) return Fail(err, report.status());
  if (json) {
    nlohmann::json body{{"environment", name}, {"enabled", report->state.has_value()}};
    if (report->state) {
      body["epoch"] = report->state->epoch;
      body["enabled_at"] = report->state->enabled_at;
      body["tables"] = report->state->tables;
      body["broken"] = report->state->broken;
      body["log_rows"] = report->state->log_rows;
      body["position"] = report->state->position;
      body["marked_tables"] = report->marked_tables;
    }
    out << body.dump(2) << "\n";
    return kExitOk;
  }
  if (!report->state) {
    out << fmt::format("Change tracking is off in {} (envsync track enable {}).\n", name, name);
    return kExitOk;
  }
  std::string tables;
  for (const std::string& table : report->state->tables) {
    const bool marked = std::find(report->marked_tables.begin(), report->marked_tables.end(),
                                  table) != report->marked_tables.end();
    tables += fmt::format("{}{}{}", tables.empty() ? "" : ", ", table,
                          marked ? "" : " (not compared since enabled)");
  }
  out << fmt::format("Change tracking is on in {} since {} (epoch {}).\nTables: {}\n", name,
                     report->state->enabled_at, report->state->epoch, tables);
  for (const std::string& table : report->state->broken) {
    out << fmt::format(
        "BROKEN: {} lost some of its triggers; it is read whole until `envsync "
        "track enable {}` runs again.\n",
        table, name);
  }
  out << fmt::format("Log: {} entries, position {}.\n", Thousands(report->state->log_rows),
                     report->state->position);
  return kExitOk;
}

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
  g_as.clear();
  app.add_option("--as", g_as, "act as this user (default: $ENVSYNC_USER); mail goes to them");

  CompareFlags compare_flags;
  CLI::App* compare = app.add_subcommand("compare", "compare two environments");
  compare->add_option("--from", compare_flags.options.from, "source environment (PROD or TEST)")
      ->required();
  compare->add_option("--to", compare_flags.options.to, "target environment (PROD or TEST)")
      ->required();
  compare->add_option("--mode", compare_flags.options.mode, "all (default) or new");
  compare
      ->add_option("--modules", compare_flags.options.modules, "modules to compare (default: all)")
      ->delimiter(',');
  compare->add_option("--folders", compare_flags.options.folders, "gallery folders (default: all)")
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

  bool doctor_json = false;
  CLI::App* doctor_cmd = app.add_subcommand(
      "doctor", "check envsync's state and the environments for damage (reads only)");
  doctor_cmd->add_flag("--json", doctor_json, "print the findings as JSON");

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
  service::ServeOptions serve_options;
  CLI::App* serve_cmd =
      app.add_subcommand("serve", "serve the REST API and run jobs when they are due");
  serve_cmd->add_flag("--once", serve_once, "run the due jobs once and stop (no HTTP)");
  serve_cmd->add_option("--listen", serve_options.listen,
                        "HOST:PORT to serve on (default 127.0.0.1:8080; port 0 = any free one)");
  serve_cmd
      ->add_option("--poll", serve_options.poll_seconds, "seconds between looks at the schedule")
      ->check(CLI::Range(1, 3600));
  serve_cmd->add_option("--web", serve_options.web_root,
                        "folder with the page's files (default: this source tree's web/)");

  CLI::App* user_cmd = app.add_subcommand("user", "manage the service's users");
  user_cmd->require_subcommand(1);
  std::string user_email;
  std::string user_role;
  std::string user_zone = "UTC";
  CLI::App* user_add = user_cmd->add_subcommand("add", "add a user (password from stdin)");
  user_add->add_option("EMAIL", user_email, "the user's e-mail address")->required();
  user_add->add_option("--role", user_role, "viewer, operator or admin")->required();
  user_add->add_option("--time-zone", user_zone, "tz database zone times are shown in");
  bool users_json = false;
  CLI::App* user_list = user_cmd->add_subcommand("list", "list the users");
  user_list->add_flag("--json", users_json, "print as JSON");
  bool audit_json = false;
  CLI::App* audit_cmd = app.add_subcommand("audit", "who did what, to which records, when");
  audit_cmd->add_flag("--json", audit_json, "print as JSON");

  CLI::App* track_cmd = app.add_subcommand(
      "track",
      "opt-in change tracking: triggers log what the platform writes, so a comparison "
      "reads only what changed");
  track_cmd->require_subcommand(1);
  std::string track_env;
  bool track_json = false;
  std::vector<CLI::App*> track_subs;
  for (const auto& [name, help] : std::vector<std::pair<std::string, std::string>>{
           {"enable", "install the change log and its triggers in ENV (a new epoch)"},
           {"disable", "remove the change log and its triggers from ENV, leaving nothing behind"},
           {"status", "show whether ENV is tracked, its log and what the comparisons have read"},
           {"prune", "delete the log entries every comparison has read"}}) {
    CLI::App* sub = track_cmd->add_subcommand(name, help);
    sub->add_option("ENV", track_env, "the environment: PROD or TEST")->required();
    sub->add_flag("--json", track_json, "print as JSON");
    track_subs.push_back(sub);
  }

  CLI::App* demo_cmd = app.add_subcommand("demo", "demo environments");
  demo_cmd->require_subcommand(1);
  std::string demo_dir;
  int64_t demo_records = 0;
  std::string demo_admin = "admin@example.com";
  CLI::App* demo_init = demo_cmd->add_subcommand("init", "write a demo PROD and TEST");
  demo_init->add_option("DIR", demo_dir, "directory to create")->required();
  demo_init->add_option("--records", demo_records, "extra CMS pages per side (e.g. 1000000)")
      ->check(CLI::NonNegativeNumber);
  demo_init->add_option("--admin", demo_admin, "the demo admin's e-mail address");

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
  for (const std::string& flag : compare_flags.options.modules) {
    if (flag.empty()) return Fail(err, Status::InvalidArgument("--modules holds an empty name"));
  }

  // A one-shot command pads each new malloc heap to 64 MiB. A compare's reader threads allocate
  // each record they read in their own malloc arena, whose heap glibc otherwise makes read-write
  // a few pages at a time, one `mprotect` each (16,160 in the compare), serialized on
  // the process's memory-map lock with the other threads' page faults. With the pad (the most one
  // heap holds) each heap is made read-write whole when it is created: address space only, the
  // pages are still allocated when first written (docs/PERFORMANCE.md, "What the third session
  // of 2026-12-06 measured"). `serve` runs for days and keeps glibc's default: with the pad, each
  // of its arenas would keep up to 64 MiB of freed memory instead of handing it back.
  if (!serve_cmd->parsed()) mallopt(M_TOP_PAD, 64 << 20);

  if (demo_init->parsed()) return DemoInit(demo_dir, demo_records, demo_admin, out, err);

  auto config = LoadConfig(ConfigPath(config_flag));
  if (!config.ok()) return Fail(err, config.status());

  auto ws = service::Workspace::Open(*config);
  if (!ws.ok()) return Fail(err, ws.status());
  const auto log = [&](const std::string& line) { Log(err, line); };

  if (serve_cmd->parsed()) {
    if (serve_once) {
      Status ran = service::RunJobsOnce(**ws);
      return ran.ok() ? kExitOk : Fail(err, ran);
    }
    if (serve_options.web_root.empty() && std::filesystem::is_directory(ENVSYNC_WEB_DIR)) {
      serve_options.web_root = ENVSYNC_WEB_DIR;
    }
    g_stop = false;
    std::signal(SIGTERM, RequestStop);
    std::signal(SIGINT, RequestStop);
    auto serve = LoadServer();
    if (!serve.ok()) return Fail(err, serve.status());
    Status served = (*serve)(**ws, serve_options, g_stop);
    return served.ok() ? kExitOk : Fail(err, served);
  }
  if (doctor_cmd->parsed()) return Doctor(**ws, doctor_json, out, err);
  if (user_cmd->parsed() || audit_cmd->parsed()) {
    auto state = (*ws)->OpenState(log);
    if (!state.ok()) return Fail(err, state.status());
    if (user_add->parsed()) {
      auto password = ReadPassword(err);
      if (!password.ok()) return Fail(err, password.status());
      Status added = service::AddUser(**state, user_email, user_role, *password, user_zone,
                                      sync::DefaultSyncContext().now());
      if (!added.ok()) return Fail(err, added);
      Audit(**state, "user.add", user_email, {{"role", user_role}, {"time_zone", user_zone}}, err);
      out << fmt::format("User {} ({}) saved.\n", user_email, user_role);
      return kExitOk;
    }
    if (user_list->parsed()) {
      auto users = (*state)->ListUsers();
      if (!users.ok()) return Fail(err, users.status());
      nlohmann::json list = nlohmann::json::array();
      for (const store::User& u : *users) {
        list.push_back({{"email", u.email},
                        {"role", u.role},
                        {"time_zone", u.time_zone},
                        {"created_at", u.created_at}});
        if (!users_json) out << fmt::format("{}  {}  {}\n", u.email, u.role, u.time_zone);
      }
      if (users_json) out << list.dump(2) << "\n";
      if (!users_json && users->empty()) out << "No users.\n";
      return kExitOk;
    }
    auto entries = (*state)->ListAudit();
    if (!entries.ok()) return Fail(err, entries.status());
    nlohmann::json list = nlohmann::json::array();
    for (const store::AuditEntry& e : *entries) {
      list.push_back(service::AuditJson(e));
      if (!audit_json) {
        out << fmt::format("{}  {}  {}  {}  {}\n", e.at, e.user, e.action, e.target, e.detail);
      }
    }
    if (audit_json) out << list.dump(2) << "\n";
    if (!audit_json && entries->empty()) out << "The audit log is empty.\n";
    return kExitOk;
  }

  if (jobs_cmd->parsed() || cancel_cmd->parsed() || messages_cmd->parsed()) {
    auto state = (*ws)->OpenState(log);
    if (!state.ok()) return Fail(err, state.status());
    if (cancel_cmd->parsed()) {
      Status cancelled =
          service::CancelJob(**state, cancel_id, CurrentUser(), sync::DefaultSyncContext().now());
      if (!cancelled.ok()) return Fail(err, cancelled);
      Audit(**state, "job.cancel", cancel_id, nlohmann::json::object(), err);
      out << "Cancelled job " << cancel_id << ".\n";
      return kExitOk;
    }
    if (jobs_cmd->parsed()) {
      auto jobs = (*state)->ListJobs();
      if (!jobs.ok()) return Fail(err, jobs.status());
      nlohmann::json list = nlohmann::json::array();
      for (const store::Job& j : *jobs) list.push_back(service::JobJson(j));
      if (jobs_json) {
        out << list.dump(2) << "\n";
      } else {
        for (const store::Job& j : *jobs) {
          out << fmt::format("{}  {:<7}  {:<10} at {}  by {}{}\n", j.id, j.kind, j.state, j.run_at,
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
      std::string job_state;
      if (!m.job_id.empty()) {
        auto job = (*state)->LoadJob(m.job_id);
        if (job.ok()) job_state = job->state;
      }
      list.push_back(service::MessageJson(m, job_state));
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

  if (track_cmd->parsed()) return Track(**ws, track_subs, track_env, track_json, out, err);

  if (compare->parsed()) {
    std::unique_ptr<store::StateStore> state;
    auto comparison = RunCompare(**ws, compare_flags, /*quiet=*/false, err, &state);
    // The store closes (its WAL copied back into the file, then synced) while the comparison
    // is printed and freed, and the freed memory handed back to the kernel: the process's end
    // would otherwise unmap it after the close (≈ 6 ms of the compare,
    // docs/PERFORMANCE.md). The thread is joined before the command returns.
    std::jthread closing([&state] { state.reset(); });
    if (!comparison.ok()) return Fail(err, comparison.status());
    if (compare_flags.json) {
      store::WriteComparisonJson(out, *comparison, std::nullopt, 2);
      out << "\n";
    } else {
      PrintSummary(*comparison, std::nullopt, compare_flags.limit, out);
    }
    *comparison = Comparison();
    malloc_trim(0);
    return kExitOk;
  }
  if (sync_cmd->parsed() || undo_cmd->parsed() || history_cmd->parsed()) {
    if (!history_cmd->parsed() && config->home != "PROD") {
      return Fail(err, Status::InvalidArgument(fmt::format(
                           "{}: home is {}: comparisons and syncs can be started only from PROD",
                           config->source_name, config->home)));
    }
    auto state = (*ws)->OpenState(log);
    if (!state.ok()) return Fail(err, state.status());
    if (history_cmd->parsed()) {
      auto runs = (*state)->ListSyncs();
      if (!runs.ok()) return Fail(err, runs.status());
      nlohmann::json list = nlohmann::json::array();
      for (const store::SyncRun& r : *runs) list.push_back(service::SyncRunJson(r));
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
    sync::SyncRequest request{sync_id_arg, select,        deselect, resolve,
                              test_import, CurrentUser(), ""};
    if (sync_cmd->parsed()) {
      auto comparison = (*state)->LoadComparisonHeader(sync_id_arg);
      if (!comparison.ok()) return Fail(err, comparison.status());
      if (!at.empty()) {
        // A time without a zone is read in the user's own zone, when the user has one.
        std::string zone;
        auto user = (*state)->FindUser(CurrentUser());
        if (user.ok() && user->has_value()) zone = (*user)->time_zone;
        auto run_at = service::ParseScheduleTime(at, zone);
        if (!run_at.ok()) return Fail(err, run_at.status());
        auto job = service::ScheduleSync(**state, request, *run_at, CurrentUser(),
                                         zone.empty() ? "UTC" : zone,
                                         sync::DefaultSyncContext().now(), sync::RandomJobId());
        if (!job.ok()) return Fail(err, job.status());
        Audit(**state, "sync.schedule", job->id, nlohmann::json::parse(job->request), err);
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
              "Scheduled: job {} runs comparison {} at {}, when `envsync serve` is running. "
              "Cancel: envsync cancel {}\n",
              job->id, sync_id_arg, service::ShowInZone(job->run_at, zone.empty() ? "UTC" : zone),
              job->id);
        }
        return kExitOk;
      }
      from = comparison->first.from;
      to = comparison->first.to;
    } else {
      auto run = (*state)->LoadSync(undo_id);
      if (!run.ok()) return Fail(err, run.status());
      from = run->from;
      to = run->to;
    }
    // Scheduling (above) writes only a job; a sync or an undo holds its target.
    auto lock = (*ws)->LockTarget(**state, to, log);
    if (!lock.ok()) return Fail(err, lock.status());
    if (*lock == nullptr) return Fail(err, service::Workspace::TargetBusy(to));
    Result<sync::SyncOutcome> outcome = Status::Internal("not run");
    if (sync_cmd->parsed()) {
      outcome = (*ws)->Sync(**state, request);
      if (outcome.ok()) {
        Audit(**state, test_import ? "sync.test_import" : "sync.run", outcome->sync_id,
              {{"request", nlohmann::json::parse(service::SyncRequestToJson(request))},
               {"outcome", service::OutcomeJson(*outcome)}},
              err);
        Notify(**ws, **state,
               service::SyncEndedMessage(*outcome, CurrentUser(), sync::DefaultSyncContext().now(),
                                         ""),
               "/syncs/" + outcome->sync_id, err);
      }
    } else {
      outcome = (*ws)->Undo(**state, undo_id);
      if (outcome.ok()) Audit(**state, "sync.undo", undo_id, service::OutcomeJson(*outcome), err);
    }
    if (!outcome.ok()) return Fail(err, outcome.status());
    const bool json_out = sync_cmd->parsed() ? sync_json : undo_json;
    if (json_out) {
      out << service::OutcomeJson(*outcome).dump(2) << "\n";
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
      store::WriteComparisonJson(out, *comparison, tab, 2);
      out << "\n";
    } else {
      PrintSummary(*comparison, tab, show_limit, out);
    }
    return kExitOk;
  }
  return kExitBadInput;
}

}  // namespace envsync::cli
