#ifndef ENVSYNC_TESTS_SYNC_COMPARE_TEST_SUPPORT_H_
#define ENVSYNC_TESTS_SYNC_COMPARE_TEST_SUPPORT_H_

#include <sqlite3.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "envsync/cli/cli.h"
#include "envsync/demo/demo.h"
#include "gtest/gtest.h"

namespace envsync::testing {

// The outcome of one `envsync` run in-process.
struct CliRun {
  int exit_code = -1;
  std::string out;
  std::string err;
  nlohmann::json Json() const { return nlohmann::json::parse(out); }
};

inline CliRun RunCli(const std::vector<std::string>& args) {
  std::ostringstream out;
  std::ostringstream err;
  CliRun run;
  run.exit_code = cli::Run(args, out, err);
  run.out = out.str();
  run.err = err.str();
  return run;
}

// Runs one SQL script against a real SQLite file, failing the test on error.
inline void ExecSql(const std::filesystem::path& db_path, const std::string& sql) {
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(db_path.c_str(), &db), SQLITE_OK);
  char* error = nullptr;
  const int rc =
      sqlite3_exec(db, ("PRAGMA foreign_keys = ON;" + sql).c_str(), nullptr, nullptr, &error);
  std::string message = error != nullptr ? error : "";
  sqlite3_free(error);
  sqlite3_close(db);
  ASSERT_EQ(rc, SQLITE_OK) << message << " in: " << sql;
}

inline std::string ReadBytes(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

inline void WriteBytes(const std::filesystem::path& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << bytes;
}

// A demo pair of environments in a fresh temporary directory: common state, optionally with
// the base recorded (as after a sync) and the demo's pending work applied.
class DemoEnvironments : public ::testing::Test {
 protected:
  enum class Start { kCommonNoBase, kCommonWithBase, kPendingWork };

  void SetUp() override {
    static std::atomic<int> counter{0};
    dir_ = std::filesystem::temp_directory_path() /
           ("envsync-test-" + std::to_string(::getpid()) + "-" + std::to_string(counter++));
    std::filesystem::remove_all(dir_);
    paths_ = demo::PathsFor(dir_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  void Build(Start start, int64_t records = 0) {
    demo::DemoOptions options{dir_, records};
    ASSERT_TRUE(demo::CreateCommonState(options).ok());
    ASSERT_TRUE(demo::WriteConfig(options).ok());
    if (start == Start::kCommonNoBase) return;
    CliRun baseline = Compare({"--from", "TEST", "--to", "PROD"});
    ASSERT_EQ(baseline.exit_code, 0) << baseline.err;
    ASSERT_EQ(baseline.Json()["changes"].size(), 0u) << "the common state must be equal";
    if (start == Start::kPendingWork) {
      ASSERT_TRUE(demo::ApplyPendingWork(options).ok());
    }
  }

  // Runs `envsync --config <demo> compare ARGS --json`.
  CliRun Compare(std::vector<std::string> args) {
    std::vector<std::string> full = {"--config", paths_.config.string(), "compare"};
    full.insert(full.end(), args.begin(), args.end());
    full.push_back("--json");
    const std::filesystem::path before = dir_ / "state-before-compare.db";
    const bool mirror = MirrorsCompares();
    if (mirror) {
      std::filesystem::remove(before);
      if (std::filesystem::exists(paths_.state)) std::filesystem::copy_file(paths_.state, before);
    }
    CliRun run = RunCli(full);
    if (mirror && run.exit_code == 0) CompareElsewhere(args, run, before);
    return run;
  }

  // A fixture that returns true has every successful compare run again on other engines, from
  // the same state, by CompareElsewhere (which checks the answers are the same).
  virtual bool MirrorsCompares() const { return false; }
  virtual void CompareElsewhere(const std::vector<std::string>& /*args*/, const CliRun& /*run*/,
                                const std::filesystem::path& /*state_before*/) {}

  // Compares and returns the JSON, failing the test on a non-zero exit.
  nlohmann::json CompareJson(std::vector<std::string> args) {
    CliRun run = Compare(std::move(args));
    EXPECT_EQ(run.exit_code, 0) << run.err;
    if (run.exit_code != 0) return nlohmann::json::object();
    return run.Json();
  }

  void Prod(const std::string& sql) { ExecSql(paths_.prod_db, sql); }
  void Test(const std::string& sql) { ExecSql(paths_.test_db, sql); }

  std::filesystem::path dir_;
  demo::DemoPaths paths_;
};

// The change for `table` with the given source ID (or target ID for source-less changes).
inline nlohmann::json FindChange(const nlohmann::json& comparison, const std::string& table,
                                 const nlohmann::json& id) {
  for (const auto& change : comparison["changes"]) {
    if (change["table"] != table) continue;
    if (change["source_id"] == id || (change["source_id"].is_null() && change["target_id"] == id)) {
      return change;
    }
  }
  return nlohmann::json();
}

inline std::vector<std::string> FieldNames(const nlohmann::json& change) {
  std::vector<std::string> names;
  for (const auto& f : change["fields"]) names.push_back(f["field"]);
  return names;
}

}  // namespace envsync::testing

#endif  // ENVSYNC_TESTS_SYNC_COMPARE_TEST_SUPPORT_H_
