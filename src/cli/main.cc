// The `envsync` command: wires the process's arguments and streams to the CLI.
#include <iostream>
#include <string>
#include <vector>

#include "envsync/cli/cli.h"

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  return envsync::cli::Run(args, std::cout, std::cerr);
}
