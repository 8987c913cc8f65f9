#ifndef ENVSYNC_SRC_STORE_POSTGRES_POSTGRES_ENVIRONMENT_H_
#define ENVSYNC_SRC_STORE_POSTGRES_POSTGRES_ENVIRONMENT_H_

#include <memory>
#include <string>

#include "envsync/store/environment.h"

namespace envsync::store {

// True when `database` names a PostgreSQL server (`postgresql://…` or `postgres://…`).
bool IsPostgresUri(const std::string& database);

// The URI without its password, for messages and logs.
std::string RedactUri(const std::string& uri);

// Opens a PostgreSQL environment (libpq). Unavailable naming the environment and the server
// (never the password) when it cannot connect.
Result<std::unique_ptr<Environment>> OpenPostgresEnvironment(const EnvironmentConfig& config,
                                                             Access access);

}  // namespace envsync::store

#endif  // ENVSYNC_SRC_STORE_POSTGRES_POSTGRES_ENVIRONMENT_H_
