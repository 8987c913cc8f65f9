#include "sync/images.h"

#include <fmt/format.h>

#include <algorithm>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
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

// One value of an image after its key in `object`: text that is not UTF-8 as {"hex": "…"}.
void WriteImageValue(store::JsonWriter& object, const Value& value, std::string* out) {
  const auto* text = std::get_if<std::string>(&value);
  if (text != nullptr && !IsValidUtf8(*text)) {
    store::JsonWriter hex(out);
    hex.Key("hex");
    hex.String(Hex(*text));
    hex.End();
  } else {
    object.Field(value);
  }
}

// One row as an object of `columns` (in name order) and their values.
void WriteRow(const std::vector<std::string>& columns, const std::vector<size_t>& by_name,
              const std::vector<Value>& row, std::string* out) {
  store::JsonWriter object(out);
  for (const size_t i : by_name) {
    object.Key(columns[i]);
    WriteImageValue(object, row[i], out);
  }
  object.End();
}

// Every column of a record's root table and of its child tables (the children in table-name
// order, as the image's keys are), each with its name order.
struct ImageColumns {
  std::vector<std::string> root;
  std::vector<size_t> root_by_name;
  std::vector<const ChildSpec*> children;
  std::vector<std::vector<std::string>> child;
  std::vector<std::vector<size_t>> child_by_name;
};

Result<ImageColumns> LoadImageColumns(store::Environment& env, const TableSpec& table) {
  ImageColumns c;
  auto names = env.Columns(table.name);
  if (!names.ok()) return names.status();
  c.root = std::move(*names);
  c.root_by_name = ByName(c.root);
  for (const ChildSpec& child : table.children) c.children.push_back(&child);
  std::sort(c.children.begin(), c.children.end(),
            [](const ChildSpec* a, const ChildSpec* b) { return a->table < b->table; });
  for (const ChildSpec* child : c.children) {
    auto child_names = env.Columns(child->table);
    if (!child_names.ok()) return child_names.status();
    c.child_by_name.push_back(ByName(*child_names));
    c.child.push_back(std::move(*child_names));
  }
  return c;
}

// {"children": {table: [row, …]}, "row": {…}}: the keys in name order, as nlohmann writes them.
// `child_rows[k]` are the rows of c.children[k], by child ID.
void WriteImage(const ImageColumns& c, const std::vector<Value>& root,
                const std::vector<std::vector<std::vector<Value>>>& child_rows, std::string* out) {
  store::JsonWriter image(out);
  image.Key("children");
  {
    store::JsonWriter by_table(out);
    for (size_t k = 0; k < c.children.size(); ++k) {
      by_table.Key(c.children[k]->table);
      *out += '[';
      for (size_t r = 0; r < child_rows[k].size(); ++r) {
        if (r > 0) *out += ',';
        WriteRow(c.child[k], c.child_by_name[k], child_rows[k][r], out);
      }
      *out += ']';
    }
    by_table.End();
  }
  image.Key("row");
  WriteRow(c.root, c.root_by_name, root, out);
  image.End();
}

// The child rows of record `id`, per child table of `c`, by child ID.
Status ReadChildRows(store::Environment& env, const ImageColumns& c, const Value& id,
                     std::vector<std::vector<std::vector<Value>>>* child_rows) {
  child_rows->assign(c.children.size(), {});
  for (size_t k = 0; k < c.children.size(); ++k) {
    const ChildSpec& child = *c.children[k];
    store::ScanRequest request{child.table,          c.child[k], {child.id}, std::nullopt,
                               {{child.parent, id}}, {},         "",         {}};
    auto cursor = env.Scan(request);
    if (!cursor.ok()) return cursor.status();
    std::vector<Value> row;
    while ((*cursor)->Next(&row)) (*child_rows)[k].push_back(row);
    if (!(*cursor)->status().ok()) return (*cursor)->status();
  }
  return Status::Ok();
}

