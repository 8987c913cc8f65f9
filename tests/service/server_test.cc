// The service over HTTP: the real `envsync serve` on a free loopback port, driven as a client
// would drive it (docs/API.md), with a real SMTP sink for its mail.
#include <set>

#include "envsync/service/users.h"
#include "envsync/store/state_store.h"
#include "tests/service/server_test_support.h"
#include "tests/store/pg_support.h"
#include "tests/sync/target_dump.h"

namespace envsync::testing {
namespace {

using nlohmann::json;
namespace fs = std::filesystem;

class ServerTest : public ServeFixture {};

// The whole review loop over HTTP: log in, compare and wait for the job, page through a tab,
// deselect a record, test-import (nothing changes), then schedule the sync two seconds ahead
// and see it run without the deselected record.
TEST_F(ServerTest, CompareReviewTestImportAndScheduledSync) {
  StartServer();
  Api api = LoggedIn("olga@shop.example");
  const std::string id = CompareThroughApi(api);
  ASSERT_FALSE(id.empty());

  Api::Answer page = api.Get("/api/v1/comparisons/" + id + "?tab=new&limit=2");
  ASSERT_EQ(page.status, 200) << page.raw;
  const int64_t new_count = page.body["counts"]["new"];
  ASSERT_GE(new_count, 3);
  EXPECT_EQ(page.body["total"], new_count);
  EXPECT_EQ(page.body["changes"].size(), 2u);
  Api::Answer second = api.Get("/api/v1/comparisons/" + id + "?tab=new&limit=2&offset=2");
  EXPECT_NE(second.body["changes"][0]["ref"], page.body["changes"][0]["ref"]);

  // Deselect one modified record nothing else needs.
  std::string left_out;
  const json modified = api.Get("/api/v1/comparisons/" + id + "?tab=modified&limit=100").body;
  for (const json& c : modified["changes"]) {
    if (c["selected"] == true && c["required_by"].empty()) left_out = c["ref"];
  }
  ASSERT_FALSE(left_out.empty());
  Api::Answer saved =
      api.Put("/api/v1/comparisons/" + id + "/selection", {{"deselect", {left_out}}});
  ASSERT_EQ(saved.status, 200) << saved.raw;
  Api::Answer filtered = api.Get("/api/v1/comparisons/" + id + "?tab=modified&filter=" + left_out);
  ASSERT_EQ(filtered.body["changes"].size(), 1u) << filtered.raw;
  EXPECT_EQ(filtered.body["changes"][0]["selected"], false);

  // Test import: it runs, and nothing stays.
  const std::string before = DumpTarget(paths_);
  Api::Answer test_import =
      api.Post("/api/v1/syncs", {{"comparison_id", id}, {"test_import", true}});
  ASSERT_EQ(test_import.status, 202) << test_import.raw;
  json ran = api.WaitForJob(test_import.body["job_id"]);
  ASSERT_EQ(ran["state"], "succeeded") << ran.dump();
  EXPECT_GT(ran["result"]["applied"]["new"].get<int>(), 0);
  EXPECT_EQ(DumpTarget(paths_), before);

  // Scheduled two seconds ahead: it is scheduled first, then runs.
  Api::Answer scheduled = api.Post("/api/v1/syncs", {{"comparison_id", id}, {"run_at", UtcIn(2)}});
  ASSERT_EQ(scheduled.status, 202) << scheduled.raw;
  EXPECT_EQ(scheduled.body["state"], "scheduled");
  EXPECT_NE(scheduled.body["run_at_local"].get<std::string>().find("CET"), std::string::npos)
      << "shown in the user's zone, Europe/Berlin";
  json done = api.WaitForJob(scheduled.body["job_id"]);
  ASSERT_EQ(done["state"], "succeeded") << done.dump() << ReadBytes(dir_ / "serve.err");
  EXPECT_NE(DumpTarget(paths_), before);
  // On a fresh comparison the deselected record is the one selected modification left; the
  // others moved.
  const std::string again = CompareThroughApi(api);
  json still = api.Get("/api/v1/comparisons/" + again + "?tab=modified&limit=1000").body["changes"];
  std::vector<std::string> pending;
  for (const json& c : still) {
    if (c["selected"] == true) pending.push_back(c["ref"]);
  }
  EXPECT_EQ(pending, std::vector<std::string>{left_out}) << still.dump();

  // Messages: the scheduled one, then Success; history lists the sync.
  Api::Answer messages = api.Get("/api/v1/messages");
  std::vector<std::string> titles;
  for (const json& m : messages.body["messages"]) titles.push_back(m["title"]);
  EXPECT_NE(std::find(titles.begin(), titles.end(), "Synchronization process"), titles.end());
  EXPECT_NE(std::find(titles.begin(), titles.end(), "Success: Synchronization process"),
            titles.end());
  EXPECT_GT(messages.body["unread"].get<int>(), 0);
  const int64_t first = messages.body["messages"][0]["id"];
  EXPECT_EQ(api.Post("/api/v1/messages/" + std::to_string(first) + "/read", json::object()).status,
            200);
  EXPECT_EQ(api.Get("/api/v1/messages").body["unread"].get<int>(),
            messages.body["unread"].get<int>() - 1);
  json history = api.Get("/api/v1/history").body["syncs"];
  ASSERT_EQ(history.size(), 2u);
  EXPECT_EQ(history[0]["sync_id"], done["result"]["sync_id"]);

  // Undo puts the target back.
  Api::Answer undone = api.Post(
      "/api/v1/syncs/" + done["result"]["sync_id"].get<std::string>() + "/undo", json::object());
  ASSERT_EQ(undone.status, 200) << undone.raw;
  EXPECT_EQ(DumpTarget(paths_), before);

  // The audit log tells who did it, to which records.
  Api admin = LoggedIn("ada@shop.example");
  json audit = admin.Get("/api/v1/audit").body["audit"];
  bool deselect_logged = false;
  for (const json& e : audit) {
    if (e["action"] == "selection.save" && e["user"] == "olga@shop.example" &&
        e["detail"]["deselect"][0] == left_out) {
      deselect_logged = true;
    }
  }
  EXPECT_TRUE(deselect_logged) << audit.dump();
}

// A state store that cannot be opened when `envsync serve` starts (here a folder stands where
// its file belongs) does not stop the job runner for good: the runner tries again, and runs the
// due sync once the store is back. Meanwhile the API answers 503 without saying where it is.
TEST_F(ServerTest, JobRunnerWaitsForItsStateStoreAndThenRunsTheDueSync) {
  namespace fs = std::filesystem;
  const std::string comparison = CompareJson({"--from", "TEST", "--to", "PROD"})["comparison_id"];
  CliRun scheduled = RunCli(
      {"--config", paths_.config.string(), "sync", comparison, "--at", "2020-01-01T00:00:00Z"});
  ASSERT_EQ(scheduled.exit_code, 0) << scheduled.err;
  const std::string prod_before = ReadBytes(paths_.prod_db);
  const fs::path away = dir_ / "state-away";
  fs::create_directories(away);
  for (const char* suffix : {"", "-wal", "-shm"}) {
    const fs::path file = paths_.state.string() + suffix;
    if (fs::exists(file)) fs::rename(file, away / file.filename());
  }
  fs::create_directory(paths_.state);
  StartServer();
  const Api::Answer health = Api(port_).Get("/api/v1/health");
  EXPECT_EQ(health.status, 503) << health.raw;
  EXPECT_EQ(health.raw.find(dir_.string()), std::string::npos) << health.raw;
  for (int i = 0;
       i < 100 && ReadBytes(dir_ / "serve.err").find("trying again") == std::string::npos; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  ASSERT_NE(ReadBytes(dir_ / "serve.err").find("trying again"), std::string::npos)
      << ReadBytes(dir_ / "serve.err");
  fs::remove(paths_.state);
  for (const auto& file : fs::directory_iterator(away)) {
    fs::rename(file.path(), paths_.state.parent_path() / file.path().filename());
  }
  bool ran = false;
  for (int i = 0; i < 300 && !ran; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    CliRun jobs = RunCli({"--config", paths_.config.string(), "jobs", "--json"});
    ran = jobs.exit_code == 0 && jobs.Json().back()["state"] == "succeeded";
  }
  EXPECT_TRUE(ran) << ReadBytes(dir_ / "serve.err");
  EXPECT_NE(ReadBytes(paths_.prod_db), prod_before);
  EXPECT_NE(ReadBytes(dir_ / "serve.err").find("the state store is back"), std::string::npos);
  EXPECT_EQ(Api(port_).Get("/api/v1/health").status, 200);
}

// A scheduled sync cancelled before its time never runs, and says so.
TEST_F(ServerTest, CancelledSyncNeverRuns) {
  StartServer();
  Api api = LoggedIn("olga@shop.example");
  const std::string id = CompareThroughApi(api);
  const std::string before = DumpTarget(paths_);
  Api::Answer scheduled = api.Post("/api/v1/syncs", {{"comparison_id", id}, {"run_at", UtcIn(3)}});
  ASSERT_EQ(scheduled.status, 202) << scheduled.raw;
  const std::string job = scheduled.body["job_id"];
  // The scheduled message offers the cancel action.
  json message = api.Get("/api/v1/messages").body["messages"][0];
  ASSERT_EQ(message["title"], "Synchronization process");
  ASSERT_EQ(message["actions"].size(), 1u);
  const std::string cancel = message["actions"][0]["href"];
  EXPECT_EQ(cancel, "/api/v1/syncs/" + job + "/cancel");
  Api::Answer cancelled = api.Post(cancel, json::object());
  ASSERT_EQ(cancelled.status, 200) << cancelled.raw;
  EXPECT_EQ(cancelled.body["state"], "cancelled");
  std::this_thread::sleep_for(std::chrono::seconds(5));
  EXPECT_EQ(api.Get("/api/v1/jobs/" + job).body["state"], "cancelled");
  EXPECT_EQ(DumpTarget(paths_), before);
  EXPECT_EQ(api.Post(cancel, json::object()).status, 409) << "a cancelled job stays cancelled";
  EXPECT_EQ(api.Get("/api/v1/history").body["syncs"].size(), 0u);
}

// The server killed (-9) while a sync is scheduled: nothing runs while it is down, and the
// sync runs after the restart.
TEST_F(ServerTest, ScheduledSyncRunsAfterTheServerIsKilledAndRestarted) {
  StartServer();
  Api api = LoggedIn("olga@shop.example");
  const std::string id = CompareThroughApi(api);
  const std::string before = DumpTarget(paths_);
  Api::Answer scheduled = api.Post("/api/v1/syncs", {{"comparison_id", id}, {"run_at", UtcIn(3)}});
  ASSERT_EQ(scheduled.status, 202);
  EXPECT_EQ(server_.Stop(SIGKILL), -SIGKILL);
  std::this_thread::sleep_for(std::chrono::seconds(4));
  EXPECT_EQ(DumpTarget(paths_), before);
  StartServer();
  Api again = LoggedIn("olga@shop.example");
  json job = again.WaitForJob(scheduled.body["job_id"]);
  EXPECT_EQ(job["state"], "succeeded") << job.dump();
  EXPECT_NE(DumpTarget(paths_), before);
}

// The server dies in the middle of a sync, just after the target committed: at the restart
// the sync is completed, the job ends succeeded, and its message says what happened. Killed
// before the commit, the sync is rolled back and the job ends failed, with the target as before.
TEST_F(ServerTest, SyncInterruptedByACrashIsSettledAtRestart) {
  for (const auto& [point, committed] :
       {std::pair{"committed", true}, std::pair{"applied", false}}) {
    SCOPED_TRACE(point);
    TearDown();
    SetUp();
    StartServer({{"ENVSYNC_CRASH_AT", point}});
    Api api = LoggedIn("olga@shop.example");
    const std::string id = CompareThroughApi(api);
    const std::string before = DumpTarget(paths_);
    Api::Answer started = api.Post("/api/v1/syncs", {{"comparison_id", id}});
    ASSERT_EQ(started.status, 202);
    ASSERT_EQ(server_.WaitFor(30000), std::optional<int>(-SIGKILL))
        << "the crash point was not hit";
    StartServer();
    Api again = LoggedIn("olga@shop.example");
    json job = again.WaitForJob(started.body["job_id"]);
    EXPECT_EQ(job["state"], committed ? "succeeded" : "failed") << job.dump();
    EXPECT_EQ(job["result"]["recovered"], true) << job.dump();
    EXPECT_EQ(DumpTarget(paths_) != before, committed);
    const json message = again.Get("/api/v1/messages").body["messages"][0];
    EXPECT_EQ(message["job_id"], started.body["job_id"]);
    EXPECT_NE(message["body"].get<std::string>().find(committed ? "completed" : "rolled back"),
              std::string::npos)
        << message.dump();
  }
}

// Killed after the sync's end was mailed and stored but before the job saved it, the restart
// settles the job without telling the user again; killed before telling, the restart tells them
// once. Either way: one message and one mail about how the sync ended.
TEST_F(ServerTest, UserIsToldOnceHowAnInterruptedSyncEnded) {
  // The comparison job passes these points first (#1); the sync job is #2.
  for (const char* point : {"job_notified#2", "job_worked#2"}) {
    SCOPED_TRACE(point);
    TearDown();
    SetUp();
    const int smtp = StartSmtpSink(&sink_, dir_ / "maildir", dir_ / "sink.err");
    ASSERT_GT(smtp, 0) << "the SMTP sink did not start";
    UseSmtp(paths_.config, "smtp://127.0.0.1:" + std::to_string(smtp));
    StartServer({{"ENVSYNC_CRASH_AT", point}});
    Api api = LoggedIn("olga@shop.example");
    const std::string id = CompareThroughApi(api);
    Api::Answer started = api.Post("/api/v1/syncs", {{"comparison_id", id}});
    ASSERT_EQ(started.status, 202);
    ASSERT_EQ(server_.WaitFor(30000), std::optional<int>(-SIGKILL))
        << "the crash point was not hit";
    StartServer();
    Api again = LoggedIn("olga@shop.example");
    json job = again.WaitForJob(started.body["job_id"]);
    EXPECT_EQ(job["state"], "succeeded") << job.dump();
    int told = 0;
    const json messages = again.Get("/api/v1/messages").body["messages"];
    for (const json& m : messages) {
      if (m["job_id"] == started.body["job_id"] &&
          m["title"].get<std::string>().find("Synchronization process") != std::string::npos &&
          m["title"] != "Synchronization process") {
        ++told;
      }
    }
    EXPECT_EQ(told, 1);
    std::this_thread::sleep_for(std::chrono::milliseconds(500));  // a second mail would be here
    int mailed = 0;
    for (const std::string& mail : Mails(dir_ / "maildir")) {
      if (mail.find("Subject: Success: Synchronization process") != std::string::npos) ++mailed;
    }
    EXPECT_EQ(mailed, 1);
  }
}

// Two syncs into PROD due at the same moment run one after the other; the second is told it
// waits.
TEST_F(ServerTest, SecondSyncIntoTheSameEnvironmentWaitsWithAMessage) {
  StartServer();
  Api api = LoggedIn("olga@shop.example");
  const std::string id = CompareThroughApi(api);
  const std::string at = UtcIn(2);
  Api::Answer first =
      api.Post("/api/v1/syncs", {{"comparison_id", id}, {"run_at", at}, {"test_import", true}});
  Api::Answer second =
      api.Post("/api/v1/syncs", {{"comparison_id", id}, {"run_at", at}, {"test_import", true}});
  ASSERT_EQ(second.status, 202);
  EXPECT_EQ(api.WaitForJob(first.body["job_id"])["state"], "succeeded");
  EXPECT_EQ(api.WaitForJob(second.body["job_id"])["state"], "succeeded");
  // Jobs due at the same second go in ID order: whichever waits names the other.
  const std::string a = first.body["job_id"];
  const std::string b = second.body["job_id"];
  bool waited = false;
  const json messages = api.Get("/api/v1/messages").body;
  for (const json& m : messages["messages"]) {
    if (m["title"] != "Synchronization process waiting") continue;
    const std::string other = m["job_id"] == a ? b : a;
    waited =
        m["body"].get<std::string>().find("into PROD (job " + other + ")") != std::string::npos;
  }
  EXPECT_TRUE(waited) << api.Get("/api/v1/messages").raw;
}

// E-mails reach a real SMTP sink: the comparison mail and the sync mail, to the user who
// started the work, with the link into the page.
TEST_F(ServerTest, MailsReachTheSinkWithRecipientSubjectAndLink) {
  const int smtp = StartSmtpSink(&sink_, dir_ / "maildir", dir_ / "sink.err");
  ASSERT_GT(smtp, 0) << "the SMTP sink did not start";
  UseSmtp(paths_.config, "smtp://127.0.0.1:" + std::to_string(smtp));
  StartServer();
  Api api = LoggedIn("olga@shop.example");
  const std::string id = CompareThroughApi(api);
  Api::Answer started = api.Post("/api/v1/syncs", {{"comparison_id", id}});
  ASSERT_EQ(started.status, 202);
  json job = api.WaitForJob(started.body["job_id"]);
  ASSERT_EQ(job["state"], "succeeded");
  std::vector<std::string> mails;
  for (int i = 0; i < 100 && mails.size() < 2; ++i) {
    mails = Mails(dir_ / "maildir");
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  ASSERT_EQ(mails.size(), 2u);
  int checked = 0;
  for (const std::string& mail : mails) {
    EXPECT_NE(mail.find("To: olga@shop.example"), std::string::npos) << mail;
    if (mail.find("Subject: Comparison finished") != std::string::npos) {
      EXPECT_NE(mail.find("https://envsync.shop.example/comparisons/" + id), std::string::npos);
      ++checked;
    }
    if (mail.find("Subject: Success: Synchronization process") != std::string::npos) {
      EXPECT_NE(mail.find("https://envsync.shop.example/syncs/" +
                          job["result"]["sync_id"].get<std::string>()),
                std::string::npos);
      ++checked;
    }
  }
  EXPECT_EQ(checked, 2);
}

// Refusals: 401 without a session, 403 for a role too low, 403 without the CSRF token, 400
// naming the field, 429 after repeated failed logins, and a logged-out session is dead.
TEST_F(ServerTest, RefusesUnauthenticatedForbiddenForgedAndRepeatedRequests) {
  StartServer();
  Api anonymous(port_);
  Api::Answer no_session = anonymous.Get("/api/v1/jobs");
  EXPECT_EQ(no_session.status, 401);
  EXPECT_EQ(no_session.body["error"]["code"], "unauthenticated");
  EXPECT_EQ(anonymous.Post("/api/v1/comparisons", {{"from", "TEST"}, {"to", "PROD"}}).status, 401);
  EXPECT_EQ(anonymous.Get("/api/v1/health").status, 200);

  Api viewer = LoggedIn("vic@shop.example");
  EXPECT_EQ(viewer.Get("/api/v1/jobs").status, 200);
  Api::Answer forbidden = viewer.Post("/api/v1/comparisons", {{"from", "TEST"}, {"to", "PROD"}});
  EXPECT_EQ(forbidden.status, 403);
  EXPECT_EQ(forbidden.body["error"]["code"], "forbidden");
  EXPECT_EQ(viewer.Get("/api/v1/users").status, 403);

  Api op = LoggedIn("olga@shop.example");
  Api::Answer forged =
      op.Send("POST", "/api/v1/comparisons", {{"from", "TEST"}, {"to", "PROD"}}, /*csrf=*/false);
  EXPECT_EQ(forged.status, 403);
  EXPECT_EQ(forged.body["error"]["code"], "csrf");
  Api::Answer bad = op.Post("/api/v1/comparisons", {{"from", "TEST"}, {"to", 7}});
  EXPECT_EQ(bad.status, 400);
  EXPECT_EQ(bad.body["error"]["field"], "to");
  Api::Answer unknown = op.Post("/api/v1/syncs", {{"comparison_id", "c-nope"}});
  EXPECT_EQ(unknown.status, 400);
  EXPECT_EQ(unknown.body["error"]["field"], "comparison_id");
  EXPECT_EQ(
      op.Post("/api/v1/users", {{"email", "x@y.z"}, {"role", "admin"}, {"password", "12345678"}})
          .status,
      403);
  // A session cookie is HttpOnly and SameSite=Strict.
  Api fresh(port_);
  Api::Answer login = fresh.Login("olga@shop.example", "olga@shop.example-pw");
  const std::string cookie = Api::Header(login, "Set-Cookie");
  EXPECT_NE(cookie.find("HttpOnly"), std::string::npos);
  EXPECT_NE(cookie.find("SameSite=Strict"), std::string::npos);
  EXPECT_EQ(fresh.Post("/api/v1/logout", json::object()).status, 200);
  EXPECT_EQ(fresh.Get("/api/v1/jobs").status, 401);

  // An empty or malformed address never matches some user.
  Api guesser(port_);
  EXPECT_EQ(guesser.Login("", "ada@shop.example-pw").status, 400);
  EXPECT_EQ(guesser.Login("nobody", "ada@shop.example-pw").status, 400);
  // Malformed requests get an error, and the server stays up: a path that is not UTF-8, a body
  // nested too deep, an admin adding a user that exists.
  EXPECT_EQ(anonymous.Get("/%FF%FE").status, 404);
  EXPECT_EQ(anonymous.Get("/api/v1/health").status, 200);
  Api::Answer deep =
      op.Post("/api/v1/comparisons", json::parse(std::string(40, '[') + std::string(40, ']')));
  EXPECT_EQ(deep.status, 400);
  Api admin = LoggedIn("ada@shop.example");
  Api::Answer twice =
      admin.Post("/api/v1/users",
                 {{"email", "vic@shop.example"}, {"role", "admin"}, {"password", "12345678"}});
  EXPECT_EQ(twice.status, 409);
  EXPECT_EQ(anonymous.Get("/api/v1/health").status, 200);

  Api attacker(port_);
  for (int i = 0; i < 5; ++i) {
    EXPECT_EQ(attacker.Login("vic@shop.example", "guess-" + std::to_string(i)).status, 401);
  }
  Api::Answer limited = attacker.Login("vic@shop.example", "vic@shop.example-pw");
  EXPECT_EQ(limited.status, 429) << "even the right password waits out the window";
  EXPECT_EQ(limited.body["error"]["code"], "rate_limited");
  EXPECT_FALSE(Api::Header(limited, "Retry-After").empty());
  // The log names requests, never passwords or tokens. (The line is written after the answer
  // is sent: wait for it.)
  std::string log;
  for (int i = 0; i < 100; ++i) {
    log = ReadBytes(dir_ / "serve.err");
    if (log.find("POST /api/v1/login 429") != std::string::npos) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  EXPECT_NE(log.find("POST /api/v1/login 429"), std::string::npos);
  EXPECT_EQ(log.find("vic@shop.example-pw"), std::string::npos);
  EXPECT_EQ(log.find(op.cookie_.substr(op.cookie_.find('=') + 1)), std::string::npos);
}

// What a client needs to start: environments, modules, gallery folders, the session.
TEST_F(ServerTest, DescribesEnvironmentsModulesAndFolders) {
  StartServer();
  Api api = LoggedIn("vic@shop.example");
  json envs = api.Get("/api/v1/environments").body["environments"];
  ASSERT_EQ(envs.size(), 2u);
  EXPECT_EQ(envs[0]["name"], "PROD");
  EXPECT_EQ(envs[0]["home"], true);
  json modules = api.Get("/api/v1/modules").body["modules"];
  std::vector<std::string> names;
  for (const json& m : modules) names.push_back(m["name"]);
  EXPECT_EQ(names, (std::vector<std::string>{"gallery", "cms_pages", "sliders", "menus",
                                             "content_blocks", "system_config"}));
  json folders = api.Get("/api/v1/environments/TEST/folders").body["folders"];
  EXPECT_NE(std::find(folders.begin(), folders.end(), "mobile_app"), folders.end()) << folders;
  EXPECT_EQ(api.Get("/api/v1/environments/STAGE/folders").status, 400);
  json session = api.Get("/api/v1/session").body;
  EXPECT_EQ(session["role"], "viewer");
  EXPECT_EQ(session["time_zone"], "Europe/Berlin");
  EXPECT_EQ(api.Get("/api/v1/comparisons/c-unknown").status, 404);
  EXPECT_EQ(api.Get("/api/v1/nothing-here").body["error"]["code"], "not_found");
}

// The review's selection: PATCH moves single records, select-tab takes a whole tab (never the
// conflicts), and a resolution selects its conflict; the sync takes all of it.
TEST_F(ServerTest, SelectionIsPatchedPerRecordAndPerTab) {
  StartServer();
  Api api = LoggedIn("olga@shop.example");
  const std::string id = CompareThroughApi(api);
  const std::string base = "/api/v1/comparisons/" + id;
  auto selected = [&](const std::string& tab) {
    std::map<std::string, bool> out;
    const json page = api.Get(base + "?tab=" + tab + "&limit=1000").body;
    for (const json& c : page["changes"]) {
      out[c["ref"]] = c["selected"];
    }
    return out;
  };
  Api::Answer off = api.Post(base + "/select-tab", {{"tab", "modified"}, {"selected", false}});
  ASSERT_EQ(off.status, 200) << off.raw;
  for (const auto& [ref, on] : selected("modified")) EXPECT_FALSE(on) << ref;
  EXPECT_EQ(api.Post(base + "/select-tab", {{"tab", "conflicts"}, {"selected", true}}).status, 400);
  Api::Answer one = api.Send("PATCH", base + "/selection", {{"select", {"cms_pages:2"}}});
  ASSERT_EQ(one.status, 200) << one.raw;
  Api::Answer resolved =
      api.Send("PATCH", base + "/selection", {{"resolve", {{"cms_pages:20", "insert_as_new"}}}});
  ASSERT_EQ(resolved.status, 200) << resolved.raw;
  EXPECT_TRUE(selected("modified")["cms_pages:2"]);
  EXPECT_FALSE(selected("modified")["menus:1"]);
  EXPECT_TRUE(selected("conflicts")["cms_pages:20"]);
  EXPECT_EQ(
      api.Send("PATCH", base + "/selection", {{"resolve", {{"cms_pages:20", "shred"}}}}).status,
      400);
  // The sync takes the saved selection: one modified record, the new ones, the resolved one.
  json job = api.WaitForJob(
      api.Post("/api/v1/syncs", {{"comparison_id", id}, {"test_import", true}}).body["job_id"]);
  ASSERT_EQ(job["state"], "succeeded") << job.dump();
  EXPECT_EQ(job["request"]["resolve"][0], "cms_pages:20=insert_as_new");
  EXPECT_EQ(job["result"]["applied"]["modified"], 1);
}

// Thumbnails: gallery images are served to a logged-in user; names that could leave the
// gallery, symlinks out of it and non-images are refused.
TEST_F(ServerTest, GalleryImagesAreServedAndTraversalIsRefused) {
  std::filesystem::create_directory_symlink("/etc", paths_.test_assets / "gallery" / "escape");
  WriteBytes(paths_.test_assets / "gallery" / "mobile_app" / "notes.txt", "not an image");
  StartServer();
  Api api = LoggedIn("vic@shop.example");
  Api::Answer image = api.Get("/api/v1/environments/TEST/gallery?path=mobile_app/splash.png");
  ASSERT_EQ(image.status, 200) << image.raw;
  EXPECT_EQ(image.raw.substr(1, 3), "PNG");
  EXPECT_EQ(Api::Header(image, "Content-Type"), "image/png");
  for (const std::string bad :
       {"../../prod.db", "/etc/passwd", "mobile_app/../../../prod.db", "mobile_app/notes.txt",
        "escape/hostname.png", "", "mobile_app/missing.png"}) {
    Api::Answer refused = api.Get("/api/v1/environments/TEST/gallery?path=" + bad);
    EXPECT_TRUE(refused.status == 400 || refused.status == 404) << bad << " " << refused.status;
    EXPECT_TRUE(refused.body.contains("error")) << bad;
  }
  Api anonymous(port_);
  EXPECT_EQ(anonymous.Get("/api/v1/environments/TEST/gallery?path=mobile_app/splash.png").status,
            401);
}

// Metrics in Prometheus text: jobs by state, sync durations, records applied.
TEST_F(ServerTest, MetricsCountJobsSyncsAndRecords) {
  StartServer();
  Api api = LoggedIn("olga@shop.example");
  const std::string id = CompareThroughApi(api);
  json job = api.WaitForJob(api.Post("/api/v1/syncs", {{"comparison_id", id}}).body["job_id"]);
  ASSERT_EQ(job["state"], "succeeded");
  Api::Answer metrics = api.Get("/metrics");
  ASSERT_EQ(metrics.status, 200);
  EXPECT_NE(metrics.raw.find("envsync_jobs{state=\"succeeded\"} 2"), std::string::npos)
      << metrics.raw;
  EXPECT_NE(metrics.raw.find("envsync_sync_duration_seconds_count 1"), std::string::npos);
  const int applied_new = job["result"]["applied"]["new"];
  EXPECT_NE(metrics.raw.find("envsync_records_applied_total{kind=\"new\"} " +
                             std::to_string(applied_new)),
            std::string::npos)
      << metrics.raw;
}

// A sync whose stored counts are not numbers (a row edited by hand) does not break /metrics:
// the counts that are numbers are still summed, the others left out.
// httplib's default socket options include SO_REUSEPORT, under which a second server binds the
// same port and takes part of the first one's connections: envsync must refuse to start instead.
TEST_F(ServerTest, ASecondServerOnTheSamePortIsRefused) {
  StartServer();
  Child second;
  second.Start({ENVSYNC_BINARY, "--config", paths_.config.string(), "serve", "--listen",
                "127.0.0.1:" + std::to_string(port_), "--poll", "1"},
               dir_ / "second.err");
  const std::optional<int> ended = second.WaitFor(20000);
  ASSERT_TRUE(ended.has_value()) << "a second envsync serve is listening on port " << port_;
  EXPECT_NE(*ended, 0);
  const std::string said = ReadBytes(dir_ / "second.err");
  EXPECT_NE(said.find("cannot listen on 127.0.0.1:" + std::to_string(port_)), std::string::npos)
      << said;
  Api api = LoggedIn("vic@shop.example");
  EXPECT_EQ(api.Get("/api/v1/jobs").status, 200);
}

// `serve` loads the HTTP server from envsync-serve.so, first from beside the binary: a copy of
// the binary beside a damaged module refuses to serve, naming that file, and the copy's other
// commands do not load the module at all.
TEST_F(ServerTest, ServeLoadsItsModuleFromBesideTheBinary) {
  const std::filesystem::path installed = dir_ / "installed";
  std::filesystem::create_directories(installed);
  std::filesystem::copy_file(ENVSYNC_BINARY, installed / "envsync");
  WriteBytes(installed / "envsync-serve.so", "not a shared library");
  Child serve;
  serve.Start({(installed / "envsync").string(), "--config", paths_.config.string(), "serve",
               "--listen", "127.0.0.1:0"},
              dir_ / "installed-serve.err");
  const std::optional<int> served = serve.WaitFor(20000);
  ASSERT_TRUE(served.has_value()) << "envsync serve started beside a damaged module";
  EXPECT_EQ(*served, 1);
  const std::string said = ReadBytes(dir_ / "installed-serve.err");
  EXPECT_NE(said.find((installed / "envsync-serve.so").string() +
                      " (needed for envsync serve) cannot be loaded"),
            std::string::npos)
      << said;
  Child compare;
  compare.Start({(installed / "envsync").string(), "--config", paths_.config.string(), "compare",
                 "--from", "TEST", "--to", "PROD"},
                dir_ / "installed-compare.err");
  const std::optional<int> compared = compare.WaitFor(60000);
  ASSERT_TRUE(compared.has_value());
  EXPECT_EQ(*compared, 0) << ReadBytes(dir_ / "installed-compare.err");
}

TEST_F(ServerTest, MetricsLeaveOutCountsThatAreNotNumbers) {
  {
    auto state = store::OpenStateStore(paths_.state.string());
    ASSERT_TRUE(state.ok()) << state.status().message();
    store::SyncRun run;
    run.id = "s-000000000001";
    run.comparison_id = "c-000000000001";
    run.created_at = "2026-01-01T00:00:00Z";
    run.finished_at = "2026-01-01T00:00:05Z";
    run.started_by = "olga@shop.example";
    run.from = "TEST";
    run.to = "PROD";
    run.status = "success";
    run.applied = R"({"new": "three", "modified": 2})";
    ASSERT_TRUE((*state)->SaveSync(run).ok());
  }
  StartServer();
  Api::Answer metrics = Api(port_).Get("/metrics");
  ASSERT_EQ(metrics.status, 200) << metrics.raw;
  EXPECT_NE(metrics.raw.find("envsync_records_applied_total{kind=\"modified\"} 2"),
            std::string::npos)
      << metrics.raw;
  EXPECT_NE(metrics.raw.find("envsync_records_applied_total{kind=\"new\"} 0"), std::string::npos)
      << metrics.raw;
}

// --- Two servers sharing one PostgreSQL state store -------------------------------------------

// The demo environments with envsync's state in a fresh PostgreSQL database, and two `envsync
// serve` processes on it.
class SharedStoreTest : public ServerTest {
 protected:
  void SetUp() override {
    ENVSYNC_REQUIRE_POSTGRES();
    static int counter = 0;
    db_ = "envsync_shared_" + std::to_string(::getpid()) + "_" + std::to_string(counter++);
    Pg admin(ServerUri());
    ASSERT_TRUE(admin.ok()) << admin.error();
    admin.Run("CREATE DATABASE " + db_);
    // The config names the PostgreSQL store; ServerTest::SetUp adds the users to it.
    DemoEnvironments::SetUp();
    Build(Start::kPendingWork);
    std::string config = ReadBytes(paths_.config);
    const size_t at = config.find("state = ");
    ASSERT_NE(at, std::string::npos) << config;
    config.replace(at, config.find('\n', at) - at, "state = \"" + DatabaseUri(db_) + "\"");
    WriteBytes(paths_.config, config);
    auto state = store::OpenStateStore(DatabaseUri(db_));
    ASSERT_TRUE(state.ok()) << state.status().message();
    ASSERT_TRUE(service::AddUser(**state, "olga@shop.example", "operator", "olga@shop.example-pw",
                                 "Europe/Berlin", "2026-01-01T00:00:00Z")
                    .ok());
  }
  void TearDown() override {
    second_.Stop(SIGTERM);
    ServerTest::TearDown();
    if (!db_.empty()) DropPostgresDatabase(db_);
  }

  // Starts the second server on its own port.
  void StartSecond(const std::vector<std::pair<std::string, std::string>>& env = {}) {
    StartServe(&second_, &second_port_, "serve2.err", env);
  }

  Api LoggedInSecond() {
    Api api(second_port_);
    EXPECT_EQ(api.Login("olga@shop.example", "olga@shop.example-pw").status, 200);
    return api;
  }

  std::string Store(const std::string& sql, const std::vector<std::string>& params = {}) {
    Pg pg(DatabaseUri(db_));
    return pg.Run(sql, params);
  }

  std::string db_;
  int second_port_ = 0;
  Child second_;
};

// Comparisons and syncs submitted to either server, all due together, each run exactly once:
// one comparison per compare job, one sync run per sync job, and both servers took part.
TEST_F(SharedStoreTest, TwoServersRunEveryJobExactlyOnce) {
  StartServer();
  StartSecond();
  Api a = LoggedIn("olga@shop.example");
  Api b = LoggedInSecond();
  const std::string id = CompareThroughApi(a);
  ASSERT_FALSE(id.empty());
  std::vector<std::string> jobs;
  const std::string at = UtcIn(2);
  for (int i = 0; i < 12; ++i) {
    Api& api = i % 2 == 0 ? a : b;
    Api::Answer answer =
        i < 4 ? api.Post("/api/v1/comparisons", {{"from", "TEST"}, {"to", "PROD"}, {"mode", "all"}})
              : api.Post("/api/v1/syncs",
                         {{"comparison_id", id}, {"run_at", at}, {"test_import", true}});
    ASSERT_EQ(answer.status, 202) << answer.raw;
    jobs.push_back(answer.body["job_id"]);
  }
  std::set<std::string> sync_ids;
  for (const std::string& job_id : jobs) {
    const json job = a.WaitForJob(job_id, 120);
    EXPECT_EQ(job["state"], "succeeded") << job.dump();
    if (job["kind"] == "sync") sync_ids.insert(job["result"].value("sync_id", ""));
  }
  EXPECT_EQ(sync_ids.size(), 8u);
  EXPECT_EQ(Store("SELECT count(*) FROM syncs"), "8|\n");
  EXPECT_EQ(Store("SELECT count(*) FROM comparisons"), "5|\n");
  EXPECT_EQ(Store("SELECT count(*) FROM jobs WHERE state <> 'succeeded'"), "0|\n");
  // Each server claimed jobs under its own name.
  EXPECT_EQ(Store("SELECT count(DISTINCT runner) FROM jobs"), "2|\n")
      << Store("SELECT id, kind, runner FROM jobs ORDER BY started_at");
}

// A sync waits while another process holds its target environment's advisory lock (here the
// test itself), is told so, and runs once the lock is let go.
TEST_F(SharedStoreTest, SyncWaitsWhileItsTargetIsLockedElsewhere) {
  StartServer();
  StartSecond();
  Api a = LoggedIn("olga@shop.example");
  const std::string id = CompareThroughApi(a);
  const std::string before = DumpTarget(paths_);
  auto holder = std::make_unique<Pg>(DatabaseUri(db_));
  // The key docs/SCALING.md gives for a target environment's lock.
  holder->Run("SELECT pg_advisory_lock(1701737076, hashtext('PROD'))");
  Api::Answer started = a.Post("/api/v1/syncs", {{"comparison_id", id}});
  ASSERT_EQ(started.status, 202) << started.raw;
  const std::string job_id = started.body["job_id"];
  std::this_thread::sleep_for(std::chrono::seconds(4));
  // Each poll of the two runners finds PROD locked before it claims the job: the job is seen
  // "queued" at every look, never "running" for the moment of a poll.
  json job;
  for (int look = 0; look < 30; ++look) {
    job = a.Get("/api/v1/jobs/" + job_id).body;
    ASSERT_EQ(job["state"], "queued") << "look " << look << ": " << job.dump();
    EXPECT_TRUE(job["started_at"].is_null()) << job.dump();
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  EXPECT_EQ(DumpTarget(paths_), before);
  bool told = false;
  const json messages = a.Get("/api/v1/messages").body;
  for (const json& m : messages["messages"]) {
    told = told || (m["job_id"] == job_id && m["title"] == "Synchronization process waiting" &&
                    m["body"].get<std::string>().find("into PROD") != std::string::npos);
  }
  EXPECT_TRUE(told) << messages.dump();
  holder.reset();  // the session ends, and its lock with it
  job = a.WaitForJob(job_id);
  EXPECT_EQ(job["state"], "succeeded") << job.dump();
  EXPECT_NE(DumpTarget(paths_), before);
  EXPECT_EQ(Store("SELECT count(*) FROM syncs"), "1|\n");
}

// A server that starts while the other is in the middle of a sync does not take that sync for
// one a dead process left: the sync finishes once, on the server that claimed it. When that
// server is then killed mid-sync, the other settles its sync (rolled back) and the job ends.
TEST_F(SharedStoreTest, RunningJobIsLeftToItsLiveRunnerAndSettledWhenItDies) {
  const fs::path paused = dir_ / "paused";
  StartServer({{"ENVSYNC_PAUSE_AT", "applied"},
               {"ENVSYNC_PAUSE_FILE", paused.string()},
               {"ENVSYNC_PAUSE_MS", "5000"}});
  Api a = LoggedIn("olga@shop.example");
  const std::string id = CompareThroughApi(a);
  const std::string before = DumpTarget(paths_);
  Api::Answer first = a.Post("/api/v1/syncs", {{"comparison_id", id}, {"test_import", true}});
  ASSERT_EQ(first.status, 202) << first.raw;
  for (int i = 0; i < 300 && !fs::exists(paused); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  ASSERT_TRUE(fs::exists(paused)) << "the sync did not reach its pause point";
  StartSecond();
  std::this_thread::sleep_for(std::chrono::seconds(2));
  json job = a.Get("/api/v1/jobs/" + first.body["job_id"].get<std::string>()).body;
  EXPECT_EQ(job["state"], "running") << job.dump();
  job = a.WaitForJob(first.body["job_id"]);
  EXPECT_EQ(job["state"], "succeeded") << job.dump();
  EXPECT_FALSE(job["result"].contains("recovered")) << job.dump();
  EXPECT_EQ(Store("SELECT count(*) FROM syncs"), "1|\n");

  // Now the first server dies in the middle of a real sync, while the second is down; the
  // second settles it when it comes back.
  second_.Stop(SIGTERM);
  fs::remove(paused);
  Api::Answer second = a.Post("/api/v1/syncs", {{"comparison_id", id}});
  ASSERT_EQ(second.status, 202) << second.raw;
  for (int i = 0; i < 300 && !fs::exists(paused); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  ASSERT_TRUE(fs::exists(paused)) << "the second sync did not reach its pause point";
  EXPECT_EQ(server_.Stop(SIGKILL), -SIGKILL);
  StartSecond();
  Api b = LoggedInSecond();
  job = b.WaitForJob(second.body["job_id"]);
  EXPECT_EQ(job["state"], "failed") << job.dump();
  EXPECT_EQ(job["result"]["recovered"], true) << job.dump();
  EXPECT_EQ(DumpTarget(paths_), before);
  EXPECT_EQ(Store("SELECT count(*) FROM syncs"), "2|\n");
}
}  // namespace
}  // namespace envsync::testing
