#include <fmt/format.h>
#include <sqlite3.h>

#include <bit>
#include <cerrno>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <exception>
#include <mutex>
#include <nlohmann/json.hpp>
#include <system_error>
#include <thread>

#include "envsync/store/fault_injection.h"
#include "envsync/store/json_codec.h"
#include "envsync/store/state_store.h"
#include "store/postgres/postgres_environment.h"
#include "store/postgres/postgres_state_store.h"
#include "store/sqlite/base_digest_packs.h"
#include "store/sqlite/sqlite_db.h"

namespace envsync::store {
namespace {

using nlohmann::json;

// Each entry migrates the schema from version i to i + 1; never edit one that has shipped.
const char* const kMigrations[] = {
    R"sql(
CREATE TABLE identity_map (
  table_name TEXT NOT NULL,
  prod_id    INTEGER NOT NULL,
  test_id    INTEGER NOT NULL,
  PRIMARY KEY (table_name, prod_id)
);
CREATE UNIQUE INDEX identity_map_by_test ON identity_map (table_name, test_id);
CREATE TABLE sync_base (
  table_name   TEXT NOT NULL,
  prod_id      NOT NULL,
  test_id      NOT NULL,
  hash         INTEGER NOT NULL,
  field_hashes BLOB NOT NULL,
  PRIMARY KEY (table_name, prod_id, test_id)
) WITHOUT ROWID;
CREATE TABLE comparisons (
  id               TEXT PRIMARY KEY,
  created_at       TEXT NOT NULL,
  from_env         TEXT NOT NULL,
  to_env           TEXT NOT NULL,
  mode             TEXT NOT NULL,
  modules          TEXT NOT NULL,
  folders          TEXT NOT NULL,
  forced           TEXT NOT NULL,
  warnings         TEXT NOT NULL,
  records_compared INTEGER NOT NULL,
  conflicts        INTEGER NOT NULL,
  new_records      INTEGER NOT NULL,
  modified         INTEGER NOT NULL,
  deleted          INTEGER NOT NULL
);
CREATE TABLE changes (
  comparison_id TEXT NOT NULL REFERENCES comparisons (id) ON DELETE CASCADE,
  seq           INTEGER NOT NULL,
  tab           TEXT NOT NULL,
  record        TEXT NOT NULL,
  body          TEXT NOT NULL,
  PRIMARY KEY (comparison_id, seq)
);
CREATE INDEX changes_by_tab ON changes (comparison_id, tab, seq);
)sql",
    R"sql(
CREATE TABLE syncs (
  id            TEXT PRIMARY KEY,
  comparison_id TEXT NOT NULL,
  created_at    TEXT NOT NULL,
  finished_at   TEXT NOT NULL,
  started_by    TEXT NOT NULL,
  from_env      TEXT NOT NULL,
  to_env        TEXT NOT NULL,
  test_import   INTEGER NOT NULL,
  status        TEXT NOT NULL,
  applied       TEXT NOT NULL,
  error         TEXT NOT NULL
);
CREATE INDEX syncs_by_comparison ON syncs (comparison_id);
CREATE TABLE sync_records (
  sync_id     TEXT NOT NULL REFERENCES syncs (id) ON DELETE CASCADE,
  seq         INTEGER NOT NULL,
  table_name  TEXT NOT NULL,
  action      TEXT NOT NULL,
  prod_id,
  test_id,
  target_id,
  pre_image   TEXT NOT NULL,
  after_image TEXT NOT NULL,
  after_hash  INTEGER,
  base_hash   INTEGER,
  base_fields BLOB,
  PRIMARY KEY (sync_id, seq)
);
CREATE TABLE sync_files (
  sync_id     TEXT NOT NULL REFERENCES syncs (id) ON DELETE CASCADE,
  seq         INTEGER NOT NULL,
  final_path  TEXT NOT NULL,
  staged_path TEXT NOT NULL,
  trash_path  TEXT NOT NULL,
  PRIMARY KEY (sync_id, seq)
);
)sql",
    R"sql(
CREATE TABLE jobs (
  id          TEXT PRIMARY KEY,
  kind        TEXT NOT NULL,
  state       TEXT NOT NULL,
  created_at  TEXT NOT NULL,
  run_at      TEXT NOT NULL,
  started_at  TEXT NOT NULL,
  finished_at TEXT NOT NULL,
  started_by  TEXT NOT NULL,
  request     TEXT NOT NULL,
  result      TEXT NOT NULL,
  error       TEXT NOT NULL
);
CREATE INDEX jobs_by_state ON jobs (state, run_at);
CREATE TABLE messages (
  id         INTEGER PRIMARY KEY,
  user       TEXT NOT NULL,
  created_at TEXT NOT NULL,
  title      TEXT NOT NULL,
  body       TEXT NOT NULL,
  job_id     TEXT NOT NULL,
  read       INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX messages_by_user ON messages (user, id);
)sql",
    R"sql(
CREATE TABLE users (
  email         TEXT PRIMARY KEY,
  role          TEXT NOT NULL,
  password_hash TEXT NOT NULL,
  time_zone     TEXT NOT NULL,
  created_at    TEXT NOT NULL
);
CREATE TABLE sessions (
  token_hash TEXT PRIMARY KEY,
  email      TEXT NOT NULL REFERENCES users (email) ON DELETE CASCADE,
  csrf_token TEXT NOT NULL,
  created_at TEXT NOT NULL,
  expires_at TEXT NOT NULL
);
CREATE TABLE audit (
  id     INTEGER PRIMARY KEY,
  at     TEXT NOT NULL,
  user   TEXT NOT NULL,
  action TEXT NOT NULL,
  target TEXT NOT NULL,
  detail TEXT NOT NULL
);
CREATE TABLE selections (
  comparison_id TEXT PRIMARY KEY REFERENCES comparisons (id) ON DELETE CASCADE,
  body          TEXT NOT NULL
);
)sql",
    // The review's filter matches a change's key and module: kept as columns, not read out of
    // each JSON body.
    R"sql(
ALTER TABLE changes ADD COLUMN record_key TEXT NOT NULL DEFAULT '';
ALTER TABLE changes ADD COLUMN module TEXT NOT NULL DEFAULT '';
UPDATE changes SET record_key = coalesce(json_extract(body, '$.key'), ''),
                   module = coalesce(json_extract(body, '$.module'), '');
)sql",
    // Jobs remember which `envsync serve` process claimed them.
    R"sql(
ALTER TABLE jobs ADD COLUMN runner TEXT NOT NULL DEFAULT '';
)sql",
    // A base remembers the digest each side's server computed of the record (PostgreSQL
    // environments), so a comparison skips what did not change without reading it.
    R"sql(
ALTER TABLE sync_base ADD COLUMN prod_digest INTEGER;
ALTER TABLE sync_base ADD COLUMN test_digest INTEGER;
)sql",
    // Change tracking: per table, where both environments' change logs stood at the last
    // comparison, and the IDs that were not equal then.
    R"sql(
CREATE TABLE tracking_marks (
  table_name    TEXT PRIMARY KEY,
  prod_epoch    TEXT NOT NULL,
  prod_position TEXT NOT NULL,
  test_epoch    TEXT NOT NULL,
  test_position TEXT NOT NULL,
  mix           INTEGER NOT NULL,
  unequal_prod  BLOB NOT NULL,
  unequal_test  BLOB NOT NULL
);
)sql",
    // A sync names the job that ran it, so settling after a crash finds it without trusting the
    // clock; a selection looks up the records it names by index.
    R"sql(
ALTER TABLE syncs ADD COLUMN job_id TEXT NOT NULL DEFAULT '';
CREATE INDEX changes_by_record ON changes (comparison_id, record);
)sql",
    // Nothing in the schema: a stored change's field may now name the side its base repeats
    // (`base_as`, store::ChangeToStoredJson), which an envsync of version 9 would read as a
    // base of NULL; the version keeps such an envsync from opening this store.
    "SELECT 1",
    // The bases' digests of each table, packed by 4,096 IDs, for a comparison of two SQLite
    // files (BaseDigestPacks, store/sqlite/base_digest_packs.h): a marked table's packs hold
    // exactly its bases' digests. The bases' table is renamed so that an envsync of version 10
    // still holding the store open (an `envsync serve` across an upgrade) fails its next base
    // write ("no such table") instead of writing bases past the packs.
    R"sql(
ALTER TABLE sync_base RENAME TO bases;
CREATE TABLE base_digest_packs (
  table_name TEXT NOT NULL,
  chunk      INTEGER NOT NULL,
  entries    BLOB NOT NULL,
  PRIMARY KEY (table_name, chunk)
);
CREATE TABLE base_digest_marks (
  table_name TEXT PRIMARY KEY
);
)sql",
    // Nothing in the schema: a sync record's pre-image may now hold only the columns the update
    // wrote and a digest of the whole record (sync::ColumnImageText), which an envsync of
    // version 11 would compare as a whole image after a crash; the version keeps such an envsync
    // from opening this store.
    "SELECT 1",
    // Nothing in the schema: a stored change's field may now write its target as an edit of its
    // source (`target_edit`, store::ChangeToStoredJson), which an envsync of version 12 would
    // read as a target of NULL; the version keeps such an envsync from opening this store.
    "SELECT 1",
    // A comparison of many changes is stored in several commits (SaveComparison); its ID is
    // listed here from the first until the last, which adds its header. An ID left here names
    // changes a killed envsync left half stored, which no reader finds (every read starts from
    // a header) and whoever next settles the store deletes (DiscardHalfStoredComparisons).
    R"sql(
