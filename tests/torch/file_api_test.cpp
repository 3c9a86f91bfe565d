#include "support/torch_pch.hpp"
#include "support/test_dir.hpp"


using namespace ckpt;
using namespace ckpt::test;

TEST_CASE("save_file and load_file round-trip tensors, numbers, strings and nesting", "[file]") {
  TestDir dir("file");
  State state;
  state.set("epoch", int64_t{12});
  state.set("best_acc", 0.875);
  state.set("name", std::string("resnet-tiny"));
  state.set("done", false);
  state.set("none", c10::IValue());
  state.set("f32", at::randn({4, 5}));
  state.set("f64", at::randn({3}, at::kDouble));
  state.set("i64", at::arange(10));
  state.set("u8", at::arange(7, at::kByte));
  state.set("mask", at::ones({2, 2}, at::kBool));
  state.set("view", at::arange(20, at::kFloat).view({4, 5}).slice(1, 1, 3));
  state.set("model", State{{"0.weight", at::randn({2, 2})}, {"0.bias", at::zeros({2})}});
  state.set("history", c10::List<double>({0.5, 0.25}));
  save_file(state, dir / "state.pth");
  CHECK(file_names(dir.path()) == std::vector<std::string>{"state.pth"});

  State loaded = load_file(dir / "state.pth");
  CHECK(loaded.keys() == state.keys());
  CHECK(loaded.get<int64_t>("epoch") == 12);
  CHECK(loaded.get<double>("best_acc") == 0.875);
  CHECK(loaded.get<std::string>("name") == "resnet-tiny");
  CHECK_FALSE(loaded.get<bool>("done"));
  CHECK(loaded.at("none").isNone());
  for (const char* key : {"f32", "f64", "i64", "u8", "mask", "view"}) {
    INFO(key);
    at::Tensor expected = state.get<at::Tensor>(key);
    at::Tensor actual = loaded.get<at::Tensor>(key);
    CHECK(actual.dtype() == expected.dtype());
    CHECK(actual.sizes() == expected.sizes());
    CHECK(actual.equal(expected));
  }
  State model = loaded.get<State>("model");
  CHECK(model.get<at::Tensor>("0.weight").equal(state.get<State>("model").get<at::Tensor>("0.weight")));
  CHECK(loaded.at("history").toDoubleList().vec() == std::vector<double>{0.5, 0.25});
}

TEST_CASE("load_file on a missing file names the file and the cause", "[file]") {
  TestDir dir("file");
  try {
    load_file(dir / "nope.pth");
    FAIL("no error");
  } catch (const IoError& error) {
    CHECK_THAT(error.what(), Catch::Contains("nope.pth") && Catch::Contains("No such file"));
  }
}

TEST_CASE("load_file on a file that is not a payload gives FormatError naming it, never a crash", "[file]") {
  TestDir dir("file");
  save_file(State{{"w", at::randn({64})}}, dir / "good.pth");
  std::string good = read_bytes(dir / "good.pth");
  std::vector<std::pair<std::string, std::string>> bad = {
      {"empty.pth", ""},
      {"text.pth", "hello, this is not a checkpoint"},
      {"truncated.pth", good.substr(0, good.size() / 2)},
      {"tail.pth", good.substr(good.size() / 2)},
  };
  for (const auto& [name, bytes] : bad) {
    INFO(name);
    write_bytes(dir / name, bytes);
    try {
      load_file(dir / name);
      FAIL("loaded garbage");
    } catch (const FormatError& error) {
      CHECK_THAT(error.what(), Catch::Contains(name));
    }
  }
}

TEST_CASE("save_file replaces an existing file atomically and leaves no temp file", "[file]") {
  TestDir dir("file");
  save_file(State{{"v", int64_t{1}}}, dir / "x.pth");
  save_file(State{{"v", int64_t{2}}}, dir / "x.pth");
  CHECK(load_file(dir / "x.pth").get<int64_t>("v") == 2);
  CHECK(file_names(dir.path()) == std::vector<std::string>{"x.pth"});
}

