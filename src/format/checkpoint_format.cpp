#include "format/checkpoint_format.hpp"

#include <algorithm>
#include <cstdlib>
#include <cstring>

#include "format/format_error.hpp"
#include "format/printable.hpp"
#include "format/pickle_reader.hpp"
#include "format/pickle_writer.hpp"
#include "format/zip_reader.hpp"
#include "format/zip_writer.hpp"

namespace ckpt::format {

namespace {

// data.pkl holds only structure; a larger one is not a checkpoint we should trust with
// memory (storages hold the bulk).
constexpr std::uint64_t kMaxPickleSize = 1ull << 30;
constexpr char kArchiveRoot[] = "archive";

constexpr unsigned char kLegacyMagic[] = {0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19, 0x2e};
static_assert(kLegacyHeadMax == 2 + 9 + sizeof kLegacyMagic);

// The version record's number. Not std::atoi: its result is undefined when the number
// does not fit in an int (a fuzzed "99999999999999999999"); strtol saturates, then the
// value is clamped to a range where every unsupported version stays unsupported.
int parse_version(const std::string& text) {
  return static_cast<int>(std::clamp(std::strtol(text.c_str(), nullptr, 10), -1L, 1000L));
}

void locate_legacy_storages(PayloadSource& source, CheckpointLayout& layout, const Value& keys, std::uint64_t pos);

std::uint64_t storage_bytes(const StorageInfo& storage) {
  return checked_mul(storage.numel, element_size(storage.dtype), "storage size");
}

CheckpointLayout read_zip_layout(PayloadSource& source) {
  ZipReader zip(source);
  CheckpointLayout layout;
  layout.container = Container::zip;
  layout.archive_root = zip.root();
  const ZipEntry* pickle = zip.find("data.pkl");
  if (!pickle) fail("zip: no data.pkl record: not a torch.save payload");
  if (const ZipEntry* version = zip.find("version")) {
    std::string text = zip.read_record(*version, 64);
    layout.version = parse_version(text);
  } else if (const ZipEntry* data_version = zip.find(".data/version")) {
    layout.version = parse_version(zip.read_record(*data_version, 64));
  }
  if (layout.version > 3 || layout.version < 1) fail("zip: unsupported format version {}", layout.version);
  if (const ZipEntry* byteorder = zip.find("byteorder")) {
    if (zip.read_record(*byteorder, 64) != "little") fail("zip: big-endian payloads are not supported");
  }
  const std::string pickle_bytes = zip.read_record(*pickle, kMaxPickleSize);
  layout.budget = std::make_shared<MemoryBudget>(MemoryBudget::for_structure(pickle_bytes.size()));
  PickleReader reader(pickle_bytes, *layout.budget);
  layout.root = reader.load();
  layout.storages = reader.storages();
  for (const auto& storage : layout.storages) {
    const ZipEntry* record = zip.find("data/" + storage->key);
    if (!record) fail("zip: storage '{}' used by data.pkl has no record data/{}", printable(storage->key), printable(storage->key));
    const std::uint64_t expected = storage_bytes(*storage);
    if (record->size != expected) {
      fail("zip: record data/{} has {} bytes; its {} {} elements need {}", printable(storage->key), record->size,
           storage->numel, dtype_name(storage->dtype), expected);
    }
    layout.locations[storage->key] = StorageLocation{zip.data_offset(*record), record->size, record->crc};
  }
  return layout;
}

// The legacy stream: five pickles (magic, protocol 1001, system info, the object, the
// storage keys), then each storage as an 8-byte element count and its bytes. Only the
// pickles are read: a prefix of the file that doubles until they parse (or the prefix
// reaches the file's end or kMaxPickleSize), so memory and time follow the pickles'
// size, not the storages'.
CheckpointLayout read_legacy_layout(PayloadSource& source, std::size_t magic_length) {
  const std::uint64_t limit = std::min<std::uint64_t>(source.size(), kMaxPickleSize);
  for (std::uint64_t prefix = std::min<std::uint64_t>(limit, 1 << 20);; prefix = std::min(limit, 2 * prefix)) {
    std::string bytes(prefix, '\0');
    source.read_at(0, bytes.data(), bytes.size());
    auto budget = std::make_shared<MemoryBudget>(MemoryBudget::for_structure(prefix));
    PickleReader reader(bytes, *budget);
    reader.seek(magic_length);
    try {
      ValuePtr protocol = reader.load();
      if (protocol->kind() != ValueKind::integer || protocol->integer() != 1001) fail("legacy: unsupported protocol version");
      ValuePtr sys_info = reader.load();
      for (const auto& [key, value] : sys_info->entries()) {
        if (key->kind() == ValueKind::string && key->text() == "little_endian" && value->kind() == ValueKind::boolean &&
            !value->boolean()) {
          fail("legacy: big-endian payloads are not supported");
        }
      }
      CheckpointLayout layout;
      layout.container = Container::legacy;
      layout.version = 1001;
      layout.root = reader.load();
      layout.storages = reader.storages();
      ValuePtr keys = reader.load();
      if (keys->kind() != ValueKind::list) fail("legacy: the storage key list is missing");
      layout.budget = budget;
      locate_legacy_storages(source, layout, *keys, reader.position());
      return layout;
    } catch (const FormatError&) {
      if (!reader.ran_out() || prefix >= limit) throw;
      // The pickles continue past the prefix: read more.
    }
  }
}

void locate_legacy_storages(PayloadSource& source, CheckpointLayout& layout, const Value& keys, std::uint64_t pos) {
  const std::uint64_t size = source.size();
  // Looked up by key in a map: scanning every storage for each listed key was quadratic
  // (fuzzing: a 1.3 MB file of 40,000 storages and 50,000 keys took a minute).
  std::unordered_map<std::string, std::shared_ptr<StorageInfo>> by_key;
  for (const auto& candidate : layout.storages) by_key.emplace(candidate->key, candidate);
  for (const auto& key : keys.items()) {
    if (key->kind() != ValueKind::string) fail("legacy: a storage key is not a string");
    auto found = by_key.find(key->text());
    if (found == by_key.end()) fail("legacy: storage '{}' is listed but never used", printable(key->text()));
    const std::shared_ptr<StorageInfo>& storage = found->second;
    // torch lists each storage once; a repeated (memo-referenced) long key would make
    // each lookup above hash it again.
    if (layout.locations.count(storage->key)) fail("legacy: storage '{}' is listed twice", printable(key->text()));
    if (pos > size || size - pos < 8) fail("legacy: truncated before storage '{}'", printable(key->text()));
    unsigned char header[8];
    source.read_at(pos, header, sizeof header);
    std::uint64_t numel = 0;
    for (int i = 0; i < 8; ++i) numel |= std::uint64_t(header[i]) << (8 * i);
    pos += 8;
    if (numel != storage->numel) {
      fail("legacy: storage '{}' holds {} elements, the pickle says {}", printable(key->text()), numel, storage->numel);
    }
    const std::uint64_t nbytes = storage_bytes(*storage);
    if (nbytes > size - pos) fail("legacy: storage '{}' is truncated", printable(key->text()));
    layout.locations[storage->key] = StorageLocation{pos, nbytes, std::nullopt};
    pos += nbytes;
  }
  for (const auto& storage : layout.storages) {
    if (!layout.locations.count(storage->key)) fail("legacy: storage '{}' has no data", printable(storage->key));
  }
}

}  // namespace

std::size_t legacy_magic_length(const unsigned char* head, std::size_t n) {
  if (n < 2 + sizeof kLegacyMagic || head[0] != 0x80 || head[1] < 2 || head[1] > 5) return 0;
  std::size_t pos = 2;
  if (head[1] >= 4 && n >= 11 + sizeof kLegacyMagic && head[2] == 0x95) pos += 9;  // FRAME
  if (n - pos < sizeof kLegacyMagic || std::memcmp(head + pos, kLegacyMagic, sizeof kLegacyMagic) != 0) return 0;
  return pos + sizeof kLegacyMagic;
}

CheckpointLayout read_layout(PayloadSource& source) {
  if (looks_like_zip(source)) return read_zip_layout(source);
  unsigned char head[kLegacyHeadMax];
  const auto n = static_cast<std::size_t>(std::min<std::uint64_t>(source.size(), sizeof head));
  source.read_at(0, head, n);
  if (std::size_t magic = legacy_magic_length(head, n)) return read_legacy_layout(source, magic);
  fail("not a PyTorch payload (neither a zip archive nor a legacy torch.save stream)");
}

PreparedCheckpoint prepare_checkpoint(const ValuePtr& root, std::vector<std::shared_ptr<StorageInfo>> storages) {
  return PreparedCheckpoint{write_pickle(root), std::move(storages)};
}

void PreparedCheckpoint::write(ByteSink& sink) const {
  ZipWriter zip(sink, kArchiveRoot);
  zip.write_record("data.pkl", pickle.data(), pickle.size());
  zip.write_record("byteorder", "little", 6);
  for (const auto& storage : storages) {
    zip.write_record("data/" + storage->key, storage->data, storage_bytes(*storage));
  }
  zip.write_record("version", "3\n", 2);
  zip.finish();
}

std::uint64_t PreparedCheckpoint::size_bound() const {
  std::uint64_t total = pickle.size() + 8;
  for (const auto& storage : storages) total += storage_bytes(*storage);
  return total + zip_overhead_bound(storages.size() + 3, 32);
}

FormatError storage_crc_error(const std::string& key, const std::filesystem::path& path) {
  return FormatError(ErrorCode::corrupt,
                     fmt::format("{}: storage record data/{} fails its CRC-32 check (damaged file)", path.string(), key),
                     path);
}

void read_storage_record(PayloadSource& source, const std::string& key, const StorageLocation& location, char* out,
                         std::vector<char>* scratch, const std::filesystem::path& path, std::size_t chunk) {
  if (!out && scratch) chunk = std::max<std::size_t>(1, std::min(chunk, scratch->size()));  // (out is null for an empty storage)
  std::uint32_t crc = 0;
  for (std::uint64_t done = 0; done < location.nbytes;) {
    const std::size_t n = static_cast<std::size_t>(std::min<std::uint64_t>(chunk, location.nbytes - done));
    char* into = out ? out + done : scratch->data();
    source.read_at(location.offset + done, into, n);
    if (location.crc32) crc = crc32(crc, into, n);
    done += n;
  }
  if (location.crc32 && crc != *location.crc32) throw storage_crc_error(key, path);
}

}  // namespace ckpt::format
