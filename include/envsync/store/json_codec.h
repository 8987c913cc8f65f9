#ifndef ENVSYNC_STORE_JSON_CODEC_H_
#define ENVSYNC_STORE_JSON_CODEC_H_

#include <cstdint>
#include <iosfwd>
#include <nlohmann/json_fwd.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "envsync/core/comparison.h"
#include "envsync/core/status.h"

namespace envsync::store {

// The JSON of SYNC-SEMANTICS §7 for a comparison: comparison_id, from, to, mode, modules,
// forced, counts, changes, plus folders, records_compared, created_at and warnings. With
// `only_tab` the changes are those of one tab (the counts stay whole). `indent` < 0 prints
// one line.
std::string ComparisonToJson(const Comparison& comparison, std::optional<Tab> only_tab, int indent);
// The same text written to `out` one change at a time (the CLI's `--json` of a large
// comparison holds one change's text, not the document).
void WriteComparisonJson(std::ostream& out, const Comparison& comparison,
                         std::optional<Tab> only_tab, int indent);

// One change as JSON text (SYNC-SEMANTICS §7's shape), and back.
std::string ChangeToJson(const Change& change);
// The form the state store keeps: the same, except that a field's long text base equal to its
// target (or source) is written as `"base":null,...,"base_as":"target"` instead of a second
// copy. ChangeFromJson reads both forms into the same Change.
std::string ChangeToStoredJson(const Change& change);
// The same through nlohmann::json objects, which ChangeToJson writes directly: tests hold the
// two to the same text.
std::string ChangeToJsonForTest(const Change& change);
// Reads a change back: through nlohmann's SAX events straight into the Change (no JSON object
// per change: loading a 100,000-change comparison for a sync spent most of its time building
// and freeing them), falling back to ChangeFromJsonForTest's objects for what the events do not
// cover (JSON field values, anything missing, duplicated or of an unexpected type, malformed
// text), so both give the same Change or the same error.
Result<Change> ChangeFromJson(const std::string& text);
// Many stored changes read back in order, each as ChangeFromJson reads it, appended to `out`:
// a large batch is split over up to `threads` threads (a sync's 100,000 changes are ≈ 44 MB of
// JSON, and reading them one after the other was ≈ 0.5 s of one core). On an error, the one of
// the first text that has one, and `out` is left as it was.
Status ChangesFromJson(const std::vector<std::string>& texts, std::vector<Change>* out,
                       unsigned threads = 2);
// The same through nlohmann::json objects: the reference tests hold ChangeFromJson to.
Result<Change> ChangeFromJsonForTest(const std::string& text);
// The events alone: the change, or nullopt where ChangeFromJson falls back (tests prove the
// events are what reads what the writer writes).
std::optional<Change> ChangeFromJsonEventsForTest(const std::string& text);

// A comparison's forced modules and warnings as the state store keeps them (JSON arrays).
std::string ForcedToJson(const std::vector<ForcedModule>& forced);
std::string WarningsToJson(const std::vector<Warning>& warnings);
// Reads the modules, folders, forced modules and warnings the state store keeps (JSON text)
// into `comparison`. Unavailable, naming `what` and the comparison, when one is malformed.
Status ComparisonListsFromJson(const std::string& modules, const std::string& folders,
                               const std::string& forced, const std::string& warnings,
                               const std::string& what, Comparison* comparison);

// JSON text written straight into a string, exactly as nlohmann::json::dump() writes the same
// values (one line; strings escaped as it escapes them), without building nlohmann objects:
// for what is written once per record (stored changes, a sync's pre-images). What it does not
// write itself (reals, text that is not UTF-8, JSON field values) it hands to nlohmann, so the
// two cannot drift apart. One writer per object: Key opens it, End closes it.
class JsonWriter {
 public:
  explicit JsonWriter(std::string* out) : out_(*out) {}
  // `{"key":` for the first key, `,"key":` after.
  void Key(std::string_view key);
  void String(std::string_view text);
  void Null();
  void Bool(bool b);
  void Integer(int64_t i);
  // A name, or null when empty.
  void Name(std::string_view name);
  // A column value; `is_json` text is embedded as the JSON it holds.
  void Field(const Value& value, bool is_json = false);
  // A hash as 16 hex digits in a string, or null.
  void Hash(const std::optional<uint64_t>& hash);
  // Closes the object (`{}` when it had no key).
  void End();

 private:
  static bool NeedsEscape(const char* p);
  std::string& out_;
  bool first_ = true;
};

// A column value as JSON (null, number or string), and back.
nlohmann::json ValueToJson(const Value& value);
Value ValueFromJson(const nlohmann::json& json);

}  // namespace envsync::store

#endif  // ENVSYNC_STORE_JSON_CODEC_H_
