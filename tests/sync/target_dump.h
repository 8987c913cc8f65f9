// The target's content as text, to tell "exactly as before" from "exactly as after".
#ifndef ENVSYNC_TESTS_SYNC_TARGET_DUMP_H_
#define ENVSYNC_TESTS_SYNC_TARGET_DUMP_H_

#include <fmt/format.h>
#include <openssl/evp.h>
#include <sqlite3.h>

#include <filesystem>
#include <string>

#include "tests/sync/compare_test_support.h"

namespace envsync::testing {

inline std::string Sha256(const std::string& bytes) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_Digest(bytes.data(), bytes.size(), md, &len, EVP_sha256(), nullptr);
  std::string hex;
  for (unsigned int i = 0; i < len; ++i) hex += fmt::format("{:02x}", md[i]);
  return hex;
}

// Every synchronized table (without the local column updated_at, which a sync sets to now)
// and every gallery file with its hash: what "exactly as before / after" compares.
inline std::string DumpTarget(const demo::DemoPaths& paths) {
  std::string dump;
  sqlite3* db = nullptr;
  sqlite3_open_v2(paths.prod_db.c_str(), &db, SQLITE_OPEN_READONLY, nullptr);
  for (const char* sql :
       {"SELECT * FROM gallery_folders ORDER BY id", "SELECT * FROM gallery_files ORDER BY id",
        "SELECT id, slug, title, body_html, layout, status, hero_image_id, updated_by "
        "FROM cms_pages ORDER BY id",
        "SELECT * FROM sliders ORDER BY id", "SELECT * FROM slides ORDER BY id",
        "SELECT * FROM menus ORDER BY id", "SELECT * FROM menu_items ORDER BY id",
        "SELECT * FROM content_blocks ORDER BY id", "SELECT * FROM system_settings ORDER BY 1",
        "SELECT * FROM users ORDER BY id", "SELECT * FROM orders ORDER BY id"}) {
    sqlite3_stmt* st = nullptr;
    sqlite3_prepare_v2(db, sql, -1, &st, nullptr);
    dump += sql;
    dump += "\n";
    while (sqlite3_step(st) == SQLITE_ROW) {
      for (int i = 0; i < sqlite3_column_count(st); ++i) {
        const unsigned char* text = sqlite3_column_text(st, i);
        dump += text != nullptr ? reinterpret_cast<const char*>(text) : "NULL";
        dump += "|";
      }
      dump += "\n";
    }
    sqlite3_finalize(st);
  }
  sqlite3_close(db);
  for (const auto& entry : std::filesystem::recursive_directory_iterator(paths.prod_assets)) {
    if (!entry.is_regular_file()) continue;
    const std::string relative =
        std::filesystem::relative(entry.path(), paths.prod_assets).string();
    if (relative.rfind(".envsync/trash/", 0) == 0) continue;  // kept for undo
    dump += relative + " " + Sha256(ReadBytes(entry.path())) + "\n";
  }
  return dump;
}

}  // namespace envsync::testing

#endif  // ENVSYNC_TESTS_SYNC_TARGET_DUMP_H_
