#include "envsync/sync/sync.h"

#include <fmt/chrono.h>
#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <thread>

#include "envsync/core/record.h"
#include "envsync/store/fault_injection.h"
#include "envsync/store/json_codec.h"
#include "envsync/sync/compare.h"
#include "sync/ids.h"
#include "sync/images.h"
#include "sync/record_stream.h"
#include "sync/selectors.h"

namespace envsync::sync {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

enum class Action { kInsert, kUpdate, kDelete };

std::string_view ActionName(Action action, Resolution resolution) {
  if (resolution == Resolution::kInsertAsNew) return "insert_as_new";
  if (resolution == Resolution::kLink) return "link";
  if (resolution == Resolution::kMerge) return "merge";
  switch (action) {
    case Action::kInsert:
      return "insert";
    case Action::kUpdate:
      return "update";
    case Action::kDelete:
      return "delete";
  }
  return "";
}

using store::CrashPoint;  // fault injection for the crash tests

fs::path WorkDir(const std::string& assets, const std::string& kind, const std::string& sync_id) {
  return fs::path(WorkFolder(assets, kind)) / sync_id;
}

// Puts a sync's files in place. Idempotent, so a restart can run it again after a crash.
Status MoveFilesIntoPlace(const std::vector<store::SyncFile>& files) {
  std::error_code ec;
  for (const store::SyncFile& f : files) {
    if (!f.trash_path.empty() && !fs::exists(f.trash_path) && fs::exists(f.final_path)) {
      fs::create_directories(fs::path(f.trash_path).parent_path(), ec);
      fs::rename(f.final_path, f.trash_path, ec);
      if (ec)
        return Status::IoError(fmt::format("moving {} aside: {}", f.final_path, ec.message()));
    }
    if (!f.staged_path.empty() && fs::exists(f.staged_path)) {
      fs::create_directories(fs::path(f.final_path).parent_path(), ec);
      fs::rename(f.staged_path, f.final_path, ec);
      if (ec)
        return Status::IoError(fmt::format("putting {} in place: {}", f.final_path, ec.message()));
      CrashPoint("moving");
    }
  }
  return Status::Ok();
}

Result<std::map<std::string, RecordLayout>> BuildLayouts(const Manifest& manifest,
                                                         store::Environment& env) {
  std::map<std::string, RecordLayout> layouts;
  for (const ModuleSpec& module : manifest.modules()) {
    for (const TableSpec& table : module.tables) {
      auto columns = env.Columns(table.name);
      if (!columns.ok()) return columns.status();
      std::vector<std::vector<std::string>> child_columns;
      for (const ChildSpec& child : table.children) {
        auto c = env.Columns(child.table);
        if (!c.ok()) return c.status();
        child_columns.push_back(*c);
      }
      layouts.emplace(table.name, RecordLayout::Make(table, *columns, child_columns));
    }
  }
  return layouts;
}

Result<std::map<std::string, KeyIndex>> LoadKeys(const Manifest& manifest,
                                                 store::Environment& env) {
  std::map<std::string, KeyIndex> keys;
  if (const TableSpec* folders = manifest.FolderTable()) {
    auto index = LoadKeyIndex(env, *folders);
    if (!index.ok()) return index.status();
    keys[folders->name] = std::move(*index);
  }
  return keys;
}

// One row of a pre-image (a JSON object of column: value, as images.cc writes it) as the
// column/value pairs that write it back.
std::vector<std::pair<std::string, Value>> RowValues(const json& row) {
  std::vector<std::pair<std::string, Value>> values;
  for (auto it = row.begin(); it != row.end(); ++it)
    values.emplace_back(it.key(), ImageValueFromJson(*it));
  return values;
}

// Deletes a record's child rows and root row.
Status DeleteRecord(store::Environment& env, const TableSpec& table, const Value& id) {
  for (const ChildSpec& child : table.children) {
    ENVSYNC_RETURN_IF_ERROR(env.Delete(child.table, child.parent, id));
  }
  return env.Delete(table.name, table.id, id);
}

// Puts a pre-image back: the root row (inserted or updated) and exactly its old child rows.
Status RestorePreImage(store::Environment& env, const TableSpec& table, const Value& id,
                       const json& image, bool exists_now) {
  for (const ChildSpec& child : table.children) {
    ENVSYNC_RETURN_IF_ERROR(env.Delete(child.table, child.parent, id));
  }
  auto values = RowValues(image["row"]);
  if (exists_now) {
    std::vector<std::pair<std::string, Value>> sets;
    for (auto& v : values) {
      if (v.first != table.id) sets.push_back(v);
    }
    ENVSYNC_RETURN_IF_ERROR(env.Update(table.name, table.id, id, sets));
  } else {
    auto inserted = env.Insert(table.name, table.id, values);
    if (!inserted.ok()) return inserted.status();
  }
  for (const ChildSpec& child : table.children) {
    if (!image["children"].contains(child.table)) continue;
    for (const json& row : image["children"][child.table]) {
      auto inserted = env.Insert(child.table, child.id, RowValues(row));
      if (!inserted.ok()) return inserted.status();
    }
  }
  return Status::Ok();
}

json AppliedJson(const SyncOutcome& outcome) {
  json modules = json::object();
  for (const auto& [name, c] : outcome.per_module) {
    modules[name] = {{"new", c.new_records}, {"modified", c.modified}, {"deleted", c.deleted}};
  }
  return {{"new", outcome.applied.new_records},
          {"modified", outcome.applied.modified},
          {"deleted", outcome.applied.deleted},
          {"files", outcome.files},
          {"modules", modules}};
}

// The base key of a record a sync wrote: a deleted record's missing side had the target's ID
// (it was matched by ID).
std::pair<Value, Value> BaseKeyOf(const store::SyncRecord& record) {
  return {IsNull(record.prod_id) ? record.target_id : record.prod_id,
          IsNull(record.test_id) ? record.target_id : record.test_id};
}

// Pairs deleted from both sides by a sync lose their base, all in one base update.
Status ForgetDeletedBases(store::StateStore& state, const store::SyncRun& run) {
  const auto deleted = [](const store::SyncRecord& r) { return r.action == "delete"; };
  if (std::none_of(run.records.begin(), run.records.end(), deleted)) return Status::Ok();
  ENVSYNC_RETURN_IF_ERROR(state.BeginBaseUpdate());
  for (const store::SyncRecord& record : run.records) {
    if (!deleted(record)) continue;
    const auto [prod, test] = BaseKeyOf(record);
    Status status = state.DeleteBase(record.table, prod, test);
    if (!status.ok()) {
      state.AbortBaseUpdate();
      return status;
    }
  }
  return state.CommitBaseUpdate();
}

// How many records the sync really changed now show their pre-image, and how many their
// after-image: one transaction wrote them all, so this tells whether it (or its undo) committed.
struct ImageEvidence {
  int pre = 0;
  int after = 0;
};

// A record's after-image is journaled as a digest of its JSON text (ImageDigest): recovery only
// asks whether the record shows it now, and keeping the text doubled what a sync writes into
// the state store. A pre-image is whole, as undo writes it back, except an update's that writes
// only some columns: those columns and the whole image's digest (ColumnImageText). A journal
// written before the digests holds texts, which compare as texts.
bool ShowsAfterImage(const std::string& current, const std::string& after_image) {
  if (after_image.rfind("xxh3:", 0) == 0) return ImageDigest(current) == after_image;
  return current == after_image;
}
bool ShowsPreImage(const std::string& current, const std::string& pre_image) {
  if (const auto whole = WholeDigestOf(pre_image)) return ImageDigest(current) == *whole;
  return current == pre_image;
}
// Whether the sync left the record as it found it: its pre-image and after-image are one.
bool LeftAsFound(const store::SyncRecord& record) {
  if (const auto whole = WholeDigestOf(record.pre_image)) return *whole == record.after_image;
  return ShowsAfterImage(record.pre_image, record.after_image);
}

Result<ImageEvidence> CompareImages(const Manifest& manifest, store::Environment& target,
                                    const store::SyncRun& run) {
  ImageEvidence evidence;
  for (const store::SyncRecord& record : run.records) {
    if (LeftAsFound(record)) continue;
    auto now = ReadImageText(target, *manifest.FindTable(record.table), record.target_id);
    if (!now.ok()) return now.status();
    const std::string& current = *now;
    if (ShowsPreImage(current, record.pre_image)) ++evidence.pre;
    if (ShowsAfterImage(current, record.after_image)) ++evidence.after;
  }
  return evidence;
}

// Records the base of every pair a sync (or its recovery) applied: both sides are read again
// with the identity map as it is after the sync, and equal pairs get their base; pairs deleted
// from both sides lose theirs.
Status UpdateBaseAfterSync(store::Environment& source, store::Environment& target,
                           store::StateStore& state, const store::SyncRun& run,
                           const IdentityMap& identities,
                           const std::map<std::string, RecordLayout>& layouts,
                           const std::map<std::string, KeyIndex>& source_keys,
                           const std::map<std::string, KeyIndex>& target_keys) {
  const Side source_side = SideOf(source.name());
  const Side target_side = SideOf(target.name());
  ENVSYNC_RETURN_IF_ERROR(state.BeginBaseUpdate());
  Status status;
  for (const store::SyncRecord& record : run.records) {
    if (record.action == "delete") {
      continue;
    }
    const RecordLayout& layout = layouts.at(record.table);
    const ReadContext source_context{&identities, source_side, &source_keys, nullptr};
    const ReadContext target_context{&identities, target_side, &target_keys, nullptr};
    TableReader source_reader(source, layout, source_context);
    TableReader target_reader(target, layout, target_context);
    Record s;
    Record t;
    const Value& source_id = source_side == Side::kProd ? record.prod_id : record.test_id;
    auto found_s = source_reader.Fetch(source_id, &s);
    auto found_t = target_reader.Fetch(record.target_id, &t);
    if (!found_s.ok() || !found_t.ok()) {
      status = !found_s.ok() ? found_s.status() : found_t.status();
      break;
    }
    // After a merge the target keeps its own changes to the fields the source did not change:
    // the source's content is the pair's common state, so those show as the target's edits.
    if (*found_s && *found_t && (s.hash == t.hash || record.action == "merge")) {
      store::SyncBase base{record.prod_id, record.test_id, s.hash, s.field_hashes, {}, {}};
      status = state.PutBase(record.table, base);
      if (!status.ok()) break;
    }
  }
  if (!status.ok()) {
    state.AbortBaseUpdate();
    return status;
  }
  ENVSYNC_RETURN_IF_ERROR(state.CommitBaseUpdate());
  return ForgetDeletedBases(state, run);
}

// The identity map as it is once `run` has added its pairs.
IdentityMap IdentitiesAfter(IdentityMap identities, const store::SyncRun& run) {
  for (const store::SyncRecord& record : run.records) {
    if ((record.action == "insert_as_new" || record.action == "link") &&
        std::holds_alternative<int64_t>(record.prod_id) &&
        std::holds_alternative<int64_t>(record.test_id)) {
      identities.Add(record.table, std::get<int64_t>(record.prod_id),
                     std::get<int64_t>(record.test_id));
    }
  }
  return identities;
}

// The records of `run` whose target state is no longer what the sync left (by `after_hash`,
// or, for deletions, by still being gone).
// `files_in_place` says whether gallery bytes are read from disk (after a finished sync) or taken
// from the rows (a sync interrupted before its files were moved).
Result<std::vector<std::string>> ChangedSince(store::Environment& target, const store::SyncRun& run,
                                              const IdentityMap& identities,
                                              const std::map<std::string, RecordLayout>& layouts,
                                              const std::map<std::string, KeyIndex>& keys,
                                              bool files_in_place) {
  std::vector<std::string> changed;
  const ReadContext context{&identities, SideOf(target.name()), &keys, nullptr, !files_in_place};
  for (const store::SyncRecord& record : run.records) {
    TableReader reader(target, layouts.at(record.table), context);
    Record now;
    auto found = reader.Fetch(record.target_id, &now);
    if (!found.ok()) return found.status();
    const bool as_left = record.action == "delete"
                             ? !*found
                             : (*found && record.after_hash && now.hash == *record.after_hash);
    if (!as_left) changed.push_back(RecordRef(record.table, record.target_id));
  }
  return changed;
}

void RemoveWorkDirs(const std::string& assets, const std::string& sync_id, bool with_trash) {
  std::error_code ec;
  fs::remove_all(WorkDir(assets, "staging", sync_id), ec);
  if (with_trash) fs::remove_all(WorkDir(assets, "trash", sync_id), ec);
  for (const char* kind : {"staging", "trash"}) {
    fs::remove(fs::path(assets) / ".envsync" / kind, ec);  // only when empty
  }
  fs::remove(fs::path(assets) / ".envsync", ec);
}

// One selected record of the plan.
struct Planned {
  const Change* change = nullptr;
  const RecordLayout* layout = nullptr;
  Resolution resolution = Resolution::kNone;
  Action action = Action::kInsert;
  Value target_id;  // the target row written; NULL until allocated (insert_as_new)
  RawRecord source;
  uint64_t source_hash = 0;  // as read by the drift guard
  std::vector<uint64_t> source_fields;
  // The target's image of the record before the sync, when read ahead (ReadPreImages): whole,
  // or for an update only the columns it writes (ColumnImageText).
  std::optional<std::string> pre_image;
};

class Syncer {
 public:
  Syncer(const Manifest& manifest, store::Environment& source, store::Environment& target,
         store::StateStore& state, const SyncContext& context)
      : manifest_(manifest), source_(source), target_(target), state_(state), context_(context) {}

