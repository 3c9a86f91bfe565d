#include "support/fault_file_system.hpp"

#include "io/os_error.hpp"

namespace ckpt::test {

namespace {

class FaultWritableFile final : public WritableFile {
 public:
  FaultWritableFile(FaultFileSystem& fs, std::unique_ptr<WritableFile> real, std::filesystem::path path)
      : fs_(fs), real_(std::move(real)), path_(std::move(path)) {}
  void append(const void* data, std::size_t n) override {
    fs_.before(Op::write, path_);
    real_->append(data, n);
  }
  void sync() override {
    fs_.before(Op::sync, path_);
    real_->sync();
  }
  void close() override { real_->close(); }

 private:
  FaultFileSystem& fs_;
  std::unique_ptr<WritableFile> real_;
  std::filesystem::path path_;
};

class FaultReadableFile final : public ReadableFile {
 public:
  FaultReadableFile(FaultFileSystem& fs, std::unique_ptr<ReadableFile> real, std::filesystem::path path)
      : fs_(fs), real_(std::move(real)), path_(std::move(path)) {}
  std::size_t read(void* buffer, std::size_t n) override {
    fs_.before(Op::read, path_);
    return real_->read(buffer, n);
  }
  std::size_t read_at(std::uint64_t offset, void* buffer, std::size_t n) override {
    fs_.before(Op::read, path_);
    return real_->read_at(offset, buffer, n);
  }

 private:
  FaultFileSystem& fs_;
  std::unique_ptr<ReadableFile> real_;
  std::filesystem::path path_;
};

}  // namespace

void FaultFileSystem::before(Op op, const std::filesystem::path& path) {
  ++counts_[static_cast<int>(op)];
  auto& fault = faults_[static_cast<int>(op)];
  if (fault.countdown > 0 && --fault.countdown == 0) io::throw_os_error(fault.error, "injected fault", path);
}

std::unique_ptr<WritableFile> FaultFileSystem::create_new(const std::filesystem::path& path) {
  before(Op::create, path);
  return std::make_unique<FaultWritableFile>(*this, target()->create_new(path), path);
}

std::unique_ptr<ReadableFile> FaultFileSystem::open_for_read(const std::filesystem::path& path) {
  return std::make_unique<FaultReadableFile>(*this, target()->open_for_read(path), path);
}

void FaultFileSystem::rename(const std::filesystem::path& from, const std::filesystem::path& to) {
  around(Op::rename, from, [&] { target()->rename(from, to); });
}

void FaultFileSystem::link(const std::filesystem::path& existing, const std::filesystem::path& new_path) {
  around(Op::link, new_path, [&] { target()->link(existing, new_path); });
}

void FaultFileSystem::remove(const std::filesystem::path& path) {
  before(Op::remove, path);
  target()->remove(path);
}

void FaultFileSystem::sync_dir(const std::filesystem::path& dir) {
  around(Op::sync_dir, dir, [&] { target()->sync_dir(dir); });
}

void FaultFileSystem::sync_file(const std::filesystem::path& path) {
  before(Op::sync, path);
  target()->sync_file(path);
}

}  // namespace ckpt::test
