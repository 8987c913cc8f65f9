#include <fmt/format.h>

#include <filesystem>
#include <memory>

#include "envsync/store/environment.h"
#include "store/postgres/postgres_environment.h"
#include "store/sqlite/sqlite_db.h"

namespace envsync::store {
namespace {

class SqliteRowCursor : public RowCursor {
 public:
  // Reads `statement`, which is either `owned` or borrowed from `db`'s cache.
  SqliteRowCursor(SqliteStatement owned, SqliteStatement* borrowed, SqliteDb* db, size_t columns)
      : owned_(std::move(owned)),
        statement_(borrowed != nullptr ? *borrowed : owned_),
        borrowed_(borrowed != nullptr),
        db_(db),
        columns_(columns) {}
  ~SqliteRowCursor() override {
    if (borrowed_) db_->Release(&statement_);
  }

  bool NextView(std::vector<ValueView>* row) override {
    if (done_) return false;
    if (!statement_.Step(&status_)) {
      done_ = true;
      if (!status_.ok()) status_ = status_.WithContext(db_->what() + ": reading");
      return false;
    }
    row->resize(columns_);
    for (size_t i = 0; i < columns_; ++i) (*row)[i] = statement_.ColumnView(static_cast<int>(i));
    return true;
  }
  Status status() const override { return status_; }

 private:
  SqliteStatement owned_;
  SqliteStatement& statement_;
  bool borrowed_;
  SqliteDb* db_;
  size_t columns_;
  Status status_;
  bool done_ = false;
};

// The SQLite adapter. The connection is read-only: a comparison never writes.
class SqliteEnvironment : public Environment {
 public:
  SqliteEnvironment(const EnvironmentConfig& config, Access access)
      : name_(config.name), location_(config.database), assets_(config.assets), access_(access) {}

  Status Open() {
    ENVSYNC_RETURN_IF_ERROR(db_.Open(location_, /*read_only=*/access_ == Access::kReadOnly,
                                     fmt::format("environment {} ({})", name_, location_)));
    if (access_ == Access::kReadWrite)
      ENVSYNC_RETURN_IF_ERROR(db_.Exec("PRAGMA foreign_keys = ON"));
    return db_.Exec("PRAGMA cache_size = -16384");
  }

  const std::string& name() const override { return name_; }
  const std::string& location() const override { return location_; }
  const AssetFolder& assets() const override { return assets_; }

  Result<SchemaColumns> ReadSchema() override {
    auto tables = db_.Prepare("SELECT name FROM sqlite_master WHERE type = 'table'");
    if (!tables.ok()) return tables.status();
    SchemaColumns schema;
    Status status;
    while (tables->Step(&status)) {
      const std::string table = std::get<std::string>(tables->Column(0));
      auto columns = Columns(table);
      if (!columns.ok()) return columns.status();
      schema[table].insert(columns->begin(), columns->end());
    }
    if (!status.ok()) return status.WithContext(db_.what() + ": reading the schema");
    return schema;
  }

  Result<std::vector<std::string>> Columns(const std::string& table) override {
    return ColumnNames(table, /*not_null_only=*/false);
  }

  Status BeginSnapshot() override {
    ENVSYNC_RETURN_IF_ERROR(db_.Exec("BEGIN"));
    // The first read starts the snapshot that every later read of this transaction shares.
    return db_.Exec("SELECT count(*) FROM sqlite_master");
  }

  Status EndSnapshot() override { return db_.Exec("COMMIT"); }

