// Integration tests of `envsync sync`, `undo` and `history` on real SQLite environments: the CLI
// runs in-process against the demo's PROD and TEST, and the tests read the databases and the
// assets folders themselves (SYNC-SEMANTICS §4, §5, §7).
#include <openssl/evp.h>

#include <algorithm>
#include <cstdio>
#include <functional>
#include <map>
#include <set>

#include "envsync/core/embedded_data.h"
#include "envsync/store/state_store.h"
#include "tests/store/pg_support.h"
#include "tests/sync/compare_test_support.h"

namespace envsync::testing {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

// Lowercase hex SHA-256 of a string of bytes.
std::string Sha256Hex(const std::string& bytes) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_Digest(bytes.data(), bytes.size(), md, &len, EVP_sha256(), nullptr);
  std::string hex;
  char two[3];
  for (unsigned int i = 0; i < len; ++i) {
    std::snprintf(two, sizeof(two), "%02x", md[i]);
    hex += two;
  }
  return hex;
}

// Every row `sql` returns, one line per row, each value tagged with its SQLite storage class so
// that two dumps are equal only when the rows are byte-for-byte the same.
std::string Dump(const fs::path& db_path, const std::string& sql) {
  sqlite3* db = nullptr;
  if (sqlite3_open_v2(db_path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr) != SQLITE_OK) {
    sqlite3_close(db);
    ADD_FAILURE() << "cannot open " << db_path;
    return "";
  }
  sqlite3_stmt* stmt = nullptr;
  if (sqlite3_prepare_v2(db, sql.c_str(), -1, &stmt, nullptr) != SQLITE_OK) {
    ADD_FAILURE() << sqlite3_errmsg(db) << " in: " << sql;
    sqlite3_close(db);
    return "";
  }
  std::string out;
  int rc = SQLITE_ROW;
  while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
    for (int i = 0; i < sqlite3_column_count(stmt); ++i) {
      if (i > 0) out += " | ";
      switch (sqlite3_column_type(stmt, i)) {
        case SQLITE_NULL:
          out += "NULL";
          break;
        case SQLITE_INTEGER:
          out += "i:" + std::to_string(sqlite3_column_int64(stmt, i));
          break;
        case SQLITE_FLOAT: {
          char buffer[40];
          std::snprintf(buffer, sizeof(buffer), "f:%.17g", sqlite3_column_double(stmt, i));
          out += buffer;
          break;
        }
        case SQLITE_TEXT:
          out +=
              "t:" + json(std::string(reinterpret_cast<const char*>(sqlite3_column_text(stmt, i)),
                                      sqlite3_column_bytes(stmt, i)))
                         .dump();
          break;
        default: {
          const auto* blob = static_cast<const unsigned char*>(sqlite3_column_blob(stmt, i));
          out += "b:" + Sha256Hex(std::string(reinterpret_cast<const char*>(blob),
                                              sqlite3_column_bytes(stmt, i)));
          break;
        }
      }
    }
    out += "\n";
  }
  if (rc != SQLITE_DONE) ADD_FAILURE() << sqlite3_errmsg(db) << " in: " << sql;
  sqlite3_finalize(stmt);
  sqlite3_close(db);
  return out;
}

// The first value of the first row `sql` returns, as text ("NULL" for NULL, "" for no row).
std::string Scalar(const fs::path& db_path, const std::string& sql) {
  std::string dump = Dump(db_path, sql);
  const size_t end = dump.find('\n');
  if (end == std::string::npos) return "";
  std::string first = dump.substr(0, end);
  first = first.substr(0, first.find(" | "));
  if (first.rfind("t:", 0) == 0) return json::parse(first.substr(2)).get<std::string>();
  if (first.rfind("i:", 0) == 0) return first.substr(2);
  return first;
}

// Every entry under `root` (directories too, when asked) with the SHA-256 of each file.
std::string AssetTree(const fs::path& root, bool with_directories) {
  std::map<std::string, std::string> entries;
  for (const auto& entry : fs::recursive_directory_iterator(root)) {
    const std::string relative = fs::relative(entry.path(), root).string();
    if (entry.is_regular_file()) {
      entries[relative] = Sha256Hex(ReadBytes(entry.path()));
    } else if (with_directories) {
      entries[relative + "/"] = "dir";
    }
  }
  std::string out;
  for (const auto& [path, hash] : entries) out += path + " " + hash + "\n";
  return out;
}

// A record's `T:ID` as the CLI names it: root table and source ID (target ID for deletions).
std::string RefOf(const json& change) {
  const json& id = change["source_id"].is_null() ? change["target_id"] : change["source_id"];
  return change["table"].get<std::string>() + ":" +
         (id.is_string() ? id.get<std::string>() : id.dump());
}

// The `T:ID` of every record a comparison lists (only the unselected ones, when asked).
std::set<std::string> Refs(const json& comparison, bool only_unselected = false) {
  std::set<std::string> refs;
  for (const json& change : comparison["changes"]) {
    if (only_unselected && change["selected"].get<bool>()) continue;
    refs.insert(RefOf(change));
  }
  return refs;
}

// The synchronized tables, as `undo` must put them back.
const std::vector<std::string> kSynchronizedTables = {
    "cms_pages", "gallery_folders", "gallery_files",  "menus",          "menu_items",
    "sliders",   "slides",          "content_blocks", "system_settings"};

// The tables no sync may ever read or write (plus the non-mobile-app settings).
const std::vector<std::string> kNeverSynchronizedTables = {
    "users",  "translations",  "promotion_codes", "campaigns",
    "titles", "payment_types", "delivery_types",  "seo_settings",
    "orders", "order_lines",   "reviews",         "beauty_advisor_profiles"};

class SyncTest : public DemoEnvironments {
 protected:
  // Compares TEST -> PROD and returns the comparison.
  json CompareTestToProd() { return CompareJson({"--from", "TEST", "--to", "PROD"}); }

  // Runs `envsync --config <demo> sync ID ARGS --json`. With a PostgreSQL server at hand
  // (scripts/with-postgres), the same sync also runs on a copy of both environments in
  // PostgreSQL (databases, assets and state as they were before it), and must end the same way
  // and leave the same target.
  CliRun Sync(const std::string& comparison_id, std::vector<std::string> args = {}) {
    std::vector<std::string> full = {"--config", paths_.config.string(), "sync", comparison_id};
    full.insert(full.end(), args.begin(), args.end());
    full.push_back("--json");
    if (ServerUri().empty()) return RunCli(full);
    // Both sides on PostgreSQL, and each mix: PROD (the target) on PostgreSQL with TEST on
    // SQLite, and TEST (the source) on PostgreSQL with PROD on SQLite.
    PostgresMirror both = MirrorOnPostgres(/*prod_on_postgres=*/true, /*test_on_postgres=*/true);
    PostgresMirror prod_pg = MirrorOnPostgres(true, false);
    PostgresMirror test_pg = MirrorOnPostgres(false, true);
    CliRun run = RunCli(full);
    CheckMirror(both, args, comparison_id, run);
    CheckMirror(prod_pg, args, comparison_id, run);
    CheckMirror(test_pg, args, comparison_id, run);
    return run;
  }

  struct PostgresMirror {
    std::string prefix;
    std::string mix;
    fs::path config;
    fs::path prod_assets;
    std::string prod_uri;  // a PostgreSQL URI, or the SQLite file's path
    bool prod_on_postgres = true;
  };

  PostgresMirror MirrorOnPostgres(bool prod_on_postgres, bool test_on_postgres) {
    static int counter = 0;
    PostgresMirror m;
    m.prefix = "envsync_s" + std::to_string(getpid()) + "_" + std::to_string(counter++);
    m.mix = prod_on_postgres && test_on_postgres ? "PostgreSQL/PostgreSQL"
            : prod_on_postgres                   ? "PROD on PostgreSQL, TEST on SQLite"
                                                 : "TEST on PostgreSQL, PROD on SQLite";
    m.prod_on_postgres = prod_on_postgres;
    if (prod_on_postgres) {
      m.prod_uri = CopySqliteToPostgres(paths_.prod_db, m.prefix + "_prod");
    } else {
      m.prod_uri = (dir_ / (m.prefix + "-prod.db")).string();
      fs::copy_file(paths_.prod_db, m.prod_uri);
    }
    std::string test_uri = (dir_ / (m.prefix + "-test.db")).string();
    if (test_on_postgres) {
      test_uri = CopySqliteToPostgres(paths_.test_db, m.prefix + "_test");
    } else {
      fs::copy_file(paths_.test_db, test_uri);
    }
    const fs::path state = dir_ / (m.prefix + "-state.db");
    fs::copy_file(paths_.state, state);
    m.prod_assets = dir_ / (m.prefix + "-prod-assets");
    const fs::path test_assets = dir_ / (m.prefix + "-test-assets");
    fs::copy(paths_.prod_assets, m.prod_assets, fs::copy_options::recursive);
    fs::copy(paths_.test_assets, test_assets, fs::copy_options::recursive);
    std::string text = ReadBytes(paths_.config);
    for (const auto& [from, to] : {std::pair{paths_.state.string(), state.string()},
                                   std::pair{paths_.prod_db.string(), m.prod_uri},
                                   std::pair{paths_.test_db.string(), test_uri},
                                   std::pair{paths_.prod_assets.string(), m.prod_assets.string()},
                                   std::pair{paths_.test_assets.string(), test_assets.string()}}) {
      const size_t at = text.find("\"" + from + "\"");
      EXPECT_NE(at, std::string::npos) << from;
      if (at != std::string::npos) text.replace(at + 1, from.size(), to);
    }
    m.config = dir_ / (m.prefix + ".toml");
    WriteBytes(m.config, text);
    return m;
  }

