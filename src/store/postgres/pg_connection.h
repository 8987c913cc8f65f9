// What the PostgreSQL environment adapter, the PostgreSQL state store and the work lock share on
// top of libpq: a connection whose errors name what was being done, owned results and bound
// parameters.
#ifndef ENVSYNC_SRC_STORE_POSTGRES_PG_CONNECTION_H_
#define ENVSYNC_SRC_STORE_POSTGRES_PG_CONNECTION_H_

#include <libpq-fe.h>

#include <string>
#include <utility>
#include <vector>

#include "envsync/core/status.h"
#include "envsync/core/value.h"

namespace envsync::store {

// `identifier` as a quoted SQL identifier.
std::string Quote(const std::string& identifier);

// A PGresult freed when it goes out of scope.
struct PgResult {
  PGresult* r = nullptr;
  explicit PgResult(PGresult* result) : r(result) {}
  PgResult(const PgResult&) = delete;
  PgResult& operator=(const PgResult&) = delete;
  PgResult(PgResult&& o) noexcept : r(o.r) { o.r = nullptr; }
  PgResult& operator=(PgResult&& o) noexcept;
  ~PgResult();

  int rows() const { return PQntuples(r); }
  bool IsNull(int row, int column) const { return PQgetisnull(r, row, column) != 0; }
  std::string Text(int row, int column) const;
  int64_t Integer(int row, int column) const;
};

// Parameters as libpq takes them: text, or null.
struct Params {
  std::vector<std::string> text;
  std::vector<bool> null;
  void Add(const Value& v);
  std::vector<const char*> Pointers() const;
};

class PgConnection {
 public:
  PgConnection() = default;
  PgConnection(const PgConnection&) = delete;
  PgConnection& operator=(const PgConnection&) = delete;
  ~PgConnection();

  // Connects; `what` names the connection in every error (never with a password).
  Status Open(const std::string& uri, const std::string& what);

  // Runs `sql` with `params`; the error names what was being done and the SQLSTATE.
  Result<PgResult> Query(const std::string& sql, const Params& params = {});
  Status Exec(const std::string& sql);
  Status Error(PGresult* r) const;

  // Sends `sql` (no parameters) without waiting for it: the server works on it while the
  // caller does something else, and Receive(ticket) takes its result. One statement is in
  // flight at a time: any other statement on the connection first receives it and keeps the
  // result for its ticket.
  Result<uint64_t> Send(const std::string& sql);
  Result<PgResult> Receive(uint64_t ticket);
  // Drops what was sent with `ticket` and not received (waiting for it if it is in flight).
  void Forget(uint64_t ticket);

  bool InTransaction() const { return PQtransactionStatus(conn_) == PQTRANS_INTRANS; }
  // Bytes of row values received so far.
  uint64_t bytes_read() const { return bytes_read_; }
  const std::string& what() const { return what_; }

 private:
  // The statement in flight's result, checked, kept for its ticket.
  void Settle();
  Result<PgResult> Checked(PgResult result);

  PGconn* conn_ = nullptr;
  std::string what_;
  uint64_t bytes_read_ = 0;
  uint64_t last_ticket_ = 0;
  uint64_t in_flight_ = 0;  // the ticket of the statement sent and not yet received, or 0
  std::vector<std::pair<uint64_t, Result<PgResult>>> settled_;
};

}  // namespace envsync::store

#endif  // ENVSYNC_SRC_STORE_POSTGRES_PG_CONNECTION_H_
