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
#include <random>
#include <sstream>
#include <thread>

#include "envsync/store/state_store.h"
#include "tests/store/sqlite_exec.h"
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
  // `trace` names a file every crash point reached is appended to (ENVSYNC_CRASH_TRACE).
  int RunBinary(const std::vector<std::string>& args, const std::string& crash_at,
                int kill_after_ms = -1, int signal = SIGKILL, const std::string& ready_text = "",
                const std::string& trace = "") {
    const pid_t pid = fork();
    if (pid == 0) {
      if (!crash_at.empty()) setenv("ENVSYNC_CRASH_AT", crash_at.c_str(), 1);
      if (!trace.empty()) setenv("ENVSYNC_CRASH_TRACE", trace.c_str(), 1);
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

  // Saves the demo directory as it is now beside it, or puts a saved one back (same paths, so
  // the config and the stored comparisons and syncs stay valid).
  std::filesystem::path Saved(const std::string& name) { return dir_.string() + "-saved-" + name; }
  void Save(const std::string& name) {
    std::filesystem::remove_all(Saved(name));
    std::filesystem::copy(dir_, Saved(name), std::filesystem::copy_options::recursive);
  }
  void Restore(const std::string& name) {
    std::filesystem::remove_all(dir_);
    std::filesystem::copy(Saved(name), dir_, std::filesystem::copy_options::recursive);
  }

  // `envsync doctor` on the demo: true when it finds everything sound.
  bool DoctorSaysSound(std::string* findings) {
    CliRun doctor = RunCli({"--config", paths_.config.string(), "doctor"});
    *findings = doctor.out + doctor.err;
    return doctor.exit_code == 0;
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

// A sync whose every record is an update of some columns journals only column pre-images
// (sync::ColumnImageText), so recovery can tell a record's state only by the whole images'
// digests. Killed before its commit it ends as before and failed, after it as after.
TEST_F(CrashTest, KilledSyncOfOnlyColumnUpdatesEndsBeforeOrAfter) {
  for (const auto& [point, expect_after] :
       std::map<std::string, bool>{{"journaled", false}, {"committed", true}}) {
    SCOPED_TRACE(point);
    TearDown();
    SetUp();
    Build(Start::kCommonWithBase, 100);
    Test("UPDATE cms_pages SET title = title || ' (autumn)' WHERE id > 1000");
    const nlohmann::json c = CompareJson({"--from", "TEST", "--to", "PROD"});
    ASSERT_EQ(c["counts"]["modified"], 100) << c.dump();
    ASSERT_EQ(c["changes"].size(), 100u) << c.dump();
    const std::string before = DumpTarget(paths_);
    EXPECT_EQ(RunBinary(SyncArgs(c["comparison_id"]), point), -SIGKILL);
    Restart();
    CliRun history = RunCli({"--config", paths_.config.string(), "history", "--json"});
    ASSERT_EQ(history.exit_code, 0);
    EXPECT_EQ(history.Json().back()["status"], expect_after ? "success" : "failure");
    if (expect_after) {
      const nlohmann::json again = CompareJson({"--from", "TEST", "--to", "PROD"});
      EXPECT_EQ(again["changes"].size(), 0u) << again.dump();
    } else {
      EXPECT_TRUE(DumpTarget(paths_) == before) << "not exactly as before";
    }
  }
}

// kill -9 at 52 points of compare, sync, undo and the job runner, picked by a seeded generator
// from the points a traced run of each reaches (ENVSYNC_CRASH_TRACE; a point inside a loop
// counts once per pass: "table_written#3"). After each kill and the next start, the target is
// exactly before or exactly after, no job is left running or ran twice, and `envsync doctor`
// finds the state store and both environments sound. ENVSYNC_FAULT_SEED picks another sample.
TEST_F(CrashTest, KilledAtSeededPointsEndsBeforeOrAfterAndDoctorFindsItSound) {
  const char* seed_text = std::getenv("ENVSYNC_FAULT_SEED");
  const uint32_t seed = seed_text != nullptr ? std::strtoul(seed_text, nullptr, 10) : 20261202u;
  std::cerr << "fault seed " << seed << " (ENVSYNC_FAULT_SEED)\n";
  const std::string config = paths_.config.string();

  // The four starting points, each saved once.
  Build(Start::kPendingWork, 200);
  Test("UPDATE cms_pages SET title = title || ' (autumn)' WHERE id > 1000");
  Save("pending");
  const std::string pending = DumpTarget(paths_);
  CliRun compared =
      RunCli({"--config", config, "compare", "--from", "TEST", "--to", "PROD", "--json"});
  ASSERT_EQ(compared.exit_code, 0) << compared.err;
  const std::string to_sync = compared.Json()["comparison_id"];
  const size_t changes = compared.Json()["changes"].size();
  Save("compared");
  ASSERT_EQ(RunCli({"--config", config, "sync", to_sync, "--at", "2026-01-01T00:00:00Z"}).exit_code,
            0);
  Save("scheduled");
  Restore("compared");
  ASSERT_EQ(RunBinary({"--config", config, "sync", to_sync}, ""), 0)
      << ReadBytes(dir_ / "child.err");
  const std::string synced = DumpTarget(paths_);
  ASSERT_TRUE(synced != pending);
  CliRun history = RunCli({"--config", config, "history", "--json"});
  const std::string sync_id = history.Json().back()["sync_id"];
  Save("synced");

  struct Work {
    std::string name;
    std::string start;  // the saved demo it starts from
    std::vector<std::string> args;
    std::string before;
    std::string after;
  };
  const std::vector<Work> works = {
      {"compare",
       "pending",
       {"--config", config, "compare", "--from", "TEST", "--to", "PROD"},
       pending,
       pending},
      {"sync", "compared", {"--config", config, "sync", to_sync}, pending, synced},
      {"undo", "synced", {"--config", config, "undo", sync_id}, synced, pending},
      {"job runner", "scheduled", {"--config", config, "serve", "--once"}, pending, synced},
  };

  // Every point each work reaches, from one traced run.
  struct Point {
    const Work* work;
    std::string at;
  };
  std::vector<Point> points;
  std::map<std::string, size_t> reached;
  for (const Work& work : works) {
    Restore(work.start);
    const std::string trace = (dir_.string() + "-trace");
    std::filesystem::remove(trace);
    ASSERT_EQ(RunBinary(work.args, "", -1, SIGKILL, "", trace), 0)
        << work.name << ": " << ReadBytes(dir_ / "child.err");
    std::istringstream lines(ReadBytes(trace));
    std::filesystem::remove(trace);
    for (std::string line; std::getline(lines, line);) {
      points.push_back({&work, line});
      ++reached[work.name];
    }
  }
  for (const Work& work : works) {
    ASSERT_GE(reached[work.name], 3u) << work.name << " reaches too few crash points";
  }
  ASSERT_GE(points.size(), 52u);
  std::mt19937 random(seed);
  std::shuffle(points.begin(), points.end(), random);
  points.resize(52);

  int survived = 0;
  std::string drawn;
  for (const Point& point : points) {
    const Work& work = *point.work;
    SCOPED_TRACE(work.name + " killed at " + point.at);
    const auto* result = ::testing::UnitTest::GetInstance()->current_test_info()->result();
    const int failures_before = result->total_part_count();
    Restore(work.start);
    EXPECT_EQ(RunBinary(work.args, point.at), -SIGKILL) << ReadBytes(dir_ / "child.err");
    // The next start settles what was left.
    if (work.name == "job runner") {
      ASSERT_EQ(RunBinary(work.args, ""), 0) << ReadBytes(dir_ / "child.err");
    } else {
      Restart();
    }
    const std::string now = DumpTarget(paths_);
    EXPECT_TRUE(now == work.before || now == work.after)
        << "the target is neither exactly as before nor exactly as after";
    ExpectNoStagedFiles();
    std::string findings;
    EXPECT_TRUE(DoctorSaysSound(&findings)) << findings;
    CliRun jobs = RunCli({"--config", config, "jobs", "--json"});
    ASSERT_EQ(jobs.exit_code, 0) << jobs.err;
    for (const auto& job : jobs.Json()) {
      EXPECT_TRUE(job["state"] == "succeeded" || job["state"] == "failed") << job.dump();
    }
    // The store still works: a new comparison lists what the target's state says.
    CliRun again =
        RunCli({"--config", config, "compare", "--from", "TEST", "--to", "PROD", "--json"});
    ASSERT_EQ(again.exit_code, 0) << again.err;
    if (now == pending) {
      EXPECT_EQ(again.Json()["changes"].size(), changes);
    }
    if (result->total_part_count() == failures_before) ++survived;
    drawn += " " + work.name + ":" + point.at;
  }
  std::cerr << survived << " of " << points.size() << " kills survived (" << points.size()
            << " drawn from " << reached["compare"] << " compare, " << reached["sync"] << " sync, "
            << reached["undo"] << " undo and " << reached["job runner"] << " job runner points)\n";
  for (const char* name : {"pending", "compared", "scheduled", "synced"}) {
    std::filesystem::remove_all(Saved(name));
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
  EXPECT_EQ(RunBinary({"--config", paths_.config.string(), "serve", "--listen", "127.0.0.1:0",
                       "--poll", "1"},
                      "", 1200, SIGTERM, "listening on"),
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
  EXPECT_EQ(RunBinary({"--config", paths_.config.string(), "serve", "--listen", "127.0.0.1:0",
                       "--poll", "1"},
                      "", 100, SIGKILL, "listening on"),
            -SIGKILL);
  EXPECT_TRUE(DumpTarget(paths_) == before);
  std::this_thread::sleep_for(std::chrono::milliseconds(2500));
  ASSERT_EQ(RunBinary({"--config", paths_.config.string(), "serve", "--once"}, ""), 0)
      << ReadBytes(dir_ / "child.err");
  EXPECT_TRUE(DumpTarget(paths_) != before) << "the scheduled sync did not run";
  CliRun jobs = RunCli({"--config", paths_.config.string(), "jobs", "--json"});
  EXPECT_EQ(jobs.Json().back()["state"], "succeeded");
}

// A comparison of many changes is stored in several commits. Killed between two of them, the
// compare leaves no comparison anyone can read, and the next start that holds the store alone
// deletes the half-stored changes: never while another holds its job lock (it may be the one
// storing), never in `doctor`, and the comparisons stored before are kept whole.
TEST_F(CrashTest, CompareKilledBetweenItsCommitsLeavesNothingReadable) {
  const std::string first = Prepare();  // stored with its 20,000 modified pages
  const std::filesystem::path state = paths_.state;
  const int64_t comparisons = store::QueryInteger(state, "SELECT count(*) FROM comparisons");
  const int64_t changes = store::QueryInteger(state, "SELECT count(*) FROM changes");
  ASSERT_GT(changes, 20000);
  const std::vector<std::string> compare = {
      "--config", paths_.config.string(), "compare", "--from", "TEST", "--to", "PROD", "--json"};
  EXPECT_EQ(RunBinary(compare, "comparison_changes_committed#2"), -SIGKILL);
  EXPECT_EQ(store::QueryInteger(state, "SELECT count(*) FROM comparisons_being_stored"), 1);
  EXPECT_EQ(store::QueryInteger(state, "SELECT count(*) FROM changes"), changes + 2 * 2048)
      << "two commits of changes were expected before the kill";
  EXPECT_EQ(store::QueryInteger(state, "SELECT count(*) FROM comparisons"), comparisons);
  // `doctor` reads only: it leaves them for the next start.
  ASSERT_GE(RunBinary({"--config", paths_.config.string(), "doctor"}, ""), 0);
  EXPECT_EQ(store::QueryInteger(state, "SELECT count(*) FROM comparisons_being_stored"), 1);
  {
    store::WorkLock other;  // another envsync running a job, or storing a comparison
    auto held = other.TryAcquireJob(state.string());
    ASSERT_TRUE(held.ok() && *held);
    ASSERT_EQ(RunBinary({"--config", paths_.config.string(), "history", "--json"}, ""), 0);
    EXPECT_EQ(store::QueryInteger(state, "SELECT count(*) FROM comparisons_being_stored"), 1)
        << "half-stored changes were deleted while another envsync held the store";
  }
  Restart();
  EXPECT_EQ(store::QueryInteger(state, "SELECT count(*) FROM comparisons_being_stored"), 0);
  EXPECT_EQ(store::QueryInteger(state, "SELECT count(*) FROM changes"), changes);
  CliRun shown = RunCli({"--config", paths_.config.string(), "show", first, "--json"});
  ASSERT_EQ(shown.exit_code, 0) << shown.err;
  const size_t listed = shown.Json()["changes"].size();
  EXPECT_EQ(static_cast<int64_t>(listed),
            store::QueryInteger(
                state, "SELECT count(*) FROM changes WHERE comparison_id = '" + first + "'"));
  // The same compare, not killed, stores every change again.
  const std::string again = CompareJson({"--from", "TEST", "--to", "PROD"})["comparison_id"];
  CliRun shown_again = RunCli({"--config", paths_.config.string(), "show", again, "--json"});
  ASSERT_EQ(shown_again.exit_code, 0) << shown_again.err;
  EXPECT_EQ(shown_again.Json()["changes"].size(), listed);
  EXPECT_EQ(store::QueryInteger(state, "SELECT count(*) FROM comparisons_being_stored"), 0);
}

}  // namespace
}  // namespace envsync::testing