  // The synchronized tables of PROD without the column a sync sets to now, one sorted line per
  // row, the same text from SQLite and from PostgreSQL.
  static std::string CanonicalProd(
      const std::function<std::vector<std::string>(const std::string&)>& rows) {
    std::string out;
    for (const std::string& table : kSynchronizedTables) {
      std::vector<std::string> lines = rows(table);
      std::sort(lines.begin(), lines.end());
      out += "== " + table + "\n";
      for (const std::string& line : lines) out += line + "\n";
    }
    return out;
  }

  static std::string SqliteProdRows(const fs::path& prod_db) {
    return CanonicalProd([&](const std::string& table) {
      std::vector<std::string> lines;
      std::string columns;
      std::string dump = Dump(prod_db, "SELECT name FROM pragma_table_info('" + table +
                                           "') WHERE name <> 'updated_at' ORDER BY cid");
      for (size_t at = 0; at < dump.size();) {
        const size_t end = dump.find('\n', at);
        const std::string name = json::parse(dump.substr(at + 2, end - at - 2)).get<std::string>();
        columns += (columns.empty() ? "" : ", ") + name;
        at = end + 1;
      }
      std::string all = Dump(prod_db, "SELECT " + columns + " FROM " + table);
      for (size_t at = 0; at < all.size();) {
        const size_t end = all.find('\n', at);
        lines.push_back(all.substr(at, end - at));
        at = end + 1;
      }
      return lines;
    });
  }

  static std::string PostgresProdRows(const std::string& uri) {
    Pg pg(uri);
    return CanonicalProd([&](const std::string& table) {
      // Each value tagged as SQLite's Dump tags it: i: for integers, t: and JSON for text.
      const std::string sql =
          "SELECT string_agg(CASE WHEN v IS NULL THEN 'NULL' WHEN t IN ('bigint', 'integer') "
          "THEN 'i:' || v ELSE 't:' || to_json(v)::text END, ' | ' ORDER BY n) FROM (SELECT "
          "r.ctid AS row, c.ordinal_position AS n, c.data_type AS t, (to_jsonb(r) ->> "
          "c.column_name) AS v FROM " +
          table +
          " r, information_schema.columns c WHERE "
          "c.table_name = '" +
          table +
          "' AND c.table_schema = current_schema() AND "
          "c.column_name <> 'updated_at') x GROUP BY row";
      std::vector<std::string> lines;
      std::string all = pg.Run(sql);
      for (size_t at = 0; at < all.size();) {
        const size_t end = all.find('\n', at);
        std::string line = all.substr(at, end - at);
        if (!line.empty() && line.back() == '|') line.pop_back();
        lines.push_back(line);
        at = end + 1;
      }
      return lines;
    });
  }

  void CheckMirror(const PostgresMirror& m, const std::vector<std::string>& args,
                   const std::string& comparison_id, const CliRun& sqlite_run) {
    std::vector<std::string> full = {"--config", m.config.string(), "sync", comparison_id};
    full.insert(full.end(), args.begin(), args.end());
    full.push_back("--json");
    if (sqlite_run.err.find("another envsync is running") != std::string::npos) {
      // The test holds the work lock of the SQLite run's state; the copy has its own.
      DropPostgresDatabase(m.prefix + "_prod");
      DropPostgresDatabase(m.prefix + "_test");
      return;
    }
    CliRun pg_run = RunCli(full);
    EXPECT_EQ(pg_run.exit_code, sqlite_run.exit_code)
        << m.mix << ": " << pg_run.err << pg_run.out << "\nSQLite: " << sqlite_run.err;
    if (pg_run.exit_code == 0 && sqlite_run.exit_code == 0) {
      json a = sqlite_run.Json();
      json b = pg_run.Json();
      for (json* j : {&a, &b}) {
        j->erase("sync_id");
        j->erase("timings");
      }
      EXPECT_EQ(b, a) << "the sync ended otherwise on " << m.mix;
      EXPECT_EQ(m.prod_on_postgres ? PostgresProdRows(m.prod_uri) : SqliteProdRows(m.prod_uri),
                SqliteProdRows(paths_.prod_db))
          << "the sync left PROD otherwise on " << m.mix;
      EXPECT_EQ(AssetTree(m.prod_assets / "gallery", false),
                AssetTree(paths_.prod_assets / "gallery", false));
    }
    DropPostgresDatabase(m.prefix + "_prod");
    DropPostgresDatabase(m.prefix + "_test");
  }

  // Runs a sync that must succeed and returns its JSON.
  json SyncOk(const std::string& comparison_id, std::vector<std::string> args = {}) {
    CliRun run = Sync(comparison_id, std::move(args));
    EXPECT_EQ(run.exit_code, 0) << run.err << run.out;
    if (run.exit_code != 0) return json::object();
    json result = run.Json();
    EXPECT_EQ(result["status"], "success") << result.dump();
    return result;
  }

  CliRun Undo(const std::string& sync_id) {
    return RunCli({"--config", paths_.config.string(), "undo", sync_id, "--json"});
  }

  json History() {
    CliRun run = RunCli({"--config", paths_.config.string(), "history", "--json"});
    EXPECT_EQ(run.exit_code, 0) << run.err;
    if (run.exit_code != 0) return json::array();
    return run.Json();
  }

  std::string ProdValue(const std::string& sql) { return Scalar(paths_.prod_db, sql); }

  // Dumps of every table in `tables` (system_settings filtered by `settings_where`).
  std::string DumpTables(const fs::path& db, const std::vector<std::string>& tables,
                         const std::string& settings_where = "") {
    std::string out;
    for (const std::string& table : tables) {
      out += "== " + table + "\n" + Dump(db, "SELECT * FROM " + table + " ORDER BY 1");
    }
    out += "== system_settings\n" +
           Dump(db, "SELECT * FROM system_settings " + settings_where + " ORDER BY 1");
    return out;
  }

  // The synchronized content of PROD, rows and gallery bytes.
  std::string ProdSynchronizedState() {
    std::vector<std::string> tables = kSynchronizedTables;
    tables.pop_back();  // system_settings is dumped whole below
    return DumpTables(paths_.prod_db, tables) + AssetTree(paths_.prod_assets / "gallery", false);
  }

  // The ID of PROD's row for gallery file `folder`/`file` ("" when there is none).
  std::string ProdFileId(const std::string& folder, const std::string& file) {
    return ProdValue(
        "SELECT f.id FROM gallery_files f JOIN gallery_folders d ON d.id = f.folder_id "
        "WHERE d.path = '" +
        folder + "' AND f.file_name = '" + file + "'");
  }

  // The history entry of `sync_id`, or null.
  json HistoryEntry(const std::string& sync_id) {
    for (const json& entry : History()) {
      if (entry["sync_id"] == sync_id) return entry;
    }
    return json();
  }

  // Deselects every default record that writes a gallery file or needs one, leaving page 2 and
  // content block 2.
  static std::vector<std::string> WithoutFiles() {
    std::vector<std::string> args;
    for (const char* ref : {"gallery_files:9", "gallery_files:10", "gallery_files:4", "cms_pages:8",
                            "menus:1", "system_settings:integrations.mobile_app.home"}) {
      args.push_back("--deselect");
      args.push_back(ref);
    }
    return args;
  }

  // Every resolution the demo's conflicts allow, on top of the default selection.
  static std::vector<std::string> AllResolutions() {
    return {"--resolve", "cms_pages:4=overwrite",      "--resolve", "cms_pages:3=merge",
            "--resolve", "cms_pages:5=overwrite",      "--resolve", "content_blocks:1=overwrite",
            "--resolve", "cms_pages:20=insert_as_new", "--resolve", "cms_pages:21=link"};
  }
};

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