  Result<SyncOutcome> Execute(const SyncRequest& request);

 private:
  Status Plan(const SyncRequest& request);
  Status CheckDrift(std::vector<std::string>* drifted);
  Status CheckReferences();
  Status CheckDeletions();
  Status ResolveKeys(std::vector<std::string>* drifted);
  Status StageFiles();
  Status Apply();
  std::vector<size_t> ParentsFirst(const std::vector<size_t>& upserts) const;
  Result<Value> TargetIdFor(const std::string& table, const Value& source_id);
  Status WriteRecord(Planned& p, store::SyncRecord* record);
  std::optional<std::set<std::string>> WrittenFields(const Planned& p) const;
  Status ReadPreImages();
  Status JournalBases();
  Status JournalAfterImages(const IdentityMap& after);
  std::string FolderPath(const std::map<std::string, KeyIndex>& keys, const RecordLayout& layout,
                         const std::vector<Value>& columns);
  Result<SyncOutcome> Fail(SyncOutcome outcome, const std::string& error, bool rolled_back_db);

  const Manifest& manifest_;
  store::Environment& source_;
  store::Environment& target_;
  store::StateStore& state_;
  const SyncContext& context_;
  Side source_side_ = Side::kProd;
  Side target_side_ = Side::kTest;
  Comparison comparison_;
  IdentityMap identities_;
  std::map<std::string, RecordLayout> layouts_;
  std::map<std::string, KeyIndex> source_keys_;
  std::map<std::string, KeyIndex> target_keys_;
  std::vector<Planned> plan_;
  std::map<std::string, size_t> planned_by_source_;  // `table:source id` of inserts/updates
  std::set<std::string> deleted_targets_;            // `table:target id`
  std::set<std::string> written_targets_;            // `table:target id` updated in place
  store::SyncRun run_;
  std::map<std::string, std::pair<std::string, std::string>> staged_;  // ref -> staged, final
};

Result<SyncOutcome> Syncer::Fail(SyncOutcome outcome, const std::string& error,
                                 bool rolled_back_db) {
  if (!rolled_back_db) target_.Rollback();
  RemoveWorkDirs(target_.assets().root(), run_.id, /*with_trash=*/true);
  outcome.success = false;
  outcome.error = error;
  outcome.applied = AppliedCounts();  // rolled back: nothing was applied
  outcome.per_module.clear();
  outcome.files = 0;
  run_.status = "failure";
  run_.error = error;
  run_.finished_at = context_.now();
  run_.records.clear();
  run_.files.clear();
  run_.applied = AppliedJson(outcome).dump();
  ENVSYNC_RETURN_IF_ERROR(state_.SaveSync(run_));
  return outcome;
}

Status Syncer::Plan(const SyncRequest& request) {
  std::vector<std::string> refs;
  std::vector<bool> by_default;
  refs.reserve(comparison_.changes.size());
  by_default.reserve(comparison_.changes.size());
  for (const Change& c : comparison_.changes) {
    refs.push_back(c.Ref());
    by_default.push_back(c.selected);
  }
  auto chosen = ApplySelectors(comparison_.id, refs, by_default, request);
  if (!chosen.ok()) return chosen.status();
  const std::vector<bool>& selected = chosen->selected;
  const std::vector<Resolution>& resolution = chosen->resolution;
  plan_.reserve(comparison_.changes.size());

  for (size_t i = 0; i < comparison_.changes.size(); ++i) {
    if (!selected[i]) continue;
    const Change& c = comparison_.changes[i];
    Planned p;
    p.change = &c;
    p.layout = &layouts_.at(c.table);
    p.resolution = resolution[i];
    const std::string ref = c.Ref();
    auto refuse = [&](const std::string& why) {
      return Status::InvalidArgument(fmt::format("{}: {}", ref, why));
    };
    if (c.conflict == Conflict::kNone && p.resolution != Resolution::kNone &&
        p.resolution != Resolution::kOverwrite) {
      return refuse("has no conflict to resolve");
    }
    switch (c.conflict) {
      case Conflict::kNone:
        break;
      case Conflict::kKeyClash:
        if (p.resolution != Resolution::kLink) {
          return refuse(fmt::format(
              "key_clash: its key '{}' exists on {} under another ID; resolve it with link "
              "(--resolve {}=link) or leave it out",
              c.key, comparison_.to, ref));
        }
        break;
      case Conflict::kIdCollision:
        if (p.resolution != Resolution::kOverwrite && p.resolution != Resolution::kInsertAsNew) {
          return refuse(
              fmt::format("id_collision: resolve it with overwrite or insert_as_new "
                          "(--resolve {}=insert_as_new) or leave it out",
                          ref));
        }
        break;
      case Conflict::kBothModified:
        if (p.resolution == Resolution::kMerge && p.layout->table->asset) {
          return refuse(
              "merge is not possible for a gallery file (its row and its bytes must stay "
              "together); use overwrite or leave it out");
        }
        if (p.resolution == Resolution::kMerge && !c.mergeable) {
          return refuse(
              "both sides changed the same fields: merge is not possible; use "
              "overwrite or leave it out");
        }
        if (p.resolution != Resolution::kOverwrite && p.resolution != Resolution::kMerge) {
          return refuse(fmt::format("both_modified: resolve it with overwrite{} or leave it out",
                                    c.mergeable ? " or merge" : ""));
        }
        break;
      case Conflict::kModifiedDeleted:
      case Conflict::kDeletedModified:
        if (p.resolution != Resolution::kOverwrite) {
          return refuse(
              fmt::format("{}: resolve it with overwrite (--resolve {}=overwrite) or "
                          "leave it out",
                          ConflictName(c.conflict), ref));
        }
        break;
    }
    if (IsNull(c.source_id)) {
      p.action = Action::kDelete;
      p.target_id = c.target_id;
    } else if (p.resolution == Resolution::kInsertAsNew) {
      p.action = Action::kInsert;
    } else if (p.resolution == Resolution::kLink) {
      p.action = Action::kUpdate;
    } else if (IsNull(c.target_id)) {
      p.action = Action::kInsert;
      p.target_id = c.source_id;
      if (const auto* n = std::get_if<int64_t>(&c.source_id)) {
        auto counterpart = identities_.Counterpart(c.table, source_side_, *n);
        if (!counterpart) {
          return refuse(
              fmt::format("its ID is paired with another record on {}: it can only be "
                          "inserted as new",
                          comparison_.to));
        }
        p.target_id = *counterpart;
      }
    } else {
      p.action = Action::kUpdate;
      p.target_id = c.target_id;
    }
    // Renaming a folder would have to move its files with it: not supported yet.
    const std::string& folder_path = p.layout->table->folder_path;
    if (!folder_path.empty() && p.action == Action::kUpdate) {
      for (const FieldDiff& f : c.fields) {
        if (f.field == folder_path) {
          return refuse(fmt::format(
              "the folder's path differs ('{}' on {}, '{}' on {}): renaming a gallery folder is "
              "not supported yet, as its files would not follow; rename it on {} too, or leave "
              "it out",
              RenderValue(f.source), comparison_.from, RenderValue(f.target), comparison_.to,
              comparison_.to));
        }
      }
    }
    if (p.action == Action::kDelete) {
      deleted_targets_.insert(RecordRef(c.table, p.target_id));
    } else {
      if (p.action == Action::kUpdate) written_targets_.insert(RecordRef(c.table, p.target_id));
      planned_by_source_[RecordRef(c.table, c.source_id)] = plan_.size();
    }
    plan_.push_back(std::move(p));
  }
  if (plan_.empty()) {
    return Status::InvalidArgument(
        fmt::format("nothing is selected in comparison {}", comparison_.id));
  }
  return Status::Ok();
}

Status Syncer::CheckDrift(std::vector<std::string>* drifted) {
  // Per table and side, the selected records are read again at once (ReadRecords); the source
  // side on a thread of its own, beside the target side (each side is its own connection, and
  // the two write different members of each planned record).
  std::map<const RecordLayout*, std::vector<size_t>> by_table;
  for (size_t i = 0; i < plan_.size(); ++i) by_table[plan_[i].layout].push_back(i);
  std::vector<uint8_t> source_moved(plan_.size(), 0);
  std::vector<uint8_t> target_moved(plan_.size(), 0);
  auto read_side = [&](const bool source_side) -> Status {
    std::vector<uint8_t>& moved = source_side ? source_moved : target_moved;
    for (const auto& [layout, indices] : by_table) {
      std::vector<std::pair<Value, size_t>> wanted;
      for (const size_t i : indices) {
        const Change& c = *plan_[i].change;
        const Value& id =
            source_side ? c.source_id : (IsNull(c.target_id) ? plan_[i].target_id : c.target_id);
        if (!IsNull(id)) wanted.emplace_back(id, i);
      }
      const ReadContext context{&identities_, source_side ? source_side_ : target_side_,
                                source_side ? &source_keys_ : &target_keys_, nullptr};
      auto check = [&](size_t i, const Record* record, const RawRecord* raw) {
        Planned& p = plan_[i];
        const Change& c = *p.change;
        if (source_side) {
          moved[i] |= record == nullptr || record->hash != c.source_hash;
          p.source_hash = record != nullptr ? record->hash : 0;
          p.source_fields = record != nullptr ? record->field_hashes : std::vector<uint64_t>();
          if (raw != nullptr) p.source = *raw;
        } else if (IsNull(c.target_id)) {
          moved[i] |= record != nullptr;  // a record appeared where the comparison saw none
        } else {
          moved[i] |= record == nullptr || record->hash != c.target_hash;
        }
      };
      ENVSYNC_RETURN_IF_ERROR(ReadRecords(source_side ? source_ : target_, *layout, context, wanted,
                                          /*with_raw=*/source_side, check));
    }
    return Status::Ok();
  };
  Status source_status;
  std::thread source_reader([&] { source_status = read_side(true); });
  Status target_status = read_side(false);
  // The pre-images too, while the source side is still being read: nothing is written to the
  // target before Apply. A link's target is not known before ResolveKeys (its target_id is
  // still NULL here), so its pre-image is read when it is written (WriteRecord).
  if (target_status.ok()) target_status = ReadPreImages();
  source_reader.join();
  ENVSYNC_RETURN_IF_ERROR(source_status);
  ENVSYNC_RETURN_IF_ERROR(target_status);
  for (size_t i = 0; i < plan_.size(); ++i) {
    if (source_moved[i] || target_moved[i]) drifted->push_back(plan_[i].change->Ref());
  }
  return Status::Ok();
}

Status Syncer::ResolveKeys(std::vector<std::string>* drifted) {
  for (Planned& p : plan_) {
    if (p.resolution != Resolution::kLink && p.resolution != Resolution::kInsertAsNew) continue;
    auto ids = FindByNaturalKey(target_, *p.layout, p.change->source_id, p.source.columns,
                                source_keys_, target_keys_);
    if (!ids.ok()) return ids.status();
    if (p.resolution == Resolution::kInsertAsNew && !ids->empty()) {
      return Status::InvalidArgument(fmt::format(
          "{}: insert_as_new is not possible: its key '{}' exists on {} as {}", p.change->Ref(),
          p.change->key, comparison_.to, RecordRef(p.change->table, ids->front())));
    }
    if (p.resolution == Resolution::kLink) {
      if (ids->empty()) {
        return Status::InvalidArgument(fmt::format("{}: link found no record with key '{}' on {}",
                                                   p.change->Ref(), p.change->key, comparison_.to));
      }
      p.target_id = ids->front();
      // Drift guard for the record the link overwrites, as the comparison saw it.
      if (p.change->target_hash) {
        const ReadContext context{&identities_, target_side_, &target_keys_, nullptr};
        TableReader reader(target_, *p.layout, context);
        Record now;
        auto found = reader.Fetch(p.target_id, &now);
        if (!found.ok()) return found.status();
        if (!*found || now.hash != *p.change->target_hash) drifted->push_back(p.change->Ref());
      }
      if (deleted_targets_.contains(RecordRef(p.change->table, p.target_id))) {
        return Status::InvalidArgument(
            fmt::format("{}: link names {} on {}, which this sync deletes: deselect one of them",
                        p.change->Ref(), RecordRef(p.change->table, p.target_id), comparison_.to));
      }
      written_targets_.insert(RecordRef(p.change->table, p.target_id));
    }
  }
  return Status::Ok();
}

Result<Value> Syncer::TargetIdFor(const std::string& table, const Value& source_id) {
  auto planned = planned_by_source_.find(RecordRef(table, source_id));
  if (planned != planned_by_source_.end()) {
    const Planned& p = plan_[planned->second];
    if (!IsNull(p.target_id)) return p.target_id;
    return Status::InvalidArgument(fmt::format(
        "{} is written after a record that references it (a cycle of new IDs): sync it in two "
        "steps",
        RecordRef(table, source_id)));
  }
  const auto* n = std::get_if<int64_t>(&source_id);
  if (n == nullptr) return source_id;
  auto counterpart = identities_.Counterpart(table, source_side_, *n);
  if (!counterpart) return Value();
  return Value(*counterpart);
}

Status Syncer::CheckDeletions() {
  // gallery:<folder>/<file> names in the target's JSON that stay after this sync.
  std::map<std::string, std::string> named_by;  // gallery key -> the record naming it
  for (const ModuleSpec& module : manifest_.modules()) {
    for (const TableSpec& table : module.tables) {
      for (const auto& [column, unused] : table.json_references) {
        store::ScanRequest scan{table.name, {table.id, column}, {}, table.filter, {}, {}, "", {}};
        auto cursor = target_.Scan(scan);
        if (!cursor.ok()) return cursor.status();
        std::vector<Value> row;
        while ((*cursor)->Next(&row)) {
          const std::string user = RecordRef(table.name, row[0]);
          if (written_targets_.contains(user) || deleted_targets_.contains(user)) continue;
          if (!std::holds_alternative<std::string>(row[1])) continue;
          for (const std::string& key : GalleryReferences(std::get<std::string>(row[1]))) {
            named_by.emplace(key, user);
          }
        }
        ENVSYNC_RETURN_IF_ERROR((*cursor)->status());
      }
    }
  }
  for (const Planned& p : plan_) {
    if (p.action != Action::kDelete) continue;
    const std::string& deleted_table = p.change->table;
    if (p.layout->table->asset) {
      auto user = named_by.find(p.change->key);
      if (user != named_by.end()) {
        return Status::InvalidArgument(fmt::format(
            "deleting {} on {} would leave {} naming gallery:{}, which would be gone: select {} "
            "too, or leave {} out",
            p.change->Ref(), comparison_.to, user->second, p.change->key, user->second,
            p.change->Ref()));
      }
    }
    for (const ModuleSpec& module : manifest_.modules()) {
      for (const TableSpec& table : module.tables) {
        for (const auto& [column, referenced] : table.references) {
          if (referenced != deleted_table) continue;
          auto ids = target_.FindIds(table.name, table.id, {{column, p.target_id}});
          if (!ids.ok()) return ids.status();
          for (const Value& id : *ids) {
            const std::string user = RecordRef(table.name, id);
            if (user == RecordRef(deleted_table, p.target_id)) continue;  // itself
            if (deleted_targets_.contains(user) || written_targets_.contains(user)) continue;
            return Status::InvalidArgument(fmt::format(
                "deleting {} on {} would leave {} pointing at nothing: select {} too, or leave "
                "{} out",
                p.change->Ref(), comparison_.to, user, user, p.change->Ref()));
          }
        }
        for (const ChildSpec& child : table.children) {
          for (const auto& [column, referenced] : child.references) {
            if (referenced != deleted_table) continue;
            auto parents = target_.FindIds(child.table, child.parent, {{column, p.target_id}});
            if (!parents.ok()) return parents.status();
            for (const Value& parent : *parents) {
              const std::string user = RecordRef(table.name, parent);
              if (deleted_targets_.contains(user) || written_targets_.contains(user)) continue;
              return Status::InvalidArgument(fmt::format(
                  "deleting {} on {} would leave {} pointing at nothing: select {} too, or "
                  "leave {} out",
                  p.change->Ref(), comparison_.to, user, user, p.change->Ref()));
            }
          }
        }
      }
    }
  }
  return Status::Ok();
}

Status Syncer::CheckReferences() {
  for (const Planned& p : plan_) {
    if (p.action == Action::kDelete) continue;
    const std::string needer = p.change->Ref();
    std::vector<std::pair<std::string, Value>> needs;
    for (size_t f = 0; f < p.layout->columns.size(); ++f) {
      const FieldLayout& field = p.layout->fields[f];
      if (!field.referenced_table.empty() && !IsNull(p.source.columns[f])) {
        needs.emplace_back(field.referenced_table, p.source.columns[f]);
      }
    }
    for (size_t i = 0; i < p.layout->children.size(); ++i) {
      const ChildLayout& child = p.layout->children[i];
      for (const ChildRow& row : p.source.children[i]) {
        for (size_t c = 0; c < child.columns.size(); ++c) {
          if (!child.references[c].empty() && !IsNull(row[c])) {
            needs.emplace_back(child.references[c], row[c]);
          }
        }
      }
    }
    for (const auto& [table, id] : needs) {
      const std::string needed = RecordRef(table, id);
      if (planned_by_source_.contains(needed)) continue;
      auto target_id = TargetIdFor(table, id);
      if (!target_id.ok()) return target_id.status();
      const TableSpec* spec = manifest_.FindTable(table);
      bool present = false;
      if (!IsNull(*target_id)) {
        auto ids = target_.FindIds(table, spec->id, {{spec->id, *target_id}});
        if (!ids.ok()) return ids.status();
        present = !ids->empty();
      }
      if (!present) {
        return Status::InvalidArgument(fmt::format(
            "{} needs {}, which is not selected and not on {}: select it too, or leave {} out",
            needer, needed, comparison_.to, needer));
      }
      if (deleted_targets_.contains(RecordRef(table, *target_id))) {
        return Status::InvalidArgument(fmt::format("{} needs {}, which this sync deletes on {}",
                                                   needer, needed, comparison_.to));
      }
    }
    // gallery:<folder>/<file> names inside JSON must name a file the target will have.
    for (const auto& [column, assets_table] : p.layout->table->json_references) {
      const int index = p.layout->ColumnIndex(column);
      if (index < 0 || !std::holds_alternative<std::string>(p.source.columns[index])) continue;
      const TableSpec* assets = manifest_.FindTable(assets_table);
      const std::string* folder_table = assets->ReferenceOf(assets->asset->folder);
      for (const std::string& key :
           GalleryReferences(std::get<std::string>(p.source.columns[index]))) {
        const std::string folder = key.substr(0, key.rfind('/'));
        const std::string file = key.substr(key.rfind('/') + 1);
        bool will_exist = false;
        for (const Planned& other : plan_) {
          if (other.action == Action::kDelete || other.layout->table != assets) continue;
          if (FolderPath(source_keys_, *other.layout, other.source.columns) == folder &&
              other.source.columns[other.layout->ColumnIndex(assets->asset->file)] == Value(file)) {
            will_exist = true;
          }
        }
        if (!will_exist) {
          auto folder_id = target_keys_[*folder_table].id_of.find(folder);
          if (folder_id != target_keys_[*folder_table].id_of.end()) {
            auto ids = target_.FindIds(
                assets->name, assets->id,
                {{assets->asset->folder, folder_id->second}, {assets->asset->file, file}});
            if (!ids.ok()) return ids.status();
            will_exist =
                !ids->empty() && !deleted_targets_.contains(RecordRef(assets->name, ids->front()));
          }
        }
        if (!will_exist) {
          return Status::InvalidArgument(
              fmt::format("{} needs gallery:{}, which is not selected and not on {}", needer, key,
                          comparison_.to));
        }
      }
    }
  }
  return Status::Ok();
}

std::string Syncer::FolderPath(const std::map<std::string, KeyIndex>& keys,
                               const RecordLayout& layout, const std::vector<Value>& columns) {
  const TableSpec& table = *layout.table;
  const std::string* folder_table = table.ReferenceOf(table.asset->folder);
  auto index = keys.find(*folder_table);
  if (index == keys.end()) return "";
  auto it = index->second.key_of.find(columns[layout.ColumnIndex(table.asset->folder)]);
  return it == index->second.key_of.end() ? "" : it->second;
}

Status Syncer::StageFiles() {
  const fs::path staging = WorkDir(target_.assets().root(), "staging", run_.id);
  int64_t n = 0;
  for (const Planned& p : plan_) {
    const TableSpec& table = *p.layout->table;
    if (!table.asset || p.action == Action::kDelete) continue;
    const std::string folder = FolderPath(source_keys_, *p.layout, p.source.columns);
    const std::string file =
        RenderValue(p.source.columns[p.layout->ColumnIndex(table.asset->file)]);
    const std::string sha =
        RenderValue(p.source.columns[p.layout->ColumnIndex(table.asset->sha256)]);
    store::AssetDigest digest = source_.assets().Digest(folder, file);
    if (!digest.problem.empty() || digest.sha256 != sha) {
      return Status::InvalidArgument(fmt::format(
          "{}: the source file {} {}: nothing was written", p.change->Ref(),
          digest.path.empty() ? folder + "/" + file : digest.path,
          digest.problem.empty() ? "does not match its recorded SHA-256" : digest.problem));
    }
    std::error_code ec;
    fs::create_directories(staging, ec);
    const fs::path staged = staging / std::to_string(n++);
    fs::copy_file(digest.path, staged, fs::copy_options::overwrite_existing, ec);
    if (ec) {
      return Status::IoError(fmt::format("{}: staging {} into {} failed: {}", p.change->Ref(),
                                         digest.path, staged.string(), ec.message()));
    }
    if (store::Sha256OfFile(staged.string()).sha256 != sha) {
      return Status::IoError(fmt::format("{}: the staged copy {} does not match SHA-256 {}",
                                         p.change->Ref(), staged.string(), sha));
    }
    // The file goes where the target's row will say: under the target's folder that the row's
    // folder reference is rewritten to (a folder new in this sync has the source's path).
    std::string target_folder = folder;
    const std::string* folder_table = table.ReferenceOf(table.asset->folder);
    const Value& source_folder = p.source.columns[p.layout->ColumnIndex(table.asset->folder)];
    if (!planned_by_source_.contains(RecordRef(*folder_table, source_folder))) {
      auto target_id = TargetIdFor(*folder_table, source_folder);
      if (!target_id.ok()) return target_id.status();
      auto it = target_keys_[*folder_table].key_of.find(*target_id);
      if (it != target_keys_[*folder_table].key_of.end()) target_folder = it->second;
    }
    const std::string final_path = target_.assets().PathOf(target_folder, file);
    if (final_path.empty()) {
      return Status::InvalidArgument(fmt::format("{}: the target folder '{}' has an unsafe path",
                                                 p.change->Ref(), target_folder));
    }
    staged_[p.change->Ref()] = {staged.string(), final_path};
    CrashPoint("file_staged");
  }
  return Status::Ok();
}

// The fields an insert or update writes; nothing for all of them.
// - A merge writes those the source changed (a field is a column, or a child table).
// - An update of a pair the comparison saw on both sides writes only the columns it listed as
//   different: the drift guard found both records as compared, so the others already hold the
//   source's values. SQLite then leaves alone the indexes and foreign keys of the unwritten
//   columns (a unique slug's index entry, a hero image's parent lookup), and tracking triggers
//   `OF` them do not fire. Its child rows are written whole.
std::optional<std::set<std::string>> Syncer::WrittenFields(const Planned& p) const {
  const Change& c = *p.change;
  if (p.resolution == Resolution::kMerge) {
    std::set<std::string> merged;
    for (const FieldDiff& f : c.fields) {
      if (f.base_known && CompareValues(f.Base(), f.target) == 0) merged.insert(f.field);
    }
    return merged;
  }
  if (p.action == Action::kUpdate && !IsNull(c.source_id) && !IsNull(c.target_id) &&
      CompareValues(c.target_id, p.target_id) == 0) {
    std::set<std::string> differing;
    for (const FieldDiff& f : c.fields) differing.insert(f.field);
    return differing;
  }
  return std::nullopt;
}

Status Syncer::WriteRecord(Planned& p, store::SyncRecord* record) {
  const TableSpec& table = *p.layout->table;
  const Change& c = *p.change;
  if (p.pre_image) {
    record->pre_image = std::move(*p.pre_image);
  } else if (!IsNull(p.target_id)) {
    auto image = ReadImageText(target_, table, p.target_id);
    if (!image.ok()) return image.status();
    record->pre_image = std::move(*image);
  }
  if (p.action == Action::kDelete) return DeleteRecord(target_, table, p.target_id);

  const std::optional<std::set<std::string>> written = WrittenFields(p);
  std::vector<std::pair<std::string, Value>> values;
  for (size_t f = 0; f < p.layout->columns.size(); ++f) {
    const FieldLayout& field = p.layout->fields[f];
    if (written && !written->contains(field.name)) continue;
    Value value = p.source.columns[f];
    if (!field.referenced_table.empty() && !IsNull(value)) {
      auto target_id = TargetIdFor(field.referenced_table, value);
      if (!target_id.ok()) return target_id.status();
      value = *target_id;
    }
    values.emplace_back(field.name, std::move(value));
  }
  if (p.action == Action::kInsert) {
    // A new record gets the target's own values for local columns: NULL, or now where the
    // schema requires a value.
    auto not_null = target_.NotNullColumns(table.name);
    if (!not_null.ok()) return not_null.status();
    for (const std::string& local : table.local) {
      const bool required = std::find(not_null->begin(), not_null->end(), local) != not_null->end();
      values.emplace_back(local, required ? Value(context_.now()) : Value());
    }
    if (!IsNull(p.target_id)) values.emplace_back(table.id, p.target_id);
    auto id = target_.Insert(table.name, table.id, values);
    if (!id.ok()) return id.status().WithContext(c.Ref());
    p.target_id = *id;
  } else {
    ENVSYNC_RETURN_IF_ERROR(
        target_.Update(table.name, table.id, p.target_id, values).WithContext(c.Ref()));
  }
  for (size_t i = 0; i < p.layout->children.size(); ++i) {
    const ChildLayout& child = p.layout->children[i];
    if (p.resolution == Resolution::kMerge && !written->contains(child.spec->table)) continue;
    ENVSYNC_RETURN_IF_ERROR(target_.Delete(child.spec->table, child.spec->parent, p.target_id));
    for (const ChildRow& row : p.source.children[i]) {
      std::vector<std::pair<std::string, Value>> child_values;
      for (size_t col = 0; col < child.columns.size(); ++col) {
        Value value = row[col];
        if (!child.references[col].empty() && !IsNull(value)) {
          auto target_id = TargetIdFor(child.references[col], value);
          if (!target_id.ok()) return target_id.status();
          value = *target_id;
        }
        child_values.emplace_back(child.columns[col], std::move(value));
      }
      child_values.emplace_back(child.spec->parent, p.target_id);
      auto id = target_.Insert(child.spec->table, child.spec->id, child_values);
      if (!id.ok()) return id.status().WithContext(c.Ref());
    }
  }
  return Status::Ok();
}

std::vector<size_t> Syncer::ParentsFirst(const std::vector<size_t>& upserts) const {
  // `upserts` are one table's. Within a table that references itself (a folder's parent), a
  // record comes after the records of this sync it references. A cycle keeps its order; writing it
  // then fails with a message naming the record (TargetIdFor).
  std::vector<size_t> ordered;
  std::set<std::string> placed;
  std::vector<size_t> pending = upserts;
  while (!pending.empty()) {
    std::vector<size_t> waiting;
    for (size_t i : pending) {
      const Planned& p = plan_[i];
      bool ready = true;
      for (size_t f = 0; f < p.layout->columns.size(); ++f) {
        const FieldLayout& field = p.layout->fields[f];
        if (field.referenced_table != p.change->table || IsNull(p.source.columns[f])) continue;
        const std::string parent = RecordRef(field.referenced_table, p.source.columns[f]);
        if (parent != p.change->Ref() && planned_by_source_.contains(parent) &&
            !placed.contains(parent)) {
          ready = false;
        }
      }
      if (ready) {
        ordered.push_back(i);
        placed.insert(p.change->Ref());
      } else {
        waiting.push_back(i);
      }
    }
    if (waiting.size() == pending.size()) {
      ordered.insert(ordered.end(), waiting.begin(), waiting.end());
      break;
    }
    pending = std::move(waiting);
  }
  return ordered;
}

// The pre-images of the records about to be written, per table by one ordered scan
// (ReadImageTexts) instead of one point read each. Only for tables without child rows: writing a
// record with children can move a child row from another record, whose pre-image is then read
// when that record is written, as before.
Status Syncer::ReadPreImages() {
  std::map<std::string, std::vector<size_t>> by_table;
  for (size_t i = 0; i < plan_.size(); ++i) {
    const Planned& p = plan_[i];
    if (IsNull(p.target_id) || !p.layout->table->children.empty()) continue;
    by_table[p.change->table].push_back(i);
  }
  for (const auto& entry : by_table) {
    // Named references, not structured bindings: clang 14 cannot capture those in a lambda.
    const std::string& table = entry.first;
    const std::vector<size_t>& planned = entry.second;
    std::vector<Value> ids;
    ids.reserve(planned.size());
    for (const size_t i : planned) ids.push_back(plan_[i].target_id);
    ENVSYNC_RETURN_IF_ERROR(ReadImageTexts(
        target_, *manifest_.FindTable(table), ids, [&](size_t k, const ImageText& image) {
          Planned& p = plan_[planned[k]];
          // An update's pre-image needs only the columns it writes (ColumnImageText). Not for
          // an asset's row: its old file's name and folder are read from the pre-image.
          if (p.action == Action::kUpdate && !p.layout->table->asset) {
            if (const auto written = WrittenFields(p)) {
              if (auto kept = ColumnImageText(image, *written)) {
                p.pre_image = std::move(*kept);
                return;
              }
            }
          }
          p.pre_image = std::string(image.text);
        }));
  }
  return Status::Ok();
}

// The journal's part from the state store: each record's base before the sync (direct pairs per
// table by one ordered scan). Runs beside JournalAfterImages, so it touches only the state
// store and base_before.
Status Syncer::JournalBases() {
  std::map<std::string, std::vector<size_t>> by_table;
  for (size_t i = 0; i < run_.records.size(); ++i) by_table[run_.records[i].table].push_back(i);
  for (const auto& [table, records] : by_table) {
    std::vector<std::pair<int64_t, size_t>> direct;  // (ID, record) of direct pairs
    for (const size_t i : records) {
      store::SyncRecord& record = run_.records[i];
      const auto [prod, test] = BaseKeyOf(record);
      const auto* prod_id = std::get_if<int64_t>(&prod);
      const auto* test_id = std::get_if<int64_t>(&test);
      if (prod_id != nullptr && test_id != nullptr && *prod_id == *test_id) {
        direct.emplace_back(*prod_id, i);
      } else {
        auto base = state_.FindBase(record.table, prod, test);
        if (!base.ok()) return base.status();
        record.base_before = std::move(*base);
      }
    }
    if (direct.empty()) continue;
    std::vector<int64_t> direct_ids;
    for (const auto& [id, i] : direct) direct_ids.push_back(id);
    std::sort(direct_ids.begin(), direct_ids.end());
    direct_ids.erase(std::unique(direct_ids.begin(), direct_ids.end()), direct_ids.end());
    auto cursor = state_.ScanDirectBase(table, direct_ids);
    if (!cursor.ok()) return cursor.status();
    std::map<int64_t, store::SyncBase> bases;
    store::SyncBase base;
    while ((*cursor)->Next(&base)) {
      if (const auto* id = std::get_if<int64_t>(&base.prod_id)) bases[*id] = base;
    }
    ENVSYNC_RETURN_IF_ERROR((*cursor)->status());
    for (const auto& [id, i] : direct) {
      auto it = bases.find(id);
      if (it != bases.end()) run_.records[i].base_before = it->second;
    }
  }
  return Status::Ok();
}

// The journal's part from the target, read after the writes: each written record's hash as it
// will be (with the identity map `after` the sync) and its after-image digest, per table at once
// (ReadRecordsAndImages: one scan gives both). Files are put in place only after the commit: the
// rows' recorded bytes are hashed. Touches only the target and after_hash, after_image.
Status Syncer::JournalAfterImages(const IdentityMap& after) {
  std::map<std::string, std::vector<size_t>> written;
  for (size_t i = 0; i < run_.records.size(); ++i) {
    if (run_.records[i].action != "delete") written[run_.records[i].table].push_back(i);
  }
  const ReadContext context{&after, target_side_, &target_keys_, nullptr, true};
  for (const auto& entry : written) {
    const std::string& table = entry.first;
    const std::vector<size_t>& records = entry.second;
    std::vector<Value> ids;
    for (const size_t i : records) ids.push_back(run_.records[i].target_id);
    ENVSYNC_RETURN_IF_ERROR(
        ReadRecordsAndImages(target_, layouts_.at(table), context, ids,
                             [&](size_t k, const Record* record, std::string_view text) {
                               store::SyncRecord& written_record = run_.records[records[k]];
                               if (record != nullptr) written_record.after_hash = record->hash;
                               written_record.after_image = text.empty() ? "" : ImageDigest(text);
                             }));
  }
  return Status::Ok();
}

Status Syncer::Apply() {
  std::map<std::string, size_t> order;
  size_t rank = 0;
  for (const std::string& module : manifest_.ModuleOrder()) {
    for (const TableSpec& table : manifest_.FindModule(module)->tables) order[table.name] = rank++;
  }
  std::vector<size_t> upserts;
  std::vector<size_t> deletes;
  for (size_t i = 0; i < plan_.size(); ++i) {
    (plan_[i].action == Action::kDelete ? deletes : upserts).push_back(i);
  }
  auto by_table = [&](size_t a, size_t b) {
    return order[plan_[a].change->table] < order[plan_[b].change->table];
  };
  std::stable_sort(upserts.begin(), upserts.end(), by_table);
  {
    // Per table, in table order.
    std::vector<size_t> ordered;
    for (size_t start = 0; start < upserts.size();) {
      size_t end = start;
      while (end < upserts.size() &&
             plan_[upserts[end]].change->table == plan_[upserts[start]].change->table) {
        ++end;
      }
      auto block = ParentsFirst({upserts.begin() + start, upserts.begin() + end});
      ordered.insert(ordered.end(), block.begin(), block.end());
      start = end;
    }
    upserts = std::move(ordered);
  }
  std::stable_sort(deletes.begin(), deletes.end(), by_table);
  std::reverse(deletes.begin(), deletes.end());
  std::vector<size_t> sequence = upserts;
  sequence.insert(sequence.end(), deletes.begin(), deletes.end());

  run_.records.reserve(run_.records.size() + sequence.size());
  const std::string* last_table = nullptr;
  for (size_t i : sequence) {
    Planned& p = plan_[i];
    if (last_table != nullptr && *last_table != p.change->table) CrashPoint("table_written");
    last_table = &p.change->table;
    store::SyncRecord record;
    record.table = p.change->table;
    record.action = std::string(ActionName(p.action, p.resolution));
    ENVSYNC_RETURN_IF_ERROR(WriteRecord(p, &record));
    record.target_id = p.target_id;
    const Value& source_id = p.change->source_id;
    record.prod_id = source_side_ == Side::kProd ? source_id : p.target_id;
    record.test_id = source_side_ == Side::kProd ? p.target_id : source_id;
    if (p.action == Action::kDelete) {
      record.prod_id = source_side_ == Side::kProd ? Value() : p.target_id;
      record.test_id = source_side_ == Side::kProd ? p.target_id : Value();
    }
    run_.records.push_back(std::move(record));

    const TableSpec& table = *p.layout->table;
    if (!table.asset) continue;
    // The file the target row named before, moved aside for undo.
    store::SyncFile file;
    if (!run_.records.back().pre_image.empty()) {
      const json image = json::parse(run_.records.back().pre_image);
      const Value folder_id = ImageValueFromJson(image["row"][table.asset->folder]);
      auto folder = target_keys_[*table.ReferenceOf(table.asset->folder)].key_of.find(folder_id);
      const std::string old_file = RenderValue(ImageValueFromJson(image["row"][table.asset->file]));
      // A name that could leave the gallery is never touched.
      const std::string old_path =
          folder != target_keys_[*table.ReferenceOf(table.asset->folder)].key_of.end()
              ? target_.assets().PathOf(folder->second, old_file)
              : "";
      if (!old_path.empty()) {
        const fs::path trash =
            WorkDir(target_.assets().root(), "trash", run_.id) / std::to_string(run_.files.size());
        run_.files.push_back(store::SyncFile{old_path, "", trash.string()});
      }
    }
    auto staged = staged_.find(p.change->Ref());
    if (staged != staged_.end()) {
      file.final_path = staged->second.second;
      file.staged_path = staged->second.first;
      // A file already at the destination that no row named is kept for undo too.
      const bool moved_aside =
          std::any_of(run_.files.begin(), run_.files.end(), [&](const store::SyncFile& f) {
            return f.final_path == file.final_path && !f.trash_path.empty();
          });
      if (!moved_aside && fs::exists(file.final_path)) {
        file.trash_path =
            (WorkDir(target_.assets().root(), "trash", run_.id) / std::to_string(run_.files.size()))
                .string();
      }
      run_.files.push_back(file);
    }
  }
  return Status::Ok();
}

Result<SyncOutcome> Syncer::Execute(const SyncRequest& request) {
  auto comparison = state_.LoadComparison(request.comparison_id);
  if (!comparison.ok()) return comparison.status();
  comparison_ = std::move(*comparison);
  if (comparison_.from != source_.name() || comparison_.to != target_.name()) {
    return Status::Internal("the environments opened do not match the comparison");
  }
  source_side_ = SideOf(source_.name());
  target_side_ = SideOf(target_.name());
  // The manifest may have changed since the comparison: SQL is built from it only once it fits.
  ENVSYNC_RETURN_IF_ERROR(CheckEnvironmentSchema(manifest_, source_));
  ENVSYNC_RETURN_IF_ERROR(CheckEnvironmentSchema(manifest_, target_));
  if (!request.test_import) {
    auto syncs = state_.ListSyncs();
    if (!syncs.ok()) return syncs.status();
    for (const store::SyncRun& other : *syncs) {
      if (other.comparison_id == comparison_.id && !other.test_import &&
          (other.status == "success" || other.status == "undone" || other.status == "committing")) {
        return Status::InvalidArgument(
            fmt::format("comparison {} was already executed by sync {} ({}): compare again",
                        comparison_.id, other.id, other.status));
      }
    }
  }
  auto identities = state_.LoadIdentityMap();
  if (!identities.ok()) return identities.status();
  identities_ = std::move(*identities);
  auto layouts = BuildLayouts(manifest_, source_);
  if (!layouts.ok()) return layouts.status();
  layouts_ = std::move(*layouts);
  ENVSYNC_RETURN_IF_ERROR(source_.BeginSnapshot());
  auto source_keys = LoadKeys(manifest_, source_);
  if (!source_keys.ok()) return source_keys.status();
  source_keys_ = std::move(*source_keys);
  ENVSYNC_RETURN_IF_ERROR(Plan(request));

  // The write lock is taken before the drift guard, so nothing can change in between.
  ENVSYNC_RETURN_IF_ERROR(target_.BeginWrite());
  auto target_keys = LoadKeys(manifest_, target_);
  if (!target_keys.ok()) {
    target_.Rollback();
    return target_keys.status();
  }
  target_keys_ = std::move(*target_keys);

  run_.id = context_.new_id();
  run_.comparison_id = comparison_.id;
  run_.created_at = context_.now();
  run_.started_by = request.started_by;
  run_.job_id = request.job_id;
  run_.from = comparison_.from;
  run_.to = comparison_.to;
  run_.test_import = request.test_import;
  run_.status = "running";
  SyncOutcome outcome;
  outcome.sync_id = run_.id;
  outcome.test_import = request.test_import;
  auto lap_start = std::chrono::steady_clock::now();
  auto lap = [&](const char* phase) {
    const auto now = std::chrono::steady_clock::now();
    outcome.timings.emplace_back(phase, std::chrono::duration<double>(now - lap_start).count());
    lap_start = now;
  };
  lap("plan");

  std::vector<std::string> drifted;
  Status status = CheckDrift(&drifted);
  if (status.ok()) status = ResolveKeys(&drifted);
  lap("drift_guard");
  if (!status.ok()) {
    target_.Rollback();
    return status;
  }
  if (!drifted.empty()) {
    std::string list;
    for (const std::string& ref : drifted) list += (list.empty() ? "" : ", ") + ref;
    ENVSYNC_RETURN_IF_ERROR(state_.SaveSync(run_));
    return Fail(outcome,
                fmt::format("drift: {} changed since comparison {}; nothing was written: "
                            "compare again",
                            list, comparison_.id),
                false);
  }
  status = CheckReferences();
  if (status.ok()) status = CheckDeletions();
  if (!status.ok()) {
    target_.Rollback();
    return status;
  }
  ENVSYNC_RETURN_IF_ERROR(state_.SaveSync(run_));
  lap("checks");
  CrashPoint("checked");
  status = StageFiles();
  // Everything needed from the source is read: release its read lock for the platform.
  (void)source_.EndSnapshot();
  lap("stage_files");
  CrashPoint("staged");
  if (status.ok()) status = Apply();
  lap("apply");
  CrashPoint("applied");
  for (const Planned& p : plan_) {
    AppliedCounts& module = outcome.per_module[p.change->module];
    AppliedCounts* both[] = {&outcome.applied, &module};
    for (AppliedCounts* counts : both) {
      if (p.action == Action::kInsert) ++counts->new_records;
      if (p.action == Action::kUpdate) ++counts->modified;
      if (p.action == Action::kDelete) ++counts->deleted;
    }
  }
  outcome.files = static_cast<int64_t>(staged_.size());
  if (!status.ok()) return Fail(outcome, status.message(), false);

  if (request.test_import) {
    target_.Rollback();
    CrashPoint("test_import_rolled_back");
    RemoveWorkDirs(target_.assets().root(), run_.id, /*with_trash=*/true);
    lap("rollback");
    run_.records.clear();
    run_.files.clear();
    run_.status = "success";
    run_.finished_at = context_.now();
    run_.applied = AppliedJson(outcome).dump();
    ENVSYNC_RETURN_IF_ERROR(state_.SaveSync(run_));
    outcome.success = true;
    return outcome;
  }

  // The identity map after this sync, and each record's hash as it will be: the journal that
  // lets a restart tell whether the commit happened.
  IdentityMap after = IdentitiesAfter(identities_, run_);
  {
    // The state store's part on a thread of its own, beside the target's.
    Status bases_status;
    std::thread bases_reader([&] { bases_status = JournalBases(); });
    status = JournalAfterImages(after);
    bases_reader.join();
    if (status.ok()) status = bases_status;
  }
  if (!status.ok()) return Fail(outcome, status.message(), false);
  lap("read_back");
  run_.status = "committing";
  run_.applied = AppliedJson(outcome).dump();
  ENVSYNC_RETURN_IF_ERROR(state_.SaveSync(run_));
  lap("journal");
  CrashPoint("journaled");
  status = target_.Commit();
  if (!status.ok()) return Fail(outcome, status.message(), false);
  lap("commit");
  CrashPoint("committed");
  ENVSYNC_RETURN_IF_ERROR(MoveFilesIntoPlace(run_.files));
  lap("files");
  CrashPoint("files_in_place");
  for (const store::SyncRecord& record : run_.records) {
    if (record.action == "insert_as_new" || record.action == "link") {
      ENVSYNC_RETURN_IF_ERROR(state_.AddIdentity(record.table, std::get<int64_t>(record.prod_id),
                                                 std::get<int64_t>(record.test_id)));
    }
  }
  if (after.size() == identities_.size()) {
    // No pair was added, so every reference hashes as it did for the drift guard: the source
    // records read then are the pairs' common state now (after a merge too).
    ENVSYNC_RETURN_IF_ERROR(state_.BeginBaseUpdate());
    for (const Planned& p : plan_) {
      if (p.action == Action::kDelete) continue;
      const Value& source_id = p.change->source_id;
      store::SyncBase base{source_side_ == Side::kProd ? source_id : p.target_id,
                           source_side_ == Side::kProd ? p.target_id : source_id,
                           p.source_hash,
                           p.source_fields,
                           {},
                           {}};
      Status put = state_.PutBase(p.change->table, base);
      if (!put.ok()) {
        state_.AbortBaseUpdate();
        return put;
      }
    }
    ENVSYNC_RETURN_IF_ERROR(state_.CommitBaseUpdate());
    CrashPoint("bases_committed");
    ENVSYNC_RETURN_IF_ERROR(ForgetDeletedBases(state_, run_));
  } else {
    ENVSYNC_RETURN_IF_ERROR(UpdateBaseAfterSync(source_, target_, state_, run_, after, layouts_,
                                                source_keys_, target_keys_));
  }
  CrashPoint("based");
  RemoveWorkDirs(target_.assets().root(), run_.id, /*with_trash=*/false);
  CrashPoint("work_dirs_removed");
  run_.status = "success";
  run_.finished_at = context_.now();
  ENVSYNC_RETURN_IF_ERROR(state_.UpdateSyncStatus(run_));
  lap("base");
  outcome.success = true;
  return outcome;
}

}  // namespace

