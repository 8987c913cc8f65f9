// Fuzzes every REST request body (docs/API.md) through a real envsync server in this process.
//
// LLVMFuzzerInitialize writes the demo (`envsync demo init`: PROD and TEST after their last
// sync, then edited, and a demo admin) in a fresh temporary folder, starts service::Serve on
// 127.0.0.1 port 0 over it, logs in as the admin, runs one comparison TEST -> PROD and
// test-imports it (the undo route names that sync). Each
// input's first byte picks a route that takes a body (`a` the first, `b` the second, ...; any
// byte picks one), and the rest is sent as its JSON body with the admin's session cookie and
// CSRF token; `$C` in the body stands for that comparison's ID. POST /api/v1/logout is left
// out: its body is ignored and it would end the fuzzer's session.
//
// Holds the server to its contract: it answers every request (no crash, hang or dropped
// connection), never with a 5xx other than the documented 503 (the state store or an
// environment cannot be read): a 500 is a bug; and every error has the documented shape
// {"error": {"code": "...", "message": "..."}}.
#include <httplib.h>
#include <spdlog/spdlog.h>

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "envsync/cli/cli.h"
#include "envsync/core/config.h"
#include "envsync/demo/demo.h"
#include "envsync/service/server.h"
#include "envsync/service/workspace.h"
#include "fuzz/fuzz_check.h"

