// Integration tests of `envsync sync`, `undo` and `history` on real SQLite environments.
#include "tests/sync/compare_test_support.h"

namespace envsync::testing {
namespace {

class SyncTest : public DemoEnvironments {};

// A test import reports what it would write and leaves both environments byte-identical.
TEST_F(SyncTest, TestImportChangesNothing) {
  Build(Start::kPendingWork);
  const std::string id = CompareJson({"--from", "TEST", "--to", "PROD"})["comparison_id"];
  const std::string prod_before = ReadBytes(paths_.prod_db);
  CliRun run = RunCli({"--config", paths_.config.string(), "sync", id, "--test-import", "--json"});
  ASSERT_EQ(run.exit_code, 0) << run.err;
  EXPECT_EQ(run.Json()["status"], "success");
  EXPECT_EQ(run.Json()["test_import"], true);
  EXPECT_EQ(ReadBytes(paths_.prod_db), prod_before);
  EXPECT_FALSE(std::filesystem::exists(paths_.prod_assets / ".envsync"));
}

}  // namespace
}  // namespace envsync::testing
