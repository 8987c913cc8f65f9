#include "envsync/demo/demo.h"

#include <fmt/format.h>
#include <openssl/evp.h>
#include <sqlite3.h>

#include <algorithm>
#include <array>
#include <charconv>
#include <cstddef>
#include <exception>
#include <fstream>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

#include "demo/png.h"
#include "envsync/core/embedded_data.h"
#include "envsync/core/record.h"

namespace envsync::demo {
namespace {

namespace fs = std::filesystem;

// Timestamps are fixed so that two demos built from the same options are identical.
constexpr char kSyncedAt[] = "2024-05-06T09:00:00Z";  // the last sync
constexpr int64_t kFirstBulkId = 1001;
constexpr int64_t kMaxRecords = 100'000'000;
constexpr size_t kBulkBodyBytes = 1100;
constexpr int kImageWidth = 64;
constexpr int kImageHeight = 40;

// ---------------------------------------------------------------------------------------
// SQLite access.

// Maps a SQLite result code to the Status code a caller can act on.
Status SqliteStatus(int rc, std::string message) {
  switch (rc & 0xFF) {
    case SQLITE_IOERR:
    case SQLITE_FULL:
    case SQLITE_CANTOPEN:
    case SQLITE_READONLY:
    case SQLITE_PERM:
      return Status::IoError(std::move(message));
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB:
      return Status::Unavailable(std::move(message));
    default:
      return Status::Internal(std::move(message));
  }
}

// One connection to an environment database. Not thread-safe.
class Database {
 public:
  Database() = default;
  Database(const Database&) = delete;
  Database& operator=(const Database&) = delete;
  ~Database() {
    if (db_ != nullptr) sqlite3_close_v2(db_);
  }

  // Opens `path`, creating the file when `create` is set, with foreign keys enforced.
  Status Open(const fs::path& path, bool create) {
    path_ = path;
    const int flags = SQLITE_OPEN_READWRITE | (create ? SQLITE_OPEN_CREATE : 0);
    const int rc = sqlite3_open_v2(path.c_str(), &db_, flags, nullptr);
    if (rc != SQLITE_OK) return Error(rc, "cannot open the database");
    sqlite3_busy_timeout(db_, 5000);
    return Exec("PRAGMA foreign_keys = ON");
  }

  // Runs one or more SQL statements that return no rows.
  Status Exec(const char* sql) {
    char* error = nullptr;
    const int rc = sqlite3_exec(db_, sql, nullptr, nullptr, &error);
    if (rc == SQLITE_OK) return Status::Ok();
    std::string message = error != nullptr ? error : sqlite3_errstr(rc);
    sqlite3_free(error);
    std::string_view statement(sql);
    const size_t first_line = statement.find('\n', statement.find_first_not_of(" \n"));
    return SqliteStatus(rc, fmt::format("{}: {} (in: {})", path_.string(), message,
                                        statement.substr(0, std::min<size_t>(first_line, 80))));
  }

  // Runs `body` inside one transaction: committed when it succeeds, rolled back otherwise.
  Status InTransaction(const std::function<Status()>& body) {
    ENVSYNC_RETURN_IF_ERROR(Exec("BEGIN IMMEDIATE"));
    Status status = body();
    if (status.ok()) status = Exec("COMMIT");
    if (!status.ok()) Exec("ROLLBACK");  // Best effort: the first failure is the one reported.
    return status;
  }

  Status Error(int rc, std::string_view what) const {
    const char* detail = db_ != nullptr ? sqlite3_errmsg(db_) : sqlite3_errstr(rc);
    return SqliteStatus(rc, fmt::format("{}: {}: {}", path_.string(), what, detail));
  }

  sqlite3* handle() const { return db_; }
  const fs::path& path() const { return path_; }

 private:
  sqlite3* db_ = nullptr;
  fs::path path_;
};

// A prepared statement on a Database. Bound text is not copied: it must outlive the call
// that binds it (Run and Query bind and step within the call). Not thread-safe.
class Statement {
 public:
  explicit Statement(Database& db) : db_(db) {}
  Statement(const Statement&) = delete;
  Statement& operator=(const Statement&) = delete;
  ~Statement() { sqlite3_finalize(stmt_); }

  Status Prepare(std::string_view sql) {
    const int rc =
        sqlite3_prepare_v2(db_.handle(), sql.data(), static_cast<int>(sql.size()), &stmt_, nullptr);
    if (rc != SQLITE_OK) return db_.Error(rc, fmt::format("cannot prepare \"{}\"", sql));
    return Status::Ok();
  }

  // Binds `args` to the parameters in order and runs the statement to completion.
  template <typename... Args>
  Status Run(const Args&... args) {
    ENVSYNC_RETURN_IF_ERROR(BindAll(args...));
    const int rc = sqlite3_step(stmt_);
    sqlite3_reset(stmt_);
    if (rc != SQLITE_DONE) return db_.Error(rc, fmt::format("\"{}\" failed", sqlite3_sql(stmt_)));
    return Status::Ok();
  }

  // Binds `args` and returns the first column of the first row as an integer (0 for no row).
  template <typename... Args>
  Result<int64_t> QueryInt(const Args&... args) {
    ENVSYNC_RETURN_IF_ERROR(BindAll(args...));
    const int rc = sqlite3_step(stmt_);
    int64_t value = 0;
    if (rc == SQLITE_ROW) value = sqlite3_column_int64(stmt_, 0);
    sqlite3_reset(stmt_);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
      return db_.Error(rc, fmt::format("\"{}\" failed", sqlite3_sql(stmt_)));
    }
    return value;
  }

 private:
  int BindOne(int index, int64_t value) { return sqlite3_bind_int64(stmt_, index, value); }
  int BindOne(int index, int value) { return sqlite3_bind_int(stmt_, index, value); }
  int BindOne(int index, std::nullptr_t) { return sqlite3_bind_null(stmt_, index); }
  int BindOne(int index, std::string_view value) {
    return sqlite3_bind_text(stmt_, index, value.data(), static_cast<int>(value.size()),
                             SQLITE_STATIC);
  }
  int BindOne(int index, const std::string& value) {
    return BindOne(index, std::string_view(value));
  }
  int BindOne(int index, const char* value) { return BindOne(index, std::string_view(value)); }
  int BindOne(int index, std::optional<int64_t> value) {
    return value ? BindOne(index, *value) : BindOne(index, nullptr);
  }

