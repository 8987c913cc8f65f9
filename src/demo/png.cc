#include "demo/png.h"

#include <algorithm>
#include <array>
#include <cstddef>
#include <string>

namespace envsync::demo {
namespace {

constexpr int kMaxSide = 16384;
constexpr size_t kMaxStoredBlock = 65535;
constexpr std::string_view kPngSignature("\x89PNG\r\n\x1a\n", 8);

constexpr std::array<uint32_t, 256> MakeCrcTable() {
  std::array<uint32_t, 256> table{};
  for (uint32_t n = 0; n < 256; ++n) {
    uint32_t c = n;
    for (int k = 0; k < 8; ++k) c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
    table[n] = c;
  }
  return table;
}

constexpr std::array<uint32_t, 256> kCrcTable = MakeCrcTable();

uint32_t UpdateCrc(uint32_t crc, std::string_view bytes) {
  for (unsigned char byte : bytes) crc = kCrcTable[(crc ^ byte) & 0xFF] ^ (crc >> 8);
  return crc;
}

void AppendBigEndian32(uint32_t value, std::string* out) {
  out->push_back(static_cast<char>((value >> 24) & 0xFF));
  out->push_back(static_cast<char>((value >> 16) & 0xFF));
  out->push_back(static_cast<char>((value >> 8) & 0xFF));
  out->push_back(static_cast<char>(value & 0xFF));
}

// Appends one chunk: length, type, data, CRC of type and data.
void AppendChunk(std::string_view type, std::string_view data, std::string* out) {
  AppendBigEndian32(static_cast<uint32_t>(data.size()), out);
  out->append(type);
  out->append(data);
  AppendBigEndian32(UpdateCrc(UpdateCrc(0xFFFFFFFFu, type), data) ^ 0xFFFFFFFFu, out);
}

}  // namespace

uint32_t Crc32(std::string_view bytes) { return UpdateCrc(0xFFFFFFFFu, bytes) ^ 0xFFFFFFFFu; }

uint32_t Adler32(std::string_view bytes) {
  constexpr uint32_t kModulus = 65521;
  // 5552 is the largest run for which the sums cannot overflow 32 bits before the modulo.
  constexpr size_t kRun = 5552;
  uint32_t a = 1;
  uint32_t b = 0;
  size_t i = 0;
  while (i < bytes.size()) {
    const size_t end = std::min(bytes.size(), i + kRun);
    for (; i < end; ++i) {
      a += static_cast<unsigned char>(bytes[i]);
      b += a;
    }
    a %= kModulus;
    b %= kModulus;
  }
  return (b << 16) | a;
}

std::string ZlibStored(std::string_view bytes) {
  std::string out;
  const size_t blocks = bytes.empty() ? 1 : (bytes.size() + kMaxStoredBlock - 1) / kMaxStoredBlock;
  out.reserve(2 + bytes.size() + blocks * 5 + 4);
  // CMF 0x78: deflate with a 32 KiB window; FLG 0x01 makes CMF*256+FLG a multiple of 31.
  out.push_back(static_cast<char>(0x78));
  out.push_back(static_cast<char>(0x01));
  size_t offset = 0;
  for (size_t block = 0; block < blocks; ++block) {
    const size_t length = std::min(kMaxStoredBlock, bytes.size() - offset);
    const bool final_block = block + 1 == blocks;
    out.push_back(static_cast<char>(final_block ? 0x01 : 0x00));  // BFINAL, BTYPE=00
    const auto len = static_cast<uint16_t>(length);
    const auto nlen = static_cast<uint16_t>(~len);
    out.push_back(static_cast<char>(len & 0xFF));
    out.push_back(static_cast<char>(len >> 8));
    out.push_back(static_cast<char>(nlen & 0xFF));
    out.push_back(static_cast<char>(nlen >> 8));
    out.append(bytes.substr(offset, length));
    offset += length;
  }
  AppendBigEndian32(Adler32(bytes), &out);
  return out;
}

Result<std::string> EncodePngRgb(int width, int height, std::string_view rgb) {
  if (width < 1 || width > kMaxSide || height < 1 || height > kMaxSide) {
    return Status::InvalidArgument("PNG size " + std::to_string(width) + "x" +
                                   std::to_string(height) + " is outside 1..16384");
  }
  const size_t row_bytes = static_cast<size_t>(width) * 3;
  if (rgb.size() != row_bytes * static_cast<size_t>(height)) {
    return Status::InvalidArgument(
        "PNG pixels: expected " + std::to_string(row_bytes * static_cast<size_t>(height)) +
        " bytes for " + std::to_string(width) + "x" + std::to_string(height) + " RGB, got " +
        std::to_string(rgb.size()));
  }

  std::string header;
  AppendBigEndian32(static_cast<uint32_t>(width), &header);
  AppendBigEndian32(static_cast<uint32_t>(height), &header);
  header.push_back(8);  // bit depth
  header.push_back(2);  // colour type: truecolour
  header.push_back(0);  // compression method: deflate
  header.push_back(0);  // filter method 0
  header.push_back(0);  // no interlace

  std::string scanlines;
  scanlines.reserve((row_bytes + 1) * static_cast<size_t>(height));
  for (int y = 0; y < height; ++y) {
    scanlines.push_back(0);  // filter type None
    scanlines.append(rgb.substr(static_cast<size_t>(y) * row_bytes, row_bytes));
  }

  std::string png(kPngSignature);
  AppendChunk("IHDR", header, &png);
  AppendChunk("IDAT", ZlibStored(scanlines), &png);
  AppendChunk("IEND", "", &png);
  return png;
}

}  // namespace envsync::demo
