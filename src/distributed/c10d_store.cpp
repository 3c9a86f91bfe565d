#include "distributed/c10d_store.hpp"

namespace ckpt::distributed {

void C10dKeyValueStore::set(const std::string& key, const std::string& value) {
  store_->set(key, std::vector<std::uint8_t>(value.begin(), value.end()));
}

std::optional<std::string> C10dKeyValueStore::try_get(const std::string& key) {
  if (!store_->check({key})) return std::nullopt;
  const std::vector<std::uint8_t> value = store_->get(key);  // it exists: no wait
  return std::string(value.begin(), value.end());
}

}  // namespace ckpt::distributed