// Applying the default selection moves every selected record, file bytes included, and a new
// comparison then lists only what was left unselected.
TEST_F(SyncTest, DefaultSelectionAppliesEveryTab) {
  Build(Start::kPendingWork);
  json before = CompareTestToProd();
  json result = SyncOk(before["comparison_id"]);
  EXPECT_EQ(result["test_import"], false);
  EXPECT_EQ(result["applied"], json({{"new", 3}, {"modified", 4}, {"deleted", 1}}));
  EXPECT_TRUE(result["error"].is_null());

  // Page 8 and its hero image, found through PROD's own folder path and file name.
  const std::string hero = ProdFileId("banners/summer", "summer-sale.png");
  ASSERT_FALSE(hero.empty()) << "PROD has no row for banners/summer/summer-sale.png";
  EXPECT_EQ(ProdValue("SELECT slug FROM cms_pages WHERE id = 8"), "summer-sale");
  EXPECT_EQ(ProdValue("SELECT hero_image_id FROM cms_pages WHERE id = 8"), hero);
  const fs::path sale = paths_.prod_assets / "gallery/banners/summer/summer-sale.png";
  ASSERT_TRUE(fs::exists(sale));
  EXPECT_EQ(Sha256Hex(ReadBytes(sale)),
            ProdValue("SELECT sha256 FROM gallery_files WHERE id = " + hero));
  EXPECT_EQ(ReadBytes(sale),
            ReadBytes(paths_.test_assets / "gallery/banners/summer/summer-sale.png"));
  // The other new file, with its setting.
  EXPECT_TRUE(fs::exists(paths_.prod_assets / "gallery/mobile_app/splash-winter.png"));
  EXPECT_NE(ProdValue("SELECT value FROM system_settings WHERE key = "
                      "'integrations.mobile_app.home'")
                .find("gallery:mobile_app/splash-winter.png"),
            std::string::npos);
  // Modified and deleted records.
  EXPECT_EQ(ProdValue("SELECT title FROM cms_pages WHERE id = 2"), "About our shop");
  EXPECT_EQ(ProdValue("SELECT cms_page_id FROM menu_items WHERE menu_id = 1 AND label = "
                      "'Summer sale'"),
            "8");
  EXPECT_EQ(ProdValue("SELECT count(*) FROM menu_items WHERE menu_id = 1"), "4");
  EXPECT_EQ(ProdValue("SELECT count(*) FROM content_blocks WHERE id = 2"), "0");
  const std::string splash = ReadBytes(paths_.prod_assets / "gallery/mobile_app/splash.png");
  EXPECT_EQ(splash, ReadBytes(paths_.test_assets / "gallery/mobile_app/splash.png"));
  EXPECT_EQ(Sha256Hex(splash), ProdValue("SELECT sha256 FROM gallery_files WHERE id = 4"));
  EXPECT_EQ(std::to_string(splash.size()),
            ProdValue("SELECT size_bytes FROM gallery_files WHERE id = 4"));
  EXPECT_FALSE(fs::exists(paths_.prod_assets / ".envsync/staging")) << "staging is cleaned up";

  json after = CompareTestToProd();
  EXPECT_EQ(Refs(after), Refs(before, /*only_unselected=*/true)) << after["changes"].dump();
}

// A real sync never touches data outside the synchronized modules, on either side.
TEST_F(SyncTest, NonSynchronizedDataIsUntouched) {
  Build(Start::kPendingWork);
  const std::string where = "WHERE key NOT GLOB 'integrations.mobile_app.*'";
  const std::string prod_before = DumpTables(paths_.prod_db, kNeverSynchronizedTables, where);
  const std::string test_before = DumpTables(paths_.test_db, kNeverSynchronizedTables, where);
  ASSERT_NE(prod_before.find("PROD-000107"), std::string::npos) << "the dump holds the orders";
  json c = CompareTestToProd();
  SyncOk(c["comparison_id"], AllResolutions());
  EXPECT_EQ(DumpTables(paths_.prod_db, kNeverSynchronizedTables, where), prod_before);
  EXPECT_EQ(DumpTables(paths_.test_db, kNeverSynchronizedTables, where), test_before);
}

// The source is only read: TEST's database and assets are byte-identical after a real sync.
TEST_F(SyncTest, SourceEnvironmentIsNotWritten) {
  Build(Start::kPendingWork);
  const std::string test_db = ReadBytes(paths_.test_db);
  const std::string test_assets = AssetTree(paths_.test_assets, true);
  json c = CompareTestToProd();
  SyncOk(c["comparison_id"], AllResolutions());
  EXPECT_TRUE(ReadBytes(paths_.test_db) == test_db) << "test.db changed";
  EXPECT_EQ(AssetTree(paths_.test_assets, true), test_assets);
}

// A new page gets PROD's own local columns (updated_by NULL, updated_at now); an updated page
// keeps PROD's updated_by and updated_at.
TEST_F(SyncTest, EnvironmentLocalColumnsStayTheTargets) {
  Build(Start::kPendingWork);
  const std::string about_by = ProdValue("SELECT updated_by FROM cms_pages WHERE id = 2");
  const std::string about_at = ProdValue("SELECT updated_at FROM cms_pages WHERE id = 2");
  ASSERT_NE(about_at, Scalar(paths_.test_db, "SELECT updated_at FROM cms_pages WHERE id = 2"));
  json c = CompareTestToProd();
  SyncOk(c["comparison_id"]);
  EXPECT_EQ(ProdValue("SELECT updated_by FROM cms_pages WHERE id = 8"), "NULL");
  const std::string new_at = ProdValue("SELECT updated_at FROM cms_pages WHERE id = 8");
  EXPECT_FALSE(new_at.empty());
  EXPECT_NE(new_at, "NULL");
  EXPECT_NE(new_at, Scalar(paths_.test_db, "SELECT updated_at FROM cms_pages WHERE id = 8"))
      << "a new record does not take TEST's timestamp";
  EXPECT_EQ(ProdValue("SELECT updated_by FROM cms_pages WHERE id = 2"), about_by);
  EXPECT_EQ(ProdValue("SELECT updated_at FROM cms_pages WHERE id = 2"), about_at);
  EXPECT_EQ(ProdValue("SELECT title FROM cms_pages WHERE id = 2"), "About our shop");
}

// An update writes only the columns the comparison listed as different (the others already
// hold the source's values): PROD's triggers `AFTER UPDATE OF` each compared column of
// cms_pages fire for exactly the listed fields of each updated or overwritten page, and a
// comparison after the sync lists none of them.
TEST_F(SyncTest, AnUpdateWritesOnlyTheColumnsThatDiffer) {
  Build(Start::kPendingWork);
  const std::vector<std::string> compared = {"slug",   "title",  "body_html",
                                             "layout", "status", "hero_image_id"};
  std::string triggers = "CREATE TABLE written (page INTEGER, col TEXT);";
  for (const std::string& column : compared) {
    triggers += "CREATE TRIGGER written_" + column + " AFTER UPDATE OF " + column +
                " ON cms_pages BEGIN INSERT INTO written VALUES (NEW.id, '" + column + "'); END;";
  }
  ExecSql(paths_.prod_db, triggers);
  json c = CompareTestToProd();
  std::map<std::string, std::set<std::string>> listed;  // page ID -> fields
  for (const json& change : c["changes"]) {
    // Page 2 is modified on TEST; page 4, modified on both, is overwritten.
    const bool modified = change["tab"] == "modified" && change["selected"] == true;
    const bool overwritten = change["source_id"] == 4;
    if (change["table"] != "cms_pages" || !(modified || overwritten)) continue;
    std::set<std::string>& fields = listed[change["target_id"].dump()];
    for (const json& f : change["fields"]) fields.insert(f["field"].get<std::string>());
  }
  ASSERT_EQ(listed.size(), 2u) << "the demo's pending work modifies page 2 and both sides page 4";
  SyncOk(c["comparison_id"], {"--resolve", "cms_pages:4=overwrite"});
  for (const auto& [page, fields] : listed) {
    std::set<std::string> fired;
    std::string all = ProdValue("SELECT group_concat(col, ',') FROM written WHERE page = " + page);
    for (size_t start = 0; all != "NULL" && start <= all.size();) {
      const size_t comma = std::min(all.find(',', start), all.size());
      fired.insert(all.substr(start, comma - start));
      start = comma + 1;
    }
    EXPECT_EQ(fired, fields) << "page " << page;
    EXPECT_LT(fired.size(), compared.size()) << "page " << page << " had every column written";
  }
  // And no page is listed again: each is TEST's in every compared column.
  const json again = CompareTestToProd();
  for (const json& change : again["changes"]) {
    if (change["table"] == "cms_pages") {
      EXPECT_FALSE(listed.contains(change["target_id"].dump())) << change.dump();
    }
  }
}

// The journal keeps an update's pre-image as only the columns it writes, with the digest of
// the whole record (sync::ColumnImageText): page 2, modified on TEST, keeps its listed fields and
// not its body. Undo writes those columns back, and every page is again byte for byte what it
// was, its environment-local columns too.
TEST_F(SyncTest, AnUpdatesPreImageHoldsTheColumnsItWritesAndUndoRestoresTheWholeRecord) {
  Build(Start::kPendingWork);
  json c = CompareTestToProd();
  std::set<std::string> fields;
  for (const json& change : c["changes"]) {
    if (change["table"] == "cms_pages" && change["source_id"] == 2) {
      ASSERT_EQ(change["tab"], "modified") << change.dump();
      for (const json& f : change["fields"]) fields.insert(f["field"].get<std::string>());
    }
  }
  ASSERT_FALSE(fields.empty()) << "the demo's pending work modifies page 2";
  ASSERT_FALSE(fields.contains("body_html"));
  const std::string pages = Dump(paths_.prod_db, "SELECT * FROM cms_pages ORDER BY id");
  const std::string before = ProdSynchronizedState();
  json result = SyncOk(c["comparison_id"], WithoutFiles());
  const std::string sync_id = result["sync_id"];
  const json pre = json::parse(
      Scalar(paths_.state, "SELECT pre_image FROM sync_records WHERE sync_id = '" + sync_id +
                               "' AND table_name = 'cms_pages' AND target_id = 2"));
  std::set<std::string> kept;
  for (const auto& [column, value] : pre["row"].items()) kept.insert(column);
  EXPECT_EQ(kept, fields) << pre.dump();
  EXPECT_FALSE(pre.contains("children")) << pre.dump();
  EXPECT_EQ(pre["whole"].get<std::string>().substr(0, 5), "xxh3:") << pre.dump();
  ASSERT_NE(Dump(paths_.prod_db, "SELECT * FROM cms_pages ORDER BY id"), pages);
  CliRun undo = Undo(sync_id);
  ASSERT_EQ(undo.exit_code, 0) << undo.err;
  EXPECT_EQ(Dump(paths_.prod_db, "SELECT * FROM cms_pages ORDER BY id"), pages);
  EXPECT_EQ(ProdSynchronizedState(), before);
}

