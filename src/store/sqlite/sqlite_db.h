#ifndef ENVSYNC_STORE_SQLITE_SQLITE_DB_H_
#define ENVSYNC_STORE_SQLITE_SQLITE_DB_H_

#include <sqlite3.h>

#include <string>
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
  sqlite3* handle() const { return db_; }
  const std::string& what() const { return what_; }
  Status Error(const std::string& doing) const;

 private:
  sqlite3* db_ = nullptr;
  std::string what_;
};

// SQLite's quoting of an identifier: "name" with inner quotes doubled.
std::string QuoteIdentifier(const std::string& name);

}  // namespace envsync::store

#endif  // ENVSYNC_STORE_SQLITE_SQLITE_DB_H_
