#include "store/sqlite/base_digest_packs.h"

#include <fmt/format.h>

#include <algorithm>
#include <bit>
#include <cstring>

namespace envsync::store {
namespace {

// A pack is the entries' bytes as they lie in memory: three 64-bit words each.
static_assert(std::endian::native == std::endian::little, "packs are little-endian");
constexpr size_t kEntryBytes = 3 * sizeof(uint64_t);

int64_t ChunkOf(int64_t id) { return id >> BaseDigestPacks::kBits; }

// The integer a value equals under SQLite's comparison of an INTEGER with a REAL, if any.
std::optional<int64_t> AsInteger(const Value& v) {
  if (const auto* i = std::get_if<int64_t>(&v)) return *i;
  if (const auto* d = std::get_if<double>(&v)) {
    if (*d >= -9223372036854775808.0 && *d < 9223372036854775808.0) {
      const auto i = static_cast<int64_t>(*d);
      if (static_cast<double>(i) == *d) return i;
    }
  }
  return std::nullopt;
}

// Appends the entries of one pack to `out`; false if the blob is not a pack of `chunk` whose
// IDs all come after `out`'s last.
bool Unpack(const void* data, int size, int64_t chunk, std::vector<BaseDigests>* out) {
  if (size < 0 || size % kEntryBytes != 0) return false;
  const auto* bytes = static_cast<const unsigned char*>(data);
  for (size_t at = 0; at < static_cast<size_t>(size); at += kEntryBytes) {
    uint64_t words[3];
    std::memcpy(words, bytes + at, kEntryBytes);
    const int64_t id = std::bit_cast<int64_t>(words[0]);
    if (ChunkOf(id) != chunk || (!out->empty() && out->back().id >= id)) return false;
    out->push_back(BaseDigests{id, words[1], words[2]});
  }
  return true;
}

std::string Packed(const std::vector<BaseDigests>& entries) {
  std::string bytes(entries.size() * kEntryBytes, '\0');
  for (size_t i = 0; i < entries.size(); ++i) {
    const uint64_t words[3] = {std::bit_cast<uint64_t>(entries[i].id), entries[i].prod_digest,
                               entries[i].test_digest};
    std::memcpy(bytes.data() + i * kEntryBytes, words, kEntryBytes);
  }
  return bytes;
}

Status WritePack(SqliteDb& writer, const std::string& table, int64_t chunk,
                 const std::vector<BaseDigests>& entries) {
  if (entries.empty()) {
    auto remove =
        writer.Prepare("DELETE FROM base_digest_packs WHERE table_name = ?1 AND chunk = ?2");
    if (!remove.ok()) return remove.status();
    remove->Bind(1, table);
    remove->Bind(2, chunk);
    return remove->Run();
  }
  auto put = writer.Prepare("INSERT OR REPLACE INTO base_digest_packs VALUES (?1, ?2, ?3)");
  if (!put.ok()) return put.status();
  const std::string bytes = Packed(entries);
  put->Bind(1, table);
  put->Bind(2, chunk);
  put->BindBlob(3, bytes.data(), bytes.size());
  return put->Run();
}

}  // namespace

Result<std::optional<std::vector<BaseDigests>>> BaseDigestPacks::Load(SqliteDb& db,
                                                                      const std::string& table) {
  // One statement, so the mark and the packs come from one snapshot.
  auto statement = db.Prepare(
      "SELECT NULL, (SELECT sum(length(entries)) FROM base_digest_packs WHERE table_name = ?1) "
      "FROM base_digest_marks WHERE table_name = ?1 UNION ALL "
      "SELECT chunk, entries FROM base_digest_packs WHERE table_name = ?1 ORDER BY 1");
  if (!statement.ok()) return statement.status();
  statement->Bind(1, table);
  using Digests = std::optional<std::vector<BaseDigests>>;
  Status status;
  if (!statement->Step(&status)) {
    if (!status.ok()) return status.WithContext(db.what());
    return Digests();
  }
  sqlite3_stmt* row = statement->get();
  if (sqlite3_column_type(row, 0) != SQLITE_NULL) return Digests();  // not marked
  std::vector<BaseDigests> digests;
  // Sized once from the packs' bytes (read from their headers, not their pages): growing it by
  // doubling touched ≈ twice its memory (1M entries: 24 MB).
  digests.reserve(static_cast<size_t>(std::max<int64_t>(0, sqlite3_column_int64(row, 1))) /
                  kEntryBytes);
  while (statement->Step(&status)) {
    if (sqlite3_column_type(row, 0) != SQLITE_INTEGER) return Digests();
    int size = 0;
    const void* data = statement->ColumnBlob(1, &size);
    if (!Unpack(data, size, sqlite3_column_int64(row, 0), &digests)) return Digests();
  }
  if (!status.ok()) return status.WithContext(db.what());
  return Digests(std::move(digests));
}

namespace {

// Calls `each` with the digests of every direct pair of `table` that holds both, in ID order.
template <typename Each>
Status EachDirectDigest(SqliteDb& db, const std::string& table, Each each) {
  // Only the three columns: a comparison holds every row's digest against these, and the
  // full bases (field hashes and all) cost it more than reading the rows' digests.
  auto statement = db.Prepare(
      "SELECT prod_id, prod_digest, test_digest FROM bases WHERE table_name = ?1 AND "
      "prod_id = test_id AND prod_digest IS NOT NULL AND test_digest IS NOT NULL ORDER BY "
      "prod_id");
  if (!statement.ok()) return statement.status();
  statement->Bind(1, table);
  sqlite3_stmt* row = statement->get();
  Status status;
  while (statement->Step(&status)) {
    if (sqlite3_column_type(row, 0) != SQLITE_INTEGER) continue;
    ENVSYNC_RETURN_IF_ERROR(each(BaseDigests{
        sqlite3_column_int64(row, 0), std::bit_cast<uint64_t>(sqlite3_column_int64(row, 1)),
        std::bit_cast<uint64_t>(sqlite3_column_int64(row, 2))}));
  }
  return status.ok() ? status : status.WithContext(db.what());
}

}  // namespace

Result<std::vector<BaseDigests>> BaseDigestPacks::LoadDirectDigests(SqliteDb& db,
                                                                    const std::string& table) {
  std::vector<BaseDigests> digests;
  ENVSYNC_RETURN_IF_ERROR(EachDirectDigest(db, table, [&](const BaseDigests& d) {
    digests.push_back(d);
    return Status::Ok();
  }));
  return digests;
}

void BaseDigestPacks::Clear() {
  std::lock_guard<std::mutex> lock(mutex_);
  wanted_.clear();
  wanted_count_.store(0, std::memory_order_release);
  noted_.clear();
  last_ = LastTable{};
}

Status BaseDigestPacks::Noted(SqliteDb& writer, const std::string& table, const Value& prod_id,
                              const Value& test_id, const std::optional<uint64_t>& prod_digest,
                              const std::optional<uint64_t>& test_digest) {
  // Which entry the write makes or replaces: the bases' key compares an INTEGER and a REAL
  // as numbers, and only a row whose PROD ID is an INTEGER equal to its TEST ID is an entry.
  const std::optional<int64_t> id = AsInteger(prod_id);
  if (!id || AsInteger(test_id) != id) return Status::Ok();
  // A base update writes one table's bases in a run (a million in a first comparison): what
  // the table is to this update is looked up once, and again only when another table is
  // written or another table is wanted.
  const size_t wanted_count = wanted_count_.load(std::memory_order_acquire);
  if (!last_.valid || last_.table != table || last_.wanted_count != wanted_count) {
    Result<std::vector<Note>*> notes = NotesOf(writer, table);
    if (!notes.ok()) return notes.status();
    last_.notes = *notes;
    last_.valid = true;
    last_.table = table;
    last_.wanted_count = wanted_count;
  }
  if (last_.notes == nullptr) return Status::Ok();
  Note note{*id, false, 0, 0};
  if (std::holds_alternative<int64_t>(prod_id) && prod_digest && test_digest) {
    note = Note{*id, true, *prod_digest, *test_digest};
  }
  last_.notes->push_back(note);
  return Status::Ok();
}

Result<std::vector<BaseDigestPacks::Note>*> BaseDigestPacks::NotesOf(SqliteDb& writer,
                                                                     const std::string& table) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (wanted_.contains(table)) return nullptr;  // packed whole at the commit
  }
  auto [it, first] = noted_.try_emplace(table);
  if (first) {
    auto marked = writer.Prepare("SELECT 1 FROM base_digest_marks WHERE table_name = ?1");
    if (!marked.ok()) return marked.status();
    marked->Bind(1, table);
    Status status;
    it->second.marked = marked->Step(&status);
    ENVSYNC_RETURN_IF_ERROR(status);
  }
  return it->second.marked ? &it->second.notes : nullptr;
}

