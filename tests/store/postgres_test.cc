// PostgreSQL environments against a real server (scripts/with-postgres starts one and sets
// $ENVSYNC_TEST_PG): the compare gives the same result on SQLite/SQLite, PostgreSQL/PostgreSQL
// and both mixes; a sync on PostgreSQL gives the same target as on SQLite and moves the identity
// sequences; and the faults: a server that is down, a wrong password, a connection dropped in
// the middle of an apply.
#include <arpa/inet.h>
#include <fmt/format.h>
#include <libpq-fe.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <csignal>
#include <thread>

#include "envsync/store/environment.h"
#include "tests/store/pg_support.h"
#include "tests/sync/compare_test_support.h"

namespace envsync::testing {
namespace {

using nlohmann::json;

class PostgresTest : public DemoEnvironments {
 protected:
  void SetUp() override {
    ENVSYNC_REQUIRE_POSTGRES();
    DemoEnvironments::SetUp();
    static int counter = 0;
    prefix_ = "envsync_" + std::to_string(getpid()) + "_" + std::to_string(counter++);
  }
  void TearDown() override {
    if (ServerUri().empty()) return;
    Pg admin(ServerUri());
    for (const std::string& db : created_) {
      admin.Run("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1", {db});
      admin.Run("DROP DATABASE IF EXISTS " + db);
    }
    DemoEnvironments::TearDown();
  }

  std::string CopyToPostgres(const std::filesystem::path& from, const std::string& name) {
    const std::string db = prefix_ + "_" + name;
    created_.push_back(db);
    return CopySqliteToPostgres(from, db);
  }

  // A config beside the demo's with the given databases and its own copy of the demo's state.
  // With `own_assets`, the config gets its own copy of both assets folders (a sync moves files).
  std::filesystem::path Config(const std::string& name, const std::string& prod,
                               const std::string& test, bool own_assets = false,
                               const std::filesystem::path& state_from = {}) {
    const std::filesystem::path state = dir_ / (name + "-state.db");
    std::filesystem::copy_file(state_from.empty() ? paths_.state : state_from, state,
                               std::filesystem::copy_options::overwrite_existing);
    std::filesystem::path prod_assets = paths_.prod_assets;
    std::filesystem::path test_assets = paths_.test_assets;
    if (own_assets) {
      prod_assets = dir_ / (name + "-prod-assets");
      test_assets = dir_ / (name + "-test-assets");
      std::filesystem::copy(paths_.prod_assets, prod_assets,
                            std::filesystem::copy_options::recursive);
      std::filesystem::copy(paths_.test_assets, test_assets,
                            std::filesystem::copy_options::recursive);
    }
    const std::filesystem::path config = dir_ / (name + ".toml");
    WriteBytes(config, "home = \"PROD\"\nstate = \"" + state.string() +
                           "\"\n[environments.PROD]\ndatabase = \"" + prod + "\"\nassets = \"" +
                           prod_assets.string() + "\"\n[environments.TEST]\ndatabase = \"" + test +
                           "\"\nassets = \"" + test_assets.string() + "\"\n");
    return config;
  }

  // PROD's synchronized tables on PostgreSQL, without the column a sync sets to now.
  static std::string PgProd(const std::string& uri) {
    Pg pg(uri);
    std::string out;
    for (const char* table : {"gallery_folders", "gallery_files", "cms_pages", "sliders", "slides",
                              "menus", "menu_items", "content_blocks", "system_settings"}) {
      out += table + std::string(": ") +
             pg.Run(std::string("SELECT string_agg(x, ',' ORDER BY x) FROM (SELECT (to_jsonb(r) - "
                                "'updated_at')::text AS x FROM ") +
                    table + " r) s");
    }
    return out;
  }

  CliRun Cli(const std::filesystem::path& config, std::vector<std::string> args) {
    args.insert(args.begin(), {"--config", config.string()});
    return RunCli(args);
  }

  // The comparison without what differs from run to run.
  static json Stable(json comparison) {
    comparison.erase("comparison_id");
    comparison.erase("created_at");
    return comparison;
  }