CREATE TABLE comparisons_being_stored (
  comparison_id TEXT PRIMARY KEY
);
)sql",
    // A comparison from the change logs now takes the base of a pair only one side wrote since
    // the mark from the other side's record, which holds only if every undo since the mark
    // added its pairs to the mark's unequal IDs (sync::FinishUndo). An envsync of version 14
    // undoes without that, and may have done so since the marks were written: they are
    // dropped (each tracked table is read whole once, and marked again), and the version keeps
    // such an envsync from opening this store.
    "DELETE FROM tracking_marks",
};
constexpr int kMigrationCount = sizeof(kMigrations) / sizeof(kMigrations[0]);
static_assert(kMigrationCount == kStateSchemaVersion);

void ReadBase(const SqliteStatement& statement, SyncBase* base) {
  base->prod_id = statement.Column(0);
  base->test_id = statement.Column(1);
  base->hash = std::bit_cast<uint64_t>(std::get<int64_t>(statement.Column(2)));
  int size = 0;
  const void* data = statement.ColumnBlob(3, &size);
  base->field_hashes.resize(static_cast<size_t>(size) / sizeof(uint64_t));
  if (size > 0) std::memcpy(base->field_hashes.data(), data, base->field_hashes.size() * 8);
  base->prod_digest.reset();
  base->test_digest.reset();
  if (auto d = statement.Column(4); !IsNull(d))
    base->prod_digest = std::bit_cast<uint64_t>(std::get<int64_t>(d));
  if (auto d = statement.Column(5); !IsNull(d))
    base->test_digest = std::bit_cast<uint64_t>(std::get<int64_t>(d));
}

std::string IdList(const std::vector<int64_t>& ids) {
  std::string list = "[";
  for (size_t i = 0; i < ids.size(); ++i) {
    if (i > 0) list += ',';
    list += std::to_string(ids[i]);
  }
  return list + "]";
}

std::vector<int64_t> IdsOfBlob(const SqliteStatement& statement, int column) {
  int size = 0;
  const void* data = statement.ColumnBlob(column, &size);
  std::vector<int64_t> ids(static_cast<size_t>(size) / sizeof(int64_t));
  if (!ids.empty()) std::memcpy(ids.data(), data, ids.size() * sizeof(int64_t));
  return ids;
}

TrackingMark ReadMark(const SqliteStatement& statement) {
  TrackingMark mark;
  auto text = [&](int i) {
    const Value v = statement.Column(i);
    return std::holds_alternative<std::string>(v) ? std::get<std::string>(v) : std::string();
  };
  mark.table = text(0);
  mark.prod_epoch = text(1);
  mark.prod_position = text(2);
  mark.test_epoch = text(3);
  mark.test_position = text(4);
  const Value mix = statement.Column(5);
  mark.mix =
      std::holds_alternative<int64_t>(mix) ? std::bit_cast<uint64_t>(std::get<int64_t>(mix)) : 0;
  mark.unequal_prod = IdsOfBlob(statement, 6);
  mark.unequal_test = IdsOfBlob(statement, 7);
  return mark;
}

// The value of an integer pragma (user_version, page_size) on `db`.
Result<int64_t> IntegerPragma(SqliteDb& db, const std::string& name) {
  auto pragma = db.Prepare("PRAGMA " + name);
  if (!pragma.ok()) return pragma.status();
  Status status;
  if (!pragma->Step(&status)) return status.ok() ? db.Error("reading " + name) : status;
  const Value value = pragma->Column(0);
  const auto* number = std::get_if<int64_t>(&value);
  if (number == nullptr) {
    return Status::Unavailable(fmt::format("{}: reading {}: not a number", db.what(), name));
  }
  return *number;
}

Value DigestValue(const std::optional<uint64_t>& digest) {
  return digest ? Value(std::bit_cast<int64_t>(*digest)) : Value();
}

class SqliteBaseCursor : public BaseCursor {
 public:
  explicit SqliteBaseCursor(SqliteStatement statement) : statement_(std::move(statement)) {}
  bool Next(SyncBase* base) override {
    if (!statement_.Step(&status_)) return false;
    ReadBase(statement_, base);
    return true;
  }
  Status status() const override { return status_; }

 private:
  SqliteStatement statement_;
  Status status_;
};

// Copies the store's WAL back into the database on a thread of its own, with a connection of its
// own, instead of inside the commit that filled it: a sync's journal (≈ 120 MB of pre-images at
// 100,000 records) was checkpointed by its own commit, ≈ 0.5 s before the target's commit could
// start; now the copy runs beside the target's commit and the bases. A PASSIVE checkpoint never
// blocks the writer, and a checkpoint is SQLite's own crash-safe step wherever it is cut off.
// Whatever is left when the store closes, the last connection's close checkpoints, as before.
// The thread and its connection start with the first checkpoint asked for: most commands (a
// tracked compare, `show`) never fill the WAL that far.
class WalCheckpointer {
 public:
  WalCheckpointer() = default;
  WalCheckpointer(const WalCheckpointer&) = delete;
  WalCheckpointer& operator=(const WalCheckpointer&) = delete;
  ~WalCheckpointer() { Stop(); }

  // Takes over `writer`'s automatic checkpoints (sqlite3_wal_hook replaces them); `page_size`
  // is the store's.
  void Start(const std::string& path, sqlite3* writer, int64_t page_size, const std::string& what) {
    path_ = path;
    what_ = what;
    writer_ = writer;
    pages_ = static_cast<int>(std::max<int64_t>(1, kBytes / std::max<int64_t>(page_size, 512)));
    sqlite3_wal_hook(writer, &WalCheckpointer::Committed, this);
  }

  void Stop() {
    if (writer_ == nullptr) return;
    // After this no commit calls Committed: the store is being closed, and its writer connection
    // (opened without a mutex) is used by one thread at a time.
    sqlite3_wal_hook(writer_, nullptr, nullptr);
    writer_ = nullptr;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stop_ = true;
    }
    wake_.notify_one();
    if (thread_.joinable()) thread_.join();
  }

 private:
  // Once the WAL holds 4 MiB after a commit. SQLite's own automatic checkpoint waits for 1,000
  // pages, 4 MiB of its default 4 KiB pages but 16 MiB of the store's 16 KiB ones: a comparison
  // of 10,000 changes (≈ 20 MB) then left most of its WAL to the close's checkpoint, on the
  // command's path (docs/PERFORMANCE.md).
  static constexpr int64_t kBytes = int64_t{4} << 20;

  static int Committed(void* self, sqlite3*, const char*, int pages) {
    auto* checkpointer = static_cast<WalCheckpointer*>(self);
    if (pages >= checkpointer->pages_) {
      {
        std::lock_guard<std::mutex> lock(checkpointer->mutex_);
        checkpointer->pending_ = true;
        if (!checkpointer->thread_.joinable()) {
          try {
            checkpointer->thread_ = std::thread([checkpointer] { checkpointer->Run(); });
          } catch (const std::system_error&) {
            // No thread to spare: the store's close checkpoints what is left.
          }
        }
      }
      checkpointer->wake_.notify_one();
    }
    return SQLITE_OK;
  }

  void Run() {
    // A connection that cannot open checkpoints nothing; the store's close still does.
    if (!db_.Open(path_, /*read_only=*/false, what_).ok() ||
        !db_.Exec("PRAGMA synchronous = NORMAL").ok()) {
      return;
    }
    std::unique_lock<std::mutex> lock(mutex_);
    while (true) {
      wake_.wait(lock, [this] { return pending_ || stop_; });
      if (stop_) return;
      pending_ = false;
      lock.unlock();
      // Busy or partial (a reader still on an old snapshot) is fine: the next commit asks again.
      (void)sqlite3_wal_checkpoint_v2(db_.handle(), nullptr, SQLITE_CHECKPOINT_PASSIVE, nullptr,
                                      nullptr);
      lock.lock();
    }
  }

  std::string path_;
  std::string what_;
  SqliteDb db_;
  sqlite3* writer_ = nullptr;
  int pages_ = 0;  // kBytes in the store's pages, set by Start
  std::thread thread_;
  std::mutex mutex_;
  std::condition_variable wake_;
  bool pending_ = false;
  bool stop_ = false;
};

// The stored JSON of a comparison's changes (ChangeToStoredJson), written batch by batch on a
// thread of its own while the caller inserts the batches before. It runs up to kAhead batches
// ahead, so the texts in hand stay a few megabytes whatever the comparison's size; one batch
// ahead, the inserting thread waited for the writer whenever a batch's JSON took longer than
// the inserts before it (20-45 ms of the issue-7 pair's ≈ 150 ms of storing). Without a thread
// to spare, each batch is written when it is asked for.
class StoredBodies {
 public:
  static constexpr size_t kBatch = 512;
  static constexpr size_t kAhead = 8;

