// kill -9 during a sync of 20,000 records plus images: after the next start the target is
// exactly as before or exactly as after, database and files alike (SYNC-SEMANTICS §5).
// The real `envsync` binary runs as a child process and is killed with SIGKILL at named points
// (ENVSYNC_CRASH_AT) and at random moments.
#include <fmt/format.h>
#include <openssl/evp.h>
#include <sys/wait.h>

#include <csignal>
#include <ctime>
#include <map>
#include <thread>

#include "tests/sync/compare_test_support.h"
#include "tests/sync/target_dump.h"

namespace envsync::testing {
namespace {

class CrashTest : public DemoEnvironments {
 protected:
  // A demo whose pending work includes 20,000 modified pages, compared TEST -> PROD.
  std::string Prepare() {
    Build(Start::kPendingWork, 20000);
    Test("UPDATE cms_pages SET title = title || ' (autumn)' WHERE id > 1000");
    return CompareJson({"--from", "TEST", "--to", "PROD"})["comparison_id"];
  }

  // Runs the real binary; returns how it ended (-signal when killed).
  // With `ready_text`, the signal goes only once the child has written that to stderr.
  int RunBinary(const std::vector<std::string>& args, const std::string& crash_at,
                int kill_after_ms = -1, int signal = SIGKILL, const std::string& ready_text = "") {
    const pid_t pid = fork();
    if (pid == 0) {
      if (!crash_at.empty()) setenv("ENVSYNC_CRASH_AT", crash_at.c_str(), 1);
      const std::string err_path = (dir_ / "child.err").string();
      if (!freopen("/dev/null", "w", stdout) || !freopen(err_path.c_str(), "w", stderr)) {
        _exit(126);
      }
      std::vector<char*> argv;
      std::string binary = ENVSYNC_BINARY;
      argv.push_back(binary.data());
      std::vector<std::string> copy = args;
      for (std::string& a : copy) argv.push_back(a.data());
      argv.push_back(nullptr);
      execv(binary.c_str(), argv.data());
      _exit(127);
    }
    if (kill_after_ms >= 0) {
      for (int i = 0; i < 200 && !ready_text.empty() &&
                      ReadBytes(dir_ / "child.err").find(ready_text) == std::string::npos;
           ++i) {
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(kill_after_ms));
      kill(pid, signal);
    }
    int status = 0;
    waitpid(pid, &status, 0);
    return WIFSIGNALED(status) ? -WTERMSIG(status) : WEXITSTATUS(status);
  }

  std::vector<std::string> SyncArgs(const std::string& id) {
    return {"--config", paths_.config.string(), "sync", id, "--json"};
  }

  // The next start settles the interrupted sync.
  void Restart() {
    ASSERT_EQ(RunBinary({"--config", paths_.config.string(), "history", "--json"}, ""), 0);
  }

  // The target's state after a clean sync of an identical demo (made here, then reset).
  std::string CleanSyncDump() {
    const std::string id = Prepare();
    EXPECT_EQ(RunBinary(SyncArgs(id), ""), 0) << ReadBytes(dir_ / "child.err");
    std::string dump = DumpTarget(paths_);
    TearDown();
    SetUp();
    return dump;
  }

