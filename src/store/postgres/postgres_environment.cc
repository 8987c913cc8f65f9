// The PostgreSQL environment adapter, on libpq. Reads run in one REPEATABLE READ READ ONLY
// transaction and stream through a cursor; writes run in one transaction with a bounded
// lock_timeout, and identity sequences are moved past the IDs a sync inserted.
#include "store/postgres/postgres_environment.h"

#include <fmt/format.h>
#include <libpq-fe.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <set>

#include "store/postgres/pg_connection.h"

namespace envsync::store {
namespace {

// Type OIDs of the built-in types the platform's schema uses (pg_type.h).
constexpr Oid kBool = 16, kInt8 = 20, kInt2 = 21, kInt4 = 23, kFloat4 = 700, kFloat8 = 701,
              kNumeric = 1700;

ValueView ViewOfField(PGresult* r, int row, int column) {
  ValueView v;
  if (PQgetisnull(r, row, column)) return v;
  const char* text = PQgetvalue(r, row, column);
  const int length = PQgetlength(r, row, column);
  switch (PQftype(r, column)) {
    case kInt8:
    case kInt4:
    case kInt2: {
      v.type = ValueView::Type::kInteger;
      std::from_chars(text, text + length, v.integer);
      return v;
    }
    case kBool:
      v.type = ValueView::Type::kInteger;
      v.integer = text[0] == 't' ? 1 : 0;
      return v;
    case kFloat4:
    case kFloat8:
    case kNumeric:
      v.type = ValueView::Type::kReal;
      v.real = std::strtod(text, nullptr);
      return v;
    default:
      v.type = ValueView::Type::kText;
      v.text = std::string_view(text, static_cast<size_t>(length));
      return v;
  }
}

// Streams a query through a server-side cursor, so a table is never held whole in memory. Each
// FETCH is sent as soon as the one before has arrived, and the server reads it while envsync
// works on the rows before; the batches grow from kFirstBatch rows to kBatch, so the first rows
// come back soon and a long read takes few round trips.
class PgRowCursor : public RowCursor {
 public:
  static constexpr int kFirstBatch = 1000;
  static constexpr int kBatch = 10000;
  PgRowCursor(PgConnection* conn, std::string cursor, size_t columns, PgResult first)
      : conn_(conn), cursor_(std::move(cursor)), columns_(columns), batch_(std::move(first)) {
    streaming_ = !cursor_.empty();
  }
  ~PgRowCursor() override {
    if (ticket_ != 0) conn_->Forget(ticket_);
    if (streaming_ && conn_->InTransaction()) (void)conn_->Exec("CLOSE " + cursor_);
  }

  bool NextView(std::vector<ValueView>* row) override {
    if (done_) return false;
    while (batch_.r == nullptr || next_ >= PQntuples(batch_.r)) {
      if (!streaming_ || (batch_.r != nullptr && fetched_ && PQntuples(batch_.r) < batch_asked_)) {
        done_ = true;
        return false;
      }
      const Status sent = ticket_ != 0 ? Status::Ok() : Ask();
      auto more = sent.ok() ? conn_->Receive(ticket_) : Result<PgResult>(sent);
      ticket_ = 0;
      if (!more.ok()) {
        status_ = more.status().WithContext("reading");
        done_ = true;
        return false;
      }
      batch_ = std::move(*more);
      batch_asked_ = asked_;
      fetched_ = true;
      next_ = 0;
      if (PQntuples(batch_.r) < batch_asked_) continue;  // the last batch: nothing to ask ahead
      // A full batch: the next is asked for now, read by the server beside this one's rows (a
      // failure to send shows again at the next Ask).
      (void)Ask();
    }
    row->resize(columns_);
    for (size_t i = 0; i < columns_; ++i) {
      (*row)[i] = ViewOfField(batch_.r, next_, static_cast<int>(i));
    }
    ++next_;
    return true;
  }
  Status status() const override { return status_; }

 private:
  // Sends the next FETCH, of twice the rows of the one before (at most kBatch).
  Status Ask() {
    asked_ = asked_ == 0 ? kFirstBatch : std::min(asked_ * 2, kBatch);
    auto sent = conn_->Send(fmt::format("FETCH {} FROM {}", asked_, cursor_));
    if (!sent.ok()) return sent.status();
    ticket_ = *sent;
    return Status::Ok();
  }

  PgConnection* conn_;
  std::string cursor_;
  size_t columns_;
  PgResult batch_;
  bool streaming_ = false;
  bool fetched_ = false;
  uint64_t ticket_ = 0;  // of the FETCH sent and not yet received, or 0
  int asked_ = 0;        // rows the last FETCH sent asked for
  int batch_asked_ = 0;  // rows the FETCH of batch_ asked for
  int next_ = 0;
  bool done_ = false;
  Status status_;
};

class PostgresEnvironment : public Environment {
 public:
  PostgresEnvironment(const EnvironmentConfig& config, Access access)
      : name_(config.name),
        location_(RedactUri(config.database)),
        uri_(config.database),
        assets_(config.assets),
        access_(access) {}