  template <typename... Args>
  Status BindAll(const Args&... args) {
    int rc = SQLITE_OK;
    int index = 0;
    ((rc = rc == SQLITE_OK ? BindOne(++index, args) : rc), ...);
    if (rc != SQLITE_OK) return db_.Error(rc, "cannot bind a parameter");
    return Status::Ok();
  }

  Database& db_;
  sqlite3_stmt* stmt_ = nullptr;
};

// Returns the single integer `sql` yields on `db`.
Result<int64_t> QueryInt(Database& db, std::string_view sql) {
  Statement statement(db);
  ENVSYNC_RETURN_IF_ERROR(statement.Prepare(sql));
  return statement.QueryInt();
}

// ---------------------------------------------------------------------------------------
// Files.

Status WriteFileBytes(const fs::path& path, std::string_view bytes) {
  std::error_code ec;
  fs::create_directories(path.parent_path(), ec);
  if (ec) {
    return Status::IoError(
        fmt::format("cannot create directory {}: {}", path.parent_path().string(), ec.message()));
  }
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  out.close();
  if (!out) return Status::IoError(fmt::format("cannot write {}", path.string()));
  return Status::Ok();
}

Result<std::string> Sha256Hex(std::string_view bytes) {
  std::array<unsigned char, EVP_MAX_MD_SIZE> digest{};
  unsigned int length = 0;
  if (EVP_Digest(bytes.data(), bytes.size(), digest.data(), &length, EVP_sha256(), nullptr) != 1) {
    return Status::Internal("SHA-256 failed (OpenSSL EVP_Digest)");
  }
  static constexpr char kHex[] = "0123456789abcdef";
  std::string hex;
  hex.reserve(2 * length);
  for (unsigned int i = 0; i < length; ++i) {
    hex.push_back(kHex[digest[i] >> 4]);
    hex.push_back(kHex[digest[i] & 0x0F]);
  }
  return hex;
}

// ---------------------------------------------------------------------------------------
// Gallery images: each one a distinct pattern in distinct colours, so distinct bytes.

enum class Pattern {
  kGradient,
  kFrame,
  kHorizon,
  kDisc,
  kChecker,
  kDiagonal,
  kHorizontalStripes,
  kVerticalStripes,
  kDots,
  kCross,
};

struct Rgb {
  uint8_t r, g, b;
};

struct ImageStyle {
  Rgb base;
  Rgb accent;
  Pattern pattern;
};

// Returns the weight (0..255) of the accent colour at (x, y).
int AccentWeight(Pattern pattern, int x, int y) {
  const int cx = x - kImageWidth / 2;
  const int cy = y - kImageHeight / 2;
  switch (pattern) {
    case Pattern::kGradient:
      return x * 255 / (kImageWidth - 1);
    case Pattern::kFrame:
      return (x < 4 || y < 4 || x >= kImageWidth - 4 || y >= kImageHeight - 4) ? 255 : 0;
    case Pattern::kHorizon:
      return y >= kImageHeight * 2 / 3                          ? 255
             : (cx - 12) * (cx - 12) + (cy + 8) * (cy + 8) < 36 ? 160
                                                                : 0;
    case Pattern::kDisc:
      return cx * cx + cy * cy < 15 * 15 ? 255 : 0;
    case Pattern::kChecker:
      return ((x / 8) + (y / 8)) % 2 == 0 ? 255 : 0;
    case Pattern::kDiagonal:
      return ((x + y) / 6) % 2 == 0 ? 255 : 0;
    case Pattern::kHorizontalStripes:
      return (y / 5) % 2 == 0 ? 255 : 0;
    case Pattern::kVerticalStripes:
      return (x / 8) % 2 == 0 ? 255 : 0;
    case Pattern::kDots:
      return ((x % 8) - 4) * ((x % 8) - 4) + ((y % 8) - 4) * ((y % 8) - 4) < 6 ? 255 : 0;
    case Pattern::kCross:
      return (cx > -4 && cx < 4) || (cy > -4 && cy < 4) ? 255 : 0;
  }
  return 0;
}

Result<std::string> RenderPng(const ImageStyle& style) {
  std::string rgb;
  rgb.reserve(static_cast<size_t>(kImageWidth) * kImageHeight * 3);
  const auto mix = [](uint8_t base, uint8_t accent, int weight) {
    return static_cast<char>((base * (255 - weight) + accent * weight) / 255);
  };
  for (int y = 0; y < kImageHeight; ++y) {
    for (int x = 0; x < kImageWidth; ++x) {
      const int weight = AccentWeight(style.pattern, x, y);
      rgb.push_back(mix(style.base.r, style.accent.r, weight));
      rgb.push_back(mix(style.base.g, style.accent.g, weight));
      rgb.push_back(mix(style.base.b, style.accent.b, weight));
    }
  }
  return EncodePngRgb(kImageWidth, kImageHeight, rgb);
}

struct FolderSpec {
  int64_t id;
  const char* path;
  const char* name;
  std::optional<int64_t> parent_id;
};

constexpr std::array<FolderSpec, 4> kFolders{{
    {1, "banners", "Banners", std::nullopt},
    {2, "banners/summer", "Summer", 1},
    {3, "mobile_app", "Mobile app", std::nullopt},
    {4, "blog", "Blog", std::nullopt},
}};

struct GalleryFileSpec {
  int64_t id;
  int64_t folder_id;
  const char* file_name;
  const char* alt_text;
  ImageStyle style;
};

// Colours of the demo images.
constexpr Rgb kTomato{192, 57, 43};
constexpr Rgb kSunflower{241, 196, 15};
constexpr Rgb kCloud{236, 240, 241};
constexpr Rgb kMidnight{44, 62, 80};
constexpr Rgb kSky{93, 173, 226};
constexpr Rgb kSand{244, 208, 63};
constexpr Rgb kWhite{255, 255, 255};
constexpr Rgb kGreen{39, 174, 96};
constexpr Rgb kPurple{142, 68, 173};
constexpr Rgb kTeal{22, 160, 133};
constexpr Rgb kOrange{231, 76, 60};
constexpr Rgb kIce{214, 234, 248};
constexpr Rgb kBlue{41, 128, 185};

constexpr std::array<GalleryFileSpec, 8> kCommonFiles{{
    {1, 1, "hero-home.png", "New season collection", {kTomato, kSunflower, Pattern::kGradient}},
    {2, 1, "hero-about.png", "Our team in the store", {kCloud, kMidnight, Pattern::kFrame}},
    {3, 2, "beach.png", "Beach at sunset", {kSky, kSand, Pattern::kHorizon}},
    {4, 3, "splash.png", "Mobile app splash screen", {kWhite, kTomato, Pattern::kDisc}},
    {5, 3, "icon.png", "Mobile app icon", {kTomato, kWhite, Pattern::kChecker}},
    {6, 4, "post-1.png", "First blog post", {kGreen, kCloud, Pattern::kDiagonal}},
    {7, 1, "slide-1.png", "New arrivals", {kPurple, kWhite, Pattern::kHorizontalStripes}},
    {8, 1, "slide-2.png", "Summer is coming", {kTeal, kWhite, Pattern::kVerticalStripes}},
}};

// Pending work on TEST: two new files and new bytes for splash.png.
constexpr GalleryFileSpec kSummerSaleFile{
    9, 2, "summer-sale.png", "Summer sale: up to 50% off", {kSunflower, kOrange, Pattern::kDots}};
constexpr GalleryFileSpec kSplashWinterFile{
    10, 3, "splash-winter.png", "Winter splash screen", {kIce, kBlue, Pattern::kDisc}};
constexpr GalleryFileSpec kSplashRedesign{
    4, 3, "splash.png", "Mobile app splash screen", {kTomato, kWhite, Pattern::kCross}};

fs::path GalleryPath(const fs::path& assets, const GalleryFileSpec& file) {
  for (const FolderSpec& folder : kFolders) {
    if (folder.id == file.folder_id) return assets / "gallery" / folder.path / file.file_name;
  }
  return assets / "gallery" / file.file_name;  // Unreachable: every spec names a folder above.
}

struct StoredImage {
  std::string bytes;
  std::string sha256;
};

Result<StoredImage> RenderImage(const GalleryFileSpec& file) {
  Result<std::string> png = RenderPng(file.style);
  if (!png.ok()) return png.status().WithContext(file.file_name);
  Result<std::string> sha = Sha256Hex(*png);
  if (!sha.ok()) return sha.status();
  return StoredImage{std::move(png).value(), std::move(sha).value()};
}

// Writes the image of `file` under `assets` and inserts its gallery_files row.
Status AddGalleryFile(Database& db, const fs::path& assets, const GalleryFileSpec& file) {
  Result<StoredImage> image = RenderImage(file);
  if (!image.ok()) return image.status();
  ENVSYNC_RETURN_IF_ERROR(WriteFileBytes(GalleryPath(assets, file), image->bytes));
  Statement insert(db);
  ENVSYNC_RETURN_IF_ERROR(insert.Prepare(
      "INSERT INTO gallery_files (id, folder_id, file_name, mime_type, size_bytes, sha256, "
      "alt_text) VALUES (?, ?, ?, 'image/png', ?, ?, ?)"));
  return insert.Run(file.id, file.folder_id, file.file_name,
                    static_cast<int64_t>(image->bytes.size()), image->sha256, file.alt_text);
}

// ---------------------------------------------------------------------------------------
// The common state: synchronized content, identical on both sides after the last sync.

constexpr char kCommonContentSql[] = R"sql(
INSERT INTO cms_pages (id, slug, title, body_html, layout, status, hero_image_id, updated_by,
                       updated_at) VALUES
  (1, 'home', 'Welcome to our shop',
   '<h1>Welcome to our shop</h1><p>New arrivals every week in fashion, beauty and home. Free ' ||
   'delivery on orders over 50 EUR.</p>',
   'home', 'published', 1, 1, '2024-05-06T09:00:00Z'),
  (2, 'about', 'About us',
   '<h1>About us</h1><p>We opened our first store in 2009. Today forty people pick, pack and ' ||
   'answer your questions from our warehouse in Poznan.</p>',
   'default', 'published', 2, 1, '2024-05-06T09:00:00Z'),
  (3, 'contact', 'Contact',
   '<h1>Contact</h1><p>Write to hello@shop.example or call +48 61 555 01 00, Monday to Friday, ' ||
   '9:00-17:00.</p>',
   'default', 'published', NULL, 1, '2024-05-06T09:00:00Z'),
  (4, 'faq', 'Frequently asked questions',
   '<h1>FAQ</h1><h2>How long does delivery take?</h2><p>Orders placed before 14:00 leave our ' ||
   'warehouse the same day and arrive within 1-2 working days.</p>',
   'default', 'published', NULL, 1, '2024-05-06T09:00:00Z'),
  (5, 'shipping', 'Shipping',
   '<h1>Shipping</h1><p>Courier delivery costs 14.90 EUR and is free on orders over 50 EUR. ' ||
   'Pickup points cost 9.90 EUR.</p>',
   'default', 'published', NULL, 1, '2024-05-06T09:00:00Z'),
  (6, 'returns', 'Returns',
   '<h1>Returns</h1><p>You may return any unworn product within 30 days. Print the label from ' ||
   'your account and drop the parcel at any pickup point.</p>',
   'default', 'published', NULL, 1, '2024-05-06T09:00:00Z'),
  (7, 'careers', 'Careers',
   '<h1>Careers</h1><p>Join our team: we are hiring warehouse staff in Poznan and a remote ' ||
   'customer service lead.</p>',
   'default', 'published', NULL, 1, '2024-05-06T09:00:00Z');

INSERT INTO sliders (id, code, name, placement, autoplay_ms, active) VALUES
  (1, 'home-top', 'Home top', 'home', 5000, 1),
  (2, 'category-top', 'Category top', 'category', 7000, 1);
INSERT INTO slides (id, slider_id, position, image_id, link_url, caption) VALUES
  (1, 1, 1, 7, '/c/new-arrivals', 'New arrivals'),
  (2, 1, 2, 8, '/c/summer', 'Summer is coming'),
  (3, 2, 1, 3, '/c/beach', 'Beach essentials');

INSERT INTO menus (id, code, name) VALUES
  (1, 'main', 'Main menu'),
  (2, 'footer', 'Footer'),
  (3, 'sidebar', 'Sidebar');
INSERT INTO menu_items (id, menu_id, position, label, url, cms_page_id) VALUES
  (1, 1, 1, 'Home', NULL, 1),
  (2, 1, 2, 'About', NULL, 2),
  (3, 1, 3, 'Contact', NULL, 3),
  (4, 2, 1, 'FAQ', NULL, 4),
  (5, 2, 2, 'Shipping', NULL, 5),
  (6, 2, 3, 'Returns', NULL, 6),
  (7, 3, 1, 'Careers', NULL, 7);

INSERT INTO content_blocks (id, code, name, html, image_id) VALUES
  (1, 'footer-note', 'Footer note',
   '<p>Free delivery on orders over 50 EUR. Returns within 30 days.</p>', NULL),
  (2, 'old-promo', 'Old promo',
   '<p>Spring sale: 20% off everything until 30 April.</p>', NULL),
  (3, 'newsletter', 'Newsletter',
   '<p>Sign up for our newsletter and get 10% off your first order.</p>', 6);

INSERT INTO system_settings (key, value) VALUES
  ('integrations.mobile_app.home',
   '{"banner":"gallery:mobile_app/splash.png",' ||
   '"icon":"gallery:mobile_app/icon.png","title":"Welcome"}'),
  ('integrations.mobile_app.theme',
   '{"primary":"#c0392b","logo":"gallery:mobile_app/icon.png"}');
)sql";

