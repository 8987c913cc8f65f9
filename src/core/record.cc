#include "envsync/core/record.h"

#include <fmt/format.h>
#include <xxhash.h>

#include <algorithm>
#include <cstring>

namespace envsync {
namespace {

void AppendValueBytes(const ValueView& value, std::string* out) {
  switch (value.type) {
    case ValueView::Type::kNull:
      out->push_back('n');
      break;
    case ValueView::Type::kInteger:
      out->push_back('i');
      out->append(reinterpret_cast<const char*>(&value.integer), sizeof(value.integer));
      break;
    case ValueView::Type::kReal:
      out->push_back('r');
      out->append(reinterpret_cast<const char*>(&value.real), sizeof(value.real));
      break;
    case ValueView::Type::kText: {
      out->push_back('t');
      const uint64_t size = value.text.size();
      out->append(reinterpret_cast<const char*>(&size), sizeof(size));
      out->append(value.text);
      break;
    }
  }
}

std::string JsonValue(const Value& value) {
  if (IsNull(value)) return "null";
  if (const auto* i = std::get_if<int64_t>(&value)) return std::to_string(*i);
  if (const auto* d = std::get_if<double>(&value)) return fmt::format("{}", *d);
  return JsonQuote(std::get<std::string>(value));
}

// A reference as the same token on both sides (see IdentityMap::Canonical).
ValueView CanonicalReference(const std::string& table, const IdentityMap& identities, Side side,
                             const ValueView& raw, Value* storage) {
  if (raw.type != ValueView::Type::kInteger || identities.empty()) return raw;
  *storage = identities.Canonical(table, side, Value(raw.integer));
  return ViewOf(*storage);
}

}  // namespace

uint64_t HashView(const ValueView& value) {
  if (value.type == ValueView::Type::kText) {
    // Seeded by the type so text never collides with the same bytes as a number.
    return XXH3_64bits_withSeed(value.text.data(), value.text.size(), 't');
  }
  char bytes[1 + sizeof(int64_t)];
  size_t size = 1;
  switch (value.type) {
    case ValueView::Type::kInteger:
      bytes[0] = 'i';
      std::memcpy(bytes + 1, &value.integer, sizeof(int64_t));
      size += sizeof(int64_t);
      break;
    case ValueView::Type::kReal:
      bytes[0] = 'r';
      std::memcpy(bytes + 1, &value.real, sizeof(double));
      size += sizeof(double);
      break;
    default:
      bytes[0] = 'n';
  }
  return XXH3_64bits(bytes, size);
}

uint64_t HashValue(const Value& value) { return HashView(ViewOf(value)); }

uint64_t HashBytes(std::string_view bytes) { return XXH3_64bits(bytes.data(), bytes.size()); }

uint64_t HashFields(const std::vector<uint64_t>& field_hashes) {
  return XXH3_64bits(field_hashes.data(), field_hashes.size() * sizeof(uint64_t));
}

uint64_t HashField(const FieldLayout& field, const IdentityMap& identities, Side side,
                   const ValueView& value) {
  if (field.referenced_table.empty()) return HashView(value);
  Value storage;
  return HashView(CanonicalReference(field.referenced_table, identities, side, value, &storage));
}

void AppendChildRow(const ChildLayout& child, const IdentityMap& identities, Side side,
                    const ValueView* row, std::string* out) {
  Value storage;
  for (size_t c = 0; c < child.columns.size(); ++c) {
    if (child.references[c].empty()) {
      AppendValueBytes(row[c], out);
    } else {
      AppendValueBytes(CanonicalReference(child.references[c], identities, side, row[c], &storage),
                       out);
    }
  }
  out->push_back('|');
}

void AppendKeyPart(std::string_view part, std::string* out) {
  const uint64_t size = part.size();
  out->append(reinterpret_cast<const char*>(&size), sizeof(size));
  out->append(part);
}

std::string JsonQuote(std::string_view text) {
  std::string out = "\"";
  for (const char c : text) {
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      default:
        if (static_cast<unsigned char>(c) < 0x20 || c == 0x7F) {
          out += fmt::format("\\u{:04x}", static_cast<int>(c));
        } else {
          out.push_back(c);
        }
    }
  }
  out.push_back('"');
  return out;
}

