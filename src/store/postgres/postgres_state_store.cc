// envsync's state store in a PostgreSQL database: the tables and the behaviour of the SQLite store
// (sqlite_state_store.cc), method by method, so a server can keep its state on the platform's
// database server and several `envsync serve` processes can share it.
#include "store/postgres/postgres_state_store.h"

#include <fmt/format.h>

#include <bit>
#include <cctype>
#include <charconv>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <nlohmann/json.hpp>
#include <string_view>
#include <unordered_map>
#include <utility>

#include "envsync/store/json_codec.h"
#include "envsync/store/state_store.h"
#include "store/postgres/pg_connection.h"
#include "store/postgres/postgres_environment.h"

namespace envsync::store {
namespace {

using nlohmann::json;

// The PostgreSQL store starts at the SQLite store's version 6: the first entry creates that
// schema in an empty database; each later entry migrates from version kFirstVersion + i - 1 to
// kFirstVersion + i. Never edit one that has shipped.
//
// How values keep SQLite's types and order:
//  - Text that is compared or sorted is COLLATE "C": byte order, as SQLite's BINARY collation,
//    and lower() changes only ASCII letters, as SQLite's.
//  - A base's IDs (sync_base) are each three columns, `<side>_kind` (0 NULL, 1 integer, 2 real,
//    3 text), `<side>_int` (the integer, else 0) and `<side>_text` (the text or the real's
//    shortest round-trip decimal, else ''), so ORDER BY kind, int, text is SQLite's order: NULL
//    before numbers before text, text by bytes. (Reals sort after integers here; no platform
//    table is keyed by a real.)
//  - A sync record's IDs are one tagged text each, never sorted: NULL, 'i<integer>',
//    'r<real>' or 't<text>'.
//  - Hashes (uint64) are bigint holding the same bits; field hashes are bytea, 8 bytes per hash,
//    least significant first.
//  - SQLite's rowid order (comparisons and syncs listed by creation time, then insertion) is an
//    identity column `seq`.
constexpr int kFirstVersion = 6;
const char* const kMigrations[] = {
    R"sql(
CREATE TABLE IF NOT EXISTS envsync_schema (version integer NOT NULL);
CREATE TABLE identity_map (
  table_name text COLLATE "C" NOT NULL,
  prod_id    bigint NOT NULL,
  test_id    bigint NOT NULL,
  PRIMARY KEY (table_name, prod_id)
);
CREATE UNIQUE INDEX identity_map_by_test ON identity_map (table_name, test_id);
CREATE TABLE sync_base (
  table_name   text COLLATE "C" NOT NULL,
  prod_kind    smallint NOT NULL,
  prod_int     bigint NOT NULL,
  prod_text    text COLLATE "C" NOT NULL,
  test_kind    smallint NOT NULL,
  test_int     bigint NOT NULL,
  test_text    text COLLATE "C" NOT NULL,
  hash         bigint NOT NULL,
  field_hashes bytea NOT NULL,
  PRIMARY KEY (table_name, prod_kind, prod_int, prod_text, test_kind, test_int, test_text)
);
CREATE TABLE comparisons (
  id               text COLLATE "C" PRIMARY KEY,
  seq              bigint GENERATED ALWAYS AS IDENTITY,
  created_at       text COLLATE "C" NOT NULL,
  from_env         text NOT NULL,
  to_env           text NOT NULL,
  mode             text NOT NULL,
  modules          text NOT NULL,
  folders          text NOT NULL,
  forced           text NOT NULL,
  warnings         text NOT NULL,
  records_compared bigint NOT NULL,
  conflicts        bigint NOT NULL,
  new_records      bigint NOT NULL,
  modified         bigint NOT NULL,
  deleted          bigint NOT NULL
);
CREATE INDEX comparisons_by_time ON comparisons (created_at, seq);
CREATE TABLE changes (
  comparison_id text COLLATE "C" NOT NULL REFERENCES comparisons (id) ON DELETE CASCADE,
  seq           bigint NOT NULL,
  tab           text COLLATE "C" NOT NULL,
  record        text COLLATE "C" NOT NULL,
  body          text NOT NULL,
  record_key    text COLLATE "C" NOT NULL DEFAULT '',
  module        text COLLATE "C" NOT NULL DEFAULT '',
  PRIMARY KEY (comparison_id, seq)
);
CREATE INDEX changes_by_tab ON changes (comparison_id, tab, seq);
CREATE TABLE syncs (
  id            text COLLATE "C" PRIMARY KEY,
  seq           bigint GENERATED ALWAYS AS IDENTITY,
  comparison_id text COLLATE "C" NOT NULL,
  created_at    text COLLATE "C" NOT NULL,
  finished_at   text NOT NULL,
  started_by    text NOT NULL,
  from_env      text NOT NULL,
  to_env        text NOT NULL,
  test_import   boolean NOT NULL,
  status        text NOT NULL,
  applied       text NOT NULL,
  error         text NOT NULL
);
CREATE INDEX syncs_by_comparison ON syncs (comparison_id);
CREATE TABLE sync_records (
  sync_id     text COLLATE "C" NOT NULL REFERENCES syncs (id) ON DELETE CASCADE,
  seq         bigint NOT NULL,
  table_name  text NOT NULL,
  action      text NOT NULL,
  prod_id     text,
  test_id     text,
  target_id   text,
  pre_image   text NOT NULL,
  after_image text NOT NULL,
  after_hash  bigint,
  base_hash   bigint,
  base_fields bytea,
  PRIMARY KEY (sync_id, seq)
);
CREATE TABLE sync_files (
  sync_id     text COLLATE "C" NOT NULL REFERENCES syncs (id) ON DELETE CASCADE,
  seq         bigint NOT NULL,
  final_path  text NOT NULL,
  staged_path text NOT NULL,
  trash_path  text NOT NULL,
  PRIMARY KEY (sync_id, seq)
);
CREATE TABLE jobs (
  id          text COLLATE "C" PRIMARY KEY,
  kind        text COLLATE "C" NOT NULL,
  state       text COLLATE "C" NOT NULL,
  created_at  text COLLATE "C" NOT NULL,
  run_at      text COLLATE "C" NOT NULL,
  started_at  text NOT NULL,
  finished_at text NOT NULL,
  started_by  text NOT NULL,
  request     text NOT NULL,
  result      text NOT NULL,
  error       text NOT NULL,
  runner      text NOT NULL DEFAULT ''
);
CREATE INDEX jobs_by_state ON jobs (state, run_at);
CREATE INDEX jobs_by_age ON jobs (created_at, id);
CREATE TABLE messages (
  id         bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
  "user"     text COLLATE "C" NOT NULL,
  created_at text NOT NULL,
  title      text NOT NULL,
  body       text NOT NULL,
  job_id     text NOT NULL,
  read       boolean NOT NULL DEFAULT false
);
CREATE INDEX messages_by_user ON messages ("user", id);
CREATE TABLE users (
  email         text COLLATE "C" PRIMARY KEY,
  role          text NOT NULL,
  password_hash text NOT NULL,
  time_zone     text NOT NULL,
  created_at    text NOT NULL
);
CREATE TABLE sessions (
  token_hash text COLLATE "C" PRIMARY KEY,
  email      text COLLATE "C" NOT NULL REFERENCES users (email) ON DELETE CASCADE,
  csrf_token text NOT NULL,
  created_at text NOT NULL,
  expires_at text COLLATE "C" NOT NULL
);
CREATE INDEX sessions_by_email ON sessions (email);
CREATE TABLE audit (
  id     bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
  "at"   text NOT NULL,
  "user" text NOT NULL,
  action text NOT NULL,
  target text NOT NULL,
  detail text NOT NULL
);
CREATE TABLE selections (
  comparison_id text COLLATE "C" PRIMARY KEY REFERENCES comparisons (id) ON DELETE CASCADE,
  body          text NOT NULL
);
)sql",
    // A base remembers the digest each side's server computed of the record.
    R"sql(
ALTER TABLE sync_base ADD COLUMN prod_digest bigint;
ALTER TABLE sync_base ADD COLUMN test_digest bigint;
)sql",
    // Change tracking: per table, where both environments' change logs stood at the last
    // comparison, and the IDs that were not equal then (bytea, 8 bytes each).
    R"sql(
CREATE TABLE tracking_marks (
  table_name    text COLLATE "C" PRIMARY KEY,
  prod_epoch    text NOT NULL,
  prod_position text NOT NULL,
  test_epoch    text NOT NULL,
  test_position text NOT NULL,
  mix           bigint NOT NULL,
  unequal_prod  bytea NOT NULL,
  unequal_test  bytea NOT NULL
);
)sql",
    // A sync names the job that ran it, so settling after a crash finds it without trusting the
    // clock; a selection looks up the records it names by index.
    R"sql(
