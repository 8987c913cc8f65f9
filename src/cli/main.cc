// The `envsync` command: wires the process's arguments and streams to the CLI.
#include <malloc.h>

#include <iostream>
#include <string>
#include <vector>

#include "envsync/cli/cli.h"

int main(int argc, char** argv) {
  // A compare's reader threads allocate each record they read in their own malloc arena. glibc
  // makes such an arena's heap read-write page by page as it grows, one `mprotect` each (≈ 12,700
  // in the compare, serialized on the process's memory map lock with the other threads'
  // page faults). A pad of 64 MiB, the most one heap holds, makes each heap read-write whole
  // when it is created: address space only, the pages are still allocated when first written.
  // Measured in docs/PERFORMANCE.md ("What the third session of 2026-12-06 measured").
  mallopt(M_TOP_PAD, 64 << 20);
  std::vector<std::string> args(argv + 1, argv + argc);
  return envsync::cli::Run(args, std::cout, std::cerr);
}
