// A sync journals each record's image as text (sync/images.h): ReadImageText writes it
// directly, and must give byte for byte what nlohmann writes for ReadImage, since recovery and
// undo compare a journal written by either (the text of a journal from before the direct
// writer is nlohmann's). Checked for every record of every table of the demo's pending work on
// both sides, with rows holding what JSON escapes, text that is not UTF-8, BLOBs and reals.
#include "sync/images.h"

#include <filesystem>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <vector>

#include "envsync/core/config.h"
#include "envsync/core/embedded_data.h"
#include "envsync/core/manifest.h"
#include "envsync/store/environment.h"
#include "tests/sync/compare_test_support.h"

namespace envsync::testing {
namespace {

class ImagesTest : public DemoEnvironments {};

TEST_F(ImagesTest, DirectTextIsWhatNlohmannWritesForEveryRecord) {
  Build(Start::kPendingWork);
  // Awkward values in a page and in a menu's child rows (TEST) and in a slider (PROD).
  Test(
      "UPDATE cms_pages SET title = 'quote \" backslash \\ tab \t newline \n bell ' || char(7) "
      "|| ' caf\xc3\xa9', body_html = X'FF00C328', updated_by = 2.5 WHERE id = (SELECT min(id) "
      "FROM cms_pages);"
      "UPDATE menu_items SET label = 'sl\xc3\xa1ve / \"x\"' || char(1) WHERE id IN (SELECT id FROM "
      "menu_items LIMIT 2);");
  Prod("UPDATE slides SET caption = X'C3' WHERE id = (SELECT min(id) FROM slides);");
  auto config = LoadConfig(paths_.config.string());
  ASSERT_TRUE(config.ok()) << config.status().message();
  auto manifest = Manifest::Parse(EmbeddedManifest(), kEmbeddedManifestName);
  ASSERT_TRUE(manifest.ok()) << manifest.status().message();
  int64_t images = 0;
  int64_t with_children = 0;
  int64_t with_hex = 0;
  for (const char* name : {"PROD", "TEST"}) {
    auto env = store::OpenEnvironment(*config->Find(name), store::Access::kReadOnly);
    ASSERT_TRUE(env.ok()) << env.status().message();
    for (const ModuleSpec& module : manifest->modules()) {
      for (const TableSpec& table : module.tables) {
        store::ScanRequest ids;
        ids.table = table.name;
        ids.columns = {table.id};
        auto cursor = (*env)->Scan(ids);
        ASSERT_TRUE(cursor.ok()) << cursor.status().message();
        std::vector<Value> row;
        std::vector<Value> all;
        while ((*cursor)->Next(&row)) all.push_back(row[0]);
        ASSERT_TRUE((*cursor)->status().ok());
        all.push_back(int64_t{987654321});  // no such record: no image
        // Many at once, out of order and one asked twice, as a sync reads them.
        std::vector<Value> asked(all.rbegin(), all.rend());
        asked.push_back(all.front());
        std::vector<std::string> batch(asked.size());
        std::vector<int> visits(asked.size(), 0);
        ASSERT_TRUE(
            sync::ReadImageTexts(**env, table, asked, [&](size_t i, const sync::ImageText& image) {
              batch[i] = std::string(image.text);
              ++visits[i];
            }).ok());
        for (size_t i = 0; i < asked.size(); ++i) {
          SCOPED_TRACE(std::string(name) + " batch " + RecordRef(table.name, asked[i]));
          EXPECT_EQ(visits[i], 1);
          auto one = sync::ReadImageText(**env, table, asked[i]);
          ASSERT_TRUE(one.ok()) << one.status().message();
          EXPECT_EQ(batch[i], *one);
        }
        for (const Value& id : all) {
          SCOPED_TRACE(std::string(name) + " " + RecordRef(table.name, id));
          auto reference = sync::ReadImage(**env, table, id);
          ASSERT_TRUE(reference.ok()) << reference.status().message();
          auto text = sync::ReadImageText(**env, table, id);
          ASSERT_TRUE(text.ok()) << text.status().message();
          const std::string expected = reference->is_null() ? "" : reference->dump();
          ASSERT_EQ(*text, expected);
          if (reference->is_null()) continue;
          ++images;
          if (!table.children.empty()) ++with_children;
          if (text->find("{\"hex\":") != std::string::npos) ++with_hex;
          // And the text reads back to the same values.
          const nlohmann::json parsed = nlohmann::json::parse(*text);
          for (const auto& [column, value] : (*reference)["row"].items()) {
            EXPECT_EQ(sync::ImageValueFromJson(parsed["row"][column]),
                      sync::ImageValueFromJson(value));
          }
        }
      }
    }
  }
  EXPECT_GT(images, 50);
  EXPECT_GT(with_children, 0);
  EXPECT_GE(with_hex, 2);  // the page's BLOB on TEST, the slide's caption on PROD
}

// An update's pre-image as a sync journals it (ColumnImageText): the columns kept, in name
// order, with the values the whole image has (text that is not UTF-8 as hex too), and the whole
// image's digest, which WholeDigestOf finds again; a whole image has none.
TEST_F(ImagesTest, ColumnImageKeepsTheWrittenColumnsAndTheWholeImagesDigest) {
  Build(Start::kPendingWork);
  Test("UPDATE cms_pages SET title = X'FF00C328' WHERE id = (SELECT min(id) FROM cms_pages);");
  auto config = LoadConfig(paths_.config.string());
  ASSERT_TRUE(config.ok()) << config.status().message();
  auto manifest = Manifest::Parse(EmbeddedManifest(), kEmbeddedManifestName);
  ASSERT_TRUE(manifest.ok()) << manifest.status().message();
  auto env = store::OpenEnvironment(*config->Find("TEST"), store::Access::kReadOnly);
  ASSERT_TRUE(env.ok()) << env.status().message();
  const TableSpec& table = *manifest->FindTable("cms_pages");
  const std::vector<Value> ids = {int64_t{3}, int64_t{1}, int64_t{2}};
  const std::set<std::string> kept = {"title", "status"};
  int64_t checked = 0;
  ASSERT_TRUE(sync::ReadImageTexts(**env, table, ids, [&](size_t i, const sync::ImageText& image) {
                SCOPED_TRACE(RenderValue(ids[i]));
                ASSERT_FALSE(image.text.empty());
                EXPECT_FALSE(sync::WholeDigestOf(image.text).has_value());
                const auto column_image = sync::ColumnImageText(image, kept);
                ASSERT_TRUE(column_image.has_value());
                const nlohmann::json whole = nlohmann::json::parse(image.text);
                const nlohmann::json part = nlohmann::json::parse(*column_image);
                nlohmann::json expected_row = nlohmann::json::object();
                for (const std::string& column : kept) expected_row[column] = whole["row"][column];
                EXPECT_EQ(part, nlohmann::json({{"row", expected_row},
                                                {"whole", sync::ImageDigest(image.text)}}));
                EXPECT_EQ(part.dump(), *column_image);  // nlohmann's text, as whole images are
                const auto digest = sync::WholeDigestOf(*column_image);
                ASSERT_TRUE(digest.has_value());
                EXPECT_EQ(*digest, sync::ImageDigest(image.text));
                // A column the row does not have, or an image not read by the scan: the whole text.
                EXPECT_FALSE(sync::ColumnImageText(image, {"title", "no_such_column"}).has_value());
                EXPECT_FALSE(sync::ColumnImageText(sync::ImageText{image.text}, kept).has_value());
                ++checked;
              }).ok());
  EXPECT_EQ(checked, 3);
  auto first = sync::ReadImageText(**env, table, int64_t{1});
  ASSERT_TRUE(first.ok()) << first.status().message();
  EXPECT_NE(first->find("\"title\":{\"hex\":\"ff00c328\"}"), std::string::npos) << *first;
}

// A child table whose parent column is TEXT holds '1' where the root's ID is 1: a read by the
// parent column finds it (SQLite applies the column's affinity to the ID), a scan over a list of
// integer IDs does not. The batch gives each record the text a read of that record gives.
TEST_F(ImagesTest, BatchOfATextParentColumnGivesEachRecordsOwnText) {
  std::filesystem::create_directories(dir_);
  const std::filesystem::path db = dir_ / "text-parent.db";
  ExecSql(db,
          "CREATE TABLE boxes (id INTEGER PRIMARY KEY, code TEXT NOT NULL UNIQUE);"
          "CREATE TABLE items (id INTEGER PRIMARY KEY, box TEXT NOT NULL, label TEXT);"
          "INSERT INTO boxes VALUES (1, 'a'), (2, 'b'), (3, 'c');"
          "INSERT INTO items VALUES (10, 1, 'x'), (11, '1', 'y'), (12, 2, 'z'), (13, 3, 'w');");
  auto manifest = Manifest::Parse(R"toml(
[[module]]
name = "boxes"
description = "Boxes"
  [[module.table]]
  name = "boxes"
  id = "id"
  key = ["code"]
    [[module.table.children]]
    table = "items"
    id = "id"
    parent = "box"
    order = ["id"]
)toml",
                                  "text-parent.toml");
  ASSERT_TRUE(manifest.ok()) << manifest.status().message();
  EnvironmentConfig config{"TEST", db.string(), (dir_ / "text-parent-assets").string(), 1};
  std::filesystem::create_directories(config.assets);
  auto env = store::OpenEnvironment(config, store::Access::kReadOnly);
  ASSERT_TRUE(env.ok()) << env.status().message();
  const TableSpec& table = *manifest->FindTable("boxes");
  const std::vector<Value> ids = {int64_t{3}, int64_t{1}, int64_t{2}, int64_t{4}};
  std::vector<std::string> batch(ids.size());
  ASSERT_TRUE(sync::ReadImageTexts(**env, table, ids, [&](size_t i, const sync::ImageText& image) {
                batch[i] = std::string(image.text);
              }).ok());
  for (size_t i = 0; i < ids.size(); ++i) {
    auto one = sync::ReadImageText(**env, table, ids[i]);
    ASSERT_TRUE(one.ok()) << one.status().message();
    EXPECT_EQ(batch[i], *one) << RenderValue(ids[i]);
  }
  // Box 1's image has both of its items.
  EXPECT_NE(batch[1].find("\"label\":\"x\""), std::string::npos) << batch[1];
  EXPECT_NE(batch[1].find("\"label\":\"y\""), std::string::npos) << batch[1];
  EXPECT_EQ(batch[3], "");
}

}  // namespace
}  // namespace envsync::testing
