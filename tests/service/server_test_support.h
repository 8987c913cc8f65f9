// What the tests of `envsync serve` over HTTP share: an API client with its own session, and a
// fixture that runs the real `envsync serve` (ENVSYNC_BINARY) on the demo environments.
#ifndef ENVSYNC_TESTS_SERVICE_SERVER_TEST_SUPPORT_H_
#define ENVSYNC_TESTS_SERVICE_SERVER_TEST_SUPPORT_H_

#include <httplib.h>

#include <ctime>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

#include "envsync/service/users.h"
#include "envsync/store/state_store.h"
#include "tests/service/service_test_support.h"

namespace envsync::testing {

// Times a little ahead of now, as the API takes them.
inline std::string UtcIn(int seconds) {
  const std::time_t t = std::time(nullptr) + seconds;
  char text[32];
  std::strftime(text, sizeof(text), "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&t));
  return text;
}

// One API client with its own session: it logs in, keeps the cookie and the CSRF token, and
// sends them along.
class Api {
 public:
  explicit Api(int port) : client_("127.0.0.1", port) {
    client_.set_read_timeout(60, 0);
    client_.set_connection_timeout(5, 0);
  }

  struct Answer {
    int status = 0;
    nlohmann::json body;
    std::string raw;
    httplib::Headers headers;
  };

  Answer Login(const std::string& email, const std::string& password) {
    Answer a =
        Send("POST", "/api/v1/login", nlohmann::json{{"email", email}, {"password", password}});
    if (a.status == 200) {
      const std::string cookie = Header(a, "Set-Cookie");
      cookie_ = cookie.substr(0, cookie.find(';'));
      csrf_ = a.body["csrf_token"];
    }
    return a;
  }
  Answer Get(const std::string& path) { return Send("GET", path, nlohmann::json()); }
  Answer Post(const std::string& path, const nlohmann::json& body) {
    return Send("POST", path, body);
  }
  Answer Put(const std::string& path, const nlohmann::json& body) {
    return Send("PUT", path, body);
  }

  // Sends with the session cookie and, unless `csrf` is false, the CSRF token.
  Answer Send(const std::string& method, const std::string& path, const nlohmann::json& body,
              bool csrf = true) {
    httplib::Headers headers;
    if (!cookie_.empty()) headers.emplace("Cookie", cookie_);
    if (csrf && !csrf_.empty()) headers.emplace("X-CSRF-Token", csrf_);
    const std::string text = body.is_null() ? "" : body.dump();
    httplib::Result r =
        method == "GET"     ? client_.Get(path.c_str(), headers)
        : method == "POST"  ? client_.Post(path.c_str(), headers, text, "application/json")
        : method == "PATCH" ? client_.Patch(path.c_str(), headers, text, "application/json")
        : method == "HEAD"  ? client_.Head(path.c_str(), headers)
                            : client_.Put(path.c_str(), headers, text, "application/json");
    Answer a;
    if (!r) return a;
    a.status = r->status;
    a.raw = r->body;
    a.headers = r->headers;
    a.body = nlohmann::json::parse(r->body, nullptr, false);
    return a;
  }

  static std::string Header(const Answer& a, const std::string& name) {
    auto it = a.headers.find(name);
    return it == a.headers.end() ? "" : it->second;
  }

  // Polls the job until it has ended (or `seconds` pass) and returns it.
  nlohmann::json WaitForJob(const std::string& id, int seconds = 60) {
    nlohmann::json job;
    for (int i = 0; i < seconds * 10; ++i) {
      job = Get("/api/v1/jobs/" + id).body;
      const std::string state = job.value("state", "");
      if (state == "succeeded" || state == "failed" || state == "cancelled") return job;
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    return job;
  }

  std::string cookie_;
  std::string csrf_;

 private:
  httplib::Client client_;
};

// The demo environments with pending work, three users (olga@shop.example an operator,
// vic@shop.example a viewer, ada@shop.example an admin; each one's password is the address
// followed by "-pw"), and the real `envsync serve` on them.
class ServeFixture : public DemoEnvironments {
 protected:
  void SetUp() override {
    DemoEnvironments::SetUp();
    Build(Start::kPendingWork);
    auto state = store::OpenStateStore(paths_.state.string());
    ASSERT_TRUE(state.ok()) << state.status().message();
    for (const auto& [email, role] :
         {std::pair{"olga@shop.example", "operator"}, std::pair{"vic@shop.example", "viewer"},
          std::pair{"ada@shop.example", "admin"}}) {
      ASSERT_TRUE(service::AddUser(**state, email, role, std::string(email) + "-pw",
                                   "Europe/Berlin", "2026-01-01T00:00:00Z")
                      .ok());
    }
  }
  void TearDown() override {
    server_.Stop(SIGTERM);
    sink_.Stop(SIGTERM);
    DemoEnvironments::TearDown();
  }

  // Starts `envsync serve` on a free port and waits until it answers.
  void StartServer(const std::vector<std::pair<std::string, std::string>>& env = {}) {
    StartServe(&server_, &port_, "serve.err", env);
  }

  // Starts one `envsync serve` as `child` on a free port (kept in `port`), its stderr in
  // `err_name` in the test's folder, and waits until it answers.
  void StartServe(Child* child, int* port, const std::string& err_name,
                  const std::vector<std::pair<std::string, std::string>>& env) {
    *port = FreePort();
    child->Start({ENVSYNC_BINARY, "--config", paths_.config.string(), "serve", "--listen",
                  "127.0.0.1:" + std::to_string(*port), "--poll", "1"},
                 dir_ / err_name, env);
    for (int i = 0; i < 200; ++i) {
      if (Accepts(*port)) return;
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    FAIL() << "envsync serve did not start: " << ReadBytes(dir_ / err_name);
  }

  Api LoggedIn(const std::string& email) {
    Api api(port_);
    EXPECT_EQ(api.Login(email, email + "-pw").status, 200);
    return api;
  }

  // Starts a comparison TEST -> PROD through the API and returns its ID once it has finished.
  std::string CompareThroughApi(Api& api, const std::string& mode = "all") {
    Api::Answer started =
        api.Post("/api/v1/comparisons", {{"from", "TEST"}, {"to", "PROD"}, {"mode", mode}});
    EXPECT_EQ(started.status, 202) << started.raw;
    const nlohmann::json job = api.WaitForJob(started.body.value("job_id", ""));
    EXPECT_EQ(job.value("state", ""), "succeeded") << job.dump();
    if (!job.contains("result") || !job["result"].is_object()) return "";
    return job["result"].value("comparison_id", "");
  }

  nlohmann::json JobsOf(Api& api) { return api.Get("/api/v1/jobs").body["jobs"]; }

  int port_ = 0;
  Child server_;
  Child sink_;
};

}  // namespace envsync::testing

#endif  // ENVSYNC_TESTS_SERVICE_SERVER_TEST_SUPPORT_H_
