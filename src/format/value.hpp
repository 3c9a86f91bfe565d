// The torch-free model of a checkpoint's content: the object graph a restricted
// unpickler builds from data.pkl (or a writer turns into one), with tensors described by
// their storage, offset, sizes and strides rather than by their data.
//
// Containers are shared (std::shared_ptr) because pickle memoizes objects and mutates
// them after they are referenced: a list is created, put in the memo, then appended to.
// The reader refuses a container that would contain itself and nesting deeper than
// kMaxNesting (PickleReader::adopt); consumers still walk with a depth limit. Memo
// references keep sub-graphs shared: a graph from a hostile file can be a DAG that
// expands to an exponential tree, so a consumer must not expand it blindly (convert each
// node once, as payload_codec's Decoder does).
//
// Values are compact (a hostile data.pkl of one-byte opcodes makes one Value per byte):
// a scalar or an empty container is one 48-byte allocation; text, items, entries or a
// tensor live in a small body allocated only when there is something to hold. Small ints,
// None, True, False and the empty tuple are shared, as in Python. Every reader charges
// what it builds to a MemoryBudget (format/memory_budget.hpp).
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace ckpt::format {

// Deeper nesting than this is refused: no real training state comes close, and it bounds
// the recursion of every consumer of the graph.
inline constexpr int kMaxNesting = 256;

enum class DType : std::uint8_t {
  float16, bfloat16, float32, float64,
  int8, uint8, int16, int32, int64,
  bool_, complex64, complex128,
};

std::size_t element_size(DType dtype) noexcept;
// The Python storage class torch.save names for a dtype ("FloatStorage").
std::string_view storage_class(DType dtype) noexcept;
std::optional<DType> dtype_from_storage_class(std::string_view name) noexcept;
std::string_view dtype_name(DType dtype) noexcept;  // "float32"
// Python's torch.<attribute> for a dtype ("float32", also "half", "float", "long", ...).
std::optional<DType> dtype_from_torch_name(std::string_view name) noexcept;

// One storage record: data/<key> in a zip payload.
struct StorageInfo {
  std::string key;
  DType dtype = DType::float32;
  std::uint64_t numel = 0;       // elements, as the pickle declares them
  std::string location = "cpu";  // torch's location tag
  const void* data = nullptr;    // writer only: the bytes to write (numel * element_size)
};

// How a tensor's elements are held. Dense tensors view a storage record; the others
// hold no record of their own.
enum class TensorLayout : std::uint8_t {
  strided,     // a view of `storage`
  meta,        // torch's meta device: dtype, sizes and strides only, no data
  sparse_coo,  // torch.sparse_coo: `indices` (int64, 2-D) and `values` tensors, `sizes` the dense shape
};

struct TensorInfo {
  TensorLayout layout = TensorLayout::strided;
  std::shared_ptr<StorageInfo> storage;  // strided only
  DType meta_dtype = DType::float32;     // meta only (a strided tensor's is its storage's)
  std::int64_t storage_offset = 0;       // in elements
  std::vector<std::int64_t> sizes;
  std::vector<std::int64_t> strides;     // strided, meta
  std::shared_ptr<TensorInfo> indices;   // sparse_coo
  std::shared_ptr<TensorInfo> values;    // sparse_coo
  bool requires_grad = false;
  bool is_parameter = false;  // nn.Parameter (pickled through _rebuild_parameter)

  DType dtype() const noexcept {
    switch (layout) {
      case TensorLayout::strided: return storage->dtype;
      case TensorLayout::meta: return meta_dtype;
      case TensorLayout::sparse_coo: return values->dtype();
    }
    return meta_dtype;
  }
};

// A bare storage (torch.save of a TypedStorage) read as a value: a 1-D view of all of
// it (docs/format.md). Its size saturates at 2^63 - 1 elements.
TensorInfo whole_storage_view(const std::shared_ptr<StorageInfo>& storage);

enum class ValueKind : std::uint8_t {
  none, boolean, integer, floating, string, bytes, list, tuple, dict, tensor, storage, global, dtype,
};

struct Value;
using ValuePtr = std::shared_ptr<Value>;
using Entry = std::pair<ValuePtr, ValuePtr>;

struct Value {
  ValueKind kind() const noexcept { return kind_; }
  bool boolean() const noexcept { return flag_; }
  // Integers are 64-bit: signed, or (is_unsigned) in [2^63, 2^64), which Python's
  // torch.seed() returns half of the time; integer() then has the same 64 bits.
  std::int64_t integer() const noexcept { return scalar_.integer; }
  bool is_unsigned() const noexcept { return kind_ == ValueKind::integer && flag_; }
  double floating() const noexcept { return scalar_.floating; }
  bool ordered_dict() const noexcept { return kind_ == ValueKind::dict && flag_; }  // collections.OrderedDict
  // string, bytes, global ("module.name"), dtype ("float16"): empty for other kinds.
  const std::string& text() const noexcept;
  const std::vector<ValuePtr>& items() const noexcept;  // list, tuple (torch.Size is a tuple)
  const std::vector<Entry>& entries() const noexcept;  // dict, in insertion order (see distinct_entries)
  const std::shared_ptr<TensorInfo>& tensor() const noexcept;
  const std::shared_ptr<StorageInfo>& storage() const noexcept;  // a persistent id resolved

  // Building (readers and the writer's encoder). Each returns how many bytes of
  // memory the change took (for MemoryBudget::charge).
  std::size_t append(ValuePtr item);
  std::size_t append(std::vector<ValuePtr> items);
  std::size_t add_entry(ValuePtr key, ValuePtr value);
  std::size_t add_entries(std::vector<ValuePtr> keys_and_values);  // k0, v0, k1, v1, ...

  static ValuePtr none();
  static ValuePtr of_bool(bool value);
  static ValuePtr of_int(std::int64_t value);
  static ValuePtr of_uint(std::uint64_t value);  // an int; is_unsigned() when >= 2^63
  static ValuePtr of_double(double value);
  static ValuePtr of_string(std::string value);
  static ValuePtr of_bytes(std::string value);
  static ValuePtr list();
  static ValuePtr tuple(std::vector<ValuePtr> items = {});
  static ValuePtr dict(bool ordered = false);
  static ValuePtr of_tensor(std::shared_ptr<TensorInfo> tensor);
  static ValuePtr of_storage(std::shared_ptr<StorageInfo> storage);
  static ValuePtr global(std::string qualified_name);
  static ValuePtr of_dtype(std::string torch_name);  // torch.<name>, e.g. "float16"

  // What one Value costs before its body (the shared_ptr's block included), and what
  // a body costs: the unit MemoryBudget charges are counted in.
  static constexpr std::size_t kNodeBytes = 48;
  static constexpr std::size_t kBodyBytes = 48;

  struct Body;
  Value() = default;
  ~Value();
  Value(const Value&) = delete;
  Value& operator=(const Value&) = delete;

 private:
  friend class PickleReader;
  template <typename T>
  T& held();
  template <typename T>
  const T& held_or(const T& fallback) const noexcept;

  ValueKind kind_ = ValueKind::none;
  bool flag_ = false;     // boolean's value; ordered_dict; is_unsigned
  bool sealed_ = false;   // PickleReader: stored in another container, no longer changed
  std::uint16_t depth_ = 0;  // PickleReader: levels below this container
  union {
    std::int64_t integer;
    double floating;
  } scalar_{0};
  std::unique_ptr<Body> body_;
};

std::string_view kind_name(ValueKind kind) noexcept;

// A dict's entries as Python sees them: a key that appears again (the same object, or
// an equal None, bool, int, float, str or bytes) keeps its first position and takes its
// last value. Each distinct key object is hashed once, so a memoized key repeated by
// 2-byte references costs no more than one hash of it. Keys of other kinds (tuples) are
// compared by identity only.
std::vector<Entry> distinct_entries(const Value& dict);

}  // namespace ckpt::format