// Environment-specific data of PROD: never synchronized.
constexpr char kProdLocalSql[] = R"sql(
INSERT INTO users (id, email, name, role) VALUES
  (1, 'anna.kowalska@shop.example', 'Anna Kowalska', 'admin'),
  (2, 'marek.nowak@shop.example', 'Marek Nowak', 'editor'),
  (3, 'julia.wisniewska@example.com', 'Julia Wisniewska', 'customer');
INSERT INTO translations (id, locale, key, value) VALUES
  (1, 'en', 'checkout.title', 'Checkout'),
  (2, 'pl', 'checkout.title', 'Kasa'),
  (3, 'de', 'checkout.title', 'Kasse'),
  (4, 'en', 'cart.empty', 'Your cart is empty');
INSERT INTO promotion_codes (id, code, discount_pct, valid_until) VALUES
  (1, 'WELCOME10', 10, '2024-12-31'),
  (2, 'SUMMER20', 20, '2024-08-31');
INSERT INTO campaigns (id, name, starts_at, ends_at) VALUES
  (1, 'Spring sale 2024', '2024-04-01', '2024-04-30');
INSERT INTO payment_types (id, code, name, active) VALUES
  (1, 'card', 'Credit card', 1),
  (2, 'paypal', 'PayPal', 1),
  (3, 'cod', 'Cash on delivery', 1);
