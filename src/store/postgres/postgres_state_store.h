#ifndef ENVSYNC_SRC_STORE_POSTGRES_POSTGRES_STATE_STORE_H_
#define ENVSYNC_SRC_STORE_POSTGRES_POSTGRES_STATE_STORE_H_

#include <memory>
#include <string>

#include "envsync/store/state_store.h"

namespace envsync::store {

// Opens envsync's state store in the PostgreSQL database `uri` names (which must exist),
// creating or migrating its tables. Unavailable naming the server (never the password) when it
// cannot connect.
Result<std::unique_ptr<StateStore>> OpenPostgresStateStore(const std::string& uri);

}  // namespace envsync::store

#endif  // ENVSYNC_SRC_STORE_POSTGRES_POSTGRES_STATE_STORE_H_
