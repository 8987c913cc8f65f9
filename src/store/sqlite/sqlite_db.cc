#include "store/sqlite/sqlite_db.h"

#include <fmt/format.h>

#include <mutex>

namespace envsync::store {

SqliteStatement::SqliteStatement(SqliteStatement&& other) noexcept
    : db_(other.db_), stmt_(other.stmt_) {
  other.stmt_ = nullptr;
}

SqliteStatement& SqliteStatement::operator=(SqliteStatement&& other) noexcept {
  if (this != &other) {
    sqlite3_finalize(stmt_);
    db_ = other.db_;
    stmt_ = other.stmt_;
    other.stmt_ = nullptr;
  }
  return *this;
}

SqliteStatement::~SqliteStatement() { sqlite3_finalize(stmt_); }

void SqliteStatement::Bind(int index, const Value& value) {
  if (IsNull(value)) {
    sqlite3_bind_null(stmt_, index);
  } else if (const auto* i = std::get_if<int64_t>(&value)) {
    sqlite3_bind_int64(stmt_, index, *i);
  } else if (const auto* d = std::get_if<double>(&value)) {
    sqlite3_bind_double(stmt_, index, *d);
  } else {
    const std::string& s = std::get<std::string>(value);
    sqlite3_bind_text(stmt_, index, s.data(), static_cast<int>(s.size()), SQLITE_TRANSIENT);
  }
}

void SqliteStatement::BindBlob(int index, const void* data, size_t size) {
  // SQLite stores a blob with a null pointer as NULL: an empty blob needs a real pointer.
  static const char kEmpty = 0;
  sqlite3_bind_blob(stmt_, index, data != nullptr ? data : &kEmpty, static_cast<int>(size),
                    SQLITE_TRANSIENT);
}

void SqliteStatement::BindText(int index, std::string_view text) {
  sqlite3_bind_text(stmt_, index, text.data(), static_cast<int>(text.size()), SQLITE_STATIC);
}

bool SqliteStatement::Step(Status* status) {
  const int rc = sqlite3_step(stmt_);
  if (rc == SQLITE_ROW) return true;
  if (rc != SQLITE_DONE) {
    *status = Status::Unavailable(sqlite3_errmsg(db_));
  }
  return false;
}

Status SqliteStatement::Run() {
  Status status;
  while (Step(&status)) {
  }
  sqlite3_reset(stmt_);
  return status;
}

void SqliteStatement::Reset() {
  sqlite3_reset(stmt_);
  sqlite3_clear_bindings(stmt_);
}

Value SqliteStatement::Column(int index) const {
  switch (sqlite3_column_type(stmt_, index)) {
    case SQLITE_NULL:
      return Value();
    case SQLITE_INTEGER:
      return static_cast<int64_t>(sqlite3_column_int64(stmt_, index));
    case SQLITE_FLOAT:
      return sqlite3_column_double(stmt_, index);
    case SQLITE_BLOB: {
      const void* data = sqlite3_column_blob(stmt_, index);
      const int size = sqlite3_column_bytes(stmt_, index);
      return std::string(static_cast<const char*>(data), static_cast<size_t>(size));
    }
    default: {
      const unsigned char* text = sqlite3_column_text(stmt_, index);
      const int size = sqlite3_column_bytes(stmt_, index);
      return std::string(reinterpret_cast<const char*>(text), static_cast<size_t>(size));
    }
  }
}

ValueView SqliteStatement::ColumnView(int index) const {
  ValueView view;
  switch (sqlite3_column_type(stmt_, index)) {
    case SQLITE_NULL:
      break;
    case SQLITE_INTEGER:
      view.type = ValueView::Type::kInteger;
      view.integer = sqlite3_column_int64(stmt_, index);
      break;
    case SQLITE_FLOAT:
      view.type = ValueView::Type::kReal;
      view.real = sqlite3_column_double(stmt_, index);
      break;
    case SQLITE_BLOB: {
      view.type = ValueView::Type::kText;
      const void* data = sqlite3_column_blob(stmt_, index);
      view.text = std::string_view(static_cast<const char*>(data),
                                   static_cast<size_t>(sqlite3_column_bytes(stmt_, index)));
      break;
    }
    default: {
      view.type = ValueView::Type::kText;
      const unsigned char* text = sqlite3_column_text(stmt_, index);
      view.text = std::string_view(reinterpret_cast<const char*>(text),
                                   static_cast<size_t>(sqlite3_column_bytes(stmt_, index)));
    }
  }
  return view;
}

int SqliteStatement::ColumnCount() const { return sqlite3_column_count(stmt_); }

const void* SqliteStatement::ColumnBlob(int index, int* size) const {
  const void* data = sqlite3_column_blob(stmt_, index);
  *size = sqlite3_column_bytes(stmt_, index);
  return data;
}

SqliteDb::~SqliteDb() {
  by_address_.clear();
  cache_.clear();
  sqlite3_close_v2(db_);
}

Result<SqliteStatement*> SqliteDb::Borrow(const std::string& sql, SqliteStatement* owned) {
  auto it = cache_.find(sql);
  if (it == cache_.end()) {
    auto statement = Prepare(sql);
    if (!statement.ok()) return statement.status();
    auto cached = std::make_unique<Cached>();
    cached->statement = std::move(*statement);
    by_address_[&cached->statement] = cached.get();
    it = cache_.emplace(sql, std::move(cached)).first;
  }
  if (it->second->out) {
    auto statement = Prepare(sql);
    if (!statement.ok()) return statement.status();
    *owned = std::move(*statement);
    return owned;
  }
  it->second->out = true;
  return &it->second->statement;
}

void SqliteDb::Release(SqliteStatement* statement) {
  statement->Reset();
  auto it = by_address_.find(statement);
  if (it != by_address_.end()) it->second->out = false;
}

namespace {

// SQLite counts every allocation under a global mutex for sqlite3_memory_used, which envsync
// never asks: off, once, before SQLite initializes (a later call is refused and changes nothing).
void ConfigureSqliteOnce() {
  static std::once_flag once;
  std::call_once(once, [] { (void)sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0); });
}

}  // namespace

