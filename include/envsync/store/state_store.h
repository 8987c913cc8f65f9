#ifndef ENVSYNC_STORE_STATE_STORE_H_
#define ENVSYNC_STORE_STATE_STORE_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "envsync/core/comparison.h"
#include "envsync/core/identity_map.h"
#include "envsync/core/status.h"
#include "envsync/core/value.h"

namespace envsync::store {

// The base of one record pair (SYNC-SEMANTICS §3): its content the last time envsync saw both
// sides equal, kept as the record hash and one hash per field. Field hashes are enough to tell
// which fields each side changed (`mergeable`) and to show a base value wherever it equals one
// side's value.
struct SyncBase {
  Value prod_id;
  Value test_id;
  uint64_t hash = 0;
  std::vector<uint64_t> field_hashes;
  // What each side's database server computed of the record then (see DigestRequest), mixed
  // with the identity pairs the record's hash depends on; absent when the side is not a server
  // or the base was written by a sync.
  std::optional<uint64_t> prod_digest;
  std::optional<uint64_t> test_digest;
};

// A direct pair's (PROD ID = TEST ID) digests as its base keeps them (SyncBase).
struct BaseDigests {
  int64_t id = 0;
  uint64_t prod_digest = 0;
  uint64_t test_digest = 0;
};

// What the last comparison of one table saw of both environments' change logs (TrackingState):
// with their `epoch` and `position`, every record of the table was either equal on both sides
// and is current in its base, or one of the `unequal_*` IDs. A later comparison then reads only
// those and what the logs list since, as long as `mix` (the table's columns, filter and the
// identity pairs its hashes depend on) is unchanged.
struct TrackingMark {
  std::string table;
  std::string prod_epoch;
  std::string prod_position;
  std::string test_epoch;
  std::string test_position;
  uint64_t mix = 0;
  std::vector<int64_t> unequal_prod;  // sorted
  std::vector<int64_t> unequal_test;  // sorted
};

// Streams base entries in ID order.
class BaseCursor {
 public:
  virtual ~BaseCursor() = default;
  virtual bool Next(SyncBase* base) = 0;
  virtual Status status() const = 0;
};

// A short listing of a stored comparison.
struct ComparisonSummary {
  std::string id;
  std::string from;
  std::string to;
  std::string created_at;
  TabCounts counts;
};

// One page of one tab of a stored comparison, and how many records of the tab match.
struct ChangePage {
  int64_t total = 0;
  std::vector<Change> changes;
};

// A comparison is saved with its tabs one after another, so a tab's changes have the positions
// (`seq`) first … first + count - 1, and an unfiltered page is found by position instead of by
// stepping over `offset` changes. The positions [from, to) of the page `offset`, `limit`
// (negative: none) of such a tab.
struct PositionRange {
  int64_t from = 0;
  int64_t to = 0;
};
PositionRange PageOfTab(int64_t first, int64_t count, int64_t offset, int64_t limit);
// The comparisons column that holds a tab's count.
const char* TabCountColumn(Tab tab);

// One record a sync wrote on its target, with what undo needs: the record as it was before
// (`pre_image`, JSON of its row and child rows with every column; "" when the sync inserted
// it), its content hash after the sync, and the pair's base before the sync.
struct SyncRecord {
  std::string table;
  std::string action;  // insert, update, delete
  Value prod_id;       // the pair's IDs (NULL where absent)
  Value test_id;
  Value target_id;
  std::string pre_image;
  // What the record is as the sync left it: "xxh3:" and the hex XXH3 of that JSON text (older
  // journals: the text itself); "" when deleted.
  std::string after_image;
  std::optional<uint64_t> after_hash;
  std::optional<SyncBase> base_before;
};

// Who may write through a state store, held as locks the operating system or the database
// server releases when the holder dies, so a killed envsync never leaves one held:
//  - the whole store, exclusively: only to settle interrupted syncs and jobs;
//  - a job, shared: held while one job is claimed and run, and by every sync or undo, so
//    settling never takes work that is still running for work a killed process left;
//  - one target environment, exclusively: held by every sync or undo into it (see
//    service::Workspace::LockTarget).
// With a SQLite store these are flock(2) locks on `<state>.lock` and `<state>.<target>.lock`;
// with a PostgreSQL store they are session advisory locks on a connection the lock holds.
class WorkLock {
 public:
  WorkLock();
  WorkLock(const WorkLock&) = delete;
  WorkLock& operator=(const WorkLock&) = delete;
  ~WorkLock();

