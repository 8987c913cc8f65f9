// Fuzzes the module manifest parser (envsync::Manifest::Parse) with arbitrary text, and builds
// the record layouts of every manifest that parses.
//
// Holds Manifest::Parse to its contract (include/envsync/core/manifest.h): it never crashes,
// hangs or leaks; an error is InvalidArgument reading `<source_name>:<line>: <what>`. A manifest
// that parses has at least one module, distinct module and table names, references only to
// tables some module owns (json_references only to tables with an asset) and no cycle among
// modules: ModuleOrder() lists every module once, after every module it depends on. Checked
// against a schema holding exactly the tables and columns it names, it passes; and each root
// table's RecordLayout has its columns, then one field per child table, then file_bytes.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "envsync/core/manifest.h"
#include "envsync/core/record.h"
#include "fuzz/fuzz_check.h"

namespace {

using envsync::ChildSpec;
using envsync::Manifest;
using envsync::ModuleSpec;
using envsync::SchemaColumns;
using envsync::TableSpec;

// Every table and column the manifest names, as a schema would list them.
SchemaColumns NamedColumns(const Manifest& manifest) {
  SchemaColumns schema;
  for (const ModuleSpec& module : manifest.modules()) {
    for (const TableSpec& t : module.tables) {
      std::set<std::string>& columns = schema[t.name];
      columns.insert(t.id);
      columns.insert(t.key.begin(), t.key.end());
      columns.insert(t.local.begin(), t.local.end());
      for (const auto& [column, target] : t.references) columns.insert(column);
      for (const auto& [column, target] : t.json_references) columns.insert(column);
      if (t.filter) columns.insert(t.filter->column);
      if (!t.folder_path.empty()) columns.insert(t.folder_path);
      if (!t.folder.empty()) columns.insert(t.folder);
      if (t.asset) columns.insert({t.asset->folder, t.asset->file, t.asset->sha256});
      for (const ChildSpec& c : t.children) {
        std::set<std::string>& child_columns = schema[c.table];
        child_columns.insert({c.id, c.parent});
        child_columns.insert(c.order.begin(), c.order.end());
        for (const auto& [column, target] : c.references) child_columns.insert(column);
      }
    }
  }
  return schema;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  const std::string source = "fuzz-modules.toml";
  auto manifest = Manifest::Parse(text, source);
  if (!manifest.ok()) {
    ENVSYNC_FUZZ_CHECK(manifest.status().IsInvalidArgument());
    ENVSYNC_FUZZ_CHECK(manifest.status().message().rfind(source + ":", 0) == 0);
    return 0;
  }
  const std::vector<ModuleSpec>& modules = manifest->modules();
  ENVSYNC_FUZZ_CHECK(!modules.empty());
  std::set<std::string> module_names;
  std::set<std::string> table_names;
  std::vector<std::string> all_modules;
  for (const ModuleSpec& module : modules) {
    ENVSYNC_FUZZ_CHECK(module_names.insert(module.name).second);
    all_modules.push_back(module.name);
    ENVSYNC_FUZZ_CHECK(!module.tables.empty());
    for (const TableSpec& t : module.tables) {
      ENVSYNC_FUZZ_CHECK(table_names.insert(t.name).second);
      ENVSYNC_FUZZ_CHECK(manifest->FindTable(t.name) == &t);
      for (const ChildSpec& c : t.children) ENVSYNC_FUZZ_CHECK(table_names.insert(c.table).second);
      for (const auto& [column, target] : t.references) {
        ENVSYNC_FUZZ_CHECK(manifest->FindTable(target) != nullptr);
      }
      for (const auto& [column, target] : t.json_references) {
        const TableSpec* referenced = manifest->FindTable(target);
        ENVSYNC_FUZZ_CHECK(referenced != nullptr && referenced->asset.has_value());
      }
      for (const ChildSpec& c : t.children) {
        for (const auto& [column, target] : c.references) {
          ENVSYNC_FUZZ_CHECK(manifest->FindTable(target) != nullptr);
        }
      }
    }
  }
  ENVSYNC_FUZZ_CHECK(manifest->CheckModuleNames(all_modules).ok());

  const std::vector<std::string> order = manifest->ModuleOrder();
  ENVSYNC_FUZZ_CHECK(order.size() == modules.size());
  std::set<std::string> placed;
  for (const std::string& name : order) {
    const ModuleSpec* module = manifest->FindModule(name);
    ENVSYNC_FUZZ_CHECK(module != nullptr);
    for (const std::string& dependency : module->depends_on) {
      ENVSYNC_FUZZ_CHECK(placed.contains(dependency));
    }
    ENVSYNC_FUZZ_CHECK(placed.insert(name).second);
  }

  const SchemaColumns schema = NamedColumns(*manifest);
  ENVSYNC_FUZZ_CHECK(manifest->CheckAgainst(schema, "FUZZ").ok());
  for (const ModuleSpec& module : modules) {
    for (const TableSpec& t : module.tables) {
      const std::set<std::string>& root = schema.at(t.name);
      std::vector<std::vector<std::string>> children;
      for (const ChildSpec& c : t.children) {
        const std::set<std::string>& columns = schema.at(c.table);
        children.emplace_back(columns.begin(), columns.end());
      }
      const envsync::RecordLayout layout = envsync::RecordLayout::Make(
          t, std::vector<std::string>(root.begin(), root.end()), children);
      ENVSYNC_FUZZ_CHECK(layout.children.size() == t.children.size());
      ENVSYNC_FUZZ_CHECK(layout.fields.size() ==
                         layout.columns.size() + t.children.size() + (t.asset ? 1 : 0));
      ENVSYNC_FUZZ_CHECK(layout.key_columns.size() == t.key.size());
      ENVSYNC_FUZZ_CHECK(std::find(layout.columns.begin(), layout.columns.end(), t.id) ==
                         layout.columns.end());
    }
  }
  return 0;
}
