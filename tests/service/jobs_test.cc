// Scheduled syncs: `sync --at` stores a job, `envsync serve` runs it when due, `cancel` stops it,
// and every step leaves the user a message, as the seed's Messages tab shows them.
#include "envsync/service/jobs.h"

#include <algorithm>
#include <ctime>

#include "envsync/service/time_zone.h"
#include "envsync/store/state_store.h"
#include "tests/sync/compare_test_support.h"

namespace envsync::testing {
namespace {

using nlohmann::json;

// ISO-8601 times with a zone become UTC; the seconds are optional.
TEST(ParseScheduleTime, ConvertsZonesToUtc) {
  EXPECT_EQ(*service::ParseScheduleTime("2026-11-25T10:00:00+01:00"), "2026-11-25T09:00:00Z");
  EXPECT_EQ(*service::ParseScheduleTime("2026-11-25T23:30-02:30"), "2026-11-26T02:00:00Z");
  EXPECT_EQ(*service::ParseScheduleTime("2026-12-31T23:59:59Z"), "2026-12-31T23:59:59Z");
  EXPECT_EQ(*service::ParseScheduleTime("2024-02-29T00:00:00.250Z"), "2024-02-29T00:00:00Z");
}

// A time without a zone, an impossible date and free text are refused, naming the text.
TEST(ParseScheduleTime, RefusesAmbiguousOrInvalidTimes) {
  for (const char* text : {"2026-11-25T10:00:00", "2026-02-30T10:00:00Z", "tomorrow",
                           "2026-11-25T25:00:00Z", "2026-11-25T10:00:00+1"}) {
    auto parsed = service::ParseScheduleTime(text);
    ASSERT_FALSE(parsed.ok()) << text;
    EXPECT_NE(parsed.status().message().find(text), std::string::npos);
  }
}

// Named zones from the tz database, with their daylight-saving rules: Berlin is UTC+1 in
// November and UTC+2 in July; a zoneless time takes the default zone when one is given.
TEST(ParseScheduleTime, UsesNamedZonesAndTheirRules) {
  EXPECT_EQ(*service::ParseScheduleTime("2026-11-25T10:00 Europe/Berlin"), "2026-11-25T09:00:00Z");
  EXPECT_EQ(*service::ParseScheduleTime("2026-07-01T10:00[Europe/Berlin]"), "2026-07-01T08:00:00Z");
  EXPECT_EQ(*service::ParseScheduleTime("2026-11-25T10:00", "America/New_York"),
            "2026-11-25T15:00:00Z");
  EXPECT_EQ(service::ShowInZone("2026-11-25T09:00:00Z", "Europe/Berlin"), "2026-11-25 10:00 CET");
  EXPECT_EQ(service::ShowInZone("2026-07-01T08:00:00Z", "Europe/Berlin"), "2026-07-01 10:00 CEST");
  EXPECT_EQ(service::SecondsBetween("2026-11-25T09:00:00Z", "2026-11-25T10:00:30Z"), 3630);
}

// A local time the clocks skip or repeat is refused with the reason, as is an unknown zone.
TEST(ParseScheduleTime, RefusesSkippedRepeatedAndUnknownLocalTimes) {
  auto skipped = service::ParseScheduleTime("2026-03-29T02:30 Europe/Berlin");
  ASSERT_FALSE(skipped.ok());
  EXPECT_NE(skipped.status().message().find("skip"), std::string::npos);
  auto repeated = service::ParseScheduleTime("2026-10-25T02:30 Europe/Berlin");
  ASSERT_FALSE(repeated.ok());
  EXPECT_NE(repeated.status().message().find("twice"), std::string::npos);
  auto unknown = service::ParseScheduleTime("2026-11-25T10:00 Mars/Olympus");
  ASSERT_FALSE(unknown.ok());
  EXPECT_NE(unknown.status().message().find("Mars/Olympus"), std::string::npos);
}

class JobsTest : public DemoEnvironments {
 protected:
  CliRun Cli(std::vector<std::string> args) {
    args.insert(args.begin(), {"--config", paths_.config.string()});
    return RunCli(args);
  }
  // The demo with pending work, compared TEST -> PROD: the comparison's ID.
  std::string PendingComparison() {
    Build(Start::kPendingWork);
    return CompareJson({"--from", "TEST", "--to", "PROD"})["comparison_id"];
  }
  std::string Schedule(const std::string& comparison_id, const std::string& at) {
    CliRun run = Cli({"sync", comparison_id, "--at", at, "--json"});
    EXPECT_EQ(run.exit_code, 0) << run.err;
    return run.exit_code == 0 ? run.Json()["sync_id"].get<std::string>() : "";
  }
  json Job(const std::string& id) {
    for (const json& job : Cli({"jobs", "--json"}).Json()) {
      if (job["job_id"] == id) return job;
    }
    return json();
  }
  std::vector<std::string> MessageTitles() {
    std::vector<std::string> titles;
    for (const json& m : Cli({"messages", "--all", "--json"}).Json()) titles.push_back(m["title"]);
    return titles;
  }
};

// A sync scheduled in the past runs at the next `serve`, says it ran late, and changes PROD.
TEST_F(JobsTest, DueSyncRunsAndReportsSuccess) {
  const std::string comparison = PendingComparison();
  const std::string prod_before = ReadBytes(paths_.prod_db);
  const std::string job = Schedule(comparison, "2020-01-01T00:00:00Z");
  EXPECT_EQ(Job(job)["state"], "scheduled");
  EXPECT_EQ(ReadBytes(paths_.prod_db), prod_before) << "scheduling writes nothing";
  CliRun serve = Cli({"serve", "--once"});
  ASSERT_EQ(serve.exit_code, 0) << serve.err;
  EXPECT_EQ(Job(job)["state"], "succeeded");
  EXPECT_NE(ReadBytes(paths_.prod_db), prod_before);
  json messages = Cli({"messages", "--all", "--json"}).Json();
  ASSERT_GE(messages.size(), 3u);
  EXPECT_EQ(messages[0]["title"], "Success: Synchronization process");
  EXPECT_NE(messages[0]["body"].get<std::string>().find("ran late"), std::string::npos);
  EXPECT_EQ(messages[1]["title"], "Synchronization process");
  EXPECT_NE(messages[1]["body"].get<std::string>().find("envsync cancel " + job),
            std::string::npos);
  EXPECT_EQ(messages.back()["title"], "Comparison finished");
}

// A job killed after its sync ended is settled by the sync that names it, even when the clock
// went back between the job's start and the sync's: not by another sync of the same comparison
// and user that merely looks later.
TEST_F(JobsTest, InterruptedJobIsSettledByTheSyncThatNamesIt) {
  const std::string comparison = PendingComparison();
  const std::string job_id = Schedule(comparison, "2020-01-01T00:00:00Z");
  auto state = store::OpenStateStore(paths_.state.string());
  ASSERT_TRUE(state.ok()) << state.status().message();
  auto job = (*state)->LoadJob(job_id);
  ASSERT_TRUE(job.ok()) << job.status().message();
  job->state = "running";
  job->started_at = "2026-06-01T12:00:00Z";
  ASSERT_TRUE((*state)->SaveJob(*job).ok());
  store::SyncRun ours;
  ours.id = "s-its-own";
  ours.comparison_id = comparison;
  ours.started_by = job->started_by;
  ours.from = "TEST";
  ours.to = "PROD";
  ours.created_at = "2026-06-01T11:00:00Z";  // the clock went back an hour
  ours.finished_at = "2026-06-01T11:00:02Z";
  ours.status = "success";
  ours.job_id = job_id;
  ASSERT_TRUE((*state)->SaveSync(ours).ok());
  store::SyncRun other = ours;
  other.id = "s-another-jobs";
  other.created_at = "2026-06-01T12:00:05Z";
  other.status = "failure";
  other.error = "refused";
  other.job_id = "j-another";
  ASSERT_TRUE((*state)->SaveSync(other).ok());
  int told = 0;
  auto settled = service::RecoverInterruptedJobs(
      **state, "2026-06-01T12:30:00Z", [&](const store::Message& m, const std::string& link) {
        ++told;
        EXPECT_EQ(link, "/syncs/s-its-own");
        EXPECT_EQ(m.title, "Success: Synchronization process");
        return std::string();
      });
  ASSERT_TRUE(settled.ok()) << settled.status().message();
  EXPECT_EQ(*settled, std::vector<std::string>{job_id});
  EXPECT_EQ(told, 1);
  auto ended = (*state)->LoadJob(job_id);
  ASSERT_TRUE(ended.ok());
  EXPECT_EQ(ended->state, "succeeded");
  EXPECT_EQ(json::parse(ended->result)["sync_id"], "s-its-own") << ended->result;
}

// A sync scheduled for later does not run before its time.
TEST_F(JobsTest, FutureSyncWaits) {
  const std::string comparison = PendingComparison();
  const std::string prod_before = ReadBytes(paths_.prod_db);
  const std::string job = Schedule(comparison, "2099-01-01T00:00:00+01:00");
  ASSERT_EQ(Cli({"serve", "--once"}).exit_code, 0);
  EXPECT_EQ(Job(job)["state"], "scheduled");
  EXPECT_EQ(Job(job)["run_at"], "2098-12-31T23:00:00Z");
  EXPECT_EQ(ReadBytes(paths_.prod_db), prod_before);
}

// A cancelled sync never runs; cancelling it again is refused.
TEST_F(JobsTest, CancelledSyncNeverRuns) {
  const std::string comparison = PendingComparison();
  const std::string prod_before = ReadBytes(paths_.prod_db);
  const std::string job = Schedule(comparison, "2020-01-01T00:00:00Z");
  ASSERT_EQ(Cli({"cancel", job}).exit_code, 0);
  ASSERT_EQ(Cli({"serve", "--once"}).exit_code, 0);
  EXPECT_EQ(Job(job)["state"], "cancelled");
  EXPECT_EQ(ReadBytes(paths_.prod_db), prod_before);
  CliRun again = Cli({"cancel", job});
  EXPECT_EQ(again.exit_code, 2);
  EXPECT_NE(again.err.find(job), std::string::npos) << again.err;
  EXPECT_EQ(Cli({"cancel", "j-000000000000"}).exit_code, 2);
}

// A scheduled sync that drifts fails when it runs, with a FAILURE message giving the reason.
TEST_F(JobsTest, FailedSyncLeavesAFailureMessage) {
  const std::string comparison = PendingComparison();
  const std::string job = Schedule(comparison, "2020-01-01T00:00:00Z");
  Prod("UPDATE cms_pages SET title = 'Edited meanwhile' WHERE id = 2");
  ASSERT_EQ(Cli({"serve", "--once"}).exit_code, 0);
  EXPECT_EQ(Job(job)["state"], "failed");
  EXPECT_NE(Job(job)["error"].get<std::string>().find("cms_pages:2"), std::string::npos);
  json messages = Cli({"messages", "--all", "--json"}).Json();
  EXPECT_EQ(messages[0]["title"], "FAILURE: Synchronization process");
  EXPECT_NE(messages[0]["body"].get<std::string>().find("drift"), std::string::npos);
}

// A due sync whose target environment another process holds stays due, its user is told why,
// and it runs at the next look once the lock is gone. `serve --once` records itself as the
// job's runner.
TEST_F(JobsTest, SyncWaitsForItsTargetLockAndRunsWhenItIsFree) {
  const std::string comparison = PendingComparison();
  const std::string prod_before = ReadBytes(paths_.prod_db);
  const std::string job = Schedule(comparison, "2020-01-01T00:00:00Z");
  {
    store::WorkLock prod;
    ASSERT_TRUE(*prod.TryAcquireTarget(paths_.state.string(), "PROD"));
    store::WorkLock other;  // one holder at a time
    EXPECT_FALSE(*other.TryAcquireTarget(paths_.state.string(), "PROD"));
    ASSERT_EQ(Cli({"serve", "--once"}).exit_code, 0);
    EXPECT_EQ(Job(job)["state"], "scheduled");
    EXPECT_TRUE(Job(job)["runner"].is_null()) << Job(job).dump();
    EXPECT_EQ(ReadBytes(paths_.prod_db), prod_before);
    json messages = Cli({"messages", "--all", "--json"}).Json();
    EXPECT_EQ(messages[0]["title"], "Synchronization process waiting");
    EXPECT_NE(messages[0]["body"].get<std::string>().find("into PROD"), std::string::npos)
        << messages[0].dump();
  }
  ASSERT_EQ(Cli({"serve", "--once"}).exit_code, 0);
  EXPECT_EQ(Job(job)["state"], "succeeded");
  EXPECT_NE(Job(job)["runner"].get<std::string>().find(':'), std::string::npos);
  EXPECT_NE(ReadBytes(paths_.prod_db), prod_before);
}

// A due sync whose target another process holds is not claimed at all: when the runner asks for
// the target's lock the job is still "scheduled" in the store, so no one watching the job list
// sees it "running" for the moment of a poll, and it is left as it was, with its user told.
TEST_F(JobsTest, SyncWhoseTargetIsHeldIsNeverClaimed) {
  const std::string comparison = PendingComparison();
  const std::string job = Schedule(comparison, "2020-01-01T00:00:00Z");
  auto state = store::OpenStateStore(paths_.state.string());
  ASSERT_TRUE(state.ok()) << state.status().message();
  service::JobHandlers handlers;
  handlers.now = [] { return std::string("2026-12-03T12:00:00Z"); };
  handlers.runner = "test-runner";
  handlers.notify = [](const store::Message&, const std::string&) { return std::string(); };
  handlers.run_compare = [](const store::Job&) -> Result<Comparison> {
    return Status::InvalidArgument("no compare is due");
  };
  handlers.run_sync = [](const sync::SyncRequest&) -> Result<sync::SyncOutcome> {
    ADD_FAILURE() << "the sync ran while its target was held";
    return Status::InvalidArgument("target held");
  };
  std::vector<std::string> seen;  // the job's state each time its target's lock was asked for
  handlers.lock_target = [&](const std::string& target) -> Result<std::shared_ptr<void>> {
    EXPECT_EQ(target, "PROD");
    auto loaded = (*state)->LoadJob(job);
    seen.push_back(loaded.ok() ? loaded->state : loaded.status().message());
    return std::shared_ptr<void>();  // held by another process
  };
  for (int poll = 0; poll < 3; ++poll) {
    auto ran = service::RunDueJobs(**state, handlers);
    ASSERT_TRUE(ran.ok()) << ran.status().message();
    EXPECT_TRUE(ran->empty());
  }
  EXPECT_EQ(seen, (std::vector<std::string>{"scheduled", "scheduled", "scheduled"}));
  auto after = (*state)->LoadJob(job);
  ASSERT_TRUE(after.ok());
  EXPECT_EQ(after->state, "scheduled");
  EXPECT_TRUE(after->started_at.empty()) << after->started_at;
  EXPECT_TRUE(after->runner.empty()) << after->runner;
  const std::vector<std::string> titles = MessageTitles();
  EXPECT_EQ(std::count(titles.begin(), titles.end(), "Synchronization process waiting"), 1)
      << "told once";
}

// The whole store's lock excludes the job lock and the other way round; job locks share.
TEST_F(JobsTest, StoreLockExcludesJobLocksWhichShare) {
  Build(Start::kPendingWork);
  const std::string state = paths_.state.string();
  store::WorkLock job_a;
  store::WorkLock job_b;
  store::WorkLock whole;
  ASSERT_TRUE(*job_a.TryAcquireJob(state));
  ASSERT_TRUE(*job_b.TryAcquireJob(state));
  EXPECT_FALSE(*whole.TryAcquire(state));
  job_a.Release();
  job_b.Release();
  ASSERT_TRUE(*whole.TryAcquire(state));
  EXPECT_FALSE(*job_a.TryAcquireJob(state));
  // Targets are separate from each other and from the store.
  store::WorkLock prod;
  store::WorkLock test;
  EXPECT_TRUE(*prod.TryAcquireTarget(state, "PROD"));
  EXPECT_TRUE(*test.TryAcquireTarget(state, "../TEST"));
  EXPECT_FALSE(std::filesystem::exists(paths_.state.parent_path().parent_path() / "TEST.lock"));
}

// The wall clock jumping (ENVSYNC_CLOCK_SKEW moves envsync's clock; see fault_injection.h)
// neither loses a scheduled sync nor runs it twice: a day back, it waits; two hours forward, it
// runs once and says it ran late; back again, it does not run again.
TEST_F(JobsTest, ClockJumpsNeitherLoseNorRepeatAScheduledSync) {
  const std::string comparison = PendingComparison();
  const std::string prod_before = ReadBytes(paths_.prod_db);
  const std::time_t in_an_hour = std::time(nullptr) + 3600;
  char at[32];
  std::strftime(at, sizeof(at), "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&in_an_hour));
  const std::string job = Schedule(comparison, at);
  struct Skew {
    explicit Skew(const char* seconds) { setenv("ENVSYNC_CLOCK_SKEW", seconds, 1); }
    ~Skew() { unsetenv("ENVSYNC_CLOCK_SKEW"); }
  };
  {
    Skew back("-86400");
    ASSERT_EQ(Cli({"serve", "--once"}).exit_code, 0);
    EXPECT_EQ(Job(job)["state"], "scheduled");
    EXPECT_EQ(ReadBytes(paths_.prod_db), prod_before);
  }
  {
    Skew forward("7200");
    ASSERT_EQ(Cli({"serve", "--once"}).exit_code, 0);
    EXPECT_EQ(Job(job)["state"], "succeeded");
    EXPECT_NE(ReadBytes(paths_.prod_db), prod_before);
    json messages = Cli({"messages", "--all", "--json"}).Json();
    ASSERT_FALSE(messages.empty());
    EXPECT_NE(messages[0]["body"].get<std::string>().find("ran late"), std::string::npos)
        << messages[0].dump();
  }
  const std::string prod_after = ReadBytes(paths_.prod_db);
  {
    Skew back("-86400");
    ASSERT_EQ(Cli({"serve", "--once"}).exit_code, 0);
    ASSERT_EQ(Cli({"serve", "--once"}).exit_code, 0);
  }
  ASSERT_EQ(Cli({"serve", "--once"}).exit_code, 0);
  EXPECT_EQ(Job(job)["state"], "succeeded");
  EXPECT_EQ(ReadBytes(paths_.prod_db), prod_after);
  EXPECT_EQ(Cli({"history", "--json"}).Json().size(), 1u) << "one sync, run once";
  CliRun doctor = Cli({"doctor"});
  EXPECT_EQ(doctor.exit_code, 0) << doctor.out;
}

}  // namespace
}  // namespace envsync::testing
