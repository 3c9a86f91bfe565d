// Replacing one file durably, outside an index (ckpt::save_file): write a temp file,
// fsync it, rename it over the final name, fsync the directory.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>

#include "ckpt/file_system.hpp"
#include "ckpt/payload_io.hpp"

namespace ckpt::io {

// Writes what `write_payload` produces to `temp_path`, which must not exist and must
// sit in `path`'s directory (so the rename stays in one file system), then fsyncs it,
// renames it to `path` and fsyncs the directory. Returns the bytes written. When it
// returns, the new file survives a power loss. A failure before the rename (IoError, or
// whatever `write_payload` throws) leaves the previous file at `path` untouched and
// removes the temp file; a failed directory fsync (IoError) comes after the rename:
// `path` then holds the new file, but a power loss may bring back the previous one. A
// process killed midway leaves the temp file behind.
std::uint64_t write_file_atomically(FileSystem& fs, const std::filesystem::path& path,
                                    const std::filesystem::path& temp_path,
                                    const std::function<void(ByteSink&)>& write_payload);

// Room kept beyond a payload's size bound: file-system metadata, the index's WAL growth,
// and not leaving the disk at exactly zero bytes.
inline constexpr std::uint64_t kFreeSpaceMargin = 1 << 20;

// Refuses a save of up to `size_hint` bytes into `dir` before anything is written, so a
// save that cannot fit leaves no partial temp file to fill the disk (and the previous
// file at `target` untouched). Throws IoError (disk_full, ENOSPC) naming `target`, what it
// needs and what is available; whatever fs.free_space throws.
void require_free_space(FileSystem& fs, const std::filesystem::path& dir, const std::filesystem::path& target,
                        std::uint64_t size_hint);

}  // namespace ckpt::io