TEST_CASE("a tensor libtorch itself cannot describe (nested) fails save_file with a FormatError naming the file",
          "[file]") {
  TestDir dir("file");
  // A nested tensor has no sizes or strides: libtorch throws c10::Error when asked.
  const at::Tensor nested = at::_nested_tensor_from_tensor_list({at::ones({2}), at::ones({3})});
  try {
    save_file(State{{"n", nested}}, dir / "x.pth");
    FAIL("save_file accepted a nested tensor");
  } catch (const FormatError& error) {
    CHECK(error.path() == dir / "x.pth");
    CHECK_THAT(error.what(), Catch::StartsWith((dir / "x.pth").string() + ": cannot be saved: "));
  }
  CHECK(file_names(dir.path()).empty());
}

TEST_CASE("save_file into a missing directory fails with an error naming it", "[file]") {
  TestDir dir("file");
  CHECK_THROWS_WITH(save_file(State{{"v", int64_t{1}}}, dir / "no" / "such" / "x.pth"),
                    Catch::Contains("no/such") && Catch::Contains("No such file"));
}

namespace {

// The real file system, counting what save_file asks of it.
class CountingFileSystem final : public FileSystem {
 public:
  std::unique_ptr<WritableFile> create_new(const std::filesystem::path& path) override {
    ++creates;
    return std::make_unique<CountedFile>(*this, real_->create_new(path));
  }
  std::unique_ptr<ReadableFile> open_for_read(const std::filesystem::path& path) override { return real_->open_for_read(path); }
  void rename(const std::filesystem::path& from, const std::filesystem::path& to) override {
    renamed_to.push_back(to);
    real_->rename(from, to);
  }
  void remove(const std::filesystem::path& path) override { real_->remove(path); }
  void sync_dir(const std::filesystem::path& dir) override {
    synced_dirs.push_back(dir);
    real_->sync_dir(dir);
  }
  void sync_file(const std::filesystem::path& path) override {
    ++file_syncs;
    real_->sync_file(path);
  }
  void create_directories(const std::filesystem::path& dir) override { real_->create_directories(dir); }
  std::vector<std::string> list_files(const std::filesystem::path& dir) override { return real_->list_files(dir); }
  std::optional<std::uint64_t> file_size(const std::filesystem::path& path) override { return real_->file_size(path); }
  std::uint64_t free_space(const std::filesystem::path& dir) override {
    free_space_asked.push_back(dir);
    return free_bytes ? *free_bytes : real_->free_space(dir);
  }
  std::unique_ptr<DirectoryLock> lock_exclusive(const std::filesystem::path& lock_file, const std::string& holder) override {
    return real_->lock_exclusive(lock_file, holder);
  }

  std::optional<std::uint64_t> free_bytes;  // what free_space() reports, when set
  std::vector<std::filesystem::path> free_space_asked;
  int creates = 0;
  int file_syncs = 0;
  std::vector<std::filesystem::path> renamed_to;
  std::vector<std::filesystem::path> synced_dirs;

 private:
  class CountedFile final : public WritableFile {
   public:
    CountedFile(CountingFileSystem& fs, std::unique_ptr<WritableFile> real) : fs_(fs), real_(std::move(real)) {}
    void append(const void* data, std::size_t n) override { real_->append(data, n); }
    void sync() override {
      ++fs_.file_syncs;
      real_->sync();
    }
    void close() override { real_->close(); }

   private:
    CountingFileSystem& fs_;
    std::unique_ptr<WritableFile> real_;
  };

  std::shared_ptr<FileSystem> real_ = FileSystem::posix();
};

}  // namespace

TEST_CASE("save_file does its I/O through the file system it is given: one temp file, one fsync, one rename, "
          "one directory fsync",
          "[file][seam]") {
  TestDir dir("file");
  auto fs = std::make_shared<CountingFileSystem>();
  SaveOptions options;
  options.file_system = fs;
  save_file(State{{"w", at::arange(10, at::kFloat)}}, dir / "x.pth", options);
  CHECK(fs->creates == 1);
  CHECK(fs->file_syncs == 1);
  CHECK(fs->renamed_to == std::vector<std::filesystem::path>{dir / "x.pth"});
  CHECK(fs->synced_dirs == std::vector<std::filesystem::path>{dir.path()});
  CHECK(load_file(dir / "x.pth").get<at::Tensor>("w").equal(at::arange(10, at::kFloat)));
}