// overwrite on a both_modified conflict: PROD gets TEST's version.
TEST_F(SyncTest, OverwriteResolvesBothModified) {
  Build(Start::kPendingWork);
  const std::string test_body =
      Scalar(paths_.test_db, "SELECT body_html FROM cms_pages WHERE id = 4");
  json c = CompareTestToProd();
  SyncOk(c["comparison_id"], {"--resolve", "cms_pages:4=overwrite"});
  EXPECT_EQ(ProdValue("SELECT body_html FROM cms_pages WHERE id = 4"), test_body);
  EXPECT_TRUE(FindChange(CompareTestToProd(), "cms_pages", 4).is_null());
}

// merge on a mergeable conflict takes TEST's title and keeps PROD's body; the next comparison
// shows PROD's kept edit as its own change, not as a conflict.
TEST_F(SyncTest, MergeTakesSourceFieldsAndKeepsTargetFields) {
  Build(Start::kPendingWork);
  const std::string prod_body = ProdValue("SELECT body_html FROM cms_pages WHERE id = 3");
  json c = CompareTestToProd();
  ASSERT_TRUE(FindChange(c, "cms_pages", 3)["mergeable"].get<bool>());
  SyncOk(c["comparison_id"], {"--resolve", "cms_pages:3=merge"});
  EXPECT_EQ(ProdValue("SELECT title FROM cms_pages WHERE id = 3"), "Contact us");
  EXPECT_EQ(ProdValue("SELECT body_html FROM cms_pages WHERE id = 3"), prod_body);
  json contact = FindChange(CompareTestToProd(), "cms_pages", 3);
  ASSERT_FALSE(contact.is_null());
  EXPECT_EQ(contact["tab"], "modified");
  EXPECT_TRUE(contact["conflict"].is_null());
  EXPECT_EQ(contact["reason"], "target_changed");
  EXPECT_EQ(contact["selected"], false);
  EXPECT_EQ(FieldNames(contact), std::vector<std::string>{"body_html"});
}

// merge is refused where both sides changed the same field, and nothing is written.
TEST_F(SyncTest, MergeRefusedWhenNotMergeable) {
  Build(Start::kPendingWork);
  json c = CompareTestToProd();
  const std::string prod_before = ReadBytes(paths_.prod_db);
  CliRun run = Sync(c["comparison_id"], {"--resolve", "cms_pages:4=merge"});
  EXPECT_EQ(run.exit_code, 2) << run.out;
  EXPECT_NE(run.err.find("cms_pages:4"), std::string::npos) << run.err;
  EXPECT_NE(run.err.find("merge"), std::string::npos) << run.err;
  EXPECT_TRUE(ReadBytes(paths_.prod_db) == prod_before) << "prod.db changed";
}

// insert_as_new on an id_collision keeps PROD's record and adds TEST's under a fresh ID; later
// comparisons pair the two and show PROD's own record as target_only.
TEST_F(SyncTest, InsertAsNewKeepsTargetRecordAndPairsTheNewOne) {
  Build(Start::kPendingWork);
  json c = CompareTestToProd();
  SyncOk(c["comparison_id"], {"--resolve", "cms_pages:20=insert_as_new"});
  EXPECT_EQ(ProdValue("SELECT slug FROM cms_pages WHERE id = 20"), "black-friday");
  const std::string new_id = ProdValue("SELECT id FROM cms_pages WHERE slug = 'winter-lookbook'");
  ASSERT_FALSE(new_id.empty());
  EXPECT_NE(new_id, "20");
  EXPECT_EQ(ProdValue("SELECT title FROM cms_pages WHERE id = " + new_id), "Winter lookbook");

  json later = CompareTestToProd();
  for (const json& change : later["changes"]) {
    if (change["table"] == "cms_pages" && change["source_id"] == 20) {
      ADD_FAILURE() << "TEST 20 is still listed: " << change.dump();
    }
  }
  CliRun shown =
      RunCli({"--config", paths_.config.string(), "show", later["comparison_id"], "--json"});
  ASSERT_EQ(shown.exit_code, 0) << shown.err;
  const json shown_json = shown.Json();
  json black_friday;
  for (const json& change : shown_json["changes"]) {
    if (change["key"] == "black-friday") black_friday = change;
  }
  ASSERT_FALSE(black_friday.is_null()) << shown.out;
  EXPECT_EQ(black_friday["tab"], "deleted");
  EXPECT_EQ(black_friday["reason"], "target_only");
  EXPECT_EQ(black_friday["target_id"], 20);
  EXPECT_EQ(black_friday["selected"], false);
}

// link on a key_clash overwrites PROD's record with the same slug instead of adding a row, and
// the pair is then in sync.
TEST_F(SyncTest, LinkOverwritesTheTargetRecordWithTheSameKey) {
  Build(Start::kPendingWork);
  json c = CompareTestToProd();
  const std::string pages_before = ProdValue("SELECT count(*) FROM cms_pages");
  SyncOk(c["comparison_id"],
         {"--resolve", "cms_pages:21=link", "--deselect", "cms_pages:8", "--deselect", "menus:1"});
  EXPECT_EQ(ProdValue("SELECT count(*) FROM cms_pages"), pages_before);
  EXPECT_EQ(ProdValue("SELECT count(*) FROM cms_pages WHERE id = 21"), "0");
  EXPECT_EQ(ProdValue("SELECT group_concat(id) FROM cms_pages WHERE slug = 'gift-guide'"), "22");
  EXPECT_EQ(ProdValue("SELECT body_html FROM cms_pages WHERE id = 22"),
            Scalar(paths_.test_db, "SELECT body_html FROM cms_pages WHERE id = 21"));
  EXPECT_EQ(ProdValue("SELECT status FROM cms_pages WHERE id = 22"), "draft");
  json later = CompareTestToProd();
  EXPECT_TRUE(FindChange(later, "cms_pages", 21).is_null()) << later["changes"].dump();
  EXPECT_TRUE(FindChange(later, "cms_pages", 22).is_null()) << later["changes"].dump();
}

// overwrite on modified_deleted re-creates the record PROD deleted.
TEST_F(SyncTest, OverwriteRecreatesModifiedDeleted) {
  Build(Start::kPendingWork);
  ASSERT_EQ(ProdValue("SELECT count(*) FROM cms_pages WHERE id = 5"), "0");
  json c = CompareTestToProd();
  SyncOk(c["comparison_id"], {"--resolve", "cms_pages:5=overwrite"});
  EXPECT_EQ(ProdValue("SELECT slug FROM cms_pages WHERE id = 5"), "shipping");
  EXPECT_EQ(ProdValue("SELECT body_html FROM cms_pages WHERE id = 5"),
            Scalar(paths_.test_db, "SELECT body_html FROM cms_pages WHERE id = 5"));
  EXPECT_TRUE(FindChange(CompareTestToProd(), "cms_pages", 5).is_null());
}

// overwrite on deleted_modified deletes the record PROD edited.
TEST_F(SyncTest, OverwriteDeletesDeletedModified) {
  Build(Start::kPendingWork);
  ASSERT_EQ(ProdValue("SELECT code FROM content_blocks WHERE id = 1"), "footer-note");
  json c = CompareTestToProd();
  json result = SyncOk(c["comparison_id"], {"--resolve", "content_blocks:1=overwrite"});
  EXPECT_EQ(result["applied"]["deleted"], 2);
  EXPECT_EQ(ProdValue("SELECT count(*) FROM content_blocks WHERE id = 1"), "0");
  EXPECT_EQ(ProdValue("SELECT count(*) FROM content_blocks WHERE code = 'newsletter'"), "1");
  EXPECT_TRUE(FindChange(CompareTestToProd(), "content_blocks", 1).is_null());
}

// Linking TEST 21 to PROD 22 while also deleting PROD 22 is contradictory and is refused
// before anything is written.
TEST_F(SyncTest, LinkAndDeletionOfTheSameTargetAreRefused) {
  // BUG (src/sync/sync.cc, Syncer::Plan / CheckReferences): nothing checks that a link's (or an
  // update's) target record is not also a selected deletion. With `--resolve cms_pages:21=link
  // --select cms_pages:22` the sync succeeds: PROD 22 is overwritten with TEST's gift-guide and
  // then deleted, the identity map records TEST 21 <-> PROD 22 for a row that no longer exists,
  // and the next comparison offers cms_pages:21 as New again. Expected: exit 2 naming both.
  Build(Start::kPendingWork);
  json c = CompareTestToProd();
  const std::string prod_db = ReadBytes(paths_.prod_db);
  CliRun run =
      Sync(c["comparison_id"], {"--resolve", "cms_pages:21=link", "--select", "cms_pages:22"});
  EXPECT_EQ(run.exit_code, 2) << run.out;
  EXPECT_NE(run.err.find("cms_pages:21"), std::string::npos) << run.err;
  EXPECT_NE(run.err.find("cms_pages:22"), std::string::npos) << run.err;
  EXPECT_TRUE(ReadBytes(paths_.prod_db) == prod_db) << "prod.db changed";
}

// A conflict selected without a resolution is refused with exit 2, naming it.
TEST_F(SyncTest, SelectedConflictWithoutResolutionIsRefused) {
  Build(Start::kPendingWork);
  json c = CompareTestToProd();
  const std::string prod_before = ReadBytes(paths_.prod_db);
  CliRun run = Sync(c["comparison_id"], {"--select", "cms_pages:4"});
  EXPECT_EQ(run.exit_code, 2) << run.out;
  EXPECT_NE(run.err.find("cms_pages:4"), std::string::npos) << run.err;
  EXPECT_NE(run.err.find("both_modified"), std::string::npos) << run.err;
  EXPECT_TRUE(ReadBytes(paths_.prod_db) == prod_before) << "prod.db changed";
}