ALTER TABLE syncs ADD COLUMN job_id text COLLATE "C" NOT NULL DEFAULT '';
CREATE INDEX changes_by_record ON changes (comparison_id, record);
)sql",
    // A stored change's field may name the side its base repeats (`base_as`,
    // store::ChangeToStoredJson), which an envsync of version 9 would read as a base of NULL;
    // the version keeps such an envsync from opening this store.
    R"sql(
COMMENT ON COLUMN changes.body IS 'a change as JSON; a field''s base_as names the side its base repeats';
)sql",
    // Nothing here: version 11 is the SQLite store's packs of the bases' digests
    // (store/sqlite/base_digest_packs.h); the versions of the two stores go together.
    R"sql(
COMMENT ON TABLE sync_base IS 'the last common state of each pair of records';
)sql",
    // A sync record's pre-image may hold only the columns the update wrote and a digest of the
    // whole record (sync::ColumnImageText), which an envsync of version 11 would compare as a
    // whole image after a crash; the version keeps such an envsync from opening this store.
    R"sql(
COMMENT ON COLUMN sync_records.pre_image IS 'the record before the sync as JSON: whole, or an update''s written columns with the whole record''s digest';
)sql",
    // A stored change's field may write its target as an edit of its source (`target_edit`,
    // store::ChangeToStoredJson), which an envsync of version 12 would read as a target of NULL;
    // the version keeps such an envsync from opening this store.
    R"sql(
COMMENT ON COLUMN changes.body IS 'a change as JSON; a field''s base_as names the side its base repeats, its target_edit the target as an edit of its source';
)sql",
    // Nothing here: version 14 is the SQLite store's comparisons stored in several commits
    // (comparisons_being_stored); this store keeps one transaction a comparison, and the
    // versions of the two stores go together.
    R"sql(
COMMENT ON TABLE changes IS 'the changes of each comparison, stored with its header in one transaction';
)sql",
    // A comparison from the change logs takes the base of a pair only one side wrote since the
    // mark from the other side's record; an undo by an envsync of version 14 did not add its
    // pairs to the marks first (sync::FinishUndo), so the marks are dropped (each tracked table
    // is read whole once) and the version keeps such an envsync from opening this store.
    R"sql(
DELETE FROM tracking_marks;
COMMENT ON TABLE tracking_marks IS 'per table, the change logs'' positions at the last comparison and the pairs unequal then (or whose base an undo put back since)';
)sql",
};
constexpr int kMigrationCount = sizeof(kMigrations) / sizeof(kMigrations[0]);
static_assert(kFirstVersion + kMigrationCount - 1 == kStateSchemaVersion);

// Opening stores takes this transaction-level advisory lock (a class of its own in the two-key
// space the work lock also uses), so two servers opening a fresh database do not both create
// the tables.
constexpr int kSchemaLockClass = 1701737074;

// Rows per multi-row INSERT: few round trips, and well under libpq's 65535 parameters.
constexpr size_t kInsertBatch = 500;
// Rows per FETCH of a base scan.
constexpr int kFetchBatch = 10000;

Params Bind(std::initializer_list<Value> values) {
  Params params;
  for (const Value& v : values) params.Add(v);
  return params;
}

Value Bool(bool b) { return std::string(b ? "true" : "false"); }

// A bytea literal (hex format) of `hashes`, 8 bytes each, least significant first.
std::string ToBytea(const std::vector<uint64_t>& hashes) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out = "\\x";
  out.reserve(2 + hashes.size() * 16);
  for (uint64_t h : hashes) {
    for (int i = 0; i < 8; ++i) {
      const unsigned byte = static_cast<unsigned>(h >> (8 * i)) & 0xffu;
      out += kHex[byte >> 4];
      out += kHex[byte & 0xfu];
    }
  }
  return out;
}

int HexDigit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return 0;
}

// The hashes of a bytea in hex output format (`\x0102…`).
std::vector<uint64_t> FromBytea(const std::string& text) {
  std::vector<uint64_t> out;
  if (text.size() < 2) return out;
  const size_t bytes = (text.size() - 2) / 2;
  out.resize(bytes / 8);
  for (size_t i = 0; i < out.size() * 8; ++i) {
    const uint64_t byte =
        static_cast<uint64_t>(HexDigit(text[2 + 2 * i]) * 16 + HexDigit(text[3 + 2 * i]));
    out[i / 8] |= byte << (8 * (i % 8));
  }
  return out;
}

// Reals as text both ways without the C locale's say (fmt and from_chars ignore it).
std::string RealText(double d) { return fmt::format("{}", d); }
double ParseReal(std::string_view text) {
  double d = 0;
  std::from_chars(text.data(), text.data() + text.size(), d);
  return d;
}

// A base ID as its three sync_base columns (see the schema).
void AddId(Params* params, const Value& id) {
  if (const auto* i = std::get_if<int64_t>(&id)) {
    params->Add(int64_t{1});
    params->Add(*i);
    params->Add(std::string());
  } else if (const auto* d = std::get_if<double>(&id)) {
    params->Add(int64_t{2});
    params->Add(int64_t{0});
    params->Add(RealText(*d));
  } else if (const auto* s = std::get_if<std::string>(&id)) {
    params->Add(int64_t{3});
    params->Add(int64_t{0});
    params->Add(*s);
  } else {
    params->Add(int64_t{0});
    params->Add(int64_t{0});
    params->Add(std::string());
  }
}

// The base ID in columns `column` (kind), `column + 1` (integer) and `column + 2` (text).
Value ReadId(const PgResult& rows, int row, int column) {
  switch (rows.Integer(row, column)) {
    case 1:
      return rows.Integer(row, column + 1);
    case 2:
      return ParseReal(rows.Text(row, column + 2));
    case 3:
      return rows.Text(row, column + 2);
    default:
      return Value();
  }
}

// A sync record's ID as its tagged text (see the schema).
Value TaggedId(const Value& id) {
  if (const auto* i = std::get_if<int64_t>(&id)) return fmt::format("i{}", *i);
  if (const auto* d = std::get_if<double>(&id)) return fmt::format("r{}", RealText(*d));
  if (const auto* s = std::get_if<std::string>(&id)) return "t" + *s;
  return Value();
}

Value ReadTaggedId(const PgResult& rows, int row, int column) {
  if (rows.IsNull(row, column)) return Value();
  const std::string text = rows.Text(row, column);
  if (text.empty()) return Value();
  switch (text[0]) {
    case 'i':
      return static_cast<int64_t>(std::strtoll(text.c_str() + 1, nullptr, 10));
    case 'r':
      return ParseReal(std::string_view(text).substr(1));
    default:
      return text.substr(1);
  }
}

// A key that tells base pairs apart, for folding repeated puts of one pair into one row.
std::string PairKey(const std::string& table, const SyncBase& base) {
  const Value prod = TaggedId(base.prod_id);
  const Value test = TaggedId(base.test_id);
  const auto part = [](const Value& v) {
    const std::string* s = std::get_if<std::string>(&v);
    return s == nullptr ? std::string("0:") : fmt::format("{}:{}", s->size() + 1, *s);
  };
  return fmt::format("{}:{}{}{}", table.size(), table, part(prod), part(test));
}

constexpr const char* kBaseColumns =
    "prod_kind, prod_int, prod_text, test_kind, test_int, test_text, hash, field_hashes, "
    "prod_digest, test_digest";

