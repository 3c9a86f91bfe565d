#include "format/pickle_reader.hpp"

#include <algorithm>
#include <cstring>
#include <limits>

#include "format/format_error.hpp"

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
bool allowed_global(const std::string& name) {
  static const char* const kAllowed[] = {
      "collections.OrderedDict",
      "torch._utils._rebuild_tensor",
      "torch._utils._rebuild_tensor_v2",
      "torch._utils._rebuild_parameter",
      "torch._utils._rebuild_parameter_with_state",
      "torch.Size",
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

std::int64_t decode_long(std::string_view bytes) {
  if (bytes.empty()) return 0;
  if (bytes.size() > 8) {
    // Allowed only if the extra high bytes are pure sign extension.
    const char fill = (static_cast<std::uint8_t>(bytes[7]) & 0x80) ? '\xff' : '\0';
    for (std::size_t i = 8; i < bytes.size(); ++i) {
      if (bytes[i] != fill) fail("data.pkl: an integer does not fit in 64 bits ({} bytes)", bytes.size());
    }
    bytes = bytes.substr(0, 8);
  }
  std::uint64_t value = 0;
  for (std::size_t i = 0; i < bytes.size(); ++i) value |= std::uint64_t(static_cast<std::uint8_t>(bytes[i])) << (8 * i);
  if (bytes.size() < 8 && (static_cast<std::uint8_t>(bytes.back()) & 0x80)) value |= ~std::uint64_t(0) << (8 * bytes.size());
  return static_cast<std::int64_t>(value);
}

const ValuePtr& expect(const ValuePtr& value, ValueKind kind, const char* what) {
  if (!value || value->kind != kind) {
    fail("data.pkl: {} must be a {}, found a {}", what, kind_name(kind), value ? kind_name(value->kind) : "nothing");
  }
  return value;
}

std::vector<std::int64_t> int_tuple(const ValuePtr& value, const char* what) {
  expect(value, ValueKind::tuple, what);
  std::vector<std::int64_t> ints;
  for (const auto& item : value->items) ints.push_back(expect(item, ValueKind::integer, what)->integer);
  return ints;
}

}  // namespace

PickleReader::PickleReader(std::string_view data) : data_(data) {}

std::uint8_t PickleReader::read_byte() {
  if (pos_ >= data_.size()) fail("data.pkl: truncated at byte {}", pos_);
  return static_cast<std::uint8_t>(data_[pos_++]);
}

std::string_view PickleReader::read_bytes(std::uint64_t n) {
  if (n > data_.size() - pos_) fail("data.pkl: {} bytes declared at byte {}, only {} remain", n, pos_, data_.size() - pos_);
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
  if (end == std::string_view::npos) fail("data.pkl: truncated GLOBAL at byte {}", pos_);
  std::string_view line = data_.substr(pos_, end - pos_);
  pos_ = end + 1;
  return line;
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
  std::vector<ValuePtr> items(std::make_move_iterator(stack_.begin() + static_cast<std::ptrdiff_t>(mark)),
                              std::make_move_iterator(stack_.end()));
  stack_.resize(mark);
  return items;
}

void PickleReader::memo_put(std::uint64_t index) { memo_[index] = top(); }

ValuePtr PickleReader::memo_get(std::uint64_t index) {
  auto found = memo_.find(index);
  if (found == memo_.end()) fail("data.pkl: memo entry {} used before it was set (byte {})", index, pos_);
  return found->second;
}

// Why sealing prevents cycles: for a cycle C1 -> C2 -> ... -> Ck -> C1, each Ci+1 was
// stored in Ci at some time t_i, which sealed Ci+1 and required Ci unsealed; so Ci was
// sealed after t_i but no later than t_(i-1), when it was stored in Ci-1: t_i < t_(i-1)
// all around the cycle, a contradiction. And as a sealed container's items are sealed
// too, its depth is final when it is stored: the depth recorded below is exact. Python's
// pickler always completes a container before storing it in another, except in a
// recursive structure, which a checkpoint never is.
ValuePtr PickleReader::container(ValuePtr value) {
  if (containers_.size() >= purge_at_) {
    // Forget containers only this map still holds (REDUCE arguments, popped values):
    // nothing can store them again, and holding them would keep every temporary alive
    // to the end. Amortized O(1): the map at least doubles between two purges.
    for (auto it = containers_.begin(); it != containers_.end();) {
      it = it->second.keep_alive.use_count() == 1 ? containers_.erase(it) : std::next(it);
    }
    purge_at_ = std::max<std::size_t>(1024, 2 * containers_.size());
  }
  containers_[value.get()] = ContainerState{value, 0, false};
  return value;
}

ValuePtr PickleReader::tuple_of(std::vector<ValuePtr> items) {
  ValuePtr tuple = container(Value::tuple());
  for (const auto& item : items) adopt(tuple, item);
  tuple->items = std::move(items);
  return tuple;
}

void PickleReader::adopt(const ValuePtr& target, const ValuePtr& item) {
  int item_depth = 0;
  if (auto found = containers_.find(item.get()); found != containers_.end()) {
    found->second.sealed = true;
    item_depth = found->second.depth;
  }
  auto found = containers_.find(target.get());
  if (found == containers_.end()) fail("data.pkl: internal error: untracked {} at byte {}", kind_name(target->kind), pos_);
  if (found->second.sealed) {
    fail("data.pkl: a {} is changed after it was stored in another container (byte {}): recursive structures "
         "are not supported in a checkpoint",
         kind_name(target->kind), pos_);
  }
  if (item_depth + 1 > kMaxNesting) fail("data.pkl: nesting deeper than {} levels at byte {}", kMaxNesting, pos_);
  found->second.depth = std::max(found->second.depth, item_depth + 1);
}

// A memo reference (BINGET, 2 bytes) can name the same large tuple or string again and
// again. What the reader copies out of a value it already holds (a tensor's sizes and
// strides, a parameter's, _codecs.encode's text, a storage's key and location; and the
// check of a torch.Size's items) is charged here, and more than kCopyFactor times the input is refused: fuzzing found
// 27-71 KB pickles that made it hold 55-340 MB this way. Pickles as torch.save or ckpt
// write them copy at most a few times their size (8 bytes per shape element, each
// written in 2 bytes or more); real ones far less.
constexpr std::uint64_t kCopyFactor = 16;
constexpr std::uint64_t kCopySlack = 1 << 16;

void PickleReader::charge(std::uint64_t bytes) {
  copied_ = checked_add(copied_, bytes, "data.pkl: copied bytes");
  if (copied_ > kCopyFactor * data_.size() + kCopySlack) {
    fail("data.pkl: memo references make it copy more than {} bytes from a {}-byte input (at byte {})",
         kCopyFactor * data_.size() + kCopySlack, data_.size(), pos_);
  }
}

ValuePtr PickleReader::make_global(std::string module, std::string name) {
  std::string qualified = module + "." + name;
  if (!allowed_global(qualified)) {
    fail("data.pkl: global '{}' is not allowed in a checkpoint (only tensors, parameters, storages, "
         "OrderedDict and torch.Size are; nothing is executed)",
         qualified);
  }
  return Value::global(std::move(qualified));
}

ValuePtr PickleReader::persistent_load(const ValuePtr& pid) {
  expect(pid, ValueKind::tuple, "a persistent id");
  const auto& items = pid->items;
  if (items.size() < 5 || items[0]->kind != ValueKind::string || items[0]->text != "storage") {
    fail("data.pkl: unsupported persistent id (expected ('storage', type, key, location, numel))");
  }
  const std::string& type = expect(items[1], ValueKind::global, "a storage type")->text;
  auto dtype = dtype_from_storage_class(type.substr(type.rfind('.') + 1));
  if (!dtype) fail("data.pkl: unknown storage type '{}'", type);
  const std::string& key = expect(items[2], ValueKind::string, "a storage key")->text;
  const std::string& location = expect(items[3], ValueKind::string, "a storage location")->text;
  std::int64_t numel = expect(items[4], ValueKind::integer, "a storage size")->integer;
  charge(key.size() + location.size());  // hashed below, copied for a new storage
  if (numel < 0) fail("data.pkl: storage '{}' has a negative size", key);
  if (items.size() > 5 && items[5]->kind != ValueKind::none) fail("data.pkl: legacy storage views are not supported");

  auto& storage = storages_[key];
  if (!storage) {
    storage = std::make_shared<StorageInfo>();
    storage->key = key;
    storage->dtype = *dtype;
    storage->numel = static_cast<std::uint64_t>(numel);
    storage->location = location;
    storage_order_.push_back(storage);
  } else if (storage->dtype != *dtype || storage->numel != static_cast<std::uint64_t>(numel)) {
    fail("data.pkl: storage '{}' is declared twice with different types or sizes", key);
  }
  return Value::of_storage(storage);
}

ValuePtr PickleReader::rebuild_tensor(const std::vector<ValuePtr>& args, bool v2) {
  if (args.size() < 4) fail("data.pkl: tensor rebuild with {} arguments", args.size());
  auto tensor = std::make_shared<TensorInfo>();
  tensor->storage = expect(args[0], ValueKind::storage, "a tensor's storage")->storage;
  tensor->storage_offset = expect(args[1], ValueKind::integer, "a tensor's storage offset")->integer;
  charge(8 * (expect(args[2], ValueKind::tuple, "a tensor's size")->items.size() +
              expect(args[3], ValueKind::tuple, "a tensor's stride")->items.size()));
  tensor->sizes = int_tuple(args[2], "a tensor's size");
  tensor->strides = int_tuple(args[3], "a tensor's stride");
  if (v2 && args.size() > 4) tensor->requires_grad = expect(args[4], ValueKind::boolean, "requires_grad")->boolean;
  if (tensor->sizes.size() != tensor->strides.size()) fail("data.pkl: a tensor's size and stride differ in length");
  // The view must lie inside its storage: hostile sizes must not make torch read or
  // allocate beyond what the file holds.
  if (tensor->storage_offset < 0) fail("data.pkl: negative storage offset");
  std::uint64_t last = static_cast<std::uint64_t>(tensor->storage_offset);
  bool empty = false;
  for (std::size_t d = 0; d < tensor->sizes.size(); ++d) {
    if (tensor->sizes[d] < 0 || tensor->strides[d] < 0) fail("data.pkl: negative tensor size or stride");
    if (tensor->sizes[d] == 0) empty = true;
  }
  if (!empty) {
    for (std::size_t d = 0; d < tensor->sizes.size(); ++d) {
      last = checked_add(last, checked_mul(static_cast<std::uint64_t>(tensor->sizes[d] - 1),
                                           static_cast<std::uint64_t>(tensor->strides[d]), "tensor extent"),
                         "tensor extent");
    }
    if (last >= tensor->storage->numel) {
      fail("data.pkl: a tensor view reaches element {} of storage '{}', which has {}", last, tensor->storage->key,
           tensor->storage->numel);
    }
  }
  return Value::of_tensor(tensor);
}

ValuePtr PickleReader::reduce(const ValuePtr& callable, const ValuePtr& args_value) {
  const std::string& name = expect(callable, ValueKind::global, "a REDUCE callable")->text;
  const auto& args = expect(args_value, ValueKind::tuple, "REDUCE arguments")->items;
  if (name == "collections.OrderedDict") {
    if (!args.empty()) fail("data.pkl: OrderedDict built from arguments is not supported");
    return container(Value::dict(/*ordered=*/true));
  }
  if (name == "torch._utils._rebuild_tensor_v2") return rebuild_tensor(args, true);
  if (name == "torch._utils._rebuild_tensor") return rebuild_tensor(args, false);
  if (name == "torch._utils._rebuild_parameter" || name == "torch._utils._rebuild_parameter_with_state") {
    if (args.size() < 2) fail("data.pkl: parameter rebuild with {} arguments", args.size());
    auto source = expect(args[0], ValueKind::tensor, "a parameter's data")->tensor;
    charge(8 * (source->sizes.size() + source->strides.size()));
    auto tensor = std::make_shared<TensorInfo>(*source);
    tensor->requires_grad = expect(args[1], ValueKind::boolean, "requires_grad")->boolean;
    tensor->is_parameter = true;
    return Value::of_tensor(tensor);
  }
  if (name == "torch.Size") {
    if (args.size() != 1) fail("data.pkl: torch.Size with {} arguments", args.size());
    charge(8 * expect(args[0], ValueKind::tuple, "torch.Size")->items.size());  // checked by int_tuple
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
    if (args.size() != 2 || args[0]->kind != ValueKind::string || args[1]->kind != ValueKind::string ||
        (args[1]->text != "latin1" && args[1]->text != "latin-1")) {
      fail("data.pkl: only _codecs.encode(str, 'latin1') is supported");
    }
    // Protocol 2 pickles Python 3 bytes as the latin-1 text of the bytes: decode UTF-8
    // back to code points below 256.
    std::string bytes;
    const std::string& text = args[0]->text;
    charge(text.size());
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
  fail("data.pkl: global '{}' cannot be called", name);
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
        return result;
      }
      case kMark: marks_.push_back(stack_.size()); break;
      case kPop: pop(); break;
      case kPopMark: pop_to_mark(); break;
      case kDup: stack_.push_back(top()); break;
      case kNone: stack_.push_back(Value::none()); break;
      case kNewTrue: stack_.push_back(Value::of_bool(true)); break;
      case kNewFalse: stack_.push_back(Value::of_bool(false)); break;
      case kBinInt: stack_.push_back(Value::of_int(static_cast<std::int32_t>(read_uint(4)))); break;
      case kBinInt1: stack_.push_back(Value::of_int(static_cast<std::int64_t>(read_uint(1)))); break;
      case kBinInt2: stack_.push_back(Value::of_int(static_cast<std::int64_t>(read_uint(2)))); break;
      case kLong1: stack_.push_back(Value::of_int(decode_long(read_bytes(read_uint(1))))); break;
      case kLong4: stack_.push_back(Value::of_int(decode_long(read_bytes(read_uint(4))))); break;
      case kBinFloat: {
        std::uint64_t bits = 0;
        for (char c : read_bytes(8)) bits = (bits << 8) | static_cast<std::uint8_t>(c);  // big-endian
        double value;
        std::memcpy(&value, &bits, sizeof value);
        stack_.push_back(Value::of_double(value));
        break;
      }
      case kShortBinUnicode: stack_.push_back(Value::of_string(std::string(read_bytes(read_uint(1))))); break;
      case kBinUnicode: stack_.push_back(Value::of_string(std::string(read_bytes(read_uint(4))))); break;
      case kBinUnicode8: stack_.push_back(Value::of_string(std::string(read_bytes(read_uint(8))))); break;
      // Python 2 str (the legacy format): text, as torch loads it with encoding='utf-8'.
      case kShortBinString: stack_.push_back(Value::of_string(std::string(read_bytes(read_uint(1))))); break;
      case kBinString: stack_.push_back(Value::of_string(std::string(read_bytes(read_uint(4))))); break;
      case kShortBinBytes: stack_.push_back(Value::of_bytes(std::string(read_bytes(read_uint(1))))); break;
      case kBinBytes: stack_.push_back(Value::of_bytes(std::string(read_bytes(read_uint(4))))); break;
      case kBinBytes8: stack_.push_back(Value::of_bytes(std::string(read_bytes(read_uint(8))))); break;
      case kEmptyTuple: stack_.push_back(container(Value::tuple())); break;
      case kTuple1:
      case kTuple2:
      case kTuple3: {
        std::size_t n = op - kTuple1 + 1;
        std::vector<ValuePtr> items(n);
        for (std::size_t i = n; i-- > 0;) items[i] = pop();
        stack_.push_back(tuple_of(std::move(items)));
        break;
      }
      case kTuple: stack_.push_back(tuple_of(pop_to_mark())); break;
      case kEmptyList: stack_.push_back(container(Value::list())); break;
      case kList: {
        auto list = container(Value::list());
        auto items = pop_to_mark();
        for (const auto& item : items) adopt(list, item);
        list->items = std::move(items);
        stack_.push_back(list);
        break;
      }
      case kAppend: {
        ValuePtr item = pop();
        const ValuePtr& list = expect(top(), ValueKind::list, "the target of APPEND");
        adopt(list, item);
        list->items.push_back(std::move(item));
        break;
      }
      case kAppends: {
        auto items = pop_to_mark();
        const ValuePtr& list = expect(top(), ValueKind::list, "the target of APPENDS");
        for (const auto& item : items) adopt(list, item);
        list->items.insert(list->items.end(), items.begin(), items.end());
        break;
      }
      case kEmptyDict: stack_.push_back(container(Value::dict())); break;
      case kDict:
      case kSetItems: {
        auto items = pop_to_mark();
        if (items.size() % 2 != 0) fail("data.pkl: odd number of items for a dict at byte {}", at);
        if (op == kDict) stack_.push_back(container(Value::dict()));
        const ValuePtr& dict = expect(top(), ValueKind::dict, "the target of SETITEMS");
        for (const auto& item : items) adopt(dict, item);
        for (std::size_t i = 0; i < items.size(); i += 2) dict->entries.emplace_back(items[i], items[i + 1]);
        break;
      }
      case kSetItem: {
        ValuePtr value = pop();
        ValuePtr key = pop();
        const ValuePtr& dict = expect(top(), ValueKind::dict, "the target of SETITEM");
        adopt(dict, key);
        adopt(dict, value);
        dict->entries.emplace_back(key, value);
        break;
      }
      case kBinPut: memo_put(read_uint(1)); break;
      case kLongBinPut: memo_put(read_uint(4)); break;
      case kMemoize: memo_put(memo_.size()); break;
      case kBinGet: stack_.push_back(memo_get(read_uint(1))); break;
      case kLongBinGet: stack_.push_back(memo_get(read_uint(4))); break;
      case kGlobal: {
        std::string module(read_line());
        std::string name(read_line());
        stack_.push_back(make_global(std::move(module), std::move(name)));
        break;
      }
      case kStackGlobal: {
        ValuePtr name = pop();
        ValuePtr module = pop();
        stack_.push_back(make_global(expect(module, ValueKind::string, "a module name")->text,
                                     expect(name, ValueKind::string, "a global name")->text));
        break;
      }
      case kReduce: {
        ValuePtr args = pop();
        ValuePtr callable = pop();
        stack_.push_back(reduce(callable, args));
        break;
      }
      case kBuild: {
        ValuePtr state = pop();
        const ValuePtr& target = top();
        // state_dict()'s OrderedDict carries `_metadata` (module versions): kept by
        // Python for load_state_dict, not needed to restore tensors; dropped here.
        bool ordered_dict_state = target->kind == ValueKind::dict && target->ordered_dict &&
                                  (state->kind == ValueKind::dict || state->kind == ValueKind::none);
        bool parameter_state = target->kind == ValueKind::tensor && state->kind == ValueKind::none;
        if (!ordered_dict_state && !parameter_state) {
          fail("data.pkl: BUILD of a {} with a {} state is not supported", kind_name(target->kind), kind_name(state->kind));
        }
        break;
      }
      case kBinPersId: stack_.push_back(persistent_load(pop())); break;
      case kNewObj: fail("data.pkl: NEWOBJ (object construction) is not allowed in a checkpoint (byte {})", at);
      default: fail("data.pkl: unsupported pickle opcode 0x{:02x} at byte {}", op, at);
    }
  }
}

}  // namespace ckpt::format
