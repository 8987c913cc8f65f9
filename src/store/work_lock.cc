// The work lock (see state_store.h): flock(2) beside a SQLite state store, session advisory
// locks in a PostgreSQL one.
#include <fcntl.h>
#include <fmt/format.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "envsync/store/state_store.h"
#include "store/postgres/pg_connection.h"
#include "store/postgres/postgres_environment.h"

namespace envsync::store {
namespace {

enum Kind { kStore = 0, kJob = 1, kTarget = 2 };

// Advisory lock keys: (class, object) pairs of int4. The store lock is taken exclusively to
// settle and shared by each running job; each target environment has its own key.
constexpr int kStoreLockClass = 1701737075;  // "envs"
constexpr int kTargetLockClass = 1701737076;

// A target's name as part of a lock file name: letters, digits, '-' and '_' kept, the rest
// hex-escaped, so no name reaches outside the state store's folder.
std::string FileSafe(const std::string& name) {
  std::string out;
  for (unsigned char c : name) {
    if (std::isalnum(c) || c == '-' || c == '_') {
      out += static_cast<char>(c);
    } else {
      out += fmt::format("%{:02X}", c);
    }
  }
  return out;
}

}  // namespace

struct WorkLock::Holder {
  virtual ~Holder() = default;
};

namespace {

struct FileHolder : WorkLock::Holder {
  explicit FileHolder(int descriptor) : fd(descriptor) {}
  ~FileHolder() override { close(fd); }  // closing the descriptor releases the lock
  int fd;
};

// Session advisory locks end with the session: closing the connection (or the process dying,
// which closes its socket) releases them.
struct PgHolder : WorkLock::Holder {
  PgConnection conn;
};

}  // namespace

WorkLock::WorkLock() = default;
WorkLock::~WorkLock() = default;

void WorkLock::Release() { holder_.reset(); }

Result<bool> WorkLock::TryAcquire(const std::string& state_location) {
  return Take(state_location, kStore, "");
}

Result<bool> WorkLock::TryAcquireJob(const std::string& state_location) {
  return Take(state_location, kJob, "");
}

Result<bool> WorkLock::TryAcquireTarget(const std::string& state_location,
                                        const std::string& target) {
  return Take(state_location, kTarget, target);
}

Result<bool> WorkLock::Take(const std::string& state_location, int kind,
                            const std::string& target) {
  if (holder_ != nullptr) return true;
  if (IsPostgresUri(state_location)) {
    auto holder = std::make_unique<PgHolder>();
    ENVSYNC_RETURN_IF_ERROR(holder->conn.Open(
        state_location, fmt::format("work lock (state store {})", RedactUri(state_location))));
    Params params;
    std::string sql;
    switch (kind) {
      case kStore:
        sql = fmt::format("SELECT pg_try_advisory_lock({}, 0)", kStoreLockClass);
        break;
      case kJob:
        sql = fmt::format("SELECT pg_try_advisory_lock_shared({}, 0)", kStoreLockClass);
        break;
      default:
        sql = fmt::format("SELECT pg_try_advisory_lock({}, hashtext($1))", kTargetLockClass);
        params.Add(target);
    }
    auto taken = holder->conn.Query(sql, params);
    if (!taken.ok()) return taken.status();
    if (taken->Text(0, 0) != "t") return false;
    holder_ = std::move(holder);
    return true;
  }
  const std::string path = kind == kTarget
                               ? fmt::format("{}.{}.lock", state_location, FileSafe(target))
                               : state_location + ".lock";
  const int fd = open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) {
    return Status::IoError(fmt::format("cannot open lock file '{}': {}", path, strerror(errno)));
  }
  if (flock(fd, (kind == kJob ? LOCK_SH : LOCK_EX) | LOCK_NB) != 0) {
    close(fd);
    return false;
  }
  holder_ = std::make_unique<FileHolder>(fd);
  return true;
}

}  // namespace envsync::store
