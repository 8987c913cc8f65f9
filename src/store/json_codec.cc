#include "envsync/store/json_codec.h"

#include <fmt/format.h>

#include <algorithm>
#include <charconv>
#include <cstdint>
#include <cstring>
#include <nlohmann/json.hpp>
#include <ostream>
#include <sstream>
#include <string_view>
#include <system_error>
#include <thread>

namespace envsync::store {
namespace {

// Insertion order keeps the §7 key order and child rows' columns in schema order.
using json = nlohmann::ordered_json;

// Text that is not UTF-8 (BLOBs travel as text) is shown with U+FFFD instead of failing.
std::string Dump(const json& j, int indent = -1) {
  return j.dump(indent, ' ', false, json::error_handler_t::replace);
}

json ToJson(const Value& value) {
  if (IsNull(value)) return nullptr;
  if (const auto* i = std::get_if<int64_t>(&value)) return *i;
  if (const auto* d = std::get_if<double>(&value)) return *d;
  return std::get<std::string>(value);
}

Value FromJson(const json& j) {
  if (j.is_null()) return Value();
  if (j.is_number_integer()) return j.get<int64_t>();
  if (j.is_number()) return j.get<double>();
  if (j.is_string()) return j.get<std::string>();
  return Dump(j);
}

json FieldValue(const Value& value, bool is_json) {
  if (is_json && std::holds_alternative<std::string>(value)) {
    json parsed = json::parse(std::get<std::string>(value), nullptr, /*allow_exceptions=*/false);
    if (!parsed.is_discarded()) return parsed;
  }
  return ToJson(value);
}

json NullableName(std::string_view name) {
  if (name.empty()) return nullptr;
  return std::string(name);
}

json ChangeObject(const Change& c, bool with_hashes) {
  json fields = json::array();
  for (const FieldDiff& f : c.fields) {
    json field = {{"field", f.field},
                  {"source", FieldValue(f.source, f.json)},
                  {"target", FieldValue(f.target, f.json)},
                  {"base", f.base_known ? FieldValue(f.Base(), f.json) : json(nullptr)}};
    if (with_hashes) {
      field["base_known"] = f.base_known;
      field["json"] = f.json;
    }
    fields.push_back(std::move(field));
  }
  json out = {{"tab", std::string(TabName(c.tab))},
              {"module", c.module},
              {"table", c.table},
              {"source_id", ToJson(c.source_id)},
              {"target_id", ToJson(c.target_id)},
              {"key", c.key},
              {"selected", c.selected},
              {"conflict", NullableName(ConflictName(c.conflict))},
              {"mergeable", c.mergeable},
              {"reason", NullableName(ReasonName(c.reason))},
              {"required_by", c.required_by},
              {"fields", std::move(fields)}};
  if (with_hashes) {
    out["source_hash"] = c.source_hash ? json(fmt::format("{:016x}", *c.source_hash)) : json();
    out["target_hash"] = c.target_hash ? json(fmt::format("{:016x}", *c.target_hash)) : json();
  }
  return out;
}

std::optional<uint64_t> HashFrom(const json& j) {
  if (!j.is_string()) return std::nullopt;
  return std::stoull(j.get<std::string>(), nullptr, 16);
}

}  // namespace

nlohmann::json ValueToJson(const Value& value) {
  if (IsNull(value)) return nullptr;
  if (const auto* i = std::get_if<int64_t>(&value)) return *i;
  if (const auto* d = std::get_if<double>(&value)) return *d;
  return std::get<std::string>(value);
}

Value ValueFromJson(const nlohmann::json& j) {
  if (j.is_null()) return Value();
  if (j.is_number_integer()) return j.get<int64_t>();
  if (j.is_number()) return j.get<double>();
  if (j.is_string()) return j.get<std::string>();
  return j.dump();
}

namespace {

json ForcedArray(const std::vector<ForcedModule>& forced) {
  json out = json::array();
  for (const ForcedModule& f : forced) {
    out.push_back({{"module", f.module}, {"required_by", f.required_by}, {"folders", f.folders}});
  }
  return out;
}

}  // namespace

std::string ForcedToJson(const std::vector<ForcedModule>& forced) {
  return ForcedArray(forced).dump();
}

std::string WarningsToJson(const std::vector<Warning>& warnings) {
  json out = json::array();
  for (const Warning& w : warnings) {
    out.push_back({{"environment", w.environment}, {"record", w.record}, {"message", w.message}});
  }
  return out.dump();
}

Status ComparisonListsFromJson(const std::string& modules, const std::string& folders,
                               const std::string& forced, const std::string& warnings,
                               const std::string& what, Comparison* c) {
  try {
    c->modules = json::parse(modules).get<std::vector<std::string>>();
    c->folders = json::parse(folders).get<std::vector<std::string>>();
    for (const json& f : json::parse(forced)) {
      c->forced.push_back(ForcedModule{f.at("module").get<std::string>(),
                                       f.at("required_by").get<std::string>(),
                                       f.at("folders").get<std::vector<std::string>>()});
    }
    for (const json& w : json::parse(warnings)) {
      c->warnings.push_back(Warning{w.at("environment").get<std::string>(),
                                    w.at("record").get<std::string>(),
                                    w.at("message").get<std::string>()});
    }
  } catch (const std::exception& e) {
    return Status::Unavailable(
        fmt::format("{}: comparison '{}' is malformed: {}", what, c->id, e.what()));
  }
  return Status::Ok();
}

void WriteComparisonJson(std::ostream& out, const Comparison& comparison,
                         std::optional<Tab> only_tab, int indent) {
  const TabCounts counts = comparison.Counts();
  json warnings = json::array();
  for (const Warning& w : comparison.warnings) {
    warnings.push_back({{"environment", w.environment},
                        {"record", w.record.empty() ? json() : json(w.record)},
                        {"message", w.message}});
  }
  // The envelope with no changes; each change is then written into it on its own, so that
  // printing a comparison holds one change's text at a time, not the whole document.
  const json envelope = {{"comparison_id", comparison.id},
                         {"from", comparison.from},
                         {"to", comparison.to},
                         {"mode", std::string(ModeName(comparison.mode))},
                         {"modules", comparison.modules},
                         {"folders", comparison.folders},
                         {"forced", ForcedArray(comparison.forced)},
                         {"created_at", comparison.created_at},
                         {"records_compared", comparison.records_compared},
                         {"counts",
                          {{"conflicts", counts.conflicts},
                           {"new", counts.new_records},
                           {"modified", counts.modified},
                           {"deleted", counts.deleted}}},
                         {"changes", json::array()},
                         {"warnings", std::move(warnings)}};
  const std::string text = Dump(envelope, indent);
  // Only the envelope's own key can read so: inside a JSON string every quote is escaped.
  const std::string_view empty = indent < 0 ? "\"changes\":[]" : "\"changes\": []";
  const size_t close = text.find(empty) + empty.size() - 1;  // at the array's ']'
  out.write(text.data(), static_cast<std::streamsize>(close));
  // nlohmann's layout: each change on its own lines at depth 2, the ']' back at depth 1.
  std::string item_indent;
  if (indent >= 0) item_indent.assign(1, '\n').append(static_cast<size_t>(2 * indent), ' ');
  bool first = true;
  for (const Change& change : comparison.changes) {
    if (only_tab && change.tab != *only_tab) continue;
    std::string item = Dump(ChangeObject(change, /*with_hashes=*/false), indent);
    if (indent >= 0) {
      // A change's own lines move two levels in (a JSON text has no newline inside a string).
      std::string shifted;
      shifted.reserve(item.size() + item.size() / 8);
      for (char c : item) {
        if (c == '\n') {
          shifted += item_indent;
        } else {
          shifted += c;
        }
      }
      item = std::move(shifted);
    }
    if (!first) out << ',';
    out << item_indent << item;
    first = false;
  }
  if (!first && indent >= 0) out << '\n' << std::string(indent, ' ');
  out.write(text.data() + close, static_cast<std::streamsize>(text.size() - close));
}

std::string ComparisonToJson(const Comparison& comparison, std::optional<Tab> only_tab,
                             int indent) {
  std::ostringstream out;
  WriteComparisonJson(out, comparison, only_tab, indent);
  return out.str();
}

// Whether any of the 8 bytes at `p` is below 0x20, '"' or '\\' (may also flag some words
// without one; never misses one).
bool JsonWriter::NeedsEscape(const char* p) {
  constexpr uint64_t kOnes = 0x0101010101010101ULL;
  constexpr uint64_t kHigh = 0x8080808080808080ULL;
  uint64_t word;
  std::memcpy(&word, p, sizeof word);
  const uint64_t quote = word ^ (kOnes * '"');
  const uint64_t backslash = word ^ (kOnes * '\\');
  const uint64_t below = (word - kOnes * 0x20) & ~word;
  const uint64_t is_quote = (quote - kOnes) & ~quote;
  const uint64_t is_backslash = (backslash - kOnes) & ~backslash;
  return ((below | is_quote | is_backslash) & kHigh) != 0;
}

void JsonWriter::Key(std::string_view key) {
  out_ += first_ ? '{' : ',';
  first_ = false;
  String(key);
  out_ += ':';
}

void JsonWriter::String(std::string_view text) {
  if (!IsValidUtf8(text)) {
    out_ += Dump(json(std::string(text)));
    return;
  }
  out_ += '"';
  size_t plain = 0;
  for (size_t i = 0; i < text.size(); ++i) {
    // Eight bytes at a time while none is a control character, '"' or '\\'.
    while (text.size() - i >= 8 && !NeedsEscape(text.data() + i)) i += 8;
    if (i >= text.size()) break;
    const auto c = static_cast<unsigned char>(text[i]);
    if (c >= 0x20 && c != '"' && c != '\\') continue;
    out_.append(text.data() + plain, i - plain);
    plain = i + 1;
    switch (c) {
      case '"':
        out_ += "\\\"";
        break;
      case '\\':
        out_ += "\\\\";
        break;
      case '\b':
        out_ += "\\b";
        break;
      case '\f':
        out_ += "\\f";
        break;
      case '\n':
        out_ += "\\n";
        break;
      case '\r':
        out_ += "\\r";
        break;
      case '\t':
        out_ += "\\t";
        break;
      default:
        out_ += fmt::format("\\u{:04x}", c);
    }
  }
  out_.append(text.data() + plain, text.size() - plain);
  out_ += '"';
}

void JsonWriter::Null() { out_ += "null"; }
void JsonWriter::Bool(bool b) { out_ += b ? "true" : "false"; }
void JsonWriter::Integer(int64_t i) { out_ += std::to_string(i); }
void JsonWriter::Name(std::string_view name) { name.empty() ? Null() : String(name); }

void JsonWriter::Field(const Value& value, bool is_json) {
  if (IsNull(value)) {
    Null();
  } else if (const auto* i = std::get_if<int64_t>(&value)) {
    Integer(*i);
  } else if (const auto* text = std::get_if<std::string>(&value); text && !is_json) {
    String(*text);
  } else {
    out_ += Dump(FieldValue(value, is_json));
  }
}

void JsonWriter::Hash(const std::optional<uint64_t>& hash) {
  if (hash) {
    out_ += fmt::format("\"{:016x}\"", *hash);
  } else {
    Null();
  }
}

void JsonWriter::End() { out_ += first_ ? "{}" : "}"; }

namespace {

// The side a field's base repeats, named in the stored form instead of the text written a
// second time ("target" or "source"), or nullptr. Only text longer than the name it is
// replaced by: a modified or deleted record's base is mostly its unchanged target, and its
// long fields were a third of a stored comparison's bytes.
const char* BaseAlias(const FieldDiff& f) {
  if (!f.base_known) return nullptr;
  const auto* base = std::get_if<std::string>(&f.Base());
  if (base == nullptr || base->size() <= 32) return nullptr;
  if (const auto* target = std::get_if<std::string>(&f.target); target && *target == *base) {
    return "target";
  }
  if (const auto* source = std::get_if<std::string>(&f.source); source && *source == *base) {
    return "source";
  }
  return nullptr;
}

// How the stored form writes a field's target that is mostly its source: the bytes kept from
// the source's head and tail, and the text between them ("P,S,middle"), or nothing when the
// target is not such a text or the edit would not save much. The middle is cut at whole UTF-8
// characters of the (valid UTF-8) target, so it is written as the JSON string it is.
std::optional<std::string> TargetEdit(const FieldDiff& f) {
  constexpr size_t kWorthIt = 64;  // bytes kept from the source, at least
  if (f.json) return std::nullopt;
  const auto* source = std::get_if<std::string>(&f.source);
  const auto* target = std::get_if<std::string>(&f.target);
  // A side that is not UTF-8 is written lossily (JsonWriter::String): the target would be
  // rebuilt from other bytes.
  if (source == nullptr || target == nullptr || !IsValidUtf8(*source) || !IsValidUtf8(*target)) {
    return std::nullopt;
  }
  const size_t shorter = std::min(source->size(), target->size());
  if (shorter < kWorthIt) return std::nullopt;
  size_t head = std::mismatch(source->begin(), source->begin() + shorter, target->begin()).first -
                source->begin();
  size_t tail =
      std::mismatch(source->rbegin(), source->rbegin() + (shorter - head), target->rbegin()).first -
      source->rbegin();
  auto continuation = [](char c) { return (static_cast<unsigned char>(c) & 0xC0) == 0x80; };
  while (head > 0 && head < target->size() && continuation((*target)[head])) --head;
  while (tail > 0 && continuation((*target)[target->size() - tail])) --tail;
  if (head + tail < kWorthIt) return std::nullopt;
  const std::string_view middle(target->data() + head, target->size() - head - tail);
  return fmt::format("{},{},{}", head, tail, middle);
}

// The target a field's `target_edit` ("P,S,middle") makes of its source text, or nothing when
// the edit is malformed or does not fit the source.
std::optional<std::string> TargetFromEdit(const Value& source, std::string_view edit) {
  const auto* text = std::get_if<std::string>(&source);
  if (text == nullptr) return std::nullopt;
  size_t lengths[2] = {0, 0};
  const char* at = edit.data();
  const char* end = edit.data() + edit.size();
  for (size_t& length : lengths) {
    const auto [next, error] = std::from_chars(at, end, length);
    if (error != std::errc() || next == at || next == end || *next != ',') return std::nullopt;
    at = next + 1;
  }
  const auto [head, tail] = lengths;
  if (head > text->size() || tail > text->size() - head) return std::nullopt;
  std::string target;
  target.reserve(head + static_cast<size_t>(end - at) + tail);
  target.append(*text, 0, head).append(at, end).append(*text, text->size() - tail, tail);
  return target;
}

std::string WriteChange(const Change& c, bool stored) {
  std::string out;
  out.reserve(256);
  JsonWriter w(&out);
  w.Key("tab");
  w.String(TabName(c.tab));
  w.Key("module");
  w.String(c.module);
  w.Key("table");
  w.String(c.table);
  w.Key("source_id");
  w.Field(c.source_id);
  w.Key("target_id");
  w.Field(c.target_id);
  w.Key("key");
  w.String(c.key);
  w.Key("selected");
  w.Bool(c.selected);
  w.Key("conflict");
  w.Name(ConflictName(c.conflict));
  w.Key("mergeable");
  w.Bool(c.mergeable);
  w.Key("reason");
  w.Name(ReasonName(c.reason));
  w.Key("required_by");
  out += '[';
  for (size_t i = 0; i < c.required_by.size(); ++i) {
    if (i > 0) out += ',';
    w.String(c.required_by[i]);
  }
  out += ']';
  w.Key("fields");
  out += '[';
  for (size_t i = 0; i < c.fields.size(); ++i) {
    const FieldDiff& f = c.fields[i];
    if (i > 0) out += ',';
    JsonWriter field(&out);
    field.Key("field");
    field.String(f.field);
    field.Key("source");
    field.Field(f.source, f.json);
    const std::optional<std::string> edit = stored ? TargetEdit(f) : std::nullopt;
    field.Key("target");
    if (edit) {
      field.Null();
    } else {
      field.Field(f.target, f.json);
    }
    const char* alias = stored ? BaseAlias(f) : nullptr;
    field.Key("base");
    if (f.base_known && alias == nullptr) {
      field.Field(f.Base(), f.json);
    } else {
      field.Null();
    }
    field.Key("base_known");
    field.Bool(f.base_known);
    field.Key("json");
    field.Bool(f.json);
    if (alias != nullptr) {
      field.Key("base_as");
      field.String(alias);
    }
    if (edit) {
      field.Key("target_edit");
      field.String(*edit);
    }
    field.End();
  }
  out += ']';
  w.Key("source_hash");
  w.Hash(c.source_hash);
  w.Key("target_hash");
  w.Hash(c.target_hash);
  w.End();
  return out;
}

}  // namespace

std::string ChangeToJson(const Change& c) { return WriteChange(c, /*stored=*/false); }

std::string ChangeToStoredJson(const Change& c) { return WriteChange(c, /*stored=*/true); }

std::string ChangeToJsonForTest(const Change& change) {
  return Dump(ChangeObject(change, /*with_hashes=*/true));
}

namespace {

// SAX events of one stored change, straight into a Change. Returns false (stopping the parse)
// on anything it does not read exactly as the object path does; the caller then takes that
// path, so the two never disagree.
class ChangeReader : public nlohmann::json_sax<json> {
 public:
  explicit ChangeReader(Change* change) : c_(change) {}

