// `envsync serve`: the REST API of docs/API.md on cpp-httplib, and the thread that runs jobs.
#include "envsync/service/server.h"

#include <fmt/format.h>
#include <httplib.h>
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <semaphore>
#include <set>
#include <thread>

#include "envsync/service/jobs.h"
#include "envsync/service/mail.h"
#include "envsync/service/time_zone.h"
#include "envsync/service/users.h"
#include "envsync/service/views.h"
#include "envsync/store/environment.h"
#include "envsync/store/fault_injection.h"
#include "envsync/store/json_codec.h"
#include "service/runner.h"
#include "sync/ids.h"

namespace envsync::service {
namespace {

using nlohmann::json;

constexpr char kSessionCookie[] = "envsync_session";
constexpr auto kSessionLifetime = std::chrono::hours(12);

using sync::UtcIn;
std::string Now() { return sync::UtcNow(); }

// An error answer: one JSON shape with a stable code (docs/API.md).
struct ApiError {
  int http = 400;
  std::string code;
  std::string message;
  std::string field;
};

ApiError FromStatus(const Status& status) {
  switch (status.code()) {
    case Status::Code::kInvalidArgument:
      return {400, "bad_request", status.message(), ""};
    case Status::Code::kNotFound:
      return {404, "not_found", status.message(), ""};
    default:
      return {503, "unavailable", status.message(), ""};
  }
}

// The state store cannot be reached. Anyone may be asking (the health check and the login are
// public), so the answer does not say where the store is; the log does (password hidden).
ApiError StoreUnavailable(const Status& status) {
  spdlog::error("the state store cannot be reached: {}", status.message());
  return {503, "unavailable", "envsync's state store cannot be reached; the server's log says why",
          ""};
}

// Invalid UTF-8 (a path or parameter with %FF, say) is replaced rather than thrown on.
std::string Dump(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

void Send(httplib::Response& res, int http, const json& body) {
  res.status = http;
  res.set_content(Dump(body), "application/json");
}

// Deeper JSON than this is refused before it is parsed: nesting is recursion when JSON is
// copied, printed or freed.
constexpr int kMaxJsonDepth = 32;
bool TooDeep(std::string_view text) {
  int depth = 0;
  bool in_string = false;
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (in_string) {
      if (c == '\\')
        ++i;
      else if (c == '"')
        in_string = false;
    } else if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      if (++depth > kMaxJsonDepth) return true;
    } else if (c == ']' || c == '}') {
      --depth;
    }
  }
  return false;
}

void SendError(httplib::Response& res, const ApiError& e) {
  json error = {{"code", e.code}, {"message", e.message}};
  if (!e.field.empty()) error["field"] = e.field;
  Send(res, e.http, {{"error", error}});
}

// Reads a JSON object body; fields are then read with the helpers below, each naming the field
// when it is missing or of the wrong type.
class Body {
 public:
  static std::optional<Body> Parse(const httplib::Request& req, httplib::Response& res) {
    if (TooDeep(req.body)) {
      SendError(res, {400, "bad_request",
                      fmt::format("the request body nests deeper than {} levels", kMaxJsonDepth),
                      "body"});
      return std::nullopt;
    }
    json j = json::parse(req.body.empty() ? "{}" : req.body, nullptr, false);
    if (j.is_discarded() || !j.is_object()) {
      SendError(res, {400, "bad_request", "the request body is not a JSON object", "body"});
      return std::nullopt;
    }
    return Body(std::move(j));
  }
  std::optional<ApiError> String(const char* field, bool required, std::string* out) const {
    if (!j_.contains(field) || j_[field].is_null()) {
      if (!required) return std::nullopt;
      return ApiError{400, "bad_request", fmt::format("'{}' is required", field), field};
    }
    if (!j_[field].is_string()) {
      return ApiError{400, "bad_request", fmt::format("'{}' must be a string", field), field};
    }
    *out = j_[field].get<std::string>();
    return std::nullopt;
  }
  std::optional<ApiError> Strings(const char* field, std::vector<std::string>* out) const {
    if (!j_.contains(field) || j_[field].is_null()) return std::nullopt;
    const json& v = j_[field];
    if (!v.is_array() ||
        !std::all_of(v.begin(), v.end(), [](const json& x) { return x.is_string(); })) {
      return ApiError{400, "bad_request", fmt::format("'{}' must be a list of strings", field),
                      field};
    }
    *out = v.get<std::vector<std::string>>();
    return std::nullopt;
  }
  std::optional<ApiError> Bool(const char* field, bool* out) const {
    if (!j_.contains(field) || j_[field].is_null()) return std::nullopt;
    if (!j_[field].is_boolean()) {
      return ApiError{400, "bad_request", fmt::format("'{}' must be true or false", field), field};
    }
    *out = j_[field].get<bool>();
    return std::nullopt;
  }
  const json& raw() const { return j_; }

 private:
  explicit Body(json j) : j_(std::move(j)) {}
  json j_;
};

std::string CookieValue(const httplib::Request& req, const std::string& name) {
  const std::string header = req.get_header_value("Cookie");
  size_t pos = 0;
  while (pos < header.size()) {
    size_t end = header.find(';', pos);
    if (end == std::string::npos) end = header.size();
    std::string_view part(header.data() + pos, end - pos);
    while (!part.empty() && part.front() == ' ') part.remove_prefix(1);
    if (part.size() > name.size() && part.substr(0, name.size()) == name &&
        part[name.size()] == '=') {
      return std::string(part.substr(name.size() + 1));
    }
    pos = end + 1;
  }
  return "";
}

bool SameToken(const std::string& a, const std::string& b) {
  if (a.size() != b.size() || a.empty()) return false;
  unsigned char diff = 0;
  for (size_t i = 0; i < a.size(); ++i) diff |= static_cast<unsigned char>(a[i] ^ b[i]);
  return diff == 0;
}

// State stores for the request threads: each request borrows one, so SQLite connections are
// never shared between threads.
class StorePool {
 public:
  explicit StorePool(const Workspace& workspace) : workspace_(workspace) {}
  class Lease {
   public:
    Lease(StorePool* pool, std::unique_ptr<store::StateStore> store)
        : pool_(pool), store_(std::move(store)) {}
    Lease(Lease&&) = default;
    ~Lease() {
      if (store_) pool_->Return(std::move(store_));
    }
    store::StateStore& operator*() { return *store_; }
    store::StateStore* operator->() { return store_.get(); }

   private:
    StorePool* pool_;
    std::unique_ptr<store::StateStore> store_;
  };
  Result<Lease> Borrow() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (!free_.empty()) {
        auto store = std::move(free_.back());
        free_.pop_back();
        return Lease(this, std::move(store));
      }
    }
    auto opened = store::OpenStateStore(workspace_.config().state);
    if (!opened.ok()) return opened.status();
    return Lease(this, std::move(*opened));
  }

 private:
  void Return(std::unique_ptr<store::StateStore> store) {
    std::lock_guard<std::mutex> lock(mutex_);
    free_.push_back(std::move(store));
  }
  const Workspace& workspace_;
  std::mutex mutex_;
  std::vector<std::unique_ptr<store::StateStore>> free_;
};

// A reviewer's saved choices on a comparison, over its default selection: records chosen in
// or out, and resolutions (a resolved conflict is selected).
struct Selection {
  std::set<std::string> select;
  std::set<std::string> deselect;
  std::map<std::string, std::string> resolve;

