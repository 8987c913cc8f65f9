#include "store/sqlite/sqlite_row_digests.h"

#include <fmt/format.h>
#include <sys/stat.h>
#include <xxhash.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstring>
#include <functional>
#include <memory>
#include <optional>
#include <unordered_map>

#include "store/sqlite/sqlite_db.h"

namespace envsync::store {
namespace {

// The SQLite file format (https://www.sqlite.org/fileformat2.html): big-endian integers, and
// varints of up to 9 bytes (7 bits a byte, all 8 in the ninth).
uint32_t Be16(const uint8_t* p) { return (uint32_t{p[0]} << 8) | p[1]; }
uint32_t Be32(const uint8_t* p) {
  return (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) | (uint32_t{p[2]} << 8) | p[3];
}

// Reads the varint at `*p` (before `end`) and moves past it; false when it runs past `end`.
bool Varint(const uint8_t** p, const uint8_t* end, uint64_t* value) {
  uint64_t v = 0;
  for (int i = 0; i < 9; ++i) {
    if (*p >= end) return false;
    const uint8_t byte = *(*p)++;
    if (i == 8) {
      *value = (v << 8) | byte;
      return true;
    }
    v = (v << 7) | (byte & 0x7f);
    if ((byte & 0x80) == 0) {
      *value = v;
      return true;
    }
  }
  return false;
}

constexpr uint8_t kInteriorTablePage = 0x05;
constexpr uint8_t kLeafTablePage = 0x0d;
constexpr int kMaxDepth = 40;
constexpr size_t kRunBytes = size_t{256} << 10;  // leaf pages read at once when adjacent

struct StateDeleter {
  void operator()(XXH3_state_t* state) const { XXH3_freeState(state); }
};

// A cell's place (RowDigest::at): its offset in the file in the low 48 bits and its length in
// bytes (the two varints and the local payload) in the high 16, or 0 (unknown) for a file past
// 256 TiB. A length of 64 KiB or more is left out (0: ReadRecordsAt reads 4 KiB, then the rest).
constexpr int kCellLengthShift = 48;
constexpr uint64_t kCellOffsetMask = (uint64_t{1} << kCellLengthShift) - 1;

uint64_t CellPlace(uint64_t offset, uint64_t length) {
  if (offset > kCellOffsetMask) return 0;
  return length <= 0xFFFF ? offset | length << kCellLengthShift : offset;
}

// The page header's offset: page 1 starts with the 100-byte file header.
size_t PageHeaderAt(uint32_t page) { return page == 1 ? 100 : 0; }

// Reads `bytes` at `offset` of the file through SQLite's own handle.
bool ReadAt(sqlite3_file* file, void* into, size_t bytes, uint64_t offset) {
  return file->pMethods->xRead(file, into, static_cast<int>(bytes),
                               static_cast<sqlite3_int64>(offset)) == SQLITE_OK;
}

// The children of the interior table page `bytes` (of `page`, `usable` bytes) in key order,
// the rightmost last, and, when `keys` is given, each other child's separator key (ascending).
// nullptr, or what does not parse, with {} for the page number.
const char* InteriorCells(const uint8_t* bytes, uint32_t page, uint32_t usable,
                          std::vector<uint32_t>* children, std::vector<int64_t>* keys) {
  const size_t h = PageHeaderAt(page);
  const uint32_t cells = Be16(&bytes[h + 3]);
  if (h + 12 + size_t{cells} * 2 > usable) return "page {} overflows";
  children->reserve(cells + 1);
  for (uint32_t c = 0; c < cells; ++c) {
    const uint32_t at = Be16(&bytes[h + 12 + size_t{c} * 2]);
    if (at + 4 > usable) return "a cell of page {} overflows";
    children->push_back(Be32(&bytes[at]));
    if (keys == nullptr) continue;
    const uint8_t* p = &bytes[at + 4];
    uint64_t key = 0;
    if (!Varint(&p, bytes + usable, &key)) return "a cell of page {} overflows";
    if (!keys->empty() && static_cast<int64_t>(key) <= keys->back()) {
      return "page {} holds keys out of order";
    }
    keys->push_back(static_cast<int64_t>(key));
  }
  children->push_back(Be32(&bytes[h + 8]));
  return nullptr;
}

class TableReader {
 public:
  TableReader(sqlite3_file* file, uint32_t page_size, uint32_t usable, uint32_t pages, int id_index,
              uint64_t schema_seed, std::string what)
      : file_(file),
        page_size_(page_size),
        usable_(usable),
        pages_(pages),
        id_index_(id_index),
        schema_seed_(schema_seed),
        what_(std::move(what)),
        state_(XXH3_createState()) {}

