#ifndef ENVSYNC_SERVICE_SERVER_H_
#define ENVSYNC_SERVICE_SERVER_H_

#include <atomic>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "envsync/core/status.h"
#include "envsync/service/users.h"
#include "envsync/service/workspace.h"

namespace envsync::service {

struct ServeOptions {
  std::string listen = "127.0.0.1:8080";  // host:port; port 0 picks a free one
  int poll_seconds = 5;                   // how often the schedule is looked at
  std::string web_root;                   // the page's files; "" = no page
  // Called once with the bound port, before the first request is accepted (tests and the fuzz
  // harness use it with port 0).
  std::function<void(int port)> on_listening;
};

// `envsync serve`: the REST API (docs/API.md) and the job runner in one process, until `stop`
// turns true (the CLI sets it on SIGTERM and SIGINT). Prints "listening on http://HOST:PORT"
// once it accepts requests. On stop no new job starts; a running one finishes first.
// Unavailable naming the address when it cannot listen.
Status Serve(const Workspace& workspace, const ServeOptions& options,
             const std::atomic<bool>& stop);

// One route of the REST API (docs/API.md) as `envsync serve` registers it.
struct RouteInfo {
  std::string method;        // GET (which also answers HEAD), POST, PUT or PATCH
  std::string pattern;       // the path, an ECMAScript regular expression matched whole
  std::optional<Role> role;  // the least role a caller's session needs; nullopt = public
  bool needs_csrf = false;   // it changes state: the session's X-CSRF-Token header is required
};

// Every route `envsync serve` answers besides the page's static files, in the order they are
// registered. The server registers its handlers from this table and nowhere else, each non-public
// one behind the session, role and CSRF checks the entry names, so a test that walks the table
// covers the whole API. Thread-safe.
std::vector<RouteInfo> ApiRoutes();

// `envsync serve --once`: settles interrupted syncs and jobs, runs the jobs that are due, and
// returns. It needs no HTTP server: it is part of the command itself (runner.cc), not of the
// module below.
Status RunJobsOnce(const Workspace& workspace);

// `Serve` as the module envsync-serve.so hands it to the `envsync` command, which loads the
// module for `serve` only: the module's extern "C" function `envsync_serve_function` returns it.
// Both are built together, from this header.
using ServeFunction = Status (*)(const Workspace&, const ServeOptions&, const std::atomic<bool>&);

}  // namespace envsync::service

#endif  // ENVSYNC_SERVICE_SERVER_H_