  explicit StoredBodies(const std::vector<Change>& changes) : changes_(changes) {
    if (changes_.size() <= kBatch) return;  // one batch: nothing to overlap
    try {
      thread_ = std::thread([this] { Run(); });
    } catch (const std::system_error&) {
      // Written by Next, a batch at a time.
    }
  }
  StoredBodies(const StoredBodies&) = delete;
  StoredBodies& operator=(const StoredBodies&) = delete;
  ~StoredBodies() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stop_ = true;
    }
    room_.notify_one();
    if (thread_.joinable()) thread_.join();
  }

  // The texts of the next batch of changes, in order; throws what writing them threw
  // (std::bad_alloc).
  std::vector<std::string> Next() {
    if (!thread_.joinable()) return Batch(next_++ * kBatch);
    std::unique_lock<std::mutex> lock(mutex_);
    ready_.wait(lock, [this] { return !batches_.empty() || failed_ != nullptr; });
    if (batches_.empty()) std::rethrow_exception(failed_);
    std::vector<std::string> batch = std::move(batches_.front());
    batches_.pop_front();
    lock.unlock();
    room_.notify_one();
    return batch;
  }

 private:
  std::vector<std::string> Batch(size_t from) const {
    std::vector<std::string> texts;
    const size_t to = std::min(changes_.size(), from + kBatch);
    texts.reserve(to - from);
    for (size_t i = from; i < to; ++i) texts.push_back(ChangeToStoredJson(changes_[i]));
    return texts;
  }

  void Run() {
    for (size_t from = 0; from < changes_.size(); from += kBatch) {
      std::vector<std::string> batch;
      try {
        batch = Batch(from);
      } catch (...) {
        std::lock_guard<std::mutex> lock(mutex_);
        failed_ = std::current_exception();
        ready_.notify_one();
        return;
      }
      std::unique_lock<std::mutex> lock(mutex_);
      room_.wait(lock, [this] { return batches_.size() < kAhead || stop_; });
      if (stop_) return;
      batches_.push_back(std::move(batch));
      lock.unlock();
      ready_.notify_one();
    }
  }

  const std::vector<Change>& changes_;
  std::thread thread_;
  size_t next_ = 0;  // the next batch Next writes itself, without a thread
  std::mutex mutex_;
  std::condition_variable ready_;  // a batch is in, or writing one failed
  std::condition_variable room_;   // a batch was taken, or the caller stops
  std::deque<std::vector<std::string>> batches_;
  std::exception_ptr failed_;
  bool stop_ = false;
};

class SqliteStateStore : public StateStore {
 public:
  explicit SqliteStateStore(std::string path) : path_(std::move(path)) {}
  // The checkpointer goes before the connections close (its hook is on writer_).
  ~SqliteStateStore() override { checkpointer_.Stop(); }

  Status Open() {
    const std::string what = fmt::format("state store ({})", path_);
    ENVSYNC_RETURN_IF_ERROR(reader_.Open(path_, /*read_only=*/false, what));
    // A store this envsync cannot read is refused before anything in it changes.
    ENVSYNC_RETURN_IF_ERROR(ReadVersion());
    // A new store gets 16 KiB pages (set before WAL, which fixes the size): a comparison's
    // changes and a sync's pre-images are rows of one to a few KiB, which 4 KiB pages split into
    // overflow chains; a store's own writes took about half the time (docs/PERFORMANCE.md). An
    // existing store keeps its size.
    ENVSYNC_RETURN_IF_ERROR(reader_.Exec(
        "PRAGMA page_size = 16384; PRAGMA journal_mode = WAL; PRAGMA foreign_keys = ON"));
    ENVSYNC_RETURN_IF_ERROR(Migrate());
    ENVSYNC_RETURN_IF_ERROR(writer_.Open(path_, /*read_only=*/false, what));
    ENVSYNC_RETURN_IF_ERROR(writer_.Exec("PRAGMA foreign_keys = ON; PRAGMA synchronous = NORMAL"));
    ENVSYNC_RETURN_IF_ERROR(writer_.Exec(kWriterCache));
    auto page_size = IntegerPragma(writer_, "page_size");
    if (!page_size.ok()) return page_size.status();
    checkpointer_.Start(path_, writer_.handle(), *page_size, what);
    return Status::Ok();
  }

  int SchemaVersion() const override { return version_; }

  Result<IdentityMap> LoadIdentityMap() override {
    auto statement = reader_.Prepare("SELECT table_name, prod_id, test_id FROM identity_map");
    if (!statement.ok()) return statement.status();
    IdentityMap map;
    Status status;
    while (statement->Step(&status)) {
      map.Add(std::get<std::string>(statement->Column(0)), std::get<int64_t>(statement->Column(1)),
              std::get<int64_t>(statement->Column(2)));
    }
    if (!status.ok()) return status.WithContext(reader_.what());
    return map;
  }

  Status AddIdentity(const std::string& table, int64_t prod_id, int64_t test_id) override {
    auto remove = writer_.Prepare(
        "DELETE FROM identity_map WHERE table_name = ?1 AND (prod_id = ?2 OR test_id = ?3)");
    if (!remove.ok()) return remove.status();
    remove->Bind(1, table);
    remove->Bind(2, prod_id);
    remove->Bind(3, test_id);
    ENVSYNC_RETURN_IF_ERROR(remove->Run());
    auto insert = writer_.Prepare("INSERT INTO identity_map VALUES (?1, ?2, ?3)");
    if (!insert.ok()) return insert.status();
    insert->Bind(1, table);
    insert->Bind(2, prod_id);
    insert->Bind(3, test_id);
    return insert->Run();
  }

  Status RemoveIdentity(const std::string& table, int64_t prod_id, int64_t test_id) override {
    auto remove = writer_.Prepare(
        "DELETE FROM identity_map WHERE table_name = ?1 AND prod_id = ?2 AND test_id = ?3");
    if (!remove.ok()) return remove.status();
    remove->Bind(1, table);
    remove->Bind(2, prod_id);
    remove->Bind(3, test_id);
    return remove->Run();
  }

  Result<std::unique_ptr<BaseCursor>> ScanDirectBase(const std::string& table) override {
    auto statement = reader_.Prepare(
        "SELECT prod_id, test_id, hash, field_hashes, prod_digest, test_digest FROM bases "
        "WHERE table_name = ?1 AND prod_id = test_id ORDER BY prod_id");
    if (!statement.ok()) return statement.status();
    statement->Bind(1, table);
    return std::unique_ptr<BaseCursor>(new SqliteBaseCursor(std::move(*statement)));
  }

  Result<std::vector<BaseDigests>> LoadBaseDigests(const std::string& table) override {
    auto packed = BaseDigestPacks::Load(reader_, table);
    if (!packed.ok()) return packed.status();
    if (packed->has_value()) return std::move(**packed);
    // Not packed (or a pack is malformed): read the bases, and pack it when the base update
    // this comparison is part of commits.
    auto digests = BaseDigestPacks::LoadDirectDigests(reader_, table);
    if (digests.ok()) packs_.Wanted(table);
    return digests;
  }

  Result<std::unique_ptr<BaseCursor>> ScanDirectBase(const std::string& table,
                                                     const std::vector<int64_t>& ids) override {
    auto statement = reader_.Prepare(
        "SELECT prod_id, test_id, hash, field_hashes, prod_digest, test_digest FROM bases "
        "WHERE table_name = ?1 AND prod_id IN (SELECT value FROM json_each(?2)) AND "
        "prod_id = test_id ORDER BY prod_id");
    if (!statement.ok()) return statement.status();
    statement->Bind(1, table);
    statement->Bind(2, IdList(ids));
    return std::unique_ptr<BaseCursor>(new SqliteBaseCursor(std::move(*statement)));
  }

  Result<std::optional<TrackingMark>> LoadTrackingMark(const std::string& table) override {
    auto statement = reader_.Prepare(
        "SELECT table_name, prod_epoch, prod_position, test_epoch, test_position, mix, "
        "unequal_prod, unequal_test FROM tracking_marks WHERE table_name = ?1");
    if (!statement.ok()) return statement.status();
    statement->Bind(1, table);
    Status status;
    if (!statement->Step(&status)) {
      if (!status.ok()) return status.WithContext(reader_.what());
      return std::optional<TrackingMark>();
    }
    return std::optional<TrackingMark>(ReadMark(*statement));
  }

  Result<std::vector<TrackingMark>> ListTrackingMarks() override {
    auto statement = reader_.Prepare(
        "SELECT table_name, prod_epoch, prod_position, test_epoch, test_position, mix, "
        "unequal_prod, unequal_test FROM tracking_marks ORDER BY table_name");
    if (!statement.ok()) return statement.status();
    std::vector<TrackingMark> marks;
    Status status;
    while (statement->Step(&status)) marks.push_back(ReadMark(*statement));
    if (!status.ok()) return status.WithContext(reader_.what());
    return marks;
  }