  std::string prefix_;
  std::vector<std::string> created_;
};

// One compare, four engine mixes, the same answer.
TEST_F(PostgresTest, CompareIsTheSameOnEveryMixOfEngines) {
  Build(Start::kPendingWork);
  const std::string prod_pg = CopyToPostgres(paths_.prod_db, "prod");
  const std::string test_pg = CopyToPostgres(paths_.test_db, "test");
  const std::map<std::string, std::pair<std::string, std::string>> mixes = {
      {"sqlite", {paths_.prod_db.string(), paths_.test_db.string()}},
      {"postgres", {prod_pg, test_pg}},
      {"prod-pg", {prod_pg, paths_.test_db.string()}},
      {"test-pg", {paths_.prod_db.string(), test_pg}}};
  std::map<std::string, json> results;
  for (const auto& [name, dbs] : mixes) {
    for (const char* direction : {"TEST>PROD", "PROD>TEST"}) {
      const std::string from = std::string(direction).substr(0, 4);
      const std::string to = std::string(direction).substr(5);
      CliRun run = Cli(Config(name, dbs.first, dbs.second),
                       {"compare", "--from", from, "--to", to, "--json"});
      ASSERT_EQ(run.exit_code, 0) << name << ": " << run.err;
      results[name + direction] = Stable(run.Json());
    }
  }
  EXPECT_GT(results["sqliteTEST>PROD"]["changes"].size(), 10u);
  for (const char* direction : {"TEST>PROD", "PROD>TEST"}) {
    for (const char* name : {"postgres", "prod-pg", "test-pg"}) {
      EXPECT_EQ(results[std::string(name) + direction], results[std::string("sqlite") + direction])
          << name << " " << direction;
    }
  }
}

// A sync into PostgreSQL writes what the same sync writes into SQLite, and moves the identity
// sequence past the IDs it inserted, so the platform's next insert does not collide.
TEST_F(PostgresTest, SyncIntoPostgresMatchesSqliteAndMovesSequences) {
  Build(Start::kPendingWork);
  const std::string prod_pg = CopyToPostgres(paths_.prod_db, "prod");
  const std::string test_pg = CopyToPostgres(paths_.test_db, "test");
  const std::vector<std::string> resolve = {"--resolve", "cms_pages:3=merge", "--resolve",
                                            "cms_pages:20=insert_as_new"};
  std::map<std::string, json> after;
  for (const auto& [name, prod, test] :
       {std::tuple{std::string("sqlite"), paths_.prod_db.string(), paths_.test_db.string()},
        std::tuple{std::string("postgres"), prod_pg, test_pg}}) {
    const auto config = Config(name, prod, test);
    CliRun compared = Cli(config, {"compare", "--from", "TEST", "--to", "PROD", "--json"});
    ASSERT_EQ(compared.exit_code, 0) << compared.err;
    std::vector<std::string> args = {"sync", compared.Json()["comparison_id"], "--json"};
    args.insert(args.end(), resolve.begin(), resolve.end());
    CliRun synced = Cli(config, args);
    ASSERT_EQ(synced.exit_code, 0) << name << ": " << synced.err << synced.out;
    EXPECT_EQ(synced.Json()["applied"], (json{{"new", 4}, {"modified", 5}, {"deleted", 1}}))
        << name;
    CliRun again = Cli(config, {"compare", "--from", "TEST", "--to", "PROD", "--json"});
    ASSERT_EQ(again.exit_code, 0) << again.err;
    after[name] = Stable(again.Json());
    if (name == "sqlite") {
      // The SQLite run changed the demo files the PostgreSQL copies were made from; the assets
      // it moved are put back by undo, so the PostgreSQL run starts from the same files.
      CliRun undone = Cli(config, {"undo", synced.Json()["sync_id"]});
      ASSERT_EQ(undone.exit_code, 0) << undone.err;
    }
  }
  // The same records left to review on both; a new row gets an ID past every synced one.
  json sqlite_changes = after["sqlite"]["changes"];
  json pg_changes = after["postgres"]["changes"];
  ASSERT_EQ(pg_changes.size(), sqlite_changes.size());
  for (size_t i = 0; i < pg_changes.size(); ++i) {
    EXPECT_EQ(pg_changes[i]["table"], sqlite_changes[i]["table"]);
    EXPECT_EQ(pg_changes[i]["tab"], sqlite_changes[i]["tab"]);
    EXPECT_EQ(pg_changes[i]["key"], sqlite_changes[i]["key"]);
  }
  Pg pg(prod_pg);
  const std::string max_id = pg.Run("SELECT max(id) FROM cms_pages");
  const std::string next = pg.Run(
      "INSERT INTO cms_pages (slug, title, body_html, status, updated_at) VALUES "
      "('platform-new', 't', 'b', 'draft', 'now') RETURNING id");
  EXPECT_GT(std::stoll(next), std::stoll(max_id)) << "the sequence was moved past the sync's IDs";
}

// A server that is down: the error names the environment and the server, exit 1.
TEST_F(PostgresTest, ServerDownIsNamed) {
  Build(Start::kCommonWithBase);
  const auto config = Config("down", "postgresql://postgres:envsync-test@127.0.0.1:1/shop",
                             paths_.test_db.string());
  CliRun run = Cli(config, {"compare", "--from", "TEST", "--to", "PROD"});
  EXPECT_EQ(run.exit_code, 1);
  EXPECT_NE(run.err.find("environment PROD"), std::string::npos) << run.err;
  EXPECT_NE(run.err.find("127.0.0.1"), std::string::npos) << run.err;
  EXPECT_EQ(run.err.find("envsync-test"), std::string::npos) << "the password is never shown";
}

// A wrong password is reported without the password.
// A compare whose source cannot be opened says so at once, even while the target's server
// does not answer: here a listening socket that never replies (no connect timeout would end
// the wait for 10 s).
TEST_F(PostgresTest, SourceErrorIsReportedWithoutWaitingForTheTarget) {
  Build(Start::kPendingWork);
  const int silent = ::socket(AF_INET, SOCK_STREAM, 0);
  ASSERT_GE(silent, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::bind(silent, reinterpret_cast<sockaddr*>(&address), sizeof address), 0);
  ASSERT_EQ(::listen(silent, 4), 0);
  socklen_t length = sizeof address;
  ASSERT_EQ(::getsockname(silent, reinterpret_cast<sockaddr*>(&address), &length), 0);
  const std::string hanging = fmt::format(
      "postgresql://envsync:secret@127.0.0.1:{}/shop?connect_timeout=10", ntohs(address.sin_port));
  const std::filesystem::path config =
      Config("silent", hanging, (dir_ / "no-such-test.db").string());

  const auto started = std::chrono::steady_clock::now();
  CliRun run = Cli(config, {"compare", "--from", "TEST", "--to", "PROD"});
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  EXPECT_NE(run.exit_code, 0);
  EXPECT_NE(run.err.find("no-such-test.db"), std::string::npos) << run.err;
  EXPECT_LT(seconds, 5.0) << run.err;
  ::close(silent);  // the target's open, still waiting, now ends
}

TEST_F(PostgresTest, BadCredentialsAreReportedWithoutThePassword) {
  Build(Start::kCommonWithBase);
  std::string uri = DatabaseUri("postgres");
  uri.replace(uri.find(":envsync-test@"), 14, ":n0t-the-Pa55word@");
  CliRun run = Cli(Config("badpw", uri, paths_.test_db.string()),
                   {"compare", "--from", "TEST", "--to", "PROD"});
  EXPECT_EQ(run.exit_code, 1);
  EXPECT_NE(run.err.find("password authentication failed"), std::string::npos) << run.err;
  EXPECT_EQ(run.err.find("n0t-the-Pa55word"), std::string::npos) << run.err;
  EXPECT_NE(run.err.find("***"), std::string::npos) << run.err;
}

// The target's connection dropped in the middle of the apply (its backend terminated from a
// second connection): the sync fails, and the target is exactly as before.
TEST_F(PostgresTest, ConnectionDroppedMidApplyLeavesTheTargetUnchanged) {
  Build(Start::kPendingWork);
  const std::string prod_pg = CopyToPostgres(paths_.prod_db, "prod");
  const std::string test_pg = CopyToPostgres(paths_.test_db, "test");
  const auto config = Config("drop", prod_pg, test_pg);
  CliRun compared = Cli(config, {"compare", "--from", "TEST", "--to", "PROD", "--json"});
  ASSERT_EQ(compared.exit_code, 0) << compared.err;
  Pg watcher(prod_pg);
  const char* dump_sql =
      "SELECT string_agg(t::text, ',' ORDER BY t::text) FROM (SELECT * FROM cms_pages) t "
      "UNION ALL SELECT string_agg(t::text, ',' ORDER BY t::text) FROM (SELECT * FROM menus) t "
      "UNION ALL SELECT string_agg(t::text, ',' ORDER BY t::text) FROM (SELECT * FROM "
      "gallery_files) t";
  const std::string before = watcher.Run(dump_sql);
  const std::filesystem::path paused = dir_ / "paused";
  const pid_t child = fork();
  if (child == 0) {
    setenv("ENVSYNC_PAUSE_AT", "applied", 1);
    setenv("ENVSYNC_PAUSE_FILE", paused.c_str(), 1);
    if (!freopen((dir_ / "sync.out").c_str(), "w", stdout) ||
        !freopen((dir_ / "sync.err").c_str(), "w", stderr)) {
      _exit(126);
    }
    const std::string id = compared.Json()["comparison_id"];
    execl(ENVSYNC_BINARY, ENVSYNC_BINARY, "--config", config.c_str(), "sync", id.c_str(),
          static_cast<char*>(nullptr));
    _exit(127);
  }
  for (int i = 0; i < 600 && !std::filesystem::exists(paused); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  ASSERT_TRUE(std::filesystem::exists(paused)) << ReadBytes(dir_ / "sync.err");
  // The sync's writes are in its open transaction: end its backend.
  const std::string ended = watcher.Run(
      "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = "
      "current_database() AND pid <> pg_backend_pid() AND state <> 'idle'");
  EXPECT_EQ(ended, "1|\n");
  int status = 0;
  waitpid(child, &status, 0);
  const std::string err = ReadBytes(dir_ / "sync.out") + ReadBytes(dir_ / "sync.err");
  EXPECT_NE(WEXITSTATUS(status), 0) << err;
  EXPECT_NE(err.find("FAILURE"), std::string::npos) << err;
  EXPECT_NE(err.find("environment PROD"), std::string::npos) << err;
  EXPECT_EQ(watcher.Run(dump_sql), before) << "the target changed";
  CliRun history = Cli(config, {"history", "--json"});
  ASSERT_EQ(history.exit_code, 0) << history.err;
  EXPECT_EQ(history.Json().back()["status"], "failure");
}

// The platform holds a row lock the sync needs: the sync waits the bounded lock timeout, fails
// with a message that says so, and writes nothing.
TEST_F(PostgresTest, LockedTargetRowFailsAfterTheLockTimeout) {
  Build(Start::kPendingWork);
  const std::string prod_pg = CopyToPostgres(paths_.prod_db, "prod");
  const std::string test_pg = CopyToPostgres(paths_.test_db, "test");
  const auto config = Config("locked", prod_pg, test_pg);
  CliRun compared = Cli(config, {"compare", "--from", "TEST", "--to", "PROD", "--json"});
  ASSERT_EQ(compared.exit_code, 0) << compared.err;
  Pg platform(prod_pg);
  platform.Run("BEGIN");
  platform.Run("UPDATE cms_pages SET title = title WHERE id = 2");  // cms_pages:2 is modified
  const std::string before =
      platform.Run("SELECT string_agg(title, ',' ORDER BY id) FROM cms_pages");
  const auto started = std::chrono::steady_clock::now();
  CliRun synced = Cli(config, {"sync", compared.Json()["comparison_id"]});
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  platform.Run("ROLLBACK");
  EXPECT_NE(synced.exit_code, 0);
  EXPECT_NE((synced.out + synced.err).find("stayed locked"), std::string::npos)
      << synced.out << synced.err;
  EXPECT_GE(seconds, 4.5);
  EXPECT_LT(seconds, 30);
  EXPECT_EQ(platform.Run("SELECT string_agg(title, ',' ORDER BY id) FROM cms_pages"), before);
}

// kill -9 of a sync into PostgreSQL before its commit and after it: the next command finds the
// target exactly as before, or exactly as a clean sync leaves it.
TEST_F(PostgresTest, KilledSyncIntoPostgresEndsBeforeOrAfter) {
  Build(Start::kPendingWork);
  // A clean sync on its own copy gives the "after".
  const std::string clean_prod = CopyToPostgres(paths_.prod_db, "clean_prod");
  const std::string clean_test = CopyToPostgres(paths_.test_db, "clean_test");
  const auto clean = Config("clean", clean_prod, clean_test, /*own_assets=*/true);
  CliRun compared = Cli(clean, {"compare", "--from", "TEST", "--to", "PROD", "--json"});
  ASSERT_EQ(compared.exit_code, 0) << compared.err;
  const std::string id = compared.Json()["comparison_id"];
  const std::string before = PgProd(clean_prod);
  const std::filesystem::path compared_state = dir_ / "compared-state.db";
  std::filesystem::copy_file(dir_ / "clean-state.db", compared_state);
  ASSERT_EQ(Cli(clean, {"sync", id}).exit_code, 0);
  const std::string after = PgProd(clean_prod);
  ASSERT_NE(after, before);

  for (const auto& [point, committed] :
       {std::pair{"applied", false}, std::pair{"committed", true}}) {
    SCOPED_TRACE(point);
    const std::string name = std::string("killed_") + point;
    const std::string prod = CopyToPostgres(paths_.prod_db, name + "_prod");
    const std::string test = CopyToPostgres(paths_.test_db, name + "_test");
    const auto config = Config(name, prod, test, /*own_assets=*/true, compared_state);
    const pid_t child = fork();
    if (child == 0) {
      setenv("ENVSYNC_CRASH_AT", point, 1);
      if (!freopen("/dev/null", "w", stdout) || !freopen("/dev/null", "w", stderr)) _exit(126);
      execl(ENVSYNC_BINARY, ENVSYNC_BINARY, "--config", config.c_str(), "sync", id.c_str(),
            static_cast<char*>(nullptr));
      _exit(127);
    }
    int status = 0;
    waitpid(child, &status, 0);
    ASSERT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL) << "not killed at " << point;
    CliRun history = Cli(config, {"history", "--json"});  // settles the interrupted sync
    ASSERT_EQ(history.exit_code, 0) << history.err;
    EXPECT_EQ(history.Json().back()["status"], committed ? "success" : "failure");
    EXPECT_EQ(PgProd(prod), committed ? after : before);
  }
}

// The bytes a compare read from the database servers, from its summary line ("read N bytes").
int64_t BytesRead(const CliRun& run) {
  const size_t at = run.err.find("; read ");
  if (at == std::string::npos) return -1;
  int64_t n = 0;
  for (size_t i = at + 7; i < run.err.size() && run.err[i] != ' '; ++i) {
    if (std::isdigit(static_cast<unsigned char>(run.err[i]))) n = n * 10 + (run.err[i] - '0');
  }
  return n;
}

// Both sides on PostgreSQL: once a compare has recorded what the servers digest of each equal
// record, the next one reads only the buckets and rows that changed since, and its answer is
// the same as reading everything (ENVSYNC_REMOTE_DIGESTS=0) from the same state: edits on each
// side, a child row, an insert, a delete, and the same edit made on both sides (whose base must
// move, so a later one-sided edit is "modified", not a conflict).
TEST_F(PostgresTest, DigestCompareReadsOnlyWhatChangedAndAgreesWithAFullRead) {
  Build(Start::kPendingWork);
  const std::string prod = CopyToPostgres(paths_.prod_db, "prod");
  const std::string test = CopyToPostgres(paths_.test_db, "test");
  // 3,000 more pages on each side, equal, so the pages outweigh what every compare reads anyway
  // (the schema, the gallery, the listed records).
  for (const std::string& uri : {prod, test}) {
    Pg(uri).Run(
        "INSERT INTO cms_pages (id, slug, title, body_html, status, updated_at) SELECT g, "
        "'bulk-' || g, 'Bulk ' || g, repeat('Lorem ipsum ', 90), 'published', 'now' FROM "
        "generate_series(1000, 3999) g");
  }
  const std::filesystem::path config = Config("digests", prod, test);
  const std::filesystem::path state = dir_ / "digests-state.db";
  const std::vector<std::string> compare = {"compare", "--from", "TEST", "--to", "PROD", "--json"};
  auto full_read_from_here = [&](const std::string& name) {
    const std::filesystem::path full = Config(name, prod, test, false, state);
    setenv("ENVSYNC_REMOTE_DIGESTS", "0", 1);
    CliRun run = Cli(full, compare);
    unsetenv("ENVSYNC_REMOTE_DIGESTS");
    return run;
  };

  // A new state store, with nothing recorded: the rows are digested without the pass over the
  // buckets, and the result is a full read's from a new store too.
  {
    const std::filesystem::path fresh = Config("fresh", prod, test);
    const std::filesystem::path fresh_full = Config("fresh-full", prod, test);
    std::filesystem::remove(dir_ / "fresh-state.db");
    std::filesystem::remove(dir_ / "fresh-full-state.db");
    CliRun digested = Cli(fresh, compare);
    setenv("ENVSYNC_REMOTE_DIGESTS", "0", 1);
    CliRun read = Cli(fresh_full, compare);
    unsetenv("ENVSYNC_REMOTE_DIGESTS");
    ASSERT_EQ(digested.exit_code, 0) << digested.err;
    ASSERT_EQ(read.exit_code, 0) << read.err;
    EXPECT_EQ(Stable(digested.Json()), Stable(read.Json()));
  }

  CliRun whole = full_read_from_here("whole-1");
  CliRun first = Cli(config, compare);
  ASSERT_EQ(first.exit_code, 0) << first.err;
  EXPECT_EQ(Stable(first.Json()), Stable(whole.Json()));
  CliRun second = Cli(config, compare);
  ASSERT_EQ(second.exit_code, 0) << second.err;
  EXPECT_EQ(Stable(second.Json()), Stable(first.Json()));
  EXPECT_GT(BytesRead(whole), 0) << whole.err;
  EXPECT_LT(BytesRead(second), BytesRead(whole) / 10) << second.err << whole.err;

  Pg(prod).Run("UPDATE cms_pages SET title = 'Returns (PROD)' WHERE id = 6");
  Pg(test).Run("UPDATE slides SET caption = 'Beach time' WHERE id = 3");
  Pg(test).Run("UPDATE menu_items SET label = 'Jobs' WHERE id = 7");
  Pg(test).Run("INSERT INTO menus (id, code, name) VALUES (40, 'promo', 'Promo')");
  Pg(test).Run("DELETE FROM content_blocks WHERE id = 1");
  Pg(prod).Run("UPDATE cms_pages SET title = 'Same on both' WHERE id IN (7, 2500)");
  Pg(test).Run("UPDATE cms_pages SET title = 'Same on both' WHERE id IN (7, 2500)");
  Pg(test).Run("UPDATE cms_pages SET body_html = 'TEST only' WHERE id = 3100");
  CliRun full = full_read_from_here("whole-2");
  CliRun third = Cli(config, compare);
  ASSERT_EQ(third.exit_code, 0) << third.err;
  ASSERT_EQ(full.exit_code, 0) << full.err;
  EXPECT_EQ(Stable(third.Json()), Stable(full.Json()));
  EXPECT_NE(Stable(third.Json()), Stable(second.Json()));
  EXPECT_LT(BytesRead(third), BytesRead(full) / 10) << third.err << full.err;

  // Page 2500 is equal on both sides again: its base moved, so TEST's next edit is TEST's alone.
  Pg(test).Run("UPDATE cms_pages SET title = 'TEST again' WHERE id = 2500");
  // Two rows of one bucket swap a value: each row's digest changes, and so does the bucket's.
  Pg(prod).Run(
      "UPDATE cms_pages SET title = CASE id WHEN 1200 THEN 'Bulk 1201' ELSE 'Bulk 1200' END "
      "WHERE id IN (1200, 1201)");
  full = full_read_from_here("whole-3");
  CliRun fourth = Cli(config, compare);
  ASSERT_EQ(fourth.exit_code, 0) << fourth.err;
  EXPECT_EQ(Stable(fourth.Json()), Stable(full.Json()));
  json page;
  int swapped = 0;
  const json listed = fourth.Json();
  for (const json& change : listed["changes"]) {
    if (change["table"] == "cms_pages" && change["source_id"] == 2500) page = change;
    if (change["table"] == "cms_pages" &&
        (change["target_id"] == 1200 || change["target_id"] == 1201)) {
      ++swapped;
    }
  }
  EXPECT_EQ(swapped, 2) << fourth.out;
  EXPECT_EQ(page.is_object() ? page.value("tab", "") : "", "modified") << page.dump();
}

// A whole-table read streams through a cursor whose next FETCH is sent while the rows before
// are being read (PgRowCursor): every row comes back once and in order across the growing
// batches, while other statements run on the same connection between two rows (a second cursor
// read whole, a point read), and a cursor dropped with a FETCH still in flight leaves the
// connection usable.
TEST_F(PostgresTest, CursorReadsAheadAndSharesItsConnection) {
  const std::string db = prefix_ + "_cursor";
  created_.push_back(db);
  Pg(ServerUri()).Run("CREATE DATABASE " + db);
  constexpr int kRows = 25000;  // past the batches of 1,000, 2,000, 4,000, 8,000 and 10,000 rows
  Pg(DatabaseUri(db))
      .Run(
          "CREATE TABLE pages (id bigint PRIMARY KEY, body text NOT NULL); INSERT INTO pages "
          "SELECT g, 'page ' || g FROM generate_series(1, " +
          std::to_string(kRows) + ") g");
  std::filesystem::create_directories(dir_);  // its assets folder
  auto env = store::OpenEnvironment(EnvironmentConfig{"TEST", DatabaseUri(db), dir_.string()});
  ASSERT_TRUE(env.ok()) << env.status().message();
  store::Environment& pg = **env;
  ASSERT_TRUE(pg.BeginSnapshot().ok());
  store::ScanRequest all;
  all.table = "pages";
  all.columns = {"id", "body"};
  all.order_by = {"id"};

  auto first = pg.Scan(all);
  ASSERT_TRUE(first.ok()) << first.status().message();
  std::vector<Value> row;
  int64_t expected = 0;
  while ((*first)->Next(&row)) {
    ++expected;
    ASSERT_EQ(row, (std::vector<Value>{expected, "page " + std::to_string(expected)}));
    if (expected == 1500 || expected == 7777) {
      // A FETCH of the first cursor is in flight: a second cursor read whole, and a point read.
      auto second = pg.Scan(all);
      ASSERT_TRUE(second.ok()) << second.status().message();
      int64_t rows = 0;
      std::vector<Value> other;
      while ((*second)->Next(&other)) ++rows;
      EXPECT_TRUE((*second)->status().ok()) << (*second)->status().message();
      EXPECT_EQ(rows, kRows);
      store::ScanRequest one = all;
      one.equals = {{"id", int64_t{4242}}};
      auto point = pg.Scan(one);
      ASSERT_TRUE(point.ok()) << point.status().message();
      ASSERT_TRUE((*point)->Next(&other));
      EXPECT_EQ(other, (std::vector<Value>{int64_t{4242}, "page 4242"}));
    }
  }
  EXPECT_TRUE((*first)->status().ok()) << (*first)->status().message();
  EXPECT_EQ(expected, kRows);

  // Dropped after its first batch, with the next one asked for and not read.
  auto dropped = pg.Scan(all);
  ASSERT_TRUE(dropped.ok()) << dropped.status().message();
  ASSERT_TRUE((*dropped)->Next(&row));
  dropped->reset();
  auto after = pg.Scan(all);
  ASSERT_TRUE(after.ok()) << after.status().message();
  int64_t rows = 0;
  while ((*after)->Next(&row)) ++rows;
  EXPECT_TRUE((*after)->status().ok()) << (*after)->status().message();
  EXPECT_EQ(rows, kRows);
  EXPECT_TRUE(pg.EndSnapshot().ok());
}

// The platform's tables in a schema whose name is quoted ("Shop", not folded to shop): the
// schema's columns are read and tracking is enabled and removed there, found by its name.
TEST_F(PostgresTest, TrackingInAMixedCaseSchemaIsEnabledAndRemoved) {
  Build(Start::kPendingWork);
  const std::string db = prefix_ + "_mixed";
  created_.push_back(db);
  Pg(ServerUri()).Run("CREATE DATABASE " + db);
  Pg shop(DatabaseUri(db));
  shop.Run("CREATE SCHEMA \"Shop\"; SET search_path = \"Shop\"; " +
           ReadBytes(std::filesystem::path(ENVSYNC_SOURCE_DIR) / "data/schema.postgres.sql"));
  // search_path="Shop", quoted, as a libpq option.
  const std::string uri = DatabaseUri(db) + "?options=-csearch_path%3D%5C%22Shop%5C%22";
  const std::filesystem::path config = Config("mixed", paths_.prod_db.string(), uri);
  const std::string envsync_objects =
      "SELECT (SELECT count(*) FROM pg_trigger g JOIN pg_class c ON c.oid = g.tgrelid JOIN "
      "pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'Shop' AND g.tgname LIKE "
      "'envsync_track_%') + (SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = "
      "c.relnamespace WHERE n.nspname = 'Shop' AND c.relname LIKE 'envsync_%')";

  CliRun enabled = Cli(config, {"track", "enable", "TEST"});
  ASSERT_EQ(enabled.exit_code, 0) << enabled.err;
  EXPECT_NE(shop.Run(envsync_objects), "0|\n");
  CliRun compared = Cli(config, {"compare", "--from", "TEST", "--to", "PROD"});
  EXPECT_EQ(compared.exit_code, 0) << compared.err;
  CliRun disabled = Cli(config, {"track", "disable", "TEST"});
  ASSERT_EQ(disabled.exit_code, 0) << disabled.err;
  EXPECT_EQ(shop.Run(envsync_objects), "0|\n");

  // envsync's state in a quoted schema of its own: `doctor` checks its indexes there.
  const std::string state_db = prefix_ + "_mixed_state";
  created_.push_back(state_db);
  Pg(ServerUri()).Run("CREATE DATABASE " + state_db);
  Pg(DatabaseUri(state_db)).Run("CREATE SCHEMA \"State\"");
  const std::string state_uri =
      DatabaseUri(state_db) + "?options=-csearch_path%3D%5C%22State%5C%22";
  const std::filesystem::path with_state = dir_ / "mixed-state.toml";
  WriteBytes(with_state, "home = \"PROD\"\nstate = \"" + state_uri +
                             "\"\n[environments.PROD]\ndatabase = \"" + paths_.prod_db.string() +
                             "\"\nassets = \"" + paths_.prod_assets.string() +
                             "\"\n[environments.TEST]\ndatabase = \"" + uri + "\"\nassets = \"" +
                             paths_.test_assets.string() + "\"\n");
  CliRun doctor = Cli(with_state, {"doctor"});
  EXPECT_EQ(doctor.exit_code, 0) << doctor.out << doctor.err;
  EXPECT_NE(doctor.out.find("everything is sound"), std::string::npos) << doctor.out;
}

// Change tracking with both sides on PostgreSQL: after one compare has marked where both logs
// stood, every compare reads only what the logs list and what was unequal, and gives what a full
// read of the same state gives: edits on each side and to child rows, an insert, a delete, an ID
// changed by an UPDATE, and a write that was still uncommitted while a compare ran (PostgreSQL
// commits out of transaction-ID order: the next compare must see it). A TRUNCATE and a disabled
// trigger make the table read whole; `track disable` leaves nothing behind.
TEST_F(PostgresTest, TrackedCompareReadsTheLogsAndAgreesWithAFullRead) {
  Build(Start::kPendingWork);
  const std::string prod = CopyToPostgres(paths_.prod_db, "prod");
  const std::string test = CopyToPostgres(paths_.test_db, "test");
  for (const std::string& uri : {prod, test}) {
    Pg(uri).Run(
        "INSERT INTO cms_pages (id, slug, title, body_html, status, updated_at) SELECT g, "
        "'bulk-' || g, 'Bulk ' || g, repeat('Lorem ipsum ', 20), 'published', 'now' FROM "
        "generate_series(1000, 2999) g");
  }
  const std::filesystem::path config = Config("tracked", prod, test);
  const std::filesystem::path state = dir_ / "tracked-state.db";
  for (const char* env : {"PROD", "TEST"}) {
    CliRun enabled = Cli(config, {"track", "enable", env});
    ASSERT_EQ(enabled.exit_code, 0) << enabled.err;
    EXPECT_NE(enabled.out.find("cms_pages, sliders, menus, content_blocks"), std::string::npos)
        << enabled.out;
  }
  const std::vector<std::string> compare = {"compare", "--from", "TEST", "--to", "PROD", "--json"};
  int fulls = 0;
  auto full_read_from_here = [&] {
    const std::filesystem::path full =
        Config("full-" + std::to_string(++fulls), prod, test, false, state);
    setenv("ENVSYNC_TRACKING", "0", 1);
    setenv("ENVSYNC_REMOTE_DIGESTS", "0", 1);
    CliRun run = Cli(full, compare);
    unsetenv("ENVSYNC_REMOTE_DIGESTS");
    unsetenv("ENVSYNC_TRACKING");
    EXPECT_EQ(run.exit_code, 0) << run.err;
    return run;
  };
  // What a compare lists, without what differs with how much was read (and the warnings only
  // a compare with tracking gives, checked on their own).
  auto listed = [](const CliRun& run) {
    json j = Stable(run.Json());
    j.erase("records_compared");
    j.erase("warnings");
    return j;
  };
  const std::string via_logs = "read through the change logs (envsync track): cms_pages";

  CliRun first = Cli(config, compare);
  ASSERT_EQ(first.exit_code, 0) << first.err;
  EXPECT_EQ(first.err.find(via_logs), std::string::npos) << "the first compare reads whole";

  Pg(prod).Run("UPDATE cms_pages SET title = 'Returns (PROD)' WHERE id = 6");
  Pg(test).Run("UPDATE slides SET caption = 'Beach time' WHERE id = 3");
  Pg(test).Run("UPDATE menu_items SET label = 'Jobs' WHERE id = 7");
  Pg(test).Run("INSERT INTO menus (id, code, name) VALUES (40, 'promo', 'Promo')");
  Pg(test).Run("DELETE FROM content_blocks WHERE id = 1");
  Pg(test).Run("UPDATE cms_pages SET id = 5000 WHERE id = 2100");
  Pg(prod).Run("UPDATE cms_pages SET title = 'Same on both' WHERE id = 2500");
  Pg(test).Run("UPDATE cms_pages SET title = 'Same on both' WHERE id = 2500");
  // A write that commits only after the next compare has taken its snapshot.
  Pg late(test);
  late.Run("BEGIN");
  late.Run("UPDATE cms_pages SET title = 'Committed late' WHERE id = 2700");
  CliRun full = full_read_from_here();
  CliRun second = Cli(config, compare);
  ASSERT_EQ(second.exit_code, 0) << second.err;
  EXPECT_NE(second.err.find(via_logs), std::string::npos) << second.err;
  EXPECT_EQ(listed(second), listed(full));
  EXPECT_LT(second.Json()["records_compared"].get<int64_t>(),
            full.Json()["records_compared"].get<int64_t>() / 10);
  late.Run("COMMIT");

  full = full_read_from_here();
  CliRun third = Cli(config, compare);
  ASSERT_EQ(third.exit_code, 0) << third.err;
  EXPECT_NE(third.err.find(via_logs), std::string::npos) << third.err;
  EXPECT_EQ(listed(third), listed(full));
  bool late_listed = false;
  const json third_json = third.Json();
  for (const json& change : third_json["changes"]) {
    if (change["table"] == "cms_pages" && change["source_id"] == 2700) late_listed = true;
  }
  EXPECT_TRUE(late_listed) << third.out;

  // A TRUNCATE logs the whole table; a disabled trigger breaks its table's log.
  Pg(test).Run("TRUNCATE content_blocks");
  Pg(prod).Run("ALTER TABLE menus DISABLE TRIGGER envsync_track_menus_update");
  Pg(prod).Run("UPDATE menus SET name = 'Unlogged' WHERE id = 1");
  full = full_read_from_here();
  CliRun fourth = Cli(config, compare);
  ASSERT_EQ(fourth.exit_code, 0) << fourth.err;
  EXPECT_EQ(listed(fourth), listed(full));
  bool warned = false;
  const json fourth_json = fourth.Json();
  for (const json& warning : fourth_json["warnings"]) {
    if (warning["message"].get<std::string>().find("change tracking of menus on PROD is broken") !=
        std::string::npos) {
      warned = true;
    }
  }
  EXPECT_TRUE(warned) << fourth.out;
  CliRun status = Cli(config, {"track", "status", "PROD", "--json"});
  ASSERT_EQ(status.exit_code, 0) << status.err;
  EXPECT_EQ(status.Json()["broken"], json::array({"menus"})) << status.out;

  // Disabling leaves nothing behind.
  for (const char* env : {"PROD", "TEST"}) {
    CliRun disabled = Cli(config, {"track", "disable", env});
    ASSERT_EQ(disabled.exit_code, 0) << disabled.err;
  }
  for (const std::string& uri : {prod, test}) {
    EXPECT_EQ(Pg(uri).Run("SELECT (SELECT count(*) FROM pg_class WHERE relname LIKE 'envsync%') + "
                          "(SELECT count(*) FROM pg_proc WHERE proname LIKE 'envsync%') + "
                          "(SELECT count(*) FROM pg_trigger WHERE tgname LIKE 'envsync%')"),
              "0|\n");
  }
  CliRun after = Cli(config, compare);
  ASSERT_EQ(after.exit_code, 0) << after.err;
  EXPECT_EQ(after.err.find(via_logs), std::string::npos) << after.err;
}

}  // namespace
}  // namespace envsync::testing