INSERT INTO delivery_types (id, code, name, price_cents) VALUES
  (1, 'courier', 'Courier', 1490),
  (2, 'pickup', 'Pickup point', 990),
  (3, 'store', 'Collect in store', 0);
INSERT INTO seo_settings (id, path, meta_title, meta_description) VALUES
  (1, '/', 'Our shop: fashion, beauty and home', 'New arrivals every week.');
INSERT INTO orders (id, number, user_id, total_cents, placed_at) VALUES
  (1, 'PROD-000101', 3, 12990, '2024-04-02T10:15:00Z'),
  (2, 'PROD-000102', NULL, 4590, '2024-04-09T18:40:00Z'),
  (3, 'PROD-000103', 3, 20800, '2024-04-17T07:55:00Z'),
  (4, 'PROD-000104', NULL, 5970, '2024-04-28T21:12:00Z'),
  (5, 'PROD-000105', 3, 27300, '2024-05-04T13:03:00Z');
INSERT INTO order_lines (id, order_id, sku, qty, price_cents) VALUES
  (1, 1, 'DRESS-RED-M', 1, 8990),
  (2, 1, 'SCARF-SILK', 1, 4000),
  (3, 2, 'LIPSTICK-04', 1, 4590),
  (4, 3, 'SANDAL-38', 1, 15900),
  (5, 3, 'SUNSCREEN-50', 2, 2450),
  (6, 4, 'CANDLE-FIG', 3, 1990),
  (7, 5, 'JEANS-SLIM-32', 1, 19900),
  (8, 5, 'BELT-BROWN', 1, 5900),
  (9, 5, 'SOCKS-3PK', 1, 1500);
INSERT INTO reviews (id, sku, rating, body) VALUES
  (1, 'DRESS-RED-M', 5, 'Fits perfectly.'),
  (2, 'CANDLE-FIG', 4, 'Lovely scent, burns a bit fast.');
INSERT INTO system_settings (key, value) VALUES
  ('smtp.host', 'smtp.shop.example'),
  ('shop.base_url', 'https://shop.example'),
  ('payments.provider', 'stripe-live');
)sql";

// Removes PROD's environment-specific rows from the copy that becomes TEST.
constexpr char kClearLocalSql[] = R"sql(
DELETE FROM order_lines;
DELETE FROM orders;
DELETE FROM beauty_advisor_profiles;
DELETE FROM users;
DELETE FROM translations;
DELETE FROM promotion_codes;
DELETE FROM campaigns;
DELETE FROM titles;
DELETE FROM payment_types;
DELETE FROM delivery_types;
DELETE FROM seo_settings;
DELETE FROM reviews;
DELETE FROM system_settings WHERE key NOT GLOB 'integrations.mobile_app.*';
)sql";

// Environment-specific data of TEST: never synchronized.
constexpr char kTestLocalSql[] = R"sql(
INSERT INTO users (id, email, name, role) VALUES
  (1, 'qa.lead@test.shop.example', 'QA Lead', 'admin'),
  (2, 'test.buyer@test.shop.example', 'Test Buyer', 'customer');
INSERT INTO translations (id, locale, key, value) VALUES
  (1, 'en', 'checkout.title', 'Checkout [TEST]'),
  (2, 'en', 'banner.environment', 'You are on the TEST environment'),
  (3, 'pl', 'checkout.title', 'Kasa');
INSERT INTO promotion_codes (id, code, discount_pct, valid_until) VALUES
  (1, 'QA-FREE', 100, NULL),
  (2, 'WELCOME10', 10, NULL);
