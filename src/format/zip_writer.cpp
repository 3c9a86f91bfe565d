#include "format/zip_writer.hpp"

#include <libdeflate.h>

#include <algorithm>

#include "format/format_error.hpp"

namespace ckpt::format {

namespace {

constexpr std::uint64_t kAlignment = 64;
constexpr std::size_t kChunk = 1 << 20;  // CRC'd while in cache, then handed to the sink
constexpr std::uint16_t kFlags = 0x0808;  // bit 3: data descriptor; bit 11: UTF-8 names

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

}  // namespace

ZipWriter::ZipWriter(ByteSink& sink, std::string root, std::uint64_t zip64_threshold)
    : sink_(sink), root_(std::move(root)), zip64_threshold_(zip64_threshold) {}

void ZipWriter::put(const std::string& bytes) {
  sink_.write(bytes.data(), bytes.size());
  position_ += bytes.size();
}

void ZipWriter::write_record(std::string_view name, const void* data, std::uint64_t size) {
  Entry entry{root_ + "/" + std::string(name), position_, size, 0, false};
  entry.zip64_local = size >= zip64_threshold_ || position_ >= zip64_threshold_;

  std::string extra;
  if (entry.zip64_local) {
    // With a data descriptor the local sizes are unknown here: zeros, as the spec says.
    put16(extra, 0x0001);
    put16(extra, 16);
    put64(extra, 0);
    put64(extra, 0);
  }
  std::uint64_t data_start = position_ + 30 + entry.name.size() + extra.size();
  std::uint64_t padding = (kAlignment - data_start % kAlignment) % kAlignment;
  if (padding != 0) {
    if (padding < 4) padding += kAlignment;  // room for the extra field's own header
    put16(extra, 0x4246);                    // "FB", PyTorch's padding field
    put16(extra, padding - 4);
    extra.append(padding - 4, 'Z');
  }

  std::string header;
  put32(header, 0x04034b50);
  put16(header, entry.zip64_local ? 45 : 20);
  put16(header, kFlags);
  put16(header, 0);  // stored
  put16(header, 0);  // time
  put16(header, 0);  // date
  put32(header, 0);  // crc: in the data descriptor
  put32(header, entry.zip64_local ? 0xffffffffu : 0);
  put32(header, entry.zip64_local ? 0xffffffffu : 0);
  put16(header, entry.name.size());
  put16(header, extra.size());
  header += entry.name;
  header += extra;
  put(header);

  auto* bytes = static_cast<const unsigned char*>(data);
  std::uint32_t crc = 0;
  for (std::uint64_t done = 0; done < size;) {
    std::size_t n = static_cast<std::size_t>(std::min<std::uint64_t>(kChunk, size - done));
    crc = libdeflate_crc32(crc, bytes + done, n);
    sink_.write(bytes + done, n);
    done += n;
  }
  position_ += size;
  entry.crc = crc;

  std::string descriptor;
  put32(descriptor, 0x08074b50);
  put32(descriptor, crc);
  if (entry.zip64_local) {
    put64(descriptor, size);
    put64(descriptor, size);
  } else {
    put32(descriptor, size);
    put32(descriptor, size);
  }
  put(descriptor);
  entries_.push_back(std::move(entry));
}

void ZipWriter::finish() {
  const std::uint64_t cd_offset = position_;
  std::string cd;
  for (const auto& entry : entries_) {
    const bool size64 = entry.size >= zip64_threshold_;
    const bool offset64 = entry.offset >= zip64_threshold_;
    std::string extra;
    if (size64 || offset64) {
      put16(extra, 0x0001);
      put16(extra, (size64 ? 16 : 0) + (offset64 ? 8 : 0));
      if (size64) {
        put64(extra, entry.size);
        put64(extra, entry.size);
      }
      if (offset64) put64(extra, entry.offset);
    }
    put32(cd, 0x02014b50);
    put16(cd, (size64 || offset64) ? 45 : 20);  // version made by
    put16(cd, (size64 || offset64) ? 45 : 20);  // version needed
    put16(cd, kFlags);
    put16(cd, 0);
    put16(cd, 0);
    put16(cd, 0);
    put32(cd, entry.crc);
    put32(cd, size64 ? 0xffffffffu : entry.size);
    put32(cd, size64 ? 0xffffffffu : entry.size);
    put16(cd, entry.name.size());
    put16(cd, extra.size());
    put16(cd, 0);  // comment
    put16(cd, 0);  // disk
    put16(cd, 0);  // internal attributes
    put32(cd, 0);  // external attributes
    put32(cd, offset64 ? 0xffffffffu : entry.offset);
    cd += entry.name;
    cd += extra;
  }
  put(cd);
  const std::uint64_t cd_size = cd.size();
  const std::uint64_t count = entries_.size();
  const bool zip64_end = count >= 0xffff || cd_offset >= zip64_threshold_ || cd_size >= zip64_threshold_;

  std::string end;
  if (zip64_end) {
    const std::uint64_t record_offset = position_;
    put32(end, 0x06064b50);
    put64(end, 44);
    put16(end, 45);
    put16(end, 45);
    put32(end, 0);
    put32(end, 0);
    put64(end, count);
    put64(end, count);
    put64(end, cd_size);
    put64(end, cd_offset);
    put32(end, 0x07064b50);  // locator
    put32(end, 0);
    put64(end, record_offset);
    put32(end, 1);
  }
  put32(end, 0x06054b50);
  put16(end, 0);
  put16(end, 0);
  put16(end, zip64_end ? 0xffff : count);
  put16(end, zip64_end ? 0xffff : count);
  put32(end, zip64_end ? 0xffffffffu : cd_size);
  put32(end, zip64_end ? 0xffffffffu : cd_offset);
  put16(end, 0);
  put(end);
}

std::uint64_t zip_overhead_bound(std::size_t records, std::size_t longest_name) {
  // local header + zip64 extra + padding + descriptor + central entry + its zip64 extra
  const std::uint64_t per_record = 30 + 20 + 2 * kAlignment + 24 + 46 + 28 + 2 * (longest_name + 8);
  return records * per_record + 22 + 56 + 20;
}

}  // namespace ckpt::format
