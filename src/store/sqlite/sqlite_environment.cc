#include <fmt/format.h>

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>

#include "envsync/store/environment.h"
#include "store/postgres/postgres_environment.h"
#include "store/sqlite/sqlite_db.h"
#include "store/sqlite/sqlite_row_digests.h"

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
    if (access_ == Access::kReadWrite) {
      // A sync's target keeps the pages its transaction changes in the cache: a small one
      // spills them into the file mid-transaction, syncing the journal each time.
      return db_.Exec("PRAGMA foreign_keys = ON; PRAGMA cache_size = -65536");
    }
    // A small page cache: a compare reads each page once (a scan, or a lookup by ID), so a big
    // one only costs a fresh allocation, and a page fault, per page read (20,000-page pair,
    // 1,000 changed records read by ID: 0.06 s with 1 MiB, 0.095 s with 16 MiB).
    return db_.Exec("PRAGMA cache_size = -1024");
  }

  const std::string& name() const override { return name_; }
  const std::string& location() const override { return location_; }
  const AssetFolder& assets() const override { return assets_; }

  Result<std::vector<std::string>> CheckIntegrity() override {
    auto rows = db_.Prepare("PRAGMA quick_check");
    if (!rows.ok()) return rows.status();
    std::vector<std::string> problems;
    Status status;
    while (rows->Step(&status)) {
      std::string line = RenderValue(rows->Column(0));
      if (line != "ok") problems.push_back(std::move(line));
    }
    if (!status.ok()) return status;
    return problems;
  }

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

  Result<std::optional<std::vector<RowDigest>>> RowDigests(const DigestRequest& request) override {
    // A filter or child rows need the rows' values; a file that cannot be read by its pages is
    // read through SQL, which also reports a damaged one properly.
    if (request.filter || !request.children.empty()) {
      return std::optional<std::vector<RowDigest>>();
    }
    auto digests = ReadRowDigests(db_.handle(), location_, request.table, request.id);
    if (!digests.ok()) {
      if (digests.status().code() == Status::Code::kInvalidArgument) {
        return std::optional<std::vector<RowDigest>>();
      }
      return digests.status();
    }
    return std::optional<std::vector<RowDigest>>(std::move(*digests));
  }

  Result<std::unique_ptr<RowCursor>> Scan(const ScanRequest& request) override {
    // Rows asked by ID, in ID order, are read where their cells are: found by the digests (a
    // plan's changed rows), else by descending the table's b-tree (a tracked compare's). IDs
    // not strictly ascending go through SQL, which sorts them and drops repeats, as does a
    // connection in a write transaction (a sync's: ReadRecordsAt refuses it).
    const bool placed =
        request.only_ids &&
        (request.only_ids_at.empty()
             ? std::adjacent_find(request.only_ids->begin(), request.only_ids->end(),
                                  std::greater_equal<int64_t>()) == request.only_ids->end()
             : request.only_ids_at.size() == request.only_ids->size());
    if (placed && !request.filter && request.equals.empty() &&
        request.order_by == std::vector<std::string>{request.only_ids_column}) {
      auto cursor = ReadRecordsAt(db_.handle(), location_, request.table, request.only_ids_column,
                                  request.columns, *request.only_ids, request.only_ids_at);
      if (cursor.ok()) return cursor;
      if (cursor.status().code() != Status::Code::kInvalidArgument) return cursor.status();
    }
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

  Result<std::optional<TrackingState>> ReadTracking() override {
    ScopedStatement exists(db_);
    ENVSYNC_RETURN_IF_ERROR(exists.Prepare(
        "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'envsync_tracking'"));
    Status status;
    if (!exists->Step(&status)) return status.WithContext(db_.what());
    if (std::get<int64_t>(exists->Column(0)) == 0) return std::optional<TrackingState>();
    TrackingState state;
    {
      ScopedStatement head(db_);
      ENVSYNC_RETURN_IF_ERROR(head.Prepare(
          "SELECT epoch, enabled_at, (SELECT count(*) FROM envsync_change_log), "
          "coalesce((SELECT seq || ':' || nonce FROM envsync_change_log ORDER BY seq DESC "
          "LIMIT 1), '0:0') FROM envsync_tracking"));
      if (!head->Step(&status)) {
        return Status::Unavailable(
            fmt::format("{}: the change tracking table envsync_tracking is empty or unreadable: "
                        "run `envsync track enable {}` again ({})",
                        db_.what(), name_, status.message()));
      }
      state.epoch = RenderText(head->Column(0));
      state.enabled_at = RenderText(head->Column(1));
      state.log_rows = std::get<int64_t>(head->Column(2));
      state.position = RenderText(head->Column(3));
    }
    // A table is tracked while every one of its triggers is in place.
    ScopedStatement triggers(db_);
    ENVSYNC_RETURN_IF_ERROR(triggers.Prepare(
        "SELECT t.root_table, count(m.name) = count(*) FROM envsync_tracking_triggers t "
        "LEFT JOIN sqlite_master m ON m.type = 'trigger' AND m.name = t.trigger_name "
        "GROUP BY t.root_table ORDER BY t.root_table"));
    while (triggers->Step(&status)) {
      const std::string table = RenderText(triggers->Column(0));
      (std::get<int64_t>(triggers->Column(1)) != 0 ? state.tables : state.broken).push_back(table);
    }
    if (!status.ok()) return status.WithContext(db_.what() + ": reading change tracking");
    return std::optional<TrackingState>(std::move(state));
  }

  Result<std::optional<std::vector<int64_t>>> ChangedSince(const std::string& table,
                                                           const std::string& position) override {
    int64_t since = 0;
    int64_t nonce = 0;
    if (!ParsePosition(position, &since, &nonce)) return std::optional<std::vector<int64_t>>();
    ScopedStatement last(db_);
    ENVSYNC_RETURN_IF_ERROR(last.Prepare(
        "SELECT coalesce(max(seq), 0), (SELECT pruned_upto FROM envsync_tracking), "
        "(SELECT nonce FROM envsync_change_log WHERE seq = ?1) FROM envsync_change_log"));
    last->Bind(1, since);
    Status status;
    if (!last->Step(&status)) return status.WithContext(db_.what());
    // A log behind the position, or whose entry there is another one, is not the log the
    // position was taken from (a restored backup, written to since); one pruned past it has
    // lost entries the position still needs.
    const Value found_nonce = last->Column(2);
    if (std::get<int64_t>(last->Column(0)) < since || IsNull(last->Column(1)) ||
        std::get<int64_t>(last->Column(1)) > since ||
        (since > 0 && (IsNull(found_nonce) || found_nonce != Value(nonce)))) {
      return std::optional<std::vector<int64_t>>();
    }
    // Sorted and made distinct here: SQLite's temporary b-tree for DISTINCT took 2.2 of the
    // 2.6 ms of reading a 10,000-entry log.
    ScopedStatement changed(db_);
    ENVSYNC_RETURN_IF_ERROR(changed.Prepare(
        "SELECT row_id FROM envsync_change_log WHERE seq > ?1 AND table_name = ?2"));
    changed->Bind(1, static_cast<int64_t>(since));
    changed->Bind(2, table);
    std::vector<int64_t> ids;
    while (changed->Step(&status)) {
      const Value id = changed->Column(0);
      // Not an integer: a row ID the log cannot stand for, so the table is read whole.
      if (!std::holds_alternative<int64_t>(id)) return std::optional<std::vector<int64_t>>();
      ids.push_back(std::get<int64_t>(id));
    }
    if (!status.ok()) return status.WithContext(db_.what() + ": reading the change log");
    std::sort(ids.begin(), ids.end());
    ids.erase(std::unique(ids.begin(), ids.end()), ids.end());
    return std::optional<std::vector<int64_t>>(std::move(ids));
  }

  Result<std::vector<std::string>> EnableTracking(const std::vector<TrackedTable>& tables,
                                                  const std::string& epoch,
                                                  const std::string& now) override {
    std::vector<std::string> tracked;
    for (const TrackedTable& table : tables) {
      auto integer = IsIntegerColumn(table.table, table.id);
      if (!integer.ok()) return integer.status();
      if (*integer) tracked.push_back(table.table);
    }
    ENVSYNC_RETURN_IF_ERROR(BeginWrite());
    Status status = DropTracking();
    if (status.ok()) {
      status = db_.Exec(
          "CREATE TABLE envsync_tracking (epoch TEXT NOT NULL, enabled_at TEXT NOT NULL, "
          "  pruned_upto INTEGER NOT NULL);"
          "CREATE TABLE envsync_tracking_triggers (root_table TEXT NOT NULL, "
          "  trigger_name TEXT PRIMARY KEY);"
          // Each entry's random nonce makes a position name one entry of one log.
          "CREATE TABLE envsync_change_log (seq INTEGER PRIMARY KEY, "
          "  table_name TEXT NOT NULL, row_id INTEGER, nonce INTEGER NOT NULL DEFAULT "
          "  (random()))");
    }
    if (status.ok()) {
      ScopedStatement head(db_);
      status = head.Prepare("INSERT INTO envsync_tracking VALUES (?1, ?2, 0)");
      if (status.ok()) {
        head->Bind(1, epoch);
        head->Bind(2, now);
        status = head->Run();
      }
    }
    for (const TrackedTable& table : tables) {
      if (!status.ok()) break;
      if (std::find(tracked.begin(), tracked.end(), table.table) == tracked.end()) continue;
      status = InstallTriggers(table.table, table.table, table.id, table.id);
      for (const TrackedTable::Child& child : table.children) {
        if (!status.ok()) break;
        status = InstallTriggers(table.table, child.table, child.parent, child.id);
      }
    }
    if (!status.ok()) {
      Rollback();
      return status.WithContext(db_.what() + ": enabling change tracking");
    }
    ENVSYNC_RETURN_IF_ERROR(Commit());
    return tracked;
  }

  Status DisableTracking() override {
    ENVSYNC_RETURN_IF_ERROR(BeginWrite());
    Status status = DropTracking();
    if (!status.ok()) {
      Rollback();
      return status.WithContext(db_.what() + ": disabling change tracking");
    }
    return Commit();
  }

  Result<int64_t> PruneTracking(const std::vector<std::string>& needed) override {
    if (needed.empty()) return int64_t{0};
    int64_t upto = -1;
    for (const std::string& position : needed) {
      int64_t value = 0;
      int64_t nonce = 0;
      if (!ParsePosition(position, &value, &nonce)) {
        return Status::InvalidArgument(db_.what() + ": not a change log position: " + position);
      }
      if (upto < 0 || value < upto) upto = value;
    }
    ENVSYNC_RETURN_IF_ERROR(BeginWrite());
    ScopedStatement prune(db_);
    // The entry at each position stays (a later compare checks its nonce), and so does the
    // last one: new entries number on from it, so positions only grow.
    Status status = prune.Prepare(
        "DELETE FROM envsync_change_log WHERE seq < ?1 AND "
        "seq < (SELECT max(seq) FROM envsync_change_log)");
    if (status.ok()) {
      prune->Bind(1, upto);
      status = prune->Run();
    }
    if (!status.ok()) {
      Rollback();
      return status.WithContext(db_.what() + ": pruning the change log");
    }
    const int64_t deleted = sqlite3_changes(db_.handle());
    if (status.ok() && deleted > 0) {
      ScopedStatement mark(db_);
      status = mark.Prepare("UPDATE envsync_tracking SET pruned_upto = max(pruned_upto, ?1)");
      if (status.ok()) {
        mark->Bind(1, upto);
        status = mark->Run();
      }
    }
    if (!status.ok()) {
      Rollback();
      return status.WithContext(db_.what() + ": pruning the change log");
    }
    ENVSYNC_RETURN_IF_ERROR(Commit());
    return deleted;
  }

 private:
  // The columns of `table` in schema order, or only those declared NOT NULL. Read once per
  // table: pragma_table_info prepares a statement of its own on every call, which a sync
  // reading a pre-image per record would pay 100,000 times.
  Result<std::vector<std::string>> ColumnNames(const std::string& table, bool not_null_only) {
    auto cached = column_names_.find({table, not_null_only});
    if (cached != column_names_.end()) return cached->second;
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
    column_names_[{table, not_null_only}] = columns;
    return columns;
  }

  // Whether `column` of `table` is declared with an integer type (SQLite's INT affinity).
  Result<bool> IsIntegerColumn(const std::string& table, const std::string& column) {
    ScopedStatement info(db_);
    ENVSYNC_RETURN_IF_ERROR(info.Prepare(
        "SELECT instr(upper(type), 'INT') > 0 FROM pragma_table_info(?1) WHERE name = ?2"));
    info->Bind(1, table);
    info->Bind(2, column);
    Status status;
    if (!info->Step(&status)) {
      if (!status.ok()) return status.WithContext(db_.what() + ": reading table " + table);
      return Status::InvalidArgument(
          fmt::format("{}: table {} has no column {}", db_.what(), table, column));
    }
    return std::get<int64_t>(info->Column(0)) != 0;
  }

  static std::string RenderText(const Value& value) {
    const auto* text = std::get_if<std::string>(&value);
    return text != nullptr ? *text : RenderValue(value);
  }

  static std::string QuoteLiteral(const std::string& text) {
    std::string out = "'";
    for (char c : text) out += c == '\'' ? std::string("''") : std::string(1, c);
    return out + "'";
  }

  // "seq:nonce", as ReadTracking writes a position.
  static bool ParsePosition(const std::string& position, int64_t* seq, int64_t* nonce) {
    const size_t colon = position.find(':');
    if (colon == std::string::npos) return false;
    char* end = nullptr;
    const std::string first = position.substr(0, colon);
    const std::string second = position.substr(colon + 1);
    *seq = std::strtoll(first.c_str(), &end, 10);
    if (first.empty() || *end != '\0' || *seq < 0) return false;
    *nonce = std::strtoll(second.c_str(), &end, 10);
    return !second.empty() && *end == '\0';
  }

  // The column lists of `table`'s unique indexes (expression indexes left out: no trigger can
  // name their values).
  Result<std::vector<std::vector<std::string>>> UniqueKeys(const std::string& table) {
    std::vector<std::string> indexes;
    {
      ScopedStatement list(db_);
      ENVSYNC_RETURN_IF_ERROR(
          list.Prepare("SELECT name FROM pragma_index_list(?1) WHERE \"unique\" = 1"));
      list->Bind(1, table);
      Status status;
      while (list->Step(&status)) indexes.push_back(RenderText(list->Column(0)));
      ENVSYNC_RETURN_IF_ERROR(status);
    }
    std::vector<std::vector<std::string>> keys;
    for (const std::string& index : indexes) {
      ScopedStatement info(db_);
      ENVSYNC_RETURN_IF_ERROR(
          info.Prepare("SELECT name FROM pragma_index_info(?1) ORDER BY seqno"));
      info->Bind(1, index);
      std::vector<std::string> columns;
      bool expression = false;
      Status status;
      while (info->Step(&status)) {
        const Value name = info->Column(0);
        if (IsNull(name)) expression = true;
        columns.push_back(RenderText(name));
      }
      ENVSYNC_RETURN_IF_ERROR(status);
      if (!expression && !columns.empty()) keys.push_back(std::move(columns));
    }
    return keys;
  }

  // The triggers that log `root`'s record for each write to `table` (the root itself, or one of
  // its child tables, whose `column` names the root row; `id` is the table's own ID):
  //  - after INSERT, UPDATE and DELETE, the row's record (an UPDATE that changes `column` logs
  //    the new value too, from a trigger that fires only then);
  //  - before INSERT and before an UPDATE of a unique key, the record of any other row holding
  //    that key: INSERT OR REPLACE and UPDATE OR REPLACE delete such a row without firing delete
  //    triggers (unless recursive_triggers is on). A child row's own ID counts as such a key.
  Status InstallTriggers(const std::string& root, const std::string& table,
                         const std::string& column, const std::string& id) {
    auto unique = UniqueKeys(table);
    if (!unique.ok()) return unique.status();
    std::vector<std::vector<std::string>> keys = *unique;
    if (table != root) keys.push_back({id});
    const std::string log =
        "INSERT INTO envsync_change_log (table_name, row_id) VALUES (" + QuoteLiteral(root) + ", ";
    const std::string c = QuoteIdentifier(column);
    const std::string i = QuoteIdentifier(id);
    struct Trigger {
      std::string suffix;
      std::string when;  // AFTER INSERT, BEFORE UPDATE OF …
      std::string condition;
      std::string body;
    };
    std::vector<Trigger> triggers = {
        {"insert", "AFTER INSERT", "", log + "NEW." + c + ");"},
        {"update", "AFTER UPDATE", "", log + "OLD." + c + ");"},
        {"update_id", "AFTER UPDATE OF " + c, " WHEN NEW." + c + " IS NOT OLD." + c,
         log + "NEW." + c + ");"},
        {"delete", "AFTER DELETE", "", log + "OLD." + c + ");"},
    };
    // Whoever holds a key the written row takes: found by the key, logged by its record.
    auto holders = [&](const std::vector<std::string>& key, const char* self) {
      std::string where;
      for (const std::string& k : key) {
        where +=
            (where.empty() ? "" : " AND ") + QuoteIdentifier(k) + " = NEW." + QuoteIdentifier(k);
      }
      // Not the written row itself (for an INSERT, the row its own ID replaces is another).
      const bool own_id = key.size() == 1 && key[0] == id;
      if (!(own_id && std::string(self) == "NEW")) {
        where += " AND " + i + " IS NOT " + self + "." + i;
      }
      return "INSERT INTO envsync_change_log (table_name, row_id) SELECT " + QuoteLiteral(root) +
             ", " + c + " FROM " + QuoteIdentifier(table) + " WHERE " + where + ";";
    };
    std::string before_insert;
    for (size_t k = 0; k < keys.size(); ++k) {
      before_insert += holders(keys[k], "NEW");
      std::string columns;
      for (const std::string& name : keys[k]) {
        columns += (columns.empty() ? "" : ", ") + QuoteIdentifier(name);
      }
      triggers.push_back({"replace_update_" + std::to_string(k), "BEFORE UPDATE OF " + columns, "",
                          holders(keys[k], "OLD")});
    }
    if (!keys.empty()) triggers.push_back({"replace_insert", "BEFORE INSERT", "", before_insert});
    for (const Trigger& trigger : triggers) {
      std::string name = "envsync_track_" + table + "_" + trigger.suffix;
      for (char& ch : name) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
      ENVSYNC_RETURN_IF_ERROR(db_.Exec(fmt::format(
          "CREATE TRIGGER {} {} ON {} FOR EACH ROW{} BEGIN {} END", QuoteIdentifier(name),
          trigger.when, QuoteIdentifier(table), trigger.condition, trigger.body)));
      ENVSYNC_RETURN_IF_ERROR(
          db_.Exec(fmt::format("INSERT INTO envsync_tracking_triggers VALUES ({}, {})",
                               QuoteLiteral(root), QuoteLiteral(name))));
    }
    return Status::Ok();
  }

  // Drops every trigger and table of change tracking, inside the caller's write transaction.
  Status DropTracking() {
    std::vector<std::string> names;
    {
      ScopedStatement triggers(db_);
      ENVSYNC_RETURN_IF_ERROR(
          triggers.Prepare("SELECT name FROM sqlite_master WHERE type = 'trigger' AND "
                           "substr(name, 1, 14) = 'envsync_track_'"));
      Status status;
      while (triggers->Step(&status)) names.push_back(RenderText(triggers->Column(0)));
      ENVSYNC_RETURN_IF_ERROR(status);
    }
    for (const std::string& name : names) {
      ENVSYNC_RETURN_IF_ERROR(db_.Exec("DROP TRIGGER IF EXISTS " + QuoteIdentifier(name)));
    }
    return db_.Exec(
        "DROP TABLE IF EXISTS envsync_change_log; DROP TABLE IF EXISTS envsync_tracking_triggers; "
        "DROP TABLE IF EXISTS envsync_tracking");
  }

  static constexpr int kBusyWaitMs = 5000;

  std::string name_;
  std::string location_;
  AssetFolder assets_;
  Access access_;
  SqliteDb db_;
  std::map<std::pair<std::string, bool>, std::vector<std::string>> column_names_;
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