INSERT INTO campaigns (id, name, starts_at, ends_at) VALUES
  (1, 'Summer sale rehearsal', '2024-06-01', '2024-06-30');
INSERT INTO payment_types (id, code, name, active) VALUES
  (1, 'card', 'Credit card', 1),
  (2, 'paypal', 'PayPal', 1),
  (3, 'cod', 'Cash on delivery', 0),
  (4, 'sandbox', 'Sandbox gateway', 1);
INSERT INTO delivery_types (id, code, name, price_cents) VALUES
  (1, 'courier', 'Courier', 1490),
  (2, 'pickup', 'Pickup point', 990),
  (3, 'store', 'Collect in store', 0);
INSERT INTO seo_settings (id, path, meta_title, meta_description) VALUES
  (1, '/', '[TEST] Our shop', 'noindex');
INSERT INTO orders (id, number, user_id, total_cents, placed_at) VALUES
  (1, 'TEST-000001', 2, 100, '2024-05-03T08:00:00Z'),
  (2, 'TEST-000002', 2, 4590, '2024-05-03T08:20:00Z');
INSERT INTO order_lines (id, order_id, sku, qty, price_cents) VALUES
  (1, 1, 'TEST-SKU-1', 1, 100),
  (2, 2, 'LIPSTICK-04', 1, 4590);
INSERT INTO system_settings (key, value) VALUES
  ('smtp.host', 'mailhog.test.shop.example'),
  ('shop.base_url', 'https://test.shop.example'),
  ('payments.provider', 'stripe-sandbox');
)sql";

// ---------------------------------------------------------------------------------------
// The pending work: edits made on each side since the last sync (docs/DEMO.md, a..z).

constexpr char kTestPendingSql[] = R"sql(
INSERT INTO users (id, email, name, role) VALUES
  (3, 'content.editor@test.shop.example', 'Content Editor', 'editor');
INSERT INTO translations (id, locale, key, value) VALUES
  (4, 'en', 'summer_sale.cta', 'Shop the summer sale');

INSERT INTO cms_pages (id, slug, title, body_html, layout, status, hero_image_id, updated_by,
                       updated_at) VALUES
  (8, 'summer-sale', 'Summer sale',
   '<h1>Summer sale</h1><p>Up to 50% off swimwear, sandals and sunglasses until 31 August.</p>',
   'default', 'published', 9, 3, '2024-05-20T14:05:00Z'),
  (20, 'winter-lookbook', 'Winter lookbook',
   '<h1>Winter lookbook</h1><p>Wool coats, chunky knits and boots for the cold months.</p>',
   'default', 'draft', NULL, 3, '2024-05-20T15:30:00Z'),
  (21, 'gift-guide', 'Gift guide',
   '<h1>Gift guide</h1><p>Ideas for every budget, picked by our team on TEST.</p>',
   'default', 'draft', NULL, 3, '2024-05-20T15:45:00Z');

UPDATE cms_pages SET title = 'About our shop', updated_by = 3,
  updated_at = '2024-05-20T14:20:00Z' WHERE id = 2;
UPDATE cms_pages SET body_html =
  '<h1>FAQ</h1><h2>How long does delivery take?</h2><p>Orders placed before 15:00 are shipped ' ||
  'the same day. Most parcels arrive the next working day.</p>',
  updated_by = 3, updated_at = '2024-05-20T14:25:00Z' WHERE id = 4;
UPDATE cms_pages SET title = 'Contact us', updated_by = 3,
  updated_at = '2024-05-20T14:30:00Z' WHERE id = 3;
UPDATE cms_pages SET body_html =
  '<h1>Shipping</h1><p>Courier delivery costs 14.90 EUR and is free on orders over 40 EUR. ' ||
  'Pickup points cost 9.90 EUR.</p>',
  updated_by = 3, updated_at = '2024-05-20T14:35:00Z' WHERE id = 5;
UPDATE cms_pages SET updated_by = 3, updated_at = '2024-05-20T14:40:00Z' WHERE id = 6;

DELETE FROM content_blocks WHERE id = 2;
DELETE FROM content_blocks WHERE id = 1;

INSERT INTO menu_items (id, menu_id, position, label, url, cms_page_id) VALUES
  (8, 1, 4, 'Summer sale', NULL, 8);

UPDATE system_settings SET value =
  '{"banner":"gallery:mobile_app/splash-winter.png",' ||
  '"icon":"gallery:mobile_app/icon.png","title":"Welcome"}'
  WHERE key = 'integrations.mobile_app.home';
)sql";

constexpr char kProdPendingSql[] = R"sql(
UPDATE cms_pages SET body_html =
  '<h1>FAQ</h1><h2>How long does delivery take?</h2><p>Orders placed before 13:00 ship the same ' ||
  'day. Allow 1-3 working days for delivery.</p>',
  updated_by = 2, updated_at = '2024-05-21T10:05:00Z' WHERE id = 4;
UPDATE cms_pages SET body_html =
  '<h1>Contact</h1><p>Write to hello@shop.example or call +48 61 555 02 00, Monday to Saturday, ' ||
  '8:00-18:00.</p>',
  updated_by = 2, updated_at = '2024-05-21T10:10:00Z' WHERE id = 3;

DELETE FROM menu_items WHERE cms_page_id = 5;
DELETE FROM cms_pages WHERE id = 5;

UPDATE content_blocks SET html =
  '<p>Free delivery on orders over 50 EUR. Free returns within 30 days.</p>' WHERE id = 1;

DELETE FROM menu_items WHERE menu_id = 3;
DELETE FROM menus WHERE id = 3;

INSERT INTO cms_pages (id, slug, title, body_html, layout, status, hero_image_id, updated_by,
                       updated_at) VALUES
  (20, 'black-friday', 'Black Friday',
   '<h1>Black Friday</h1><p>Our biggest sale of the year starts at midnight.</p>',
   'default', 'draft', NULL, 2, '2024-05-21T10:20:00Z'),
  (22, 'gift-guide', 'Gift guide',
   '<h1>Gift guide</h1><p>Gifts for her, for him and for the home.</p>',
   'default', 'published', NULL, 2, '2024-05-21T10:25:00Z');

UPDATE slides SET image_id = 3 WHERE slider_id = 1 AND position = 2;