RecordLayout RecordLayout::Make(const TableSpec& table,
                                const std::vector<std::string>& root_columns,
                                const std::vector<std::vector<std::string>>& child_columns) {
  RecordLayout layout;
  layout.table = &table;
  for (const std::string& column : root_columns) {
    if (column == table.id || table.IsLocal(column)) continue;
    layout.columns.push_back(column);
    FieldLayout field;
    field.name = column;
    if (const std::string* target = table.ReferenceOf(column)) field.referenced_table = *target;
    layout.fields.push_back(field);
  }
  for (size_t i = 0; i < table.children.size(); ++i) {
    const ChildSpec& spec = table.children[i];
    ChildLayout child;
    child.spec = &spec;
    if (i < child_columns.size()) {
      for (const std::string& column : child_columns[i]) {
        if (column == spec.id || column == spec.parent) continue;
        child.columns.push_back(column);
        auto ref = spec.references.find(column);
        child.references.push_back(ref == spec.references.end() ? "" : ref->second);
      }
    }
    layout.children.push_back(child);
    FieldLayout field;
    field.name = spec.table;
    field.kind = FieldLayout::Kind::kChildren;
    field.child = static_cast<int>(i);
    layout.fields.push_back(field);
  }
  if (table.asset) {
    FieldLayout field;
    field.name = kFileBytesField;
    field.kind = FieldLayout::Kind::kFileBytes;
    layout.fields.push_back(field);
  }
  for (const std::string& key : table.key) layout.key_columns.push_back(layout.ColumnIndex(key));
  return layout;
}

int RecordLayout::ColumnIndex(std::string_view column) const {
  auto it = std::find(columns.begin(), columns.end(), column);
  return it == columns.end() ? -1 : static_cast<int>(it - columns.begin());
}

void BuildRecord(const RecordLayout& layout, const IdentityMap& identities, Side side, Value id,
                 std::vector<Value> root, const std::vector<std::vector<ChildRow>>& children,
                 const std::string& file_digest, const std::vector<std::string>& key_parts,
                 Record* record) {
  record->id = std::move(id);
  record->full = true;
  record->key.clear();
  std::string key_bytes;
  for (size_t i = 0; i < key_parts.size(); ++i) {
    if (i > 0) record->key.push_back('/');
    record->key += key_parts[i];
    AppendKeyPart(key_parts[i], &key_bytes);
  }
  record->key_hash = HashBytes(key_bytes);
  record->values = std::move(root);
  record->values.resize(layout.fields.size());
  record->field_hashes.assign(layout.fields.size(), 0);
  record->references.clear();
  std::string canonical;
  std::vector<ValueView> views;
  for (size_t f = 0; f < layout.fields.size(); ++f) {
    const FieldLayout& field = layout.fields[f];
    switch (field.kind) {
      case FieldLayout::Kind::kColumn: {
        const Value& raw = record->values[f];
        if (!field.referenced_table.empty() && !IsNull(raw)) {
          record->references.emplace_back(&field.referenced_table, raw);
        }
        record->field_hashes[f] = HashField(field, identities, side, ViewOf(raw));
        break;
      }
      case FieldLayout::Kind::kChildren: {
        const ChildLayout& child = layout.children[field.child];
        const std::vector<ChildRow>& rows = children[field.child];
        canonical.clear();
        std::string json = "[";
        for (size_t r = 0; r < rows.size(); ++r) {
          json += r == 0 ? "{" : ",{";
          views.clear();
          static const Value kNull;
          for (size_t c = 0; c < child.columns.size(); ++c) {
            const Value& raw = c < rows[r].size() ? rows[r][c] : kNull;
            views.push_back(ViewOf(raw));
            if (c > 0) json += ",";
            json += JsonQuote(child.columns[c]) + ":" + JsonValue(raw);
            if (!child.references[c].empty() && !IsNull(raw)) {
              record->references.emplace_back(&child.references[c], raw);
            }
          }
          AppendChildRow(child, identities, side, views.data(), &canonical);
          json += "}";
        }
        json += "]";
        record->values[f] = std::move(json);
        record->field_hashes[f] = HashBytes(canonical);
        break;
      }
      case FieldLayout::Kind::kFileBytes:
        record->values[f] = file_digest;
        record->field_hashes[f] = HashValue(record->values[f]);
        break;
    }
  }
  record->hash = HashFields(record->field_hashes);
}

