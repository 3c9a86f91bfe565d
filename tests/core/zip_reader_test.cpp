// ZipReader on hand-built archives: records whose bytes overlap, extra fields that do not
// fit their declared lengths, central directories and records whose declared sizes are
// lies (checked while reading little), and record names with control bytes in messages.
// Each hostile archive is refused with a FormatError naming the cause; the legitimate
// ones (ZipWriter's, with and without ZIP64 structures, and the real torch.save files of
// tests/fixtures and tests/fuzz/corpus) still read.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "support/memory_source.hpp"
#include "ckpt/errors.hpp"
#include "ckpt/file_system.hpp"
#include "format/zip_reader.hpp"
#include "format/zip_writer.hpp"
#include "io/file_source.hpp"
#include "store/payload_probe.hpp"
#include "support/peak_memory.hpp"
#include "support/store_support.hpp"
#include "support/test_dir.hpp"

using namespace ckpt;
using namespace ckpt::format;
using namespace std::string_literals;  // "...\x00..."s keeps its NUL bytes

namespace {

using test::MemorySource;
using test::StringSink;

// Counts what is read through it: the total, and the largest single read (a reader reads
// into memory it holds, so this bounds its buffers).
class CountingSource final : public PayloadSource {
 public:
  explicit CountingSource(PayloadSource& inner) : inner_(inner) {}
  std::uint64_t size() const override { return inner_.size(); }
  void read_at(std::uint64_t offset, void* buffer, std::size_t n) override {
    total += n;
    largest = std::max<std::uint64_t>(largest, n);
    inner_.read_at(offset, buffer, n);
  }
  std::uint64_t total = 0;
  std::uint64_t largest = 0;

 private:
  PayloadSource& inner_;
};

constexpr std::uint64_t kMiB = 1 << 20;
constexpr std::uint64_t kGiB = 1ull << 30;

void put16(std::string& out, std::uint64_t v) {
  out += static_cast<char>(v & 0xff);
  out += static_cast<char>((v >> 8) & 0xff);
}
void put32(std::string& out, std::uint64_t v) {
  put16(out, v & 0xffff);
  put16(out, (v >> 16) & 0xffff);
}
void put64(std::string& out, std::uint64_t v) {
  put32(out, v & 0xffffffffu);
  put32(out, v >> 32);
}

std::uint32_t crc_of(const std::string& data) { return crc32(0, data.data(), data.size()); }

std::string extra_field(std::uint16_t id, const std::string& data, std::size_t declared = std::string::npos) {
  std::string out;
  put16(out, id);
  put16(out, declared == std::string::npos ? data.size() : declared);
  return out + data;
}

std::string zip64_values(std::initializer_list<std::uint64_t> values) {
  std::string out;
  for (std::uint64_t v : values) put64(out, v);
  return out;
}

// One central directory entry, every field given as the file holds it.
struct Central {
  std::string name;
  std::uint32_t crc = 0;
  std::uint64_t size32 = 0;        // the 32-bit size field (0xffffffff: in the ZIP64 extra)
  std::uint64_t compressed32 = 0;  // the 32-bit compressed size field
  std::uint64_t offset32 = 0;      // the 32-bit local header offset field
  std::string extra;
  std::string comment;
};

std::string central_bytes(const Central& c) {
  std::string out;
  put32(out, 0x02014b50);
  put16(out, 45);
  put16(out, 45);
  put16(out, 0x0808);
  put16(out, 0);  // stored
  put32(out, 0);  // time, date
  put32(out, c.crc);
  put32(out, c.compressed32);
  put32(out, c.size32);
  put16(out, c.name.size());
  put16(out, c.extra.size());
  put16(out, c.comment.size());
  put16(out, 0);  // disk
  put16(out, 0);  // internal attributes
  put32(out, 0);  // external attributes
  put32(out, c.offset32);
  return out + c.name + c.extra + c.comment;
}

std::string end_record(std::uint64_t count, std::uint64_t cd_size, std::uint64_t cd_offset) {
  std::string out;
  put32(out, 0x06054b50);
  put16(out, 0);
  put16(out, 0);
  put16(out, count);
  put16(out, count);
  put32(out, cd_size);
  put32(out, cd_offset);
  put16(out, 0);
  return out;
}

std::string local_header(const std::string& name, const std::string& extra = "") {
  std::string out;
  put32(out, 0x04034b50);
  put16(out, 20);
  put16(out, 0x0808);
  put16(out, 0);
  put32(out, 0);
  put32(out, 0);  // crc, sizes: in the data descriptor
  put32(out, 0);
  put32(out, 0);
  put16(out, name.size());
  put16(out, extra.size());
  return out + name + extra;
}

std::string descriptor(const std::string& data) {
  std::string out;
  put32(out, 0x08074b50);
  put32(out, crc_of(data));
  put32(out, data.size());
  put32(out, data.size());
  return out;
}

// An archive built by hand: records (local header, data, descriptor) in file order, then
// whatever central entries the test lists, then the end record.
struct Archive {
  std::string bytes;
  std::vector<Central> central;

