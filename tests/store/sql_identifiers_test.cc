// SQL against the environments holds whatever TEST's content and the manifest say (SECURITY.md,
// "TEST's content as input"): values holding SQL metacharacters and injection attempts are
// compared and synced byte for byte and change nothing else; manifest identifiers that name no
// real table or column are refused, naming them, before any SQL uses them; and tables and
// columns whose real names hold metacharacters are read and written through quoting. On SQLite,
// and on PostgreSQL when scripts/with-postgres provides a server (skipped otherwise, failed on
// CI).
#include <sqlite3.h>

#include <algorithm>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "envsync/core/embedded_data.h"
#include "tests/store/pg_support.h"
#include "tests/sync/compare_test_support.h"

namespace envsync::testing {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

// Values a marketer (or whoever took over their account) can type into TEST's content.
const std::string kDropTable = "'; DROP TABLE cms_pages; --";
const std::string kOrTrue = "\" OR 1=1 --";
const std::string kBackslashes = "C:\\new\\table\\' \\\" \\\\ \\x27 \\0 E'\\n'\nline two\r\n\ttab";
const std::string kUnicode = "Zażółć gęślą jaźń — 日本語 🚀 \u202eevil\u202c e\u0301 \u00a0";
const std::string kPatterns = "100% _off_ %_% [a-z]* ?";
const std::string kPlaceholders = "$1 $2::text ?1 ?2 :name @p ? %s {}";
const std::string kDeleteOrders = "'); DELETE FROM orders; --";

// Mobile-app settings whose keys (the records' IDs) hold quotes and statements.
const std::string kQuotedSettingKey = "integrations.mobile_app.it's \"x\"; --";
const std::string kNewSettingKey = "integrations.mobile_app.x'; DROP TABLE users; --";
// Outside the filter's prefix, yet matched by LIKE 'integrations.mobile_app.%' ('_' is any one
// character there): never compared, never synced.
const std::string kLookalikeSettingKey = "integrations.mobileXapp.evil";

// A SQL string literal of `text` (SQLite, and PostgreSQL with standard_conforming_strings).
std::string Lit(const std::string& text) {
  std::string out = "'";
  for (const char c : text) {
    if (c == '\'') out += '\'';
    out += c;
  }
  return out + "'";
}

// A quoted SQL identifier.
std::string Ident(const std::string& name) {
  std::string out = "\"";
  for (const char c : name) {
    if (c == '"') out += '"';
    out += c;
  }
  return out + "\"";
}

// A TOML basic string holding `text`.
std::string Toml(const std::string& text) {
  std::string out = "\"";
  for (const char c : text) {
    if (c == '"' || c == '\\') out += '\\';
    out += c;
  }
  return out + "\"";
}

std::string Script(const std::vector<std::string>& statements) {
  std::string out;
  for (const std::string& statement : statements) out += statement + ";\n";
  return out;
}

// Every row `sql` returns from the SQLite file `db`, each value tagged with its storage class and
// text JSON-escaped: two results are equal only when the rows are byte for byte the same.
std::string Rows(const fs::path& db, const std::string& sql) {
  sqlite3* handle = nullptr;
  if (sqlite3_open_v2(db.c_str(), &handle, SQLITE_OPEN_READONLY, nullptr) != SQLITE_OK) {
    sqlite3_close(handle);
    ADD_FAILURE() << "cannot open " << db;
    return "";
  }
  sqlite3_stmt* stmt = nullptr;
  if (sqlite3_prepare_v2(handle, sql.c_str(), -1, &stmt, nullptr) != SQLITE_OK) {
    ADD_FAILURE() << sqlite3_errmsg(handle) << " in: " << sql;
    sqlite3_close(handle);
    return "";
  }
  std::string out;
  while (sqlite3_step(stmt) == SQLITE_ROW) {
    for (int i = 0; i < sqlite3_column_count(stmt); ++i) {
      switch (sqlite3_column_type(stmt, i)) {
        case SQLITE_NULL:
          out += "NULL";
          break;
        case SQLITE_INTEGER:
          out += "i:" + std::to_string(sqlite3_column_int64(stmt, i));
          break;
        default:
          out +=
              "t:" + json(std::string(reinterpret_cast<const char*>(sqlite3_column_text(stmt, i)),
                                      sqlite3_column_bytes(stmt, i)))
                         .dump();
      }
      out += " | ";
    }
    out += "\n";
  }
  sqlite3_finalize(stmt);
  sqlite3_close(handle);
  return out;
}

std::string RowsOf(const fs::path& db, const std::vector<std::string>& queries) {
  std::string out;
  for (const std::string& sql : queries) out += sql + "\n" + Rows(db, sql);
  return out;
}

// What no sync may touch: the tables no module names, the other settings, the schema.
const std::vector<std::string> kNeverSynchronized = {
    "SELECT * FROM users ORDER BY id",
    "SELECT * FROM orders ORDER BY id",
    "SELECT * FROM order_lines ORDER BY id",
    "SELECT * FROM translations ORDER BY id",
    "SELECT * FROM promotion_codes ORDER BY id",
    "SELECT * FROM system_settings WHERE substr(key, 1, 24) <> 'integrations.mobile_app.' "
    "ORDER BY key",
    "SELECT type, name, tbl_name, sql FROM sqlite_master ORDER BY name"};

// The synchronized content of the demo's tables, without cms_pages' local columns.
const std::vector<std::string> kSynchronized = {
    "SELECT id, slug, title, body_html, layout, status, hero_image_id FROM cms_pages ORDER BY id",
    "SELECT * FROM menus ORDER BY id",
    // Child rows are replaced as a whole: their IDs are the target's own.
    "SELECT menu_id, position, label, url, cms_page_id FROM menu_items ORDER BY 1, 2",
    "SELECT * FROM content_blocks ORDER BY id", "SELECT * FROM sliders ORDER BY id",
    "SELECT slider_id, position, image_id, link_url, caption FROM slides ORDER BY 1, 2",
    "SELECT * FROM gallery_folders ORDER BY id", "SELECT * FROM gallery_files ORDER BY id",
    "SELECT * FROM system_settings WHERE substr(key, 1, 24) = 'integrations.mobile_app.' "
    "ORDER BY key"};

// The number of changes a comparison lists, or -1 when the compare failed (no comparison).
int ChangeCount(const json& comparison) {
  return comparison.contains("changes") ? static_cast<int>(comparison["changes"].size()) : -1;
}

// `table:id` of every change of a comparison, with its tab.
std::map<std::string, std::string> Tabs(const json& comparison) {
  std::map<std::string, std::string> tabs;
  for (const json& change : comparison.value("changes", json::array())) {
    const json& id = change["source_id"].is_null() ? change["target_id"] : change["source_id"];
    tabs[change["table"].get<std::string>() + ":" +
         (id.is_string() ? id.get<std::string>() : id.dump())] = change["tab"];
  }
  return tabs;
}

// The field `name` of a change (null when it has none).
json Field(const json& change, const std::string& name) {
  if (!change.is_object()) return json();
  for (const json& field : change.value("fields", json::array())) {
    if (field["field"] == name) return field;
  }
  return json();
}

CliRun SyncAll(const fs::path& config, const json& comparison) {
  return RunCli({"--config", config.string(), "sync",
                 comparison.value("comparison_id", std::string("none")), "--json"});
}

// Hostile rows that both sides hold before the base is recorded.
std::string CommonRows() {
  return Script({
      "INSERT INTO cms_pages (id, slug, title, body_html, status, updated_at) VALUES (901, " +
          Lit(kDropTable) + ", " + Lit(kOrTrue) + ", " + Lit(kBackslashes) +
          ", 'published', '2024-01-01T00:00:00Z'), (902, '100%_off', 'Sale', '<p>sale</p>', "
          "'published', '2024-01-01T00:00:00Z')",
      "INSERT INTO system_settings (key, value) VALUES (" + Lit(kQuotedSettingKey) +
          ", '{\"a\":1}')",
  });
}

const std::string kQuotedSettingValue =
    json{{"t", kOrTrue}, {"p", kBackslashes}, {"u", kUnicode}}.dump();
const std::string kNewSettingValue = json{{"u", kUnicode}, {"s", kDropTable}}.dump();

// TEST's edits writing, inserting and deleting hostile values in every kind of record, then
// edits no sync may carry.
std::string TestEdits() {
  return Script({
      "UPDATE cms_pages SET title = " + Lit(kDropTable) + ", body_html = " + Lit(kBackslashes) +
          " WHERE id = 1",
      "UPDATE cms_pages SET title = " + Lit(kUnicode) + " WHERE id = 902",
      // LIKE would take 'hom%' and 'hom_' for 'home' and call them key clashes.
      "INSERT INTO cms_pages (id, slug, title, body_html, status, updated_at) VALUES (910, " +
          Lit(kOrTrue) + ", " + Lit(kPlaceholders) + ", " + Lit(kPatterns) +
          ", 'published', '2024-02-01T00:00:00Z'), (911, 'hom%', " + Lit(kPatterns) + ", " +
          Lit(kUnicode) + ", 'draft', '2024-02-01T00:00:00Z'), (912, 'hom_', " +
          Lit(kDeleteOrders) + ", " + Lit(kOrTrue) + ", 'draft', '2024-02-01T00:00:00Z')",
      "DELETE FROM cms_pages WHERE id = 901",
      "UPDATE menu_items SET label = " + Lit(kDeleteOrders) +
          ", url = " + Lit("javascript:alert('x')") + " WHERE id = 1",
      "UPDATE content_blocks SET html = " + Lit(kPlaceholders + "</script><script>" + kDropTable) +
          " WHERE id = 1",
      "UPDATE system_settings SET value = " + Lit(kQuotedSettingValue) +
          " WHERE key = " + Lit(kQuotedSettingKey),
      // Never synchronized: outside the filter, or in tables no module names.
      "INSERT INTO system_settings (key, value) VALUES (" + Lit(kLookalikeSettingKey) + ", " +
          Lit(kDropTable) + ")",
      "UPDATE system_settings SET value = " + Lit(kDeleteOrders) +
          " WHERE key = 'payments.provider'",
      "UPDATE users SET name = " + Lit(kOrTrue),
  });
}

// TEST's new mobile-app setting, whose key (its ID) holds a statement.
std::string NewSettingEdit() {
  return Script({"INSERT INTO system_settings (key, value) VALUES (" + Lit(kNewSettingKey) + ", " +
                 Lit(kNewSettingValue) + ")"});
}

// What TestEdits make a TEST -> PROD comparison list, and nothing else.
const std::map<std::string, std::string> kEditedTabs = {
    {"cms_pages:1", "modified"},
    {"cms_pages:902", "modified"},
    {"menus:1", "modified"},
    {"content_blocks:1", "modified"},
    {"system_settings:" + kQuotedSettingKey, "modified"},
    {"cms_pages:910", "new"},
    {"cms_pages:911", "new"},
    {"cms_pages:912", "new"},
    {"cms_pages:901", "deleted"}};

const json kEditedApplied = {{"new", 3}, {"modified", 5}, {"deleted", 1}};

// The demo's common state plus CommonRows on both sides, compared once (the base recorded),
// then TestEdits and NewSettingEdit on TEST.
class SqlValuesTest : public DemoEnvironments {
 protected:
  void SetUp() override {
    DemoEnvironments::SetUp();
    Build(Start::kCommonNoBase);
    Prod(CommonRows());
    Test(CommonRows());
    const json baseline = CompareJson({"--from", "TEST", "--to", "PROD"});
    ASSERT_EQ(ChangeCount(baseline), 0) << baseline.dump();
    Test(TestEdits() + NewSettingEdit());
  }
};

// Values full of SQL are listed and written exactly as TEST holds them, PROD ends equal to TEST
// in every synchronized table, and nothing else in PROD (nor TEST) moves.
TEST_F(SqlValuesTest, ValuesWithSqlMetacharactersAreComparedAndSyncedByteExact) {
  const std::string untouched = RowsOf(paths_.prod_db, kNeverSynchronized);
  const std::string test_before = ReadBytes(paths_.test_db);
  const json comparison = CompareJson({"--from", "TEST", "--to", "PROD"});
  ASSERT_NE(ChangeCount(comparison), -1);
  std::map<std::string, std::string> tabs = kEditedTabs;
  tabs["system_settings:" + kNewSettingKey] = "new";
  EXPECT_EQ(Tabs(comparison), tabs);
  const json home = FindChange(comparison, "cms_pages", 1);
  EXPECT_EQ(Field(home, "title")["source"], kDropTable);
  EXPECT_EQ(Field(home, "title")["target"], "Welcome to our shop");
  EXPECT_EQ(Field(home, "body_html")["source"], kBackslashes);
  EXPECT_EQ(Field(FindChange(comparison, "cms_pages", 902), "title")["source"], kUnicode);
  const json added = FindChange(comparison, "cms_pages", 910);
  EXPECT_EQ(added["key"], kOrTrue);
  EXPECT_EQ(Field(added, "title")["source"], kPlaceholders);
  EXPECT_EQ(Field(added, "body_html")["source"], kPatterns);
  EXPECT_EQ(FindChange(comparison, "system_settings", kNewSettingKey)["key"], kNewSettingKey);
  EXPECT_EQ(Field(FindChange(comparison, "system_settings", kQuotedSettingKey), "value")["source"],
            kQuotedSettingValue);
  EXPECT_EQ(FindChange(comparison, "cms_pages", 901)["key"], kDropTable);

  const CliRun synced = SyncAll(paths_.config, comparison);
  ASSERT_EQ(synced.exit_code, 0) << synced.err << synced.out;
  EXPECT_EQ(synced.Json()["status"], "success") << synced.out;
  EXPECT_EQ(synced.Json()["applied"], (json{{"new", 4}, {"modified", 5}, {"deleted", 1}}));

  EXPECT_EQ(RowsOf(paths_.prod_db, kSynchronized), RowsOf(paths_.test_db, kSynchronized));
  EXPECT_EQ(Rows(paths_.prod_db, "SELECT count(*) FROM cms_pages WHERE title = " + Lit(kDropTable) +
                                     " AND body_html = " + Lit(kBackslashes)),
            "i:1 | \n");
  EXPECT_EQ(RowsOf(paths_.prod_db, kNeverSynchronized), untouched);
  EXPECT_EQ(ReadBytes(paths_.test_db), test_before) << "a sync never writes its source";
  EXPECT_EQ(ChangeCount(CompareJson({"--from", "TEST", "--to", "PROD"})), 0);
}

// '%' and '_' mean themselves: a key like the filter's prefix but for one character is not a
// mobile-app setting, and slugs 'hom%' and 'hom_' are new pages, not clashes with 'home'.
TEST_F(SqlValuesTest, PercentAndUnderscoreAreLiteralInFiltersAndKeys) {
  const json comparison = CompareJson({"--from", "TEST", "--to", "PROD"});
  ASSERT_NE(ChangeCount(comparison), -1);
  EXPECT_TRUE(FindChange(comparison, "system_settings", kLookalikeSettingKey).is_null());
  for (const int id : {911, 912}) {
    const json change = FindChange(comparison, "cms_pages", id);
    EXPECT_EQ(change["tab"], "new") << change.dump();
    EXPECT_TRUE(change["conflict"].is_null()) << change.dump();
  }
  const CliRun synced = SyncAll(paths_.config, comparison);
  ASSERT_EQ(synced.exit_code, 0) << synced.err << synced.out;
  EXPECT_EQ(Rows(paths_.prod_db,
                 "SELECT count(*) FROM system_settings WHERE key = " + Lit(kLookalikeSettingKey)),
            "i:0 | \n");
  EXPECT_EQ(Rows(paths_.prod_db, "SELECT slug FROM cms_pages WHERE slug LIKE 'hom%' ORDER BY id"),
            "t:\"home\" | \nt:\"hom%\" | \nt:\"hom_\" | \n");
}

// The demo, with its config naming a manifest of the test's own.
class ManifestTestBase : public DemoEnvironments {
 protected:
  void UseManifest(const std::string& text) {
    manifest_ = dir_ / "modules.toml";
    WriteBytes(manifest_, text);
    WriteBytes(paths_.config,
               "manifest = " + Toml(manifest_.string()) + "\n" + ReadBytes(paths_.config));
  }

