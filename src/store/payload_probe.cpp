#include "store/payload_probe.hpp"

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <optional>
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

// Every record of a zip payload read back against its central-directory entry
// (format::ZipReader::record_damage). Once the central directory reads, a record that
// fails its check, or cannot be found where its entry says, is damage (ErrorCode::corrupt).
void check_records(PayloadSource& source, const std::filesystem::path& path) {
  format::ZipReader zip(source);
  for (const auto& entry : zip.entries()) {
    std::optional<std::string> damage;
    try {
      damage = zip.record_damage(entry);
    } catch (const FormatError& error) {
      damage = error.what();
    }
    if (damage) throw FormatError(ErrorCode::corrupt, fmt::format("{}: {}", path.string(), *damage), path);
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
