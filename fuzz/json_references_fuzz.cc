// Fuzzes the mobile-app JSON reference parser (envsync::GalleryReferences) and its writer's
// counterpart (envsync::JsonQuote), in include/envsync/core/record.h.
//
// Holds them to their contracts: on any bytes GalleryReferences never crashes, hangs or leaks
// and every name it returns is `<folder>/<file>` (holds a '/'). Used as a gallery name, the same
// bytes come back exactly: a JSON object whose value is JsonQuote("gallery:" + name) names
// exactly `name` (when it holds a '/', else nothing), and so does a string holding such an
// object as JSON of its own (a JSON text nested inside a JSON string).
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "envsync/core/record.h"
#include "fuzz/fuzz_check.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string bytes(reinterpret_cast<const char*>(data), size);
  for (const std::string& name : envsync::GalleryReferences(bytes)) {
    ENVSYNC_FUZZ_CHECK(name.find('/') != std::string::npos);
  }

  const bool is_name = bytes.find('/') != std::string::npos;
  const std::vector<std::string> expected =
      is_name ? std::vector<std::string>{bytes} : std::vector<std::string>{};
  const std::string direct = "{\"banner\":" + envsync::JsonQuote("gallery:" + bytes) + "}";
  ENVSYNC_FUZZ_CHECK(envsync::GalleryReferences(direct) == expected);
  const std::string nested = "{\"theme\":" + envsync::JsonQuote(direct) + "}";
  ENVSYNC_FUZZ_CHECK(envsync::GalleryReferences(nested) == expected);
  return 0;
}