UPDATE cms_pages SET updated_by = 2, updated_at = '2024-05-21T10:30:00Z' WHERE id = 1;

INSERT INTO orders (id, number, user_id, total_cents, placed_at) VALUES
  (6, 'PROD-000106', 3, 8990, '2024-05-21T11:02:00Z'),
  (7, 'PROD-000107', NULL, 3980, '2024-05-21T12:47:00Z');
INSERT INTO order_lines (id, order_id, sku, qty, price_cents) VALUES
  (10, 6, 'DRESS-RED-M', 1, 8990),
  (11, 7, 'CANDLE-FIG', 2, 1990);
)sql";

// ---------------------------------------------------------------------------------------
// Bulk pages.

constexpr std::array<std::string_view, 12> kBulkSentences{{
    "Our buyers travelled to three fairs this season to find fabrics that last. ",
    "Every item is checked by hand before it leaves the warehouse in Poznan. ",
    "Delivery is free on orders over 50 EUR, and returns are free for 30 days. ",
    "Sizes run true to fit; see the size guide under each product for measurements. ",
    "Members of the loyalty club collect one point for every euro they spend. ",
    "Care instructions: wash at 30 degrees, dry flat, iron on a low setting. ",
    "The colours on your screen may differ slightly from the colours of the product. ",
    "Pair it with the matching scarf or belt for a complete look this autumn. ",
    "Limited stock: when an item sells out we do not always bring it back. ",
    "Our customer service answers e-mails within one working day, often sooner. ",
    "Gift wrapping is available at checkout for a small fee, with a printed card. ",
    "Products marked with a leaf are made from recycled or organic materials. ",
}};

// Returns the runs of sentences that fill the bulk pages' bodies: run k starts at sentence k
// and is about kBulkBodyBytes long. Page n uses run n % kBulkSentences.size(); its title and
// reference make every body distinct.
std::array<std::string, kBulkSentences.size()> BulkBodyRuns() {
  std::array<std::string, kBulkSentences.size()> runs;
  for (size_t k = 0; k < runs.size(); ++k) {
    for (size_t i = 0; runs[k].size() < kBulkBodyBytes - 70; ++i) {
      runs[k].append(kBulkSentences[(k + i * 5) % kBulkSentences.size()]);
    }
  }
  return runs;
}

Status InsertBulkPages(Database& db, int64_t records) {
  Statement insert(db);
  ENVSYNC_RETURN_IF_ERROR(insert.Prepare(
      "INSERT INTO cms_pages (id, slug, title, body_html, layout, status, hero_image_id, "
      "updated_by, updated_at) VALUES (?, ?, ?, ?, 'default', 'published', NULL, 1, ?)"));
  // Plain appends rather than formatting: this loop runs a million times in a few seconds.
  const std::array<std::string, kBulkSentences.size()> runs = BulkBodyRuns();
  std::string slug;
  std::string title;
  std::string body;
  body.reserve(kBulkBodyBytes + 200);
  std::array<char, 24> digits{};
  for (int64_t n = 1; n <= records; ++n) {
    const char* end = std::to_chars(digits.data(), digits.data() + digits.size(), n).ptr;
    const std::string_view number(digits.data(), static_cast<size_t>(end - digits.data()));
    slug.assign("bulk-page-");
    if (number.size() < 7) slug.append(7 - number.size(), '0');
    slug.append(number);
    title.assign("Bulk page ");
    title.append(number);
    body.assign("<h1>");
    body.append(title);
    body.append("</h1><p>");
    body.append(runs[static_cast<size_t>(n) % runs.size()]);
    body.append("</p><p>Reference ");
    body.append(slug);
    body.append(".</p>");
    ENVSYNC_RETURN_IF_ERROR(insert.Run(kFirstBulkId - 1 + n, slug, title, body, kSyncedAt));
  }
  return Status::Ok();
}

// On TEST, edits the body of every bulk page whose id is a multiple of 1000.
Status EditBulkPagesOnTest(Database& db) {
  Result<int64_t> max_id = QueryInt(db, "SELECT COALESCE(MAX(id), 0) FROM cms_pages");
  if (!max_id.ok()) return max_id.status();
  Statement update(db);
  ENVSYNC_RETURN_IF_ERROR(
      update.Prepare("UPDATE cms_pages SET body_html = body_html || '<p>Reviewed on TEST.</p>', "
                     "updated_by = 3, updated_at = '2024-05-20T16:00:00Z' "
                     "WHERE id = ? AND slug GLOB 'bulk-page-*'"));
  for (int64_t id = 2000; id <= *max_id; id += 1000) {
    ENVSYNC_RETURN_IF_ERROR(update.Run(id));
  }
  return Status::Ok();
}

// ---------------------------------------------------------------------------------------
// Building the environments.

Status CreateProdDatabase(const DemoPaths& paths, int64_t records) {
  Database db;
  ENVSYNC_RETURN_IF_ERROR(db.Open(paths.prod_db, /*create=*/true));
  // Generation speed over durability: a failed build is deleted, never repaired. 64 KiB
  // pages pack the ~1.2 KB bulk rows tightly and cut the number of writes (and so the time
  // to build and to copy the file) by more than half against the default 4 KiB.
  ENVSYNC_RETURN_IF_ERROR(
      db.Exec("PRAGMA page_size = 65536; PRAGMA journal_mode = OFF; PRAGMA synchronous = OFF; "
              "PRAGMA cache_size = -65536;"));
  ENVSYNC_RETURN_IF_ERROR(db.Exec(EmbeddedSchema()));
  ENVSYNC_RETURN_IF_ERROR(db.InTransaction([&]() -> Status {
    Statement folder(db);
    ENVSYNC_RETURN_IF_ERROR(folder.Prepare(
        "INSERT INTO gallery_folders (id, path, name, parent_id) VALUES (?, ?, ?, ?)"));
    for (const FolderSpec& spec : kFolders) {
      ENVSYNC_RETURN_IF_ERROR(folder.Run(spec.id, spec.path, spec.name, spec.parent_id));
    }
    for (const GalleryFileSpec& file : kCommonFiles) {
      ENVSYNC_RETURN_IF_ERROR(AddGalleryFile(db, paths.prod_assets, file));
    }
    ENVSYNC_RETURN_IF_ERROR(db.Exec(kCommonContentSql));
    ENVSYNC_RETURN_IF_ERROR(db.Exec(kProdLocalSql));
    return InsertBulkPages(db, records);
  }));
  return db.Exec("PRAGMA journal_mode = DELETE;");
}