  void ExpectNoStagedFiles() {
    EXPECT_FALSE(std::filesystem::exists(paths_.prod_assets / ".envsync/staging"));
  }
};

// Killed at each named point of a sync, the target ends exactly before or exactly after.
TEST_F(CrashTest, KilledAtEachPointEndsBeforeOrAfter) {
  const std::string after = CleanSyncDump();
  const std::map<std::string, bool> committed = {{"staged", false},    {"applied", false},
                                                 {"journaled", false}, {"committed", true},
                                                 {"moving", true},     {"based", true}};
  for (const auto& [point, expect_after] : committed) {
    SCOPED_TRACE(point);
    TearDown();
    SetUp();
    const std::string id = Prepare();
    const std::string before = DumpTarget(paths_);
    ASSERT_TRUE(before != after);
    EXPECT_EQ(RunBinary(SyncArgs(id), point), -SIGKILL);
    Restart();
    EXPECT_TRUE(DumpTarget(paths_) == (expect_after ? after : before))
        << "the target is neither exactly as before nor exactly as after";
    ExpectNoStagedFiles();
    CliRun history = RunCli({"--config", paths_.config.string(), "history", "--json"});
    ASSERT_EQ(history.exit_code, 0);
    EXPECT_EQ(history.Json().back()["status"], expect_after ? "success" : "failure");
  }
}

// Killed at random moments, the target still ends exactly before or exactly after.
TEST_F(CrashTest, KilledAtRandomMomentsEndsBeforeOrAfter) {
  const std::string after = CleanSyncDump();
  for (int delay_ms : {5, 40, 120, 250, 500}) {
    SCOPED_TRACE(delay_ms);
    TearDown();
    SetUp();
    const std::string id = Prepare();
    const std::string before = DumpTarget(paths_);
    RunBinary(SyncArgs(id), "", delay_ms);
    Restart();
    const std::string now = DumpTarget(paths_);
    EXPECT_TRUE(now == before || now == after) << "neither before nor after at " << delay_ms;
    ExpectNoStagedFiles();
  }
}

// Killed right after an undo's commit, the next start finishes the undo: rows and files are
// exactly as before the sync, and the sync shows as undone.
TEST_F(CrashTest, KilledDuringUndoEndsUndone) {
  Build(Start::kPendingWork);
  const std::string id = CompareJson({"--from", "TEST", "--to", "PROD"})["comparison_id"];
  const std::string before = DumpTarget(paths_);
  ASSERT_EQ(RunBinary(SyncArgs(id), ""), 0) << ReadBytes(dir_ / "child.err");
  CliRun history = RunCli({"--config", paths_.config.string(), "history", "--json"});
  const std::string sync_id = history.Json().back()["sync_id"];
  ASSERT_TRUE(DumpTarget(paths_) != before);
  EXPECT_EQ(RunBinary({"--config", paths_.config.string(), "undo", sync_id}, "undo_committed"),
            -SIGKILL);
  Restart();
  EXPECT_TRUE(DumpTarget(paths_) == before) << "the undo was not finished";
  CliRun after = RunCli({"--config", paths_.config.string(), "history", "--json"});
  EXPECT_EQ(after.Json().back()["status"], "undone");
  EXPECT_FALSE(std::filesystem::exists(paths_.prod_assets / ".envsync"));
}

// `serve` stops cleanly on SIGTERM.
TEST_F(CrashTest, ServeStopsOnSigterm) {
  Build(Start::kCommonWithBase);
  EXPECT_EQ(RunBinary({"--config", paths_.config.string(), "serve", "--listen", "127.0.0.1:0", "--poll", "1"}, "", 1200,
                      SIGTERM, "listening on"),
            0);
  EXPECT_NE(ReadBytes(dir_ / "child.err").find("stopped"), std::string::npos)
      << ReadBytes(dir_ / "child.err");
}

// A server killed while a sync is scheduled loses nothing: the next start runs it.
TEST_F(CrashTest, ScheduledSyncRunsAfterTheServerWasKilled) {
  Build(Start::kPendingWork);
  const std::string id = CompareJson({"--from", "TEST", "--to", "PROD"})["comparison_id"];
  const std::string before = DumpTarget(paths_);
  const auto soon = std::chrono::system_clock::now() + std::chrono::seconds(2);
  const std::time_t t = std::chrono::system_clock::to_time_t(soon);
  char at[32];
  std::strftime(at, sizeof(at), "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&t));
  CliRun scheduled = RunCli({"--config", paths_.config.string(), "sync", id, "--at", at, "--json"});
  ASSERT_EQ(scheduled.exit_code, 0) << scheduled.err;
  // The server is killed before the job is due.
  EXPECT_EQ(RunBinary({"--config", paths_.config.string(), "serve", "--listen", "127.0.0.1:0", "--poll", "1"}, "", 100,
                      SIGKILL, "listening on"),
            -SIGKILL);
  EXPECT_TRUE(DumpTarget(paths_) == before);
  std::this_thread::sleep_for(std::chrono::milliseconds(2500));
  ASSERT_EQ(RunBinary({"--config", paths_.config.string(), "serve", "--once"}, ""), 0)
      << ReadBytes(dir_ / "child.err");
  EXPECT_TRUE(DumpTarget(paths_) != before) << "the scheduled sync did not run";
  CliRun jobs = RunCli({"--config", paths_.config.string(), "jobs", "--json"});
  EXPECT_EQ(jobs.Json().back()["state"], "succeeded");
}

}  // namespace
}  // namespace envsync::testing