void ReadBase(const PgResult& rows, int row, SyncBase* base) {
  base->prod_id = ReadId(rows, row, 0);
  base->test_id = ReadId(rows, row, 3);
  base->hash = std::bit_cast<uint64_t>(rows.Integer(row, 6));
  base->field_hashes = FromBytea(rows.Text(row, 7));
  base->prod_digest.reset();
  base->test_digest.reset();
  if (!rows.IsNull(row, 8)) base->prod_digest = std::bit_cast<uint64_t>(rows.Integer(row, 8));
  if (!rows.IsNull(row, 9)) base->test_digest = std::bit_cast<uint64_t>(rows.Integer(row, 9));
}

// IDs as the bytea of their bits (see ToBytea), and back.
std::string IdsToBytea(const std::vector<int64_t>& ids) {
  std::vector<uint64_t> bits(ids.size());
  for (size_t i = 0; i < ids.size(); ++i) bits[i] = std::bit_cast<uint64_t>(ids[i]);
  return ToBytea(bits);
}
std::vector<int64_t> IdsFromBytea(const std::string& text) {
  const std::vector<uint64_t> bits = FromBytea(text);
  std::vector<int64_t> ids(bits.size());
  for (size_t i = 0; i < bits.size(); ++i) ids[i] = std::bit_cast<int64_t>(bits[i]);
  return ids;
}

constexpr const char* kMarkColumns =
    "table_name, prod_epoch, prod_position, test_epoch, test_position, mix, unequal_prod, "
    "unequal_test";

TrackingMark ReadMark(const PgResult& rows, int row) {
  TrackingMark mark;
  mark.table = rows.Text(row, 0);
  mark.prod_epoch = rows.Text(row, 1);
  mark.prod_position = rows.Text(row, 2);
  mark.test_epoch = rows.Text(row, 3);
  mark.test_position = rows.Text(row, 4);
  mark.mix = std::bit_cast<uint64_t>(rows.Integer(row, 5));
  mark.unequal_prod = IdsFromBytea(rows.Text(row, 6));
  mark.unequal_test = IdsFromBytea(rows.Text(row, 7));
  return mark;
}

// Base entries already read, handed out as a cursor.
class ListBaseCursor : public BaseCursor {
 public:
  explicit ListBaseCursor(std::vector<SyncBase> bases) : bases_(std::move(bases)) {}
  bool Next(SyncBase* base) override {
    if (next_ >= bases_.size()) return false;
    *base = std::move(bases_[next_++]);
    return true;
  }
  Status status() const override { return Status::Ok(); }

 private:
  std::vector<SyncBase> bases_;
  size_t next_ = 0;
};

// "($1, $2), ($3, $4)" for `rows` rows of `width` parameters.
std::string Placeholders(size_t rows, int width) {
  std::string out;
  int n = 0;
  for (size_t r = 0; r < rows; ++r) {
    out += r == 0 ? "(" : ", (";
    for (int c = 0; c < width; ++c) out += fmt::format("{}${}", c == 0 ? "" : ", ", ++n);
    out += ")";
  }
  return out;
}

// Inserts `count` rows `kInsertBatch` at a time: `head` is "INSERT INTO t (columns) VALUES",
// `tail` what follows the rows, and `add_row(i, params)` adds row i's `width` parameters.
Status InsertBatched(PgConnection& conn, const std::string& head, const std::string& tail,
                     int width, size_t count, const std::function<void(size_t, Params*)>& add_row) {
  std::string full_sql;
  for (size_t start = 0; start < count; start += kInsertBatch) {
    const size_t rows = std::min(kInsertBatch, count - start);
    std::string partial_sql;
    if (rows == kInsertBatch && full_sql.empty()) {
      full_sql = head + " " + Placeholders(rows, width) + " " + tail;
    } else if (rows != kInsertBatch) {
      partial_sql = head + " " + Placeholders(rows, width) + " " + tail;
    }
    Params params;
    params.text.reserve(rows * static_cast<size_t>(width));
    params.null.reserve(rows * static_cast<size_t>(width));
    for (size_t i = start; i < start + rows; ++i) add_row(i, &params);
    auto result = conn.Query(rows == kInsertBatch ? full_sql : partial_sql, params);
    if (!result.ok()) return result.status();
  }
  return Status::Ok();
}

int64_t AffectedRows(const PgResult& result) {
  return std::strtoll(PQcmdTuples(result.r), nullptr, 10);
}

// The reading connection and the cursors open on it: they share one transaction, begun by the
// first cursor and ended by the last.
struct Reader {
  PgConnection conn;
  int open_cursors = 0;
  int64_t cursors_made = 0;
};

// Streams a base scan from a server-side cursor, kFetchBatch rows per round trip. The store
// must outlive it.
class PgBaseCursor : public BaseCursor {
 public:
  PgBaseCursor(Reader* reader, std::string name) : reader_(reader), name_(std::move(name)) {}
  PgBaseCursor(const PgBaseCursor&) = delete;
  PgBaseCursor& operator=(const PgBaseCursor&) = delete;
  ~PgBaseCursor() override {
    (void)reader_->conn.Exec("CLOSE " + name_);
    // Only reads ran in the transaction: ending it either way is the same.
    if (--reader_->open_cursors == 0) (void)reader_->conn.Exec("ROLLBACK");
  }

  bool Next(SyncBase* base) override {
    if (next_row_ >= batch_.rows()) {
      if (done_) return false;
      auto fetched = reader_->conn.Query(fmt::format("FETCH {} FROM {}", kFetchBatch, name_));
      if (!fetched.ok()) {
        status_ = fetched.status();
        done_ = true;
        return false;
      }
      batch_ = std::move(*fetched);
      next_row_ = 0;
      if (batch_.rows() < kFetchBatch) done_ = true;
      if (batch_.rows() == 0) return false;
    }
    ReadBase(batch_, next_row_++, base);
    return true;
  }
  Status status() const override { return status_; }

 private:
  Reader* reader_;
  std::string name_;
  PgResult batch_{nullptr};
  int next_row_ = 0;
  bool done_ = false;
  Status status_;
};

class PostgresStateStore : public StateStore {
 public:
  explicit PostgresStateStore(std::string uri) : uri_(std::move(uri)), location_(RedactUri(uri_)) {}

  Status Open() {
    const std::string what = fmt::format("state store ({})", location_);
    ENVSYNC_RETURN_IF_ERROR(writer_.Open(uri_, what));
    ENVSYNC_RETURN_IF_ERROR(writer_.Exec("SET bytea_output = 'hex'"));
    ENVSYNC_RETURN_IF_ERROR(Migrate());
    ENVSYNC_RETURN_IF_ERROR(reader_.conn.Open(uri_, what));
    return reader_.conn.Exec("SET bytea_output = 'hex'");
  }

  int SchemaVersion() const override { return version_; }

  Result<IdentityMap> LoadIdentityMap() override {
    auto rows = Read("SELECT table_name, prod_id, test_id FROM identity_map");
    if (!rows.ok()) return rows.status();
    IdentityMap map;
    for (int i = 0; i < rows->rows(); ++i) {
      map.Add(rows->Text(i, 0), rows->Integer(i, 1), rows->Integer(i, 2));
    }
    return map;
  }

  Status AddIdentity(const std::string& table, int64_t prod_id, int64_t test_id) override {
    return InWriteTransaction([&]() -> Status {
      auto removed = writer_.Query(
          "DELETE FROM identity_map WHERE table_name = $1 AND (prod_id = $2 OR test_id = $3)",
          Bind({table, prod_id, test_id}));
      if (!removed.ok()) return removed.status();
      return writer_
          .Query("INSERT INTO identity_map VALUES ($1, $2, $3)", Bind({table, prod_id, test_id}))
          .status();
    });
  }

  Status RemoveIdentity(const std::string& table, int64_t prod_id, int64_t test_id) override {
    return writer_
        .Query("DELETE FROM identity_map WHERE table_name = $1 AND prod_id = $2 AND test_id = $3",
               Bind({table, prod_id, test_id}))
        .status();
  }

