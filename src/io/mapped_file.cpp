#include "io/mapped_file.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <fmt/format.h>

#include "ckpt/errors.hpp"
#include "io/file_source.hpp"
#include "io/os_error.hpp"

namespace ckpt::io {

std::shared_ptr<MappedFile> MappedFile::open(const std::filesystem::path& path) {
  int fd = retry_on_eintr([&] { return ::open(path.c_str(), O_RDONLY | O_CLOEXEC); });
  if (fd < 0) throw_os_error(errno, "open", path);
  struct stat st{};
  if (::fstat(fd, &st) != 0) {
    int saved = errno;
    ::close(fd);
    throw_os_error(saved, "stat", path);
  }
  auto size = static_cast<std::uint64_t>(st.st_size);
  char* data = nullptr;
  if (size > 0) {
    void* mapped = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
    if (mapped == MAP_FAILED) {
      int saved = errno;
      ::close(fd);
      throw_os_error(saved, "mmap", path);
    }
    data = static_cast<char*>(mapped);
  }
  ::close(fd);  // the mapping outlives the descriptor
  return std::shared_ptr<MappedFile>(new MappedFile(path, data, size));
}

MappedFile::~MappedFile() {
  if (data_) ::munmap(data_, size_);
}

void MappedFile::read_at(std::uint64_t offset, void* buffer, std::size_t n) {
  check_read_range(path_, offset, n, size_);
  if (n > 0) std::memcpy(buffer, data_ + offset, n);
}

}  // namespace ckpt::io