namespace {

// An undo puts back the bases its sync replaced: the pairs' bases then differ from what the
// change-tracking marks vouch for (equal at the mark, base current), so their IDs join the marks'
// unequal IDs, before the bases are written back (a crash in between only makes the next
// comparison look them up). A comparison from the change logs then looks their bases up
// instead of taking the side that has not written the record since as the base.
Status MarkUndonePairsUnequal(store::StateStore& state, const store::SyncRun& run) {
  std::map<std::string, std::pair<std::set<int64_t>, std::set<int64_t>>> undone;
  for (const store::SyncRecord& record : run.records) {
    const auto [prod, test] = BaseKeyOf(record);
    auto& ids = undone[record.table];
    if (const auto* id = std::get_if<int64_t>(&prod)) ids.first.insert(*id);
    if (const auto* id = std::get_if<int64_t>(&test)) ids.second.insert(*id);
  }
  for (const auto& [table, ids] : undone) {
    auto mark = state.LoadTrackingMark(table);
    if (!mark.ok()) return mark.status();
    if (!*mark) continue;
    store::TrackingMark& m = **mark;
    std::set<int64_t> prod(m.unequal_prod.begin(), m.unequal_prod.end());
    std::set<int64_t> test(m.unequal_test.begin(), m.unequal_test.end());
    prod.insert(ids.first.begin(), ids.first.end());
    test.insert(ids.second.begin(), ids.second.end());
    if (prod.size() == m.unequal_prod.size() && test.size() == m.unequal_test.size()) continue;
    m.unequal_prod.assign(prod.begin(), prod.end());
    m.unequal_test.assign(test.begin(), test.end());
    ENVSYNC_RETURN_IF_ERROR(state.SaveTrackingMark(m));
  }
  return Status::Ok();
}

// After an undo's commit: the files go back, then the base and the identity map. Idempotent, so
// a restart can run it again after a crash: a file the sync put is removed only while the file
// it replaced still waits in the trash (or when it replaced none).
Status FinishUndo(store::Environment& target, store::StateStore& state, store::SyncRun& run,
                  const std::string& now) {
  std::error_code ec;
  std::string file_problems;
  auto waiting_in_trash = [&](const std::string& final_path) {
    for (const store::SyncFile& f : run.files) {
      if (f.final_path == final_path && !f.trash_path.empty()) return fs::exists(f.trash_path);
    }
    return true;  // it replaced nothing
  };
  for (auto it = run.files.rbegin(); it != run.files.rend(); ++it) {
    if (!it->staged_path.empty() && waiting_in_trash(it->final_path)) {
      fs::remove(it->final_path, ec);
      if (ec) file_problems += fmt::format(" removing {}: {};", it->final_path, ec.message());
    }
    if (!it->trash_path.empty() && fs::exists(it->trash_path)) {
      fs::create_directories(fs::path(it->final_path).parent_path(), ec);
      fs::rename(it->trash_path, it->final_path, ec);
      if (ec) file_problems += fmt::format(" restoring {}: {};", it->final_path, ec.message());
    }
    CrashPoint("undo_file_restored");
  }
  if (!file_problems.empty()) {
    // The old files stay in the trash: nothing is lost, but the assets need a hand.
    run.status = "undone";
    run.error = "files not restored:" + file_problems;
    run.finished_at = now;
    ENVSYNC_RETURN_IF_ERROR(state.UpdateSyncStatus(run));
    return Status::IoError(fmt::format(
        "undo of sync {} restored the database, but not every file:{} the old files are kept in "
        "{}",
        run.id, file_problems, WorkDir(target.assets().root(), "trash", run.id).string()));
  }
  RemoveWorkDirs(target.assets().root(), run.id, /*with_trash=*/true);
  CrashPoint("undo_files_done");
  ENVSYNC_RETURN_IF_ERROR(MarkUndonePairsUnequal(state, run));
  ENVSYNC_RETURN_IF_ERROR(state.BeginBaseUpdate());
  for (const store::SyncRecord& record : run.records) {
    if (!record.base_before) continue;
    Status status = state.PutBase(record.table, *record.base_before);
    if (!status.ok()) {
      state.AbortBaseUpdate();
      return status;
    }
  }
  ENVSYNC_RETURN_IF_ERROR(state.CommitBaseUpdate());
  CrashPoint("undo_bases_restored");
  for (const store::SyncRecord& record : run.records) {
    if (!record.base_before && !IsNull(record.prod_id) && !IsNull(record.test_id)) {
      ENVSYNC_RETURN_IF_ERROR(state.DeleteBase(record.table, record.prod_id, record.test_id));
    }
    // The pairs this sync taught the identity map go with it.
    if (record.action == "insert_as_new" || record.action == "link") {
      ENVSYNC_RETURN_IF_ERROR(state.RemoveIdentity(record.table, std::get<int64_t>(record.prod_id),
                                                   std::get<int64_t>(record.test_id)));
    }
  }
  run.status = "undone";
  run.finished_at = now;
  return state.UpdateSyncStatus(run);
}

}  // namespace