  // Whether every key the object path requires was read.
  bool Complete() const { return (seen_ & kAllTop) == kAllTop; }

  bool null() override { return Scalar(Value(), Kind::kNull); }
  bool boolean(bool value) override {
    // A boolean is a value only for `selected` and `mergeable`; elsewhere its text.
    if (depth_ == 1 && (key_ == kSelected || key_ == kMergeable)) {
      if (!Mark(key_)) return false;
      (key_ == kSelected ? c_->selected : c_->mergeable) = value;
      return true;
    }
    if (depth_ == 3 && (field_key_ == kJson || field_key_ == kBaseKnown)) {
      if (!MarkField(field_key_)) return false;
      (field_key_ == kJson ? field_.json : field_.base_known) = value;
      return true;
    }
    return Scalar(std::string(value ? "true" : "false"), Kind::kOther);
  }
  bool number_integer(number_integer_t value) override {
    return Scalar(static_cast<int64_t>(value), Kind::kOther);
  }
  bool number_unsigned(number_unsigned_t value) override {
    return Scalar(static_cast<int64_t>(value), Kind::kOther);
  }
  bool number_float(number_float_t value, const string_t&) override {
    return Scalar(static_cast<double>(value), Kind::kOther);
  }
  bool string(string_t& value) override {
    if (depth_ == 2 && in_required_by_) {
      c_->required_by.push_back(std::move(value));
      return true;
    }
    if (depth_ == 1) {
      switch (key_) {
        case kTab: {
          auto tab = ParseTab(value);
          if (!tab || !Mark(key_)) return false;
          c_->tab = *tab;
          return true;
        }
        case kModule:
        case kTable:
        case kKey:
          if (!Mark(key_)) return false;
          (key_ == kModule ? c_->module : key_ == kTable ? c_->table : c_->key) = std::move(value);
          return true;
        case kConflict:
          if (!Mark(key_)) return false;
          c_->conflict = ParseConflict(value).value_or(Conflict::kNone);
          return true;
        case kReason:
          if (!Mark(key_)) return false;
          c_->reason = ParseReason(value).value_or(Reason::kNone);
          return true;
        case kSourceHash:
        case kTargetHash: {
          uint64_t hash = 0;
          const auto [end, error] =
              std::from_chars(value.data(), value.data() + value.size(), hash, 16);
          if (error != std::errc() || end != value.data() + value.size() || value.empty() ||
              !Mark(key_)) {
            return false;
          }
          (key_ == kSourceHash ? c_->source_hash : c_->target_hash) = hash;
          return true;
        }
        default:
          break;
      }
    }
    if (depth_ == 3 && field_key_ == kField) {
      if (!MarkField(field_key_)) return false;
      field_.field = std::move(value);
      return true;
    }
    if (depth_ == 3 && field_key_ == kTargetEdit) {
      if (!MarkField(field_key_)) return false;
      target_edit_ = std::move(value);
      return true;
    }
    if (depth_ == 3 && field_key_ == kBaseAs) {
      if (!MarkField(field_key_)) return false;
      if (value == "target") {
        base_as_ = kTarget;
      } else if (value == "source") {
        base_as_ = kSource;
      } else {
        return false;
      }
      return true;
    }
    return Scalar(std::move(value), Kind::kString);
  }
  bool binary(binary_t&) override { return false; }
  bool start_object(std::size_t) override {
    if (depth_ == 0) {
      depth_ = 1;
      return true;
    }
    if (depth_ == 2 && in_fields_) {
      depth_ = 3;
      field_ = FieldDiff();
      field_seen_ = 0;
      base_as_ = kOtherFieldKey;
      target_edit_.reset();
      kinds_[0] = kinds_[1] = kinds_[2] = Kind::kNull;
      return true;
    }
    return false;  // a JSON field value, or an object where none belongs
  }
  bool key(string_t& name) override {
    if (depth_ == 1) {
      key_ = TopKey(name);
      return true;
    }
    if (depth_ == 3) {
      field_key_ = FieldKey(name);
      return true;
    }
    return false;
  }
  bool end_object() override {
    if (depth_ == 3) {
      if ((field_seen_ & kAllField) != kAllField) return false;
      if (target_edit_) {
        // The stored form's target made from its source, written as null.
        if (field_.json || kinds_[1] != Kind::kNull) return false;
        auto target = TargetFromEdit(field_.source, *target_edit_);
        if (!target) return false;
        field_.target = std::move(*target);
        kinds_[1] = Kind::kString;
      }
      if (base_as_ != kOtherFieldKey) {
        // The stored form's base that repeats a side: known, written as null.
        if (!field_.base_known || kinds_[2] != Kind::kNull) return false;
        const int slot = base_as_ - kSource;
        field_.base_is =
            base_as_ == kTarget ? FieldDiff::BaseIs::kTarget : FieldDiff::BaseIs::kSource;
        kinds_[2] = kinds_[slot];
      }
      // A JSON field's value that is neither text nor NULL is kept as its JSON text.
      if (field_.json) {
        for (const Kind kind : kinds_) {
          if (kind == Kind::kOther) return false;
        }
      }
      c_->fields.push_back(std::move(field_));
      depth_ = 2;
      return true;
    }
    if (depth_ == 1) {
      depth_ = 0;
      return true;
    }
    return false;
  }
  bool start_array(std::size_t) override {
    if (depth_ != 1) return false;
    if (key_ == kRequiredBy) {
      if (!Mark(key_)) return false;
      in_required_by_ = true;
    } else if (key_ == kFields) {
      if (!Mark(key_)) return false;
      in_fields_ = true;
    } else {
      return false;
    }
    depth_ = 2;
    return true;
  }
  bool end_array() override {
    if (depth_ != 2) return false;
    in_required_by_ = in_fields_ = false;
    depth_ = 1;
    return true;
  }
  bool parse_error(std::size_t, const std::string&, const nlohmann::detail::exception&) override {
    return false;
  }

