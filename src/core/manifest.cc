#include "envsync/core/manifest.h"

#include <fmt/format.h>
#include <toml++/toml.h>

#include <algorithm>
#include <functional>

namespace envsync {
namespace {

// Reads one manifest table (a TOML table) field by field, remembering the first error.
class Reader {
 public:
  Reader(const std::string& source, const toml::table& table, std::string what)
      : source_(source), table_(table), what_(std::move(what)) {}

  int line() const { return static_cast<int>(table_.source().begin.line); }

  Status Error(const toml::node* at, const std::string& message) const {
    const int line_no = at != nullptr ? static_cast<int>(at->source().begin.line) : line();
    return Status::InvalidArgument(fmt::format("{}:{}: {}", source_, line_no, message));
  }

  // Refuses fields this kind of table does not know, so a typo is never silently ignored.
  Status CheckFields(std::initializer_list<std::string_view> allowed) const {
    for (auto&& [key, node] : table_) {
      if (std::find(allowed.begin(), allowed.end(), key.str()) == allowed.end()) {
        return Error(&node, fmt::format("unknown field '{}' in {}", key.str(), what_));
      }
    }
    return Status::Ok();
  }

  Status String(std::string_view field, bool required, std::string* out) const {
    const toml::node* node = table_.get(field);
    if (node == nullptr) {
      if (required) return Error(nullptr, fmt::format("{} lacks '{}'", what_, field));
      return Status::Ok();
    }
    auto value = node->value<std::string>();
    if (!value || value->empty()) {
      return Error(node, fmt::format("'{}' in {} must be a non-empty string", field, what_));
    }
    *out = *value;
    return Status::Ok();
  }

  Status Strings(std::string_view field, bool required, std::vector<std::string>* out) const {
    const toml::node* node = table_.get(field);
    if (node == nullptr) {
      if (required) return Error(nullptr, fmt::format("{} lacks '{}'", what_, field));
      return Status::Ok();
    }
    const toml::array* array = node->as_array();
    if (array == nullptr) {
      return Error(node, fmt::format("'{}' in {} must be an array of strings", field, what_));
    }
    for (const toml::node& element : *array) {
      auto value = element.value<std::string>();
      if (!value || value->empty()) {
        return Error(&element, fmt::format("'{}' in {} must hold non-empty strings", field, what_));
      }
      out->push_back(*value);
    }
    if (required && out->empty())
      return Error(node, fmt::format("'{}' in {} is empty", field, what_));
    return Status::Ok();
  }

  Status StringMap(std::string_view field, std::map<std::string, std::string>* out) const {
    const toml::node* node = table_.get(field);
    if (node == nullptr) return Status::Ok();
    const toml::table* map = node->as_table();
    if (map == nullptr) {
      return Error(node, fmt::format("'{}' in {} must be a table of strings", field, what_));
    }
    for (auto&& [key, value] : *map) {
      auto text = value.value<std::string>();
      if (!text || text->empty()) {
        return Error(&value, fmt::format("'{}.{}' in {} must be a non-empty string", field,
                                         key.str(), what_));
      }
      (*out)[std::string(key.str())] = *text;
    }
    return Status::Ok();
  }

  const toml::table* SubTable(std::string_view field) const {
    const toml::node* node = table_.get(field);
    return node != nullptr ? node->as_table() : nullptr;
  }
  const toml::node* Node(std::string_view field) const { return table_.get(field); }

