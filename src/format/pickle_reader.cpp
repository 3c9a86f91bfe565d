#include "format/pickle_reader.hpp"

#include <algorithm>
#include <cstring>
#include <limits>
#include <optional>

#include "format/format_error.hpp"
#include "format/printable.hpp"

namespace ckpt::format {

std::uint64_t checked_add(std::uint64_t a, std::uint64_t b, const char* what) {
  if (a > std::numeric_limits<std::uint64_t>::max() - b) fail("{} overflows", what);
  return a + b;
}

std::uint64_t checked_mul(std::uint64_t a, std::uint64_t b, const char* what) {
  if (a != 0 && b > std::numeric_limits<std::uint64_t>::max() / a) fail("{} overflows", what);
  return a * b;
}

namespace {

// Pickle opcodes used by protocols 2 to 5 that a checkpoint can contain.
enum Opcode : std::uint8_t {
  kMark = '(', kStop = '.', kPop = '0', kPopMark = '1', kDup = '2',
  kBinFloat = 'G', kBinInt = 'J', kBinInt1 = 'K', kBinInt2 = 'M', kNone = 'N',
  kBinPersId = 'Q', kReduce = 'R', kBinString = 'T', kShortBinString = 'U', kBinUnicode = 'X',
  kAppend = 'a', kBuild = 'b', kGlobal = 'c', kDict = 'd', kAppends = 'e', kBinGet = 'h',
  kLongBinGet = 'j', kList = 'l', kBinPut = 'q', kLongBinPut = 'r', kSetItem = 's', kTuple = 't',
  kSetItems = 'u', kEmptyDict = '}', kEmptyList = ']', kEmptyTuple = ')', kBinBytes = 'B', kShortBinBytes = 'C',
  kProto = 0x80, kNewObj = 0x81, kTuple1 = 0x85, kTuple2 = 0x86, kTuple3 = 0x87, kNewTrue = 0x88,
  kNewFalse = 0x89, kLong1 = 0x8a, kLong4 = 0x8b, kShortBinUnicode = 0x8c, kBinUnicode8 = 0x8d,
  kBinBytes8 = 0x8e, kStackGlobal = 0x93, kMemoize = 0x94, kFrame = 0x95,
};

// What a checkpoint may name. The same set torch's weights_only loader accepts for these
// objects; each is interpreted by reduce(), never called.
bool allowed_callable(const std::string& name) {
  static const char* const kAllowed[] = {
      "collections.OrderedDict",
      "torch._utils._rebuild_tensor",
      "torch._utils._rebuild_tensor_v2",
      "torch._utils._rebuild_parameter",
      "torch._utils._rebuild_parameter_with_state",
      "torch._utils._rebuild_meta_tensor_no_storage",
      "torch._utils._rebuild_sparse_tensor",
      "torch.serialization._get_layout",
      "torch.Size",
      "torch.Tensor",
      "_codecs.encode",
      // Protocol 2 pickles an empty bytes object as a call of bytes() with no argument.
      "__builtin__.bytes",
      "builtins.bytes",
  };
  for (const char* allowed : kAllowed) {
    if (name == allowed) return true;
  }
  return name.rfind("torch.", 0) == 0 && dtype_from_storage_class(name.substr(6)).has_value();
}

// What to store instead of a refused global, for the ones real checkpoints carry.
std::string_view refusal_advice(const std::string& name) {
  const auto starts = [&](std::string_view prefix) { return name.rfind(prefix, 0) == 0; };
  if (name == "numpy.core.multiarray.scalar" || name == "numpy._core.multiarray.scalar") {
    return "a NumPy scalar (np.float64, np.int64, ...); store a Python number instead (x.item())";
  }
  if (name == "numpy.core.multiarray._reconstruct" || name == "numpy._core.multiarray._reconstruct" ||
      name == "numpy.ndarray") {
    return "a NumPy array; store a tensor instead (torch.from_numpy(a))";
  }
  if (starts("numpy.")) {
    return "a NumPy object; store a Python number (x.item()) or a tensor (torch.from_numpy(a)) instead";
  }
  if (name == "torch.device") return "a torch.device; store its name instead (str(device))";
  if (name == "builtins.set" || name == "__builtin__.set" || name == "builtins.frozenset" ||
      name == "__builtin__.frozenset") {
    return "a set; store a list instead (sorted(s))";
  }
  if (name == "collections.defaultdict" || name == "collections.Counter") {
    return "a dict subclass; store a dict instead (dict(d))";
  }
  if (starts("torch.")) {
    return "not one of the torch objects a checkpoint holds (tensors, parameters, storages, dtypes, torch.Size)";
  }
  return "an object of a class or a function; store its state instead (a dict of tensors and numbers, such as its "
         "state_dict())";
}

// torch.float16 and the like: a dtype value (torch pickles a dtype as a global).
std::optional<DType> dtype_global(const std::string& name) {
  if (name.rfind("torch.", 0) != 0) return std::nullopt;
  return dtype_from_torch_name(std::string_view(name).substr(6));
}

// LONG1/LONG4: little-endian two's complement. Values in [-2^63, 2^64) are kept (those
// >= 2^63 as unsigned: torch.seed() returns them); beyond is refused.
ValuePtr decode_long(std::string_view bytes) {
  if (bytes.empty()) return Value::of_int(0);
  const bool negative = static_cast<std::uint8_t>(bytes.back()) & 0x80;
  const std::size_t width = std::min<std::size_t>(bytes.size(), 8);
  std::uint64_t value = 0;
  for (std::size_t i = 0; i < width; ++i) value |= std::uint64_t(static_cast<std::uint8_t>(bytes[i])) << (8 * i);
  if (bytes.size() <= 8) {
    if (width < 8 && negative) value |= ~std::uint64_t(0) << (8 * width);
    return Value::of_int(static_cast<std::int64_t>(value));
  }
  // Longer: the bytes above the 8th must be pure sign extension; a negative number must
  // also have bit 63 set (else it is below -2^63). A positive one may use all 64 bits.
  const char fill = negative ? '\xff' : '\0';
  bool fits = !negative || (value >> 63);
  for (std::size_t i = 8; i < bytes.size(); ++i) fits &= bytes[i] == fill;
  if (!fits) fail("data.pkl: an integer does not fit in 64 bits ({} bytes)", bytes.size());
  return negative ? Value::of_int(static_cast<std::int64_t>(value)) : Value::of_uint(value);
}

const ValuePtr& expect(const ValuePtr& value, ValueKind kind, const char* what) {
  if (!value || value->kind() != kind) {
    fail("data.pkl: {} must be a {}, found a {}", what, kind_name(kind), value ? kind_name(value->kind()) : "nothing");
  }
  return value;
}

std::vector<std::int64_t> int_tuple(const ValuePtr& value, const char* what) {
  expect(value, ValueKind::tuple, what);
  std::vector<std::int64_t> ints;
  ints.reserve(value->items().size());
  for (const auto& item : value->items()) {
    const auto& v = expect(item, ValueKind::integer, what);
    if (v->is_unsigned()) fail("data.pkl: {} holds an integer beyond 2^63", what);
    ints.push_back(v->integer());
  }
  return ints;
}

}  // namespace


PickleReader::PickleReader(std::string_view data, MemoryBudget& budget) : data_(data), budget_(budget) {}

void PickleReader::charge(std::uint64_t bytes) { budget_.charge(bytes, "data.pkl"); }

std::uint8_t PickleReader::read_byte() {
  if (pos_ >= data_.size()) {
    ran_out_ = true;
    fail("data.pkl: truncated at byte {}", pos_);
  }
  return static_cast<std::uint8_t>(data_[pos_++]);
}

std::string_view PickleReader::read_bytes(std::uint64_t n) {
  if (n > data_.size() - pos_) {
    ran_out_ = true;
    fail("data.pkl: {} bytes declared at byte {}, only {} remain", n, pos_, data_.size() - pos_);
  }
  std::string_view bytes = data_.substr(pos_, n);
  pos_ += n;
  return bytes;
}

std::uint64_t PickleReader::read_uint(int width) {
  std::string_view bytes = read_bytes(width);
  std::uint64_t value = 0;
  for (int i = 0; i < width; ++i) value |= std::uint64_t(static_cast<std::uint8_t>(bytes[i])) << (8 * i);
  return value;
}

std::string_view PickleReader::read_line() {
  std::size_t end = data_.find('\n', pos_);
  if (end == std::string_view::npos) {
    ran_out_ = true;
    fail("data.pkl: truncated GLOBAL at byte {}", pos_);
  }
  std::string_view line = data_.substr(pos_, end - pos_);
  pos_ = end + 1;
  return line;
}

void PickleReader::push(ValuePtr value) {
  const std::size_t before = stack_.capacity();
  stack_.push_back(std::move(value));
  // The whole new buffer: while the stack grows, the old one is alive too (and the
  // stack is never shrunk), so its peak is the sum of its buffers.
  if (stack_.capacity() != before) charge(stack_.capacity() * sizeof(ValuePtr));
}

ValuePtr PickleReader::pop() {
  if (stack_.empty() || (!marks_.empty() && stack_.size() <= marks_.back())) {
    fail("data.pkl: stack underflow at byte {}", pos_);
  }
  ValuePtr value = std::move(stack_.back());
  stack_.pop_back();
  return value;
}

ValuePtr& PickleReader::top() {
  if (stack_.empty() || (!marks_.empty() && stack_.size() <= marks_.back())) {
    fail("data.pkl: stack underflow at byte {}", pos_);
  }
  return stack_.back();
}

std::vector<ValuePtr> PickleReader::pop_to_mark() {
  if (marks_.empty()) fail("data.pkl: no MARK before byte {}", pos_);
  std::size_t mark = marks_.back();
  marks_.pop_back();
  charge((stack_.size() - mark) * sizeof(ValuePtr));  // the vector returned
  std::vector<ValuePtr> items(std::make_move_iterator(stack_.begin() + static_cast<std::ptrdiff_t>(mark)),
                              std::make_move_iterator(stack_.end()));
  stack_.resize(mark);
  return items;
}

ValuePtr PickleReader::text(ValueKind kind, std::string_view bytes) {
  // The node, its body, and the text beyond what std::string holds inline.
  charge(Value::kNodeBytes + (bytes.empty() ? 0 : Value::kBodyBytes) + (bytes.size() > 15 ? bytes.size() + 1 : 0));
  std::string copy(bytes);
  return kind == ValueKind::bytes ? Value::of_bytes(std::move(copy)) : Value::of_string(std::move(copy));
}

// Memo ids are dense from 0 in what Python's pickler writes: those live in a vector. A
// sparse id (a hostile LONG_BINPUT 4,000,000,000) goes to a map instead of growing it.
void PickleReader::memo_put(std::uint64_t index) {
  ValuePtr value = top();
  if (index < memo_.size() || index <= 2 * memo_.size() + 1024) {
    if (index >= memo_.size()) {
      const std::size_t before = memo_.capacity();
      memo_.resize(index + 1);
      if (memo_.capacity() != before) charge(memo_.capacity() * sizeof(ValuePtr));  // old and new buffers
    }
    if (!memo_[index] && !sparse_memo_.count(index)) ++memo_count_;
    memo_[index] = std::move(value);
    return;
  }
  auto [it, fresh] = sparse_memo_.emplace(index, nullptr);
  if (fresh) {
    charge(64);  // a node of the map and its bucket
    ++memo_count_;  // sparse ids lie beyond the vector
  }
  it->second = std::move(value);
}

ValuePtr PickleReader::memo_get(std::uint64_t index) {
  if (index < memo_.size() && memo_[index]) return memo_[index];
  auto found = sparse_memo_.find(index);
  if (found == sparse_memo_.end()) fail("data.pkl: memo entry {} used before it was set (byte {})", index, pos_);
  return found->second;
}

// Why sealing prevents cycles: for a cycle C1 -> C2 -> ... -> Ck -> C1, each Ci+1 was
// stored in Ci at some time t_i, which sealed Ci+1 and required Ci unsealed; so Ci was
// sealed after t_i but no later than t_(i-1), when it was stored in Ci-1: t_i < t_(i-1)
// all around the cycle, a contradiction. And as a sealed container's items are sealed
// too, its depth is final when it is stored: the depth recorded below is exact. Python's
// pickler always completes a container before storing it in another, except in a
// recursive structure, which a checkpoint never is. The shared empty tuple is created
// sealed and never changed.
ValuePtr PickleReader::container(ValuePtr value) {
  charge(Value::kNodeBytes);
  value->sealed_ = false;
  value->depth_ = 0;
  return value;
}

ValuePtr PickleReader::tuple_of(std::vector<ValuePtr> items) {
  if (items.empty()) return Value::tuple();  // the shared one, created sealed
  charge(Value::kBodyBytes + items.capacity() * sizeof(ValuePtr));
  ValuePtr tuple = container(Value::tuple(std::move(items)));
  for (const auto& item : tuple->items()) adopt(*tuple, *item);
  return tuple;
}

namespace {
bool is_container(ValueKind kind) { return kind == ValueKind::list || kind == ValueKind::tuple || kind == ValueKind::dict; }
}  // namespace

void PickleReader::adopt(Value& target, const Value& item) {
  int item_depth = 0;
  if (is_container(item.kind())) {
    // const: the shared empty tuple is never written (it is created sealed).
    if (!item.sealed_) const_cast<Value&>(item).sealed_ = true;
    item_depth = item.depth_;
  }
  if (target.sealed_) {
    fail("data.pkl: a {} is changed after it was stored in another container (byte {}): recursive structures "
         "are not supported in a checkpoint",
         kind_name(target.kind()), pos_);
  }
  if (item_depth + 1 > kMaxNesting) fail("data.pkl: nesting deeper than {} levels at byte {}", kMaxNesting, pos_);
  target.depth_ = static_cast<std::uint16_t>(std::max<int>(target.depth_, item_depth + 1));
}

ValuePtr PickleReader::make_global(std::string module, std::string name) {
  std::string qualified = module + "." + name;
  charge(Value::kNodeBytes + Value::kBodyBytes + qualified.size());
  if (auto dtype = dtype_global(qualified)) return Value::of_dtype(std::string(dtype_name(*dtype)));
  if (!allowed_callable(qualified)) {
    fail("data.pkl: global '{}' is not allowed in a checkpoint: {}. ckpt reads tensors, numbers, str, bytes, bool, "
         "None, lists, tuples and dicts, and executes nothing (docs/format.md: \"What ckpt reads, and what it "
         "refuses\")",
         printable(qualified), refusal_advice(qualified));
  }
  return Value::global(std::move(qualified));
}

ValuePtr PickleReader::persistent_load(const ValuePtr& pid) {
  expect(pid, ValueKind::tuple, "a persistent id");
  const auto& items = pid->items();
  if (items.size() < 5 || items[0]->kind() != ValueKind::string || items[0]->text() != "storage") {
    fail("data.pkl: unsupported persistent id (expected ('storage', type, key, location, numel))");
  }
  const std::string& type = expect(items[1], ValueKind::global, "a storage type")->text();
  auto dtype = dtype_from_storage_class(type.substr(type.rfind('.') + 1));
  if (!dtype) fail("data.pkl: unknown storage type '{}'", printable(type));
  const std::string& key = expect(items[2], ValueKind::string, "a storage key")->text();
  const std::string& location = expect(items[3], ValueKind::string, "a storage location")->text();
  const auto& numel_value = expect(items[4], ValueKind::integer, "a storage size");
  charge(key.size() + location.size());  // hashed below, copied for a new storage
  if (numel_value->integer() < 0 || numel_value->is_unsigned()) {
    fail("data.pkl: storage '{}' has a negative or impossible size", printable(key));
  }
  const auto numel = static_cast<std::uint64_t>(numel_value->integer());
  if (items.size() > 5 && items[5]->kind() != ValueKind::none) fail("data.pkl: legacy storage views are not supported");

  auto& storage = storages_[key];
  if (!storage) {
    charge(sizeof(StorageInfo) + 2 * key.size() + location.size() + 64);
    storage = std::make_shared<StorageInfo>();
    storage->key = key;
    storage->dtype = *dtype;
    storage->numel = numel;
    storage->location = location;
    storage_order_.push_back(storage);
  } else if (storage->dtype != *dtype || storage->numel != numel) {
    fail("data.pkl: storage '{}' is declared twice with different types or sizes", printable(key));
  }
  charge(Value::kNodeBytes + Value::kBodyBytes);
  return Value::of_storage(storage);
}

namespace {

// Sizes and strides of a view, checked: non-negative, the element count fits in an int64
// (torch's limit; also with the element size in bytes), and, for a view with elements,
// the last element it reaches lies inside `numel` (when `numel` is given). A view with a
// zero-sized dimension has no elements; its other dimensions are checked the same way
// and its offset must not lie beyond the storage.
void check_view(const TensorInfo& t, std::size_t element_bytes, std::optional<std::uint64_t> numel, const std::string& key) {
  if (t.sizes.size() != t.strides.size()) fail("data.pkl: a tensor's size and stride differ in length");
  if (t.storage_offset < 0) fail("data.pkl: negative storage offset");
  std::uint64_t elements = 1;
  std::uint64_t last = static_cast<std::uint64_t>(t.storage_offset);
  bool empty = false;
  for (std::size_t d = 0; d < t.sizes.size(); ++d) {
    if (t.sizes[d] < 0 || t.strides[d] < 0) fail("data.pkl: negative tensor size or stride");
    if (t.sizes[d] == 0) empty = true;
  }
  for (std::size_t d = 0; d < t.sizes.size(); ++d) {
    const auto size = static_cast<std::uint64_t>(t.sizes[d]);
    if (!empty) elements = checked_mul(elements, size, "a tensor's element count");
    if (size > 0) {
      last = checked_add(last, checked_mul(size - 1, static_cast<std::uint64_t>(t.strides[d]), "tensor extent"),
                         "tensor extent");
    }
  }
  if (elements > static_cast<std::uint64_t>(INT64_MAX) / element_bytes) {
    fail("data.pkl: a tensor of {} elements exceeds torch's limit of 2^63 bytes", elements);
  }
  if (!numel) return;
  if (empty) {
    if (static_cast<std::uint64_t>(t.storage_offset) > *numel) {
      fail("data.pkl: an empty tensor view starts at element {} of storage '{}', which has {}", t.storage_offset,
           printable(key), *numel);
    }
  } else if (last >= *numel) {
    fail("data.pkl: a tensor view reaches element {} of storage '{}', which has {}", last, printable(key), *numel);
  }
}

}  // namespace

ValuePtr PickleReader::rebuild_tensor(const std::vector<ValuePtr>& args, bool v2) {
  if (args.size() < 4) fail("data.pkl: tensor rebuild with {} arguments", args.size());
  auto tensor = std::make_shared<TensorInfo>();
  tensor->storage = expect(args[0], ValueKind::storage, "a tensor's storage")->storage();
  const auto& offset = expect(args[1], ValueKind::integer, "a tensor's storage offset");
  if (offset->is_unsigned()) fail("data.pkl: a tensor's storage offset is beyond 2^63");
  tensor->storage_offset = offset->integer();
  const std::size_t dims = expect(args[2], ValueKind::tuple, "a tensor's size")->items().size() +
                           expect(args[3], ValueKind::tuple, "a tensor's stride")->items().size();
  charge(Value::kNodeBytes + Value::kBodyBytes + sizeof(TensorInfo) + 16 + 8 * dims);
  tensor->sizes = int_tuple(args[2], "a tensor's size");
  tensor->strides = int_tuple(args[3], "a tensor's stride");
  if (v2 && args.size() > 4) tensor->requires_grad = expect(args[4], ValueKind::boolean, "requires_grad")->boolean();
  // The view must lie inside its storage: hostile sizes must not make torch read or
  // allocate beyond what the file holds.
  check_view(*tensor, element_size(tensor->storage->dtype), tensor->storage->numel, tensor->storage->key);
  return Value::of_tensor(tensor);
}

// torch._utils._rebuild_meta_tensor_no_storage(dtype, size, stride, requires_grad).
ValuePtr PickleReader::rebuild_meta_tensor(const std::vector<ValuePtr>& args) {
  if (args.size() < 3) fail("data.pkl: meta tensor rebuild with {} arguments", args.size());
  auto tensor = std::make_shared<TensorInfo>();
  tensor->layout = TensorLayout::meta;
  auto dtype = dtype_from_torch_name(expect(args[0], ValueKind::dtype, "a meta tensor's dtype")->text());
  if (!dtype) fail("data.pkl: unsupported dtype for a meta tensor");
  tensor->meta_dtype = *dtype;
  const std::size_t dims = expect(args[1], ValueKind::tuple, "a tensor's size")->items().size() +
                           expect(args[2], ValueKind::tuple, "a tensor's stride")->items().size();
  charge(Value::kNodeBytes + Value::kBodyBytes + sizeof(TensorInfo) + 16 + 8 * dims);
  tensor->sizes = int_tuple(args[1], "a tensor's size");
  tensor->strides = int_tuple(args[2], "a tensor's stride");
  if (args.size() > 3) tensor->requires_grad = expect(args[3], ValueKind::boolean, "requires_grad")->boolean();
  check_view(*tensor, element_size(*dtype), std::nullopt, "");
  return Value::of_tensor(tensor);
}

// torch._utils._rebuild_sparse_tensor(layout, (indices, values, size)), COO only. The
// indices are checked against the size here (torch checks them after the load).
ValuePtr PickleReader::rebuild_sparse_tensor(const std::vector<ValuePtr>& args) {
  if (args.size() != 2) fail("data.pkl: sparse tensor rebuild with {} arguments", args.size());
  if (expect(args[0], ValueKind::string, "a sparse tensor's layout")->text() != "torch.sparse_coo") {
    fail("data.pkl: sparse layout '{}' is not supported (only torch.sparse_coo)", printable(args[0]->text()));
  }
  const auto& data = expect(args[1], ValueKind::tuple, "a sparse tensor's data")->items();
  // torch >= 2.1 adds is_coalesced as a fourth item.
  if (data.size() != 3 && data.size() != 4) {
    fail("data.pkl: a sparse tensor's data has {} items, expected (indices, values, size[, is_coalesced])", data.size());
  }
  auto tensor = std::make_shared<TensorInfo>();
  tensor->layout = TensorLayout::sparse_coo;
  tensor->indices = expect(data[0], ValueKind::tensor, "a sparse tensor's indices")->tensor();
  tensor->values = expect(data[1], ValueKind::tensor, "a sparse tensor's values")->tensor();
  charge(Value::kNodeBytes + Value::kBodyBytes + sizeof(TensorInfo) + 16 + 8 * expect(data[2], ValueKind::tuple, "a sparse tensor's size")->items().size());
  tensor->sizes = int_tuple(data[2], "a sparse tensor's size");
  const auto& indices = *tensor->indices;
  const auto& values = *tensor->values;
  if (indices.layout != TensorLayout::strided || values.layout != TensorLayout::strided || !indices.storage ||
      !values.storage || indices.dtype() != DType::int64 ||
      indices.sizes.size() != 2 || values.sizes.empty() ||
      static_cast<std::size_t>(indices.sizes[0]) + values.sizes.size() - 1 != tensor->sizes.size() ||
      indices.sizes[1] != values.sizes[0]) {
    fail("data.pkl: a sparse COO tensor's indices and values do not match its size");
  }
  for (auto size : tensor->sizes) {
    if (size < 0) fail("data.pkl: negative sparse tensor size");
  }
  return Value::of_tensor(tensor);
}

// Tensor.__setstate__ of a torch.Tensor() (PyTorch's backwards-compatibility test
// writes it): (storage, offset, size, stride) sets the view; (requires_grad, _, hooks)
// and the Variable form (data, _, _, requires_grad, hooks) as Python reads them.
void PickleReader::build_tensor(TensorInfo& tensor, const std::vector<ValuePtr>& state) {
  if (tensor.storage || tensor.layout != TensorLayout::strided) fail("data.pkl: BUILD of a tensor that is already built");
  if (state.size() == 4) {
    TensorInfo view;
    view.storage = expect(state[0], ValueKind::storage, "a tensor state's storage")->storage();
    const auto& offset = expect(state[1], ValueKind::integer, "a tensor state's offset");
    if (offset->is_unsigned()) fail("data.pkl: a tensor's storage offset is beyond 2^63");
    view.storage_offset = offset->integer();
    charge(8 * (expect(state[2], ValueKind::tuple, "a tensor state's size")->items().size() +
                expect(state[3], ValueKind::tuple, "a tensor state's stride")->items().size()));
    view.sizes = int_tuple(state[2], "a tensor state's size");
    view.strides = int_tuple(state[3], "a tensor state's stride");
    check_view(view, element_size(view.storage->dtype), view.storage->numel, view.storage->key);
    view.requires_grad = tensor.requires_grad;
    view.is_parameter = tensor.is_parameter;
    tensor = std::move(view);
    return;
  }
  if (state.size() == 5) {
    const auto& data = *expect(state[0], ValueKind::tensor, "a Variable state's data")->tensor();
    if (data.layout != TensorLayout::strided || !data.storage) fail("data.pkl: a Variable state's data is not a dense tensor");
    charge(8 * (data.sizes.size() + data.strides.size()));
    tensor = data;
    tensor.requires_grad = expect(state[3], ValueKind::boolean, "requires_grad")->boolean();
    return;
  }
  fail("data.pkl: BUILD of a tensor with a state of {} items is not supported", state.size());
}

ValuePtr PickleReader::reduce(const ValuePtr& callable, const ValuePtr& args_value) {
  const std::string& name = expect(callable, ValueKind::global, "a REDUCE callable")->text();
  const auto& args = expect(args_value, ValueKind::tuple, "REDUCE arguments")->items();
  if (name == "collections.OrderedDict") {
    if (!args.empty()) fail("data.pkl: OrderedDict built from arguments is not supported");
    return container(Value::dict(/*ordered=*/true));
  }
  if (name == "torch._utils._rebuild_tensor_v2") return rebuild_tensor(args, true);
  if (name == "torch._utils._rebuild_tensor") return rebuild_tensor(args, false);
  if (name == "torch._utils._rebuild_meta_tensor_no_storage") return rebuild_meta_tensor(args);
  if (name == "torch._utils._rebuild_sparse_tensor") return rebuild_sparse_tensor(args);
  if (name == "torch.serialization._get_layout") {
    // A layout (torch.sparse_coo) pickles as _get_layout('torch.sparse_coo'): its name.
    if (args.size() != 1) fail("data.pkl: _get_layout with {} arguments", args.size());
    return expect(args[0], ValueKind::string, "a layout name");
  }
  if (name == "torch._utils._rebuild_parameter" || name == "torch._utils._rebuild_parameter_with_state") {
    if (args.size() < 2) fail("data.pkl: parameter rebuild with {} arguments", args.size());
    auto source = expect(args[0], ValueKind::tensor, "a parameter's data")->tensor();
    if (source->layout == TensorLayout::strided && !source->storage) {
      fail("data.pkl: a parameter of a torch.Tensor() that has no state yet");
    }
    charge(Value::kNodeBytes + Value::kBodyBytes + sizeof(TensorInfo) + 16 + 8 * (source->sizes.size() + source->strides.size()));
    auto tensor = std::make_shared<TensorInfo>(*source);
    tensor->requires_grad = expect(args[1], ValueKind::boolean, "requires_grad")->boolean();
    tensor->is_parameter = true;
    return Value::of_tensor(tensor);
  }
  if (name == "torch.Tensor") {
    // The oldest tensor pickling: torch.Tensor() then BUILD with its state (see
    // build_tensor). Checked at STOP: a tensor never built is refused.
    if (!args.empty()) fail("data.pkl: torch.Tensor called with arguments");
    charge(Value::kNodeBytes + Value::kBodyBytes + sizeof(TensorInfo) + 16);
    auto tensor = std::make_shared<TensorInfo>();
    unbuilt_.push_back(tensor);
    return Value::of_tensor(tensor);
  }
  if (name == "torch.Size") {
    if (args.size() != 1) fail("data.pkl: torch.Size with {} arguments", args.size());
    charge(8 * expect(args[0], ValueKind::tuple, "torch.Size")->items().size());  // checked by int_tuple
    int_tuple(args[0], "torch.Size");
    // The argument tuple itself, not a copy: tuples are never changed, and a memo
    // reference to a large one must not be copied each time (see charge()).
    return args[0];
  }
  if (name == "__builtin__.bytes" || name == "builtins.bytes") {
    if (!args.empty()) fail("data.pkl: only bytes() without arguments is supported");
    return Value::of_bytes({});
  }
  if (name == "_codecs.encode") {
    if (args.size() != 2 || args[0]->kind() != ValueKind::string || args[1]->kind() != ValueKind::string ||
        (args[1]->text() != "latin1" && args[1]->text() != "latin-1")) {
      fail("data.pkl: only _codecs.encode(str, 'latin1') is supported");
    }
    // Protocol 2 pickles Python 3 bytes as the latin-1 text of the bytes: decode UTF-8
    // back to code points below 256.
    std::string bytes;
    const std::string& text = args[0]->text();
    charge(Value::kNodeBytes + Value::kBodyBytes + text.size());
    for (std::size_t i = 0; i < text.size(); ++i) {
      auto c = static_cast<std::uint8_t>(text[i]);
      if (c < 0x80) {
        bytes += static_cast<char>(c);
      } else if ((c & 0xe0) == 0xc0 && i + 1 < text.size() && c <= 0xc3) {
        bytes += static_cast<char>(((c & 0x1f) << 6) | (static_cast<std::uint8_t>(text[++i]) & 0x3f));
      } else {
        fail("data.pkl: _codecs.encode of a character beyond latin-1");
      }
    }
    return Value::of_bytes(std::move(bytes));
  }
  fail("data.pkl: global '{}' cannot be called", printable(name));
}

ValuePtr PickleReader::load() {
  stack_.clear();
  marks_.clear();
  for (;;) {
    const std::size_t at = pos_;
    const std::uint8_t op = read_byte();
    switch (op) {
      case kProto: read_byte(); break;
      case kFrame: read_uint(8); break;
      case kStop: {
        ValuePtr result = pop();
        if (!stack_.empty() || !marks_.empty()) fail("data.pkl: values left on the stack at STOP");
        for (const auto& tensor : unbuilt_) {
          if (!tensor->storage) fail("data.pkl: torch.Tensor() is never given its state (BUILD)");
        }
        unbuilt_.clear();
        return result;
      }
      case kMark:
        if (marks_.size() == marks_.capacity()) charge(std::max<std::size_t>(16, marks_.capacity()) * sizeof(std::size_t));
        marks_.push_back(stack_.size());
        break;
      case kPop: pop(); break;
      case kPopMark: pop_to_mark(); break;
      case kDup: push(top()); break;
      case kNone: push(Value::none()); break;
      case kNewTrue: push(Value::of_bool(true)); break;
      case kNewFalse: push(Value::of_bool(false)); break;
      case kBinInt: push(integer(static_cast<std::int32_t>(read_uint(4)))); break;
      case kBinInt1: push(integer(static_cast<std::int64_t>(read_uint(1)))); break;
      case kBinInt2: push(integer(static_cast<std::int64_t>(read_uint(2)))); break;
      case kLong1: charge(Value::kNodeBytes); push(decode_long(read_bytes(read_uint(1)))); break;
      case kLong4: charge(Value::kNodeBytes); push(decode_long(read_bytes(read_uint(4)))); break;
      case kBinFloat: {
        std::uint64_t bits = 0;
        for (char c : read_bytes(8)) bits = (bits << 8) | static_cast<std::uint8_t>(c);  // big-endian
        double value;
        std::memcpy(&value, &bits, sizeof value);
        charge(Value::kNodeBytes);
        push(Value::of_double(value));
        break;
      }
      case kShortBinUnicode: push(text(ValueKind::string, read_bytes(read_uint(1)))); break;
      case kBinUnicode: push(text(ValueKind::string, read_bytes(read_uint(4)))); break;
      case kBinUnicode8: push(text(ValueKind::string, read_bytes(read_uint(8)))); break;
      // Python 2 str (the legacy format): text, as torch loads it with encoding='utf-8'.
      case kShortBinString: push(text(ValueKind::string, read_bytes(read_uint(1)))); break;
      case kBinString: push(text(ValueKind::string, read_bytes(read_uint(4)))); break;
      case kShortBinBytes: push(text(ValueKind::bytes, read_bytes(read_uint(1)))); break;
      case kBinBytes: push(text(ValueKind::bytes, read_bytes(read_uint(4)))); break;
      case kBinBytes8: push(text(ValueKind::bytes, read_bytes(read_uint(8)))); break;
      case kEmptyTuple: push(Value::tuple()); break;
      case kTuple1:
      case kTuple2:
      case kTuple3: {
        std::size_t n = op - kTuple1 + 1;
        std::vector<ValuePtr> items(n);
        for (std::size_t i = n; i-- > 0;) items[i] = pop();
        push(tuple_of(std::move(items)));
        break;
      }
      case kTuple: push(tuple_of(pop_to_mark())); break;
      case kEmptyList: push(container(Value::list())); break;
      case kList: {
        auto list = container(Value::list());
        auto items = pop_to_mark();
        for (const auto& item : items) adopt(*list, *item);
        charge(list->append(std::move(items)));
        push(std::move(list));
        break;
      }
      case kAppend: {
        ValuePtr item = pop();
        Value& list = *expect(top(), ValueKind::list, "the target of APPEND");
        adopt(list, *item);
        charge(list.append(std::move(item)));
        break;
      }
      case kAppends: {
        auto items = pop_to_mark();
        Value& list = *expect(top(), ValueKind::list, "the target of APPENDS");
        for (const auto& item : items) adopt(list, *item);
        charge(list.append(std::move(items)));
        break;
      }
      case kEmptyDict: push(container(Value::dict())); break;
      case kDict:
      case kSetItems: {
        auto items = pop_to_mark();
        if (items.size() % 2 != 0) fail("data.pkl: odd number of items for a dict at byte {}", at);
        if (op == kDict) push(container(Value::dict()));
        Value& dict = *expect(top(), ValueKind::dict, "the target of SETITEMS");
        for (const auto& item : items) adopt(dict, *item);
        charge(dict.add_entries(std::move(items)));
        break;
      }
      case kSetItem: {
        ValuePtr value = pop();
        ValuePtr key = pop();
        Value& dict = *expect(top(), ValueKind::dict, "the target of SETITEM");
        adopt(dict, *key);
        adopt(dict, *value);
        charge(dict.add_entry(std::move(key), std::move(value)));
        break;
      }
      case kBinPut: memo_put(read_uint(1)); break;
      case kLongBinPut: memo_put(read_uint(4)); break;
      case kMemoize: memo_put(memo_count_); break;  // Python's len(memo)
      case kBinGet: push(memo_get(read_uint(1))); break;
      case kLongBinGet: push(memo_get(read_uint(4))); break;
      case kGlobal: {
        std::string module(read_line());
        std::string name(read_line());
        push(make_global(std::move(module), std::move(name)));
        break;
      }
      case kStackGlobal: {
        ValuePtr name = pop();
        ValuePtr module = pop();
        push(make_global(expect(module, ValueKind::string, "a module name")->text(),
                         expect(name, ValueKind::string, "a global name")->text()));
        break;
      }
      case kReduce: {
        ValuePtr args = pop();
        ValuePtr callable = pop();
        push(reduce(callable, args));
        break;
      }
      case kBuild: {
        ValuePtr state = pop();
        const ValuePtr& target = top();
        // state_dict()'s OrderedDict carries `_metadata` (module versions): kept by
        // Python for load_state_dict, not needed to restore tensors; dropped here.
        bool ordered_dict_state = target->ordered_dict() &&
                                  (state->kind() == ValueKind::dict || state->kind() == ValueKind::none);
        bool parameter_state = target->kind() == ValueKind::tensor && state->kind() == ValueKind::none;
        if (target->kind() == ValueKind::tensor && state->kind() == ValueKind::tuple) {
          build_tensor(*target->tensor(), state->items());
          break;
        }
        if (!ordered_dict_state && !parameter_state) {
          fail("data.pkl: BUILD of a {} with a {} state is not supported", kind_name(target->kind()),
               kind_name(state->kind()));
        }
        break;
      }
      case kBinPersId: push(persistent_load(pop())); break;
      case kNewObj: fail("data.pkl: NEWOBJ (object construction) is not allowed in a checkpoint (byte {})", at);
      default: fail("data.pkl: unsupported pickle opcode 0x{:02x} at byte {}", op, at);
    }
  }
}

ValuePtr PickleReader::integer(std::int64_t value) {
  if (value < -5 || value > 256) charge(Value::kNodeBytes);  // smaller ones are shared (Value::of_int)
  return Value::of_int(value);
}

}  // namespace ckpt::format