  Result<std::unique_ptr<RowCursor>> Scan(const ScanRequest& request) override {
    std::string sql = "SELECT ";
    for (size_t i = 0; i < request.columns.size(); ++i) {
      if (i > 0) sql += ", ";
      sql += QuoteIdentifier(request.columns[i]);
    }
    sql += " FROM " + QuoteIdentifier(request.table) + " WHERE 1";
    if (request.filter) {
      // substr() needs no LIKE escaping of '_' and '%' in the prefix.
      sql += " AND substr(" + QuoteIdentifier(request.filter->column) + ", 1, ?1) = ?2";
    }
    for (size_t i = 0; i < request.equals.size(); ++i) {
      sql += fmt::format(" AND {} IS ?{}", QuoteIdentifier(request.equals[i].first), i + 3);
    }
    const int ids_param = static_cast<int>(request.equals.size()) + 3;
    if (request.only_ids) {
      sql += fmt::format(" AND {} IN (SELECT value FROM json_each(?{}))",
                         QuoteIdentifier(request.only_ids_column), ids_param);
    }
    if (!request.order_by.empty()) {
      sql += " ORDER BY ";
      for (size_t i = 0; i < request.order_by.size(); ++i) {
        if (i > 0) sql += ", ";
        sql += QuoteIdentifier(request.order_by[i]);
      }
    }
    // Point reads (by ID) repeat with other values: they reuse one prepared statement.
    SqliteStatement owned;
    SqliteStatement* statement = nullptr;
    if (request.equals.empty()) {
      auto prepared = db_.Prepare(sql);
      if (!prepared.ok()) return prepared.status().WithContext("table " + request.table);
      owned = std::move(*prepared);
    } else {
      auto borrowed = db_.Borrow(sql, &owned);
      if (!borrowed.ok()) return borrowed.status().WithContext("table " + request.table);
      if (*borrowed != &owned) statement = *borrowed;
    }
    SqliteStatement& bound = statement != nullptr ? *statement : owned;
    if (request.filter) {
      bound.Bind(1, static_cast<int64_t>(request.filter->prefix.size()));
      bound.Bind(2, request.filter->prefix);
    }
    for (size_t i = 0; i < request.equals.size(); ++i) {
      bound.Bind(static_cast<int>(i + 3), request.equals[i].second);
    }
    if (request.only_ids) {
      std::string list = "[";
      for (size_t i = 0; i < request.only_ids->size(); ++i) {
        if (i > 0) list += ',';
        list += std::to_string((*request.only_ids)[i]);
      }
      bound.Bind(ids_param, list + "]");
    }
    return std::unique_ptr<RowCursor>(
        new SqliteRowCursor(std::move(owned), statement, &db_, request.columns.size()));
  }

  Result<std::vector<Value>> FindIds(
      const std::string& table, const std::string& id_column,
      const std::vector<std::pair<std::string, Value>>& equals) override {
    std::string sql =
        "SELECT " + QuoteIdentifier(id_column) + " FROM " + QuoteIdentifier(table) + " WHERE ";
    for (size_t i = 0; i < equals.size(); ++i) {
      if (i > 0) sql += " AND ";
      sql += QuoteIdentifier(equals[i].first) + " IS ?";
    }
    ScopedStatement statement(db_);
    ENVSYNC_RETURN_IF_ERROR(statement.Prepare(sql).WithContext("table " + table));
    for (size_t i = 0; i < equals.size(); ++i) {
      statement->Bind(static_cast<int>(i + 1), equals[i].second);
    }
    std::vector<Value> ids;
    Status status;
    while (statement->Step(&status)) ids.push_back(statement->Column(0));
    if (!status.ok()) return status.WithContext(db_.what() + ": looking up " + table);
    return ids;
  }

  Result<std::vector<std::string>> NotNullColumns(const std::string& table) override {
    return ColumnNames(table, /*not_null_only=*/true);
  }

  Status BeginWrite() override {
    if (access_ != Access::kReadWrite) {
      return Status::Internal(db_.what() + ": opened read-only, cannot write");
    }
    // BEGIN IMMEDIATE takes the write lock now; the busy timeout bounds the wait for the
    // platform to release its own.
    Status status = db_.Exec("BEGIN IMMEDIATE");
    if (!status.ok()) {
      return Status::Unavailable(fmt::format(
          "{}: the database stayed locked (by the platform?) for {} s; nothing was written: "
          "try again later ({})",
          db_.what(), kBusyWaitMs / 1000, status.message()));
    }
    return Status::Ok();
  }

  Status Commit() override { return db_.Exec("COMMIT"); }
  void Rollback() override { (void)db_.Exec("ROLLBACK"); }

