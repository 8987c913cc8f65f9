#include "sync/record_stream.h"

#include <fmt/format.h>

#include <algorithm>

namespace envsync::sync {
namespace {

constexpr size_t kMaxQueuedBatches = 8;

}  // namespace

Result<KeyIndex> LoadKeyIndex(store::Environment& env, const TableSpec& table) {
  store::ScanRequest request;
  request.table = table.name;
  request.columns.push_back(table.id);
  request.columns.insert(request.columns.end(), table.key.begin(), table.key.end());
  request.filter = table.filter;
  auto cursor = env.Scan(request);
  if (!cursor.ok()) return cursor.status();
  KeyIndex index;
  std::vector<Value> row;
  while ((*cursor)->Next(&row)) {
    std::string key;
    for (size_t i = 1; i < row.size(); ++i) {
      if (i > 1) key.push_back('/');
      key += RenderValue(row[i]);
    }
    index.id_of.emplace(key, row[0]);
    index.key_of.emplace(row[0], std::move(key));
  }
  if (!(*cursor)->status().ok()) return (*cursor)->status();
  return index;
}

Result<std::vector<Value>> FindByNaturalKey(store::Environment& target, const RecordLayout& layout,
                                            const Value& id, const std::vector<Value>& columns,
                                            const std::map<std::string, KeyIndex>& from_keys,
                                            const std::map<std::string, KeyIndex>& target_keys) {
  const TableSpec& table = *layout.table;
  std::vector<std::pair<std::string, Value>> equals;
  for (size_t k = 0; k < table.key.size(); ++k) {
    const int column = layout.key_columns[k];
    const std::string* referenced = table.ReferenceOf(table.key[k]);
    if (referenced != nullptr && column >= 0) {
      auto from = from_keys.find(*referenced);
      auto to = target_keys.find(*referenced);
      if (from == from_keys.end() || to == target_keys.end()) return std::vector<Value>();
      auto key = from->second.key_of.find(columns[column]);
      if (key == from->second.key_of.end()) return std::vector<Value>();
      auto target_id = to->second.id_of.find(key->second);
      if (target_id == to->second.id_of.end()) return std::vector<Value>();
      equals.emplace_back(table.key[k], target_id->second);
    } else {
      equals.emplace_back(table.key[k], column < 0 ? id : columns[column]);
    }
  }
  return target.FindIds(table.name, table.id, equals);
}

bool FolderSelection::Includes(const std::string& path) const {
  if (folders.empty()) return true;
  for (const std::string& folder : folders) {
    if (path == folder) return true;
    if (path.size() > folder.size() && path.compare(0, folder.size(), folder) == 0 &&
        path[folder.size()] == '/') {
      return true;
    }
  }
  return false;
}

TableReader::TableReader(store::Environment& env, const RecordLayout& layout,
                         const ReadContext& context)
    : env_(env), layout_(layout), context_(context) {}

Status TableReader::Start() {
  const TableSpec& table = *layout_.table;
  store::ScanRequest root;
  root.table = table.name;
  root.columns.push_back(table.id);
  root.columns.insert(root.columns.end(), layout_.columns.begin(), layout_.columns.end());
  root.order_by = {table.id};
  if (!context_.unfiltered) root.filter = table.filter;
  if (context_.only_ids != nullptr) {
    root.only_ids = *context_.only_ids;
    root.only_ids_column = table.id;
    if (context_.only_ids_at != nullptr) root.only_ids_at = *context_.only_ids_at;
  }
  auto cursor = env_.Scan(root);
  if (!cursor.ok()) return cursor.status();
  root_ = std::move(*cursor);
  for (const ChildLayout& child : layout_.children) {
    store::ScanRequest request;
    request.table = child.spec->table;
    request.columns.push_back(child.spec->parent);
    request.columns.insert(request.columns.end(), child.columns.begin(), child.columns.end());
    request.order_by.push_back(child.spec->parent);
    request.order_by.insert(request.order_by.end(), child.spec->order.begin(),
                            child.spec->order.end());
    request.order_by.push_back(child.spec->id);
    if (context_.only_ids != nullptr) {
      request.only_ids = *context_.only_ids;
      request.only_ids_column = child.spec->parent;
    }
    auto child_cursor = env_.Scan(request);
    if (!child_cursor.ok()) return child_cursor.status();
    children_.push_back(std::move(*child_cursor));
  }
  child_row_.assign(children_.size(), {});
  child_done_.assign(children_.size(), false);
  child_bytes_.assign(children_.size(), {});
  for (size_t i = 0; i < children_.size(); ++i) {
    if (!children_[i]->NextView(&child_row_[i])) {
      child_done_[i] = true;
      if (!children_[i]->status().ok()) return children_[i]->status();
    }
  }
  return Status::Ok();
}

std::string TableReader::FolderPathOf(const std::string& column, const ValueView* columns) const {
  const int index = layout_.ColumnIndex(column);
  const std::string* referenced = layout_.table->ReferenceOf(column);
  if (index < 0 || referenced == nullptr) return "";
  auto keys = context_.keys->find(*referenced);
  if (keys == context_.keys->end()) return "";
  auto it = keys->second.key_of.find(ToValue(columns[index]));
  return it == keys->second.key_of.end() ? "" : it->second;
}

bool TableReader::Included(const ValueView* columns) const {
  if (context_.folders == nullptr || context_.folders->folders.empty()) return true;
  const TableSpec& table = *layout_.table;
  if (!table.folder_path.empty()) {
    const int index = layout_.ColumnIndex(table.folder_path);
    return index >= 0 && context_.folders->Includes(RenderValue(ToValue(columns[index])));
  }
  if (!table.folder.empty()) return context_.folders->Includes(FolderPathOf(table.folder, columns));
  return true;
}

void TableReader::KeyPart(int column_index, const Value& id, const ValueView* columns,
                          std::string* out) const {
  out->clear();
  if (column_index < 0) {  // the key is the ID column itself
    *out = RenderValue(id);
    return;
  }
  const ValueView& raw = columns[column_index];
  const std::string* referenced = layout_.table->ReferenceOf(layout_.columns[column_index]);
  if (referenced == nullptr) {
    if (raw.type == ValueView::Type::kText) {
      out->assign(raw.text);
    } else {
      *out = RenderValue(ToValue(raw));
    }
    return;
  }
  auto keys = context_.keys->find(*referenced);
  if (keys != context_.keys->end()) {
    auto it = keys->second.key_of.find(ToValue(raw));
    if (it != keys->second.key_of.end()) {
      *out = it->second;
      return;
    }
  }
  out->push_back('#');
  *out += RenderValue(ToValue(raw));
}

std::string TableReader::FileDigest(const Value& id, const ValueView* columns, bool report) {
  const TableSpec& table = *layout_.table;
  const std::string folder = FolderPathOf(table.asset->folder, columns);
  const int file_index = layout_.ColumnIndex(table.asset->file);
  const int sha_index = layout_.ColumnIndex(table.asset->sha256);
  const std::string file = file_index >= 0 ? RenderValue(ToValue(columns[file_index])) : "";
  const std::string recorded = sha_index >= 0 ? RenderValue(ToValue(columns[sha_index])) : "";
  if (context_.recorded_file_bytes) return recorded;
  store::AssetDigest found = env_.assets().Digest(folder, file);
  if (!found.problem.empty()) {
    if (report) warnings_.push_back(Warning{env_.name(), RecordRef(table.name, id), found.problem});
    return kFileMissing;
  }
  if (report && found.sha256 != recorded) {
    warnings_.push_back(Warning{
        env_.name(), RecordRef(table.name, id),
        fmt::format("the bytes of {} do not match its recorded SHA-256 (recorded {}, found {})",
                    found.path, recorded, found.sha256)});
  }
  return found.sha256;
}

bool TableReader::ReadChildren(const Value& id, std::vector<std::vector<ChildRow>>* rows) {
  // Child rows arrive ordered by parent; rows of parents that are not read are skipped.
  for (size_t i = 0; i < children_.size(); ++i) {
    child_bytes_[i].clear();
    while (!child_done_[i]) {
      const auto order = CompareValues(ToValue(child_row_[i][0]), id);
      if (order > 0) break;
      if (order == 0) {
        const ValueView* row = child_row_[i].data() + 1;
        if (rows != nullptr) {
          ChildRow& kept = (*rows)[i].emplace_back();
          for (size_t c = 1; c < child_row_[i].size(); ++c) kept.push_back(ToValue(row[c - 1]));
        } else {
          AppendChildRow(layout_.children[i], *context_.identities, context_.side, row,
                         &child_bytes_[i]);
        }
      }
      if (!children_[i]->NextView(&child_row_[i])) {
        child_done_[i] = true;
        if (!children_[i]->status().ok()) {
          status_ = children_[i]->status();
          return false;
        }
      }
    }
  }
  return true;
}

bool TableReader::NextFull(Record* record, RawRecord* raw) {
  if (!root_->NextView(&row_)) {
    status_ = root_->status();
    return false;
  }
  Value id = ToValue(row_[0]);
  std::vector<std::vector<ChildRow>> children(children_.size());
  if (!ReadChildren(id, &children)) return false;
  const ValueView* views = row_.data() + 1;
  std::vector<std::string> key_parts(layout_.key_columns.size());
  for (size_t k = 0; k < layout_.key_columns.size(); ++k) {
    KeyPart(layout_.key_columns[k], id, views, &key_parts[k]);
  }
  const std::string digest = layout_.table->asset ? FileDigest(id, views, /*report=*/false) : "";
  std::vector<Value> columns;
  columns.reserve(row_.size() - 1);
  for (size_t c = 1; c < row_.size(); ++c) columns.push_back(ToValue(row_[c]));
  const bool in_scope = Included(views);
  if (raw != nullptr) {
    raw->id = id;
    raw->columns = columns;
    raw->children = children;
  }
  BuildRecord(layout_, *context_.identities, context_.side, std::move(id), std::move(columns),
              children, digest, key_parts, record);
  record->in_scope = in_scope;
  return true;
}

bool TableReader::Next(Record* record) {
  if (context_.full_records) return NextFull(record);
  while (true) {
    if (!root_->NextView(&row_)) {
      status_ = root_->status();
      return false;
    }
    Value id = ToValue(row_[0]);
    const ValueView* columns = row_.data() + 1;
    if (!ReadChildren(id, nullptr)) return false;
    record->in_scope = Included(columns);

    key_bytes_.clear();
    for (int column : layout_.key_columns) {
      KeyPart(column, id, columns, &part_);
      AppendKeyPart(part_, &key_bytes_);
    }
    record->key_hash = HashBytes(key_bytes_);
    record->field_hashes.resize(layout_.fields.size());
    for (size_t f = 0; f < layout_.fields.size(); ++f) {
      const FieldLayout& field = layout_.fields[f];
      switch (field.kind) {
        case FieldLayout::Kind::kColumn:
          record->field_hashes[f] =
              HashField(field, *context_.identities, context_.side, columns[f]);
          break;
        case FieldLayout::Kind::kChildren:
          record->field_hashes[f] = HashBytes(child_bytes_[field.child]);
          break;
        case FieldLayout::Kind::kFileBytes: {
          const std::string digest = FileDigest(id, columns, /*report=*/true);
          ValueView view;
          view.type = ValueView::Type::kText;
          view.text = digest;
          record->field_hashes[f] = HashView(view);
          break;
        }
      }
    }
    record->hash = HashFields(record->field_hashes);
    record->id = std::move(id);
    record->full = false;
    record->key.clear();
    record->values.clear();
    record->references.clear();
    return true;
  }
}

Result<bool> TableReader::FetchRaw(const Value& id, RawRecord* raw) {
  const TableSpec& table = *layout_.table;
  store::ScanRequest root;
  root.table = table.name;
  root.columns = layout_.columns;
  root.equals = {{table.id, id}};
  auto cursor = env_.Scan(root);
  if (!cursor.ok()) return cursor.status();
  if (!(*cursor)->Next(&raw->columns)) {
    if (!(*cursor)->status().ok()) return (*cursor)->status();
    return false;
  }
  raw->id = id;
  raw->children.assign(layout_.children.size(), {});
  for (size_t i = 0; i < layout_.children.size(); ++i) {
    const ChildLayout& child = layout_.children[i];
    store::ScanRequest request;
    request.table = child.spec->table;
    request.columns = child.columns;
    request.order_by = child.spec->order;
    request.order_by.push_back(child.spec->id);
    request.equals = {{child.spec->parent, id}};
    auto child_cursor = env_.Scan(request);
    if (!child_cursor.ok()) return child_cursor.status();
    ChildRow row;
    while ((*child_cursor)->Next(&row)) raw->children[i].push_back(row);
    if (!(*child_cursor)->status().ok()) return (*child_cursor)->status();
  }
  return true;
}

Result<bool> TableReader::Fetch(const Value& id, Record* record, RawRecord* raw_out) {
  RawRecord raw;
  auto found = FetchRaw(id, &raw);
  if (!found.ok() || !*found) return found;
  if (raw_out != nullptr) *raw_out = raw;
  raw.id = id;
  Build(std::move(raw), record);
  return true;
}

void TableReader::Build(RawRecord raw, Record* record) {
  std::vector<ValueView> views;
  for (const Value& value : raw.columns) views.push_back(ViewOf(value));
  std::vector<std::string> key_parts(layout_.key_columns.size());
  for (size_t k = 0; k < layout_.key_columns.size(); ++k) {
    KeyPart(layout_.key_columns[k], raw.id, views.data(), &key_parts[k]);
  }
  const std::string digest =
      layout_.table->asset ? FileDigest(raw.id, views.data(), /*report=*/false) : "";
  BuildRecord(layout_, *context_.identities, context_.side, raw.id, std::move(raw.columns),
              raw.children, digest, key_parts, record);
}

Status ReadRecords(store::Environment& env, const RecordLayout& layout, const ReadContext& context,
                   const std::vector<std::pair<Value, size_t>>& wanted, bool with_raw,
                   const std::function<void(size_t, const Record*, const RawRecord*)>& visit) {
  Record record;
  RawRecord raw;
  RawRecord* raw_out = with_raw ? &raw : nullptr;
  std::vector<std::pair<int64_t, size_t>> streamed;
  TableReader points(env, layout, context);
  for (const auto& [id, tag] : wanted) {
    if (const auto* number = std::get_if<int64_t>(&id)) {
      streamed.emplace_back(*number, tag);
      continue;
    }
    auto found = points.Fetch(id, &record, raw_out);
    if (!found.ok()) return found.status();
    visit(tag, *found ? &record : nullptr, *found ? raw_out : nullptr);
  }
  if (streamed.empty()) return Status::Ok();
  std::sort(streamed.begin(), streamed.end());
  std::vector<int64_t> ids;
  for (const auto& [id, tag] : streamed) {
    if (ids.empty() || ids.back() != id) ids.push_back(id);
  }
  ReadContext stream_context = context;
  stream_context.only_ids = &ids;
  stream_context.only_ids_at = nullptr;  // the caller's places belong to the caller's IDs
  stream_context.unfiltered = true;
  TableReader stream(env, layout, stream_context);
  ENVSYNC_RETURN_IF_ERROR(stream.Start());
  bool have = stream.NextFull(&record, raw_out);
  for (const auto& [number, tag] : streamed) {
    // Compared as values: a row's ID may come back as a real (a REAL or numeric ID column).
    const Value id = number;
    while (have && CompareValues(record.id, id) < 0) have = stream.NextFull(&record, raw_out);
    if (!have) ENVSYNC_RETURN_IF_ERROR(stream.status());
    const bool found = have && CompareValues(record.id, id) == 0;
    visit(tag, found ? &record : nullptr, found ? raw_out : nullptr);
  }
  return Status::Ok();
}

PrefetchingReader::PrefetchingReader(TableReader* reader, bool on_thread) : reader_(reader) {
  if (on_thread) thread_ = std::thread([this] { Produce(); });
}

PrefetchingReader::~PrefetchingReader() {
  if (!thread_.joinable()) return;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stop_ = true;
  }
  changed_.notify_all();
  thread_.join();
}

