#include "sync/record_stream.h"

#include <fmt/format.h>

namespace envsync::sync {
namespace {

constexpr size_t kBatchSize = 1024;
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
  root.filter = table.filter;
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
    auto child_cursor = env_.Scan(request);
    if (!child_cursor.ok()) return child_cursor.status();
    children_.push_back(std::move(*child_cursor));
  }
  pending_child_.assign(children_.size(), {});
  child_done_.assign(children_.size(), false);
  child_rows_.assign(children_.size(), {});
  for (size_t i = 0; i < children_.size(); ++i) {
    if (!children_[i]->Next(&pending_child_[i])) {
      child_done_[i] = true;
      if (!children_[i]->status().ok()) return children_[i]->status();
    }
  }
  return Status::Ok();
}

std::string TableReader::FolderPathOf(const std::string& column,
                                      const std::vector<Value>& row) const {
  const int index = layout_.ColumnIndex(column);
  const std::string* referenced = layout_.table->ReferenceOf(column);
  if (index < 0 || referenced == nullptr) return "";
  auto keys = context_.keys->find(*referenced);
  if (keys == context_.keys->end()) return "";
  auto it = keys->second.key_of.find(row[static_cast<size_t>(index) + 1]);
  return it == keys->second.key_of.end() ? "" : it->second;
}

bool TableReader::Included(const std::vector<Value>& row) const {
  if (context_.folders == nullptr || context_.folders->folders.empty()) return true;
  const TableSpec& table = *layout_.table;
  if (!table.folder_path.empty()) {
    const int index = layout_.ColumnIndex(table.folder_path);
    return index >= 0 && context_.folders->Includes(RenderValue(row[index + 1]));
  }
  if (!table.folder.empty()) return context_.folders->Includes(FolderPathOf(table.folder, row));
  return true;
}

std::string TableReader::KeyPart(int column_index, const std::vector<Value>& row) const {
  if (column_index < 0) return RenderValue(row[0]);  // the key is the ID column itself
  const Value& raw = row[static_cast<size_t>(column_index) + 1];
  const std::string* referenced = layout_.table->ReferenceOf(layout_.columns[column_index]);
  if (referenced == nullptr) return RenderValue(raw);
  auto keys = context_.keys->find(*referenced);
  if (keys != context_.keys->end()) {
    auto it = keys->second.key_of.find(raw);
    if (it != keys->second.key_of.end()) return it->second;
  }
  std::string unknown(1, '#');  // built in two steps: g++ 12 warns falsely on "#" + string
  unknown += RenderValue(raw);
  return unknown;
}

bool TableReader::Next(Record* record) {
  while (true) {
    if (!root_->Next(&row_)) {
      status_ = root_->status();
      return false;
    }
    const Value& id = row_[0];
    // Child rows arrive ordered by parent; rows of parents that are not read are skipped.
    for (size_t i = 0; i < children_.size(); ++i) {
      child_rows_[i].clear();
      while (!child_done_[i]) {
        const auto order = CompareValues(pending_child_[i][0], id);
        if (order > 0) break;
        if (order == 0) {
          child_rows_[i].emplace_back(pending_child_[i].begin() + 1, pending_child_[i].end());
        }
        if (!children_[i]->Next(&pending_child_[i])) {
          child_done_[i] = true;
          if (!children_[i]->status().ok()) {
            status_ = children_[i]->status();
            return false;
          }
        }
      }
    }
    if (!Included(row_)) continue;

    std::vector<std::string> key_parts;
    key_parts.reserve(layout_.key_columns.size());
    for (int column : layout_.key_columns) key_parts.push_back(KeyPart(column, row_));

    std::string digest;
    const TableSpec& table = *layout_.table;
    if (table.asset) {
      const std::string folder = FolderPathOf(table.asset->folder, row_);
      const int file_index = layout_.ColumnIndex(table.asset->file);
      const int sha_index = layout_.ColumnIndex(table.asset->sha256);
      const std::string file = file_index >= 0 ? RenderValue(row_[file_index + 1]) : "";
      const std::string recorded = sha_index >= 0 ? RenderValue(row_[sha_index + 1]) : "";
      store::AssetDigest found = env_.assets().Digest(folder, file);
      if (!found.problem.empty()) {
        digest = kFileMissing;
        warnings_.push_back(Warning{env_.name(), RecordRef(table.name, id), found.problem});
      } else {
        digest = found.sha256;
        if (digest != recorded) {
          warnings_.push_back(
              Warning{env_.name(), RecordRef(table.name, id),
                      fmt::format("the bytes of {} do not match its recorded SHA-256 (recorded {}, "
                                  "found {})",
                                  found.path, recorded, digest)});
        }
      }
    }
    Value record_id = row_[0];
    std::vector<Value> values(std::make_move_iterator(row_.begin() + 1),
                              std::make_move_iterator(row_.end()));
    BuildRecord(layout_, *context_.identities, context_.side, std::move(record_id),
                std::move(values), child_rows_, digest, key_parts, record);
    return true;
  }
}

PrefetchingReader::PrefetchingReader(std::unique_ptr<TableReader> reader)
    : reader_(std::move(reader)), thread_([this] { Produce(); }) {}

PrefetchingReader::~PrefetchingReader() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stop_ = true;
  }
  changed_.notify_all();
  thread_.join();
}

void PrefetchingReader::Produce() {
  while (true) {
    std::vector<Record> batch(kBatchSize);
    size_t n = 0;
    while (n < kBatchSize && reader_->Next(&batch[n])) ++n;
    batch.resize(n);
    const bool last = n < kBatchSize;
    std::unique_lock<std::mutex> lock(mutex_);
    changed_.wait(lock, [&] { return stop_ || batches_.size() < kMaxQueuedBatches; });
    if (stop_) return;
    if (n > 0) batches_.push_back(std::move(batch));
    if (last) {
      finished_ = true;
      changed_.notify_all();
      return;
    }
    changed_.notify_all();
  }
}

bool PrefetchingReader::Next(Record* record) {
  if (position_ >= current_.size()) {
    std::unique_lock<std::mutex> lock(mutex_);
    changed_.wait(lock, [&] { return !batches_.empty() || finished_; });
    if (batches_.empty()) return false;
    current_ = std::move(batches_.front());
    batches_.pop_front();
    position_ = 0;
    changed_.notify_all();
  }
  *record = std::move(current_[position_++]);
  return true;
}

Status PrefetchingReader::status() const { return reader_->status(); }

}  // namespace envsync::sync