TEST_CASE("save_file checks free space first: a save that cannot fit names the file and the sizes and writes nothing",
          "[file][seam][space]") {
  TestDir dir("file");
  save_file(State{{"v", int64_t{1}}}, dir / "x.pth");
  const std::string before = read_bytes(dir / "x.pth");
  auto fs = std::make_shared<CountingFileSystem>();
  fs->free_bytes = 1'000'000;  // less than 4 MB of tensor plus the 1 MiB margin
  SaveOptions options;
  options.file_system = fs;
  try {
    save_file(State{{"w", at::zeros({1'000'000}, at::kFloat)}}, dir / "x.pth", options);
    FAIL("no error");
  } catch (const IoError& error) {
    CHECK(error.code() == ErrorCode::disk_full);
    CHECK(error.path() == dir / "x.pth");
    CHECK_THAT(error.what(), Catch::Contains((dir / "x.pth").string()) && Catch::Contains("not enough free space") &&
                                 Catch::Contains("need 4") && Catch::Contains("1000000 available"));
  }
  CHECK(fs->free_space_asked == std::vector<std::filesystem::path>{dir.path()});
  CHECK(fs->creates == 0);
  CHECK(file_names(dir.path()) == std::vector<std::string>{"x.pth"});
  CHECK(read_bytes(dir / "x.pth") == before);

  fs->free_bytes = 6'000'000;  // enough: the same save goes through
  save_file(State{{"w", at::zeros({1'000'000}, at::kFloat)}}, dir / "x.pth", options);
  CHECK(load_file(dir / "x.pth").get<at::Tensor>("w").numel() == 1'000'000);
}

TEST_CASE("a device this build cannot use is refused with a clear message", "[file][device]") {
  TestDir dir("file");
  save_file(State{{"v", int64_t{1}}}, dir / "x.pth");
  if (at::hasCUDA()) return;  // only meaningful on a CPU-only build
  CHECK_THROWS_WITH(load_file(dir / "x.pth", c10::Device("cuda:0")), Catch::Contains("cuda:0"));
}

namespace {
// Offset of the first byte of a record's data, from its local header (tests only).
std::size_t record_data_offset(const std::string& bytes, const std::string& name) {
  for (std::size_t header = 0; (header = bytes.find(std::string("PK\x03\x04", 4), header)) != std::string::npos; ++header) {
    auto u16 = [&](std::size_t at) { return std::size_t(std::uint8_t(bytes[at])) | std::size_t(std::uint8_t(bytes[at + 1])) << 8; };
    std::size_t name_length = u16(header + 26);
    std::size_t extra_length = u16(header + 28);
    if (bytes.compare(header + 30, name_length, name) == 0) return header + 30 + name_length + extra_length;
  }
  throw std::runtime_error("no record " + name);
}
}  // namespace

TEST_CASE("a damaged tensor record is caught by its CRC-32 and named", "[file][format]") {
  TestDir dir("file");
  save_file(State{{"w", at::arange(1000, at::kFloat)}}, dir / "x.pth");
  std::string bytes = read_bytes(dir / "x.pth");
  bytes[record_data_offset(bytes, "archive/data/0") + 123] ^= 0x40;
  write_bytes(dir / "x.pth", bytes);
  CHECK_THROWS_WITH(load_file(dir / "x.pth"), Catch::Contains("x.pth") && Catch::Contains("data/0") &&
                                                   Catch::Contains("CRC-32"));
}

