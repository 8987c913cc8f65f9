#ifndef ENVSYNC_SYNC_RECORD_STREAM_H_
#define ENVSYNC_SYNC_RECORD_STREAM_H_

#include <condition_variable>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "envsync/core/comparison.h"
#include "envsync/core/identity_map.h"
#include "envsync/core/record.h"
#include "envsync/store/environment.h"

namespace envsync::sync {

// The natural keys of one table on one side, for tables that other tables' keys reference
// (gallery folders: a file's key is its folder's path plus its name).
struct ValueLess {
  bool operator()(const Value& a, const Value& b) const { return CompareValues(a, b) < 0; }
};

struct KeyIndex {
  std::map<Value, std::string, ValueLess> key_of;
  std::unordered_map<std::string, Value> id_of;
};

// Loads the KeyIndex of `table` from `env` (its ID and its key columns, none of them
// references).
Result<KeyIndex> LoadKeyIndex(store::Environment& env, const TableSpec& table);

// The IDs of the records on `target` whose natural key is the key of a record read elsewhere
// (its `columns` in layout order and its `id`): a referenced key part (a file's folder) is
// translated through the two sides' key indexes. Empty when the key names nothing there.
Result<std::vector<Value>> FindByNaturalKey(store::Environment& target, const RecordLayout& layout,
                                            const Value& id, const std::vector<Value>& columns,
                                            const std::map<std::string, KeyIndex>& from_keys,
                                            const std::map<std::string, KeyIndex>& target_keys);

// The gallery folders a comparison is restricted to; empty = every folder.
struct FolderSelection {
  std::vector<std::string> folders;
  bool Includes(const std::string& path) const;
};

// What a TableReader needs besides its environment.
struct ReadContext {
  const IdentityMap* identities = nullptr;
  Side side = Side::kProd;
  const std::map<std::string, KeyIndex>* keys = nullptr;  // per referenced table, this side
  const FolderSelection* folders = nullptr;
  // Take a gallery file's bytes to be what its row records (its sha256 column) instead of
  // reading them: the record as it will be once a sync has put its staged files in place.
  bool recorded_file_bytes = false;
  // Read only the records with these IDs (sorted), when set: the rest is known unchanged.
  const std::vector<int64_t>* only_ids = nullptr;
  // Where each of `only_ids` is stored on this side (store::ScanRequest::only_ids_at), or null.
  const std::vector<uint64_t>* only_ids_at = nullptr;
  // Next streams full records (NextFull): for a read of a few IDs, most of which the
  // comparison lists, reading each once in full costs less than light now and full later.
  bool full_records = false;
  // Read the rows `only_ids` names whatever the table's filter, as Fetch reads a row by ID (for
  // reads that stand for point reads: the sync's drift guard and journal).
  bool unfiltered = false;
};

// One record's raw data: its compared root columns (RecordLayout::columns order) and the
// compared columns of its child rows, per child table, in their order.
struct RawRecord {
  Value id;
  std::vector<Value> columns;
  std::vector<std::vector<ChildRow>> children;
};

// Reads the records of one root table from one environment. Start + Next stream light
// records (ID, hashes) in ID order, hashing every column in place without copying it: the
// root rows merged with their child rows, local columns left out, the asset bytes digested.
// Fetch reads one record in full. Not thread-safe; one reader per thread.
class TableReader {
 public:
  TableReader(store::Environment& env, const RecordLayout& layout, const ReadContext& context);

  // Opens the scans. Must be called once before Next.
  Status Start();
  // The next light record, or false at the end or on failure (status() tells).
  bool Next(Record* record);
  // The next record in full, as Fetch reads it, or false at the end or on failure: with
  // `only_ids`, one ordered scan reads many records at the cost of one b-tree walk instead of
  // one descent (and, on a server, one round trip) per record. The raw data goes into `raw`
  // when given, as Fetch gives it.
  bool NextFull(Record* record, RawRecord* raw = nullptr);
  // Reads the record with `id` in full (values, key, references), and its raw data into `raw`
  // when given. False when it is not there.
  Result<bool> Fetch(const Value& id, Record* record, RawRecord* raw = nullptr);
  // Reads the raw data of the record with `id`. False when it is not there.
  Result<bool> FetchRaw(const Value& id, RawRecord* raw);
  // The record of raw data read elsewhere (the layout's columns, in its order, and child rows),
  // as Fetch makes it of what FetchRaw read.
  void Build(RawRecord raw, Record* record);
  Status status() const { return status_; }
  // Problems met while streaming (missing or mismatched gallery bytes, unsafe file names).
  const std::vector<Warning>& warnings() const { return warnings_; }

 private:
  bool Included(const ValueView* columns) const;
  // Moves every child cursor past the rows of parents before `id`. The rows of `id` are
  // appended as canonical bytes to child_bytes_, or, with `rows`, kept as values.
  bool ReadChildren(const Value& id, std::vector<std::vector<ChildRow>>* rows);
  void KeyPart(int column_index, const Value& id, const ValueView* columns, std::string* out) const;
  std::string FolderPathOf(const std::string& column, const ValueView* columns) const;
  std::string FileDigest(const Value& id, const ValueView* columns, bool report);

  store::Environment& env_;
  const RecordLayout& layout_;
  ReadContext context_;
  std::unique_ptr<store::RowCursor> root_;
  std::vector<std::unique_ptr<store::RowCursor>> children_;
  std::vector<std::vector<ValueView>> child_row_;  // each child cursor's current row
  std::vector<bool> child_done_;
  std::vector<ValueView> row_;
  std::vector<std::string> child_bytes_;
  std::string key_bytes_;
  std::string part_;
  std::vector<Warning> warnings_;
  Status status_;
};

// Reads in full from `env` the records `wanted` names (an ID and a caller's tag each; an ID may
// repeat) and calls `visit(tag, record, raw)` for each: `record` is null when the record is not
// there, `raw` (its raw data, as Fetch gives it) null unless `with_raw`. Integer IDs are read
// by one ordered scan over them (a b-tree walk, one round trip on a server) and visited in ID
// order; others by ID, first.
Status ReadRecords(store::Environment& env, const RecordLayout& layout, const ReadContext& context,
                   const std::vector<std::pair<Value, size_t>>& wanted, bool with_raw,
                   const std::function<void(size_t, const Record*, const RawRecord*)>& visit);

// Runs a TableReader on its own thread and hands its records over in batches through a
// bounded queue, so the two sides of a comparison are read at once. Batches are recycled, so
// records keep their buffers and streaming allocates nothing once warm.
// With `on_thread` false the reader runs on the caller's thread: for a few records (a tracked
// compare's handful of IDs) starting and joining a thread costs more than it saves.
// Thread safety: Next is called from one consumer thread.
class PrefetchingReader {
 public:
  // Records handed over at a time.
  static constexpr size_t kBatch = 1024;

  explicit PrefetchingReader(TableReader* reader, bool on_thread = true);
  ~PrefetchingReader();

  // Swaps the next record into `record`.
  bool Next(Record* record);
  // Valid once Next returned false.
  Status status() const { return reader_->status(); }
  const std::vector<Warning>& warnings() const { return reader_->warnings(); }

 private:
  void Produce();

  TableReader* reader_;
  std::mutex mutex_;
  std::condition_variable changed_;
  std::deque<std::vector<Record>> batches_;
  std::vector<std::vector<Record>> free_;
  bool finished_ = false;
  bool stop_ = false;
  std::vector<Record> current_;
  size_t position_ = 0;
  std::thread thread_;
};

}  // namespace envsync::sync

#endif  // ENVSYNC_SYNC_RECORD_STREAM_H_
