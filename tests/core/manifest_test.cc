#include "envsync/core/manifest.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <string>
#include <vector>

#include "envsync/core/embedded_data.h"

namespace envsync {
namespace {

constexpr char kSource[] = "test.toml";

// Parses `text` as test.toml and returns the error message ("" when it parsed).
std::string ParseError(const std::string& text) {
  Result<Manifest> manifest = Manifest::Parse(text, kSource);
  if (manifest.ok()) return "";
  EXPECT_TRUE(manifest.status().IsInvalidArgument()) << manifest.status().message();
  return manifest.status().message();
}

bool StartsWith(const std::string& text, const std::string& prefix) {
  return text.rfind(prefix, 0) == 0;
}

bool Contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

// A small valid manifest: module `pages` owns cms_pages (its table header on line 3).
constexpr char kPagesManifest[] = R"([[module]]
name = "pages"
  [[module.table]]
  name = "cms_pages"
  id = "id"
  key = ["slug"]
  local = ["updated_at"]
)";

// The manifest shipped in the binary parses.
TEST(Manifest, EmbeddedManifestParses) {
  Result<Manifest> manifest = Manifest::Parse(EmbeddedManifest(), kEmbeddedManifestName);
  ASSERT_TRUE(manifest.ok()) << manifest.status().message();
  EXPECT_EQ(manifest->modules().size(), 6u);
  EXPECT_NE(manifest->FindTable("cms_pages"), nullptr);
  EXPECT_EQ(manifest->FolderTable(), manifest->FindTable("gallery_folders"));
}

// The shipped module order writes gallery before cms_pages before menus.
TEST(Manifest, ModuleOrderPutsGalleryBeforeCmsPagesBeforeMenus) {
  Result<Manifest> manifest = Manifest::Parse(EmbeddedManifest(), kEmbeddedManifestName);
  ASSERT_TRUE(manifest.ok()) << manifest.status().message();
  const std::vector<std::string> order = manifest->ModuleOrder();
  auto position = [&](const std::string& name) {
    return std::find(order.begin(), order.end(), name) - order.begin();
  };
  ASSERT_EQ(order.size(), manifest->modules().size());
  EXPECT_LT(position("gallery"), position("cms_pages"));
  EXPECT_LT(position("cms_pages"), position("menus"));
}

// system_config depends on gallery through the gallery: names in its JSON.
TEST(Manifest, SystemConfigDependsOnGallery) {
  Result<Manifest> manifest = Manifest::Parse(EmbeddedManifest(), kEmbeddedManifestName);
  ASSERT_TRUE(manifest.ok()) << manifest.status().message();
  const ModuleSpec* system_config = manifest->FindModule("system_config");
  ASSERT_NE(system_config, nullptr);
  EXPECT_TRUE(system_config->depends_on.contains("gallery"));
}

// A small hand-written manifest parses (the base of the error cases below).
TEST(Manifest, SmallManifestParses) { EXPECT_EQ(ParseError(kPagesManifest), ""); }

// A TOML syntax error names the source and the line.
TEST(Manifest, SyntaxErrorNamesSourceAndLine) {
  const std::string error = ParseError(R"([[module]]
name = "pages"
description = = "broken"
)");
  EXPECT_TRUE(StartsWith(error, "test.toml:3:")) << error;
}

// A misspelt field is refused at its line, naming the field.
TEST(Manifest, UnknownFieldIsRefused) {
  const std::string error = ParseError(R"([[module]]
name = "pages"
  [[module.table]]
  name = "cms_pages"
  id = "id"
  kye = ["slug"]
)");
  EXPECT_TRUE(StartsWith(error, "test.toml:6:")) << error;
  EXPECT_TRUE(Contains(error, "'kye'")) << error;
}

// A reference to a table that no module owns is refused, naming the column and the table.
TEST(Manifest, ReferenceToUnownedTableIsRefused) {
  const std::string error = ParseError(R"([[module]]
name = "pages"
  [[module.table]]
  name = "cms_pages"
  id = "id"
  key = ["slug"]
  references = { hero_image_id = "gallery_files" }
)");
  EXPECT_TRUE(StartsWith(error, "test.toml:3:")) << error;
  EXPECT_TRUE(Contains(error, "'hero_image_id'")) << error;
  EXPECT_TRUE(Contains(error, "'gallery_files'")) << error;
  EXPECT_TRUE(Contains(error, "no module owns")) << error;
}

// A filter that is not a table is refused at its line, naming the table it filters.
TEST(Manifest, FilterThatIsNotATableIsRefused) {
  const std::string error = ParseError(R"([[module]]
name = "system_config"
  [[module.table]]
  name = "system_settings"
  id = "key"
  key = ["key"]
  filter = "integrations.mobile_app."
)");
  EXPECT_TRUE(StartsWith(error, "test.toml:7:")) << error;
  EXPECT_TRUE(Contains(error, "filter")) << error;
  EXPECT_TRUE(Contains(error, "'system_settings'")) << error;
}

// A filter without a prefix is refused at its line, naming the missing field.
TEST(Manifest, FilterWithoutPrefixIsRefused) {
  const std::string error = ParseError(R"([[module]]
name = "system_config"
  [[module.table]]
  name = "system_settings"
  id = "key"
  key = ["key"]
  filter = { column = "key" }
)");
  EXPECT_TRUE(StartsWith(error, "test.toml:7:")) << error;
  EXPECT_TRUE(Contains(error, "'prefix'")) << error;
  EXPECT_TRUE(Contains(error, "'system_settings'")) << error;
}

// Two modules referencing each other form a cycle, refused naming both modules.
TEST(Manifest, ModuleCycleIsRefused) {
  const std::string error = ParseError(R"([[module]]
name = "alpha"
  [[module.table]]
  name = "alpha_rows"
  id = "id"
  key = ["code"]
  references = { beta_id = "beta_rows" }

[[module]]
name = "beta"
  [[module.table]]
  name = "beta_rows"
  id = "id"
  key = ["code"]
  references = { alpha_id = "alpha_rows" }
)");
  // Either module's [[module]] line locates the cycle (1 for alpha, 9 for beta).
  EXPECT_TRUE(StartsWith(error, "test.toml:1:") || StartsWith(error, "test.toml:9:")) << error;
  EXPECT_TRUE(Contains(error, "cycle")) << error;
  EXPECT_TRUE(Contains(error, "alpha")) << error;
  EXPECT_TRUE(Contains(error, "beta")) << error;
}

// A module declared twice is refused at the second declaration, naming the module.
TEST(Manifest, DuplicatedModuleIsRefused) {
  const std::string error = ParseError(R"([[module]]
name = "pages"
  [[module.table]]
  name = "cms_pages"
  id = "id"
  key = ["slug"]

[[module]]
name = "pages"
  [[module.table]]
  name = "landing_pages"
  id = "id"
  key = ["slug"]
)");
  EXPECT_TRUE(StartsWith(error, "test.toml:8:")) << error;
  EXPECT_TRUE(Contains(error, "'pages'")) << error;
  EXPECT_TRUE(Contains(error, "twice")) << error;
}

// A schema holding every table and column the manifest names passes the check.
TEST(Manifest, CheckAgainstAcceptsMatchingSchema) {
  Result<Manifest> manifest = Manifest::Parse(kPagesManifest, kSource);
  ASSERT_TRUE(manifest.ok()) << manifest.status().message();
  const SchemaColumns schema{{"cms_pages", {"id", "slug", "title", "updated_at"}}};
  EXPECT_TRUE(manifest->CheckAgainst(schema, "PROD").ok());
}

// A table missing from the environment is reported with the manifest line and environment.
TEST(Manifest, CheckAgainstReportsUnknownTable) {
  Result<Manifest> manifest = Manifest::Parse(kPagesManifest, kSource);
  ASSERT_TRUE(manifest.ok()) << manifest.status().message();
  const SchemaColumns schema{{"pages", {"id", "slug", "updated_at"}}};
  const Status status = manifest->CheckAgainst(schema, "TEST");
  ASSERT_TRUE(status.IsInvalidArgument());
  EXPECT_TRUE(StartsWith(status.message(), "test.toml:3:")) << status.message();
  EXPECT_TRUE(Contains(status.message(), "'cms_pages'")) << status.message();
  EXPECT_TRUE(Contains(status.message(), "TEST")) << status.message();
}

// A column missing from the environment is reported with the manifest line and environment.
TEST(Manifest, CheckAgainstReportsUnknownColumn) {
  Result<Manifest> manifest = Manifest::Parse(kPagesManifest, kSource);
  ASSERT_TRUE(manifest.ok()) << manifest.status().message();
  const SchemaColumns schema{{"cms_pages", {"id", "slug", "title"}}};
  const Status status = manifest->CheckAgainst(schema, "PROD");
  ASSERT_TRUE(status.IsInvalidArgument());
  EXPECT_TRUE(StartsWith(status.message(), "test.toml:3:")) << status.message();
  EXPECT_TRUE(Contains(status.message(), "'cms_pages.updated_at'")) << status.message();
  EXPECT_TRUE(Contains(status.message(), "PROD")) << status.message();
}

}  // namespace
}  // namespace envsync