// The record's root row with every column (their names into `columns`); false when the record
// is not there.
Result<bool> ReadRootRow(store::Environment& env, const TableSpec& table, const Value& id,
                         std::vector<std::string>* columns, std::vector<Value>* row) {
  auto names = env.Columns(table.name);
  if (!names.ok()) return names.status();
  *columns = std::move(*names);
  store::ScanRequest request{table.name, *columns, {}, std::nullopt, {{table.id, id}}, {}, "", {}};
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
                             {{child.parent, id}}, {},       "",         {}};
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
  auto c = LoadImageColumns(env, table);
  if (!c.ok()) return c.status();
  std::vector<Value> root;
  {
    store::ScanRequest request{table.name, c->root, {}, std::nullopt, {{table.id, id}}, {}, "", {}};
    auto cursor = env.Scan(request);
    if (!cursor.ok()) return cursor.status();
    if (!(*cursor)->Next(&root)) {
      if (!(*cursor)->status().ok()) return (*cursor)->status();
      return std::string();
    }
  }
  std::vector<std::vector<std::vector<Value>>> child_rows;
  ENVSYNC_RETURN_IF_ERROR(ReadChildRows(env, *c, id, &child_rows));
  std::string out;
  out.reserve(2048);
  WriteImage(*c, root, child_rows, &out);
  return out;
}

Status ReadImageTexts(store::Environment& env, const TableSpec& table,
                      const std::vector<Value>& ids,
                      const std::function<void(size_t, const ImageText&)>& visit) {
  // The integer IDs in order, each with the positions asking for it; the others one by one.
  std::vector<std::pair<int64_t, size_t>> wanted;
  for (size_t i = 0; i < ids.size(); ++i) {
    if (const auto* id = std::get_if<int64_t>(&ids[i])) {
      wanted.emplace_back(*id, i);
      continue;
    }
    auto text = ReadImageText(env, table, ids[i]);
    if (!text.ok()) return text.status();
    visit(i, ImageText{*text});
  }
  if (wanted.empty()) return Status::Ok();
  std::sort(wanted.begin(), wanted.end());
  std::vector<int64_t> keys;
  for (const auto& [id, i] : wanted) {
    if (keys.empty() || keys.back() != id) keys.push_back(id);
  }
  auto c = LoadImageColumns(env, table);
  if (!c.ok()) return c.status();
  const auto id_at = std::find(c->root.begin(), c->root.end(), table.id) - c->root.begin();
  if (static_cast<size_t>(id_at) == c->root.size()) {
    return Status::InvalidArgument(
        fmt::format("table {} has no ID column {}", table.name, table.id));
  }
  // One ordered scan of the root rows over the wanted IDs.
  struct Stream {
    std::unique_ptr<store::RowCursor> cursor;
    size_t id_at = 0;
    std::vector<Value> row;
    bool has = false;
    bool integers = true;  // every ID read was an integer
    Status Advance() {
      has = cursor->Next(&row);
      if (has && !std::holds_alternative<int64_t>(row[id_at])) integers = false;
      return has ? Status::Ok() : cursor->status();
    }
  };
  Stream root{nullptr, static_cast<size_t>(id_at), {}, false};
  {
    store::ScanRequest request{table.name, c->root, {table.id}, std::nullopt,
                               {},         keys,    table.id,   {}};
    auto cursor = env.Scan(request);
    if (!cursor.ok()) return cursor.status();
    root.cursor = std::move(*cursor);
    ENVSYNC_RETURN_IF_ERROR(root.Advance());
  }
  // Child rows are read per record, by their parent column as ReadImageText reads them: a
  // parent column can hold the root's ID in another type (TEXT '5' for 5), which a comparison
  // by value matches and a scan over a list of integers does not.
  // Each image is written into one reused buffer and visited at once: a sync's 100,000 images
  // held until the end were 200 MB of fresh pages, and on this VM a fresh page costs more than
  // the copy that fills it.
  std::vector<std::vector<std::vector<Value>>> child_rows;
  std::string text;
  text.reserve(2048);
  std::vector<size_t> missed;  // positions in `wanted` whose ID the scan did not find
  size_t w = 0;
  for (size_t n = 0; n < keys.size(); ++n) {
    const Value id = keys[n];
    // Rows before this ID belong to none asked for (an ID the scan compares unlike ours).
    while (root.has && CompareValues(root.row[root.id_at], id) < 0) {
      ENVSYNC_RETURN_IF_ERROR(root.Advance());
    }
    const bool found = root.has && CompareValues(root.row[root.id_at], id) == 0;
    if (found) {
      ENVSYNC_RETURN_IF_ERROR(ReadChildRows(env, *c, id, &child_rows));
      text.clear();
      WriteImage(*c, root.row, child_rows, &text);
    }
    for (; w < wanted.size() && wanted[w].first == keys[n]; ++w) {
      if (found) {
        visit(wanted[w].second, ImageText{text, &c->root, &root.row});
      } else {
        missed.push_back(w);
      }
    }
  }
  // An ID the scan did not find is absent, unless a root row matched by a value that is not an
  // integer (the scan orders such rows apart): then each such ID is read by itself.
  for (const size_t m : missed) {
    if (root.integers) {
      visit(wanted[m].second, ImageText{});
      continue;
    }
    auto image = ReadImageText(env, table, Value(wanted[m].first));
    if (!image.ok()) return image.status();
    visit(wanted[m].second, ImageText{*image});
  }
  return Status::Ok();
}