  Result<std::unique_ptr<BaseCursor>> ScanDirectBase(const std::string& table) override {
    // A cursor lives only inside a transaction: the first open cursor begins one on the reader.
    if (reader_.open_cursors == 0) ENVSYNC_RETURN_IF_ERROR(reader_.conn.Exec("BEGIN"));
    ++reader_.open_cursors;
    const std::string name = fmt::format("envsync_base_scan_{}", ++reader_.cursors_made);
    // The cursor takes its place in the count first, so its destructor ends the transaction
    // when DECLARE fails.
    auto cursor = std::make_unique<PgBaseCursor>(&reader_, name);
    ENVSYNC_RETURN_IF_ERROR(
        reader_.conn
            .Query(fmt::format("DECLARE {} NO SCROLL CURSOR FOR SELECT {} FROM sync_base "
                               "WHERE table_name = $1 AND prod_kind = test_kind AND "
                               "prod_int = test_int AND prod_text = test_text "
                               "ORDER BY prod_kind, prod_int, prod_text",
                               name, kBaseColumns),
                   Bind({table}))
            .status());
    return std::unique_ptr<BaseCursor>(std::move(cursor));
  }

  Result<std::unique_ptr<BaseCursor>> ScanDirectBase(const std::string& table,
                                                     const std::vector<int64_t>& ids) override {
    std::string list = "{";
    for (size_t i = 0; i < ids.size(); ++i) {
      if (i > 0) list += ',';
      list += std::to_string(ids[i]);
    }
    list += "}";
    auto rows = Read(fmt::format("SELECT {} FROM sync_base WHERE table_name = $1 AND "
                                 "prod_kind = 1 AND test_kind = 1 AND prod_int = test_int AND "
                                 "prod_int = ANY($2::bigint[]) ORDER BY prod_int",
                                 kBaseColumns),
                     Bind({table, list}));
    if (!rows.ok()) return rows.status();
    std::vector<SyncBase> bases(static_cast<size_t>(rows->rows()));
    for (int i = 0; i < rows->rows(); ++i) ReadBase(*rows, i, &bases[static_cast<size_t>(i)]);
    return std::unique_ptr<BaseCursor>(new ListBaseCursor(std::move(bases)));
  }

  Result<std::optional<TrackingMark>> LoadTrackingMark(const std::string& table) override {
    auto rows =
        Read(fmt::format("SELECT {} FROM tracking_marks WHERE table_name = $1", kMarkColumns),
             Bind({table}));
    if (!rows.ok()) return rows.status();
    if (rows->rows() == 0) return std::optional<TrackingMark>();
    return std::optional<TrackingMark>(ReadMark(*rows, 0));
  }

  Result<std::vector<TrackingMark>> ListTrackingMarks() override {
    auto rows =
        Read(fmt::format("SELECT {} FROM tracking_marks ORDER BY table_name", kMarkColumns));
    if (!rows.ok()) return rows.status();
    std::vector<TrackingMark> marks;
    for (int i = 0; i < rows->rows(); ++i) marks.push_back(ReadMark(*rows, i));
    return marks;
  }

  Status SaveTrackingMark(const TrackingMark& mark) override {
    return writer_
        .Query(fmt::format("INSERT INTO tracking_marks ({}) VALUES ($1, $2, $3, $4, $5, $6, "
                           "$7::bytea, $8::bytea) ON CONFLICT (table_name) DO UPDATE SET "
                           "prod_epoch = $2, prod_position = $3, test_epoch = $4, "
                           "test_position = $5, mix = $6, unequal_prod = $7::bytea, "
                           "unequal_test = $8::bytea",
                           kMarkColumns),
               Bind({mark.table, mark.prod_epoch, mark.prod_position, mark.test_epoch,
                     mark.test_position, std::bit_cast<int64_t>(mark.mix),
                     IdsToBytea(mark.unequal_prod), IdsToBytea(mark.unequal_test)}))
        .status();
  }

  Result<std::optional<SyncBase>> FindBase(const std::string& table, const Value& prod_id,
                                           const Value& test_id) override {
    Params params = Bind({table});
    AddId(&params, prod_id);
    AddId(&params, test_id);
    auto rows = Read(fmt::format("SELECT {} FROM sync_base WHERE table_name = $1 AND "
                                 "prod_kind = $2 AND prod_int = $3 AND prod_text = $4 AND "
                                 "test_kind = $5 AND test_int = $6 AND test_text = $7",
                                 kBaseColumns),
                     params);
    if (!rows.ok()) return rows.status();
    if (rows->rows() == 0) return std::optional<SyncBase>();
    SyncBase base;
    ReadBase(*rows, 0, &base);
    return std::optional<SyncBase>(std::move(base));
  }

  Status DeleteBase(const std::string& table, const Value& prod_id, const Value& test_id) override {
    // A put still waiting to be written must not come back after this delete.
    ENVSYNC_RETURN_IF_ERROR(FlushBases());
    Params params = Bind({table});
    AddId(&params, prod_id);
    AddId(&params, test_id);
    return writer_
        .Query(
            "DELETE FROM sync_base WHERE table_name = $1 AND prod_kind = $2 AND "
            "prod_int = $3 AND prod_text = $4 AND test_kind = $5 AND test_int = $6 AND "
            "test_text = $7",
            params)
        .status();
  }

  Status BeginBaseUpdate() override {
    ENVSYNC_RETURN_IF_ERROR(writer_.Exec("BEGIN"));
    in_base_update_ = true;
    pending_.clear();
    pending_index_.clear();
    return Status::Ok();
  }

  // Puts are gathered and written kInsertBatch at a time (a later put of the same pair replaces
  // an earlier one still waiting), so an update of many bases costs few round trips.
  Status PutBase(const std::string& table, const SyncBase& base) override {
    if (!in_base_update_) {
      return Status::Internal(
          fmt::format("state store ({}): PutBase outside a base update", location_));
    }
    const std::string key = PairKey(table, base);
    if (auto it = pending_index_.find(key); it != pending_index_.end()) {
      pending_[it->second].second = base;
      return Status::Ok();
    }
    pending_index_.emplace(key, pending_.size());
    pending_.emplace_back(table, base);
    if (pending_.size() >= kInsertBatch) return FlushBases();
    return Status::Ok();
  }

  Status CommitBaseUpdate() override {
    Status status = FlushBases();
    in_base_update_ = false;
    if (!status.ok()) {
      (void)writer_.Exec("ROLLBACK");
      return status;
    }
    return writer_.Exec("COMMIT");
  }

  void AbortBaseUpdate() override {
    pending_.clear();
    pending_index_.clear();
    in_base_update_ = false;
    (void)writer_.Exec("ROLLBACK");
  }

  Status SaveComparison(const Comparison& c) override {
    return InWriteTransaction([&] { return InsertComparison(c); });
  }

  Result<Comparison> LoadComparison(const std::string& id) override {
    auto header = LoadComparisonHeader(id);
    if (!header.ok()) return header.status();
    Comparison c = std::move(header->first);
    auto rows = Read("SELECT body FROM changes WHERE comparison_id = $1 ORDER BY seq", Bind({id}));
    if (!rows.ok()) return rows.status();
    std::vector<std::string> texts;
    texts.reserve(static_cast<size_t>(rows->rows()));
    for (int i = 0; i < rows->rows(); ++i) texts.push_back(rows->Text(i, 0));
    Status parsed = ChangesFromJson(texts, &c.changes);
    if (!parsed.ok()) return parsed.WithContext(reader_.conn.what());
    return c;
  }

  Result<std::vector<ComparisonSummary>> ListComparisons() override {
    auto rows = Read(
        "SELECT id, from_env, to_env, created_at, conflicts, new_records, modified, deleted "
        "FROM comparisons ORDER BY created_at, seq");
    if (!rows.ok()) return rows.status();
    std::vector<ComparisonSummary> out;
    for (int i = 0; i < rows->rows(); ++i) {
      ComparisonSummary s;
      s.id = rows->Text(i, 0);
      s.from = rows->Text(i, 1);
      s.to = rows->Text(i, 2);
      s.created_at = rows->Text(i, 3);
      s.counts = TabCounts{rows->Integer(i, 4), rows->Integer(i, 5), rows->Integer(i, 6),
                           rows->Integer(i, 7)};
      out.push_back(std::move(s));
    }
    return out;
  }

