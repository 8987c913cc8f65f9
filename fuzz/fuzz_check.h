// What the fuzz targets share: an invariant check that libFuzzer records as a crash.
#ifndef ENVSYNC_FUZZ_FUZZ_CHECK_H_
#define ENVSYNC_FUZZ_FUZZ_CHECK_H_

#include <cstdio>

// Stops the run when `condition` is false: libFuzzer reports the crash and keeps the input
// (crash-<sha1>) that broke the invariant.
#define ENVSYNC_FUZZ_CHECK(condition)                                                            \
  do {                                                                                           \
    if (!(condition)) {                                                                          \
      std::fprintf(stderr, "envsync fuzz: invariant failed: %s (%s:%d)\n", #condition, __FILE__, \
                   __LINE__);                                                                    \
      __builtin_trap();                                                                          \
    }                                                                                            \
  } while (0)

#endif  // ENVSYNC_FUZZ_FUZZ_CHECK_H_
