// The torch-free model of a checkpoint's content: the object graph a restricted
// unpickler builds from data.pkl (or a writer turns into one), with tensors described by
// their storage, offset, sizes and strides rather than by their data.
//
// Containers are shared (std::shared_ptr) because pickle memoizes objects and mutates
// them after they are referenced: a list is created, put in the memo, then appended to.
// The reader refuses a container that would contain itself and nesting deeper than
// kMaxNesting (PickleReader::adopt); consumers still walk with a depth limit. Memo
// references keep sub-graphs shared: a graph from a hostile file can be a DAG that
// expands to an exponential tree, so a consumer must not expand it blindly.
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

// One storage record: data/<key> in a zip payload.
struct StorageInfo {
  std::string key;
  DType dtype = DType::float32;
  std::uint64_t numel = 0;       // elements, as the pickle declares them
  std::string location = "cpu";  // torch's location tag
  const void* data = nullptr;    // writer only: the bytes to write (numel * element_size)
};

struct TensorInfo {
  std::shared_ptr<StorageInfo> storage;
  std::int64_t storage_offset = 0;  // in elements
  std::vector<std::int64_t> sizes;
  std::vector<std::int64_t> strides;
  bool requires_grad = false;
  bool is_parameter = false;  // nn.Parameter (pickled through _rebuild_parameter)
};

enum class ValueKind { none, boolean, integer, floating, string, bytes, list, tuple, dict, tensor, storage, global };

struct Value;
using ValuePtr = std::shared_ptr<Value>;

struct Value {
  ValueKind kind = ValueKind::none;
  bool boolean = false;
  std::int64_t integer = 0;
  double floating = 0;
  std::string text;                                   // string, bytes, global ("module.name")
  std::vector<ValuePtr> items;                        // list, tuple (torch.Size is a tuple)
  std::vector<std::pair<ValuePtr, ValuePtr>> entries; // dict, in insertion order
  bool ordered_dict = false;                          // collections.OrderedDict
  std::shared_ptr<TensorInfo> tensor;
  std::shared_ptr<StorageInfo> storage;               // storage: a persistent id resolved

  static ValuePtr none();
  static ValuePtr of_bool(bool value);
  static ValuePtr of_int(std::int64_t value);
  static ValuePtr of_double(double value);
  static ValuePtr of_string(std::string value);
  static ValuePtr of_bytes(std::string value);
  static ValuePtr list();
  static ValuePtr tuple(std::vector<ValuePtr> items = {});
  static ValuePtr dict(bool ordered = false);
  static ValuePtr of_tensor(std::shared_ptr<TensorInfo> tensor);
  static ValuePtr of_storage(std::shared_ptr<StorageInfo> storage);
  static ValuePtr global(std::string qualified_name);
};

std::string_view kind_name(ValueKind kind) noexcept;

}  // namespace ckpt::format
