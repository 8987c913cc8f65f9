#ifndef ENVSYNC_STORE_SQLITE_BASE_DIGEST_PACKS_H_
#define ENVSYNC_STORE_SQLITE_BASE_DIGEST_PACKS_H_

#include <atomic>
#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "envsync/core/status.h"
#include "envsync/core/value.h"
#include "envsync/store/state_store.h"
#include "store/sqlite/sqlite_db.h"

namespace envsync::store {

// The bases' digests of a table, packed (state schema 11). A comparison of two SQLite files
// holds every row's digest against the digests its bases recorded; reading those from the
// bases' table (`bases`; `sync_base` before schema 11) stepped a million rows (≈ 0.3 s of a core
// beside the files' own digests). The SQLite state store keeps them also as blobs of 4,096 IDs
// each (`base_digest_packs`), read in a few milliseconds.
//
// The rule: while `base_digest_marks` names a table, its packs hold exactly what
// `LoadDirectDigests` reads from `bases` (a range without a pack holds nothing). Every write of
// `bases` goes through the state store's PutBase or DeleteBase, and this class keeps the rule in
// the same transaction:
//   - inside a base update, each write is noted (`Noted`) and the packs it touches are rewritten
//     just before the commit (`WriteBeforeCommit`);
//   - a DeleteBase outside one unmarks the table (`Unmark`): the next comparison reads its
//     bases whole and packs them again.
// A comparison that finds a table unmarked (or a pack malformed) reads `bases` as before and
// asks for the table to be packed when its base update commits. An envsync of an older schema
// that still has the store open cannot write past the packs: the table it knew is gone.
class BaseDigestPacks {
 public:
  // IDs per pack: 2^12.
  static constexpr int kBits = 12;

  // The direct pairs' digests of `table` from its packs, in ID order; nullopt when the table
  // is not marked or a pack is malformed (the caller reads `bases` and calls Wanted).
  static Result<std::optional<std::vector<BaseDigests>>> Load(SqliteDb& db,
                                                              const std::string& table);
  // The same, read from `bases` (the digests the packs must equal).
  static Result<std::vector<BaseDigests>> LoadDirectDigests(SqliteDb& db, const std::string& table);

  // A base update begins or ends: forget what was noted.
  void Clear();
  // A base of `table` with these IDs and digests was written, or deleted (digests nullopt).
  // Only a table whose packs are marked (asked once per update, through `writer`) and that is
  // not wanted keeps notes.
  Status Noted(SqliteDb& writer, const std::string& table, const Value& prod_id,
               const Value& test_id, const std::optional<uint64_t>& prod_digest,
               const std::optional<uint64_t>& test_digest);
  // Asked by a comparison that read `table` from the bases: pack it when the update commits.
  void Wanted(const std::string& table);
  // Rewrites the packs the noted writes touched and packs the wanted tables, through the
  // writer inside its transaction.
  Status WriteBeforeCommit(SqliteDb& writer);
  // `table`'s packs no longer vouch for its bases (a write outside a base update).
  static Status Unmark(SqliteDb& writer, const std::string& table);

 private:
  // What one write made of the entry of `id`: `entry` false when it has none now.
  struct Note {
    int64_t id = 0;
    bool entry = false;
    uint64_t prod_digest = 0;
    uint64_t test_digest = 0;
  };
  struct TableNotes {
    bool marked = false;
    std::vector<Note> notes;  // in the order of the writes
  };
  // What one table is to this update: where its notes go, or nullptr when it keeps none (not
  // marked, or wanted).
  struct LastTable {
    bool valid = false;
    std::string table;
    size_t wanted_count = 0;
    std::vector<Note>* notes = nullptr;
  };
  Result<std::vector<Note>*> NotesOf(SqliteDb& writer, const std::string& table);
  Status Pack(SqliteDb& writer, const std::string& table);
  static Status Patch(SqliteDb& writer, const std::string& table, std::vector<Note> notes);

  // Wanted is called from a comparison's digest thread; the rest from the writer's.
  std::mutex mutex_;  // guards wanted_
  std::set<std::string> wanted_;
  std::atomic<size_t> wanted_count_ = 0;  // wanted_'s size, read without the lock
  std::map<std::string, TableNotes> noted_;
  LastTable last_;
};

}  // namespace envsync::store

#endif  // ENVSYNC_STORE_SQLITE_BASE_DIGEST_PACKS_H_
