// Measures change tracking (`envsync track`) on a demo pair:
//  - the re-compare after K edits on TEST, with both environments tracked, the pair in sync (PROD a
//    copy of TEST) and a comparison already marked (the target: <= 20 ms + 10 us x K at
//    1,000,000 records), next to the same compare reading everything (ENVSYNC_TRACKING=0);
//  - the overhead the triggers add to the platform's own writes (UPDATE, INSERT and DELETE of M
//    rows in one transaction each), tracking on against off, alternately.
// Each compare is its own `envsync` process; the writes run here through SQLite.
//
//   tracking_bench [--records N] [--dir DIR] [--runs R] [--edits K1,K2,...] [--writes M]
#include <fmt/format.h>
#include <sqlite3.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "bench/bench_process.h"

namespace {

namespace fs = std::filesystem;
using envsync::bench::Median;
using envsync::bench::RunProcess;
using envsync::bench::Sample;

void Check(bool ok, const std::string& what) {
  if (!ok) {
    fmt::print(stderr, "tracking_bench: {}\n", what);
    std::exit(1);
  }
}

// Restores a database file from `from`, flushed to disk before anything is timed.
void Copy(const fs::path& from, const fs::path& to) {
  std::string error;
  Check(envsync::bench::RestoreFile(from, to, &error), error);
}

// Runs `sql` on the database at `path`; returns its wall seconds.
double Exec(const fs::path& path, const std::string& sql) {
  sqlite3* db = nullptr;
  Check(sqlite3_open(path.c_str(), &db) == SQLITE_OK, "cannot open " + path.string());
  const auto start = std::chrono::steady_clock::now();
  char* error = nullptr;
  const int rc = sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &error);
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  Check(rc == SQLITE_OK, fmt::format("{}: {}", path.string(), error ? error : "?"));
  sqlite3_close(db);
  return seconds;
}

int64_t MaxPageId(const fs::path& path) {
  sqlite3* db = nullptr;
  Check(sqlite3_open(path.c_str(), &db) == SQLITE_OK, "cannot open " + path.string());
  sqlite3_stmt* statement = nullptr;
  sqlite3_prepare_v2(db, "SELECT max(id) FROM cms_pages", -1, &statement, nullptr);
  sqlite3_step(statement);
  const int64_t max = sqlite3_column_int64(statement, 0);
  sqlite3_finalize(statement);
  sqlite3_close(db);
  return max;
}