  Result<std::pair<Comparison, TabCounts>> LoadComparisonHeader(const std::string& id) override {
    auto head = Read(
        "SELECT id, created_at, from_env, to_env, mode, modules, folders, forced, warnings, "
        "records_compared, conflicts, new_records, modified, deleted FROM comparisons "
        "WHERE id = $1",
        Bind({id}));
    if (!head.ok()) return head.status();
    if (head->rows() == 0) return Status::NotFound(fmt::format("no comparison with ID '{}'", id));
    Comparison c;
    c.id = head->Text(0, 0);
    c.created_at = head->Text(0, 1);
    c.from = head->Text(0, 2);
    c.to = head->Text(0, 3);
    c.mode = ParseMode(head->Text(0, 4)).value_or(Mode::kAll);
    ENVSYNC_RETURN_IF_ERROR(ComparisonListsFromJson(head->Text(0, 5), head->Text(0, 6),
                                                    head->Text(0, 7), head->Text(0, 8),
                                                    reader_.conn.what(), &c));
    c.records_compared = head->Integer(0, 9);
    TabCounts counts;
    counts.conflicts = head->Integer(0, 10);
    counts.new_records = head->Integer(0, 11);
    counts.modified = head->Integer(0, 12);
    counts.deleted = head->Integer(0, 13);
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
        "FROM changes WHERE comparison_id = $1 AND tab = $2 AND ($3 = '' OR "
        "strpos(lower(record), $3) > 0 OR strpos(lower(record_key), $3) > 0 OR "
        "strpos(lower(module), $3) > 0)";
    std::string needle = filter;
    for (char& ch : needle) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
    const std::string tab_name(TabName(tab));
    ChangePage page;
    auto count = Read(std::string("SELECT count(*) ") + where, Bind({id, tab_name, needle}));
    if (!count.ok()) return count.status();
    if (count->rows() > 0) page.total = count->Integer(0, 0);
    // As in SQLite, a negative limit is no limit and a negative offset is none.
    Params params = Bind({id, tab_name, needle});
    params.Add(limit < 0 ? Value() : Value(limit));
    params.Add(std::max<int64_t>(offset, 0));
    auto rows =
        Read(std::string("SELECT body ") + where + " ORDER BY seq LIMIT $4 OFFSET $5", params);
    if (!rows.ok()) return rows.status();
    for (int i = 0; i < rows->rows(); ++i) {
      auto change = ChangeFromJson(rows->Text(i, 0));
      if (!change.ok()) return change.status().WithContext(reader_.conn.what());
      page.changes.push_back(std::move(*change));
    }
    return page;
  }

  // As in SQLite: an unfiltered page of a tab saved as one run of positions, found by index;
  // nullopt when the tab's positions are not one run.
  Result<std::optional<ChangePage>> PageByPosition(const std::string& id, Tab tab, int64_t offset,
                                                   int64_t limit) {
    const std::string tab_name(TabName(tab));
    auto run =
        Read(fmt::format("SELECT c.{}, (SELECT min(seq) FROM changes WHERE comparison_id = $1 AND "
                         "tab = $2), (SELECT max(seq) FROM changes WHERE comparison_id = $1 AND "
                         "tab = $2) FROM comparisons AS c WHERE c.id = $1",
                         TabCountColumn(tab)),
             Bind({id, tab_name}));
    if (!run.ok()) return run.status();
    if (run->rows() == 0) return std::optional<ChangePage>(ChangePage{});
    ChangePage page;
    page.total = run->Integer(0, 0);
    if (page.total == 0 && run->IsNull(0, 1)) return std::optional<ChangePage>(std::move(page));
    if (run->IsNull(0, 1) || run->IsNull(0, 2) ||
        run->Integer(0, 2) - run->Integer(0, 1) + 1 != page.total) {
      return std::optional<ChangePage>();
    }
    const PositionRange range = PageOfTab(run->Integer(0, 1), page.total, offset, limit);
    Params params = Bind({id});
    params.Add(range.from);
    params.Add(range.to);
    params.Add(tab_name);
    auto rows = Read(
        "SELECT body FROM changes WHERE comparison_id = $1 AND seq >= $2 AND seq < $3 AND "
        "tab = $4 ORDER BY seq",
        params);
    if (!rows.ok()) return rows.status();
    for (int i = 0; i < rows->rows(); ++i) {
      auto change = ChangeFromJson(rows->Text(i, 0));
      if (!change.ok()) return change.status().WithContext(reader_.conn.what());
      page.changes.push_back(std::move(*change));
    }
    if (rows->rows() != range.to - range.from) return std::optional<ChangePage>();
    return std::optional<ChangePage>(std::move(page));
  }

  Result<std::set<std::string>> KnownChangeRefs(const std::string& id,
                                                const std::vector<std::string>& records) override {
    auto rows = Read(
        "SELECT DISTINCT n.record FROM json_array_elements_text($2::json) AS n (record) "
        "JOIN changes AS c ON c.comparison_id = $1 AND c.record = n.record",
        Bind({id, nlohmann::json(records).dump()}));
    if (!rows.ok()) return rows.status();
    std::set<std::string> known;
    for (int i = 0; i < rows->rows(); ++i) known.insert(rows->Text(i, 0));
    return known;
  }

  Status SaveSync(const SyncRun& run) override {
    return InWriteTransaction([&] { return WriteSync(run); });
  }

  Status UpdateSyncStatus(const SyncRun& run) override {
    return writer_
        .Query(
            "UPDATE syncs SET status = $2, finished_at = $3, applied = $4, error = $5 WHERE id = "
            "$1",
            Bind({run.id, run.status, run.finished_at, run.applied, run.error}))
        .status();
  }

  Result<SyncRun> LoadSync(const std::string& id) override {
    auto runs = ReadSyncs(id, false);
    if (!runs.ok()) return runs.status();
    if (runs->empty()) return Status::NotFound(fmt::format("no sync with ID '{}'", id));
    SyncRun run = std::move(runs->front());
    auto records = Read(
        "SELECT table_name, action, prod_id, test_id, target_id, pre_image, after_hash, "
        "base_hash, base_fields, after_image FROM sync_records WHERE sync_id = $1 ORDER BY seq",
        Bind({id}));
    if (!records.ok()) return records.status();
    for (int i = 0; i < records->rows(); ++i) {
      SyncRecord r;
      r.table = records->Text(i, 0);
      r.action = records->Text(i, 1);
      r.prod_id = ReadTaggedId(*records, i, 2);
      r.test_id = ReadTaggedId(*records, i, 3);
      r.target_id = ReadTaggedId(*records, i, 4);
      r.pre_image = records->Text(i, 5);
      r.after_image = records->Text(i, 9);
      if (!records->IsNull(i, 6)) r.after_hash = std::bit_cast<uint64_t>(records->Integer(i, 6));
      if (!records->IsNull(i, 7)) {
        SyncBase base;
        // A deleted record's pair has the target's ID on its missing side.
        base.prod_id = IsNull(r.prod_id) ? r.target_id : r.prod_id;
        base.test_id = IsNull(r.test_id) ? r.target_id : r.test_id;
        base.hash = std::bit_cast<uint64_t>(records->Integer(i, 7));
        base.field_hashes = FromBytea(records->Text(i, 8));
        r.base_before = std::move(base);
      }
      run.records.push_back(std::move(r));
    }
    auto files = Read(
        "SELECT final_path, staged_path, trash_path FROM sync_files WHERE sync_id = $1 "
        "ORDER BY seq",
        Bind({id}));
    if (!files.ok()) return files.status();
    for (int i = 0; i < files->rows(); ++i) {
      run.files.push_back(SyncFile{files->Text(i, 0), files->Text(i, 1), files->Text(i, 2)});
    }
    return run;
  }

  Result<std::vector<SyncRun>> ListSyncs() override { return ReadSyncs("", true); }