  // The saved selection (empty when none was saved). A store that cannot be read, or a saved
  // selection that is not JSON, is an error: answering with the defaults would let the next
  // save or sync silently drop the reviewer's choices.
  static Result<Selection> Load(store::StateStore& state, const std::string& comparison_id) {
    Selection s;
    auto saved = state.LoadSelection(comparison_id);
    if (!saved.ok()) return saved.status();
    if (saved->empty()) return s;
    json j = json::parse(*saved, nullptr, false);
    if (!j.is_object()) {
      return Status::Unavailable(
          fmt::format("the saved selection of comparison {} is not a JSON object", comparison_id));
    }
    auto strings = [&](const char* key, std::set<std::string>* out) {
      auto it = j.find(key);
      if (it == j.end() || !it->is_array()) return;
      for (const json& r : *it) {
        if (r.is_string()) out->insert(r.get<std::string>());
      }
    };
    strings("select", &s.select);
    strings("deselect", &s.deselect);
    auto resolve = j.find("resolve");
    if (resolve != j.end() && resolve->is_object()) {
      for (auto it = resolve->begin(); it != resolve->end(); ++it) {
        if (it->is_string()) s.resolve[it.key()] = it->get<std::string>();
      }
    }
    return s;
  }
  void Choose(const std::string& ref, bool selected) {
    if (!selected) resolve.erase(ref);
    (selected ? deselect : select).erase(ref);
    (selected ? select : deselect).insert(ref);
  }
  bool Selected(const std::string& ref, bool by_default) const {
    if (resolve.contains(ref)) return true;
    if (select.contains(ref)) return true;
    if (deselect.contains(ref)) return false;
    return by_default;
  }
  json ToJson() const { return {{"select", select}, {"deselect", deselect}, {"resolve", resolve}}; }
};

// `?limit=N` of a list route: 1..1000, 200 when absent or unreadable.
size_t ListLimit(const httplib::Request& req) {
  if (!req.has_param("limit")) return 200;
  try {
    const long long n = std::stoll(req.get_param_value("limit"));
    return static_cast<size_t>(std::clamp(n, 1LL, 1000LL));
  } catch (const std::exception&) {
    return 200;
  }
}

// Who is calling: the user of a valid session.
struct Caller {
  store::User user;
  store::Session session;
  Role role = Role::kViewer;
};

class Service {
 public:
  Service(const Workspace& workspace, const ServeOptions& options, const std::atomic<bool>& stop)
      : workspace_(workspace),
        options_(options),
        stop_(stop),
        pool_(workspace),
        logins_(5, std::chrono::seconds(60)),
        logins_by_ip_(30, std::chrono::seconds(60)) {}

  Status Run() {
    const size_t colon = options_.listen.rfind(':');
    int port = -1;
    if (colon != std::string::npos) {
      try {
        size_t used = 0;
        port = std::stoi(options_.listen.substr(colon + 1), &used);
        if (used != options_.listen.size() - colon - 1) port = -1;
      } catch (const std::exception&) {
        port = -1;
      }
    }
    if (colon == std::string::npos || colon == 0 || port < 0 || port > 65535) {
      return Status::InvalidArgument(
          fmt::format("--listen '{}' is not HOST:PORT (e.g. 127.0.0.1:8080)", options_.listen));
    }
    const std::string host = options_.listen.substr(0, colon);
    Routes();
    const int bound =
        port == 0 ? server_.bind_to_any_port(host) : (server_.bind_to_port(host, port) ? port : -1);
    if (bound < 0) {
      return Status::Unavailable(fmt::format(
          "cannot listen on {}: the address is in use or not this machine's", options_.listen));
    }
    // httplib listens with a backlog of 5, so a burst of new clients is dropped by the kernel;
    // listening again on the bound socket raises it (Linux caps it at net.core.somaxconn).
    if (listening_socket_ >= 0 && ::listen(listening_socket_, kListenBacklog) != 0) {
      spdlog::warn("could not raise the listen backlog of {}: {}", options_.listen,
                   std::strerror(errno));
    }
    if (options_.on_listening) options_.on_listening(bound);
    std::thread runner([this] { RunJobs(); });
    std::thread http([this] { server_.listen_after_bind(); });
    spdlog::info("listening on http://{}:{}", host, bound);
    while (!stop_) std::this_thread::sleep_for(std::chrono::milliseconds(100));
    spdlog::info("stopping: no new jobs start; a running one finishes first");
    server_.stop();
    http.join();
    Wake();
    runner.join();
    spdlog::info("stopped");
    return runner_status_;
  }

  void Wake() {
    std::lock_guard<std::mutex> lock(wake_mutex_);
    woken_ = true;
    wake_.notify_all();
  }

 private:
  // --- the job runner --------------------------------------------------------------------

  void RunJobs() {
    const auto log = [](const std::string& line) { spdlog::info("{}", line); };
    auto state = workspace_.OpenState(log);
    // A state store that cannot be reached at start (its PostgreSQL server restarting, say) is
    // tried again, every poll interval at first, then less often, up to once a minute.
    int wait_seconds = options_.poll_seconds;
    while (!state.ok()) {
      runner_status_ = state.status();
      spdlog::error("job runner: {}; trying again in {} s", state.status().message(), wait_seconds);
      WaitForWork(wait_seconds);
      if (stop_) return;
      wait_seconds = std::min(wait_seconds * 2, 60);
      state = workspace_.OpenState(log);
    }
    if (!runner_status_.ok()) spdlog::info("job runner: the state store is back");
    runner_status_ = Status::Ok();
    bool recovered = false;
    while (!stop_) {
      RunDueOnce(**state, &recovered);
      WaitForWork(options_.poll_seconds);
    }
  }

  // Sleeps `seconds`, or until woken (a job queued) or stopped.
  void WaitForWork(int seconds) {
    std::unique_lock<std::mutex> lock(wake_mutex_);
    wake_.wait_for(lock, std::chrono::seconds(seconds), [this] { return woken_ || stop_.load(); });
    woken_ = false;
  }

  // One look at the jobs: settle what a killed process left, then run the due syncs, then the
  // due comparisons. Each job is claimed for this process (so another `envsync serve` sharing
  // the store never runs it too) and runs under the store's job lock; a sync also holds its
  // target environment's lock.
  void RunDueOnce(store::StateStore& state, bool* recovered) {
    Settle(state, recovered);
    RunDue(state, "sync");
    if (stop_) return;
    RunDue(state, "compare");
  }

  // Settles interrupted syncs and jobs under the whole store's lock, which nobody running a job
  // lets go of: whatever is still "running" then was left by a process that died. Tried at the
  // start and whenever something is "running" between this runner's jobs.
  void Settle(store::StateStore& state, bool* recovered) {
    if (*recovered && !SomethingRunning(state)) return;
    store::WorkLock lock;
    auto acquired = lock.TryAcquire(workspace_.config().state);
    if (!acquired.ok()) {
      spdlog::error("job runner: {}", acquired.status().message());
      return;
    }
    if (!*acquired) return;  // another process runs a job or settles: it is alive
    auto settled =
        sync::RecoverInterruptedSyncs(workspace_.manifest(), state, [&](const std::string& name) {
          const EnvironmentConfig* env = workspace_.config().Find(name);
          if (env == nullptr) {
            return Result<std::unique_ptr<store::Environment>>(
                Status::InvalidArgument("unknown environment " + name));
          }
          return store::OpenEnvironment(*env, store::Access::kReadWrite);
        });
    if (!settled.ok()) {
      spdlog::error("recovering interrupted syncs: {}", settled.status().message());
      return;
    }
    for (const std::string& id : *settled) spdlog::info("settled interrupted sync {}", id);
    // A failure here leaves unreachable rows, not unsettled work: the jobs are settled anyway.
    const Status discarded = Workspace::DiscardHalfStored(
        state, [](const std::string& line) { spdlog::info("{}", line); });
    if (!discarded.ok()) spdlog::error("{}", discarded.message());
    auto jobs =
        RecoverInterruptedJobs(state, Now(), [&](const store::Message& m, const std::string& link) {
          return workspace_.Notify(state, m, link);
        });
    if (!jobs.ok()) {
      spdlog::error("recovering interrupted jobs: {}", jobs.status().message());
      return;
    }
    for (const std::string& id : *jobs) spdlog::info("job {} recovered after a restart", id);
    *recovered = true;
  }

