// Load on the REST API while a sync runs (issue 8, item 3): C clients, each with its own
// connection and its own logged-in session, send the admin page's requests to a real
// `envsync serve` for D seconds, while a sync of a comparison with many selected records runs
// in the same server. It prints the throughput, the latency percentiles (all requests, while
// the sync ran and outside it, per route), every failure, and the server's RSS sampled every
// second.
//
//   load_bench [--clients C] [--seconds D] [--records N] [--edits K] [--keep-alive 1|0]
//              [--login-concurrency L] [--dir DIR] [--envsync PATH]
//
// Defaults: 50 clients, 60 s, `envsync demo init DIR --records 300000`, then K = 200,000 bulk
// CMS pages edited on TEST (as apply_bench does: the title of the first K pages the demo leaves
// alone), so the sync selects the demo's pending work plus K modified pages; keep-alive
// connections (as a browser keeps them; 0: a new connection per request); DIR is
// build/bench-load-N, made afresh each run; PATH is the envsync of the same build tree.
//
// The run:
//   1. the demo and the edits; `envsync serve --listen 127.0.0.1:0 --poll 1` as a child (its
//      stderr in DIR/serve.log, whose "listening on" line names the port it bound);
//   2. the demo admin (DIR/demo-login.txt) logs in and compares TEST -> PROD through the API;
//   3. every client logs in with the admin's address and password, getting a session of its
//      own, L (default 4) at a time. PBKDF2 is slow by design and the server hashes two
//      passwords at a time, so this happens before the window and is timed apart. (All C at
//      once, `--login-concurrency C`, is a burst of C connections: envsync serve's listen
//      backlog is cpp-httplib 0.11's fixed 5, and some of such a burst get no answer);
//   4. the window: each client loops over the mix below, back to back (no think time), until D
//      seconds have passed. The clients start one after the other over the first second (D/10
//      when shorter; all at once would be the connect burst of step 3). At D/20 the admin starts
//      the sync of the comparison (POST /api/v1/syncs); a monitor, sharing the admin's session,
//      follows that job every 250 ms and samples the server's VmRSS every second. The PATCH of the
//      mix moves one record of that same comparison in and out of its saved selection: the sync
//      took the selection when it was posted, so the writes race the sync in the state store
//      without changing what it applies. The admin's and the monitor's requests are not counted;
//   5. after the window the bench waits for the sync's job to end and stops the server with
//      SIGTERM.
//
// A request fails when it gets no answer (connection error, timeout) or any status but 200:
// every request of the mix answers 200 when the server is well. The bench exits 1 when any
// request failed, when the sync did not succeed, or when the server did not exit 0 on SIGTERM
// (under the sanitizers that includes a leak report); 2 on bad flags. The clients run on the
// same machine as the server and share its cores.
#include <fmt/format.h>
#include <httplib.h>
#include <signal.h>
#include <sqlite3.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <latch>
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <random>
#include <semaphore>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "bench/bench_process.h"

namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using Clock = std::chrono::steady_clock;

// The requests of the mix, with their share in percent: what the admin page sends while a
// reviewer pages through a comparison and a sync runs (web/app.js), plus a few writes that are
// safe to repeat.
enum RouteId {
  kSession,
  kEnvironments,
  kModules,
  kComparisons,
  kChangePage,
  kJobs,
  kOneJob,
  kMessages,
  kHistory,
  kMetrics,
  kPatchSelection,
  kReadMessage,
  kRouteCount
};

struct RouteMix {
  const char* name;
  int percent;
};

constexpr RouteMix kMix[kRouteCount] = {
    {"GET /api/v1/session", 8},
    {"GET /api/v1/environments", 5},
    {"GET /api/v1/modules", 4},
    {"GET /api/v1/comparisons", 10},
    {"GET /api/v1/comparisons/{id}?tab=modified&limit=50&offset=N", 25},
    {"GET /api/v1/jobs", 8},
    {"GET /api/v1/jobs/{sync job}", 8},
    {"GET /api/v1/messages", 12},
    {"GET /api/v1/history", 8},
    {"GET /metrics", 4},
    {"PATCH /api/v1/comparisons/{id}/selection", 4},
    {"POST /api/v1/messages/{id}/read", 4},
};

