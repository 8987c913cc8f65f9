// PostgreSQL helpers for tests: the test server's URI ($ENVSYNC_TEST_PG, set by
// scripts/with-postgres), the skip-or-fail guard of tests that need it, a small libpq client,
// and a copy of a SQLite environment into a new PostgreSQL database.
#ifndef ENVSYNC_TESTS_STORE_PG_SUPPORT_H_
#define ENVSYNC_TESTS_STORE_PG_SUPPORT_H_

#include <libpq-fe.h>
#include <sqlite3.h>

#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "tests/sync/compare_test_support.h"

namespace envsync::testing {

inline std::string ServerUri() {
  const char* uri = std::getenv("ENVSYNC_TEST_PG");
  return uri != nullptr ? uri : "";
}

// Whether the tests run on CI (CI=true), where a missing test server is a failure, not a skip.
inline bool RunningOnCi() {
  const char* ci = std::getenv("CI");
  return ci != nullptr && std::string(ci) == "true";
}

// Requires the test server: without $ENVSYNC_TEST_PG, fails the test on CI and skips it
// elsewhere, and returns from the calling function (a fixture's SetUp, or a void helper it
// calls; gtest then runs no test body). A macro because FAIL() and GTEST_SKIP() return only from
// the function they are written in.
#define ENVSYNC_REQUIRE_POSTGRES()                                                        \
  do {                                                                                    \
    if (::envsync::testing::ServerUri().empty()) {                                        \
      if (::envsync::testing::RunningOnCi()) {                                            \
        FAIL() << "CI=true but ENVSYNC_TEST_PG is not set: run the suite through "        \
                  "scripts/with-postgres";                                                \
      }                                                                                   \
      GTEST_SKIP() << "ENVSYNC_TEST_PG is not set: run through scripts/with-postgres to " \
                      "test against PostgreSQL";                                          \
    }                                                                                     \
  } while (false)

// The URI of database `name` on the test server.
inline std::string DatabaseUri(const std::string& name) {
  std::string uri = ServerUri();
  return uri.substr(0, uri.rfind('/') + 1) + name;
}

// A libpq connection for the test's own setup and checks.
class Pg {
 public:
  explicit Pg(const std::string& uri) : conn_(PQconnectdb(uri.c_str())) {}
  ~Pg() { PQfinish(conn_); }
  bool ok() const { return PQstatus(conn_) == CONNECTION_OK; }
  std::string error() const { return PQerrorMessage(conn_); }
  // Runs `sql`; returns the first column of every row, joined with '|' per row and '\n'.
  std::string Run(const std::string& sql, const std::vector<std::string>& params = {}) {
    std::vector<const char*> values;
    for (const std::string& p : params) values.push_back(p == "\x01NULL" ? nullptr : p.c_str());
    // Several statements (a schema file) go without parameters.
    PGresult* r = params.empty() ? PQexec(conn_, sql.c_str())
                                 : PQexecParams(conn_, sql.c_str(), static_cast<int>(values.size()),
                                                nullptr, values.data(), nullptr, nullptr, 0);
    const ExecStatusType status = PQresultStatus(r);
    EXPECT_TRUE(status == PGRES_TUPLES_OK || status == PGRES_COMMAND_OK)
        << sql.substr(0, 200) << ": " << PQresultErrorMessage(r);
    std::string out;
    for (int i = 0; i < PQntuples(r); ++i) {
      for (int j = 0; j < PQnfields(r); ++j) {
        out += PQgetisnull(r, i, j) ? "NULL" : PQgetvalue(r, i, j);
        out += "|";
      }
      out += "\n";
    }
    PQclear(r);
    return out;
  }

 private:
  PGconn* conn_;
};

// Creates database `db` with the platform's PostgreSQL schema and copies every table of the
// SQLite database at `from` into it; returns its URI.
inline std::string CopySqliteToPostgres(const std::filesystem::path& from, const std::string& db) {
  Pg admin(ServerUri());
  EXPECT_TRUE(admin.ok()) << admin.error();
  admin.Run("CREATE DATABASE " + db);
  Pg pg(DatabaseUri(db));
  pg.Run(ReadBytes(std::filesystem::path(ENVSYNC_SOURCE_DIR) / "data/schema.postgres.sql"));
  pg.Run("SET session_replication_role = replica");  // rows arrive in any order
  sqlite3* lite = nullptr;
  sqlite3_open_v2(from.c_str(), &lite, SQLITE_OPEN_READONLY, nullptr);
  sqlite3_stmt* tables = nullptr;
  sqlite3_prepare_v2(
      lite, "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'", -1,
      &tables, nullptr);
  while (sqlite3_step(tables) == SQLITE_ROW) {
    const std::string table = reinterpret_cast<const char*>(sqlite3_column_text(tables, 0));
    sqlite3_stmt* rows = nullptr;
    sqlite3_prepare_v2(lite, ("SELECT * FROM \"" + table + "\"").c_str(), -1, &rows, nullptr);
    const int n = sqlite3_column_count(rows);
    bool has_id = false;
    for (int i = 0; i < n; ++i)
      has_id = has_id || std::string(sqlite3_column_name(rows, i)) == "id";
    std::string columns;
    std::string marks;
    for (int i = 0; i < n; ++i) {
      columns += std::string(i ? ", " : "") + "\"" + sqlite3_column_name(rows, i) + "\"";
      marks += (i ? ", $" : "$") + std::to_string(i + 1);
    }
    const std::string insert =
        "INSERT INTO \"" + table + "\" (" + columns + ") VALUES (" + marks + ")";
    pg.Run("BEGIN");
    while (sqlite3_step(rows) == SQLITE_ROW) {
      std::vector<std::string> values;
      for (int i = 0; i < n; ++i) {
        const unsigned char* text = sqlite3_column_text(rows, i);
        values.push_back(text == nullptr ? "\x01NULL" : reinterpret_cast<const char*>(text));
      }
      pg.Run(insert, values);
    }
    pg.Run("COMMIT");
    sqlite3_finalize(rows);
    if (has_id) {
      pg.Run("SELECT setval(pg_get_serial_sequence($1, 'id'), GREATEST((SELECT max(id) FROM \"" +
                 table + "\"), 1)) WHERE pg_get_serial_sequence($1, 'id') IS NOT NULL",
             {table});
    }
  }
  sqlite3_finalize(tables);
  sqlite3_close(lite);
  return DatabaseUri(db);
}

// Drops database `db`, ending its sessions first.
inline void DropPostgresDatabase(const std::string& db) {
  Pg admin(ServerUri());
  admin.Run("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1", {db});
  admin.Run("DROP DATABASE IF EXISTS " + db);
}

}  // namespace envsync::testing

#endif  // ENVSYNC_TESTS_STORE_PG_SUPPORT_H_
