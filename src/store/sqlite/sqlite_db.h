#ifndef ENVSYNC_STORE_SQLITE_SQLITE_DB_H_
#define ENVSYNC_STORE_SQLITE_SQLITE_DB_H_

#include <sqlite3.h>

#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "envsync/core/status.h"
#include "envsync/core/value.h"

namespace envsync::store {

// A prepared statement. Not thread-safe; owned by one connection's user.
class SqliteStatement {
 public:
  SqliteStatement() = default;
  SqliteStatement(sqlite3* db, sqlite3_stmt* stmt) : db_(db), stmt_(stmt) {}
  SqliteStatement(SqliteStatement&& other) noexcept;
  SqliteStatement& operator=(SqliteStatement&& other) noexcept;
  SqliteStatement(const SqliteStatement&) = delete;
  SqliteStatement& operator=(const SqliteStatement&) = delete;
  ~SqliteStatement();

  void Bind(int index, const Value& value);  // 1-based
  void BindBlob(int index, const void* data, size_t size);
  // Text bound in place, not copied: it must outlive the statement's next Reset.
  void BindText(int index, std::string_view text);
  // Steps once: true with a row, false when done; on failure false and `status` is set.
  bool Step(Status* status);
  Status Run();  // steps to the end, for statements without rows
  void Reset();
  Value Column(int index) const;
  // The column in place: text stays valid until the statement steps or resets.
  ValueView ColumnView(int index) const;
  int ColumnCount() const;
  const void* ColumnBlob(int index, int* size) const;
  sqlite3_stmt* get() const { return stmt_; }

 private:
  sqlite3* db_ = nullptr;
  sqlite3_stmt* stmt_ = nullptr;
};

// One SQLite connection. `what` names the file for messages ("environment PROD (/x/prod.db)").
class SqliteDb {
 public:
  SqliteDb() = default;
  SqliteDb(const SqliteDb&) = delete;
  SqliteDb& operator=(const SqliteDb&) = delete;
  ~SqliteDb();

  // Opens `path`; read-only never creates the file. Checks that it is a database.
  Status Open(const std::string& path, bool read_only, const std::string& what);
  Status Exec(const std::string& sql);
  Result<SqliteStatement> Prepare(const std::string& sql);
  // A statement prepared once per SQL text and reused. The caller must hand it back with
  // Release (which resets it) before the same SQL is asked for again; while it is out, a fresh
  // statement is prepared instead (`*owned` holds it and the pointer points at it).
  Result<SqliteStatement*> Borrow(const std::string& sql, SqliteStatement* owned);
  void Release(SqliteStatement* statement);
  sqlite3* handle() const { return db_; }
  const std::string& what() const { return what_; }
  Status Error(const std::string& doing) const;

 private:
  struct Cached {
    SqliteStatement statement;
    bool out = false;
  };
  sqlite3* db_ = nullptr;
  std::string what_;
  std::unordered_map<std::string, std::unique_ptr<Cached>> cache_;
  // The cached statements by address, for Release (a sync hands back ~10 statements a record).
  std::unordered_map<const SqliteStatement*, Cached*> by_address_;
};

// A statement borrowed from a connection's cache for one use, handed back (and reset) when
// this goes out of scope.
class ScopedStatement {
 public:
  explicit ScopedStatement(SqliteDb& db) : db_(db) {}
  ScopedStatement(const ScopedStatement&) = delete;
  ScopedStatement& operator=(const ScopedStatement&) = delete;
  ~ScopedStatement() {
    if (statement_ != nullptr && statement_ != &owned_) db_.Release(statement_);
  }
  Status Prepare(const std::string& sql) {
    auto borrowed = db_.Borrow(sql, &owned_);
    if (!borrowed.ok()) return borrowed.status();
    statement_ = *borrowed;
    return Status::Ok();
  }
  SqliteStatement* operator->() { return statement_; }
  SqliteStatement& operator*() { return *statement_; }

 private:
  SqliteDb& db_;
  SqliteStatement owned_;
  SqliteStatement* statement_ = nullptr;
};

// SQLite's quoting of an identifier: "name" with inner quotes doubled.
std::string QuoteIdentifier(const std::string& name);

}  // namespace envsync::store

#endif  // ENVSYNC_STORE_SQLITE_SQLITE_DB_H_
