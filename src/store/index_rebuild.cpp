// Checking a directory's index, and rebuilding it from the checkpoint files (`ckpt repair
// --apply` on an index that is missing, damaged or too new). The rebuild holds the
// writer lock from before it looks at the index until the new one is durable, and moves
// the old index aside through the FileSystem seam with a directory fsync, so that a
// power loss can never bring the old index back over the new one.
#include "store/store_impl.hpp"

#include <fmt/format.h>
#include <vector>

#include "log/log.hpp"

namespace ckpt {

namespace {
using namespace store_files;

IndexHealth check_index_file(FileSystem& fs, const std::filesystem::path& path) {
  IndexHealth health;
  if (!fs.file_size(path)) {
    health.state = IndexHealth::State::missing;
    return health;
  }
  try {
    index::Index index(path, index::Index::Mode::read_only);
    health.detail = index.integrity_check();
    if (health.detail != "ok") {
      health.state = IndexHealth::State::damaged;
      return health;
    }
    health.detail.clear();
    (void)index.all_rows();  // a damaged page can also surface only when read
    (void)index.events();
  } catch (const IndexError& error) {
    health.detail = error.what();
    health.state = error.code() == ErrorCode::schema_too_new ? IndexHealth::State::too_new : IndexHealth::State::damaged;
  }
  return health;
}

}  // namespace

CheckpointStore::Impl::Impl(std::filesystem::path dir, StoreOptions options, Rebuild rebuild)
    : dir_(std::move(dir)), options_(std::move(options)), fs_(options_.file_system) {
  open_directory();  // takes the lock: no writer can be using the index from here on
  rebuild_.found = check_index_file(*fs_, dir_ / names::kIndex);
  switch (rebuild_.found.state) {
    case IndexHealth::State::ok:
    case IndexHealth::State::missing: break;
    case IndexHealth::State::too_new:
      if (!rebuild.replace_newer) {
        throw IndexError(ErrorCode::schema_too_new,
                         rebuild_.found.detail + " (a rebuild that replaces it keeps it aside)",
                         dir_ / names::kIndex);
      }
      [[fallthrough]];
    case IndexHealth::State::damaged:
      rebuild_.old_index = move_index_aside();
      break;
  }
  open_index();
  rebuild_.recovery = report_;
  // The new index's own name: SQLite syncs its files, not always the directory entry.
  fs_->sync_dir(dir_);
  if (!rebuild_.old_index.empty()) {
    log::write(level_enum::warn, "{}: rebuilt the index from the checkpoint files (adopted {}, quarantined {}); "
               "the old one is kept as {}", dir_.string(), report_.adopted, report_.quarantined,
               rebuild_.old_index.string());
  }
}

// Sidecars first: a crash between the moves then leaves the new index's name without a
// stale -wal or hot -journal beside it, which SQLite would replay into the new database.
std::filesystem::path CheckpointStore::Impl::move_index_aside() {
  const std::string index = (dir_ / names::kIndex).string();
  std::string aside;
  for (int attempt = 0;; ++attempt) {
    aside = fmt::format("{}.old-{}{}", index, store::utc_stamp(), attempt == 0 ? std::string() : fmt::format("-{}", attempt));
    if (!fs_->file_size(aside) && !fs_->file_size(aside + "-wal")) break;
  }
  std::vector<std::string> moved;  // suffixes already aside
  for (const char* suffix : {"-wal", "-shm", "-journal", ""}) {
    const std::string from = index + suffix;
    if (!fs_->file_size(from)) continue;
    try {
      fs_->rename(from, aside + suffix);
      moved.push_back(suffix);
    } catch (const std::exception& error) {
      // Put the sidecars back: an index without its -wal loses the frames committed
      // there (a too-new index kept as it is would look older than it is).
      std::string left_aside;
      for (const std::string& back : moved) {
        try {
          fs_->rename(aside + back, index + back);
        } catch (const std::exception&) {
          left_aside += fmt::format("{}{} ", aside, back);
        }
      }
      throw IoError(ErrorCode::io,
                    fmt::format("{}: could not move the old index aside to {}: {}; nothing was rebuilt{}", from,
                                aside + suffix, error.what(),
                                left_aside.empty() ? std::string()
                                                   : fmt::format(" (could not move back: {}; rename them back by hand)",
                                                                 left_aside.substr(0, left_aside.size() - 1))),
                    from);
    }
  }
  step("index_moved_aside");
  // Before the new index exists under the old one's name: a rename a power loss undoes
  // would bring the old index back over the new one, and lose the name it was kept as.
  try {
    fs_->sync_dir(dir_);
  } catch (const std::exception& error) {
    throw IoError(ErrorCode::io,
                  fmt::format("{}: moved the old index aside as {}, but the directory fsync failed: {}; nothing was "
                              "rebuilt (the next open or rebuild creates a new index)",
                              index, aside, error.what()),
                  index);
  }
  step("index_aside_synced");
  return aside;
}

IndexHealth CheckpointStore::check_index(const std::filesystem::path& dir, StoreOptions options) {
  std::shared_ptr<FileSystem> fs = options.file_system ? options.file_system : FileSystem::posix();
  return check_index_file(*fs, dir / names::kIndex);
}

IndexRebuild CheckpointStore::rebuild_index(const std::filesystem::path& dir, StoreOptions options, bool replace_newer) {
  Impl rebuilt(dir, std::move(options), Impl::Rebuild{replace_newer});
  return rebuilt.last_rebuild();
}

}  // namespace ckpt