Status MakeTestFromProd(const DemoPaths& paths) {
  std::error_code ec;
  fs::copy_file(paths.prod_db, paths.test_db, fs::copy_options::none, ec);
  if (ec) {
    return Status::IoError(fmt::format("cannot copy {} to {}: {}", paths.prod_db.string(),
                                       paths.test_db.string(), ec.message()));
  }
  fs::copy(paths.prod_assets, paths.test_assets, fs::copy_options::recursive, ec);
  if (ec) {
    return Status::IoError(fmt::format("cannot copy {} to {}: {}", paths.prod_assets.string(),
                                       paths.test_assets.string(), ec.message()));
  }
  Database db;
  ENVSYNC_RETURN_IF_ERROR(db.Open(paths.test_db, /*create=*/false));
  ENVSYNC_RETURN_IF_ERROR(db.Exec("PRAGMA journal_mode = OFF; PRAGMA synchronous = OFF;"));
  ENVSYNC_RETURN_IF_ERROR(db.InTransaction([&]() -> Status {
    ENVSYNC_RETURN_IF_ERROR(db.Exec(kClearLocalSql));
    return db.Exec(kTestLocalSql);
  }));
  return db.Exec("PRAGMA journal_mode = DELETE;");
}

// Returns InvalidArgument naming the first demo file or folder that already exists in the
// demo directory.
Status RefuseExisting(const DemoPaths& paths) {
  for (const fs::path* path : {&paths.config, &paths.state, &paths.prod_db, &paths.test_db,
                               &paths.prod_assets, &paths.test_assets}) {
    std::error_code ec;
    const fs::file_status status = fs::symlink_status(*path, ec);
    if (ec && ec != std::errc::no_such_file_or_directory) {
      return Status::IoError(fmt::format("cannot inspect {}: {}", path->string(), ec.message()));
    }
    if (fs::exists(status)) {
      return Status::InvalidArgument(fmt::format(
          "{} already exists: the demo never overwrites data; choose a new or empty directory "
          "or remove the old demo first",
          path->string()));
    }
  }
  return Status::Ok();
}

// Removes what a failed CreateCommonState made; errors are ignored (the first failure is
// the one reported).
void RemoveCreated(const DemoPaths& paths, bool dir_created) noexcept {
  std::error_code ec;
  if (dir_created) {
    fs::remove_all(paths.config.parent_path(), ec);
    return;
  }
  for (const fs::path* path : {&paths.prod_db, &paths.test_db}) {
    fs::remove(*path, ec);
    fs::remove(fs::path(path->string() + "-journal"), ec);
  }
  fs::remove_all(paths.prod_assets, ec);
  fs::remove_all(paths.test_assets, ec);
}

// Creates the demo directory and both environments; `dir_created` tells whether the
// directory itself was made here.
Status CreateEnvironments(const DemoOptions& options, const DemoPaths& paths, bool* dir_created) {
  const fs::path dir = paths.config.parent_path();
  std::error_code ec;
  *dir_created = fs::create_directories(dir, ec);
  if (ec) {
    return Status::IoError(
        fmt::format("cannot create directory {}: {}", dir.string(), ec.message()));
  }
  ENVSYNC_RETURN_IF_ERROR(CreateProdDatabase(paths, options.records));
  return MakeTestFromProd(paths);
}

// ---------------------------------------------------------------------------------------
// Pending work.

// Returns InvalidArgument unless the query yields `expected`.
Status Expect(Database& db, std::string_view sql, int64_t expected, std::string_view what) {
  Result<int64_t> actual = QueryInt(db, sql);
  if (!actual.ok() || *actual != expected) {
    return Status::InvalidArgument(fmt::format(
        "{} is not in the demo's common state ({}); the pending work applies once, to a demo "
        "just created: create a new demo",
        db.path().string(), what));
  }
  return Status::Ok();
}

Status CheckCommonState(Database& test, Database& prod) {
  ENVSYNC_RETURN_IF_ERROR(Expect(test, "SELECT count(*) FROM cms_pages WHERE id IN (8, 20, 21)", 0,
                                 "pages 8, 20 and 21 must not exist"));
  ENVSYNC_RETURN_IF_ERROR(Expect(test, "SELECT count(*) FROM gallery_files WHERE id IN (9, 10)", 0,
                                 "gallery files 9 and 10 must not exist"));
  ENVSYNC_RETURN_IF_ERROR(Expect(test, "SELECT count(*) FROM content_blocks WHERE id IN (1, 2)", 2,
                                 "content blocks 1 and 2 must exist"));
  ENVSYNC_RETURN_IF_ERROR(
      Expect(test, "SELECT count(*) FROM users WHERE id = 3", 0, "user 3 must not exist"));
  ENVSYNC_RETURN_IF_ERROR(Expect(prod, "SELECT count(*) FROM cms_pages WHERE id IN (20, 22)", 0,
                                 "pages 20 and 22 must not exist"));
  ENVSYNC_RETURN_IF_ERROR(
      Expect(prod, "SELECT count(*) FROM cms_pages WHERE id = 5", 1, "page 5 must exist"));
  ENVSYNC_RETURN_IF_ERROR(
      Expect(prod, "SELECT count(*) FROM menus WHERE id = 3", 1, "menu 3 must exist"));
  return Expect(prod, "SELECT count(*) FROM orders WHERE id IN (6, 7)", 0,
                "orders 6 and 7 must not exist");
}

