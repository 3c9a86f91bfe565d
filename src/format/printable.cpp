#include "format/printable.hpp"

#include <cstdint>

namespace ckpt::format {

namespace {

// Length (1-4) of the valid UTF-8 sequence at text[i], with its code point in `code`, or
// 0 if the byte there does not start one: a continuation or never-used lead byte, an
// overlong form, a surrogate, beyond U+10FFFF, or truncated.
std::size_t utf8_sequence(std::string_view text, std::size_t i, std::uint32_t& code) {
  const auto byte = [&](std::size_t k) { return static_cast<std::uint8_t>(text[k]); };
  const std::uint8_t lead = byte(i);
  std::size_t n;
  if (lead < 0x80) {
    code = lead;
    return 1;
  } else if ((lead & 0xe0) == 0xc0) {
    n = 2, code = lead & 0x1f;
  } else if ((lead & 0xf0) == 0xe0) {
    n = 3, code = lead & 0x0f;
  } else if ((lead & 0xf8) == 0xf0) {
    n = 4, code = lead & 0x07;
  } else {
    return 0;
  }
  if (n > text.size() - i) return 0;
  for (std::size_t k = 1; k < n; ++k) {
    if ((byte(i + k) & 0xc0) != 0x80) return 0;
    code = (code << 6) | (byte(i + k) & 0x3f);
  }
  static constexpr std::uint32_t kSmallest[] = {0, 0, 0x80, 0x800, 0x10000};
  if (code < kSmallest[n] || code > 0x10ffff || (code >= 0xd800 && code <= 0xdfff)) return 0;
  return n;
}

void append_hex(std::string& out, const char* prefix, std::uint32_t value) {
  static constexpr char kDigits[] = "0123456789abcdef";
  out += prefix;
  out += kDigits[(value >> 4) & 0xf];
  out += kDigits[value & 0xf];
}

// How escape() treats valid UTF-8: for a terminal (controls escaped, backslashes doubled
// or not), or for JSON (passed through: nlohmann escapes controls). Invalid bytes are
// \xNN in every mode.
enum class Mode { printable, message, json };

std::string escape(std::string_view text, Mode mode) {
  std::string out;
  out.reserve(text.size());
  for (std::size_t i = 0; i < text.size();) {
    std::uint32_t code = 0;
    const std::size_t n = utf8_sequence(text, i, code);
    if (n == 0) {
      append_hex(out, "\\x", static_cast<std::uint8_t>(text[i]));
      ++i;
      continue;
    }
    if (mode == Mode::json) {
      out.append(text.substr(i, n));
    } else if (code == '\\') {
      out += mode == Mode::printable ? "\\\\" : "\\";
    } else if (code == '\n') {
      out += "\\n";
    } else if (code == '\r') {
      out += "\\r";
    } else if (code == '\t') {
      out += "\\t";
    } else if (code < 0x20 || code == 0x7f) {
      append_hex(out, "\\x", code);
    } else if (code >= 0x80 && code <= 0x9f) {
      append_hex(out, "\\u00", code);
    } else {
      out.append(text.substr(i, n));
    }
    i += n;
  }
  return out;
}

}  // namespace

std::string printable(std::string_view text) { return escape(text, Mode::printable); }

std::string printable_message(std::string_view text) { return escape(text, Mode::message); }

std::string json_safe(std::string_view text) { return escape(text, Mode::json); }

}  // namespace ckpt::format
