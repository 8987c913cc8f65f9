// Measures a cold `envsync compare` on the pair issue 7 names against the peer the issue names,
// in one run on one machine: `sqldiff --primarykey --table cms_pages` on the same two files,
// and the floor of reading both files once (`cat prod.db test.db > /dev/null`). Each command
// runs as its own process, alternately, several times; the figures are wall time and peak RSS.
//
//   compare_bench [--records N] [--dir DIR] [--runs R] [--mix M,A,D]
//
// The pair: `envsync demo init DIR --records N` (N bulk CMS pages per side, the demo's pending
// work on both sides, and a state store holding the comparison of the last sync: a shop that
// syncs daily), then the mix on TEST, in one transaction: M% of N bulk pages modified, A% of
// N pages added, D% of N bulk pages deleted (default 1,0.5,0.5 as in issue 7; 0,0,0 is the
// demo as it is). Which pages, by a fixed rule (so two runs measure the same pair):
//   - eligible are the bulk pages (IDs 1001..1000+N) the demo leaves alone, i.e. every one
//     whose ID is not a multiple of 1000; nothing references them, so deleting one deletes one
//     record. Eligible page j (from 0) has ID 1001 + j + j / 999.
//   - K = modified + deleted of them, evenly spaced: the i-th (i from 0) is eligible page
//     i * E / K of the E eligible ones; it is deleted when floor((i + 1) * D / K) >
//     floor(i * D / K) (the deletions spread evenly among the edits), else its body is edited.
//   - the new pages get IDs above the highest ID on either side and slugs bench-new-page-NNNNNNN,
//     each a copy of bulk page 1 + k % N with its own slug and title.
//
// The demo is made once and kept in DIR/pristine/ (prod.db, test.db, state.db); every run of
// the bench restores it and applies the mix again. The bench's first compare, of the pair
// before the edits, is kept (DIR/bench-earlier-state.db) and restored before each "base
// already recorded" compare, so each one compares against the comparison made before the
// edits, by this envsync (a compare records the base of the records it finds equal, with the
// digests of their rows). The "first" compare starts from an empty state store each time and
// records every base.
//
// Before the timed runs the bench checks the pair: envsync's counts and sqldiff's statements
// on the edited pair must be the demo's alone plus exactly the mix.
#include <fmt/format.h>
#include <malloc.h>
#include <sqlite3.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "bench/bench_process.h"

