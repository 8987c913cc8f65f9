#ifndef ENVSYNC_STORE_ENVIRONMENT_H_
#define ENVSYNC_STORE_ENVIRONMENT_H_

#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "envsync/core/config.h"
#include "envsync/core/manifest.h"
#include "envsync/core/status.h"
#include "envsync/core/value.h"

namespace envsync::store {

// A forward-only cursor over the rows of one scan.
class RowCursor {
 public:
  virtual ~RowCursor() = default;
  // Moves to the next row and shows it in `row`, one view per requested column, without
  // copying: the views stay valid until the next call. Returns false at the end and on
  // failure; status() then tells which.
  virtual bool NextView(std::vector<ValueView>* row) = 0;
  virtual Status status() const = 0;

  // Like NextView, with the row copied into values.
  bool Next(std::vector<Value>* row);

 private:
  std::vector<ValueView> views_;
};

// What to read from one table.
struct ScanRequest {
  std::string table;
  std::vector<std::string> columns;
  std::vector<std::string> order_by;  // ascending; the adapter orders by them exactly
  std::optional<RowFilter> filter;
  std::vector<std::pair<std::string, Value>> equals;  // only rows where column IS value
  // Only rows whose `only_ids_column` is one of `only_ids` (integers), when set.
  std::optional<std::vector<int64_t>> only_ids;
  std::string only_ids_column;
  // Where each of `only_ids` is stored (RowDigest::at, or kRowAbsent), in the same order, when
  // the environment said so in this snapshot: an adapter may read the rows there instead.
  std::vector<uint64_t> only_ids_at;
};

// What a database server digests for the remote-efficient comparison: the rows of `table` (its
// integer `id` and compared `columns`, with the `filter`), each with its child rows folded in.
// A row's digest is a 64-bit hash the server computes of the row; a bucket of `bits` is the IDs
// with the same `id >> bits` (bits 0: one row).
struct DigestRequest {
  struct Child {
    std::string table;
    std::string parent;
    std::vector<std::string> columns;
  };
  std::string table;
  std::string id;
  std::vector<std::string> columns;
  std::optional<RowFilter> filter;
  std::vector<Child> children;
};

// One row's digest as an environment reads it from its own storage (Environment::RowDigests).
struct RowDigest {
  int64_t id = 0;
  uint64_t digest = 0;
  // Where the row is stored, for reading it again alone (ScanRequest::only_ids_at): in a SQLite
  // file, its cell's offset and length (store/sqlite/sqlite_row_digests.cc, CellPlace); 0 where
  // unknown.
  uint64_t at = 0;
};

// ScanRequest::only_ids_at of an ID whose row is not in the environment.
inline constexpr uint64_t kRowAbsent = ~uint64_t{0};

struct DigestBucket {
  int64_t bucket = 0;
  int64_t rows = 0;
  uint64_t digest = 0;  // XOR of the rows' digests
};

// Change tracking (`envsync track enable ENV`): triggers in the environment's own database log
// the ID of every record the platform's writes touch, so a comparison reads only what changed
// since the last one. A record is logged under its root table: a child row (a slide) logs
// its parent (the slider).
struct TrackedTable {
  struct Child {
    std::string table;
    std::string parent;  // the column pointing at the root row
    std::string id;      // the child row's own ID column
  };
  std::string table;
  std::string id;  // an INTEGER column
  std::vector<Child> children;
};

// Where an environment's change log stands, read inside a snapshot. `epoch` is new each time
// tracking is enabled; `position` is opaque (SQLite: the log's last sequence number;
// PostgreSQL: the snapshot, pg_current_snapshot()) and goes back to ChangedSince.
struct TrackingState {
  std::string epoch;
  std::string position;
  std::string enabled_at;
  std::vector<std::string> tables;  // root tables whose triggers are all in place
  // Tables enabled once whose triggers are gone (a platform migration dropped them): their
  // log is incomplete, so they are read whole until tracking is enabled again.
  std::vector<std::string> broken;
  int64_t log_rows = 0;
};

// Where one gallery file's bytes are found, with its digest: the file's SHA-256 in lowercase
// hex, or an explanation why it could not be read.
struct AssetDigest {
  std::string sha256;   // empty when not read
  std::string problem;  // "" when read; else e.g. "file is missing"
  std::string path;     // the file's path on disk
};

// The SHA-256 of the file at `path` (AssetDigest::problem says why it could not be read).
AssetDigest Sha256OfFile(const std::string& path);

// The gallery bytes of one environment: `<root>/gallery/<folder path>/<file name>`.
// Thread safety: const methods are safe to call concurrently.
class AssetFolder {
 public:
  explicit AssetFolder(std::string root) : root_(std::move(root)) {}
  const std::string& root() const { return root_; }
  // Digests one file. A folder path or file name that could leave the gallery (`..`, an
  // absolute path, a backslash or NUL), or a path through a symlink inside the gallery (a
  // folder or the file itself), is never opened and is reported as a problem.
  AssetDigest Digest(const std::string& folder_path, const std::string& file_name) const;
  // The file's path inside the gallery, or "" when the names could leave it or the path runs
  // through a symlink inside the gallery (see Digest): nothing is read or written there.
  std::string PathOf(const std::string& folder_path, const std::string& file_name) const;

