// E-mail: to the outbox without an SMTP server, to a real SMTP sink (python3-aiosmtpd on a free
// loopback port) with one, and an unreachable server that never fails the work.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <thread>

#include "tests/service/service_test_support.h"

namespace envsync::testing {
namespace {

using nlohmann::json;

class MailTest : public DemoEnvironments {
 protected:
  // The demo's own baseline comparison is nobody's: mail starts with the user set here.
  void BuildAs(Start start) {
    Build(start);
    setenv("ENVSYNC_USER", "anna@shop.example", 1);
  }
  void TearDown() override {
    unsetenv("ENVSYNC_USER");
    sink_.Stop(SIGTERM);
    DemoEnvironments::TearDown();
  }

  // Starts the SMTP sink, writing into `maildir`; returns its port (0 when it did not start).
  int StartSink(const std::filesystem::path& maildir) {
    return StartSmtpSink(&sink_, maildir, dir_ / "sink.err");
  }

  void UseSmtp(const std::string& url) { testing::UseSmtp(paths_.config, url); }

  CliRun Cli(std::vector<std::string> args) {
    args.insert(args.begin(), {"--config", paths_.config.string()});
    return RunCli(args);
  }

  Child sink_;
};

// Without an SMTP server the mail is a .eml file in outbox/ beside the state store, with a
// plain-text and an HTML part and the link to the review.
TEST_F(MailTest, WithoutSmtpMailGoesToTheOutbox) {
  BuildAs(Start::kPendingWork);
  json c = CompareJson({"--from", "TEST", "--to", "PROD"});
  const std::vector<std::string> mails = Mails(dir_ / "outbox");
  ASSERT_EQ(mails.size(), 1u);
  EXPECT_NE(mails[0].find("To: anna@shop.example"), std::string::npos) << mails[0];
  EXPECT_NE(mails[0].find("Subject: Comparison finished"), std::string::npos);
  EXPECT_NE(mails[0].find("text/plain"), std::string::npos);
  EXPECT_NE(mails[0].find("text/html"), std::string::npos);
  EXPECT_NE(mails[0].find("/comparisons/" + c["comparison_id"].get<std::string>()),
            std::string::npos);
}

// With an SMTP server, a scheduled sync's success mail reaches the initiating user, with the
// subject of the seed and a link to the job.
TEST_F(MailTest, SmtpSinkReceivesTheSyncMail) {
  BuildAs(Start::kPendingWork);
  const int port = StartSink(dir_ / "maildir");
  ASSERT_GT(port, 0) << "the SMTP sink did not start";
  UseSmtp("smtp://127.0.0.1:" + std::to_string(port));
  const std::string comparison = CompareJson({"--from", "TEST", "--to", "PROD"})["comparison_id"];
  CliRun scheduled = Cli({"sync", comparison, "--at", "2020-01-01T00:00:00Z", "--json"});
  ASSERT_EQ(scheduled.exit_code, 0) << scheduled.err;
  const std::string job = scheduled.Json()["sync_id"];
  ASSERT_EQ(Cli({"serve", "--once"}).exit_code, 0);
  std::vector<std::string> mails;
  for (int i = 0; i < 100 && mails.size() < 2; ++i) {
    mails = Mails(dir_ / "maildir");
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  ASSERT_EQ(mails.size(), 2u) << "a comparison mail and a sync mail";
  bool found = false;
  for (const std::string& mail : mails) {
    if (mail.find("Subject: Success: Synchronization process") == std::string::npos) continue;
    found = true;
    EXPECT_NE(mail.find("To: anna@shop.example"), std::string::npos) << mail;
    // The link leads to the sync the job ran.
    const std::string sync_id = RunCli({"--config", paths_.config.string(), "jobs", "--json"})
                                    .Json()
                                    .back()["result"]["sync_id"];
    EXPECT_EQ(sync_id.rfind("s-", 0), 0u);
    EXPECT_NE(mail.find("https://envsync.shop.example/syncs/" + sync_id), std::string::npos)
        << mail;
  }
  EXPECT_TRUE(found);
  EXPECT_FALSE(std::filesystem::exists(dir_ / "outbox"));
}

// An unreachable SMTP server never fails the sync: the job succeeds and its result records the
// mail failure.
TEST_F(MailTest, UnreachableSmtpNeverFailsTheSync) {
  BuildAs(Start::kPendingWork);
  UseSmtp("smtp://127.0.0.1:" + std::to_string(FreePort()));
  const std::string comparison = CompareJson({"--from", "TEST", "--to", "PROD"})["comparison_id"];
  CliRun scheduled = Cli({"sync", comparison, "--at", "2020-01-01T00:00:00Z", "--json"});
  ASSERT_EQ(scheduled.exit_code, 0) << scheduled.err;
  CliRun serve = Cli({"serve", "--once"});
  ASSERT_EQ(serve.exit_code, 0) << serve.err;
  json jobs = Cli({"jobs", "--json"}).Json();
  EXPECT_EQ(jobs.back()["state"], "succeeded");
  ASSERT_TRUE(jobs.back()["result"]["mail"].is_string()) << jobs.back().dump();
  EXPECT_NE(jobs.back()["result"]["mail"].get<std::string>().find("after 3 attempts"),
            std::string::npos);
}

}  // namespace
}  // namespace envsync::testing