  // Connects and reads the schema's columns, which every use of an environment needs: a
  // compare opens both environments at once, so each side's catalog query runs beside the
  // other's instead of after it.
  Status Open() {
    ENVSYNC_RETURN_IF_ERROR(conn_.Open(uri_, fmt::format("environment {} ({})", name_, location_)));
    return LoadColumns();
  }

  const std::string& name() const override { return name_; }
  const std::string& location() const override { return location_; }
  const AssetFolder& assets() const override { return assets_; }

  Result<SchemaColumns> ReadSchema() override {
    ENVSYNC_RETURN_IF_ERROR(LoadColumns());
    SchemaColumns schema;
    for (const auto& [table, columns] : columns_) {
      for (const ColumnInfo& c : columns) schema[table].insert(c.name);
    }
    return schema;
  }

  Result<std::vector<std::string>> Columns(const std::string& table) override {
    ENVSYNC_RETURN_IF_ERROR(LoadColumns());
    std::vector<std::string> out;
    auto it = columns_.find(table);
    if (it == columns_.end()) return out;
    for (const ColumnInfo& c : it->second) out.push_back(c.name);
    return out;
  }

  Status BeginSnapshot() override {
    return conn_.Exec("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY");
  }
  Status EndSnapshot() override { return conn_.Exec("COMMIT"); }

  Result<std::unique_ptr<RowCursor>> Scan(const ScanRequest& request) override {
    ENVSYNC_RETURN_IF_ERROR(LoadColumns());
    std::string sql = "SELECT ";
    for (size_t i = 0; i < request.columns.size(); ++i) {
      sql += (i > 0 ? ", " : "") + Quote(request.columns[i]);
    }
    sql += " FROM " + Quote(request.table) + " WHERE true";
    Params params;
    if (request.filter) {
      params.Add(static_cast<int64_t>(request.filter->prefix.size()));
      params.Add(request.filter->prefix);
      sql += " AND substr(" + Quote(request.filter->column) + ", 1, $1::int) = $2::text";
    }
    for (const auto& [column, value] : request.equals)
      sql += Equals(request.table, column, value, &params);
    if (request.only_ids) {
      params.Add(IntegerArray(*request.only_ids));
      sql += fmt::format(" AND {} = ANY(${}::bigint[])", Quote(request.only_ids_column),
                         params.text.size());
    }
    if (!request.order_by.empty()) {
      sql += " ORDER BY ";
      for (size_t i = 0; i < request.order_by.size(); ++i) {
        // Text in byte order, as SQLite orders it, whatever the database's collation.
        sql += (i > 0 ? ", " : "") + Quote(request.order_by[i]) +
               (IsText(request.table, request.order_by[i]) ? " COLLATE \"C\"" : "");
      }
    }
    // Whole-table reads stream through a cursor inside the open transaction; point reads
    // (by ID) and reads outside a transaction come back in one result.
    if (request.equals.empty() && conn_.InTransaction()) {
      const std::string cursor = fmt::format("envsync_c{}", ++cursors_);
      auto declared = conn_.Query("DECLARE " + cursor + " NO SCROLL CURSOR FOR " + sql, params);
      if (!declared.ok()) return declared.status().WithContext("table " + request.table);
      return std::unique_ptr<RowCursor>(
          new PgRowCursor(&conn_, cursor, request.columns.size(), PgResult(nullptr)));
    }
    auto rows = conn_.Query(sql, params);
    if (!rows.ok()) return rows.status().WithContext("table " + request.table);
    return std::unique_ptr<RowCursor>(
        new PgRowCursor(&conn_, "", request.columns.size(), std::move(*rows)));
  }

  bool ComputesDigests() const override { return true; }