 private:
  std::string root_;
};

// One environment, PROD or TEST: a database with the platform's schema plus its assets.
// An adapter (SQLite, PostgreSQL) implements it; the compare engine sees only this.
// The adapter opens its database read-only for comparisons: nothing is ever written by them.
//
// Thread safety: one Environment is used by one thread at a time; two environments may be
// read from two threads at once.
class Environment {
 public:
  virtual ~Environment() = default;

  virtual const std::string& name() const = 0;      // "PROD" or "TEST"
  virtual const std::string& location() const = 0;  // the database path, for messages
  virtual const AssetFolder& assets() const = 0;

  // The columns of every table, in schema order.
  virtual Result<SchemaColumns> ReadSchema() = 0;
  // Columns of one table in schema order (empty when the table does not exist).
  virtual Result<std::vector<std::string>> Columns(const std::string& table) = 0;

  // Starts one read transaction: every read until EndSnapshot sees the same state.
  virtual Status BeginSnapshot() = 0;
  virtual Status EndSnapshot() = 0;

  // Streams the rows of `request` in its order.
  virtual Result<std::unique_ptr<RowCursor>> Scan(const ScanRequest& request) = 0;

  // Whether the database computes row digests itself (DigestBuckets): a server does, so a
  // comparison reads only the rows that differ.
  virtual bool ComputesDigests() const { return false; }
  // Per bucket of `bits`, in bucket order: how many rows and the XOR of their digests; over the
  // whole table, or with `within` only inside those (sorted) buckets of `within_bits`.
  // InvalidArgument when the table's ID is not an integer or the database does not digest.
  virtual Result<std::vector<DigestBucket>> DigestBuckets(const DigestRequest& request, int bits,
                                                          int within_bits,
                                                          const std::vector<int64_t>* within) {
    (void)bits, (void)within_bits, (void)within;
    return Status::InvalidArgument("row digests are not computed by " + request.table +
                                   "'s database");
  }
  // Every row's digest in ID order, for a table (`request`: no filter, no child rows) whose
  // digests this environment reads much faster than its rows (SQLite: from the table's b-tree
  // pages, see sqlite_row_digests.h), inside a snapshot; nullopt when it cannot for this
  // table, which is then read through SQL. A digest covers the whole stored row, so a
  // change to any column moves it.
  virtual Result<std::optional<std::vector<RowDigest>>> RowDigests(const DigestRequest& request) {
    (void)request;
    return std::optional<std::vector<RowDigest>>();
  }
  // The change log's state, or nullopt when tracking is not enabled. Inside a snapshot it
  // reads that snapshot.
  virtual Result<std::optional<TrackingState>> ReadTracking() {
    return std::optional<TrackingState>();
  }
  // The sorted, distinct IDs of `table` logged after `position` (from an earlier
  // TrackingState of the same epoch), as this snapshot sees them; nullopt when the position
  // cannot be used (the log went back, e.g. a restored backup): the table is read whole.
  virtual Result<std::optional<std::vector<int64_t>>> ChangedSince(const std::string& table,
                                                                   const std::string& position) {
    (void)table, (void)position;
    return std::optional<std::vector<int64_t>>();
  }
  // Installs the change log and its triggers on `tables` (a new epoch), replacing any earlier
  // ones, in one transaction; a table whose ID column is not an integer is left out. Returns
  // the tables tracked. Needs Access::kReadWrite.
  virtual Result<std::vector<std::string>> EnableTracking(const std::vector<TrackedTable>& tables,
                                                          const std::string& epoch,
                                                          const std::string& now) {
    (void)tables, (void)epoch, (void)now;
    return Status::Unavailable(location() + ": change tracking is not supported here");
  }
  // Removes the triggers and the log, leaving nothing behind. Needs Access::kReadWrite.
  virtual Status DisableTracking() {
    return Status::Unavailable(location() + ": change tracking is not supported here");
  }
  // Deletes the log entries that every one of `needed` (positions still to be read from, of
  // this epoch) has passed. Returns how many were deleted. Needs Access::kReadWrite.
  virtual Result<int64_t> PruneTracking(const std::vector<std::string>& needed) {
    (void)needed;
    return Status::Unavailable(location() + ": change tracking is not supported here");
  }

