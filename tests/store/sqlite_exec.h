#ifndef ENVSYNC_TESTS_STORE_SQLITE_EXEC_H_
#define ENVSYNC_TESTS_STORE_SQLITE_EXEC_H_

#include <gtest/gtest.h>
#include <sqlite3.h>

#include <filesystem>
#include <string>

namespace envsync::store {

// Runs a SQL script on a SQLite file with the plain SQLite API, failing the test on error.
inline void ExecSql(const std::filesystem::path& path, const std::string& sql) {
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK);
  char* error = nullptr;
  const int rc = sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &error);
  const std::string message = error != nullptr ? error : "";
  sqlite3_free(error);
  sqlite3_close(db);
  ASSERT_EQ(rc, SQLITE_OK) << message << " in: " << sql;
}

}  // namespace envsync::store

#endif  // ENVSYNC_TESTS_STORE_SQLITE_EXEC_H_
