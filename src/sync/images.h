#ifndef ENVSYNC_SYNC_IMAGES_H_
#define ENVSYNC_SYNC_IMAGES_H_

#include <functional>
#include <nlohmann/json_fwd.hpp>
#include <optional>
#include <set>
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
// a record's pre-image as this text (an update's only as the columns it writes, see
// ColumnImageText) and its after-image as a digest of it; recovery reads the record again and
// compares texts or digests.

// The image's text, or "" when the record is not there. Written directly (a sync writes two
// per record), and byte for byte what nlohmann writes for ReadImage (tests hold the two to the
// same text).
Result<std::string> ReadImageText(store::Environment& env, const TableSpec& table, const Value& id);
// A record's image as ReadImageTexts visits it: its text ("" when the record is not there)
// and, where the ordered scan read it, the root row's columns and values (else both null).
struct ImageText {
  std::string_view text;
  const std::vector<std::string>* columns = nullptr;
  const std::vector<Value>* row = nullptr;
};
// The image texts of many records of one table, each as ReadImageText writes it: `visit(i,
// image)` once for each ids[i], valid only during the call. The root rows of integer IDs are
// read by one ordered scan (visited in ID order) instead of a point read each (a b-tree descent,
// and a page copied out of the kernel's cache); child rows per record; other IDs one by one,
// first.
Status ReadImageTexts(store::Environment& env, const TableSpec& table,
                      const std::vector<Value>& ids,
                      const std::function<void(size_t, const ImageText&)>& visit);

// What stands for an image's text in the journal: "xxh3:" and the hex XXH3 of the text.
std::string ImageDigest(std::string_view text);
// The pre-image of an update that writes only the root row's columns `kept` (a table without
// child rows): {"row": {column: value}, "whole": ImageDigest of the whole image}. Undo writes
// back those columns (it runs only when the record is as the sync left it, so the others are
// as before the sync); recovery tells the record's whole image by the digest. A sync's journal
// keeps ≈ 100 bytes instead of the ≈ 1.2 KB of a whole page. Nothing when `image` has no row
// read by the scan or `kept` names a column the row does not have: the whole text is kept then.
std::optional<std::string> ColumnImageText(const ImageText& image,
                                           const std::set<std::string>& kept);
// The whole image's digest of a pre-image ColumnImageText wrote; nothing for a whole image.
std::optional<std::string_view> WholeDigestOf(std::string_view pre_image);
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
