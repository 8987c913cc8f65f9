#include "store/sqlite/sqlite_row_digests.h"

#include <gtest/gtest.h>
#include <sqlite3.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include "tests/store/sqlite_exec.h"

namespace envsync::store {
namespace {

namespace fs = std::filesystem;

// A scratch SQLite file; `Exec` runs SQL on a connection of its own.
class RowDigestsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("envsync-row-digests-" + std::to_string(::getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override {
    if (db_ != nullptr) sqlite3_close(db_);
    fs::remove_all(dir_);
  }

  std::string Path(const std::string& name) const { return (dir_ / name).string(); }

  static void Exec(const std::string& path, const std::string& sql) { ExecSql(path, sql); }

  // The digests of `table` read inside a read transaction of a fresh read-only connection.
  Result<std::vector<RowDigest>> Digests(const std::string& path, const std::string& table,
                                         const std::string& id = "id") {
    if (db_ != nullptr) sqlite3_close(db_);
    db_ = nullptr;
    EXPECT_EQ(sqlite3_open_v2(path.c_str(), &db_, SQLITE_OPEN_READONLY, nullptr), SQLITE_OK);
    EXPECT_EQ(
        sqlite3_exec(db_, "BEGIN; SELECT count(*) FROM sqlite_master", nullptr, nullptr, nullptr),
        SQLITE_OK);
    auto digests = ReadRowDigests(db_, path, table, id);
    sqlite3_exec(db_, "COMMIT", nullptr, nullptr, nullptr);
    return digests;
  }

  // The rowids SQLite itself lists, in order.
  static std::vector<int64_t> RowIds(const std::string& path, const std::string& table) {
    sqlite3* db = nullptr;
    sqlite3_open(path.c_str(), &db);
    sqlite3_stmt* statement = nullptr;
    sqlite3_prepare_v2(db, ("SELECT rowid FROM " + table + " ORDER BY rowid").c_str(), -1,
                       &statement, nullptr);
    std::vector<int64_t> ids;
    while (sqlite3_step(statement) == SQLITE_ROW) ids.push_back(sqlite3_column_int64(statement, 0));
    sqlite3_finalize(statement);
    sqlite3_close(db);
    return ids;
  }

  static std::map<int64_t, uint64_t> ById(const std::vector<RowDigest>& digests) {
    std::map<int64_t, uint64_t> by_id;
    for (const RowDigest& d : digests) by_id[d.id] = d.digest;
    return by_id;
  }

  // The rows SQL reads from `table` (on db_, in its open transaction) for `ids`, in ID order.
  std::vector<std::vector<Value>> SqlRows(const std::string& table,
                                          const std::vector<std::string>& columns,
                                          const std::vector<int64_t>& ids) {
    std::string sql = "SELECT ";
    for (size_t c = 0; c < columns.size(); ++c) sql += (c > 0 ? ", " : "") + columns[c];
    sql += " FROM " + table + " WHERE id IN (";
    for (size_t i = 0; i < ids.size(); ++i) sql += (i > 0 ? "," : "") + std::to_string(ids[i]);
    sql += ") ORDER BY id";
    sqlite3_stmt* statement = nullptr;
    EXPECT_EQ(sqlite3_prepare_v2(db_, sql.c_str(), -1, &statement, nullptr), SQLITE_OK);
    std::vector<std::vector<Value>> rows;
    while (sqlite3_step(statement) == SQLITE_ROW) {
      std::vector<Value>& row = rows.emplace_back();
      for (int c = 0; c < static_cast<int>(columns.size()); ++c) {
        switch (sqlite3_column_type(statement, c)) {
          case SQLITE_NULL:
            row.emplace_back();
            break;
          case SQLITE_INTEGER:
            row.emplace_back(static_cast<int64_t>(sqlite3_column_int64(statement, c)));
            break;
          case SQLITE_FLOAT:
            row.emplace_back(sqlite3_column_double(statement, c));
            break;
          default:
            row.emplace_back(
                std::string(static_cast<const char*>(sqlite3_column_blob(statement, c)),
                            static_cast<size_t>(sqlite3_column_bytes(statement, c))));
        }
      }
    }
    sqlite3_finalize(statement);
    return rows;
  }

  // Every row `cursor` gives, as values.
  static std::vector<std::vector<Value>> CursorRows(RowCursor& cursor) {
    std::vector<std::vector<Value>> rows;
    std::vector<ValueView> row;
    while (cursor.NextView(&row)) {
      std::vector<Value>& values = rows.emplace_back();
      for (const ValueView& view : row) values.push_back(ToValue(view));
    }
    EXPECT_TRUE(cursor.status().ok()) << cursor.status().message();
    return rows;
  }

  // Rows of every shape: small, NULLs, reals, negative and huge rowids, text and BLOBs long
  // enough to spill into chains of overflow pages, some rows deleted again.
  void MakeTable(const std::string& path, int page_size) {
    Exec(path, "PRAGMA page_size = " + std::to_string(page_size) +
                   "; CREATE TABLE pages (id INTEGER PRIMARY KEY, slug TEXT UNIQUE, body TEXT, "
                   "n REAL, data BLOB);"
                   "WITH RECURSIVE k(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM k WHERE i < 3000) "
                   "INSERT INTO pages SELECT i * 7 % 3001 + 1, 'slug-' || i, "
                   "  substr(hex(zeroblob(i % 700)), 1, i % 1300), i / 3.0, "
                   "  CASE WHEN i % 97 = 0 THEN randomblob(20000 + i * 13) END FROM k;"
                   "INSERT INTO pages VALUES (-5, 'negative', NULL, NULL, NULL);"
                   "INSERT INTO pages VALUES (9223372036854775807, 'last', 'x', 1.5, x'00ff');"
                   "DELETE FROM pages WHERE id % 11 = 0;");
  }

  fs::path dir_;
  sqlite3* db_ = nullptr;
};

// Every row SQLite lists is digested, in rowid order, on small, default and large pages.
TEST_F(RowDigestsTest, DigestsEveryRowInRowidOrderOnEveryPageSize) {
  for (int page_size : {512, 4096, 65536}) {
    const std::string path = Path("pages-" + std::to_string(page_size) + ".db");
    MakeTable(path, page_size);
    auto digests = Digests(path, "pages");
    ASSERT_TRUE(digests.ok()) << digests.status().message();
    std::vector<int64_t> ids;
    for (const RowDigest& d : *digests) ids.push_back(d.id);
    EXPECT_EQ(ids, RowIds(path, "pages")) << "page size " << page_size;
    EXPECT_GT(ids.size(), 2500u);
  }
}

// The rows a plan reads again, read where the digests found their cells: exactly what SQL reads
// for every shape of value (integers of every width, reals, an integral real in a REAL column,
// text, BLOBs, NULLs, huge and negative rowids), on every page size. A row that spills into
// overflow pages, one written before a column was added, one whose place is unknown or wrong,
// is read through SQL; an ID the side does not have is skipped.
TEST_F(RowDigestsTest, RowsReadWhereTheirCellsAreAreWhatSqlReads) {
  const std::vector<std::string> columns = {"id",   "slug",  "body",  "n",
                                            "data", "price", "score", "added"};
  for (int page_size : {512, 4096, 65536}) {
    const std::string path = Path("cells-" + std::to_string(page_size) + ".db");
    MakeTable(path, page_size);
    Exec(path,
         "ALTER TABLE pages ADD COLUMN price REAL;"
         "ALTER TABLE pages ADD COLUMN score NUMERIC;"
         "UPDATE pages SET price = id % 5, score = id * 0.5 WHERE id % 3 = 0;"
         "UPDATE pages SET price = -2.25, body = 1234567890123 WHERE id % 3 = 1;"
         "UPDATE pages SET n = -(1 << 40), slug = -70000 - id WHERE id % 7 = 1;"
         "ALTER TABLE pages ADD COLUMN added TEXT DEFAULT 'later';"
         "UPDATE pages SET added = 'set ' || id WHERE id % 4 = 0;");
    auto digests = Digests(path, "pages");
    ASSERT_TRUE(digests.ok()) << digests.status().message();
    // Every other row, an ID no row has, a row with its place forgotten, one with a wrong place.
    std::vector<int64_t> ids;
    std::vector<uint64_t> at;
    for (size_t i = 0; i < digests->size(); i += 2) {
      ids.push_back((*digests)[i].id);
      at.push_back((*digests)[i].at);
      if (i == 10) {
        ids.push_back((*digests)[i].id + 1000000);  // no row has it
        at.push_back(kRowAbsent);
      }
    }
    // The IDs ascending, as a plan lists them.
    std::vector<size_t> order(ids.size());
    for (size_t i = 0; i < order.size(); ++i) order[i] = i;
    std::sort(order.begin(), order.end(), [&](size_t a, size_t b) { return ids[a] < ids[b]; });
    std::vector<int64_t> sorted_ids;
    std::vector<uint64_t> sorted_at;
    for (size_t i : order) {
      sorted_ids.push_back(ids[i]);
      sorted_at.push_back(at[i]);
    }
    // Two rows that would decode (all their columns stored, no overflow): one's place
    // forgotten, the other given a third row's cell.
    std::vector<size_t> whole;
    for (size_t i = 0; i < sorted_ids.size() && whole.size() < 3; ++i) {
      if (sorted_ids[i] % 4 == 0 && sorted_at[i] != 0 && sorted_at[i] != kRowAbsent) {
        whole.push_back(i);
      }
    }
    ASSERT_EQ(whole.size(), 3u);
    sorted_at[whole[0]] = 0;
    sorted_at[whole[1]] = sorted_at[whole[2]];
    // A read transaction again (Digests ended its own; nothing wrote since).
    ASSERT_EQ(
        sqlite3_exec(db_, "BEGIN; SELECT count(*) FROM sqlite_master", nullptr, nullptr, nullptr),
        SQLITE_OK);
    int64_t decoded = 0;
    auto cursor = ReadRecordsAt(db_, path, "pages", "id", columns, sorted_ids, sorted_at, &decoded);
    ASSERT_TRUE(cursor.ok()) << cursor.status().message();
    const std::vector<std::vector<Value>> read = CursorRows(**cursor);
    cursor->reset();
    const std::vector<std::vector<Value>> want = SqlRows("pages", columns, sorted_ids);
    sqlite3_exec(db_, "COMMIT", nullptr, nullptr, nullptr);
    ASSERT_EQ(read, want) << "page size " << page_size;
    const auto rows = static_cast<int64_t>(read.size());
    int64_t reals_from_integers = 0;
    int64_t defaults = 0;
    for (const std::vector<Value>& row : read) {
      const auto* price = std::get_if<double>(&row[5]);
      if (price != nullptr && *price == static_cast<double>(static_cast<int64_t>(*price))) {
        ++reals_from_integers;
      }
      if (row[7] == Value(std::string("later"))) ++defaults;
    }
    EXPECT_EQ(rows, static_cast<int64_t>(sorted_ids.size()) - 1) << "the made-up ID is skipped";
    EXPECT_GT(reals_from_integers, 100);
    // Rows written before `added` read its default through SQL, as do the unknown place, the
    // wrong one and the overflowing rows; the rest was decoded from the cells.
    EXPECT_GT(defaults, 100);
    EXPECT_GT(decoded, 100) << "page size " << page_size;
    EXPECT_LE(decoded, rows - defaults - 2) << "page size " << page_size;
  }
}

// Rows asked without places (a tracked compare's, a sync's) are found by descending the
// table's b-tree, on every page size: a leaf of consecutive rowids by its separators, another
// by a binary search of its cells. What they read is what SQL reads; an ID no row has is
// skipped; every row that fits its page is decoded from its cell, not read through SQL.
TEST_F(RowDigestsTest, RowsFoundByDescendingTheTreeAreWhatSqlReads) {
  for (int page_size : {512, 4096, 65536}) {
    const std::string path = Path("descend-" + std::to_string(page_size) + ".db");
    MakeTable(path, page_size);
    // Rows 1..20000, consecutive but for a run where every third is gone.
    Exec(path,
         "CREATE TABLE dense (id INTEGER PRIMARY KEY, v TEXT, n INTEGER);"
         "WITH RECURSIVE k(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM k WHERE i < 20000) "
         "INSERT INTO dense SELECT i, 'v' || i, i * 3 FROM k;"
         "DELETE FROM dense WHERE id BETWEEN 9000 AND 11000 AND id % 3 = 0;");
    ASSERT_EQ(sqlite3_open_v2(path.c_str(), &db_, SQLITE_OPEN_READONLY, nullptr), SQLITE_OK);
    for (const auto& [table, columns] :
         {std::pair<std::string, std::vector<std::string>>{"dense", {"id", "v", "n"}},
          {"pages", {"id", "slug", "body", "n", "data"}}}) {
      std::vector<int64_t> ids = {-100, 0};  // none has these
      for (int64_t id = 1; id <= 20000; id += 7) ids.push_back(id);
      ids.push_back(int64_t{1} << 40);
      ids.push_back(9223372036854775807);  // pages has it
      ASSERT_EQ(
          sqlite3_exec(db_, "BEGIN; SELECT count(*) FROM sqlite_master", nullptr, nullptr, nullptr),
          SQLITE_OK);
      int64_t decoded = 0;
      auto cursor = ReadRecordsAt(db_, path, table, "id", columns, ids, {}, &decoded);
      ASSERT_TRUE(cursor.ok()) << cursor.status().message();
      const std::vector<std::vector<Value>> read = CursorRows(**cursor);
      cursor->reset();
      const std::vector<std::vector<Value>> want = SqlRows(table, columns, ids);
      sqlite3_exec(db_, "COMMIT", nullptr, nullptr, nullptr);
      ASSERT_EQ(read, want) << table << ", page size " << page_size;
      ASSERT_GT(want.size(), 300u);
      if (table == "dense") {
        EXPECT_EQ(decoded, static_cast<int64_t>(want.size())) << "page size " << page_size;
      } else if (page_size > 512) {
        EXPECT_GT(decoded, 300) << "page size " << page_size;  // the rest overflow their page
      }
    }
    sqlite3_close(db_);
    db_ = nullptr;
  }
}

// A connection in a write transaction holds its changes in its own cache, not (all) in the
// file: its rows are neither digested nor read from their cells (the caller reads them through
// SQL, which sees the changes), whether or not it has written yet.
TEST_F(RowDigestsTest, AWritingConnectionIsReadThroughSql) {
  const std::string path = Path("writing.db");
  MakeTable(path, 4096);
  ASSERT_EQ(sqlite3_open(path.c_str(), &db_), SQLITE_OK);
  for (const char* begin :
       {"BEGIN IMMEDIATE", "BEGIN; UPDATE pages SET slug = 'moved' WHERE id = 1"}) {
    ASSERT_EQ(sqlite3_exec(db_, begin, nullptr, nullptr, nullptr), SQLITE_OK) << begin;
    auto digests = ReadRowDigests(db_, path, "pages", "id");
    EXPECT_EQ(digests.status().code(), Status::Code::kInvalidArgument) << begin;
    auto cursor = ReadRecordsAt(db_, path, "pages", "id", {"id", "slug"}, {1, 2}, {});
    EXPECT_EQ(cursor.status().code(), Status::Code::kInvalidArgument) << begin;
    EXPECT_NE(cursor.status().message().find("write transaction"), std::string::npos)
        << cursor.status().message();
    ASSERT_EQ(sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr), SQLITE_OK);
  }
}

// A digest depends on the row's stored bytes alone: the same rows in another file (other page
// size, after VACUUM) give the same digests; an edit moves exactly its row's digest, whether the
// row fits in its page or spills into overflow pages.
TEST_F(RowDigestsTest, ARowsDigestMovesWithItsContentAndNothingElse) {
  const std::string small = Path("small.db");
  const std::string large = Path("large.db");
  MakeTable(small, 1024);
  MakeTable(large, 65536);
  Exec(large, "VACUUM");
  // The random BLOBs differ between the files: make them equal first.
  Exec(small, "ATTACH '" + large +
                  "' AS l; UPDATE pages SET data = (SELECT data FROM l.pages p "
                  "WHERE p.id = pages.id)");
  auto a = Digests(small, "pages");
  auto b = Digests(large, "pages");
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ(ById(*a), ById(*b));

  int64_t overflowing = 0;
  {
    sqlite3* db = nullptr;
    sqlite3_open(small.c_str(), &db);
    sqlite3_stmt* s = nullptr;
    sqlite3_prepare_v2(db, "SELECT id FROM pages WHERE length(data) > 20000 LIMIT 1", -1, &s,
                       nullptr);
    ASSERT_EQ(sqlite3_step(s), SQLITE_ROW);
    overflowing = sqlite3_column_int64(s, 0);
    sqlite3_finalize(s);
    sqlite3_close(db);
  }
  // One byte in the middle of an overflow chain, and one title in an inline row.
  Exec(small,
       "UPDATE pages SET data = substr(data, 1, 15000) || x'00' || substr(data, 15002) "
       "WHERE id = " +
           std::to_string(overflowing) +
           "; UPDATE pages SET slug = 'edited' "
           "WHERE id = 8");
  auto edited = Digests(small, "pages");
  ASSERT_TRUE(edited.ok());
  std::map<int64_t, uint64_t> before = ById(*a);
  std::map<int64_t, uint64_t> after = ById(*edited);
  ASSERT_EQ(before.size(), after.size());
  std::vector<int64_t> moved;
  for (const auto& [id, digest] : after) {
    if (before.at(id) != digest) moved.push_back(id);
  }
  std::vector<int64_t> expected = {8, overflowing};
  std::sort(expected.begin(), expected.end());
  EXPECT_EQ(moved, expected);
  // Writing back what was there gives back the digest.
  Exec(small,
       "UPDATE pages SET slug = (SELECT slug FROM (SELECT 'slug-' || i AS slug, "
       "i * 7 % 3001 + 1 AS id FROM (WITH RECURSIVE k(i) AS (SELECT 1 UNION ALL SELECT i "
       "+ 1 FROM k WHERE i < 3000) SELECT i FROM k)) s WHERE s.id = 8) WHERE id = 8");
  auto restored = Digests(small, "pages");
  ASSERT_TRUE(restored.ok());
  EXPECT_EQ(ById(*restored).at(8), before.at(8));
}

// The same stored bytes read under another definition are other values: a column added with a
// default moves every digest, though no record was rewritten.
TEST_F(RowDigestsTest, ASchemaChangeMovesEveryDigest) {
  const std::string path = Path("schema.db");
  Exec(path,
       "CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT); INSERT INTO t VALUES (1, 'a'), "
       "(2, 'b')");
  auto before = Digests(path, "t");
  Exec(path, "ALTER TABLE t ADD COLUMN w TEXT DEFAULT 'x'");
  auto after = Digests(path, "t");
  ASSERT_TRUE(before.ok() && after.ok());
  ASSERT_EQ(after->size(), 2u);
  EXPECT_NE((*before)[0].digest, (*after)[0].digest);
  EXPECT_NE((*before)[1].digest, (*after)[1].digest);
}

// Two rows swapping their contents both move (a row's digest is seeded with its rowid).
TEST_F(RowDigestsTest, RowsSwappingContentsBothMove) {
  const std::string path = Path("swap.db");
  Exec(path,
       "CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT); INSERT INTO t VALUES (1, 'a'), "
       "(2, 'b'), (3, 'c')");
  auto before = Digests(path, "t");
  Exec(path, "UPDATE t SET v = CASE id WHEN 1 THEN 'b' WHEN 2 THEN 'a' ELSE v END");
  auto after = Digests(path, "t");
  ASSERT_TRUE(before.ok() && after.ok());
  EXPECT_NE((*before)[0].digest, (*after)[0].digest);
  EXPECT_NE((*before)[1].digest, (*after)[1].digest);
  EXPECT_EQ((*before)[2].digest, (*after)[2].digest);
}

// What cannot be read from the pages is refused with InvalidArgument naming the table, so the
// caller reads it through SQL: an ID that is not the rowid, a WITHOUT ROWID table, no read
// transaction, a WAL holding frames, a damaged page.
TEST_F(RowDigestsTest, RefusesWhatThePagesCannotSay) {
  const std::string path = Path("shapes.db");
  Exec(path,
       "CREATE TABLE text_id (id TEXT PRIMARY KEY, v); INSERT INTO text_id VALUES ('1', 'x');"
       "CREATE TABLE desc_id (id INTEGER PRIMARY KEY DESC, v); INSERT INTO desc_id VALUES (1, 2);"
       "CREATE TABLE no_pk (id INTEGER, v); INSERT INTO no_pk VALUES (1, 2);"
       "CREATE TABLE two_pk (id INTEGER, v INTEGER, PRIMARY KEY (id, v));"
       "CREATE TABLE without (id INTEGER PRIMARY KEY, v) WITHOUT ROWID;"
       "CREATE TABLE fine (id INTEGER PRIMARY KEY, v); INSERT INTO fine VALUES (1, 2)");
  for (const char* table : {"text_id", "desc_id", "no_pk", "two_pk", "without", "missing"}) {
    auto digests = Digests(path, table);
    ASSERT_FALSE(digests.ok()) << table;
    EXPECT_EQ(digests.status().code(), Status::Code::kInvalidArgument) << table;
    EXPECT_NE(digests.status().message().find(table), std::string::npos)
        << digests.status().message();
  }
  EXPECT_TRUE(Digests(path, "fine").ok());
  // Another column than the rowid as the ID.
  EXPECT_EQ(Digests(path, "fine", "v").status().code(), Status::Code::kInvalidArgument);

  // No read transaction.
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK);
  auto outside = ReadRowDigests(db, path, "fine", "id");
  EXPECT_EQ(outside.status().code(), Status::Code::kInvalidArgument);
  sqlite3_close(db);

