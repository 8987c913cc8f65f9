// envsync-serve.so: the HTTP server as a module the `envsync` command loads for `serve` only
// (src/service/CMakeLists.txt says why).
#include "envsync/service/server.h"

extern "C" envsync::service::ServeFunction envsync_serve_function() {
  return &envsync::service::Serve;
}
