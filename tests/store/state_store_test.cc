#include "envsync/store/state_store.h"

#include <gtest/gtest.h>
#include <sqlite3.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "envsync/core/comparison.h"
#include "envsync/core/identity_map.h"
#include "envsync/core/status.h"
#include "envsync/core/value.h"
#include "envsync/store/json_codec.h"

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

// Runs a SQL script on a SQLite file with the plain SQLite API, failing the test on error.
void ExecSql(const fs::path& path, const std::string& sql) {
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK);
  char* error = nullptr;
  const int rc = sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &error);
  const std::string message = error != nullptr ? error : "";
  sqlite3_free(error);
  sqlite3_close(db);
  ASSERT_EQ(rc, SQLITE_OK) << message << " in: " << sql;
}

// PRAGMA user_version of a SQLite file, read with the plain SQLite API; -1 on error.
int UserVersion(const fs::path& path) {
  sqlite3* db = nullptr;
  int version = -1;
  if (sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr) == SQLITE_OK) {
    sqlite3_stmt* stmt = nullptr;
    if (sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &stmt, nullptr) == SQLITE_OK &&
        sqlite3_step(stmt) == SQLITE_ROW) {
      version = sqlite3_column_int(stmt, 0);
    }
    sqlite3_finalize(stmt);
  }
  sqlite3_close(db);
  return version;
}

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
  EXPECT_EQ(Show(actual.base), Show(expected.base));
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

class StateStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    static std::atomic<int> counter{0};
    dir_ = fs::temp_directory_path() /
           ("envsync-store-test-" + std::to_string(::getpid()) + "-" + std::to_string(counter++));
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    path_ = dir_ / "state.db";
  }
  void TearDown() override { fs::remove_all(dir_); }

  // Opens the store at path_, or returns null after recording a failure.
  std::unique_ptr<StateStore> Open() {
    auto store = OpenStateStore(path_.string());
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
    ASSERT_TRUE(store.CommitBaseUpdate().ok());
  }

  fs::path dir_;
  fs::path path_;
};

// --- Opening and schema versions ---

// A store opened on a missing file is created at the current schema version.
TEST_F(StateStoreTest, NewStoreIsCreatedAtCurrentSchemaVersion) {
  auto store = Open();
  ASSERT_NE(store, nullptr);
  EXPECT_EQ(store->SchemaVersion(), kStateSchemaVersion);
  store.reset();
  EXPECT_TRUE(fs::exists(path_));
  EXPECT_EQ(UserVersion(path_), kStateSchemaVersion);
}