  // WAL mode: read while the WAL is empty, refused while it holds frames.
  const std::string wal = Path("wal.db");
  Exec(wal,
       "PRAGMA journal_mode = WAL; CREATE TABLE t (id INTEGER PRIMARY KEY, v);"
       "INSERT INTO t VALUES (1, 'a'); PRAGMA wal_checkpoint(TRUNCATE)");
  sqlite3* writer = nullptr;
  ASSERT_EQ(sqlite3_open(wal.c_str(), &writer), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(writer, "PRAGMA wal_checkpoint(TRUNCATE)", nullptr, nullptr, nullptr),
            SQLITE_OK);
  auto empty_wal = Digests(wal, "t");
  EXPECT_TRUE(empty_wal.ok()) << empty_wal.status().message();
  ASSERT_EQ(sqlite3_exec(writer, "INSERT INTO t VALUES (2, 'b')", nullptr, nullptr, nullptr),
            SQLITE_OK);
  auto with_frames = Digests(wal, "t");
  EXPECT_EQ(with_frames.status().code(), Status::Code::kInvalidArgument);
  EXPECT_NE(with_frames.status().message().find("WAL"), std::string::npos);
  // Through a symlink the WAL keeps the real file's name: still found, still refused.
  const std::string link = Path("link.db");
  fs::create_symlink(wal, link);
  auto through_link = Digests(link, "t");
  EXPECT_EQ(through_link.status().code(), Status::Code::kInvalidArgument);
  EXPECT_NE(through_link.status().message().find("WAL"), std::string::npos);
  sqlite3_close(writer);