  static bool SomethingRunning(store::StateStore& state) {
    auto jobs = state.ListJobs();
    if (!jobs.ok()) return false;
    for (const store::Job& job : *jobs) {
      if (job.state == "running") return true;
    }
    auto syncs = state.ListSyncs();
    if (!syncs.ok()) return false;
    for (const store::SyncRun& run : *syncs) {
      if (store::InFlight(run)) return true;
    }
    return false;
  }

  void RunDue(store::StateStore& state, const std::string& kind) {
    auto ran = workspace_.RunDueJobs(
        state, kind,
        [&](const store::Job& job) {
          LogJob(job);
          if (job.state != "running") {
            std::lock_guard<std::mutex> guard(progress_mutex_);
            progress_.erase(job.id);
          }
          if (job.kind == "sync" && (job.state == "succeeded" || job.state == "failed")) {
            json result = json::parse(job.result.empty() ? "{}" : job.result, nullptr, false);
            Audit(state, job.started_by, "sync.run",
                  result.is_object() ? result.value("sync_id", job.id) : job.id,
                  {{"job_id", job.id},
                   {"state", job.state},
                   {"request", json::parse(job.request, nullptr, false)},
                   {"result", result}});
          }
        },
        [&](const std::string& job_id, const sync::CompareProgress& p) {
          std::lock_guard<std::mutex> guard(progress_mutex_);
          progress_[job_id] = p;
        },
        [this] { return stop_.load(); }, runner_);
    if (!ran.ok()) spdlog::error("job runner: {}", ran.status().message());
  }

  // --- requests ------------------------------------------------------------------------

  // The caller of `req` when it has a valid session and at least `needed`; with `changes`, the
  // request must also carry the session's CSRF token. Otherwise answers 401, 403 or 403 csrf.
  std::optional<Caller> Authorize(const httplib::Request& req, httplib::Response& res,
                                  store::StateStore& state, Role needed, bool changes) {
    const std::string token = CookieValue(req, kSessionCookie);
    if (token.empty()) {
      SendError(res, {401, "unauthenticated", "log in first: POST /api/v1/login", ""});
      return std::nullopt;
    }
    auto session = state.FindSession(Sha256Hex(token));
    if (!session.ok()) {
      SendError(res, FromStatus(session.status()));
      return std::nullopt;
    }
    if (!session->has_value() || (*session)->expires_at <= Now()) {
      SendError(res, {401, "unauthenticated", "the session has ended: log in again", ""});
      return std::nullopt;
    }
    auto user = state.FindUser((*session)->email);
    if (!user.ok() || !user->has_value()) {
      SendError(res, {401, "unauthenticated", "the session's user no longer exists", ""});
      return std::nullopt;
    }
    Caller caller{**user, **session, ParseRole((*user)->role).value_or(Role::kViewer)};
    if (changes && !SameToken(req.get_header_value("X-CSRF-Token"), caller.session.csrf_token)) {
      SendError(res, {403, "csrf", "missing or wrong X-CSRF-Token header", "X-CSRF-Token"});
      return std::nullopt;
    }
    if (static_cast<int>(caller.role) < static_cast<int>(needed)) {
      SendError(res, {403, "forbidden",
                      fmt::format("{} is a {}; this needs the {} role", caller.user.email,
                                  caller.user.role, RoleName(needed)),
                      ""});
      return std::nullopt;
    }
    return caller;
  }

  void Audit(store::StateStore& state, const std::string& user, const std::string& action,
             const std::string& target, const json& detail) {
    store::AuditEntry entry;
    entry.at = Now();
    entry.user = user;
    entry.action = action;
    entry.target = target;
    entry.detail = detail.is_null() ? "{}" : Dump(detail);
    Status added = state.AddAudit(entry);
    if (!added.ok()) spdlog::error("audit: {}", added.message());
  }

 public:
  // A route's handler: a public one gets the request alone; a guarded one also gets the
  // state store the request borrowed and its authorized caller.
  using OpenHandler = void (Service::*)(const httplib::Request&, httplib::Response&);
  using GuardedHandler = void (Service::*)(const httplib::Request&, httplib::Response&,
                                           store::StateStore&, const Caller&);

  // One entry of the route table: a public route has an OpenHandler, any other a
  // GuardedHandler, which only ever runs behind Authorize.
  struct Route {
    const char* method;
    const char* pattern;
    std::optional<Role> role;  // nullopt: public
    bool needs_csrf = false;
    OpenHandler open = nullptr;
    GuardedHandler guarded = nullptr;
  };

  // The route table (docs/API.md): the only source of the handlers httplib serves.
  static const std::vector<Route>& Table() {
    constexpr bool kReads = false;
    constexpr bool kChanges = true;
    auto open = [](const char* method, const char* pattern, OpenHandler handler) {
      return Route{method, pattern, std::nullopt, false, handler, nullptr};
    };
    auto guarded = [](const char* method, const char* pattern, Role role, bool changes,
                      GuardedHandler handler) {
      return Route{method, pattern, role, changes, nullptr, handler};
    };
    constexpr Role kViewer = Role::kViewer;
    constexpr Role kOperator = Role::kOperator;
    constexpr Role kAdmin = Role::kAdmin;
    static const std::vector<Route> table = {
        open("GET", "/", &Service::Root),
        open("GET", "/api/v1/health", &Service::Health),
        open("GET", "/metrics", &Service::Metrics),
        open("POST", "/api/v1/login", &Service::Login),
        guarded("POST", "/api/v1/logout", kViewer, kChanges, &Service::Logout),
        guarded("GET", "/api/v1/session", kViewer, kReads, &Service::CurrentSession),
        guarded("GET", "/api/v1/environments", kViewer, kReads, &Service::Environments),
        guarded("GET", R"(/api/v1/environments/([A-Z]+)/folders)", kViewer, kReads,
                &Service::Folders),
        guarded("GET", "/api/v1/modules", kViewer, kReads, &Service::Modules),
        guarded("GET", "/api/v1/comparisons", kViewer, kReads, &Service::Comparisons),
        guarded("POST", "/api/v1/comparisons", kOperator, kChanges, &Service::StartComparison),
        guarded("GET", R"(/api/v1/comparisons/([A-Za-z0-9_-]+))", kViewer, kReads,
                &Service::ComparisonPage),
        guarded("PUT", R"(/api/v1/comparisons/([A-Za-z0-9_-]+)/selection)", kOperator, kChanges,
                &Service::ReplaceSelection),
        guarded("PATCH", R"(/api/v1/comparisons/([A-Za-z0-9_-]+)/selection)", kOperator, kChanges,
                &Service::PatchSelection),
        guarded("POST", R"(/api/v1/comparisons/([A-Za-z0-9_-]+)/select-tab)", kOperator, kChanges,
                &Service::SelectTab),
        guarded("GET", R"(/api/v1/environments/([A-Z]+)/gallery)", kViewer, kReads,
                &Service::GalleryFile),
        guarded("POST", "/api/v1/syncs", kOperator, kChanges, &Service::StartSync),
        guarded("POST", R"(/api/v1/syncs/([A-Za-z0-9_-]+)/cancel)", kOperator, kChanges,
                &Service::CancelSync),
        guarded("POST", R"(/api/v1/syncs/([A-Za-z0-9_-]+)/undo)", kOperator, kChanges,
                &Service::Undo),
        guarded("GET", "/api/v1/jobs", kViewer, kReads, &Service::Jobs),
        guarded("GET", R"(/api/v1/jobs/([A-Za-z0-9_-]+))", kViewer, kReads, &Service::OneJob),
        guarded("GET", "/api/v1/messages", kViewer, kReads, &Service::Messages),
        guarded("POST", R"(/api/v1/messages/([0-9]+)/read)", kViewer, kChanges,
                &Service::ReadMessage),
        guarded("GET", "/api/v1/history", kViewer, kReads, &Service::History),
        guarded("GET", "/api/v1/users", kAdmin, kReads, &Service::Users),
        guarded("POST", "/api/v1/users", kAdmin, kChanges, &Service::AddUserRoute),
        guarded("GET", "/api/v1/audit", kAdmin, kReads, &Service::AuditLog),
    };
    return table;
  }

