// Bad input of every kind: a clear one-line reason naming the thing at fault, the exit status
// of SYNC-SEMANTICS §7, and no data lost.
#include "tests/sync/compare_test_support.h"

namespace envsync::testing {
namespace {

class BadInputTest : public DemoEnvironments {
 protected:
  void SetUp() override {
    DemoEnvironments::SetUp();
    Build(Start::kCommonWithBase);
  }

  // Expects `run` to fail with `code` and one line mentioning every needle.
  static void ExpectFailure(const CliRun& run, int code, std::vector<std::string> needles) {
    EXPECT_EQ(run.exit_code, code) << run.err;
    EXPECT_TRUE(run.out.empty()) << run.out;
    EXPECT_EQ(std::count(run.err.begin(), run.err.end(), '\n'), 1) << run.err;
    for (const std::string& needle : needles) {
      EXPECT_NE(run.err.find(needle), std::string::npos) << "'" << needle << "' in: " << run.err;
    }
  }

  void WriteConfig(const std::string& text) { WriteBytes(paths_.config, text); }
  std::string ConfigText() { return ReadBytes(paths_.config); }
};

// An environment the config does not know is refused, naming it and the flag.
TEST_F(BadInputTest, UnknownEnvironment) {
  ExpectFailure(Compare({"--from", "STAGE", "--to", "PROD"}), 2, {"STAGE", "--from"});
}

// The same environment on both sides is refused.
TEST_F(BadInputTest, SameEnvironmentOnBothSides) {
  ExpectFailure(Compare({"--from", "PROD", "--to", "PROD"}), 2, {"PROD", "--to"});
}

// A module that is never synchronized (orders) is refused, naming it.
TEST_F(BadInputTest, ModuleNotSynchronizable) {
  ExpectFailure(Compare({"--from", "TEST", "--to", "PROD", "--modules", "cms_pages,orders"}), 2,
                {"'orders'", "not synchronizable"});
}

// A gallery folder on neither side is refused, naming it.
TEST_F(BadInputTest, UnknownFolder) {
  ExpectFailure(Compare({"--from", "TEST", "--to", "PROD", "--folders", "nowhere/else"}), 2,
                {"'nowhere/else'", "--folders"});
}

// An unknown mode and an unknown flag are refused, naming them.
TEST_F(BadInputTest, UnknownModeAndFlag) {
  ExpectFailure(Compare({"--from", "TEST", "--to", "PROD", "--mode", "some"}), 2, {"'some'"});
  ExpectFailure(Compare({"--from", "TEST", "--to", "PROD", "--colour"}), 2, {"--colour"});
}

// A malformed config is reported with its file and line.
TEST_F(BadInputTest, MalformedConfigNamesFileAndLine) {
  WriteConfig("home = \"PROD\"\nstate = \"x.db\"\n[environments.PROD\ndatabase = 1\n");
  ExpectFailure(Compare({"--from", "TEST", "--to", "PROD"}), 2, {paths_.config.string() + ":3:"});
}

// Comparisons can be started only from PROD.
TEST_F(BadInputTest, HomeIsNotProd) {
  std::string text = ConfigText();
  text.replace(text.find("home = \"PROD\""), 13, "home = \"TEST\"");
  WriteConfig(text);
  ExpectFailure(Compare({"--from", "TEST", "--to", "PROD"}), 2, {"home is TEST", "only from PROD"});
}

// A missing database fails with status 1, naming the environment and the path.
TEST_F(BadInputTest, MissingDatabase) {
  std::filesystem::rename(paths_.test_db, dir_ / "moved.db");
  ExpectFailure(Compare({"--from", "TEST", "--to", "PROD"}), 1,
                {"environment TEST", paths_.test_db.string()});
  EXPECT_FALSE(std::filesystem::exists(paths_.test_db)) << "a comparison must not create it";
}

// A corrupt database fails with status 1, naming the environment and the path, and is left as
// it was.
TEST_F(BadInputTest, CorruptDatabase) {
  const std::string garbage(8192, 'x');
  WriteBytes(paths_.prod_db, garbage);
  ExpectFailure(Compare({"--from", "TEST", "--to", "PROD"}), 1,
                {"environment PROD", paths_.prod_db.string()});
  EXPECT_EQ(ReadBytes(paths_.prod_db), garbage);
}

// A database without the platform's tables (an empty file) is an environment that cannot be
// read: status 1, naming the environment and the path.
TEST_F(BadInputTest, EmptyDatabaseIsNotAnEnvironment) {
  WriteBytes(paths_.prod_db, "");
  ExpectFailure(Compare({"--from", "TEST", "--to", "PROD"}), 1,
                {"environment PROD", paths_.prod_db.string()});
}

// Names are checked before anything is opened: a bad module is bad input even when a
// database is missing.
TEST_F(BadInputTest, ModuleCheckedBeforeOpeningEnvironments) {
  std::filesystem::remove(paths_.test_db);
  ExpectFailure(Compare({"--from", "TEST", "--to", "PROD", "--modules", "orders"}), 2,
                {"'orders'"});
  ExpectFailure(Compare({"--from", "TEST", "--to", "STAGE"}), 2, {"STAGE", "--to"});
}

// A missing assets folder fails with status 1, naming the environment and the path.
TEST_F(BadInputTest, MissingAssetsFolder) {
  std::filesystem::remove_all(paths_.prod_assets);
  ExpectFailure(Compare({"--from", "TEST", "--to", "PROD"}), 1,
                {"environment PROD", paths_.prod_assets.string()});
}

// A manifest that does not fit the environments is reported by file, line and name at start.
TEST_F(BadInputTest, ManifestErrorNamesFileLineAndName) {
  const auto manifest = dir_ / "modules.toml";
  WriteBytes(manifest,
             "[[module]]\nname = \"cms_pages\"\n\n  [[module.table]]\n  name = \"cms_pages\"\n"
             "  id = \"id\"\n  key = [\"slug_typo\"]\n");
  WriteConfig("manifest = \"" + manifest.string() + "\"\n" + ConfigText());
  ExpectFailure(Compare({"--from", "TEST", "--to", "PROD"}), 2,
                {manifest.string() + ":4:", "slug_typo"});
}

// A config file that does not exist is named.
TEST_F(BadInputTest, MissingConfigFile) {
  CliRun run = RunCli(
      {"--config", (dir_ / "nope.toml").string(), "compare", "--from", "TEST", "--to", "PROD"});
  ExpectFailure(run, 2, {(dir_ / "nope.toml").string()});
}

// `show` of an unknown comparison is refused, naming the ID.
TEST_F(BadInputTest, ShowUnknownComparison) {
  ExpectFailure(RunCli({"--config", paths_.config.string(), "show", "c-000000000000"}), 2,
                {"c-000000000000"});
}

// `demo init` never overwrites an existing demo.
TEST_F(BadInputTest, DemoInitRefusesAnExistingDemo) {
  const std::string before = ReadBytes(paths_.prod_db);
  CliRun run = RunCli({"demo", "init", dir_.string()});
  EXPECT_EQ(run.exit_code, 2) << run.err;
  EXPECT_EQ(ReadBytes(paths_.prod_db), before);
}

}  // namespace
}  // namespace envsync::testing
