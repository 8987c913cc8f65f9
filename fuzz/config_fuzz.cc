// Fuzzes the TOML config (envsync::ParseConfig) with arbitrary text.
//
// Holds ParseConfig to its contract (include/envsync/core/config.h): it never crashes, hangs or
// leaks; an error is InvalidArgument reading `<source_name>:<line>: <what>`; a config that parses
// has exactly the environments PROD and TEST, a `home` naming one of them, and each environment's
// database is a postgresql:// URI or an absolute path (relative ones resolved against the
// config's folder) and its assets folder is set.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "envsync/core/config.h"
#include "fuzz/fuzz_check.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  const std::string source = "fuzz.toml";
  auto config = envsync::ParseConfig(text, source, "/etc/envsync");
  if (!config.ok()) {
    ENVSYNC_FUZZ_CHECK(config.status().IsInvalidArgument());
    ENVSYNC_FUZZ_CHECK(config.status().message().rfind(source + ":", 0) == 0);
    return 0;
  }
  ENVSYNC_FUZZ_CHECK(config->environments.size() == 2);
  ENVSYNC_FUZZ_CHECK(config->Find("PROD") != nullptr && config->Find("TEST") != nullptr);
  ENVSYNC_FUZZ_CHECK(config->Find(config->home) != nullptr);
  ENVSYNC_FUZZ_CHECK(!config->state.empty());
  for (const auto& [name, env] : config->environments) {
    ENVSYNC_FUZZ_CHECK(env.name == name);
    const std::string& db = env.database;
    ENVSYNC_FUZZ_CHECK(db.rfind("postgresql://", 0) == 0 || db.rfind("postgres://", 0) == 0 ||
                       (!db.empty() && db.front() == '/'));
    ENVSYNC_FUZZ_CHECK(!env.assets.empty());
  }
  return 0;
}
