#include "store/payload_probe.hpp"

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>
#include <fmt/format.h>

#include "ckpt/errors.hpp"
#include "format/checkpoint_format.hpp"
#include "format/zip_reader.hpp"
#include "io/file_source.hpp"
#include "io/hasher.hpp"
#include "store/file_names.hpp"

namespace ckpt::store {

namespace {

constexpr std::size_t kChunk = 1 << 20;

}  // namespace

ProbeResult probe_payload(FileSystem& fs, const std::filesystem::path& path, HashAlgorithm algorithm) {
  auto hasher = io::Hasher::create(algorithm);
  auto file = fs.open_for_read(path);
  std::vector<unsigned char> head;
  std::vector<unsigned char> tail;
  std::vector<unsigned char> chunk(kChunk);
  ProbeResult result;
  for (;;) {
    std::size_t got = file->read(chunk.data(), chunk.size());
    if (got == 0) break;
    hasher->update(chunk.data(), got);
    result.digest.size += got;
    if (head.size() < format::kLegacyHeadMax) {
      std::size_t take = std::min(got, format::kLegacyHeadMax - head.size());
      head.insert(head.end(), chunk.begin(), chunk.begin() + static_cast<std::ptrdiff_t>(take));
    }
    tail.insert(tail.end(), chunk.begin(), chunk.begin() + static_cast<std::ptrdiff_t>(got));
    if (tail.size() > format::kZipEndMax) {
      tail.erase(tail.begin(), tail.end() - static_cast<std::ptrdiff_t>(format::kZipEndMax));
    }
  }
  result.digest.hash = hasher->hex_digest();
  // The framing is format/'s to judge; the store decides only what an incomplete file
  // means (recovery quarantines it).
  if (format::legacy_magic_length(head.data(), head.size()) != 0) {
    result.looks_complete = true;
    return result;
  }
  if (!format::looks_like_zip(head.data(), head.size())) {
    result.reason = "does not start with a zip local file header";
    return result;
  }
  try {
    format::parse_zip_end(std::string_view(reinterpret_cast<const char*>(tail.data()), tail.size()), result.digest.size);
    result.looks_complete = true;
  } catch (const FormatError& error) {
    result.reason = error.what();
  }
  return result;
}

namespace {

// Every record of a zip payload read back against its central-directory entry: its bytes
// through CRC-32, and the bytes no checksum covers that have a known form, the padding
// that aligns each record (an "FB" extra field of 'Z's, as PyTorch's writer and ckpt's
// write it). A failure is damage (ErrorCode::corrupt).
void check_records(PayloadSource& source, const std::filesystem::path& path) {
  format::ZipReader zip(source);
  std::vector<unsigned char> chunk(kChunk);
  auto damaged = [&](const std::string& what) {
    throw FormatError(ErrorCode::corrupt, fmt::format("{}: {}", path.string(), what), path);
  };
  for (const auto& entry : zip.entries()) {
    unsigned char header[30];
    source.read_at(entry.header_offset, header, sizeof header);
    const std::size_t name_length = header[26] | header[27] << 8;
    const std::size_t extra_length = header[28] | header[29] << 8;
    std::string extra(extra_length, '\0');
    source.read_at(entry.header_offset + sizeof header + name_length, extra.data(), extra.size());
    for (std::size_t at = 0; at + 4 <= extra.size();) {
      const unsigned id = static_cast<unsigned char>(extra[at]) | static_cast<unsigned char>(extra[at + 1]) << 8;
      const std::size_t length = static_cast<unsigned char>(extra[at + 2]) | static_cast<unsigned char>(extra[at + 3]) << 8;
      const std::string_view field = std::string_view(extra).substr(at + 4, length);
      if (id == 0x4246 && field.find_first_not_of('Z') != std::string_view::npos) {
        damaged(fmt::format("the padding of record {} is damaged", entry.name));
      }
      at += 4 + length;
    }
    const std::uint64_t start = zip.data_offset(entry);
    std::uint32_t crc = 0;
    for (std::uint64_t done = 0; done < entry.size;) {
      const std::size_t n = static_cast<std::size_t>(std::min<std::uint64_t>(chunk.size(), entry.size - done));
      source.read_at(start + done, chunk.data(), n);
      crc = format::crc32(crc, chunk.data(), n);
      done += n;
    }
    if (crc != entry.crc) damaged(fmt::format("record {} fails its CRC-32 check", entry.name));
  }
}

}  // namespace

std::string content_key(PayloadSource& source) {
  if (!format::looks_like_zip(source)) return {};
  format::ZipReader zip(source);
  std::vector<std::string> records;
  for (const auto& entry : zip.entries()) records.push_back(fmt::format("{}:{}:{:08x}", entry.name, entry.size, entry.crc));
  std::sort(records.begin(), records.end());
  std::string key;
  for (const auto& record : records) key += record + "\n";
  return key;
}

std::string content_key(FileSystem& fs, const std::filesystem::path& path) {
  try {
    io::FileSource source(fs, path);
    return content_key(source);
  } catch (const Error&) {
    return {};  // unreadable or not a payload: matches nothing
  }
}

PayloadCheck check_payload(FileSystem& fs, const std::filesystem::path& path, HashAlgorithm algorithm,
                           CheckDepth depth) {
  io::FileSource source(fs, path, io::Hasher::create(algorithm));
  PayloadCheck result;
  try {
    // Records first: a damaged one is damage, whatever the reader would say of it.
    if (depth == CheckDepth::whole && format::looks_like_zip(source)) check_records(source, path);
    format::CheckpointLayout layout = format::read_layout(source);
    if (layout.container == format::Container::zip) result.content_key = content_key(source);
    if (layout.root && layout.root->kind() == format::ValueKind::dict) {
      for (const auto& [key, value] : format::distinct_entries(*layout.root)) {
        if (key->kind() != format::ValueKind::string) continue;
        if (value->kind() == format::ValueKind::integer && !value->is_unsigned()) {
          result.numbers.emplace_back(key->text(), static_cast<double>(value->integer()));
          if (key->text() == names::kEpochEntry) result.epoch = value->integer();
        } else if (value->kind() == format::ValueKind::floating) {
          result.numbers.emplace_back(key->text(), value->floating());
        }
      }
    }
  } catch (const FormatError& error) {
    result.problem = error.what();
    result.damaged = error.code() == ErrorCode::corrupt;
  }
  result.digest.hash = source.finish();
  result.digest.size = source.size();
  return result;
}

}  // namespace ckpt::store