  // A leaf page whose type byte is damaged.
  const std::string damaged = Path("damaged.db");
  Exec(damaged,
       "PRAGMA page_size = 1024; CREATE TABLE t (id INTEGER PRIMARY KEY, v);"
       "WITH RECURSIVE k(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM k WHERE i < 500) "
       "INSERT INTO t SELECT i, hex(zeroblob(100)) FROM k");
  int64_t root = 0;
  {
    sqlite3* d = nullptr;
    sqlite3_open(damaged.c_str(), &d);
    sqlite3_stmt* s = nullptr;
    sqlite3_prepare_v2(d, "SELECT rootpage FROM sqlite_master WHERE name = 't'", -1, &s, nullptr);
    ASSERT_EQ(sqlite3_step(s), SQLITE_ROW);
    root = sqlite3_column_int64(s, 0);
    sqlite3_finalize(s);
    sqlite3_close(d);
  }
  {
    // The page after the root (a leaf, written in order) gets an impossible type.
    std::fstream file(damaged, std::ios::in | std::ios::out | std::ios::binary);
    file.seekp(static_cast<std::streamoff>(root) * 1024);
    file.put(static_cast<char>(0x42));
  }
  auto broken = Digests(damaged, "t");
  EXPECT_EQ(broken.status().code(), Status::Code::kInvalidArgument);
  {
    // The root's right-most child pointing back at the root: refused, not read forever.
    std::fstream file(damaged, std::ios::in | std::ios::out | std::ios::binary);
    file.seekp(static_cast<std::streamoff>(root) * 1024);
    file.put(static_cast<char>(0x0d));  // the leaf readable again
    file.seekp(static_cast<std::streamoff>(root - 1) * 1024 + 8);
    const auto page = static_cast<uint32_t>(root);
    const char pointer[4] = {static_cast<char>(page >> 24), static_cast<char>(page >> 16),
                             static_cast<char>(page >> 8), static_cast<char>(page)};
    file.write(pointer, 4);
  }
  auto looping = Digests(damaged, "t");
  EXPECT_EQ(looping.status().code(), Status::Code::kInvalidArgument);
  EXPECT_TRUE(Digests(path, "fine").ok());
}

}  // namespace
}  // namespace envsync::store
