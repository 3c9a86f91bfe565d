#include "support/store_support.hpp"
#include "support/memory_source.hpp"

#include <SQLiteCpp/SQLiteCpp.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>

#include "format/checkpoint_format.hpp"
#include "io/file_hash.hpp"
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

namespace {
// The payload's bytes, by ckpt's writer (storage's data must be alive).
std::string written(const format::ValuePtr& root, const std::shared_ptr<format::StorageInfo>& storage) {
  StringSink sink;
  format::prepare_checkpoint(root, {storage}).write(sink);
  return sink.bytes;
}

// A 1-D tensor of `numel` `dtype` elements at `data` (which must outlive the write),
// in storage "0".
std::shared_ptr<format::TensorInfo> vector_tensor(format::DType dtype, const void* data, std::size_t numel) {
  auto storage = std::make_shared<format::StorageInfo>();
  storage->key = "0";
  storage->dtype = dtype;
  storage->numel = numel;
  storage->data = data;
  auto tensor = std::make_shared<format::TensorInfo>();
  tensor->storage = storage;
  tensor->sizes = {static_cast<std::int64_t>(numel)};
  tensor->strides = {1};
  return tensor;
}
}  // namespace

std::string pattern(std::size_t size, std::uint32_t seed) {
  std::string bytes(size, '\0');
  std::uint32_t x = seed * 2654435761u + 1;
  for (auto& byte : bytes) {
    x = x * 1664525u + 1013904223u;
    byte = static_cast<char>(x >> 24);
  }
  return bytes;
}

StoreOptions options_with(std::shared_ptr<FileSystem> fs, int max_to_keep) {
  StoreOptions options;
  options.max_to_keep = max_to_keep;
  options.file_system = std::move(fs);
  return options;
}

std::string zip_payload(int seed, std::size_t data_size) {
  const std::string data = pattern(data_size, static_cast<std::uint32_t>(seed));
  // torch.save's layout, by ckpt's writer: {"seed": seed, "data": uint8 tensor of the bytes}.
  auto tensor = vector_tensor(format::DType::uint8, data.data(), data.size());
  auto root = format::Value::dict();
  root->add_entry(format::Value::of_string("seed"), format::Value::of_int(seed));
  root->add_entry(format::Value::of_string("data"), format::Value::of_tensor(tensor));
  return written(root, tensor->storage);
}

std::string guide_payload(std::int64_t epoch, double val_acc, double best_acc, int seed) {
  std::vector<float> weights(16);
  for (std::size_t i = 0; i < weights.size(); ++i) weights[i] = static_cast<float>(seed) + 0.25f * static_cast<float>(i);
  auto tensor = vector_tensor(format::DType::float32, weights.data(), weights.size());
  auto model = format::Value::dict();
  model->add_entry(format::Value::of_string("w"), format::Value::of_tensor(tensor));
  auto root = format::Value::dict();
  root->add_entry(format::Value::of_string("epoch"), format::Value::of_int(epoch));
  root->add_entry(format::Value::of_string("model"), model);
  root->add_entry(format::Value::of_string("best_acc"), format::Value::of_double(best_acc));
  root->add_entry(format::Value::of_string("val_acc"), format::Value::of_double(val_acc));
  return written(root, tensor->storage);
}

CheckpointRecord save_bytes(CheckpointStore& store, CheckpointKind kind, std::optional<std::int64_t> epoch,
                            const std::string& bytes, std::optional<double> metric) {
  return store.save(kind, epoch, metric, bytes.size(), [&](ByteSink& sink) { sink.write(bytes.data(), bytes.size()); });
}

CheckpointRecord save_epoch(CheckpointStore& store, std::int64_t epoch, const std::string& bytes) {
  return save_bytes(store, CheckpointKind::epoch, epoch, bytes);
}

void save_epochs(CheckpointStore& store, std::int64_t first, std::int64_t last) {
  for (std::int64_t epoch = first; epoch <= last; ++epoch) save_epoch(store, epoch, zip_payload(static_cast<int>(epoch)));
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
  // 3. every live row's shards (schema 5) are there with their recorded bytes, and no
  //    other shard file is left.
  std::vector<std::string> shard_files;
  const bool has_shards = db.execAndGet("PRAGMA user_version").getInt() >= 5;
  if (has_shards) {
    SQLite::Statement shards(db, "SELECT shards.file, shards.size, shards.hash FROM shards JOIN checkpoints "
                                 "ON checkpoints.id = shards.checkpoint_id WHERE status IN ('committed', 'consumed')");
    while (shards.executeStep()) {
      const std::string file = shards.getColumn(0).getString();
      shard_files.push_back(file);
      if (!std::filesystem::exists(dir / file)) {
        violations.push_back("committed shard without file: " + file);
        continue;
      }
      auto digest = io::hash_file(*FileSystem::posix(), dir / file, HashAlgorithm::xxh3_128);
      if (static_cast<std::int64_t>(digest.size) != shards.getColumn(1).getInt64() ||
          digest.hash != shards.getColumn(2).getString()) {
        violations.push_back("shard does not match its row: " + file);
      }
    }
  }
  for (const auto& name : file_names(dir)) {
    if (names::is_temp_file(name)) violations.push_back("temp file left: " + name);
    if (names::parse_shard_file(name) && std::find(shard_files.begin(), shard_files.end(), name) == shard_files.end()) {
      violations.push_back("shard file without a live row: " + name);
    }
    if (names::parse_checkpoint_file(name) &&
        std::find(live_files.begin(), live_files.end(), name) == live_files.end()) {
      violations.push_back("checkpoint file without a row: " + name);
    }
  }
  return violations;
}

double env_number(const char* name, double fallback) {
  const char* configured = std::getenv(name);
  return configured ? std::atof(configured) : fallback;
}

int run_in_child(const std::function<void()>& body) {
  std::fflush(nullptr);
  pid_t pid = ::fork();
  if (pid == 0) {
    try {
      body();
    } catch (const std::exception& error) {
      std::fprintf(stderr, "run_in_child: %s\n", error.what());
      ::_exit(3);
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