void PrefetchingReader::Produce() {
  while (true) {
    std::vector<Record> batch;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (!free_.empty()) {
        batch = std::move(free_.back());
        free_.pop_back();
      }
    }
    batch.resize(kBatch);
    size_t n = 0;
    while (n < kBatch && reader_->Next(&batch[n])) ++n;
    batch.resize(n);
    const bool last = n < kBatch;
    std::unique_lock<std::mutex> lock(mutex_);
    changed_.wait(lock, [&] { return stop_ || batches_.size() < kMaxQueuedBatches; });
    if (stop_) return;
    if (n > 0) batches_.push_back(std::move(batch));
    finished_ = last;
    changed_.notify_all();
    if (last) return;
  }
}

bool PrefetchingReader::Next(Record* record) {
  if (!thread_.joinable()) return reader_->Next(record);
  if (position_ >= current_.size()) {
    std::unique_lock<std::mutex> lock(mutex_);
    if (!current_.empty()) free_.push_back(std::move(current_));
    changed_.wait(lock, [&] { return !batches_.empty() || finished_; });
    if (batches_.empty()) return false;
    current_ = std::move(batches_.front());
    batches_.pop_front();
    position_ = 0;
    changed_.notify_all();
  }
  std::swap(*record, current_[position_++]);
  return true;
}

}  // namespace envsync::sync