namespace {

namespace fs = std::filesystem;
using nlohmann::json;

struct Route {
  std::string method;
  std::string path;
};

// What lives from LLVMFuzzerInitialize to the end of the process.
struct Harness {
  fs::path dir;
  std::unique_ptr<envsync::service::Workspace> workspace;
  envsync::service::ServeOptions options;
  std::atomic<bool> stop{false};
  std::atomic<bool> ended{false};
  std::atomic<int> port{0};  // set by Serve once it listens
  std::thread server;
  std::unique_ptr<httplib::Client> client;
  std::string cookie;
  std::string csrf;
  std::vector<Route> routes;
  std::string comparison_id;
};

Harness* harness = nullptr;

[[noreturn]] void SetupFailed(const std::string& what) {
  std::fprintf(stderr, "envsync api fuzz: setup failed: %s\n", what.c_str());
  std::abort();
}

// Sends one request with the session cookie and CSRF token.
httplib::Result Send(const std::string& method, const std::string& path, const std::string& body) {
  httplib::Headers headers;
  if (!harness->cookie.empty()) headers.emplace("Cookie", harness->cookie);
  if (!harness->csrf.empty()) headers.emplace("X-CSRF-Token", harness->csrf);
  httplib::Client& client = *harness->client;
  if (method == "GET") return client.Get(path.c_str(), headers);
  if (method == "PUT") return client.Put(path.c_str(), headers, body, "application/json");
  if (method == "PATCH") return client.Patch(path.c_str(), headers, body, "application/json");
  return client.Post(path.c_str(), headers, body, "application/json");
}

json SendJson(const std::string& method, const std::string& path, const json& body, int expected) {
  httplib::Result r = Send(method, path, body.is_null() ? "" : body.dump());
  if (!r || r->status != expected) {
    SetupFailed(method + " " + path + " answered " + (r ? std::to_string(r->status) : "nothing") +
                ": " + (r ? r->body : httplib::to_string(r.error())));
  }
  return json::parse(r->body);
}

// Waits for the job `started` (a 202's body) to end; it must succeed.
json RunJob(const json& started) {
  const std::string path = "/api/v1/jobs/" + started.at("job_id").get<std::string>();
  json job;
  for (int i = 0; i < 1200; ++i) {
    job = SendJson("GET", path, json(), 200);
    const std::string state = job.value("state", "");
    if (state != "queued" && state != "running") break;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  if (job.value("state", "") != "succeeded") SetupFailed("a job failed: " + job.dump());
  return job;
}

std::string ReadFile(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

// Stops the server before the process's static objects go away.
void Shutdown() {
  if (harness == nullptr || !harness->server.joinable()) return;
  harness->stop = true;
  harness->server.join();
  std::error_code ec;
  fs::remove_all(harness->dir, ec);
}

void Setup() {
  char folder[] = "/tmp/envsync-api-fuzz-XXXXXX";
  if (mkdtemp(folder) == nullptr) SetupFailed("cannot create a temporary folder");
  harness->dir = folder;
  const fs::path demo_dir = harness->dir / "demo";
  const std::string admin = "admin@fuzz.example";
  std::ostringstream out;
  std::ostringstream err;
  if (envsync::cli::Run({"demo", "init", demo_dir.string(), "--admin", admin}, out, err) != 0) {
    SetupFailed("envsync demo init: " + err.str());
  }
  const envsync::demo::DemoPaths paths = envsync::demo::PathsFor(demo_dir);
  std::istringstream login_file(ReadFile(demo_dir / "demo-login.txt"));
  std::string email;
  std::string password;
  std::getline(login_file, email);
  std::getline(login_file, password);

  auto config = envsync::LoadConfig(paths.config.string());
  if (!config.ok()) SetupFailed(config.status().message());
  auto workspace = envsync::service::Workspace::Open(*config);
  if (!workspace.ok()) SetupFailed(workspace.status().message());
  harness->workspace = std::move(*workspace);
  harness->options.listen = "127.0.0.1:0";
  harness->options.poll_seconds = 1;
  harness->options.on_listening = [](int bound) { harness->port = bound; };
  harness->server = std::thread([] {
    envsync::Status served =
        envsync::service::Serve(*harness->workspace, harness->options, harness->stop);
    if (!served.ok()) std::fprintf(stderr, "envsync api fuzz: %s\n", served.message().c_str());
    harness->ended = true;
  });
  for (int i = 0; i < 600 && harness->port == 0 && !harness->ended; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  const int port = harness->port;
  if (port == 0) SetupFailed("the server did not start listening");
  // One log line per request would drown libFuzzer's output; errors (a 500's cause) still show.
  spdlog::set_level(spdlog::level::err);

  harness->client = std::make_unique<httplib::Client>("127.0.0.1", port);
  harness->client->set_connection_timeout(5, 0);
  harness->client->set_read_timeout(30, 0);
  httplib::Result login =
      Send("POST", "/api/v1/login", json{{"email", email}, {"password", password}}.dump());
  if (!login || login->status != 200) SetupFailed("the demo admin cannot log in");
  const std::string cookie = login->get_header_value("Set-Cookie");
  harness->cookie = cookie.substr(0, cookie.find(';'));
  harness->csrf = json::parse(login->body).at("csrf_token").get<std::string>();

  const json compared = RunJob(SendJson("POST", "/api/v1/comparisons",
                                        {{"from", "TEST"}, {"to", "PROD"}, {"mode", "all"}}, 202));
  harness->comparison_id = compared.at("result").at("comparison_id").get<std::string>();
  const std::string sync_id =
      RunJob(SendJson("POST", "/api/v1/syncs",
                      {{"comparison_id", harness->comparison_id}, {"test_import", true}}, 202))
          .at("result")
          .at("sync_id")
          .get<std::string>();
  // Stopping the server at exit must come before the static objects it uses are destroyed,
  // which happens in the reverse order of their construction: the login, the comparison and
  // the test import above have made those of the paths they take.
  std::atexit(Shutdown);

  const std::string comparison = "/api/v1/comparisons/" + harness->comparison_id;
  // The seeds in fuzz/corpus/api_fuzz start with these letters: keep the order.
  harness->routes = {
      {"POST", "/api/v1/login"},                        // a
      {"POST", "/api/v1/comparisons"},                  // b
      {"PUT", comparison + "/selection"},               // c
      {"PATCH", comparison + "/selection"},             // d
      {"POST", comparison + "/select-tab"},             // e
      {"POST", "/api/v1/syncs"},                        // f
      {"POST", "/api/v1/users"},                        // g
      {"POST", "/api/v1/syncs/j-000000000000/cancel"},  // h
      {"POST", "/api/v1/syncs/" + sync_id + "/undo"},   // i
      {"POST", "/api/v1/messages/1/read"},              // j
  };
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  harness = new Harness;  // kept to the end of the process
  Setup();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const Route& route =
      harness->routes[static_cast<uint8_t>(data[0] - 'a') % harness->routes.size()];
  std::string body(reinterpret_cast<const char*>(data) + 1, size - 1);
  for (size_t at = body.find("$C"); at != std::string::npos; at = body.find("$C", at)) {
    body.replace(at, 2, harness->comparison_id);
    at += harness->comparison_id.size();
  }
  httplib::Result r = Send(route.method, route.path, body);
  if (!r) {
    std::fprintf(stderr, "envsync api fuzz: %s %s got no answer: %s\n", route.method.c_str(),
                 route.path.c_str(), httplib::to_string(r.error()).c_str());
  }
  ENVSYNC_FUZZ_CHECK(r);
  if (r->status >= 500 && r->status != 503) {
    std::fprintf(stderr, "envsync api fuzz: %s %s answered %d: %s\n", route.method.c_str(),
                 route.path.c_str(), r->status, r->body.c_str());
  }
  ENVSYNC_FUZZ_CHECK(r->status < 500 || r->status == 503);
  if (r->status >= 400) {
    const json error = json::parse(r->body, nullptr, false);
    ENVSYNC_FUZZ_CHECK(error.is_object() && error.contains("error") && error["error"].is_object());
    ENVSYNC_FUZZ_CHECK(error["error"].value("code", json()).is_string());
    ENVSYNC_FUZZ_CHECK(error["error"].value("message", json()).is_string());
  }
  return 0;
}
