#include "sync/images.h"

#include <fmt/format.h>

#include <algorithm>
#include <memory>
#include <nlohmann/json.hpp>
#include <vector>

#include "envsync/store/json_codec.h"

namespace envsync::sync {
namespace {

using nlohmann::json;

std::string Hex(const std::string& bytes) {
  std::string hex;
  hex.reserve(bytes.size() * 2);
  for (const unsigned char c : bytes) hex += fmt::format("{:02x}", c);
  return hex;
}

// The positions of `columns` in name order (the order of a std::map's keys, which nlohmann's
// objects are).
std::vector<size_t> ByName(const std::vector<std::string>& columns) {
  std::vector<size_t> order(columns.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::sort(order.begin(), order.end(),
            [&](size_t a, size_t b) { return columns[a] < columns[b]; });
  return order;
}

// One row as an object of `columns` (in name order) and their values.
void WriteRow(const std::vector<std::string>& columns, const std::vector<size_t>& by_name,
              const std::vector<Value>& row, std::string* out) {
  store::JsonWriter object(out);
  for (const size_t i : by_name) {
    object.Key(columns[i]);
    const auto* text = std::get_if<std::string>(&row[i]);
    if (text != nullptr && !IsValidUtf8(*text)) {
      store::JsonWriter hex(out);
      hex.Key("hex");
      hex.String(Hex(*text));
      hex.End();
    } else {
      object.Field(row[i]);
    }
  }
  object.End();
}

// The record's root row with every column (their names into `columns`); false when the record
// is not there.
Result<bool> ReadRootRow(store::Environment& env, const TableSpec& table, const Value& id,
                         std::vector<std::string>* columns, std::vector<Value>* row) {
  auto names = env.Columns(table.name);
  if (!names.ok()) return names.status();
  *columns = std::move(*names);
  store::ScanRequest request{table.name, *columns, {}, std::nullopt, {{table.id, id}}, {}, ""};
  auto cursor = env.Scan(request);
  if (!cursor.ok()) return cursor.status();
  if ((*cursor)->Next(row)) return true;
  if (!(*cursor)->status().ok()) return (*cursor)->status();
  return false;
}

// The rows of `child` under record `id`, every column (their names into `columns`), by child ID.
Result<std::unique_ptr<store::RowCursor>> ScanChildRows(store::Environment& env,
                                                        const ChildSpec& child, const Value& id,
                                                        std::vector<std::string>* columns) {
  auto names = env.Columns(child.table);
  if (!names.ok()) return names.status();
  *columns = std::move(*names);
  store::ScanRequest request{child.table,          *columns, {child.id}, std::nullopt,
                             {{child.parent, id}}, {},       ""};
  return env.Scan(request);
}

}  // namespace

json ImageValueToJson(const Value& value) {
  if (const auto* text = std::get_if<std::string>(&value); text != nullptr && !IsValidUtf8(*text)) {
    return json{{"hex", Hex(*text)}};
  }
  return store::ValueToJson(value);
}

Value ImageValueFromJson(const json& j) {
  if (j.is_object() && j.contains("hex")) {
    const std::string hex = j["hex"].get<std::string>();
    std::string bytes;
    for (size_t i = 0; i + 1 < hex.size(); i += 2) {
      bytes.push_back(static_cast<char>(std::stoi(hex.substr(i, 2), nullptr, 16)));
    }
    return bytes;
  }
  return store::ValueFromJson(j);
}

Result<json> ReadImage(store::Environment& env, const TableSpec& table, const Value& id) {
  std::vector<std::string> columns;
  std::vector<Value> row;
  auto found = ReadRootRow(env, table, id, &columns, &row);
  if (!found.ok()) return found.status();
  if (!*found) return json();
  json image = {{"row", json::object()}, {"children", json::object()}};
  for (size_t i = 0; i < columns.size(); ++i) {
    image["row"][columns[i]] = ImageValueToJson(row[i]);
  }
  for (const ChildSpec& child : table.children) {
    std::vector<std::string> child_columns;
    auto child_cursor = ScanChildRows(env, child, id, &child_columns);
    if (!child_cursor.ok()) return child_cursor.status();
    json rows = json::array();
    while ((*child_cursor)->Next(&row)) {
      json r = json::object();
      for (size_t i = 0; i < child_columns.size(); ++i) {
        r[child_columns[i]] = ImageValueToJson(row[i]);
      }
      rows.push_back(std::move(r));
    }
    if (!(*child_cursor)->status().ok()) return (*child_cursor)->status();
    image["children"][child.table] = std::move(rows);
  }
  return image;
}

Result<std::string> ReadImageText(store::Environment& env, const TableSpec& table,
                                  const Value& id) {
  std::vector<std::string> columns;
  std::vector<Value> root;
  auto found = ReadRootRow(env, table, id, &columns, &root);
  if (!found.ok()) return found.status();
  if (!*found) return std::string();
  std::vector<Value> row;
  std::string out;
  out.reserve(2048);
  // {"children": …, "row": …}: the keys in name order, as nlohmann writes them.
  store::JsonWriter image(&out);
  image.Key("children");
  {
    std::vector<const ChildSpec*> children;
    for (const ChildSpec& child : table.children) children.push_back(&child);
    std::sort(children.begin(), children.end(),
              [](const ChildSpec* a, const ChildSpec* b) { return a->table < b->table; });
    store::JsonWriter by_table(&out);
    for (const ChildSpec* child : children) {
      std::vector<std::string> child_columns;
      auto child_cursor = ScanChildRows(env, *child, id, &child_columns);
      if (!child_cursor.ok()) return child_cursor.status();
      const std::vector<size_t> by_name = ByName(child_columns);
      by_table.Key(child->table);
      out += '[';
      bool first = true;
      while ((*child_cursor)->Next(&row)) {
        if (!first) out += ',';
        first = false;
        WriteRow(child_columns, by_name, row, &out);
      }
      if (!(*child_cursor)->status().ok()) return (*child_cursor)->status();
      out += ']';
    }
    by_table.End();
  }
  image.Key("row");
  WriteRow(columns, ByName(columns), root, &out);
  image.End();
  return out;
}

}  // namespace envsync::sync