Status ApplyTestPendingWork(Database& db, const DemoPaths& paths) {
  // New bytes for splash.png go to a temporary file, moved over the old one only after the
  // database commits, so a failure leaves the file and its row consistent.
  Result<StoredImage> splash = RenderImage(kSplashRedesign);
  if (!splash.ok()) return splash.status();
  const fs::path splash_path = GalleryPath(paths.test_assets, kSplashRedesign);
  const fs::path splash_temp = fs::path(splash_path.string() + ".envsync-demo.tmp");
  ENVSYNC_RETURN_IF_ERROR(WriteFileBytes(splash_temp, splash->bytes));

  Status status = db.InTransaction([&]() -> Status {
    ENVSYNC_RETURN_IF_ERROR(AddGalleryFile(db, paths.test_assets, kSummerSaleFile));
    ENVSYNC_RETURN_IF_ERROR(AddGalleryFile(db, paths.test_assets, kSplashWinterFile));
    Statement update(db);
    ENVSYNC_RETURN_IF_ERROR(
        update.Prepare("UPDATE gallery_files SET size_bytes = ?, sha256 = ? WHERE id = ?"));
    ENVSYNC_RETURN_IF_ERROR(
        update.Run(static_cast<int64_t>(splash->bytes.size()), splash->sha256, kSplashRedesign.id));
    ENVSYNC_RETURN_IF_ERROR(db.Exec(kTestPendingSql));
    return EditBulkPagesOnTest(db);
  });

  std::error_code ec;
  if (!status.ok()) {
    fs::remove(splash_temp, ec);
    fs::remove(GalleryPath(paths.test_assets, kSummerSaleFile), ec);
    fs::remove(GalleryPath(paths.test_assets, kSplashWinterFile), ec);
    return status;
  }
  fs::rename(splash_temp, splash_path, ec);
  if (ec) {
    return Status::IoError(fmt::format("cannot move {} to {}: {}", splash_temp.string(),
                                       splash_path.string(), ec.message()));
  }
  return Status::Ok();
}

Status OpenExisting(Database& db, const fs::path& path, std::string_view environment) {
  std::error_code ec;
  if (!fs::is_regular_file(path, ec)) {
    return Status::NotFound(fmt::format("{} database {} does not exist: create the demo first",
                                        environment, path.string()));
  }
  return db.Open(path, /*create=*/false);
}

Status ApplyPendingWorkImpl(const DemoOptions& options) {
  const DemoPaths paths = PathsFor(options.dir);
  Database test;
  Database prod;
  ENVSYNC_RETURN_IF_ERROR(OpenExisting(test, paths.test_db, "TEST"));
  ENVSYNC_RETURN_IF_ERROR(OpenExisting(prod, paths.prod_db, "PROD"));
  ENVSYNC_RETURN_IF_ERROR(CheckCommonState(test, prod));
  ENVSYNC_RETURN_IF_ERROR(ApplyTestPendingWork(test, paths));
  return prod.InTransaction([&]() { return prod.Exec(kProdPendingSql); });
}

// ---------------------------------------------------------------------------------------
// Configuration.

// Returns `text` as a TOML basic string, quotes included: TOML basic strings take JSON's
// escapes, and JsonQuote also escapes DEL, which TOML requires.
std::string TomlString(std::string_view text) { return JsonQuote(text); }

Status WriteConfigImpl(const DemoOptions& options) {
  const DemoPaths paths = PathsFor(options.dir);
  for (const fs::path* path :
       {&paths.state, &paths.prod_db, &paths.test_db, &paths.prod_assets, &paths.test_assets}) {
    if (!IsValidUtf8(path->string())) {
      return Status::InvalidArgument(fmt::format(
          "{} is not valid UTF-8 and cannot be written to a TOML config; choose another "
          "directory",
          path->string()));
    }
  }
  const std::string text = fmt::format(
      "# envsync configuration of the demo environments (see docs/DEMO.md).\n"
      "home = \"PROD\"\n"
      "state = {}\n"
      "\n"
      "[environments.PROD]\n"
      "database = {}\n"
      "assets = {}\n"
      "\n"
      "[environments.TEST]\n"
      "database = {}\n"
      "assets = {}\n",
      TomlString(paths.state.string()), TomlString(paths.prod_db.string()),
      TomlString(paths.prod_assets.string()), TomlString(paths.test_db.string()),
      TomlString(paths.test_assets.string()));
  const fs::path temp = fs::path(paths.config.string() + ".envsync-demo.tmp");
  ENVSYNC_RETURN_IF_ERROR(WriteFileBytes(temp, text));
  std::error_code ec;
  fs::rename(temp, paths.config, ec);
  if (ec) {
    fs::remove(temp, ec);
    return Status::IoError(fmt::format("cannot write {}: {}", paths.config.string(), ec.message()));
  }
  return Status::Ok();
}

// Runs `body`, turning an exception that escapes it into a Status.
Status Guarded(const char* operation, const std::function<Status()>& body) {
  try {
    return body();
  } catch (const fs::filesystem_error& error) {
    return Status::IoError(
        fmt::format("{}: {}: {}", operation, error.path1().string(), error.code().message()));
  } catch (const std::exception& error) {
    return Status::Internal(fmt::format("{}: {}", operation, error.what()));
  }
}

}  // namespace

DemoPaths PathsFor(const fs::path& dir) {
  std::error_code ec;
  fs::path base = fs::absolute(dir, ec);
  if (ec) base = dir;
  base = base.lexically_normal();
  if (!base.has_filename() && base.has_relative_path()) base = base.parent_path();
  DemoPaths paths;
  paths.config = base / "envsync.toml";
  paths.state = base / "state.db";
  paths.prod_db = base / "prod.db";
  paths.test_db = base / "test.db";
  paths.prod_assets = base / "prod-assets";
  paths.test_assets = base / "test-assets";
  return paths;
}

Status CreateCommonState(const DemoOptions& options) {
  if (options.records < 0 || options.records > kMaxRecords) {
    return Status::InvalidArgument(
        fmt::format("records = {}: the number of bulk pages must be between 0 and {}",
                    options.records, kMaxRecords));
  }
  const DemoPaths paths = PathsFor(options.dir);
  ENVSYNC_RETURN_IF_ERROR(Guarded("demo", [&]() { return RefuseExisting(paths); }));
  bool dir_created = false;
  Status status =
      Guarded("demo", [&]() { return CreateEnvironments(options, paths, &dir_created); });
  if (!status.ok()) RemoveCreated(paths, dir_created);
  return status;
}

Status WriteConfig(const DemoOptions& options) {
  return Guarded("demo config", [&]() { return WriteConfigImpl(options); });
}

Status ApplyPendingWork(const DemoOptions& options) {
  return Guarded("demo pending work", [&]() { return ApplyPendingWorkImpl(options); });
}

}  // namespace envsync::demo