  // The built-in manifest with `find` replaced by `replace`.
  static std::string Edited(const std::string& find, const std::string& replace) {
    std::string manifest = EmbeddedManifest();
    const size_t at = manifest.find(find);
    EXPECT_NE(at, std::string::npos) << find;
    if (at != std::string::npos) manifest.replace(at, find.size(), replace);
    return manifest;
  }

  fs::path manifest_;
};

// Where a bad identifier goes in the built-in manifest.
struct BadIdentifier {
  std::string name;        // the test's name
  std::string find;        // text of data/modules.toml to replace
  std::string replace;     // what replaces it
  std::string identifier;  // the identifier the error must name
};

void PrintTo(const BadIdentifier& bad, std::ostream* out) { *out << bad.name; }

// Identifiers with a quote, a semicolon, a comment or a space, in every place of a manifest that
// names a table or column.
const std::vector<BadIdentifier> kBadIdentifiers = {
    {"RootTableWithQuoteAndStatement", "name = \"content_blocks\"\n  id",
     "name = " + Toml("content_blocks\"; DROP TABLE users; --") + "\n  id",
     "content_blocks\"; DROP TABLE users; --"},
    {"IdColumnWithQuote", "id = \"key\"", "id = " + Toml("key\"--"), "key\"--"},
    {"KeyColumnWithQuoteAndStatement", "key = [\"slug\"]",
     "key = [" + Toml("slug\" FROM cms_pages; DROP TABLE users; --") + "]",
     "slug\" FROM cms_pages; DROP TABLE users; --"},
    {"LocalColumnWithSingleQuote", "\"updated_at\"]", Toml("updated_at' OR '1'='1") + "]",
     "updated_at' OR '1'='1"},
    {"ReferenceColumnWithSpace", "{ hero_image_id = \"gallery_files\" }",
     "{ \"hero image_id\" = \"gallery_files\" }", "hero image_id"},
    {"FilterColumnWithSemicolon", "column = \"key\"",
     "column = " + Toml("key; DELETE FROM system_settings"), "key; DELETE FROM system_settings"},
    {"FolderPathWithComment", "folder_path = \"path\"", "folder_path = " + Toml("path -- x"),
     "path -- x"},
    {"AssetFileColumnWithQuote", "file = \"file_name\"", "file = " + Toml("file_name'; --"),
     "file_name'; --"},
    {"ChildTableWithComment", "table = \"menu_items\"", "table = " + Toml("menu_items -- "),
     "menu_items -- "},
    {"ChildParentWithQuote", "parent = \"slider_id\"", "parent = " + Toml("slider_id\" OR 1=1 --"),
     "slider_id\" OR 1=1 --"},
    {"ChildOrderWithSemicolon", "order = [\"position\"]",
     "order = [" + Toml("position; DROP TABLE slides") + "]", "position; DROP TABLE slides"},
};

class ManifestIdentifierTest : public ManifestTestBase,
                               public ::testing::WithParamInterface<BadIdentifier> {
 protected:
  void SetUp() override {
    DemoEnvironments::SetUp();
    Build(Start::kPendingWork);
  }
};

// A manifest naming a table or column that holds SQL is refused by the check against the real
// schema, naming the identifier and the environment, not by a database choking on it; neither
// side is written.
TEST_P(ManifestIdentifierTest, RefusedBeforeAnySqlNamingTheIdentifier) {
  const BadIdentifier& bad = GetParam();
  const std::string prod = ReadBytes(paths_.prod_db);
  const std::string test = ReadBytes(paths_.test_db);
  UseManifest(Edited(bad.find, bad.replace));
  const CliRun run = Compare({"--from", "TEST", "--to", "PROD"});
  EXPECT_NE(run.exit_code, 0);
  EXPECT_TRUE(run.out.empty()) << run.out;
  EXPECT_EQ(std::count(run.err.begin(), run.err.end(), '\n'), 1) << run.err;
  EXPECT_NE(run.err.find(bad.identifier + "'"), std::string::npos) << run.err;
  EXPECT_NE(run.err.find("TEST"), std::string::npos) << "names the environment: " << run.err;
  for (const char* from_sql : {"syntax error", "no such", "preparing", "has no column"}) {
    EXPECT_EQ(run.err.find(from_sql), std::string::npos) << run.err;
  }
  EXPECT_EQ(ReadBytes(paths_.prod_db), prod);
  EXPECT_EQ(ReadBytes(paths_.test_db), test);
}

INSTANTIATE_TEST_SUITE_P(Places, ManifestIdentifierTest, ::testing::ValuesIn(kBadIdentifiers),
                         [](const ::testing::TestParamInfo<BadIdentifier>& info) {
                           return info.param.name;
                         });

class ChangedManifestTest : public ManifestTestBase {
 protected:
  void SetUp() override {
    DemoEnvironments::SetUp();
    Build(Start::kPendingWork);
  }
};

// `sync` runs a stored comparison under the manifest of the moment: one changed since the
// compare to name a column that holds SQL fails the sync, naming the column, and PROD is left
// exactly as it was (the identifier is quoted, the transaction rolled back).
TEST_F(ChangedManifestTest, SyncUnderAManifestNamingAColumnWithSqlWritesNothing) {
  const json comparison = CompareJson({"--from", "TEST", "--to", "PROD"});
  ASSERT_GT(ChangeCount(comparison), 0);
  const std::string prod = ReadBytes(paths_.prod_db);
  const std::string column = "x\"; DROP TABLE users; --";
  UseManifest(Edited("\"updated_at\"]", "\"updated_at\", " + Toml(column) + "]"));
  const CliRun run = SyncAll(paths_.config, comparison);
  EXPECT_NE(run.exit_code, 0) << run.out;
  const std::string said = run.out.empty() ? run.err : run.Json().value("error", "");
  EXPECT_NE(said.find(column), std::string::npos) << run.out << run.err;
  EXPECT_EQ(ReadBytes(paths_.prod_db), prod);
  EXPECT_EQ(Rows(paths_.prod_db, "SELECT count(*) FROM users"), "i:3 | \n");
}

// A module whose table and columns, in the real schema, are named with SQL.
const std::string kOddTable = "odd \"notes\"; DROP TABLE users; --";
const std::string kOddId = "row id";
const std::string kOddKey = "key'; --";
const std::string kOddValue = "val ue\" OR 1=1";
const std::string kOddLocal = "100%_local";
const std::string kOddChild = "odd lines; --";
const std::string kOddChildId = "line;id";
const std::string kOddParent = "note\"id";
const std::string kOddOrder = "pos-ition";
const std::string kOddText = "text'";

// The built-in manifest plus module `odd`, which names those.
std::string OddManifest() {
  return std::string(EmbeddedManifest()) + "\n[[module]]\nname = \"odd\"\n\n  [[module.table]]\n" +
         "  name = " + Toml(kOddTable) + "\n  id = " + Toml(kOddId) + "\n  key = [" +
         Toml(kOddKey) + "]\n  local = [" + Toml(kOddLocal) + "]\n\n" +
         "    [[module.table.children]]\n    table = " + Toml(kOddChild) +
         "\n    id = " + Toml(kOddChildId) + "\n    parent = " + Toml(kOddParent) +
         "\n    order = [" + Toml(kOddOrder) + "]\n";
}

// The odd tables; `id_type` is the engine's auto-increment integer key.
std::string OddSchema(const std::string& id_type, const std::string& integer) {
  return Script({
      "CREATE TABLE " + Ident(kOddTable) + " (" + Ident(kOddId) + " " + id_type + ", " +
          Ident(kOddKey) + " TEXT NOT NULL UNIQUE, " + Ident(kOddValue) + " TEXT, " +
          Ident(kOddLocal) + " " + integer + ")",
      "CREATE TABLE " + Ident(kOddChild) + " (" + Ident(kOddChildId) + " " + id_type + ", " +
          Ident(kOddParent) + " " + integer + " NOT NULL REFERENCES " + Ident(kOddTable) + " (" +
          Ident(kOddId) + ") ON DELETE CASCADE, " + Ident(kOddOrder) + " " + integer +
          " NOT NULL, " + Ident(kOddText) + " TEXT)",
  });
}

// Rows on both sides; only the local column differs, which is no change.
std::string OddRows(int local) {
  const std::string l = std::to_string(local);
  return Script({
      "INSERT INTO " + Ident(kOddTable) + " VALUES (1, 'a', 'one', " + l + "), (2, 'b', 'two', " +
          l + "), (3, 'c', 'three', " + l + ")",
      "INSERT INTO " + Ident(kOddChild) + " VALUES (1, 1, 1, 'x'), (2, 1, 2, 'y'), (3, 3, 1, 'z')",
  });
}

// TEST's edits: a root row and a child row modified, a record inserted, one deleted.
std::string OddEdits() {
  return Script({
      "UPDATE " + Ident(kOddTable) + " SET " + Ident(kOddValue) + " = " + Lit(kDropTable) +
          " WHERE " + Ident(kOddId) + " = 1",
      "UPDATE " + Ident(kOddChild) + " SET " + Ident(kOddText) + " = " + Lit(kBackslashes) +
          " WHERE " + Ident(kOddChildId) + " = 3",
      "INSERT INTO " + Ident(kOddTable) + " VALUES (4, " + Lit(kOrTrue) + ", " + Lit(kUnicode) +
          ", 7)",
      "INSERT INTO " + Ident(kOddChild) + " VALUES (4, 4, 1, " + Lit(kDeleteOrders) + ")",
      "DELETE FROM " + Ident(kOddTable) + " WHERE " + Ident(kOddId) + " = 2",
  });
}

const std::map<std::string, std::string> kOddTabs = {{kOddTable + ":1", "modified"},
                                                     {kOddTable + ":3", "modified"},
                                                     {kOddTable + ":4", "new"},
                                                     {kOddTable + ":2", "deleted"}};

const json kOddApplied = {{"new", 1}, {"modified", 2}, {"deleted", 1}};

// The odd tables' synchronized content on SQLite.
const std::vector<std::string> kOddQueries = {
    "SELECT " + Ident(kOddId) + ", " + Ident(kOddKey) + ", " + Ident(kOddValue) + " FROM " +
        Ident(kOddTable) + " ORDER BY 1",
    "SELECT " + Ident(kOddParent) + ", " + Ident(kOddOrder) + ", " + Ident(kOddText) + " FROM " +
        Ident(kOddChild) + " ORDER BY 1, 2"};

// The demo's common state with the odd tables on both sides, under a manifest naming them.
class QuotedIdentifierTest : public ManifestTestBase {
 protected:
  void SetUp() override {
    DemoEnvironments::SetUp();
    Build(Start::kCommonNoBase);
    Prod(OddSchema("INTEGER PRIMARY KEY", "INTEGER") + OddRows(99));
    Test(OddSchema("INTEGER PRIMARY KEY", "INTEGER") + OddRows(1));
    UseManifest(OddManifest());
    const json baseline = CompareJson({"--from", "TEST", "--to", "PROD"});
    ASSERT_EQ(ChangeCount(baseline), 0) << baseline.dump();
    Test(OddEdits());
  }
};

// A table and columns whose real names hold quotes, semicolons, comments and spaces are
// compared and synced through quoting: every kind of change lands, PROD's local column stays,
// and no other table moves.
TEST_F(QuotedIdentifierTest, TablesAndColumnsNamedWithSqlAreSyncedThroughQuoting) {
  const std::string untouched = RowsOf(paths_.prod_db, kNeverSynchronized);
  const json comparison = CompareJson({"--from", "TEST", "--to", "PROD"});
  ASSERT_NE(ChangeCount(comparison), -1);
  EXPECT_EQ(Tabs(comparison), kOddTabs);
  EXPECT_EQ(Field(FindChange(comparison, kOddTable, 1), kOddValue)["source"], kDropTable);
  EXPECT_EQ(FindChange(comparison, kOddTable, 4)["key"], kOrTrue);
  const CliRun synced = SyncAll(paths_.config, comparison);
  ASSERT_EQ(synced.exit_code, 0) << synced.err << synced.out;
  EXPECT_EQ(synced.Json()["applied"], kOddApplied);

  EXPECT_EQ(RowsOf(paths_.prod_db, kOddQueries), RowsOf(paths_.test_db, kOddQueries));
  EXPECT_EQ(Rows(paths_.prod_db, "SELECT " + Ident(kOddLocal) + " FROM " + Ident(kOddTable) +
                                     " WHERE " + Ident(kOddId) + " IN (1, 3) ORDER BY 1"),
            "i:99 | \ni:99 | \n")
      << "a local column is never overwritten";
  EXPECT_EQ(RowsOf(paths_.prod_db, kNeverSynchronized), untouched);
  EXPECT_EQ(ChangeCount(CompareJson({"--from", "TEST", "--to", "PROD"})), 0);
}

// --- PostgreSQL ---

// The same on PostgreSQL: environments copied from the demo's SQLite files into new databases
// on the test server, dropped afterwards.
class PostgresSqlTest : public DemoEnvironments {
 protected:
  void SetUp() override {
    DemoEnvironments::SetUp();
    ENVSYNC_REQUIRE_POSTGRES();
    static int counter = 0;
    prefix_ = "envsync_sql_" + std::to_string(::getpid()) + "_" + std::to_string(counter++);
  }
  void TearDown() override {
    for (const std::string& db : created_) DropPostgresDatabase(db);
    DemoEnvironments::TearDown();
  }

