#include <fcntl.h>
#include <fmt/format.h>
#include <openssl/evp.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <filesystem>
#include <memory>

#include "envsync/store/environment.h"

namespace envsync::store {
namespace {

bool SafeSegment(const std::string& segment) {
  if (segment.empty() || segment == "." || segment == "..") return false;
  for (const char c : segment) {
    if (c == '\0' || c == '\\' || c == '/') return false;
  }
  return true;
}

bool SafeFolderPath(const std::string& path) {
  if (path.empty()) return false;
  size_t start = 0;
  while (true) {
    const size_t slash = path.find('/', start);
    if (!SafeSegment(path.substr(start, slash == std::string::npos ? slash : slash - start))) {
      return false;
    }
    if (slash == std::string::npos) return true;
    start = slash + 1;
  }
}

// The first symlink among the folders and the file below `gallery` on the way to
// `folder_path/file_name`, or "" when there is none. Parts that do not exist yet are fine (a
// sync creates them). The assets folder and its gallery themselves may be symlinks: where they
// live is the platform operator's choice, not the content's.
std::string SymlinkBelow(const std::filesystem::path& gallery, const std::string& folder_path,
                         const std::string& file_name) {
  std::filesystem::path path = gallery;
  std::error_code ec;
  for (const auto& part : std::filesystem::path(folder_path) / file_name) {
    path /= part;
    const auto status = std::filesystem::symlink_status(path, ec);
    if (ec || status.type() == std::filesystem::file_type::not_found) return "";
    if (status.type() == std::filesystem::file_type::symlink) return path.string();
  }
  return "";
}

}  // namespace

std::string AssetFolder::PathOf(const std::string& folder_path,
                                const std::string& file_name) const {
  if (!SafeFolderPath(folder_path) || !SafeSegment(file_name)) return "";
  if (!SymlinkBelow(root_ + "/gallery", folder_path, file_name).empty()) return "";
  return root_ + "/gallery/" + folder_path + "/" + file_name;
}

AssetDigest AssetFolder::Digest(const std::string& folder_path,
                                const std::string& file_name) const {
  AssetDigest digest;
  if (!SafeFolderPath(folder_path) || !SafeSegment(file_name)) {
    digest.problem = fmt::format("unsafe file name '{}/{}': not read", folder_path, file_name);
    return digest;
  }
  const std::string link = SymlinkBelow(root_ + "/gallery", folder_path, file_name);
  if (!link.empty()) {
    digest.problem =
        fmt::format("{} is a symlink inside the gallery (it could point anywhere): not read", link);
    return digest;
  }
  return Sha256OfFile(PathOf(folder_path, file_name));
}

AssetDigest Sha256OfFile(const std::string& path) {
  AssetDigest digest;
  digest.path = path;
  // O_NOFOLLOW: a file swapped for a symlink after the check above is not followed either.
  const int fd = ::open(digest.path.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
  std::unique_ptr<FILE, int (*)(FILE*)> file(fd >= 0 ? ::fdopen(fd, "rb") : nullptr, &std::fclose);
  if (fd >= 0 && !file) ::close(fd);
  if (!file && errno == ELOOP) {
    digest.problem = fmt::format("{} is a symlink: not read", digest.path);
    return digest;
  }
  if (!file) {
    digest.problem = fmt::format("file is missing: {}", digest.path);
    return digest;
  }
  std::unique_ptr<EVP_MD_CTX, void (*)(EVP_MD_CTX*)> ctx(EVP_MD_CTX_new(), &EVP_MD_CTX_free);
  EVP_DigestInit_ex(ctx.get(), EVP_sha256(), nullptr);
  char buffer[1 << 16];
  size_t n;
  while ((n = std::fread(buffer, 1, sizeof(buffer), file.get())) > 0) {
    EVP_DigestUpdate(ctx.get(), buffer, n);
  }
  if (std::ferror(file.get())) {
    digest.problem = fmt::format("cannot read {}", digest.path);
    return digest;
  }
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int md_len = 0;
  EVP_DigestFinal_ex(ctx.get(), md, &md_len);
  static constexpr char kHex[] = "0123456789abcdef";
  digest.sha256.reserve(md_len * 2);
  for (unsigned int i = 0; i < md_len; ++i) {
    digest.sha256.push_back(kHex[md[i] >> 4]);
    digest.sha256.push_back(kHex[md[i] & 15]);
  }
  return digest;
}

}  // namespace envsync::store