  // Appends a record; returns its local header's offset.
  std::uint64_t add_record(const std::string& name, const std::string& data) {
    const std::uint64_t offset = bytes.size();
    bytes += local_header(name) + data + descriptor(data);
    return offset;
  }
  // A central entry with 32-bit fields for a record.
  void list(const std::string& name, const std::string& data, std::uint64_t offset) {
    central.push_back(Central{name, crc_of(data), data.size(), data.size(), offset, "", ""});
  }
  std::string finish() const {
    std::string cd;
    for (const auto& entry : central) cd += central_bytes(entry);
    return bytes + cd + end_record(central.size(), cd.size(), bytes.size());
  }
};

std::string zip_of(const std::vector<std::pair<std::string, std::string>>& records,
                   std::uint64_t zip64_threshold = kZip64Limit) {
  StringSink sink;
  ZipWriter zip(sink, "archive", zip64_threshold);
  for (const auto& [name, data] : records) zip.write_record(name, data.data(), data.size());
  zip.finish();
  return sink.bytes;
}

using test::pattern;  // bytes that are not all alike, so a record read from the wrong place shows

std::string refusal_of(PayloadSource& source) {
  try {
    ZipReader zip(source);
  } catch (const FormatError& error) {
    return error.what();
  }
  return "(no error: the archive was accepted)";
}

std::string refusal_of(const std::string& bytes) {
  MemorySource source(bytes);
  return refusal_of(source);
}

// Every record of the archive, read through ZipReader (CRC-checked).
std::vector<std::pair<std::string, std::string>> records_of(const std::string& bytes) {
  MemorySource source(bytes);
  ZipReader zip(source);
  std::vector<std::pair<std::string, std::string>> records;
  for (const auto& entry : zip.entries()) records.emplace_back(entry.name, zip.read_record(entry, kGiB));
  return records;
}

void write_at(const std::filesystem::path& path, std::uint64_t offset, const std::string& bytes) {
  std::fstream file(path, std::ios::in | std::ios::out | std::ios::binary);
  file.seekp(static_cast<std::streamoff>(offset));
  file.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  REQUIRE(file.good());
}

}  // namespace

// ---------------------------------------------------------------- 1. overlapping records

TEST_CASE("zip reader: 200 entries pointing at one 1 MiB record are refused, naming two of them", "[format][zip]") {
  const std::string data = pattern(kMiB);
  Archive archive;
  const std::uint64_t offset = archive.add_record("archive/r0", data);
  for (int i = 0; i < 200; ++i) archive.list("archive/r" + std::to_string(i), data, offset);
  const std::string bytes = archive.finish();
  MemorySource memory(bytes);
  CountingSource source(memory);
  REQUIRE_THROWS_WITH(ZipReader(source), Catch::Contains("zip: records 'r0' (1048576 bytes at 0) and 'r1' (at 0) overlap"));
  CHECK(source.total < 128 * 1024);  // the end record's search and the directory; no record
}

TEST_CASE("zip reader: records whose byte ranges overlap are refused, in any directory order", "[format][zip]") {
  // 'a' claims 1000 bytes at 0; 'b' has its header at 500, inside them.
  for (bool a_first : {true, false}) {
    Archive archive;
    archive.bytes = std::string(2000, '\0');
    const std::string a(1000, 'a'), b(100, 'b');
    if (a_first) archive.list("archive/a", a, 0);
    archive.list("archive/b", b, 500);
    if (!a_first) archive.list("archive/a", a, 0);
    const std::string bytes = archive.finish();
    MemorySource whole(bytes);
    REQUIRE_THROWS_WITH(ZipReader(whole), Catch::Contains("records 'a' (1000 bytes at 0) and 'b' (at 500) overlap"));
  }
}