// insert_as_new of a gallery file rewrites the reference of a page synchronized with it to the
// file's new PROD ID, and puts TEST's bytes in place.
TEST_F(SyncTest, InsertAsNewRewritesReferencesToTheNewId) {
  Build(Start::kCommonWithBase);
  const fs::path post = paths_.test_assets / "gallery/blog/post-1.png";
  fs::copy_file(post, paths_.test_assets / "gallery/blog/test-70.png");
  fs::copy_file(paths_.prod_assets / "gallery/banners/hero-home.png",
                paths_.prod_assets / "gallery/blog/prod-70.png");
  const auto add_file = [](const std::string& name, int source_id) {
    return "INSERT INTO gallery_files (id, folder_id, file_name, mime_type, size_bytes, sha256) "
           "SELECT 70, 4, '" +
           name + "', mime_type, size_bytes, sha256 FROM gallery_files WHERE id = " +
           std::to_string(source_id);
  };
  Test(add_file("test-70.png", 6));
  Prod(add_file("prod-70.png", 1));
  Test(
      "INSERT INTO cms_pages (id, slug, title, body_html, status, hero_image_id, updated_at) "
      "VALUES (71, 'blog-home', 'Blog', '<p>Blog</p>', 'published', 70, '2024-06-01')");
  json c = CompareTestToProd();
  ASSERT_EQ(FindChange(c, "gallery_files", 70)["conflict"], "id_collision") << c.dump();
  SyncOk(c["comparison_id"],
         {"--resolve", "gallery_files:70=insert_as_new", "--select", "cms_pages:71"});

  EXPECT_EQ(ProdValue("SELECT file_name FROM gallery_files WHERE id = 70"), "prod-70.png");
  const std::string hero = ProdValue("SELECT hero_image_id FROM cms_pages WHERE id = 71");
  ASSERT_NE(hero, "NULL");
  EXPECT_NE(hero, "70");
  EXPECT_EQ(ProdValue("SELECT file_name FROM gallery_files WHERE id = " + hero), "test-70.png");
  EXPECT_EQ(ReadBytes(paths_.prod_assets / "gallery/blog/test-70.png"), ReadBytes(post));
  EXPECT_EQ(ReadBytes(paths_.prod_assets / "gallery/blog/prod-70.png"),
            ReadBytes(paths_.prod_assets / "gallery/banners/hero-home.png"));
  // The pair TEST 70 <-> PROD `hero` is known: the page and the file are in sync, and PROD's
  // own file 70 no longer has a counterpart on TEST.
  json later = CompareTestToProd();
  EXPECT_TRUE(FindChange(later, "cms_pages", 71).is_null()) << later["changes"].dump();
  for (const json& change : later["changes"]) {
    if (change["table"] == "gallery_files" && change["source_id"] == 70) {
      ADD_FAILURE() << "TEST 70 is still listed: " << change.dump();
    }
  }
  json prod_file = FindChange(later, "gallery_files", 70);
  EXPECT_EQ(prod_file["key"], "blog/prod-70.png");
  EXPECT_EQ(prod_file["reason"], "target_only");
}

// A test import leaves both environments byte-identical, reports what it would apply, and does
// not use up the comparison.
TEST_F(SyncTest, TestImportWritesNothingAndDoesNotUseUpTheComparison) {
  Build(Start::kPendingWork);
  json c = CompareTestToProd();
  const std::string prod_db = ReadBytes(paths_.prod_db);
  const std::string test_db = ReadBytes(paths_.test_db);
  const std::string prod_assets = AssetTree(paths_.prod_assets, true);
  const std::string test_assets = AssetTree(paths_.test_assets, true);
  json result = SyncOk(c["comparison_id"], {"--test-import", "--resolve", "cms_pages:4=overwrite"});
  EXPECT_EQ(result["test_import"], true);
  EXPECT_EQ(result["applied"], json({{"new", 3}, {"modified", 5}, {"deleted", 1}}));
  EXPECT_EQ(result["files"], 3);
  EXPECT_TRUE(ReadBytes(paths_.prod_db) == prod_db) << "prod.db changed";
  EXPECT_TRUE(ReadBytes(paths_.test_db) == test_db) << "test.db changed";
  EXPECT_EQ(AssetTree(paths_.prod_assets, true), prod_assets);
  EXPECT_EQ(AssetTree(paths_.test_assets, true), test_assets);

  json real = SyncOk(c["comparison_id"]);
  EXPECT_EQ(real["test_import"], false);
  EXPECT_NE(real["sync_id"], result["sync_id"]);
  EXPECT_EQ(ProdValue("SELECT title FROM cms_pages WHERE id = 2"), "About our shop");
}

// A test import changes neither the base nor the identity map: the next comparison is the same.
TEST_F(SyncTest, TestImportLeavesBaseAndIdentityMapAlone) {
  Build(Start::kPendingWork);
  json c = CompareTestToProd();
  SyncOk(c["comparison_id"], {"--test-import", "--resolve", "cms_pages:20=insert_as_new",
                              "--resolve", "cms_pages:21=link"});
  json again = CompareTestToProd();
  EXPECT_EQ(again["changes"], c["changes"]);
}

// A record edited on PROD after the comparison fails the sync (exit 1) naming it; nothing is
// written.
TEST_F(SyncTest, DriftOnTargetFailsAndWritesNothing) {
  Build(Start::kPendingWork);
  json c = CompareTestToProd();
  Prod("UPDATE cms_pages SET title = 'About (edited on PROD)' WHERE id = 2");
  const std::string prod_db = ReadBytes(paths_.prod_db);
  const std::string prod_assets = AssetTree(paths_.prod_assets, true);
  CliRun run = Sync(c["comparison_id"]);
  EXPECT_EQ(run.exit_code, 1) << run.err;
  json result = run.Json();
  EXPECT_EQ(result["status"], "failure");
  const std::string error = result["error"].get<std::string>();
  EXPECT_NE(error.find("cms_pages:2"), std::string::npos) << error;
  EXPECT_NE(error.find("compare again"), std::string::npos) << error;
  EXPECT_TRUE(ReadBytes(paths_.prod_db) == prod_db) << "prod.db changed";
  EXPECT_EQ(AssetTree(paths_.prod_assets, true), prod_assets);
}

// A selected record edited on TEST after the comparison fails the sync the same way.
TEST_F(SyncTest, DriftOnSourceFailsAndWritesNothing) {
  Build(Start::kPendingWork);
  json c = CompareTestToProd();
  Test("UPDATE cms_pages SET body_html = '<p>late edit</p>' WHERE id = 8");
  const std::string prod_db = ReadBytes(paths_.prod_db);
  const std::string prod_assets = AssetTree(paths_.prod_assets, true);
  CliRun run = Sync(c["comparison_id"]);
  EXPECT_EQ(run.exit_code, 1) << run.err;
  json result = run.Json();
  EXPECT_EQ(result["status"], "failure");
  const std::string error = result["error"].get<std::string>();
  EXPECT_NE(error.find("cms_pages:8"), std::string::npos) << error;
  EXPECT_NE(error.find("compare again"), std::string::npos) << error;
  EXPECT_TRUE(ReadBytes(paths_.prod_db) == prod_db) << "prod.db changed";
  EXPECT_EQ(AssetTree(paths_.prod_assets, true), prod_assets);
}

// A gallery file's bytes changed on TEST after the comparison count as drift too.
TEST_F(SyncTest, DriftOfFileBytesFailsAndWritesNothing) {
  Build(Start::kPendingWork);
  json c = CompareTestToProd();
  const fs::path splash = paths_.test_assets / "gallery/mobile_app/splash.png";
  const std::string other = ReadBytes(paths_.test_assets / "gallery/blog/post-1.png");
  WriteBytes(splash, other);
  Test("UPDATE gallery_files SET size_bytes = " + std::to_string(other.size()) + ", sha256 = '" +
       Sha256Hex(other) + "' WHERE id = 4");
  const std::string prod_db = ReadBytes(paths_.prod_db);
  const std::string prod_assets = AssetTree(paths_.prod_assets, true);
  CliRun run = Sync(c["comparison_id"]);
  EXPECT_EQ(run.exit_code, 1) << run.err;
  EXPECT_NE(run.Json()["error"].get<std::string>().find("gallery_files:4"), std::string::npos)
      << run.out;
  EXPECT_TRUE(ReadBytes(paths_.prod_db) == prod_db) << "prod.db changed";
  EXPECT_EQ(AssetTree(paths_.prod_assets, true), prod_assets);
}

// Drift of a record that is not selected does not block the sync.
TEST_F(SyncTest, DriftOfUnselectedRecordIsIgnored) {
  Build(Start::kPendingWork);
  json c = CompareTestToProd();
  Prod("UPDATE cms_pages SET body_html = '<p>FAQ edited again</p>' WHERE id = 4");
  SyncOk(c["comparison_id"]);
  EXPECT_EQ(ProdValue("SELECT body_html FROM cms_pages WHERE id = 4"), "<p>FAQ edited again</p>");
  EXPECT_EQ(ProdValue("SELECT title FROM cms_pages WHERE id = 2"), "About our shop");
}

