#include "store/postgres/libpq.h"

#include <libpq-fe.h>

#include <cstdio>
#include <cstdlib>

#include "store/shared_library.h"

// The libpq functions envsync calls (each is also defined below).
// clang-format off
#define ENVSYNC_LIBPQ_FUNCTIONS(X) \
  X(PQconnectdb) \
  X(PQfinish) \
  X(PQstatus) \
  X(PQtransactionStatus) \
  X(PQerrorMessage) \
  X(PQexec) \
  X(PQexecParams) \
  X(PQsendQuery) \
  X(PQgetResult) \
  X(PQresultStatus) \
  X(PQresultErrorMessage) \
  X(PQresultErrorField) \
  X(PQntuples) \
  X(PQnfields) \
  X(PQftype) \
  X(PQcmdTuples) \
  X(PQgetvalue) \
  X(PQgetlength) \
  X(PQgetisnull) \
  X(PQclear)
// clang-format on

namespace envsync::store {
namespace {

struct LibPq {
  Status status;
#define ENVSYNC_LIBPQ_MEMBER(name) decltype(&::name) name = nullptr;
  ENVSYNC_LIBPQ_FUNCTIONS(ENVSYNC_LIBPQ_MEMBER)
#undef ENVSYNC_LIBPQ_MEMBER
};

// Never destroyed: a connection closed while the process ends still finds it.
const LibPq& Loaded() {
  static const LibPq& lib = *new LibPq([] {
    LibPq l;
    auto so = SharedLibrary::Open("libpq.so.5", "PostgreSQL environments and state stores");
    if (!so.ok()) {
      l.status = so.status();
      return l;
    }
#define ENVSYNC_LIBPQ_TAKE(name) \
  if (l.status.ok()) l.status = so->Take(#name, &l.name);
    ENVSYNC_LIBPQ_FUNCTIONS(ENVSYNC_LIBPQ_TAKE)
#undef ENVSYNC_LIBPQ_TAKE
    return l;
  }());
  return lib;
}

// For the functions below: a libpq call that LoadLibPq() did not clear first is a defect of
// envsync, not of its input.
const LibPq& Lib() {
  const LibPq& lib = Loaded();
  if (!lib.status.ok()) {
    std::fprintf(stderr,
                 "envsync: a libpq function was called, but libpq could not be loaded: %s\n",
                 lib.status.message().c_str());
    std::abort();
  }
  return lib;
}

}  // namespace

Status LoadLibPq() { return Loaded().status; }

}  // namespace envsync::store

using envsync::store::Lib;

extern "C" {

PGconn* PQconnectdb(const char* conninfo) { return Lib().PQconnectdb(conninfo); }
void PQfinish(PGconn* conn) { Lib().PQfinish(conn); }
ConnStatusType PQstatus(const PGconn* conn) { return Lib().PQstatus(conn); }
PGTransactionStatusType PQtransactionStatus(const PGconn* conn) {
  return Lib().PQtransactionStatus(conn);
}
char* PQerrorMessage(const PGconn* conn) { return Lib().PQerrorMessage(conn); }
PGresult* PQexec(PGconn* conn, const char* query) { return Lib().PQexec(conn, query); }
PGresult* PQexecParams(PGconn* conn, const char* command, int nParams, const Oid* paramTypes,
                       const char* const* paramValues, const int* paramLengths,
                       const int* paramFormats, int resultFormat) {
  return Lib().PQexecParams(conn, command, nParams, paramTypes, paramValues, paramLengths,
                            paramFormats, resultFormat);
}
int PQsendQuery(PGconn* conn, const char* query) { return Lib().PQsendQuery(conn, query); }
PGresult* PQgetResult(PGconn* conn) { return Lib().PQgetResult(conn); }
ExecStatusType PQresultStatus(const PGresult* res) { return Lib().PQresultStatus(res); }
char* PQresultErrorMessage(const PGresult* res) { return Lib().PQresultErrorMessage(res); }
char* PQresultErrorField(const PGresult* res, int fieldcode) {
  return Lib().PQresultErrorField(res, fieldcode);
}
int PQntuples(const PGresult* res) { return Lib().PQntuples(res); }
int PQnfields(const PGresult* res) { return Lib().PQnfields(res); }
Oid PQftype(const PGresult* res, int field_num) { return Lib().PQftype(res, field_num); }
char* PQcmdTuples(PGresult* res) { return Lib().PQcmdTuples(res); }
char* PQgetvalue(const PGresult* res, int tup_num, int field_num) {
  return Lib().PQgetvalue(res, tup_num, field_num);
}
int PQgetlength(const PGresult* res, int tup_num, int field_num) {
  return Lib().PQgetlength(res, tup_num, field_num);
}
int PQgetisnull(const PGresult* res, int tup_num, int field_num) {
  return Lib().PQgetisnull(res, tup_num, field_num);
}
void PQclear(PGresult* res) { Lib().PQclear(res); }

}  // extern "C"
