#include "store/test_hooks.hpp"

#include <utility>

namespace ckpt::store {

TestHooks& test_hooks(StoreOptions& options) {
  auto* hooked = dynamic_cast<HookedFileSystem*>(options.file_system.get());
  // A fresh wrapper each time: another copy of these options may share the old one.
  auto fresh = hooked ? std::make_shared<HookedFileSystem>(hooked->target(), hooked->hooks())
                      : std::make_shared<HookedFileSystem>(options.file_system, TestHooks{});
  options.file_system = fresh;
  return fresh->hooks();
}

const TestHooks& test_hooks_of(const FileSystem* fs) {
  static const TestHooks kNone;
  if (const auto* hooked = dynamic_cast<const HookedFileSystem*>(fs)) return hooked->hooks();
  return kNone;
}

}  // namespace ckpt::store