namespace {

namespace fs = std::filesystem;

using envsync::bench::Median;
using envsync::bench::RunProcess;
using envsync::bench::Sample;

constexpr int64_t kFirstBulkId = 1001;  // as in src/demo/demo.cc
constexpr char kEditedAt[] = "2024-05-22T09:00:00Z";
constexpr int64_t kBenchEditor = 3;  // TEST's content editor, a user the demo adds on TEST

// Issue 7's targets for the everyday compare.
constexpr double kTargetSqldiffRatio = 0.5;
constexpr long kTargetPeakMib = 256;

// Percentages of N: modified, new, deleted.
struct Mix {
  double modified = 1;
  double added = 0.5;
  double deleted = 0.5;
};

// Parses "M,A,D" (three non-negative percentages); false when it is not that.
bool ParseMix(const std::string& text, Mix* mix) {
  double values[3];
  size_t at = 0;
  for (int k = 0; k < 3; ++k) {
    const size_t end = k < 2 ? text.find(',', at) : text.size();
    if (end == std::string::npos || end == at) return false;
    const std::string part = text.substr(at, end - at);
    char* rest = nullptr;
    values[k] = std::strtod(part.c_str(), &rest);
    if (*rest != '\0' || !std::isfinite(values[k]) || values[k] < 0 || values[k] > 100) {
      return false;
    }
    at = end + 1;
  }
  *mix = Mix{values[0], values[1], values[2]};
  return true;
}

// Counts of records per tab of a comparison, or of edits of the mix.
struct Counts {
  int64_t conflicts = 0;
  int64_t added = 0;
  int64_t modified = 0;
  int64_t deleted = 0;
};

Counts operator-(const Counts& a, const Counts& b) {
  return {a.conflicts - b.conflicts, a.added - b.added, a.modified - b.modified,
          a.deleted - b.deleted};
}
bool operator==(const Counts& a, const Counts& b) {
  return a.conflicts == b.conflicts && a.added == b.added && a.modified == b.modified &&
         a.deleted == b.deleted;
}

std::string Describe(const Counts& c) {
  return fmt::format("conflicts {}, new {}, modified {}, deleted {}", c.conflicts, c.added,
                     c.modified, c.deleted);
}

// Eligible bulk page j: the demo edits on TEST the bulk pages whose ID is a multiple of 1000.
int64_t EligibleId(int64_t j) { return kFirstBulkId + j + j / 999; }
int64_t EligibleCount(int64_t records) { return records - records / 1000; }

// Reads the "counts" object of `envsync compare --json` output. Only the head of the file is
// read: the bench's own memory must stay small, since a child forked from it starts with its
// resident pages, and those count in the child's peak RSS.
std::optional<Counts> ReadCompareCounts(const fs::path& path) {
  std::ifstream in(path);
  std::string head(64 * 1024, '\0');
  in.read(head.data(), static_cast<std::streamsize>(head.size()));
  head.resize(static_cast<size_t>(in.gcount()));
  const size_t key = head.find("\"counts\"");
  const size_t open = head.find('{', key);
  const size_t close = head.find('}', open);
  if (key == std::string::npos || open == std::string::npos || close == std::string::npos) {
    return std::nullopt;
  }
  const nlohmann::json counts =
      nlohmann::json::parse(head.substr(open, close - open + 1), nullptr, false);
  if (counts.is_discarded()) return std::nullopt;
  return Counts{counts.value("conflicts", int64_t{-1}), counts.value("new", int64_t{-1}),
                counts.value("modified", int64_t{-1}), counts.value("deleted", int64_t{-1})};
}

// Counts the statements of sqldiff's output, one a line: INSERT (new), UPDATE (modified),
// DELETE (deleted); `conflicts` holds the count of any other line.
Counts ReadSqldiffCounts(const fs::path& path) {
  std::ifstream in(path);
  Counts counts;
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("INSERT ", 0) == 0) {
      ++counts.added;
    } else if (line.rfind("UPDATE ", 0) == 0) {
      ++counts.modified;
    } else if (line.rfind("DELETE ", 0) == 0) {
      ++counts.deleted;
    } else {
      ++counts.conflicts;
    }
  }
  return counts;
}

// envsync::bench::RestoreFile, saying why when it fails.
bool RestoreFile(const fs::path& from, const fs::path& to) {
  std::string error;
  if (envsync::bench::RestoreFile(from, to, &error)) return true;
  fmt::print(stderr, "compare_bench: {}\n", error);
  return false;
}

// One SQLite connection for the bench's own edits. Not thread-safe.
class Sqlite {
 public:
  Sqlite() = default;
  Sqlite(const Sqlite&) = delete;
  Sqlite& operator=(const Sqlite&) = delete;
  ~Sqlite() { sqlite3_close_v2(db_); }

  bool Open(const fs::path& path, int flags) {
    path_ = path;
    return sqlite3_open_v2(path.c_str(), &db_, flags, nullptr) == SQLITE_OK;
  }
  bool Exec(const char* sql) { return sqlite3_exec(db_, sql, nullptr, nullptr, nullptr) == 0; }

  using Statement = std::unique_ptr<sqlite3_stmt, int (*)(sqlite3_stmt*)>;
  Statement Prepare(const char* sql) {
    sqlite3_stmt* statement = nullptr;
    sqlite3_prepare_v2(db_, sql, -1, &statement, nullptr);
    return Statement(statement, sqlite3_finalize);
  }

  // Steps `statement` (its parameters bound) to completion; true when it changed one row.
  bool RunOnce(sqlite3_stmt* statement) {
    const int rc = sqlite3_step(statement);
    sqlite3_reset(statement);
    return rc == SQLITE_DONE && sqlite3_changes(db_) == 1;
  }