  Result<Value> Insert(const std::string& table, const std::string& id_column,
                       const std::vector<std::pair<std::string, Value>>& values) override {
    std::string columns;
    std::string marks;
    Value given_id;
    for (size_t i = 0; i < values.size(); ++i) {
      columns += (i > 0 ? ", " : "") + QuoteIdentifier(values[i].first);
      marks += fmt::format("{}?{}", i > 0 ? ", " : "", i + 1);
      if (values[i].first == id_column) given_id = values[i].second;
    }
    ScopedStatement statement(db_);
    ENVSYNC_RETURN_IF_ERROR(statement
                                .Prepare(fmt::format("INSERT INTO {} ({}) VALUES ({})",
                                                     QuoteIdentifier(table), columns, marks))
                                .WithContext("table " + table));
    for (size_t i = 0; i < values.size(); ++i) {
      statement->Bind(static_cast<int>(i + 1), values[i].second);
    }
    Status status = statement->Run();
    if (!status.ok()) return status.WithContext(fmt::format("inserting into {}", table));
    if (!IsNull(given_id)) return given_id;
    return Value(static_cast<int64_t>(sqlite3_last_insert_rowid(db_.handle())));
  }

  Status Update(const std::string& table, const std::string& id_column, const Value& id,
                const std::vector<std::pair<std::string, Value>>& values) override {
    if (values.empty()) return Status::Ok();
    std::string sets;
    for (size_t i = 0; i < values.size(); ++i) {
      sets += fmt::format("{}{} = ?{}", i > 0 ? ", " : "", QuoteIdentifier(values[i].first), i + 1);
    }
    ScopedStatement statement(db_);
    ENVSYNC_RETURN_IF_ERROR(
        statement
            .Prepare(fmt::format("UPDATE {} SET {} WHERE {} = ?{}", QuoteIdentifier(table), sets,
                                 QuoteIdentifier(id_column), values.size() + 1))
            .WithContext("table " + table));
    for (size_t i = 0; i < values.size(); ++i) {
      statement->Bind(static_cast<int>(i + 1), values[i].second);
    }
    statement->Bind(static_cast<int>(values.size() + 1), id);
    Status status = statement->Run();
    if (!status.ok()) return status.WithContext(fmt::format("updating {}", RecordRef(table, id)));
    return Status::Ok();
  }

  Status Delete(const std::string& table, const std::string& column, const Value& value) override {
    ScopedStatement statement(db_);
    ENVSYNC_RETURN_IF_ERROR(
        statement
            .Prepare(fmt::format("DELETE FROM {} WHERE {} = ?1", QuoteIdentifier(table),
                                 QuoteIdentifier(column)))
            .WithContext("table " + table));
    statement->Bind(1, value);
    Status status = statement->Run();
    if (!status.ok()) {
      return status.WithContext(
          fmt::format("deleting from {} where {} = {}", table, column, RenderValue(value)));
    }
    return Status::Ok();
  }

 private:
  // The columns of `table` in schema order, or only those declared NOT NULL.
  Result<std::vector<std::string>> ColumnNames(const std::string& table, bool not_null_only) {
    ScopedStatement info(db_);
    ENVSYNC_RETURN_IF_ERROR(
        info.Prepare("SELECT name FROM pragma_table_info(?1) WHERE NOT ?2 OR \"notnull\" "
                     "ORDER BY cid"));
    info->Bind(1, table);
    info->Bind(2, static_cast<int64_t>(not_null_only ? 1 : 0));
    std::vector<std::string> columns;
    Status status;
    while (info->Step(&status)) columns.push_back(std::get<std::string>(info->Column(0)));
    if (!status.ok()) return status.WithContext(db_.what() + ": reading table " + table);
    return columns;
  }

  static constexpr int kBusyWaitMs = 5000;

  std::string name_;
  std::string location_;
  AssetFolder assets_;
  Access access_;
  SqliteDb db_;
};

}  // namespace

Result<std::unique_ptr<Environment>> OpenEnvironment(const EnvironmentConfig& config,
                                                     Access access) {
  if (IsPostgresUri(config.database)) return OpenPostgresEnvironment(config, access);
  std::error_code ec;
  if (!std::filesystem::is_regular_file(config.database, ec)) {
    return Status::Unavailable(fmt::format("environment {}: database file '{}' does not exist",
                                           config.name, config.database));
  }
  if (!std::filesystem::is_directory(config.assets, ec)) {
    return Status::Unavailable(fmt::format("environment {}: assets folder '{}' does not exist",
                                           config.name, config.assets));
  }
  auto env = std::make_unique<SqliteEnvironment>(config, access);
  ENVSYNC_RETURN_IF_ERROR(env->Open());
  return std::unique_ptr<Environment>(std::move(env));
}

}  // namespace envsync::store