 private:
  enum TopKeyId {
    kTab,
    kModule,
    kTable,
    kSourceId,
    kTargetId,
    kKey,
    kSelected,
    kConflict,
    kMergeable,
    kReason,
    kRequiredBy,
    kFields,
    kSourceHash,
    kTargetHash,
    kOtherKey
  };
  enum FieldKeyId {
    kField,
    kSource,
    kTarget,
    kBase,
    kJson,
    kBaseKnown,
    kBaseAs,
    kTargetEdit,
    kOtherFieldKey
  };
  enum class Kind { kNull, kString, kOther };
  // The keys the object path reads with at(): all of them but the two hashes.
  static constexpr uint32_t kAllTop = (1u << kSourceHash) - 1;
  static constexpr uint32_t kAllField = (1u << kJson) - 1;

  // The position of `name` in `names`, or `other` (the count of names).
  template <typename Id, size_t N>
  static Id KeyOf(const std::string_view (&names)[N], const std::string& name, Id other) {
    for (size_t i = 0; i < N; ++i) {
      if (name == names[i]) return static_cast<Id>(i);
    }
    return other;
  }
  static TopKeyId TopKey(const std::string& name) {
    static constexpr std::string_view kNames[] = {
        "tab",         "module",   "table",       "source_id",  "target_id",
        "key",         "selected", "conflict",    "mergeable",  "reason",
        "required_by", "fields",   "source_hash", "target_hash"};
    return KeyOf(kNames, name, kOtherKey);
  }
  static FieldKeyId FieldKey(const std::string& name) {
    static constexpr std::string_view kNames[] = {"field", "source",     "target",  "base",
                                                  "json",  "base_known", "base_as", "target_edit"};
    return KeyOf(kNames, name, kOtherFieldKey);
  }
  // Each key once (a duplicate is left to the object path); keys nobody reads any number of
  // times.
  static bool MarkIn(uint32_t* seen, int key, int other) {
    if (key == other) return true;
    const uint32_t bit = 1u << key;
    if ((*seen & bit) != 0) return false;
    *seen |= bit;
    return true;
  }
  bool Mark(TopKeyId key) { return MarkIn(&seen_, key, kOtherKey); }
  bool MarkField(FieldKeyId key) { return MarkIn(&field_seen_, key, kOtherFieldKey); }
  // A scalar that is a Value (IDs, field values), or ignored under a key nobody reads.
  bool Scalar(Value value, Kind kind) {
    if (depth_ == 1) {
      switch (key_) {
        case kSourceId:
        case kTargetId:
          if (!Mark(key_)) return false;
          (key_ == kSourceId ? c_->source_id : c_->target_id) = std::move(value);
          return true;
        case kConflict:
        case kReason:
        case kSourceHash:
        case kTargetHash:
          // NULL leaves the default; any other kind is the object path's to judge.
          if (kind != Kind::kNull) return false;
          return Mark(key_);
        case kOtherKey:
          return true;
        default:
          return false;
      }
    }
    if (depth_ == 3) {
      switch (field_key_) {
        case kSource:
        case kTarget:
        case kBase: {
          if (!MarkField(field_key_)) return false;
          const int slot = field_key_ - kSource;
          kinds_[slot] = kind;
          (field_key_ == kSource   ? field_.source
           : field_key_ == kTarget ? field_.target
                                   : field_.base) = std::move(value);
          return true;
        }
        case kOtherFieldKey:
          return true;
        default:
          return false;
      }
    }
    return false;
  }