  Status SaveTrackingMark(const TrackingMark& mark) override {
    auto statement = writer_.Prepare(
        "INSERT OR REPLACE INTO tracking_marks VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)");
    if (!statement.ok()) return statement.status();
    statement->Bind(1, mark.table);
    statement->Bind(2, mark.prod_epoch);
    statement->Bind(3, mark.prod_position);
    statement->Bind(4, mark.test_epoch);
    statement->Bind(5, mark.test_position);
    statement->Bind(6, std::bit_cast<int64_t>(mark.mix));
    statement->BindBlob(7, mark.unequal_prod.data(), mark.unequal_prod.size() * sizeof(int64_t));
    statement->BindBlob(8, mark.unequal_test.data(), mark.unequal_test.size() * sizeof(int64_t));
    return statement->Run().WithContext(writer_.what() + ": saving the tracking mark of " +
                                        mark.table);
  }

  Result<std::optional<SyncBase>> FindBase(const std::string& table, const Value& prod_id,
                                           const Value& test_id) override {
    // Prepared once: a sync looks up the base of every record it writes.
    ScopedStatement statement(reader_);
    ENVSYNC_RETURN_IF_ERROR(statement.Prepare(
        "SELECT prod_id, test_id, hash, field_hashes, prod_digest, test_digest FROM bases "
        "WHERE table_name = ?1 AND prod_id = ?2 AND test_id = ?3"));
    statement->Bind(1, table);
    statement->Bind(2, prod_id);
    statement->Bind(3, test_id);
    Status status;
    if (!statement->Step(&status)) {
      if (!status.ok()) return status.WithContext(reader_.what());
      return std::optional<SyncBase>();
    }
    SyncBase base;
    ReadBase(*statement, &base);
    return std::optional<SyncBase>(std::move(base));
  }

  Status DeleteBase(const std::string& table, const Value& prod_id, const Value& test_id) override {
    auto statement = writer_.Prepare(
        "DELETE FROM bases WHERE table_name = ?1 AND prod_id = ?2 AND test_id = ?3");
    if (!statement.ok()) return statement.status();
    statement->Bind(1, table);
    statement->Bind(2, prod_id);
    statement->Bind(3, test_id);
    if (in_base_update_) {
      ENVSYNC_RETURN_IF_ERROR(statement->Run());
      return packs_.Noted(writer_, table, prod_id, test_id, std::nullopt, std::nullopt);
    }
    // Outside a base update the table's packs stop vouching for its bases, in the same
    // transaction as the delete.
    const bool own = sqlite3_get_autocommit(writer_.handle()) != 0;
    if (own) ENVSYNC_RETURN_IF_ERROR(writer_.Exec("BEGIN IMMEDIATE"));
    Status status = statement->Run();
    if (status.ok()) status = BaseDigestPacks::Unmark(writer_, table);
    if (own) status = status.ok() ? writer_.Exec("COMMIT") : (writer_.Exec("ROLLBACK"), status);
    return status;
  }

  Status SaveSync(const SyncRun& run) override {
    ENVSYNC_RETURN_IF_ERROR(writer_.Exec("BEGIN IMMEDIATE"));
    Status status = WriteSync(run);
    if (!status.ok()) {
      (void)writer_.Exec("ROLLBACK");
      return status;
    }
    return writer_.Exec("COMMIT");
  }

  Status UpdateSyncStatus(const SyncRun& run) override {
    auto update = writer_.Prepare(
        "UPDATE syncs SET status = ?2, finished_at = ?3, applied = ?4, error = ?5 WHERE id = ?1");
    if (!update.ok()) return update.status();
    update->Bind(1, run.id);
    update->Bind(2, run.status);
    update->Bind(3, run.finished_at);
    update->Bind(4, run.applied);
    update->Bind(5, run.error);
    return update->Run();
  }

  Result<SyncRun> LoadSync(const std::string& id) override {
    auto runs = ReadSyncs(id, false);
    if (!runs.ok()) return runs.status();
    if (runs->empty()) return Status::NotFound(fmt::format("no sync with ID '{}'", id));
    SyncRun run = std::move(runs->front());
    auto records = reader_.Prepare(
        "SELECT table_name, action, prod_id, test_id, target_id, pre_image, after_hash, "
        "base_hash, base_fields, after_image FROM sync_records WHERE sync_id = ?1 ORDER BY seq");
    if (!records.ok()) return records.status();
    records->Bind(1, id);
    Status status;
    while (records->Step(&status)) {
      SyncRecord r;
      r.table = std::get<std::string>(records->Column(0));
      r.action = std::get<std::string>(records->Column(1));
      r.prod_id = records->Column(2);
      r.test_id = records->Column(3);
      r.target_id = records->Column(4);
      r.pre_image = std::get<std::string>(records->Column(5));
      r.after_image = std::get<std::string>(records->Column(9));
      if (auto h = records->Column(6); !IsNull(h))
        r.after_hash = std::bit_cast<uint64_t>(std::get<int64_t>(h));
      if (auto h = records->Column(7); !IsNull(h)) {
        SyncBase base;
        // A deleted record's pair has the target's ID on its missing side.
        base.prod_id = IsNull(r.prod_id) ? r.target_id : r.prod_id;
        base.test_id = IsNull(r.test_id) ? r.target_id : r.test_id;
        base.hash = std::bit_cast<uint64_t>(std::get<int64_t>(h));
        int size = 0;
        const void* data = records->ColumnBlob(8, &size);
        base.field_hashes.resize(static_cast<size_t>(size) / sizeof(uint64_t));
        if (size > 0) std::memcpy(base.field_hashes.data(), data, base.field_hashes.size() * 8);
        r.base_before = std::move(base);
      }
      run.records.push_back(std::move(r));
    }
    if (!status.ok()) return status.WithContext(reader_.what());
    auto files = reader_.Prepare(
        "SELECT final_path, staged_path, trash_path FROM sync_files WHERE sync_id = ?1 "
        "ORDER BY seq");
    if (!files.ok()) return files.status();
    files->Bind(1, id);
    while (files->Step(&status)) {
      run.files.push_back(SyncFile{std::get<std::string>(files->Column(0)),
                                   std::get<std::string>(files->Column(1)),
                                   std::get<std::string>(files->Column(2))});
    }
    if (!status.ok()) return status.WithContext(reader_.what());
    return run;
  }

  Result<std::vector<SyncRun>> ListSyncs() override { return ReadSyncs("", true); }

  Status SaveJob(const Job& job) override {
    auto statement = writer_.Prepare(
        "INSERT OR REPLACE INTO jobs (id, kind, state, created_at, run_at, started_at, "
        "finished_at, started_by, request, result, error, runner) "
        "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)");
    if (!statement.ok()) return statement.status();
    BindJob(*statement, job);
    return statement->Run();
  }

  Result<bool> SaveJobIf(const Job& job, const std::vector<std::string>& states) override {
    std::string in;
    for (size_t i = 0; i < states.size(); ++i) in += fmt::format("{}?{}", i ? ", " : "", i + 13);
    auto statement = writer_.Prepare(fmt::format(
        "UPDATE jobs SET kind = ?2, state = ?3, created_at = ?4, run_at = ?5, started_at = ?6, "
        "finished_at = ?7, started_by = ?8, request = ?9, result = ?10, error = ?11, runner = ?12 "
        "WHERE id = ?1 AND state IN ({})",
        in.empty() ? "NULL" : in));
    if (!statement.ok()) return statement.status();
    BindJob(*statement, job);
    for (size_t i = 0; i < states.size(); ++i) statement->Bind(static_cast<int>(i) + 13, states[i]);
    ENVSYNC_RETURN_IF_ERROR(statement->Run());
    return sqlite3_changes(writer_.handle()) == 1;
  }

  Status DeleteExpiredSessions(const std::string& now) override {
    auto statement = writer_.Prepare("DELETE FROM sessions WHERE expires_at <= ?1");
    if (!statement.ok()) return statement.status();
    statement->Bind(1, now);
    return statement->Run();
  }

  Status DeleteSessionsOf(const std::string& email) override {
    auto statement = writer_.Prepare("DELETE FROM sessions WHERE email = ?1");
    if (!statement.ok()) return statement.status();
    statement->Bind(1, email);
    return statement->Run();
  }

  Result<std::optional<Job>> ClaimDueJob(const std::string& kind, const std::string& now,
                                         const std::string& runner) override {
    // SQLite has one writer at a time: the immediate transaction is the row lock.
    ENVSYNC_RETURN_IF_ERROR(writer_.Exec("BEGIN IMMEDIATE"));
    auto claimed = ClaimInTransaction(kind, now, runner);
    if (!claimed.ok()) {
      (void)writer_.Exec("ROLLBACK");
      return claimed;
    }
    ENVSYNC_RETURN_IF_ERROR(writer_.Exec("COMMIT"));
    return claimed;
  }

  Result<std::optional<Job>> NextDueJob(const std::string& kind, const std::string& now) override {
    return DueJob(reader_, kind, now);
  }

  Result<Job> LoadJob(const std::string& id) override {
    auto jobs = ReadJobs(id, false);
    if (!jobs.ok()) return jobs.status();
    if (jobs->empty()) return Status::NotFound(fmt::format("no job with ID '{}'", id));
    return std::move(jobs->front());
  }

  Result<std::vector<Job>> ListJobs() override { return ReadJobs("", true); }

