#include "store/postgres/pg_connection.h"

#include <fmt/format.h>

#include <charconv>

#include "store/postgres/libpq.h"

namespace envsync::store {

std::string Quote(const std::string& identifier) {
  std::string out = "\"";
  for (char c : identifier) {
    if (c == '"') out += '"';
    out += c;
  }
  return out + "\"";
}

PgResult& PgResult::operator=(PgResult&& o) noexcept {
  if (this != &o) {
    if (r != nullptr) PQclear(r);
    r = o.r;
    o.r = nullptr;
  }
  return *this;
}

PgResult::~PgResult() {
  if (r != nullptr) PQclear(r);
}

std::string PgResult::Text(int row, int column) const {
  return std::string(PQgetvalue(r, row, column), static_cast<size_t>(PQgetlength(r, row, column)));
}

int64_t PgResult::Integer(int row, int column) const {
  const char* text = PQgetvalue(r, row, column);
  int64_t out = 0;
  std::from_chars(text, text + PQgetlength(r, row, column), out);
  return out;
}

void Params::Add(const Value& v) {
  null.push_back(envsync::IsNull(v));
  if (const auto* i = std::get_if<int64_t>(&v)) {
    text.push_back(std::to_string(*i));
  } else if (const auto* d = std::get_if<double>(&v)) {
    text.push_back(fmt::format("{}", *d));
  } else if (const auto* s = std::get_if<std::string>(&v)) {
    text.push_back(*s);
  } else {
    text.emplace_back();
  }
}

std::vector<const char*> Params::Pointers() const {
  std::vector<const char*> out;
  for (size_t i = 0; i < text.size(); ++i) out.push_back(null[i] ? nullptr : text[i].c_str());
  return out;
}

PgConnection::~PgConnection() {
  if (conn_ != nullptr) PQfinish(conn_);
}

Status PgConnection::Open(const std::string& uri, const std::string& what) {
  what_ = what;
  if (Status loaded = LoadLibPq(); !loaded.ok()) {
    return Status::Unavailable(fmt::format("{}: cannot connect: {}", what_, loaded.message()));
  }
  conn_ = PQconnectdb(uri.c_str());
  if (PQstatus(conn_) != CONNECTION_OK) {
    std::string why = PQerrorMessage(conn_);
    while (!why.empty() && (why.back() == '\n' || why.back() == ' ')) why.pop_back();
    return Status::Unavailable(fmt::format("{}: cannot connect: {}", what_, why));
  }
  return Exec("SET client_encoding = 'UTF8'; SET DateStyle = 'ISO'");
}

Result<PgResult> PgConnection::Query(const std::string& sql, const Params& params) {
  Settle();
  const std::vector<const char*> values = params.Pointers();
  return Checked(PgResult(PQexecParams(conn_, sql.c_str(), static_cast<int>(values.size()), nullptr,
                                       values.data(), nullptr, nullptr, 0)));
}

Result<PgResult> PgConnection::Checked(PgResult result) {
  const ExecStatusType status = PQresultStatus(result.r);
  if (status != PGRES_TUPLES_OK && status != PGRES_COMMAND_OK) return Error(result.r);
  const int rows = PQntuples(result.r);
  const int columns = PQnfields(result.r);
  for (int i = 0; i < rows; ++i) {
    for (int j = 0; j < columns; ++j)
      bytes_read_ += static_cast<uint64_t>(PQgetlength(result.r, i, j));
  }
  return result;
}

Status PgConnection::Exec(const std::string& sql) {
  Settle();
  PgResult result(PQexec(conn_, sql.c_str()));
  const ExecStatusType status = PQresultStatus(result.r);
  if (status != PGRES_TUPLES_OK && status != PGRES_COMMAND_OK) return Error(result.r);
  return Status::Ok();
}

Result<uint64_t> PgConnection::Send(const std::string& sql) {
  Settle();
  if (PQsendQuery(conn_, sql.c_str()) == 0) return Error(nullptr);
  in_flight_ = ++last_ticket_;
  return in_flight_;
}

void PgConnection::Settle() {
  if (in_flight_ == 0) return;
  // The first result is the statement's; libpq ends each with a null one.
  PgResult result(PQgetResult(conn_));
  while (PGresult* extra = PQgetResult(conn_)) PQclear(extra);
  settled_.emplace_back(in_flight_, Checked(std::move(result)));
  in_flight_ = 0;
}

Result<PgResult> PgConnection::Receive(uint64_t ticket) {
  if (in_flight_ == ticket) Settle();
  for (auto it = settled_.begin(); it != settled_.end(); ++it) {
    if (it->first != ticket) continue;
    Result<PgResult> result = std::move(it->second);
    settled_.erase(it);
    return result;
  }
  return Status::Internal(fmt::format("{}: nothing was sent with ticket {}", what_, ticket));
}

void PgConnection::Forget(uint64_t ticket) {
  if (in_flight_ == ticket) Settle();
  std::erase_if(settled_, [ticket](const auto& entry) { return entry.first == ticket; });
}

Status PgConnection::Error(PGresult* r) const {
  const char* state = r != nullptr ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : nullptr;
  std::string message = r != nullptr ? PQresultErrorMessage(r) : PQerrorMessage(conn_);
  if (message.empty()) message = PQerrorMessage(conn_);
  while (!message.empty() && (message.back() == '\n' || message.back() == ' ')) message.pop_back();
  const std::string code = state != nullptr ? state : "";
  if (PQstatus(conn_) == CONNECTION_BAD) {
    return Status::Unavailable(
        fmt::format("{}: the connection to the server was lost: {}", what_, message));
  }
  if (code == "55P03" || code == "40P01") {  // lock_not_available, deadlock_detected
    return Status::Unavailable(fmt::format(
        "{}: the database stayed locked (by the platform?) beyond the lock timeout; nothing was "
        "written: try again later ({})",
        what_, message));
  }
  return Status::Unavailable(
      fmt::format("{}: {}{}", what_, message, code.empty() ? "" : " (SQLSTATE " + code + ")"));
}

}  // namespace envsync::store
