#ifndef ENVSYNC_CORE_STATUS_H_
#define ENVSYNC_CORE_STATUS_H_

#include <optional>
#include <string>
#include <utility>
#include <variant>

namespace envsync {

// Status says whether an operation succeeded and, if not, what kind of failure it was
// and a message that names the thing at fault. An OK status carries no message and costs
// nothing to copy. Expected failures travel as Status values; exceptions from third-party
// libraries are caught by the adapter that met them and turned into a Status.
//
// Thread safety: a Status is a value; distinct objects may be used from distinct threads.
class Status {
 public:
  enum class Code {
    kOk = 0,
    kInvalidArgument,  // bad usage or input: a flag, a value, a config or manifest line
    kNotFound,         // a named thing (comparison, record) does not exist
    kUnavailable,      // an environment or store cannot be read: missing, locked, corrupt
    kIoError,          // a read or write on the file system failed
    kInternal,         // a broken invariant: a bug in envsync
  };

  Status() = default;

  static Status Ok() { return Status(); }
  static Status InvalidArgument(std::string message) {
    return Status(Code::kInvalidArgument, std::move(message));
  }
  static Status NotFound(std::string message) {
    return Status(Code::kNotFound, std::move(message));
  }
  static Status Unavailable(std::string message) {
    return Status(Code::kUnavailable, std::move(message));
  }
  static Status IoError(std::string message) { return Status(Code::kIoError, std::move(message)); }
  static Status Internal(std::string message) {
    return Status(Code::kInternal, std::move(message));
  }

  bool ok() const { return code_ == Code::kOk; }
  Code code() const { return code_; }
  const std::string& message() const { return message_; }
  bool IsInvalidArgument() const { return code_ == Code::kInvalidArgument; }
  bool IsNotFound() const { return code_ == Code::kNotFound; }
  bool IsUnavailable() const { return code_ == Code::kUnavailable; }

  // Returns a status of the same code whose message is `context: message`.
  Status WithContext(const std::string& context) const {
    if (ok()) return *this;
    return Status(code_, context + ": " + message_);
  }

 private:
  Status(Code code, std::string message) : code_(code), message_(std::move(message)) {}

  Code code_ = Code::kOk;
  std::string message_;
};

// Result<T> holds either a value or a failed Status (g++ 12 has no std::expected).
template <typename T>
class Result {
 public:
  Result(T value) : value_(std::move(value)) {}          // NOLINT: implicit by design
  Result(Status status) : status_(std::move(status)) {}  // NOLINT: implicit by design

  bool ok() const { return status_.ok(); }
  const Status& status() const { return status_; }
  T& value() & { return *value_; }
  const T& value() const& { return *value_; }
  T&& value() && { return std::move(*value_); }
  T* operator->() { return &*value_; }
  const T* operator->() const { return &*value_; }
  T& operator*() { return *value_; }
  const T& operator*() const { return *value_; }

 private:
  std::optional<T> value_;
  Status status_;
};

}  // namespace envsync

// Returns early from the enclosing function when `expr` yields a failed Status.
#define ENVSYNC_RETURN_IF_ERROR(expr)                  \
  do {                                                 \
    ::envsync::Status envsync_status_ = (expr);        \
    if (!envsync_status_.ok()) return envsync_status_; \
  } while (0)

#endif  // ENVSYNC_CORE_STATUS_H_
