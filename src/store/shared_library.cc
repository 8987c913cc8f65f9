#include "store/shared_library.h"

#include <dlfcn.h>
#include <fmt/format.h>

namespace envsync::store {

Result<SharedLibrary> SharedLibrary::Open(const std::string& soname, const std::string& purpose) {
  void* handle = dlopen(soname.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (handle == nullptr) {
    const char* why = dlerror();
    return Status::Unavailable(fmt::format("{} (needed for {}) cannot be loaded: {}", soname,
                                           purpose, why != nullptr ? why : "unknown reason"));
  }
  return SharedLibrary(handle, soname, purpose);
}

void* SharedLibrary::Symbol(const char* name) const { return dlsym(handle_, name); }

Status SharedLibrary::Missing(const char* name) const {
  return Status::Unavailable(
      fmt::format("{} (needed for {}) has no function {}: another version "
                  "of the library than envsync was built with",
                  soname_, purpose_, name));
}

}  // namespace envsync::store