void BaseDigestPacks::Wanted(const std::string& table) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (wanted_.insert(table).second) {
    wanted_count_.store(wanted_.size(), std::memory_order_release);
  }
}

Status BaseDigestPacks::WriteBeforeCommit(SqliteDb& writer) {
  std::lock_guard<std::mutex> lock(mutex_);
  for (const std::string& table : wanted_) {
    ENVSYNC_RETURN_IF_ERROR(Pack(writer, table).WithContext("packing the bases' digests"));
  }
  for (auto& [table, noted] : noted_) {
    if (wanted_.contains(table) || !noted.marked) continue;  // packed whole above, or not at all
    ENVSYNC_RETURN_IF_ERROR(Patch(writer, table, std::move(noted.notes))
                                .WithContext("updating the bases' packed digests"));
  }
  return Status::Ok();
}

Status BaseDigestPacks::Unmark(SqliteDb& writer, const std::string& table) {
  for (const char* sql : {"DELETE FROM base_digest_marks WHERE table_name = ?1",
                          "DELETE FROM base_digest_packs WHERE table_name = ?1"}) {
    auto statement = writer.Prepare(sql);
    if (!statement.ok()) return statement.status();
    statement->Bind(1, table);
    ENVSYNC_RETURN_IF_ERROR(statement->Run());
  }
  return Status::Ok();
}

