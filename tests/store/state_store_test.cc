#include "envsync/store/state_store.h"

#include <fmt/format.h>
#include <gtest/gtest.h>
#include <sqlite3.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "envsync/core/comparison.h"
#include "envsync/core/identity_map.h"
#include "envsync/core/status.h"
#include "envsync/core/value.h"
#include "envsync/store/json_codec.h"
#include "store/postgres/postgres_environment.h"
#include "tests/store/pg_support.h"
#include "tests/store/sqlite_exec.h"

namespace envsync::store {
namespace {

namespace fs = std::filesystem;

// The schema of version 1 exactly as it shipped (kMigrations[0]); a v1 file is built from it.
constexpr char kSchemaV1[] = R"sql(
CREATE TABLE identity_map (
  table_name TEXT NOT NULL,
  prod_id    INTEGER NOT NULL,
  test_id    INTEGER NOT NULL,
  PRIMARY KEY (table_name, prod_id)
);
CREATE UNIQUE INDEX identity_map_by_test ON identity_map (table_name, test_id);
CREATE TABLE sync_base (
  table_name   TEXT NOT NULL,
  prod_id      NOT NULL,
  test_id      NOT NULL,
  hash         INTEGER NOT NULL,
  field_hashes BLOB NOT NULL,
  PRIMARY KEY (table_name, prod_id, test_id)
) WITHOUT ROWID;
CREATE TABLE comparisons (
  id               TEXT PRIMARY KEY,
  created_at       TEXT NOT NULL,
  from_env         TEXT NOT NULL,
  to_env           TEXT NOT NULL,
  mode             TEXT NOT NULL,
  modules          TEXT NOT NULL,
  folders          TEXT NOT NULL,
  forced           TEXT NOT NULL,
  warnings         TEXT NOT NULL,
  records_compared INTEGER NOT NULL,
  conflicts        INTEGER NOT NULL,
  new_records      INTEGER NOT NULL,
  modified         INTEGER NOT NULL,
  deleted          INTEGER NOT NULL
);
CREATE TABLE changes (
  comparison_id TEXT NOT NULL REFERENCES comparisons (id) ON DELETE CASCADE,
  seq           INTEGER NOT NULL,
  tab           TEXT NOT NULL,
  record        TEXT NOT NULL,
  body          TEXT NOT NULL,
  PRIMARY KEY (comparison_id, seq)
);
CREATE INDEX changes_by_tab ON changes (comparison_id, tab, seq);
)sql";

constexpr char kPages[] = "cms_pages";
constexpr char kSettings[] = "system_settings";

// A value with its type, so that 7 and "7" differ in failure messages.
std::string Show(const Value& v) {
  if (IsNull(v)) return "NULL";
  if (const auto* i = std::get_if<int64_t>(&v)) return "int " + std::to_string(*i);
  if (const auto* d = std::get_if<double>(&v)) return "real " + std::to_string(*d);
  return "text '" + std::get<std::string>(v) + "'";
}

std::string ReadBytes(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

void WriteBytes(const fs::path& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << bytes;
}

// The offset of the first byte where `a` and `b` differ, or -1 when they are equal.
int64_t FirstDifference(const std::string& a, const std::string& b) {
  const size_t n = std::min(a.size(), b.size());
  for (size_t i = 0; i < n; ++i) {
    if (a[i] != b[i]) return static_cast<int64_t>(i);
  }
  return a.size() == b.size() ? -1 : static_cast<int64_t>(n);
}

// An integer PRAGMA of a SQLite file, read with the plain SQLite API; -1 on error.
int IntegerPragma(const fs::path& path, const char* pragma) {
  return static_cast<int>(QueryInteger(path, std::string("PRAGMA ") + pragma));
}

int UserVersion(const fs::path& path) { return IntegerPragma(path, "user_version"); }

SyncBase Base(Value prod_id, Value test_id, uint64_t hash, std::vector<uint64_t> field_hashes) {
  SyncBase base;
  base.prod_id = std::move(prod_id);
  base.test_id = std::move(test_id);
  base.hash = hash;
  base.field_hashes = std::move(field_hashes);
  return base;
}

FieldDiff Field(std::string name, Value source, Value target, Value base, bool base_known,
                bool json) {
  FieldDiff f;
  f.field = std::move(name);
  f.source = std::move(source);
  f.target = std::move(target);
  f.base = std::move(base);
  f.base_known = base_known;
  f.json = json;
  return f;
}

// A conflict on a mapped pair (PROD 63 <-> TEST 55) with every kind of field difference.
Change ConflictChange() {
  Change c;
  c.tab = Tab::kConflicts;
  c.module = "cms";
  c.table = kPages;
  c.source_id = int64_t{55};
  c.target_id = int64_t{63};
  c.key = "summer-sale";
  c.selected = false;
  c.conflict = Conflict::kBothModified;
  c.mergeable = true;
  c.required_by = {"cms_menus:4", "cms_menus:9"};
  c.fields = {
      Field("title", std::string("Summer sale"), std::string("Summer Sale!"), std::string("Summer"),
            /*base_known=*/true, /*json=*/false),
      Field("blocks", std::string(R"([{"body":"a","position":1}])"),
            std::string(R"([{"body":"b","position":1},{"body":"c","position":2}])"), Value(),
            /*base_known=*/false, /*json=*/true),
      Field("price", 1.5, 2.25, 1.5, /*base_known=*/true, /*json=*/false),
      Field("parent_id", Value(), int64_t{7}, Value(), /*base_known=*/true, /*json=*/false),
  };
  c.source_hash = 0xfedcba9876543210ULL;
  c.target_hash = 1;
  return c;
}

// A new setting, keyed by text ID, absent on the target.
Change NewSettingChange() {
  Change c;
  c.tab = Tab::kNew;
  c.module = "settings";
  c.table = kSettings;
  c.source_id = std::string("integrations.mobile_app.home");
  c.key = "integrations.mobile_app.home";
  c.selected = true;
  c.fields = {Field("value", std::string("on"), Value(), Value(), false, false)};
  c.source_hash = 5;
  return c;
}

// A page modified on the source whose child rows' base is known.
Change ModifiedPageChange() {
  Change c;
  c.tab = Tab::kModified;
  c.module = "cms";
  c.table = kPages;
  c.source_id = int64_t{57};
  c.target_id = int64_t{57};
  c.key = "about-us";
  c.selected = true;
  c.required_by = {"cms_pages:58"};
  c.fields = {Field("blocks", std::string(R"([{"body":"new","position":1}])"), std::string("[]"),
                    std::string("[]"), /*base_known=*/true, /*json=*/true)};
  c.source_hash = 0x8000000000000000ULL;
  c.target_hash = 0xffffffffffffffffULL;
  return c;
}

// A page gone from the source whose target copy changed since the base.
Change DeletedPageChange() {
  Change c;
  c.tab = Tab::kDeleted;
  c.module = "cms";
  c.table = kPages;
  c.target_id = int64_t{12};
  c.key = "old-page";
  c.reason = Reason::kTargetChanged;
  c.target_hash = 9;
  return c;
}

Comparison FullComparison(const std::string& id) {
  Comparison c;
  c.id = id;
  c.from = "TEST";
  c.to = "PROD";
  c.mode = Mode::kNew;
  c.modules = {"gallery", "cms", "settings"};
  c.folders = {"banners", "banners/summer"};
  c.forced = {{"gallery", "system_config", {"banners", "icons"}}, {"files", "cms", {}}};
  c.created_at = "2024-05-01T10:00:00Z";
  c.records_compared = 1234;
  c.changes = {ConflictChange(), NewSettingChange(), ModifiedPageChange(), DeletedPageChange()};
  c.warnings = {{"PROD", "gallery_files:3", "bytes missing"},
                {"TEST", "", "gallery folder 'icons' is empty"}};
  return c;
}

void ExpectSameField(const FieldDiff& expected, const FieldDiff& actual) {
  SCOPED_TRACE("field " + expected.field);
  EXPECT_EQ(actual.field, expected.field);
  EXPECT_EQ(Show(actual.source), Show(expected.source));
  EXPECT_EQ(Show(actual.target), Show(expected.target));
  EXPECT_EQ(Show(actual.Base()), Show(expected.Base()));
  EXPECT_EQ(actual.base_known, expected.base_known);
  EXPECT_EQ(actual.json, expected.json);
}

void ExpectSameChange(const Change& expected, const Change& actual) {
  SCOPED_TRACE("change " + expected.Ref());
  EXPECT_EQ(actual.tab, expected.tab);
  EXPECT_EQ(actual.module, expected.module);
  EXPECT_EQ(actual.table, expected.table);
  EXPECT_EQ(Show(actual.source_id), Show(expected.source_id));
  EXPECT_EQ(Show(actual.target_id), Show(expected.target_id));
  EXPECT_EQ(actual.key, expected.key);
  EXPECT_EQ(actual.selected, expected.selected);
  EXPECT_EQ(actual.conflict, expected.conflict);
  EXPECT_EQ(actual.mergeable, expected.mergeable);
  EXPECT_EQ(actual.reason, expected.reason);
  EXPECT_EQ(actual.required_by, expected.required_by);
  EXPECT_EQ(actual.source_hash, expected.source_hash);
  EXPECT_EQ(actual.target_hash, expected.target_hash);
  ASSERT_EQ(actual.fields.size(), expected.fields.size());
  for (size_t i = 0; i < expected.fields.size(); ++i) {
    ExpectSameField(expected.fields[i], actual.fields[i]);
  }
}

void ExpectSameBase(const SyncBase& expected, const SyncBase& actual) {
  EXPECT_EQ(Show(actual.prod_id), Show(expected.prod_id));
  EXPECT_EQ(Show(actual.test_id), Show(expected.test_id));
  EXPECT_EQ(actual.hash, expected.hash);
  EXPECT_EQ(actual.field_hashes, expected.field_hashes);
}

// Every base entry ScanDirectBase yields for `table`, failing the test on error.
std::vector<SyncBase> ScanAll(StateStore& store, const std::string& table) {
  std::vector<SyncBase> out;
  auto cursor = store.ScanDirectBase(table);
  EXPECT_TRUE(cursor.ok()) << cursor.status().message();
  if (!cursor.ok()) return out;
  SyncBase base;
  while ((*cursor)->Next(&base)) out.push_back(base);
  EXPECT_TRUE((*cursor)->status().ok()) << (*cursor)->status().message();
  return out;
}

std::vector<std::string> IdsOf(const std::vector<SyncBase>& bases) {
  std::vector<std::string> out;
  for (const SyncBase& b : bases) out.push_back(Show(b.prod_id) + "/" + Show(b.test_id));
  return out;
}

// A fresh state store location per test on one backend: a SQLite file in a new folder, or a new
// database on the test PostgreSQL server ($ENVSYNC_TEST_PG, set by scripts/with-postgres),
// dropped afterwards. Without a server the PostgreSQL cases are skipped, or fail on CI.
class StoreTestBase : public ::testing::Test {
 protected:
  void SetUpBackend(const std::string& backend) {
    static std::atomic<int> counter{0};
    const int n = counter++;
    dir_ = fs::temp_directory_path() /
           ("envsync-store-test-" + std::to_string(::getpid()) + "-" + std::to_string(n));
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    path_ = dir_ / "state.db";
    location_ = path_.string();
    if (backend != "postgresql") return;
    ENVSYNC_REQUIRE_POSTGRES();
    envsync::testing::Pg admin(envsync::testing::ServerUri());
    ASSERT_TRUE(admin.ok()) << admin.error();
    const std::string database =
        "envsync_store_" + std::to_string(::getpid()) + "_" + std::to_string(n);
    admin.Run("CREATE DATABASE " + database);
    database_ = database;
    location_ = envsync::testing::DatabaseUri(database_);
  }
  void TearDown() override {
    if (!database_.empty()) envsync::testing::DropPostgresDatabase(database_);
    fs::remove_all(dir_);
  }

  // Opens the store at location_, or returns null after recording a failure.
  std::unique_ptr<StateStore> Open() {
    auto store = OpenStateStore(location_);
    EXPECT_TRUE(store.ok()) << store.status().message();
    if (!store.ok()) return nullptr;
    return std::move(store).value();
  }

  // Writes `bases` of `table` in one base update, failing the test on error.
  static void PutBases(StateStore& store, const std::string& table,
                       const std::vector<SyncBase>& bases) {
    ASSERT_TRUE(store.BeginBaseUpdate().ok());
    for (const SyncBase& base : bases) {
      const Status status = store.PutBase(table, base);
      ASSERT_TRUE(status.ok()) << status.message();
    }
    const Status commit = store.CommitBaseUpdate();
    ASSERT_TRUE(commit.ok()) << commit.message();
  }

  fs::path dir_;
  fs::path path_;         // the SQLite file (SQLite backend)
  std::string location_;  // what OpenStateStore takes: path_ or a PostgreSQL URI
  std::string database_;  // the PostgreSQL database made for the test, "" on SQLite
};

// What only a SQLite file has: its user_version, migrations from version 1, its bytes.
class SqliteStateStoreTest : public StoreTestBase {
 protected:
  void SetUp() override { SetUpBackend("sqlite"); }
};

// The backend-independent contract, run on SQLite and on PostgreSQL.
class StateStoreTest : public StoreTestBase, public ::testing::WithParamInterface<std::string> {
 protected:
  void SetUp() override { SetUpBackend(GetParam()); }
};

INSTANTIATE_TEST_SUITE_P(Backends, StateStoreTest, ::testing::Values("sqlite", "postgresql"),
                         [](const ::testing::TestParamInfo<std::string>& info) {
                           return info.param;
                         });

// What only the PostgreSQL store has: concurrent claimers, the server's URI in messages.
class PostgresStateStoreTest : public StoreTestBase {
 protected:
  void SetUp() override { SetUpBackend("postgresql"); }
};

// --- Opening and schema versions ---

// A store opened on a missing file is created at the current schema version.
TEST_F(SqliteStateStoreTest, NewStoreIsCreatedAtCurrentSchemaVersion) {
  auto store = Open();
  ASSERT_NE(store, nullptr);
  EXPECT_EQ(store->SchemaVersion(), kStateSchemaVersion);
  store.reset();
  EXPECT_TRUE(fs::exists(path_));
  EXPECT_EQ(UserVersion(path_), kStateSchemaVersion);
  // A new store's pages hold a comparison's change or a sync's pre-image without overflow.
  EXPECT_EQ(IntegerPragma(path_, "page_size"), 16384);
}

// Reopening a store keeps what was written and its version.
TEST_P(StateStoreTest, ReopeningKeepsData) {
  {
    auto store = Open();
    ASSERT_NE(store, nullptr);
    ASSERT_TRUE(store->AddIdentity(kPages, 63, 8).ok());
    ASSERT_TRUE(store->SaveComparison(FullComparison("c-1")).ok());
    PutBases(*store, kPages, {Base(int64_t{3}, int64_t{3}, 30, {1, 2})});
  }
  auto store = Open();
  ASSERT_NE(store, nullptr);
  EXPECT_EQ(store->SchemaVersion(), kStateSchemaVersion);
  auto map = store->LoadIdentityMap();
  ASSERT_TRUE(map.ok());
  EXPECT_EQ(map->Pairs(kPages), (std::map<int64_t, int64_t>{{63, 8}}));
  auto loaded = store->LoadComparison("c-1");
  ASSERT_TRUE(loaded.ok()) << loaded.status().message();
  EXPECT_EQ(loaded->changes.size(), 4u);
  EXPECT_EQ(IdsOf(ScanAll(*store, kPages)), std::vector<std::string>{"int 3/int 3"});
}

// A version 1 file is migrated to the current version: old rows stay and the sync tables work.
TEST_F(SqliteStateStoreTest, MigratesVersion1Forward) {
  ExecSql(path_, std::string(kSchemaV1) + R"sql(
PRAGMA user_version = 1;
INSERT INTO identity_map VALUES ('cms_pages', 63, 8);
INSERT INTO comparisons VALUES ('c-v1', '2024-04-01T09:00:00Z', 'TEST', 'PROD', 'all',
  '["cms"]', '[]', '[]', '[]', 12, 0, 0, 1, 0);
INSERT INTO changes VALUES ('c-v1', 0, 'modified', 'cms_pages:57',
  '{"tab":"modified","module":"cms","table":"cms_pages","source_id":57,"target_id":57,"key":"about-us","selected":true,"conflict":null,"mergeable":false,"reason":null,"required_by":[],"fields":[{"field":"title","source":"About","target":"About us","base":null,"base_known":false,"json":false}],"source_hash":"00000000000000ff","target_hash":"0000000000000100"}');
)sql");
  ASSERT_EQ(UserVersion(path_), 1);

  ASSERT_EQ(IntegerPragma(path_, "page_size"), 4096);

  auto store = Open();
  ASSERT_NE(store, nullptr);
  EXPECT_EQ(store->SchemaVersion(), store::kStateSchemaVersion);
  EXPECT_EQ(UserVersion(path_), store::kStateSchemaVersion);
  EXPECT_EQ(IntegerPragma(path_, "page_size"), 4096);  // an existing store keeps its pages

  auto map = store->LoadIdentityMap();
  ASSERT_TRUE(map.ok()) << map.status().message();
  EXPECT_EQ(map->Pairs(kPages), (std::map<int64_t, int64_t>{{63, 8}}));

  // The review's filter finds the migrated change by its key and by its module.
  for (const char* filter : {"ABOUT-US", "cms", "cms_pages:57"}) {
    auto page = store->LoadChangePage("c-v1", Tab::kModified, filter, 0, 10);
    ASSERT_TRUE(page.ok()) << page.status().message();
    EXPECT_EQ(page->total, 1) << filter;
  }
  EXPECT_EQ(store->LoadChangePage("c-v1", Tab::kModified, "nothing-like-it", 0, 10)->total, 0);

  auto comparison = store->LoadComparison("c-v1");
  ASSERT_TRUE(comparison.ok()) << comparison.status().message();
  EXPECT_EQ(comparison->from, "TEST");
  EXPECT_EQ(comparison->to, "PROD");
  EXPECT_EQ(comparison->modules, std::vector<std::string>{"cms"});
  EXPECT_EQ(comparison->records_compared, 12);
  ASSERT_EQ(comparison->changes.size(), 1u);
  const Change& change = comparison->changes[0];
  EXPECT_EQ(change.tab, Tab::kModified);
  EXPECT_EQ(Show(change.source_id), "int 57");
  EXPECT_EQ(change.source_hash, std::optional<uint64_t>(0xff));
  ASSERT_EQ(change.fields.size(), 1u);
  EXPECT_EQ(Show(change.fields[0].target), "text 'About us'");

  SyncRun run;
  run.id = "s-1";
  run.comparison_id = "c-v1";
  run.status = "success";
  run.records.push_back(SyncRecord{kPages, "update", int64_t{57}, int64_t{57}, int64_t{57}, "{}",
                                   "{\"a\":1}", 42, std::nullopt});
  run.files.push_back(SyncFile{"/g/a.png", "/g/.stage/a.png", ""});
  ASSERT_TRUE(store->SaveSync(run).ok());
  auto loaded = store->LoadSync("s-1");
  ASSERT_TRUE(loaded.ok()) << loaded.status().message();
  EXPECT_EQ(loaded->comparison_id, "c-v1");
  ASSERT_EQ(loaded->records.size(), 1u);
  EXPECT_EQ(loaded->records[0].after_hash, std::optional<uint64_t>(42));
  ASSERT_EQ(loaded->files.size(), 1u);
  EXPECT_EQ(loaded->files[0].staged_path, "/g/.stage/a.png");
}

// A store whose schema is newer than this envsync is refused, naming its path and version.
TEST_F(SqliteStateStoreTest, NewerSchemaIsRefusedNamingPathAndVersion) {
  ExecSql(path_, "CREATE TABLE future_things (x); PRAGMA user_version = 99;");
  auto store = OpenStateStore(path_.string());
  ASSERT_FALSE(store.ok());
  EXPECT_TRUE(store.status().IsInvalidArgument()) << store.status().message();
  EXPECT_NE(store.status().message().find(path_.string()), std::string::npos)
      << store.status().message();
  EXPECT_NE(store.status().message().find("99"), std::string::npos) << store.status().message();
  EXPECT_EQ(UserVersion(path_), 99);
}

// A refused newer store is left byte for byte as it was.
TEST_F(SqliteStateStoreTest, RefusedNewerSchemaFileIsLeftUnchanged) {
  ExecSql(path_, "CREATE TABLE future_things (x); PRAGMA user_version = 99;");
  const std::string before = ReadBytes(path_);
  ASSERT_FALSE(before.empty());
  auto store = OpenStateStore(path_.string());
  ASSERT_FALSE(store.ok());
  EXPECT_EQ(FirstDifference(ReadBytes(path_), before), -1);
}

// A file that is not a database is refused as Unavailable naming the path, and left unchanged.
TEST_F(SqliteStateStoreTest, GarbageFileIsUnavailableAndLeftUnchanged) {
  std::string garbage;
  for (int i = 0; i < 200; ++i) garbage += "this is not a SQLite database\n";
  WriteBytes(path_, garbage);
  auto store = OpenStateStore(path_.string());
  ASSERT_FALSE(store.ok());
  EXPECT_TRUE(store.status().IsUnavailable()) << store.status().message();
  EXPECT_NE(store.status().message().find(path_.string()), std::string::npos)
      << store.status().message();
  EXPECT_EQ(FirstDifference(ReadBytes(path_), garbage), -1);
}

// A store migrated from version 1 keeps tracking marks like a new one.
TEST_F(SqliteStateStoreTest, MigratedStoreKeepsTrackingMarks) {
  ExecSql(path_, std::string(kSchemaV1) + "PRAGMA user_version = 1;");
  auto store = Open();
  ASSERT_NE(store, nullptr);
  TrackingMark mark;
  mark.table = kPages;
  mark.prod_epoch = "t-a";
  mark.prod_position = "3";
  mark.test_epoch = "t-b";
  mark.test_position = "4";
  mark.mix = 0x8000000000000001ULL;
  mark.unequal_prod = {7};
  ASSERT_TRUE(store->SaveTrackingMark(mark).ok());
  auto loaded = store->LoadTrackingMark(kPages);
  ASSERT_TRUE(loaded.ok()) << loaded.status().message();
  ASSERT_TRUE(loaded->has_value());
  EXPECT_EQ((*loaded)->mix, mark.mix);
  EXPECT_EQ((*loaded)->unequal_prod, std::vector<int64_t>{7});
  EXPECT_TRUE((*loaded)->unequal_test.empty());
}

// --- Identity map ---

// A pair added is loaded back.
TEST_P(StateStoreTest, AddedIdentityIsLoaded) {
  auto store = Open();
  ASSERT_NE(store, nullptr);
  ASSERT_TRUE(store->AddIdentity(kPages, 63, 8).ok());
  ASSERT_TRUE(store->AddIdentity("gallery_files", 5, 6).ok());
  auto map = store->LoadIdentityMap();
  ASSERT_TRUE(map.ok()) << map.status().message();
  EXPECT_EQ(map->size(), 2u);
  EXPECT_EQ(map->Pairs(kPages), (std::map<int64_t, int64_t>{{63, 8}}));
  EXPECT_EQ(map->Pairs("gallery_files"), (std::map<int64_t, int64_t>{{5, 6}}));
}

// A second pair for the same PROD ID replaces the first.
TEST_P(StateStoreTest, SecondPairForSameProdIdReplacesFirst) {
  auto store = Open();
  ASSERT_NE(store, nullptr);
  ASSERT_TRUE(store->AddIdentity(kPages, 63, 8).ok());
  ASSERT_TRUE(store->AddIdentity(kPages, 63, 9).ok());
  auto map = store->LoadIdentityMap();
  ASSERT_TRUE(map.ok()) << map.status().message();
  EXPECT_EQ(map->Pairs(kPages), (std::map<int64_t, int64_t>{{63, 9}}));
}

// A second pair for the same TEST ID replaces the first.
TEST_P(StateStoreTest, SecondPairForSameTestIdReplacesFirst) {
  auto store = Open();
  ASSERT_NE(store, nullptr);
  ASSERT_TRUE(store->AddIdentity(kPages, 63, 8).ok());
  ASSERT_TRUE(store->AddIdentity(kPages, 64, 8).ok());
  auto map = store->LoadIdentityMap();
  ASSERT_TRUE(map.ok()) << map.status().message();
  EXPECT_EQ(map->Pairs(kPages), (std::map<int64_t, int64_t>{{64, 8}}));
}

// RemoveIdentity forgets exactly the pair named.
TEST_P(StateStoreTest, RemoveIdentityForgetsPair) {
  auto store = Open();
  ASSERT_NE(store, nullptr);
  ASSERT_TRUE(store->AddIdentity(kPages, 63, 8).ok());
  ASSERT_TRUE(store->AddIdentity(kPages, 70, 10).ok());
  ASSERT_TRUE(store->RemoveIdentity(kPages, 63, 8).ok());
  auto map = store->LoadIdentityMap();
  ASSERT_TRUE(map.ok()) << map.status().message();
  EXPECT_EQ(map->Pairs(kPages), (std::map<int64_t, int64_t>{{70, 10}}));
}

// Removing a pair that is not there (or only half matches) is not an error and changes nothing.
TEST_P(StateStoreTest, RemoveMissingIdentityIsNotAnError) {
  auto store = Open();
  ASSERT_NE(store, nullptr);
  ASSERT_TRUE(store->AddIdentity(kPages, 63, 8).ok());
  EXPECT_TRUE(store->RemoveIdentity(kPages, 1, 2).ok());
  EXPECT_TRUE(store->RemoveIdentity(kPages, 63, 9).ok());
  EXPECT_TRUE(store->RemoveIdentity("gallery_files", 63, 8).ok());
  auto map = store->LoadIdentityMap();
  ASSERT_TRUE(map.ok()) << map.status().message();
  EXPECT_EQ(map->Pairs(kPages), (std::map<int64_t, int64_t>{{63, 8}}));
}

// --- Base ---

// ScanDirectBase yields only the table's pairs with equal integer IDs, in ID order.
TEST_P(StateStoreTest, ScanDirectBaseYieldsEqualIntegerIdsInOrder) {
  auto store = Open();
  ASSERT_NE(store, nullptr);
  PutBases(*store, kPages,
           {Base(int64_t{30}, int64_t{30}, 1, {1}), Base(int64_t{2}, int64_t{2}, 2, {2}),
            Base(int64_t{63}, int64_t{55}, 3, {3}), Base(int64_t{100}, int64_t{100}, 4, {4}),
            Base(int64_t{9}, int64_t{9}, 5, {5})});
  PutBases(*store, "gallery_files", {Base(int64_t{1}, int64_t{1}, 6, {6})});
  EXPECT_EQ(
      IdsOf(ScanAll(*store, kPages)),
      (std::vector<std::string>{"int 2/int 2", "int 9/int 9", "int 30/int 30", "int 100/int 100"}));
}

// ScanDirectBase orders text IDs (system_settings keys) by their bytes.
TEST_P(StateStoreTest, ScanDirectBaseYieldsEqualTextIdsInOrder) {
  auto store = Open();
  ASSERT_NE(store, nullptr);
  PutBases(*store, kSettings,
           {Base(std::string("integrations.mobile_app.home"),
                 std::string("integrations.mobile_app.home"), 1, {1}),
            Base(std::string("b.x"), std::string("b.x"), 2, {2}),
            Base(std::string("a.y"), std::string("a.z"), 3, {3}),
            Base(std::string("Z.upper"), std::string("Z.upper"), 4, {4}),
            Base(std::string("a.y"), std::string("a.y"), 5, {5})});
  EXPECT_EQ(IdsOf(ScanAll(*store, kSettings)),
            (std::vector<std::string>{"text 'Z.upper'/text 'Z.upper'", "text 'a.y'/text 'a.y'",
                                      "text 'b.x'/text 'b.x'",
                                      "text 'integrations.mobile_app.home'/"
                                      "text 'integrations.mobile_app.home'"}));
}

// FindBase finds a mapped pair by both IDs and nothing under either ID alone.
TEST_P(StateStoreTest, FindBaseFindsMappedPair) {
  auto store = Open();
  ASSERT_NE(store, nullptr);
  const SyncBase mapped = Base(int64_t{63}, int64_t{55}, 77, {7, 8, 9});
  PutBases(*store, kPages, {mapped});
  auto found = store->FindBase(kPages, int64_t{63}, int64_t{55});
  ASSERT_TRUE(found.ok()) << found.status().message();
  ASSERT_TRUE(found->has_value());
  ExpectSameBase(mapped, **found);
  for (const auto& [prod, test] : {std::pair<int64_t, int64_t>{55, 63}, {63, 63}, {55, 55}}) {
    auto missing = store->FindBase(kPages, prod, test);
    ASSERT_TRUE(missing.ok()) << missing.status().message();
    EXPECT_FALSE(missing->has_value()) << prod << "/" << test;
  }
  auto other_table = store->FindBase("gallery_files", int64_t{63}, int64_t{55});
  ASSERT_TRUE(other_table.ok());
  EXPECT_FALSE(other_table->has_value());
}

// The record hash and field hashes come back bit for bit, high bit included.
TEST_P(StateStoreTest, BaseHashesRoundTrip) {
  auto store = Open();
  ASSERT_NE(store, nullptr);
  const SyncBase base =
      Base(std::string("site.name"), std::string("site.name"), 0xfedcba9876543210ULL,
           {0, 0xffffffffffffffffULL, 0x8000000000000000ULL, 42, 1ULL << 32});
  PutBases(*store, kSettings, {base});
  auto found = store->FindBase(kSettings, base.prod_id, base.test_id);
  ASSERT_TRUE(found.ok()) << found.status().message();
  ASSERT_TRUE(found->has_value());
  ExpectSameBase(base, **found);
  const std::vector<SyncBase> scanned = ScanAll(*store, kSettings);
  ASSERT_EQ(scanned.size(), 1u);
  ExpectSameBase(base, scanned[0]);
}

// The servers' digests a base keeps (any 64-bit value, or none) come back as stored, and a later
// put replaces them.
TEST_P(StateStoreTest, BaseDigestsRoundTripAndAreReplaced) {
  auto store = Open();
  ASSERT_NE(store, nullptr);
  SyncBase base = Base(int64_t{7}, int64_t{7}, 11, {1, 2});
  base.prod_digest = 0xffffffffffffffffULL;
  base.test_digest = 0x8000000000000000ULL;
  SyncBase other = Base(int64_t{8}, int64_t{8}, 12, {3});
  PutBases(*store, "cms_pages", {base, other});
  std::vector<SyncBase> scanned = ScanAll(*store, "cms_pages");
  ASSERT_EQ(scanned.size(), 2u);
  EXPECT_EQ(scanned[0].prod_digest, base.prod_digest);
  EXPECT_EQ(scanned[0].test_digest, base.test_digest);
  EXPECT_FALSE(scanned[1].prod_digest.has_value());
  EXPECT_FALSE(scanned[1].test_digest.has_value());
  base.prod_digest.reset();
  base.test_digest = 42;
  PutBases(*store, "cms_pages", {base});
  auto found = store->FindBase("cms_pages", int64_t{7}, int64_t{7});
  ASSERT_TRUE(found.ok() && found->has_value());
  EXPECT_FALSE((*found)->prod_digest.has_value());
  EXPECT_EQ((*found)->test_digest, std::optional<uint64_t>(42));
}

// A base with no field hashes (a record with no compared field) can be stored and read back.
TEST_P(StateStoreTest, BaseWithNoFieldHashesRoundTrips) {
  auto store = Open();
  ASSERT_NE(store, nullptr);
  const SyncBase base = Base(int64_t{4}, int64_t{4}, 99, {});
  ASSERT_TRUE(store->BeginBaseUpdate().ok());
  const Status put = store->PutBase(kPages, base);
  EXPECT_TRUE(put.ok()) << put.message();
  ASSERT_TRUE(store->CommitBaseUpdate().ok());
  auto found = store->FindBase(kPages, int64_t{4}, int64_t{4});
  ASSERT_TRUE(found.ok()) << found.status().message();
  ASSERT_TRUE(found->has_value());
  ExpectSameBase(base, **found);
}

// Putting a pair that has a base replaces that base.
TEST_P(StateStoreTest, PutBaseReplacesExistingPair) {
  auto store = Open();
  ASSERT_NE(store, nullptr);
  PutBases(*store, kPages, {Base(int64_t{5}, int64_t{5}, 1, {1, 1})});
  const SyncBase newer = Base(int64_t{5}, int64_t{5}, 2, {2, 3});
  PutBases(*store, kPages, {newer});
  const std::vector<SyncBase> scanned = ScanAll(*store, kPages);
  ASSERT_EQ(scanned.size(), 1u);
  ExpectSameBase(newer, scanned[0]);
}

// AbortBaseUpdate discards the writes of the update, and a later update still works.
TEST_P(StateStoreTest, AbortBaseUpdateDiscardsWrites) {
  auto store = Open();
  ASSERT_NE(store, nullptr);
  PutBases(*store, kPages, {Base(int64_t{1}, int64_t{1}, 1, {1})});
  ASSERT_TRUE(store->BeginBaseUpdate().ok());
  ASSERT_TRUE(store->PutBase(kPages, Base(int64_t{2}, int64_t{2}, 2, {2})).ok());
  ASSERT_TRUE(store->PutBase(kPages, Base(int64_t{1}, int64_t{1}, 9, {9})).ok());
  store->AbortBaseUpdate();
  const std::vector<SyncBase> scanned = ScanAll(*store, kPages);
  ASSERT_EQ(scanned.size(), 1u);
  ExpectSameBase(Base(int64_t{1}, int64_t{1}, 1, {1}), scanned[0]);
  PutBases(*store, kPages, {Base(int64_t{3}, int64_t{3}, 3, {3})});
  EXPECT_EQ(IdsOf(ScanAll(*store, kPages)),
            (std::vector<std::string>{"int 1/int 1", "int 3/int 3"}));
}

// DeleteBase removes one pair's base and leaves the others.
TEST_P(StateStoreTest, DeleteBaseRemovesOnePair) {
  auto store = Open();
  ASSERT_NE(store, nullptr);
  PutBases(*store, kPages,
           {Base(int64_t{1}, int64_t{1}, 1, {1}), Base(int64_t{63}, int64_t{55}, 2, {2}),
            Base(int64_t{3}, int64_t{3}, 3, {3})});
  ASSERT_TRUE(store->DeleteBase(kPages, int64_t{63}, int64_t{55}).ok());
  ASSERT_TRUE(store->DeleteBase(kPages, int64_t{1}, int64_t{1}).ok());
  EXPECT_TRUE(store->DeleteBase(kPages, int64_t{404}, int64_t{404}).ok());
  auto gone = store->FindBase(kPages, int64_t{63}, int64_t{55});
  ASSERT_TRUE(gone.ok());
  EXPECT_FALSE(gone->has_value());
  EXPECT_EQ(IdsOf(ScanAll(*store, kPages)), std::vector<std::string>{"int 3/int 3"});
}

// The bases' digests a comparison holds its rows against, compared with the same digests read
// through ScanDirectBase after every step.
void ExpectDigestsAsScanned(StateStore& store, const std::string& table, const std::string& step) {
  auto loaded = store.LoadBaseDigests(table);
  auto scanned = store.StateStore::LoadBaseDigests(table);  // through ScanDirectBase
  ASSERT_TRUE(loaded.ok()) << loaded.status().message();
  ASSERT_TRUE(scanned.ok()) << scanned.status().message();
  ASSERT_EQ(loaded->size(), scanned->size()) << step;
  for (size_t i = 0; i < loaded->size(); ++i) {
    ASSERT_EQ((*loaded)[i].id, (*scanned)[i].id) << step << ", entry " << i;
    ASSERT_EQ((*loaded)[i].prod_digest, (*scanned)[i].prod_digest)
        << step << ", ID " << (*loaded)[i].id;
    ASSERT_EQ((*loaded)[i].test_digest, (*scanned)[i].test_digest)
        << step << ", ID " << (*loaded)[i].id;
  }
}

// Bases of the direct pairs 1..n, each with both digests.
std::vector<SyncBase> BasesWithDigests(int64_t n) {
  std::vector<SyncBase> bases;
  for (int64_t id = 1; id <= n; ++id) {
    SyncBase base = Base(id, id, static_cast<uint64_t>(id), {1});
    base.prod_digest = static_cast<uint64_t>(id) * 3;
    base.test_digest = static_cast<uint64_t>(id) * 5;
    bases.push_back(base);
  }
  return bases;
}

// What a comparison does to the packs: loads `table`'s digests inside its base update, then
// commits (which packs the table when it was not marked).
void PackAsAComparisonWould(StateStore& store, const std::string& table) {
  ASSERT_TRUE(store.BeginBaseUpdate().ok());
  auto digests = store.LoadBaseDigests(table);
  ASSERT_TRUE(digests.ok()) << digests.status().message();
  ASSERT_TRUE(store.CommitBaseUpdate().ok());
}

// Every way a base is written (puts with and without digests, IDs as integers, reals, text and
// unequal pairs, deletes inside and outside a base update, aborted updates) leaves the digests a
// comparison loads equal to the bases', whether the store keeps them packed (the SQLite store,
// BaseDigestPacks) or reads them from the bases (PostgreSQL).
TEST_P(StateStoreTest, BaseDigestsStayTheBasesDigestsThroughEveryKindOfWrite) {
  auto store = Open();
  ASSERT_NE(store, nullptr);
  std::mt19937_64 random(11);
  auto pick = [&](int64_t lo, int64_t hi) {
    return std::uniform_int_distribution<int64_t>(lo, hi)(random);
  };
  // IDs over several packs of 4,096, negative ones too.
  auto id = [&] { return pick(-5000, 14000); };
  auto value_of = [&](int64_t n) -> Value {
    switch (pick(0, 9)) {
      case 0:
        return static_cast<double>(n);  // the same key as the integer, not an entry
      case 1:
        return std::to_string(n);  // text: another key
      default:
        return n;
    }
  };
  auto random_base = [&] {
    const int64_t n = id();
    SyncBase base = Base(value_of(n), pick(0, 7) == 0 ? value_of(id()) : value_of(n),
                         static_cast<uint64_t>(pick(1, 1000)), {1});
    if (pick(0, 5) != 0) base.prod_digest = random();
    if (pick(0, 5) != 0) base.test_digest = random();
    return base;
  };
  int packed_loads = 0;
  for (int round = 0; round < 60; ++round) {
    const std::string step = fmt::format("round {}", round);
    const int64_t kind = pick(0, 9);
    if (kind <= 2) {
      // A comparison: loads the digests inside its base update, then records bases.
      ASSERT_TRUE(store->BeginBaseUpdate().ok());
      for (const char* table : {kPages, "other_table"}) {
        auto digests = store->LoadBaseDigests(table);
        ASSERT_TRUE(digests.ok()) << digests.status().message();
      }
      for (int i = pick(0, 300); i > 0; --i)
        ASSERT_TRUE(store->PutBase(kPages, random_base()).ok());
      ASSERT_TRUE(store->CommitBaseUpdate().ok());
    } else if (kind <= 7) {
      // A sync: puts and deletes in one update, now and then aborted.
      ASSERT_TRUE(store->BeginBaseUpdate().ok());
      for (int i = pick(1, 400); i > 0; --i) {
        if (pick(0, 4) == 0) {
          const int64_t n = id();
          ASSERT_TRUE(store->DeleteBase(kPages, value_of(n), value_of(n)).ok());
        } else {
          ASSERT_TRUE(store->PutBase(kPages, random_base()).ok());
        }
      }
      ASSERT_TRUE(store->PutBase("other_table", random_base()).ok());
      if (pick(0, 4) == 0) {
        store->AbortBaseUpdate();
      } else {
        ASSERT_TRUE(store->CommitBaseUpdate().ok());
      }
    } else {
      // An undo's delete, outside a base update.
      const int64_t n = id();
      ASSERT_TRUE(store->DeleteBase(kPages, n, n).ok());
    }
    ExpectDigestsAsScanned(*store, kPages, step);
    ExpectDigestsAsScanned(*store, "other_table", step);
    if (GetParam() == "sqlite") {
      // Those loads came from packs when the table was marked.
      packed_loads += QueryInteger(path_, "SELECT count(*) FROM base_digest_marks");
    }
  }
  auto scanned = store->StateStore::LoadBaseDigests(kPages);
  ASSERT_TRUE(scanned.ok());
  EXPECT_GT(scanned->size(), 500u);  // the rounds left many entries to hold
  if (GetParam() == "sqlite") {
    EXPECT_GT(packed_loads, 40);  // both tables, most rounds
  }
}

// A malformed pack is not trusted: the digests come from the bases, and the next comparison's
// base update packs the table again.
TEST_F(SqliteStateStoreTest, MalformedPackIsReadFromTheBasesAndPackedAgain) {
  auto store = Open();
  ASSERT_NE(store, nullptr);
  PutBases(*store, kPages, BasesWithDigests(9000));
  ASSERT_NO_FATAL_FAILURE(PackAsAComparisonWould(*store, kPages));
  EXPECT_EQ(QueryInteger(path_, "SELECT count(*) FROM base_digest_packs"), 3);
  ExpectDigestsAsScanned(*store, kPages, "packed");
  for (const char* damage : {"UPDATE base_digest_packs SET entries = x'0102' WHERE chunk = 1",
                             "UPDATE base_digest_packs SET chunk = 5 WHERE chunk = 1"}) {
    ExecSql(path_, damage);
    ExpectDigestsAsScanned(*store, kPages, damage);
    ASSERT_NO_FATAL_FAILURE(PackAsAComparisonWould(*store, kPages));
    ExpectDigestsAsScanned(*store, kPages, std::string("packed again after ") + damage);
    EXPECT_EQ(QueryInteger(path_, "SELECT count(*) FROM base_digest_packs"), 3);
    EXPECT_EQ(QueryInteger(path_, "SELECT sum(length(entries)) FROM base_digest_packs"), 9000 * 24);
  }
}

// A pack found malformed while a base update patches it unmarks its table: the digests then come
// from the bases.
TEST_F(SqliteStateStoreTest, MalformedPackFoundWhilePatchingUnmarksTheTable) {
  auto store = Open();
  ASSERT_NE(store, nullptr);
  SyncBase base = Base(int64_t{7}, int64_t{7}, 1, {1});
  base.prod_digest = 70;
  base.test_digest = 71;
  PutBases(*store, kPages, {base});
  ASSERT_NO_FATAL_FAILURE(PackAsAComparisonWould(*store, kPages));
  ASSERT_EQ(QueryInteger(path_, "SELECT count(*) FROM base_digest_marks"), 1);
  ExecSql(path_, "UPDATE base_digest_packs SET entries = x'00'");
  base.test_digest = 72;
  PutBases(*store, kPages, {base});  // patches the pack it finds malformed
  EXPECT_EQ(QueryInteger(path_, "SELECT count(*) FROM base_digest_marks"), 0);
  EXPECT_EQ(QueryInteger(path_, "SELECT count(*) FROM base_digest_packs"), 0);
  ExpectDigestsAsScanned(*store, kPages, "after the malformed pack");
}

// An undo's delete (outside a base update) unmarks the table in its own transaction; the next
// comparison's base update packs it again without the deleted pair.
TEST_F(SqliteStateStoreTest, DeleteOutsideABaseUpdateUnmarksAndTheNextComparisonPacksAgain) {
  auto store = Open();
  ASSERT_NE(store, nullptr);
  PutBases(*store, kPages, BasesWithDigests(10));
  ASSERT_NO_FATAL_FAILURE(PackAsAComparisonWould(*store, kPages));
  ASSERT_EQ(QueryInteger(path_, "SELECT count(*) FROM base_digest_marks"), 1);
  ASSERT_TRUE(store->DeleteBase(kPages, int64_t{5}, int64_t{5}).ok());
  EXPECT_EQ(QueryInteger(path_, "SELECT count(*) FROM base_digest_marks"), 0);
  ExpectDigestsAsScanned(*store, kPages, "after the delete");
  ASSERT_NO_FATAL_FAILURE(PackAsAComparisonWould(*store, kPages));
  EXPECT_EQ(QueryInteger(path_, "SELECT count(*) FROM base_digest_marks"), 1);
  EXPECT_EQ(QueryInteger(path_, "SELECT sum(length(entries)) FROM base_digest_packs"), 9 * 24);
  ExpectDigestsAsScanned(*store, kPages, "packed again");
}

// An envsync of an older schema that had the store open before this one migrated it cannot write
// bases past the packs: the table its statements name is gone, so its write fails. The bases
// the older store held are kept.
TEST_F(SqliteStateStoreTest, WriterOfAnOlderSchemaCannotWriteBasesAfterTheMigration) {
  ExecSql(path_, std::string(kSchemaV1) + R"sql(
PRAGMA user_version = 1;
INSERT INTO sync_base VALUES ('cms_pages', 3, 3, 30, x'0100000000000000');
)sql");
  sqlite3* older = nullptr;
  ASSERT_EQ(sqlite3_open(path_.c_str(), &older), SQLITE_OK);
  sqlite3_stmt* put = nullptr;
  ASSERT_EQ(sqlite3_prepare_v2(older,
                               "INSERT OR REPLACE INTO sync_base VALUES ('cms_pages', ?1, ?1, 1, "
                               "x'0100000000000000')",
                               -1, &put, nullptr),
            SQLITE_OK);
  {
    auto store = Open();
    ASSERT_NE(store, nullptr);
    auto kept = store->FindBase(kPages, int64_t{3}, int64_t{3});
    ASSERT_TRUE(kept.ok() && kept->has_value());
    EXPECT_EQ((*kept)->hash, 30u);
  }
  sqlite3_bind_int64(put, 1, 9);
  EXPECT_EQ(sqlite3_step(put), SQLITE_ERROR);
  EXPECT_NE(std::string(sqlite3_errmsg(older)).find("no such table: sync_base"), std::string::npos)
      << sqlite3_errmsg(older);
  sqlite3_finalize(put);
  sqlite3_close(older);
}

// Base writes may run while a scan cursor is open; the cursor still finishes.
TEST_P(StateStoreTest, PutBaseWhileScanCursorIsOpen) {
  auto store = Open();
  ASSERT_NE(store, nullptr);
  PutBases(*store, kPages,
           {Base(int64_t{1}, int64_t{1}, 1, {1}), Base(int64_t{2}, int64_t{2}, 2, {2})});
  auto cursor = store->ScanDirectBase(kPages);
  ASSERT_TRUE(cursor.ok()) << cursor.status().message();
  SyncBase base;
  ASSERT_TRUE((*cursor)->Next(&base));
  EXPECT_EQ(Show(base.prod_id), "int 1");
  ASSERT_TRUE(store->BeginBaseUpdate().ok());
  const Status put = store->PutBase(kPages, Base(int64_t{7}, int64_t{7}, 7, {7}));
  EXPECT_TRUE(put.ok()) << put.message();
  const Status commit = store->CommitBaseUpdate();
  EXPECT_TRUE(commit.ok()) << commit.message();
  while ((*cursor)->Next(&base)) {
  }
  EXPECT_TRUE((*cursor)->status().ok()) << (*cursor)->status().message();
  cursor->reset();  // closes the cursor
  EXPECT_EQ(IdsOf(ScanAll(*store, kPages)),
            (std::vector<std::string>{"int 1/int 1", "int 2/int 2", "int 7/int 7"}));
}

// A scan longer than one fetch yields every equal-ID pair in SQLite's order (integers by value,
// negative ones first, then text by bytes); the last put of a pair in one update wins.
TEST_P(StateStoreTest, LongScanYieldsEveryBaseInOrder) {
  auto store = Open();
  ASSERT_NE(store, nullptr);
  constexpr int kBases = 25000;
  std::vector<SyncBase> bases;
  for (int i = 0; i < kBases; ++i) {
    const int64_t id = (int64_t{i} * 7919) % kBases - 100;  // a permutation, some negative
    bases.push_back(Base(id, id, static_cast<uint64_t>(i), {static_cast<uint64_t>(i)}));
  }
  bases.push_back(Base(std::string("b"), std::string("b"), 1, {}));
  bases.push_back(Base(std::string("B"), std::string("B"), 2, {}));
  bases.push_back(Base(int64_t{5}, int64_t{5}, 999, {9}));
  PutBases(*store, kPages, bases);
  const std::vector<SyncBase> scanned = ScanAll(*store, kPages);
  ASSERT_EQ(scanned.size(), static_cast<size_t>(kBases + 2));
  for (size_t i = 1; i < scanned.size(); ++i) {
    ASSERT_TRUE(CompareValues(scanned[i - 1].prod_id, scanned[i].prod_id) < 0)
        << Show(scanned[i - 1].prod_id) << " before " << Show(scanned[i].prod_id);
  }
  EXPECT_EQ(Show(scanned.front().prod_id), "int -100");
  EXPECT_EQ(Show(scanned[kBases].prod_id), "text 'B'");
  EXPECT_EQ(scanned[105].hash, 999u);  // ID 5
}

// --- Change tracking marks ---

TrackingMark Mark(const std::string& table, std::vector<int64_t> unequal_prod,
                  std::vector<int64_t> unequal_test) {
  TrackingMark mark;
  mark.table = table;
  mark.prod_epoch = "t-prod0001";
  mark.prod_position = "42";
  mark.test_epoch = "t-test0002";
  mark.test_position = "7";
  mark.mix = 0x0123456789abcdefULL;
  mark.unequal_prod = std::move(unequal_prod);
  mark.unequal_test = std::move(unequal_test);
  return mark;
}

void ExpectSameMark(const TrackingMark& expected, const TrackingMark& actual) {
  SCOPED_TRACE("mark of " + expected.table);
  EXPECT_EQ(actual.table, expected.table);
  EXPECT_EQ(actual.prod_epoch, expected.prod_epoch);
  EXPECT_EQ(actual.prod_position, expected.prod_position);
  EXPECT_EQ(actual.test_epoch, expected.test_epoch);
  EXPECT_EQ(actual.test_position, expected.test_position);
  EXPECT_EQ(actual.mix, expected.mix);
  EXPECT_EQ(actual.unequal_prod, expected.unequal_prod);
  EXPECT_EQ(actual.unequal_test, expected.unequal_test);
}

// A version 14 store's tracking marks are dropped when it is migrated: an envsync of that
// version undid syncs without adding their pairs to the marks, which a comparison from the
// change logs now relies on (sync::FinishUndo). Everything else stays.
TEST_F(SqliteStateStoreTest, MigrationFromVersion14DropsTheTrackingMarks) {
  {
    auto store = Open();
    ASSERT_NE(store, nullptr);
    ASSERT_TRUE(store->SaveTrackingMark(Mark(kPages, {7}, {})).ok());
    ASSERT_TRUE(store->AddIdentity(kPages, 63, 8).ok());
  }
  ExecSql(path_, "PRAGMA user_version = 14");
  auto store = Open();
  ASSERT_NE(store, nullptr);
  EXPECT_EQ(UserVersion(path_), kStateSchemaVersion);
  auto marks = store->ListTrackingMarks();
  ASSERT_TRUE(marks.ok()) << marks.status().message();
  EXPECT_TRUE(marks->empty());
  auto map = store->LoadIdentityMap();
  ASSERT_TRUE(map.ok()) << map.status().message();
  EXPECT_EQ(map->Pairs(kPages), (std::map<int64_t, int64_t>{{63, 8}}));
}

// A table without a mark has none, and nothing is listed.
TEST_P(StateStoreTest, MissingTrackingMarkIsNothing) {
  auto store = Open();
  ASSERT_NE(store, nullptr);
  auto mark = store->LoadTrackingMark(kPages);
  ASSERT_TRUE(mark.ok()) << mark.status().message();
  EXPECT_FALSE(mark->has_value());
  auto marks = store->ListTrackingMarks();
  ASSERT_TRUE(marks.ok()) << marks.status().message();
  EXPECT_TRUE(marks->empty());
}

// A saved mark comes back field for field: epochs, positions, a mix with its high bit set, and
// unequal IDs anywhere in the 64-bit range.
TEST_P(StateStoreTest, TrackingMarkRoundTripsEveryField) {
  auto store = Open();
  ASSERT_NE(store, nullptr);
  TrackingMark mark = Mark(kPages,
                           {std::numeric_limits<int64_t>::min(), -1, 0, 1, 63, 1LL << 40,
                            std::numeric_limits<int64_t>::max()},
                           {2, 55, 256, 65536});
  mark.mix = 0xfedcba9876543210ULL;
  mark.prod_position = "784:790:785,787";  // positions are opaque: a PostgreSQL snapshot's text
  mark.test_position = "0";
  ASSERT_TRUE(store->SaveTrackingMark(mark).ok());
  auto loaded = store->LoadTrackingMark(kPages);
  ASSERT_TRUE(loaded.ok()) << loaded.status().message();
  ASSERT_TRUE(loaded->has_value());
  ExpectSameMark(mark, **loaded);
}

// Empty unequal sets (every record equal) round-trip as empty, not as an error or NULL.
TEST_P(StateStoreTest, TrackingMarkWithNothingUnequalRoundTrips) {
  auto store = Open();
  ASSERT_NE(store, nullptr);
  const TrackingMark mark = Mark("sliders", {}, {});
  const Status saved = store->SaveTrackingMark(mark);
  ASSERT_TRUE(saved.ok()) << saved.message();
  auto loaded = store->LoadTrackingMark("sliders");
  ASSERT_TRUE(loaded.ok()) << loaded.status().message();
  ASSERT_TRUE(loaded->has_value());
  ExpectSameMark(mark, **loaded);
  // One side empty, the other not.
  const TrackingMark one_sided = Mark("menus", {}, {3});
  ASSERT_TRUE(store->SaveTrackingMark(one_sided).ok());
  auto menus = store->LoadTrackingMark("menus");
  ASSERT_TRUE(menus.ok() && menus->has_value());
  ExpectSameMark(one_sided, **menus);
}

// Saving a mark for a table again replaces the earlier one whole (a shorter unequal set too).
TEST_P(StateStoreTest, SavingTrackingMarkAgainReplacesIt) {
  auto store = Open();
  ASSERT_NE(store, nullptr);
  ASSERT_TRUE(store->SaveTrackingMark(Mark(kPages, {1, 2, 3, 4, 5}, {6, 7, 8})).ok());
  TrackingMark newer = Mark(kPages, {9}, {});
  newer.prod_epoch = "t-prod0003";
  newer.prod_position = "43";
  newer.test_position = "8";
  newer.mix = 1;
  ASSERT_TRUE(store->SaveTrackingMark(newer).ok());
  auto loaded = store->LoadTrackingMark(kPages);
  ASSERT_TRUE(loaded.ok()) << loaded.status().message();
  ASSERT_TRUE(loaded->has_value());
  ExpectSameMark(newer, **loaded);
  auto marks = store->ListTrackingMarks();
  ASSERT_TRUE(marks.ok()) << marks.status().message();
  EXPECT_EQ(marks->size(), 1u);
}

// ListTrackingMarks lists every table's mark, ordered by table name, each with its own data.
TEST_P(StateStoreTest, ListTrackingMarksListsEveryTableInOrder) {
  auto store = Open();
  ASSERT_NE(store, nullptr);
  const std::vector<TrackingMark> saved = {Mark("sliders", {4}, {}), Mark(kPages, {1}, {2}),
                                           Mark("menus", {}, {3}), Mark("content_blocks", {}, {})};
  for (const TrackingMark& mark : saved) ASSERT_TRUE(store->SaveTrackingMark(mark).ok());
  auto marks = store->ListTrackingMarks();
  ASSERT_TRUE(marks.ok()) << marks.status().message();
  ASSERT_EQ(marks->size(), 4u);
  std::vector<std::string> tables;
  for (const TrackingMark& mark : *marks) tables.push_back(mark.table);
  EXPECT_EQ(tables, (std::vector<std::string>{"cms_pages", "content_blocks", "menus", "sliders"}));
  for (const TrackingMark& expected : saved) {
    auto it = std::find_if(marks->begin(), marks->end(),
                           [&](const TrackingMark& m) { return m.table == expected.table; });
    ASSERT_NE(it, marks->end());
    ExpectSameMark(expected, *it);
  }
}

// Many unequal IDs (a large backlog of unsynchronized records) come back complete and in order.
TEST_P(StateStoreTest, TrackingMarkKeepsManyUnequalIds) {
  auto store = Open();
  ASSERT_NE(store, nullptr);
  std::vector<int64_t> prod;
  std::vector<int64_t> test;
  for (int64_t i = 0; i < 50000; ++i) {
    prod.push_back(i * 3 + 1);
    if (i % 2 == 0) test.push_back(i * 7);
  }
  const TrackingMark mark = Mark(kPages, prod, test);
  ASSERT_TRUE(store->SaveTrackingMark(mark).ok());
  auto loaded = store->LoadTrackingMark(kPages);
  ASSERT_TRUE(loaded.ok()) << loaded.status().message();
  ASSERT_TRUE(loaded->has_value());
  ExpectSameMark(mark, **loaded);
}

// Marks survive reopening the store.
TEST_P(StateStoreTest, TrackingMarksSurviveReopening) {
  const TrackingMark mark = Mark("menus", {5, 8}, {13});
  {
    auto store = Open();
    ASSERT_NE(store, nullptr);
    ASSERT_TRUE(store->SaveTrackingMark(mark).ok());
  }
  auto store = Open();
  ASSERT_NE(store, nullptr);
  auto loaded = store->LoadTrackingMark("menus");
  ASSERT_TRUE(loaded.ok()) << loaded.status().message();
  ASSERT_TRUE(loaded->has_value());
  ExpectSameMark(mark, **loaded);
}

// A mark saved while a base update is open is kept by itself (marks are saved after the base
// update commits; they do not ride on it) and a base update's abort does not take it away.
TEST_P(StateStoreTest, TrackingMarkIsIndependentOfTheBaseUpdate) {
  auto store = Open();
  ASSERT_NE(store, nullptr);
  ASSERT_TRUE(store->SaveTrackingMark(Mark(kPages, {1}, {1})).ok());
  ASSERT_TRUE(store->BeginBaseUpdate().ok());
  ASSERT_TRUE(store->PutBase(kPages, Base(int64_t{1}, int64_t{1}, 1, {1})).ok());
  store->AbortBaseUpdate();
  auto loaded = store->LoadTrackingMark(kPages);
  ASSERT_TRUE(loaded.ok()) << loaded.status().message();
  ASSERT_TRUE(loaded->has_value());
  EXPECT_EQ((*loaded)->unequal_prod, std::vector<int64_t>{1});
  EXPECT_TRUE(ScanAll(*store, kPages).empty());
}

// ScanDirectBase by IDs yields only the direct pairs of the table whose ID is listed, in ID order.
TEST_P(StateStoreTest, ScanDirectBaseByIdsYieldsOnlyListedDirectPairs) {
  auto store = Open();
  ASSERT_NE(store, nullptr);
  PutBases(*store, kPages,
           {Base(int64_t{30}, int64_t{30}, 1, {1}), Base(int64_t{2}, int64_t{2}, 2, {2}),
            Base(int64_t{63}, int64_t{55}, 3, {3}), Base(int64_t{100}, int64_t{100}, 4, {4}),
            Base(int64_t{9}, int64_t{9}, 5, {5}), Base(int64_t{-4}, int64_t{-4}, 6, {6})});
  PutBases(*store, "gallery_files", {Base(int64_t{9}, int64_t{9}, 7, {7})});
  auto scan = [&](const std::vector<int64_t>& ids) {
    std::vector<SyncBase> out;
    auto cursor = store->ScanDirectBase(kPages, ids);
    EXPECT_TRUE(cursor.ok()) << cursor.status().message();
    if (!cursor.ok()) return out;
    SyncBase base;
    while ((*cursor)->Next(&base)) out.push_back(base);
    EXPECT_TRUE((*cursor)->status().ok()) << (*cursor)->status().message();
    return out;
  };
  const std::vector<SyncBase> found = scan({-4, 9, 30, 55, 63, 101});
  EXPECT_EQ(IdsOf(found),
            (std::vector<std::string>{"int -4/int -4", "int 9/int 9", "int 30/int 30"}));
  ASSERT_EQ(found.size(), 3u);
  ExpectSameBase(Base(int64_t{9}, int64_t{9}, 5, {5}), found[1]);
  EXPECT_TRUE(scan({}).empty());
  std::vector<int64_t> many;
  for (int64_t i = 0; i < 5000; ++i) many.push_back(i);
  EXPECT_EQ(IdsOf(scan(many)), (std::vector<std::string>{"int 2/int 2", "int 9/int 9",
                                                         "int 30/int 30", "int 100/int 100"}));
}

// --- Comparisons ---

// Every field of a comparison and of its changes comes back as saved.
TEST_P(StateStoreTest, ComparisonRoundTripsEveryField) {
  auto store = Open();
  ASSERT_NE(store, nullptr);
  const Comparison saved = FullComparison("c-1");
  const Status status = store->SaveComparison(saved);
  ASSERT_TRUE(status.ok()) << status.message();
  auto loaded = store->LoadComparison("c-1");
  ASSERT_TRUE(loaded.ok()) << loaded.status().message();
  EXPECT_EQ(loaded->id, saved.id);
  EXPECT_EQ(loaded->from, saved.from);
  EXPECT_EQ(loaded->to, saved.to);
  EXPECT_EQ(loaded->mode, saved.mode);
  EXPECT_EQ(loaded->modules, saved.modules);
  EXPECT_EQ(loaded->folders, saved.folders);
  EXPECT_EQ(loaded->created_at, saved.created_at);
  EXPECT_EQ(loaded->records_compared, saved.records_compared);
  ASSERT_EQ(loaded->forced.size(), saved.forced.size());
  for (size_t i = 0; i < saved.forced.size(); ++i) {
    EXPECT_EQ(loaded->forced[i].module, saved.forced[i].module);
    EXPECT_EQ(loaded->forced[i].required_by, saved.forced[i].required_by);
    EXPECT_EQ(loaded->forced[i].folders, saved.forced[i].folders);
  }
  ASSERT_EQ(loaded->warnings.size(), saved.warnings.size());
  for (size_t i = 0; i < saved.warnings.size(); ++i) {
    EXPECT_EQ(loaded->warnings[i].environment, saved.warnings[i].environment);
    EXPECT_EQ(loaded->warnings[i].record, saved.warnings[i].record);
    EXPECT_EQ(loaded->warnings[i].message, saved.warnings[i].message);
  }
  ASSERT_EQ(loaded->changes.size(), saved.changes.size());
  for (size_t i = 0; i < saved.changes.size(); ++i) {
    ExpectSameChange(saved.changes[i], loaded->changes[i]);
  }
}

// Child-row JSON comes back as the text it was, keys in column order (as record.cc builds it).
TEST_P(StateStoreTest, ChildRowJsonKeepsItsText) {
  auto store = Open();
  ASSERT_NE(store, nullptr);
  Comparison saved = FullComparison("c-1");
  const std::string blocks = R"([{"position":1,"body":"a","page_id":57}])";
  saved.changes[0].fields[1].source = blocks;
  ASSERT_TRUE(store->SaveComparison(saved).ok());
  auto loaded = store->LoadComparison("c-1");
  ASSERT_TRUE(loaded.ok()) << loaded.status().message();
  EXPECT_EQ(Show(loaded->changes[0].fields[1].source), Show(blocks));
}

// Text that is not UTF-8 (a BLOB travelling as TEXT) does not break storing a comparison: the
// shown value carries U+FFFD for the bytes JSON cannot hold (decision in docs/DESIGN.md).
TEST_P(StateStoreTest, NonUtf8TextIsStoredForDisplay) {
  auto store = Open();
  ASSERT_NE(store, nullptr);
  Comparison saved = FullComparison("c-1");
  const std::string bytes("\xff\xfe\x00\x01png", 7);
  saved.changes[0].fields[0].source = bytes;
  Status status;
  EXPECT_NO_THROW(status = store->SaveComparison(saved));
  EXPECT_TRUE(status.ok()) << status.message();
  // Whatever happened, the store still takes writes.
  EXPECT_TRUE(store->SaveComparison(FullComparison("c-2")).ok());
  auto loaded = store->LoadComparison("c-1");
  ASSERT_TRUE(loaded.ok()) << loaded.status().message();
  EXPECT_EQ(Show(loaded->changes[0].fields[0].source),
            Show(std::string("\xef\xbf\xbd\xef\xbf\xbd\x00\x01png", 11)));
}

// Saving a comparison whose ID is taken is InvalidArgument and keeps the first one.
TEST_P(StateStoreTest, SavingSameComparisonIdTwiceIsInvalidArgument) {
  auto store = Open();
  ASSERT_NE(store, nullptr);
  ASSERT_TRUE(store->SaveComparison(FullComparison("c-1")).ok());
  Comparison second = FullComparison("c-1");
  second.changes.resize(1);
  const Status status = store->SaveComparison(second);
  EXPECT_TRUE(status.IsInvalidArgument()) << status.message();
  EXPECT_NE(status.message().find("c-1"), std::string::npos) << status.message();
  auto loaded = store->LoadComparison("c-1");
  ASSERT_TRUE(loaded.ok()) << loaded.status().message();
  EXPECT_EQ(loaded->changes.size(), 4u);
  // The failed save left no transaction open.
  EXPECT_TRUE(store->SaveComparison(FullComparison("c-2")).ok());
}

// Loading an unknown comparison is NotFound naming the ID.
TEST_P(StateStoreTest, LoadUnknownComparisonIsNotFound) {
  auto store = Open();
  ASSERT_NE(store, nullptr);
  auto loaded = store->LoadComparison("no-such-comparison");
  ASSERT_FALSE(loaded.ok());
  EXPECT_TRUE(loaded.status().IsNotFound()) << loaded.status().message();
  EXPECT_NE(loaded.status().message().find("no-such-comparison"), std::string::npos);
}

// ListComparisons lists every comparison, oldest first, with its counts per tab.
TEST_P(StateStoreTest, ListComparisonsListsWithCounts) {
  auto store = Open();
  ASSERT_NE(store, nullptr);
  Comparison later = FullComparison("c-later");
  later.created_at = "2024-06-01T00:00:00Z";
  later.from = "PROD";
  later.to = "TEST";
  later.changes.push_back(DeletedPageChange());
  Comparison earlier = FullComparison("c-earlier");
  earlier.changes = {NewSettingChange()};
  ASSERT_TRUE(store->SaveComparison(later).ok());
  ASSERT_TRUE(store->SaveComparison(earlier).ok());
  auto list = store->ListComparisons();
  ASSERT_TRUE(list.ok()) << list.status().message();
  ASSERT_EQ(list->size(), 2u);
  const ComparisonSummary& first = (*list)[0];
  EXPECT_EQ(first.id, "c-earlier");
  EXPECT_EQ(first.created_at, "2024-05-01T10:00:00Z");
  EXPECT_EQ(first.counts.conflicts, 0);
  EXPECT_EQ(first.counts.new_records, 1);
  EXPECT_EQ(first.counts.modified, 0);
  EXPECT_EQ(first.counts.deleted, 0);
  const ComparisonSummary& second = (*list)[1];
  EXPECT_EQ(second.id, "c-later");
  EXPECT_EQ(second.from, "PROD");
  EXPECT_EQ(second.to, "TEST");
  EXPECT_EQ(second.counts.conflicts, 1);
  EXPECT_EQ(second.counts.new_records, 1);
  EXPECT_EQ(second.counts.modified, 1);
  EXPECT_EQ(second.counts.deleted, 2);
}

// --- Syncs ---

SyncRun FullSync(const std::string& id) {
  SyncRun run;
  run.id = id;
  run.comparison_id = "c-1";
  run.created_at = "2024-05-01T11:00:00Z";
  run.finished_at = "2024-05-01T11:00:05Z";
  run.started_by = "alice";
  run.from = "TEST";
  run.to = "PROD";
  run.test_import = true;
  run.status = "success";
  run.applied = R"({"conflicts":1,"new":2})";
  run.error = "";
  // An update of a mapped pair, with its base before the sync.
  run.records.push_back(SyncRecord{kPages, "update", int64_t{63}, int64_t{55}, int64_t{63},
                                   R"({"row":{"id":63},"children":{}})",
                                   R"({"row":{"id":63,"x":1}})", 0xfedcba9876543210ULL,
                                   Base(int64_t{63}, int64_t{55}, 11, {1, 2, 3})});
  // An insert: no pre-image and no base.
  run.records.push_back(SyncRecord{kPages, "insert", int64_t{70}, int64_t{70}, int64_t{70}, "",
                                   "{}", 12, std::nullopt});
  // A deletion on PROD: the PROD side is NULL, the base's PROD ID is the target's.
  run.records.push_back(SyncRecord{kPages, "delete", Value(), int64_t{9}, int64_t{9},
                                   R"({"row":{"id":9}})", "", std::nullopt,
                                   Base(int64_t{9}, int64_t{9}, 13, {4})});
  // A deletion on TEST of a text-keyed setting: the TEST side is NULL.
  run.records.push_back(SyncRecord{
      kSettings, "delete", std::string("site.name"), Value(), std::string("site.name"),
      R"({"row":{"key":"site.name"}})", "", std::nullopt,
      Base(std::string("site.name"), std::string("site.name"), 14, {5, 0xffffffffffffffffULL})});
  run.files = {{"/g/banners/a.png", "/g/.stage/s-1/a.png", "/g/.trash/s-1/a.png"},
               {"/g/banners/b.png", "", "/g/.trash/s-1/b.png"},
               {"/g/banners/c.png", "/g/.stage/s-1/c.png", ""}};
  return run;
}

void ExpectSameRecord(const SyncRecord& expected, const SyncRecord& actual) {
  SCOPED_TRACE(expected.table + " " + expected.action + " " + Show(expected.target_id));
  EXPECT_EQ(actual.table, expected.table);
  EXPECT_EQ(actual.action, expected.action);
  EXPECT_EQ(Show(actual.prod_id), Show(expected.prod_id));
  EXPECT_EQ(Show(actual.test_id), Show(expected.test_id));
  EXPECT_EQ(Show(actual.target_id), Show(expected.target_id));
  EXPECT_EQ(actual.pre_image, expected.pre_image);
  EXPECT_EQ(actual.after_image, expected.after_image);
  EXPECT_EQ(actual.after_hash, expected.after_hash);
  ASSERT_EQ(actual.base_before.has_value(), expected.base_before.has_value());
  if (expected.base_before) ExpectSameBase(*expected.base_before, *actual.base_before);
}

void ExpectSameRunHead(const SyncRun& expected, const SyncRun& actual) {
  EXPECT_EQ(actual.id, expected.id);
  EXPECT_EQ(actual.comparison_id, expected.comparison_id);
  EXPECT_EQ(actual.created_at, expected.created_at);
  EXPECT_EQ(actual.finished_at, expected.finished_at);
  EXPECT_EQ(actual.started_by, expected.started_by);
  EXPECT_EQ(actual.from, expected.from);
  EXPECT_EQ(actual.to, expected.to);
  EXPECT_EQ(actual.test_import, expected.test_import);
  EXPECT_EQ(actual.status, expected.status);
  EXPECT_EQ(actual.applied, expected.applied);
  EXPECT_EQ(actual.error, expected.error);
}

// A sync comes back with its records (pre-images, hashes, bases, NULL sides) and files.
TEST_P(StateStoreTest, SyncRoundTripsRecordsAndFiles) {
  auto store = Open();
  ASSERT_NE(store, nullptr);
  const SyncRun saved = FullSync("s-1");
  const Status status = store->SaveSync(saved);
  ASSERT_TRUE(status.ok()) << status.message();
  auto loaded = store->LoadSync("s-1");
  ASSERT_TRUE(loaded.ok()) << loaded.status().message();
  ExpectSameRunHead(saved, *loaded);
  ASSERT_EQ(loaded->records.size(), saved.records.size());
  for (size_t i = 0; i < saved.records.size(); ++i) {
    ExpectSameRecord(saved.records[i], loaded->records[i]);
  }
  ASSERT_EQ(loaded->files.size(), saved.files.size());
  for (size_t i = 0; i < saved.files.size(); ++i) {
    EXPECT_EQ(loaded->files[i].final_path, saved.files[i].final_path);
    EXPECT_EQ(loaded->files[i].staged_path, saved.files[i].staged_path);
    EXPECT_EQ(loaded->files[i].trash_path, saved.files[i].trash_path);
  }
}

// Saving a sync again replaces its head, records and files.
TEST_P(StateStoreTest, SavingSyncAgainReplacesRecords) {
  auto store = Open();
  ASSERT_NE(store, nullptr);
  SyncRun run = FullSync("s-1");
  ASSERT_TRUE(store->SaveSync(run).ok());
  run.status = "undone";
  run.finished_at = "2024-05-02T08:00:00Z";
  run.records = {
      SyncRecord{kPages, "update", int64_t{5}, int64_t{5}, int64_t{5}, "{}", "", 1, std::nullopt}};
  run.files.clear();
  ASSERT_TRUE(store->SaveSync(run).ok());
  auto loaded = store->LoadSync("s-1");
  ASSERT_TRUE(loaded.ok()) << loaded.status().message();
  ExpectSameRunHead(run, *loaded);
  ASSERT_EQ(loaded->records.size(), 1u);
  ExpectSameRecord(run.records[0], loaded->records[0]);
  EXPECT_TRUE(loaded->files.empty());
  auto list = store->ListSyncs();
  ASSERT_TRUE(list.ok());
  EXPECT_EQ(list->size(), 1u);
}

// ListSyncs returns every run, oldest first, without records or files.
TEST_P(StateStoreTest, ListSyncsReturnsRunsWithoutRecords) {
  auto store = Open();
  ASSERT_NE(store, nullptr);
  SyncRun later = FullSync("s-later");
  later.created_at = "2024-05-03T00:00:00Z";
  later.test_import = false;
  SyncRun earlier = FullSync("s-earlier");
  earlier.created_at = "2024-05-02T00:00:00Z";
  ASSERT_TRUE(store->SaveSync(later).ok());
  ASSERT_TRUE(store->SaveSync(earlier).ok());
  auto list = store->ListSyncs();
  ASSERT_TRUE(list.ok()) << list.status().message();
  ASSERT_EQ(list->size(), 2u);
  ExpectSameRunHead(earlier, (*list)[0]);
  ExpectSameRunHead(later, (*list)[1]);
  for (const SyncRun& run : *list) {
    EXPECT_TRUE(run.records.empty());
    EXPECT_TRUE(run.files.empty());
  }
}

// Loading an unknown sync is NotFound naming the ID.
TEST_P(StateStoreTest, LoadUnknownSyncIsNotFound) {
  auto store = Open();
  ASSERT_NE(store, nullptr);
  auto loaded = store->LoadSync("no-such-sync");
  ASSERT_FALSE(loaded.ok());
  EXPECT_TRUE(loaded.status().IsNotFound()) << loaded.status().message();
  EXPECT_NE(loaded.status().message().find("no-such-sync"), std::string::npos);
}

// UpdateSyncStatus changes the head of a sync and leaves its records and files.
TEST_P(StateStoreTest, UpdateSyncStatusKeepsRecordsAndFiles) {
  auto store = Open();
  ASSERT_NE(store, nullptr);
  SyncRun run = FullSync("s-1");
  ASSERT_TRUE(store->SaveSync(run).ok());
  run.status = "failure";
  run.finished_at = "2024-05-01T11:00:09Z";
  run.applied = R"({"conflicts":0})";
  run.error = "the target went away";
  const Status status = store->UpdateSyncStatus(run);
  ASSERT_TRUE(status.ok()) << status.message();
  auto loaded = store->LoadSync("s-1");
  ASSERT_TRUE(loaded.ok()) << loaded.status().message();
  ExpectSameRunHead(run, *loaded);
  EXPECT_EQ(loaded->records.size(), run.records.size());
  EXPECT_EQ(loaded->files.size(), run.files.size());
}

// IDs keep their type: integer 7 and text '7' are different pairs, and a real comes back real,
// in a base and in a sync's records.
TEST_P(StateStoreTest, IdsKeepTheirType) {
  auto store = Open();
  ASSERT_NE(store, nullptr);
  PutBases(
      *store, kSettings,
      {Base(std::string("7"), std::string("7"), 2, {2}), Base(int64_t{7}, int64_t{7}, 1, {1})});
  // (Reals are kept apart: the PostgreSQL store sorts them after integers, see its schema.)
  PutBases(*store, "reals", {Base(1.5, 1.5, 3, {3})});
  auto integer = store->FindBase(kSettings, int64_t{7}, int64_t{7});
  auto text = store->FindBase(kSettings, std::string("7"), std::string("7"));
  auto real = store->FindBase("reals", 1.5, 1.5);
  ASSERT_TRUE(integer.ok() && text.ok() && real.ok());
  ASSERT_TRUE(integer->has_value() && text->has_value() && real->has_value());
  EXPECT_EQ((*integer)->hash, 1u);
  EXPECT_EQ((*text)->hash, 2u);
  ExpectSameBase(Base(1.5, 1.5, 3, {3}), **real);
  EXPECT_EQ(IdsOf(ScanAll(*store, kSettings)),
            (std::vector<std::string>{"int 7/int 7", "text '7'/text '7'"}));
  EXPECT_EQ(IdsOf(ScanAll(*store, "reals")),
            std::vector<std::string>{"real 1.500000/real 1.500000"});
  SyncRun run = FullSync("s-1");
  run.records = {SyncRecord{kSettings, "update", std::string("7"), 1.5, int64_t{-7}, "{}", "{}",
                            std::nullopt, Base(std::string("7"), 1.5, 4, {})}};
  ASSERT_TRUE(store->SaveSync(run).ok());
  auto loaded = store->LoadSync("s-1");
  ASSERT_TRUE(loaded.ok()) << loaded.status().message();
  ASSERT_EQ(loaded->records.size(), 1u);
  ExpectSameRecord(run.records[0], loaded->records[0]);
}

// --- Change pages ---

// A comparison of `n` changes cycling through the tabs, modules and keys the filter tests use.
Comparison ManyChanges(const std::string& id, int n) {
  Comparison c = FullComparison(id);
  c.changes.clear();
  c.changes.reserve(static_cast<size_t>(n));
  const Tab tabs[] = {Tab::kConflicts, Tab::kNew, Tab::kModified, Tab::kDeleted};
  for (int i = 0; i < n; ++i) {
    Change change = ModifiedPageChange();
    change.tab = tabs[i % 4];
    change.source_id = int64_t{i};
    change.target_id = int64_t{i};
    change.module = i % 3 == 0 ? "gallery" : "cms";
    change.table = i % 3 == 0 ? "gallery_files" : kPages;
    change.key = "Page-" + std::to_string(i);
    c.changes.push_back(std::move(change));
  }
  return c;
}

// A comparison of many changes (more than one commit's worth in a SQLite store) comes back
// whole and in order; saving another under its ID is refused and keeps the stored one whole,
// and leaves no transaction open.
TEST_P(StateStoreTest, ALargeComparisonIsStoredWholeOrNotAtAll) {
  auto store = Open();
  ASSERT_NE(store, nullptr);
  const Comparison big = ManyChanges("c-big", 7000);
  ASSERT_TRUE(store->SaveComparison(big).ok());
  auto loaded = store->LoadComparison("c-big");
  ASSERT_TRUE(loaded.ok()) << loaded.status().message();
  ASSERT_EQ(loaded->changes.size(), big.changes.size());
  for (size_t i = 0; i < big.changes.size(); i += 997) {
    EXPECT_EQ(Show(loaded->changes[i].source_id), Show(big.changes[i].source_id)) << i;
    EXPECT_EQ(loaded->changes[i].tab, big.changes[i].tab) << i;
  }

  Comparison again = ManyChanges("c-big", 5000);
  const Status refused = store->SaveComparison(again);
  EXPECT_TRUE(refused.IsInvalidArgument()) << refused.message();
  EXPECT_NE(refused.message().find("c-big"), std::string::npos) << refused.message();
  loaded = store->LoadComparison("c-big");
  ASSERT_TRUE(loaded.ok()) << loaded.status().message();
  EXPECT_EQ(loaded->changes.size(), big.changes.size());

  EXPECT_TRUE(store->SaveComparison(FullComparison("c-after")).ok());
}

// A save that fails part-way, past its first commits (change 6,000 refused by a trigger),
// takes back the changes it committed: nothing of the comparison is left, and the store
// stores the next one.
TEST_F(SqliteStateStoreTest, ALargeComparisonFailingPartWayLeavesNothing) {
  {
    auto store = Open();
    ASSERT_NE(store, nullptr);
  }
  ExecSql(path_,
          "CREATE TRIGGER refuse_6000 BEFORE INSERT ON changes WHEN NEW.seq = 6000 "
          "BEGIN SELECT RAISE(ABORT, 'change 6000 refused'); END;");
  auto store = Open();
  ASSERT_NE(store, nullptr);
  const Status failed = store->SaveComparison(ManyChanges("c-broken", 7000));
  ASSERT_FALSE(failed.ok());
  EXPECT_NE(failed.message().find("change 6000 refused"), std::string::npos) << failed.message();
  EXPECT_TRUE(store->LoadComparison("c-broken").status().IsNotFound());
  store.reset();
  EXPECT_EQ(QueryInteger(path_, "SELECT count(*) FROM changes"), 0);
  EXPECT_EQ(QueryInteger(path_, "SELECT count(*) FROM comparisons_being_stored"), 0);
  store = Open();
  ASSERT_NE(store, nullptr);
  EXPECT_TRUE(store->SaveComparison(ManyChanges("c-after", 3000)).ok());
  auto loaded = store->LoadComparison("c-after");
  ASSERT_TRUE(loaded.ok()) << loaded.status().message();
  EXPECT_EQ(loaded->changes.size(), 3000u);
}

// A comparison of `n` changes (ManyChanges) with 2 KB of text in each.
Comparison ChangesOfTwoKilobytes(const std::string& id, int n) {
  Comparison c = ManyChanges(id, n);
  for (Change& change : c.changes) change.fields[0].source = std::string(2000, 'x');
  return c;
}

// The size of the file at `path` once it has reached `at_least` bytes, or after 10 s of
// waiting for it (a checkpointer copies the WAL into the database on a thread of its own).
uintmax_t SizeOnceItReaches(const fs::path& path, uintmax_t at_least) {
  uintmax_t size = fs::file_size(path);
  for (int i = 0; i < 1000 && size < at_least; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
    size = fs::file_size(path);
  }
  return size;
}

// The WAL checkpointer: opening the store starts no thread (a tracked compare, `show`); a commit
// that leaves 4 MiB in the WAL starts it, and it copies the WAL into the database file while the
// store is still open.
TEST_F(SqliteStateStoreTest, CheckpointerStartsWithTheFirstLargeCommit) {
  auto threads = [] {
    size_t n = 0;
    for (const auto& task : fs::directory_iterator("/proc/self/task")) n += task.exists() ? 1 : 0;
    return n;
  };
  const size_t before = threads();
  auto store = Open();
  ASSERT_NE(store, nullptr);
  EXPECT_EQ(threads(), before) << "opening the store started a thread";
  ASSERT_TRUE(store->SaveComparison(FullComparison("c-small")).ok());
  EXPECT_EQ(threads(), before) << "a small commit started a thread";
  const uintmax_t small = fs::file_size(path_);

  // 12,000 changes with 2 KB of text each: ≈ 1,600 pages of 16 KiB.
  ASSERT_TRUE(store->SaveComparison(ChangesOfTwoKilobytes("c-big", 12000)).ok());
  EXPECT_GE(SizeOnceItReaches(path_, small + 16'000'000), small + 16'000'000)
      << "the WAL was not copied into the database";
  EXPECT_GT(threads(), before);
  store.reset();
  EXPECT_EQ(threads(), before) << "the checkpointer outlived its store";
}

// The checkpointer starts at 4 MiB of WAL whatever the page size: SQLite's own 1,000 pages are
// 16 MiB of the store's, which left a comparison of 10,000 changes mostly to the close's
// checkpoint. A comparison of ≈ 6 MB is copied into the database while the store is open.
TEST_F(SqliteStateStoreTest, AFewMegabytesOfWalAreCopiedWhileTheStoreIsOpen) {
  auto store = Open();
  ASSERT_NE(store, nullptr);
  ASSERT_EQ(IntegerPragma(path_, "page_size"), 16384);
  ASSERT_TRUE(store->SaveComparison(FullComparison("c-small")).ok());
  const uintmax_t small = fs::file_size(path_);
  // 2,500 changes with 2 KB of text each, in two commits of ≈ 5 and ≈ 1 MB.
  ASSERT_TRUE(store->SaveComparison(ChangesOfTwoKilobytes("c-few-mb", 2500)).ok());
  EXPECT_GE(SizeOnceItReaches(path_, small + 4'000'000), small + 4'000'000)
      << "the WAL was not copied into the database";
}

// A page lists a tab's changes in comparison order; the filter matches record, key or module,
// ignoring case; the total counts every match, not only the page.
TEST_P(StateStoreTest, ChangePageFiltersAndPages) {
  auto store = Open();
  ASSERT_NE(store, nullptr);
  ASSERT_TRUE(store->SaveComparison(ManyChanges("c-1", 40)).ok());
  // The modified tab holds changes 2, 6, 10, …, 38.
  auto page = store->LoadChangePage("c-1", Tab::kModified, "", 2, 3);
  ASSERT_TRUE(page.ok()) << page.status().message();
  EXPECT_EQ(page->total, 10);
  ASSERT_EQ(page->changes.size(), 3u);
  EXPECT_EQ(Show(page->changes[0].source_id), "int 10");
  EXPECT_EQ(Show(page->changes[2].source_id), "int 18");
  // By key, whatever the case: page-1x and page-3x of the modified tab.
  page = store->LoadChangePage("c-1", Tab::kModified, "PAGE-1", 0, 100);
  ASSERT_TRUE(page.ok()) << page.status().message();
  EXPECT_EQ(page->total, 3);  // 10, 14, 18
  // By module: every third change is gallery (6, 18, 30 on the modified tab).
  page = store->LoadChangePage("c-1", Tab::kModified, "GaLLery", 0, 2);
  ASSERT_TRUE(page.ok()) << page.status().message();
  EXPECT_EQ(page->total, 3);
  ASSERT_EQ(page->changes.size(), 2u);
  EXPECT_EQ(Show(page->changes[0].source_id), "int 6");
  EXPECT_EQ(Show(page->changes[1].source_id), "int 18");
  // By record (`T:ID`).
  page = store->LoadChangePage("c-1", Tab::kModified, "cms_pages:22", 0, 10);
  ASSERT_TRUE(page.ok()) << page.status().message();
  EXPECT_EQ(page->total, 1);
  // No match, an offset past the end, an unknown comparison: empty pages.
  EXPECT_EQ(store->LoadChangePage("c-1", Tab::kModified, "nothing-like-it", 0, 10)->total, 0);
  page = store->LoadChangePage("c-1", Tab::kModified, "", 50, 10);
  ASSERT_TRUE(page.ok()) << page.status().message();
  EXPECT_EQ(page->total, 10);
  EXPECT_TRUE(page->changes.empty());
  EXPECT_EQ(store->LoadChangePage("c-none", Tab::kNew, "", 0, 10)->total, 0);
}

// An unfiltered page is found by position when the tabs were saved one after another (as
// Compare saves them), by stepping over `offset` changes otherwise: either way it is the same
// page, at every offset and limit, negative ones included (none), and past the end.
TEST_P(StateStoreTest, UnfilteredPagesAreTheSameWhetherTabsWereSavedInOrderOrNot) {
  auto store = Open();
  ASSERT_NE(store, nullptr);
  Comparison ordered = ManyChanges("c-ordered", 23);
  std::stable_sort(ordered.changes.begin(), ordered.changes.end(),
                   [](const Change& a, const Change& b) { return a.tab < b.tab; });
  ASSERT_TRUE(store->SaveComparison(ordered).ok());
  ASSERT_TRUE(store->SaveComparison(ManyChanges("c-mixed", 23)).ok());  // tabs interleaved
  for (Tab tab : {Tab::kConflicts, Tab::kNew, Tab::kModified, Tab::kDeleted}) {
    std::vector<std::string> all;  // the tab's changes in comparison order
    for (const Change& c : ordered.changes) {
      if (c.tab == tab) all.push_back(Show(c.source_id));
    }
    const auto n = static_cast<int64_t>(all.size());
    ASSERT_GT(n, 0);
    for (int64_t offset : {int64_t{-1}, int64_t{0}, int64_t{1}, n / 2, n - 1, n, n + 3}) {
      for (int64_t limit : {int64_t{-1}, int64_t{0}, int64_t{1}, int64_t{3}, n, n + 5}) {
        const int64_t from = std::clamp<int64_t>(offset, 0, n);
        const int64_t to = limit < 0 ? n : std::min(n, from + limit);
        const std::vector<std::string> expected(all.begin() + from, all.begin() + to);
        for (const char* id : {"c-ordered", "c-mixed"}) {
          auto page = store->LoadChangePage(id, tab, "", offset, limit);
          ASSERT_TRUE(page.ok()) << page.status().message();
          EXPECT_EQ(page->total, n) << id;
          std::vector<std::string> got;
          for (const Change& c : page->changes) got.push_back(Show(c.source_id));
          EXPECT_EQ(got, expected) << id << " tab " << static_cast<int>(tab) << " offset " << offset
                                   << " limit " << limit;
        }
      }
    }
  }
}

// KnownChangeRefs says which of the records named are changes of the comparison (and of no
// other); the header carries the counts of every tab.
TEST_P(StateStoreTest, ChangeRefsAndHeader) {
  auto store = Open();
  ASSERT_NE(store, nullptr);
  ASSERT_TRUE(store->SaveComparison(FullComparison("c-1")).ok());
  ASSERT_TRUE(store->SaveComparison(ManyChanges("c-2", 8)).ok());
  auto known = store->KnownChangeRefs(
      "c-1", {"cms_pages:55", "cms_pages:56", "system_settings:integrations.mobile_app.home",
              "cms_pages:57", "cms_pages:12", "cms_pages:12", "cms_pages:1", "x'; DROP TABLE x"});
  ASSERT_TRUE(known.ok()) << known.status().message();
  EXPECT_EQ(*known,
            (std::set<std::string>{"cms_pages:55", "system_settings:integrations.mobile_app.home",
                                   "cms_pages:57", "cms_pages:12"}));
  EXPECT_TRUE(store->KnownChangeRefs("c-1", {})->empty());
  EXPECT_TRUE(store->KnownChangeRefs("c-none", {"cms_pages:55"})->empty());
  auto header = store->LoadComparisonHeader("c-1");
  ASSERT_TRUE(header.ok()) << header.status().message();
  EXPECT_TRUE(header->first.changes.empty());
  EXPECT_EQ(header->first.from, "TEST");
  EXPECT_EQ(header->second.conflicts, 1);
  EXPECT_EQ(header->second.new_records, 1);
  EXPECT_EQ(header->second.modified, 1);
  EXPECT_EQ(header->second.deleted, 1);
  auto missing = store->LoadComparisonHeader("c-none");
  EXPECT_TRUE(missing.status().IsNotFound()) << missing.status().message();
  EXPECT_NE(missing.status().message().find("c-none"), std::string::npos);
}

// Many changes (a large review) are saved in one go and paged; ENVSYNC_STORE_TEST_CHANGES sets
// how many (the default keeps the suite quick) and prints how long the save took.
TEST_P(StateStoreTest, ManyChangesAreSavedAndPaged) {
  auto store = Open();
  ASSERT_NE(store, nullptr);
  const char* count = std::getenv("ENVSYNC_STORE_TEST_CHANGES");
  const int n = count != nullptr ? std::atoi(count) : 20000;
  const Comparison c = ManyChanges("c-big", n);
  const auto start = std::chrono::steady_clock::now();
  const Status status = store->SaveComparison(c);
  const auto took = std::chrono::duration_cast<std::chrono::milliseconds>(
                        std::chrono::steady_clock::now() - start)
                        .count();
  ASSERT_TRUE(status.ok()) << status.message();
  if (count != nullptr)
    std::fprintf(stderr, "SaveComparison(%d changes): %lld ms\n", n, static_cast<long long>(took));
  auto page = store->LoadChangePage("c-big", Tab::kNew, "", n / 8, 2);
  ASSERT_TRUE(page.ok()) << page.status().message();
  EXPECT_EQ(page->total, n / 4);
  ASSERT_EQ(page->changes.size(), 2u);
  EXPECT_EQ(Show(page->changes[0].source_id), "int " + std::to_string(n / 8 * 4 + 1));
  // Change i is a record of gallery_files when i % 3 == 0, of cms_pages otherwise.
  auto ref = [](int i) {
    return std::string(i % 3 == 0 ? "gallery_files:" : "cms_pages:") + std::to_string(i);
  };
  auto known = store->KnownChangeRefs("c-big", {ref(0), ref(n - 1), ref(n), "cms_pages:0"});
  ASSERT_TRUE(known.ok()) << known.status().message();
  EXPECT_EQ(*known, (std::set<std::string>{ref(0), ref(n - 1)}));
}

// --- Jobs ---

Job MakeJob(const std::string& id, const std::string& state, const std::string& created_at,
            const std::string& run_at = "", const std::string& kind = "sync") {
  Job job;
  job.id = id;
  job.kind = kind;
  job.state = state;
  job.created_at = created_at;
  job.run_at = run_at;
  job.started_by = "alice";
  job.request = R"({"comparison_id":"c-1"})";
  return job;
}

void ExpectSameJob(const Job& expected, const Job& actual) {
  SCOPED_TRACE("job " + expected.id);
  EXPECT_EQ(actual.id, expected.id);
  EXPECT_EQ(actual.kind, expected.kind);
  EXPECT_EQ(actual.state, expected.state);
  EXPECT_EQ(actual.created_at, expected.created_at);
  EXPECT_EQ(actual.run_at, expected.run_at);
  EXPECT_EQ(actual.started_at, expected.started_at);
  EXPECT_EQ(actual.finished_at, expected.finished_at);
  EXPECT_EQ(actual.started_by, expected.started_by);
  EXPECT_EQ(actual.request, expected.request);
  EXPECT_EQ(actual.result, expected.result);
  EXPECT_EQ(actual.error, expected.error);
  EXPECT_EQ(actual.runner, expected.runner);
}

// Every field of a job comes back; saving it again replaces it; jobs list oldest first.
TEST_P(StateStoreTest, JobsRoundTripReplaceAndList) {
  auto store = Open();
  ASSERT_NE(store, nullptr);
  Job later = MakeJob("j-later", "scheduled", "2024-05-02T00:00:00Z", "2024-05-03T00:00:00Z");
  Job earlier = MakeJob("j-earlier", "queued", "2024-05-01T00:00:00Z");
  ASSERT_TRUE(store->SaveJob(later).ok());
  ASSERT_TRUE(store->SaveJob(earlier).ok());
  earlier.state = "failed";
  earlier.started_at = "2024-05-01T00:00:01Z";
  earlier.finished_at = "2024-05-01T00:00:02Z";
  earlier.result = R"({"status":"failure"})";
  earlier.error = "PROD is down";
  earlier.runner = "host-1:4242";
  const Status saved = store->SaveJob(earlier);
  ASSERT_TRUE(saved.ok()) << saved.message();
  auto loaded = store->LoadJob("j-earlier");
  ASSERT_TRUE(loaded.ok()) << loaded.status().message();
  ExpectSameJob(earlier, *loaded);
  auto list = store->ListJobs();
  ASSERT_TRUE(list.ok()) << list.status().message();
  ASSERT_EQ(list->size(), 2u);
  ExpectSameJob(earlier, (*list)[0]);
  ExpectSameJob(later, (*list)[1]);
  auto missing = store->LoadJob("j-none");
  EXPECT_TRUE(missing.status().IsNotFound()) << missing.status().message();
  EXPECT_NE(missing.status().message().find("j-none"), std::string::npos);
}

// SaveJobIf saves only while the stored state is one of those listed, and says whether it did.
TEST_P(StateStoreTest, SaveJobIfSavesOnlyFromListedStates) {
  auto store = Open();
  ASSERT_NE(store, nullptr);
  Job job = MakeJob("j-1", "queued", "2024-05-01T00:00:00Z");
  ASSERT_TRUE(store->SaveJob(job).ok());
  job.state = "cancelled";
  auto saved = store->SaveJobIf(job, {"queued", "scheduled"});
  ASSERT_TRUE(saved.ok()) << saved.status().message();
  EXPECT_TRUE(*saved);
  job.state = "running";
  saved = store->SaveJobIf(job, {"queued", "scheduled"});
  ASSERT_TRUE(saved.ok()) << saved.status().message();
  EXPECT_FALSE(*saved);
  saved = store->SaveJobIf(job, {});
  ASSERT_TRUE(saved.ok()) << saved.status().message();
  EXPECT_FALSE(*saved);
  saved = store->SaveJobIf(MakeJob("j-none", "running", "x"), {"queued"});
  ASSERT_TRUE(saved.ok()) << saved.status().message();
  EXPECT_FALSE(*saved);
  EXPECT_EQ(store->LoadJob("j-1")->state, "cancelled");
}

constexpr char kNow[] = "2024-06-01T10:00:00Z";

// ClaimDueJob, after NextDueJob has said which job it would claim: the claim takes that job, and
// the look changed nothing.
Result<std::optional<Job>> ClaimAsLookedAt(StateStore& store, const std::string& kind,
                                           const std::string& now, const std::string& runner) {
  auto next = store.NextDueJob(kind, now);
  EXPECT_TRUE(next.ok()) << next.status().message();
  if (!next.ok()) return next.status();
  if (next->has_value()) ExpectSameJob(**next, *store.LoadJob((*next)->id));
  auto claimed = store.ClaimDueJob(kind, now, runner);
  if (claimed.ok()) {
    EXPECT_EQ(next->has_value(), claimed->has_value());
    if (next->has_value() && claimed->has_value()) ExpectSameJob(**next, **claimed);
  }
  return claimed;
}

// ClaimDueJob takes the oldest due job (queued, or scheduled and due), returns it as it was and
// stores it as running since `now` for the runner; jobs not due, running or ended stay.
TEST_P(StateStoreTest, ClaimDueJobTakesOldestDueJob) {
  auto store = Open();
  ASSERT_NE(store, nullptr);
  Job running = MakeJob("j-running", "running", "2024-01-01T00:00:00Z");
  running.runner = "other";
  running.started_at = "2024-01-01T00:00:05Z";
  const Job cancelled = MakeJob("j-cancelled", "cancelled", "2024-01-01T00:01:00Z");
  const Job not_due =
      MakeJob("j-not-due", "scheduled", "2024-01-01T00:02:00Z", "2024-06-01T12:00:00Z");
  const Job queued = MakeJob("j-queued", "queued", "2024-01-01T00:03:00Z");
  const Job due = MakeJob("j-due", "scheduled", "2024-01-01T00:04:00Z", "2024-06-01T09:00:00Z");
  for (const Job& job : {running, cancelled, not_due, queued, due}) {
    ASSERT_TRUE(store->SaveJob(job).ok());
  }

  auto claimed = ClaimAsLookedAt(*store, "", kNow, "runner-1");
  ASSERT_TRUE(claimed.ok()) << claimed.status().message();
  ASSERT_TRUE(claimed->has_value());
  ExpectSameJob(queued, **claimed);
  Job stored = queued;
  stored.state = "running";
  stored.started_at = kNow;
  stored.runner = "runner-1";
  ExpectSameJob(stored, *store->LoadJob("j-queued"));

  claimed = ClaimAsLookedAt(*store, "", kNow, "runner-2");
  ASSERT_TRUE(claimed.ok()) << claimed.status().message();
  ASSERT_TRUE(claimed->has_value());
  ExpectSameJob(due, **claimed);
  EXPECT_EQ(store->LoadJob("j-due")->runner, "runner-2");

  claimed = ClaimAsLookedAt(*store, "", kNow, "runner-1");
  ASSERT_TRUE(claimed.ok()) << claimed.status().message();
  EXPECT_FALSE(claimed->has_value());
  ExpectSameJob(running, *store->LoadJob("j-running"));
  ExpectSameJob(cancelled, *store->LoadJob("j-cancelled"));
  ExpectSameJob(not_due, *store->LoadJob("j-not-due"));

  // At its run_at a scheduled job is due.
  claimed = ClaimAsLookedAt(*store, "", "2024-06-01T12:00:00Z", "runner-1");
  ASSERT_TRUE(claimed.ok()) << claimed.status().message();
  ASSERT_TRUE(claimed->has_value());
  EXPECT_EQ((*claimed)->id, "j-not-due");
  EXPECT_EQ((*claimed)->state, "scheduled");
}

// An empty store has nothing to claim.
TEST_P(StateStoreTest, ClaimDueJobOnEmptyStoreIsNothing) {
  auto store = Open();
  ASSERT_NE(store, nullptr);
  auto claimed = ClaimAsLookedAt(*store, "sync", kNow, "runner-1");
  ASSERT_TRUE(claimed.ok()) << claimed.status().message();
  EXPECT_FALSE(claimed->has_value());
}

// ClaimDueJob claims only jobs of `kind` unless it is ""; jobs as old as each other go by ID.
TEST_P(StateStoreTest, ClaimDueJobHonoursKind) {
  auto store = Open();
  ASSERT_NE(store, nullptr);
  ASSERT_TRUE(store->SaveJob(MakeJob("j-b", "queued", "2024-01-01T00:00:00Z", "", "compare")).ok());
  ASSERT_TRUE(store->SaveJob(MakeJob("j-a", "queued", "2024-01-01T00:00:00Z", "", "compare")).ok());
  ASSERT_TRUE(store->SaveJob(MakeJob("j-sync", "queued", "2024-01-02T00:00:00Z")).ok());
  auto claimed = ClaimAsLookedAt(*store, "other", kNow, "r");
  ASSERT_TRUE(claimed.ok()) << claimed.status().message();
  EXPECT_FALSE(claimed->has_value());
  claimed = ClaimAsLookedAt(*store, "sync", kNow, "r");
  ASSERT_TRUE(claimed.ok() && claimed->has_value()) << claimed.status().message();
  EXPECT_EQ((*claimed)->id, "j-sync");
  claimed = ClaimAsLookedAt(*store, "", kNow, "r");
  ASSERT_TRUE(claimed.ok() && claimed->has_value()) << claimed.status().message();
  EXPECT_EQ((*claimed)->id, "j-a");
  claimed = ClaimAsLookedAt(*store, "compare", kNow, "r");
  ASSERT_TRUE(claimed.ok() && claimed->has_value()) << claimed.status().message();
  EXPECT_EQ((*claimed)->id, "j-b");
  claimed = ClaimAsLookedAt(*store, "", kNow, "r");
  ASSERT_TRUE(claimed.ok()) << claimed.status().message();
  EXPECT_FALSE(claimed->has_value());
}

// --- Messages ---

Message MakeMessage(const std::string& user, const std::string& title) {
  Message m;
  m.user = user;
  m.created_at = "2024-05-01T00:00:00Z";
  m.title = title;
  m.body = "body of " + title;
  m.job_id = "j-1";
  return m;
}

// Messages get increasing IDs and list newest first, per user or for everyone; a message is
// marked read only for its own user.
TEST_P(StateStoreTest, MessagesListNewestFirstAndMarkRead) {
  auto store = Open();
  ASSERT_NE(store, nullptr);
  auto first = store->AddMessage(MakeMessage("alice", "first"));
  auto second = store->AddMessage(MakeMessage("bob", "second"));
  Message read = MakeMessage("alice", "third");
  read.read = true;
  auto third = store->AddMessage(read);
  ASSERT_TRUE(first.ok() && second.ok() && third.ok()) << first.status().message();
  EXPECT_LT(*first, *second);
  EXPECT_LT(*second, *third);

  auto alice = store->ListMessages("alice");
  ASSERT_TRUE(alice.ok()) << alice.status().message();
  ASSERT_EQ(alice->size(), 2u);
  EXPECT_EQ((*alice)[0].id, *third);
  EXPECT_EQ((*alice)[0].title, "third");
  EXPECT_TRUE((*alice)[0].read);
  EXPECT_EQ((*alice)[1].id, *first);
  EXPECT_EQ((*alice)[1].user, "alice");
  EXPECT_EQ((*alice)[1].body, "body of first");
  EXPECT_EQ((*alice)[1].job_id, "j-1");
  EXPECT_EQ((*alice)[1].created_at, "2024-05-01T00:00:00Z");
  EXPECT_FALSE((*alice)[1].read);
  auto everyone = store->ListMessages("");
  ASSERT_TRUE(everyone.ok());
  ASSERT_EQ(everyone->size(), 3u);
  EXPECT_EQ((*everyone)[1].user, "bob");

  ASSERT_TRUE(store->MarkMessageRead(*first, "alice").ok());
  EXPECT_TRUE(store->ListMessages("alice")->back().read);
  const Status other = store->MarkMessageRead(*second, "alice");
  EXPECT_TRUE(other.IsNotFound()) << other.message();
  EXPECT_TRUE(store->MarkMessageRead(*third + 100, "alice").IsNotFound());
  EXPECT_FALSE(store->ListMessages("bob")->front().read);
}

// --- Users, sessions, audit, selections ---

// Users come back by e-mail, listed in e-mail order; saving one again replaces it.
TEST_P(StateStoreTest, UsersRoundTripAndReplace) {
  auto store = Open();
  ASSERT_NE(store, nullptr);
  const User bob{"bob@example.com", "viewer", "pbkdf2$1$b", "UTC", "2024-05-01T00:00:00Z"};
  User alice{"alice@example.com", "admin", "pbkdf2$1$a", "Europe/Berlin", "2024-05-02T00:00:00Z"};
  ASSERT_TRUE(store->SaveUser(bob).ok());
  ASSERT_TRUE(store->SaveUser(alice).ok());
  alice.role = "operator";
  ASSERT_TRUE(store->SaveUser(alice).ok());
  auto found = store->FindUser("alice@example.com");
  ASSERT_TRUE(found.ok()) << found.status().message();
  ASSERT_TRUE(found->has_value());
  EXPECT_EQ((*found)->role, "operator");
  EXPECT_EQ((*found)->password_hash, "pbkdf2$1$a");
  EXPECT_EQ((*found)->time_zone, "Europe/Berlin");
  EXPECT_EQ((*found)->created_at, "2024-05-02T00:00:00Z");
  EXPECT_FALSE(store->FindUser("carol@example.com")->has_value());
  auto list = store->ListUsers();
  ASSERT_TRUE(list.ok()) << list.status().message();
  ASSERT_EQ(list->size(), 2u);
  EXPECT_EQ((*list)[0].email, "alice@example.com");
  EXPECT_EQ((*list)[1].email, "bob@example.com");
}

// Sessions are found by token hash and forgotten one by one, per user or when they ended.
TEST_P(StateStoreTest, SessionsFindDeleteAndExpire) {
  auto store = Open();
  ASSERT_NE(store, nullptr);
  ASSERT_TRUE(store->SaveUser({"alice@example.com", "admin", "h", "UTC", "t"}).ok());
  ASSERT_TRUE(store->SaveUser({"bob@example.com", "viewer", "h", "UTC", "t"}).ok());
  const Session a1{"hash-a1", "alice@example.com", "csrf-a1", "2024-05-01T00:00:00Z",
                   "2024-05-02T00:00:00Z"};
  const Session a2{"hash-a2", "alice@example.com", "csrf-a2", "2024-05-01T00:00:00Z",
                   "2024-05-09T00:00:00Z"};
  const Session b1{"hash-b1", "bob@example.com", "csrf-b1", "2024-05-01T00:00:00Z",
                   "2024-05-09T00:00:00Z"};
  const Session b2{"hash-b2", "bob@example.com", "csrf-b2", "2024-05-01T00:00:00Z",
                   "2024-05-03T00:00:00Z"};
  for (const Session& s : {a1, a2, b1, b2}) ASSERT_TRUE(store->SaveSession(s).ok());
  auto found = store->FindSession("hash-a1");
  ASSERT_TRUE(found.ok()) << found.status().message();
  ASSERT_TRUE(found->has_value());
  EXPECT_EQ((*found)->email, "alice@example.com");
  EXPECT_EQ((*found)->csrf_token, "csrf-a1");
  EXPECT_EQ((*found)->created_at, "2024-05-01T00:00:00Z");
  EXPECT_EQ((*found)->expires_at, "2024-05-02T00:00:00Z");
  ASSERT_TRUE(store->DeleteSession("hash-a1").ok());
  EXPECT_FALSE(store->FindSession("hash-a1")->has_value());
  ASSERT_TRUE(store->DeleteSessionsOf("alice@example.com").ok());
  EXPECT_FALSE(store->FindSession("hash-a2")->has_value());
  EXPECT_TRUE(store->FindSession("hash-b1")->has_value());
  ASSERT_TRUE(store->DeleteExpiredSessions("2024-05-03T00:00:00Z").ok());
  EXPECT_FALSE(store->FindSession("hash-b2")->has_value());
  EXPECT_TRUE(store->FindSession("hash-b1")->has_value());
  // A session needs its user.
  EXPECT_FALSE(store->SaveSession({"hash-c", "carol@example.com", "c", "t", "t"}).ok());
}

// The audit log lists oldest first with increasing IDs; an empty detail is stored as {}.
TEST_P(StateStoreTest, AuditListsOldestFirst) {
  auto store = Open();
  ASSERT_NE(store, nullptr);
  ASSERT_TRUE(store
                  ->AddAudit({0, "2024-05-02T00:00:00Z", "alice", "sync.schedule", "c-1",
                              R"({"records":["cms_pages:1"]})"})
                  .ok());
  ASSERT_TRUE(store->AddAudit({0, "2024-05-01T00:00:00Z", "bob", "login.failed", "bob", ""}).ok());
  auto list = store->ListAudit();
  ASSERT_TRUE(list.ok()) << list.status().message();
  ASSERT_EQ(list->size(), 2u);
  EXPECT_LT((*list)[0].id, (*list)[1].id);
  EXPECT_EQ((*list)[0].at, "2024-05-02T00:00:00Z");
  EXPECT_EQ((*list)[0].user, "alice");
  EXPECT_EQ((*list)[0].action, "sync.schedule");
  EXPECT_EQ((*list)[0].target, "c-1");
  EXPECT_EQ((*list)[0].detail, R"({"records":["cms_pages:1"]})");
  EXPECT_EQ((*list)[1].detail, "{}");
}

// A comparison's selection is "" until saved, then the last one saved.
TEST_P(StateStoreTest, SelectionsRoundTrip) {
  auto store = Open();
  ASSERT_NE(store, nullptr);
  ASSERT_TRUE(store->SaveComparison(FullComparison("c-1")).ok());
  auto none = store->LoadSelection("c-1");
  ASSERT_TRUE(none.ok()) << none.status().message();
  EXPECT_EQ(*none, "");
  ASSERT_TRUE(store->SaveSelection("c-1", R"({"selected":["cms_pages:55"]})").ok());
  ASSERT_TRUE(store->SaveSelection("c-1", R"({"selected":[]})").ok());
  EXPECT_EQ(*store->LoadSelection("c-1"), R"({"selected":[]})");
  EXPECT_EQ(*store->LoadSelection("c-2"), "");
}

// --- PostgreSQL only ---

// The password in `uri` (postgresql://user:password@host/…), "" when there is none.
std::string PasswordOf(const std::string& uri) {
  const size_t scheme = uri.find("://");
  const size_t at = uri.find('@');
  const size_t colon = uri.find(':', scheme + 3);
  if (scheme == std::string::npos || at == std::string::npos || colon > at) return "";
  return uri.substr(colon + 1, at - colon - 1);
}

// Claimers on several connections at once (one store per thread) never claim the same job, and
// together they claim every due job.
TEST_F(PostgresStateStoreTest, ConcurrentClaimersNeverShareAJob) {
  constexpr int kJobs = 200;
  constexpr int kThreads = 4;
  {
    auto store = Open();
    ASSERT_NE(store, nullptr);
    for (int i = 0; i < kJobs; ++i) {
      const std::string id = "j-" + std::to_string(1000 + i);
      ASSERT_TRUE(store->SaveJob(MakeJob(id, "queued", "2024-01-01T00:00:00Z")).ok());
    }
  }
  std::vector<std::unique_ptr<StateStore>> stores;
  for (int t = 0; t < kThreads; ++t) {
    stores.push_back(Open());
    ASSERT_NE(stores.back(), nullptr);
  }
  std::mutex mutex;
  std::vector<std::pair<std::string, std::string>> claims;  // job, runner
  std::vector<std::string> errors;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      const std::string runner = "runner-" + std::to_string(t);
      while (true) {
        auto claimed = stores[static_cast<size_t>(t)]->ClaimDueJob("", kNow, runner);
        std::lock_guard<std::mutex> lock(mutex);
        if (!claimed.ok()) {
          errors.push_back(claimed.status().message());
          return;
        }
        if (!claimed->has_value()) return;
        claims.emplace_back((*claimed)->id, runner);
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  EXPECT_TRUE(errors.empty()) << errors.front();
  EXPECT_EQ(claims.size(), static_cast<size_t>(kJobs));
  std::set<std::string> distinct;
  for (const auto& [job, runner] : claims) distinct.insert(job);
  EXPECT_EQ(distinct.size(), static_cast<size_t>(kJobs));
  for (const auto& [job, runner] : claims) {
    auto stored = stores[0]->LoadJob(job);
    ASSERT_TRUE(stored.ok()) << stored.status().message();
    EXPECT_EQ(stored->state, "running");
    EXPECT_EQ(stored->runner, runner) << job;
  }
}

// Stores opened at once on a fresh database all end up with one schema.
TEST_F(PostgresStateStoreTest, StoresOpeningAFreshDatabaseAtOnceShareOneSchema) {
  constexpr int kOpeners = 4;
  std::vector<Status> results(kOpeners);
  std::vector<std::thread> threads;
  for (int i = 0; i < kOpeners; ++i) {
    threads.emplace_back(
        [&, i] { results[static_cast<size_t>(i)] = OpenStateStore(location_).status(); });
  }
  for (std::thread& thread : threads) thread.join();
  for (const Status& status : results) EXPECT_TRUE(status.ok()) << status.message();
  envsync::testing::Pg pg(location_);
  EXPECT_EQ(pg.Run("SELECT version FROM envsync_schema"),
            std::to_string(kStateSchemaVersion) + "|\n");
}

// A database whose schema is newer than this envsync is refused as InvalidArgument naming the
// server without its password and the version, and is left as it was.
TEST_F(PostgresStateStoreTest, NewerSchemaIsRefusedNamingServerWithoutPassword) {
  {
    auto store = Open();
    ASSERT_NE(store, nullptr);
    ASSERT_TRUE(store->SaveJob(MakeJob("j-1", "queued", "2024-01-01T00:00:00Z")).ok());
  }
  envsync::testing::Pg pg(location_);
  pg.Run("UPDATE envsync_schema SET version = 99");
  auto store = OpenStateStore(location_);
  ASSERT_FALSE(store.ok());
  const std::string& message = store.status().message();
  EXPECT_TRUE(store.status().IsInvalidArgument()) << message;
  EXPECT_NE(message.find(RedactUri(location_)), std::string::npos) << message;
  EXPECT_NE(message.find("99"), std::string::npos) << message;
  const std::string password = PasswordOf(location_);
  ASSERT_FALSE(password.empty()) << location_;
  EXPECT_EQ(message.find(password), std::string::npos) << message;
  EXPECT_EQ(pg.Run("SELECT version FROM envsync_schema"), "99|\n");
  EXPECT_EQ(pg.Run("SELECT count(*) FROM jobs"), "1|\n");
}

// A state store pointed at another application's schema (the platform's, which has a `users`
// table) is refused before anything is written, naming the tables in the way; the same database
// with a schema of its own for the state works.
TEST_F(PostgresStateStoreTest, SchemaHoldingOtherTablesIsRefusedNamingThem) {
  envsync::testing::Pg pg(location_);
  pg.Run(
      "CREATE TABLE users (id bigint PRIMARY KEY, email text); CREATE TABLE audit (id "
      "bigint); CREATE TABLE orders (id bigint)");
  auto refused = OpenStateStore(location_);
  ASSERT_FALSE(refused.ok());
  const std::string& message = refused.status().message();
  EXPECT_TRUE(refused.status().IsInvalidArgument()) << message;
  EXPECT_NE(message.find("schema \"public\" already has tables named audit, users"),
            std::string::npos)
      << message;
  EXPECT_NE(message.find("a schema of its own"), std::string::npos) << message;
  EXPECT_EQ(message.find(PasswordOf(location_)), std::string::npos) << message;
  EXPECT_EQ(pg.Run("SELECT to_regclass('envsync_schema') IS NULL, count(*) FROM pg_tables WHERE "
                   "schemaname = 'public'"),
            "t|3|\n");

  pg.Run("CREATE SCHEMA envsync_state");
  auto own = OpenStateStore(location_ + "?options=-csearch_path%3Denvsync_state");
  ASSERT_TRUE(own.ok()) << own.status().message();
  EXPECT_EQ(pg.Run("SELECT version FROM envsync_state.envsync_schema"),
            std::to_string(kStateSchemaVersion) + "|\n");
}

// A wrong password is Unavailable naming the store, and the password is not in the message.
TEST_F(PostgresStateStoreTest, WrongPasswordIsUnavailableWithoutEchoingIt) {
  const std::string password = PasswordOf(location_);
  ASSERT_FALSE(password.empty()) << location_;
  std::string uri = location_;
  const std::string wrong = "not-the-password-4711";
  uri.replace(uri.find(":" + password + "@") + 1, password.size(), wrong);
  auto store = OpenStateStore(uri);
  ASSERT_FALSE(store.ok());
  const std::string& message = store.status().message();
  EXPECT_TRUE(store.status().IsUnavailable()) << message;
  EXPECT_NE(message.find("state store"), std::string::npos) << message;
  EXPECT_EQ(message.find(wrong), std::string::npos) << message;
  EXPECT_EQ(message.find(password), std::string::npos) << message;
}

// --- json_codec ---

// With only_tab the JSON lists that tab's changes but the counts of every tab.
TEST(JsonCodec, ComparisonToJsonOnlyTabKeepsWholeCounts) {
  Comparison c = FullComparison("c-1");
  c.changes.push_back(DeletedPageChange());
  const nlohmann::json j = nlohmann::json::parse(ComparisonToJson(c, Tab::kDeleted, -1));
  EXPECT_EQ(j.at("comparison_id"), "c-1");
  EXPECT_EQ(j.at("counts"),
            (nlohmann::json{{"conflicts", 1}, {"new", 1}, {"modified", 1}, {"deleted", 2}}));
  ASSERT_EQ(j.at("changes").size(), 2u);
  for (const nlohmann::json& change : j.at("changes")) {
    EXPECT_EQ(change.at("tab"), "deleted");
    EXPECT_EQ(change.at("reason"), "target_changed");
    EXPECT_TRUE(change.at("source_id").is_null());
  }
  const nlohmann::json all = nlohmann::json::parse(ComparisonToJson(c, std::nullopt, 2));
  EXPECT_EQ(all.at("changes").size(), 5u);
  EXPECT_EQ(all.at("counts"), j.at("counts"));
}

// The comparison's JSON is written one change at a time into its envelope, and reads exactly as
// nlohmann lays the whole document out: pretty (indent 2, 4) and on one line, every tab and
// one tab, no change at all, and text that is not UTF-8 or holds quotes, newlines and what
// looks like the envelope's own "changes" key.
TEST(JsonCodec, ComparisonJsonIsNlohmannsLayoutOfTheWholeDocument) {
  Comparison c = FullComparison("c-9");
  c.changes.push_back(DeletedPageChange());
  c.modules.push_back("weird \"changes\": [] module\n");
  c.changes[0].key = "bad \xff\xfe utf-8, \"quoted\"\nnewline \"changes\": []";
  Comparison none = FullComparison("c-0");
  none.changes.clear();
  for (const Comparison* comparison : {&c, &none}) {
    for (int indent : {-1, 2, 4}) {
      for (std::optional<Tab> tab : {std::optional<Tab>(), std::optional<Tab>(Tab::kDeleted),
                                     std::optional<Tab>(Tab::kConflicts)}) {
        std::ostringstream streamed;
        WriteComparisonJson(streamed, *comparison, tab, indent);
        const auto whole = nlohmann::ordered_json::parse(streamed.str());
        EXPECT_EQ(streamed.str(),
                  whole.dump(indent, ' ', false, nlohmann::ordered_json::error_handler_t::replace))
            << "indent " << indent;
        EXPECT_EQ(streamed.str(), ComparisonToJson(*comparison, tab, indent));
        size_t expected = 0;
        for (const Change& change : comparison->changes) expected += !tab || change.tab == *tab;
        EXPECT_EQ(whole.at("changes").size(), expected);
        EXPECT_EQ(whole.at("comparison_id"), comparison->id);
      }
    }
  }
}

// ChangeToJson and ChangeFromJson give back every field of a change.
TEST(JsonCodec, ChangeRoundTrips) {
  for (const Change& change :
       {ConflictChange(), NewSettingChange(), ModifiedPageChange(), DeletedPageChange()}) {
    auto back = ChangeFromJson(ChangeToJson(change));
    ASSERT_TRUE(back.ok()) << back.status().message();
    ExpectSameChange(change, *back);
  }
}

// Malformed change text is Unavailable, not an exception.
TEST(JsonCodec, MalformedChangeIsUnavailable) {
  for (const std::string text :
       {"not json", "[]", R"({"tab":"modified"})", R"({"tab":"sideways","module":"cms"})"}) {
    auto back = ChangeFromJson(text);
    EXPECT_FALSE(back.ok()) << text;
    EXPECT_TRUE(back.status().IsUnavailable()) << text << ": " << back.status().message();
  }
}

}  // namespace
}  // namespace envsync::store