  std::string CopyToPostgres(const fs::path& from, const std::string& name) {
    created_.push_back(prefix_ + "_" + name);
    return CopySqliteToPostgres(from, created_.back());
  }

  // A config for PROD and TEST at `prod` and `test`, with its own copy of the demo's state as it
  // is now and, when given, a manifest.
  fs::path Config(const std::string& name, const std::string& prod, const std::string& test,
                  const std::string& manifest = "") {
    const fs::path state = dir_ / (name + "-state.db");
    if (fs::exists(paths_.state)) fs::copy_file(paths_.state, state);
    std::string text;
    if (!manifest.empty()) {
      const fs::path manifest_path = dir_ / (name + "-modules.toml");
      WriteBytes(manifest_path, manifest);
      text += "manifest = " + Toml(manifest_path.string()) + "\n";
    }
    text += "home = \"PROD\"\nstate = " + Toml(state.string()) +
            "\n[environments.PROD]\ndatabase = " + Toml(prod) +
            "\nassets = " + Toml(paths_.prod_assets.string()) +
            "\n[environments.TEST]\ndatabase = " + Toml(test) +
            "\nassets = " + Toml(paths_.test_assets.string()) + "\n";
    const fs::path config = dir_ / (name + ".toml");
    WriteBytes(config, text);
    return config;
  }

