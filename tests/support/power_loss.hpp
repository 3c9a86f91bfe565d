// Power loss, simulated: what survives is only what was made durable.
//
// PowerLossFileSystem wraps the real file system and remembers, like LevelDB's
// FaultInjectionTestEnv, what is not yet durable: bytes appended since a file's last
// fsync, and directory changes (new files and hard links, renames, unlinks) since the directory's last
// fsync. lose_unsynced() then drops exactly those: files are cut back to their synced
// size, and directory changes are undone newest first (a rename is reversed and the
// file it replaced comes back; an unlinked file comes back; a new file or link
// disappears). A name that comes back comes back as a file of its own (its durable
// bytes), never by writing through another name that shares its inode.
// A rename across directories (into quarantine/) is durable only when both directories
// were synced since; with one of them synced, the worst case of each is taken: only the
// target synced leaves the file under both names, only the source synced loses it.
//
// The SQLite index is covered by a VFS of the same spirit ("ckpt_power_loss", register
// with register_power_loss_vfs()): it snapshots each database and WAL file when SQLite
// syncs it, and lose_unsynced_sqlite_writes() puts every file back to its last synced
// snapshot (and drops the -shm index, which SQLite rebuilds from the WAL).
//
// Neither calls the real fsync: what survives is decided by the model alone, and the
// real machine never loses power, so real fsyncs would only make the sweeps wait for
// the disk (tens of milliseconds each on a busy one).
//
// Both track a single process's activity from a fresh directory: tests run the whole
// scenario in a forked child, call both lose_* functions at the chosen moment, and
// _exit; the parent then opens the directory as a restarted machine would. A process
// crash keeps what the kernel holds, durable or not: to lose that later (a crash, then a
// power loss while recovering), the crashing child saves its record of what is not
// durable (save_state) and the next child loads it (load_state) before opening anything.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "ckpt/file_system.hpp"

namespace ckpt::test {

class PowerLossFileSystem final : public FileSystemWrapper {
 public:
  std::unique_ptr<WritableFile> create_new(const std::filesystem::path& path) override;
  void rename(const std::filesystem::path& from, const std::filesystem::path& to) override;
  // A new name (undone like a created file) for bytes as durable as the existing name's.
  void link(const std::filesystem::path& existing, const std::filesystem::path& new_path) override;
  void remove(const std::filesystem::path& path) override;
  void sync_dir(const std::filesystem::path& dir) override;
  // The file's bytes as they are now become durable (its name still needs sync_dir).
  void sync_file(const std::filesystem::path& path) override;

  // Called by the files this creates.
  void note_synced(const std::filesystem::path& path, std::uint64_t size) { synced_size_[path] = size; }

  // Drops everything not durable, on the real disk.
  void lose_unsynced();

  // What this process has not made durable, of the files and of the SQLite VFS, written
  // to `file` and read back by the process that continues after a crash. load_state
  // replaces this process's record and must run before the index is opened.
  void save_state(const std::filesystem::path& file) const;
  void load_state(const std::filesystem::path& file);

 private:
  struct DirChange {
    enum class Kind { created, renamed, removed } kind;
    std::filesystem::path path;    // created, removed: the file; renamed: the new name
    std::filesystem::path from;    // renamed: the old name
    bool had_previous = false;     // renamed, removed: a durable file was there before
    std::string previous;          // its durable content
    bool to_synced = false;        // the directory of `path` was synced since
    bool from_synced = false;      // renamed: the directory of `from` was synced since
  };
  std::string durable_content(const std::filesystem::path& path);

  std::map<std::filesystem::path, std::uint64_t> synced_size_;  // files written through here
  std::vector<DirChange> pending_;                              // not yet covered by a directory fsync
};

// Registers the "ckpt_power_loss" SQLite VFS (idempotent) and returns its name.
const char* register_power_loss_vfs();
// Puts every SQLite file opened through the VFS back to its last synced content.
void lose_unsynced_sqlite_writes();
// Registers "ckpt_no_sync" (idempotent), SQLite's own VFS without fsyncs and without
// snapshots, and returns its name: for the many opens of a sweep's checks, which do not
// depend on durability (with a PowerLossFileSystem that never loses power).
const char* register_no_sync_vfs();

}  // namespace ckpt::test