  Result<std::vector<DigestBucket>> DigestBuckets(const DigestRequest& request, int bits,
                                                  int within_bits,
                                                  const std::vector<int64_t>* within) override {
    std::vector<DigestBucket> out;
    if (within != nullptr && within->empty()) return out;
    Params params;
    auto rows_sql = DigestRows(request, &params);
    if (!rows_sql.ok()) return rows_sql.status();
    // `OFFSET 0` keeps the rows' subquery whole: PostgreSQL would otherwise pull it up and sort
    // the table's whole rows (≈ 1.2 KB each) by bucket before hashing them; so it sorts the
    // (ID, digest) pairs. At 1M rows: 1.9 → 1.2 s for buckets of 32, 2.7 → 1.6 s for single rows.
    std::string sql;
    if (within == nullptr) {
      sql = fmt::format(
          "SELECT id >> {0} AS b, count(*), bit_xor(d) FROM ({1} OFFSET 0) x GROUP BY b ORDER BY b",
          bits, *rows_sql);
    } else {
      // Every ID the buckets can hold, looked up through the primary key (a range join per
      // bucket is planned as a scan per bucket).
      std::vector<int64_t> ids;
      const int64_t width = int64_t{1} << within_bits;
      for (int64_t bucket : *within) {
        for (int64_t i = 0; i < width; ++i) ids.push_back(bucket * width + i);
      }
      params.Add(IntegerArray(ids));
      sql = fmt::format(
          "SELECT id >> {0} AS b, count(*), bit_xor(d) FROM ({1} AND t.{2} = ANY(${3}::bigint[]) "
          "OFFSET 0) x GROUP BY b ORDER BY b",
          bits, *rows_sql, Quote(request.id), params.text.size());
    }
    auto rows = conn_.Query(sql, params);
    if (!rows.ok()) return rows.status().WithContext("digesting " + request.table);
    out.resize(static_cast<size_t>(rows->rows()));
    for (int i = 0; i < rows->rows(); ++i) {
      out[i].bucket = rows->Integer(i, 0);
      out[i].rows = rows->Integer(i, 1);
      out[i].digest = static_cast<uint64_t>(rows->Integer(i, 2));
    }
    return out;
  }

  uint64_t BytesRead() const override { return conn_.bytes_read(); }

  Result<std::vector<Value>> FindIds(
      const std::string& table, const std::string& id_column,
      const std::vector<std::pair<std::string, Value>>& equals) override {
    ENVSYNC_RETURN_IF_ERROR(LoadColumns());
    std::string sql = "SELECT " + Quote(id_column) + " FROM " + Quote(table) + " WHERE true";
    Params params;
    for (const auto& [column, value] : equals) sql += Equals(table, column, value, &params);
    auto rows = conn_.Query(sql, params);
    if (!rows.ok()) return rows.status().WithContext("looking up " + table);
    std::vector<Value> ids;
    for (int i = 0; i < PQntuples(rows->r); ++i) ids.push_back(ToValue(ViewOfField(rows->r, i, 0)));
    return ids;
  }

  Result<std::vector<std::string>> NotNullColumns(const std::string& table) override {
    ENVSYNC_RETURN_IF_ERROR(LoadColumns());
    std::vector<std::string> out;
    auto it = columns_.find(table);
    if (it == columns_.end()) return out;
    for (const ColumnInfo& c : it->second) {
      if (c.not_null) out.push_back(c.name);
    }
    return out;
  }

  Status BeginWrite() override {
    if (access_ != Access::kReadWrite) {
      return Status::Internal(conn_.what() + ": opened read-only, cannot write");
    }
    inserted_ids_.clear();
    // Row locks are taken as rows are written; lock_timeout bounds every wait for the platform.
    ENVSYNC_RETURN_IF_ERROR(conn_.Exec(fmt::format(
        "BEGIN; SET LOCAL lock_timeout = '{}ms'; SET CONSTRAINTS ALL DEFERRED", kLockTimeoutMs)));
    return Status::Ok();
  }

  Status Commit() override {
    // The platform's next insert must not collide with an ID this sync chose.
    for (const auto& [table, column] : inserted_ids_) {
      Params params;
      params.Add(Quote(table));
      params.Add(column);
      auto moved = conn_.Query(
          fmt::format("SELECT setval(s::regclass, GREATEST((SELECT max({1}) FROM {0}), 1)) FROM "
                      "pg_get_serial_sequence($1, $2) AS s WHERE s IS NOT NULL",
                      Quote(table), Quote(column)),
          params);
      if (!moved.ok()) {
        Rollback();
        return moved.status().WithContext("advancing the ID sequence of " + table);
      }
    }
    return conn_.Exec("COMMIT");
  }

  void Rollback() override { (void)conn_.Exec("ROLLBACK"); }

  Result<Value> Insert(const std::string& table, const std::string& id_column,
                       const std::vector<std::pair<std::string, Value>>& values) override {
    ENVSYNC_RETURN_IF_ERROR(LoadColumns());
    std::string columns;
    std::string marks;
    Params params;
    bool explicit_id = false;
    for (const auto& [column, value] : values) {
      params.Add(value);
      columns += (columns.empty() ? "" : ", ") + Quote(column);
      marks += fmt::format("{}${}{}", marks.empty() ? "" : ", ", params.text.size(),
                           CastFor(table, column));
      // Only an integer ID can be behind a sequence (a setting's ID is its key, text).
      if (column == id_column && std::holds_alternative<int64_t>(value)) explicit_id = true;
    }
    auto row = conn_.Query(fmt::format("INSERT INTO {} ({}) VALUES ({}) RETURNING {}", Quote(table),
                                       columns, marks, Quote(id_column)),
                           params);
    if (!row.ok()) return row.status().WithContext("inserting into " + table);
    if (explicit_id) inserted_ids_.insert({table, id_column});
    return ToValue(ViewOfField(row->r, 0, 0));
  }