  Status Read(uint32_t root, std::vector<RowDigest>* out) {
    if (state_ == nullptr) return Status::Internal("out of memory for a hash state");
    std::vector<uint32_t> leaves;
    ENVSYNC_RETURN_IF_ERROR(Descend(root, 0, &leaves));
    const size_t per_run = std::max<size_t>(1, kRunBytes / page_size_);
    std::vector<uint8_t> run(per_run * page_size_);
    for (size_t i = 0; i < leaves.size();) {
      size_t j = i + 1;
      while (j < leaves.size() && j - i < per_run && leaves[j] == leaves[j - 1] + 1) ++j;
      ENVSYNC_RETURN_IF_ERROR(ReadPages(leaves[i], static_cast<uint32_t>(j - i), run.data()));
      for (size_t k = i; k < j; ++k) {
        ENVSYNC_RETURN_IF_ERROR(Leaf(leaves[k], run.data() + (k - i) * page_size_, out));
      }
      if (i == 0) {
        // Sized for the whole table from the first run, instead of doubling as it grows.
        const size_t per_page = out->size() / j + 1;
        out->reserve(per_page * leaves.size() + per_page);
      }
      i = j;
    }
    return Status::Ok();
  }

 private:
  Status Invalid(const std::string& why) const {
    return Status::InvalidArgument(fmt::format("{}: {}", what_, why));
  }

  Status ReadPages(uint32_t first, uint32_t count, uint8_t* into) {
    if (first == 0 || first > pages_ || count > pages_ - first + 1) {
      return Invalid(fmt::format("page {} is outside the file", first));
    }
    const int rc = file_->pMethods->xRead(file_, into,
                                          static_cast<int>(static_cast<size_t>(count) * page_size_),
                                          static_cast<sqlite3_int64>(first - 1) * page_size_);
    if (rc != SQLITE_OK) return Invalid(fmt::format("reading page {} failed ({})", first, rc));
    return Status::Ok();
  }

  // Collects the leaf pages under `page` in key order.
  Status Descend(uint32_t page, int depth, std::vector<uint32_t>* leaves) {
    if (depth > kMaxDepth) return Invalid("the b-tree is deeper than any real one");
    // A damaged file whose pages point back up would otherwise be read over and over.
    if (leaves->size() > pages_) return Invalid("the b-tree names more pages than the file has");
    std::vector<uint8_t> bytes(page_size_);
    ENVSYNC_RETURN_IF_ERROR(ReadPages(page, 1, bytes.data()));
    const size_t h = PageHeaderAt(page);
    if (bytes[h] == kLeafTablePage) {
      leaves->push_back(page);
      return Status::Ok();
    }
    if (bytes[h] != kInteriorTablePage) {
      return Invalid(fmt::format("page {} is not a table b-tree page", page));
    }
    if (interior_seen_.empty()) interior_seen_.resize(size_t{pages_} + 1);
    if (interior_seen_[page]) return Invalid(fmt::format("page {} is reached twice", page));
    interior_seen_[page] = true;
    std::vector<uint32_t> children;
    if (const char* why = InteriorCells(bytes.data(), page, usable_, &children, nullptr)) {
      return Invalid(fmt::format(fmt::runtime(why), page));
    }
    // Every leaf of a b-tree is at the same depth: when the first child is a leaf, all are
    // (Leaf checks each page's type when it reads it).
    const size_t before = leaves->size();
    ENVSYNC_RETURN_IF_ERROR(Descend(children[0], depth + 1, leaves));
    if (leaves->size() == before + 1 && leaves->back() == children[0]) {
      leaves->insert(leaves->end(), children.begin() + 1, children.end());
      return Status::Ok();
    }
    for (size_t c = 1; c < children.size(); ++c) {
      ENVSYNC_RETURN_IF_ERROR(Descend(children[c], depth + 1, leaves));
    }
    return Status::Ok();
  }