// Reopening a store keeps what was written and its version.
TEST_F(StateStoreTest, ReopeningKeepsData) {
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
TEST_F(StateStoreTest, MigratesVersion1Forward) {
  ExecSql(path_, std::string(kSchemaV1) + R"sql(
PRAGMA user_version = 1;
INSERT INTO identity_map VALUES ('cms_pages', 63, 8);
INSERT INTO comparisons VALUES ('c-v1', '2024-04-01T09:00:00Z', 'TEST', 'PROD', 'all',
  '["cms"]', '[]', '[]', '[]', 12, 0, 0, 1, 0);
INSERT INTO changes VALUES ('c-v1', 0, 'modified', 'cms_pages:57',
  '{"tab":"modified","module":"cms","table":"cms_pages","source_id":57,"target_id":57,"key":"about-us","selected":true,"conflict":null,"mergeable":false,"reason":null,"required_by":[],"fields":[{"field":"title","source":"About","target":"About us","base":null,"base_known":false,"json":false}],"source_hash":"00000000000000ff","target_hash":"0000000000000100"}');
)sql");
  ASSERT_EQ(UserVersion(path_), 1);

  auto store = Open();
  ASSERT_NE(store, nullptr);
  EXPECT_EQ(store->SchemaVersion(), store::kStateSchemaVersion);
  EXPECT_EQ(UserVersion(path_), store::kStateSchemaVersion);

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
TEST_F(StateStoreTest, NewerSchemaIsRefusedNamingPathAndVersion) {
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
TEST_F(StateStoreTest, RefusedNewerSchemaFileIsLeftUnchanged) {
  ExecSql(path_, "CREATE TABLE future_things (x); PRAGMA user_version = 99;");
  const std::string before = ReadBytes(path_);
  ASSERT_FALSE(before.empty());
  auto store = OpenStateStore(path_.string());
  ASSERT_FALSE(store.ok());
  EXPECT_EQ(FirstDifference(ReadBytes(path_), before), -1);
}

// A file that is not a database is refused as Unavailable naming the path, and left unchanged.
TEST_F(StateStoreTest, GarbageFileIsUnavailableAndLeftUnchanged) {
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

// --- Identity map ---

// A pair added is loaded back.
TEST_F(StateStoreTest, AddedIdentityIsLoaded) {
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
TEST_F(StateStoreTest, SecondPairForSameProdIdReplacesFirst) {
  auto store = Open();
  ASSERT_NE(store, nullptr);
  ASSERT_TRUE(store->AddIdentity(kPages, 63, 8).ok());
  ASSERT_TRUE(store->AddIdentity(kPages, 63, 9).ok());
  auto map = store->LoadIdentityMap();
  ASSERT_TRUE(map.ok()) << map.status().message();
  EXPECT_EQ(map->Pairs(kPages), (std::map<int64_t, int64_t>{{63, 9}}));
}

// A second pair for the same TEST ID replaces the first.
TEST_F(StateStoreTest, SecondPairForSameTestIdReplacesFirst) {
  auto store = Open();
  ASSERT_NE(store, nullptr);
  ASSERT_TRUE(store->AddIdentity(kPages, 63, 8).ok());
  ASSERT_TRUE(store->AddIdentity(kPages, 64, 8).ok());
  auto map = store->LoadIdentityMap();
  ASSERT_TRUE(map.ok()) << map.status().message();
  EXPECT_EQ(map->Pairs(kPages), (std::map<int64_t, int64_t>{{64, 8}}));
}

// RemoveIdentity forgets exactly the pair named.
TEST_F(StateStoreTest, RemoveIdentityForgetsPair) {
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
TEST_F(StateStoreTest, RemoveMissingIdentityIsNotAnError) {
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
TEST_F(StateStoreTest, ScanDirectBaseYieldsEqualIntegerIdsInOrder) {
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
TEST_F(StateStoreTest, ScanDirectBaseYieldsEqualTextIdsInOrder) {
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
TEST_F(StateStoreTest, FindBaseFindsMappedPair) {
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
TEST_F(StateStoreTest, BaseHashesRoundTrip) {
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

// A base with no field hashes (a record with no compared field) can be stored and read back.
TEST_F(StateStoreTest, BaseWithNoFieldHashesRoundTrips) {
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
TEST_F(StateStoreTest, PutBaseReplacesExistingPair) {
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
TEST_F(StateStoreTest, AbortBaseUpdateDiscardsWrites) {
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
TEST_F(StateStoreTest, DeleteBaseRemovesOnePair) {
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

// Base writes may run while a scan cursor is open; the cursor still finishes.
TEST_F(StateStoreTest, PutBaseWhileScanCursorIsOpen) {
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

// --- Comparisons ---

// Every field of a comparison and of its changes comes back as saved.
TEST_F(StateStoreTest, ComparisonRoundTripsEveryField) {
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
TEST_F(StateStoreTest, ChildRowJsonKeepsItsText) {
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
TEST_F(StateStoreTest, NonUtf8TextIsStoredForDisplay) {
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
TEST_F(StateStoreTest, SavingSameComparisonIdTwiceIsInvalidArgument) {
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
TEST_F(StateStoreTest, LoadUnknownComparisonIsNotFound) {
  auto store = Open();
  ASSERT_NE(store, nullptr);
  auto loaded = store->LoadComparison("no-such-comparison");
  ASSERT_FALSE(loaded.ok());
  EXPECT_TRUE(loaded.status().IsNotFound()) << loaded.status().message();
  EXPECT_NE(loaded.status().message().find("no-such-comparison"), std::string::npos);
}

// ListComparisons lists every comparison, oldest first, with its counts per tab.
TEST_F(StateStoreTest, ListComparisonsListsWithCounts) {
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
TEST_F(StateStoreTest, SyncRoundTripsRecordsAndFiles) {
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
TEST_F(StateStoreTest, SavingSyncAgainReplacesRecords) {
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
TEST_F(StateStoreTest, ListSyncsReturnsRunsWithoutRecords) {
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
TEST_F(StateStoreTest, LoadUnknownSyncIsNotFound) {
  auto store = Open();
  ASSERT_NE(store, nullptr);
  auto loaded = store->LoadSync("no-such-sync");
  ASSERT_FALSE(loaded.ok());
  EXPECT_TRUE(loaded.status().IsNotFound()) << loaded.status().message();
  EXPECT_NE(loaded.status().message().find("no-such-sync"), std::string::npos);
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
