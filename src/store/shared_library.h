// A shared library envsync loads when it first needs it (dlopen), not when it starts. The
// PostgreSQL client (libpq) and libcurl bring about thirty libraries with them (Kerberos, LDAP,
// GnuTLS, ...), and mapping them cost every command ≈ 3.7 ms of its start (docs/PERFORMANCE.md);
// most commands talk to neither a PostgreSQL server nor a mail server.
#ifndef ENVSYNC_SRC_STORE_SHARED_LIBRARY_H_
#define ENVSYNC_SRC_STORE_SHARED_LIBRARY_H_

#include <string>

#include "envsync/core/status.h"

namespace envsync::store {

class SharedLibrary {
 public:
  // Loads `soname` (kept loaded until the process ends). The error names the library, what
  // envsync needs it for (`purpose`) and the loader's reason.
  static Result<SharedLibrary> Open(const std::string& soname, const std::string& purpose);

  // Sets `*function` to the library's function `name`, or says which one it lacks.
  template <typename F>
  Status Take(const char* name, F** function) const {
    void* address = Symbol(name);
    if (address == nullptr) return Missing(name);
    *function = reinterpret_cast<F*>(address);
    return Status::Ok();
  }

 private:
  SharedLibrary(void* handle, std::string soname, std::string purpose)
      : handle_(handle), soname_(std::move(soname)), purpose_(std::move(purpose)) {}
  void* Symbol(const char* name) const;
  Status Missing(const char* name) const;

  void* handle_;
  std::string soname_;
  std::string purpose_;
};

}  // namespace envsync::store

#endif  // ENVSYNC_SRC_STORE_SHARED_LIBRARY_H_