  Status Leaf(uint32_t page, const uint8_t* bytes, std::vector<RowDigest>* out) {
    const size_t h = PageHeaderAt(page);
    if (bytes[h] != kLeafTablePage) {
      return Invalid(fmt::format("page {} is not a table leaf page", page));
    }
    const uint32_t cells = Be16(&bytes[h + 3]);
    if (h + 8 + size_t{cells} * 2 > usable_) return Invalid(fmt::format("page {} overflows", page));
    const uint8_t* end = bytes + usable_;
    // Payloads past `max_local` spill into overflow pages (the file format's X, M and K).
    const uint64_t max_local = usable_ - 35;
    const uint64_t min_local = (uint64_t{usable_} - 12) * 32 / 255 - 23;
    for (uint32_t c = 0; c < cells; ++c) {
      const uint32_t at = Be16(&bytes[h + 8 + size_t{c} * 2]);
      if (at >= usable_) return Invalid(fmt::format("a cell of page {} overflows", page));
      const uint8_t* p = bytes + at;
      uint64_t size = 0;
      uint64_t rowid_bits = 0;
      if (!Varint(&p, end, &size) || !Varint(&p, end, &rowid_bits)) {
        return Invalid(fmt::format("a cell of page {} overflows", page));
      }
      const auto rowid = static_cast<int64_t>(rowid_bits);
      if (!out->empty() && rowid <= out->back().id) {
        return Invalid(fmt::format("page {} holds rowids out of order", page));
      }
      uint64_t local = size;
      uint32_t overflow = 0;
      if (size > max_local) {
        const uint64_t k = min_local + (size - min_local) % (usable_ - 4);
        local = k <= max_local ? k : min_local;
        if (p + local + 4 > end) return Invalid(fmt::format("a cell of page {} overflows", page));
        overflow = Be32(p + local);
        if (overflow == 0)
          return Invalid(fmt::format("a cell of page {} loses its overflow", page));
      } else if (p + local > end) {
        return Invalid(fmt::format("a cell of page {} overflows", page));
      }
      ENVSYNC_RETURN_IF_ERROR(CheckIdIsNull(p, local, page));
      uint64_t digest = 0;
      const uint64_t seed = rowid_bits ^ schema_seed_;
      if (overflow == 0) {
        digest = XXH3_64bits_withSeed(p, local, seed);
      } else {
        ENVSYNC_RETURN_IF_ERROR(DigestOverflowing(p, local, size, overflow, seed, &digest));
      }
      // Where the cell is in the file, for reading the row again alone (RowDigest::at).
      const uint64_t place = overflow == 0
                                 ? CellPlace(uint64_t{page - 1} * page_size_ + at,
                                             static_cast<uint64_t>(p - bytes) - at + local)
                                 : 0;
      out->push_back(RowDigest{rowid, digest, place});
    }
    return Status::Ok();
  }

  // The rowid column is stored as NULL (serial type 0) in every record; any other value means
  // the ID column is not the rowid, and the rowids are not the IDs.
  Status CheckIdIsNull(const uint8_t* record, uint64_t local, uint32_t page) const {
    const uint8_t* p = record;
    const uint8_t* local_end = record + local;
    uint64_t header_size = 0;
    if (!Varint(&p, local_end, &header_size) || header_size > local) {
      return Invalid(fmt::format("a record on page {} does not parse", page));
    }
    const uint8_t* header_end = record + header_size;
    uint64_t type = 0;
    for (int column = 0; column <= id_index_; ++column) {
      if (!Varint(&p, header_end, &type)) {
        return Invalid(fmt::format("a record on page {} has no ID column", page));
      }
    }
    if (type != 0) return Invalid("the ID column is stored in the records: it is not the rowid");
    return Status::Ok();
  }

  Status DigestOverflowing(const uint8_t* local_bytes, uint64_t local, uint64_t size, uint32_t page,
                           uint64_t seed, uint64_t* digest) {
    XXH3_64bits_reset_withSeed(state_.get(), seed);
    XXH3_64bits_update(state_.get(), local_bytes, local);
    uint64_t left = size - local;
    std::vector<uint8_t>& bytes = overflow_page_;
    bytes.resize(page_size_);
    for (uint32_t hops = 0; left > 0; ++hops) {
      if (hops >= pages_) return Invalid("an overflow chain loops");
      ENVSYNC_RETURN_IF_ERROR(ReadPages(page, 1, bytes.data()));
      const uint64_t n = std::min<uint64_t>(left, usable_ - 4);
      XXH3_64bits_update(state_.get(), bytes.data() + 4, n);
      left -= n;
      page = Be32(bytes.data());
    }
    *digest = XXH3_64bits_digest(state_.get());
    return Status::Ok();
  }