// One request of the window: when it started (seconds into the window), how long it took and
// how it ended (0: no answer).
struct Sample {
  double start_s = 0;
  double ms = 0;
  int status = 0;
  RouteId route = kSession;
};

// A failed request, as the report shows it.
struct Failure {
  RouteId route;
  int status;
  std::string what;
};

// One HTTP client with its own session cookie and CSRF token. Not thread-safe: one per thread.
class ApiClient {
 public:
  ApiClient(int port, bool keep_alive) : client_("127.0.0.1", port) {
    client_.set_keep_alive(keep_alive);
    client_.set_tcp_nodelay(true);  // as browsers do
    client_.set_connection_timeout(10, 0);
    client_.set_read_timeout(120, 0);
    client_.set_write_timeout(30, 0);
  }

  // Logs in; false (with `error` saying why) when the answer is not 200 with a cookie.
  bool Login(const std::string& email, const std::string& password, std::string* error) {
    const json body = {{"email", email}, {"password", password}};
    httplib::Result r = client_.Post("/api/v1/login", body.dump(), "application/json");
    if (!r) {
      *error = "no answer: " + httplib::to_string(r.error());
      return false;
    }
    const std::string cookie = r->get_header_value("Set-Cookie");
    const json session = json::parse(r->body, nullptr, false);
    if (r->status != 200 || cookie.empty() || !session.is_object()) {
      *error = fmt::format("{} {}", r->status, r->body.substr(0, 300));
      return false;
    }
    cookie_ = cookie.substr(0, cookie.find(';'));
    csrf_ = session.value("csrf_token", "");
    return true;
  }

  // Uses the session `other` logged in (a cookie is only a header).
  void ShareSession(const ApiClient& other) {
    cookie_ = other.cookie_;
    csrf_ = other.csrf_;
  }

  // Sends with the session cookie and, for anything but GET, the CSRF token.
  httplib::Result Send(const std::string& method, const std::string& path,
                       const std::string& body = "") {
    httplib::Headers headers = {{"Cookie", cookie_}};
    if (method != "GET") headers.emplace("X-CSRF-Token", csrf_);
    if (method == "GET") return client_.Get(path.c_str(), headers);
    if (method == "PATCH") return client_.Patch(path.c_str(), headers, body, "application/json");
    return client_.Post(path.c_str(), headers, body, "application/json");
  }

  // Closes the connection: a finished client must not hold one of the server's threads while
  // its kept-alive connection idles.
  void Close() { client_.stop(); }

  // GET `path` as JSON; a discarded value when there is no 200 answer.
  json GetJson(const std::string& path) {
    httplib::Result r = Send("GET", path);
    if (!r || r->status != 200) return json(json::value_t::discarded);
    return json::parse(r->body, nullptr, false);
  }

 private:
  httplib::Client client_;
  std::string cookie_;
  std::string csrf_;
};

// The `envsync serve` child: started with its stderr in a file, stopped with SIGTERM.
class ServerProcess {
 public:
  ServerProcess() = default;
  ServerProcess(const ServerProcess&) = delete;
  ServerProcess& operator=(const ServerProcess&) = delete;
  ~ServerProcess() {
    if (pid_ > 0) Stop(std::chrono::seconds(10));
  }