TEST_CASE("zip reader: a record may end where the next local header starts, not one byte later", "[format][zip]") {
  // 'a': 30-byte local header (at least) and 100 bytes of data from 0; 'b' right after.
  auto with_b_at = [](std::uint64_t b_offset) {
    Archive archive;
    archive.bytes = std::string(400, '\0');
    archive.list("archive/a", std::string(100, 'a'), 0);
    archive.list("archive/b", std::string(10, 'b'), b_offset);
    return archive.finish();
  };
  {
    const std::string bytes = with_b_at(130);
    MemorySource source(bytes);
    ZipReader zip(source);
    REQUIRE(zip.entries().size() == 2);
    CHECK(zip.find("a")->end_limit == 130);
    CHECK(zip.find("b")->end_limit == 400);  // the central directory
  }
  const std::string bytes = with_b_at(129);
  MemorySource source(bytes);
  REQUIRE_THROWS_WITH(ZipReader(source), Catch::Contains("records 'a' (100 bytes at 0) and 'b' (at 129) overlap"));
  // The last record against the central directory: same rule (30 bytes of header).
  Archive last;
  last.bytes = std::string(129, '\0');
  last.list("archive/a", std::string(100, 'a'), 0);
  const std::string last_bytes = last.finish();
  MemorySource last_source(last_bytes);
  REQUIRE_THROWS_WITH(ZipReader(last_source), Catch::Contains("record 'a' (100 bytes at 0) overlaps the central directory"));
}

TEST_CASE("zip reader: a local header whose extra field pushes the data into the next record is refused", "[format][zip]") {
  std::string bytes = zip_of({{"a", pattern(64, 1)}, {"b", pattern(64, 2)}});
  // The first local header's extra length: 64 bytes more moves its data over 'b''s header.
  const std::uint64_t extra_length = static_cast<std::uint8_t>(bytes[28]) | static_cast<std::uint8_t>(bytes[29]) << 8;
  bytes[28] = static_cast<char>((extra_length + 64) & 0xff);
  bytes[29] = static_cast<char>((extra_length + 64) >> 8);
  MemorySource source(bytes);
  ZipReader zip(source);
  REQUIRE_THROWS_WITH(zip.data_offset(*zip.find("a")), Catch::Contains("record 'a' (64 bytes at ") &&
                                                           Catch::Contains("runs into the next record"));
  CHECK_NOTHROW(zip.data_offset(*zip.find("b")));
}

TEST_CASE("zip reader: archives of ZipWriter, with and without ZIP64 structures, still read", "[format][zip]") {
  const std::vector<std::pair<std::string, std::string>> records = {
      {"data.pkl", pattern(300, 1)}, {"data/0", ""}, {"data/1", pattern(5000, 2)}, {"data/2", ""}, {"version", "3\n"}};
  for (std::uint64_t threshold : {kZip64Limit, std::uint64_t{0}, std::uint64_t{200}}) {
    INFO("zip64 threshold " << threshold);
    const std::string bytes = zip_of(records, threshold);
    if (threshold == 0) CHECK(bytes.find("PK\x06\x06"s) != std::string::npos);  // ZIP64 end record
    CHECK(records_of(bytes) == records);
    MemorySource source(bytes);
    ZipReader zip(source);
    for (const auto& entry : zip.entries()) {
      const std::uint64_t offset = zip.data_offset(entry);
      CHECK(offset % 64 == 0);
      CHECK(offset + entry.size <= entry.end_limit);
    }
  }
}

namespace {

// parse_zip_end's input: the last kZipEndMax bytes of `bytes` (all of it when shorter).
ZipEnd end_of(const std::string& bytes) {
  const std::size_t tail = std::min(bytes.size(), kZipEndMax);
  return parse_zip_end(std::string_view(bytes).substr(bytes.size() - tail), bytes.size());
}

std::string end_refusal(const std::string& bytes) {
  try {
    end_of(bytes);
  } catch (const FormatError& error) {
    return error.what();
  }
  return "(no error: the end record was accepted)";
}

}  // namespace