  sqlite3_file* file_;
  uint32_t page_size_;
  uint32_t usable_;
  uint32_t pages_;
  int id_index_;
  uint64_t schema_seed_;
  std::string what_;
  std::unique_ptr<XXH3_state_t, StateDeleter> state_;
  std::vector<uint8_t> overflow_page_;
  std::vector<bool> interior_seen_;
};

std::string Upper(std::string text) {
  for (char& c : text) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return text;
}

// Runs `sql` with `table` bound to ?1 and hands each row to `row`.
template <typename Row>
Status EachRow(sqlite3* db, const char* sql, const std::string& table, Row row) {
  sqlite3_stmt* statement = nullptr;
  if (sqlite3_prepare_v2(db, sql, -1, &statement, nullptr) != SQLITE_OK) {
    return Status::Unavailable(sqlite3_errmsg(db));
  }
  sqlite3_bind_text(statement, 1, table.data(), static_cast<int>(table.size()), SQLITE_STATIC);
  int rc = SQLITE_ROW;
  while ((rc = sqlite3_step(statement)) == SQLITE_ROW) row(statement);
  Status status = rc == SQLITE_DONE ? Status::Ok() : Status::Unavailable(sqlite3_errmsg(db));
  sqlite3_finalize(statement);
  return status;
}

std::string Text(sqlite3_stmt* statement, int column) {
  const auto* text = sqlite3_column_text(statement, column);
  return text == nullptr ? std::string() : std::string(reinterpret_cast<const char*>(text));
}

}  // namespace

namespace {

// A rowid table whose pages can be read from its file: what ReadRowDigests and ReadRecordsAt
// check before they read one.
struct TableFile {
  sqlite3_file* file = nullptr;
  uint32_t page_size = 0;
  uint32_t usable = 0;
  uint32_t pages = 0;
  uint32_t root = 0;
  std::string schema;
  int id_index = -1;
  // The stored columns in record order (a VIRTUAL generated column is not stored).
  std::vector<std::string> names;
  std::vector<std::string> types;
};

Result<TableFile> OpenTableFile(sqlite3* db, const std::string& table, const std::string& id_column,
                                const std::function<Status(const std::string&)>& invalid) {
  if (sqlite3_get_autocommit(db) != 0) return invalid("no read transaction is open");
  // A connection that writes holds its changes in its own cache (and may have spilled some
  // to the file): neither the file nor SQL's pages alone are what it reads.
  if (sqlite3_txn_state(db, "main") == SQLITE_TXN_WRITE) {
    return invalid("its connection is in a write transaction");
  }
  std::string journal_mode;
  ENVSYNC_RETURN_IF_ERROR(EachRow(db, "PRAGMA journal_mode", table,
                                  [&](sqlite3_stmt* s) { journal_mode = Text(s, 0); }));
  if (journal_mode == "wal") {
    // Checked inside the snapshot: an empty WAL now means the snapshot reads the file alone.
    // The WAL is named after the file SQLite opened (a symlink resolved), not the configured path.
    const char* main_file = sqlite3_db_filename(db, "main");
    const char* wal_file = main_file != nullptr ? sqlite3_filename_wal(main_file) : nullptr;
    if (wal_file == nullptr) return invalid("its WAL cannot be found");
    struct stat wal {};
    if (::stat(wal_file, &wal) != 0) {
      if (errno != ENOENT) return invalid(fmt::format("its WAL {} cannot be read", wal_file));
    } else if (wal.st_size > 0) {
      return invalid("its WAL holds frames the file does not");
    }
  }
  TableFile t;
  int64_t root = 0;
  ENVSYNC_RETURN_IF_ERROR(
      EachRow(db, "SELECT rootpage, sql FROM sqlite_master WHERE type = 'table' AND name = ?1",
              table, [&](sqlite3_stmt* s) {
                root = sqlite3_column_int64(s, 0);
                t.schema = Text(s, 1);
              }));
  if (root <= 0 || root > int64_t{UINT32_MAX}) return invalid("no such table");
  t.root = static_cast<uint32_t>(root);
  // The ID is the rowid when it is the one primary-key column, declared INTEGER, with no index
  // of its own (a WITHOUT ROWID table, or INTEGER PRIMARY KEY DESC, has one).
  int pk_columns = 0;
  bool id_is_integer_pk = false;
  ENVSYNC_RETURN_IF_ERROR(
      EachRow(db, "SELECT name, type, pk FROM pragma_table_xinfo(?1) WHERE hidden <> 2", table,
              [&](sqlite3_stmt* s) {
                // Columns in record order: a VIRTUAL generated column (hidden 2) is not stored.
                const bool pk = sqlite3_column_int64(s, 2) > 0;
                pk_columns += pk ? 1 : 0;
                if (Text(s, 0) == id_column) {
                  t.id_index = static_cast<int>(t.names.size());
                  id_is_integer_pk = pk && Upper(Text(s, 1)) == "INTEGER";
                }
                t.names.push_back(Text(s, 0));
                t.types.push_back(Text(s, 1));
              }));
  int64_t pk_indexes = 0;
  ENVSYNC_RETURN_IF_ERROR(
      EachRow(db, "SELECT count(*) FROM pragma_index_list(?1) WHERE origin = 'pk'", table,
              [&](sqlite3_stmt* s) { pk_indexes = sqlite3_column_int64(s, 0); }));
  if (pk_columns != 1 || !id_is_integer_pk || pk_indexes != 0) {
    return invalid(fmt::format("{} is not its INTEGER PRIMARY KEY", id_column));
  }
  if (sqlite3_file_control(db, "main", SQLITE_FCNTL_FILE_POINTER, &t.file) != SQLITE_OK ||
      t.file == nullptr || t.file->pMethods == nullptr) {
    return invalid("the database file is not reachable");
  }
  uint8_t header[100];
  if (!ReadAt(t.file, header, sizeof header, 0) ||
      std::memcmp(header, "SQLite format 3", 16) != 0) {
    return invalid("the file header does not read");
  }
  t.page_size = Be16(header + 16) == 1 ? 65536 : Be16(header + 16);
  const uint32_t reserved = header[20];
  sqlite3_int64 file_size = 0;
  if (t.page_size < 512 || (t.page_size & (t.page_size - 1)) != 0 ||
      reserved >= t.page_size - 480 ||
      t.file->pMethods->xFileSize(t.file, &file_size) != SQLITE_OK) {
    return invalid("the file header does not read");
  }
  t.usable = t.page_size - reserved;
  t.pages = static_cast<uint32_t>(
      std::min<sqlite3_int64>(file_size / t.page_size, sqlite3_int64{UINT32_MAX}));
  return t;
}

// The affinity SQLite gives a column declared `type` (https://www.sqlite.org/datatype3.html,
// 3.1): only REAL changes what a stored value reads as (an integral real is stored as an
// integer and read back as a real).
bool HasRealAffinity(const std::string& type) {
  const std::string upper = Upper(type);
  auto has = [&](const char* part) { return upper.find(part) != std::string::npos; };
  if (has("INT") || has("CHAR") || has("CLOB") || has("TEXT") || has("BLOB") || upper.empty()) {
    return false;
  }
  return has("REAL") || has("FLOA") || has("DOUB");
}

// A stored record's field of serial type `type` at `p` (before `end`) as SQL reads it, or
// false for what SQL would read otherwise (a reserved type, a field past the record).
bool Field(uint64_t type, const uint8_t* p, const uint8_t* end, bool real_affinity,
           ValueView* view) {
  *view = ValueView();
  if (type == 0) return true;
  if (type <= 6 || type == 8 || type == 9) {
    static constexpr int kBytes[] = {0, 1, 2, 3, 4, 6, 8};
    int64_t v = 0;
    if (type == 9) {
      v = 1;
    } else if (type <= 6) {
      const int n = kBytes[type];
      if (end - p < n) return false;
      uint64_t u = p[0] & 0x80 ? ~uint64_t{0} : 0;  // sign-extended big-endian
      for (int i = 0; i < n; ++i) u = (u << 8) | p[i];
      std::memcpy(&v, &u, sizeof v);
    }
    if (real_affinity) {
      view->type = ValueView::Type::kReal;
      view->real = static_cast<double>(v);
    } else {
      view->type = ValueView::Type::kInteger;
      view->integer = v;
    }
    return true;
  }
  if (type == 7) {
    if (end - p < 8) return false;
    uint64_t u = 0;
    for (int i = 0; i < 8; ++i) u = (u << 8) | p[i];
    view->type = ValueView::Type::kReal;
    std::memcpy(&view->real, &u, sizeof u);
    // SQL reads a stored NaN as NULL.
    if (view->real != view->real) *view = ValueView();
    return true;
  }
  if (type < 12) return false;
  const uint64_t n = (type - 12) / 2;
  if (static_cast<uint64_t>(end - p) < n) return false;
  view->type = ValueView::Type::kText;
  view->text = std::string_view(reinterpret_cast<const char*>(p), n);
  return true;
}

// The bytes of a serial type's field.
uint64_t FieldBytes(uint64_t type) {
  static constexpr uint64_t kBytes[] = {0, 1, 2, 3, 4, 6, 8, 8, 0, 0, 0, 0};
  return type < 12 ? kBytes[type] : (type - 12) / 2;
}

// Reads the rows of `ids` where their cells are (`at`), each decoded from a read of its own
// cell instead of a copy of its page; a row whose cell is unknown (0), or does not decode as
// the row it should be, is read through SQL by its ID.
class RecordsAtCursor : public RowCursor {
 public:
  RecordsAtCursor(sqlite3* db, TableFile table_file, std::vector<int> record_index,
                  std::vector<bool> real_affinity, std::vector<int64_t> ids,
                  std::vector<uint64_t> at, std::string by_id_sql, std::string what,
                  int64_t* decoded)
      : db_(db),
        t_(std::move(table_file)),
        record_index_(std::move(record_index)),
        real_affinity_(std::move(real_affinity)),
        ids_(std::move(ids)),
        at_(std::move(at)),
        by_id_sql_(std::move(by_id_sql)),
        what_(std::move(what)),
        decoded_(decoded) {}

