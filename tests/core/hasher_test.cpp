#include <catch2/catch.hpp>

#include "ckpt/file_system.hpp"
#include "io/atomic_file.hpp"
#include "io/file_hash.hpp"
#include "io/temp_file.hpp"
#include "io/hasher.hpp"
#include "support/test_dir.hpp"

using namespace ckpt;
using namespace ckpt::test;

namespace {
std::string first_word(const std::string& text) { return text.substr(0, text.find_first_of(" \t\n")); }

std::string sample_bytes(std::size_t n) {
  std::string bytes(n, '\0');
  std::uint32_t x = 12345;
  for (auto& c : bytes) {
    x = x * 1103515245u + 12345u;
    c = static_cast<char>(x >> 24);
  }
  return bytes;
}
}  // namespace

TEST_CASE("the xxh3-128 hash is the hex that `xxhsum -H2` prints", "[hash]") {
  TestDir dir("hash");
  for (std::size_t size : {0u, 1u, 240u, 5000u, 3u << 20}) {
    INFO("size " << size);
    auto path = dir / "payload.bin";
    write_bytes(path, sample_bytes(size));
    auto digest = io::hash_file(*FileSystem::posix(), path, HashAlgorithm::xxh3_128);
    auto cli = run_command("xxhsum -H2 " + shell_quote(path.string()) + " 2>/dev/null");
    REQUIRE(cli.exit_code == 0);
    CHECK(digest.hash == first_word(cli.output));
    CHECK(digest.size == size);
  }
}

TEST_CASE("the sha256 option is the hex that sha256sum prints", "[hash]") {
  TestDir dir("hash");
  auto path = dir / "payload.bin";
  write_bytes(path, sample_bytes(100000));
  auto digest = io::hash_file(*FileSystem::posix(), path, HashAlgorithm::sha256);
  auto cli = run_command("sha256sum " + shell_quote(path.string()));
  REQUIRE(cli.exit_code == 0);
  CHECK(digest.hash == first_word(cli.output));
}

TEST_CASE("a file written through the hashing temp file hashes the same when read back", "[hash]") {
  TestDir dir("hash");
  std::string bytes = sample_bytes(2500000);
  auto path = dir / "out.bin";
  io::FileDigest digest;
  {
    io::HashingTempFile temp(*FileSystem::posix(), path, HashAlgorithm::xxh3_128);
    // Mixed write sizes exercise both the buffered and the direct path.
    temp.write(bytes.data(), 10);
    temp.write(bytes.data() + 10, 1500000);
    temp.write(bytes.data() + 1500010, bytes.size() - 1500010);
    digest = temp.sync_and_close();
    temp.release();
  }
  CHECK(read_bytes(path) == bytes);
  CHECK(digest.size == bytes.size());
  CHECK(digest.hash == io::hash_file(*FileSystem::posix(), path, HashAlgorithm::xxh3_128).hash);
}

TEST_CASE("an atomic file write leaves the new bytes under the name and no temp file", "[hash]") {
  TestDir dir("hash");
  std::string bytes = sample_bytes(2500000);
  auto path = dir / "out.bin";
  write_bytes(path, "old");
  auto size = io::write_file_atomically(*FileSystem::posix(), path, dir / "out.bin.tmp", [&](ByteSink& sink) {
    sink.write(bytes.data(), 10);
    sink.write(bytes.data() + 10, bytes.size() - 10);
  });
  CHECK(size == bytes.size());
  CHECK(read_bytes(path) == bytes);
  CHECK(file_names(dir.path()) == std::vector<std::string>{"out.bin"});
}

TEST_CASE("a temp file whose writer gives up is removed, and one released is kept", "[hash]") {
  TestDir dir("hash");
  {
    io::TempFile abandoned(*FileSystem::posix(), dir / "a.tmp");
    abandoned.write("x", 1);
  }
  CHECK(file_names(dir.path()).empty());
  {
    io::TempFile kept(*FileSystem::posix(), dir / "b.tmp");
    kept.write("x", 1);
    CHECK(kept.sync_and_close() == 1);
    kept.release();
  }
  CHECK(file_names(dir.path()) == std::vector<std::string>{"b.tmp"});
}
