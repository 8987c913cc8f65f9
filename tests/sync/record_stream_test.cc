// The record streams a comparison reads with: a listed record read by the ordered scan over a
// list of IDs (TableReader::NextFull, how a comparison lists its changes) is exactly what a
// point read (TableReader::Fetch) gives, for every table of the default manifest, on both
// sides of the demo with its pending work (child rows, gallery files, references); and
// ReadRecordsAndImages (a sync's journal) gives each record as a point read does, with its image
// as ReadImageText writes it.
#include "sync/record_stream.h"

#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "envsync/core/config.h"
#include "envsync/core/embedded_data.h"
#include "envsync/core/manifest.h"
#include "envsync/store/environment.h"
#include "sync/images.h"
#include "tests/sync/compare_test_support.h"

namespace envsync::testing {
namespace {

class RecordStreamTest : public DemoEnvironments {};

TEST_F(RecordStreamTest, StreamedFullRecordsAreWhatPointReadsGive) {
  Build(Start::kPendingWork);
  auto config = LoadConfig(paths_.config.string());
  ASSERT_TRUE(config.ok()) << config.status().message();
  auto manifest = Manifest::Parse(EmbeddedManifest(), kEmbeddedManifestName);
  ASSERT_TRUE(manifest.ok()) << manifest.status().message();
  const IdentityMap identities;
  const sync::FolderSelection folders;
  std::map<std::string, int64_t> records_per_table;
  for (const auto& [name, side] :
       {std::pair{"PROD", Side::kProd}, std::pair{"TEST", Side::kTest}}) {
    auto env = store::OpenEnvironment(*config->Find(name), store::Access::kReadOnly);
    ASSERT_TRUE(env.ok()) << env.status().message();
    std::map<std::string, sync::KeyIndex> keys;
    for (const ModuleSpec& module : manifest->modules()) {
      for (const TableSpec& table : module.tables) {
        auto index = sync::LoadKeyIndex(**env, table);
        ASSERT_TRUE(index.ok()) << index.status().message();
        keys[table.name] = std::move(*index);
      }
    }
    for (const ModuleSpec& module : manifest->modules()) {
      for (const TableSpec& table : module.tables) {
        SCOPED_TRACE(std::string(name) + " " + table.name);
        auto columns = (*env)->Columns(table.name);
        ASSERT_TRUE(columns.ok()) << columns.status().message();
        std::vector<std::vector<std::string>> child_columns;
        for (const ChildSpec& child : table.children) {
          auto child_table_columns = (*env)->Columns(child.table);
          ASSERT_TRUE(child_table_columns.ok());
          child_columns.push_back(*child_table_columns);
        }
        const RecordLayout layout = RecordLayout::Make(table, *columns, child_columns);
        sync::ReadContext context{&identities, side, &keys, &folders};

        // Every ID, from the light stream (lists of IDs are integers: a table keyed by text,
        // system_config, is always read whole).
        std::vector<int64_t> ids;
        bool integer_ids = true;
        {
          sync::TableReader light(**env, layout, context);
          ASSERT_TRUE(light.Start().ok());
          Record record;
          while (light.Next(&record)) {
            const auto* id = std::get_if<int64_t>(&record.id);
            integer_ids = integer_ids && id != nullptr;
            if (id != nullptr) ids.push_back(*id);
          }
          ASSERT_TRUE(light.status().ok()) << light.status().message();
        }
        if (!integer_ids) continue;
        ASSERT_FALSE(ids.empty());
        // Every other ID, so the scan skips rows and child rows of records it does not read.
        std::vector<int64_t> chosen;
        for (size_t i = 0; i < ids.size(); i += 2) chosen.push_back(ids[i]);
        context.only_ids = &chosen;
        sync::TableReader stream(**env, layout, context);
        ASSERT_TRUE(stream.Start().ok());
        sync::TableReader points(**env, layout, context);
        Record full;
        Record fetched;
        size_t read = 0;
        while (stream.NextFull(&full)) {
          ASSERT_LT(read, chosen.size());
          EXPECT_EQ(full.id, Value(chosen[read]));
          auto found = points.Fetch(full.id, &fetched);
          ASSERT_TRUE(found.ok()) << found.status().message();
          ASSERT_TRUE(*found);
          EXPECT_TRUE(full.full);
          EXPECT_EQ(full.hash, fetched.hash) << RenderValue(full.id);
          EXPECT_EQ(full.field_hashes, fetched.field_hashes);
          EXPECT_EQ(full.key, fetched.key);
          EXPECT_EQ(full.key_hash, fetched.key_hash);
          EXPECT_EQ(full.values, fetched.values);
          ASSERT_EQ(full.references.size(), fetched.references.size());
          for (size_t r = 0; r < full.references.size(); ++r) {
            EXPECT_EQ(*full.references[r].first, *fetched.references[r].first);
            EXPECT_EQ(full.references[r].second, fetched.references[r].second);
          }
          ++read;
        }
        ASSERT_TRUE(stream.status().ok()) << stream.status().message();
        EXPECT_EQ(read, chosen.size());
        records_per_table[table.name] += static_cast<int64_t>(read);

        // A sync's journal reads each written record and its image at once: the same record as
        // a point read, the same text as ReadImageText, out of order, one asked twice, one
        // missing.
        std::vector<Value> asked(chosen.rbegin(), chosen.rend());
        asked.push_back(Value(chosen.front()));
        asked.push_back(int64_t{987654321});
        context.only_ids = nullptr;
        std::vector<int> visits(asked.size(), 0);
        ASSERT_TRUE(
            sync::ReadRecordsAndImages(**env, layout, context, asked,
                                       [&](size_t i, const Record* record, std::string_view text) {
                                         ++visits[i];
                                         SCOPED_TRACE(RecordRef(table.name, asked[i]));
                                         auto found = points.Fetch(asked[i], &fetched);
                                         ASSERT_TRUE(found.ok()) << found.status().message();
                                         ASSERT_EQ(record != nullptr, *found);
                                         if (record != nullptr) {
                                           EXPECT_EQ(record->hash, fetched.hash);
                                           EXPECT_EQ(record->field_hashes, fetched.field_hashes);
                                           EXPECT_EQ(record->key, fetched.key);
                                         }
                                         auto one = sync::ReadImageText(**env, table, asked[i]);
                                         ASSERT_TRUE(one.ok()) << one.status().message();
                                         EXPECT_EQ(std::string(text), *one);
                                       })
                .ok());
        EXPECT_EQ(visits, std::vector<int>(asked.size(), 1));
      }
    }
  }
  // What the comparison of the demo lists: child rows (sliders, menus) and files (gallery).
  EXPECT_GT(records_per_table["sliders"], 0);
  EXPECT_GT(records_per_table["menus"], 0);
  EXPECT_GT(records_per_table["gallery_files"], 0);
}

}  // namespace
}  // namespace envsync::testing
