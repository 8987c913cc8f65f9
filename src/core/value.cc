#include "envsync/core/value.h"

#include <fmt/format.h>

#include <array>
#include <cstring>

namespace envsync {
namespace {

int Rank(const Value& v) {
  if (std::holds_alternative<std::monostate>(v)) return 0;
  if (std::holds_alternative<std::string>(v)) return 2;
  return 1;
}

double AsDouble(const Value& v) {
  if (const auto* i = std::get_if<int64_t>(&v)) return static_cast<double>(*i);
  return std::get<double>(v);
}

}  // namespace

std::strong_ordering CompareValues(const Value& a, const Value& b) {
  const int ra = Rank(a);
  const int rb = Rank(b);
  if (ra != rb) return ra <=> rb;
  if (ra == 0) return std::strong_ordering::equal;
  if (ra == 2) {
    const int c = std::get<std::string>(a).compare(std::get<std::string>(b));
    return c < 0 ? std::strong_ordering::less
                 : (c > 0 ? std::strong_ordering::greater : std::strong_ordering::equal);
  }
  const auto* ia = std::get_if<int64_t>(&a);
  const auto* ib = std::get_if<int64_t>(&b);
  if (ia != nullptr && ib != nullptr) return *ia <=> *ib;
  const double da = AsDouble(a);
  const double db = AsDouble(b);
  if (da < db) return std::strong_ordering::less;
  if (da > db) return std::strong_ordering::greater;
  return std::strong_ordering::equal;
}

std::string RenderValue(const Value& v) {
  if (std::holds_alternative<std::monostate>(v)) return "NULL";
  if (const auto* i = std::get_if<int64_t>(&v)) return std::to_string(*i);
  if (const auto* d = std::get_if<double>(&v)) return fmt::format("{}", *d);
  return std::get<std::string>(v);
}

ValueView ViewOf(const Value& v) {
  ValueView view;
  if (const auto* i = std::get_if<int64_t>(&v)) {
    view.type = ValueView::Type::kInteger;
    view.integer = *i;
  } else if (const auto* d = std::get_if<double>(&v)) {
    view.type = ValueView::Type::kReal;
    view.real = *d;
  } else if (const auto* s = std::get_if<std::string>(&v)) {
    view.type = ValueView::Type::kText;
    view.text = *s;
  }
  return view;
}

Value ToValue(const ValueView& view) {
  switch (view.type) {
    case ValueView::Type::kNull:
      return Value();
    case ValueView::Type::kInteger:
      return view.integer;
    case ValueView::Type::kReal:
      return view.real;
    case ValueView::Type::kText:
      return std::string(view.text);
  }
  return Value();
}

std::string RecordRef(const std::string& table, const Value& id) {
  return table + ":" + RenderValue(id);
}

bool IsValidUtf8(std::string_view text) {
  size_t i = 0;
  while (i < text.size()) {
    // Most text is ASCII: eight bytes at a time while none has its high bit set.
    while (text.size() - i >= 8) {
      uint64_t word;
      std::memcpy(&word, text.data() + i, sizeof word);
      if ((word & 0x8080808080808080ULL) != 0) break;
      i += 8;
    }
    if (i >= text.size()) break;
    const auto lead = static_cast<unsigned char>(text[i]);
    size_t extra = 0;
    uint32_t code_point = 0;
    if (lead < 0x80) {
      ++i;
      continue;
    } else if ((lead & 0xE0) == 0xC0) {
      extra = 1;
      code_point = lead & 0x1F;
    } else if ((lead & 0xF0) == 0xE0) {
      extra = 2;
      code_point = lead & 0x0F;
    } else if ((lead & 0xF8) == 0xF0) {
      extra = 3;
      code_point = lead & 0x07;
    } else {
      return false;
    }
    if (text.size() - i <= extra) return false;
    for (size_t k = 1; k <= extra; ++k) {
      const auto next = static_cast<unsigned char>(text[i + k]);
      if ((next & 0xC0) != 0x80) return false;
      code_point = (code_point << 6) | (next & 0x3F);
    }
    static constexpr std::array<uint32_t, 4> kMinimum{0, 0x80, 0x800, 0x10000};
    if (code_point < kMinimum[extra] || code_point > 0x10FFFF ||
        (code_point >= 0xD800 && code_point <= 0xDFFF)) {
      return false;
    }
    i += extra + 1;
  }
  return true;
}

}  // namespace envsync