  bool NextView(std::vector<ValueView>* row) override {
    while (status_.ok() && next_ < ids_.size()) {
      const size_t i = next_++;
      if (at_[i] == kRowAbsent) continue;
      row->assign(record_index_.size(), ValueView());
      if (at_[i] != 0 && Decode(ids_[i], at_[i], row)) {
        if (decoded_ != nullptr) ++*decoded_;
        return true;
      }
      if (ReadById(ids_[i], row)) return true;
    }
    return false;
  }
  Status status() const override { return status_; }

 private:
  // The cell at `at`: its payload size, rowid and record, the record within its page.
  bool Decode(int64_t id, uint64_t place, std::vector<ValueView>* row) {
    const uint64_t at = place & kCellOffsetMask;
    const uint64_t in_page = at % t_.page_size;
    if (at / t_.page_size >= t_.pages || in_page >= t_.usable) return false;
    // The cell's own length when its place holds it; else most cells fit in 4 KiB. A longer
    // one is read again whole.
    const uint64_t length = place >> kCellLengthShift;
    size_t want = std::min<uint64_t>(t_.usable - in_page, length != 0 ? length : 4096);
    for (int attempt = 0; attempt < 2; ++attempt) {
      buffer_.resize(want);
      if (!ReadAt(t_.file, buffer_.data(), want, at)) {
        return false;
      }
      const uint8_t* p = buffer_.data();
      const uint8_t* end = p + want;
      uint64_t size = 0;
      uint64_t rowid = 0;
      if (!Varint(&p, end, &size) || !Varint(&p, end, &rowid)) return false;
      if (static_cast<int64_t>(rowid) != id || size > t_.usable - 35) return false;  // overflows
      const uint64_t header_bytes = static_cast<uint64_t>(p - buffer_.data());
      if (header_bytes + size > t_.usable - in_page) return false;
      if (header_bytes + size > want) {
        if (attempt == 1) return false;
        want = header_bytes + size;
        continue;
      }
      return Fields(id, p, p + size, row);
    }
    return false;
  }