  Status Update(const std::string& table, const std::string& id_column, const Value& id,
                const std::vector<std::pair<std::string, Value>>& values) override {
    if (values.empty()) return Status::Ok();
    ENVSYNC_RETURN_IF_ERROR(LoadColumns());
    std::string sets;
    Params params;
    for (const auto& [column, value] : values) {
      params.Add(value);
      sets += fmt::format("{}{} = ${}{}", sets.empty() ? "" : ", ", Quote(column),
                          params.text.size(), CastFor(table, column));
    }
    params.Add(id);
    auto done =
        conn_.Query(fmt::format("UPDATE {} SET {} WHERE {} = ${}{}", Quote(table), sets,
                                Quote(id_column), params.text.size(), CastFor(table, id_column)),
                    params);
    if (!done.ok()) return done.status().WithContext("updating " + RecordRef(table, id));
    return Status::Ok();
  }

  Status Delete(const std::string& table, const std::string& column, const Value& value) override {
    ENVSYNC_RETURN_IF_ERROR(LoadColumns());
    Params params;
    params.Add(value);
    auto done = conn_.Query(fmt::format("DELETE FROM {} WHERE {} = $1{}", Quote(table),
                                        Quote(column), CastFor(table, column)),
                            params);
    if (!done.ok()) {
      return done.status().WithContext(
          fmt::format("deleting from {} where {} = {}", table, column, RenderValue(value)));
    }
    return Status::Ok();
  }

  // Change tracking on PostgreSQL: statement-level triggers with transition tables append the
  // touched IDs to envsync_change_log, each with the writing transaction's ID (an xid8, kept
  // as bigint so that a BRIN index can serve it). A
  // position is the comparison's snapshot (pg_current_snapshot()); what changed since is what
  // that snapshot did not see: transactions commit out of ID order, so no counter would do.
  Result<std::optional<TrackingState>> ReadTracking() override {
    auto exists = conn_.Query("SELECT to_regclass('envsync_tracking') IS NOT NULL");
    if (!exists.ok()) return exists.status();
    if (exists->Text(0, 0) != "t") return std::optional<TrackingState>();
    auto head = conn_.Query(
        "SELECT epoch, enabled_at, (SELECT count(*) FROM envsync_change_log), "
        "pg_current_snapshot()::text FROM envsync_tracking");
    if (!head.ok()) return head.status().WithContext("reading change tracking");
    if (head->rows() != 1) {
      return Status::Unavailable(fmt::format(
          "{}: the change tracking table envsync_tracking is empty: run `envsync track enable "
          "{}` again",
          conn_.what(), name_));
    }
    TrackingState state;
    state.epoch = head->Text(0, 0);
    state.enabled_at = head->Text(0, 1);
    state.log_rows = head->Integer(0, 2);
    state.position = head->Text(0, 3);
    // A table is tracked while every one of its triggers is in place and enabled.
    auto triggers = conn_.Query(
        "SELECT t.root_table, bool_and(EXISTS (SELECT 1 FROM pg_trigger g WHERE "
        "g.tgname = t.trigger_name AND g.tgrelid = to_regclass(quote_ident(t.on_table)) AND "
        "g.tgenabled <> 'D')) FROM envsync_tracking_triggers t GROUP BY t.root_table "
        "ORDER BY t.root_table");
    if (!triggers.ok()) return triggers.status().WithContext("reading change tracking");
    for (int i = 0; i < triggers->rows(); ++i) {
      (triggers->Text(i, 1) == "t" ? state.tables : state.broken).push_back(triggers->Text(i, 0));
    }
    return std::optional<TrackingState>(std::move(state));
  }