  Status SaveJob(const Job& job) override {
    return writer_
        .Query(fmt::format("INSERT INTO jobs ({}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, "
                           "$11, $12) ON CONFLICT (id) DO UPDATE SET kind = excluded.kind, "
                           "state = excluded.state, created_at = excluded.created_at, "
                           "run_at = excluded.run_at, started_at = excluded.started_at, "
                           "finished_at = excluded.finished_at, started_by = excluded.started_by, "
                           "request = excluded.request, result = excluded.result, "
                           "error = excluded.error, runner = excluded.runner",
                           kJobColumns),
               JobParams(job))
        .status();
  }

  Result<bool> SaveJobIf(const Job& job, const std::vector<std::string>& states) override {
    std::string in;
    for (size_t i = 0; i < states.size(); ++i) in += fmt::format("{}${}", i ? ", " : "", i + 13);
    Params params = JobParams(job);
    for (const std::string& state : states) params.Add(state);
    auto updated = writer_.Query(
        fmt::format(
            "UPDATE jobs SET kind = $2, state = $3, created_at = $4, run_at = $5, "
            "started_at = $6, finished_at = $7, started_by = $8, request = $9, result = $10, "
            "error = $11, runner = $12 WHERE id = $1 AND state IN ({})",
            in.empty() ? "NULL" : in),
        params);
    if (!updated.ok()) return updated.status();
    return AffectedRows(*updated) == 1;
  }

  Result<std::optional<Job>> ClaimDueJob(const std::string& kind, const std::string& now,
                                         const std::string& runner) override {
    // One statement: the row lock taken by FOR UPDATE is held until the claim commits, and
    // SKIP LOCKED lets a concurrent claimer take the next due job instead of waiting for this
    // one. RETURNING gives the claimed row as it was before (state, started_at, runner).
    auto claimed = writer_.Query(
        fmt::format(
            "UPDATE jobs SET state = 'running', started_at = $1, runner = $3 "
            "FROM (SELECT id, state AS was_state, started_at AS was_started_at, runner AS "
            "was_runner FROM jobs due_job WHERE {} FOR UPDATE SKIP LOCKED) due "
            "WHERE jobs.id = due.id "
            "RETURNING jobs.id, jobs.kind, due.was_state, jobs.created_at, jobs.run_at, "
            "due.was_started_at, jobs.finished_at, jobs.started_by, jobs.request, jobs.result, "
            "jobs.error, due.was_runner",
            kDueJob),
        Bind({now, kind, runner}));
    if (!claimed.ok()) return claimed.status();
    if (claimed->rows() == 0) return std::optional<Job>();
    return std::optional<Job>(ReadJob(*claimed, 0));
  }

  Result<std::optional<Job>> NextDueJob(const std::string& kind, const std::string& now) override {
    auto due =
        Read(fmt::format("SELECT {} FROM jobs WHERE {}", kJobColumns, kDueJob), Bind({now, kind}));
    if (!due.ok()) return due.status();
    if (due->rows() == 0) return std::optional<Job>();
    return std::optional<Job>(ReadJob(*due, 0));
  }

  Result<Job> LoadJob(const std::string& id) override {
    auto jobs = ReadJobs(id, false);
    if (!jobs.ok()) return jobs.status();
    if (jobs->empty()) return Status::NotFound(fmt::format("no job with ID '{}'", id));
    return std::move(jobs->front());
  }

  Result<std::vector<Job>> ListJobs() override { return ReadJobs("", true); }

  Result<int64_t> AddMessage(const Message& message) override {
    auto added = writer_.Query(
        "INSERT INTO messages (\"user\", created_at, title, body, job_id, read) "
        "VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
        Bind({message.user, message.created_at, message.title, message.body, message.job_id,
              Bool(message.read)}));
    if (!added.ok()) return added.status();
    return added->Integer(0, 0);
  }

  Result<std::vector<Message>> ListMessages(const std::string& user) override {
    auto rows = Read(
        "SELECT id, \"user\", created_at, title, body, job_id, read FROM messages "
        "WHERE $1 = '' OR \"user\" = $1 ORDER BY id DESC",
        Bind({user}));
    if (!rows.ok()) return rows.status();
    std::vector<Message> out;
    for (int i = 0; i < rows->rows(); ++i) {
      Message m;
      m.id = rows->Integer(i, 0);
      m.user = rows->Text(i, 1);
      m.created_at = rows->Text(i, 2);
      m.title = rows->Text(i, 3);
      m.body = rows->Text(i, 4);
      m.job_id = rows->Text(i, 5);
      m.read = rows->Text(i, 6) == "t";
      out.push_back(std::move(m));
    }
    return out;
  }

  Status MarkMessageRead(int64_t id, const std::string& user) override {
    auto updated = writer_.Query("UPDATE messages SET read = true WHERE id = $1 AND \"user\" = $2",
                                 Bind({id, user}));
    if (!updated.ok()) return updated.status();
    if (AffectedRows(*updated) == 0) {
      return Status::NotFound(fmt::format("no message {} for {}", id, user));
    }
    return Status::Ok();
  }

  Status SaveUser(const User& user) override {
    // SQLite's INSERT OR REPLACE deletes the old row, and with it (ON DELETE CASCADE) the
    // user's sessions: the same happens here.
    return InWriteTransaction([&]() -> Status {
      auto removed = writer_.Query("DELETE FROM users WHERE email = $1", Bind({user.email}));
      if (!removed.ok()) return removed.status();
      return writer_
          .Query("INSERT INTO users VALUES ($1, $2, $3, $4, $5)",
                 Bind({user.email, user.role, user.password_hash, user.time_zone, user.created_at}))
          .status();
    });
  }

  Result<std::optional<User>> FindUser(const std::string& email) override {
    auto users = ReadUsers(email, false);
    if (!users.ok()) return users.status();
    if (users->empty()) return std::optional<User>();
    return std::optional<User>(std::move(users->front()));
  }

  Result<std::vector<User>> ListUsers() override { return ReadUsers("", true); }

  Status SaveSession(const Session& session) override {
    return writer_
        .Query(
            "INSERT INTO sessions VALUES ($1, $2, $3, $4, $5) ON CONFLICT (token_hash) DO UPDATE "
            "SET email = excluded.email, csrf_token = excluded.csrf_token, "
            "created_at = excluded.created_at, expires_at = excluded.expires_at",
            Bind({session.token_hash, session.email, session.csrf_token, session.created_at,
                  session.expires_at}))
        .status();
  }

  Result<std::optional<Session>> FindSession(const std::string& token_hash) override {
    auto rows = Read(
        "SELECT token_hash, email, csrf_token, created_at, expires_at FROM sessions "
        "WHERE token_hash = $1",
        Bind({token_hash}));
    if (!rows.ok()) return rows.status();
    if (rows->rows() == 0) return std::optional<Session>();
    Session s;
    s.token_hash = rows->Text(0, 0);
    s.email = rows->Text(0, 1);
    s.csrf_token = rows->Text(0, 2);
    s.created_at = rows->Text(0, 3);
    s.expires_at = rows->Text(0, 4);
    return std::optional<Session>(std::move(s));
  }

  Status DeleteSession(const std::string& token_hash) override {
    return writer_.Query("DELETE FROM sessions WHERE token_hash = $1", Bind({token_hash})).status();
  }

  Status DeleteSessionsOf(const std::string& email) override {
    return writer_.Query("DELETE FROM sessions WHERE email = $1", Bind({email})).status();
  }

  Status DeleteExpiredSessions(const std::string& now) override {
    return writer_.Query("DELETE FROM sessions WHERE expires_at <= $1", Bind({now})).status();
  }

  Status AddAudit(const AuditEntry& entry) override {
    return writer_
        .Query(
            "INSERT INTO audit (\"at\", \"user\", action, target, detail) "
            "VALUES ($1, $2, $3, $4, $5)",
            Bind({entry.at, entry.user, entry.action, entry.target,
                  entry.detail.empty() ? std::string("{}") : entry.detail}))
        .status();
  }