  bool Fields(int64_t id, const uint8_t* record, const uint8_t* end, std::vector<ValueView>* row) {
    const uint8_t* p = record;
    uint64_t header_size = 0;
    if (!Varint(&p, end, &header_size) || header_size > static_cast<uint64_t>(end - record)) {
      return false;
    }
    const uint8_t* header_end = record + header_size;
    const uint8_t* body = header_end;
    types_.clear();
    offsets_.clear();
    while (p < header_end) {
      uint64_t type = 0;
      if (!Varint(&p, header_end, &type)) return false;
      types_.push_back(type);
      offsets_.push_back(body);
      body += FieldBytes(type);
      if (body > end) return false;
    }
    for (size_t c = 0; c < record_index_.size(); ++c) {
      const int index = record_index_[c];
      ValueView& view = (*row)[c];
      if (index == t_.id_index) {
        view.type = ValueView::Type::kInteger;
        view.integer = id;
        continue;
      }
      // A column added after the row was written is not in it: SQL reads its default.
      if (static_cast<size_t>(index) >= types_.size()) return false;
      if (!Field(types_[index], offsets_[index], end, real_affinity_[c], &view)) return false;
    }
    return true;
  }

  bool ReadById(int64_t id, std::vector<ValueView>* row) {
    if (by_id_.get() == nullptr) {
      sqlite3_stmt* statement = nullptr;
      if (sqlite3_prepare_v2(db_, by_id_sql_.c_str(), -1, &statement, nullptr) != SQLITE_OK) {
        sqlite3_finalize(statement);
        status_ = Status::Unavailable(fmt::format("{}: {}", what_, sqlite3_errmsg(db_)));
        return false;
      }
      by_id_ = SqliteStatement(db_, statement);
    }
    by_id_.Reset();
    by_id_.Bind(1, Value(id));
    Status status;
    if (!by_id_.Step(&status)) {
      if (!status.ok()) status_ = status.WithContext(what_);
      return false;
    }
    // Held as values: the statement's own buffers move on with the next read.
    held_.clear();
    for (size_t c = 0; c < record_index_.size(); ++c) {
      held_.push_back(by_id_.Column(static_cast<int>(c)));
    }
    for (size_t c = 0; c < held_.size(); ++c) (*row)[c] = ViewOf(held_[c]);
    return true;
  }