  Result<std::optional<std::vector<int64_t>>> ChangedSince(const std::string& table,
                                                           const std::string& position) override {
    if (!IsSnapshotText(position)) return std::optional<std::vector<int64_t>>();
    // A snapshot older than what was pruned, or newer than now (a restored backup), cannot say
    // what changed since.
    auto usable = conn_.Query(
        "SELECT pg_snapshot_xmin($1::pg_snapshot) >= pruned_before AND "
        "pg_snapshot_xmax($1::pg_snapshot) <= pg_snapshot_xmax(pg_current_snapshot()) "
        "FROM envsync_tracking",
        [&] {
          Params p;
          p.Add(position);
          return p;
        }());
    if (!usable.ok()) return usable.status().WithContext("reading the change log");
    if (usable->rows() != 1 || usable->Text(0, 0) != "t") {
      return std::optional<std::vector<int64_t>>();
    }
    auto rows = conn_.Query(
        "SELECT DISTINCT row_id FROM envsync_change_log WHERE table_name = $1 AND "
        "xid >= pg_snapshot_xmin($2::pg_snapshot)::text::bigint AND NOT "
        "pg_visible_in_snapshot(xid::text::xid8, $2::pg_snapshot) ORDER BY row_id NULLS FIRST",
        [&] {
          Params p;
          p.Add(table);
          p.Add(position);
          return p;
        }());
    if (!rows.ok()) return rows.status().WithContext("reading the change log");
    std::vector<int64_t> ids;
    ids.reserve(static_cast<size_t>(rows->rows()));
    for (int i = 0; i < rows->rows(); ++i) {
      // NULL: the table was truncated; it is read whole.
      if (rows->IsNull(i, 0)) return std::optional<std::vector<int64_t>>();
      ids.push_back(rows->Integer(i, 0));
    }
    return std::optional<std::vector<int64_t>>(std::move(ids));
  }

  Result<std::vector<std::string>> EnableTracking(const std::vector<TrackedTable>& tables,
                                                  const std::string& epoch,
                                                  const std::string& now) override {
    if (access_ != Access::kReadWrite) {
      return Status::Internal(conn_.what() + ": opened read-only, cannot write");
    }
    ENVSYNC_RETURN_IF_ERROR(LoadColumns());
    std::vector<std::string> tracked;
    for (const TrackedTable& table : tables) {
      const ColumnInfo* id = Find(table.table, table.id);
      if (id == nullptr) {
        return Status::InvalidArgument(
            fmt::format("{}: table {} has no column {}", conn_.what(), table.table, table.id));
      }
      if (id->type == "bigint" || id->type == "integer" || id->type == "smallint") {
        tracked.push_back(table.table);
      }
    }
    // The cascading drops' notices are not for the user.
    ENVSYNC_RETURN_IF_ERROR(conn_.Exec("BEGIN; SET LOCAL client_min_messages = warning"));
    Status status = DropTracking();
    if (status.ok()) {
      status = conn_.Exec(
          "CREATE TABLE envsync_tracking (epoch text NOT NULL, enabled_at text NOT NULL, "
          "  pruned_before xid8 NOT NULL DEFAULT '0');"
          "CREATE TABLE envsync_tracking_triggers (root_table text NOT NULL, "
          "  on_table text NOT NULL, trigger_name text NOT NULL, function_name text NOT NULL);"
          "CREATE TABLE envsync_change_log (xid bigint NOT NULL DEFAULT "
          "  pg_current_xact_id()::text::bigint, "
          "  table_name text NOT NULL, row_id bigint);"
          // Entries arrive in about xid order: a BRIN index costs the writes next to nothing.
          "CREATE INDEX envsync_change_log_by_xid ON envsync_change_log USING brin (xid)");
    }
    if (status.ok()) {
      status = conn_
                   .Query("INSERT INTO envsync_tracking (epoch, enabled_at) VALUES ($1, $2)",
                          [&] {
                            Params p;
                            p.Add(epoch);
                            p.Add(now);
                            return p;
                          }())
                   .status();
    }
    for (const TrackedTable& table : tables) {
      if (!status.ok()) break;
      if (std::find(tracked.begin(), tracked.end(), table.table) == tracked.end()) continue;
      status = InstallTriggers(table.table, table.table, table.id);
      for (const TrackedTable::Child& child : table.children) {
        if (!status.ok()) break;
        status = InstallTriggers(table.table, child.table, child.parent);
      }
    }
    if (!status.ok()) {
      (void)conn_.Exec("ROLLBACK");
      return status.WithContext("enabling change tracking");
    }
    ENVSYNC_RETURN_IF_ERROR(conn_.Exec("COMMIT"));
    return tracked;
  }

  Status DisableTracking() override {
    if (access_ != Access::kReadWrite) {
      return Status::Internal(conn_.what() + ": opened read-only, cannot write");
    }
    // The cascading drops' notices are not for the user.
    ENVSYNC_RETURN_IF_ERROR(conn_.Exec("BEGIN; SET LOCAL client_min_messages = warning"));
    Status status = DropTracking();
    if (!status.ok()) {
      (void)conn_.Exec("ROLLBACK");
      return status.WithContext("disabling change tracking");
    }
    return conn_.Exec("COMMIT");
  }

