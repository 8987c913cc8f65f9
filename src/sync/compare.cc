#include "envsync/sync/compare.h"

#include <fmt/chrono.h>
#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <future>
#include <limits>
#include <map>
#include <random>
#include <set>
#include <system_error>
#include <tuple>
#include <unordered_map>

#include "envsync/core/classification.h"
#include "envsync/core/record.h"
#include "envsync/store/fault_injection.h"
#include "envsync/sync/tracking.h"
#include "sync/ids.h"
#include "sync/record_stream.h"
#include "sync/row_walker.h"

namespace envsync::sync {
namespace {

constexpr int64_t kProgressEvery = 65536;

std::string Join(const std::vector<std::string>& items) {
  std::string out;
  for (const std::string& item : items) out += (out.empty() ? "" : ", ") + item;
  return out;
}

// Both sides of one pair being classified.
// Visit may move the records out of a pair it keeps for listing.
struct Pair {
  Record* source = nullptr;
  Record* target = nullptr;
  const store::SyncBase* base = nullptr;
};

// A pair to be listed (or, for a record new on the source, looked up first), kept as light
// records until the table's scans are done and the two sides can be read in full.
struct PendingPair {
  std::optional<Record> source;
  std::optional<Record> target;
  std::optional<store::SyncBase> base;
  Classification classification;
  bool needs_key_lookup = false;
};

// A read pair whose base is the record one side holds now (DigestPlan::known_bases).
struct KnownBase {
  int64_t id = 0;
  bool is_source = false;  // else the target's record
  // The digests the base recorded, as stored (none in a plan made from the change logs).
  std::optional<uint64_t> prod_digest;
  std::optional<uint64_t> test_digest;
};

// The known base of each of a rising sequence of IDs, or nullptr: a walk along the plan's
// known bases (in ID order) beside the IDs asked.
class KnownBaseWalker {
 public:
  explicit KnownBaseWalker(const std::vector<KnownBase>& known) : known_(known) {}

  const KnownBase* Find(int64_t id) {
    while (next_ < known_.size() && known_[next_].id < id) ++next_;
    return next_ < known_.size() && known_[next_].id == id ? &known_[next_] : nullptr;
  }

 private:
  const std::vector<KnownBase>& known_;
  size_t next_ = 0;
};

// The remote-efficient reading of one table, when both sides are database servers that digest
// their rows (store::DigestRequest): which records must be read in full. Every other record
// is unchanged on both sides since its base was recorded, so it is equal and its base current.
struct DigestPlan {
  std::vector<int64_t> source_ids;  // sorted
  std::vector<int64_t> target_ids;
  // Where each of those IDs is stored on its side, when the digests came from a SQLite file's
  // pages (store::ScanRequest::only_ids_at); empty otherwise.
  std::vector<uint64_t> source_at;
  std::vector<uint64_t> target_at;
  // The digests of the rows read (the servers', or the SQLite files' pages'), per side.
  std::vector<store::RowDigest> source_digests;  // in ID order
  std::vector<store::RowDigest> target_digests;
  int64_t rows = 0;  // rows of the table on both sides
  // Most records are read anyway (a first compare): the table is read whole, not by ID, and
  // the digests are only recorded.
  bool read_all = false;
  uint64_t mix = 0;  // folded into stored digests: the identity pairs the hashes depend on
  // Made from the change logs (envsync track), not from the servers' digests: no digests.
  bool tracked = false;
  // The read IDs whose base is one side's record as it is now, made from it instead of looked
  // up in the state store (KnownBase), in ID order: that side's digest is the one its base
  // recorded, or (from the change logs) the pair was equal at the last comparison, its base
  // current, and only the other side has written the record since.
  std::vector<KnownBase> known_bases;
};

// The row `id` in `digests` (in ID order), or nullptr.
const store::RowDigest* FindRow(const std::vector<store::RowDigest>& digests, int64_t id) {
  auto at = std::lower_bound(
      digests.begin(), digests.end(), id,
      [](const store::RowDigest& digest, int64_t value) { return digest.id < value; });
  return at != digests.end() && at->id == id ? &*at : nullptr;
}

// The digest of `id` in `digests` (in ID order), or nullptr.
const uint64_t* FindDigest(const std::vector<store::RowDigest>& digests, int64_t id) {
  const store::RowDigest* row = FindRow(digests, id);
  return row != nullptr ? &row->digest : nullptr;
}

// IdentityMap::IsDirect for IDs asked in ascending order: one step along the table's paired
// IDs an ID, where IsDirect looks up the table and two hash maps (≈ 1M calls a side in a
// compare by digests).
class DirectIds {
 public:
  DirectIds(const IdentityMap& identities, const std::string& table)
      : paired_(identities.PairedIds(table)) {}

  bool operator()(int64_t id) {
    while (next_ < paired_.size() && paired_[next_] < id) ++next_;
    return next_ == paired_.size() || paired_[next_] != id;
  }

 private:
  std::vector<int64_t> paired_;
  size_t next_ = 0;
};

// Change tracking is used unless ENVSYNC_TRACKING=0 (to measure a full read).
bool TrackingEnabled() {
  const char* value = std::getenv("ENVSYNC_TRACKING");
  return value == nullptr || std::string(value) != "0";
}

// Digests (the servers', or read from SQLite files' pages) are used unless
// ENVSYNC_REMOTE_DIGESTS=0 (to measure the full read).
bool RemoteDigestsEnabled() {
  const char* value = std::getenv("ENVSYNC_REMOTE_DIGESTS");
  return value == nullptr || std::string(value) != "0";
}

// One comparison's work: selection, reading, classification, closure.
class Comparer {
 public:
  Comparer(const Manifest& manifest, store::Environment& source, store::Environment& target,
           store::StateStore& state, const CompareRequest& request, const CompareContext& context)
      : manifest_(manifest),
        source_(source),
        target_(target),
        state_(state),
        request_(request),
        context_(context),
        source_side_(SideOf(source.name())),
        target_side_(SideOf(target.name())) {}

  Result<Comparison> Run();

 private:
  Status CheckSchemas();
  Status SelectModules();
  Status LoadKeyIndexes();
  Status CheckFolders();
  Status CompareTable(const TableSpec& table);
  // The digest plan of `layout`'s table, or nullopt when it must be read whole (a side that
  // does not digest, a table with files, a non-integer ID, ENVSYNC_REMOTE_DIGESTS=0). The
  // digests come from the servers (by buckets) or from both SQLite files' pages (by rows).
  Result<std::optional<DigestPlan>> PlanByDigests(const RecordLayout& layout);
  // The plan from every row's digest on both sides (Environment::RowDigests) against the
  // digests the bases keep: the IDs whose rows moved, appeared or went away.
  void PlanByRowDigests(const std::string& table, std::vector<store::RowDigest> source,
                        std::vector<store::RowDigest> target,
                        const std::vector<store::BaseDigests>& bases, DigestPlan* plan);
  uint64_t IdentityMix(const TableSpec& table) const;
  // Change tracking: whether both environments log `table`'s records and the table can be
  // compared from the logs (integer IDs, no files, no folders, a key of its own).
  bool Trackable(const TableSpec& table) const;
  // What the table's mark and both change logs say must be read, or nullopt when the table
  // must be read whole (no mark, a new epoch, a log that went back, another mix).
  Result<std::optional<DigestPlan>> PlanByTracking(const RecordLayout& layout);
  uint64_t TrackingMix(const RecordLayout& layout) const;
  // Of a pair of per-side things (the source's first), PROD's and TEST's.
  template <typename T>
  T& ProdOf(T& of_source, T& of_target) const {
    return source_side_ == Side::kProd ? of_source : of_target;
  }
  template <typename T>
  T& TestOf(T& of_source, T& of_target) const {
    return source_side_ == Side::kProd ? of_target : of_source;
  }
  // IDs to read on each side for `ids` (each record brings its counterpart).
  void ExpandToPairs(const std::string& table, const std::vector<int64_t>& ids, DigestPlan* plan);
  Status Visit(const RecordLayout& layout, const Pair& pair, std::vector<PendingPair>* pending);
  Status ListPending(const RecordLayout& layout, std::vector<PendingPair>& pending);
  // The target's ID for the source record's natural key, or NULL when the key is free there.
  Result<Value> KeyOnTargetElsewhere(const RecordLayout& layout, const Record& source);
  void AddChange(const RecordLayout& layout, const Pair& pair, const Classification& c);
  Status CloseDependencies();
  Result<std::optional<Value>> SourceIdOfGalleryKey(const TableSpec& table, const std::string& key);
  Result<bool> ExistsOnTarget(const std::string& table, const Value& source_id);
  Result<bool> TargetHasGalleryFile(const std::string& table, const std::string& key);
  void Progress(const std::string& table, bool done);