Result<SyncOutcome> UndoSync(const Manifest& manifest, store::Environment& source,
                             store::Environment& target, store::StateStore& state,
                             const std::string& sync_id, const SyncContext& context) {
  auto loaded = state.LoadSync(sync_id);
  if (!loaded.ok()) return loaded.status();
  store::SyncRun run = std::move(*loaded);
  if (run.test_import || run.status != "success") {
    return Status::InvalidArgument(
        fmt::format("sync {} is {}: only a successful sync (not a test import) can be undone",
                    sync_id, run.test_import ? "a test import" : run.status));
  }
  ENVSYNC_RETURN_IF_ERROR(CheckEnvironmentSchema(manifest, target));
  auto identities = state.LoadIdentityMap();
  if (!identities.ok()) return identities.status();
  auto layouts = BuildLayouts(manifest, target);
  if (!layouts.ok()) return layouts.status();
  ENVSYNC_RETURN_IF_ERROR(target.BeginWrite());
  auto keys = LoadKeys(manifest, target);
  if (!keys.ok()) {
    target.Rollback();
    return keys.status();
  }
  auto changed = ChangedSince(target, run, *identities, *layouts, *keys, /*files_in_place=*/true);
  if (!changed.ok() || !changed->empty()) {
    target.Rollback();
    if (!changed.ok()) return changed.status();
    std::string list;
    for (const std::string& ref : *changed) list += (list.empty() ? "" : ", ") + ref;
    return Status::InvalidArgument(fmt::format(
        "cannot undo sync {}: {} changed {} since; nothing was written", sync_id, run.to, list));
  }
  SyncOutcome outcome;
  outcome.sync_id = run.id;
  // The journal: a restart finishes an undo whose commit happened (see RecoverInterruptedSyncs).
  run.status = "undoing";
  ENVSYNC_RETURN_IF_ERROR(state.UpdateSyncStatus(run));
  CrashPoint("undoing");
  for (auto it = run.records.rbegin(); it != run.records.rend(); ++it) {
    if (it != run.records.rbegin() && std::prev(it)->table != it->table) {
      CrashPoint("undo_table_restored");
    }
    const TableSpec& table = *manifest.FindTable(it->table);
    Status status;
    if (it->pre_image.empty()) {
      status = DeleteRecord(target, table, it->target_id);
      ++outcome.applied.deleted;
    } else {
      status = RestorePreImage(target, table, it->target_id, json::parse(it->pre_image),
                               it->action != "delete");
      ++(it->action == "delete" ? outcome.applied.new_records : outcome.applied.modified);
    }
    if (!status.ok()) {
      target.Rollback();
      run.status = "success";
      (void)state.UpdateSyncStatus(run);
      return status.WithContext(fmt::format("undoing sync {}; nothing was written", sync_id));
    }
  }
  ENVSYNC_RETURN_IF_ERROR(target.Commit());
  CrashPoint("undo_committed");
  ENVSYNC_RETURN_IF_ERROR(FinishUndo(target, state, run, context.now()));
  (void)source;
  outcome.success = true;
  return outcome;
}

