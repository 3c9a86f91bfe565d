#include "support/store_support.hpp"

#include <SQLiteCpp/SQLiteCpp.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>

#include "io/hashed_file.hpp"
#include "store/file_names.hpp"
#include "support/test_dir.hpp"

namespace ckpt::test {

namespace {
void put16(std::string& out, unsigned v) {
  out += static_cast<char>(v & 0xff);
  out += static_cast<char>((v >> 8) & 0xff);
}
void put32(std::string& out, std::uint32_t v) {
  put16(out, v & 0xffff);
  put16(out, v >> 16);
}
}  // namespace

std::string zip_payload(int seed, std::size_t data_size) {
  const std::string name = "archive/data.pkl";
  std::string data(data_size, '\0');
  std::uint32_t x = static_cast<std::uint32_t>(seed) * 2654435761u + 1;
  for (auto& c : data) {
    x = x * 1664525u + 1013904223u;
    c = static_cast<char>(x >> 24);
  }
  std::string zip;
  put32(zip, 0x04034b50);  // local file header, stored, CRC not checked by the probe
  put16(zip, 20); put16(zip, 0); put16(zip, 0); put16(zip, 0); put16(zip, 0);
  put32(zip, 0); put32(zip, static_cast<std::uint32_t>(data.size())); put32(zip, static_cast<std::uint32_t>(data.size()));
  put16(zip, static_cast<unsigned>(name.size())); put16(zip, 0);
  zip += name;
  zip += data;
  std::uint32_t cd_offset = static_cast<std::uint32_t>(zip.size());
  put32(zip, 0x02014b50);  // central directory entry
  put16(zip, 20); put16(zip, 20); put16(zip, 0); put16(zip, 0); put16(zip, 0); put16(zip, 0);
  put32(zip, 0); put32(zip, static_cast<std::uint32_t>(data.size())); put32(zip, static_cast<std::uint32_t>(data.size()));
  put16(zip, static_cast<unsigned>(name.size())); put16(zip, 0); put16(zip, 0); put16(zip, 0); put16(zip, 0);
  put32(zip, 0); put32(zip, 0);
  zip += name;
  std::uint32_t cd_size = static_cast<std::uint32_t>(zip.size()) - cd_offset;
  put32(zip, 0x06054b50);  // end of central directory
  put16(zip, 0); put16(zip, 0); put16(zip, 1); put16(zip, 1);
  put32(zip, cd_size); put32(zip, cd_offset); put16(zip, 0);
  return zip;
}

CheckpointRecord save_bytes(CheckpointStore& store, CheckpointKind kind, std::optional<std::int64_t> epoch,
                            const std::string& bytes, std::optional<double> metric) {
  return store.save(kind, epoch, metric, bytes.size(), [&](ByteSink& sink) { sink.write(bytes.data(), bytes.size()); });
}

CheckpointRecord save_epoch(CheckpointStore& store, std::int64_t epoch, const std::string& bytes) {
  return save_bytes(store, CheckpointKind::epoch, epoch, bytes);
}

std::vector<IndexRow> index_rows(const std::filesystem::path& dir) {
  SQLite::Database db((dir / "index.sqlite").string(), SQLite::OPEN_READONLY);
  SQLite::Statement query(db, "SELECT id, kind, epoch, file, hash, status FROM checkpoints ORDER BY id");
  std::vector<IndexRow> rows;
  while (query.executeStep()) {
    IndexRow row;
    row.id = query.getColumn(0).getInt64();
    row.kind = query.getColumn(1).getString();
    if (!query.getColumn(2).isNull()) row.epoch = query.getColumn(2).getInt64();
    row.file = query.getColumn(3).getString();
    row.hash = query.getColumn(4).getString();
    row.status = query.getColumn(5).getString();
    rows.push_back(row);
  }
  return rows;
}

std::vector<std::string> index_events(const std::filesystem::path& dir) {
  SQLite::Database db((dir / "index.sqlite").string(), SQLite::OPEN_READONLY);
  SQLite::Statement query(db, "SELECT event FROM events ORDER BY id");
  std::vector<std::string> events;
  while (query.executeStep()) events.push_back(query.getColumn(0).getString());
  return events;
}

std::string xxh3_of(const std::filesystem::path& path) {
  return io::hash_file(*FileSystem::posix(), path, HashAlgorithm::xxh3_128).hash;
}

std::vector<std::string> invariant_violations(const std::filesystem::path& dir) {
  std::vector<std::string> violations;
  SQLite::Database db((dir / "index.sqlite").string(), SQLite::OPEN_READONLY);
  std::string integrity = db.execAndGet("PRAGMA integrity_check").getString();
  if (integrity != "ok") violations.push_back("integrity_check: " + integrity);

  SQLite::Statement live(db, "SELECT file, size, hash, status FROM checkpoints "
                             "WHERE status IN ('committed', 'consumed', 'pending')");
  std::vector<std::string> live_files;
  while (live.executeStep()) {
    std::string file = live.getColumn(0).getString();
    if (live.getColumn(3).getString() == "pending") {
      violations.push_back("pending row left for " + file);
      continue;
    }
    live_files.push_back(file);
    auto path = dir / file;
    if (!std::filesystem::exists(path)) {
      violations.push_back("committed row without file: " + file);
      continue;
    }
    auto digest = io::hash_file(*FileSystem::posix(), path, HashAlgorithm::xxh3_128);
    if (static_cast<std::int64_t>(digest.size) != live.getColumn(1).getInt64() ||
        digest.hash != live.getColumn(2).getString()) {
      violations.push_back("file does not match its row: " + file);
    }
  }
  for (const auto& name : file_names(dir)) {
    if (names::is_temp_file(name)) violations.push_back("temp file left: " + name);
    if (names::parse_checkpoint_file(name) &&
        std::find(live_files.begin(), live_files.end(), name) == live_files.end()) {
      violations.push_back("checkpoint file without a row: " + name);
    }
  }
  return violations;
}

int run_in_child(const std::function<void()>& body) {
  std::fflush(nullptr);
  pid_t pid = ::fork();
  if (pid == 0) {
    try {
      body();
    } catch (...) {
      ::_exit(3);
    }
    ::_exit(0);
  }
  int status = 0;
  ::waitpid(pid, &status, 0);
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  return 128 + WTERMSIG(status);
}

}  // namespace ckpt::test
