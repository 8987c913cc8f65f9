// Measures a cold `envsync compare` on a demo pair against the peer the issue names, in one
// run on one machine: `sqldiff --primarykey --table cms_pages` on the same two files, and the
// floor of reading both files once (`cat prod.db test.db > /dev/null`). Each command runs as
// its own process, alternately, several times; the figures are wall time and peak RSS.
//
//   compare_bench [--records N] [--dir DIR] [--runs R]
//
// The demo pair is made with `envsync demo init DIR --records N` when DIR holds none.
#include <fmt/format.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "bench/bench_process.h"

namespace {

namespace fs = std::filesystem;

using envsync::bench::RunProcess;
using envsync::bench::Sample;

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.size() % 2 == 1 ? v[v.size() / 2] : (v[v.size() / 2 - 1] + v[v.size() / 2]) / 2;
}

}  // namespace

int main(int argc, char** argv) {
  int64_t records = 1000000;
  int runs = 3;
  std::string dir;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string flag = argv[i];
    if (flag == "--records") {
      records = std::atoll(argv[i + 1]);
    } else if (flag == "--runs") {
      runs = std::max(1, std::atoi(argv[i + 1]));
    } else if (flag == "--dir") {
      dir = argv[i + 1];
    } else {
      fmt::print(stderr, "compare_bench: unknown flag {}\n", flag);
      return 2;
    }
  }
  if (dir.empty()) dir = fmt::format("build/bench-{}", records);
  const std::string envsync = ENVSYNC_BINARY;
  const fs::path root = fs::absolute(dir);
  const fs::path config = root / "envsync.toml";
  if (!fs::exists(config)) {
    fmt::print("making the demo pair: envsync demo init {} --records {}\n", root.string(), records);
    Sample made = RunProcess(
        {envsync, "demo", "init", root.string(), "--records", std::to_string(records)}, "");
    if (made.exit_code != 0) {
      fmt::print(stderr, "compare_bench: demo init failed ({})\n", made.exit_code);
      return 1;
    }
    fmt::print("  made in {:.1f} s\n", made.seconds);
  }
  // A second config on the same pair with an empty state: the very first comparison, which
  // records the base of every record.
  const fs::path fresh_config = root / "bench-first.toml";
  const fs::path fresh_state = root / "bench-first-state.db";
  {
    std::ifstream in(config);
    std::stringstream text;
    text << in.rdbuf();
    std::string body = text.str();
    const std::string state_line = "state = ";
    const size_t at = body.find(state_line);
    const size_t end = body.find('\n', at);
    body.replace(at, end - at, "state = \"" + fresh_state.string() + "\"");
    std::ofstream(fresh_config) << body;
  }
  const std::string prod = (root / "prod.db").string();
  const std::string test = (root / "test.db").string();

  struct Command {
    std::string name;
    std::vector<std::string> argv;
    bool fresh_state = false;
  };
  const std::vector<Command> commands = {
      {"floor: cat prod.db test.db", {"cat", prod, test}},
      {"sqldiff --primarykey --table cms_pages",
       {"sqldiff", "--primarykey", "--table", "cms_pages", prod, test}},
      {"envsync compare (base already recorded)",
       {envsync, "--config", config.string(), "compare", "--from", "TEST", "--to", "PROD",
        "--json"}},
      {"envsync compare (first: records every base)",
       {envsync, "--config", fresh_config.string(), "compare", "--from", "TEST", "--to", "PROD",
        "--json"},
       true},
  };
  std::map<std::string, std::vector<Sample>> samples;
  // One warm-up pass puts both files in the page cache, as on a shop's server.
  RunProcess(commands[0].argv, "");
  for (int run = 0; run < runs; ++run) {
    for (const Command& command : commands) {
      if (command.fresh_state) {
        for (const char* suffix : {"", "-wal", "-shm"}) fs::remove(fresh_state.string() + suffix);
      }
      Sample sample = RunProcess(command.argv, "");
      if (sample.exit_code != 0 && command.name.rfind("sqldiff", 0) != 0) {
        fmt::print(stderr, "compare_bench: '{}' failed with status {}\n", command.name,
                   sample.exit_code);
        return 1;
      }
      samples[command.name].push_back(sample);
    }
  }
  fmt::print("\n{} records per side, {} run(s) each, alternating; wall time in seconds\n", records,
             runs);
  fmt::print("{:<46} {:>8} {:>8} {:>8} {:>11}\n", "command", "median", "min", "max", "peak RSS");
  std::map<std::string, double> medians;
  for (const Command& command : commands) {
    std::vector<double> seconds;
    long peak = 0;
    for (const Sample& s : samples[command.name]) {
      seconds.push_back(s.seconds);
      peak = std::max(peak, s.peak_kib);
    }
    medians[command.name] = Median(seconds);
    fmt::print("{:<46} {:>8.3f} {:>8.3f} {:>8.3f} {:>8} MiB\n", command.name, Median(seconds),
               *std::min_element(seconds.begin(), seconds.end()),
               *std::max_element(seconds.begin(), seconds.end()), peak / 1024);
  }
  const double floor = medians[commands[0].name];
  const double peer = medians[commands[1].name];
  for (size_t i = 2; i < commands.size(); ++i) {
    const double t = medians[commands[i].name];
    fmt::print("{}: {:.2f}x sqldiff, {:.2f}x the floor\n", commands[i].name, t / peer,
               floor > 0 ? t / floor : 0.0);
  }
  return 0;
}
