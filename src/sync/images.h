#ifndef ENVSYNC_SYNC_IMAGES_H_
#define ENVSYNC_SYNC_IMAGES_H_

#include <functional>
#include <nlohmann/json_fwd.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "envsync/core/manifest.h"
#include "envsync/core/status.h"
#include "envsync/core/value.h"
#include "envsync/store/environment.h"
#include "sync/record_stream.h"

namespace envsync::sync {

// A record's image as a sync journals it: every column of its root row and of its child rows
// (by child ID), as {"children": {table: [row, …]}, "row": {column: value}}, keys in name order.
// Text that is not UTF-8 is kept as {"hex": "…"}, so undo restores every byte. The journal keeps
// a record's pre-image as this text and its after-image as a digest of it; recovery reads the
// record again and compares texts.

// The image's text, or "" when the record is not there. Written directly (a sync writes two
// per record), and byte for byte what nlohmann writes for ReadImage (tests hold the two to the
// same text).
Result<std::string> ReadImageText(store::Environment& env, const TableSpec& table, const Value& id);
// The image texts of many records of one table, each as ReadImageText writes it: `visit(i,
// text)` once for each ids[i], the text valid only during the call ("" when the record is not
// there). The root rows of integer IDs are read by one ordered scan (visited in ID order) instead
// of a point read each (a b-tree descent, and a page copied out of the kernel's cache); child
// rows per record; other IDs one by one, first.
Status ReadImageTexts(store::Environment& env, const TableSpec& table,
                      const std::vector<Value>& ids,
                      const std::function<void(size_t, std::string_view)>& visit);
// Each record of ids[i] read in full (as ReadRecords reads it with `context`) and its image (as
// ReadImageTexts writes it): `visit(i, record, text)`, with record null and text "" when the
// record is not there, both valid only during the call. A table without child rows whose IDs
// are integers is read by one ordered scan of all its columns, which gives both (a sync's
// journal needs both of every record it wrote); otherwise the two are read apart.
Status ReadRecordsAndImages(
    store::Environment& env, const RecordLayout& layout, const ReadContext& context,
    const std::vector<Value>& ids,
    const std::function<void(size_t, const Record*, std::string_view)>& visit);
// The image as JSON (null when the record is not there): the reference for ReadImageText.
Result<nlohmann::json> ReadImage(store::Environment& env, const TableSpec& table, const Value& id);

// One value of an image, and back.
nlohmann::json ImageValueToJson(const Value& value);
Value ImageValueFromJson(const nlohmann::json& json);

}  // namespace envsync::sync

#endif  // ENVSYNC_SYNC_IMAGES_H_