TEST_CASE("a memory-mapped load gives zero-copy tensors that outlive the call and never write the file",
          "[file][format][mmap]") {
  TestDir dir("file");
  at::Tensor weights = at::randn({256, 64});
  save_file(State{{"w", weights}, {"step", int64_t{3}}}, dir / "x.pth");
  const std::string before = read_bytes(dir / "x.pth");
  LoadOptions options;
  options.memory_map = true;
  at::Tensor mapped;
  {
    State state = load_file(dir / "x.pth", options);
    mapped = state.get<at::Tensor>("w");
    CHECK(state.get<int64_t>("step") == 3);
  }
  // The State is gone; the tensor still reads the mapping.
  CHECK(mapped.equal(weights));
  mapped.add_(1);  // copy-on-write: this process's pages only
  CHECK(read_bytes(dir / "x.pth") == before);
  CHECK(load_file(dir / "x.pth").get<at::Tensor>("w").equal(weights));
}

TEST_CASE("loading only some keys never reads the others' tensor data", "[file][format][partial]") {
  TestDir dir("file");
  State state;
  state.set("model", State{{"w", at::ones({100})}});
  state.set("optimizer", State{{"m", at::zeros({5000})}});
  state.set("epoch", int64_t{9});
  save_file(state, dir / "x.pth");
  // Damage the optimizer's record: a full load notices, a load of "model" never reads it.
  std::string bytes = read_bytes(dir / "x.pth");
  bytes[record_data_offset(bytes, "archive/data/1") + 10] ^= 0x01;
  write_bytes(dir / "x.pth", bytes);
  CHECK_THROWS_AS(load_file(dir / "x.pth"), FormatError);
  LoadOptions options;
  options.only_keys = {"model", "epoch"};
  State partial = load_file(dir / "x.pth", options);
  CHECK(partial.keys() == std::vector<std::string>{"model", "epoch"});
  CHECK(partial.get<State>("model").get<at::Tensor>("w").equal(at::ones({100})));
}

TEST_CASE("views that share a storage still share it after a round trip", "[file][format]") {
  TestDir dir("file");
  at::Tensor base = at::arange(12, at::kFloat);
  save_file(State{{"a", base.view({3, 4})}, {"b", base.slice(0, 4, 8)}, {"t", base.view({3, 4}).t()}}, dir / "x.pth");
  State loaded = load_file(dir / "x.pth");
  at::Tensor a = loaded.get<at::Tensor>("a");
  at::Tensor b = loaded.get<at::Tensor>("b");
  at::Tensor t = loaded.get<at::Tensor>("t");
  CHECK(b.equal(base.slice(0, 4, 8)));
  CHECK(t.strides() == base.view({3, 4}).t().strides());
  b.fill_(-1);  // writes through to the shared storage
  CHECK(a[1].equal(at::full({4}, -1.0)));
  CHECK(t.t()[1].equal(at::full({4}, -1.0)));
}

TEST_CASE("the same state saved twice gives the same bytes", "[file][format]") {
  TestDir dir("file");
  State state{{"w", at::arange(50, at::kDouble)}, {"name", std::string("x")}, {"lr", 0.5}};
  save_file(state, dir / "one.pth");
  save_file(state, dir / "two_with_a_longer_name.pth");
  CHECK(read_bytes(dir / "one.pth") == read_bytes(dir / "two_with_a_longer_name.pth"));
}

TEST_CASE("a tiny payload that shares sub-objects exponentially loads in bounded time, shared as in Python",
          "[file][format][hostile]") {
  // 898 bytes whose memo references nest a pair of references 60 levels deep: 2^60 paths.
  const std::filesystem::path bomb = std::string(CKPT_SOURCE_DIR) + "/tests/fuzz/corpus/consumer_dag_bomb.pt";
  REQUIRE(std::filesystem::exists(bomb));
  // Bounded time: a decoder that walked the 2^60 paths would never return, and the ctest
  // entry's TIMEOUT fails it (no wall-clock limit here: a loaded machine is not a bug).
  try {
    load_file(bomb);
    SUCCEED("loaded");
  } catch (const FormatError&) {
    SUCCEED("refused");  // refusing it is fine too; hanging is not
  }
}

