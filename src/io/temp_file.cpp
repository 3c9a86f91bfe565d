#include "io/temp_file.hpp"

namespace ckpt::io {

namespace {
// Large enough that a small state costs one write() call; writes at least this big
// bypass the buffer so tensor data is not copied.
constexpr std::size_t kBufferSize = 1 << 20;
}  // namespace

TempFile::TempFile(FileSystem& fs, std::filesystem::path path)
    : fs_(fs), path_(std::move(path)), file_(fs.create_new(path_)) {
  buffer_.reserve(kBufferSize);
}

TempFile::~TempFile() {
  if (released_) return;
  file_.reset();
  try {
    fs_.remove(path_);
  } catch (...) {
    // Destructors never throw; recovery removes leftover temp files on the next open.
  }
}

TempName::~TempName() {
  if (released_) return;
  try {
    fs_.remove(path_);
  } catch (...) {
    // As ~TempFile: recovery removes leftover temp files on the next open.
  }
}

void TempFile::write(const void* data, std::size_t n) {
  size_ += n;
  if (buffer_.size() + n <= kBufferSize) {
    auto* bytes = static_cast<const char*>(data);
    buffer_.insert(buffer_.end(), bytes, bytes + n);
    return;
  }
  flush_buffer();
  if (n >= kBufferSize) {
    file_->append(data, n);
  } else {
    auto* bytes = static_cast<const char*>(data);
    buffer_.insert(buffer_.end(), bytes, bytes + n);
  }
}

void TempFile::flush_buffer() {
  if (buffer_.empty()) return;
  file_->append(buffer_.data(), buffer_.size());
  buffer_.clear();
}

std::uint64_t TempFile::flush() {
  flush_buffer();
  return size_;
}

std::uint64_t TempFile::sync_and_close(bool sync) {
  flush_buffer();
  if (sync) file_->sync();
  file_->close();
  return size_;
}

}  // namespace ckpt::io
