#include <catch2/catch.hpp>

#include "ckpt/file_system.hpp"
#include "io/hashed_file.hpp"
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
  // Mixed write sizes exercise both the buffered and the direct path.
  auto digest = io::write_file_atomically(*FileSystem::posix(), path, HashAlgorithm::xxh3_128, [&](ByteSink& sink) {
    sink.write(bytes.data(), 10);
    sink.write(bytes.data() + 10, 1500000);
    sink.write(bytes.data() + 1500010, bytes.size() - 1500010);
  });
  CHECK(read_bytes(path) == bytes);
  CHECK(digest.hash == io::hash_file(*FileSystem::posix(), path, HashAlgorithm::xxh3_128).hash);
  CHECK(file_names(dir.path()) == std::vector<std::string>{"out.bin"});
}
