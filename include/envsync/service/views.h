#ifndef ENVSYNC_SERVICE_VIEWS_H_
#define ENVSYNC_SERVICE_VIEWS_H_

#include <nlohmann/json_fwd.hpp>
#include <string>

#include "envsync/store/state_store.h"
#include "envsync/sync/sync.h"

namespace envsync::service {

// The JSON shapes the CLI's `--json` and the REST API share (docs/API.md). Times are UTC; where
// a user's zone is given, `*_local` fields show them in it.
nlohmann::json JobJson(const store::Job& job, const std::string& zone = "");
nlohmann::json MessageJson(const store::Message& message, const std::string& job_state = "");
nlohmann::json SyncRunJson(const store::SyncRun& run);
nlohmann::json OutcomeJson(const sync::SyncOutcome& outcome);
nlohmann::json AuditJson(const store::AuditEntry& entry);

}  // namespace envsync::service

#endif  // ENVSYNC_SERVICE_VIEWS_H_