  // Each takes its lock without waiting. False when another holder has it; IoError (a lock
  // file) or Unavailable (the server) when it cannot be asked for. One WorkLock holds one lock.
  Result<bool> TryAcquire(const std::string& state_location);
  Result<bool> TryAcquireJob(const std::string& state_location);
  Result<bool> TryAcquireTarget(const std::string& state_location, const std::string& target);
  bool held() const { return holder_ != nullptr; }
  void Release();

  struct Holder;

 private:
  Result<bool> Take(const std::string& state_location, int kind, const std::string& target);
  std::unique_ptr<Holder> holder_;
};

// One gallery file a sync put in place or moved away, with where it was staged and where
// the file it replaced or removed is kept for undo.
struct SyncFile {
  std::string final_path;
  std::string staged_path;  // "" for a removal
  std::string trash_path;   // "" when nothing was there
};

// One execution (or test import) of a comparison.
struct SyncRun {
  std::string id;
  std::string comparison_id;
  std::string created_at;
  std::string finished_at;
  std::string started_by;
  std::string from;
  std::string to;
  bool test_import = false;
  std::string status;   // running, success, failure, undone
  std::string applied;  // JSON: counts per tab and per module
  std::string error;
  std::string job_id;  // the job that ran it; "" when it ran from the CLI
  std::vector<SyncRecord> records;
  std::vector<SyncFile> files;
};

// A sync (or its undo) is in flight from its start until it reaches success, failure or undone.
// One found in flight while no envsync runs it was interrupted: RecoverInterruptedSyncs settles
// it.
inline bool InFlight(const SyncRun& run) {
  return run.status == "running" || run.status == "committing" || run.status == "undoing";
}

// A unit of background work: a comparison or a sync, run now or at `run_at` (ISO-8601 UTC).
// States: scheduled, running, succeeded, failed, cancelled.
struct Job {
  std::string id;
  std::string kind;  // "sync"
  std::string state;
  std::string created_at;
  std::string run_at;
  std::string started_at;
  std::string finished_at;
  std::string started_by;
  std::string request;  // JSON: what to run
  std::string result;   // JSON: how it ended (a sync's outcome)
  std::string error;
  std::string runner;  // the `envsync serve` process that claimed it ("" before)
};

// A message to a user, as the platform's Messages tab shows them.
struct Message {
  int64_t id = 0;
  std::string user;
  std::string created_at;
  std::string title;
  std::string body;
  std::string job_id;
  bool read = false;
};

// Someone who may use envsync through the service: an e-mail address, a role (viewer, operator
// or admin), a PBKDF2 password hash (see service/users.h) and the time zone times are shown in.
struct User {
  std::string email;
  std::string role;
  std::string password_hash;
  std::string time_zone = "UTC";
  std::string created_at;
};

// A logged-in browser or API client. Only a SHA-256 of the session token is kept, so a copy of
// the store does not let anyone in.
struct Session {
  std::string token_hash;
  std::string email;
  std::string csrf_token;
  std::string created_at;
  std::string expires_at;
};

// One line of the audit log: who did what, to which records, when.
struct AuditEntry {
  int64_t id = 0;
  std::string at;
  std::string user;
  std::string action;  // e.g. sync.schedule, job.cancel, user.add, login.failed
  std::string target;  // the comparison, sync, job or user acted on
  std::string detail;  // JSON: the records and options involved
};

// envsync's own state: comparisons and their changes, the base of every record pair, and the
// identity map. Its schema is versioned and migrated forward when it is opened.
//
// Thread safety: one StateStore is used by one thread at a time, except that base writes
// (PutBase) may run while a BaseCursor from ScanDirectBase is open.
class StateStore {
 public:
  virtual ~StateStore() = default;

  // The store's schema version after migration.
  virtual int SchemaVersion() const = 0;