std::string ImageDigest(std::string_view text) {
  return fmt::format("xxh3:{:016x}", HashBytes(text));
}

// A column image's text around its row, written by ColumnImageText and recognised by
// WholeDigestOf: {"row":{…},"whole":"xxh3:<16 hex digits>"}.
constexpr std::string_view kColumnImageStart = "{\"row\":";
constexpr std::string_view kWholeKey = ",\"whole\":\"";
constexpr std::string_view kColumnImageEnd = "\"}";

std::optional<std::string> ColumnImageText(const ImageText& image,
                                           const std::set<std::string>& kept) {
  if (image.columns == nullptr || image.row == nullptr || image.text.empty()) return std::nullopt;
  std::string out;
  out.reserve(256);
  out.append(kColumnImageStart);
  store::JsonWriter row(&out);
  for (const std::string& name : kept) {  // a std::set: in name order, as images are
    const auto at = std::find(image.columns->begin(), image.columns->end(), name);
    if (at == image.columns->end()) return std::nullopt;
    row.Key(name);
    WriteImageValue(row, (*image.row)[at - image.columns->begin()], &out);
  }
  row.End();
  out.append(kWholeKey).append(ImageDigest(image.text)).append(kColumnImageEnd);  // plain hex
  return out;
}

std::optional<std::string_view> WholeDigestOf(std::string_view pre_image) {
  // {"row":{…},"whole":"xxh3:<16 hex digits>"}: a whole image starts with "children".
  constexpr size_t kDigestSize = 5 + 16;
  if (pre_image.substr(0, kColumnImageStart.size()) != kColumnImageStart) return std::nullopt;
  const size_t tail = kWholeKey.size() + kDigestSize + kColumnImageEnd.size();
  if (pre_image.size() < kColumnImageStart.size() + tail) return std::nullopt;
  const std::string_view end = pre_image.substr(pre_image.size() - tail);
  if (end.substr(0, kWholeKey.size()) != kWholeKey ||
      end.substr(end.size() - kColumnImageEnd.size()) != kColumnImageEnd) {
    return std::nullopt;
  }
  return end.substr(kWholeKey.size(), kDigestSize);
}