// A record that appeared on PROD under the ID a new record would take counts as drift.
TEST_F(SyncTest, RecordAppearedOnTargetIsDrift) {
  Build(Start::kPendingWork);
  json c = CompareTestToProd();
  Prod(
      "INSERT INTO cms_pages (id, slug, title, body_html, status, updated_at) "
      "VALUES (8, 'prod-eight', 'Eight', '<p>8</p>', 'draft', '2024-06-02')");
  const std::string prod_db = ReadBytes(paths_.prod_db);
  CliRun run = Sync(c["comparison_id"]);
  EXPECT_EQ(run.exit_code, 1) << run.err;
  EXPECT_NE(run.Json()["error"].get<std::string>().find("cms_pages:8"), std::string::npos)
      << run.out;
  EXPECT_TRUE(ReadBytes(paths_.prod_db) == prod_db) << "prod.db changed";
}

// A deletion of a record that PROD still references from a record outside the sync is refused
// up front (exit 2, naming both records), without writing anything, database or files.
TEST_F(SyncTest, DeletionStillReferencedOnTargetWritesNothing) {
  Build(Start::kCommonWithBase);
  Test(
      "UPDATE content_blocks SET image_id = NULL WHERE id = 3; DELETE FROM gallery_files WHERE id "
      "= 6");
  Test("UPDATE cms_pages SET title = 'About us' WHERE id = 2");
  json c = CompareTestToProd();
  ASSERT_EQ(FindChange(c, "gallery_files", 6)["tab"], "deleted");
  const std::string prod_db = ReadBytes(paths_.prod_db);
  const std::string prod_assets = AssetTree(paths_.prod_assets, true);
  CliRun run = Sync(c["comparison_id"], {"--deselect", "content_blocks:3"});
  EXPECT_EQ(run.exit_code, 2) << run.out;
  EXPECT_NE(run.err.find("gallery_files:6"), std::string::npos) << run.err;
  EXPECT_NE(run.err.find("content_blocks:3"), std::string::npos) << run.err;
  EXPECT_TRUE(ReadBytes(paths_.prod_db) == prod_db) << "prod.db changed";
  EXPECT_EQ(AssetTree(paths_.prod_assets, true), prod_assets);
}

// Deselecting a file a selected page needs is refused before anything is written, naming both.
TEST_F(SyncTest, DanglingReferenceIsRefusedBeforeWriting) {
  Build(Start::kPendingWork);
  json c = CompareTestToProd();
  const std::string prod_db = ReadBytes(paths_.prod_db);
  const std::string prod_assets = AssetTree(paths_.prod_assets, true);
  CliRun run = Sync(c["comparison_id"], {"--deselect", "gallery_files:9"});
  EXPECT_EQ(run.exit_code, 2) << run.out;
  EXPECT_NE(run.err.find("cms_pages:8"), std::string::npos) << run.err;
  EXPECT_NE(run.err.find("gallery_files:9"), std::string::npos) << run.err;
  EXPECT_TRUE(ReadBytes(paths_.prod_db) == prod_db) << "prod.db changed";
  EXPECT_EQ(AssetTree(paths_.prod_assets, true), prod_assets);
}

// A menu item pointing at a deselected new page is refused too (references inside child rows).
TEST_F(SyncTest, DanglingChildReferenceIsRefused) {
  Build(Start::kPendingWork);
  json c = CompareTestToProd();
  const std::string prod_db = ReadBytes(paths_.prod_db);
  CliRun run = Sync(c["comparison_id"], {"--deselect", "cms_pages:8"});
  EXPECT_EQ(run.exit_code, 2) << run.out;
  EXPECT_NE(run.err.find("menus:1"), std::string::npos) << run.err;
  EXPECT_NE(run.err.find("cms_pages:8"), std::string::npos) << run.err;
  EXPECT_TRUE(ReadBytes(paths_.prod_db) == prod_db) << "prod.db changed";
}

// A setting naming a deselected gallery file by path is refused too (JSON references).
TEST_F(SyncTest, DanglingJsonReferenceIsRefused) {
  Build(Start::kPendingWork);
  json c = CompareTestToProd();
  const std::string prod_db = ReadBytes(paths_.prod_db);
  CliRun run = Sync(c["comparison_id"], {"--deselect", "gallery_files:10"});
  EXPECT_EQ(run.exit_code, 2) << run.out;
  EXPECT_NE(run.err.find("system_settings:integrations.mobile_app.home"), std::string::npos)
      << run.err;
  EXPECT_NE(run.err.find("mobile_app/splash-winter.png"), std::string::npos) << run.err;
  EXPECT_TRUE(ReadBytes(paths_.prod_db) == prod_db) << "prod.db changed";
}

// undo restores PROD's synchronized rows and gallery files exactly, and history shows it.
TEST_F(SyncTest, UndoRestoresRowsAndFiles) {
  Build(Start::kPendingWork);
  json c = CompareTestToProd();
  const std::string before = ProdSynchronizedState();
  json result = SyncOk(c["comparison_id"]);
  ASSERT_NE(ProdSynchronizedState(), before);
  CliRun undo = Undo(result["sync_id"]);
  ASSERT_EQ(undo.exit_code, 0) << undo.err;
  EXPECT_EQ(undo.Json()["status"], "success");
  EXPECT_EQ(ProdSynchronizedState(), before);
  EXPECT_FALSE(fs::exists(paths_.prod_assets / ".envsync"));
  EXPECT_EQ(HistoryEntry(result["sync_id"])["status"], "undone");
}

// undo of a sync that wrote only database rows restores them exactly; history shows it undone.
TEST_F(SyncTest, UndoRestoresRows) {
  Build(Start::kPendingWork);
  json c = CompareTestToProd();
  const std::string before = ProdSynchronizedState();
  const std::string settings = Dump(paths_.prod_db, "SELECT * FROM system_settings ORDER BY 1");
  json result = SyncOk(c["comparison_id"], WithoutFiles());
  EXPECT_EQ(result["applied"], json({{"new", 0}, {"modified", 1}, {"deleted", 1}}));
  ASSERT_NE(ProdSynchronizedState(), before);
  CliRun undo = Undo(result["sync_id"]);
  ASSERT_EQ(undo.exit_code, 0) << undo.err;
  EXPECT_EQ(undo.Json()["status"], "success");
  EXPECT_EQ(ProdSynchronizedState(), before);
  EXPECT_EQ(Dump(paths_.prod_db, "SELECT * FROM system_settings ORDER BY 1"), settings);
  EXPECT_FALSE(fs::exists(paths_.prod_assets / ".envsync"));
  EXPECT_EQ(HistoryEntry(result["sync_id"])["status"], "undone");
}

// A table whose row filter is on an environment-local column: the page the sync inserts gets
// PROD's own value there (the time of the sync), which the filter leaves out. The journal still
// records the page as written (its after-hash is read by ID, as undo reads it), so undo finds it
// as the sync left it and removes it.
TEST_F(SyncTest, UndoRemovesAnInsertTheRowFilterLeavesOut) {
  Build(Start::kCommonWithBase);
  std::string manifest = EmbeddedManifest();
  const std::string local = "local = [\"updated_by\", \"updated_at\"]\n";
  const size_t at = manifest.find(local);
  ASSERT_NE(at, std::string::npos);
  manifest.insert(at + local.size(),
                  "  filter = { column = \"updated_at\", prefix = \"2024-\" }\n");
  const fs::path manifest_path = dir_ / "filtered-modules.toml";
  WriteBytes(manifest_path, manifest);
  WriteBytes(paths_.config,
             "manifest = \"" + manifest_path.string() + "\"\n" + ReadBytes(paths_.config));
  Test(
      "INSERT INTO cms_pages (id, slug, title, body_html, status, updated_by, updated_at) VALUES "
      "(9001, 'filtered-new-page', 'New', '<p>new</p>', 'published', 1, "
      "'2024-06-01T00:00:00Z')");
  json c = CompareTestToProd();
  ASSERT_EQ(c["counts"]["new"], 1) << c.dump();
  json result = SyncOk(c["comparison_id"]);
  ASSERT_EQ(ProdValue("SELECT count(*) FROM cms_pages WHERE id = 9001"), "1");
  ASSERT_NE(ProdValue("SELECT substr(updated_at, 1, 5) FROM cms_pages WHERE id = 9001"), "2024-");
  CliRun undo = Undo(result["sync_id"]);
  ASSERT_EQ(undo.exit_code, 0) << undo.err << undo.out;
  EXPECT_EQ(undo.Json()["status"], "success");
  EXPECT_EQ(ProdValue("SELECT count(*) FROM cms_pages WHERE id = 9001"), "0");
}

// undo of a sync with every kind of resolution (insert_as_new, link, merge, overwrite of both
// deletion conflicts) and reverted target edits restores PROD's synchronized rows exactly.
TEST_F(SyncTest, UndoRestoresEveryResolution) {
  Build(Start::kPendingWork);
  json c = CompareTestToProd();
  const std::string before = ProdSynchronizedState();
  std::vector<std::string> args = WithoutFiles();
  for (const std::string& arg : AllResolutions()) args.push_back(arg);
  for (const char* ref : {"menus:3", "sliders:1", "menus:2"}) {
    args.push_back("--select");
    args.push_back(ref);
  }
  json result = SyncOk(c["comparison_id"], args);
  ASSERT_EQ(ProdValue("SELECT count(*) FROM cms_pages WHERE slug = 'winter-lookbook'"), "1");
  CliRun undo = Undo(result["sync_id"]);
  ASSERT_EQ(undo.exit_code, 0) << undo.err;
  EXPECT_EQ(ProdSynchronizedState(), before);
}

