#include "io/hasher.hpp"

#include <openssl/evp.h>
#include <xxhash.h>

#include <stdexcept>

namespace ckpt {

std::string_view to_string(HashAlgorithm algorithm) noexcept {
  switch (algorithm) {
    case HashAlgorithm::xxh3_128: return "xxh3-128";
    case HashAlgorithm::sha256: return "sha256";
  }
  return "unknown";
}

namespace io {
namespace {

std::string to_hex(const unsigned char* bytes, std::size_t n) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string hex(n * 2, '0');
  for (std::size_t i = 0; i < n; ++i) {
    hex[2 * i] = kDigits[bytes[i] >> 4];
    hex[2 * i + 1] = kDigits[bytes[i] & 0xf];
  }
  return hex;
}

class Xxh3Hasher final : public Hasher {
 public:
  Xxh3Hasher() : state_(XXH3_createState()) {
    if (state_ == nullptr || XXH3_128bits_reset(state_) != XXH_OK) throw std::bad_alloc();
  }
  ~Xxh3Hasher() override { XXH3_freeState(state_); }

  void update(const void* data, std::size_t n) override { XXH3_128bits_update(state_, data, n); }

  std::string hex_digest() override {
    // The canonical (big-endian) form is what xxhsum prints.
    XXH128_canonical_t canonical;
    XXH128_canonicalFromHash(&canonical, XXH3_128bits_digest(state_));
    return to_hex(canonical.digest, sizeof canonical.digest);
  }

 private:
  XXH3_state_t* state_;
};

class Sha256Hasher final : public Hasher {
 public:
  Sha256Hasher() : context_(EVP_MD_CTX_new()) {
    if (context_ == nullptr || EVP_DigestInit_ex(context_, EVP_sha256(), nullptr) != 1) throw std::bad_alloc();
  }
  ~Sha256Hasher() override { EVP_MD_CTX_free(context_); }

  void update(const void* data, std::size_t n) override { EVP_DigestUpdate(context_, data, n); }

  std::string hex_digest() override {
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned int length = 0;
    EVP_DigestFinal_ex(context_, digest, &length);
    return to_hex(digest, length);
  }

 private:
  EVP_MD_CTX* context_;
};

}  // namespace

std::unique_ptr<Hasher> Hasher::create(HashAlgorithm algorithm) {
  if (algorithm == HashAlgorithm::sha256) return std::make_unique<Sha256Hasher>();
  return std::make_unique<Xxh3Hasher>();
}

bool parse_hash_algorithm(std::string_view name, HashAlgorithm& out) noexcept {
  for (auto candidate : {HashAlgorithm::xxh3_128, HashAlgorithm::sha256}) {
    if (to_string(candidate) == name) {
      out = candidate;
      return true;
    }
  }
  return false;
}

}  // namespace io
}  // namespace ckpt