  Result<int64_t> AddMessage(const Message& message) override {
    auto statement = writer_.Prepare(
        "INSERT INTO messages (user, created_at, title, body, job_id, read) "
        "VALUES (?1, ?2, ?3, ?4, ?5, ?6)");
    if (!statement.ok()) return statement.status();
    statement->Bind(1, message.user);
    statement->Bind(2, message.created_at);
    statement->Bind(3, message.title);
    statement->Bind(4, message.body);
    statement->Bind(5, message.job_id);
    statement->Bind(6, static_cast<int64_t>(message.read ? 1 : 0));
    ENVSYNC_RETURN_IF_ERROR(statement->Run());
    return static_cast<int64_t>(sqlite3_last_insert_rowid(writer_.handle()));
  }

  Result<std::vector<Message>> ListMessages(const std::string& user) override {
    auto rows = reader_.Prepare(
        "SELECT id, user, created_at, title, body, job_id, read FROM messages "
        "WHERE ?1 = '' OR user = ?1 ORDER BY id DESC");
    if (!rows.ok()) return rows.status();
    rows->Bind(1, user);
    std::vector<Message> out;
    Status status;
    while (rows->Step(&status)) {
      Message m;
      m.id = std::get<int64_t>(rows->Column(0));
      m.user = std::get<std::string>(rows->Column(1));
      m.created_at = std::get<std::string>(rows->Column(2));
      m.title = std::get<std::string>(rows->Column(3));
      m.body = std::get<std::string>(rows->Column(4));
      m.job_id = std::get<std::string>(rows->Column(5));
      m.read = std::get<int64_t>(rows->Column(6)) != 0;
      out.push_back(std::move(m));
    }
    if (!status.ok()) return status.WithContext(reader_.what());
    return out;
  }

  Status MarkMessageRead(int64_t id, const std::string& user) override {
    auto statement = writer_.Prepare("UPDATE messages SET read = 1 WHERE id = ?1 AND user = ?2");
    if (!statement.ok()) return statement.status();
    statement->Bind(1, id);
    statement->Bind(2, user);
    ENVSYNC_RETURN_IF_ERROR(statement->Run());
    if (sqlite3_changes(writer_.handle()) == 0) {
      return Status::NotFound(fmt::format("no message {} for {}", id, user));
    }
    return Status::Ok();
  }

  Status SaveUser(const User& user) override {
    auto statement = writer_.Prepare("INSERT OR REPLACE INTO users VALUES (?1, ?2, ?3, ?4, ?5)");
    if (!statement.ok()) return statement.status();
    const Value values[] = {user.email, user.role, user.password_hash, user.time_zone,
                            user.created_at};
    for (int i = 0; i < 5; ++i) statement->Bind(i + 1, values[i]);
    return statement->Run();
  }

  Result<std::optional<User>> FindUser(const std::string& email) override {
    auto users = ReadUsers(email, false);
    if (!users.ok()) return users.status();
    if (users->empty()) return std::optional<User>();
    return std::optional<User>(std::move(users->front()));
  }

  Result<std::vector<User>> ListUsers() override { return ReadUsers("", true); }

  Status SaveSession(const Session& session) override {
    auto statement = writer_.Prepare("INSERT OR REPLACE INTO sessions VALUES (?1, ?2, ?3, ?4, ?5)");
    if (!statement.ok()) return statement.status();
    const Value values[] = {session.token_hash, session.email, session.csrf_token,
                            session.created_at, session.expires_at};
    for (int i = 0; i < 5; ++i) statement->Bind(i + 1, values[i]);
    return statement->Run();
  }

  Result<std::optional<Session>> FindSession(const std::string& token_hash) override {
    auto rows = reader_.Prepare(
        "SELECT token_hash, email, csrf_token, created_at, expires_at FROM sessions "
        "WHERE token_hash = ?1");
    if (!rows.ok()) return rows.status();
    rows->Bind(1, token_hash);
    Status status;
    if (!rows->Step(&status)) {
      if (!status.ok()) return status.WithContext(reader_.what());
      return std::optional<Session>();
    }
    Session s;
    s.token_hash = std::get<std::string>(rows->Column(0));
    s.email = std::get<std::string>(rows->Column(1));
    s.csrf_token = std::get<std::string>(rows->Column(2));
    s.created_at = std::get<std::string>(rows->Column(3));
    s.expires_at = std::get<std::string>(rows->Column(4));
    return std::optional<Session>(std::move(s));
  }

  Status DeleteSession(const std::string& token_hash) override {
    auto statement = writer_.Prepare("DELETE FROM sessions WHERE token_hash = ?1");
    if (!statement.ok()) return statement.status();
    statement->Bind(1, token_hash);
    return statement->Run();
  }

  Status AddAudit(const AuditEntry& entry) override {
    auto statement = writer_.Prepare(
        "INSERT INTO audit (at, user, action, target, detail) VALUES (?1, ?2, ?3, ?4, ?5)");
    if (!statement.ok()) return statement.status();
    const Value values[] = {entry.at, entry.user, entry.action, entry.target,
                            entry.detail.empty() ? std::string("{}") : entry.detail};
    for (int i = 0; i < 5; ++i) statement->Bind(i + 1, values[i]);
    return statement->Run();
  }

  Result<std::vector<std::string>> CheckIntegrity() override {
    std::vector<std::string> problems;
    for (const char* sql : {"PRAGMA integrity_check", "PRAGMA foreign_key_check"}) {
      auto rows = reader_.Prepare(sql);
      if (!rows.ok()) return rows.status();
      Status status;
      while (rows->Step(&status)) {
        std::string line;
        for (int i = 0; i < rows->ColumnCount(); ++i) {
          if (i > 0) line += ' ';
          line += RenderValue(rows->Column(i));
        }
        if (line != "ok") problems.push_back(fmt::format("{}: {}", sql, line));
      }
      if (!status.ok()) return status.WithContext(reader_.what());
    }
    return problems;
  }

  Result<std::vector<AuditEntry>> ListAudit() override {
    auto rows =
        reader_.Prepare("SELECT id, at, user, action, target, detail FROM audit ORDER BY id");
    if (!rows.ok()) return rows.status();
    std::vector<AuditEntry> out;
    Status status;
    while (rows->Step(&status)) {
      AuditEntry e;
      e.id = std::get<int64_t>(rows->Column(0));
      e.at = std::get<std::string>(rows->Column(1));
      e.user = std::get<std::string>(rows->Column(2));
      e.action = std::get<std::string>(rows->Column(3));
      e.target = std::get<std::string>(rows->Column(4));
      e.detail = std::get<std::string>(rows->Column(5));
      out.push_back(std::move(e));
    }
    if (!status.ok()) return status.WithContext(reader_.what());
    return out;
  }

  Status SaveSelection(const std::string& comparison_id, const std::string& body) override {
    auto statement = writer_.Prepare("INSERT OR REPLACE INTO selections VALUES (?1, ?2)");
    if (!statement.ok()) return statement.status();
    statement->Bind(1, comparison_id);
    statement->Bind(2, body);
    return statement->Run();
  }

  Result<std::string> LoadSelection(const std::string& comparison_id) override {
    auto rows = reader_.Prepare("SELECT body FROM selections WHERE comparison_id = ?1");
    if (!rows.ok()) return rows.status();
    rows->Bind(1, comparison_id);
    Status status;
    if (!rows->Step(&status)) {
      if (!status.ok()) return status.WithContext(reader_.what());
      return std::string();
    }
    return std::get<std::string>(rows->Column(0));
  }

  Status BeginBaseUpdate() override {
    ENVSYNC_RETURN_IF_ERROR(writer_.Exec("BEGIN IMMEDIATE"));
    auto put = writer_.Prepare(
        "INSERT OR REPLACE INTO bases (table_name, prod_id, test_id, hash, field_hashes, "
        "prod_digest, test_digest) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)");
    if (!put.ok()) {
      AbortBaseUpdate();
      return put.status();
    }
    put_ = std::move(*put);
    packs_.Clear();
    in_base_update_ = true;
    return Status::Ok();
  }

  Status PutBase(const std::string& table, const SyncBase& base) override {
    put_.Bind(1, table);
    put_.Bind(2, base.prod_id);
    put_.Bind(3, base.test_id);
    put_.Bind(4, std::bit_cast<int64_t>(base.hash));
    put_.BindBlob(5, base.field_hashes.data(), base.field_hashes.size() * sizeof(uint64_t));
    put_.Bind(6, DigestValue(base.prod_digest));
    put_.Bind(7, DigestValue(base.test_digest));
    Status status = put_.Run();
    put_.Reset();
    if (!status.ok()) return status;
    return packs_.Noted(writer_, table, base.prod_id, base.test_id, base.prod_digest,
                        base.test_digest);
  }

  Status CommitBaseUpdate() override {
    put_ = SqliteStatement();
    in_base_update_ = false;
    Status status = packs_.WriteBeforeCommit(writer_);
    packs_.Clear();
    if (!status.ok()) {
      (void)writer_.Exec("ROLLBACK");
      return status.WithContext(writer_.what());
    }
    return writer_.Exec("COMMIT");
  }

  void AbortBaseUpdate() override {
    put_ = SqliteStatement();
    in_base_update_ = false;
    packs_.Clear();
    (void)writer_.Exec("ROLLBACK");
  }