  Result<std::vector<std::string>> CheckIntegrity() override {
    std::vector<std::string> problems;
    // An index left invalid (a CREATE INDEX CONCURRENTLY that died, say) is skipped by the
    // planner and no longer enforces its uniqueness.
    auto invalid = Read(
        "SELECT c.relname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
        "JOIN pg_class t ON t.oid = i.indrelid JOIN pg_namespace n ON n.oid = t.relnamespace "
        "WHERE n.nspname = current_schema() "
        "AND (NOT i.indisvalid OR NOT i.indisready)");
    if (!invalid.ok()) return invalid.status();
    for (int i = 0; i < invalid->rows(); ++i) {
      problems.push_back(fmt::format("index {} is not valid: REINDEX it", invalid->Text(i, 0)));
    }
    auto tables = Read(
        "SELECT tablename FROM pg_tables WHERE schemaname = current_schema() ORDER BY tablename");
    if (!tables.ok()) return tables.status();
    for (int i = 0; i < tables->rows(); ++i) {
      const std::string table = tables->Text(i, 0);
      auto read = Read("SELECT count(*) FROM " + Quote(table));
      if (!read.ok())
        problems.push_back(fmt::format("table {}: {}", table, read.status().message()));
    }
    return problems;
  }

  Result<std::vector<AuditEntry>> ListAudit() override {
    auto rows = Read("SELECT id, \"at\", \"user\", action, target, detail FROM audit ORDER BY id");
    if (!rows.ok()) return rows.status();
    std::vector<AuditEntry> out;
    for (int i = 0; i < rows->rows(); ++i) {
      AuditEntry e;
      e.id = rows->Integer(i, 0);
      e.at = rows->Text(i, 1);
      e.user = rows->Text(i, 2);
      e.action = rows->Text(i, 3);
      e.target = rows->Text(i, 4);
      e.detail = rows->Text(i, 5);
      out.push_back(std::move(e));
    }
    return out;
  }

  Status SaveSelection(const std::string& comparison_id, const std::string& body) override {
    return writer_
        .Query(
            "INSERT INTO selections VALUES ($1, $2) "
            "ON CONFLICT (comparison_id) DO UPDATE SET body = excluded.body",
            Bind({comparison_id, body}))
        .status();
  }

  Result<std::string> LoadSelection(const std::string& comparison_id) override {
    auto rows = Read("SELECT body FROM selections WHERE comparison_id = $1", Bind({comparison_id}));
    if (!rows.ok()) return rows.status();
    if (rows->rows() == 0) return std::string();
    return rows->Text(0, 0);
  }

 private:
  // The oldest due job of kind $2 ('' = any) at $1: what ClaimDueJob claims and NextDueJob
  // tells.
  static constexpr const char* kDueJob =
      "(state = 'queued' OR (state = 'scheduled' AND run_at <= $1)) AND ($2 = '' OR kind = $2) "
      "ORDER BY created_at, id LIMIT 1";
  static constexpr const char* kJobColumns =
      "id, kind, state, created_at, run_at, started_at, finished_at, started_by, request, result, "
      "error, runner";

  Result<PgResult> Read(const std::string& sql, const Params& params = {}) {
    return reader_.conn.Query(sql, params);
  }

  // Runs `write` in a transaction on the writer, or in the one already open (a base update),
  // as SQLite's statements join the writer's open transaction.
  Status InWriteTransaction(const std::function<Status()>& write) {
    if (writer_.InTransaction()) return write();
    ENVSYNC_RETURN_IF_ERROR(writer_.Exec("BEGIN"));
    Status status = write();
    if (!status.ok()) {
      (void)writer_.Exec("ROLLBACK");
      return status;
    }
    return writer_.Exec("COMMIT");
  }

  Status FlushBases() {
    if (pending_.empty()) return Status::Ok();
    Status status = InsertBatched(
        writer_,
        "INSERT INTO sync_base (table_name, prod_kind, prod_int, prod_text, test_kind, test_int, "
        "test_text, hash, field_hashes, prod_digest, test_digest) VALUES",
        "ON CONFLICT (table_name, prod_kind, prod_int, prod_text, test_kind, test_int, test_text) "
        "DO UPDATE SET hash = excluded.hash, field_hashes = excluded.field_hashes, "
        "prod_digest = excluded.prod_digest, test_digest = excluded.test_digest",
        11, pending_.size(), [&](size_t i, Params* params) {
          const auto& [table, base] = pending_[i];
          params->Add(table);
          AddId(params, base.prod_id);
          AddId(params, base.test_id);
          params->Add(std::bit_cast<int64_t>(base.hash));
          params->Add(ToBytea(base.field_hashes));
          params->Add(base.prod_digest ? Value(std::bit_cast<int64_t>(*base.prod_digest))
                                       : Value());
          params->Add(base.test_digest ? Value(std::bit_cast<int64_t>(*base.test_digest))
                                       : Value());
        });
    pending_.clear();
    pending_index_.clear();
    return status;
  }

  static Params JobParams(const Job& job) {
    return Bind({job.id, job.kind, job.state, job.created_at, job.run_at, job.started_at,
                 job.finished_at, job.started_by, job.request, job.result, job.error, job.runner});
  }

  static Job ReadJob(const PgResult& rows, int row) {
    Job j;
    std::string* fields[] = {&j.id,      &j.kind,       &j.state,       &j.created_at,
                             &j.run_at,  &j.started_at, &j.finished_at, &j.started_by,
                             &j.request, &j.result,     &j.error,       &j.runner};
    for (int i = 0; i < 12; ++i) *fields[i] = rows.Text(row, i);
    return j;
  }

  Result<std::vector<Job>> ReadJobs(const std::string& id, bool all) {
    auto rows = Read(
        fmt::format("SELECT {} FROM jobs WHERE $2 OR id = $1 ORDER BY created_at, id", kJobColumns),
        Bind({id, Bool(all)}));
    if (!rows.ok()) return rows.status();
    std::vector<Job> out;
    for (int i = 0; i < rows->rows(); ++i) out.push_back(ReadJob(*rows, i));
    return out;
  }

  Result<std::vector<User>> ReadUsers(const std::string& email, bool all) {
    auto rows = Read(
        "SELECT email, role, password_hash, time_zone, created_at FROM users "
        "WHERE $2 OR email = $1 ORDER BY email",
        Bind({email, Bool(all)}));
    if (!rows.ok()) return rows.status();
    std::vector<User> out;
    for (int i = 0; i < rows->rows(); ++i) {
      User u;
      u.email = rows->Text(i, 0);
      u.role = rows->Text(i, 1);
      u.password_hash = rows->Text(i, 2);
      u.time_zone = rows->Text(i, 3);
      u.created_at = rows->Text(i, 4);
      out.push_back(std::move(u));
    }
    return out;
  }

  // The syncs with `id`, or every sync when `all`; without records and files.
  Result<std::vector<SyncRun>> ReadSyncs(const std::string& id, bool all) {
    auto rows = Read(
        "SELECT id, comparison_id, created_at, finished_at, started_by, from_env, to_env, "
        "test_import, status, applied, error, job_id FROM syncs WHERE $2 OR id = $1 "
        "ORDER BY created_at, seq",
        Bind({id, Bool(all)}));
    if (!rows.ok()) return rows.status();
    std::vector<SyncRun> out;
    for (int i = 0; i < rows->rows(); ++i) {
      SyncRun run;
      run.id = rows->Text(i, 0);
      run.comparison_id = rows->Text(i, 1);
      run.created_at = rows->Text(i, 2);
      run.finished_at = rows->Text(i, 3);
      run.started_by = rows->Text(i, 4);
      run.from = rows->Text(i, 5);
      run.to = rows->Text(i, 6);
      run.test_import = rows->Text(i, 7) == "t";
      run.status = rows->Text(i, 8);
      run.applied = rows->Text(i, 9);
      run.error = rows->Text(i, 10);
      run.job_id = rows->Text(i, 11);
      out.push_back(std::move(run));
    }
    return out;
  }

