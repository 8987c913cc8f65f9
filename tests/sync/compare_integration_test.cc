// Integration tests of `envsync compare` on real SQLite environments built from the reference
// schema: every tab, every conflict kind, and the rules of SYNC-SEMANTICS §1-3.
#include <fmt/format.h>

#include <set>

#include "envsync/store/state_store.h"
#include "tests/store/pg_support.h"
#include "tests/store/sqlite_exec.h"
#include "tests/sync/compare_test_support.h"

namespace envsync::testing {
namespace {

using nlohmann::json;

// Every compare of this suite runs again from the same state reading every row through SQL
// (ENVSYNC_REMOTE_DIGESTS=0: the files' pages not digested), and must give the same answer. With
// a PostgreSQL server at hand (scripts/with-postgres), it also runs with both sides on
// PostgreSQL and with PROD on PostgreSQL and TEST on SQLite.
class CompareTest : public DemoEnvironments {
 protected:
  bool MirrorsCompares() const override { return true; }

  void CompareElsewhere(const std::vector<std::string>& args, const CliRun& run,
                        const std::filesystem::path& state_before) override {
    static int counter = 0;
    const std::string prefix =
        "envsync_m" + std::to_string(getpid()) + "_" + std::to_string(counter++);
    const std::string config_text = ReadBytes(paths_.config);
    // Runs the compare on `prod_db` and `test_db` from a copy of the state before it, `rounds`
    // times, and checks each answer against `run`'s.
    auto mirror = [&](const std::string& mix, const std::string& prod_db,
                      const std::string& test_db, int rounds, bool full_read) {
      const std::filesystem::path state = dir_ / (prefix + "-" + mix + "-state.db");
      if (std::filesystem::exists(state_before)) std::filesystem::copy_file(state_before, state);
      std::string text = config_text;
      auto replace = [&](const std::string& from, const std::string& to) {
        const size_t at = text.find("\"" + from + "\"");
        ASSERT_NE(at, std::string::npos) << from;
        text.replace(at + 1, from.size(), to);
      };
      replace(paths_.state.string(), state.string());
      replace(paths_.prod_db.string(), prod_db);
      replace(paths_.test_db.string(), test_db);
      const std::filesystem::path config = dir_ / (prefix + "-" + mix + ".toml");
      WriteBytes(config, text);
      std::vector<std::string> full = {"--config", config.string(), "compare"};
      full.insert(full.end(), args.begin(), args.end());
      full.push_back("--json");
      for (int round = 0; round < rounds; ++round) {
        if (full_read) setenv("ENVSYNC_REMOTE_DIGESTS", "0", 1);
        CliRun other = RunCli(full);
        unsetenv("ENVSYNC_REMOTE_DIGESTS");
        ASSERT_EQ(other.exit_code, 0) << mix << ": " << other.err;
        nlohmann::json expected = run.Json();
        nlohmann::json got = other.Json();
        for (nlohmann::json* j : {&expected, &got}) {
          j->erase("comparison_id");
          j->erase("created_at");
        }
        EXPECT_EQ(got, expected) << "the " << mix << " compare (round " << round + 1
                                 << ") differs from the digested SQLite one";
      }
    };
    mirror("sqlite-full-read", paths_.prod_db.string(), paths_.test_db.string(), 1, true);
    if (ServerUri().empty()) return;
    const std::string prod = CopySqliteToPostgres(paths_.prod_db, prefix + "_prod");
    const std::string test = CopySqliteToPostgres(paths_.test_db, prefix + "_test");
    // Both sides on PostgreSQL, the compare runs twice: the second reads only what the servers'
    // digests say changed since the first recorded them, and must say the same.
    mirror("postgres", prod, test, 2, false);
    mirror("prod-on-postgres", prod, paths_.test_db.string(), 1, false);
    mirror("test-on-postgres", paths_.prod_db.string(), test, 1, false);
    DropPostgresDatabase(prefix + "_prod");
    DropPostgresDatabase(prefix + "_test");
  }
};

// The demo's pending work lands in the tabs docs/DEMO.md promises, with the right conflict kind,
// reason and default selection for each record.
TEST_F(CompareTest, DemoPendingWorkFillsEveryTab) {
  Build(Start::kPendingWork);
  json c = CompareJson({"--from", "TEST", "--to", "PROD"});
  EXPECT_EQ(c["counts"], json({{"conflicts", 6}, {"new", 4}, {"modified", 6}, {"deleted", 2}}));
  auto expect = [&](const std::string& table, json id, const std::string& tab, json conflict,
                    json reason, bool selected) {
    json change = FindChange(c, table, id);
    ASSERT_FALSE(change.is_null()) << table << ":" << id;
    EXPECT_EQ(change["tab"], tab) << table << ":" << id;
    EXPECT_EQ(change["conflict"], conflict) << table << ":" << id;
    EXPECT_EQ(change["reason"], reason) << table << ":" << id;
    EXPECT_EQ(change["selected"], selected) << table << ":" << id;
  };
  expect("cms_pages", 4, "conflicts", "both_modified", nullptr, false);
  expect("cms_pages", 3, "conflicts", "both_modified", nullptr, false);
  expect("cms_pages", 5, "conflicts", "modified_deleted", nullptr, false);
  expect("content_blocks", 1, "conflicts", "deleted_modified", nullptr, false);
  expect("cms_pages", 20, "conflicts", "id_collision", nullptr, false);
  expect("cms_pages", 21, "conflicts", "key_clash", nullptr, false);
  expect("cms_pages", 8, "new", nullptr, nullptr, true);
  expect("gallery_files", 9, "new", nullptr, nullptr, true);
  expect("gallery_files", 10, "new", nullptr, nullptr, true);
  expect("menus", 3, "new", nullptr, "target_deleted", false);
  expect("cms_pages", 2, "modified", nullptr, nullptr, true);
  expect("menus", 1, "modified", nullptr, nullptr, true);
  expect("gallery_files", 4, "modified", nullptr, nullptr, true);
  expect("system_settings", "integrations.mobile_app.home", "modified", nullptr, nullptr, true);
  expect("sliders", 1, "modified", nullptr, "target_changed", false);
  expect("menus", 2, "modified", nullptr, "target_changed", false);
  expect("content_blocks", 2, "deleted", nullptr, nullptr, true);
  expect("cms_pages", 22, "deleted", nullptr, "target_only", false);
  EXPECT_EQ(c["from"], "TEST");
  EXPECT_EQ(c["to"], "PROD");
  EXPECT_EQ(c["mode"], "all");
  EXPECT_TRUE(c["forced"].empty());
}

// The seed's example: a new page on TEST and a slider edited on PROD; syncing TEST -> PROD
// selects only the new page, and lists the slider as the target's own edit.
TEST_F(CompareTest, SeedExampleMovesOnlyTheNewPage) {
  Build(Start::kCommonWithBase);
  Test(
      "INSERT INTO cms_pages (id, slug, title, body_html, status, updated_at) "
      "VALUES (57, 'summer-sale', 'Summer sale', '<p>Sale</p>', 'published', '2024-06-01')");
  Prod("UPDATE slides SET image_id = 3 WHERE slider_id = 1 AND position = 2");
  json c = CompareJson({"--from", "TEST", "--to", "PROD"});
  std::vector<std::string> selected;
  for (const json& change : c["changes"]) {
    if (change["selected"])
      selected.push_back(change["table"].get<std::string>() + ":" + change["source_id"].dump());
  }
  EXPECT_EQ(selected, std::vector<std::string>{"cms_pages:57"});
  json page = FindChange(c, "cms_pages", 57);
  EXPECT_EQ(page["tab"], "new");
  EXPECT_EQ(page["key"], "summer-sale");
  EXPECT_TRUE(page["target_id"].is_null());
  json slider = FindChange(c, "sliders", 1);
  EXPECT_EQ(slider["tab"], "modified");
  EXPECT_EQ(slider["reason"], "target_changed");
  EXPECT_EQ(FieldNames(slider), std::vector<std::string>{"slides"});
}

// Before any base exists: present/absent is New, equal keys are Modified, different keys are an
// id_collision, and a target-only record is Deleted but not selected (target_only).
TEST_F(CompareTest, WithoutBaseRowsFollowTheTwoWayRules) {
  Build(Start::kCommonNoBase);
  Test("INSERT INTO content_blocks (id, code, name, html) VALUES (40, 'promo-x', 'X', '<b>x</b>')");
  Test("UPDATE cms_pages SET title = 'About us (TEST)' WHERE id = 2");
  Test("INSERT INTO menus (id, code, name) VALUES (30, 'test-menu', 'Test menu')");
  Prod("INSERT INTO menus (id, code, name) VALUES (30, 'prod-menu', 'Prod menu')");
  Prod("INSERT INTO content_blocks (id, code, name, html) VALUES (41, 'prod-only', 'P', '<i/>')");
  json c = CompareJson({"--from", "TEST", "--to", "PROD"});
  EXPECT_EQ(FindChange(c, "content_blocks", 40)["tab"], "new");
  EXPECT_EQ(FindChange(c, "content_blocks", 40)["selected"], true);
  EXPECT_EQ(FindChange(c, "cms_pages", 2)["tab"], "modified");
  EXPECT_EQ(FindChange(c, "cms_pages", 2)["selected"], true);
  EXPECT_EQ(FindChange(c, "menus", 30)["conflict"], "id_collision");
  EXPECT_EQ(FindChange(c, "menus", 30)["selected"], false);
  EXPECT_EQ(FindChange(c, "content_blocks", 41)["tab"], "deleted");
  EXPECT_EQ(FindChange(c, "content_blocks", 41)["reason"], "target_only");
  EXPECT_EQ(FindChange(c, "content_blocks", 41)["selected"], false);
  EXPECT_EQ(c["counts"], json({{"conflicts", 1}, {"new", 1}, {"modified", 1}, {"deleted", 1}}));
}

// With a base: one-sided edits and deletions are told apart from the target's own work.
TEST_F(CompareTest, WithBaseTellsWhoChangedWhat) {
  Build(Start::kCommonWithBase);
  Test("UPDATE content_blocks SET html = '<p>new</p>' WHERE id = 3");  // s != b, t = b
  Prod("DELETE FROM content_blocks WHERE id = 2");                     // target deleted
  Test("DELETE FROM menu_items WHERE menu_id = 2; DELETE FROM menus WHERE id = 2");  // t = b
  json c = CompareJson({"--from", "TEST", "--to", "PROD"});
  json modified = FindChange(c, "content_blocks", 3);
  EXPECT_EQ(modified["tab"], "modified");
  EXPECT_EQ(modified["selected"], true);
  EXPECT_EQ(modified["fields"],
            json::parse(R"([{"field":"html","source":"<p>new</p>",
      "target":)" + json(modified["fields"][0]["target"]).dump() +
                        R"(,"base":)" + json(modified["fields"][0]["target"]).dump() + "}]"));
  json restored = FindChange(c, "content_blocks", 2);
  EXPECT_EQ(restored["tab"], "new");
  EXPECT_EQ(restored["reason"], "target_deleted");
  EXPECT_EQ(restored["selected"], false);
  json deleted = FindChange(c, "menus", 2);
  EXPECT_EQ(deleted["tab"], "deleted");
  EXPECT_EQ(deleted["reason"], nullptr);
  EXPECT_EQ(deleted["selected"], true);
}

// A pair read because one side's row moved since its base, while the other side's row is the
// one the base recorded: that side's record is the base (taken from it, not looked up), so the
// change is told as the moved side's, with that side's values as the base. A pair whose rows
// both moved still finds its base in the state store. The mirror reads every row through SQL
// with the stored bases and must agree.
TEST_F(CompareTest, TheSideWhoseRowDidNotMoveIsTheBase) {
  Build(Start::kCommonWithBase, 100);  // few rows change: the plan reads them by ID
  Test("UPDATE cms_pages SET title = 'About us (TEST)' WHERE id = 1");       // TEST's edit
  Prod("UPDATE cms_pages SET body_html = '<p>PROD only</p>' WHERE id = 2");  // PROD's edit
  Test("UPDATE cms_pages SET title = 'Contact (TEST)' WHERE id = 3");        // both, apart
  Prod("UPDATE cms_pages SET body_html = '<p>Contact (PROD)</p>' WHERE id = 3");
  Test("DELETE FROM menu_items WHERE id = 7; DELETE FROM cms_pages WHERE id = 7");  // TEST deleted
  // PROD's row of TEST's edited page moves too, in a column not compared: both rows moved, so
  // its base is looked up, and TEST's edit is still the only change.
  Prod("UPDATE cms_pages SET updated_at = '2025-01-01T00:00:00Z' WHERE id = 1");
  json c = CompareJson({"--from", "TEST", "--to", "PROD"});

  json about = FindChange(c, "cms_pages", 1);
  EXPECT_EQ(about["tab"], "modified");
  EXPECT_EQ(about["reason"], nullptr);
  EXPECT_EQ(about["selected"], true);
  ASSERT_EQ(FieldNames(about), std::vector<std::string>{"title"});
  EXPECT_EQ(about["fields"][0]["source"], "About us (TEST)");
  EXPECT_EQ(about["fields"][0]["base"], about["fields"][0]["target"]);

  json prod_edit = FindChange(c, "cms_pages", 2);
  EXPECT_EQ(prod_edit["tab"], "modified");
  EXPECT_EQ(prod_edit["reason"], "target_changed");
  EXPECT_EQ(prod_edit["selected"], false);
  ASSERT_EQ(FieldNames(prod_edit), std::vector<std::string>{"body_html"});
  EXPECT_EQ(prod_edit["fields"][0]["target"], "<p>PROD only</p>");
  EXPECT_EQ(prod_edit["fields"][0]["base"], prod_edit["fields"][0]["source"]);

  json contact = FindChange(c, "cms_pages", 3);
  EXPECT_EQ(contact["tab"], "conflicts");
  EXPECT_TRUE(contact["mergeable"].get<bool>());
  for (const json& f : contact["fields"]) {
    EXPECT_EQ(f["base"], f["field"] == "title" ? f["target"] : f["source"]) << f.dump();
  }

  json deleted = FindChange(c, "cms_pages", 7);
  EXPECT_EQ(deleted["tab"], "deleted");
  EXPECT_EQ(deleted["reason"], nullptr);
  EXPECT_EQ(deleted["selected"], true);
  for (const json& f : deleted["fields"]) EXPECT_EQ(f["base"], f["target"]) << f.dump();
}

// Both sides changing different fields is mergeable; the same field is not; each field shows
// the base value where envsync knows it.
TEST_F(CompareTest, BothModifiedIsMergeableOnlyForDisjointFields) {
  Build(Start::kPendingWork);
  json c = CompareJson({"--from", "TEST", "--to", "PROD"});
  json contact = FindChange(c, "cms_pages", 3);
  EXPECT_TRUE(contact["mergeable"].get<bool>());
  ASSERT_EQ(FieldNames(contact), (std::vector<std::string>{"title", "body_html"}));
  for (const json& f : contact["fields"]) {
    // Each field changed on one side only, so its base is the other side's value.
    if (f["field"] == "title") {
      EXPECT_EQ(f["base"], f["target"]);
    }
    if (f["field"] == "body_html") {
      EXPECT_EQ(f["base"], f["source"]);
    }
  }
  json faq = FindChange(c, "cms_pages", 4);
  EXPECT_FALSE(faq["mergeable"].get<bool>());
  ASSERT_EQ(FieldNames(faq), std::vector<std::string>{"body_html"});
  EXPECT_NE(faq["fields"][0]["source"], faq["fields"][0]["target"]);
  EXPECT_TRUE(faq["fields"][0]["base"].is_null()) << "both changed it: base value not kept";
}

// Mode `new` lists only records new on the source and the conflicts of new records.
TEST_F(CompareTest, ModeNewListsOnlyNewRecordsAndTheirConflicts) {
  Build(Start::kPendingWork);
  json c = CompareJson({"--from", "TEST", "--to", "PROD", "--mode", "new"});
  EXPECT_EQ(c["mode"], "new");
  EXPECT_EQ(c["counts"]["modified"], 0);
  EXPECT_EQ(c["counts"]["deleted"], 0);
  std::set<std::string> listed;
  for (const json& change : c["changes"]) {
    listed.insert(change["table"].get<std::string>() + ":" + change["source_id"].dump());
    EXPECT_TRUE(change["reason"].is_null());
  }
  EXPECT_EQ(listed, (std::set<std::string>{"cms_pages:8", "gallery_files:9", "gallery_files:10",
                                           "cms_pages:20", "cms_pages:21"}));
}

// Users, orders, translations, promotion codes and every non-mobile-app setting are never
// compared, and comparing writes nothing to either environment.
TEST_F(CompareTest, NeverSynchronizedDataIsIgnoredAndNothingIsWritten) {
  Build(Start::kCommonWithBase);
  Test(
      "INSERT INTO users (id, email, name, role) VALUES (90, 'new@test', 'N', 'editor');"
      "UPDATE translations SET value = 'changed' WHERE id IN (SELECT id FROM translations LIMIT 1);"
      "INSERT INTO promotion_codes (id, code, discount_pct) VALUES (90, 'TESTONLY', 50);"
      "INSERT INTO orders (id, number, total_cents, placed_at) VALUES (90, 'T-90', 100, 'x');"
      "UPDATE system_settings SET value = 'smtp.other' WHERE key = 'smtp.host';"
      "INSERT INTO system_settings (key, value) VALUES ('integrations.payments.key', 'secret');");
  const std::string prod_before = ReadBytes(paths_.prod_db);
  const std::string test_before = ReadBytes(paths_.test_db);
  json c = CompareJson({"--from", "TEST", "--to", "PROD"});
  EXPECT_TRUE(c["changes"].empty()) << c["changes"].dump();
  EXPECT_EQ(ReadBytes(paths_.prod_db), prod_before);
  EXPECT_EQ(ReadBytes(paths_.test_db), test_before);
}

// Environment-local columns (updated_by, updated_at) are neither compared nor shown.
TEST_F(CompareTest, EnvironmentLocalColumnsAreNotCompared) {
  Build(Start::kCommonWithBase);
  Test("UPDATE cms_pages SET updated_at = '2030-01-01', updated_by = NULL WHERE id = 1");
  Test("UPDATE cms_pages SET updated_at = '2030-01-01', title = 'About!' WHERE id = 2");
  json c = CompareJson({"--from", "TEST", "--to", "PROD"});
  EXPECT_TRUE(FindChange(c, "cms_pages", 1).is_null());
  EXPECT_EQ(FieldNames(FindChange(c, "cms_pages", 2)), std::vector<std::string>{"title"});
}

// Child rows travel with their record and are compared by content and order, not by ID.
TEST_F(CompareTest, ChildRowsComparedByContentAndOrderNotIds) {
  Build(Start::kCommonWithBase);
  // Same slides re-inserted under new IDs: nothing to sync.
  Test(
      "CREATE TEMP TABLE s AS SELECT * FROM slides WHERE slider_id = 2;"
      "DELETE FROM slides WHERE slider_id = 2;"
      "INSERT INTO slides (id, slider_id, position, image_id, link_url, caption) "
      "SELECT id + 500, slider_id, position, image_id, link_url, caption FROM s;");
  // Two menu items swap places: the menu is modified.
  Test(
      "UPDATE menu_items SET position = 99 WHERE menu_id = 1 AND position = 1;"
      "UPDATE menu_items SET position = 1 WHERE menu_id = 1 AND position = 2;"
      "UPDATE menu_items SET position = 2 WHERE menu_id = 1 AND position = 99;");
  json c = CompareJson({"--from", "TEST", "--to", "PROD"});
  EXPECT_TRUE(FindChange(c, "sliders", 2).is_null());
  json menu = FindChange(c, "menus", 1);
  ASSERT_FALSE(menu.is_null());
  EXPECT_EQ(FieldNames(menu), std::vector<std::string>{"menu_items"});
  EXPECT_TRUE(menu["fields"][0]["source"].is_array()) << "child rows are shown as JSON rows";
  EXPECT_EQ(menu["fields"][0]["source"][0]["label"], menu["fields"][0]["target"][1]["label"]);
}

// Selecting system_config forces the gallery in with the folders its JSON names, and says so.
TEST_F(CompareTest, SystemConfigForcesGalleryWithItsFolders) {
  Build(Start::kPendingWork);
  json c = CompareJson({"--from", "TEST", "--to", "PROD", "--modules", "system_config"});
  EXPECT_EQ(c["modules"], json({"gallery", "system_config"}));
  ASSERT_EQ(c["forced"].size(), 1u);
  EXPECT_EQ(c["forced"][0]["module"], "gallery");
  EXPECT_EQ(c["forced"][0]["required_by"], "system_config");
  EXPECT_EQ(c["forced"][0]["folders"], json({"mobile_app"}));
  for (const json& change : c["changes"]) {
    EXPECT_TRUE(change["module"] == "system_config" ||
                change["key"].get<std::string>().rfind("mobile_app", 0) == 0)
        << change.dump();
  }
  json winter = FindChange(c, "gallery_files", 10);
  EXPECT_EQ(winter["required_by"], json({"system_settings:integrations.mobile_app.home"}));
  EXPECT_TRUE(FindChange(c, "gallery_files", 9).is_null()) << "banners/summer is not forced";
}

// A folder restriction keeps the gallery to the chosen folders and their subfolders.
TEST_F(CompareTest, FolderRestrictionKeepsChosenFoldersAndSubfolders) {
  Build(Start::kPendingWork);
  json c = CompareJson(
      {"--from", "TEST", "--to", "PROD", "--modules", "gallery", "--folders", "banners"});
  EXPECT_EQ(c["folders"], json({"banners"}));
  EXPECT_FALSE(FindChange(c, "gallery_files", 9).is_null()) << "banners/summer is a subfolder";
  EXPECT_TRUE(FindChange(c, "gallery_files", 4).is_null()) << "mobile_app is not chosen";
  EXPECT_TRUE(FindChange(c, "gallery_files", 10).is_null());
}

// Changed image bytes are a modification; bytes that do not match their recorded SHA-256, and
// missing files, are reported with the path.
TEST_F(CompareTest, ImageBytesAreComparedAndCheckedAgainstTheirSha256) {
  Build(Start::kCommonWithBase);
  const auto beach = paths_.test_assets / "gallery/banners/summer/beach.png";
  WriteBytes(beach, ReadBytes(paths_.test_assets / "gallery/blog/post-1.png"));
  std::filesystem::remove(paths_.test_assets / "gallery/mobile_app/icon.png");
  json c = CompareJson({"--from", "TEST", "--to", "PROD"});
  json changed = FindChange(c, "gallery_files", 3);
  EXPECT_EQ(changed["tab"], "modified");
  EXPECT_EQ(FieldNames(changed), std::vector<std::string>{"file_bytes"});
  json missing = FindChange(c, "gallery_files", 5);
  ASSERT_FALSE(missing.is_null());
  EXPECT_EQ(missing["fields"][0]["source"], "missing");
  std::string warnings = c["warnings"].dump();
  EXPECT_NE(warnings.find("do not match its recorded SHA-256"), std::string::npos) << warnings;
  EXPECT_NE(warnings.find("mobile_app/icon.png"), std::string::npos) << warnings;
}

// A file moved out of the chosen folders on one side is still compared with its counterpart:
// a pair takes part when either side is in scope.
TEST_F(CompareTest, FolderScopeCoversEitherSideOfAPair) {
  Build(Start::kCommonWithBase);
  std::filesystem::copy_file(paths_.test_assets / "gallery/banners/summer/beach.png",
                             paths_.test_assets / "gallery/blog/beach.png");
  Test("UPDATE gallery_files SET folder_id = 4 WHERE id = 3");
  json c = CompareJson(
      {"--from", "TEST", "--to", "PROD", "--modules", "gallery", "--folders", "banners"});
  json moved = FindChange(c, "gallery_files", 3);
  ASSERT_FALSE(moved.is_null());
  EXPECT_EQ(moved["tab"], "modified");
  EXPECT_EQ(FieldNames(moved), std::vector<std::string>{"folder_id"});
}

// A system_config whose JSONs name no gallery file forces nothing in.
TEST_F(CompareTest, SystemConfigWithoutGalleryNamesForcesNothing) {
  Build(Start::kCommonWithBase);
  const std::string plain =
      "UPDATE system_settings SET value = '{\"title\":\"Hi\"}' "
      "WHERE key LIKE 'integrations.mobile_app.%';";
  Test(plain);
  Prod(plain);
  json c = CompareJson({"--from", "TEST", "--to", "PROD", "--modules", "system_config"});
  EXPECT_EQ(c["modules"], json({"system_config"}));
  EXPECT_TRUE(c["forced"].empty());
}

// The reverse direction swaps the roles: PROD's own work is now the source's.
TEST_F(CompareTest, ReverseDirectionSwapsTheRoles) {
  Build(Start::kPendingWork);
  json c = CompareJson({"--from", "PROD", "--to", "TEST"});
  EXPECT_EQ(c["from"], "PROD");
  json slider = FindChange(c, "sliders", 1);
  EXPECT_EQ(slider["tab"], "modified");
  EXPECT_EQ(slider["selected"], true);
  EXPECT_TRUE(slider["reason"].is_null());
  EXPECT_EQ(FindChange(c, "cms_pages", 2)["reason"], "target_changed");
  EXPECT_EQ(FindChange(c, "cms_pages", 8)["tab"], "deleted");
  EXPECT_EQ(FindChange(c, "cms_pages", 8)["reason"], "target_only");
  EXPECT_EQ(FindChange(c, "cms_pages", 22)["conflict"], "key_clash");
  EXPECT_EQ(FindChange(c, "cms_pages", 5)["conflict"], "deleted_modified");
  EXPECT_EQ(FindChange(c, "content_blocks", 1)["conflict"], "modified_deleted");
  EXPECT_EQ(FindChange(c, "menus", 3)["tab"], "deleted");
  EXPECT_EQ(FindChange(c, "menus", 3)["selected"], true);
  EXPECT_EQ(FindChange(c, "content_blocks", 2)["reason"], "target_deleted");
}

// Records matched through the identity map: TEST 55 <-> PROD 63 compare as one record, and a
// page referencing 55 on TEST and 63 on PROD compares equal.
TEST_F(CompareTest, IdentityMapMatchesRenumberedRecordsAndTheirReferences) {
  Build(Start::kCommonWithBase);
  // The same image, added on each side under its own ID, used by the same page.
  auto add_file = [](int id) {
    return "INSERT INTO gallery_files (id, folder_id, file_name, mime_type, size_bytes, sha256) "
           "SELECT " +
           std::to_string(id) +
           ", 4, 'post-2.png', mime_type, size_bytes, sha256 "
           "FROM gallery_files WHERE id = 6;"
           "UPDATE cms_pages SET hero_image_id = " +
           std::to_string(id) + " WHERE id = 7;";
  };
  Test(add_file(55));
  Prod(add_file(63));
  for (const char* side : {"test-assets", "prod-assets"}) {
    std::filesystem::copy_file(dir_ / side / "gallery/blog/post-1.png",
                               dir_ / side / "gallery/blog/post-2.png");
  }
  // Without the pair, the two files are different records and the page's hero differs.
  json before = CompareJson({"--from", "TEST", "--to", "PROD"});
  EXPECT_EQ(FindChange(before, "gallery_files", 55)["conflict"], "key_clash");
  EXPECT_FALSE(FindChange(before, "cms_pages", 7).is_null());

  {
    auto state = store::OpenStateStore(paths_.state.string());
    ASSERT_TRUE(state.ok());
    ASSERT_TRUE((*state)->AddIdentity("gallery_files", 63, 55).ok());
  }
  json after = CompareJson({"--from", "TEST", "--to", "PROD"});
  EXPECT_TRUE(after["changes"].empty()) << after["changes"].dump();
  // TEST 55 is no longer compared with PROD 55, nor PROD 63 with TEST 63.
  // Only PROD 63 changes: with the base recorded for the mapped pair, that is the target's own
  // edit (without a base it would be a plain, selected modification).
  Prod("UPDATE gallery_files SET alt_text = 'renamed' WHERE id = 63");
  json edited = CompareJson({"--from", "TEST", "--to", "PROD"});
  json file = FindChange(edited, "gallery_files", 55);
  EXPECT_EQ(file["target_id"], 63);
  EXPECT_EQ(file["tab"], "modified");
  EXPECT_EQ(file["reason"], "target_changed");
  EXPECT_EQ(file["selected"], false);
}

// A table of more than 16,384 rows a side is planned from the files' digests in two halves,
// cut at the source's middle ID, on two threads: edits on both sides of the cut and on it,
// rows gone and added at either end, and an identity pair in the upper half are all read (the
// fixture also checks the answer against a compare reading every row through SQL).
TEST_F(CompareTest, ALargeTableIsPlannedInTwoHalvesAndMissesNothing) {
  Build(Start::kCommonWithBase, 20000);
  const int64_t middle = store::QueryInteger(
      paths_.test_db,
      "SELECT id FROM cms_pages ORDER BY id LIMIT 1 OFFSET (SELECT count(*) / 2 FROM cms_pages)");
  const int64_t first = store::QueryInteger(
      paths_.test_db, "SELECT min(id) FROM cms_pages WHERE slug GLOB 'bulk-page-*'");
  const int64_t last = store::QueryInteger(paths_.test_db, "SELECT max(id) FROM cms_pages");
  ASSERT_GT(middle, 10000);
  ASSERT_GT(last, middle + 1000);
  // A page of the upper half exists on PROD as `paired` and on TEST as `renumbered`: paired
  // through the identity map, and equal, the pair is no change.
  const int64_t paired = middle + 500;
  const int64_t renumbered = last + 10;
  Test(
      fmt::format("CREATE TEMP TABLE moved AS SELECT * FROM cms_pages WHERE id = {0}; "
                  "DELETE FROM cms_pages WHERE id = {0}; UPDATE moved SET id = {1}; "
                  "INSERT INTO cms_pages SELECT * FROM moved",
                  paired, renumbered));
  {
    auto state = store::OpenStateStore(paths_.state.string());
    ASSERT_TRUE(state.ok());
    ASSERT_TRUE((*state)->AddIdentity("cms_pages", paired, renumbered).ok());
  }
  json recorded = CompareJson({"--from", "TEST", "--to", "PROD"});
  EXPECT_TRUE(recorded["changes"].empty()) << recorded["changes"].dump();

  const std::vector<int64_t> edited_on_test = {first, middle - 1, middle, middle + 1, last};
  for (int64_t id : edited_on_test) {
    Test(fmt::format("UPDATE cms_pages SET title = title || ' (TEST)' WHERE id = {}", id));
  }
  Prod(fmt::format("UPDATE cms_pages SET title = title || ' (PROD)' WHERE id = {}", paired));
  Prod(fmt::format("UPDATE cms_pages SET title = title || ' (PROD)' WHERE id = {}", middle + 2));
  Test(fmt::format("DELETE FROM cms_pages WHERE id IN ({}, {})", first + 1, last - 1));
  Test(fmt::format(
      "INSERT INTO cms_pages (id, slug, title, body_html, layout, status, updated_by, updated_at) "
      "VALUES ({}, 'late-page', 'Late page', '<p>late</p>', 'default', 'draft', 1, "
      "'2024-06-01T00:00:00Z')",
      last + 20));
  json c = CompareJson({"--from", "TEST", "--to", "PROD"});
  std::set<std::pair<std::string, int64_t>> listed;
  for (const json& change : c["changes"]) {
    if (change["table"] != "cms_pages") continue;
    const json& id = change["source_id"].is_null() ? change["target_id"] : change["source_id"];
    listed.insert({change["tab"].get<std::string>(), id.get<int64_t>()});
  }
  std::set<std::pair<std::string, int64_t>> expected = {
      {"new", last + 20},
      {"deleted", first + 1},
      {"deleted", last - 1},
      {"modified", renumbered},   // the pair: PROD's own edit
      {"modified", middle + 2}};  // PROD's own edit
  for (int64_t id : edited_on_test) expected.insert({"modified", id});
  EXPECT_EQ(listed, expected) << c["changes"].dump();
  EXPECT_EQ(FindChange(c, "cms_pages", renumbered)["target_id"], paired);
  EXPECT_EQ(FindChange(c, "cms_pages", renumbered)["reason"], "target_changed");
}

// A comparison is stored and `show` reprints it, whole or one tab.
TEST_F(CompareTest, ShowReprintsAStoredComparison) {
  Build(Start::kPendingWork);
  json c = CompareJson({"--from", "TEST", "--to", "PROD"});
  const std::string id = c["comparison_id"];
  CliRun shown = RunCli({"--config", paths_.config.string(), "show", id, "--json"});
  ASSERT_EQ(shown.exit_code, 0) << shown.err;
  EXPECT_EQ(shown.Json(), c);
  CliRun tab = RunCli({"--config", paths_.config.string(), "show", id, "--tab", "new", "--json"});
  ASSERT_EQ(tab.exit_code, 0) << tab.err;
  EXPECT_EQ(tab.Json()["changes"].size(), 4u);
  CliRun text = RunCli({"--config", paths_.config.string(), "show", id, "--tab", "conflicts"});
  ASSERT_EQ(text.exit_code, 0);
  EXPECT_NE(text.out.find("cms_pages:20"), std::string::npos) << text.out;
  EXPECT_NE(text.out.find("id_collision"), std::string::npos);
  EXPECT_EQ(text.out.find("old-promo"), std::string::npos) << "deleted tab not shown";
}

// Without --json, compare prints the counts per tab and each record with its key and reason.
TEST_F(CompareTest, SummaryShowsCountsKeysAndReasons) {
  Build(Start::kPendingWork);
  CliRun run =
      RunCli({"--config", paths_.config.string(), "compare", "--from", "TEST", "--to", "PROD"});
  ASSERT_EQ(run.exit_code, 0) << run.err;
  for (const char* needle : {"Conflicts", "New", "Modified", "Deleted", "summer-sale",
                             "target_changed", "key_clash", "required by: cms_pages:8"}) {
    EXPECT_NE(run.out.find(needle), std::string::npos) << needle << "\n" << run.out;
  }
  EXPECT_NE(run.err.find("records/s"), std::string::npos) << run.err;
}

// A second comparison with nothing changed in between lists the same records: comparing alone
// never moves the base past an unsynchronized difference.
TEST_F(CompareTest, RepeatedComparisonIsStable) {
  Build(Start::kPendingWork);
  json first = CompareJson({"--from", "TEST", "--to", "PROD"});
  json second = CompareJson({"--from", "TEST", "--to", "PROD"});
  EXPECT_EQ(first["changes"], second["changes"]);
  EXPECT_NE(first["comparison_id"], second["comparison_id"]);
}

}  // namespace
}  // namespace envsync::testing