 private:
  // Hands one route of the table to httplib: the only place a handler is registered (the
  // route table test checks no other line of this file does). A route with a role runs behind
  // Authorize: no valid session is 401, a role too low 403, and with `needs_csrf` a missing or
  // wrong X-CSRF-Token 403 csrf, all before the handler looks anything up.
  void Register(const Route& route) {
    httplib::Server::Handler handler;
    if (route.role) {
      handler = [this, &route](const httplib::Request& req, httplib::Response& res) {
        auto state = pool_.Borrow();
        if (!state.ok()) return SendError(res, StoreUnavailable(state.status()));
        auto caller = Authorize(req, res, **state, *route.role, route.needs_csrf);
        if (!caller) return;
        res.set_header("X-Envsync-User", caller->user.email);
        (this->*route.guarded)(req, res, **state, *caller);
      };
    } else {
      handler = [this, &route](const httplib::Request& req, httplib::Response& res) {
        (this->*route.open)(req, res);
      };
    }
    const std::string_view method = route.method;
    if (method == "GET") {
      server_.Get(route.pattern, std::move(handler));
    } else if (method == "POST") {
      server_.Post(route.pattern, std::move(handler));
    } else if (method == "PUT") {
      server_.Put(route.pattern, std::move(handler));
    } else if (method == "PATCH") {
      server_.Patch(route.pattern, std::move(handler));
    } else {
      spdlog::error("route {} {}: unknown method, not served", route.method, route.pattern);
    }
  }

  // The headers every answer carries, errors and the page's files included. The policy allows
  // scripts, styles and images from this server only: no inline script or style, no plugins, no
  // <base> and no framing.
  static httplib::Headers SecurityHeaders() {
    return {{"X-Content-Type-Options", "nosniff"},
            {"X-Frame-Options", "DENY"},
            {"Referrer-Policy", "no-referrer"},
            {"Cache-Control", "no-store"},
            {"Content-Security-Policy",
             "default-src 'self'; script-src 'self'; object-src 'none'; base-uri 'none'; "
             "form-action 'self'; img-src 'self' data:; frame-ancestors 'none'"}};
  }

