#ifndef ENVSYNC_SERVICE_USERS_H_
#define ENVSYNC_SERVICE_USERS_H_

#include <chrono>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>

#include "envsync/core/status.h"
#include "envsync/store/state_store.h"

namespace envsync::service {

// What a user may do. Each role includes the ones before it.
enum class Role { kViewer, kOperator, kAdmin };
std::optional<Role> ParseRole(std::string_view name);
std::string_view RoleName(Role role);

// PBKDF2-HMAC-SHA256 with a random 16-byte salt, kept as
// `pbkdf2-sha256$<iterations>$<salt hex>$<hash hex>`.
inline constexpr int kPasswordIterations = 600000;
std::string HashPassword(std::string_view password, int iterations = kPasswordIterations);
// Constant-time check of `password` against a stored hash; false for a malformed hash.
bool VerifyPassword(std::string_view password, const std::string& stored);

// `bytes` random bytes as hex (OpenSSL's RAND_bytes), for session and CSRF tokens.
std::string RandomToken(int bytes = 32);
// SHA-256 of `text` as hex: sessions are stored by the hash of their token.
std::string Sha256Hex(std::string_view text);

// Adds (or replaces, ending their sessions) a user. InvalidArgument naming the address, role, zone
// or password at fault: the address must look like one, the role must be viewer, operator or admin,
// the password must have at least 8 characters.
Status AddUser(store::StateStore& state, const std::string& email, const std::string& role,
               const std::string& password, const std::string& time_zone, const std::string& now);

// Counts failed logins per key (the address and the client's IP): after `limit` failures within
// `window`, further attempts are refused until the window has passed.
class LoginRateLimiter {
 public:
  LoginRateLimiter(int limit, std::chrono::seconds window) : limit_(limit), window_(window) {}
  // Seconds the caller must wait, or 0 when the attempt may go ahead.
  int64_t RetryAfter(const std::string& key, std::chrono::steady_clock::time_point now);
  void RecordFailure(const std::string& key, std::chrono::steady_clock::time_point now);
  void RecordSuccess(const std::string& key);

 private:
  struct Window {
    std::chrono::steady_clock::time_point start;
    int failures = 0;
  };
  std::mutex mutex_;
  std::map<std::string, Window> windows_;
  int limit_;
  std::chrono::seconds window_;
};

}  // namespace envsync::service

#endif  // ENVSYNC_SERVICE_USERS_H_
