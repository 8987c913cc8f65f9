// Measures applying a sync on the 1,000,000-record demo: a test import and a real sync of
// about 1,000 and about 100,000 selected records, each as its own `envsync` process, with the
// time the drift guard takes (from the sync's own phase timings).
//
//   apply_bench [--records N] [--dir DIR] [--selected K ...]
//
// The demo pair is made once with `envsync demo init`; a pristine copy of it is restored
// before each measurement, since a sync changes PROD.
#include <fmt/format.h>
#include <sqlite3.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "bench/bench_process.h"

namespace {

namespace fs = std::filesystem;

// Runs `argv`, its stdout into `out_path`; returns wall seconds, or -1 when it failed.
double Run(const std::vector<std::string>& argv, const std::string& out_path) {
  const envsync::bench::Sample sample = envsync::bench::RunProcess(argv, out_path);
  return sample.exit_code == 0 ? sample.seconds : -1;
}

nlohmann::json ReadJson(const std::string& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return nlohmann::json::parse(text.str(), nullptr, false);
}

// Copies a tree of the pair, flushed to disk before anything is timed.
void CopyTree(const fs::path& from, const fs::path& to) {
  fs::remove_all(to);
  fs::copy(from, to, fs::copy_options::recursive);
  envsync::bench::FlushFileSystem(to);
}

}  // namespace

int main(int argc, char** argv) {
  int64_t records = 1000000;
  std::string dir;
  std::vector<int64_t> selected;
  if (!envsync::bench::FlagsHaveValues(
          argc, argv, "apply_bench [--records N] [--dir DIR] [--selected K ...]")) {
    return 2;
  }
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string flag = argv[i];
    if (flag == "--records") {
      records = std::atoll(argv[i + 1]);
    } else if (flag == "--dir") {
      dir = argv[i + 1];
    } else if (flag == "--selected") {
      selected.push_back(std::atoll(argv[i + 1]));
    } else {
      fmt::print(stderr, "apply_bench: unknown flag {}\n", flag);
      return 2;
    }
  }
  if (selected.empty()) selected = {1000, 100000};
  if (dir.empty()) dir = fmt::format("build/bench-apply-{}", records);
  const std::string envsync = ENVSYNC_BINARY;
  const fs::path root = fs::absolute(dir);
  const fs::path pristine = root / "pristine";
  const fs::path config = root / "envsync.toml";
  const char* kPristine[] = {"prod.db", "test.db", "state.db", "prod-assets", "test-assets"};
  if (!fs::exists(pristine)) {
    fs::remove_all(root);
    fmt::print("making the demo pair: envsync demo init {} --records {}\n", root.string(), records);
    if (Run({envsync, "demo", "init", root.string(), "--records", std::to_string(records)},
            "/dev/null") < 0) {
      fmt::print(stderr, "apply_bench: demo init failed\n");
      return 1;
    }
    fs::create_directories(pristine);
    for (const char* name : kPristine) CopyTree(root / name, pristine / name);
  }
  fmt::print("{:>9} {:>10} {:>12} {:>10} {:>13} {:>12} {:>10}\n", "selected", "compare s",
             "test imp. s", "sync s", "records/s", "drift guard", "imp./sync");
  for (int64_t k : selected) {
    for (const char* name : kPristine) CopyTree(pristine / name, root / name);
    for (const char* suffix : {"-wal", "-shm"})
      fs::remove(root / (std::string("state.db") + suffix));
    // The demo's pending work selects about 1,000 records; more come from editing bulk pages
    // on TEST that the demo left alone.
    if (k > 1000) {
      sqlite3* db = nullptr;
      sqlite3_open((root / "test.db").c_str(), &db);
      const std::string sql = fmt::format(
          "UPDATE cms_pages SET title = title || ' (bench)' WHERE id IN (SELECT id FROM "
          "cms_pages WHERE id > 1000 AND id % 1000 != 0 ORDER BY id LIMIT {})",
          k - 1000);
      sqlite3_exec(db, sql.c_str(), nullptr, nullptr, nullptr);
      sqlite3_close(db);
    }
    // The restored pair (2.5 GB at 1M) is written back to the disk now, not during the runs.
    ::sync();
    const std::string out = (root / "bench-out.json").string();
    const double compare_s = Run({envsync, "--config", config.string(), "compare", "--from", "TEST",
                                  "--to", "PROD", "--json"},
                                 out);
    const nlohmann::json comparison = ReadJson(out);
    if (compare_s < 0 || comparison.is_discarded()) {
      fmt::print(stderr, "apply_bench: compare failed\n");
      return 1;
    }
    const std::string id = comparison["comparison_id"];
    const double import_s =
        Run({envsync, "--config", config.string(), "sync", id, "--test-import", "--json"}, out);
    const double sync_s = Run({envsync, "--config", config.string(), "sync", id, "--json"}, out);
    const nlohmann::json result = ReadJson(out);
    if (import_s < 0 || sync_s < 0 || result.is_discarded()) {
      fmt::print(stderr, "apply_bench: sync failed\n");
      return 1;
    }
    const int64_t applied = result["applied"]["new"].get<int64_t>() +
                            result["applied"]["modified"].get<int64_t>() +
                            result["applied"]["deleted"].get<int64_t>();
    const double drift = result["timings"].value("drift_guard", 0.0);
    fmt::print("{:>9} {:>10.2f} {:>12.2f} {:>10.2f} {:>13.0f} {:>10.2f} s {:>10.2f}\n", applied,
               compare_s, import_s, sync_s, applied / sync_s, drift, import_s / sync_s);
    fmt::print("          sync phases:");
    for (auto it = result["timings"].begin(); it != result["timings"].end(); ++it) {
      fmt::print(" {} {:.2f}", it.key(), it.value().get<double>());
    }
    fmt::print("\n");
  }
  return 0;
}