  sqlite3* db_;
  TableFile t_;
  std::vector<int> record_index_;
  std::vector<bool> real_affinity_;
  std::vector<int64_t> ids_;
  std::vector<uint64_t> at_;
  std::string by_id_sql_;
  std::string what_;
  SqliteStatement by_id_;
  int64_t* decoded_;
  size_t next_ = 0;
  std::vector<uint8_t> buffer_;
  std::vector<uint64_t> types_;
  std::vector<const uint8_t*> offsets_;
  std::vector<Value> held_;
  Status status_;
};

// Where rows are stored, found by descending the table's b-tree from its root, for rows no
// digest placed (a tracked compare's changed rows): each interior page is read whole once; of a
// leaf only its header and cell pointers and, unless its rowids are one consecutive run, the
// head of each cell a binary search looks at. A leaf whose N cells lie between separators N
// apart holds every rowid between them, so row `id` is its cell id - low - 1. Anything not
// found simply (a page that does not read or parse, an ID no leaf holds) is 0, which the
// cursor reads through SQL: a wrong place costs a read, never a wrong row (Decode checks the
// rowid).
class CellFinder {
 public:
  explicit CellFinder(const TableFile& t) : t_(t) {}

  // CellPlace of row `id`'s cell (its length not known), or 0.
  uint64_t Find(int64_t id) {
    uint32_t page = t_.root;
    std::optional<int64_t> low;   // every rowid under `page` is above it
    std::optional<int64_t> high;  // and at most this
    for (int depth = 0; depth <= kMaxDepth; ++depth) {
      if (page == 0 || page > t_.pages) return 0;
      const Interior* interior = nullptr;
      if (auto cached = interiors_.find(page); cached != interiors_.end()) {
        interior = &cached->second;
      } else {
        if (!ReadHead(page, kHeadBytes)) return 0;
        const uint8_t type = head_[PageHeaderAt(page)];
        if (type == kLeafTablePage) return InLeaf(page, id, low, high);
        if (type != kInteriorTablePage) return 0;
        interior = Parse(page);
        if (interior == nullptr) return 0;
      }
      // The child whose separator is the first at or above `id`, else the rightmost.
      const auto next = std::lower_bound(interior->keys.begin(), interior->keys.end(), id);
      const auto i = static_cast<size_t>(next - interior->keys.begin());
      if (i > 0) low = interior->keys[i - 1];
      if (i < interior->keys.size()) high = interior->keys[i];
      page = interior->children[i];
    }
    return 0;
  }

 private:
  static constexpr size_t kHeadBytes = 512;
  static constexpr uint32_t kBoundedCells = 256;

  struct Interior {
    std::vector<int64_t> keys;       // ascending
    std::vector<uint32_t> children;  // one more than keys: the last is the rightmost pointer
  };

  uint64_t Offset(uint32_t page) const { return uint64_t{page - 1} * t_.page_size; }

  bool ReadHead(uint32_t page, size_t bytes) {
    head_.resize(std::min<size_t>(bytes, t_.usable));
    return ReadAt(t_.file, head_.data(), head_.size(), Offset(page));
  }

  // Reads interior page `page` whole and keeps its separators and children, or nullptr.
  const Interior* Parse(uint32_t page) {
    std::vector<uint8_t> bytes(t_.usable);
    if (!ReadAt(t_.file, bytes.data(), bytes.size(), Offset(page))) return nullptr;
    Interior interior;
    if (InteriorCells(bytes.data(), page, t_.usable, &interior.children, &interior.keys) !=
        nullptr) {
      return nullptr;
    }
    return &interiors_.emplace(page, std::move(interior)).first->second;
  }

  // The rowid of the cell at `at` in leaf `page`, or nullopt.
  std::optional<int64_t> RowidAt(uint32_t page, uint32_t at) {
    uint8_t bytes[18];
    const size_t n = std::min<size_t>(sizeof bytes, t_.usable - at);
    if (!ReadAt(t_.file, bytes, n, Offset(page) + at)) return std::nullopt;
    const uint8_t* p = bytes;
    uint64_t size = 0;
    uint64_t rowid = 0;
    if (!Varint(&p, bytes + n, &size) || !Varint(&p, bytes + n, &rowid)) return std::nullopt;
    return static_cast<int64_t>(rowid);
  }