 private:
  const std::string& source_;
  const toml::table& table_;
  std::string what_;
};

Status ParseChild(const std::string& source, const toml::table& t, const std::string& owner,
                  ChildSpec* child) {
  Reader r(source, t, fmt::format("children of table '{}'", owner));
  child->line = r.line();
  ENVSYNC_RETURN_IF_ERROR(r.CheckFields({"table", "id", "parent", "order", "references"}));
  ENVSYNC_RETURN_IF_ERROR(r.String("table", true, &child->table));
  ENVSYNC_RETURN_IF_ERROR(r.String("id", true, &child->id));
  ENVSYNC_RETURN_IF_ERROR(r.String("parent", true, &child->parent));
  ENVSYNC_RETURN_IF_ERROR(r.Strings("order", false, &child->order));
  return r.StringMap("references", &child->references);
}

Status ParseTable(const std::string& source, const toml::table& t, const std::string& module,
                  TableSpec* spec) {
  Reader r(source, t, fmt::format("a table of module '{}'", module));
  spec->line = r.line();
  spec->module = module;
  ENVSYNC_RETURN_IF_ERROR(
      r.CheckFields({"name", "id", "key", "local", "filter", "folder_path", "folder", "references",
                     "json_references", "asset", "children"}));
  ENVSYNC_RETURN_IF_ERROR(r.String("name", true, &spec->name));
  Reader named(source, t, fmt::format("table '{}'", spec->name));
  ENVSYNC_RETURN_IF_ERROR(named.String("id", true, &spec->id));
  ENVSYNC_RETURN_IF_ERROR(named.Strings("key", true, &spec->key));
  ENVSYNC_RETURN_IF_ERROR(named.Strings("local", false, &spec->local));
  ENVSYNC_RETURN_IF_ERROR(named.String("folder_path", false, &spec->folder_path));
  ENVSYNC_RETURN_IF_ERROR(named.String("folder", false, &spec->folder));
  ENVSYNC_RETURN_IF_ERROR(named.StringMap("references", &spec->references));
  ENVSYNC_RETURN_IF_ERROR(named.StringMap("json_references", &spec->json_references));
  if (const toml::node* node = named.Node("filter"); node != nullptr) {
    const toml::table* filter = node->as_table();
    if (filter == nullptr) {
      return named.Error(node, fmt::format("bad filter of table '{}': must be "
                                           "{{ column = \"...\", prefix = \"...\" }}",
                                           spec->name));
    }
    Reader f(source, *filter, fmt::format("the filter of table '{}'", spec->name));
    RowFilter row_filter;
    ENVSYNC_RETURN_IF_ERROR(f.CheckFields({"column", "prefix"}));
    ENVSYNC_RETURN_IF_ERROR(f.String("column", true, &row_filter.column));
    ENVSYNC_RETURN_IF_ERROR(f.String("prefix", true, &row_filter.prefix));
    spec->filter = row_filter;
  }
  if (const toml::node* node = named.Node("asset"); node != nullptr) {
    const toml::table* asset = node->as_table();
    if (asset == nullptr) return named.Error(node, "'asset' must be a table");
    Reader a(source, *asset, fmt::format("the asset of table '{}'", spec->name));
    AssetSpec asset_spec;
    ENVSYNC_RETURN_IF_ERROR(a.CheckFields({"folder", "file", "sha256"}));
    ENVSYNC_RETURN_IF_ERROR(a.String("folder", true, &asset_spec.folder));
    ENVSYNC_RETURN_IF_ERROR(a.String("file", true, &asset_spec.file));
    ENVSYNC_RETURN_IF_ERROR(a.String("sha256", true, &asset_spec.sha256));
    spec->asset = asset_spec;
  }
  if (const toml::node* node = named.Node("children"); node != nullptr) {
    const toml::array* children = node->as_array();
    if (children == nullptr) return named.Error(node, "'children' must be an array of tables");
    for (const toml::node& element : *children) {
      const toml::table* child_table = element.as_table();
      if (child_table == nullptr) return named.Error(&element, "'children' must hold tables");
      ChildSpec child;
      ENVSYNC_RETURN_IF_ERROR(ParseChild(source, *child_table, spec->name, &child));
      spec->children.push_back(std::move(child));
    }
  }
  return Status::Ok();
}

std::string Located(const std::string& source, int line, const std::string& message) {
  return fmt::format("{}:{}: {}", source, line, message);
}

}  // namespace

bool TableSpec::IsLocal(const std::string& column) const {
  return std::find(local.begin(), local.end(), column) != local.end();
}

const std::string* TableSpec::ReferenceOf(const std::string& column) const {
  auto it = references.find(column);
  return it == references.end() ? nullptr : &it->second;
}

Result<Manifest> Manifest::Parse(std::string_view text, const std::string& source_name) {
  Manifest manifest;
  manifest.source_name_ = source_name;
  toml::table root;
  try {
    root = toml::parse(text, source_name);
  } catch (const toml::parse_error& error) {
    return Status::InvalidArgument(Located(source_name, static_cast<int>(error.source().begin.line),
                                           std::string(error.description())));
  }
  Reader top(source_name, root, "the manifest");
  ENVSYNC_RETURN_IF_ERROR(top.CheckFields({"module"}));
  const toml::array* modules = root.get_as<toml::array>("module");
  if (modules == nullptr || modules->empty()) {
    return Status::InvalidArgument(Located(source_name, 1, "the manifest declares no [[module]]"));
  }
  std::set<std::string> table_names;
  for (const toml::node& element : *modules) {
    const toml::table* module_table = element.as_table();
    if (module_table == nullptr) {
      return Status::InvalidArgument(Located(
          source_name, static_cast<int>(element.source().begin.line), "'module' must hold tables"));
    }
    Reader r(source_name, *module_table, "a module");
    ModuleSpec module;
    module.line = r.line();
    ENVSYNC_RETURN_IF_ERROR(r.CheckFields({"name", "description", "table"}));
    ENVSYNC_RETURN_IF_ERROR(r.String("name", true, &module.name));
    ENVSYNC_RETURN_IF_ERROR(r.String("description", false, &module.description));
    if (manifest.FindModule(module.name) != nullptr) {
      return r.Error(nullptr, fmt::format("module '{}' is declared twice", module.name));
    }
    const toml::array* tables = module_table->get_as<toml::array>("table");
    if (tables == nullptr || tables->empty()) {
      return r.Error(nullptr, fmt::format("module '{}' has no [[module.table]]", module.name));
    }
    for (const toml::node& table_node : *tables) {
      const toml::table* t = table_node.as_table();
      if (t == nullptr) return r.Error(&table_node, "'module.table' must hold tables");
      TableSpec spec;
      ENVSYNC_RETURN_IF_ERROR(ParseTable(source_name, *t, module.name, &spec));
      if (!table_names.insert(spec.name).second) {
        return r.Error(t, fmt::format("table '{}' is named by two modules", spec.name));
      }
      for (const ChildSpec& child : spec.children) {
        if (!table_names.insert(child.table).second) {
          return Status::InvalidArgument(Located(
              source_name, child.line, fmt::format("table '{}' is named twice", child.table)));
        }
      }
      module.tables.push_back(std::move(spec));
    }
    manifest.modules_.push_back(std::move(module));
  }

  // Cross-checks: every reference names a root table; keys, folders and assets are coherent.
  for (ModuleSpec& module : manifest.modules_) {
    for (const TableSpec& spec : module.tables) {
      auto check_reference = [&](const std::string& column, const std::string& target,
                                 int line) -> Status {
        const TableSpec* referenced = manifest.FindTable(target);
        if (referenced == nullptr) {
          return Status::InvalidArgument(Located(
              source_name, line,
              fmt::format("reference '{}' of table '{}' names table '{}', which no module owns",
                          column, spec.name, target)));
        }
        if (referenced->module != module.name) module.depends_on.insert(referenced->module);
        return Status::Ok();
      };
      for (const auto& [column, target] : spec.references) {
        ENVSYNC_RETURN_IF_ERROR(check_reference(column, target, spec.line));
      }
      for (const auto& [column, target] : spec.json_references) {
        ENVSYNC_RETURN_IF_ERROR(check_reference(column, target, spec.line));
        const TableSpec* referenced = manifest.FindTable(target);
        if (!referenced->asset) {
          return Status::InvalidArgument(Located(
              source_name, spec.line,
              fmt::format("json_references '{}' of table '{}' must name a table with an asset, "
                          "not '{}'",
                          column, spec.name, target)));
        }
      }
      for (const ChildSpec& child : spec.children) {
        for (const auto& [column, target] : child.references) {
          ENVSYNC_RETURN_IF_ERROR(check_reference(column, target, child.line));
        }
      }
      for (const std::string& column : spec.key) {
        const std::string* target = spec.ReferenceOf(column);
        if (target == nullptr) continue;
        const TableSpec* referenced = manifest.FindTable(*target);
        for (const std::string& inner : referenced->key) {
          if (referenced->ReferenceOf(inner) != nullptr) {
            return Status::InvalidArgument(Located(
                source_name, spec.line,
                fmt::format("key column '{}' of table '{}' references '{}', whose own key holds "
                            "a reference; only one level is supported",
                            column, spec.name, *target)));
          }
        }
      }
      if (!spec.folder.empty() && spec.ReferenceOf(spec.folder) == nullptr) {
        return Status::InvalidArgument(
            Located(source_name, spec.line,
                    fmt::format("folder column '{}' of table '{}' is not among its references",
                                spec.folder, spec.name)));
      }
      if (spec.asset && spec.ReferenceOf(spec.asset->folder) == nullptr) {
        return Status::InvalidArgument(Located(
            source_name, spec.line,
            fmt::format("asset folder column '{}' of table '{}' is not among its references",
                        spec.asset->folder, spec.name)));
      }
    }
  }

  // A cycle among modules would leave no order in which parents are written first.
  std::map<std::string, int> state;  // 0 new, 1 on the path, 2 done
  std::function<Status(const ModuleSpec&, std::vector<std::string>&)> visit =
      [&](const ModuleSpec& m, std::vector<std::string>& path) -> Status {
    state[m.name] = 1;
    path.push_back(m.name);
    for (const std::string& dep : m.depends_on) {
      if (state[dep] == 1) {
        std::string cycle;
        for (auto it = std::find(path.begin(), path.end(), dep); it != path.end(); ++it) {
          cycle += *it + " -> ";
        }
        return Status::InvalidArgument(
            Located(source_name, m.line,
                    fmt::format("modules reference each other in a cycle: {}", cycle + dep)));
      }
      if (state[dep] == 0) ENVSYNC_RETURN_IF_ERROR(visit(*manifest.FindModule(dep), path));
    }
    path.pop_back();
    state[m.name] = 2;
    return Status::Ok();
  };
  for (const ModuleSpec& module : manifest.modules_) {
    std::vector<std::string> path;
    if (state[module.name] == 0) ENVSYNC_RETURN_IF_ERROR(visit(module, path));
  }
  return manifest;
}

Status Manifest::CheckAgainst(const SchemaColumns& schema, const std::string& environment) const {
  auto fail = [&](int line, const std::string& what) {
    return Status::InvalidArgument(
        Located(source_name_, line, fmt::format("{} on environment {}", what, environment)));
  };
  auto check_columns = [&](const std::string& table, int line,
                           const std::vector<std::string>& columns) -> Status {
    auto it = schema.find(table);
    if (it == schema.end()) return fail(line, fmt::format("unknown table '{}'", table));
    for (const std::string& column : columns) {
      if (!it->second.contains(column)) {
        return fail(line, fmt::format("unknown column '{}.{}'", table, column));
      }
    }
    return Status::Ok();
  };
  for (const ModuleSpec& module : modules_) {
    for (const TableSpec& spec : module.tables) {
      std::vector<std::string> columns = spec.key;
      columns.push_back(spec.id);
      columns.insert(columns.end(), spec.local.begin(), spec.local.end());
      for (const auto& [column, unused] : spec.references) columns.push_back(column);
      for (const auto& [column, unused] : spec.json_references) columns.push_back(column);
      if (spec.filter) columns.push_back(spec.filter->column);
      if (!spec.folder_path.empty()) columns.push_back(spec.folder_path);
      if (spec.asset) {
        columns.push_back(spec.asset->file);
        columns.push_back(spec.asset->sha256);
      }
      ENVSYNC_RETURN_IF_ERROR(check_columns(spec.name, spec.line, columns));
      for (const ChildSpec& child : spec.children) {
        std::vector<std::string> child_columns = child.order;
        child_columns.push_back(child.id);
        child_columns.push_back(child.parent);
        for (const auto& [column, unused] : child.references) child_columns.push_back(column);
        ENVSYNC_RETURN_IF_ERROR(check_columns(child.table, child.line, child_columns));
      }
    }
  }
  return Status::Ok();
}

const ModuleSpec* Manifest::FindModule(std::string_view name) const {
  for (const ModuleSpec& module : modules_) {
    if (module.name == name) return &module;
  }
  return nullptr;
}

const TableSpec* Manifest::FindTable(std::string_view name) const {
  for (const ModuleSpec& module : modules_) {
    for (const TableSpec& table : module.tables) {
      if (table.name == name) return &table;
    }
  }
  return nullptr;
}

const TableSpec* Manifest::FolderTable() const {
  for (const ModuleSpec& module : modules_) {
    for (const TableSpec& table : module.tables) {
      if (!table.folder_path.empty()) return &table;
    }
  }
  return nullptr;
}

Status Manifest::CheckModuleNames(const std::vector<std::string>& names) const {
  for (const std::string& name : names) {
    if (FindModule(name) != nullptr) continue;
    std::string known;
    for (const ModuleSpec& m : modules_) known += (known.empty() ? "" : ", ") + m.name;
    return Status::InvalidArgument(fmt::format(
        "module '{}' is not synchronizable (--modules); synchronizable modules: {}", name, known));
  }
  return Status::Ok();
}

std::vector<std::string> Manifest::ModuleOrder() const {
  std::vector<std::string> order;
  std::set<std::string> placed;
  // Parse() refused cycles, so every pass places at least one module.
  while (order.size() < modules_.size()) {
    for (const ModuleSpec& module : modules_) {
      if (placed.contains(module.name)) continue;
      bool ready = std::all_of(module.depends_on.begin(), module.depends_on.end(),
                               [&](const std::string& dep) { return placed.contains(dep); });
      if (ready) {
        order.push_back(module.name);
        placed.insert(module.name);
      }
    }
  }
  return order;
}

}  // namespace envsync
