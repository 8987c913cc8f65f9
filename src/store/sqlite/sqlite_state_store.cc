#include <fmt/format.h>

#include <cstring>
#include <nlohmann/json.hpp>

#include "envsync/store/json_codec.h"
#include "envsync/store/state_store.h"
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
};
constexpr int kMigrationCount = sizeof(kMigrations) / sizeof(kMigrations[0]);
static_assert(kMigrationCount == kStateSchemaVersion);

int64_t ToSigned(uint64_t v) {
  int64_t s;
  std::memcpy(&s, &v, sizeof(s));
  return s;
}
uint64_t ToUnsigned(int64_t v) {
  uint64_t u;
  std::memcpy(&u, &v, sizeof(u));
  return u;
}

void ReadBase(const SqliteStatement& statement, SyncBase* base) {
  base->prod_id = statement.Column(0);
  base->test_id = statement.Column(1);
  base->hash = ToUnsigned(std::get<int64_t>(statement.Column(2)));
  int size = 0;
  const void* data = statement.ColumnBlob(3, &size);
  base->field_hashes.resize(static_cast<size_t>(size) / sizeof(uint64_t));
  if (size > 0) std::memcpy(base->field_hashes.data(), data, base->field_hashes.size() * 8);
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

class SqliteStateStore : public StateStore {
 public:
  explicit SqliteStateStore(std::string path) : path_(std::move(path)) {}

  Status Open() {
    const std::string what = fmt::format("state store ({})", path_);
    ENVSYNC_RETURN_IF_ERROR(reader_.Open(path_, /*read_only=*/false, what));
    ENVSYNC_RETURN_IF_ERROR(reader_.Exec("PRAGMA journal_mode = WAL; PRAGMA foreign_keys = ON"));
    ENVSYNC_RETURN_IF_ERROR(Migrate());
    ENVSYNC_RETURN_IF_ERROR(writer_.Open(path_, /*read_only=*/false, what));
    return writer_.Exec(
        "PRAGMA foreign_keys = ON; PRAGMA synchronous = NORMAL; PRAGMA cache_size = -65536");
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

  Result<std::unique_ptr<BaseCursor>> ScanDirectBase(const std::string& table) override {
    auto statement = reader_.Prepare(
        "SELECT prod_id, test_id, hash, field_hashes FROM sync_base "
        "WHERE table_name = ?1 AND prod_id = test_id ORDER BY prod_id");
    if (!statement.ok()) return statement.status();
    statement->Bind(1, table);
    return std::unique_ptr<BaseCursor>(new SqliteBaseCursor(std::move(*statement)));
  }

  Result<std::optional<SyncBase>> FindBase(const std::string& table, const Value& prod_id,
                                           const Value& test_id) override {
    auto statement = reader_.Prepare(
        "SELECT prod_id, test_id, hash, field_hashes FROM sync_base "
        "WHERE table_name = ?1 AND prod_id = ?2 AND test_id = ?3");
    if (!statement.ok()) return statement.status();
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

  Status BeginBaseUpdate() override {
    ENVSYNC_RETURN_IF_ERROR(writer_.Exec("BEGIN IMMEDIATE"));
    auto put = writer_.Prepare("INSERT OR REPLACE INTO sync_base VALUES (?1, ?2, ?3, ?4, ?5)");
    if (!put.ok()) {
      AbortBaseUpdate();
      return put.status();
    }
    put_ = std::move(*put);
    return Status::Ok();
  }

  Status PutBase(const std::string& table, const SyncBase& base) override {
    put_.Bind(1, table);
    put_.Bind(2, base.prod_id);
    put_.Bind(3, base.test_id);
    put_.Bind(4, ToSigned(base.hash));
    put_.BindBlob(5, base.field_hashes.data(), base.field_hashes.size() * sizeof(uint64_t));
    Status status = put_.Run();
    put_.Reset();
    return status;
  }

  Status CommitBaseUpdate() override {
    put_ = SqliteStatement();
    return writer_.Exec("COMMIT");
  }

  void AbortBaseUpdate() override {
    put_ = SqliteStatement();
    (void)writer_.Exec("ROLLBACK");
  }

  Status SaveComparison(const Comparison& c) override {
    ENVSYNC_RETURN_IF_ERROR(writer_.Exec("BEGIN IMMEDIATE"));
    Status status = InsertComparison(c);
    if (!status.ok()) {
      (void)writer_.Exec("ROLLBACK");
      return status;
    }
    return writer_.Exec("COMMIT");
  }

  Result<Comparison> LoadComparison(const std::string& id) override {
    auto head = reader_.Prepare(
        "SELECT id, created_at, from_env, to_env, mode, modules, folders, forced, warnings, "
        "records_compared FROM comparisons WHERE id = ?1");
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
    try {
      c.modules =
          json::parse(std::get<std::string>(head->Column(5))).get<std::vector<std::string>>();
      c.folders =
          json::parse(std::get<std::string>(head->Column(6))).get<std::vector<std::string>>();
      for (const json& f : json::parse(std::get<std::string>(head->Column(7)))) {
        c.forced.push_back(ForcedModule{f.at("module").get<std::string>(),
                                        f.at("required_by").get<std::string>(),
                                        f.at("folders").get<std::vector<std::string>>()});
      }
      for (const json& w : json::parse(std::get<std::string>(head->Column(8)))) {
        c.warnings.push_back(Warning{w.at("environment").get<std::string>(),
                                     w.at("record").get<std::string>(),
                                     w.at("message").get<std::string>()});
      }
    } catch (const std::exception& e) {
      return Status::Unavailable(
          fmt::format("{}: comparison '{}' is malformed: {}", reader_.what(), id, e.what()));
    }
    c.records_compared = std::get<int64_t>(head->Column(9));
    auto rows = reader_.Prepare("SELECT body FROM changes WHERE comparison_id = ?1 ORDER BY seq");
    if (!rows.ok()) return rows.status();
    rows->Bind(1, id);
    while (rows->Step(&status)) {
      auto change = ChangeFromJson(std::get<std::string>(rows->Column(0)));
      if (!change.ok()) return change.status().WithContext(reader_.what());
      c.changes.push_back(std::move(*change));
    }
    if (!status.ok()) return status.WithContext(reader_.what());
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
  Status Migrate() {
    auto version = reader_.Prepare("PRAGMA user_version");
    if (!version.ok()) return version.status();
    Status status;
    if (!version->Step(&status))
      return status.ok() ? reader_.Error("reading user_version") : status;
    version_ = static_cast<int>(std::get<int64_t>(version->Column(0)));
    version = Result<SqliteStatement>(SqliteStatement());
    if (version_ > kStateSchemaVersion) {
      return Status::InvalidArgument(
          fmt::format("state store '{}' has schema version {}, newer than this envsync knows ({}): "
                      "use a newer envsync",
                      path_, version_, kStateSchemaVersion));
    }
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

  Status InsertComparison(const Comparison& c) {
    const TabCounts counts = c.Counts();
    json forced = json::array();
    for (const ForcedModule& f : c.forced) {
      forced.push_back(
          {{"module", f.module}, {"required_by", f.required_by}, {"folders", f.folders}});
    }
    json warnings = json::array();
    for (const Warning& w : c.warnings) {
      warnings.push_back(
          {{"environment", w.environment}, {"record", w.record}, {"message", w.message}});
    }
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
                            forced.dump(),
                            warnings.dump(),
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
    auto row = writer_.Prepare("INSERT INTO changes VALUES (?1, ?2, ?3, ?4, ?5)");
    if (!row.ok()) return row.status();
    int64_t seq = 0;
    for (const Change& change : c.changes) {
      row->Bind(1, c.id);
      row->Bind(2, seq++);
      row->Bind(3, std::string(TabName(change.tab)));
      row->Bind(4, change.Ref());
      row->Bind(5, ChangeToJson(change));
      ENVSYNC_RETURN_IF_ERROR(row->Run());
      row->Reset();
    }
    return Status::Ok();
  }

  std::string path_;
  SqliteDb reader_;
  SqliteDb writer_;
  SqliteStatement put_;
  int version_ = 0;
};

}  // namespace

Result<std::unique_ptr<StateStore>> OpenStateStore(const std::string& location) {
  if (location.rfind("postgres", 0) == 0) {
    return Status::InvalidArgument(
        fmt::format("state '{}': a PostgreSQL state store is not supported yet", location));
  }
  auto store = std::make_unique<SqliteStateStore>(location);
  ENVSYNC_RETURN_IF_ERROR(store->Open());
  return std::unique_ptr<StateStore>(std::move(store));
}

}  // namespace envsync::store
