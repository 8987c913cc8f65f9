#include "sync/ids.h"

#include <fmt/chrono.h>
#include <fmt/format.h>

#include <chrono>
#include <random>

#include "envsync/store/fault_injection.h"

namespace envsync::sync {

std::string UtcIn(std::chrono::system_clock::duration ahead) {
  const auto at = std::chrono::floor<std::chrono::seconds>(store::WallClockNow() + ahead);
  return fmt::format("{:%Y-%m-%dT%H:%M:%SZ}",
                     fmt::gmtime(std::chrono::system_clock::to_time_t(at)));
}

std::string RandomId(std::string_view prefix) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::random_device device;
  std::mt19937_64 rng((static_cast<uint64_t>(device()) << 32) ^ device());
  std::string id(prefix);
  for (int i = 0; i < 12; ++i) id.push_back(kHex[rng() % 16]);
  return id;
}

}  // namespace envsync::sync
