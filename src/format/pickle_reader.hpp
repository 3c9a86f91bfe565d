// A restricted unpickler for torch.save's data.pkl (and the pickles of the legacy format).
//
// It builds a format::Value graph and never executes anything: globals are accepted only
// from an allowlist (what torch's weights_only=True loader accepts and a checkpoint needs:
// tensor, parameter, meta and sparse rebuild functions, storage classes, dtypes,
// OrderedDict, torch.Size), and each allowed callable is interpreted here, not called.
// Anything else is a FormatError naming the global and what to store instead (a NumPy
// scalar: x.item(); docs/format.md, "What ckpt reads, and what it refuses"). Malformed
// input (truncation, bad memo references, stack underflow, integers beyond 64 bits) is a
// FormatError too; what it builds is charged to the payload's MemoryBudget, so no input
// makes it hold more than MemoryBudget::kFactor times its own size (plus a constant).
#pragma once

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "format/memory_budget.hpp"
#include "format/value.hpp"

namespace ckpt::format {

class PickleReader {
 public:
  // `data` must outlive the reader. Storages are shared across several load() calls
  // (the legacy format pickles its storages' keys after the main object). Everything
  // the reader builds is charged to `budget` (see memory_budget.hpp).
  PickleReader(std::string_view data, MemoryBudget& budget);

  // Reads one pickle from the current position up to and including STOP.
  ValuePtr load();
  std::size_t position() const noexcept { return pos_; }
  // Whether the last failure was a read past the end of `data` (more input might parse).
  bool ran_out() const noexcept { return ran_out_; }
  void seek(std::size_t position) { pos_ = position; }

  // Storages met in persistent ids, by key, in order of first appearance.
  const std::vector<std::shared_ptr<StorageInfo>>& storages() const noexcept { return storage_order_; }

 private:
  std::uint8_t read_byte();
  std::string_view read_bytes(std::uint64_t n);
  std::uint64_t read_uint(int width);
  std::string_view read_line();
  void push(ValuePtr value);
  ValuePtr pop();
  std::vector<ValuePtr> pop_to_mark();
  ValuePtr& top();
  ValuePtr text(ValueKind kind, std::string_view bytes);
  ValuePtr integer(std::int64_t value);
  ValuePtr make_global(std::string module, std::string name);
  ValuePtr reduce(const ValuePtr& callable, const ValuePtr& args);
  ValuePtr persistent_load(const ValuePtr& pid);
  ValuePtr rebuild_tensor(const std::vector<ValuePtr>& args, bool v2);
  ValuePtr rebuild_meta_tensor(const std::vector<ValuePtr>& args);
  ValuePtr rebuild_sparse_tensor(const std::vector<ValuePtr>& args);
  void build_tensor(TensorInfo& tensor, const std::vector<ValuePtr>& state);
  void memo_put(std::uint64_t index);
  ValuePtr memo_get(std::uint64_t index);
  // Nesting and cycle guard (fuzzing found both: a list that contains itself leaked, and
  // 100,000 nested lists overflowed the stack in ~Value). Every list, tuple and dict is
  // created through container(); every insertion goes through adopt(), which refuses
  // nesting deeper than kMaxNesting and any change to a container after it was stored
  // in another one (which is how a cycle must be built). The state lives in the Value
  // (sealed_, depth_). See pickle_reader.cpp.
  ValuePtr container(ValuePtr value);
  ValuePtr tuple_of(std::vector<ValuePtr> items);
  void adopt(Value& target, const Value& item);
  // Copies out of values already held (a memo reference is 2 bytes; what it names may
  // be large) and everything built: one budget for the whole payload.
  void charge(std::uint64_t bytes);

  std::string_view data_;
  MemoryBudget& budget_;
  std::size_t pos_ = 0;
  bool ran_out_ = false;
  std::vector<ValuePtr> stack_;
  std::vector<std::size_t> marks_;
  std::vector<ValuePtr> memo_;                               // dense ids
  std::unordered_map<std::uint64_t, ValuePtr> sparse_memo_;  // the others
  std::uint64_t memo_count_ = 0;                             // distinct ids set: MEMOIZE's next
  std::unordered_map<std::string, std::shared_ptr<StorageInfo>> storages_;
  std::vector<std::shared_ptr<StorageInfo>> storage_order_;
  std::vector<std::shared_ptr<TensorInfo>> unbuilt_;  // torch.Tensor() awaiting BUILD
};

}  // namespace ckpt::format
