#ifndef ENVSYNC_STORE_JSON_CODEC_H_
#define ENVSYNC_STORE_JSON_CODEC_H_

#include <nlohmann/json_fwd.hpp>
#include <optional>
#include <string>

#include "envsync/core/comparison.h"
#include "envsync/core/status.h"

namespace envsync::store {

// The JSON of SYNC-SEMANTICS §7 for a comparison: comparison_id, from, to, mode, modules,
// forced, counts, changes, plus folders, records_compared, created_at and warnings. With
// `only_tab` the changes are those of one tab (the counts stay whole). `indent` < 0 prints
// one line.
std::string ComparisonToJson(const Comparison& comparison, std::optional<Tab> only_tab, int indent);

// One change as JSON text, and back (the state store keeps changes this way).
std::string ChangeToJson(const Change& change);
// The same through nlohmann::json objects, which ChangeToJson writes directly: tests hold the
// two to the same text.
std::string ChangeToJsonForTest(const Change& change);
Result<Change> ChangeFromJson(const std::string& text);

// A comparison's forced modules and warnings as the state store keeps them (JSON arrays).
std::string ForcedToJson(const std::vector<ForcedModule>& forced);
std::string WarningsToJson(const std::vector<Warning>& warnings);
// Reads the modules, folders, forced modules and warnings the state store keeps (JSON text)
// into `comparison`. Unavailable, naming `what` and the comparison, when one is malformed.
Status ComparisonListsFromJson(const std::string& modules, const std::string& folders,
                               const std::string& forced, const std::string& warnings,
                               const std::string& what, Comparison* comparison);

// A column value as JSON (null, number or string), and back.
nlohmann::json ValueToJson(const Value& value);
Value ValueFromJson(const nlohmann::json& json);

}  // namespace envsync::store

#endif  // ENVSYNC_STORE_JSON_CODEC_H_
