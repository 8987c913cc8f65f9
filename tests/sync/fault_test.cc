// Faults met while syncing: the target database locked by the platform, and a full disk while
// staging files. Either way the sync fails with a clear reason and the target is unchanged.
#include <sys/mount.h>

#include <algorithm>

#include "tests/sync/compare_test_support.h"

namespace envsync::testing {
namespace {

using nlohmann::json;

class FaultTest : public DemoEnvironments {
 protected:
  std::string CompareId() {
    return CompareJson({"--from", "TEST", "--to", "PROD"})["comparison_id"];
  }
  CliRun Sync(const std::string& id) {
    return RunCli({"--config", paths_.config.string(), "sync", id, "--json"});
  }
};

// While the platform holds the write lock, the sync waits a bounded time, then fails naming
// the environment, and nothing is written.
TEST_F(FaultTest, LockedTargetFailsAfterABoundedWait) {
  Build(Start::kPendingWork);
  const std::string id = CompareId();
  sqlite3* platform = nullptr;
  ASSERT_EQ(sqlite3_open(paths_.prod_db.c_str(), &platform), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(platform, "BEGIN IMMEDIATE", nullptr, nullptr, nullptr), SQLITE_OK);
  const std::string before = ReadBytes(paths_.prod_db);
  const auto started = std::chrono::steady_clock::now();
  CliRun run = Sync(id);
  const double waited =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  sqlite3_exec(platform, "ROLLBACK", nullptr, nullptr, nullptr);
  sqlite3_close(platform);
  EXPECT_EQ(run.exit_code, 1) << run.out << run.err;
  EXPECT_NE(run.err.find("environment PROD"), std::string::npos) << run.err;
  EXPECT_NE(run.err.find("locked"), std::string::npos) << run.err;
  EXPECT_GE(waited, 4.0) << "the wait is bounded, not skipped";
  EXPECT_LT(waited, 30.0);
  EXPECT_EQ(ReadBytes(paths_.prod_db), before);
  // Once the lock is gone the same comparison syncs.
  CliRun retry = Sync(id);
  EXPECT_EQ(retry.exit_code, 0) << retry.err;
}

// With PROD's assets on a full disk, staging the images fails: the sync fails with the reason,
// and PROD's database and files are as before.
TEST_F(FaultTest, DiskFullWhileStagingLeavesTargetUnchanged) {
  Build(Start::kPendingWork);
  const std::filesystem::path mount_point = dir_ / "small-disk";
  std::filesystem::create_directories(mount_point);
  if (mount("tmpfs", mount_point.c_str(), "tmpfs", 0, "size=256k") != 0) {
    GTEST_SKIP() << "cannot mount a small tmpfs here (needs root): " << std::strerror(errno);
  }
  struct Unmount {
    std::filesystem::path path;
    ~Unmount() { umount2(path.c_str(), MNT_DETACH); }
  } unmount{mount_point};
  // Move PROD's assets onto the small disk and fill what is left of it.
  const auto assets = mount_point / "prod-assets";
  std::filesystem::copy(paths_.prod_assets, assets, std::filesystem::copy_options::recursive);
  std::filesystem::remove_all(paths_.prod_assets);
  std::filesystem::create_directory_symlink(assets, paths_.prod_assets);
  {
    std::ofstream filler(mount_point / "filler", std::ios::binary);
    const std::string block(4096, 'x');
    while (filler.write(block.data(), block.size())) {
    }
  }
  const std::string id = CompareId();
  const std::string db_before = ReadBytes(paths_.prod_db);
  std::vector<std::string> files_before;
  for (const auto& e : std::filesystem::recursive_directory_iterator(assets)) {
    files_before.push_back(e.path().string() + " " +
                           (e.is_regular_file() ? ReadBytes(e.path()) : std::string()));
  }
  CliRun run = Sync(id);
  EXPECT_EQ(run.exit_code, 1) << run.out << run.err;
  ASSERT_FALSE(run.out.empty()) << run.err;
  EXPECT_EQ(run.Json()["status"], "failure");
  EXPECT_NE(run.Json()["error"].get<std::string>().find("staging"), std::string::npos) << run.out;
  // Rolled back, so the report counts nothing as applied.
  EXPECT_EQ(run.Json()["applied"], (json{{"new", 0}, {"modified", 0}, {"deleted", 0}})) << run.out;
  EXPECT_EQ(run.Json()["files"], 0) << run.out;
  EXPECT_EQ(ReadBytes(paths_.prod_db), db_before);
  std::vector<std::string> files_after;
  for (const auto& e : std::filesystem::recursive_directory_iterator(assets)) {
    files_after.push_back(e.path().string() + " " +
                          (e.is_regular_file() ? ReadBytes(e.path()) : std::string()));
  }
  EXPECT_EQ(files_after, files_before);
}

// `envsync doctor` finds a sound demo sound, and names each kind of damage it is shown: a
// corrupt page in an environment's database, a corrupt page in the state store, and a trash
// folder no sync needs. It writes nothing: the damage is still there after it ran.
TEST_F(FaultTest, DoctorNamesEachKindOfDamage) {
  Build(Start::kPendingWork);
  CompareId();
  const std::string config = paths_.config.string();
  CliRun sound = RunCli({"--config", config, "doctor", "--json"});
  ASSERT_EQ(sound.exit_code, 0) << sound.out << sound.err;
  EXPECT_TRUE(sound.Json()["healthy"].get<bool>());

  // Overwrites the page header of page `page` (1-based) of a SQLite file.
  auto corrupt = [](const std::filesystem::path& db, int page) {
    std::string bytes = ReadBytes(db);
    const size_t page_size =
        (static_cast<unsigned char>(bytes[16]) << 8) | static_cast<unsigned char>(bytes[17]);
    const size_t size = page_size == 1 ? 65536 : page_size;
    ASSERT_GT(bytes.size(), size * page);
    bytes[size * (page - 1) + 3] = '\xff';
    bytes[size * (page - 1) + 4] = '\xff';
    WriteBytes(db, bytes);
  };
  auto problems = [&](const std::string& check) {
    CliRun doctor = RunCli({"--config", config, "doctor", "--json"});
    EXPECT_EQ(doctor.exit_code, 1) << doctor.out << doctor.err;
    std::string found;
    const json report = doctor.Json();
    for (const auto& f : report["findings"]) {
      if (f["check"] == check && !f["ok"].get<bool>()) found += f["detail"].get<std::string>();
    }
    return found;
  };

  const std::string test_db = ReadBytes(paths_.test_db);
  corrupt(paths_.test_db, 4);
  // Named with its file, whether opening it already fails or its own check does.
  for (int run = 0; run < 2; ++run) {  // the second time: it repaired nothing
    const std::string found = problems("environment TEST");
    EXPECT_NE(found.find(paths_.test_db.string()), std::string::npos) << found;
    EXPECT_TRUE(found.find("malformed") != std::string::npos ||
                found.find("Page 4") != std::string::npos)
        << found;
  }
  WriteBytes(paths_.test_db, test_db);

  // The state store is in WAL mode: checkpointed and closed after the compare above.
  const std::string state = ReadBytes(paths_.state);
  corrupt(paths_.state, 3);
  EXPECT_NE(problems("state store").find("malformed"), std::string::npos);
  WriteBytes(paths_.state, state);

  const std::filesystem::path stray = paths_.prod_assets / ".envsync" / "trash" / "s-nobody";
  std::filesystem::create_directories(stray);
  EXPECT_NE(problems("environment PROD").find("s-nobody"), std::string::npos);
  EXPECT_TRUE(std::filesystem::exists(stray)) << "the doctor removes nothing";
  std::filesystem::remove_all(paths_.prod_assets / ".envsync");
  EXPECT_EQ(RunCli({"--config", config, "doctor"}).exit_code, 0);
}

// A symlink inside a gallery is never followed. On the source, a gallery file that is a symlink
// (here to a file outside with the very bytes its row's SHA-256 names) is not read; on the
// target, a gallery folder that is a symlink to a folder outside is not written into. Either
// way the sync fails naming the path, and nothing is written.
TEST_F(FaultTest, SymlinksInsideTheGalleryAreNeverFollowed) {
  Build(Start::kPendingWork);
  namespace fs = std::filesystem;
  const fs::path source_file = paths_.test_assets / "gallery/mobile_app/splash-winter.png";
  const fs::path outside_file = dir_ / "outside.png";
  fs::copy_file(source_file, outside_file);
  fs::remove(source_file);
  fs::create_symlink(outside_file, source_file);
  const std::string prod_before = ReadBytes(paths_.prod_db);
  CliRun run = Sync(CompareId());
  EXPECT_NE(run.exit_code, 0) << run.out;
  EXPECT_NE(run.out.find("symlink"), std::string::npos) << run.out << run.err;
  EXPECT_NE(run.out.find(source_file.string()), std::string::npos) << run.out;
  EXPECT_EQ(ReadBytes(paths_.prod_db), prod_before);
  EXPECT_FALSE(fs::exists(paths_.prod_assets / "gallery/mobile_app/splash-winter.png"));
  fs::remove(source_file);
  fs::copy_file(outside_file, source_file);

  // The target's folder mobile_app moved outside, a symlink left in its place.
  const fs::path target_folder = paths_.prod_assets / "gallery/mobile_app";
  const fs::path outside_folder = dir_ / "outside-folder";
  fs::rename(target_folder, outside_folder);
  fs::create_directory_symlink(outside_folder, target_folder);
  std::vector<std::string> outside_before;
  for (const auto& e : fs::directory_iterator(outside_folder)) {
    outside_before.push_back(e.path().filename().string() + ":" + ReadBytes(e.path()));
  }
  run = Sync(CompareId());
  EXPECT_NE(run.exit_code, 0) << run.out;
  EXPECT_NE(run.out.find("unsafe path"), std::string::npos) << run.out << run.err;
  EXPECT_EQ(ReadBytes(paths_.prod_db), prod_before);
  std::vector<std::string> outside_after;
  for (const auto& e : fs::directory_iterator(outside_folder)) {
    outside_after.push_back(e.path().filename().string() + ":" + ReadBytes(e.path()));
  }
  std::sort(outside_before.begin(), outside_before.end());
  std::sort(outside_after.begin(), outside_after.end());
  EXPECT_EQ(outside_after, outside_before) << "something was written outside the gallery";
}

}  // namespace
}  // namespace envsync::testing
