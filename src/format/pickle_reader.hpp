// A restricted unpickler for torch.save's data.pkl (and the pickles of the legacy format).
//
// It builds a format::Value graph and never executes anything: globals are accepted only
// from an allowlist (what torch's weights_only=True loader accepts and a checkpoint needs:
// tensor and parameter rebuild functions, storage classes, OrderedDict, torch.Size), and
// each allowed callable is interpreted here, not called. Anything else is a FormatError
// naming the global. Malformed input (truncation, bad memo references, stack underflow,
// integers beyond 64 bits) is a FormatError too; no input makes it allocate more than a
// small multiple of its own size.
#pragma once

#include <cstddef>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "format/value.hpp"

namespace ckpt::format {

class PickleReader {
 public:
  // `data` must outlive the reader. Storages are shared across several load() calls
  // (the legacy format pickles its storages' keys after the main object).
  explicit PickleReader(std::string_view data);

  // Reads one pickle from the current position up to and including STOP.
  ValuePtr load();
  std::size_t position() const noexcept { return pos_; }
  void seek(std::size_t position) { pos_ = position; }

  // Storages met in persistent ids, by key, in order of first appearance.
  const std::vector<std::shared_ptr<StorageInfo>>& storages() const noexcept { return storage_order_; }

 private:
  std::uint8_t read_byte();
  std::string_view read_bytes(std::uint64_t n);
  std::uint64_t read_uint(int width);
  std::string_view read_line();
  ValuePtr pop();
  std::vector<ValuePtr> pop_to_mark();
  ValuePtr& top();
  ValuePtr make_global(std::string module, std::string name);
  ValuePtr reduce(const ValuePtr& callable, const ValuePtr& args);
  ValuePtr persistent_load(const ValuePtr& pid);
  ValuePtr rebuild_tensor(const std::vector<ValuePtr>& args, bool v2);
  void memo_put(std::uint64_t index);
  ValuePtr memo_get(std::uint64_t index);
  // Nesting and cycle guard (fuzzing found both: a list that contains itself leaked, and
  // 100,000 nested lists overflowed the stack in ~Value). Every list, tuple and dict is
  // created through container(); every insertion goes through adopt(), which refuses
  // nesting deeper than kMaxNesting and any change to a container after it was stored
  // in another one (which is how a cycle must be built). See pickle_reader.cpp.
  ValuePtr container(ValuePtr value);
  ValuePtr tuple_of(std::vector<ValuePtr> items);
  void adopt(const ValuePtr& target, const ValuePtr& item);
  struct ContainerState {
    ValuePtr keep_alive;  // so that no other Value reuses the address while we read
    int depth = 0;        // levels below it: 0 when empty, else 1 + its deepest item's
    bool sealed = false;  // stored in another container: no longer changed
  };
  std::unordered_map<const Value*, ContainerState> containers_;
  std::size_t purge_at_ = 1024;
  // Copies out of values already held (a memo reference is 2 bytes; what it names may
  // be large): bounded by a multiple of the input's size. See pickle_reader.cpp.
  void charge(std::uint64_t bytes);
  std::uint64_t copied_ = 0;

  std::string_view data_;
  std::size_t pos_ = 0;
  std::vector<ValuePtr> stack_;
  std::vector<std::size_t> marks_;
  std::unordered_map<std::uint64_t, ValuePtr> memo_;
  std::map<std::string, std::shared_ptr<StorageInfo>> storages_;
  std::vector<std::shared_ptr<StorageInfo>> storage_order_;
};

}  // namespace ckpt::format
