#ifndef ENVSYNC_DEMO_PNG_H_
#define ENVSYNC_DEMO_PNG_H_

#include <cstdint>
#include <string>
#include <string_view>

#include "envsync/core/status.h"

// A minimal PNG encoder for the demo's gallery images: 8-bit truecolour (RGB), no interlace,
// filter 0 on every row, the zlib stream made of stored (uncompressed) deflate blocks. The
// checksums are written by hand so the demo needs no image or compression library.
//
// Thread safety: every function is pure and may be called from any thread.
namespace envsync::demo {

// Returns the CRC-32 (ISO-HDLC, as used by PNG and zlib's crc32) of `bytes`.
uint32_t Crc32(std::string_view bytes);

// Returns the Adler-32 checksum (RFC 1950) of `bytes`.
uint32_t Adler32(std::string_view bytes);

// Returns `bytes` as a zlib stream (RFC 1950) of stored deflate blocks (RFC 1951), split
// into blocks of at most 65535 bytes.
std::string ZlibStored(std::string_view bytes);

// Returns the PNG file for an image `width` x `height` whose pixels are `rgb`: row after
// row, three bytes (red, green, blue) per pixel.
// Errors: InvalidArgument when width or height is not in 1..16384 or when `rgb` does not
// hold exactly width * height * 3 bytes.
Result<std::string> EncodePngRgb(int width, int height, std::string_view rgb);

}  // namespace envsync::demo

#endif  // ENVSYNC_DEMO_PNG_H_
