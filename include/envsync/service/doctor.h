#ifndef ENVSYNC_SERVICE_DOCTOR_H_
#define ENVSYNC_SERVICE_DOCTOR_H_

#include <string>
#include <vector>

#include "envsync/core/status.h"
#include "envsync/service/workspace.h"
#include "envsync/store/state_store.h"

namespace envsync::service {

// One thing `envsync doctor` looked at: what (`check`), whether it is sound, and what it found
// (for a problem: what is wrong and what to do about it).
struct DoctorFinding {
  std::string check;
  bool ok = true;
  std::string detail;
};

struct DoctorReport {
  std::vector<DoctorFinding> findings;
  bool healthy() const;
};

// Checks envsync's state store and what it says of the environments, without writing anything:
//  - the store's own integrity (StateStore::CheckIntegrity) and schema version;
//  - work a stopped process left in flight (a sync or undo not settled, a job still running),
//    judged only when no other envsync holds the store;
//  - every sync's and job's state is one envsync writes, finished ones say when, no comparison
//    was executed twice, every finished sync job names a sync that ended as it says, and no
//    two jobs name the same sync (no job lost or run twice);
//  - the identity map and the stored comparisons load;
//  - each environment opens and passes its database's own check (Environment::CheckIntegrity),
//    its change tracking is not broken, and its assets folder holds no staging or trash folder
//    that no sync needs.
// An error only when the store itself cannot be read; everything else is a finding.
Result<DoctorReport> Diagnose(const Workspace& workspace, store::StateStore& state);

}  // namespace envsync::service

#endif  // ENVSYNC_SERVICE_DOCTOR_H_
