// libpq, loaded the first time envsync connects to a PostgreSQL server (store::SharedLibrary),
// not when it starts. The adapter is written against <libpq-fe.h> as usual: libpq.cc defines
// the functions it calls, under libpq's own names, each forwarding to the loaded library. A
// function used without being added there is a link error (envsync does not link libpq).
#ifndef ENVSYNC_SRC_STORE_POSTGRES_LIBPQ_H_
#define ENVSYNC_SRC_STORE_POSTGRES_LIBPQ_H_

#include "envsync/core/status.h"

namespace envsync::store {

// Loads libpq once per process; every connection asks first, and its error says what is
// missing (the Debian package libpq5).
Status LoadLibPq();

}  // namespace envsync::store

#endif  // ENVSYNC_SRC_STORE_POSTGRES_LIBPQ_H_