  Result<int64_t> PruneTracking(const std::vector<std::string>& needed) override {
    if (needed.empty()) return int64_t{0};
    std::string list = "{";
    for (const std::string& position : needed) {
      if (!IsSnapshotText(position)) {
        return Status::InvalidArgument(conn_.what() + ": not a change log position: " + position);
      }
      if (list.size() > 1) list += ',';
      list += '"';
      list += position;
      list += '"';
    }
    list += '}';
    // An entry older than the oldest snapshot's xmin is visible in every one of them: read.
    auto pruned = conn_.Query(
        "WITH upto AS (SELECT min(pg_snapshot_xmin(s::pg_snapshot)) AS x FROM "
        "unnest($1::text[]) AS s), gone AS (DELETE FROM envsync_change_log WHERE xid < "
        "(SELECT x FROM upto)::text::bigint RETURNING 1), moved AS (UPDATE envsync_tracking SET "
        "pruned_before = greatest(pruned_before, (SELECT x FROM upto)) RETURNING 1) "
        "SELECT (SELECT count(*) FROM gone), (SELECT count(*) FROM moved)",
        [&] {
          Params p;
          p.Add(list);
          return p;
        }());
    if (!pruned.ok()) return pruned.status().WithContext("pruning the change log");
    return pruned->Integer(0, 0);
  }

 private:
  // "xmin:xmax:xip,…" as pg_current_snapshot() writes it.
  static bool IsSnapshotText(const std::string& text) {
    int colons = 0;
    for (char c : text) {
      if (c == ':') {
        ++colons;
      } else if (!(c >= '0' && c <= '9') && !(c == ',' && colons == 2)) {
        return false;
      }
    }
    return colons == 2 && text.front() != ':';
  }

  static std::string Literal(const std::string& text) {
    std::string out = "'";
    for (char c : text) out += c == '\'' ? std::string("''") : std::string(1, c);
    return out + "'";
  }

  // The triggers that log `root`'s record for each write to `table` (the root itself, or one of
  // its child tables, whose `column` names the root row): one statement-level trigger per
  // event, reading the statement's new or old rows, and a row-level one that logs the old
  // value when an UPDATE changes `column` itself (rare, and filtered by its WHEN in C).
  Status InstallTriggers(const std::string& root, const std::string& table,
                         const std::string& column) {
    const std::string c = Quote(column);
    const std::string log =
        "INSERT INTO envsync_change_log (table_name, row_id) SELECT " + Literal(root) + ", ";
    const struct {
      const char* suffix;
      std::string event;
      std::string level;
      std::string body;
    } kinds[] = {
        {"insert", "INSERT", "REFERENCING NEW TABLE AS envsync_rows FOR EACH STATEMENT",
         log + c + " FROM envsync_rows WHERE " + c + " IS NOT NULL;"},
        {"update", "UPDATE", "REFERENCING NEW TABLE AS envsync_rows FOR EACH STATEMENT",
         log + c + " FROM envsync_rows WHERE " + c + " IS NOT NULL;"},
        {"update_id", "UPDATE OF " + c,
         "FOR EACH ROW WHEN (OLD." + c + " IS DISTINCT FROM NEW." + c + ")",
         "INSERT INTO envsync_change_log (table_name, row_id) VALUES (" + Literal(root) + ", OLD." +
             c + ");"},
        {"delete", "DELETE", "REFERENCING OLD TABLE AS envsync_rows FOR EACH STATEMENT",
         log + c + " FROM envsync_rows WHERE " + c + " IS NOT NULL;"},
        // NULL: the whole table, read whole by the next comparison.
        {"truncate", "TRUNCATE", "FOR EACH STATEMENT",
         "INSERT INTO envsync_change_log (table_name, row_id) VALUES (" + Literal(root) +
             ", NULL);"},
    };
    for (const auto& kind : kinds) {
      std::string name = "envsync_track_" + table + "_" + kind.suffix;
      for (char& ch : name) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
      ENVSYNC_RETURN_IF_ERROR(conn_.Exec(fmt::format(
          "CREATE FUNCTION {0}() RETURNS trigger LANGUAGE plpgsql AS $envsync$ BEGIN {1} "
          "RETURN NULL; END $envsync$; "
          "CREATE TRIGGER {0} AFTER {2} ON {3} {4} EXECUTE FUNCTION {0}(); "
          "INSERT INTO envsync_tracking_triggers VALUES ({5}, {6}, {7}, {7})",
          Quote(name), kind.body, kind.event, Quote(table), kind.level, Literal(root),
          Literal(table), Literal(name))));
    }
    return Status::Ok();
  }