Status ReadRecordsAndImages(
    store::Environment& env, const RecordLayout& layout, const ReadContext& context,
    const std::vector<Value>& ids,
    const std::function<void(size_t, const Record*, std::string_view)>& visit) {
  const TableSpec& table = *layout.table;
  auto c = LoadImageColumns(env, table);
  if (!c.ok()) return c.status();
  // Where each of the layout's columns is among all of the table's, and the ID's.
  std::vector<size_t> at;
  for (const std::string& column : layout.columns) {
    at.push_back(std::find(c->root.begin(), c->root.end(), column) - c->root.begin());
  }
  const size_t id_at = std::find(c->root.begin(), c->root.end(), table.id) - c->root.begin();
  const bool one_scan =
      table.children.empty() && id_at < c->root.size() &&
      std::all_of(at.begin(), at.end(), [&](size_t i) { return i < c->root.size(); }) &&
      std::all_of(ids.begin(), ids.end(),
                  [](const Value& id) { return std::holds_alternative<int64_t>(id); });
  if (!one_scan) {
    // Apart: the records first (kept), then each image with its record.
    std::vector<std::optional<Record>> records(ids.size());
    std::vector<std::pair<Value, size_t>> wanted;
    for (size_t i = 0; i < ids.size(); ++i) wanted.emplace_back(ids[i], i);
    ENVSYNC_RETURN_IF_ERROR(ReadRecords(env, layout, context, wanted, /*with_raw=*/false,
                                        [&](size_t i, const Record* record, const RawRecord*) {
                                          if (record != nullptr) records[i] = *record;
                                        }));
    return ReadImageTexts(env, table, ids, [&](size_t i, const ImageText& image) {
      visit(i, records[i] ? &*records[i] : nullptr, image.text);
    });
  }
  std::vector<std::pair<int64_t, size_t>> wanted;
  for (size_t i = 0; i < ids.size(); ++i) wanted.emplace_back(std::get<int64_t>(ids[i]), i);
  std::sort(wanted.begin(), wanted.end());
  std::vector<int64_t> keys;
  for (const auto& [id, i] : wanted) {
    if (keys.empty() || keys.back() != id) keys.push_back(id);
  }
  store::ScanRequest request{table.name, c->root, {table.id}, std::nullopt, {}, keys, table.id, {}};
  auto cursor = env.Scan(request);
  if (!cursor.ok()) return cursor.status();
  TableReader builder(env, layout, context);
  const std::vector<std::vector<std::vector<Value>>> no_children;
  std::vector<Value> row;
  bool has = (*cursor)->Next(&row);
  bool integers = true;  // every ID read was an integer
  std::string text;
  text.reserve(2048);
  Record record;
  std::vector<size_t> missed;
  size_t w = 0;
  for (const int64_t key : keys) {
    const Value id = key;
    // Compared as values: a row's ID may come back as a real (a REAL or numeric ID column).
    while (has && CompareValues(row[id_at], id) < 0) {
      has = (*cursor)->Next(&row);
      if (has && !std::holds_alternative<int64_t>(row[id_at])) integers = false;
    }
    if (!has) ENVSYNC_RETURN_IF_ERROR((*cursor)->status());
    if (has && !std::holds_alternative<int64_t>(row[id_at])) integers = false;
    const bool found = has && CompareValues(row[id_at], id) == 0;
    if (found) {
      text.clear();
      WriteImage(*c, row, no_children, &text);
      RawRecord raw;
      raw.id = row[id_at];
      raw.columns.reserve(at.size());
      for (const size_t i : at) raw.columns.push_back(row[i]);
      builder.Build(std::move(raw), &record);
    }
    for (; w < wanted.size() && wanted[w].first == key; ++w) {
      if (found) {
        visit(wanted[w].second, &record, text);
      } else {
        missed.push_back(w);
      }
    }
  }
  // As ReadRecords, a record the scan did not find is absent; as ReadImageTexts, its image too,
  // unless a row's ID was not an integer: then the image is read by itself.
  for (const size_t m : missed) {
    if (integers) {
      visit(wanted[m].second, nullptr, std::string_view());
      continue;
    }
    auto image = ReadImageText(env, table, Value(wanted[m].first));
    if (!image.ok()) return image.status();
    visit(wanted[m].second, nullptr, *image);
  }
  return Status::Ok();
}

}  // namespace envsync::sync