  Status SaveComparison(const Comparison& c) override {
    // The changes are appended in order: a small cache spills them to the WAL as it goes
    // instead of holding (and first touching) 64 MiB of fresh pages until the commit. At 1M
    // records and 21,018 changes, 217 MB peak RSS against 162 (docs/PERFORMANCE.md).
    ENVSYNC_RETURN_IF_ERROR(writer_.Exec("PRAGMA cache_size = -8192"));
    // Many changes are committed kChangesPerCommit at a time, so the checkpointer copies each
    // commit into the database on the other core while the next is inserted, instead of all
    // 40 MB after the last (docs/PERFORMANCE.md). Readers see the comparison whole or not at
    // all: its header comes with the last commit, and until then its ID is in
    // comparisons_being_stored, with the store's job lock held (shared) so that no settling
    // mistakes it for what a killed envsync left (DiscardHalfStoredComparisons).
    WorkLock storing;
    bool in_commits = false;
    if (c.changes.size() > kChangesPerCommit) {
      auto held = storing.TryAcquireJob(path_);
      in_commits = held.ok() && *held;  // else one commit, as a smaller comparison
    }
    Status status;
    bool committed = false;  // some of its changes, by an earlier commit of this save
    if (in_commits) status = writer_.Exec("PRAGMA foreign_keys = OFF");  // the header comes last
    if (status.ok()) status = writer_.Exec("BEGIN IMMEDIATE");
    if (status.ok()) {
      try {
        status = InsertComparison(c, in_commits, &committed);
      } catch (const std::exception& e) {
        // Memory that runs out writing the changes' JSON (StoredBodies).
        status = Status::Internal(fmt::format("cannot store comparison '{}': {}", c.id, e.what()));
      }
      status = status.ok() ? writer_.Exec("COMMIT") : (writer_.Exec("ROLLBACK"), status);
      // Changes already committed are taken back; with none, its ID may be another
      // comparison's (a second save of one ID is refused, as in one commit), kept whole.
      if (!status.ok() && committed) (void)DiscardChanges(c.id);
    }
    if (in_commits) {
      const Status on = writer_.Exec("PRAGMA foreign_keys = ON");
      if (status.ok()) status = on;
    }
    Status restored = writer_.Exec(kWriterCache);
    return status.ok() ? restored : status;
  }

  Result<std::pair<Comparison, TabCounts>> LoadComparisonHeader(const std::string& id) override {
    auto head = reader_.Prepare(
        "SELECT id, created_at, from_env, to_env, mode, modules, folders, forced, warnings, "
        "records_compared, conflicts, new_records, modified, deleted FROM comparisons WHERE id = "
        "?1");
    if (!head.ok()) return head.status();
    head->Bind(1, id);
    Status status;
    if (!head->Step(&status)) {
      if (!status.ok()) return status.WithContext(reader_.what());
      return Status::NotFound(fmt::format("no comparison with ID '{}'", id));
    }
    Comparison c;
    c.id = std::get<std::string>(head->Column(0));
    c.created_at = std::get<std::string>(head->Column(1));
    c.from = std::get<std::string>(head->Column(2));
    c.to = std::get<std::string>(head->Column(3));
    c.mode = ParseMode(std::get<std::string>(head->Column(4))).value_or(Mode::kAll);
    ENVSYNC_RETURN_IF_ERROR(ComparisonListsFromJson(
        std::get<std::string>(head->Column(5)), std::get<std::string>(head->Column(6)),
        std::get<std::string>(head->Column(7)), std::get<std::string>(head->Column(8)),
        reader_.what(), &c));
    c.records_compared = std::get<int64_t>(head->Column(9));
    TabCounts counts;
    counts.conflicts = std::get<int64_t>(head->Column(10));
    counts.new_records = std::get<int64_t>(head->Column(11));
    counts.modified = std::get<int64_t>(head->Column(12));
    counts.deleted = std::get<int64_t>(head->Column(13));
    return std::pair<Comparison, TabCounts>(std::move(c), counts);
  }

  Result<ChangePage> LoadChangePage(const std::string& id, Tab tab, const std::string& filter,
                                    int64_t offset, int64_t limit) override {
    if (filter.empty()) {
      auto page = PageByPosition(id, tab, offset, limit);
      if (!page.ok()) return page.status();
      if (*page) return std::move(**page);
    }
    const char* where =
        "FROM changes WHERE comparison_id = ?1 AND tab = ?2 AND (?3 = '' OR "
        "instr(lower(record), ?3) > 0 OR instr(lower(record_key), ?3) > 0 OR "
        "instr(lower(module), ?3) > 0)";
    std::string needle = filter;
    for (char& ch : needle) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
    ChangePage page;
    auto count = reader_.Prepare(std::string("SELECT count(*) ") + where);
    if (!count.ok()) return count.status();
    count->Bind(1, id);
    count->Bind(2, std::string(TabName(tab)));
    count->Bind(3, needle);
    Status status;
    if (count->Step(&status)) page.total = std::get<int64_t>(count->Column(0));
    if (!status.ok()) return status.WithContext(reader_.what());
    auto rows =
        reader_.Prepare(std::string("SELECT body ") + where + " ORDER BY seq LIMIT ?4 OFFSET ?5");
    if (!rows.ok()) return rows.status();
    rows->Bind(1, id);
    rows->Bind(2, std::string(TabName(tab)));
    rows->Bind(3, needle);
    rows->Bind(4, limit);
    rows->Bind(5, offset);
    while (rows->Step(&status)) {
      auto change = ChangeFromJson(std::get<std::string>(rows->Column(0)));
      if (!change.ok()) return change.status().WithContext(reader_.what());
      page.changes.push_back(std::move(*change));
    }
    if (!status.ok()) return status.WithContext(reader_.what());
    return page;
  }

  // An unfiltered page of a tab saved as one run of positions (see PageOfTab): its count from
  // the comparison's header and its first and last position, each found by index. nullopt when
  // the tab's positions are not one run (the caller then pages by offset).
  Result<std::optional<ChangePage>> PageByPosition(const std::string& id, Tab tab, int64_t offset,
                                                   int64_t limit) {
    auto run = reader_.Prepare(fmt::format(
        "SELECT c.{}, (SELECT min(seq) FROM changes WHERE comparison_id = ?1 AND tab = ?2), "
        "(SELECT max(seq) FROM changes WHERE comparison_id = ?1 AND tab = ?2) "
        "FROM comparisons AS c WHERE c.id = ?1",
        TabCountColumn(tab)));
    if (!run.ok()) return run.status();
    run->Bind(1, id);
    run->Bind(2, std::string(TabName(tab)));
    Status status;
    if (!run->Step(&status)) {
      if (!status.ok()) return status.WithContext(reader_.what());
      return std::optional<ChangePage>(ChangePage{});  // no such comparison: an empty page
    }
    ChangePage page;
    page.total = std::get<int64_t>(run->Column(0));
    const Value first_seq = run->Column(1);
    const Value last_seq = run->Column(2);
    const auto* first = std::get_if<int64_t>(&first_seq);
    const auto* last = std::get_if<int64_t>(&last_seq);
    if (page.total == 0 && first == nullptr) return std::optional<ChangePage>(std::move(page));
    if (first == nullptr || last == nullptr || *last - *first + 1 != page.total) {
      return std::optional<ChangePage>();
    }
    const PositionRange range = PageOfTab(*first, page.total, offset, limit);
    auto rows = reader_.Prepare(
        "SELECT body FROM changes WHERE comparison_id = ?1 AND seq >= ?2 AND seq < ?3 AND "
        "tab = ?4 ORDER BY seq");
    if (!rows.ok()) return rows.status();
    rows->Bind(1, id);
    rows->Bind(2, range.from);
    rows->Bind(3, range.to);
    rows->Bind(4, std::string(TabName(tab)));
    while (rows->Step(&status)) {
      auto change = ChangeFromJson(std::get<std::string>(rows->Column(0)));
      if (!change.ok()) return change.status().WithContext(reader_.what());
      page.changes.push_back(std::move(*change));
    }
    if (!status.ok()) return status.WithContext(reader_.what());
    if (static_cast<int64_t>(page.changes.size()) != range.to - range.from) {
      return std::optional<ChangePage>();
    }
    return std::optional<ChangePage>(std::move(page));
  }

  Result<std::set<std::string>> KnownChangeRefs(const std::string& id,
                                                const std::vector<std::string>& records) override {
    auto rows = reader_.Prepare(
        "SELECT DISTINCT n.value FROM json_each(?2) AS n "
        "JOIN changes AS c ON c.comparison_id = ?1 AND c.record = n.value");
    if (!rows.ok()) return rows.status();
    rows->Bind(1, id);
    rows->Bind(2, nlohmann::json(records).dump());
    std::set<std::string> known;
    Status status;
    while (rows->Step(&status)) known.insert(std::get<std::string>(rows->Column(0)));
    if (!status.ok()) return status.WithContext(reader_.what());
    return known;
  }

