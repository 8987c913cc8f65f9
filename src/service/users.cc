#include "envsync/service/users.h"

#include <fmt/format.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include <stdexcept>
#include <vector>

#include "envsync/service/mail.h"
#include "envsync/service/time_zone.h"

namespace envsync::service {
namespace {

std::string Hex(const unsigned char* data, size_t size) {
  static const char kDigits[] = "0123456789abcdef";
  std::string out;
  out.reserve(size * 2);
  for (size_t i = 0; i < size; ++i) {
    out.push_back(kDigits[data[i] >> 4]);
    out.push_back(kDigits[data[i] & 15]);
  }
  return out;
}

bool Unhex(std::string_view hex, std::vector<unsigned char>* out) {
  if (hex.size() % 2 != 0) return false;
  auto nibble = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
  };
  out->clear();
  for (size_t i = 0; i < hex.size(); i += 2) {
    const int hi = nibble(hex[i]);
    const int lo = nibble(hex[i + 1]);
    if (hi < 0 || lo < 0) return false;
    out->push_back(static_cast<unsigned char>(hi * 16 + lo));
  }
  return true;
}

std::vector<unsigned char> Pbkdf2(std::string_view password, const std::vector<unsigned char>& salt,
                                  int iterations) {
  std::vector<unsigned char> key(32);
  if (PKCS5_PBKDF2_HMAC(password.data(), static_cast<int>(password.size()), salt.data(),
                        static_cast<int>(salt.size()), iterations, EVP_sha256(),
                        static_cast<int>(key.size()), key.data()) != 1) {
    throw std::runtime_error("PKCS5_PBKDF2_HMAC failed");
  }
  return key;
}

}  // namespace

std::optional<Role> ParseRole(std::string_view name) {
  if (name == "viewer") return Role::kViewer;
  if (name == "operator") return Role::kOperator;
  if (name == "admin") return Role::kAdmin;
  return std::nullopt;
}

std::string_view RoleName(Role role) {
  switch (role) {
    case Role::kViewer:
      return "viewer";
    case Role::kOperator:
      return "operator";
    case Role::kAdmin:
      return "admin";
  }
  return "";
}

std::string RandomToken(int bytes) {
  std::vector<unsigned char> buffer(static_cast<size_t>(bytes));
  if (RAND_bytes(buffer.data(), bytes) != 1) throw std::runtime_error("RAND_bytes failed");
  return Hex(buffer.data(), buffer.size());
}

std::string Sha256Hex(std::string_view text) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int size = 0;
  if (EVP_Digest(text.data(), text.size(), digest, &size, EVP_sha256(), nullptr) != 1) {
    throw std::runtime_error("EVP_Digest failed");
  }
  return Hex(digest, size);
}

std::string HashPassword(std::string_view password, int iterations) {
  std::vector<unsigned char> salt(16);
  if (RAND_bytes(salt.data(), static_cast<int>(salt.size())) != 1) {
    throw std::runtime_error("RAND_bytes failed");
  }
  const std::vector<unsigned char> key = Pbkdf2(password, salt, iterations);
  return fmt::format("pbkdf2-sha256${}${}${}", iterations, Hex(salt.data(), salt.size()),
                     Hex(key.data(), key.size()));
}

bool VerifyPassword(std::string_view password, const std::string& stored) {
  // pbkdf2-sha256$<iterations>$<salt>$<hash>
  const std::string_view prefix = "pbkdf2-sha256$";
  if (stored.compare(0, prefix.size(), prefix) != 0) return false;
  const size_t a = prefix.size();
  const size_t b = stored.find('$', a);
  if (b == std::string::npos) return false;
  const size_t c = stored.find('$', b + 1);
  if (c == std::string::npos) return false;
  int iterations = 0;
  for (size_t i = a; i < b; ++i) {
    if (stored[i] < '0' || stored[i] > '9' || iterations > 100000000) return false;
    iterations = iterations * 10 + (stored[i] - '0');
  }
  std::vector<unsigned char> salt;
  std::vector<unsigned char> expected;
  if (iterations < 1 || !Unhex(std::string_view(stored).substr(b + 1, c - b - 1), &salt) ||
      !Unhex(std::string_view(stored).substr(c + 1), &expected) || expected.size() != 32) {
    return false;
  }
  const std::vector<unsigned char> key = Pbkdf2(password, salt, iterations);
  return CRYPTO_memcmp(key.data(), expected.data(), key.size()) == 0;
}

Status AddUser(store::StateStore& state, const std::string& email, const std::string& role,
               const std::string& password, const std::string& time_zone, const std::string& now) {
  if (!IsMailAddress(email)) {
    return Status::InvalidArgument(
        fmt::format("'{}' is not an e-mail address: users are named by theirs", email));
  }
  if (!ParseRole(role)) {
    return Status::InvalidArgument(
        fmt::format("--role '{}' is not a role: use viewer, operator or admin", role));
  }
  if (password.size() < 8) {
    return Status::InvalidArgument(
        fmt::format("the password for {} is too short: use at least 8 characters", email));
  }
  if (!IsTimeZone(time_zone)) {
    return Status::InvalidArgument(fmt::format(
        "--time-zone '{}' is not a time zone of the tz database (e.g. Europe/Berlin, UTC)",
        time_zone));
  }
  store::User user;
  user.email = email;
  user.role = role;
  user.password_hash = HashPassword(password);
  user.time_zone = time_zone;
  user.created_at = now;
  auto existing = state.FindUser(email);
  if (!existing.ok()) return existing.status();
  if (existing->has_value()) user.created_at = (*existing)->created_at;
  ENVSYNC_RETURN_IF_ERROR(state.SaveUser(user));
  // A replaced user's password or role changed: their sessions end.
  return existing->has_value() ? state.DeleteSessionsOf(email) : Status::Ok();
}

int64_t LoginRateLimiter::RetryAfter(const std::string& key,
                                     std::chrono::steady_clock::time_point now) {
  std::lock_guard<std::mutex> lock(mutex_);
  auto it = windows_.find(key);
  if (it == windows_.end()) return 0;
  const auto end = it->second.start + window_;
  if (now >= end) {
    windows_.erase(it);
    return 0;
  }
  if (it->second.failures < limit_) return 0;
  return std::chrono::ceil<std::chrono::seconds>(end - now).count();
}

void LoginRateLimiter::RecordFailure(const std::string& key,
                                     std::chrono::steady_clock::time_point now) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (windows_.size() > 10000) {  // many addresses tried: forget the windows that have ended
    std::erase_if(windows_, [&](const auto& entry) { return now >= entry.second.start + window_; });
  }
  Window& w = windows_[key];
  if (w.failures == 0 || now >= w.start + window_) {
    w.start = now;
    w.failures = 0;
  }
  ++w.failures;
}

void LoginRateLimiter::RecordSuccess(const std::string& key) {
  std::lock_guard<std::mutex> lock(mutex_);
  windows_.erase(key);
}

}  // namespace envsync::service