Status BaseDigestPacks::Pack(SqliteDb& writer, const std::string& table) {
  ENVSYNC_RETURN_IF_ERROR(Unmark(writer, table));
  // The writer sees this update's own writes. One pack is held at a time.
  std::vector<BaseDigests> pack;
  ENVSYNC_RETURN_IF_ERROR(EachDirectDigest(writer, table, [&](const BaseDigests& d) {
    if (!pack.empty() && ChunkOf(pack.front().id) != ChunkOf(d.id)) {
      ENVSYNC_RETURN_IF_ERROR(WritePack(writer, table, ChunkOf(pack.front().id), pack));
      pack.clear();
    }
    pack.push_back(d);
    return Status::Ok();
  }));
  if (!pack.empty()) {
    ENVSYNC_RETURN_IF_ERROR(WritePack(writer, table, ChunkOf(pack.front().id), pack));
  }
  auto mark = writer.Prepare("INSERT INTO base_digest_marks VALUES (?1)");
  if (!mark.ok()) return mark.status();
  mark->Bind(1, table);
  return mark->Run();
}

Status BaseDigestPacks::Patch(SqliteDb& writer, const std::string& table, std::vector<Note> notes) {
  // The last write of each ID is what it holds now.
  std::stable_sort(notes.begin(), notes.end(),
                   [](const Note& a, const Note& b) { return a.id < b.id; });
  std::vector<Note> last;
  last.reserve(notes.size());
  for (const Note& note : notes) {
    if (!last.empty() && last.back().id == note.id) {
      last.back() = note;
    } else {
      last.push_back(note);
    }
  }
  auto read =
      writer.Prepare("SELECT entries FROM base_digest_packs WHERE table_name = ?1 AND chunk = ?2");
  if (!read.ok()) return read.status();
  Status status;
  // In ID order, each pack's notes are together.
  for (auto it = last.begin(); it != last.end();) {
    const int64_t chunk = ChunkOf(it->id);
    std::vector<BaseDigests> was;
    read->Reset();
    read->Bind(1, table);
    read->Bind(2, chunk);
    if (read->Step(&status)) {
      int size = 0;
      const void* data = read->ColumnBlob(0, &size);
      if (!Unpack(data, size, chunk, &was)) return Unmark(writer, table);
    } else if (!status.ok()) {
      return status;
    }
    read->Reset();
    std::vector<BaseDigests> now;
    now.reserve(was.size() + 1);
    auto old = was.begin();
    for (; it != last.end() && ChunkOf(it->id) == chunk; ++it) {
      for (; old != was.end() && old->id < it->id; ++old) now.push_back(*old);
      if (old != was.end() && old->id == it->id) ++old;
      if (it->entry) now.push_back({it->id, it->prod_digest, it->test_digest});
    }
    now.insert(now.end(), old, was.end());
    ENVSYNC_RETURN_IF_ERROR(WritePack(writer, table, chunk, now));
  }
  return Status::Ok();
}

}  // namespace envsync::store