  int64_t QueryInt(const char* sql) {
    Statement statement = Prepare(sql);
    if (!statement || sqlite3_step(statement.get()) != SQLITE_ROW) return -1;
    return sqlite3_column_int64(statement.get(), 0);
  }

  std::string Error() const { return fmt::format("{}: {}", path_.string(), sqlite3_errmsg(db_)); }

 private:
  sqlite3* db_ = nullptr;
  fs::path path_;
};

// Moves everything of the state store's WAL into its file, so that the file alone is the store.
bool Checkpoint(const fs::path& state) {
  Sqlite store;
  if (!store.Open(state, SQLITE_OPEN_READWRITE) || !store.Exec("PRAGMA wal_checkpoint(TRUNCATE)")) {
    fmt::print(stderr, "compare_bench: {}\n", store.Error());
    return false;
  }
  return true;
}

// Applies `edits` (added, modified, deleted) to TEST's bulk pages by the rule in the comment
// at the top of this file, in one transaction. Prints what failed and returns false on error;
// TEST is then restored from the pristine copy by the next run.
bool ApplyMix(const fs::path& test_db, const fs::path& prod_db, int64_t records,
              const Counts& edits) {
  int64_t max_id = 0;
  {
    Sqlite prod;
    if (!prod.Open(prod_db, SQLITE_OPEN_READONLY)) {
      fmt::print(stderr, "compare_bench: {}\n", prod.Error());
      return false;
    }
    max_id = prod.QueryInt("SELECT COALESCE(MAX(id), 0) FROM cms_pages");
  }
  Sqlite test;
  if (!test.Open(test_db, SQLITE_OPEN_READWRITE)) {
    fmt::print(stderr, "compare_bench: {}\n", test.Error());
    return false;
  }
  max_id = std::max(max_id, test.QueryInt("SELECT COALESCE(MAX(id), 0) FROM cms_pages"));
  // No rollback journal: a failed edit leaves a TEST the next run replaces anyway, and
  // journalling the ~64 KiB pages of the edits would copy most of the file. Foreign keys on,
  // so deleting a page something references fails instead of leaving a dangling reference.
  if (max_id < 0 || !test.Exec("PRAGMA journal_mode = OFF; PRAGMA synchronous = OFF; "
                               "PRAGMA foreign_keys = ON; BEGIN IMMEDIATE")) {
    fmt::print(stderr, "compare_bench: {}\n", test.Error());
    return false;
  }
  Sqlite::Statement insert = test.Prepare(
      "INSERT INTO cms_pages (id, slug, title, body_html, layout, status, hero_image_id, "
      "updated_by, updated_at) SELECT ?1, ?2, ?3, replace(replace(body_html, slug, ?2), title, "
      "?3), layout, status, hero_image_id, ?4, ?5 FROM cms_pages WHERE id = ?6");
  Sqlite::Statement update = test.Prepare(
      "UPDATE cms_pages SET body_html = body_html || '<p>Edited on TEST for the benchmark.</p>', "
      "updated_by = ?2, updated_at = ?3 WHERE id = ?1 AND slug GLOB 'bulk-page-*'");
  Sqlite::Statement erase =
      test.Prepare("DELETE FROM cms_pages WHERE id = ?1 AND slug GLOB 'bulk-page-*'");
  if (!insert || !update || !erase) {
    fmt::print(stderr, "compare_bench: {}\n", test.Error());
    return false;
  }
  // New pages first: each copies a bulk page that the edits below may delete.
  for (int64_t k = 0; k < edits.added; ++k) {
    const std::string slug = fmt::format("bench-new-page-{:07}", k + 1);
    const std::string title = fmt::format("Bench new page {}", k + 1);
    sqlite3_bind_int64(insert.get(), 1, max_id + 1 + k);
    sqlite3_bind_text(insert.get(), 2, slug.c_str(), -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(insert.get(), 3, title.c_str(), -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(insert.get(), 4, kBenchEditor);
    sqlite3_bind_text(insert.get(), 5, kEditedAt, -1, SQLITE_STATIC);
    sqlite3_bind_int64(insert.get(), 6, kFirstBulkId + k % records);
    if (!test.RunOnce(insert.get())) {
      fmt::print(stderr, "compare_bench: adding page {}: {}\n", max_id + 1 + k, test.Error());
      return false;
    }
  }
  const int64_t eligible = EligibleCount(records);
  const int64_t picked = edits.modified + edits.deleted;
  for (int64_t i = 0; i < picked; ++i) {
    const int64_t id = EligibleId(i * eligible / picked);
    const bool deleted = (i + 1) * edits.deleted / picked > i * edits.deleted / picked;
    sqlite3_stmt* statement = deleted ? erase.get() : update.get();
    sqlite3_bind_int64(statement, 1, id);
    if (!deleted) {
      sqlite3_bind_int64(statement, 2, kBenchEditor);
      sqlite3_bind_text(statement, 3, kEditedAt, -1, SQLITE_STATIC);
    }
    if (!test.RunOnce(statement)) {
      fmt::print(stderr, "compare_bench: {} page {}: {}\n", deleted ? "deleting" : "editing", id,
                 test.Error());
      return false;
    }
  }
  insert.reset();
  update.reset();
  erase.reset();
  if (!test.Exec("COMMIT; PRAGMA journal_mode = DELETE")) {
    fmt::print(stderr, "compare_bench: {}\n", test.Error());
    return false;
  }
  return true;
}

// Runs one untimed compare (JSON into `out`) and one sqldiff (into `sqldiff_out`) and reads
// what each lists; false when either failed.
bool ListChanges(const std::vector<std::string>& compare, const std::vector<std::string>& sqldiff,
                 const fs::path& out, const fs::path& sqldiff_out, Counts* envsync_counts,
                 Counts* sqldiff_counts) {
  if (RunProcess(compare, out.string()).exit_code != 0) {
    fmt::print(stderr, "compare_bench: the check compare failed\n");
    return false;
  }
  std::optional<Counts> counts = ReadCompareCounts(out);
  if (!counts) {
    fmt::print(stderr, "compare_bench: no counts in {}\n", out.string());
    return false;
  }
  *envsync_counts = *counts;
  if (RunProcess(sqldiff, sqldiff_out.string()).exit_code != 0) {
    fmt::print(stderr, "compare_bench: the check sqldiff failed\n");
    return false;
  }
  *sqldiff_counts = ReadSqldiffCounts(sqldiff_out);
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  int64_t records = 1000000;
  int runs = 3;
  std::string dir;
  Mix mix;
  if (!envsync::bench::FlagsHaveValues(
          argc, argv, "compare_bench [--records N] [--dir DIR] [--runs R] [--mix M,A,D]")) {
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
    } else if (flag == "--mix") {
      if (!ParseMix(argv[i + 1], &mix)) {
        fmt::print(stderr,
                   "compare_bench: --mix {}: expected three percentages of N, modified,new,"
                   "deleted (e.g. 1,0.5,0.5)\n",
                   argv[i + 1]);
        return 2;
      }
    } else {
      fmt::print(stderr, "compare_bench: unknown flag {}\n", flag);
      return 2;
    }
  }
  if (records < 1) {
    fmt::print(stderr, "compare_bench: --records must be at least 1\n");
    return 2;
  }
  const Counts edits{0, std::llround(records * mix.added / 100),
                     std::llround(records * mix.modified / 100),
                     std::llround(records * mix.deleted / 100)};
  if (edits.modified + edits.deleted > EligibleCount(records)) {
    fmt::print(stderr,
               "compare_bench: the mix edits and deletes {} bulk pages; the demo leaves only {} "
               "alone\n",
               edits.modified + edits.deleted, EligibleCount(records));
    return 2;
  }
  if (dir.empty()) dir = fmt::format("build/bench-{}", records);
  const std::string envsync = ENVSYNC_BINARY;
  const fs::path root = fs::absolute(dir);
  const fs::path pristine = root / "pristine";
  const fs::path config = root / "envsync.toml";
  const fs::path state = root / "state.db";
  const fs::path made_for = pristine / "records";
  const char* const kPairFiles[] = {"prod.db", "test.db", "state.db"};

  // The demo, made once per N and kept pristine.
  int64_t pristine_records = -1;
  std::ifstream(made_for) >> pristine_records;
  bool made = pristine_records == records && fs::exists(config);
  for (const char* name : kPairFiles) made = made && fs::exists(pristine / name);
  if (!made) {
    // Only what `demo init` and this bench make is removed: DIR may hold other files.
    for (const char* name :
         {"envsync.toml", "prod.db", "test.db", "state.db", "state.db-wal", "state.db-shm",
          "state.db.lock", "demo-login.txt", "prod-assets", "test-assets", "pristine",
          "bench-first.toml", "bench-first-state.db", "bench-first-state.db-wal",
          "bench-first-state.db-shm", "bench-first-state.db.lock", "bench-compare.json",
          "bench-sqldiff.sql", "bench-earlier-state.db"}) {
      fs::remove_all(root / name);
    }
    fmt::print("making the demo pair: envsync demo init {} --records {}\n", root.string(), records);
    Sample init = RunProcess(
        {envsync, "demo", "init", root.string(), "--records", std::to_string(records)}, "");
    if (init.exit_code != 0) {
      fmt::print(stderr, "compare_bench: demo init failed ({})\n", init.exit_code);
      return 1;
    }
    fmt::print("  made in {:.1f} s\n", init.seconds);
    if (!Checkpoint(state)) return 1;
    fs::create_directories(pristine);
    for (const char* name : kPairFiles) {
      if (!RestoreFile(root / name, pristine / name)) return 1;
    }
    std::ofstream(made_for) << records << '\n';
  } else {
    for (const char* name : kPairFiles) {
      if (!RestoreFile(pristine / name, root / name)) return 1;
    }
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
  const std::vector<std::string> everyday = {
      envsync, "--config", config.string(), "compare", "--from", "TEST", "--to", "PROD", "--json"};
  const std::vector<std::string> sqldiff = {"sqldiff",   "--primarykey", "--table",
                                            "cms_pages", prod,           test};

  // What the demo alone lists, then the mix on TEST, then the check that each tool lists the
  // demo's changes plus exactly the mix.
  const fs::path check_json = root / "bench-compare.json";
  const fs::path check_sql = root / "bench-sqldiff.sql";
  Counts demo_envsync, demo_sqldiff, mixed_envsync, mixed_sqldiff;
  // That first compare is also the earlier comparison the everyday compares start from (made by
  // this envsync, so the bases hold what it records, such as the rows' digests).
  const fs::path earlier = root / "bench-earlier-state.db";
  if (!ListChanges(everyday, sqldiff, check_json, check_sql, &demo_envsync, &demo_sqldiff) ||
      !Checkpoint(state) || !RestoreFile(state, earlier)) {
    return 1;
  }
  if ((edits.added > 0 || edits.modified > 0 || edits.deleted > 0) &&
      !ApplyMix(root / "test.db", root / "prod.db", records, edits)) {
    return 1;
  }
  if (!ListChanges(everyday, sqldiff, check_json, check_sql, &mixed_envsync, &mixed_sqldiff) ||
      !RestoreFile(earlier, state)) {
    return 1;
  }
  fs::remove(check_json);
  fs::remove(check_sql);
  // The edits and the JSON checks freed memory the children must not inherit (see
  // ReadCompareCounts).
  malloc_trim(0);
  fmt::print("mix on TEST: {}% of N modified ({}), {}% new ({}), {}% deleted ({})\n", mix.modified,
             edits.modified, mix.added, edits.added, mix.deleted, edits.deleted);
  const bool envsync_agrees = mixed_envsync - demo_envsync == edits;
  const bool sqldiff_agrees = mixed_sqldiff - demo_sqldiff == edits;
  fmt::print("envsync compare TEST -> PROD lists {}\n  = the demo's {}\n  + {} ({})\n",
             Describe(mixed_envsync), Describe(demo_envsync),
             Describe(mixed_envsync - demo_envsync),
             envsync_agrees ? "the mix, as expected" : "NOT the mix");
  fmt::print("sqldiff cms_pages lists {} INSERT, {} UPDATE, {} DELETE, {} other lines\n",
             mixed_sqldiff.added, mixed_sqldiff.modified, mixed_sqldiff.deleted,
             mixed_sqldiff.conflicts);
  fmt::print(
      "  = the demo's {} INSERT, {} UPDATE, {} DELETE + {} INSERT, {} UPDATE, {} DELETE ({})\n",
      demo_sqldiff.added, demo_sqldiff.modified, demo_sqldiff.deleted,
      mixed_sqldiff.added - demo_sqldiff.added, mixed_sqldiff.modified - demo_sqldiff.modified,
      mixed_sqldiff.deleted - demo_sqldiff.deleted,
      sqldiff_agrees ? "the mix, as expected" : "NOT the mix");
  if (!envsync_agrees || !sqldiff_agrees) {
    fmt::print(stderr, "compare_bench: the pair does not hold the mix; no figures\n");
    return 1;
  }

  struct Command {
    std::string name;
    std::vector<std::string> argv;
    enum class State { kNone, kPristine, kEmpty } state = State::kNone;
  };
  const std::vector<Command> commands = {
      {"floor: cat prod.db test.db", {"cat", prod, test}},
      {"sqldiff --primarykey --table cms_pages", sqldiff},
      // Timed as a user runs it: the comparison is stored for the review and a summary is
      // printed (the JSON of every change is only for the check above).
      {"envsync compare (base already recorded)",
       {envsync, "--config", config.string(), "compare", "--from", "TEST", "--to", "PROD"},
       Command::State::kPristine},
      {"envsync compare (first: records every base)",
       {envsync, "--config", fresh_config.string(), "compare", "--from", "TEST", "--to", "PROD"},
       Command::State::kEmpty},
  };
  std::map<std::string, std::vector<Sample>> samples;
  // One warm-up pass puts both files in the page cache, as on a shop's server.
  RunProcess(commands[0].argv, "");
  for (int run = 0; run < runs; ++run) {
    for (const Command& command : commands) {
      if (command.state == Command::State::kPristine) {
        if (!RestoreFile(earlier, state)) return 1;
      } else if (command.state == Command::State::kEmpty) {
        for (const char* suffix : {"", "-wal", "-shm"}) fs::remove(fresh_state.string() + suffix);
      }
      Sample sample = RunProcess(command.argv, "");
      if (sample.exit_code != 0) {
        fmt::print(stderr, "compare_bench: '{}' failed with status {}\n", command.name,
                   sample.exit_code);
        return 1;
      }
      samples[command.name].push_back(sample);
    }
  }
  // Leave the pair as the everyday compare sees it, for reproducing a figure by hand.
  if (!RestoreFile(earlier, state)) return 1;

  fmt::print("\n{} records per side, {} run(s) each, alternating; wall time in seconds\n", records,
             runs);
  fmt::print("{:<46} {:>8} {:>8} {:>8} {:>11}\n", "command", "median", "min", "max", "peak RSS");
  std::map<std::string, double> medians;
  std::map<std::string, long> peaks_mib;
  for (const Command& command : commands) {
    std::vector<double> seconds;
    long peak = 0;
    for (const Sample& s : samples[command.name]) {
      seconds.push_back(s.seconds);
      peak = std::max(peak, s.peak_kib);
    }
    medians[command.name] = Median(seconds);
    peaks_mib[command.name] = peak / 1024;
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
  const double ratio = medians[commands[2].name] / peer;
  const long peak_mib = peaks_mib[commands[2].name];
  fmt::print(
      "issue 7 targets, everyday compare: {:.2f}x sqldiff (<= {:.1f}x) {}; peak RSS {} MiB "
      "(<= {} MiB) {}\n",
      ratio, kTargetSqldiffRatio, ratio <= kTargetSqldiffRatio ? "met" : "NOT met", peak_mib,
      kTargetPeakMib, peak_mib <= kTargetPeakMib ? "met" : "NOT met");
  return 0;
}
