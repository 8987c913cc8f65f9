// Fuzzes the file names of gallery rows: store::AssetFolder::PathOf and Digest
// (src/store/asset_folder.cc). The input is the row's folder path, a newline, and its file
// name (which may hold newlines, NULs and anything else).
//
// Holds them to their contract (include/envsync/store/environment.h): a name that could leave
// the gallery (a `..` segment, an absolute path, a backslash or a NUL) gets no path and is never
// opened; plain names (segments other than empty, `.` and `..`) get
// `<root>/gallery/<folder path>/<file name>`; and any path PathOf gives is exactly that, lies
// strictly inside `<root>/gallery/`, and holds no `..` segment, no backslash and no NUL.
#include <cstddef>
#include <cstdint>
#include <string>

#include "envsync/store/environment.h"
#include "fuzz/fuzz_check.h"

namespace {

// Whether `path` has a segment (between slashes) equal to `segment`.
bool HasSegment(const std::string& path, const std::string& segment) {
  size_t start = 0;
  while (true) {
    const size_t slash = path.find('/', start);
    const size_t end = slash == std::string::npos ? path.size() : slash;
    if (path.compare(start, end - start, segment) == 0 && end - start == segment.size()) {
      return true;
    }
    if (slash == std::string::npos) return false;
    start = slash + 1;
  }
}

// Whether the names could leave the gallery, by the contract's own list: a `..` segment, an
// absolute path, a backslash or a NUL.
bool CouldLeave(const std::string& folder, const std::string& file) {
  for (const std::string* name : {&folder, &file}) {
    if (HasSegment(*name, "..") || (!name->empty() && name->front() == '/') ||
        name->find('\\') != std::string::npos || name->find('\0') != std::string::npos) {
      return true;
    }
  }
  return false;
}

// Whether the names are plainly fine: a folder path of non-empty segments other than `.` and
// `..`, and one such segment as the file name, without backslash or NUL.
bool Plain(const std::string& folder, const std::string& file) {
  return !folder.empty() && !file.empty() && !CouldLeave(folder, file) && !HasSegment(folder, "") &&
         !HasSegment(folder, ".") && file != "." && file.find('/') == std::string::npos;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string input(reinterpret_cast<const char*>(data), size);
  const size_t newline = input.find('\n');
  const std::string folder = input.substr(0, newline);
  const std::string file = newline == std::string::npos ? "" : input.substr(newline + 1);

  // A root that does not exist: Digest must not find (or create) anything.
  const std::string root = "/nonexistent/envsync-fuzz/assets";
  const envsync::store::AssetFolder assets(root);
  const std::string path = assets.PathOf(folder, file);
  if (CouldLeave(folder, file)) {
    ENVSYNC_FUZZ_CHECK(path.empty());
    const envsync::store::AssetDigest digest = assets.Digest(folder, file);
    ENVSYNC_FUZZ_CHECK(!digest.problem.empty() && digest.path.empty() && digest.sha256.empty());
    return 0;
  }
  const std::string prefix = root + "/gallery/";
  if (Plain(folder, file)) ENVSYNC_FUZZ_CHECK(path == prefix + folder + "/" + file);
  if (path.empty()) return 0;
  ENVSYNC_FUZZ_CHECK(path.size() > prefix.size() && path.compare(0, prefix.size(), prefix) == 0);
  ENVSYNC_FUZZ_CHECK(path == prefix + folder + "/" + file);
  ENVSYNC_FUZZ_CHECK(!HasSegment(path, ".."));
  ENVSYNC_FUZZ_CHECK(path.find('\0') == std::string::npos);
  ENVSYNC_FUZZ_CHECK(path.find('\\') == std::string::npos);
  return 0;
}
