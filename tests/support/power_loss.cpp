#include "support/power_loss.hpp"

#include <sqlite3.h>

#include <cstring>
#include <fstream>
#include <mutex>
#include <sstream>
#include <stdexcept>

namespace ckpt::test {

namespace {

std::string read_all(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream content;
  content << in.rdbuf();
  return content.str();
}

void write_all(const std::filesystem::path& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

// A name that comes back after a power loss, as a file of its own: whatever is at
// `path` now may be a hard link of a file under another name, whose bytes must not change.
void restore_name(const std::filesystem::path& path, const std::string& bytes) {
  std::filesystem::remove(path);
  write_all(path, bytes);
}

class TrackedFile final : public WritableFile {
 public:
  TrackedFile(PowerLossFileSystem& fs, std::unique_ptr<WritableFile> real, std::filesystem::path path)
      : fs_(fs), real_(std::move(real)), path_(std::move(path)) {}
  void append(const void* data, std::size_t n) override {
    real_->append(data, n);
    size_ += n;
  }
  void sync() override {
    fs_.note_synced(path_, size_);  // no real fsync: see the header
  }
  void close() override { real_->close(); }

 private:
  PowerLossFileSystem& fs_;
  std::unique_ptr<WritableFile> real_;
  std::filesystem::path path_;
  std::uint64_t size_ = 0;
};

}  // namespace

std::string PowerLossFileSystem::durable_content(const std::filesystem::path& path) {
  std::string content = read_all(path);
  auto synced = synced_size_.find(path);
  if (synced != synced_size_.end() && content.size() > synced->second) content.resize(synced->second);
  return content;
}

std::unique_ptr<WritableFile> PowerLossFileSystem::create_new(const std::filesystem::path& path) {
  auto file = target()->create_new(path);
  synced_size_[path] = 0;
  pending_.push_back({DirChange::Kind::created, path, {}, false, {}});
  return std::make_unique<TrackedFile>(*this, std::move(file), path);
}

void PowerLossFileSystem::rename(const std::filesystem::path& from, const std::filesystem::path& to) {
  DirChange change{DirChange::Kind::renamed, to, from, false, {}};
  if (std::filesystem::exists(to)) {
    change.had_previous = true;
    change.previous = durable_content(to);
  }
  target()->rename(from, to);
  auto synced = synced_size_.find(from);
  if (synced != synced_size_.end()) {
    synced_size_[to] = synced->second;
    synced_size_.erase(synced);
  } else {
    synced_size_.erase(to);
  }
  pending_.push_back(std::move(change));
}

void PowerLossFileSystem::link(const std::filesystem::path& existing, const std::filesystem::path& new_path) {
  target()->link(existing, new_path);
  auto synced = synced_size_.find(existing);
  if (synced != synced_size_.end()) synced_size_[new_path] = synced->second;
  pending_.push_back({DirChange::Kind::created, new_path, {}, false, {}});
}

void PowerLossFileSystem::remove(const std::filesystem::path& path) {
  DirChange change{DirChange::Kind::removed, path, {}, false, {}};
  if (std::filesystem::exists(path)) {
    change.had_previous = true;
    change.previous = durable_content(path);
  }
  target()->remove(path);
  synced_size_.erase(path);
  pending_.push_back(std::move(change));
}

void PowerLossFileSystem::sync_dir(const std::filesystem::path& dir) {
  std::vector<DirChange> still_pending;  // no real fsync: see the header
  for (auto& change : pending_) {
    if (change.path.parent_path() == dir) change.to_synced = true;
    if (change.kind == DirChange::Kind::renamed && change.from.parent_path() == dir) change.from_synced = true;
    bool durable = change.to_synced && (change.kind != DirChange::Kind::renamed || change.from_synced);
    if (!durable) still_pending.push_back(std::move(change));
  }
  pending_ = std::move(still_pending);
}

void PowerLossFileSystem::sync_file(const std::filesystem::path& path) {
  synced_size_[path] = std::filesystem::file_size(path);
}

void PowerLossFileSystem::lose_unsynced() {
  // Unsynced bytes first (files still under the names they were written under), then
  // directory changes, newest first.
  for (const auto& [path, size] : synced_size_) {
    if (std::filesystem::exists(path) && std::filesystem::file_size(path) > size) std::filesystem::resize_file(path, size);
  }
  for (auto change = pending_.rbegin(); change != pending_.rend(); ++change) {
    switch (change->kind) {
      case DirChange::Kind::created: std::filesystem::remove(change->path); break;
      case DirChange::Kind::renamed:
        if (change->to_synced) {
          // The new name is durable, the old one's removal is not: the file is under both.
          if (std::filesystem::exists(change->path)) restore_name(change->from, read_all(change->path));
        } else if (change->from_synced) {
          // The old name's removal is durable, the new name is not: the file is gone.
          std::filesystem::remove(change->path);
          if (change->had_previous) restore_name(change->path, change->previous);
        } else {
          if (std::filesystem::exists(change->path)) std::filesystem::rename(change->path, change->from);
          if (change->had_previous) restore_name(change->path, change->previous);
        }
        break;
      case DirChange::Kind::removed:
        if (change->had_previous) restore_name(change->path, change->previous);
        break;
    }
  }
  pending_.clear();
}

// ---- SQLite VFS ----

namespace {

struct VfsFile {
  sqlite3_file base;  // must be first: SQLite hands this pointer to the methods
  sqlite3_file* real;
  std::string path;
};

std::mutex vfs_mutex;
std::map<std::string, std::string>& snapshots() {  // path -> content at its last sync
  static std::map<std::string, std::string> instance;
  return instance;
}
sqlite3_vfs* real_vfs = nullptr;

sqlite3_file* real_of(sqlite3_file* file) { return reinterpret_cast<VfsFile*>(file)->real; }

int vfs_close(sqlite3_file* file) {
  auto* wrapper = reinterpret_cast<VfsFile*>(file);
  int rc = wrapper->real->pMethods->xClose(wrapper->real);
  sqlite3_free(wrapper->real);
  wrapper->path.~basic_string();
  return rc;
}
int vfs_read(sqlite3_file* f, void* b, int n, sqlite3_int64 o) { return real_of(f)->pMethods->xRead(real_of(f), b, n, o); }
int vfs_write(sqlite3_file* f, const void* b, int n, sqlite3_int64 o) { return real_of(f)->pMethods->xWrite(real_of(f), b, n, o); }
int vfs_truncate(sqlite3_file* f, sqlite3_int64 size) { return real_of(f)->pMethods->xTruncate(real_of(f), size); }
int vfs_sync(sqlite3_file* f, int flags) {
  (void)flags;  // no real fsync: see the header
  std::lock_guard<std::mutex> lock(vfs_mutex);
  auto* file = reinterpret_cast<VfsFile*>(f);
  snapshots()[file->path] = read_all(file->path);
  return SQLITE_OK;
}
int vfs_file_size(sqlite3_file* f, sqlite3_int64* size) { return real_of(f)->pMethods->xFileSize(real_of(f), size); }
int vfs_lock(sqlite3_file* f, int level) { return real_of(f)->pMethods->xLock(real_of(f), level); }
int vfs_unlock(sqlite3_file* f, int level) { return real_of(f)->pMethods->xUnlock(real_of(f), level); }
int vfs_check_lock(sqlite3_file* f, int* out) { return real_of(f)->pMethods->xCheckReservedLock(real_of(f), out); }
int vfs_control(sqlite3_file* f, int op, void* arg) { return real_of(f)->pMethods->xFileControl(real_of(f), op, arg); }
int vfs_sector(sqlite3_file* f) { return real_of(f)->pMethods->xSectorSize(real_of(f)); }
int vfs_device(sqlite3_file* f) { return real_of(f)->pMethods->xDeviceCharacteristics(real_of(f)); }
int vfs_shm_map(sqlite3_file* f, int page, int size, int extend, void volatile** p) {
  return real_of(f)->pMethods->xShmMap(real_of(f), page, size, extend, p);
}
int vfs_shm_lock(sqlite3_file* f, int offset, int n, int flags) { return real_of(f)->pMethods->xShmLock(real_of(f), offset, n, flags); }
void vfs_shm_barrier(sqlite3_file* f) { real_of(f)->pMethods->xShmBarrier(real_of(f)); }
int vfs_shm_unmap(sqlite3_file* f, int del) { return real_of(f)->pMethods->xShmUnmap(real_of(f), del); }

const sqlite3_io_methods kMethods = {
    2,           vfs_close,   vfs_read,       vfs_write,       vfs_truncate,     vfs_sync,   vfs_file_size,
    vfs_lock,    vfs_unlock,  vfs_check_lock, vfs_control,     vfs_sector,       vfs_device, vfs_shm_map,
    vfs_shm_lock, vfs_shm_barrier, vfs_shm_unmap, nullptr, nullptr};

int vfs_sync_nothing(sqlite3_file*, int) { return SQLITE_OK; }

const sqlite3_io_methods kNoSyncMethods = {
    2,           vfs_close,   vfs_read,       vfs_write,       vfs_truncate,     vfs_sync_nothing, vfs_file_size,
    vfs_lock,    vfs_unlock,  vfs_check_lock, vfs_control,     vfs_sector,       vfs_device, vfs_shm_map,
    vfs_shm_lock, vfs_shm_barrier, vfs_shm_unmap, nullptr, nullptr};

// Opens through the real VFS; `power_loss` snapshots the file as durable on first sight.
int open_wrapped(const char* name, sqlite3_file* file, int flags, int* out_flags, bool power_loss) {
  auto* wrapper = reinterpret_cast<VfsFile*>(file);
  wrapper->base.pMethods = nullptr;
  wrapper->real = static_cast<sqlite3_file*>(sqlite3_malloc(real_vfs->szOsFile));
  if (!wrapper->real) return SQLITE_NOMEM;
  std::memset(wrapper->real, 0, real_vfs->szOsFile);
  int rc = real_vfs->xOpen(real_vfs, name, wrapper->real, flags, out_flags);
  if (rc != SQLITE_OK) {
    sqlite3_free(wrapper->real);
    return rc;
  }
  new (&wrapper->path) std::string(name ? name : "");
  if (power_loss) {
    std::lock_guard<std::mutex> lock(vfs_mutex);
    if (name && !snapshots().count(name)) {
      // What exists when first opened counts as durable (the scenario starts empty).
      snapshots()[name] = read_all(name);
    }
  }
  wrapper->base.pMethods = power_loss ? &kMethods : &kNoSyncMethods;
  return SQLITE_OK;
}

int vfs_open(sqlite3_vfs*, const char* name, sqlite3_file* file, int flags, int* out_flags) {
  return open_wrapped(name, file, flags, out_flags, /*power_loss=*/true);
}
int vfs_open_no_sync(sqlite3_vfs*, const char* name, sqlite3_file* file, int flags, int* out_flags) {
  return open_wrapped(name, file, flags, out_flags, /*power_loss=*/false);
}

int vfs_delete(sqlite3_vfs*, const char* name, int sync_dir) {
  {
    std::lock_guard<std::mutex> lock(vfs_mutex);
    snapshots().erase(name);
  }
  return real_vfs->xDelete(real_vfs, name, sync_dir);
}
int vfs_access(sqlite3_vfs*, const char* name, int flags, int* out) { return real_vfs->xAccess(real_vfs, name, flags, out); }
int vfs_full_path(sqlite3_vfs*, const char* name, int n, char* out) { return real_vfs->xFullPathname(real_vfs, name, n, out); }
void* vfs_dl_open(sqlite3_vfs*, const char* name) { return real_vfs->xDlOpen(real_vfs, name); }
void vfs_dl_error(sqlite3_vfs*, int n, char* out) { real_vfs->xDlError(real_vfs, n, out); }
void (*vfs_dl_sym(sqlite3_vfs*, void* h, const char* s))(void) { return real_vfs->xDlSym(real_vfs, h, s); }
void vfs_dl_close(sqlite3_vfs*, void* h) { real_vfs->xDlClose(real_vfs, h); }
int vfs_randomness(sqlite3_vfs*, int n, char* out) { return real_vfs->xRandomness(real_vfs, n, out); }
int vfs_sleep(sqlite3_vfs*, int us) { return real_vfs->xSleep(real_vfs, us); }
int vfs_current_time(sqlite3_vfs*, double* out) { return real_vfs->xCurrentTime(real_vfs, out); }
int vfs_last_error(sqlite3_vfs*, int n, char* out) { return real_vfs->xGetLastError(real_vfs, n, out); }

}  // namespace

const char* register_power_loss_vfs() {
  static sqlite3_vfs vfs{};
  static std::once_flag once;
  std::call_once(once, [] {
    real_vfs = sqlite3_vfs_find(nullptr);
    vfs.iVersion = 1;
    vfs.szOsFile = sizeof(VfsFile);
    vfs.mxPathname = real_vfs->mxPathname;
    vfs.zName = "ckpt_power_loss";
    vfs.xOpen = vfs_open;
    vfs.xDelete = vfs_delete;
    vfs.xAccess = vfs_access;
    vfs.xFullPathname = vfs_full_path;
    vfs.xDlOpen = vfs_dl_open;
    vfs.xDlError = vfs_dl_error;
    vfs.xDlSym = vfs_dl_sym;
    vfs.xDlClose = vfs_dl_close;
    vfs.xRandomness = vfs_randomness;
    vfs.xSleep = vfs_sleep;
    vfs.xCurrentTime = vfs_current_time;
    vfs.xGetLastError = vfs_last_error;
    sqlite3_vfs_register(&vfs, /*makeDflt=*/0);
  });
  return vfs.zName;
}

const char* register_no_sync_vfs() {
  static sqlite3_vfs vfs{};
  static std::once_flag once;
  std::call_once(once, [] {
    vfs = *sqlite3_vfs_find(register_power_loss_vfs());
    vfs.pNext = nullptr;
    vfs.zName = "ckpt_no_sync";
    vfs.xOpen = vfs_open_no_sync;
    sqlite3_vfs_register(&vfs, /*makeDflt=*/0);
  });
  return vfs.zName;
}

void lose_unsynced_sqlite_writes() {
  std::lock_guard<std::mutex> lock(vfs_mutex);
  for (const auto& [path, content] : snapshots()) {
    if (path.size() > 4 && path.compare(path.size() - 4, 4, "-shm") == 0) {
      std::filesystem::remove(path);  // shared-memory index: rebuilt from the WAL
    } else {
      write_all(path, content);
    }
  }
}

// ---- carrying the record of what is not durable across a crash ----

namespace {

void put_number(std::ostream& out, std::uint64_t value) { out.write(reinterpret_cast<const char*>(&value), sizeof value); }
void put_text(std::ostream& out, const std::string& text) {
  put_number(out, text.size());
  out.write(text.data(), static_cast<std::streamsize>(text.size()));
}
std::uint64_t get_number(std::istream& in) {
  std::uint64_t value = 0;
  if (!in.read(reinterpret_cast<char*>(&value), sizeof value)) throw std::runtime_error("power-loss state: truncated");
  return value;
}
std::string get_text(std::istream& in) {
  std::string text(get_number(in), '\0');
  if (!in.read(text.data(), static_cast<std::streamsize>(text.size()))) throw std::runtime_error("power-loss state: truncated");
  return text;
}

}  // namespace

void PowerLossFileSystem::save_state(const std::filesystem::path& file) const {
  std::ofstream out(file, std::ios::binary | std::ios::trunc);
  put_number(out, synced_size_.size());
  for (const auto& [path, size] : synced_size_) {
    put_text(out, path.string());
    put_number(out, size);
  }
  put_number(out, pending_.size());
  for (const auto& change : pending_) {
    put_number(out, static_cast<std::uint64_t>(change.kind));
    put_text(out, change.path.string());
    put_text(out, change.from.string());
    put_number(out, change.had_previous);
    put_text(out, change.previous);
    put_number(out, change.to_synced);
    put_number(out, change.from_synced);
  }
  std::lock_guard<std::mutex> lock(vfs_mutex);
  put_number(out, snapshots().size());
  for (const auto& [path, content] : snapshots()) {
    put_text(out, path);
    put_text(out, content);
  }
  out.flush();
  if (!out) throw std::runtime_error("power-loss state: cannot write " + file.string());
}

void PowerLossFileSystem::load_state(const std::filesystem::path& file) {
  std::ifstream in(file, std::ios::binary);
  if (!in) throw std::runtime_error("power-loss state: cannot read " + file.string());
  synced_size_.clear();
  for (std::uint64_t n = get_number(in); n > 0; --n) {
    std::filesystem::path path = get_text(in);
    synced_size_[path] = get_number(in);
  }
  pending_.clear();
  for (std::uint64_t n = get_number(in); n > 0; --n) {
    DirChange change{static_cast<DirChange::Kind>(get_number(in)), {}, {}, false, {}};
    change.path = get_text(in);
    change.from = get_text(in);
    change.had_previous = get_number(in) != 0;
    change.previous = get_text(in);
    change.to_synced = get_number(in) != 0;
    change.from_synced = get_number(in) != 0;
    pending_.push_back(std::move(change));
  }
  std::lock_guard<std::mutex> lock(vfs_mutex);
  snapshots().clear();
  for (std::uint64_t n = get_number(in); n > 0; --n) {
    std::string path = get_text(in);
    snapshots()[path] = get_text(in);
  }
}

}  // namespace ckpt::test