TEST_CASE("zip end: a damaged end record is refused with the reason, by the reader and the store's probe alike",
          "[format][zip]") {
  const std::vector<std::pair<std::string, std::string>> records = {{"data.pkl", pattern(300, 1)}, {"version", "3\n"}};
  const std::string whole = zip_of(records);
  // The classic end record is the file's last 22 bytes; its directory offset is at 16.
  const std::size_t end_at = whole.size() - 22;

  SECTION("a whole archive: the directory ends at the end record, with or without ZIP64") {
    const ZipEnd end = end_of(whole);
    CHECK(end.record_offset == end_at);
    CHECK(end.entry_count == records.size());
    CHECK(end.directory_offset + end.directory_size == end.record_offset);
    CHECK_FALSE(end.zip64_record_offset);
    const std::string zip64 = zip_of(records, 0);
    const ZipEnd end64 = end_of(zip64);
    REQUIRE(end64.zip64_record_offset);
    CHECK(zip64.compare(*end64.zip64_record_offset, 4, "PK\x06\x06"s) == 0);
  }
  // Refused by parse_zip_end, by ZipReader, and by the store's probe (recovery's
  // "complete, or quarantine it?"), which asks the same function.
  auto require_refused = [](const std::string& damaged, const std::string& reason) {
    CHECK_THAT(end_refusal(damaged), Catch::Contains(reason));
    CHECK_THAT(refusal_of(damaged), Catch::Contains(reason));
    test::TestDir dir("zip-end");
    test::write_bytes(dir / "file.pth", damaged);
    const store::ProbeResult probe = store::probe_payload(*FileSystem::posix(), dir / "file.pth", HashAlgorithm::xxh3_128);
    CHECK_FALSE(probe.looks_complete);
    CHECK_THAT(probe.reason, Catch::Contains(reason));
  };
  std::string damaged = whole;
  SECTION("a directory offset one byte off") {
    damaged[end_at + 16] = static_cast<char>(damaged[end_at + 16] + 1);
    require_refused(damaged, "does not end where its end record starts");
  }
  SECTION("a comment length that runs past the file's end") {
    damaged[end_at + 20] = 5;
    require_refused(damaged, "no end-of-central-directory record");
  }
  SECTION("the last byte cut off") {
    damaged.pop_back();
    require_refused(damaged, "no end-of-central-directory record");
  }
  SECTION("a directory size at the ZIP64 marker without the locator") {
    for (int i = 12; i < 16; ++i) damaged[end_at + i] = '\xff';
    require_refused(damaged, "ZIP64 archive without its locator");
  }
  SECTION("fewer bytes than an end record") {
    require_refused(damaged.substr(0, 21), "too short for an archive");
  }
}

TEST_CASE("zip reader: the real torch.save files (fixtures, fuzz corpus) still read, every record", "[format][zip]") {
  const std::filesystem::path source_dir(CKPT_SOURCE_DIR);
  std::vector<std::filesystem::path> files;
  for (const auto& entry : std::filesystem::directory_iterator(source_dir / "tests" / "fixtures")) {
    if (entry.path().extension() != ".dump" && entry.path().extension() != ".md") files.push_back(entry.path());
  }
  for (const auto& entry : std::filesystem::directory_iterator(source_dir / "tests" / "fuzz" / "corpus")) {
    const std::string name = entry.path().filename().string();
    if (name.rfind("py_zip_", 0) == 0 || name.rfind("py_torch2_", 0) == 0 || name.rfind("own_", 0) == 0 ||
        name.rfind("valid_minimal", 0) == 0) {
      files.push_back(entry.path());
    }
  }
  int archives = 0;
  for (const auto& path : files) {
    INFO(path.string());
    const std::string bytes = test::read_bytes(path);
    MemorySource source(bytes);
    REQUIRE(looks_like_zip(source));
    ZipReader zip(source);
    CHECK(zip.entries().size() >= 2);
    for (const auto& entry : zip.entries()) {
      INFO(entry.name);
      CHECK(zip.read_record(entry, kGiB).size() == entry.size);
    }
    ++archives;
  }
  CHECK(archives >= 14);
}

// ---------------------------------------------------------------- 2. extra fields

namespace {

// 'data.pkl' (10 bytes at `offset`) whose central entry has these 32-bit fields and
// extra block (and comment).
std::string archive_with_extra(const std::string& extra, const std::string& comment = "", bool zip64_offset = false) {
  Archive archive;
  const std::string data = "0123456789";
  archive.add_record("archive/pad", "");
  const std::uint64_t offset = archive.add_record("archive/data.pkl", data);
  archive.central.push_back(Central{"archive/data.pkl", crc_of(data), 0xffffffffu, 0xffffffffu,
                                    zip64_offset ? 0xffffffffu : offset, extra, comment});
  return archive.finish();
}

}  // namespace