  // What the database itself finds wrong with the store, one line per problem; empty when it
  // is sound. SQLite: `PRAGMA integrity_check` and `foreign_key_check`; PostgreSQL: every
  // index of envsync's tables valid and every table readable. An error only when the store
  // cannot be asked.
  virtual Result<std::vector<std::string>> CheckIntegrity() = 0;

  virtual Result<IdentityMap> LoadIdentityMap() = 0;
  // Records a pair; replaces any pair either ID was part of.
  virtual Status AddIdentity(const std::string& table, int64_t prod_id, int64_t test_id) = 0;
  // Forgets one pair (an undone sync's). It is not an error if the pair is not there.
  virtual Status RemoveIdentity(const std::string& table, int64_t prod_id, int64_t test_id) = 0;

  // The base entries of `table` whose PROD and TEST IDs are equal, ordered by that ID in
  // SQLite's order (see CompareValues).
  virtual Result<std::unique_ptr<BaseCursor>> ScanDirectBase(const std::string& table) = 0;
  // The same, only for the pairs whose ID is one of `ids` (sorted).
  virtual Result<std::unique_ptr<BaseCursor>> ScanDirectBase(const std::string& table,
                                                             const std::vector<int64_t>& ids) = 0;
  // The digests of the direct pairs of `table` whose base holds both (the same order as
  // ScanDirectBase): what a digest plan holds each row's digest against. The default reads
  // them through ScanDirectBase.
  virtual Result<std::vector<BaseDigests>> LoadBaseDigests(const std::string& table);
  // The base of one pair, or nullopt when there is none.
  virtual Result<std::optional<SyncBase>> FindBase(const std::string& table, const Value& prod_id,
                                                   const Value& test_id) = 0;

  // Change tracking: the mark of `table`, or nullopt; saving one replaces it. Marks are
  // written after the base update they describe has committed.
  virtual Result<std::optional<TrackingMark>> LoadTrackingMark(const std::string& table) = 0;
  virtual Status SaveTrackingMark(const TrackingMark& mark) = 0;
  virtual Result<std::vector<TrackingMark>> ListTrackingMarks() = 0;

  // Base writes go into one transaction: Begin, Put any number, then Commit (or Abort).
  virtual Status BeginBaseUpdate() = 0;
  virtual Status PutBase(const std::string& table, const SyncBase& base) = 0;
  virtual Status CommitBaseUpdate() = 0;
  virtual void AbortBaseUpdate() = 0;

  // Stores a comparison with its changes. InvalidArgument if its ID is taken.
  virtual Status SaveComparison(const Comparison& comparison) = 0;
  // Deletes the changes a compare killed while storing them left behind (a SQLite store stores a
  // large comparison in several commits, its header last, so they are never read) and returns
  // those comparisons' IDs. Call only while holding the store's lock exclusively
  // (WorkLock::TryAcquire): what is half-stored then was left by a process that died. A store
  // that keeps one transaction a comparison has nothing to delete.
  virtual Result<std::vector<std::string>> DiscardHalfStoredComparisons() {
    return std::vector<std::string>();
  }
  // NotFound naming the ID when there is no such comparison.
  virtual Result<Comparison> LoadComparison(const std::string& id) = 0;
  virtual Result<std::vector<ComparisonSummary>> ListComparisons() = 0;
  // A comparison without its changes, and its counts per tab. NotFound naming the ID.
  virtual Result<std::pair<Comparison, TabCounts>> LoadComparisonHeader(const std::string& id) = 0;
  // The changes of one tab in comparison order, `offset` and `limit` of them, whose record
  // (`T:ID`), key or module contains `filter` (case-insensitive; "" matches all).
  virtual Result<ChangePage> LoadChangePage(const std::string& id, Tab tab,
                                            const std::string& filter, int64_t offset,
                                            int64_t limit) = 0;
  // Which of `records` (`T:ID`) are changes of comparison `id`: looked up by index, so a
  // selection naming a few records of a large comparison does not read them all.
  virtual Result<std::set<std::string>> KnownChangeRefs(
      const std::string& id, const std::vector<std::string>& records) = 0;