  // What the database finds wrong with itself, one line per problem; empty when it is sound
  // (SQLite: `PRAGMA quick_check`; a server: nothing beyond answering). An error only when it
  // cannot be asked.
  virtual Result<std::vector<std::string>> CheckIntegrity() { return std::vector<std::string>{}; }

  // Bytes of rows received from a database server so far (0 for a file).
  virtual uint64_t BytesRead() const { return 0; }

  // The `id_column` values of the rows of `table` whose columns equal the given values.
  virtual Result<std::vector<Value>> FindIds(
      const std::string& table, const std::string& id_column,
      const std::vector<std::pair<std::string, Value>>& equals) = 0;

  // Writing: only on an environment opened for writing (a sync's target). Reads made during a
  // write transaction see its own writes.

  // The columns of `table` that may not hold NULL.
  virtual Result<std::vector<std::string>> NotNullColumns(const std::string& table) = 0;
  // Starts the write transaction, waiting a bounded time while the platform holds a lock;
  // Unavailable naming the environment when the lock is not released in time.
  virtual Status BeginWrite() = 0;
  virtual Status Commit() = 0;
  virtual void Rollback() = 0;
  // Inserts a row. When `id_column` is absent from `values` the database allocates the ID.
  // Returns the row's ID.
  virtual Result<Value> Insert(const std::string& table, const std::string& id_column,
                               const std::vector<std::pair<std::string, Value>>& values) = 0;
  virtual Status Update(const std::string& table, const std::string& id_column, const Value& id,
                        const std::vector<std::pair<std::string, Value>>& values) = 0;
  // Deletes the rows whose `column` equals `value`.
  virtual Status Delete(const std::string& table, const std::string& column,
                        const Value& value) = 0;
};

enum class Access { kReadOnly, kReadWrite };

// Opens an environment for reading, by the kind of its `database` setting. Unavailable when
// the database is missing, unreadable or not a database, or the assets folder is missing;
// the message names the environment and the path.
Result<std::unique_ptr<Environment>> OpenEnvironment(const EnvironmentConfig& config,
                                                     Access access = Access::kReadOnly);

}  // namespace envsync::store

#endif  // ENVSYNC_STORE_ENVIRONMENT_H_
