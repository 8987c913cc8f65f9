#ifndef ENVSYNC_CORE_RECORD_H_
#define ENVSYNC_CORE_RECORD_H_

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "envsync/core/identity_map.h"
#include "envsync/core/manifest.h"
#include "envsync/core/value.h"

namespace envsync {

// The columns of one child table that are compared: all but its ID and parent column.
struct ChildLayout {
  const ChildSpec* spec = nullptr;
  std::vector<std::string> columns;
  std::vector<std::string> references;  // per column: referenced root table, or ""
};

// What one compared field of a record is.
struct FieldLayout {
  enum class Kind { kColumn, kChildren, kFileBytes };
  std::string name;
  Kind kind = Kind::kColumn;
  std::string referenced_table;  // kColumn: the referenced root table, or ""
  int child = -1;                // kChildren: index into RecordLayout::children
};

// How the records of one root table are read and compared, from its manifest entry and the
// environment's actual columns. Every column but the ID and the local ones is compared; child
// rows form one field per child table; an asset table gets a `file_bytes` field holding the
// SHA-256 of the bytes found on disk.
struct RecordLayout {
  const TableSpec* table = nullptr;
  std::vector<std::string> columns;  // compared root columns, in schema order
  std::vector<FieldLayout> fields;   // columns first, then children, then file_bytes
  std::vector<ChildLayout> children;
  std::vector<int> key_columns;  // indexes into `columns` of the natural key; -1 = the ID

  // Builds the layout. `root_columns` and `child_columns` are the tables' columns in schema
  // order (child_columns[i] for table->children[i]).
  static RecordLayout Make(const TableSpec& table, const std::vector<std::string>& root_columns,
                           const std::vector<std::vector<std::string>>& child_columns);

  int ColumnIndex(std::string_view column) const;  // -1 when not compared
};

// The name of the asset field, and its values where the bytes cannot be read.
inline constexpr const char* kFileBytesField = "file_bytes";
inline constexpr const char* kFileMissing = "missing";

// One record as read from one environment: the root row with its child rows, in the form
// compared. A streamed record is light: ID, hashes and key hash only. A full record (read
// again for the records a comparison lists) also has what users see: `values` (raw IDs of this
// side; child rows as JSON text), the natural key and the references. Hashes are
// side-independent (references through the identity map) and equal in both forms.
struct Record {
  Value id;
  uint64_t key_hash = 0;
  std::vector<uint64_t> field_hashes;
  uint64_t hash = 0;
  bool full = false;
  // Within the comparison's gallery folder restriction (always, without one). A pair takes
  // part when either side does, so a file moved out of the chosen folders on one side is
  // still compared with its counterpart.
  bool in_scope = true;
  std::string key;  // natural key, parts joined by '/'
  std::vector<Value> values;
  // The records this one references, as (referenced root table, raw ID on this side); the
  // table names point into the RecordLayout, which must outlive the record.
  std::vector<std::pair<const std::string*, Value>> references;
};

// One child row: its compared values in ChildLayout::columns order.
using ChildRow = std::vector<Value>;

// Builds a full record from raw data. `root` holds the compared root columns in layout order;
// `children[i]` the rows of child table i in their order; `file_digest` the bytes' SHA-256
// (or kFileMissing; ignored without an asset). `key_parts` are the natural key parts with
// references already replaced by the referenced record's key. Pure function.
void BuildRecord(const RecordLayout& layout, const IdentityMap& identities, Side side, Value id,
                 std::vector<Value> root, const std::vector<std::vector<ChildRow>>& children,
                 const std::string& file_digest, const std::vector<std::string>& key_parts,
                 Record* record);

// The pieces BuildRecord is made of, for readers that hash rows in place (light records).
// Each gives the same result for a value and for its view.

// The hash of one compared column: a reference is hashed through the identity map.
uint64_t HashField(const FieldLayout& field, const IdentityMap& identities, Side side,
                   const ValueView& value);
// Appends one child row's canonical bytes (references through the identity map) to `out`;
// the child field's hash is HashBytes of all its rows' bytes.
void AppendChildRow(const ChildLayout& child, const IdentityMap& identities, Side side,
                    const ValueView* row, std::string* out);
// Appends one natural key part to `out`; the key hash is HashBytes of all parts.
void AppendKeyPart(std::string_view part, std::string* out);
uint64_t HashBytes(std::string_view bytes);
// XXH3 of one value with its type, so 1 and '1' differ.
uint64_t HashView(const ValueView& value);

// XXH3 of one value with its type, so 1 and '1' differ.
uint64_t HashValue(const Value& value);

// The record hash from its field hashes.
uint64_t HashFields(const std::vector<uint64_t>& field_hashes);

// The `gallery:<folder>/<file>` names inside a JSON text, in order of appearance, as
// `<folder>/<file>` (the gallery file's natural key).
std::vector<std::string> GalleryReferences(std::string_view json);

// JSON text of a string (quoted, escaped; control characters and DEL as \u00XX), which is
// also a valid TOML basic string. Used for child rows without a JSON library in core.
std::string JsonQuote(std::string_view text);

}  // namespace envsync

#endif  // ENVSYNC_CORE_RECORD_H_
