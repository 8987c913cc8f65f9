#ifndef ENVSYNC_CORE_VALUE_H_
#define ENVSYNC_CORE_VALUE_H_

#include <compare>
#include <cstdint>
#include <string>
#include <string_view>
#include <variant>

namespace envsync {

// One column value as the platform stores it: NULL, INTEGER, REAL or TEXT (BLOBs travel as
// TEXT holding their bytes). Values order as SQLite orders them with the BINARY collation:
// NULL < numbers < text, numbers by value, text by bytes, so a merge of two `ORDER BY id`
// streams can compare IDs in C++ exactly as the database sorted them.
using Value = std::variant<std::monostate, int64_t, double, std::string>;

inline bool IsNull(const Value& v) { return std::holds_alternative<std::monostate>(v); }

// A column value seen in place, without a copy: text points into the database's own buffer
// and is valid only until the cursor that produced it moves on.
struct ValueView {
  enum class Type : uint8_t { kNull, kInteger, kReal, kText };
  Type type = Type::kNull;
  int64_t integer = 0;
  double real = 0;
  std::string_view text;
};

// A view of `v` (valid while `v` lives), and the value a view shows.
ValueView ViewOf(const Value& v);
Value ToValue(const ValueView& view);

// Three-way comparison in SQLite's order (see above).
std::strong_ordering CompareValues(const Value& a, const Value& b);

// The value as a user reads it: NULL, 42, 1.5, or the text itself.
std::string RenderValue(const Value& v);

// Whether `text` is well-formed UTF-8: no overlong forms, surrogates or code points past
// U+10FFFF (what JSON text may carry as is).
bool IsValidUtf8(std::string_view text);

// A record's root-row ID as used on the command line: `cms_pages:57`,
// `system_settings:integrations.mobile_app.home`.
std::string RecordRef(const std::string& table, const Value& id);

}  // namespace envsync

#endif  // ENVSYNC_CORE_VALUE_H_