  Change* c_;
  int depth_ = 0;
  TopKeyId key_ = kOtherKey;
  FieldKeyId field_key_ = kOtherFieldKey;
  uint32_t seen_ = 0;
  uint32_t field_seen_ = 0;
  bool in_required_by_ = false;
  bool in_fields_ = false;
  FieldDiff field_;
  FieldKeyId base_as_ = kOtherFieldKey;     // kSource or kTarget when the base repeats that side
  std::optional<std::string> target_edit_;  // when the target is written as an edit of the source
  Kind kinds_[3] = {Kind::kNull, Kind::kNull, Kind::kNull};
};

}  // namespace

std::optional<Change> ChangeFromJsonEventsForTest(const std::string& text) {
  Change change;
  ChangeReader reader(&change);
  if (json::sax_parse(text.data(), text.data() + text.size(), &reader, json::input_format_t::json,
                      /*strict=*/true) &&
      reader.Complete()) {
    return change;
  }
  return std::nullopt;
}

Result<Change> ChangeFromJson(const std::string& text) {
  if (auto change = ChangeFromJsonEventsForTest(text)) return std::move(*change);
  return ChangeFromJsonForTest(text);
}

Status ChangesFromJson(const std::vector<std::string>& texts, std::vector<Change>* out,
                       unsigned threads) {
  // Below this many changes a thread costs more than it saves.
  constexpr size_t kPerThread = 1024;
  const size_t parts = std::clamp<size_t>(texts.size() / kPerThread, 1, std::max(threads, 1u));
  std::vector<Change> changes(texts.size());
  std::vector<Status> failed(parts);
  std::vector<size_t> failed_at(parts, texts.size());
  auto parse = [&](size_t part) {
    const size_t from = texts.size() * part / parts;
    const size_t to = texts.size() * (part + 1) / parts;
    for (size_t i = from; i < to; ++i) {
      auto change = ChangeFromJson(texts[i]);
      if (!change.ok()) {
        failed[part] = change.status();
        failed_at[part] = i;
        return;
      }
      changes[i] = std::move(*change);
    }
  };
  std::vector<std::thread> helpers;
  helpers.reserve(parts - 1);
  for (size_t part = 1; part < parts; ++part) {
    try {
      helpers.emplace_back(parse, part);
    } catch (const std::system_error&) {
      parse(part);  // No thread to be had: this part is parsed here, the result is the same.
    }
  }
  parse(0);
  for (std::thread& helper : helpers) helper.join();
  const auto first = std::min_element(failed_at.begin(), failed_at.end());
  if (*first != texts.size()) return failed[first - failed_at.begin()];
  out->reserve(out->size() + changes.size());
  std::move(changes.begin(), changes.end(), std::back_inserter(*out));
  return Status::Ok();
}

Result<Change> ChangeFromJsonForTest(const std::string& text) {
  json j = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (!j.is_object()) return Status::Unavailable("a stored change is not valid JSON");
  try {
    Change c;
    auto tab = ParseTab(j.at("tab").get<std::string>());
    if (!tab) return Status::Unavailable("a stored change has an unknown tab");
    c.tab = *tab;
    c.module = j.at("module").get<std::string>();
    c.table = j.at("table").get<std::string>();
    c.source_id = FromJson(j.at("source_id"));
    c.target_id = FromJson(j.at("target_id"));
    c.key = j.at("key").get<std::string>();
    c.selected = j.at("selected").get<bool>();
    if (j.at("conflict").is_string()) {
      c.conflict = ParseConflict(j.at("conflict").get<std::string>()).value_or(Conflict::kNone);
    }
    c.mergeable = j.at("mergeable").get<bool>();
    if (j.at("reason").is_string()) {
      c.reason = ParseReason(j.at("reason").get<std::string>()).value_or(Reason::kNone);
    }
    c.required_by = j.at("required_by").get<std::vector<std::string>>();
    for (const json& f : j.at("fields")) {
      FieldDiff field;
      field.field = f.at("field").get<std::string>();
      field.json = f.value("json", false);
      field.base_known = f.value("base_known", false);
      auto value_of = [&](const json& v) -> Value {
        if (field.json && !v.is_null() && !v.is_string()) return Dump(v);
        return FromJson(v);
      };
      field.source = value_of(f.at("source"));
      field.target = value_of(f.at("target"));
      field.base = value_of(f.at("base"));
      if (const auto edit = f.find("target_edit"); edit != f.end()) {
        std::optional<std::string> target;
        if (edit->is_string() && !field.json && f.at("target").is_null()) {
          target = TargetFromEdit(field.source, edit->get<std::string>());
        }
        if (!target) {
          return Status::Unavailable(
              "a stored change is malformed: a field's target_edit does not fit its source");
        }
        field.target = std::move(*target);
      }
      if (const auto as = f.find("base_as"); as != f.end()) {
        const bool named = as->is_string() && (*as == "target" || *as == "source");
        if (!named || !field.base_known || !f.at("base").is_null()) {
          return Status::Unavailable(
              "a stored change is malformed: a field's base_as names no side it can repeat");
        }
        field.base_is = *as == "target" ? FieldDiff::BaseIs::kTarget : FieldDiff::BaseIs::kSource;
      }
      c.fields.push_back(std::move(field));
    }
    c.source_hash = HashFrom(j.value("source_hash", json()));
    c.target_hash = HashFrom(j.value("target_hash", json()));
    return c;
  } catch (const std::exception& e) {
    return Status::Unavailable(fmt::format("a stored change is malformed: {}", e.what()));
  }
}

}  // namespace envsync::store