TEST_CASE("zip reader: a ZIP64 extra field shorter than the values it must supply is refused", "[format][zip]") {
  // Size and compressed size read 0xffffffff: the field must hold 16 bytes. It holds 8
  // (size = 10); the next two fields' headers (0x000a, length 0; 0x0000, length 0) read
  // as a little-endian 8-byte value are 10 too: without the bound the compressed size
  // would be taken from them and the archive accepted.
  const std::string extra = extra_field(0x0001, zip64_values({10})) + "\x0a\x00\x00\x00\x00\x00\x00\x00"s;
  CHECK_THAT(refusal_of(archive_with_extra(extra)),
             Catch::Contains("ZIP64 extra field of record 'archive/data.pkl' is 8 bytes, needs 16"));
  // All three values needed (header offset too): 16 bytes are not enough.
  const std::string three = extra_field(0x0001, zip64_values({10, 10})) + extra_field(0x5455, "\x01\x00\x00\x00\x00"s);
  CHECK_THAT(refusal_of(archive_with_extra(three, "", true)),
             Catch::Contains("ZIP64 extra field of record 'archive/data.pkl' is 16 bytes, needs 24"));
  // A ZIP64 field of length 0, at the end of the block.
  CHECK_THAT(refusal_of(archive_with_extra(extra_field(0x0001, ""), std::string(16, '\0'))),
             Catch::Contains("ZIP64 extra field of record 'archive/data.pkl' is 0 bytes, needs 16"));
}

TEST_CASE("zip reader: an extra field whose length runs past its extra block is refused", "[format][zip]") {
  // The ZIP64 field says 16 bytes; the block is 12 (its header and the 8-byte size): the
  // compressed size would come from the comment (8 bytes that read as 10).
  const std::string zip64 = extra_field(0x0001, zip64_values({10}), 16);
  CHECK_THAT(refusal_of(archive_with_extra(zip64, "\x0a\x00\x00\x00\x00\x00\x00\x00"s)),
             Catch::Contains("extra field 0x0001 of record 'archive/data.pkl' is 16 bytes, more than the 8 left in its "
                             "12-byte extra block"));
  // Another field that runs past the block, before a well-formed ZIP64 field: skipping it
  // would have stepped over the comment.
  const std::string other = extra_field(0x0001, zip64_values({10, 10})) + extra_field(0x5455, "abcd", 100);
  CHECK_THAT(refusal_of(archive_with_extra(other, std::string(100, ' '))),
             Catch::Contains("extra field 0x5455 of record 'archive/data.pkl' is 100 bytes, more than the 4 left"));
}

TEST_CASE("zip reader: valid extra fields around a ZIP64 field read correctly", "[format][zip]") {
  Archive archive;
  archive.add_record("archive/pad", pattern(70));
  const std::string data = "0123456789";
  const std::uint64_t offset = archive.add_record("archive/data.pkl", data);
  // A timestamp field, the ZIP64 field with all three values, a Unix field, "FB" padding.
  const std::string extra = extra_field(0x5455, "\x01\x00\x00\x00\x00"s) +
                            extra_field(0x0001, zip64_values({data.size(), data.size(), offset})) +
                            extra_field(0x7875, "\x01\x04\xe8\x03\x00\x00\x04\xe8\x03\x00\x00"s) +
                            extra_field(0x4246, "ZZZZ");
  archive.central.push_back(Central{"archive/data.pkl", crc_of(data), 0xffffffffu, 0xffffffffu, 0xffffffffu, extra, ""});
  archive.list("archive/pad", pattern(70), 0);
  {
    const std::string bytes = archive.finish();
    MemorySource source(bytes);
    ZipReader zip(source);
    const ZipEntry* entry = zip.find("data.pkl");
    REQUIRE(entry);
    CHECK(entry->size == 10);
    CHECK(entry->header_offset == offset);
    CHECK(zip.read_record(*entry, 64) == data);
    CHECK(zip.read_record(*zip.find("pad"), 100) == pattern(70));
  }
  // Only the size is in the ZIP64 field, which is longer than needed; 3 stray bytes end
  // the block (too few for a field header: ignored, as Python's zipfile does).
  archive.central[0] = Central{"archive/data.pkl", crc_of(data), 0xffffffffu, data.size(), offset,
                               extra_field(0x0001, zip64_values({data.size(), 77})) + "\x00\x00\x00"s, ""};
  CHECK(records_of(archive.finish()) ==
        std::vector<std::pair<std::string, std::string>>{{"data.pkl", data}, {"pad", pattern(70)}});
}

