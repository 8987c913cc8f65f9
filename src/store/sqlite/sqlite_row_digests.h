#ifndef ENVSYNC_STORE_SQLITE_SQLITE_ROW_DIGESTS_H_
#define ENVSYNC_STORE_SQLITE_SQLITE_ROW_DIGESTS_H_

#include <sqlite3.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "envsync/core/status.h"
#include "envsync/store/environment.h"

namespace envsync::store {

// The digest of every row of a rowid table, read from the table's b-tree pages in the database
// file instead of through SQL: each row's stored record (its payload, overflow pages included)
// hashed with XXH3, seeded with its rowid and the table's CREATE statement (the same bytes
// read under another definition are other values). Equal digests mean byte-equal records, so equal
// values; a changed value changes its record's bytes. A comparison holds these against the
// digests its bases recorded and reads in full only the rows whose digest moved.
//
// The pages are read through the connection's own file handle (SQLITE_FCNTL_FILE_POINTER, so
// no second descriptor drops SQLite's POSIX locks), inside the caller's read transaction:
// with a rollback journal the shared lock keeps writers out; in WAL mode only a snapshot that
// reads the database file alone (an empty WAL, found under the name of the file SQLite opened)
// is read, since the file is then what the snapshot sees and a checkpoint cannot write past it.
//
// `id_column` must be the table's INTEGER PRIMARY KEY (the rowid): every record must store it
// as NULL, which SQLite does for that column and for no other. InvalidArgument whenever the
// file cannot be read so (no read transaction, a write transaction on the connection (its
// changes are in its own cache), WAL frames, a WITHOUT ROWID table, an ID that
// is not the rowid, a page that does not parse): the caller then reads the table through SQL,
// which reports a corrupt file properly.
//
// Each row's digest carries where its cell is in the file (RowDigest::at: its offset and
// length), unless its payload spills into overflow pages.
Result<std::vector<RowDigest>> ReadRowDigests(sqlite3* db, const std::string& database_path,
                                              const std::string& table,
                                              const std::string& id_column);

// The rows of `ids` (ascending) with `columns`, each read where its cell is (`at`, from
// ReadRowDigests in the same read transaction; 0 where unknown, kRowAbsent where the row is not
// there; empty: found by descending the table's b-tree, interior pages read once, a leaf's cell
// pointers and a few cells' heads, each cell then read up to where the next one in its page
// starts) instead of through SQL: a changed record costs a read of its cell, not a copy of its
// whole page. The values are what SQL reads (an integral real in a REAL column is a real, a
// stored NaN is NULL, the ID is the rowid). A row whose cell is unknown, spills
// into overflow pages, lacks a column added after it was written, or does not decode as the row it
// should be is read through SQL by its ID. InvalidArgument when the table cannot be read so (as for
// ReadRowDigests, or text not stored as UTF-8): the caller then reads it through SQL.
// `decoded`, when given, counts the rows decoded from their cells.
Result<std::unique_ptr<RowCursor>> ReadRecordsAt(sqlite3* db, const std::string& database_path,
                                                 const std::string& table,
                                                 const std::string& id_column,
                                                 const std::vector<std::string>& columns,
                                                 std::vector<int64_t> ids, std::vector<uint64_t> at,
                                                 int64_t* decoded = nullptr);

}  // namespace envsync::store

#endif  // ENVSYNC_STORE_SQLITE_SQLITE_ROW_DIGESTS_H_