std::string WorkFolder(const std::string& assets, const std::string& kind) {
  return (fs::path(assets) / ".envsync" / kind).string();
}

Result<std::vector<std::string>> RecoverInterruptedSyncs(
    const Manifest& manifest, store::StateStore& state,
    const std::function<Result<std::unique_ptr<store::Environment>>(const std::string&)>& open,
    const std::string& only_target) {
  std::vector<std::string> settled;
  auto syncs = state.ListSyncs();
  if (!syncs.ok()) return syncs.status();
  for (const store::SyncRun& listed : *syncs) {
    if (!store::InFlight(listed)) continue;
    if (!only_target.empty() && listed.to != only_target) continue;
    auto loaded = state.LoadSync(listed.id);
    if (!loaded.ok()) return loaded.status();
    store::SyncRun run = std::move(*loaded);
    auto target = open(run.to);
    if (!target.ok()) return target.status();
    if (run.status == "undoing") {
      // The undo committed if a record the sync changed is back to its pre-image.
      auto evidence = CompareImages(manifest, **target, run);
      if (!evidence.ok()) return evidence.status();
      if (evidence->pre > 0 || evidence->after == 0) {
        // A file that cannot be put back is recorded on the sync; it must not stop every command.
        Status finished = FinishUndo(**target, state, run, UtcNow());
        if (!finished.ok() && finished.code() != Status::Code::kIoError) return finished;
      } else {
        run.status = "success";  // the undo never happened; it can be run again
        ENVSYNC_RETURN_IF_ERROR(state.UpdateSyncStatus(run));
      }
      settled.push_back(run.id);
      continue;
    }
    bool committed = false;
    IdentityMap after;
    std::map<std::string, RecordLayout> layouts;
    std::map<std::string, KeyIndex> target_keys;
    if (run.status == "committing") {
      auto identities = state.LoadIdentityMap();
      if (!identities.ok()) return identities.status();
      after = IdentitiesAfter(std::move(*identities), run);
      auto built = BuildLayouts(manifest, **target);
      if (!built.ok()) return built.status();
      layouts = std::move(*built);
      auto keys = LoadKeys(manifest, **target);
      if (!keys.ok()) return keys.status();
      target_keys = std::move(*keys);
      // Each record the sync really changes shows either its pre-image (not committed) or its
      // after-image (committed); with none telling, rows are as after either way.
      auto evidence = CompareImages(manifest, **target, run);
      if (!evidence.ok()) return evidence.status();
      committed = evidence->after > 0 || evidence->pre == 0;
    }
    if (committed) {
      ENVSYNC_RETURN_IF_ERROR(MoveFilesIntoPlace(run.files));
      for (const store::SyncRecord& record : run.records) {
        if (record.action == "insert_as_new" || record.action == "link") {
          ENVSYNC_RETURN_IF_ERROR(state.AddIdentity(record.table, std::get<int64_t>(record.prod_id),
                                                    std::get<int64_t>(record.test_id)));
        }
      }
      auto source = open(run.from);
      if (!source.ok()) return source.status();
      auto source_keys = LoadKeys(manifest, **source);
      if (!source_keys.ok()) return source_keys.status();
      ENVSYNC_RETURN_IF_ERROR(UpdateBaseAfterSync(**source, **target, state, run, after, layouts,
                                                  *source_keys, target_keys));
      RemoveWorkDirs((*target)->assets().root(), run.id, /*with_trash=*/false);
      run.status = "success";
      run.error = "completed after a restart";
    } else {
      RemoveWorkDirs((*target)->assets().root(), run.id, /*with_trash=*/true);
      run.status = "failure";
      run.error = "interrupted before its commit; nothing was written";
      run.records.clear();
      run.files.clear();
    }
    run.finished_at = UtcNow();
    ENVSYNC_RETURN_IF_ERROR(state.SaveSync(run));
    settled.push_back(run.id);
  }
  return settled;
}

std::string RandomJobId() { return RandomId("j-"); }

SyncContext DefaultSyncContext() {
  return SyncContext{UtcNow, [] { return RandomId("s-"); }};
}

Result<SyncOutcome> ExecuteSync(const Manifest& manifest, store::Environment& source,
                                store::Environment& target, store::StateStore& state,
                                const SyncRequest& request, const SyncContext& context) {
  Syncer syncer(manifest, source, target, state, context);
  return syncer.Execute(request);
}

}  // namespace envsync::sync