  // Row `id` in leaf `page` (its head in head_), its rowids above `low` and at most `high`.
  uint64_t InLeaf(uint32_t page, int64_t id, std::optional<int64_t> low,
                  std::optional<int64_t> high) {
    const size_t h = PageHeaderAt(page);
    const uint32_t cells = Be16(&head_[h + 3]);
    const size_t pointers_end = h + 8 + size_t{cells} * 2;
    if (cells == 0 || pointers_end > t_.usable) return 0;
    if (pointers_end > head_.size() && !ReadHead(page, pointers_end)) return 0;
    auto pointer = [&](size_t i) { return Be16(&head_[h + 8 + i * 2]); };
    // The cell ends where the next cell up the page starts, or at the page's end: a bound on
    // its length (free space between them only makes the read longer), so the cursor reads
    // about the cell instead of 4 KiB. Past kBoundedCells cells (small rows) the scan of the
    // pointers would cost more than the bytes it saves; the length is then left unknown.
    auto place = [&](uint32_t at) -> uint64_t {
      if (at >= t_.usable) return 0;
      uint64_t length = 0;
      if (cells <= kBoundedCells) {
        uint32_t next = t_.usable;
        for (size_t i = 0; i < cells; ++i) {
          const uint32_t other = pointer(i);
          if (other > at && other < next) next = other;
        }
        length = next - at;
      }
      return CellPlace(Offset(page) + at, length);
    };
    if (low && high && *high > *low &&
        static_cast<uint64_t>(*high) - static_cast<uint64_t>(*low) == cells) {
      return place(pointer(
          static_cast<size_t>(static_cast<uint64_t>(id) - static_cast<uint64_t>(*low) - 1)));
    }
    size_t first = 0;
    size_t last = cells;
    while (first < last) {
      const size_t middle = first + (last - first) / 2;
      const uint32_t at = pointer(middle);
      if (at >= t_.usable) return 0;
      const std::optional<int64_t> rowid = RowidAt(page, at);
      if (!rowid) return 0;
      if (*rowid == id) return place(at);
      if (*rowid < id) {
        first = middle + 1;
      } else {
        last = middle;
      }
    }
    return 0;
  }

  const TableFile& t_;
  std::unordered_map<uint32_t, Interior> interiors_;
  std::vector<uint8_t> head_;
};

}  // namespace

Result<std::vector<RowDigest>> ReadRowDigests(sqlite3* db, const std::string& database_path,
                                              const std::string& table,
                                              const std::string& id_column) {
  const std::string what =
      fmt::format("{}: table {} is not digested from its pages", database_path, table);
  auto invalid = [&](const std::string& why) -> Status {
    return Status::InvalidArgument(fmt::format("{}: {}", what, why));
  };
  auto opened = OpenTableFile(db, table, id_column, invalid);
  if (!opened.ok()) return opened.status();
  const TableFile& t = *opened;
  // The same bytes read as other values under another definition (a column added with a
  // default, another affinity): the table's CREATE statement is folded into every digest.
  const uint64_t schema_seed = XXH3_64bits(t.schema.data(), t.schema.size());
  TableReader reader(t.file, t.page_size, t.usable, t.pages, t.id_index, schema_seed, what);
  std::vector<RowDigest> digests;
  ENVSYNC_RETURN_IF_ERROR(reader.Read(t.root, &digests));
  return digests;
}

Result<std::unique_ptr<RowCursor>> ReadRecordsAt(sqlite3* db, const std::string& database_path,
                                                 const std::string& table,
                                                 const std::string& id_column,
                                                 const std::vector<std::string>& columns,
                                                 std::vector<int64_t> ids, std::vector<uint64_t> at,
                                                 int64_t* decoded) {
  const std::string what =
      fmt::format("{}: rows of table {} are not read where they are stored", database_path, table);
  auto invalid = [&](const std::string& why) -> Status {
    return Status::InvalidArgument(fmt::format("{}: {}", what, why));
  };
  if (!at.empty() && ids.size() != at.size()) {
    return invalid("the IDs and their places differ in number");
  }
  auto opened = OpenTableFile(db, table, id_column, invalid);
  if (!opened.ok()) return opened.status();
  if (at.empty()) {
    CellFinder finder(*opened);
    at.reserve(ids.size());
    for (int64_t id : ids) at.push_back(finder.Find(id));
  }
  // Text is read as stored: only a UTF-8 file stores it as SQL hands it out.
  std::string encoding;
  ENVSYNC_RETURN_IF_ERROR(
      EachRow(db, "PRAGMA encoding", table, [&](sqlite3_stmt* s) { encoding = Text(s, 0); }));
  if (encoding != "UTF-8") return invalid(fmt::format("its text is stored as {}", encoding));
  std::vector<int> record_index;
  std::vector<bool> real_affinity;
  std::string sql = "SELECT ";
  for (const std::string& column : columns) {
    const auto found = std::find(opened->names.begin(), opened->names.end(), column);
    if (found == opened->names.end()) return invalid(fmt::format("{} is not stored", column));
    const auto index = static_cast<size_t>(found - opened->names.begin());
    record_index.push_back(static_cast<int>(index));
    real_affinity.push_back(HasRealAffinity(opened->types[index]));
    if (record_index.size() > 1) sql += ", ";
    sql += QuoteIdentifier(column);
  }
  sql += " FROM " + QuoteIdentifier(table) + " WHERE " + QuoteIdentifier(id_column) + " = ?1";
  return std::unique_ptr<RowCursor>(
      new RecordsAtCursor(db, std::move(*opened), std::move(record_index), std::move(real_affinity),
                          std::move(ids), std::move(at), std::move(sql), what, decoded));
}

}  // namespace envsync::store
