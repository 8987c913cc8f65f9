// store::SharedLibrary: the libraries envsync loads when it first needs them (libpq, libcurl).
#include "store/shared_library.h"

#include <dlfcn.h>
#include <gtest/gtest.h>
#include <libpq-fe.h>

#include "store/postgres/libpq.h"

namespace envsync::store {
namespace {

TEST(SharedLibraryTest, ALibraryThatIsNotThereIsNamedWithWhatItIsFor) {
  auto missing = SharedLibrary::Open("libenvsync-not-installed.so.7", "testing the loader");
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.status().code(), Status::Code::kUnavailable);
  const std::string& message = missing.status().message();
  EXPECT_NE(message.find("libenvsync-not-installed.so.7"), std::string::npos) << message;
  EXPECT_NE(message.find("needed for testing the loader"), std::string::npos) << message;
}

TEST(SharedLibraryTest, AFunctionTheLibraryLacksIsNamed) {
  auto libpq = SharedLibrary::Open("libpq.so.5", "this test");
  ASSERT_TRUE(libpq.ok()) << libpq.status().message();
  int (*version)() = nullptr;
  ASSERT_TRUE(libpq->Take("PQlibVersion", &version).ok());
  ASSERT_NE(version, nullptr);
  EXPECT_GE(version(), 100000);  // PostgreSQL 10 or newer
  void (*absent)() = nullptr;
  const Status status = libpq->Take("PQnoSuchFunction", &absent);
  EXPECT_FALSE(status.ok());
  EXPECT_EQ(absent, nullptr);
  EXPECT_NE(status.message().find("libpq.so.5"), std::string::npos) << status.message();
  EXPECT_NE(status.message().find("PQnoSuchFunction"), std::string::npos) << status.message();
}

// envsync's own PQ* functions (this test binary links libpq too, and the executable's win) reach
// the loaded libpq: a connection to nowhere fails with libpq's own message.
TEST(SharedLibraryTest, LibPqLoadsAndItsFunctionsReachIt) {
  Dl_info where{};
  ASSERT_NE(dladdr(reinterpret_cast<void*>(&PQconnectdb), &where), 0);
  ASSERT_NE(where.dli_fname, nullptr);
  EXPECT_EQ(std::string(where.dli_fname).find("libpq"), std::string::npos)
      << "PQconnectdb is libpq's own, not envsync's forwarding one: " << where.dli_fname;
  ASSERT_TRUE(LoadLibPq().ok()) << LoadLibPq().message();
  PGconn* conn = PQconnectdb("host=/nonexistent-envsync-socket-dir port=1 connect_timeout=1");
  ASSERT_NE(conn, nullptr);
  EXPECT_EQ(PQstatus(conn), CONNECTION_BAD);
  EXPECT_NE(std::string(PQerrorMessage(conn)).find("nonexistent-envsync-socket-dir"),
            std::string::npos)
      << PQerrorMessage(conn);
  PQfinish(conn);
}

}  // namespace
}  // namespace envsync::store
