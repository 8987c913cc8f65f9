#include "envsync/core/config.h"

#include <gtest/gtest.h>

#include <string>

namespace envsync {
namespace {

constexpr char kSource[] = "envsync.toml";
constexpr char kBaseDir[] = "/srv/envsync";

bool StartsWith(const std::string& text, const std::string& prefix) {
  return text.rfind(prefix, 0) == 0;
}

bool Contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

// Parses `text` as envsync.toml in /srv/envsync and returns the error message ("" when ok).
std::string ParseError(const std::string& text) {
  Result<Config> config = ParseConfig(text, kSource, kBaseDir);
  if (config.ok()) return "";
  EXPECT_TRUE(config.status().IsInvalidArgument()) << config.status().message();
  return config.status().message();
}

// A complete configuration: relative paths are resolved against the base directory.
TEST(Config, ParsesAndResolvesRelativePaths) {
  Result<Config> config = ParseConfig(R"(home = "PROD"
state = "state/envsync.db"
[environments.PROD]
database = "../data/prod.db"
assets = "prod-assets"
[environments.TEST]
database = "/abs/test.db"
assets = "/abs/test-assets"
)",
                                      kSource, kBaseDir);
  ASSERT_TRUE(config.ok()) << config.status().message();
  EXPECT_EQ(config->source_name, "envsync.toml");
  EXPECT_EQ(config->home, "PROD");
  EXPECT_EQ(config->state, "/srv/envsync/state/envsync.db");
  EXPECT_EQ(config->manifest, "");
  const EnvironmentConfig* prod = config->Find("PROD");
  ASSERT_NE(prod, nullptr);
  EXPECT_EQ(prod->database, "/srv/data/prod.db");
  EXPECT_EQ(prod->assets, "/srv/envsync/prod-assets");
  EXPECT_EQ(prod->line, 3);
  const EnvironmentConfig* test = config->Find("TEST");
  ASSERT_NE(test, nullptr);
  EXPECT_EQ(test->database, "/abs/test.db");
  EXPECT_EQ(test->assets, "/abs/test-assets");
  EXPECT_EQ(config->Find("STAGE"), nullptr);
}

// A state store on a PostgreSQL server is kept as the URI, and undeliverable mail then waits in
// outbox/ beside the config (never in a folder named after the URI, which holds the password).
TEST(Config, PostgresStateKeepsItsUriAndMailWaitsBesideTheConfig) {
  Result<Config> config = ParseConfig(R"(home = "PROD"
state = "postgresql://envsync:secret@db:5432/envsync"
[environments.PROD]
database = "prod.db"
assets = "prod-assets"
[environments.TEST]
database = "test.db"
assets = "test-assets"
)",
                                      kSource, kBaseDir);
  ASSERT_TRUE(config.ok()) << config.status().message();
  EXPECT_EQ(config->state, "postgresql://envsync:secret@db:5432/envsync");
  EXPECT_EQ(config->mail.outbox, "/srv/envsync/outbox");
}

// A TOML syntax error names the file and the line.
TEST(Config, MalformedTomlReportsFileAndLine) {
  const std::string error = ParseError(R"(home = "PROD"
state = "state.db"
[environments.PROD
database = "prod.db"
)");
  EXPECT_TRUE(StartsWith(error, "envsync.toml:3:")) << error;
}

// An environment other than PROD and TEST is refused at its line, naming it.
TEST(Config, UnknownEnvironmentIsRefused) {
  const std::string error = ParseError(R"(home = "PROD"
state = "state.db"
[environments.PROD]
database = "prod.db"
assets = "prod-assets"
[environments.TEST]
database = "test.db"
assets = "test-assets"
[environments.STAGE]
database = "stage.db"
assets = "stage-assets"
)");
  EXPECT_TRUE(StartsWith(error, "envsync.toml:9:")) << error;
  EXPECT_TRUE(Contains(error, "'STAGE'")) << error;
}

// A configuration without a TEST environment is refused, naming the missing table.
TEST(Config, MissingTestEnvironmentIsRefused) {
  const std::string error = ParseError(R"(home = "PROD"
state = "state.db"
[environments.PROD]
database = "prod.db"
assets = "prod-assets"
)");
  EXPECT_TRUE(StartsWith(error, "envsync.toml:")) << error;
  EXPECT_TRUE(Contains(error, "[environments.TEST]")) << error;
}

// A home that names no environment is refused at the home line.
TEST(Config, HomeNamingNoEnvironmentIsRefused) {
  const std::string error = ParseError(R"(home = "STAGE"
state = "state.db"
[environments.PROD]
database = "prod.db"
assets = "prod-assets"
[environments.TEST]
database = "test.db"
assets = "test-assets"
)");
  EXPECT_TRUE(StartsWith(error, "envsync.toml:1:")) << error;
  EXPECT_TRUE(Contains(error, "STAGE")) << error;
}

// An unknown top-level setting (a typo) is refused at its line, naming it.
TEST(Config, UnknownSettingIsRefused) {
  const std::string error = ParseError(R"(home = "PROD"
stat = "state.db"
[environments.PROD]
database = "prod.db"
assets = "prod-assets"
[environments.TEST]
database = "test.db"
assets = "test-assets"
)");
  EXPECT_TRUE(StartsWith(error, "envsync.toml:2:")) << error;
  EXPECT_TRUE(Contains(error, "'stat'")) << error;
}

// An unknown setting inside an environment table is refused at its line, naming it.
TEST(Config, UnknownEnvironmentSettingIsRefused) {
  const std::string error = ParseError(R"(home = "PROD"
state = "state.db"
[environments.PROD]
database = "prod.db"
assets = "prod-assets"
[environments.TEST]
databse = "test.db"
assets = "test-assets"
)");
  EXPECT_TRUE(StartsWith(error, "envsync.toml:7:")) << error;
  EXPECT_TRUE(Contains(error, "'databse'")) << error;
}

// Loading a config file that does not exist fails naming its path.
TEST(Config, LoadConfigOfMissingFileNamesThePath) {
  const std::string path = "/nonexistent/envsync-core-test/envsync.toml";
  Result<Config> config = LoadConfig(path);
  ASSERT_FALSE(config.ok());
  EXPECT_TRUE(config.status().IsInvalidArgument());
  EXPECT_TRUE(Contains(config.status().message(), path)) << config.status().message();
}

}  // namespace
}  // namespace envsync