// ---------------------------------------------------------------- 3. declared sizes

TEST_CASE("zip reader: a 3 GiB central directory claimed by a sparse file is refused after reading little",
          "[format][zip]") {
  test::TestDir dir("zip-sparse");
  const std::filesystem::path path = dir / "sparse.pt";
  const std::uint64_t file_size = 3 * kGiB;
  // One real record and one valid central entry for it; then 3 GiB of holes up to the
  // end record, which claims 60,000 entries filling all of it.
  Archive archive;
  const std::string data = "0123456789";
  archive.add_record("archive/data.pkl", data);
  const std::uint64_t cd_offset = archive.bytes.size();
  archive.list("archive/data.pkl", data, 0);
  const std::string head = archive.bytes + central_bytes(archive.central[0]);
  const std::uint64_t eocd_offset = file_size - 22;
  test::write_bytes(path, head);
  std::filesystem::resize_file(path, file_size);

  SECTION("entries parsed as they are read: the first bad one (entry 1, zeros) stops the read") {
    write_at(path, eocd_offset, end_record(60000, eocd_offset - cd_offset, cd_offset));
    io::FileSource file(*FileSystem::posix(), path);
    CountingSource source(file);
    CHECK_THAT(refusal_of(source), Catch::Contains("bad central directory entry 1"));
    INFO("read " << source.total << " bytes, at most " << source.largest << " at once");
    CHECK(source.total < 2 * kMiB);
    CHECK(source.largest <= kMiB);
  }
  SECTION("one entry cannot fill 3 GiB: refused before the directory is read") {
    write_at(path, eocd_offset, end_record(1, eocd_offset - cd_offset, cd_offset));
    io::FileSource file(*FileSystem::posix(), path);
    CountingSource source(file);
    CHECK_THAT(refusal_of(source), Catch::Contains("1 entries cannot fill a 3221225378-byte central directory"));
    INFO("read " << source.total << " bytes");
    CHECK(source.total <= 22 + 0xffff);  // the end record's search, nothing more
  }
}

TEST_CASE("zip reader: a central directory larger than its entries could ever be is refused", "[format][zip]") {
  // One entry of 46 + 16 bytes and 196,600 bytes of trailing zeros: more than the largest
  // possible entry (46 + 3 * 65535 bytes).
  Archive archive;
  const std::string data = "0123456789";
  archive.add_record("archive/data.pkl", data);
  archive.list("archive/data.pkl", data, 0);
  const std::string cd = central_bytes(archive.central[0]);
  for (std::size_t padding : {std::size_t{196589}, std::size_t{196590}}) {
    const std::string full = cd + std::string(padding, '\0');
    const std::string bytes = archive.bytes + full + end_record(1, full.size(), archive.bytes.size());
    INFO("directory of " << full.size() << " bytes");
    if (full.size() <= 46 + 3 * 65535) {
      CHECK(records_of(bytes).size() == 1);  // trailing bytes after the entries are tolerated
    } else {
      CHECK_THAT(refusal_of(bytes), Catch::Contains("1 entries cannot fill a 196652-byte central directory"));
    }
  }
}