  // Starts `argv` (stdout to /dev/null, stderr to `log`) and waits up to `wait` for the line
  // "listening on http://HOST:PORT" in the log; the port, or 0 when it did not come.
  int Start(const std::vector<std::string>& argv, const fs::path& log, std::chrono::seconds wait) {
    std::fflush(stdout);
    pid_ = fork();
    if (pid_ == 0) {
      if (!freopen("/dev/null", "w", stdout) || !freopen(log.c_str(), "w", stderr)) _exit(126);
      std::vector<char*> args;
      for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
      args.push_back(nullptr);
      execv(args[0], args.data());
      _exit(127);
    }
    const auto until = Clock::now() + wait;
    while (Clock::now() < until) {
      std::ifstream in(log);
      std::string line;
      while (std::getline(in, line)) {
        const std::string marker = "listening on http://";
        const size_t at = line.find(marker);
        if (at == std::string::npos) continue;
        const size_t colon = line.rfind(':');
        if (colon == std::string::npos || colon < at + marker.size()) continue;
        return std::atoi(line.c_str() + colon + 1);
      }
      int status = 0;
      if (waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = 0;
        return 0;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    return 0;
  }

  // Sends SIGTERM and waits up to `grace` for the exit, then SIGKILL. The exit status, or
  // -signal when a signal ended it.
  int Stop(std::chrono::seconds grace) {
    if (pid_ <= 0) return 0;
    kill(pid_, SIGTERM);
    int status = 0;
    const auto until = Clock::now() + grace;
    pid_t done = 0;
    while ((done = waitpid(pid_, &status, WNOHANG)) == 0 && Clock::now() < until) {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    if (done == 0) {
      fmt::print(stderr, "load_bench: envsync serve did not stop in {} s: SIGKILL\n",
                 grace.count());
      kill(pid_, SIGKILL);
      waitpid(pid_, &status, 0);
    }
    pid_ = 0;
    return WIFSIGNALED(status) ? -WTERMSIG(status) : WEXITSTATUS(status);
  }

  pid_t pid() const { return pid_; }

 private:
  pid_t pid_ = 0;
};

// The process's resident memory in KiB (VmRSS), 0 when it cannot be read.
long RssKib(pid_t pid) {
  std::ifstream in(fmt::format("/proc/{}/status", pid));
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::atol(line.c_str() + 6);
  }
  return 0;
}

double Mib(long kib) { return kib / 1024.0; }

// The machine's count of connections a listening socket's full accept queue turned away
// (TcpExt ListenOverflows in /proc/net/netstat); -1 when it cannot be read.
int64_t ListenOverflows() {
  std::ifstream in("/proc/net/netstat");
  std::string names;
  std::string values;
  while (std::getline(in, names) && std::getline(in, values)) {
    if (names.rfind("TcpExt:", 0) != 0) continue;
    std::istringstream n(names);
    std::istringstream v(values);
    std::string name;
    std::string value;
    while (n >> name && v >> value) {
      if (name == "ListenOverflows") return std::atoll(value.c_str());
    }
  }
  return -1;
}

// The q-quantile of sorted `v` by nearest rank; 0 for none.
double Percentile(const std::vector<double>& v, double q) {
  if (v.empty()) return 0;
  const size_t rank = static_cast<size_t>(std::ceil(q * v.size()));
  return v[std::max<size_t>(rank, 1) - 1];
}

std::string Quantiles(std::vector<double> ms) {
  std::sort(ms.begin(), ms.end());
  return fmt::format("{:>8} {:>9.2f} {:>9.2f} {:>9.2f} {:>9.2f} {:>9.2f}", ms.size(),
                     Percentile(ms, 0.5), Percentile(ms, 0.9), Percentile(ms, 0.99),
                     Percentile(ms, 0.999), ms.empty() ? 0 : ms.back());
}

std::string ReadText(const fs::path& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

// Polls the job until it has ended or `wait` passed; the last answer.
json WaitForJob(ApiClient& api, const std::string& id, std::chrono::seconds wait) {
  json job;
  const auto until = Clock::now() + wait;
  while (Clock::now() < until) {
    job = api.GetJson("/api/v1/jobs/" + id);
    const std::string state = job.is_object() ? job.value("state", "") : "";
    if (state == "succeeded" || state == "failed" || state == "cancelled") return job;
    std::this_thread::sleep_for(std::chrono::milliseconds(250));
  }
  return job;
}

struct Options {
  int clients = 50;
  int seconds = 60;
  int64_t records = 300000;
  int64_t edits = 200000;
  bool keep_alive = true;
  int login_concurrency = 4;
  std::string dir;
  std::string envsync = ENVSYNC_BINARY;
};

// What every client of the window needs to know.
struct Shared {
  int port = 0;
  std::string email;
  std::string password;
  std::string comparison_id;
  std::string toggle_ref;  // the record the selection writes move in and out
  int64_t modified_total = 0;
  int64_t message_id = 0;  // the admin's message the reads mark read again; 0: none
  Clock::time_point start;
  Clock::time_point deadline;
  Clock::duration ramp{};  // the clients' first requests are spread over this
  int clients = 0;
  std::mutex job_mutex;
  std::string job_id;  // the comparison's job until the sync is posted, then the sync's
  bool sync_posted = false;
};

std::string CurrentJob(Shared& shared) {
  std::lock_guard<std::mutex> lock(shared.job_mutex);
  return shared.job_id;
}

// One client of the window: logs in, then loops over the mix until the deadline.
class LoadClient {
 public:
  LoadClient(Shared& shared, int index, bool keep_alive)
      : shared_(shared), index_(index), api_(shared.port, keep_alive), random_(index + 1) {}

  // Logs in, then closes the connection: until the window opens it would idle, holding one of
  // the server's request threads for its keep-alive timeout.
  bool LogIn(std::string* error) {
    const bool ok = api_.Login(shared_.email, shared_.password, error);
    api_.Close();
    return ok;
  }

  void Run() {
    std::this_thread::sleep_until(shared_.start + shared_.ramp * index_ / shared_.clients);
    std::uniform_int_distribution<int> percent(0, 99);
    const int64_t pages = std::max<int64_t>(1, (shared_.modified_total + 49) / 50);
    std::uniform_int_distribution<int64_t> page(0, pages - 1);
    bool selected = true;
    while (Clock::now() < shared_.deadline) {
      int roll = percent(random_);
      int route = 0;
      while (roll >= kMix[route].percent) roll -= kMix[route++].percent;
      std::string method = "GET";
      std::string path;
      std::string body;
      switch (static_cast<RouteId>(route)) {
        case kSession:
          path = "/api/v1/session";
          break;
        case kEnvironments:
          path = "/api/v1/environments";
          break;
        case kModules:
          path = "/api/v1/modules";
          break;
        case kComparisons:
          path = "/api/v1/comparisons";
          break;
        case kChangePage:
          path = fmt::format("/api/v1/comparisons/{}?tab=modified&limit=50&offset={}",
                             shared_.comparison_id, page(random_) * 50);
          break;
        case kJobs:
          path = "/api/v1/jobs";
          break;
        case kOneJob:
          path = "/api/v1/jobs/" + CurrentJob(shared_);
          break;
        case kMessages:
          path = "/api/v1/messages";
          break;
        case kHistory:
          path = "/api/v1/history";
          break;
        case kMetrics:
          path = "/metrics";
          break;
        case kPatchSelection:
          method = "PATCH";
          path = fmt::format("/api/v1/comparisons/{}/selection", shared_.comparison_id);
          selected = !selected;
          body = json{{selected ? "select" : "deselect", {shared_.toggle_ref}}}.dump();
          break;
        case kReadMessage:
          method = "POST";
          path = fmt::format("/api/v1/messages/{}/read", shared_.message_id);
          body = "{}";
          break;
        case kRouteCount:
          break;
      }
      const auto began = Clock::now();
      httplib::Result r = api_.Send(method, path, body);
      const auto ended = Clock::now();
      Sample s;
      s.start_s = std::chrono::duration<double>(began - shared_.start).count();
      s.ms = std::chrono::duration<double, std::milli>(ended - began).count();
      s.status = r ? r->status : 0;
      s.route = static_cast<RouteId>(route);
      samples_.push_back(s);
      if (s.status != 200 && failures_.size() < 20) {
        failures_.push_back(
            {s.route, s.status,
             r ? r->body.substr(0, 300) : "no answer: " + httplib::to_string(r.error())});
      }
    }
    api_.Close();
  }

  const std::vector<Sample>& samples() const { return samples_; }
  const std::vector<Failure>& failures() const { return failures_; }

 private:
  Shared& shared_;
  int index_;
  ApiClient api_;
  std::mt19937 random_;
  std::vector<Sample> samples_;
  std::vector<Failure> failures_;
};

// The monitor of the window: the sync's job every 250 ms (when it was first seen running and
// when it had ended) and the server's VmRSS once a second from the window's start to its end.
struct Monitor {
  std::vector<long> rss_kib;  // [k]: k seconds into the window
  double sync_running_s = -1;
  double sync_ended_s = -1;
  json sync_job;
  std::atomic<bool> sync_ended{false};
  std::atomic<bool> stop{false};
};

void RunMonitor(Shared& shared, ApiClient& api, pid_t server, int seconds, Monitor* monitor) {
  for (int tick = 0; !monitor->stop; ++tick) {
    if (tick % 4 == 0 && tick / 4 <= seconds) monitor->rss_kib.push_back(RssKib(server));
    std::string sync_job;
    {
      std::lock_guard<std::mutex> lock(shared.job_mutex);
      if (shared.sync_posted) sync_job = shared.job_id;
    }
    if (!sync_job.empty() && !monitor->sync_ended) {
      const json job = api.GetJson("/api/v1/jobs/" + sync_job);
      const std::string state = job.is_object() ? job.value("state", "") : "";
      const double now_s = std::chrono::duration<double>(Clock::now() - shared.start).count();
      if (state == "running" && monitor->sync_running_s < 0) monitor->sync_running_s = now_s;
      if (state == "succeeded" || state == "failed" || state == "cancelled") {
        monitor->sync_ended_s = now_s;
        monitor->sync_job = job;
        monitor->sync_ended = true;
      }
    }
    std::this_thread::sleep_until(shared.start + std::chrono::milliseconds(250 * (tick + 1)));
  }
}

// The report's line for a share of the requests: count, p50, p90, p99, p99.9 and max in ms.
void PrintQuantiles(const std::string& label, const std::vector<Sample>& samples,
                    const std::function<bool(const Sample&)>& keep) {
  std::vector<double> ms;
  for (const Sample& s : samples) {
    if (keep(s)) ms.push_back(s.ms);
  }
  fmt::print("  {:<68} {}\n", label, Quantiles(std::move(ms)));
}

// Makes the demo and its edits in `root` (afresh); false when that failed.
bool MakeDemo(const Options& options, const fs::path& root) {
  fs::remove_all(root);
  fmt::print("making the demo: envsync demo init {} --records {}, then {} pages edited on TEST\n",
             root.string(), options.records, options.edits);
  const envsync::bench::Sample made = envsync::bench::RunProcess(
      {options.envsync, "demo", "init", root.string(), "--records",
       std::to_string(options.records)},
      "", (root.parent_path() / (root.filename().string() + "-demo-init.err")).string());
  if (made.exit_code != 0) {
    fmt::print(stderr, "load_bench: envsync demo init failed (exit {})\n", made.exit_code);
    return false;
  }
  if (options.edits == 0) return true;
  // Bulk pages the demo leaves alone (IDs above 1000, not multiples of 1000), as apply_bench.
  sqlite3* db = nullptr;
  int rc = sqlite3_open((root / "test.db").c_str(), &db);
  if (rc == SQLITE_OK) {
    const std::string sql = fmt::format(
        "UPDATE cms_pages SET title = title || ' (load)' WHERE id IN (SELECT id FROM cms_pages "
        "WHERE id > 1000 AND id % 1000 != 0 ORDER BY id LIMIT {})",
        options.edits);
    rc = sqlite3_exec(db, sql.c_str(), nullptr, nullptr, nullptr);
  }
  if (rc != SQLITE_OK) {
    fmt::print(stderr, "load_bench: editing TEST's pages failed: {}\n", sqlite3_errmsg(db));
  }
  sqlite3_close(db);
  return rc == SQLITE_OK;
}

// Compares TEST -> PROD through the API and fills in what the clients need; false (having
// said why) when that failed.
bool Prepare(ApiClient& admin, Shared* shared) {
  httplib::Result started =
      admin.Send("POST", "/api/v1/comparisons", R"({"from":"TEST","to":"PROD","mode":"all"})");
  if (!started || started->status != 202) {
    fmt::print(stderr, "load_bench: POST /api/v1/comparisons: {}\n",
               started ? started->body : httplib::to_string(started.error()));
    return false;
  }
  const std::string compare_job = json::parse(started->body, nullptr, false).value("job_id", "");
  const auto began = Clock::now();
  const json job = WaitForJob(admin, compare_job, std::chrono::seconds(1800));
  if (!job.is_object() || job.value("state", "") != "succeeded") {
    fmt::print(stderr, "load_bench: the comparison did not succeed: {}\n", job.dump());
    return false;
  }
  shared->comparison_id = job["result"].value("comparison_id", "");
  shared->job_id = compare_job;
  const json page =
      admin.GetJson("/api/v1/comparisons/" + shared->comparison_id + "?tab=modified&limit=1");
  if (!page.is_object() || page["changes"].empty()) {
    fmt::print(stderr, "load_bench: the comparison has no modified records: {}\n", page.dump());
    return false;
  }
  shared->modified_total = page.value("total", int64_t{0});
  shared->toggle_ref = page["changes"][0].value("ref", "");
  const json messages = admin.GetJson("/api/v1/messages");
  if (messages.is_object() && !messages["messages"].empty()) {
    shared->message_id = messages["messages"][0].value("id", int64_t{0});
  }
  fmt::print(
      "comparison {} (through the API, {:.1f} s): conflicts {}, new {}, modified {}, deleted "
      "{}\n",
      shared->comparison_id, std::chrono::duration<double>(Clock::now() - began).count(),
      page["counts"].value("conflicts", 0), page["counts"].value("new", 0),
      page["counts"].value("modified", 0), page["counts"].value("deleted", 0));
  if (shared->message_id == 0) {
    fmt::print(stderr, "load_bench: the admin has no message to mark read\n");
    return false;
  }
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  Options options;
  for (int i = 1; i < argc; i += 2) {
    const std::string flag = argv[i];
    if (i + 1 >= argc) {
      fmt::print(stderr, "load_bench: {} needs a value\n", flag);
      return 2;
    }
    const std::string value = argv[i + 1];
    if (flag == "--clients") {
      options.clients = std::atoi(value.c_str());
    } else if (flag == "--seconds") {
      options.seconds = std::atoi(value.c_str());
    } else if (flag == "--records") {
      options.records = std::atoll(value.c_str());
    } else if (flag == "--edits") {
      options.edits = std::atoll(value.c_str());
    } else if (flag == "--login-concurrency") {
      options.login_concurrency = std::atoi(value.c_str());
    } else if (flag == "--keep-alive") {
      options.keep_alive = value != "0";
    } else if (flag == "--dir") {
      options.dir = value;
    } else if (flag == "--envsync") {
      options.envsync = value;
    } else {
      fmt::print(stderr, "load_bench: unknown flag {}\n", flag);
      return 2;
    }
  }
  if (options.clients < 1 || options.seconds < 1 || options.records < 0 || options.edits < 0 ||
      options.login_concurrency < 1) {
    fmt::print(stderr,
               "load_bench: --clients, --seconds and --login-concurrency must be at least 1, "
               "--records and --edits not negative\n");
    return 2;
  }
  if (options.dir.empty()) options.dir = fmt::format("build/bench-load-{}", options.records);
  signal(SIGPIPE, SIG_IGN);  // a peer that closed its socket is a failure to count, not a crash

  const fs::path root = fs::absolute(options.dir);
  if (!MakeDemo(options, root)) return 1;
  Shared shared;
  {
    std::ifstream login(root / "demo-login.txt");
    std::getline(login, shared.email);
    std::getline(login, shared.password);
  }
  ServerProcess server;
  shared.port = server.Start({options.envsync, "--config", (root / "envsync.toml").string(),
                              "serve", "--listen", "127.0.0.1:0", "--poll", "1"},
                             root / "serve.log", std::chrono::seconds(60));
  if (shared.port == 0) {
    fmt::print(stderr, "load_bench: envsync serve did not start:\n{}\n",
               ReadText(root / "serve.log"));
    return 1;
  }
  fmt::print("envsync serve (pid {}) on 127.0.0.1:{}, its log in {}\n", server.pid(), shared.port,
             (root / "serve.log").string());

  ApiClient admin(shared.port, /*keep_alive=*/false);
  std::string error;
  if (!admin.Login(shared.email, shared.password, &error)) {
    fmt::print(stderr, "load_bench: the demo admin's login failed: {}\n", error);
    return 1;
  }
  if (!Prepare(admin, &shared)) return 1;

  // The logins, before the window: each client its own session.
  std::vector<std::unique_ptr<LoadClient>> clients;
  for (int i = 0; i < options.clients; ++i) {
    clients.push_back(std::make_unique<LoadClient>(shared, i, options.keep_alive));
  }
  std::latch logged_in(options.clients);
  std::latch go(1);
  std::counting_semaphore<> login_slots(options.login_concurrency);
  std::atomic<int> login_failures{0};
  std::vector<std::thread> threads;
  const int64_t login_overflows_before = ListenOverflows();
  const auto logins_began = Clock::now();
  for (int i = 0; i < options.clients; ++i) {
    threads.emplace_back([&, i] {
      std::string why;
      login_slots.acquire();
      const bool ok = clients[i]->LogIn(&why);
      login_slots.release();
      if (!ok) {
        ++login_failures;
        fmt::print(stderr, "load_bench: client {}'s login failed: {}\n", i, why);
      }
      logged_in.count_down();
      go.wait();
      if (ok) clients[i]->Run();
    });
  }
  logged_in.wait();
  const double login_s = std::chrono::duration<double>(Clock::now() - logins_began).count();
  fmt::print(
      "{} logins, {} at a time (one session per client; the server hashes two passwords at a "
      "time): {:.1f} s, {} failed; accept queue overflows meanwhile (machine-wide): {}\n",
      options.clients, options.login_concurrency, login_s, login_failures.load(),
      ListenOverflows() - login_overflows_before);

  // The window.
  const int64_t overflows_before = ListenOverflows();
  shared.start = Clock::now();
  shared.deadline = shared.start + std::chrono::seconds(options.seconds);
  shared.ramp = std::min<Clock::duration>(std::chrono::seconds(1),
                                          std::chrono::milliseconds(options.seconds * 100));
  shared.clients = options.clients;
  if (login_failures > 0) shared.deadline = shared.start;  // nobody runs: report and fail
  Monitor monitor;
  ApiClient monitor_api(shared.port, /*keep_alive=*/false);
  monitor_api.ShareSession(admin);
  std::thread monitor_thread(
      [&] { RunMonitor(shared, monitor_api, server.pid(), options.seconds, &monitor); });
  go.count_down();
  fmt::print("window: {} clients ({}) for {} s; the sync starts at {:.1f} s\n", options.clients,
             options.keep_alive ? "keep-alive connections" : "a new connection per request",
             options.seconds, options.seconds / 20.0);
  std::this_thread::sleep_until(shared.start + std::chrono::milliseconds(options.seconds * 50));
  bool sync_ok = false;
  std::string sync_job_id;
  double sync_posted_s = -1;
  {
    const auto began = Clock::now();
    httplib::Result posted =
        admin.Send("POST", "/api/v1/syncs", json{{"comparison_id", shared.comparison_id}}.dump());
    sync_posted_s = std::chrono::duration<double>(began - shared.start).count();
    if (posted && posted->status == 202) {
      sync_job_id = json::parse(posted->body, nullptr, false).value("job_id", "");
      std::lock_guard<std::mutex> lock(shared.job_mutex);
      shared.job_id = sync_job_id;
      shared.sync_posted = true;
    } else {
      fmt::print(stderr, "load_bench: POST /api/v1/syncs: {}\n",
                 posted ? fmt::format("{} {}", posted->status, posted->body)
                        : httplib::to_string(posted.error()));
    }
  }
  for (std::thread& t : threads) t.join();
  const double window_s = std::chrono::duration<double>(Clock::now() - shared.start).count();
  const int64_t overflows = ListenOverflows() - overflows_before;
  // The sync may outlast the window: wait for its end (the monitor sees it).
  if (!sync_job_id.empty()) {
    const auto until = Clock::now() + std::chrono::minutes(30);
    while (!monitor.sync_ended && Clock::now() < until) {
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
  }
  monitor.stop = true;
  monitor_thread.join();
  const int server_exit = server.Stop(std::chrono::seconds(120));

  // The report.
  std::vector<Sample> samples;
  std::vector<Failure> failures;
  for (const auto& c : clients) {
    samples.insert(samples.end(), c->samples().begin(), c->samples().end());
    failures.insert(failures.end(), c->failures().begin(), c->failures().end());
  }
  int64_t failed = login_failures;
  std::map<std::pair<int, int>, int64_t> failed_by;  // (route, status) -> count
  for (const Sample& s : samples) {
    if (s.status != 200) {
      ++failed;
      ++failed_by[{s.route, s.status}];
    }
  }
  fmt::print("\nrequests: {} in {:.1f} s: {:.0f} requests/s\n", samples.size(), window_s,
             samples.size() / window_s);
  fmt::print("  {:<68} {:>8} {:>9} {:>9} {:>9} {:>9} {:>9}\n", "latency (ms)", "count", "p50",
             "p90", "p99", "p99.9", "max");
  PrintQuantiles("all", samples, [](const Sample&) { return true; });
  const double running_from = monitor.sync_running_s >= 0 ? monitor.sync_running_s : sync_posted_s;
  const double running_to = monitor.sync_ended_s >= 0 ? monitor.sync_ended_s : window_s;
  PrintQuantiles(
      fmt::format("while the sync ran ({:.1f}–{:.1f} s)", running_from, running_to), samples,
      [&](const Sample& s) { return s.start_s >= running_from && s.start_s < running_to; });
  PrintQuantiles("the rest of the window", samples, [&](const Sample& s) {
    return s.start_s < running_from || s.start_s >= running_to;
  });
  for (int r = 0; r < kRouteCount; ++r) {
    PrintQuantiles(fmt::format("{} ({}%)", kMix[r].name, kMix[r].percent), samples,
                   [r](const Sample& s) { return s.route == r; });
  }

  fmt::print(
      "connections the server's full accept queue turned away during the window (TcpExt "
      "ListenOverflows, machine-wide): {}\n",
      overflows);
  fmt::print("\nfailures: {}\n", failed);
  if (login_failures > 0) fmt::print("  logins: {}\n", login_failures.load());
  for (const auto& [key, count] : failed_by) {
    fmt::print("  {} -> {}: {}\n", kMix[key.first].name,
               key.second == 0 ? std::string("no answer") : std::to_string(key.second), count);
  }
  for (size_t i = 0; i < failures.size() && i < 10; ++i) {
    fmt::print("  e.g. {} -> {}: {}\n", kMix[failures[i].route].name, failures[i].status,
               failures[i].what);
  }

  const json& job = monitor.sync_job;
  if (sync_job_id.empty()) {
    fmt::print("\nsync: not started\n");
  } else if (!job.is_object()) {
    fmt::print("\nsync: job {} had not ended 30 minutes after the window\n", sync_job_id);
  } else {
    const json result =
        job.contains("result") && job["result"].is_object() ? job["result"] : json::object();
    sync_ok = job.value("state", "") == "succeeded" && result.value("success", false);
    const json applied = result.contains("applied") ? result["applied"] : json::object();
    fmt::print(
        "\nsync: job {} {}{}: posted at {:.1f} s, {}, ended by {:.1f} s ({}); applied new {}, "
        "modified {}, deleted {}\n",
        sync_job_id, job.value("state", ""), sync_ok ? "" : " (" + job.dump() + ")", sync_posted_s,
        monitor.sync_running_s >= 0
            ? fmt::format("seen running at {:.1f} s", monitor.sync_running_s)
            : std::string("never seen running (it ran between two polls)"),
        monitor.sync_ended_s,
        monitor.sync_ended_s <= window_s ? "inside the window" : "after the window",
        applied.value("new", 0), applied.value("modified", 0), applied.value("deleted", 0));
  }

  const std::vector<long>& rss = monitor.rss_kib;
  if (!rss.empty()) {
    const size_t middle = rss.size() / 2;
    const long max = *std::max_element(rss.begin(), rss.end());
    fmt::print(
        "\nserver RSS (MiB): start {:.1f}, middle ({} s) {:.1f}, end ({} s) {:.1f}, max {:.1f}; "
        "growth over the second half {:+.1f}\n",
        Mib(rss.front()), middle, Mib(rss[middle]), rss.size() - 1, Mib(rss.back()), Mib(max),
        Mib(rss.back() - rss[middle]));
    const size_t after_sync = static_cast<size_t>(std::ceil(monitor.sync_ended_s));
    if (monitor.sync_ended_s >= 0 && after_sync + 1 < rss.size()) {
      fmt::print("  growth from the first sample after the sync ended ({} s) to the end: {:+.1f}\n",
                 after_sync, Mib(rss.back() - rss[after_sync]));
    }
    fmt::print("  every second:");
    for (long kib : rss) fmt::print(" {:.0f}", Mib(kib));
    fmt::print("\n");
  }
  fmt::print("\nserver exit status on SIGTERM: {}\n", server_exit);
  const bool ok = failed == 0 && sync_ok && server_exit == 0;
  fmt::print("{}\n", ok ? "load: OK" : "load: FAILED");
  return ok ? 0 : 1;
}