// Small records that lie close together are read in groups (payload_codec.cpp): each
// tensor still has a storage of its own, of its own size, not overlapping any other, that
// outlives the State; and each record's CRC-32 is still checked and named.
TEST_CASE("small tensors read in groups keep a storage each and each record's CRC-32", "[file][format]") {
  TestDir dir("file");
  State state;
  for (int i = 0; i < 40; ++i) {
    // A large record in the middle ends one group and starts another after it.
    state.set("t" + std::to_string(i), i == 20 ? at::randn({40000}) : at::randn({100 + i}));
  }
  save_file(state, dir / "x.pth");
  at::Tensor kept;
  {
    State loaded = load_file(dir / "x.pth");
    std::vector<std::pair<const char*, const char*>> ranges;
    for (int i = 0; i < 40; ++i) {
      INFO(i);
      const std::string key = "t" + std::to_string(i);
      at::Tensor tensor = loaded.get<at::Tensor>(key);
      CHECK(tensor.equal(state.get<at::Tensor>(key)));
      CHECK(tensor.storage().nbytes() == static_cast<std::size_t>(tensor.numel()) * 4);
      CHECK_FALSE(tensor.storage().resizable());
      CHECK(tensor.storage().use_count() == 1);
      CHECK(reinterpret_cast<std::uintptr_t>(tensor.data_ptr()) % 64 == 0);
      const char* begin = static_cast<const char*>(tensor.data_ptr());
      ranges.emplace_back(begin, begin + tensor.storage().nbytes());
    }
    std::sort(ranges.begin(), ranges.end());
    for (std::size_t i = 1; i < ranges.size(); ++i) CHECK(ranges[i].first >= ranges[i - 1].second);
    kept = loaded.get<at::Tensor>("t7");
  }
  // The State is gone; the tensor still owns its bytes (the group's memory).
  CHECK(kept.equal(state.get<at::Tensor>("t7")));
  kept.add_(1);
  CHECK(kept.equal(state.get<at::Tensor>("t7") + 1));

  for (const char* record : {"archive/data/0", "archive/data/5", "archive/data/19", "archive/data/39"}) {
    INFO(record);
    std::string bytes = read_bytes(dir / "x.pth");
    bytes[record_data_offset(bytes, record) + 17] ^= 0x40;
    write_bytes(dir / "damaged.pth", bytes);
    const std::string name = std::string(record).substr(std::string("archive/").size());
    CHECK_THROWS_WITH(load_file(dir / "damaged.pth"),
                      Catch::Contains("damaged.pth") && Catch::Contains(name + " fails its CRC-32"));
  }
}

// Enough 4 KiB tensors to fill whole groups (2 MiB blocks of their own, huge pages asked
// for) and a partial one after them.
TEST_CASE("full groups of small records load, keep each record's CRC-32 and outlive the State", "[file][format]") {
  TestDir dir("file");
  State state;
  for (int i = 0; i < 1200; ++i) state.set("t" + std::to_string(i), at::randn({1024}));
  save_file(state, dir / "x.pth");
  at::Tensor first;
  at::Tensor last;
  {
    State loaded = load_file(dir / "x.pth");
    std::set<const void*> storages;
    for (int i = 0; i < 1200; ++i) {
      const std::string key = "t" + std::to_string(i);
      at::Tensor tensor = loaded.get<at::Tensor>(key);
      if (!tensor.equal(state.get<at::Tensor>(key))) FAIL(key);
      CHECK(tensor.storage().nbytes() == 4096);
      storages.insert(tensor.storage().unsafeGetStorageImpl());
    }
    CHECK(storages.size() == 1200);
    first = loaded.get<at::Tensor>("t0");
    last = loaded.get<at::Tensor>("t1199");
  }
  CHECK(first.equal(state.get<at::Tensor>("t0")));
  CHECK(last.equal(state.get<at::Tensor>("t1199")));

  for (const char* record : {"archive/data/3", "archive/data/700", "archive/data/1199"}) {
    INFO(record);
    std::string bytes = read_bytes(dir / "x.pth");
    bytes[record_data_offset(bytes, record) + 4000] ^= 0x01;
    write_bytes(dir / "damaged.pth", bytes);
    const std::string name = std::string(record).substr(std::string("archive/").size());
    CHECK_THROWS_WITH(load_file(dir / "damaged.pth"),
                      Catch::Contains("damaged.pth") && Catch::Contains(name + " fails its CRC-32"));
  }
}