Status SqliteDb::Open(const std::string& path, bool read_only, const std::string& what) {
  ConfigureSqliteOnce();
  what_ = what;
  const int flags = read_only ? SQLITE_OPEN_READONLY : (SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE);
  if (sqlite3_open_v2(path.c_str(), &db_, flags | SQLITE_OPEN_NOMUTEX, nullptr) != SQLITE_OK) {
    return Status::Unavailable(fmt::format("{}: cannot open database: {}", what_,
                                           db_ != nullptr ? sqlite3_errmsg(db_) : "out of memory"));
  }
  sqlite3_busy_timeout(db_, 5000);
  sqlite3_extended_result_codes(db_, 1);
  // Reading the schema proves the file is a database and not corrupt at its header.
  char* error = nullptr;
  if (sqlite3_exec(db_, "SELECT count(*) FROM sqlite_master", nullptr, nullptr, &error) !=
      SQLITE_OK) {
    std::string message = error != nullptr ? error : "unknown error";
    sqlite3_free(error);
    return Status::Unavailable(fmt::format("{}: not a readable database: {}", what_, message));
  }
  return Status::Ok();
}

Status SqliteDb::Exec(const std::string& sql) {
  char* error = nullptr;
  if (sqlite3_exec(db_, sql.c_str(), nullptr, nullptr, &error) != SQLITE_OK) {
    std::string message = error != nullptr ? error : "unknown error";
    sqlite3_free(error);
    return Status::Unavailable(fmt::format("{}: {}", what_, message));
  }
  return Status::Ok();
}

Result<SqliteStatement> SqliteDb::Prepare(const std::string& sql) {
  sqlite3_stmt* stmt = nullptr;
  if (sqlite3_prepare_v2(db_, sql.c_str(), static_cast<int>(sql.size()), &stmt, nullptr) !=
      SQLITE_OK) {
    return Error("preparing a query");
  }
  return SqliteStatement(db_, stmt);
}

Status SqliteDb::Error(const std::string& doing) const {
  return Status::Unavailable(fmt::format("{}: {}: {}", what_, doing, sqlite3_errmsg(db_)));
}

std::string QuoteIdentifier(const std::string& name) {
  std::string out = "\"";
  for (const char c : name) {
    if (c == '"') out.push_back('"');
    out.push_back(c);
  }
  out.push_back('"');
  return out;
}

}  // namespace envsync::store