// After an undo the base is the one before the sync: a new comparison lists what the original
// one listed, in the same tabs.
TEST_F(SyncTest, UndoRestoresTheBase) {
  Build(Start::kPendingWork);
  json c = CompareTestToProd();
  std::vector<std::string> args = WithoutFiles();
  args.insert(args.end(), {"--resolve", "cms_pages:3=merge", "--resolve", "cms_pages:4=overwrite"});
  json result = SyncOk(c["comparison_id"], args);
  ASSERT_EQ(Undo(result["sync_id"]).exit_code, 0);
  json again = CompareTestToProd();
  EXPECT_EQ(again["counts"], c["counts"]);
  EXPECT_EQ(again["changes"], c["changes"]);
}

// undo also forgets the identity pairs its insert_as_new and link added: the next comparison
// shows the id_collision and key_clash conflicts again, not pre-selected changes.
TEST_F(SyncTest, UndoForgetsIdentityPairsItAdded) {
  // BUG (src/sync/sync.cc, UndoSync): the pairs the sync added to the identity map (TEST 20 <->
  // PROD 23 by insert_as_new, TEST 21 <-> PROD 22 by link) are kept after the undo. The next
  // comparison then lists cms_pages:20 as a plain New record and cms_pages:21 as a plain
  // Modified record of PROD 22, both selected by default, instead of the id_collision and
  // key_clash conflicts listed before the sync: a default sync would overwrite PROD's own
  // gift-guide.
  Build(Start::kPendingWork);
  json c = CompareTestToProd();
  std::vector<std::string> args = WithoutFiles();
  args.insert(args.end(),
              {"--resolve", "cms_pages:20=insert_as_new", "--resolve", "cms_pages:21=link"});
  json result = SyncOk(c["comparison_id"], args);
  ASSERT_EQ(Undo(result["sync_id"]).exit_code, 0);
  json again = CompareTestToProd();
  EXPECT_EQ(FindChange(again, "cms_pages", 20)["conflict"], "id_collision");
  EXPECT_EQ(FindChange(again, "cms_pages", 21)["conflict"], "key_clash");
  EXPECT_EQ(again["changes"], c["changes"]);
}

// undo is refused when PROD changed a synchronized record since, naming it; nothing changes.
TEST_F(SyncTest, UndoRefusedAfterTargetEdit) {
  Build(Start::kPendingWork);
  json c = CompareTestToProd();
  json result = SyncOk(c["comparison_id"]);
  Prod("UPDATE cms_pages SET title = 'Summer sale!' WHERE id = 8");
  const std::string prod_db = ReadBytes(paths_.prod_db);
  const std::string prod_assets = AssetTree(paths_.prod_assets, true);
  CliRun undo = Undo(result["sync_id"]);
  EXPECT_EQ(undo.exit_code, 2) << undo.out;
  EXPECT_NE(undo.err.find("cms_pages:8"), std::string::npos) << undo.err;
  EXPECT_EQ(undo.err.find("cms_pages:2"), std::string::npos) << "page 2 was not edited";
  EXPECT_TRUE(ReadBytes(paths_.prod_db) == prod_db) << "prod.db changed";
  EXPECT_EQ(AssetTree(paths_.prod_assets, true), prod_assets);
  EXPECT_EQ(HistoryEntry(result["sync_id"])["status"], "success");
}

// A sync can be undone once; a test import cannot be undone at all.
TEST_F(SyncTest, UndoRefusesUndoneSyncsAndTestImports) {
  Build(Start::kPendingWork);
  json c = CompareTestToProd();
  json trial = SyncOk(c["comparison_id"], {"--test-import"});
  EXPECT_EQ(Undo(trial["sync_id"]).exit_code, 2);
  json result = SyncOk(c["comparison_id"], WithoutFiles());
  ASSERT_EQ(Undo(result["sync_id"]).exit_code, 0);
  const std::string prod_db = ReadBytes(paths_.prod_db);
  CliRun again = Undo(result["sync_id"]);
  EXPECT_EQ(again.exit_code, 2) << again.out;
  EXPECT_TRUE(ReadBytes(paths_.prod_db) == prod_db) << "prod.db changed";
  EXPECT_EQ(Undo("s-000000000000").exit_code, 2);
}

// An unknown comparison ID is bad input (exit 2).
TEST_F(SyncTest, UnknownComparisonIsRefused) {
  Build(Start::kPendingWork);
  CliRun run = Sync("c-does-not-exist");
  EXPECT_EQ(run.exit_code, 2) << run.out;
  EXPECT_NE(run.err.find("c-does-not-exist"), std::string::npos) << run.err;
}

// An unknown T:ID in --select is bad input naming it; nothing is written.
TEST_F(SyncTest, UnknownRecordInSelectIsRefused) {
  Build(Start::kPendingWork);
  json c = CompareTestToProd();
  const std::string prod_db = ReadBytes(paths_.prod_db);
  CliRun run = Sync(c["comparison_id"], {"--select", "cms_pages:999"});
  EXPECT_EQ(run.exit_code, 2) << run.out;
  EXPECT_NE(run.err.find("cms_pages:999"), std::string::npos) << run.err;
  EXPECT_TRUE(ReadBytes(paths_.prod_db) == prod_db) << "prod.db changed";
}

// A comparison can be executed once: the second sync is refused with exit 2.
TEST_F(SyncTest, ComparisonExecutedTwiceIsRefused) {
  Build(Start::kPendingWork);
  json c = CompareTestToProd();
  SyncOk(c["comparison_id"]);
  const std::string prod_db = ReadBytes(paths_.prod_db);
  CliRun second = Sync(c["comparison_id"]);
  EXPECT_EQ(second.exit_code, 2) << second.out;
  EXPECT_NE(second.err.find("compare again"), std::string::npos) << second.err;
  EXPECT_TRUE(ReadBytes(paths_.prod_db) == prod_db) << "prod.db changed";
}

// A resolution that is not one of the four names is bad input.
TEST_F(SyncTest, UnknownResolutionIsRefused) {
  Build(Start::kPendingWork);
  json c = CompareTestToProd();
  CliRun unknown_record = Sync(c["comparison_id"], {"--resolve", "x:1=frobnicate"});
  EXPECT_EQ(unknown_record.exit_code, 2) << unknown_record.out;
  CliRun known_record = Sync(c["comparison_id"], {"--resolve", "cms_pages:4=frobnicate"});
  EXPECT_EQ(known_record.exit_code, 2) << known_record.out;
  EXPECT_NE(known_record.err.find("frobnicate"), std::string::npos) << known_record.err;
}

// Scheduling (--at) stores a job and writes nothing now; a time without its zone is refused.
TEST_F(SyncTest, ScheduledSyncWritesNothingNow) {
  Build(Start::kPendingWork);
  json c = CompareTestToProd();
  const std::string prod_db = ReadBytes(paths_.prod_db);
  CliRun run = RunCli({"--config", paths_.config.string(), "sync", c["comparison_id"], "--at",
                       "2030-01-01T00:00:00Z", "--json"});
  EXPECT_EQ(run.exit_code, 0) << run.err;
  EXPECT_EQ(run.Json()["status"], "scheduled");
  EXPECT_EQ(run.Json()["run_at"], "2030-01-01T00:00:00Z");
  EXPECT_TRUE(ReadBytes(paths_.prod_db) == prod_db) << "prod.db changed";
  CliRun zoneless = RunCli({"--config", paths_.config.string(), "sync", c["comparison_id"], "--at",
                            "2030-01-01T00:00:00", "--json"});
  EXPECT_EQ(zoneless.exit_code, 2) << zoneless.out;
  EXPECT_NE(zoneless.err.find("--at"), std::string::npos) << zoneless.err;
}

// A sync PROD -> TEST writes TEST and leaves PROD byte-identical.
TEST_F(SyncTest, ReverseDirectionWritesTest) {
  Build(Start::kPendingWork);
  json c = CompareJson({"--from", "PROD", "--to", "TEST"});
  const std::string prod_db = ReadBytes(paths_.prod_db);
  const std::string prod_assets = AssetTree(paths_.prod_assets, true);
  SyncOk(c["comparison_id"], {"--resolve", "cms_pages:22=link"});
  EXPECT_EQ(
      Scalar(paths_.test_db, "SELECT image_id FROM slides WHERE slider_id = 1 AND position = 2"),
      "3");
  EXPECT_EQ(Scalar(paths_.test_db, "SELECT count(*) FROM menus WHERE id = 3"), "0");
  EXPECT_EQ(Scalar(paths_.test_db, "SELECT count(*) FROM menu_items WHERE menu_id = 3"), "0");
  EXPECT_EQ(Scalar(paths_.test_db, "SELECT body_html FROM cms_pages WHERE id = 21"),
            ProdValue("SELECT body_html FROM cms_pages WHERE id = 22"));
  EXPECT_TRUE(ReadBytes(paths_.prod_db) == prod_db) << "prod.db changed";
  EXPECT_EQ(AssetTree(paths_.prod_assets, true), prod_assets);
  json back = CompareTestToProd();
  for (const char* ref : {"sliders:1", "menus:3", "cms_pages:21", "cms_pages:22", "menus:2"}) {
    EXPECT_EQ(Refs(back).count(ref), 0u) << ref;
  }
}