std::vector<int64_t> ParseList(const std::string& text) {
  std::vector<int64_t> out;
  std::stringstream in(text);
  std::string item;
  while (std::getline(in, item, ',')) out.push_back(std::atoll(item.c_str()));
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  int64_t records = 1000000;
  int runs = 3;
  std::string dir;
  std::vector<int64_t> edits = {0, 100, 1000, 10000, 100000};
  int64_t writes = 0;
  if (!envsync::bench::FlagsHaveValues(
          argc, argv,
          "tracking_bench [--records N] [--dir DIR] [--runs R] [--edits K1,K2,...] [--writes M]")) {
    return 2;
  }
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string flag = argv[i];
    if (flag == "--records") {
      records = std::atoll(argv[i + 1]);
    } else if (flag == "--runs") {
      runs = std::max(1, std::atoi(argv[i + 1]));
    } else if (flag == "--dir") {
      dir = argv[i + 1];
    } else if (flag == "--edits") {
      edits = ParseList(argv[i + 1]);
    } else if (flag == "--writes") {
      writes = std::atoll(argv[i + 1]);
    } else {
      fmt::print(stderr, "tracking_bench: unknown flag {}\n", flag);
      return 2;
    }
  }
  if (writes <= 0) writes = std::max<int64_t>(1000, std::min<int64_t>(100000, records / 10));
  if (dir.empty()) dir = fmt::format("build/bench-tracking-{}", records);
  const std::string envsync = ENVSYNC_BINARY;
  const fs::path root = fs::absolute(dir);
  const fs::path demo = root / "demo";
  const fs::path pristine = root / "pristine";
  const std::string config = (demo / "envsync.toml").string();
  auto run = [&](std::vector<std::string> args, const std::string& out = "",
                 const std::string& err = "") {
    args.insert(args.begin(), {envsync, "--config", config});
    return RunProcess(args, out, err);
  };
  // The compare's own time, as the CLI reports it ("compared N records in S s"): the process
  // around it (loading 45 shared libraries, opening the state) is the rest of the wall time.
  const std::string err_path = (root / "compare.err").string();
  auto inner_seconds = [&] {
    std::ifstream in(err_path);
    std::string line;
    while (std::getline(in, line)) {
      const size_t at = line.find(" records in ");
      if (line.rfind("compared ", 0) == 0 && at != std::string::npos) {
        return std::atof(line.c_str() + at + 12);
      }
    }
    return -1.0;
  };

  if (!fs::exists(pristine / "state.db")) {
    fs::remove_all(root);
    fs::create_directories(root);
    fmt::print("making the demo pair: {} records per side ...\n", records);
    std::fflush(stdout);
    Check(RunProcess({envsync, "demo", "init", demo.string(), "--records", std::to_string(records)},
                     "")
                  .exit_code == 0,
          "demo init failed");
    // The pair as right after a sync: PROD a copy of TEST, so every difference the compares
    // find is one of the K edits.
    Copy(demo / "test.db", demo / "prod.db");
    fs::remove_all(demo / "prod-assets");
    fs::copy(demo / "test-assets", demo / "prod-assets", fs::copy_options::recursive);
    for (const char* env : {"PROD", "TEST"}) {
      Check(run({"track", "enable", env}).exit_code == 0, "track enable failed");
    }
    // The first comparison with tracking on reads everything and writes the marks.
    const Sample first = run({"compare", "--from", "TEST", "--to", "PROD", "--json"});
    Check(first.exit_code == 0, "the first compare failed");
    fmt::print("first compare with tracking on (reads all, writes the marks): {:.2f} s\n",
               first.seconds);
    fs::create_directories(pristine);
    for (const char* file : {"test.db", "state.db"}) Copy(demo / file, pristine / file);
  }

  const int64_t max_id = MaxPageId(demo / "prod.db");
  fmt::print(
      "\nre-compare after K edits on TEST, {} records per side, {} run(s) each; wall time in "
      "seconds\n",
      records, runs);
  fmt::print("{:>8}  {:>12} {:>8} {:>8}  {:>12}  {:>10}  {:>12}  {:>8}\n", "K", "tracked med",
             "min", "max", "in-process", "target", "full read", "met");
  for (const int64_t k : edits) {
    Copy(pristine / "test.db", demo / "test.db");
    if (k > 0) {
      // K pages spread over the table, each with a new title.
      const int64_t step = std::max<int64_t>(1, max_id / k);
      Exec(demo / "test.db",
           fmt::format("UPDATE cms_pages SET title = title || ' (edited)' WHERE id IN "
                       "(SELECT id FROM cms_pages WHERE id % {} = 1 LIMIT {})",
                       step, k));
    }
    std::vector<double> tracked;
    std::vector<double> inner;
    std::vector<double> full;
    for (int r = 0; r < runs; ++r) {
      Copy(pristine / "state.db", demo / "state.db");
      const Sample t = run({"compare", "--from", "TEST", "--to", "PROD"}, "", err_path);
      Check(t.exit_code == 0, "a tracked compare failed");
      tracked.push_back(t.seconds);
      inner.push_back(inner_seconds());
      Copy(pristine / "state.db", demo / "state.db");
      setenv("ENVSYNC_TRACKING", "0", 1);
      const Sample f = run({"compare", "--from", "TEST", "--to", "PROD"});
      unsetenv("ENVSYNC_TRACKING");
      Check(f.exit_code == 0, "a full compare failed");
      full.push_back(f.seconds);
    }
    const double target = 0.020 + 10e-6 * static_cast<double>(k);
    fmt::print("{:>8}  {:>12.3f} {:>8.3f} {:>8.3f}  {:>12.3f}  {:>10.3f}  {:>12.3f}  {:>8}\n", k,
               Median(tracked), *std::min_element(tracked.begin(), tracked.end()),
               *std::max_element(tracked.begin(), tracked.end()), Median(inner), target,
               Median(full),
               Median(tracked) <= target ? "yes"
               : Median(inner) <= target ? "in-process"
                                         : "no");
  }
  Copy(pristine / "test.db", demo / "test.db");
  Copy(pristine / "state.db", demo / "state.db");

  // The triggers' cost on the platform's writes: a scratch copy of TEST, written with tracking
  // off and on, alternately.
  const fs::path scratch = root / "writes.db";
  Copy(pristine / "test.db", scratch);
  const std::string scratch_config = (root / "writes.toml").string();
  {
    std::ofstream out(scratch_config);
    out << fmt::format(
        "home = \"PROD\"\nstate = \"{}\"\n[environments.PROD]\ndatabase = \"{}\"\nassets = "
        "\"{}\"\n[environments.TEST]\ndatabase = \"{}\"\nassets = \"{}\"\n",
        (root / "writes-state.db").string(), (demo / "prod.db").string(),
        (demo / "prod-assets").string(), scratch.string(), (demo / "test-assets").string());
  }
  auto track = [&](const char* verb) {
    Check(
        RunProcess({envsync, "--config", scratch_config, "track", verb, "TEST"}, "").exit_code == 0,
        std::string("track ") + verb + " failed");
  };
  const int64_t base = MaxPageId(scratch) + 1000;
  const std::string insert = fmt::format(
      "BEGIN; INSERT INTO cms_pages (id, slug, title, body_html, status, updated_by, updated_at) "
      "SELECT id + {0}, slug || '-copy', title, body_html, status, updated_by, updated_at FROM "
      "cms_pages WHERE id BETWEEN 1001 AND {1}; COMMIT;",
      base, 1000 + writes);
  const std::string update = fmt::format(
      "BEGIN; UPDATE cms_pages SET title = title || '.' WHERE id BETWEEN {0} AND {1}; COMMIT;",
      base + 1001, base + 1000 + writes);
  const std::string remove =
      fmt::format("BEGIN; DELETE FROM cms_pages WHERE id BETWEEN {0} AND {1}; COMMIT;", base + 1001,
                  base + 1000 + writes);
  std::vector<double> off[3];
  std::vector<double> on[3];
  for (int r = 0; r < runs; ++r) {
    for (bool tracked : {false, true}) {
      track(tracked ? "enable" : "disable");
      auto& into = tracked ? on : off;
      into[0].push_back(Exec(scratch, insert));
      into[1].push_back(Exec(scratch, update));
      into[2].push_back(Exec(scratch, remove));
    }
  }
  track("disable");
  fmt::print("\nthe platform's writes, {} rows per statement in one transaction, {} run(s) each\n",
             writes, runs);
  fmt::print("{:<8} {:>12} {:>12} {:>16} {:>8}\n", "write", "off s", "on s", "overhead us/row",
             "met");
  const char* names[] = {"INSERT", "UPDATE", "DELETE"};
  for (int w = 0; w < 3; ++w) {
    const double per_row = (Median(on[w]) - Median(off[w])) / static_cast<double>(writes) * 1e6;
    fmt::print("{:<8} {:>12.3f} {:>12.3f} {:>16.2f} {:>8}\n", names[w], Median(off[w]),
               Median(on[w]), per_row, per_row <= 2.0 ? "yes" : "no");
  }
  return 0;
}