  Result<Comparison> LoadComparison(const std::string& id) override {
    auto header = LoadComparisonHeader(id);
    if (!header.ok()) return header.status();
    Comparison c = std::move(header->first);
    Status status;
    auto rows = reader_.Prepare("SELECT body FROM changes WHERE comparison_id = ?1 ORDER BY seq");
    if (!rows.ok()) return rows.status();
    rows->Bind(1, id);
    // Read in batches, each parsed on two threads (ChangesFromJson).
    constexpr size_t kBatch = 16384;
    std::vector<std::string> texts;
    texts.reserve(kBatch);
    auto parse = [&]() -> Status {
      Status parsed = ChangesFromJson(texts, &c.changes);
      texts.clear();
      return parsed.ok() ? parsed : parsed.WithContext(reader_.what());
    };
    while (rows->Step(&status)) {
      texts.push_back(std::get<std::string>(rows->Column(0)));
      if (texts.size() == kBatch) ENVSYNC_RETURN_IF_ERROR(parse());
    }
    if (!status.ok()) return status.WithContext(reader_.what());
    ENVSYNC_RETURN_IF_ERROR(parse());
    return c;
  }

  Result<std::vector<ComparisonSummary>> ListComparisons() override {
    auto rows = reader_.Prepare(
        "SELECT id, from_env, to_env, created_at, conflicts, new_records, modified, deleted "
        "FROM comparisons ORDER BY created_at, rowid");
    if (!rows.ok()) return rows.status();
    std::vector<ComparisonSummary> out;
    Status status;
    while (rows->Step(&status)) {
      ComparisonSummary s;
      s.id = std::get<std::string>(rows->Column(0));
      s.from = std::get<std::string>(rows->Column(1));
      s.to = std::get<std::string>(rows->Column(2));
      s.created_at = std::get<std::string>(rows->Column(3));
      s.counts = TabCounts{std::get<int64_t>(rows->Column(4)), std::get<int64_t>(rows->Column(5)),
                           std::get<int64_t>(rows->Column(6)), std::get<int64_t>(rows->Column(7))};
      out.push_back(std::move(s));
    }
    if (!status.ok()) return status.WithContext(reader_.what());
    return out;
  }

 private:
  Result<std::vector<User>> ReadUsers(const std::string& email, bool all) {
    auto rows = reader_.Prepare(
        "SELECT email, role, password_hash, time_zone, created_at FROM users "
        "WHERE ?2 = 1 OR email = ?1 ORDER BY email");
    if (!rows.ok()) return rows.status();
    rows->Bind(1, email);
    rows->Bind(2, static_cast<int64_t>(all ? 1 : 0));
    std::vector<User> out;
    Status status;
    while (rows->Step(&status)) {
      User u;
      u.email = std::get<std::string>(rows->Column(0));
      u.role = std::get<std::string>(rows->Column(1));
      u.password_hash = std::get<std::string>(rows->Column(2));
      u.time_zone = std::get<std::string>(rows->Column(3));
      u.created_at = std::get<std::string>(rows->Column(4));
      out.push_back(std::move(u));
    }
    if (!status.ok()) return status.WithContext(reader_.what());
    return out;
  }

  static constexpr const char* kJobColumns =
      "id, kind, state, created_at, run_at, started_at, finished_at, started_by, request, result, "
      "error, runner";

  static void BindJob(SqliteStatement& statement, const Job& job) {
    const Value values[] = {job.id,      job.kind,       job.state,       job.created_at,
                            job.run_at,  job.started_at, job.finished_at, job.started_by,
                            job.request, job.result,     job.error,       job.runner};
    for (int i = 0; i < 12; ++i) statement.Bind(i + 1, values[i]);
  }

  static Job ReadJob(const SqliteStatement& row) {
    Job j;
    std::string* fields[] = {&j.id,      &j.kind,       &j.state,       &j.created_at,
                             &j.run_at,  &j.started_at, &j.finished_at, &j.started_by,
                             &j.request, &j.result,     &j.error,       &j.runner};
    for (int i = 0; i < 12; ++i) *fields[i] = std::get<std::string>(row.Column(i));
    return j;
  }

  Result<std::optional<Job>> ClaimInTransaction(const std::string& kind, const std::string& now,
                                                const std::string& runner) {
    auto due = DueJob(writer_, kind, now);
    if (!due.ok() || !due->has_value()) return due;
    Job job = std::move(**due);
    auto claim = writer_.Prepare(
        "UPDATE jobs SET state = 'running', started_at = ?2, runner = ?3 WHERE id = ?1");
    if (!claim.ok()) return claim.status();
    claim->Bind(1, job.id);
    claim->Bind(2, now);
    claim->Bind(3, runner);
    ENVSYNC_RETURN_IF_ERROR(claim->Run());
    return std::optional<Job>(std::move(job));
  }

  // The oldest due job of `kind` through `db`: what a claim takes and NextDueJob tells.
  Result<std::optional<Job>> DueJob(SqliteDb& db, const std::string& kind, const std::string& now) {
    auto due = db.Prepare(fmt::format(
        "SELECT {} FROM jobs WHERE (state = 'queued' OR (state = 'scheduled' AND run_at <= ?1)) "
        "AND (?2 = '' OR kind = ?2) ORDER BY created_at, id LIMIT 1",
        kJobColumns));
    if (!due.ok()) return due.status();
    due->Bind(1, now);
    due->Bind(2, kind);
    Status status;
    if (!due->Step(&status)) {
      if (!status.ok()) return status.WithContext(db.what());
      return std::optional<Job>();
    }
    return std::optional<Job>(ReadJob(*due));
  }

  Result<std::vector<Job>> ReadJobs(const std::string& id, bool all) {
    auto rows = reader_.Prepare(fmt::format(
        "SELECT {} FROM jobs WHERE ?2 = 1 OR id = ?1 ORDER BY created_at, id", kJobColumns));
    if (!rows.ok()) return rows.status();
    rows->Bind(1, id);
    rows->Bind(2, static_cast<int64_t>(all ? 1 : 0));
    std::vector<Job> out;
    Status status;
    while (rows->Step(&status)) out.push_back(ReadJob(*rows));
    if (!status.ok()) return status.WithContext(reader_.what());
    return out;
  }

  // The syncs with `id`, or every sync when `id` is empty; without records and files.
  Result<std::vector<SyncRun>> ReadSyncs(const std::string& id, bool all) {
    auto rows = reader_.Prepare(
        "SELECT id, comparison_id, created_at, finished_at, started_by, from_env, to_env, "
        "test_import, status, applied, error, job_id FROM syncs WHERE ?2 = 1 OR id = ?1 "
        "ORDER BY created_at, rowid");
    if (!rows.ok()) return rows.status();
    rows->Bind(1, id);
    rows->Bind(2, static_cast<int64_t>(all ? 1 : 0));
    std::vector<SyncRun> out;
    Status status;
    while (rows->Step(&status)) {
      SyncRun run;
      run.id = std::get<std::string>(rows->Column(0));
      run.comparison_id = std::get<std::string>(rows->Column(1));
      run.created_at = std::get<std::string>(rows->Column(2));
      run.finished_at = std::get<std::string>(rows->Column(3));
      run.started_by = std::get<std::string>(rows->Column(4));
      run.from = std::get<std::string>(rows->Column(5));
      run.to = std::get<std::string>(rows->Column(6));
      run.test_import = std::get<int64_t>(rows->Column(7)) != 0;
      run.status = std::get<std::string>(rows->Column(8));
      run.applied = std::get<std::string>(rows->Column(9));
      run.error = std::get<std::string>(rows->Column(10));
      run.job_id = std::get<std::string>(rows->Column(11));
      out.push_back(std::move(run));
    }
    if (!status.ok()) return status.WithContext(reader_.what());
    return out;
  }

  Status WriteSync(const SyncRun& run) {
    for (const char* sql : {"DELETE FROM sync_records WHERE sync_id = ?1",
                            "DELETE FROM sync_files WHERE sync_id = ?1"}) {
      auto remove = writer_.Prepare(sql);
      if (!remove.ok()) return remove.status();
      remove->Bind(1, run.id);
      ENVSYNC_RETURN_IF_ERROR(remove->Run());
    }
    auto head = writer_.Prepare(
        "INSERT OR REPLACE INTO syncs (id, comparison_id, created_at, finished_at, started_by, "
        "from_env, to_env, test_import, status, applied, error, job_id) "
        "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)");
    if (!head.ok()) return head.status();
    const Value values[] = {run.id,         run.comparison_id,
                            run.created_at, run.finished_at,
                            run.started_by, run.from,
                            run.to,         static_cast<int64_t>(run.test_import ? 1 : 0),
                            run.status,     run.applied,
                            run.error,      run.job_id};
    for (int i = 0; i < 12; ++i) head->Bind(i + 1, values[i]);
    ENVSYNC_RETURN_IF_ERROR(head->Run());
    auto record = writer_.Prepare(
        "INSERT INTO sync_records (sync_id, seq, table_name, action, prod_id, test_id, target_id, "
        "pre_image, after_hash, base_hash, base_fields, after_image) "
        "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)");
    if (!record.ok()) return record.status();
    int64_t seq = 0;
    for (const SyncRecord& r : run.records) {
      record->Bind(1, run.id);
      record->Bind(2, seq++);
      record->Bind(3, r.table);
      record->Bind(4, r.action);
      record->Bind(5, r.prod_id);
      record->Bind(6, r.test_id);
      record->Bind(7, r.target_id);
      record->Bind(8, r.pre_image);
      record->Bind(12, r.after_image);
      record->Bind(9, r.after_hash ? Value(std::bit_cast<int64_t>(*r.after_hash)) : Value());
      if (r.base_before) {
        record->Bind(10, std::bit_cast<int64_t>(r.base_before->hash));
        record->BindBlob(11, r.base_before->field_hashes.data(),
                         r.base_before->field_hashes.size() * sizeof(uint64_t));
      } else {
        record->Bind(10, Value());
        record->Bind(11, Value());
      }
      ENVSYNC_RETURN_IF_ERROR(record->Run());
      record->Reset();
    }
    auto file = writer_.Prepare("INSERT INTO sync_files VALUES (?1, ?2, ?3, ?4, ?5)");
    if (!file.ok()) return file.status();
    seq = 0;
    for (const SyncFile& f : run.files) {
      file->Bind(1, run.id);
      file->Bind(2, seq++);
      file->Bind(3, f.final_path);
      file->Bind(4, f.staged_path);
      file->Bind(5, f.trash_path);
      ENVSYNC_RETURN_IF_ERROR(file->Run());
      file->Reset();
    }
    return Status::Ok();
  }