  void Routes() {
    server_.set_payload_max_length(4 << 20);
    // Headers and body go out in two writes: without TCP_NODELAY each answer on a kept-alive
    // connection waits ~40 ms for the client's delayed ACK.
    server_.set_tcp_nodelay(true);
    server_.set_keep_alive_max_count(kKeepAliveRequests);
    server_.new_task_queue = [] { return new httplib::ThreadPool(kRequestThreads); };
    // SO_REUSEADDR only: httplib's default also sets SO_REUSEPORT, which lets a second
    // `envsync serve` bind the same port and take half of its connections.
    server_.set_socket_options([this](socket_t sock) {
      const int yes = 1;
      ::setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof(yes));
      listening_socket_ = sock;
    });
    server_.set_logger([this](const httplib::Request& req, const httplib::Response& res) {
      // Method, path, status and the user: never bodies, cookies or tokens.
      {
        std::lock_guard<std::mutex> guard(requests_mutex_);
        ++requests_snapshot_[res.status];
      }
      const std::string user = res.get_header_value("X-Envsync-User");
      spdlog::info("{} {} {} {}", req.method, req.path, res.status, user.empty() ? "-" : user);
    });
    // httplib starts every answer with these, before routing, so refusals and errors have them.
    server_.set_default_headers(SecurityHeaders());
    server_.set_exception_handler(
        [](const httplib::Request&, httplib::Response& res, std::exception_ptr ep) {
          std::string what = "unknown";
          try {
            std::rethrow_exception(ep);
          } catch (const std::exception& e) {
            what = e.what();
          } catch (...) {
          }
          spdlog::error("internal error: {}", what);
          SendError(res, {500, "internal", "internal error; nothing was changed", ""});
        });
    server_.set_error_handler([](const httplib::Request& req, httplib::Response& res) {
      // httplib calls this outside its exception handling: nothing here may throw.
      try {
        if (res.status == 404 && res.body.empty()) {
          SendError(res,
                    {404, "not_found", fmt::format("no route {} {}", req.method, req.path), ""});
        }
      } catch (...) {
        res.set_content(R"({"error":{"code":"not_found","message":"no such route"}})",
                        "application/json");
      }
    });
    // The page's files come first (httplib looks at the mount point before the routes), so
    // with a page `/` is its index.html and the Root route only answers without one.
    if (!options_.web_root.empty() && !server_.set_mount_point("/", options_.web_root)) {
      spdlog::error("--web '{}' is not a folder: no page is served", options_.web_root);
    }
    for (const Route& route : Table()) Register(route);
  }

  // --- the routes, in the table's order ------------------------------------------------

  // Without a page, the root says where things are.
  void Root(const httplib::Request&, httplib::Response& res) {
    Send(res, 200,
         {{"service", "envsync"},
          {"api", "/api/v1"},
          {"login", "POST /api/v1/login {\"email\", \"password\"}"},
          {"health", "/api/v1/health"},
          {"metrics", "/metrics"},
          {"docs", "docs/API.md"}});
  }

  void Health(const httplib::Request&, httplib::Response& res) {
    auto state = pool_.Borrow();
    if (!state.ok()) {
      return Send(res, 503,
                  {{"status", "unavailable"}, {"error", StoreUnavailable(state.status()).message}});
    }
    Send(res, 200, {{"status", "ok"}, {"state_schema", (*state)->SchemaVersion()}});
  }

  void Logout(const httplib::Request&, httplib::Response& res, store::StateStore& state,
              const Caller& caller) {
    Status deleted = state.DeleteSession(caller.session.token_hash);
    if (!deleted.ok()) return SendError(res, FromStatus(deleted));
    Audit(state, caller.user.email, "logout", caller.user.email, {});
    res.set_header("Set-Cookie", fmt::format("{}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0",
                                             kSessionCookie));
    Send(res, 200, {{"logged_out", true}});
  }

  void CurrentSession(const httplib::Request&, httplib::Response& res, store::StateStore&,
                      const Caller& caller) {
    Send(res, 200, SessionJson(caller));
  }

  void Comparisons(const httplib::Request&, httplib::Response& res, store::StateStore& state,
                   const Caller&) {
    auto list = state.ListComparisons();
    if (!list.ok()) return SendError(res, FromStatus(list.status()));
    json out = json::array();
    for (auto it = list->rbegin(); it != list->rend(); ++it) {
      out.push_back({{"comparison_id", it->id},
                     {"from", it->from},
                     {"to", it->to},
                     {"created_at", it->created_at},
                     {"counts",
                      {{"conflicts", it->counts.conflicts},
                       {"new", it->counts.new_records},
                       {"modified", it->counts.modified},
                       {"deleted", it->counts.deleted}}}});
    }
    Send(res, 200, {{"comparisons", out}});
  }

  void ReplaceSelection(const httplib::Request& req, httplib::Response& res,
                        store::StateStore& state, const Caller& caller) {
    SaveSelection(req, res, state, caller, /*replace=*/true);
  }
  void PatchSelection(const httplib::Request& req, httplib::Response& res, store::StateStore& state,
                      const Caller& caller) {
    SaveSelection(req, res, state, caller, /*replace=*/false);
  }

  void CancelSync(const httplib::Request& req, httplib::Response& res, store::StateStore& state,
                  const Caller& caller) {
    const std::string id = req.matches[1];
    Status cancelled = CancelJob(state, id, caller.user.email, Now());
    if (!cancelled.ok()) {
      ApiError e = FromStatus(cancelled);
      if (e.http == 400) e = {409, "conflict", cancelled.message(), ""};
      return SendError(res, e);
    }
    Audit(state, caller.user.email, "job.cancel", id, {});
    auto job = state.LoadJob(id);
    Send(res, 200, job.ok() ? JobJson(*job, caller.user.time_zone) : json());
  }

  void Jobs(const httplib::Request& req, httplib::Response& res, store::StateStore& state,
            const Caller& caller) {
    auto jobs = state.ListJobs();
    if (!jobs.ok()) return SendError(res, FromStatus(jobs.status()));
    json out = json::array();
    const size_t limit = ListLimit(req);
    for (auto it = jobs->rbegin(); it != jobs->rend() && out.size() < limit; ++it) {
      out.push_back(WithProgress(JobJson(*it, caller.user.time_zone), it->id));
    }
    Send(res, 200, {{"jobs", out}});
  }

  void OneJob(const httplib::Request& req, httplib::Response& res, store::StateStore& state,
              const Caller& caller) {
    auto job = state.LoadJob(req.matches[1]);
    if (!job.ok()) return SendError(res, FromStatus(job.status()));
    Send(res, 200, WithProgress(JobJson(*job, caller.user.time_zone), job->id));
  }

  void ReadMessage(const httplib::Request& req, httplib::Response& res, store::StateStore& state,
                   const Caller& caller) {
    int64_t id = 0;
    try {
      id = std::stoll(req.matches[1]);
    } catch (const std::exception&) {
      return SendError(res, {404, "not_found", "no such message", ""});
    }
    Status marked = state.MarkMessageRead(id, caller.user.email);
    if (!marked.ok()) return SendError(res, FromStatus(marked));
    Send(res, 200, {{"id", id}, {"read", true}});
  }

  void History(const httplib::Request& req, httplib::Response& res, store::StateStore& state,
               const Caller&) {
    auto runs = state.ListSyncs();
    if (!runs.ok()) return SendError(res, FromStatus(runs.status()));
    json out = json::array();
    const size_t limit = ListLimit(req);
    for (auto it = runs->rbegin(); it != runs->rend() && out.size() < limit; ++it) {
      out.push_back(SyncRunJson(*it));
    }
    Send(res, 200, {{"syncs", out}});
  }

  void Users(const httplib::Request&, httplib::Response& res, store::StateStore& state,
             const Caller&) {
    auto users = state.ListUsers();
    if (!users.ok()) return SendError(res, FromStatus(users.status()));
    json out = json::array();
    for (const store::User& u : *users) {
      out.push_back({{"email", u.email},
                     {"role", u.role},
                     {"time_zone", u.time_zone},
                     {"created_at", u.created_at}});
    }
    Send(res, 200, {{"users", out}});
  }

  // The newest entries, oldest first.
  void AuditLog(const httplib::Request& req, httplib::Response& res, store::StateStore& state,
                const Caller&) {
    auto entries = state.ListAudit();
    if (!entries.ok()) return SendError(res, FromStatus(entries.status()));
    json out = json::array();
    const size_t limit = ListLimit(req);
    const size_t first = entries->size() > limit ? entries->size() - limit : 0;
    for (size_t i = first; i < entries->size(); ++i) out.push_back(AuditJson((*entries)[i]));
    Send(res, 200, {{"audit", out}});
  }

  static json SessionJson(const Caller& caller) {
    return {{"email", caller.user.email},
            {"role", caller.user.role},
            {"time_zone", caller.user.time_zone},
            {"csrf_token", caller.session.csrf_token},
            {"expires_at", caller.session.expires_at}};
  }

  void Login(const httplib::Request& req, httplib::Response& res) {
    auto body = Body::Parse(req, res);
    if (!body) return;
    std::string email;
    std::string password;
    if (auto e = body->String("email", true, &email)) return SendError(res, *e);
    if (auto e = body->String("password", true, &password)) return SendError(res, *e);
    if (email.size() > 254 || !IsMailAddress(email)) {
      return SendError(res, {400, "bad_request", "'email' must be an e-mail address", "email"});
    }
    std::string key = email;
    std::transform(key.begin(), key.end(), key.begin(),
                   [](unsigned char c) { return std::tolower(c); });
    key += "|" + req.remote_addr;
    const std::string ip_key = "ip|" + req.remote_addr;
    const auto now = std::chrono::steady_clock::now();
    int64_t wait = logins_.RetryAfter(key, now);
    if (wait == 0) wait = logins_by_ip_.RetryAfter(ip_key, now);
    if (wait > 0) {
      res.set_header("Retry-After", std::to_string(wait));
      return SendError(
          res, {429, "rate_limited",
                fmt::format("too many failed logins for {}: try again in {} s", email, wait), ""});
    }
    auto state = pool_.Borrow();
    if (!state.ok()) return SendError(res, StoreUnavailable(state.status()));
    auto user = (*state)->FindUser(email);
    if (!user.ok()) return SendError(res, FromStatus(user.status()));
    // The hash is computed even for an unknown address, so timing does not tell which exist.
    // At most two hashes run at once (this is a 2-core machine's worth): a flood of logins waits
    // here instead of taking every request thread.
    static const std::string kDummy = HashPassword("envsync-no-such-user");
    bool good = false;
    {
      hashing_.acquire();
      good = VerifyPassword(password, user->has_value() ? (*user)->password_hash : kDummy) &&
             user->has_value();
      hashing_.release();
    }
    if (!good) {
      logins_.RecordFailure(key, now);
      logins_by_ip_.RecordFailure(ip_key, now);
      Audit(**state, email, "login.failed", email, {{"from", req.remote_addr}});
      return SendError(res, {401, "unauthenticated", "wrong e-mail or password", ""});
    }
    logins_.RecordSuccess(key);
    // A new token at every login, so a session planted before login is worth nothing.
    const std::string token = RandomToken();
    store::Session session;
    session.token_hash = Sha256Hex(token);
    session.email = (*user)->email;
    session.csrf_token = RandomToken();
    session.created_at = Now();
    session.expires_at = UtcIn(kSessionLifetime);
    Status saved = (*state)->SaveSession(session);
    if (!saved.ok()) return SendError(res, FromStatus(saved));
    // Ended sessions are forgotten as new ones begin.
    if (Status purged = (*state)->DeleteExpiredSessions(Now()); !purged.ok()) {
      spdlog::warn("forgetting ended sessions: {}", purged.message());
    }
    Audit(**state, session.email, "login", session.email, {{"from", req.remote_addr}});
    // HttpOnly: no script reads it; SameSite=Strict: no other site's page sends it. Not Secure:
    // `envsync serve` speaks plain HTTP (TLS, where wanted, is a proxy's in front), and a browser
    // never sends a Secure cookie back over plain HTTP.
    res.set_header(
        "Set-Cookie",
        fmt::format("{}={}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}", kSessionCookie, token,
                    std::chrono::duration_cast<std::chrono::seconds>(kSessionLifetime).count()));
    res.set_header("X-Envsync-User", session.email);
    Send(res, 200,
         SessionJson(Caller{**user, session, ParseRole((*user)->role).value_or(Role::kViewer)}));
  }

  void Environments(const httplib::Request&, httplib::Response& res, store::StateStore&,
                    const Caller&) {
    json out = json::array();
    for (const auto& [name, env] : workspace_.config().environments) {
      out.push_back({{"name", name}, {"home", name == workspace_.config().home}});
    }
    Send(res, 200, {{"environments", out}});
  }

  void Folders(const httplib::Request& req, httplib::Response& res, store::StateStore&,
               const Caller&) {
    auto folders = workspace_.Folders(req.matches[1]);
    if (!folders.ok()) return SendError(res, FromStatus(folders.status()));
    Send(res, 200, {{"environment", std::string(req.matches[1])}, {"folders", *folders}});
  }

  void Modules(const httplib::Request&, httplib::Response& res, store::StateStore&, const Caller&) {
    json out = json::array();
    for (const ModuleSpec& m : workspace_.manifest().modules()) {
      json tables = json::array();
      for (const TableSpec& t : m.tables) tables.push_back(t.name);
      out.push_back({{"name", m.name},
                     {"description", m.description},
                     {"tables", tables},
                     {"depends_on", m.depends_on},
                     {"has_folders", workspace_.manifest().FolderTable() != nullptr &&
                                         workspace_.manifest().FolderTable()->module == m.name}});
    }
    Send(res, 200, {{"modules", out}});
  }

  void StartComparison(const httplib::Request& req, httplib::Response& res,
                       store::StateStore& state, const Caller& caller) {
    auto body = Body::Parse(req, res);
    if (!body) return;
    CompareOptions options;
    if (auto e = body->String("from", true, &options.from)) return SendError(res, *e);
    if (auto e = body->String("to", true, &options.to)) return SendError(res, *e);
    if (auto e = body->String("mode", false, &options.mode)) return SendError(res, *e);
    if (auto e = body->Strings("modules", &options.modules)) return SendError(res, *e);
    if (auto e = body->Strings("folders", &options.folders)) return SendError(res, *e);
    Status checked = workspace_.CheckCompare(options);
    if (!checked.ok()) return SendError(res, FromStatus(checked));
    auto job = QueueCompare(state, CompareOptionsToJson(options, caller.user.email),
                            caller.user.email, Now(), sync::RandomJobId());
    if (!job.ok()) return SendError(res, FromStatus(job.status()));
    Audit(state, caller.user.email, "compare.start", job->id, json::parse(job->request));
    Wake();
    Send(res, 202, JobJson(*job, caller.user.time_zone));
  }

  void ComparisonPage(const httplib::Request& req, httplib::Response& res, store::StateStore& state,
                      const Caller&) {
    const std::string tab_name = req.has_param("tab") ? req.get_param_value("tab") : "conflicts";
    auto tab = ParseTab(tab_name);
    if (!tab) {
      return SendError(res, {400, "bad_request",
                             fmt::format("tab '{}' is not a tab: use conflicts, new, modified or "
                                         "deleted",
                                         tab_name),
                             "tab"});
    }
    auto number = [&](const char* name, int64_t fallback, int64_t max,
                      int64_t* out) -> std::optional<ApiError> {
      *out = fallback;
      if (!req.has_param(name)) return std::nullopt;
      const std::string text = req.get_param_value(name);
      try {
        size_t used = 0;
        *out = std::stoll(text, &used);
        if (used == text.size() && *out >= 0 && *out <= max) return std::nullopt;
      } catch (const std::exception&) {
      }
      return ApiError{400, "bad_request",
                      fmt::format("{} '{}' must be a number from 0 to {}", name, text, max), name};
    };
    int64_t offset = 0;
    int64_t limit = 50;
    if (auto e = number("offset", 0, INT64_MAX / 2, &offset)) return SendError(res, *e);
    if (auto e = number("limit", 50, 1000, &limit)) return SendError(res, *e);
    const std::string filter = req.has_param("filter") ? req.get_param_value("filter") : "";
    auto header = state.LoadComparisonHeader(req.matches[1]);
    if (!header.ok()) return SendError(res, FromStatus(header.status()));
    auto changes = state.LoadChangePage(header->first.id, *tab, filter, offset, limit);
    if (!changes.ok()) return SendError(res, FromStatus(changes.status()));
    const auto loaded = Selection::Load(state, header->first.id);
    if (!loaded.ok()) return SendError(res, FromStatus(loaded.status()));
    const Selection& selection = *loaded;
    json page = json::parse(store::ComparisonToJson(header->first, std::nullopt, -1));
    const TabCounts& counts = header->second;
    page["counts"] = {{"conflicts", counts.conflicts},
                      {"new", counts.new_records},
                      {"modified", counts.modified},
                      {"deleted", counts.deleted}};
    json out = json::array();
    for (const Change& change : changes->changes) {
      json c = json::parse(store::ChangeToJson(change));
      const std::string ref = change.Ref();
      c["ref"] = ref;
      c["selected"] = selection.Selected(ref, change.selected);
      auto how = selection.resolve.find(ref);
      c["resolution"] = how == selection.resolve.end() ? json() : json(how->second);
      out.push_back(std::move(c));
    }
    page["tab"] = TabName(*tab);
    page["offset"] = offset;
    page["limit"] = limit;
    page["filter"] = filter;
    page["total"] = changes->total;
    page["changes"] = std::move(out);
    page["selection"] = {{"selected", selection.select.size()},
                         {"deselected", selection.deselect.size()},
                         {"resolved", selection.resolve.size()}};
    Send(res, 200, page);
  }

  // PUT replaces the saved selection; PATCH moves the records it names (`select`, `deselect`,
  // `resolve` with a null to drop a resolution) and leaves the rest.
  void SaveSelection(const httplib::Request& req, httplib::Response& res, store::StateStore& state,
                     const Caller& caller, bool replace) {
    auto body = Body::Parse(req, res);
    if (!body) return;
    const std::string id = req.matches[1];
    auto header = state.LoadComparisonHeader(id);
    if (!header.ok()) return SendError(res, FromStatus(header.status()));
    std::vector<std::string> select;
    std::vector<std::string> deselect;
    if (auto e = body->Strings("select", &select)) return SendError(res, *e);
    if (auto e = body->Strings("deselect", &deselect)) return SendError(res, *e);
    json resolve = body->raw().value("resolve", json::object());
    if (!resolve.is_object()) {
      return SendError(res, {400, "bad_request",
                             "'resolve' must map records (T:ID) to overwrite, insert_as_new, "
                             "link or merge",
                             "resolve"});
    }
    // Only the records the body names are looked up, not the comparison's every change.
    std::vector<std::string> named = select;
    named.insert(named.end(), deselect.begin(), deselect.end());
    for (const auto& item : resolve.items()) named.push_back(item.key());
    auto known = state.KnownChangeRefs(id, named);
    if (!known.ok()) return SendError(res, FromStatus(known.status()));
    auto check = [&](const std::string& ref, const char* field) -> std::optional<ApiError> {
      if (known->contains(ref)) return std::nullopt;
      return ApiError{400, "bad_request",
                      fmt::format("'{}' is not a record of comparison {}", ref, id), field};
    };
    for (const auto& ref : select) {
      if (auto e = check(ref, "select")) return SendError(res, *e);
    }
    for (const auto& ref : deselect) {
      if (auto e = check(ref, "deselect")) return SendError(res, *e);
    }
    static const std::set<std::string> kHow = {"overwrite", "insert_as_new", "link", "merge"};
    for (const auto& [ref, how] : resolve.items()) {
      if (auto e = check(ref, "resolve")) return SendError(res, *e);
      if (!(how.is_null() && !replace) &&
          (!how.is_string() || !kHow.contains(how.get<std::string>()))) {
        return SendError(res, {400, "bad_request",
                               fmt::format("resolution of {} must be overwrite, insert_as_new, "
                                           "link or merge",
                                           ref),
                               "resolve"});
      }
    }
    std::lock_guard<std::mutex> guard(selection_mutex_);
    auto loaded = replace ? Result<Selection>(Selection()) : Selection::Load(state, id);
    if (!loaded.ok()) return SendError(res, FromStatus(loaded.status()));
    Selection& selection = *loaded;
    for (const auto& ref : select) selection.Choose(ref, true);
    for (const auto& ref : deselect) selection.Choose(ref, false);
    for (const auto& [ref, how] : resolve.items()) {
      if (how.is_null()) {
        selection.resolve.erase(ref);
      } else {
        selection.resolve[ref] = how.get<std::string>();
      }
    }
    Status saved = state.SaveSelection(id, selection.ToJson().dump());
    if (!saved.ok()) return SendError(res, FromStatus(saved));
    Audit(state, caller.user.email, "selection.save", id, body->raw());
    Send(res, 200, {{"comparison_id", id}, {"selection", selection.ToJson()}});
  }

  // Selects or deselects every record of a tab (that matches `filter`). Conflicts are refused:
  // each needs its own resolution.
  void SelectTab(const httplib::Request& req, httplib::Response& res, store::StateStore& state,
                 const Caller& caller) {
    auto body = Body::Parse(req, res);
    if (!body) return;
    std::string tab_name;
    std::string filter;
    bool selected = true;
    if (auto e = body->String("tab", true, &tab_name)) return SendError(res, *e);
    if (auto e = body->String("filter", false, &filter)) return SendError(res, *e);
    if (auto e = body->Bool("selected", &selected)) return SendError(res, *e);
    auto tab = ParseTab(tab_name);
    if (!tab || *tab == Tab::kConflicts) {
      return SendError(res, {400, "bad_request",
                             fmt::format("tab '{}' cannot be selected whole: use new, modified or "
                                         "deleted (each conflict needs its own resolution)",
                                         tab_name),
                             "tab"});
    }
    const std::string id = req.matches[1];
    auto header = state.LoadComparisonHeader(id);
    if (!header.ok()) return SendError(res, FromStatus(header.status()));
    auto page = state.LoadChangePage(id, *tab, filter, 0, INT64_MAX / 2);
    if (!page.ok()) return SendError(res, FromStatus(page.status()));
    std::lock_guard<std::mutex> guard(selection_mutex_);
    auto loaded = Selection::Load(state, id);
    if (!loaded.ok()) return SendError(res, FromStatus(loaded.status()));
    Selection& selection = *loaded;
    for (const Change& change : page->changes) selection.Choose(change.Ref(), selected);
    Status saved = state.SaveSelection(id, selection.ToJson().dump());
    if (!saved.ok()) return SendError(res, FromStatus(saved));
    Audit(state, caller.user.email, selected ? "selection.select_tab" : "selection.deselect_tab",
          id, {{"tab", tab_name}, {"filter", filter}, {"records", page->changes.size()}});
    Send(res, 200,
         {{"comparison_id", id},
          {"records", page->changes.size()},
          {"selection",
           {{"selected", selection.select.size()},
            {"deselected", selection.deselect.size()},
            {"resolved", selection.resolve.size()}}}});
  }

  // The bytes of one gallery file of an environment, for thumbnails: `path` is the file's key
  // (`folder path/file name`). Names that could leave the gallery, symlinks pointing out of it
  // and files that are not images are refused.
  void GalleryFile(const httplib::Request& req, httplib::Response& res, store::StateStore&,
                   const Caller&) {
    const std::string env_name = req.matches[1];
    const EnvironmentConfig* env = workspace_.config().Find(env_name);
    if (env == nullptr) {
      return SendError(res, {400, "bad_request", fmt::format("unknown environment '{}'", env_name),
                             "environment"});
    }
    const std::string key = req.has_param("path") ? req.get_param_value("path") : "";
    const size_t slash = key.rfind('/');
    const std::string folder = slash == std::string::npos ? "" : key.substr(0, slash);
    const std::string file = slash == std::string::npos ? key : key.substr(slash + 1);
    static const std::map<std::string, std::string> kTypes = {{".png", "image/png"},
                                                              {".jpg", "image/jpeg"},
                                                              {".jpeg", "image/jpeg"},
                                                              {".gif", "image/gif"},
                                                              {".webp", "image/webp"}};
    const size_t dot = file.rfind('.');
    std::string ext = dot == std::string::npos ? "" : file.substr(dot);
    std::transform(ext.begin(), ext.end(), ext.begin(),
                   [](unsigned char c) { return std::tolower(c); });
    const auto type = kTypes.find(ext);
    const store::AssetFolder assets(env->assets);
    const std::string path = file.empty() ? "" : assets.PathOf(folder, file);
    if (path.empty() || type == kTypes.end()) {
      return SendError(res, {400, "bad_request",
                             fmt::format("'{}' is not the path of a gallery image", key), "path"});
    }
    std::error_code ec;
    const auto root =
        std::filesystem::weakly_canonical(std::filesystem::path(env->assets) / "gallery", ec);
    const auto real = std::filesystem::weakly_canonical(path, ec);
    const auto rel = real.lexically_relative(root);
    if (ec || rel.empty() || *rel.begin() == ".." || !std::filesystem::is_regular_file(real, ec)) {
      return SendError(res, {404, "not_found",
                             fmt::format("no gallery file '{}' on {}", key, env_name), "path"});
    }
    std::ifstream in(real, std::ios::binary);
    std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    res.headers.erase("Cache-Control");
    res.set_header("Cache-Control", "private, max-age=60");
    res.set_content(std::move(bytes), type->second.c_str());
  }

  void StartSync(const httplib::Request& req, httplib::Response& res, store::StateStore& state,
                 const Caller& caller) {
    auto body = Body::Parse(req, res);
    if (!body) return;
    sync::SyncRequest request;
    std::string run_at_text;
    std::string zone = caller.user.time_zone;
    if (auto e = body->String("comparison_id", true, &request.comparison_id)) {
      return SendError(res, *e);
    }
    if (auto e = body->Bool("test_import", &request.test_import)) return SendError(res, *e);
    if (auto e = body->String("run_at", false, &run_at_text)) return SendError(res, *e);
    if (auto e = body->String("time_zone", false, &zone)) return SendError(res, *e);
    if (!IsTimeZone(zone)) {
      return SendError(
          res, {400, "bad_request", fmt::format("time_zone '{}' is not a tz database zone", zone),
                "time_zone"});
    }
    auto comparison = state.LoadComparisonHeader(request.comparison_id);  // it exists
    if (!comparison.ok()) {
      ApiError e = FromStatus(comparison.status());
      if (e.http == 404) e = {400, "bad_request", comparison.status().message(), "comparison_id"};
      return SendError(res, e);
    }
    // The saved selection, then what the body adds.
    const auto loaded = Selection::Load(state, request.comparison_id);
    if (!loaded.ok()) return SendError(res, FromStatus(loaded.status()));
    const Selection& selection = *loaded;
    request.select.assign(selection.select.begin(), selection.select.end());
    request.deselect.assign(selection.deselect.begin(), selection.deselect.end());
    for (const auto& [ref, how] : selection.resolve) request.resolve.push_back(ref + "=" + how);
    std::vector<std::string> more;
    if (auto e = body->Strings("select", &more)) return SendError(res, *e);
    request.select.insert(request.select.end(), more.begin(), more.end());
    more.clear();
    if (auto e = body->Strings("deselect", &more)) return SendError(res, *e);
    request.deselect.insert(request.deselect.end(), more.begin(), more.end());
    more.clear();
    if (auto e = body->Strings("resolve", &more)) return SendError(res, *e);
    request.resolve.insert(request.resolve.end(), more.begin(), more.end());
    request.started_by = caller.user.email;
    std::string run_at;
    if (!run_at_text.empty()) {
      auto parsed = ParseScheduleTime(run_at_text, zone, "run_at");
      if (!parsed.ok()) {
        return SendError(res, {400, "bad_request", parsed.status().message(), "run_at"});
      }
      run_at = *parsed;
      if (SecondsBetween(run_at, Now()) > 60) {
        return SendError(res, {400, "bad_request",
                               fmt::format("run_at '{}' ({}) is in the past: pick a later time or "
                                           "synchronize now",
                                           run_at_text, ShowInZone(run_at, zone)),
                               "run_at"});
      }
    }
    auto job =
        ScheduleSync(state, request, run_at, caller.user.email, zone, Now(), sync::RandomJobId());
    if (!job.ok()) return SendError(res, FromStatus(job.status()));
    Audit(state, caller.user.email, run_at.empty() ? "sync.start" : "sync.schedule", job->id,
          json::parse(job->request));
    Wake();
    Send(res, 202, JobJson(*job, zone));
  }

  void Undo(const httplib::Request& req, httplib::Response& res, store::StateStore& state,
            const Caller& caller) {
    const std::string id = req.matches[1];
    auto run = state.LoadSync(id);
    if (!run.ok()) return SendError(res, FromStatus(run.status()));
    auto lock = workspace_.LockTarget(state, run->to, nullptr);
    if (!lock.ok()) return SendError(res, FromStatus(lock.status()));
    if (*lock == nullptr) {
      return SendError(
          res,
          {409, "busy",
           "a sync or an undo into " + run->to + " is running: try again when it has ended", ""});
    }
    auto outcome = workspace_.Undo(state, id);
    if (!outcome.ok()) {
      ApiError e = FromStatus(outcome.status());
      if (e.http == 400) e.http = 409, e.code = "conflict";
      return SendError(res, e);
    }
    Audit(state, caller.user.email, "sync.undo", id, OutcomeJson(*outcome));
    Send(res, 200, OutcomeJson(*outcome));
  }

  void Messages(const httplib::Request& req, httplib::Response& res, store::StateStore& state,
                const Caller& caller) {
    auto messages = state.ListMessages(caller.user.email);
    if (!messages.ok()) return SendError(res, FromStatus(messages.status()));
    json out = json::array();
    int64_t unread = 0;
    const size_t limit = ListLimit(req);
    for (const store::Message& m : *messages) {
      unread += m.read ? 0 : 1;
      if (out.size() == limit) continue;
      std::string job_state;
      if (!m.job_id.empty()) {
        auto job = state.LoadJob(m.job_id);
        if (job.ok()) job_state = job->state;
      }
      out.push_back(MessageJson(m, job_state));
    }
    Send(res, 200, {{"unread", unread}, {"messages", out}});
  }

  void AddUserRoute(const httplib::Request& req, httplib::Response& res, store::StateStore& state,
                    const Caller& caller) {
    auto body = Body::Parse(req, res);
    if (!body) return;
    std::string email;
    std::string role;
    std::string password;
    std::string zone = "UTC";
    if (auto e = body->String("email", true, &email)) return SendError(res, *e);
    if (auto e = body->String("role", true, &role)) return SendError(res, *e);
    if (auto e = body->String("password", true, &password)) return SendError(res, *e);
    if (auto e = body->String("time_zone", false, &zone)) return SendError(res, *e);
    auto existing = state.FindUser(email);
    if (!existing.ok()) return SendError(res, FromStatus(existing.status()));
    if (existing->has_value()) {
      return SendError(
          res,
          {409, "conflict",
           fmt::format("{} exists already (envsync user add replaces a user)", email), "email"});
    }
    Status added = AddUser(state, email, role, password, zone, Now());
    if (!added.ok()) return SendError(res, FromStatus(added));
    Audit(state, caller.user.email, "user.add", email, {{"role", role}, {"time_zone", zone}});
    Send(res, 201, {{"email", email}, {"role", role}, {"time_zone", zone}});
  }

  json WithProgress(json job, const std::string& id) {
    std::lock_guard<std::mutex> guard(progress_mutex_);
    auto it = progress_.find(id);
    if (it != progress_.end()) {
      job["progress"] = {{"table", it->second.table}, {"records", it->second.records}};
    }
    return job;
  }

  void Metrics(const httplib::Request&, httplib::Response& res) {
    auto state = pool_.Borrow();
    if (!state.ok()) return SendError(res, StoreUnavailable(state.status()));
    std::string out;
    out += "# HELP envsync_jobs Jobs in the state store by state.\n# TYPE envsync_jobs gauge\n";
    std::map<std::string, int64_t> by_state;
    for (const char* s : {"queued", "scheduled", "running", "succeeded", "failed", "cancelled"}) {
      by_state[s] = 0;
    }
    if (auto jobs = (*state)->ListJobs(); jobs.ok()) {
      for (const store::Job& j : *jobs) ++by_state[j.state];
    }
    for (const auto& [s, n] : by_state)
      out += fmt::format("envsync_jobs{{state=\"{}\"}} {}\n", s, n);
    double seconds = 0;
    int64_t count = 0;
    std::map<std::string, int64_t> applied = {{"new", 0}, {"modified", 0}, {"deleted", 0}};
    if (auto runs = (*state)->ListSyncs(); runs.ok()) {
      for (const store::SyncRun& r : *runs) {
        if (r.finished_at.empty()) continue;
        ++count;
        seconds += std::max(0L, SecondsBetween(r.created_at, r.finished_at));
        if (r.status != "success" || r.test_import) continue;
        json a = json::parse(r.applied.empty() ? "{}" : r.applied, nullptr, false);
        if (!a.is_object()) continue;
        for (auto& [kind, n] : applied) {
          // A count that is not a number (a row written by hand, say) is left out, not a 500.
          if (a.contains(kind) && a[kind].is_number_integer()) n += a[kind].get<int64_t>();
        }
      }
    }
    out +=
        "# HELP envsync_sync_duration_seconds Time syncs took, start to end.\n"
        "# TYPE envsync_sync_duration_seconds summary\n";
    out += fmt::format(
        "envsync_sync_duration_seconds_sum {}\nenvsync_sync_duration_seconds_count {}\n", seconds,
        count);
    out +=
        "# HELP envsync_records_applied_total Records written by successful syncs.\n"
        "# TYPE envsync_records_applied_total counter\n";
    for (const auto& [kind, n] : applied) {
      out += fmt::format("envsync_records_applied_total{{kind=\"{}\"}} {}\n", kind, n);
    }
    out +=
        "# HELP envsync_http_responses_total HTTP responses since start, by status.\n"
        "# TYPE envsync_http_responses_total counter\n";
    {
      std::lock_guard<std::mutex> guard(requests_mutex_);
      for (const auto& [status, n] : requests_snapshot_) {
        out += fmt::format("envsync_http_responses_total{{code=\"{}\"}} {}\n", status, n);
      }
    }
    res.set_content(out, "text/plain; version=0.0.4");
  }

  const Workspace& workspace_;
  const ServeOptions& options_;
  const std::atomic<bool>& stop_;
  StorePool pool_;
  // httplib gives a kept-alive connection one thread until it closes, and queues the others
  // (first in, first out): more threads than clients, and a connection closed after a few
  // requests, so a connection waiting for a thread gets one soon. With 32 threads and 1,000
  // requests, 18 of 50 clients (and a posted sync) waited the whole 60 s of a load run.
  static constexpr size_t kRequestThreads = 64;
  static constexpr size_t kKeepAliveRequests = 10;
  static constexpr int kListenBacklog = 1024;
  int listening_socket_ = -1;
  LoginRateLimiter logins_;
  LoginRateLimiter logins_by_ip_;
  std::counting_semaphore<2> hashing_{2};
  std::mutex selection_mutex_;  // a selection is read, changed and written back under it
  httplib::Server server_;
  Status runner_status_;
  // This process as the runner of the jobs it claims: host, process ID and a random tag.
  const std::string runner_ = RunnerName();
  std::mutex wake_mutex_;
  std::condition_variable wake_;
  bool woken_ = false;
  std::mutex progress_mutex_;
  std::map<std::string, sync::CompareProgress> progress_;
  std::mutex requests_mutex_;
  std::map<int, int64_t> requests_snapshot_;
};

}  // namespace

Status Serve(const Workspace& workspace, const ServeOptions& options,
             const std::atomic<bool>& stop) {
  UseStderrLogger();
  Service service(workspace, options, stop);
  return service.Run();
}

std::vector<RouteInfo> ApiRoutes() {
  std::vector<RouteInfo> routes;
  for (const Service::Route& r : Service::Table()) {
    routes.push_back({r.method, r.pattern, r.role, r.needs_csrf});
  }
  return routes;
}

}  // namespace envsync::service