namespace {

void AppendUtf8(uint32_t code, std::string* out) {
  if (code < 0x80) {
    out->push_back(static_cast<char>(code));
  } else if (code < 0x800) {
    out->push_back(static_cast<char>(0xC0 | (code >> 6)));
    out->push_back(static_cast<char>(0x80 | (code & 0x3F)));
  } else if (code < 0x10000) {
    out->push_back(static_cast<char>(0xE0 | (code >> 12)));
    out->push_back(static_cast<char>(0x80 | ((code >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (code & 0x3F)));
  } else {
    out->push_back(static_cast<char>(0xF0 | (code >> 18)));
    out->push_back(static_cast<char>(0x80 | ((code >> 12) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | ((code >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (code & 0x3F)));
  }
}

// Reads four hex digits at `pos`; false when they are not there.
bool ReadHex4(std::string_view text, size_t pos, uint32_t* code) {
  if (pos + 4 > text.size()) return false;
  *code = 0;
  for (size_t i = pos; i < pos + 4; ++i) {
    const char c = text[i];
    *code <<= 4;
    if (c >= '0' && c <= '9') {
      *code |= static_cast<uint32_t>(c - '0');
    } else if (c >= 'a' && c <= 'f') {
      *code |= static_cast<uint32_t>(c - 'a' + 10);
    } else if (c >= 'A' && c <= 'F') {
      *code |= static_cast<uint32_t>(c - 'A' + 10);
    } else {
      return false;
    }
  }
  return true;
}

// Decodes the JSON string literal whose opening quote is at `pos`; leaves `pos` after its
// closing quote. False for an unterminated literal.
bool DecodeJsonString(std::string_view json, size_t* pos, std::string* out) {
  out->clear();
  for (size_t i = *pos + 1; i < json.size(); ++i) {
    const char c = json[i];
    if (c == '"') {
      *pos = i + 1;
      return true;
    }
    if (c != '\\' || i + 1 >= json.size()) {
      out->push_back(c);
      continue;
    }
    const char e = json[++i];
    switch (e) {
      case 'n':
        out->push_back('\n');
        break;
      case 't':
        out->push_back('\t');
        break;
      case 'r':
        out->push_back('\r');
        break;
      case 'b':
        out->push_back('\b');
        break;
      case 'f':
        out->push_back('\f');
        break;
      case 'u': {
        uint32_t code = 0;
        if (!ReadHex4(json, i + 1, &code)) {
          out->push_back('u');
          break;
        }
        i += 4;
        uint32_t low = 0;
        if (code >= 0xD800 && code < 0xDC00 && i + 2 < json.size() && json[i + 1] == '\\' &&
            json[i + 2] == 'u' && ReadHex4(json, i + 3, &low) && low >= 0xDC00 && low < 0xE000) {
          code = 0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00);
          i += 6;
        }
        AppendUtf8(code, out);
        break;
      }
      default:
        out->push_back(e);  // \" \\ \/
    }
  }
  return false;
}

void CollectGalleryReferences(std::string_view json, int depth, std::vector<std::string>* out) {
  static constexpr std::string_view kPrefix = "gallery:";
  std::string text;
  size_t pos = 0;
  while ((pos = json.find('"', pos)) != std::string_view::npos) {
    if (!DecodeJsonString(json, &pos, &text)) return;
    if (text.compare(0, kPrefix.size(), kPrefix) == 0) {
      std::string name = text.substr(kPrefix.size());
      if (name.find('/') != std::string::npos) out->push_back(std::move(name));
    } else if (depth < 4 && text.find("\"gallery:") != std::string::npos) {
      // A string holding JSON of its own.
      CollectGalleryReferences(text, depth + 1, out);
    }
  }
}

}  // namespace

std::vector<std::string> GalleryReferences(std::string_view json) {
  std::vector<std::string> out;
  CollectGalleryReferences(json, 0, &out);
  return out;
}

}  // namespace envsync
