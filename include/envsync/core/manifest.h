#ifndef ENVSYNC_CORE_MANIFEST_H_
#define ENVSYNC_CORE_MANIFEST_H_

#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "envsync/core/status.h"

namespace envsync {

// Only rows whose `column` starts with `prefix` take part (system_config's mobile-app JSONs).
struct RowFilter {
  std::string column;
  std::string prefix;
};

// The file bytes that travel with a gallery file row.
struct AssetSpec {
  std::string folder;  // reference column naming the file's folder
  std::string file;    // column holding the file name
  std::string sha256;  // column holding the bytes' hex SHA-256
};

// Child rows that travel with a root row and are replaced as a whole.
struct ChildSpec {
  std::string table;
  std::string id;
  std::string parent;                             // column pointing at the root row's ID
  std::vector<std::string> order;                 // columns giving the rows' order
  std::map<std::string, std::string> references;  // column -> referenced root table
  int line = 0;
};

// One root table of a module.
struct TableSpec {
  std::string name;
  std::string module;
  std::string id;
  std::vector<std::string> key;
  std::vector<std::string> local;
  std::optional<RowFilter> filter;
  std::string folder_path;  // set on the gallery folder table
  std::string folder;       // set on the gallery file table: its folder reference column
  std::map<std::string, std::string> references;       // column -> referenced root table
  std::map<std::string, std::string> json_references;  // column -> referenced asset table
  std::optional<AssetSpec> asset;
  std::vector<ChildSpec> children;
  int line = 0;

  bool IsLocal(const std::string& column) const;
  // The referenced root table of `column`, or nullptr when it is no reference.
  const std::string* ReferenceOf(const std::string& column) const;
};

struct ModuleSpec {
  std::string name;
  std::string description;
  std::vector<TableSpec> tables;     // parents first
  std::set<std::string> depends_on;  // modules whose records this module's records reference
  int line = 0;
};

// Column names of each table of an environment, used to check a manifest against it.
using SchemaColumns = std::map<std::string, std::set<std::string>>;

// The modules envsync synchronizes, read from a TOML manifest (data/modules.toml is the
// default, embedded in the binary). Everything not named here is never read by a comparison.
//
// Thread safety: immutable after Parse; safe to share between threads.
class Manifest {
 public:
  // Parses and checks a manifest. `source_name` names the file in messages. Errors are
  // InvalidArgument and read `<source_name>:<line>: <what is wrong with which name>`:
  // a TOML syntax error, a missing or unknown field, a reference to a table no module owns,
  // a bad filter, or a cycle among modules.
  static Result<Manifest> Parse(std::string_view text, const std::string& source_name);

  // Checks every table and column the manifest names against an environment's schema.
  // InvalidArgument naming the manifest line, the table or column and `environment`.
  Status CheckAgainst(const SchemaColumns& schema, const std::string& environment) const;

  const std::vector<ModuleSpec>& modules() const { return modules_; }
  const std::string& source_name() const { return source_name_; }
  const ModuleSpec* FindModule(std::string_view name) const;
  const TableSpec* FindTable(std::string_view name) const;
  // The table holding gallery folders (the one with `folder_path`), or nullptr.
  const TableSpec* FolderTable() const;
  // InvalidArgument naming the first of `names` that is no module of this manifest (the
  // `--modules` flag), with the modules there are.
  Status CheckModuleNames(const std::vector<std::string>& names) const;
  // Module names ordered so that a module comes after every module it depends on.
  std::vector<std::string> ModuleOrder() const;

 private:
  std::vector<ModuleSpec> modules_;
  std::string source_name_;
};

}  // namespace envsync

#endif  // ENVSYNC_CORE_MANIFEST_H_
