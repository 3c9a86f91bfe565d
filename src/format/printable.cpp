#include "format/printable.hpp"

#include <cstdint>
#include <cstdio>

namespace ckpt::format {

namespace {

// Length of the valid UTF-8 sequence at text[i] (1-4), or 0 if it is not valid
// (overlong forms, surrogates, beyond U+10FFFF, truncated).
std::size_t utf8_length(std::string_view text, std::size_t i, std::uint32_t& code) {
  const auto byte = [&](std::size_t k) { return static_cast<std::uint8_t>(text[k]); };
  const std::uint8_t b0 = byte(i);
  std::size_t n;
  if (b0 < 0x80) {
    code = b0;
    return 1;
  } else if ((b0 & 0xe0) == 0xc0) {
    n = 2, code = b0 & 0x1f;
  } else if ((b0 & 0xf0) == 0xe0) {
    n = 3, code = b0 & 0x0f;
  } else if ((b0 & 0xf8) == 0xf0) {
    n = 4, code = b0 & 0x07;
  } else {
    return 0;
  }
  if (i + n > text.size()) return 0;
  for (std::size_t k = 1; k < n; ++k) {
    if ((byte(i + k) & 0xc0) != 0x80) return 0;
    code = (code << 6) | (byte(i + k) & 0x3f);
  }
  static constexpr std::uint32_t kMin[] = {0, 0, 0x80, 0x800, 0x10000};
  if (code < kMin[n] || code > 0x10ffff || (code >= 0xd800 && code <= 0xdfff)) return 0;
  return n;
}

void hex(std::string& out, std::uint8_t b) {
  char buffer[5];
  std::snprintf(buffer, sizeof buffer, "\\x%02x", b);
  out += buffer;
}

}  // namespace

std::string printable(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (std::size_t i = 0; i < text.size();) {
    std::uint32_t code = 0;
    const std::size_t n = utf8_length(text, i, code);
    if (n == 0) {
      hex(out, static_cast<std::uint8_t>(text[i]));
      ++i;
      continue;
    }
    if (code == '\\') {
      out += "\\\\";
    } else if (code == '\n') {
      out += "\\n";
    } else if (code == '\r') {
      out += "\\r";
    } else if (code == '\t') {
      out += "\\t";
    } else if (code < 0x20 || code == 0x7f) {
      hex(out, static_cast<std::uint8_t>(code));
    } else if (code >= 0x80 && code <= 0x9f) {  // C1 controls (CSI is U+009B)
      out += "\\u00";
      char buffer[3];
      std::snprintf(buffer, sizeof buffer, "%02x", code);
      out += buffer;
    } else {
      out.append(text.substr(i, n));
    }
    i += n;
  }
  return out;
}

std::string json_safe(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (std::size_t i = 0; i < text.size();) {
    std::uint32_t code = 0;
    const std::size_t n = utf8_length(text, i, code);
    if (n == 0) {
      hex(out, static_cast<std::uint8_t>(text[i]));
      ++i;
    } else {
      out.append(text.substr(i, n));
      i += n;
    }
  }
  return out;
}

}  // namespace ckpt::format