  const Manifest& manifest_;
  store::Environment& source_;
  store::Environment& target_;
  store::StateStore& state_;
  const CompareRequest& request_;
  const CompareContext& context_;
  Side source_side_;
  Side target_side_;

  Comparison comparison_;
  std::set<std::string> modules_;
  FolderSelection folders_;
  IdentityMap identities_;
  std::map<std::string, KeyIndex> source_keys_;
  std::map<std::string, KeyIndex> target_keys_;
  std::map<std::string, RecordLayout> layouts_;
  std::map<std::string, std::vector<std::string>> columns_;  // table -> columns (source)
  const DigestPlan* plan_ = nullptr;  // of the table being compared, when it has one
  // Both sides' change logs, read in the snapshots; nullopt where tracking is off.
  std::optional<store::TrackingState> source_tracking_;
  std::optional<store::TrackingState> target_tracking_;
  // The IDs of the pairs found unequal in the table being compared, when it is Trackable.
  bool collect_unequal_ = false;
  std::set<int64_t> unequal_source_;
  std::set<int64_t> unequal_target_;
  std::vector<store::TrackingMark> marks_;  // saved once the base update has committed
  int64_t records_read_ = 0;
  int64_t next_progress_ = kProgressEvery;
  // Per listed change with a source record (by index): what that record references.
  std::map<size_t, std::vector<std::pair<std::string, Value>>> references_;
  std::map<size_t, std::vector<std::pair<std::string, std::string>>> json_references_;
};

Result<Comparison> Comparer::Run() {
  comparison_.id = context_.new_id();
  comparison_.created_at = context_.now();
  comparison_.from = source_.name();
  comparison_.to = target_.name();
  comparison_.mode = request_.mode;

  ENVSYNC_RETURN_IF_ERROR(CheckSchemas());
  ENVSYNC_RETURN_IF_ERROR(source_.BeginSnapshot());
  ENVSYNC_RETURN_IF_ERROR(target_.BeginSnapshot());
  if (TrackingEnabled()) {
    // Both sides at once (on a database server, a few round trips each).
    auto source_state = std::async(std::launch::async, [&] { return source_.ReadTracking(); });
    auto target_state = target_.ReadTracking();
    auto source_state_now = source_state.get();
    for (auto [env, tracking, state] : {std::tuple{&source_, &source_tracking_, &source_state_now},
                                        std::tuple{&target_, &target_tracking_, &target_state}}) {
      if (!state->ok()) return state->status();
      *tracking = std::move(**state);
      if (!*tracking) continue;
      for (const std::string& table : (*tracking)->broken) {
        comparison_.warnings.push_back(Warning{
            env->name(), table,
            fmt::format("change tracking of {} on {} is broken: some of its triggers are gone "
                        "(a schema migration?), so it is read whole; run `envsync track "
                        "enable {}` again",
                        table, env->name(), env->name())});
      }
    }
  }
  ENVSYNC_RETURN_IF_ERROR(LoadKeyIndexes());
  ENVSYNC_RETURN_IF_ERROR(CheckFolders());
  ENVSYNC_RETURN_IF_ERROR(SelectModules());
  auto identities = state_.LoadIdentityMap();
  if (!identities.ok()) return identities.status();
  identities_ = std::move(*identities);

  ENVSYNC_RETURN_IF_ERROR(state_.BeginBaseUpdate());
  Status status;
  for (const std::string& module_name : comparison_.modules) {
    for (const TableSpec& table : manifest_.FindModule(module_name)->tables) {
      status = CompareTable(table);
      if (!status.ok()) break;
      store::CrashPoint("table_compared");
    }
    if (!status.ok()) break;
  }
  if (status.ok()) status = CloseDependencies();
  if (!status.ok()) {
    state_.AbortBaseUpdate();
    return status;
  }
  ENVSYNC_RETURN_IF_ERROR(state_.CommitBaseUpdate());
  store::CrashPoint("compare_bases_committed");
  // A mark is written only after the bases it vouches for: a crash in between leaves the older
  // mark, which makes the next comparison read more, never less.
  for (const store::TrackingMark& mark : marks_) {
    ENVSYNC_RETURN_IF_ERROR(state_.SaveTrackingMark(mark));
  }
  (void)source_.EndSnapshot();
  (void)target_.EndSnapshot();

  // The review lists conflicts first, then new, modified and deleted records, each tab's in
  // the order they were listed: each change moved once (a stable sort moved each about log n
  // times, ≈ 15 ms for the issue-7 pair's 21,018 changes).
  std::vector<Change> ordered;
  ordered.reserve(comparison_.changes.size());
  for (const Tab tab : {Tab::kConflicts, Tab::kNew, Tab::kModified, Tab::kDeleted}) {
    for (Change& change : comparison_.changes) {
      if (change.tab == tab) ordered.push_back(std::move(change));
    }
  }
  comparison_.changes = std::move(ordered);
  comparison_.records_compared = records_read_;
  store::CrashPoint("compare_marks_saved");
  ENVSYNC_RETURN_IF_ERROR(state_.SaveComparison(comparison_));
  store::CrashPoint("comparison_saved");
  Progress("", /*done=*/true);
  return std::move(comparison_);
}

Status Comparer::CheckSchemas() {
  for (store::Environment* env : {&source_, &target_}) {
    ENVSYNC_RETURN_IF_ERROR(CheckEnvironmentSchema(manifest_, *env));
    for (const ModuleSpec& module : manifest_.modules()) {
      for (const TableSpec& table : module.tables) {
        std::vector<std::string> tables = {table.name};
        for (const ChildSpec& child : table.children) tables.push_back(child.table);
        for (const std::string& name : tables) {
          auto columns = env->Columns(name);
          if (!columns.ok()) return columns.status();
          if (env == &source_) {
            columns_[name] = *columns;
          } else if (*columns != columns_[name]) {
            return Status::InvalidArgument(fmt::format(
                "table '{}' has different columns on {} ({}) and {} ({}): both environments "
                "must carry the same schema",
                name, source_.name(), Join(columns_[name]), target_.name(), Join(*columns)));
          }
        }
      }
    }
  }
  return Status::Ok();
}

Status Comparer::LoadKeyIndexes() {
  // Tables referenced by another table's natural key, and the folder table.
  std::set<std::string> needed;
  if (const TableSpec* folders = manifest_.FolderTable()) needed.insert(folders->name);
  for (const ModuleSpec& module : manifest_.modules()) {
    for (const TableSpec& table : module.tables) {
      for (const std::string& column : table.key) {
        if (const std::string* referenced = table.ReferenceOf(column)) needed.insert(*referenced);
      }
    }
  }
  for (const std::string& name : needed) {
    const TableSpec* table = manifest_.FindTable(name);
    auto source_index = LoadKeyIndex(source_, *table);
    if (!source_index.ok()) return source_index.status();
    source_keys_[name] = std::move(*source_index);
    auto target_index = LoadKeyIndex(target_, *table);
    if (!target_index.ok()) return target_index.status();
    target_keys_[name] = std::move(*target_index);
  }
  return Status::Ok();
}

Status Comparer::CheckFolders() {
  const TableSpec* folder_table = manifest_.FolderTable();
  for (const std::string& folder : request_.folders) {
    if (folder_table == nullptr || (!source_keys_[folder_table->name].id_of.contains(folder) &&
                                    !target_keys_[folder_table->name].id_of.contains(folder))) {
      return Status::InvalidArgument(
          fmt::format("unknown gallery folder '{}' (--folders): it is on neither {} nor {}", folder,
                      source_.name(), target_.name()));
    }
  }
  folders_.folders = request_.folders;
  return Status::Ok();
}

Status Comparer::SelectModules() {
  std::vector<std::string> names;
  for (const ModuleSpec& module : manifest_.modules()) names.push_back(module.name);
  if (request_.modules.empty()) {
    modules_.insert(names.begin(), names.end());
  }
  ENVSYNC_RETURN_IF_ERROR(manifest_.CheckModuleNames(request_.modules));
  modules_.insert(request_.modules.begin(), request_.modules.end());
  const TableSpec* folder_table = manifest_.FolderTable();
  if (!request_.folders.empty() && folder_table != nullptr &&
      !modules_.contains(folder_table->module)) {
    return Status::InvalidArgument(fmt::format(
        "--folders restricts module '{}', which is not selected", folder_table->module));
  }

  // A module whose JSON names gallery files forces the gallery in, with at least those
  // folders (SYNC-SEMANTICS §2).
  for (const ModuleSpec& module : manifest_.modules()) {
    if (!modules_.contains(module.name)) continue;
    for (const TableSpec& table : module.tables) {
      for (const auto& [column, referenced_table] : table.json_references) {
        const TableSpec* assets = manifest_.FindTable(referenced_table);
        std::set<std::string> named_folders;
        store::ScanRequest scan;
        scan.table = table.name;
        scan.columns = {column};
        scan.filter = table.filter;
        auto cursor = source_.Scan(scan);
        if (!cursor.ok()) return cursor.status();
        std::vector<Value> row;
        while ((*cursor)->Next(&row)) {
          if (!std::holds_alternative<std::string>(row[0])) continue;
          for (const std::string& ref : GalleryReferences(std::get<std::string>(row[0]))) {
            named_folders.insert(ref.substr(0, ref.rfind('/')));
          }
        }
        ENVSYNC_RETURN_IF_ERROR((*cursor)->status());
        const bool was_selected = modules_.contains(assets->module);
        std::vector<std::string> added;
        for (const std::string& folder : named_folders) {
          if (!was_selected || !folders_.Includes(folder)) added.push_back(folder);
        }
        if (named_folders.empty() || (was_selected && added.empty())) continue;
        if (!was_selected) {
          modules_.insert(assets->module);
          folders_.folders = added;
        } else {
          folders_.folders.insert(folders_.folders.end(), added.begin(), added.end());
        }
        comparison_.forced.push_back(ForcedModule{assets->module, module.name, added});
      }
    }
  }
  for (const std::string& name : manifest_.ModuleOrder()) {
    if (modules_.contains(name)) comparison_.modules.push_back(name);
  }
  comparison_.folders = folders_.folders;
  return Status::Ok();
}

void Comparer::Progress(const std::string& table, bool done) {
  if (!context_.progress) return;
  context_.progress(
      CompareProgress{table, records_read_, done, source_.BytesRead() + target_.BytesRead()});
}

Status Comparer::CompareTable(const TableSpec& table) {
  std::vector<std::vector<std::string>> child_columns;
  for (const ChildSpec& child : table.children) child_columns.push_back(columns_[child.table]);
  const RecordLayout& layout =
      layouts_.emplace(table.name, RecordLayout::Make(table, columns_[table.name], child_columns))
          .first->second;

  collect_unequal_ = Trackable(table);
  unequal_source_.clear();
  unequal_target_.clear();
  auto plan = collect_unequal_ ? PlanByTracking(layout) : std::optional<DigestPlan>();
  if (!plan.ok()) return plan.status();
  if (!plan->has_value()) plan = PlanByDigests(layout);
  if (!plan.ok()) return plan.status();
  plan_ = plan->has_value() ? &**plan : nullptr;
  if (plan_ != nullptr && plan_->tracked) comparison_.tracked_tables.push_back(table.name);
  const int64_t read_before = records_read_;
  ReadContext source_context{&identities_, source_side_, &source_keys_, &folders_};
  ReadContext target_context{&identities_, target_side_, &target_keys_, &folders_};
  if (plan_ != nullptr && !plan_->read_all) {
    source_context.only_ids = &plan_->source_ids;
    target_context.only_ids = &plan_->target_ids;
    if (!plan_->source_at.empty()) source_context.only_ids_at = &plan_->source_at;
    if (!plan_->target_at.empty()) target_context.only_ids_at = &plan_->target_at;
    source_context.full_records = target_context.full_records = true;
  }
  std::vector<PendingPair> pending;
  std::vector<Record> deferred_source;
  std::vector<Record> deferred_target;
  {
    TableReader source_reader(source_, layout, source_context);
    TableReader target_reader(target_, layout, target_context);
    // A plan's few IDs (less than one batch for both sides together) are read on this thread;
    // otherwise each side is read on a thread of its own, and both sides' queries start at once
    // (on a database server, planning a read of 11,000 IDs takes 4-7 ms).
    const bool few =
        source_context.only_ids != nullptr &&
        plan_->source_ids.size() + plan_->target_ids.size() < PrefetchingReader::kBatch;
    {
      std::future<Status> source_started = std::async(
          few ? std::launch::deferred : std::launch::async, [&] { return source_reader.Start(); });
      const Status target_started = target_reader.Start();
      ENVSYNC_RETURN_IF_ERROR(source_started.get());
      ENVSYNC_RETURN_IF_ERROR(target_started);
    }
    // Only the bases of the records read, when a plan leaves most of them unread, and of
    // those only the ones no side's row holds as it is (the plan's known bases).
    std::vector<int64_t> read_ids;
    const std::vector<KnownBase> no_known_bases;
    const std::vector<KnownBase>& known_bases =
        source_context.only_ids != nullptr ? plan_->known_bases : no_known_bases;
    if (source_context.only_ids != nullptr) {
      std::vector<int64_t> pairs;
      std::set_union(plan_->source_ids.begin(), plan_->source_ids.end(), plan_->target_ids.begin(),
                     plan_->target_ids.end(), std::back_inserter(pairs));
      KnownBaseWalker known(known_bases);
      for (const int64_t id : pairs) {
        if (known.Find(id) == nullptr) read_ids.push_back(id);
      }
    }
    auto base_cursor = source_context.only_ids != nullptr
                           ? state_.ScanDirectBase(table.name, read_ids)
                           : state_.ScanDirectBase(table.name);
    if (!base_cursor.ok()) return base_cursor.status();
    // This thread merges the two ID-ordered streams with the base.
    PrefetchingReader source(&source_reader, !few);
    PrefetchingReader target(&target_reader, !few);

    auto direct = [&](const Value& id) {
      const auto* number = std::get_if<int64_t>(&id);
      return number == nullptr || identities_.IsDirect(table.name, *number);
    };
    Record s;
    Record t;
    bool has_s = source.Next(&s);
    bool has_t = target.Next(&t);
    store::SyncBase base;
    bool has_base = (*base_cursor)->Next(&base);
    // A known base is made from the record its side holds, or, when that side holds none (a
    // plan from the change logs: the other side inserted it), looked up alone, since a base
    // may outlive both sides' records.
    KnownBaseWalker known_walker(known_bases);
    store::SyncBase known_base;
    auto base_of_known = [&](const KnownBase& known, const Value& id,
                             const Pair& pair) -> Result<const store::SyncBase*> {
      const Record* as_base = known.is_source ? pair.source : pair.target;
      if (as_base == nullptr) {
        auto found = state_.FindBase(table.name, id, id);
        if (!found.ok()) return found.status();
        if (!*found) return static_cast<const store::SyncBase*>(nullptr);
        known_base = std::move(**found);
        return &known_base;
      }
      known_base.prod_id = id;
      known_base.test_id = id;
      known_base.hash = as_base->hash;
      known_base.field_hashes = as_base->field_hashes;
      known_base.prod_digest = known.prod_digest;
      known_base.test_digest = known.test_digest;
      return &known_base;
    };
    Status status;
    while (status.ok() && (has_s || has_t)) {
      // Records matched through the identity map are paired after the merge.
      if (has_s && !direct(s.id)) {
        deferred_source.push_back(std::move(s));
        has_s = source.Next(&s);
        continue;
      }
      if (has_t && !direct(t.id)) {
        deferred_target.push_back(std::move(t));
        has_t = target.Next(&t);
        continue;
      }
      std::strong_ordering order = std::strong_ordering::equal;
      if (!has_s) {
        order = std::strong_ordering::greater;
      } else if (!has_t) {
        order = std::strong_ordering::less;
      } else {
        order = CompareValues(s.id, t.id);
      }
      const Value& id = order == std::strong_ordering::greater ? t.id : s.id;
      while (has_base && CompareValues(base.prod_id, id) < 0) {
        has_base = (*base_cursor)->Next(&base);
      }
      Pair pair;
      if (order != std::strong_ordering::greater) pair.source = &s;
      if (order != std::strong_ordering::less) pair.target = &t;
      const auto* number = std::get_if<int64_t>(&id);
      if (has_base && CompareValues(base.prod_id, id) == 0) {
        pair.base = &base;
      } else if (const KnownBase* known = number ? known_walker.Find(*number) : nullptr) {
        auto made = base_of_known(*known, id, pair);
        if (!made.ok()) return made.status();
        pair.base = *made;
      }
      status = Visit(layout, pair, &pending);
      records_read_ += (order == std::strong_ordering::equal) ? 2 : 1;
      if (records_read_ >= next_progress_) {
        next_progress_ += kProgressEvery;
        Progress(table.name, false);
      }
      if (order != std::strong_ordering::greater) has_s = source.Next(&s);
      if (order != std::strong_ordering::less) has_t = target.Next(&t);
    }
    ENVSYNC_RETURN_IF_ERROR(status);
    ENVSYNC_RETURN_IF_ERROR(source.status());
    ENVSYNC_RETURN_IF_ERROR(target.status());
    ENVSYNC_RETURN_IF_ERROR((*base_cursor)->status());
    for (const PrefetchingReader* reader : {&source, &target}) {
      comparison_.warnings.insert(comparison_.warnings.end(), reader->warnings().begin(),
                                  reader->warnings().end());
    }
  }

  // Records matched through the identity map, or left without a counterpart by it.
  std::map<int64_t, size_t> target_by_id;
  for (size_t i = 0; i < deferred_target.size(); ++i) {
    target_by_id[std::get<int64_t>(deferred_target[i].id)] = i;
  }
  std::vector<bool> target_used(deferred_target.size(), false);
  auto base_of = [&](const Value& source_id,
                     const Value& target_id) -> Result<std::optional<store::SyncBase>> {
    const Value& prod = source_side_ == Side::kProd ? source_id : target_id;
    const Value& test = source_side_ == Side::kProd ? target_id : source_id;
    return state_.FindBase(table.name, prod, test);
  };
  for (Record& record : deferred_source) {
    Pair pair;
    pair.source = &record;
    std::optional<store::SyncBase> base;
    auto counterpart =
        identities_.Counterpart(table.name, source_side_, std::get<int64_t>(record.id));
    if (counterpart) {
      auto it = target_by_id.find(*counterpart);
      if (it != target_by_id.end()) {
        pair.target = &deferred_target[it->second];
        target_used[it->second] = true;
      }
      auto found = base_of(record.id, *counterpart);
      if (!found.ok()) return found.status();
      base = std::move(*found);
    }
    if (base) pair.base = &*base;
    records_read_ += pair.target != nullptr ? 2 : 1;
    ENVSYNC_RETURN_IF_ERROR(Visit(layout, pair, &pending));
  }
  for (size_t i = 0; i < deferred_target.size(); ++i) {
    if (target_used[i]) continue;
    Pair pair;
    pair.target = &deferred_target[i];
    std::optional<store::SyncBase> base;
    auto counterpart =
        identities_.Counterpart(table.name, target_side_, std::get<int64_t>(deferred_target[i].id));
    if (counterpart) {
      auto found = base_of(*counterpart, deferred_target[i].id);
      if (!found.ok()) return found.status();
      base = std::move(*found);
    }
    if (base) pair.base = &*base;
    records_read_ += 1;
    ENVSYNC_RETURN_IF_ERROR(Visit(layout, pair, &pending));
  }
  ENVSYNC_RETURN_IF_ERROR(ListPending(layout, pending));
  // What the plan left unread was compared by its digests.
  if (plan_ != nullptr && !plan_->tracked) records_read_ = read_before + plan_->rows;
  plan_ = nullptr;
  if (collect_unequal_) {
    const store::TrackingState& prod = *ProdOf(source_tracking_, target_tracking_);
    const store::TrackingState& test = *TestOf(source_tracking_, target_tracking_);
    const std::set<int64_t>& prod_unequal = ProdOf(unequal_source_, unequal_target_);
    const std::set<int64_t>& test_unequal = TestOf(unequal_source_, unequal_target_);
    store::TrackingMark mark;
    mark.table = table.name;
    mark.prod_epoch = prod.epoch;
    mark.prod_position = prod.position;
    mark.test_epoch = test.epoch;
    mark.test_position = test.position;
    mark.mix = TrackingMix(layout);
    mark.unequal_prod.assign(prod_unequal.begin(), prod_unequal.end());
    mark.unequal_test.assign(test_unequal.begin(), test_unequal.end());
    marks_.push_back(std::move(mark));
  }
  collect_unequal_ = false;
  Progress(table.name, false);
  return Status::Ok();
}

uint64_t Comparer::IdentityMix(const TableSpec& table) const {
  // A record's hash reads its references through the identity map, so stored digests hold
  // only while the pairs of the referenced tables are the ones they were recorded with.
  std::set<std::string> referenced;
  for (const auto& [column, name] : table.references) referenced.insert(name);
  for (const auto& [column, name] : table.json_references) referenced.insert(name);
  for (const ChildSpec& child : table.children) {
    for (const auto& [column, name] : child.references) referenced.insert(name);
  }
  std::string bytes = "envsync digests v1";
  for (const std::string& name : referenced) {
    bytes += "|" + name;
    for (const auto& [prod, test] : identities_.Pairs(name)) {
      bytes += fmt::format(",{}:{}", prod, test);
    }
  }
  return HashBytes(bytes);
}

Result<std::optional<DigestPlan>> Comparer::PlanByDigests(const RecordLayout& layout) {
  const TableSpec& table = *layout.table;
  if (table.asset || !RemoteDigestsEnabled()) return std::optional<DigestPlan>();
  for (const std::string& column : table.key) {
    // A key naming another table's record hashes that record's key, which no digest covers.
    if (table.ReferenceOf(column) != nullptr) return std::optional<DigestPlan>();
  }
  store::DigestRequest request;
  request.table = table.name;
  request.id = table.id;
  request.columns = layout.columns;
  request.filter = table.filter;
  for (const ChildLayout& child : layout.children) {
    request.children.push_back({child.spec->table, child.spec->parent, child.columns});
  }
  using RowDigestList = Result<std::optional<std::vector<store::RowDigest>>>;
  auto none = [] { return RowDigestList(std::optional<std::vector<store::RowDigest>>()); };
  // Both servers digest their rows (by buckets, below); where neither does (SQLite files), each
  // environment may read every row's digest from its own storage (only for a table with no
  // filter and no child rows): both sides at once, and the bases' digests on a third thread
  // beside them. A server paired with a file has neither.
  const bool servers = source_.ComputesDigests() && target_.ComputesDigests();
  const bool rows_possible = !request.filter && request.children.empty() &&
                             !source_.ComputesDigests() && !target_.ComputesDigests();
  if (!rows_possible && !servers) return std::optional<DigestPlan>();
  auto bases_future = std::async(rows_possible ? std::launch::async : std::launch::deferred,
                                 [&] { return state_.LoadBaseDigests(table.name); });
  auto source_rows_future = std::async(
      std::launch::async, [&] { return rows_possible ? source_.RowDigests(request) : none(); });
  RowDigestList target_rows = rows_possible ? target_.RowDigests(request) : none();
  RowDigestList source_rows = source_rows_future.get();
  if (!source_rows.ok()) return source_rows.status();
  if (!target_rows.ok()) return target_rows.status();
  const bool by_rows = source_rows->has_value() && target_rows->has_value();
  if (!by_rows && !servers) return std::optional<DigestPlan>();
  auto bases = bases_future.get();
  if (!bases.ok()) return bases.status();
  DigestPlan plan;
  plan.mix = IdentityMix(table);
  if (by_rows) {
    // A file's digest covers every stored byte of the row, not the columns compared: the
    // layout (the columns compared, local ones left out) goes into the mix, so a manifest that
    // compares other columns reads every record again.
    plan.mix = TrackingMix(layout);
    PlanByRowDigests(table.name, std::move(**source_rows), std::move(**target_rows), *bases, &plan);
    return std::optional<DigestPlan>(std::move(plan));
  }
  // What the bases recorded: each direct pair's digests on both sides (in ID order). A pair
  // without them (unequal, synced since, or paired through the identity map) is left out, so
  // it counts as changed and is read.
  struct Recorded {
    int64_t id;
    uint64_t source;
    uint64_t target;
  };
  std::vector<Recorded> recorded;
  recorded.reserve(bases->size());
  DirectIds direct(identities_, table.name);
  for (const store::BaseDigests& base : *bases) {
    if (!direct(base.id)) continue;
    const uint64_t prod = base.prod_digest ^ plan.mix;
    const uint64_t test = base.test_digest ^ plan.mix;
    recorded.push_back(Recorded{base.id, source_side_ == Side::kProd ? prod : test,
                                source_side_ == Side::kProd ? test : prod});
  }
  struct Tally {
    int64_t rows = 0;
    uint64_t digest = 0;
    bool operator==(const Tally&) const = default;
  };
  // The descent: buckets of 32 IDs over the whole table (one small row per 32 records), then
  // single rows inside the buckets that differ. Each level asks both servers at once and makes
  // each server hash the rows it covers, so a third, coarser level would hash the table twice.
  constexpr int kLevels[] = {5, 0};
  std::vector<int64_t> within;
  int within_bits = 0;
  std::vector<int64_t> dirty_ids;  // sorted
  // Nothing recorded (the table's first compare, or a new mix): every bucket would differ, so
  // the rows are digested at once, without the pass over the buckets (≈ 4 s of a first compare
  // at 1M rows a side).
  const bool nothing_recorded = recorded.empty();
  for (const int bits : kLevels) {
    if (nothing_recorded && bits != 0) continue;
    // Past an eighth of the table the rows are digested in one pass, not looked up by ID.
    const bool most =
        nothing_recorded || (bits != kLevels[0] && plan.rows > 0 &&
                             static_cast<int64_t>(within.size() << within_bits) > plan.rows / 8);
    const std::vector<int64_t>* inside = bits == kLevels[0] || most ? nullptr : &within;
    auto source_future = std::async(std::launch::async, [&] {
      return source_.DigestBuckets(request, bits, within_bits, inside);
    });
    auto target_now = target_.DigestBuckets(request, bits, within_bits, inside);
    auto source_now = source_future.get();
    for (const auto* now : {&source_now, &target_now}) {
      if (!now->ok()) {
        if (now->status().code() == Status::Code::kInvalidArgument) {
          return std::optional<DigestPlan>();  // not an integer ID: read it whole
        }
        return now->status();
      }
    }
    if (bits == kLevels[0] || nothing_recorded) {
      for (const auto* now : {&source_now, &target_now}) {
        for (const auto& b : **now) plan.rows += b.rows;
      }
    }
    // Both servers answer in bucket order and `recorded` is in ID order, so each list of
    // tallies comes out in bucket order and one merge finds the buckets that differ (maps of
    // 31,000 buckets filled from 1M recorded digests took ≈ 16 % of the comparing thread).
    struct Bucket {
      int64_t bucket = 0;
      Tally source;
      Tally target;
      bool operator==(const Bucket&) const = default;
    };
    std::vector<Bucket> now;
    now.reserve(std::max(source_now->size(), target_now->size()));
    for (size_t i = 0, j = 0; i < source_now->size() || j < target_now->size();) {
      const store::DigestBucket* s = i < source_now->size() ? &(*source_now)[i] : nullptr;
      const store::DigestBucket* t = j < target_now->size() ? &(*target_now)[j] : nullptr;
      const int64_t bucket = s == nullptr   ? t->bucket
                             : t == nullptr ? s->bucket
                                            : std::min(s->bucket, t->bucket);
      Bucket b{bucket, {}, {}};
      if (s != nullptr && s->bucket == bucket) {
        b.source = {s->rows, s->digest};
        ++i;
      }
      if (t != nullptr && t->bucket == bucket) {
        b.target = {t->rows, t->digest};
        ++j;
      }
      now.push_back(b);
    }
    std::vector<Bucket> then;
    for (const Recorded& r : recorded) {
      if (inside != nullptr &&
          !std::binary_search(within.begin(), within.end(), r.id >> within_bits)) {
        continue;
      }
      const int64_t bucket = r.id >> bits;
      if (then.empty() || then.back().bucket != bucket) then.push_back(Bucket{bucket, {}, {}});
      ++then.back().source.rows;
      then.back().source.digest ^= r.source;
      ++then.back().target.rows;
      then.back().target.digest ^= r.target;
    }
    std::vector<int64_t> dirty;
    for (size_t i = 0, j = 0; i < now.size() || j < then.size();) {
      if (j == then.size() || (i < now.size() && now[i].bucket < then[j].bucket)) {
        dirty.push_back(now[i++].bucket);  // no base recorded in it
      } else if (i == now.size() || then[j].bucket < now[i].bucket) {
        dirty.push_back(then[j++].bucket);  // its rows are gone
      } else {
        if (!(now[i] == then[j])) dirty.push_back(now[i].bucket);
        ++i;
        ++j;
      }
    }
    if (bits == 0) {
      // Single rows: the digests of these are what a base written now keeps.
      for (const auto& b : *source_now) plan.source_digests.push_back({b.bucket, b.digest});
      for (const auto& b : *target_now) plan.target_digests.push_back({b.bucket, b.digest});
      dirty_ids = dirty;
    }
    within = std::move(dirty);
    within_bits = bits;
    if (within.empty()) break;
  }
  ExpandToPairs(table.name, dirty_ids, &plan);
  plan.read_all =
      static_cast<int64_t>(plan.source_ids.size() + plan.target_ids.size()) > plan.rows / 4;
  return std::optional<DigestPlan>(std::move(plan));
}

void Comparer::PlanByRowDigests(const std::string& table, std::vector<store::RowDigest> source,
                                std::vector<store::RowDigest> target,
                                const std::vector<store::BaseDigests>& bases, DigestPlan* plan) {
  // One merge of the three lists, all in ID order: an ID is read when a side gained, lost or
  // changed its row since its base recorded both digests, or has no such base (`bases`: the
  // direct pairs' digests as stored, with the mix). A long merge is cut at its middle ID and
  // the upper half merged on a second thread (the two halves of a 1M table: ≈ 6 ms).
  const bool source_is_prod = source_side_ == Side::kProd;
  const uint64_t mix = plan->mix;
  auto merge = [&](size_t s, size_t s_end, size_t t, size_t t_end, size_t r, size_t r_end,
                   DirectIds direct, std::vector<int64_t>* changed, std::vector<KnownBase>* known) {
    constexpr int64_t kEnd = std::numeric_limits<int64_t>::max();
    while (s < s_end || t < t_end || r < r_end) {
      const int64_t id = std::min({s < s_end ? source[s].id : kEnd, t < t_end ? target[t].id : kEnd,
                                   r < r_end ? bases[r].id : kEnd});
      const store::RowDigest* on_source = s < s_end && source[s].id == id ? &source[s++] : nullptr;
      const store::RowDigest* on_target = t < t_end && target[t].id == id ? &target[t++] : nullptr;
      const store::BaseDigests* base = r < r_end && bases[r].id == id ? &bases[r++] : nullptr;
      const bool is_direct = direct(id);
      const bool source_as_base =
          base != nullptr && on_source != nullptr &&
          on_source->digest == ((source_is_prod ? base->prod_digest : base->test_digest) ^ mix);
      const bool target_as_base =
          base != nullptr && on_target != nullptr &&
          on_target->digest == ((source_is_prod ? base->test_digest : base->prod_digest) ^ mix);
      // A pair joined through the identity map is read whatever its digests.
      if (source_as_base && target_as_base && is_direct) continue;
      changed->push_back(id);
      if (is_direct && (source_as_base || target_as_base)) {
        known->push_back(KnownBase{id, source_as_base, base->prod_digest, base->test_digest});
      }
    }
  };
  const DirectIds direct(identities_, table);
  std::vector<int64_t> changed;
  constexpr size_t kSplitFrom = size_t{1} << 15;  // rows on both sides
  if (source.size() + target.size() < kSplitFrom || source.empty()) {
    merge(0, source.size(), 0, target.size(), 0, bases.size(), direct, &changed,
          &plan->known_bases);
  } else {
    const int64_t middle = source[source.size() / 2].id;
    auto below = [middle](const auto& row) { return row.id < middle; };
    const auto s_mid = static_cast<size_t>(
        std::partition_point(source.begin(), source.end(), below) - source.begin());
    const auto t_mid = static_cast<size_t>(
        std::partition_point(target.begin(), target.end(), below) - target.begin());
    const auto r_mid = static_cast<size_t>(std::partition_point(bases.begin(), bases.end(), below) -
                                           bases.begin());
    std::vector<int64_t> upper_changed;
    std::vector<KnownBase> upper_known;
    auto upper = [&] {
      merge(s_mid, source.size(), t_mid, target.size(), r_mid, bases.size(), direct, &upper_changed,
            &upper_known);
    };
    std::future<void> upper_merged;
    try {
      upper_merged = std::async(std::launch::async, upper);
    } catch (const std::system_error&) {
      upper_merged = std::async(std::launch::deferred, upper);  // no thread to spare
    }
    merge(0, s_mid, 0, t_mid, 0, r_mid, direct, &changed, &plan->known_bases);
    upper_merged.get();
    changed.insert(changed.end(), upper_changed.begin(), upper_changed.end());
    plan->known_bases.insert(plan->known_bases.end(), upper_known.begin(), upper_known.end());
  }
  plan->rows = static_cast<int64_t>(source.size() + target.size());
  ExpandToPairs(table, changed, plan);
  plan->read_all =
      static_cast<int64_t>(plan->source_ids.size() + plan->target_ids.size()) > plan->rows / 4;
  // The digests a base written now keeps: of every row when the table is read whole, else of
  // the rows read, with where each of those is stored, so it is read there alone.
  if (plan->read_all) {
    plan->known_bases.clear();  // the whole table's bases are scanned anyway
    plan->source_digests = std::move(source);
    plan->target_digests = std::move(target);
    return;
  }
  auto places = [](const std::vector<store::RowDigest>& rows, const std::vector<int64_t>& ids,
                   std::vector<uint64_t>* at, std::vector<store::RowDigest>* kept) {
    at->reserve(ids.size());
    kept->reserve(ids.size());
    RowWalker walker(rows);
    for (int64_t id : ids) {
      const store::RowDigest* row = walker.Find(id);
      at->push_back(row == nullptr ? store::kRowAbsent : row->at);
      if (row != nullptr) kept->push_back({id, row->digest});
    }
  };
  places(source, plan->source_ids, &plan->source_at, &plan->source_digests);
  places(target, plan->target_ids, &plan->target_at, &plan->target_digests);
}

void Comparer::ExpandToPairs(const std::string& table, const std::vector<int64_t>& ids,
                             DigestPlan* plan) {
  // Each record read brings its counterpart: the same ID, or its identity pair.
  plan->source_ids = ids;
  plan->target_ids = ids;
  bool added = false;
  for (int64_t id : ids) {
    if (identities_.IsDirect(table, id)) continue;
    if (auto other = identities_.Counterpart(table, source_side_, id)) {
      plan->target_ids.push_back(*other);
      added = true;
    }
    if (auto other = identities_.Counterpart(table, target_side_, id)) {
      plan->source_ids.push_back(*other);
      added = true;
    }
  }
  if (!added) return;
  for (auto* list : {&plan->source_ids, &plan->target_ids}) {
    std::sort(list->begin(), list->end());
    list->erase(std::unique(list->begin(), list->end()), list->end());
  }
}

bool Comparer::Trackable(const TableSpec& table) const {
  if (!source_tracking_ || !target_tracking_ || !IsTrackable(table)) return false;
  for (const auto* state : {&*source_tracking_, &*target_tracking_}) {
    if (std::find(state->tables.begin(), state->tables.end(), table.name) == state->tables.end()) {
      return false;
    }
  }
  return true;
}

uint64_t Comparer::TrackingMix(const RecordLayout& layout) const {
  // What a record's hash depends on besides its rows: the columns compared, the row filter,
  // and the identity pairs of the tables it references and of its own table.
  const TableSpec& table = *layout.table;
  std::string bytes = fmt::format("envsync tracking v1|{}|{:x}", table.name, IdentityMix(table));
  for (const std::string& column : layout.columns) bytes += "|c:" + column;
  for (const ChildLayout& child : layout.children) {
    bytes += "|child:" + child.spec->table;
    for (const std::string& column : child.columns) bytes += "," + column;
  }
  if (table.filter) bytes += "|filter:" + table.filter->column + "=" + table.filter->prefix;
  for (const auto& [prod, test] : identities_.Pairs(table.name)) {
    bytes += fmt::format("|{}:{}", prod, test);
  }
  return HashBytes(bytes);
}

Result<std::optional<DigestPlan>> Comparer::PlanByTracking(const RecordLayout& layout) {
  const TableSpec& table = *layout.table;
  auto mark = state_.LoadTrackingMark(table.name);
  if (!mark.ok()) return mark.status();
  if (!*mark) return std::optional<DigestPlan>();
  const store::TrackingState& prod = *ProdOf(source_tracking_, target_tracking_);
  const store::TrackingState& test = *TestOf(source_tracking_, target_tracking_);
  if ((*mark)->prod_epoch != prod.epoch || (*mark)->test_epoch != test.epoch ||
      (*mark)->mix != TrackingMix(layout)) {
    return std::optional<DigestPlan>();
  }
  store::Environment& prod_env = ProdOf(source_, target_);
  store::Environment& test_env = TestOf(source_, target_);
  auto prod_changed = prod_env.ChangedSince(table.name, (*mark)->prod_position);
  if (!prod_changed.ok()) return prod_changed.status();
  auto test_changed = test_env.ChangedSince(table.name, (*mark)->test_position);
  if (!test_changed.ok()) return test_changed.status();
  if (!*prod_changed || !*test_changed) return std::optional<DigestPlan>();
  // Every record is read under its own ID on its own side, and brings its counterpart. All
  // four lists are sorted and distinct (the mark's and ChangedSince's contracts).
  auto united = [](const std::vector<int64_t>& a, const std::vector<int64_t>& b) {
    std::vector<int64_t> out;
    out.reserve(a.size() + b.size());
    std::set_union(a.begin(), a.end(), b.begin(), b.end(), std::back_inserter(out));
    return out;
  };
  const std::vector<int64_t>& prod_wrote = **prod_changed;
  const std::vector<int64_t>& test_wrote = **test_changed;
  const std::vector<int64_t> unequal = united((*mark)->unequal_prod, (*mark)->unequal_test);
  const std::vector<int64_t> wrote = united(prod_wrote, test_wrote);
  DigestPlan plan;
  plan.tracked = true;
  // A pair equal at the mark has its base current then; the side that has not written it
  // since still holds that record.
  DirectIds direct(identities_, table.name);
  const bool source_is_prod = source_side_ == Side::kProd;
  auto holds = [](const std::vector<int64_t>& ids, int64_t id) {
    return std::binary_search(ids.begin(), ids.end(), id);
  };
  for (const int64_t id : wrote) {
    if (!direct(id) || holds(unequal, id)) continue;
    const bool prod_kept = !holds(prod_wrote, id);
    if (prod_kept == !holds(test_wrote, id)) continue;  // both wrote it
    plan.known_bases.push_back(KnownBase{id, prod_kept == source_is_prod, {}, {}});
  }
  ExpandToPairs(table.name, united(unequal, wrote), &plan);
  return std::optional<DigestPlan>(std::move(plan));
}

Status Comparer::Visit(const RecordLayout& layout, const Pair& pair,
                       std::vector<PendingPair>* pending) {
  const bool in_scope = (pair.source != nullptr && pair.source->in_scope) ||
                        (pair.target != nullptr && pair.target->in_scope);
  if (!in_scope) return Status::Ok();
  if (pair.source != nullptr && pair.target != nullptr && pair.source->hash == pair.target->hash) {
    // Equal: this is the pair's last common state now, with what the servers digested of it.
    std::optional<uint64_t> prod_digest;
    std::optional<uint64_t> test_digest;
    if (plan_ != nullptr && !plan_->tracked) {
      const auto* source_id = std::get_if<int64_t>(&pair.source->id);
      const auto* target_id = std::get_if<int64_t>(&pair.target->id);
      const uint64_t* s = source_id ? FindDigest(plan_->source_digests, *source_id) : nullptr;
      const uint64_t* t = target_id ? FindDigest(plan_->target_digests, *target_id) : nullptr;
      if (s != nullptr && t != nullptr) {
        prod_digest = (source_side_ == Side::kProd ? *s : *t) ^ plan_->mix;
        test_digest = (source_side_ == Side::kProd ? *t : *s) ^ plan_->mix;
      }
    }
    if (pair.base == nullptr || pair.base->hash != pair.source->hash ||
        pair.base->field_hashes != pair.source->field_hashes ||
        (prod_digest &&
         (pair.base->prod_digest != prod_digest || pair.base->test_digest != test_digest))) {
      store::SyncBase base;
      base.prod_id = source_side_ == Side::kProd ? pair.source->id : pair.target->id;
      base.test_id = source_side_ == Side::kProd ? pair.target->id : pair.source->id;
      base.hash = pair.source->hash;
      base.field_hashes = pair.source->field_hashes;
      base.prod_digest = prod_digest;
      base.test_digest = test_digest;
      return state_.PutBase(layout.table->name, base);
    }
    return Status::Ok();
  }
  if (collect_unequal_) {
    // Not equal: the next comparison from the change logs reads this pair again.
    if (const auto* id = pair.source ? std::get_if<int64_t>(&pair.source->id) : nullptr) {
      unequal_source_.insert(*id);
    }
    if (const auto* id = pair.target ? std::get_if<int64_t>(&pair.target->id) : nullptr) {
      unequal_target_.insert(*id);
    }
  }
  PendingPair entry;
  if (pair.source != nullptr && pair.target == nullptr && pair.base == nullptr) {
    // Whether its natural key exists on the target under another ID is looked up once the
    // table's scans are done.
    entry.needs_key_lookup = true;
  } else {
    PairState state;
    if (pair.source != nullptr) state.source = pair.source->hash;
    if (pair.target != nullptr) state.target = pair.target->hash;
    if (pair.base != nullptr) state.base = pair.base->hash;
    if (pair.source != nullptr && pair.target != nullptr) {
      state.keys_equal = pair.source->key_hash == pair.target->key_hash;
    }
    entry.classification = Classify(state, request_.mode);
    if (!entry.classification.listed) return Status::Ok();
  }
  if (pair.source != nullptr) entry.source = std::move(*pair.source);
  if (pair.target != nullptr) entry.target = std::move(*pair.target);
  if (pair.base != nullptr) entry.base = *pair.base;
  pending->push_back(std::move(entry));
  return Status::Ok();
}

Result<Value> Comparer::KeyOnTargetElsewhere(const RecordLayout& layout, const Record& source) {
  auto ids =
      FindByNaturalKey(target_, layout, source.id, source.values, source_keys_, target_keys_);
  if (!ids.ok()) return ids.status();
  return ids->empty() ? Value() : ids->front();
}

Status Comparer::ListPending(const RecordLayout& layout, std::vector<PendingPair>& pending) {
  if (pending.empty()) return Status::Ok();
  // Read both sides in full, from the same snapshots the light records came from. The merge
  // found the pairs in ascending ID order: those are read by one ordered scan per side (with
  // the IDs as its list), the few that come out of order (pairs matched through the identity
  // map) one by one.
  std::vector<int64_t> stream_ids[2];
  std::vector<uint8_t> streamed[2];
  for (int side = 0; side < 2; ++side) streamed[side].assign(pending.size(), 0);
  for (size_t i = 0; i < pending.size(); ++i) {
    int side = 0;
    for (const std::optional<Record>* light : {&pending[i].source, &pending[i].target}) {
      // A record read in full already (a plan's read of a few IDs) is not read again.
      const bool needed = light->has_value() && !(*light)->full;
      const auto* id = needed ? std::get_if<int64_t>(&(*light)->id) : nullptr;
      if (id != nullptr && (stream_ids[side].empty() || *id > stream_ids[side].back())) {
        stream_ids[side].push_back(*id);
        streamed[side][i] = 1;
      }
      ++side;
    }
  }
  ReadContext source_context{&identities_, source_side_, &source_keys_, &folders_};
  ReadContext target_context{&identities_, target_side_, &target_keys_, &folders_};
  TableReader source_reader(source_, layout, source_context);
  TableReader target_reader(target_, layout, target_context);
  source_context.only_ids = &stream_ids[0];
  target_context.only_ids = &stream_ids[1];
  TableReader source_stream(source_, layout, source_context);
  TableReader target_stream(target_, layout, target_context);
  if (!stream_ids[0].empty()) ENVSYNC_RETURN_IF_ERROR(source_stream.Start());
  if (!stream_ids[1].empty()) ENVSYNC_RETURN_IF_ERROR(target_stream.Start());
  Record source;
  Record target;
  for (size_t i = 0; i < pending.size(); ++i) {
    PendingPair& entry = pending[i];
    int side = 0;
    for (auto [light, reader, stream, full] :
         {std::tuple{&entry.source, &source_reader, &source_stream, &source},
          std::tuple{&entry.target, &target_reader, &target_stream, &target}}) {
      const bool from_stream = streamed[side++][i] != 0;
      if (!light->has_value()) continue;
      if ((*light)->full) {
        *full = std::move(**light);
        continue;
      }
      bool found = false;
      if (from_stream) {
        found = stream->NextFull(full);
        if (!found) ENVSYNC_RETURN_IF_ERROR(stream->status());
        found = found && CompareValues(full->id, (*light)->id) == 0;
      } else {
        auto fetched = reader->Fetch((*light)->id, full);
        if (!fetched.ok()) return fetched.status();
        found = *fetched;
      }
      if (!found || full->hash != (*light)->hash) {
        return Status::Internal(fmt::format("{} changed while it was being compared",
                                            RecordRef(layout.table->name, (*light)->id)));
      }
    }
    std::optional<uint64_t> clash_hash;
    if (entry.needs_key_lookup) {
      PairState state;
      state.source = source.hash;
      auto elsewhere = KeyOnTargetElsewhere(layout, source);
      if (!elsewhere.ok()) return elsewhere.status();
      state.key_on_target_elsewhere = !IsNull(*elsewhere);
      entry.classification = Classify(state, request_.mode);
      if (!entry.classification.listed) continue;
      if (state.key_on_target_elsewhere) {
        // The record a `link` would overwrite: its hash lets the sync's drift guard check it.
        auto found = target_reader.Fetch(*elsewhere, &target);
        if (!found.ok()) return found.status();
        if (*found) clash_hash = target.hash;
      }
    }
    Pair pair;
    if (entry.source) pair.source = &source;
    if (entry.target) pair.target = &target;
    if (entry.base) pair.base = &*entry.base;
    AddChange(layout, pair, entry.classification);
    if (clash_hash) comparison_.changes.back().target_hash = clash_hash;
  }
  return Status::Ok();
}

void Comparer::AddChange(const RecordLayout& layout, const Pair& pair, const Classification& c) {
  Change change;
  change.tab = c.tab;
  change.module = layout.table->module;
  change.table = layout.table->name;
  change.selected = c.selected;
  change.conflict = c.conflict;
  change.reason = c.reason;
  if (pair.source != nullptr) {
    change.source_id = pair.source->id;
    change.key = pair.source->key;
    change.source_hash = pair.source->hash;
  }
  if (pair.target != nullptr) {
    change.target_id = pair.target->id;
    if (change.key.empty()) change.key = pair.target->key;
    change.target_hash = pair.target->hash;
  }
  // Keep the record's references for the closure pass (before its values move into the change).
  if (pair.source != nullptr) {
    const size_t position = comparison_.changes.size();
    if (!pair.source->references.empty()) {
      auto& refs = references_[position];
      for (const auto& [referenced, id] : pair.source->references) {
        refs.emplace_back(*referenced, id);
      }
    }
    for (const auto& [column, assets] : layout.table->json_references) {
      const int index = layout.ColumnIndex(column);
      if (index < 0) continue;
      const Value& json = pair.source->values[index];
      if (!std::holds_alternative<std::string>(json)) continue;
      for (const std::string& key : GalleryReferences(std::get<std::string>(json))) {
        json_references_[position].emplace_back(assets, key);
      }
    }
  }
  const size_t n = layout.fields.size();
  const bool base_fields = pair.base && pair.base->field_hashes.size() == n;
  bool source_changed_any = false;
  bool target_changed_any = false;
  bool overlap = false;
  for (size_t f = 0; f < n; ++f) {
    const uint64_t* sh = pair.source != nullptr ? &pair.source->field_hashes[f] : nullptr;
    const uint64_t* th = pair.target != nullptr ? &pair.target->field_hashes[f] : nullptr;
    if (sh != nullptr && th != nullptr && *sh == *th) continue;
    FieldDiff diff;
    diff.field = layout.fields[f].name;
    diff.json = layout.fields[f].kind == FieldLayout::Kind::kChildren;
    // The pair's records are read again for the next pair: their values move into the change.
    if (pair.source != nullptr) diff.source = std::move(pair.source->values[f]);
    if (pair.target != nullptr) diff.target = std::move(pair.target->values[f]);
    if (sh == nullptr && th != nullptr && IsNull(diff.target) && !base_fields) continue;
    if (th == nullptr && sh != nullptr && IsNull(diff.source) && !base_fields) continue;
    if (base_fields) {
      const uint64_t bh = pair.base->field_hashes[f];
      if (sh != nullptr && *sh == bh) {
        diff.base_is = FieldDiff::BaseIs::kSource;
        diff.base_known = true;
      } else if (th != nullptr && *th == bh) {
        diff.base_is = FieldDiff::BaseIs::kTarget;
        diff.base_known = true;
      }
      const bool s_changed = sh != nullptr && *sh != bh;
      const bool t_changed = th != nullptr && *th != bh;
      source_changed_any |= s_changed;
      target_changed_any |= t_changed;
      overlap |= s_changed && t_changed;
    }
    change.fields.push_back(std::move(diff));
  }
  change.mergeable = c.conflict == Conflict::kBothModified && base_fields && source_changed_any &&
                     target_changed_any && !overlap;
  comparison_.changes.push_back(std::move(change));
}

Result<std::optional<Value>> Comparer::SourceIdOfGalleryKey(const TableSpec& assets,
                                                            const std::string& key) {
  const size_t slash = key.rfind('/');
  const std::string folder = key.substr(0, slash);
  const std::string file = key.substr(slash + 1);
  const std::string* folder_table = assets.ReferenceOf(assets.asset->folder);
  auto folder_id = source_keys_[*folder_table].id_of.find(folder);
  if (folder_id == source_keys_[*folder_table].id_of.end()) return std::optional<Value>();
  auto ids =
      source_.FindIds(assets.name, assets.id,
                      {{assets.asset->folder, folder_id->second}, {assets.asset->file, file}});
  if (!ids.ok()) return ids.status();
  if (ids->empty()) return std::optional<Value>();
  return std::optional<Value>(ids->front());
}

Result<bool> Comparer::TargetHasGalleryFile(const std::string& table, const std::string& key) {
  const TableSpec& assets = *manifest_.FindTable(table);
  const std::string* folder_table = assets.ReferenceOf(assets.asset->folder);
  auto folder = target_keys_[*folder_table].id_of.find(key.substr(0, key.rfind('/')));
  if (folder == target_keys_[*folder_table].id_of.end()) return false;
  auto ids = target_.FindIds(assets.name, assets.id,
                             {{assets.asset->folder, folder->second},
                              {assets.asset->file, key.substr(key.rfind('/') + 1)}});
  if (!ids.ok()) return ids.status();
  return !ids->empty();
}

Result<bool> Comparer::ExistsOnTarget(const std::string& table, const Value& source_id) {
  const TableSpec* spec = manifest_.FindTable(table);
  Value target_id = source_id;
  if (const auto* number = std::get_if<int64_t>(&source_id)) {
    auto counterpart = identities_.Counterpart(table, source_side_, *number);
    if (!counterpart) return false;
    target_id = *counterpart;
  }
  auto ids = target_.FindIds(table, spec->id, {{spec->id, target_id}});
  if (!ids.ok()) return ids.status();
  return !ids->empty();
}

Status Comparer::CloseDependencies() {
  std::vector<size_t> work;
  for (size_t i = 0; i < comparison_.changes.size(); ++i) {
    const Change& change = comparison_.changes[i];
    if (!IsNull(change.source_id) && change.selected) work.push_back(i);
  }
  // The listed source records by ref, made when a selected record first needs another (most
  // changes reference nothing: 21,018 refs mapped for nothing took ≈ 8 ms on the pair).
  std::unordered_map<std::string, size_t> by_source;
  bool mapped = false;
  std::set<std::string> warned;
  const std::vector<std::pair<std::string, std::string>> no_json_refs;
  while (!work.empty()) {
    const size_t i = work.back();
    work.pop_back();
    const auto refs = references_.find(i);
    const auto json_refs = json_references_.find(i);
    if (refs == references_.end() && json_refs == json_references_.end()) continue;
    if (!mapped) {
      by_source.reserve(comparison_.changes.size());
      for (size_t c = 0; c < comparison_.changes.size(); ++c) {
        const Change& change = comparison_.changes[c];
        if (!IsNull(change.source_id)) by_source[RecordRef(change.table, change.source_id)] = c;
      }
      mapped = true;
    }
    const std::string needer = comparison_.changes[i].Ref();
    std::vector<std::pair<std::string, Value>> needs;
    if (refs != references_.end()) needs = refs->second;
    const size_t from_columns = needs.size();  // needs past this index come from JSON names
    std::vector<std::string> json_keys;
    for (const auto& [assets_table, key] :
         json_refs != json_references_.end() ? json_refs->second : no_json_refs) {
      auto id = SourceIdOfGalleryKey(*manifest_.FindTable(assets_table), key);
      if (!id.ok()) return id.status();
      if (!*id) {
        comparison_.warnings.push_back(Warning{
            source_.name(), needer,
            fmt::format("{} names gallery:{}, which is not on {}", needer, key, source_.name())});
        continue;
      }
      needs.emplace_back(assets_table, **id);
      json_keys.push_back(key);
    }
    for (size_t n = 0; n < needs.size(); ++n) {
      const auto& [table, id] = needs[n];
      const bool from_json = n >= from_columns;
      const std::string needed = RecordRef(table, id);
      auto it = by_source.find(needed);
      if (it != by_source.end()) {
        Change& dependency = comparison_.changes[it->second];
        // Already on the target, unless the target's record under that ID is another one.
        if (!IsNull(dependency.target_id) && dependency.conflict != Conflict::kIdCollision) {
          continue;
        }
        // A gallery name in JSON resolves by path: a key_clash there is a file the target has.
        if (from_json && dependency.conflict == Conflict::kKeyClash) continue;
        if (std::find(dependency.required_by.begin(), dependency.required_by.end(), needer) ==
            dependency.required_by.end()) {
          dependency.required_by.push_back(needer);
        }
        if (dependency.selected) continue;
        if (dependency.conflict == Conflict::kNone) {
          dependency.selected = true;
          work.push_back(it->second);
        } else if (warned.insert(needer + ">" + needed).second) {
          comparison_.warnings.push_back(Warning{
              target_.name(), needer,
              fmt::format("{} needs {}, which is in Conflicts ({}): resolve it or deselect {}",
                          needer, needed, ConflictName(dependency.conflict), needer)});
        }
        continue;
      }
      auto exists = from_json ? TargetHasGalleryFile(table, json_keys[n - from_columns])
                              : ExistsOnTarget(table, id);
      if (!exists.ok()) return exists.status();
      if (*exists || !warned.insert(needer + ">" + needed).second) continue;
      comparison_.warnings.push_back(Warning{
          target_.name(), needer,
          fmt::format("{} needs {}, which is not on {} and not listed for selection in this "
                      "comparison (its module, folder or mode leaves it out): a sync of {} "
                      "would be refused",
                      needer, needed, target_.name(), needer)});
    }
  }
  return Status::Ok();
}

}  // namespace

Status CheckEnvironmentSchema(const Manifest& manifest, store::Environment& env) {
  auto schema = env.ReadSchema();
  if (!schema.ok()) return schema.status();
  // A database without the platform's tables is not an environment (an empty file, the wrong
  // path); a table with other columns is a manifest that does not fit.
  for (const ModuleSpec& module : manifest.modules()) {
    for (const TableSpec& table : module.tables) {
      if (!schema->contains(table.name)) {
        return Status::Unavailable(
            fmt::format("environment {} ({}): not a platform database: it has no table '{}'",
                        env.name(), env.location(), table.name));
      }
    }
  }
  return manifest.CheckAgainst(*schema, env.name());
}

CompareContext DefaultCompareContext() {
  CompareContext context;
  context.now = UtcNow;
  context.new_id = [] { return RandomId("c-"); };
  return context;
}

Result<Comparison> Compare(const Manifest& manifest, store::Environment& source,
                           store::Environment& target, store::StateStore& state,
                           const CompareRequest& request, const CompareContext& context) {
  if (source.name() == target.name()) {
    return Status::InvalidArgument(fmt::format(
        "--from and --to both name {}: pick two different environments", source.name()));
  }
  Comparer comparer(manifest, source, target, state, request, context);
  return comparer.Run();
}

}  // namespace envsync::sync
