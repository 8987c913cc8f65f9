#include "envsync/demo/demo.h"

#include <gtest/gtest.h>
#include <openssl/evp.h>
#include <sqlite3.h>
#include <unistd.h>

#include <array>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <string_view>
#include <vector>

#include "demo/png.h"

namespace envsync::demo {
namespace {

namespace fs = std::filesystem;

constexpr std::string_view kPngSignature("\x89PNG\r\n\x1a\n", 8);

std::string ReadFile(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

std::string Sha256Hex(std::string_view bytes) {
  std::array<unsigned char, EVP_MAX_MD_SIZE> digest{};
  unsigned int length = 0;
  EVP_Digest(bytes.data(), bytes.size(), digest.data(), &length, EVP_sha256(), nullptr);
  static constexpr char kHex[] = "0123456789abcdef";
  std::string hex;
  for (unsigned int i = 0; i < length; ++i) {
    hex.push_back(kHex[digest[i] >> 4]);
    hex.push_back(kHex[digest[i] & 0x0F]);
  }
  return hex;
}

// A read-only connection for inspecting an environment database.
class Db {
 public:
  explicit Db(const fs::path& path) {
    EXPECT_EQ(sqlite3_open_v2(path.c_str(), &db_, SQLITE_OPEN_READONLY, nullptr), SQLITE_OK)
        << path;
  }
  ~Db() { sqlite3_close_v2(db_); }
  Db(const Db&) = delete;
  Db& operator=(const Db&) = delete;

  // Returns every row of `sql`, each row's columns joined with '|' (NULL as "NULL").
  std::vector<std::string> Rows(const std::string& sql) {
    std::vector<std::string> rows;
    sqlite3_stmt* stmt = nullptr;
    EXPECT_EQ(sqlite3_prepare_v2(db_, sql.c_str(), -1, &stmt, nullptr), SQLITE_OK)
        << sql << ": " << sqlite3_errmsg(db_);
    while (stmt != nullptr && sqlite3_step(stmt) == SQLITE_ROW) {
      std::string row;
      for (int i = 0; i < sqlite3_column_count(stmt); ++i) {
        if (i > 0) row += '|';
        const unsigned char* text = sqlite3_column_text(stmt, i);
        row += text != nullptr ? reinterpret_cast<const char*>(text) : "NULL";
      }
      rows.push_back(std::move(row));
    }
    sqlite3_finalize(stmt);
    return rows;
  }

  std::string Text(const std::string& sql) {
    std::vector<std::string> rows = Rows(sql);
    return rows.empty() ? "<no row>" : rows.front();
  }

  int64_t Int(const std::string& sql) { return std::stoll(Text(sql)); }

 private:
  sqlite3* db_ = nullptr;
};

// The synchronized content, as queries whose rows must be equal on both sides after a sync.
const std::vector<std::string>& SynchronizedQueries() {
  static const std::vector<std::string> queries = {
      "SELECT * FROM gallery_folders ORDER BY id",
      "SELECT * FROM gallery_files ORDER BY id",
      "SELECT * FROM cms_pages ORDER BY id",
      "SELECT * FROM sliders ORDER BY id",
      "SELECT * FROM slides ORDER BY id",
      "SELECT * FROM menus ORDER BY id",
      "SELECT * FROM menu_items ORDER BY id",
      "SELECT * FROM content_blocks ORDER BY id",
      "SELECT * FROM system_settings WHERE key GLOB 'integrations.mobile_app.*' ORDER BY key",
  };
  return queries;
}

// Checks that every gallery row of the environment names a PNG on disk with its size and hash.
void ExpectGalleryMatchesDisk(const fs::path& db_path, const fs::path& assets) {
  Db db(db_path);
  const std::vector<std::string> rows = db.Rows(
      "SELECT d.path || '/' || f.file_name, f.size_bytes, f.sha256 FROM gallery_files f "
      "JOIN gallery_folders d ON d.id = f.folder_id ORDER BY f.id");
  ASSERT_FALSE(rows.empty());
  for (const std::string& row : rows) {
    const size_t first = row.find('|');
    const size_t second = row.find('|', first + 1);
    const fs::path file = assets / "gallery" / row.substr(0, first);
    ASSERT_TRUE(fs::is_regular_file(file)) << file;
    const std::string bytes = ReadFile(file);
    EXPECT_EQ(bytes.substr(0, kPngSignature.size()), kPngSignature) << file;
    EXPECT_EQ(std::to_string(bytes.size()), row.substr(first + 1, second - first - 1)) << file;
    EXPECT_EQ(Sha256Hex(bytes), row.substr(second + 1)) << file;
  }
}

class DemoTest : public ::testing::Test {
 protected:
  void SetUp() override {
    static int counter = 0;
    const std::string name = ::testing::UnitTest::GetInstance()->current_test_info()->name();
    dir_ =
        fs::path(::testing::TempDir()) /
        ("envsync-demo-" + name + "-" + std::to_string(getpid()) + "-" + std::to_string(++counter));
    fs::remove_all(dir_);
    paths_ = PathsFor(dir_);
  }
  void TearDown() override {
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }

  DemoOptions Options(int64_t records = 0) const { return DemoOptions{dir_, records}; }

  void CreateDemo(int64_t records = 0) {
    const Status status = CreateCommonState(Options(records));
    ASSERT_TRUE(status.ok()) << status.message();
  }

  void CreateDemoWithPendingWork(int64_t records = 0) {
    ASSERT_NO_FATAL_FAILURE(CreateDemo(records));
    const Status status = ApplyPendingWork(Options(records));
    ASSERT_TRUE(status.ok()) << status.message();
  }

  fs::path dir_;
  DemoPaths paths_;
};

// PathsFor names the six demo paths inside the directory, absolute.
TEST_F(DemoTest, PathsForIsAbsoluteInsideDir) {
  const DemoPaths relative = PathsFor("some/demo/");
  EXPECT_TRUE(relative.config.is_absolute());
  EXPECT_EQ(relative.config, fs::current_path() / "some/demo/envsync.toml");
  EXPECT_EQ(paths_.config, dir_ / "envsync.toml");
  EXPECT_EQ(paths_.state, dir_ / "state.db");
  EXPECT_EQ(paths_.prod_db, dir_ / "prod.db");
  EXPECT_EQ(paths_.test_db, dir_ / "test.db");
  EXPECT_EQ(paths_.prod_assets, dir_ / "prod-assets");
  EXPECT_EQ(paths_.test_assets, dir_ / "test-assets");
}

// After the last sync, both sides hold the same synchronized rows.
TEST_F(DemoTest, CommonStateHasIdenticalSynchronizedContent) {
  ASSERT_NO_FATAL_FAILURE(CreateDemo());
  Db prod(paths_.prod_db);
  Db test(paths_.test_db);
  for (const std::string& query : SynchronizedQueries()) {
    const std::vector<std::string> prod_rows = prod.Rows(query);
    EXPECT_FALSE(prod_rows.empty()) << query;
    EXPECT_EQ(prod_rows, test.Rows(query)) << query;
  }
  EXPECT_EQ(prod.Int("SELECT count(*) FROM gallery_folders"), 4);
  EXPECT_EQ(prod.Int("SELECT count(*) FROM gallery_files"), 8);
  EXPECT_EQ(prod.Int("SELECT count(*) FROM cms_pages"), 7);
  EXPECT_EQ(prod.Int("SELECT count(*) FROM menu_items"), 7);
  EXPECT_EQ(prod.Text("SELECT slug || ':' || hero_image_id FROM cms_pages WHERE id = 1"), "home:1");
  EXPECT_EQ(prod.Text("SELECT image_id FROM slides WHERE slider_id = 1 AND position = 2"), "8");
  EXPECT_EQ(prod.Text("SELECT value FROM system_settings WHERE key = "
                      "'integrations.mobile_app.home'"),
            R"({"banner":"gallery:mobile_app/splash.png","icon":"gallery:mobile_app/icon.png",)"
            R"("title":"Welcome"})");
}

// Environment-specific data differs between the two sides.
TEST_F(DemoTest, CommonStateHasDifferentEnvironmentSpecificData) {
  ASSERT_NO_FATAL_FAILURE(CreateDemo());
  Db prod(paths_.prod_db);
  Db test(paths_.test_db);
  EXPECT_EQ(prod.Int("SELECT count(*) FROM users"), 3);
  EXPECT_EQ(test.Int("SELECT count(*) FROM users"), 2);
  EXPECT_NE(prod.Rows("SELECT email FROM users ORDER BY id"),
            test.Rows("SELECT email FROM users ORDER BY id"));
  EXPECT_EQ(prod.Int("SELECT count(*) FROM orders"), 5);
  EXPECT_LT(test.Int("SELECT count(*) FROM orders"), 5);
  EXPECT_GT(test.Int("SELECT count(*) FROM order_lines"), 0);
  EXPECT_NE(prod.Rows("SELECT * FROM translations ORDER BY id"),
            test.Rows("SELECT * FROM translations ORDER BY id"));
  EXPECT_NE(prod.Rows("SELECT * FROM promotion_codes ORDER BY id"),
            test.Rows("SELECT * FROM promotion_codes ORDER BY id"));
  for (const char* key : {"smtp.host", "shop.base_url", "payments.provider"}) {
    const std::string query =
        std::string("SELECT value FROM system_settings WHERE key = '") + key + "'";
    EXPECT_NE(prod.Text(query), test.Text(query)) << key;
  }
  // Every page's updated_by names a user of its own environment.
  EXPECT_EQ(test.Int("SELECT count(*) FROM cms_pages WHERE updated_by NOT IN "
                     "(SELECT id FROM users)"),
            0);
}

// Each gallery row names a real PNG on disk whose size and SHA-256 it records.
TEST_F(DemoTest, GalleryFilesOnDiskMatchTheirRows) {
  ASSERT_NO_FATAL_FAILURE(CreateDemo());
  ExpectGalleryMatchesDisk(paths_.prod_db, paths_.prod_assets);
  ExpectGalleryMatchesDisk(paths_.test_db, paths_.test_assets);
  Db prod(paths_.prod_db);
  EXPECT_EQ(prod.Int("SELECT count(DISTINCT sha256) FROM gallery_files"), 8);
}

// Both databases enforce their foreign keys and are left in rollback-journal mode.
TEST_F(DemoTest, CommonStateHasIntactForeignKeys) {
  ASSERT_NO_FATAL_FAILURE(CreateDemo());
  for (const fs::path& path : {paths_.prod_db, paths_.test_db}) {
    Db db(path);
    EXPECT_TRUE(db.Rows("PRAGMA foreign_key_check").empty()) << path;
    EXPECT_EQ(db.Text("PRAGMA journal_mode"), "delete") << path;
  }
}

// A second CreateCommonState on the same directory refuses and changes nothing.
TEST_F(DemoTest, CreateCommonStateRefusesAnExistingDemo) {
  ASSERT_NO_FATAL_FAILURE(CreateDemo());
  ASSERT_TRUE(ApplyPendingWork(Options()).ok());
  const std::string prod_before = ReadFile(paths_.prod_db);
  const std::string test_before = ReadFile(paths_.test_db);
  const fs::path splash = paths_.test_assets / "gallery/mobile_app/splash.png";
  const std::string splash_before = ReadFile(splash);

  const Status status = CreateCommonState(Options());
  EXPECT_TRUE(status.IsInvalidArgument()) << status.message();
  EXPECT_NE(status.message().find(paths_.prod_db.string()), std::string::npos) << status.message();
  EXPECT_EQ(ReadFile(paths_.prod_db), prod_before);
  EXPECT_EQ(ReadFile(paths_.test_db), test_before);
  EXPECT_EQ(ReadFile(splash), splash_before);
}

// A directory holding only a config is refused too, naming the config, and nothing is made.
TEST_F(DemoTest, CreateCommonStateRefusesADirectoryWithAConfig) {
  ASSERT_TRUE(WriteConfig(Options()).ok());
  const Status status = CreateCommonState(Options());
  EXPECT_TRUE(status.IsInvalidArgument()) << status.message();
  EXPECT_NE(status.message().find(paths_.config.string()), std::string::npos) << status.message();
  EXPECT_FALSE(fs::exists(paths_.prod_db));
  EXPECT_FALSE(fs::exists(paths_.test_db));
}

// A negative number of bulk pages is bad input.
TEST_F(DemoTest, CreateCommonStateRejectsNegativeRecords) {
  EXPECT_TRUE(CreateCommonState(Options(-1)).IsInvalidArgument());
  EXPECT_FALSE(fs::exists(dir_));
}

// The config names home PROD and every path absolute.
TEST_F(DemoTest, WriteConfigNamesAbsolutePaths) {
  ASSERT_TRUE(WriteConfig(Options()).ok());
  const std::string config = ReadFile(paths_.config);
  EXPECT_NE(config.find("home = \"PROD\"\n"), std::string::npos) << config;
  EXPECT_NE(config.find("state = \"" + paths_.state.string() + "\"\n"), std::string::npos);
  const size_t prod = config.find("[environments.PROD]\n");
  const size_t test = config.find("[environments.TEST]\n");
  ASSERT_NE(prod, std::string::npos);
  ASSERT_NE(test, std::string::npos);
  EXPECT_EQ(config.find("database = \"" + paths_.prod_db.string() + "\"\n", prod), prod + 20);
  EXPECT_NE(config.find("assets = \"" + paths_.prod_assets.string() + "\"\n"), std::string::npos);
  EXPECT_GT(config.find("database = \"" + paths_.test_db.string() + "\"\n"), test);
  EXPECT_GT(config.find("assets = \"" + paths_.test_assets.string() + "\"\n"), test);
}

// Quotes and backslashes in the directory name are escaped as TOML basic strings require.
TEST_F(DemoTest, WriteConfigEscapesTomlStrings) {
  const fs::path odd = dir_ / "a \"quoted\" \\dir";
  ASSERT_TRUE(WriteConfig(DemoOptions{odd, 0}).ok());
  const std::string config = ReadFile(odd / "envsync.toml");
  EXPECT_NE(config.find("/a \\\"quoted\\\" \\\\dir/prod.db\""), std::string::npos) << config;
}

// The new page summer-sale exists on TEST only, with its new hero image.
TEST_F(DemoTest, PendingWorkAddsSummerSaleOnTestOnly) {
  ASSERT_NO_FATAL_FAILURE(CreateDemoWithPendingWork());
  Db prod(paths_.prod_db);
  Db test(paths_.test_db);
  EXPECT_EQ(test.Text("SELECT slug || ':' || hero_image_id FROM cms_pages WHERE id = 8"),
            "summer-sale:9");
  EXPECT_EQ(test.Text("SELECT folder_id || ':' || file_name FROM gallery_files WHERE id = 9"),
            "2:summer-sale.png");
  EXPECT_EQ(test.Text("SELECT label FROM menu_items WHERE menu_id = 1 AND cms_page_id = 8"),
            "Summer sale");
  EXPECT_EQ(prod.Int("SELECT count(*) FROM cms_pages WHERE id = 8 OR slug = 'summer-sale'"), 0);
  EXPECT_EQ(prod.Int("SELECT count(*) FROM gallery_files WHERE id IN (9, 10)"), 0);
}

// PROD deleted the shipping page together with the footer item pointing at it.
TEST_F(DemoTest, PendingWorkDeletesShippingOnProd) {
  ASSERT_NO_FATAL_FAILURE(CreateDemoWithPendingWork());
  Db prod(paths_.prod_db);
  Db test(paths_.test_db);
  EXPECT_EQ(prod.Int("SELECT count(*) FROM cms_pages WHERE id = 5"), 0);
  EXPECT_EQ(prod.Rows("SELECT label FROM menu_items WHERE menu_id = 2 ORDER BY position"),
            (std::vector<std::string>{"FAQ", "Returns"}));
  EXPECT_EQ(test.Int("SELECT count(*) FROM cms_pages WHERE id = 5"), 1);
  EXPECT_NE(prod.Text("SELECT body_html FROM cms_pages WHERE id = 4"),
            test.Text("SELECT body_html FROM cms_pages WHERE id = 4"));
}

// splash.png got new bytes on TEST only; row and file agree on both sides.
TEST_F(DemoTest, PendingWorkReplacesSplashOnTestOnly) {
  ASSERT_NO_FATAL_FAILURE(CreateDemo());
  const std::string query = "SELECT sha256 FROM gallery_files WHERE id = 4";
  const std::string sha_before = Db(paths_.test_db).Text(query);
  ASSERT_TRUE(ApplyPendingWork(Options()).ok());
  Db prod(paths_.prod_db);
  Db test(paths_.test_db);
  EXPECT_EQ(prod.Text(query), sha_before);
  EXPECT_NE(test.Text(query), sha_before);
  EXPECT_EQ(test.Text("SELECT file_name FROM gallery_files WHERE id = 4"), "splash.png");
  ExpectGalleryMatchesDisk(paths_.prod_db, paths_.prod_assets);
  ExpectGalleryMatchesDisk(paths_.test_db, paths_.test_assets);
  EXPECT_NE(test.Text("SELECT value FROM system_settings WHERE key = "
                      "'integrations.mobile_app.home'")
                .find("gallery:mobile_app/splash-winter.png"),
            std::string::npos);
}

// The remaining edits of both sides, spot-checked.
TEST_F(DemoTest, PendingWorkMakesTheListedEdits) {
  ASSERT_NO_FATAL_FAILURE(CreateDemoWithPendingWork());
  Db prod(paths_.prod_db);
  Db test(paths_.test_db);
  const std::string title = "SELECT title FROM cms_pages WHERE id = ";
  EXPECT_NE(test.Text(title + "2"), prod.Text(title + "2"));  // about: title on TEST
  EXPECT_NE(test.Text(title + "3"), prod.Text(title + "3"));  // contact: title on TEST
  EXPECT_EQ(test.Text("SELECT group_concat(code) FROM content_blocks"), "newsletter");
  EXPECT_EQ(prod.Int("SELECT count(*) FROM content_blocks"), 3);
  EXPECT_EQ(test.Text("SELECT slug FROM cms_pages WHERE id = 20"), "winter-lookbook");
  EXPECT_EQ(prod.Text("SELECT slug FROM cms_pages WHERE id = 20"), "black-friday");
  EXPECT_EQ(test.Text("SELECT slug FROM cms_pages WHERE id = 21"), "gift-guide");
  EXPECT_EQ(prod.Text("SELECT slug FROM cms_pages WHERE id = 22"), "gift-guide");
  EXPECT_EQ(prod.Int("SELECT count(*) FROM menus WHERE id = 3"), 0);
  EXPECT_EQ(prod.Int("SELECT count(*) FROM menu_items WHERE menu_id = 3"), 0);
  EXPECT_EQ(test.Int("SELECT count(*) FROM menus WHERE id = 3"), 1);
  EXPECT_EQ(prod.Text("SELECT image_id FROM slides WHERE slider_id = 1 AND position = 2"), "3");
  EXPECT_EQ(test.Text("SELECT image_id FROM slides WHERE slider_id = 1 AND position = 2"), "8");
  // returns (TEST) and home (PROD): only environment-local columns changed.
  const std::string content = "SELECT slug, title, body_html FROM cms_pages WHERE id = ";
  EXPECT_EQ(test.Text(content + "6"), prod.Text(content + "6"));
  EXPECT_NE(test.Text("SELECT updated_at FROM cms_pages WHERE id = 6"),
            prod.Text("SELECT updated_at FROM cms_pages WHERE id = 6"));
  EXPECT_EQ(test.Text(content + "1"), prod.Text(content + "1"));
  EXPECT_EQ(test.Int("SELECT count(*) FROM users"), 3);
  EXPECT_EQ(prod.Int("SELECT count(*) FROM orders"), 7);
}

// Pending work leaves every reference valid on both sides.
TEST_F(DemoTest, PendingWorkKeepsForeignKeysIntact) {
  ASSERT_NO_FATAL_FAILURE(CreateDemoWithPendingWork());
  for (const fs::path& path : {paths_.prod_db, paths_.test_db}) {
    Db db(path);
    EXPECT_TRUE(db.Rows("PRAGMA foreign_key_check").empty()) << path;
    EXPECT_EQ(db.Int("SELECT count(*) FROM cms_pages WHERE updated_by NOT IN "
                     "(SELECT id FROM users)"),
              0)
        << path;
  }
}

// The pending work applies once: a second call refuses and changes nothing.
TEST_F(DemoTest, ApplyPendingWorkRefusesASecondRun) {
  ASSERT_NO_FATAL_FAILURE(CreateDemoWithPendingWork());
  const std::string test_before = ReadFile(paths_.test_db);
  const Status status = ApplyPendingWork(Options());
  EXPECT_TRUE(status.IsInvalidArgument()) << status.message();
  EXPECT_EQ(ReadFile(paths_.test_db), test_before);
}

// Without a demo there is nothing to edit.
TEST_F(DemoTest, ApplyPendingWorkWithoutDemoIsNotFound) {
  const Status status = ApplyPendingWork(Options());
  EXPECT_TRUE(status.IsNotFound()) << status.message();
  EXPECT_NE(status.message().find(paths_.test_db.string()), std::string::npos);
}

// Bulk pages are the same on both sides; pending work edits those whose id is a multiple of 1000.
TEST_F(DemoTest, BulkPagesDifferOnlyWhereEdited) {
  ASSERT_NO_FATAL_FAILURE(CreateDemo(2000));
  const std::string bulk = "SELECT * FROM cms_pages WHERE id > 1000 ORDER BY id";
  {
    Db prod(paths_.prod_db);
    Db test(paths_.test_db);
    const std::vector<std::string> prod_rows = prod.Rows(bulk);
    ASSERT_EQ(prod_rows.size(), 2000u);
    EXPECT_EQ(prod_rows, test.Rows(bulk));
    EXPECT_EQ(prod.Text("SELECT min(id) || ':' || max(id) FROM cms_pages WHERE id > 1000"),
              "1001:3000");
    EXPECT_EQ(prod.Text("SELECT slug || '|' || title || '|' || status || '|' || layout || '|' "
                        "|| quote(hero_image_id) FROM cms_pages WHERE id = 1001"),
              "bulk-page-0000001|Bulk page 1|published|default|NULL");
    EXPECT_NEAR(prod.Int("SELECT avg(length(body_html)) FROM cms_pages WHERE id > 1000"), 1100,
                100);
    EXPECT_EQ(prod.Int("SELECT count(DISTINCT body_html) FROM cms_pages WHERE id > 1000"), 2000);
  }
  ASSERT_TRUE(ApplyPendingWork(Options(2000)).ok());
  Db prod(paths_.prod_db);
  Db test(paths_.test_db);
  const std::vector<std::string> prod_rows = prod.Rows(bulk);
  const std::vector<std::string> test_rows = test.Rows(bulk);
  ASSERT_EQ(prod_rows.size(), test_rows.size());
  std::vector<std::string> differing;
  for (size_t i = 0; i < prod_rows.size(); ++i) {
    if (prod_rows[i] != test_rows[i]) differing.push_back(prod_rows[i].substr(0, 4));
  }
  EXPECT_EQ(differing, (std::vector<std::string>{"2000", "3000"}));
}

// CRC-32 and Adler-32 match their published check values.
TEST(PngTest, ChecksumsMatchKnownValues) {
  EXPECT_EQ(Crc32("123456789"), 0xCBF43926u);
  EXPECT_EQ(Crc32("IEND"), 0xAE426082u);
  EXPECT_EQ(Adler32("Wikipedia"), 0x11E60398u);
  EXPECT_EQ(Adler32(""), 1u);
  EXPECT_EQ(Adler32(std::string(100000, '\xff')), 0x149A302Cu);
}

// Stored blocks hold at most 65535 bytes; only the last one is final.
TEST(PngTest, ZlibStoredSplitsBlocks) {
  const std::string data(70000, 'x');
  const std::string zlib = ZlibStored(data);
  ASSERT_EQ(zlib.size(), 2 + 5 + 65535 + 5 + (70000 - 65535) + 4);
  EXPECT_EQ(zlib.substr(0, 2), std::string("\x78\x01", 2));
  EXPECT_EQ(zlib[2], '\x00');
  EXPECT_EQ(zlib.substr(3, 4), std::string("\xff\xff\x00\x00", 4));
  EXPECT_EQ(zlib[2 + 5 + 65535], '\x01');
}

// A PNG starts with the signature and an IHDR for 8-bit RGB; wrong pixel counts are refused.
TEST(PngTest, EncodesRgbAndRejectsWrongSizes) {
  const Result<std::string> png = EncodePngRgb(2, 1, std::string("\x01\x02\x03\x04\x05\x06", 6));
  ASSERT_TRUE(png.ok()) << png.status().message();
  EXPECT_EQ(png->substr(0, 8), kPngSignature);
  EXPECT_EQ(png->substr(8, 8), std::string("\x00\x00\x00\x0dIHDR", 8));
  EXPECT_EQ(png->substr(16, 10), std::string("\x00\x00\x00\x02\x00\x00\x00\x01\x08\x02", 10));
  EXPECT_EQ(png->substr(png->size() - 12), std::string("\x00\x00\x00\x00IEND\xae\x42\x60\x82", 12));
  EXPECT_TRUE(EncodePngRgb(2, 2, "abc").status().IsInvalidArgument());
  EXPECT_TRUE(EncodePngRgb(0, 1, "").status().IsInvalidArgument());
}

}  // namespace
}  // namespace envsync::demo