  Status WriteSync(const SyncRun& run) {
    // SQLite's INSERT OR REPLACE gives a saved-again sync a new rowid (its place in ListSyncs
    // among syncs of the same time): deleting and inserting does the same with `seq`. The
    // delete takes the old records and files with it.
    auto removed = writer_.Query("DELETE FROM syncs WHERE id = $1", Bind({run.id}));
    if (!removed.ok()) return removed.status();
    auto head = writer_.Query(
        "INSERT INTO syncs (id, comparison_id, created_at, finished_at, started_by, from_env, "
        "to_env, test_import, status, applied, error, job_id) "
        "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
        Bind({run.id, run.comparison_id, run.created_at, run.finished_at, run.started_by, run.from,
              run.to, Bool(run.test_import), run.status, run.applied, run.error, run.job_id}));
    if (!head.ok()) return head.status();
    ENVSYNC_RETURN_IF_ERROR(InsertBatched(
        writer_,
        "INSERT INTO sync_records (sync_id, seq, table_name, action, prod_id, test_id, target_id, "
        "pre_image, after_hash, base_hash, base_fields, after_image) VALUES",
        "", 12, run.records.size(), [&](size_t i, Params* params) {
          const SyncRecord& r = run.records[i];
          params->Add(run.id);
          params->Add(static_cast<int64_t>(i));
          params->Add(r.table);
          params->Add(r.action);
          params->Add(TaggedId(r.prod_id));
          params->Add(TaggedId(r.test_id));
          params->Add(TaggedId(r.target_id));
          params->Add(r.pre_image);
          params->Add(r.after_hash ? Value(std::bit_cast<int64_t>(*r.after_hash)) : Value());
          if (r.base_before) {
            params->Add(std::bit_cast<int64_t>(r.base_before->hash));
            params->Add(ToBytea(r.base_before->field_hashes));
          } else {
            params->Add(Value());
            params->Add(Value());
          }
          params->Add(r.after_image);
        }));
    return InsertBatched(writer_,
                         "INSERT INTO sync_files (sync_id, seq, final_path, staged_path, "
                         "trash_path) VALUES",
                         "", 5, run.files.size(), [&](size_t i, Params* params) {
                           const SyncFile& f = run.files[i];
                           params->Add(run.id);
                           params->Add(static_cast<int64_t>(i));
                           params->Add(f.final_path);
                           params->Add(f.staged_path);
                           params->Add(f.trash_path);
                         });
  }

  Status InsertComparison(const Comparison& c) {
    const TabCounts counts = c.Counts();
    auto head = writer_.Query(
        "INSERT INTO comparisons (id, created_at, from_env, to_env, mode, modules, folders, "
        "forced, warnings, records_compared, conflicts, new_records, modified, deleted) "
        "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14) "
        "ON CONFLICT (id) DO NOTHING",
        Bind({c.id, c.created_at, c.from, c.to, std::string(ModeName(c.mode)),
              json(c.modules).dump(), json(c.folders).dump(), ForcedToJson(c.forced),
              WarningsToJson(c.warnings), c.records_compared, counts.conflicts, counts.new_records,
              counts.modified, counts.deleted}));
    if (!head.ok()) {
      return Status::InvalidArgument(
          fmt::format("cannot store comparison '{}': {}", c.id, head.status().message()));
    }
    if (AffectedRows(*head) == 0) {
      return Status::InvalidArgument(fmt::format(
          "cannot store comparison '{}': a comparison with this ID is already stored", c.id));
    }
    return InsertBatched(
        writer_,
        "INSERT INTO changes (comparison_id, seq, tab, record, body, record_key, module) VALUES",
        "", 7, c.changes.size(), [&](size_t i, Params* params) {
          const Change& change = c.changes[i];
          params->Add(c.id);
          params->Add(static_cast<int64_t>(i));
          params->Add(std::string(TabName(change.tab)));
          params->Add(change.Ref());
          params->Add(ChangeToStoredJson(change));
          params->Add(change.key);
          params->Add(change.module);
        });
  }

  Status Migrate() {
    ENVSYNC_RETURN_IF_ERROR(writer_.Exec("BEGIN"));
    Status status = MigrateInTransaction();
    if (!status.ok()) {
      // A store this envsync cannot read is left as it was.
      (void)writer_.Exec("ROLLBACK");
      return status;
    }
    return writer_.Exec("COMMIT");
  }

  Status MigrateInTransaction() {
    // Held until the transaction ends: a second opener waits, then finds the schema made.
    ENVSYNC_RETURN_IF_ERROR(
        writer_.Exec(fmt::format("SELECT pg_advisory_xact_lock({}, 0)", kSchemaLockClass)));
    auto exists = writer_.Query("SELECT to_regclass('envsync_schema') IS NOT NULL");
    if (!exists.ok()) return exists.status();
    int found = 0;
    if (exists->Text(0, 0) == "t") {
      auto version = writer_.Query("SELECT coalesce(max(version), 0) FROM envsync_schema");
      if (!version.ok()) return version.status();
      found = static_cast<int>(version->Integer(0, 0));
    }
    if (found > kStateSchemaVersion) {
      return Status::InvalidArgument(
          fmt::format("state store '{}' has schema version {}, newer than this envsync knows ({}): "
                      "use a newer envsync",
                      location_, found, kStateSchemaVersion));
    }
    if (found != 0 && found < kFirstVersion) {
      return Status::Unavailable(fmt::format(
          "state store '{}' has schema version {}, which no envsync stores in PostgreSQL",
          location_, found));
    }
    if (found == 0) ENVSYNC_RETURN_IF_ERROR(CheckSchemaIsFree());
    version_ = found;
    while (version_ < kStateSchemaVersion) {
      const int next = version_ == 0 ? kFirstVersion : version_ + 1;
      Status step = writer_.Exec(kMigrations[next - kFirstVersion]);
      if (step.ok()) {
        step = writer_.Query("DELETE FROM envsync_schema").status();
      }
      if (step.ok()) {
        step =
            writer_.Query("INSERT INTO envsync_schema VALUES ($1)", Bind({int64_t{next}})).status();
      }
      if (!step.ok()) return step.WithContext(fmt::format("migrating to schema version {}", next));
      version_ = next;
    }
    return Status::Ok();
  }

  // A store about to be made: none of the tables it makes may be in the schema already. The
  // platform's own schema has a `users` table, and the first migration would fail on it with
  // "relation "users" already exists", which does not say what to do.
  Status CheckSchemaIsFree() {
    std::string tables = "{";  // a text[] literal of plain names
    for (const char* migration : kMigrations) {
      const std::string_view text(migration);
      constexpr std::string_view kCreate = "CREATE TABLE ";
      for (size_t at = text.find(kCreate); at != std::string_view::npos;
           at = text.find(kCreate, at + 1)) {
        size_t name = at + kCreate.size();
        if (text.substr(name).starts_with("IF NOT EXISTS ")) continue;  // envsync_schema
        const size_t end = text.find_first_of(" (", name);
        if (tables.size() > 1) tables += ',';
        tables.append(text.substr(name, end - name));
      }
    }
    auto taken = writer_.Query(
        "SELECT string_agg(c.relname, ', ' ORDER BY c.relname), current_schema() "
        "FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = current_schema() AND c.relname = ANY($1::text[])",
        Bind({tables + "}"}));
    if (!taken.ok()) return taken.status();
    if (taken->IsNull(0, 0)) return Status::Ok();
    return Status::InvalidArgument(fmt::format(
        "state store '{}': schema \"{}\" already has tables named {}, and none of envsync's "
        "state (no envsync_schema table): it is another application's schema (the platform's?). "
        "Nothing was written. Give envsync's state a database of its own, or a schema of its own "
        "(create it, then add ?options=-csearch_path%3Denvsync_state to the state URI)",
        location_, taken->Text(0, 1), taken->Text(0, 0)));
  }

  std::string uri_;
  std::string location_;  // the URI without its password
  Reader reader_;
  PgConnection writer_;
  bool in_base_update_ = false;
  std::vector<std::pair<std::string, SyncBase>> pending_;
  std::unordered_map<std::string, size_t> pending_index_;
  int version_ = 0;
};

}  // namespace

Result<std::unique_ptr<StateStore>> OpenPostgresStateStore(const std::string& uri) {
  auto store = std::make_unique<PostgresStateStore>(uri);
  ENVSYNC_RETURN_IF_ERROR(store->Open());
  return std::unique_ptr<StateStore>(std::move(store));
}

}  // namespace envsync::store