  // A TEST -> PROD comparison under `config`, without what differs from run to run.
  static json CompareOn(const fs::path& config) {
    const CliRun run = RunCli(
        {"--config", config.string(), "compare", "--from", "TEST", "--to", "PROD", "--json"});
    EXPECT_EQ(run.exit_code, 0) << run.err;
    if (run.exit_code != 0) return json::object();
    json comparison = run.Json();
    comparison.erase("created_at");
    return comparison;
  }

  // Each row of `table` as JSON text, ordered by `order`, without the columns `without`.
  static std::string PgRows(Pg& pg, const std::string& table, const std::string& order,
                            const std::vector<std::string>& without = {}) {
    std::string row = "to_jsonb(r)";
    for (size_t i = 0; i < without.size(); ++i) row += " - $" + std::to_string(i + 1) + "::text";
    return pg.Run("SELECT coalesce(string_agg((" + row + ")::text, E'\\n' ORDER BY " + order +
                      "), '') FROM " + table + " r",
                  without);
  }

  static std::string PgSettings(Pg& pg, const std::string& op) {
    return pg.Run(
        "SELECT coalesce(string_agg(to_jsonb(s)::text, E'\\n' ORDER BY key COLLATE "
        "\"C\"), '') FROM system_settings s WHERE substr(key, 1, 24) " +
        op + " 'integrations.mobile_app.'");
  }