  // Removes the base of one pair (a record gone from both sides).
  virtual Status DeleteBase(const std::string& table, const Value& prod_id,
                            const Value& test_id) = 0;

  // Stores a sync with its records and files, replacing an earlier version of it.
  virtual Status SaveSync(const SyncRun& run) = 0;
  // Updates a stored sync's status, finish time, counts and error, leaving its records and
  // files as they are.
  virtual Status UpdateSyncStatus(const SyncRun& run) = 0;
  // NotFound naming the ID when there is no such sync.
  virtual Result<SyncRun> LoadSync(const std::string& id) = 0;
  // Every sync, oldest first, without records and files.
  virtual Result<std::vector<SyncRun>> ListSyncs() = 0;

  // Stores a job, replacing an earlier version of it.
  virtual Status SaveJob(const Job& job) = 0;
  // Saves `job` only while its stored state is one of `states`, in one statement, so two
  // processes or threads never both move a job on (a cancel and the runner, say). True when it
  // was saved.
  virtual Result<bool> SaveJobIf(const Job& job, const std::vector<std::string>& states) = 0;
  // Claims the oldest due job (queued, or scheduled with `run_at` <= `now`) of `kind` ("" = any)
  // for `runner`: in one transaction it is stored as running since `now`. Two processes never
  // claim the same job (PostgreSQL: FOR UPDATE SKIP LOCKED). Returns the job as it was before
  // the claim, or nullopt when none is due.
  virtual Result<std::optional<Job>> ClaimDueJob(const std::string& kind, const std::string& now,
                                                 const std::string& runner) = 0;
  // The job ClaimDueJob would claim at `now`, read without claiming it (by the same query, so
  // the two agree while no other process claims in between); nullopt when none is due.
  virtual Result<std::optional<Job>> NextDueJob(const std::string& kind,
                                                const std::string& now) = 0;
  // NotFound naming the ID when there is no such job.
  virtual Result<Job> LoadJob(const std::string& id) = 0;
  // Every job, oldest first.
  virtual Result<std::vector<Job>> ListJobs() = 0;

  // Adds a message and returns its ID.
  virtual Result<int64_t> AddMessage(const Message& message) = 0;
  // The messages of `user` (every user's when empty), newest first.
  virtual Result<std::vector<Message>> ListMessages(const std::string& user) = 0;
  // Marks a message of `user` read. NotFound when that user has no such message.
  virtual Status MarkMessageRead(int64_t id, const std::string& user) = 0;

  // Adds or replaces a user.
  virtual Status SaveUser(const User& user) = 0;
  virtual Result<std::optional<User>> FindUser(const std::string& email) = 0;
  virtual Result<std::vector<User>> ListUsers() = 0;

  virtual Status SaveSession(const Session& session) = 0;
  virtual Result<std::optional<Session>> FindSession(const std::string& token_hash) = 0;
  virtual Status DeleteSession(const std::string& token_hash) = 0;
  virtual Status DeleteSessionsOf(const std::string& email) = 0;
  // Forgets every session that ended before `now`.
  virtual Status DeleteExpiredSessions(const std::string& now) = 0;

  virtual Status AddAudit(const AuditEntry& entry) = 0;
  // Oldest first.
  virtual Result<std::vector<AuditEntry>> ListAudit() = 0;

  // The reviewer's pending selection and resolutions of a comparison (JSON, see the API), ""
  // when none was saved.
  virtual Status SaveSelection(const std::string& comparison_id, const std::string& json) = 0;
  virtual Result<std::string> LoadSelection(const std::string& comparison_id) = 0;
};

// Opens (creating if needed) the state store at `location`, a SQLite path or a PostgreSQL URI
// (`postgresql://…`, whose database must exist), and migrates its schema forward. Unavailable
// naming the path or the server (never a password) when it cannot be opened or is corrupt;
// InvalidArgument when its schema is newer than this envsync knows.
Result<std::unique_ptr<StateStore>> OpenStateStore(const std::string& location);

// The current version of the state store's schema.
inline constexpr int kStateSchemaVersion = 15;

}  // namespace envsync::store

#endif  // ENVSYNC_STORE_STATE_STORE_H_