  // Drops every trigger, function and table of change tracking, inside the caller's
  // transaction.
  Status DropTracking() {
    auto functions = conn_.Query(
        // By the schema's name: current_schema()::regnamespace would fold a quoted mixed-case
        // name ("MySchema") to lower case and find no schema.
        "SELECT p.proname FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace "
        "WHERE n.nspname = current_schema() AND starts_with(p.proname, 'envsync_track_')");
    if (!functions.ok()) return functions.status();
    for (int i = 0; i < functions->rows(); ++i) {
      // CASCADE drops the function's triggers with it.
      ENVSYNC_RETURN_IF_ERROR(
          conn_.Exec("DROP FUNCTION IF EXISTS " + Quote(functions->Text(i, 0)) + "() CASCADE"));
    }
    return conn_.Exec(
        "DROP TABLE IF EXISTS envsync_change_log; DROP TABLE IF EXISTS "
        "envsync_tracking_triggers; DROP TABLE IF EXISTS envsync_tracking");
  }

  struct ColumnInfo {
    std::string name;
    std::string type;  // "bigint", "text" ... (LoadColumns)
    bool not_null = false;
  };

  // The columns of every table of the current schema, read once.
  Status LoadColumns() {
    if (!columns_.empty()) return Status::Ok();
    // What information_schema.columns says, read from the catalogs (2.7-2.9 ms on a new
    // connection against 7-14 ms through the view, the platform's schema): the columns the role
    // may use, a domain's column with its base type, NOT NULL the column's or its domain's. The
    // types the adapter tells apart (bigint, integer, smallint, text, character varying,
    // double precision) are named as data_type names them; an array or an extension's type is
    // named by format_type ("text[]", "citext") where the view says ARRAY or USER-DEFINED.
    auto rows = conn_.Query(
        "SELECT c.relname, a.attname, format_type(CASE WHEN t.typtype = 'd' THEN t.typbasetype "
        "ELSE a.atttypid END, NULL), a.attnotnull OR (t.typtype = 'd' AND t.typnotnull) "
        "FROM pg_catalog.pg_attribute a JOIN pg_catalog.pg_class c ON c.oid = a.attrelid "
        "JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
        "JOIN pg_catalog.pg_type t ON t.oid = a.atttypid "
        "WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'v', 'f', 'p') "
        "AND a.attnum > 0 AND NOT a.attisdropped AND (pg_has_role(c.relowner, 'USAGE') OR "
        "has_column_privilege(c.oid, a.attnum, 'SELECT, INSERT, UPDATE, REFERENCES')) "
        "ORDER BY c.relname, a.attnum");
    if (!rows.ok()) return rows.status().WithContext("reading the schema");
    for (int i = 0; i < PQntuples(rows->r); ++i) {
      columns_[PQgetvalue(rows->r, i, 0)].push_back(
          ColumnInfo{PQgetvalue(rows->r, i, 1), PQgetvalue(rows->r, i, 2),
                     std::string_view(PQgetvalue(rows->r, i, 3)) == "t"});
    }
    return Status::Ok();
  }

  const ColumnInfo* Find(const std::string& table, const std::string& column) const {
    auto it = columns_.find(table);
    if (it == columns_.end()) return nullptr;
    for (const ColumnInfo& c : it->second) {
      if (c.name == column) return &c;
    }
    return nullptr;
  }
  // `SELECT id, d FROM table t WHERE …`: each row's ID and digest, a 64-bit hash of its
  // compared columns XORed with those of its child rows. Ends in a WHERE clause, so more
  // conditions can follow.
  Result<std::string> DigestRows(const DigestRequest& request, Params* params) {
    ENVSYNC_RETURN_IF_ERROR(LoadColumns());
    const ColumnInfo* id = Find(request.table, request.id);
    if (id == nullptr ||
        (id->type != "bigint" && id->type != "integer" && id->type != "smallint")) {
      return Status::InvalidArgument(
          fmt::format("{}.{} is not an integer: no row digests", request.table, request.id));
    }
    // Each column hashed with its own seed (NULL as a seed-dependent constant), the hashes
    // XORed, and that mixed once more: a row's digest depends on every column and on which
    // column holds which value, and the XOR of a bucket's digests does not cancel out when two
    // rows swap a value. No text is built, so the server hashes at memory speed.
    auto row_digest = [this](const std::string& table, const std::string& alias,
                             const std::string& first, const std::vector<std::string>& columns) {
      std::vector<std::string> all = {first};
      all.insert(all.end(), columns.begin(), columns.end());
      std::string mixed;
      for (size_t k = 0; k < all.size(); ++k) {
        const ColumnInfo* c = Find(table, all[k]);
        const std::string type = c != nullptr ? c->type : "";
        const std::string column = alias + "." + Quote(all[k]);
        const int64_t seed = static_cast<int64_t>(k) + 1;
        const bool integer = type == "bigint" || type == "integer" || type == "smallint";
        const std::string hash = integer
                                     ? fmt::format("hashint8extended({}::bigint, {})", column, seed)
                                     : fmt::format("hashtextextended({}::text, {})", column, seed);
        mixed += fmt::format("{}coalesce({}, {})", k > 0 ? " # " : "", hash,
                             -7919 * seed);  // a NULL's value, distinct per column
      }
      return "hashint8extended(" + mixed + ", 0)";
    };
    std::string digest = row_digest(request.table, "t", request.id, request.columns);
    for (size_t i = 0; i < request.children.size(); ++i) {
      const DigestRequest::Child& child = request.children[i];
      const std::string alias = fmt::format("c{}", i);
      digest +=
          fmt::format(" # coalesce((SELECT bit_xor({}) FROM {} {} WHERE {}.{} = t.{}), 0)",
                      row_digest(child.table, alias, child.parent, child.columns),
                      Quote(child.table), alias, alias, Quote(child.parent), Quote(request.id));
    }
    std::string sql = fmt::format("SELECT t.{} AS id, {} AS d FROM {} t WHERE true",
                                  Quote(request.id), digest, Quote(request.table));
    if (request.filter) {
      params->Add(static_cast<int64_t>(request.filter->prefix.size()));
      params->Add(request.filter->prefix);
      sql +=
          fmt::format(" AND substr(t.{}, 1, ${}::int) = ${}::text", Quote(request.filter->column),
                      params->text.size() - 1, params->text.size());
    }
    return sql;
  }