  // What no sync may touch: the tables no module names, the other settings, the schema.
  static std::string PgUntouched(Pg& pg) {
    std::string out;
    for (const char* table : {"users", "orders", "order_lines", "translations", "promotion_codes"})
      out += PgRows(pg, table, "r.id");
    return out + PgSettings(pg, "<>") +
           pg.Run(
               "SELECT string_agg(table_name || '.' || column_name, ',' ORDER BY table_name, "
               "column_name) FROM information_schema.columns WHERE table_schema = 'public'");
  }

  // The synchronized content SqlValuesTest's edits touch.
  static std::string PgSynchronized(Pg& pg) {
    return PgRows(pg, "cms_pages", "r.id", {"updated_at", "updated_by"}) +
           PgRows(pg, "menus", "r.id") + PgRows(pg, "menu_items", "r.menu_id, r.position", {"id"}) +
           PgRows(pg, "content_blocks", "r.id") + PgSettings(pg, "=");
  }

  std::string prefix_;
  std::vector<std::string> created_;
};

// Hostile values give the same comparison on PostgreSQL as on SQLite, and a sync into
// PostgreSQL writes them byte for byte and nothing else.
TEST_F(PostgresSqlTest, ValuesWithSqlMetacharactersRoundTripThroughPostgres) {
  Build(Start::kCommonNoBase);
  Prod(CommonRows());
  Test(CommonRows());
  ASSERT_EQ(ChangeCount(CompareJson({"--from", "TEST", "--to", "PROD"})), 0);
  Test(TestEdits());
  const std::string prod_pg = CopyToPostgres(paths_.prod_db, "prod");
  const std::string test_pg = CopyToPostgres(paths_.test_db, "test");
  const fs::path on_pg = Config("pg", prod_pg, test_pg);
  const fs::path on_sqlite = Config("sqlite", paths_.prod_db.string(), paths_.test_db.string());
  Pg prod(prod_pg);
  Pg test(test_pg);
  const std::string untouched = PgUntouched(prod);

  json comparison = CompareOn(on_pg);
  EXPECT_EQ(Tabs(comparison), kEditedTabs);
  json on_sqlite_comparison = CompareOn(on_sqlite);
  on_sqlite_comparison.erase("comparison_id");
  const CliRun synced = SyncAll(on_pg, comparison);
  comparison.erase("comparison_id");
  EXPECT_EQ(comparison, on_sqlite_comparison);
  ASSERT_EQ(synced.exit_code, 0) << synced.err << synced.out;
  EXPECT_EQ(synced.Json()["applied"], kEditedApplied);

  EXPECT_EQ(PgSynchronized(prod), PgSynchronized(test));
  EXPECT_EQ(prod.Run("SELECT count(*) FROM cms_pages WHERE id = 1 AND title = $1 AND "
                     "body_html = $2",
                     {kDropTable, kBackslashes}),
            "1|\n");
  EXPECT_EQ(prod.Run("SELECT title FROM cms_pages WHERE slug = $1", {kOrTrue}),
            kPlaceholders + "|\n");
  EXPECT_EQ(prod.Run("SELECT count(*) FROM system_settings WHERE key = $1", {kLookalikeSettingKey}),
            "0|\n");
  EXPECT_EQ(PgUntouched(prod), untouched);
  EXPECT_EQ(ChangeCount(CompareOn(on_pg)), 0);
}

// A new mobile-app setting (a record whose ID is text, here holding a statement) is inserted
// into PostgreSQL as it is: the sync commits, and the row is TEST's byte for byte.
TEST_F(PostgresSqlTest, NewRecordWithATextIdIsInsertedIntoPostgres) {
  Build(Start::kCommonNoBase);
  ASSERT_EQ(ChangeCount(CompareJson({"--from", "TEST", "--to", "PROD"})), 0);
  Test(NewSettingEdit());
  const std::string prod_pg = CopyToPostgres(paths_.prod_db, "prod");
  const std::string test_pg = CopyToPostgres(paths_.test_db, "test");
  const fs::path config = Config("pg", prod_pg, test_pg);
  Pg prod(prod_pg);
  const std::string untouched = PgUntouched(prod);

  const json comparison = CompareOn(config);
  EXPECT_EQ(Tabs(comparison),
            (std::map<std::string, std::string>{{"system_settings:" + kNewSettingKey, "new"}}));
  const CliRun synced = SyncAll(config, comparison);
  ASSERT_EQ(synced.exit_code, 0) << synced.err << synced.out;
  EXPECT_EQ(synced.Json()["applied"], (json{{"new", 1}, {"modified", 0}, {"deleted", 0}}));
  EXPECT_EQ(prod.Run("SELECT value FROM system_settings WHERE key = $1", {kNewSettingKey}),
            kNewSettingValue + "|\n");
  EXPECT_EQ(PgUntouched(prod), untouched);
  EXPECT_EQ(ChangeCount(CompareOn(config)), 0);
}

// A table and columns whose real names hold SQL, on PostgreSQL: compared and synced through
// quoting, and the identity sequence moved past the inserted ID.
TEST_F(PostgresSqlTest, TablesAndColumnsNamedWithSqlAreSyncedThroughQuoting) {
  Build(Start::kCommonNoBase);
  const std::string prod_pg = CopyToPostgres(paths_.prod_db, "prod");
  const std::string test_pg = CopyToPostgres(paths_.test_db, "test");
  Pg prod(prod_pg);
  Pg test(test_pg);
  const std::string schema =
      OddSchema("BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY", "BIGINT");
  // The platform's sequences stand past the rows it holds.
  const std::string sequences =
      Script({"SELECT setval(pg_get_serial_sequence(" + Lit(Ident(kOddTable)) + ", " + Lit(kOddId) +
                  "), 3)",
              "SELECT setval(pg_get_serial_sequence(" + Lit(Ident(kOddChild)) + ", " +
                  Lit(kOddChildId) + "), 3)"});
  prod.Run(schema + OddRows(99) + sequences);
  test.Run(schema + OddRows(1) + sequences);
  const fs::path config = Config("pg", prod_pg, test_pg, OddManifest());
  ASSERT_EQ(ChangeCount(CompareOn(config)), 0);
  test.Run(OddEdits());
  const std::string untouched = PgUntouched(prod);

  const json comparison = CompareOn(config);
  ASSERT_NE(ChangeCount(comparison), -1);
  EXPECT_EQ(Tabs(comparison), kOddTabs);
  EXPECT_EQ(Field(FindChange(comparison, kOddTable, 1), kOddValue)["source"], kDropTable);
  const CliRun synced = SyncAll(config, comparison);
  ASSERT_EQ(synced.exit_code, 0) << synced.err << synced.out;
  EXPECT_EQ(synced.Json()["applied"], kOddApplied);

  const std::string id = "r." + Ident(kOddId);
  EXPECT_EQ(PgRows(prod, Ident(kOddTable), id, {kOddLocal}),
            PgRows(test, Ident(kOddTable), id, {kOddLocal}));
  const std::string child_order = "r." + Ident(kOddParent) + ", r." + Ident(kOddOrder);
  EXPECT_EQ(PgRows(prod, Ident(kOddChild), child_order, {kOddChildId}),
            PgRows(test, Ident(kOddChild), child_order, {kOddChildId}));
  EXPECT_EQ(prod.Run("SELECT " + Ident(kOddLocal) + " FROM " + Ident(kOddTable) + " WHERE " +
                     Ident(kOddId) + " IN (1, 3) ORDER BY 1"),
            "99|\n99|\n");
  EXPECT_EQ(PgUntouched(prod), untouched);
  const std::string next = prod.Run("INSERT INTO " + Ident(kOddTable) + " (" + Ident(kOddKey) +
                                    ") VALUES ('platform') RETURNING " + Ident(kOddId));
  ASSERT_FALSE(next.empty()) << "the platform's next insert collided with a synced ID";
  EXPECT_GT(std::stoll(next), 4);
}

}  // namespace
}  // namespace envsync::testing