  Status ReadVersion() {
    auto version = IntegerPragma(reader_, "user_version");
    if (!version.ok()) return version.status();
    return RefuseNewer(*version);
  }

  // A store of a newer schema than this envsync knows is refused, naming both versions.
  Status RefuseNewer(int64_t found) const {
    if (found > kStateSchemaVersion) {
      return Status::InvalidArgument(
          fmt::format("state store '{}' has schema version {}, newer than this envsync knows ({}): "
                      "use a newer envsync",
                      path_, found, kStateSchemaVersion));
    }
    return Status::Ok();
  }

  Status Migrate() {
    auto version = IntegerPragma(reader_, "user_version");
    if (!version.ok()) return version.status();
    ENVSYNC_RETURN_IF_ERROR(RefuseNewer(*version));
    version_ = static_cast<int>(*version);
    while (version_ < kStateSchemaVersion) {
      ENVSYNC_RETURN_IF_ERROR(reader_.Exec("BEGIN IMMEDIATE"));
      Status step = reader_.Exec(kMigrations[version_]);
      if (step.ok()) step = reader_.Exec(fmt::format("PRAGMA user_version = {}", version_ + 1));
      if (!step.ok()) {
        (void)reader_.Exec("ROLLBACK");
        return step.WithContext(fmt::format("migrating to schema version {}", version_ + 1));
      }
      ENVSYNC_RETURN_IF_ERROR(reader_.Exec("COMMIT"));
      ++version_;
    }
    return Status::Ok();
  }

  // Inserts the comparison's header and its changes, inside the transaction the caller began.
  // `in_commits`: its changes first, committed kChangesPerCommit at a time with its ID in
  // comparisons_being_stored (`*committed` set once one commit is made), then the header in the
  // caller's last commit.
  Status InsertComparison(const Comparison& c, bool in_commits, bool* committed) {
    if (in_commits) {
      // The header comes last, so a stored comparison's ID is refused here, before any change.
      auto stored = writer_.Prepare("SELECT 1 FROM comparisons WHERE id = ?1");
      if (!stored.ok()) return stored.status();
      stored->Bind(1, c.id);
      Status status;
      if (stored->Step(&status)) {
        return Status::InvalidArgument(
            fmt::format("cannot store comparison '{}': a comparison with that ID is stored", c.id));
      }
      ENVSYNC_RETURN_IF_ERROR(status.WithContext(writer_.what()));
      ENVSYNC_RETURN_IF_ERROR(
          RunWithId("INSERT INTO comparisons_being_stored (comparison_id) VALUES (?1)", c.id));
    } else {
      ENVSYNC_RETURN_IF_ERROR(InsertHeader(c));
    }
    ENVSYNC_RETURN_IF_ERROR(InsertChanges(c, in_commits, committed));
    if (!in_commits) return Status::Ok();
    ENVSYNC_RETURN_IF_ERROR(InsertHeader(c));
    return RunWithId("DELETE FROM comparisons_being_stored WHERE comparison_id = ?1", c.id);
  }

  // Runs `sql` on the writer with `id` bound to ?1.
  Status RunWithId(const char* sql, const std::string& id) {
    auto statement = writer_.Prepare(sql);
    if (!statement.ok()) return statement.status();
    statement->Bind(1, id);
    return statement->Run();
  }

  Status InsertHeader(const Comparison& c) {
    const TabCounts counts = c.Counts();
    auto head = writer_.Prepare(
        "INSERT INTO comparisons VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, "
        "?14)");
    if (!head.ok()) return head.status();
    const Value values[] = {c.id,
                            c.created_at,
                            c.from,
                            c.to,
                            std::string(ModeName(c.mode)),
                            json(c.modules).dump(),
                            json(c.folders).dump(),
                            ForcedToJson(c.forced),
                            WarningsToJson(c.warnings),
                            c.records_compared,
                            counts.conflicts,
                            counts.new_records,
                            counts.modified,
                            counts.deleted};
    for (int i = 0; i < 14; ++i) head->Bind(i + 1, values[i]);
    Status status = head->Run();
    if (!status.ok()) {
      return Status::InvalidArgument(
          fmt::format("cannot store comparison '{}': {}", c.id, status.message()));
    }
    return Status::Ok();
  }

  Status InsertChanges(const Comparison& c, bool in_commits, bool* committed) {
    auto row = writer_.Prepare(
        "INSERT INTO changes (comparison_id, seq, tab, record, body, record_key, module) "
        "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)");
    if (!row.ok()) return row.status();
    // The changes' JSON is written on a second thread, ahead of the inserts.
    StoredBodies texts(c.changes);
    constexpr size_t kBatch = StoredBodies::kBatch;
    const size_t count = c.changes.size();
    for (size_t from = 0; from < count; from += kBatch) {
      const std::vector<std::string> bodies = texts.Next();
      for (size_t i = from; i < count && i < from + kBatch; ++i) {
        const Change& change = c.changes[i];
        // Bound in place (each outlives the step); only the record's ref is made here.
        const std::string ref = change.Ref();
        row->BindText(1, c.id);
        row->Bind(2, static_cast<int64_t>(i));
        row->BindText(3, TabName(change.tab));
        row->BindText(4, ref);
        row->BindText(5, bodies[i - from]);
        row->BindText(6, change.key);
        row->BindText(7, change.module);
        ENVSYNC_RETURN_IF_ERROR(row->Run());
        row->Reset();
        if (in_commits && (i + 1) % kChangesPerCommit == 0 && i + 1 < count) {
          ENVSYNC_RETURN_IF_ERROR(writer_.Exec("COMMIT"));
          *committed = true;
          CrashPoint("comparison_changes_committed");
          ENVSYNC_RETURN_IF_ERROR(writer_.Exec("BEGIN IMMEDIATE"));
        }
      }
    }
    return Status::Ok();
  }

  // Deletes the changes of comparison `id` and its mark in comparisons_being_stored, in a
  // transaction of its own.
  Status DiscardChanges(const std::string& id) {
    ENVSYNC_RETURN_IF_ERROR(writer_.Exec("BEGIN IMMEDIATE"));
    Status status;
    for (const char* sql : {"DELETE FROM changes WHERE comparison_id = ?1",
                            "DELETE FROM comparisons_being_stored WHERE comparison_id = ?1"}) {
      status = RunWithId(sql, id);
      if (!status.ok()) break;
    }
    if (!status.ok()) {
      (void)writer_.Exec("ROLLBACK");
      return status.WithContext(writer_.what());
    }
    return writer_.Exec("COMMIT");
  }

  // What a killed envsync left half stored (SaveComparison), deleted by whoever settles the
  // store under its exclusive lock (service::Workspace::OpenState, the job runner); until then
  // its changes are unreachable: every read starts from a header.
  Result<std::vector<std::string>> DiscardHalfStoredComparisons() override {
    std::vector<std::string> ids;
    {
      auto left = reader_.Prepare("SELECT comparison_id FROM comparisons_being_stored");
      if (!left.ok()) return left.status();
      Status status;
      while (left->Step(&status)) ids.push_back(std::get<std::string>(left->Column(0)));
      if (!status.ok()) return status.WithContext(reader_.what());
    }
    for (const std::string& id : ids) ENVSYNC_RETURN_IF_ERROR(DiscardChanges(id));
    return ids;
  }

  // Changes a comparison stores in one commit; more are committed this many at a time.
  static constexpr size_t kChangesPerCommit = 2048;

  // The writer's page cache: 64 MiB for the bases and a sync's journal, whose index writes
  // land all over the b-trees.
  static constexpr const char* kWriterCache = "PRAGMA cache_size = -65536";

  std::string path_;
  SqliteDb reader_;
  SqliteDb writer_;
  SqliteStatement put_;
  bool in_base_update_ = false;
  BaseDigestPacks packs_;
  WalCheckpointer checkpointer_;
  int version_ = 0;
};

}  // namespace

Result<std::unique_ptr<StateStore>> OpenStateStore(const std::string& location) {
  if (IsPostgresUri(location)) return OpenPostgresStateStore(location);
  auto store = std::make_unique<SqliteStateStore>(location);
  ENVSYNC_RETURN_IF_ERROR(store->Open());
  return std::unique_ptr<StateStore>(std::move(store));
}

}  // namespace envsync::store
