#include <fmt/format.h>
#include <openssl/evp.h>

#include <cstdio>
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

}  // namespace

std::string AssetFolder::PathOf(const std::string& folder_path,
                                const std::string& file_name) const {
  if (!SafeFolderPath(folder_path) || !SafeSegment(file_name)) return "";
  return root_ + "/gallery/" + folder_path + "/" + file_name;
}

AssetDigest AssetFolder::Digest(const std::string& folder_path,
                                const std::string& file_name) const {
  const std::string path = PathOf(folder_path, file_name);
  if (path.empty()) {
    AssetDigest digest;
    digest.problem = fmt::format("unsafe file name '{}/{}': not read", folder_path, file_name);
    return digest;
  }
  return Sha256OfFile(path);
}

AssetDigest Sha256OfFile(const std::string& path) {
  AssetDigest digest;
  digest.path = path;
  std::unique_ptr<FILE, int (*)(FILE*)> file(std::fopen(digest.path.c_str(), "rb"), &std::fclose);
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