// history --json lists each sync with its ID, status, test-import flag and applied counts.
TEST_F(SyncTest, HistoryListsSyncs) {
  Build(Start::kPendingWork);
  EXPECT_TRUE(History().empty());
  json c = CompareTestToProd();
  json trial = SyncOk(c["comparison_id"], {"--test-import"});
  json real = SyncOk(c["comparison_id"]);
  json drifted_comparison = CompareTestToProd();
  Prod("UPDATE cms_pages SET title = 'Black Friday!' WHERE id = 20");
  CliRun failed =
      Sync(drifted_comparison["comparison_id"], {"--resolve", "cms_pages:20=insert_as_new"});
  ASSERT_EQ(failed.exit_code, 1) << failed.err;

  json history = History();
  EXPECT_EQ(history.size(), 3u) << history.dump();
  json t = HistoryEntry(trial["sync_id"]);
  ASSERT_FALSE(t.is_null());
  EXPECT_EQ(t["status"], "success");
  EXPECT_EQ(t["test_import"], true);
  EXPECT_EQ(t["comparison_id"], c["comparison_id"]);
  EXPECT_EQ(t["applied"]["new"], 3);
  EXPECT_EQ(t["applied"]["modified"], 4);
  EXPECT_EQ(t["applied"]["deleted"], 1);
  json r = HistoryEntry(real["sync_id"]);
  ASSERT_FALSE(r.is_null());
  EXPECT_EQ(r["status"], "success");
  EXPECT_EQ(r["test_import"], false);
  EXPECT_EQ(r["from"], "TEST");
  EXPECT_EQ(r["to"], "PROD");
  EXPECT_EQ(r["applied"]["new"], 3);
  EXPECT_EQ(r["applied"]["modified"], 4);
  EXPECT_EQ(r["applied"]["deleted"], 1);
  EXPECT_TRUE(r["error"].is_null());
  json f = HistoryEntry(failed.Json()["sync_id"]);
  ASSERT_FALSE(f.is_null());
  EXPECT_EQ(f["status"], "failure");
  EXPECT_NE(f["error"].get<std::string>().find("cms_pages:20"), std::string::npos) << f.dump();
}

// A gallery file whose name would leave the gallery ('..') is reported by the comparison and
// never read or written: the sync is refused, and nothing outside the gallery appears.
TEST_F(SyncTest, MaliciousFileNameIsNeverFollowed) {
  Build(Start::kCommonWithBase);
  Test(
      "INSERT INTO gallery_files (id, folder_id, file_name, mime_type, size_bytes, sha256) "
      "SELECT 80, 4, '../../../escape.png', mime_type, size_bytes, sha256 FROM gallery_files "
      "WHERE id = 6");
  json c = CompareTestToProd();
  EXPECT_NE(c["warnings"].dump().find("unsafe file name"), std::string::npos) << c["warnings"];
  const std::string prod_db = ReadBytes(paths_.prod_db);
  CliRun run = Sync(c["comparison_id"], {"--select", "gallery_files:80"});
  EXPECT_NE(run.exit_code, 0) << run.out;
  EXPECT_NE((run.out + run.err).find("unsafe file name"), std::string::npos) << run.out << run.err;
  EXPECT_TRUE(ReadBytes(paths_.prod_db) == prod_db) << "prod.db changed";
  EXPECT_FALSE(fs::exists(dir_ / "escape.png"));
  EXPECT_FALSE(fs::exists(dir_.parent_path() / "escape.png"));
}

// While another process runs a sync (it holds the work lock), a second sync is refused, and
// other commands do not touch the running sync's journal.
TEST_F(SyncTest, SecondSyncIsRefusedWhileOneRuns) {
  Build(Start::kPendingWork);
  json c = CompareTestToProd();
  store::WorkLock running;
  ASSERT_TRUE(*running.TryAcquire(paths_.state.string()));
  CliRun second = Sync(c["comparison_id"]);
  EXPECT_EQ(second.exit_code, 1) << second.out;
  EXPECT_NE(second.err.find("another envsync is running"), std::string::npos) << second.err;
  CliRun history = RunCli({"--config", paths_.config.string(), "history"});
  EXPECT_EQ(history.exit_code, 0) << history.err;
}

// A gallery file changed on both sides cannot be merged: its row and bytes go together.
TEST_F(SyncTest, MergeOfAGalleryFileIsRefused) {
  Build(Start::kCommonWithBase);
  Test("UPDATE gallery_files SET alt_text = 'TEST words' WHERE id = 6");
  Prod("UPDATE gallery_files SET mime_type = 'image/x-png' WHERE id = 6");
  json c = CompareTestToProd();
  ASSERT_TRUE(FindChange(c, "gallery_files", 6)["mergeable"].get<bool>());
  CliRun run = Sync(c["comparison_id"], {"--resolve", "gallery_files:6=merge"});
  EXPECT_EQ(run.exit_code, 2) << run.out;
  EXPECT_NE(run.err.find("gallery file"), std::string::npos) << run.err;
}

// Renaming a gallery folder is refused (its files would not follow), writing nothing.
TEST_F(SyncTest, FolderRenameIsRefused) {
  Build(Start::kCommonWithBase);
  fs::rename(paths_.test_assets / "gallery/blog", paths_.test_assets / "gallery/journal");
  Test("UPDATE gallery_folders SET path = 'journal' WHERE id = 4");
  json c = CompareTestToProd();
  const std::string prod_db = ReadBytes(paths_.prod_db);
  CliRun run = Sync(c["comparison_id"]);
  EXPECT_EQ(run.exit_code, 2) << run.out;
  EXPECT_NE(run.err.find("gallery_folders:4"), std::string::npos) << run.err;
  EXPECT_NE(run.err.find("renaming a gallery folder"), std::string::npos) << run.err;
  EXPECT_TRUE(ReadBytes(paths_.prod_db) == prod_db) << "prod.db changed";
}

// Deleting a file that a mobile-app JSON on the target still names is refused, naming both.
TEST_F(SyncTest, DeletingAFileNamedByJsonIsRefused) {
  Build(Start::kCommonWithBase);
  Test("DELETE FROM gallery_files WHERE id = 5");  // mobile_app/icon.png
  json c = CompareJson({"--from", "TEST", "--to", "PROD", "--modules", "gallery"});
  ASSERT_EQ(FindChange(c, "gallery_files", 5)["tab"], "deleted");
  CliRun run = Sync(c["comparison_id"]);
  EXPECT_EQ(run.exit_code, 2) << run.out;
  EXPECT_NE(run.err.find("gallery_files:5"), std::string::npos) << run.err;
  EXPECT_NE(run.err.find("integrations.mobile_app"), std::string::npos) << run.err;
}

// A new folder whose new parent has a higher ID is written after its parent.
TEST_F(SyncTest, NewFoldersAreWrittenParentsFirst) {
  Build(Start::kCommonWithBase);
  Test(
      "PRAGMA foreign_keys = OFF;"
      "INSERT INTO gallery_folders (id, path, name, parent_id) VALUES (50, 'x/y', 'Y', 51);"
      "INSERT INTO gallery_folders (id, path, name, parent_id) VALUES (51, 'x', 'X', NULL);");
  json c = CompareTestToProd();
  SyncOk(c["comparison_id"]);
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(paths_.prod_db.c_str(), &db), SQLITE_OK);
  sqlite3_stmt* st = nullptr;
  sqlite3_prepare_v2(db, "SELECT parent_id FROM gallery_folders WHERE id = 50", -1, &st, nullptr);
  ASSERT_EQ(sqlite3_step(st), SQLITE_ROW);
  EXPECT_EQ(sqlite3_column_int64(st, 0), 51);
  sqlite3_finalize(st);
  sqlite3_close(db);
}

// A file already lying where a new gallery file goes is kept aside and comes back on undo.
TEST_F(SyncTest, UntrackedFileAtTheDestinationComesBackOnUndo) {
  Build(Start::kPendingWork);
  const fs::path stray = paths_.prod_assets / "gallery/banners/summer/summer-sale.png";
  WriteBytes(stray, "not an image");
  json c = CompareTestToProd();
  json result = SyncOk(c["comparison_id"]);
  EXPECT_NE(ReadBytes(stray), "not an image");
  CliRun undo = Undo(result["sync_id"]);
  ASSERT_EQ(undo.exit_code, 0) << undo.err;
  EXPECT_EQ(ReadBytes(stray), "not an image");
}

// The drift guard also covers the target record a `link` overwrites: edited since the
// comparison, the sync fails and writes nothing.
TEST_F(SyncTest, LinkTargetEditedSinceTheComparisonIsDrift) {
  Build(Start::kPendingWork);
  json c = CompareTestToProd();
  ASSERT_EQ(FindChange(c, "cms_pages", 21)["conflict"], "key_clash");
  Prod("UPDATE cms_pages SET title = 'Edited on PROD meanwhile' WHERE id = 22");
  const std::string prod_db = ReadBytes(paths_.prod_db);
  CliRun run = Sync(c["comparison_id"], {"--resolve", "cms_pages:21=link"});
  EXPECT_EQ(run.exit_code, 1) << run.err;
  EXPECT_NE(run.Json()["error"].get<std::string>().find("cms_pages:21"), std::string::npos)
      << run.out;
  EXPECT_TRUE(ReadBytes(paths_.prod_db) == prod_db) << "prod.db changed";
}

}  // namespace
}  // namespace envsync::testing