TEST_CASE("zip reader: a record claiming 1 GiB of a sparse file fails its CRC-32 after a 1 MiB-buffer pass",
          "[format][zip]") {
  test::TestDir dir("zip-sparse-record");
  const std::filesystem::path path = dir / "record.pt";
  const std::string name = "archive/data.pkl";
  const std::string header = local_header(name);
  const std::uint64_t size = kGiB;
  // The local header, 1 GiB of holes (zeros), a descriptor, the central directory.
  test::write_bytes(path, header);
  std::filesystem::resize_file(path, header.size() + size);
  const std::uint64_t cd_offset = header.size() + size + 16;
  const std::string cd = central_bytes(Central{name, 0x12345678u, size, size, 0, "", ""});
  write_at(path, header.size() + size, std::string(16, '\0') + cd + end_record(1, cd.size(), cd_offset));

  io::FileSource file(*FileSystem::posix(), path);
  CountingSource source(file);
  ZipReader zip(source);
  const ZipEntry* entry = zip.find("data.pkl");
  REQUIRE(entry);
  REQUIRE(entry->size == size);
  // max_size is checked first: nothing read.
  const std::uint64_t before = source.total;
  REQUIRE_THROWS_WITH(zip.read_record(*entry, size - 1), Catch::Contains("record 'data.pkl' is 1073741824 bytes, more than"));
  CHECK(source.total == before);
  source.largest = 0;
  const auto growth = test::peak_growth_kib([&] {
    REQUIRE_THROWS_WITH(zip.read_record(*entry, size), Catch::Contains("record 'data.pkl' fails its CRC-32 check"));
  });
  INFO("largest single read " << source.largest << " bytes");
  CHECK(source.largest <= kMiB);  // never a 1 GiB buffer
  REQUIRE(growth.has_value());  // /proc/self/clear_refs refused: the peak cannot be measured
  CHECK(*growth < 64 * 1024);
}

TEST_CASE("zip reader: a record over 1 MiB reads whole when valid, and a bad one fails before its allocation",
          "[format][zip]") {
  const std::string data = pattern(3 * kMiB + 123);
  std::string bytes = zip_of({{"data/0", data}, {"version", "3\n"}});
  {
    MemorySource memory(bytes);
    CountingSource source(memory);
    ZipReader zip(source);
    source.total = source.largest = 0;
    CHECK(zip.read_record(*zip.find("data/0"), 4 * kMiB) == data);
    CHECK(source.total <= 2 * data.size() + 64);  // the CRC pass, then the record
    CHECK(source.largest == data.size());          // one buffer of the record's size
  }
  bytes[bytes.find(data) + 2 * kMiB + 7] ^= 0x20;  // in the third 1 MiB chunk
  MemorySource memory(bytes);
  CountingSource source(memory);
  ZipReader zip(source);
  source.largest = 0;
  REQUIRE_THROWS_WITH(zip.read_record(*zip.find("data/0"), 4 * kMiB), Catch::Contains("record 'data/0' fails its CRC-32 check"));
  CHECK(source.largest <= kMiB);
}

// ---------------------------------------------------------------- 4. names in messages

TEST_CASE("zip reader: names with control bytes or invalid UTF-8 are escaped in messages", "[format][zip]") {
  auto message_for = [](const std::string& name) {
    return refusal_of(zip_of({{"data.pkl", "x"}, {name, "y"}}));
  };
  // ESC [2J (clear the screen) and a stray 0xff, in a name refused for its '..'.
  const std::string clear = message_for("x\x1b[2J\xff/../y");
  CHECK_THAT(clear, Catch::Contains("unsafe record name 'archive/x\\x1b[2J\\xff/../y'"));
  CHECK(std::none_of(clear.begin(), clear.end(), [](char c) { return static_cast<unsigned char>(c) < 0x20; }));
  // Valid UTF-8 passes; DEL, an overlong '/', a surrogate, > U+10FFFF and a truncated
  // sequence are escaped byte by byte.
  CHECK_THAT(message_for("donn\xc3\xa9\x65s\xe2\x82\xac/../y"), Catch::Contains("'archive/donn\xc3\xa9\x65s\xe2\x82\xac/../y'"));
  CHECK_THAT(message_for("a\x7f\xc0\xaf\xed\xa0\x80\xf4\x90\x80\x80\xc3/../y"),
             Catch::Contains("'archive/a\\x7f\\xc0\\xaf\\xed\\xa0\\x80\\xf4\\x90\\x80\\x80\\xc3/../y'"));
  // A name the overlap check quotes: a CR, a BEL and a C1 CSI (U+009B), as
  // format::printable writes them (what the CLI shows).
  Archive archive;
  archive.bytes = std::string(2000, '\0');
  archive.list("archive/a\r\a\xc2\x9b", std::string(1000, 'a'), 0);
  archive.list("archive/b", std::string(10, 'b'), 10);
  CHECK_THAT(refusal_of(archive.finish()),
             Catch::Contains("records 'a\\r\\x07\\u009b' (1000 bytes at 0) and 'b' (at 10) overlap"));
}