  static std::string IntegerArray(const std::vector<int64_t>& values) {
    std::string out = "{";
    for (size_t i = 0; i < values.size(); ++i) {
      if (i > 0) out += ',';
      out += std::to_string(values[i]);
    }
    return out + "}";
  }

  bool IsText(const std::string& table, const std::string& column) const {
    const ColumnInfo* c = Find(table, column);
    return c != nullptr && (c->type == "text" || c->type == "character varying");
  }
  // ` AND column = $n` (which an index serves; IS NOT DISTINCT FROM would not), or
  // ` AND column IS NULL` for a NULL value.
  std::string Equals(const std::string& table, const std::string& column, const Value& value,
                     Params* params) const {
    if (IsNull(value)) return " AND " + Quote(column) + " IS NULL";
    params->Add(value);
    return fmt::format(" AND {} = ${}{}", Quote(column), params->text.size(),
                       CastFor(table, column));
  }

  // A parameter's type, so text parameters compare with any column type.
  std::string CastFor(const std::string& table, const std::string& column) const {
    const ColumnInfo* c = Find(table, column);
    if (c == nullptr) return "";
    if (c->type == "bigint") return "::bigint";
    if (c->type == "integer") return "::integer";
    if (c->type == "smallint") return "::smallint";
    if (c->type == "text") return "::text";
    if (c->type == "double precision") return "::double precision";
    return "";
  }

  static constexpr int kLockTimeoutMs = 5000;

  std::string name_;
  std::string location_;
  std::string uri_;
  AssetFolder assets_;
  Access access_;
  PgConnection conn_;
  std::map<std::string, std::vector<ColumnInfo>> columns_;
  std::set<std::pair<std::string, std::string>> inserted_ids_;
  int cursors_ = 0;
};

}  // namespace

bool IsPostgresUri(const std::string& database) {
  return database.rfind("postgresql://", 0) == 0 || database.rfind("postgres://", 0) == 0;
}

std::string RedactUri(const std::string& uri) {
  std::string out = uri;
  // scheme://user:password@host... -> scheme://user:***@host...
  const size_t scheme = out.find("://");
  if (scheme != std::string::npos) {
    const size_t at = out.find('@', scheme + 3);
    const size_t colon = out.find(':', scheme + 3);
    if (at != std::string::npos && colon != std::string::npos && colon < at) {
      out = out.substr(0, colon + 1) + "***" + out.substr(at);
    }
  }
  // A password given as a query parameter is hidden too.
  const size_t query = out.find("password=");
  if (query != std::string::npos) {
    const size_t end = out.find('&', query);
    out = out.substr(0, query + 9) + "***" + (end == std::string::npos ? "" : out.substr(end));
  }
  return out;
}

Result<std::unique_ptr<Environment>> OpenPostgresEnvironment(const EnvironmentConfig& config,
                                                             Access access) {
  std::error_code ec;
  if (!std::filesystem::is_directory(config.assets, ec)) {
    return Status::Unavailable(fmt::format("environment {}: assets folder '{}' does not exist",
                                           config.name, config.assets));
  }
  auto env = std::make_unique<PostgresEnvironment>(config, access);
  ENVSYNC_RETURN_IF_ERROR(env->Open());
  return std::unique_ptr<Environment>(std::move(env));
}

}  // namespace envsync::store
