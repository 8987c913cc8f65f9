// Users and access: password hashes, the login rate limit, `envsync user add`, `--as`, and the
// audit log, against a real state store.
#include "envsync/service/users.h"

#include <iostream>
#include <sstream>

#include "envsync/service/jobs.h"
#include "envsync/store/state_store.h"
#include "tests/sync/compare_test_support.h"

namespace envsync::testing {
namespace {

using nlohmann::json;

// Salted PBKDF2 with at least 600,000 iterations: the same password hashes differently twice,
// verifies, and a wrong one or a malformed hash does not.
TEST(Passwords, AreSaltedSlowHashes) {
  const std::string a = service::HashPassword("correct horse");
  const std::string b = service::HashPassword("correct horse");
  EXPECT_NE(a, b);
  EXPECT_EQ(a.rfind("pbkdf2-sha256$600000$", 0), 0u) << a;
  EXPECT_TRUE(service::VerifyPassword("correct horse", a));
  EXPECT_TRUE(service::VerifyPassword("correct horse", b));
  EXPECT_FALSE(service::VerifyPassword("correct horse!", a));
  EXPECT_FALSE(service::VerifyPassword("correct horse", "pbkdf2-sha256$x$00$00"));
  EXPECT_FALSE(service::VerifyPassword("correct horse", ""));
  EXPECT_FALSE(service::VerifyPassword("", a));
}

// Five failures within the window lock the key out until the window has passed; a success
// clears it; other keys are not affected.
TEST(LoginRateLimiter, LocksOutAfterRepeatedFailures) {
  service::LoginRateLimiter limiter(5, std::chrono::seconds(60));
  const auto t0 = std::chrono::steady_clock::time_point{} + std::chrono::hours(1);
  for (int i = 0; i < 5; ++i) {
    EXPECT_EQ(limiter.RetryAfter("vic|127.0.0.1", t0), 0);
    limiter.RecordFailure("vic|127.0.0.1", t0 + std::chrono::seconds(i));
  }
  EXPECT_EQ(limiter.RetryAfter("vic|127.0.0.1", t0 + std::chrono::seconds(10)), 50);
  EXPECT_EQ(limiter.RetryAfter("ada|127.0.0.1", t0 + std::chrono::seconds(10)), 0);
  EXPECT_EQ(limiter.RetryAfter("vic|127.0.0.1", t0 + std::chrono::seconds(61)), 0);
  limiter.RecordFailure("ada|127.0.0.1", t0);
  limiter.RecordSuccess("ada|127.0.0.1");
  for (int i = 0; i < 4; ++i) limiter.RecordFailure("ada|127.0.0.1", t0);
  EXPECT_EQ(limiter.RetryAfter("ada|127.0.0.1", t0), 0) << "the success reset the count";
}

class UsersTest : public DemoEnvironments {
 protected:
  void SetUp() override {
    DemoEnvironments::SetUp();
    Build(Start::kPendingWork);
  }
  // Runs the CLI with `input` on stdin.
  CliRun Cli(std::vector<std::string> args, const std::string& input = "") {
    args.insert(args.begin(), {"--config", paths_.config.string()});
    std::istringstream in(input);
    std::streambuf* saved = std::cin.rdbuf(in.rdbuf());
    CliRun run = RunCli(args);
    std::cin.rdbuf(saved);
    std::cin.clear();
    return run;
  }
};

// `user add` reads the password from stdin and stores only its hash; bad input names the
// thing at fault and stores nothing.
TEST_F(UsersTest, UserAddStoresAHashAndRefusesBadInput) {
  CliRun added = Cli(
      {"user", "add", "olga@shop.example", "--role", "operator", "--time-zone", "Europe/Berlin"},
      "s3cret-enough\n");
  ASSERT_EQ(added.exit_code, 0) << added.err;
  auto state = store::OpenStateStore(paths_.state.string());
  ASSERT_TRUE(state.ok());
  auto user = (*state)->FindUser("olga@shop.example");
  ASSERT_TRUE(user.ok() && user->has_value());
  EXPECT_EQ((*user)->role, "operator");
  EXPECT_EQ((*user)->time_zone, "Europe/Berlin");
  EXPECT_EQ((*user)->password_hash.find("s3cret-enough"), std::string::npos);
  EXPECT_TRUE(service::VerifyPassword("s3cret-enough", (*user)->password_hash));

  struct Bad {
    std::vector<std::string> args;
    std::string input;
    std::string named;
  };
  for (const Bad& bad : std::vector<Bad>{
           {{"user", "add", "not-an-address", "--role", "viewer"},
            "long-enough\n",
            "not-an-address"},
           {{"user", "add", "x@shop.example", "--role", "root"}, "long-enough\n", "'root'"},
           {{"user", "add", "x@shop.example", "--role", "viewer"}, "short\n", "too short"},
           {{"user", "add", "x@shop.example", "--role", "viewer"}, "", "no password"},
           {{"user", "add", "x@shop.example", "--role", "viewer", "--time-zone", "Mars/Base"},
            "long-enough\n",
            "Mars/Base"}}) {
    CliRun run = Cli(bad.args, bad.input);
    EXPECT_EQ(run.exit_code, 2) << bad.named;
    EXPECT_NE(run.err.find(bad.named), std::string::npos) << run.err;
  }
  auto users = (*state)->ListUsers();
  ASSERT_TRUE(users.ok());
  EXPECT_EQ(users->size(), 1u) << "olga only";
}

// `--as` names who acts: the messages and the audit log carry that user, with the records.
TEST_F(UsersTest, AsNamesTheUserInMessagesAndTheAuditLog) {
  CliRun compared =
      Cli({"--as", "olga@shop.example", "compare", "--from", "TEST", "--to", "PROD", "--json"});
  ASSERT_EQ(compared.exit_code, 0) << compared.err;
  const std::string id = compared.Json()["comparison_id"];
  CliRun synced = Cli({"--as", "olga@shop.example", "sync", id, "--deselect", "cms_pages:2",
                       "--test-import", "--json"});
  ASSERT_EQ(synced.exit_code, 0) << synced.err;
  json messages = Cli({"--as", "olga@shop.example", "messages", "--json"}).Json();
  ASSERT_EQ(messages.size(), 2u);
  EXPECT_EQ(messages[0]["title"], "Success: Synchronization process");
  EXPECT_EQ(messages[1]["title"], "Comparison finished");
  json audit = Cli({"audit", "--json"}).Json();
  ASSERT_GE(audit.size(), 2u);
  const json& last = audit.back();
  EXPECT_EQ(last["user"], "olga@shop.example");
  EXPECT_EQ(last["action"], "sync.test_import");
  EXPECT_EQ(last["detail"]["request"]["deselect"][0], "cms_pages:2");
  EXPECT_EQ(audit[audit.size() - 2]["action"], "compare");
}

// The state store keeps sessions by hash, messages read per user, and a comparison's saved
// selection.
TEST_F(UsersTest, StateStoreKeepsSessionsReadFlagsAndSelections) {
  auto state = store::OpenStateStore(paths_.state.string());
  ASSERT_TRUE(state.ok());
  EXPECT_EQ((*state)->SchemaVersion(), store::kStateSchemaVersion);
  ASSERT_TRUE(service::AddUser(**state, "ada@shop.example", "admin", "long-enough", "UTC",
                               "2026-01-01T00:00:00Z")
                  .ok());
  store::Session session{"hash-1", "ada@shop.example", "csrf", "2026-01-01T00:00:00Z",
                         "2026-01-01T12:00:00Z"};
  ASSERT_TRUE((*state)->SaveSession(session).ok());
  auto found = (*state)->FindSession("hash-1");
  ASSERT_TRUE(found.ok() && found->has_value());
  EXPECT_EQ((*found)->email, "ada@shop.example");
  ASSERT_TRUE((*state)->DeleteSession("hash-1").ok());
  EXPECT_FALSE((*state)->FindSession("hash-1")->has_value());
  store::Session ended{"hash-2", "ada@shop.example", "csrf", "2026-01-01T00:00:00Z",
                       "2026-01-01T12:00:00Z"};
  ASSERT_TRUE((*state)->SaveSession(ended).ok());
  ASSERT_TRUE((*state)->DeleteExpiredSessions("2026-01-01T11:59:59Z").ok());
  EXPECT_TRUE((*state)->FindSession("hash-2")->has_value()) << "not ended yet";
  ASSERT_TRUE((*state)->DeleteExpiredSessions("2026-01-01T12:00:00Z").ok());
  EXPECT_FALSE((*state)->FindSession("hash-2")->has_value());

  store::Message m;
  m.user = "olga@shop.example";
  m.title = "t";
  auto id = (*state)->AddMessage(m);
  ASSERT_TRUE(id.ok());
  EXPECT_EQ((*state)->MarkMessageRead(*id, "vic@shop.example").code(), Status::Code::kNotFound);
  EXPECT_TRUE((*state)->MarkMessageRead(*id, "olga@shop.example").ok());
  EXPECT_TRUE((*state)->ListMessages("olga@shop.example")->front().read);

  // Replacing a user ends their sessions; an empty ID or address never finds anything.
  ASSERT_TRUE((*state)->SaveSession(session).ok());
  ASSERT_TRUE(service::AddUser(**state, "ada@shop.example", "viewer", "another-one", "UTC",
                               "2026-01-02T00:00:00Z")
                  .ok());
  EXPECT_FALSE((*state)->FindSession("hash-1")->has_value());
  EXPECT_FALSE((*state)->FindUser("")->has_value());
  EXPECT_EQ((*state)->LoadJob("").status().code(), Status::Code::kNotFound);
  EXPECT_EQ((*state)->LoadSync("").status().code(), Status::Code::kNotFound);

  // A job moves on only from the state it was read in: a cancel after the runner claimed it
  // does not take.
  store::Job job;
  job.id = "j-1";
  job.kind = "sync";
  job.state = "queued";
  job.started_by = "ada@shop.example";
  job.request = "{}";
  ASSERT_TRUE((*state)->SaveJob(job).ok());
  job.state = "running";
  EXPECT_TRUE(*(*state)->SaveJobIf(job, {"queued", "scheduled"}));
  job.state = "running";
  EXPECT_FALSE(*(*state)->SaveJobIf(job, {"queued", "scheduled"}));
  Status cancel = service::CancelJob(**state, "j-1", "ada@shop.example", "2026-01-01T00:00:00Z");
  EXPECT_EQ(cancel.code(), Status::Code::kInvalidArgument);
  EXPECT_NE(cancel.message().find("running"), std::string::npos);
  EXPECT_EQ((*state)->LoadJob("j-1")->state, "running");

  const std::string comparison = CompareJson({"--from", "TEST", "--to", "PROD"})["comparison_id"];
  EXPECT_EQ(*(*state)->LoadSelection(comparison), "");
  ASSERT_TRUE((*state)->SaveSelection(comparison, R"({"deselect":["cms_pages:2"]})").ok());
  EXPECT_EQ(*(*state)->LoadSelection(comparison), R"({"deselect":["cms_pages:2"]})");
}

}  // namespace
}  // namespace envsync::testing
