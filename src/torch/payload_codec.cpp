// IValue <-> format::Value, and tensors <-> storage records.
//
// Writing: each distinct tensor storage becomes one record, written whole (as Python
// does), so views that share a storage keep sharing after a load. Tensors on other
// devices are copied to the CPU first; their copies live until the write is done.
// Reading: each storage the selected keys use is read once, in file order, straight
// into tensor memory (or mapped), its CRC-32 checked; views are rebuilt over it.
#include "torch/payload_codec.hpp"

#include <ATen/core/Dict.h>
#include <ATen/core/List.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/_sparse_coo_tensor_unsafe.h>
#include <ATen/ops/_validate_sparse_coo_tensor_args.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_strided.h>
#include <c10/core/CPUAllocator.h>
#include <c10/core/Storage.h>
#include <c10/util/Exception.h>

#include <sys/mman.h>

#include <algorithm>
#include <cmath>
#include <fmt/format.h>
#include <unordered_map>
#include <unordered_set>

#include "ckpt/errors.hpp"
#include "format/checkpoint_format.hpp"
#include "format/memory_budget.hpp"
#include "format/zip_reader.hpp"
#include "io/mapped_file.hpp"

namespace ckpt::torch_layer {

namespace {

using format::DType;
using format::StorageInfo;
using format::TensorInfo;
using format::Value;
using format::ValueKind;
using format::ValuePtr;

constexpr std::size_t kReadChunk = 4 << 20;

// The storages read for a decode, by their StorageInfo (the pickle reader makes one per
// key, so the pointer is the key, without hashing 20,000 strings twice).
using StorageMap = std::unordered_map<const StorageInfo*, c10::Storage>;

// Small records are read in groups (see read_group): a record of at most kGroupRecord
// bytes, at a 64-byte aligned offset (as torch's writer aligns them, and c10's CPU
// allocator aligns its memory), joins the group of the records before it when it starts
// at most kGroupGap bytes after the previous one ends (a zip local header and padding)
// and the group's span stays within kGroupSpan bytes.
constexpr std::uint64_t kGroupRecord = 64 << 10;
constexpr std::uint64_t kGroupGap = 512;
constexpr std::uint64_t kGroupSpan = 2 << 20;
constexpr std::uint64_t kGroupAlignment = 64;
// A full group (its span within kGroupRecord + kGroupGap of kGroupSpan) gets a block of
// its own mapped on a 2 MiB boundary, with transparent huge pages asked for: one page
// fault and one page clear where 4 KiB pages would take 512 (a quarter of the load's
// time for 20,000 tensors of 4 KiB). Smaller groups come from c10's CPU allocator.
constexpr std::uint64_t kHugePage = 2 << 20;

// The memory of one group of records.
class GroupBlock {
 public:
  explicit GroupBlock(std::size_t span) {
    // Mapped twice the size, then trimmed to the aligned 2 MiB inside; where mapping
    // fails (vm.max_map_count reached), from the allocator after all.
    void* mapped = span + kGroupRecord + kGroupGap >= kGroupSpan && span <= kHugePage
                       ? ::mmap(nullptr, 2 * kHugePage, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)
                       : MAP_FAILED;
    if (mapped != MAP_FAILED) {
      const auto start = reinterpret_cast<std::uintptr_t>(mapped);
      const std::uintptr_t aligned = (start + kHugePage - 1) / kHugePage * kHugePage;
      if (aligned > start) ::munmap(mapped, aligned - start);
      if (aligned + kHugePage < start + 2 * kHugePage) {
        ::munmap(reinterpret_cast<void*>(aligned + kHugePage), start + 2 * kHugePage - (aligned + kHugePage));
      }
      mapped_ = reinterpret_cast<char*>(aligned);
      (void)::madvise(mapped_, kHugePage, MADV_HUGEPAGE);  // advice: without it, 4 KiB pages
    } else {
      allocated_ = c10::GetCPUAllocator()->allocate(span);
    }
  }
  ~GroupBlock() {
    if (mapped_) ::munmap(mapped_, kHugePage);
  }
  GroupBlock(const GroupBlock&) = delete;
  GroupBlock& operator=(const GroupBlock&) = delete;
  char* data() const { return mapped_ ? mapped_ : static_cast<char*>(allocated_.get()); }

 private:
  char* mapped_ = nullptr;
  c10::DataPtr allocated_;
};

std::optional<DType> to_dtype(c10::ScalarType type) {
  switch (type) {
    case c10::ScalarType::Half: return DType::float16;
    case c10::ScalarType::BFloat16: return DType::bfloat16;
    case c10::ScalarType::Float: return DType::float32;
    case c10::ScalarType::Double: return DType::float64;
    case c10::ScalarType::Char: return DType::int8;
    case c10::ScalarType::Byte: return DType::uint8;
    case c10::ScalarType::Short: return DType::int16;
    case c10::ScalarType::Int: return DType::int32;
    case c10::ScalarType::Long: return DType::int64;
    case c10::ScalarType::Bool: return DType::bool_;
    case c10::ScalarType::ComplexFloat: return DType::complex64;
    case c10::ScalarType::ComplexDouble: return DType::complex128;
    default: return std::nullopt;
  }
}

c10::ScalarType to_scalar_type(DType dtype) {
  switch (dtype) {
    case DType::float16: return c10::ScalarType::Half;
    case DType::bfloat16: return c10::ScalarType::BFloat16;
    case DType::float32: return c10::ScalarType::Float;
    case DType::float64: return c10::ScalarType::Double;
    case DType::int8: return c10::ScalarType::Char;
    case DType::uint8: return c10::ScalarType::Byte;
    case DType::int16: return c10::ScalarType::Short;
    case DType::int32: return c10::ScalarType::Int;
    case DType::int64: return c10::ScalarType::Long;
    case DType::bool_: return c10::ScalarType::Bool;
    case DType::complex64: return c10::ScalarType::ComplexFloat;
    case DType::complex128: return c10::ScalarType::ComplexDouble;
  }
  return c10::ScalarType::Undefined;
}

[[noreturn]] void cannot_save(const std::string& where, const std::string& why) {
  throw FormatError(ErrorCode::format, fmt::format("cannot save state{}: {}", where, why));
}

// IValue -> format::Value, collecting storages.
class Encoder {
 public:
  ValuePtr convert(const c10::IValue& value, const std::string& where, int depth) {
    if (depth > format::kMaxNesting) cannot_save(where, "nested too deeply");
    if (value.isNone()) return Value::none();
    if (value.isBool()) return Value::of_bool(value.toBool());
    if (value.isInt()) return Value::of_int(value.toInt());
    if (value.isDouble()) return Value::of_double(value.toDouble());
    if (value.isString()) return Value::of_string(value.toStringRef());
    if (value.isTensor()) return tensor(value.toTensor(), where);
    if (value.isGenericDict()) {
      auto dict = Value::dict();
      for (const auto& entry : value.toGenericDict()) {
        const c10::IValue& key = entry.key();
        std::string key_text;
        ValuePtr key_value;
        if (key.isString()) {
          key_text = key.toStringRef();
          key_value = Value::of_string(key_text);
        } else if (key.isInt()) {
          key_text = std::to_string(key.toInt());
          key_value = Value::of_int(key.toInt());
        } else if (key.isBool()) {
          key_text = key.toBool() ? "True" : "False";
          key_value = Value::of_bool(key.toBool());
        } else if (key.isDouble()) {
          key_text = fmt::format("{}", key.toDouble());
          key_value = Value::of_double(key.toDouble());
        } else {
          cannot_save(where, fmt::format("dict keys must be strings, ints, bools or floats, found a {}", key.tagKind()));
        }
        dict->add_entry(key_value, convert(entry.value(), fmt::format("{}['{}']", where, key_text), depth + 1));
      }
      // A c10 Dict(Any) can hold 1 and True (or 1 and 1.0) apart; Python cannot: written,
      // one would silently replace the other when the file is read.
      if (!value.toGenericDict().keyType()->cast<c10::StringType>() &&
          format::distinct_entries(*dict).size() != dict->entries().size()) {
        cannot_save(where, "two keys of this dict are one key in Python (1, 1.0 and True are equal keys there)");
      }
      return dict;
    }
    if (value.isList()) {
      auto list = Value::list();
      std::size_t i = 0;
      for (const c10::IValue& item : value.toListRef()) {
        list->append(convert(item, fmt::format("{}[{}]", where, i++), depth + 1));
      }
      return list;
    }
    if (value.isTuple()) {
      std::vector<ValuePtr> items;
      std::size_t i = 0;
      for (const auto& item : value.toTupleRef().elements()) {
        items.push_back(convert(item, fmt::format("{}[{}]", where, i++), depth + 1));
      }
      return Value::tuple(std::move(items));
    }
    cannot_save(where, fmt::format("a {} cannot be saved (supported: tensors (dense, sparse COO, meta), int, "
                                   "float, bool, str, None, dicts, lists, tuples)",
                                   value.tagKind()));
  }

  std::vector<std::shared_ptr<StorageInfo>> storages;

 private:
  ValuePtr tensor(at::Tensor tensor, const std::string& where) {
    if (!tensor.defined()) return Value::none();
    auto info = tensor_info(std::move(tensor), where);
    return Value::of_tensor(std::move(info));
  }

  std::shared_ptr<TensorInfo> tensor_info(at::Tensor tensor, const std::string& where) {
    if (tensor.is_quantized()) cannot_save(where, "quantized tensors cannot be saved");
    if (tensor.is_conj() || tensor.is_neg()) tensor = tensor.resolve_conj().resolve_neg();
    auto dtype = to_dtype(tensor.scalar_type());
    if (!dtype) cannot_save(where, fmt::format("tensors of dtype {} cannot be saved", c10::toString(tensor.scalar_type())));
    auto result = std::make_shared<TensorInfo>();
    result->requires_grad = tensor.requires_grad();
    if (tensor.layout() == c10::kSparse) {
      // As torch.save: the uncoalesced indices and values as they are.
      result->layout = format::TensorLayout::sparse_coo;
      result->sizes = tensor.sizes().vec();
      result->indices = tensor_info(tensor._indices(), where + " (indices)");
      result->values = tensor_info(tensor._values(), where + " (values)");
      return result;
    }
    if (tensor.layout() != c10::kStrided) cannot_save(where, "only dense (strided) and sparse COO tensors can be saved");
    if (tensor.is_meta()) {
      // No data: dtype, sizes and strides, as torch.save writes a meta tensor.
      result->layout = format::TensorLayout::meta;
      result->meta_dtype = *dtype;
      result->sizes = tensor.sizes().vec();
      result->strides = tensor.strides().vec();
      return result;
    }
    if (!tensor.is_cpu()) tensor = tensor.cpu();  // its storage is kept below
    const c10::Storage& storage = tensor.storage();
    const std::size_t element = format::element_size(*dtype);
    if (storage.nbytes() % element != 0) cannot_save(where, "the tensor's storage is not a whole number of elements");
    auto& stored = by_storage_[storage.unsafeGetStorageImpl()];
    if (!stored) {
      stored = std::make_shared<StorageInfo>();
      stored->key = std::to_string(storages.size());
      stored->dtype = *dtype;
      stored->numel = storage.nbytes() / element;
      stored->data = storage.data();
      storages.push_back(stored);
      // The storage itself, not the tensor: a CPU copy, a _values() or _indices() view, or a
      // tensor given new storage after encode() (set_, module->to()) still writes these bytes.
      keep_alive_.push_back(storage);
    } else if (stored->dtype != *dtype) {
      cannot_save(where, "two tensors view the same storage as different dtypes (as Python's torch.save, "
                         "ckpt refuses this)");
    }
    result->storage = stored;
    result->storage_offset = tensor.storage_offset();
    result->sizes = tensor.sizes().vec();
    result->strides = tensor.strides().vec();
    return result;
  }

  std::unordered_map<const c10::StorageImpl*, std::shared_ptr<StorageInfo>> by_storage_;
  std::vector<c10::Storage> keep_alive_;
};

// format::Value -> IValue over materialized storages (already on the target device).
//
// A pickle can share one object in many places (memo references); Python then shares it
// too. Each shared node (container, string, tensor) is converted once and its IValue
// reused: that keeps the sharing (IValues of strings and containers are references), and
// bounds the work by the graph's size: without it, a few hundred bytes of nested
// references expand exponentially, and a 1 MiB string referenced 3,000 times becomes
// 3 GB. What is built is charged to the payload's budget.
class Decoder {
 public:
  Decoder(const StorageMap& storages, format::MemoryBudget& budget,
          const DenseTensorFactory* make_dense = nullptr, const TensorSet* placeholders = nullptr)
      : storages_(storages), budget_(budget), make_dense_(make_dense), placeholders_(placeholders) {}

  c10::IValue convert(const ValuePtr& value, int depth) {
    auto found = converted_.find(value.get());
    if (found != converted_.end()) return found->second;
    c10::IValue result = convert_new(*value, depth);
    switch (value->kind()) {
      case ValueKind::none:
      case ValueKind::boolean:
      case ValueKind::integer:
      case ValueKind::floating: break;  // small, and shared by the reader anyway
      default:
        charge(kCacheEntryBytes);
        converted_.emplace(value.get(), result);
    }
    return result;
  }

 private:
  // Rough sizes of what libtorch allocates, for the budget (not exact; the order of
  // magnitude is what matters against a hostile file).
  static constexpr std::size_t kCacheEntryBytes = 64;
  static constexpr std::size_t kContainerBytes = 64;
  static constexpr std::size_t kDictEntryBytes = 96;
  static constexpr std::size_t kTensorBytes = 512;

  void charge(std::uint64_t bytes) { budget_.charge(bytes, "decoding data.pkl"); }

  c10::IValue convert_new(const Value& value, int depth) {
    if (depth > format::kMaxNesting) fail("nesting deeper than {} levels (or a container that contains itself)", format::kMaxNesting);
    switch (value.kind()) {
      case ValueKind::none: return c10::IValue();
      case ValueKind::boolean: return value.boolean();
      case ValueKind::integer: return value.integer();  // [2^63, 2^64): the same 64 bits (docs/format.md)
      case ValueKind::floating: return value.floating();
      case ValueKind::string:
      case ValueKind::bytes:  // no bytes type in IValue: a string of the bytes
        charge(kContainerBytes + value.text().size());
        return value.text();
      case ValueKind::dtype: {
        // As TorchScript holds a dtype: its ScalarType's number (docs/format.md).
        auto dtype = format::dtype_from_torch_name(value.text());
        if (!dtype) fail("unsupported dtype torch.{}", value.text());
        return static_cast<std::int64_t>(to_scalar_type(*dtype));
      }
      case ValueKind::tensor: return tensor(*value.tensor());
      case ValueKind::storage: {
        // A bare storage (torch.save of a TypedStorage): a 1-D tensor of its dtype over all
        // of it, the nearest value an IValue holds (docs/format.md).
        return tensor(format::whole_storage_view(value.storage()));
      }
      case ValueKind::tuple: {
        std::vector<c10::IValue> items;
        charge(kContainerBytes + 16 * value.items().size());
        items.reserve(value.items().size());
        for (const auto& item : value.items()) items.push_back(convert(item, depth + 1));
        return c10::ivalue::Tuple::create(std::move(items));
      }
      case ValueKind::list: return list(value, depth);
      case ValueKind::dict: return dict(value, depth);
      case ValueKind::global: fail("a bare {} is not supported outside a tensor", kind_name(value.kind()));
    }
    fail("unknown value");
  }

  // Keys as Python compares them (format::distinct_entries). str keys: Dict(str, Any);
  // int keys: Dict(int, Any); str, int, bool and float mixed: Dict(Any, Any). c10 cannot
  // hash None or tuples: a dict with such keys becomes a list of (key, value) tuples.
  c10::IValue dict(const Value& value, int depth) {
    const std::vector<format::Entry> entries = format::distinct_entries(value);
    charge(kContainerBytes + 32 * value.entries().size() + kDictEntryBytes * entries.size());
    bool string_keys = true, int_keys = true, hashable = true, has_str = false, has_bytes = false;
    for (const auto& [key, item] : entries) {
      const ValueKind kind = key->kind();
      string_keys &= kind == ValueKind::string;
      int_keys &= kind == ValueKind::integer;
      has_str |= kind == ValueKind::string;
      has_bytes |= kind == ValueKind::bytes;
      // c10 hashes str, int, bool and float keys; a NaN key (never equal, even to
      // itself, in c10) and an int beyond 2^63 (its IValue is the int64 with the same
      // bits, another key's) would be lost in a Dict.
      hashable &= (kind == ValueKind::string || kind == ValueKind::integer || kind == ValueKind::boolean ||
                   kind == ValueKind::floating || kind == ValueKind::bytes) &&
                  !(kind == ValueKind::floating && std::isnan(key->floating())) && !key->is_unsigned();
    }
    // bytes become str IValues: b'a' and 'a' would be one key.
    hashable &= !(has_str && has_bytes);
    if (!hashable) {
      c10::impl::GenericList pairs(c10::TupleType::create({c10::AnyType::get(), c10::AnyType::get()}));
      for (const auto& [key, item] : entries) {
        pairs.push_back(c10::ivalue::Tuple::create(convert(key, depth + 1), convert(item, depth + 1)));
      }
      return pairs;
    }
    c10::TypePtr key_type = string_keys ? c10::TypePtr(c10::StringType::get())
                            : int_keys  ? c10::TypePtr(c10::IntType::get())
                                        : c10::TypePtr(c10::AnyType::get());
    c10::impl::GenericDict dict(key_type, c10::AnyType::get());
    dict.reserve(entries.size());
    for (const auto& [key, item] : entries) dict.insert_or_assign(convert(key, depth + 1), convert(item, depth + 1));
    return dict;
  }

  // Homogeneous lists get their precise type (a list of floats reads back with
  // toDoubleList()); mixed ones are lists of Any. Typed from the Values, so a list of a
  // million ints is built once, 8 bytes an item.
  c10::IValue list(const Value& value, int depth) {
    const auto& items = value.items();
    auto all = [&](ValueKind kind) {
      return !items.empty() &&
             std::all_of(items.begin(), items.end(), [&](const ValuePtr& v) { return v->kind() == kind; });
    };
    auto typed = [&](auto list, std::size_t item_bytes, auto&& item_of) {
      charge(kContainerBytes + item_bytes * items.size());
      list.reserve(items.size());
      for (const auto& item : items) list.push_back(item_of(item));
      return c10::IValue(std::move(list));
    };
    if (all(ValueKind::floating)) return typed(c10::List<double>(), 8, [](const ValuePtr& v) { return v->floating(); });
    if (all(ValueKind::integer)) return typed(c10::List<int64_t>(), 8, [](const ValuePtr& v) { return v->integer(); });
    if (all(ValueKind::boolean)) return typed(c10::List<bool>(), 8, [](const ValuePtr& v) { return v->boolean(); });
    if (all(ValueKind::tensor)) {
      return typed(c10::List<at::Tensor>(), 16, [&](const ValuePtr& v) { return convert(v, depth + 1).toTensor(); });
    }
    if (all(ValueKind::string)) {
      // A List<str> holding the converted IValues themselves: a memo-shared string stays
      // one string (List<std::string>::push_back would copy it).
      return typed(c10::impl::GenericList(c10::StringType::get()), 16, [&](const ValuePtr& v) { return convert(v, depth + 1); });
    }
    return typed(c10::impl::GenericList(c10::AnyType::get()), 16, [&](const ValuePtr& v) { return convert(v, depth + 1); });
  }

  at::Tensor tensor(const TensorInfo& info) {
    charge(kTensorBytes + 16 * info.sizes.size());
    const auto dtype = to_scalar_type(info.dtype());
    at::Tensor tensor;
    switch (info.layout) {
      case format::TensorLayout::strided: {
        if (make_dense_) {
          tensor = (*make_dense_)(info, dtype);
          break;
        }
        auto found = storages_.find(info.storage.get());
        if (found == storages_.end() && placeholders_ && placeholders_->count(&info)) {
          tensor = at::empty({0}, at::TensorOptions().dtype(dtype));  // not read: the caller's to replace
          break;
        }
        const c10::Storage& storage = storages_.at(info.storage.get());
        tensor = at::empty({0}, at::TensorOptions().dtype(dtype).device(storage.device()));
        tensor.set_(storage, info.storage_offset, info.sizes, info.strides);
        break;
      }
      case format::TensorLayout::meta:
        // No storage: stays on the meta device whatever LoadOptions::device says (as
        // torch.load's map_location, which moves storages).
        tensor = at::empty_strided(info.sizes, info.strides, at::TensorOptions().dtype(dtype).device(c10::kMeta));
        break;
      case format::TensorLayout::sparse_coo: {
        at::Tensor indices = this->tensor(*info.indices);
        at::Tensor values = this->tensor(*info.values);
        // torch.load validates loaded sparse tensors the same way (indices in range).
        at::_validate_sparse_coo_tensor_args(indices, values, info.sizes);
        tensor = at::_sparse_coo_tensor_unsafe(indices, values, info.sizes);
        break;
      }
    }
    if (info.requires_grad && (tensor.is_floating_point() || tensor.is_complex())) tensor.requires_grad_(true);
    return tensor;
  }

  template <typename... Args>
  [[noreturn]] void fail(fmt::format_string<Args...> format, Args&&... args) {
    throw FormatError(ErrorCode::format, fmt::format(format, std::forward<Args>(args)...));
  }

  const StorageMap& storages_;
  format::MemoryBudget& budget_;
  const DenseTensorFactory* make_dense_;  // when set, dense tensors are made by it, from no storage
  const TensorSet* placeholders_;         // tensors left unread when their storage was not (decode_state)
  std::unordered_map<const format::Value*, c10::IValue> converted_;
};

void collect_tensor_storages(const TensorInfo& tensor, std::unordered_set<const StorageInfo*>& keys) {
  if (tensor.storage) keys.insert(tensor.storage.get());
  if (tensor.indices) collect_tensor_storages(*tensor.indices, keys);
  if (tensor.values) collect_tensor_storages(*tensor.values, keys);
}

// Each node once: shared sub-graphs are not walked again (see Decoder).
void collect_storages(const ValuePtr& value, const TensorSet& placeholders, std::unordered_set<const StorageInfo*>& keys,
                      std::unordered_set<const format::Value*>& visited, int depth) {
  if (depth > format::kMaxNesting || !visited.insert(value.get()).second) return;  // the decoder reports depth
  if (value->tensor() && !placeholders.count(value->tensor().get())) collect_tensor_storages(*value->tensor(), keys);
  if (value->storage()) keys.insert(value->storage().get());
  for (const auto& item : value->items()) collect_storages(item, placeholders, keys, visited, depth + 1);
  for (const auto& [key, item] : value->entries()) {
    collect_storages(key, placeholders, keys, visited, depth + 1);
    collect_storages(item, placeholders, keys, visited, depth + 1);
  }
}

c10::Storage read_storage(PayloadSource& source, const StorageInfo& info, const format::StorageLocation& location,
                          const std::filesystem::path& path) {
  c10::Storage storage(c10::Storage::use_byte_size_t(), location.nbytes, c10::GetCPUAllocator(), /*resizable=*/false);
  format::read_storage_record(source, info.key, location, static_cast<char*>(storage.data()), nullptr, path,
                              kReadChunk);
  return storage;
}

// A storage record to read, with its place in the file.
struct PlannedRead {
  const StorageInfo* info;
  const format::StorageLocation* location;
};

bool groupable(const format::StorageLocation& location) {
  return location.nbytes > 0 && location.nbytes <= kGroupRecord && location.offset % kGroupAlignment == 0;
}

// Reads the records [first, last) of `plan` (contiguous but for small gaps: see
// kGroupGap) with one read into one allocation, and gives each record a storage of its
// own over its bytes in it: its own size (not resizable, as read_storage's), its own
// memory, no two overlapping; the allocation is freed with the last of them. Each
// record's CRC-32 is checked as read_storage checks it. What a group costs beyond its
// records' bytes is the gaps, at most kGroupGap bytes a record.
void read_group(PayloadSource& source, const std::vector<PlannedRead>& plan, std::size_t first, std::size_t last,
                const std::filesystem::path& path, StorageMap& storages) {
  const std::uint64_t start = plan[first].location->offset;
  const std::uint64_t span = plan[last - 1].location->offset + plan[last - 1].location->nbytes - start;
  auto block = std::make_shared<GroupBlock>(static_cast<std::size_t>(span));
  char* bytes = block->data();
  source.read_at(start, bytes, static_cast<std::size_t>(span));
  for (std::size_t i = first; i < last; ++i) {
    const StorageInfo& info = *plan[i].info;
    const format::StorageLocation& location = *plan[i].location;
    char* data = bytes + (location.offset - start);
    if (location.crc32 && format::crc32(0, data, static_cast<std::size_t>(location.nbytes)) != *location.crc32) {
      throw format::storage_crc_error(info.key, path);
    }
    // The DataPtr's context owns a reference to the group's block, as map_storage's does
    // to the mapping.
    auto* owner = new std::shared_ptr<GroupBlock>(block);
    c10::DataPtr data_ptr(data, owner, [](void* context) { delete static_cast<std::shared_ptr<GroupBlock>*>(context); },
                          c10::Device(c10::kCPU));
    storages.emplace(&info, c10::Storage(c10::Storage::use_byte_size_t(), location.nbytes, std::move(data_ptr), nullptr,
                                         /*resizable=*/false));
  }
}

c10::Storage map_storage(const std::shared_ptr<io::MappedFile>& file, const format::StorageLocation& location) {
  // The DataPtr's context owns a reference to the mapping: the last tensor using it unmaps.
  auto* owner = new std::shared_ptr<io::MappedFile>(file);
  c10::DataPtr data(file->data() + location.offset, owner,
                    [](void* context) { delete static_cast<std::shared_ptr<io::MappedFile>*>(context); },
                    c10::Device(c10::kCPU));
  return c10::Storage(c10::Storage::use_byte_size_t(), location.nbytes, std::move(data), nullptr, false);
}

// Storages are moved to the device once each, before any tensor is built, so that views
// stay views of one storage and tensors that shared a storage (tied weights) still do.
c10::Storage storage_on(const c10::Storage& storage, c10::Device device) {
  at::Tensor bytes = at::empty({0}, at::TensorOptions().dtype(c10::kByte));
  bytes.set_(storage, 0, {static_cast<std::int64_t>(storage.nbytes())}, {1});
  return bytes.to(device).storage();
}

}  // namespace

EncodedPayload encode(const State& state, const std::filesystem::path& target) {
  auto encoder = std::make_shared<Encoder>();
  ValuePtr root;
  try {
    root = encoder->convert(state.to_ivalue(), "", 0);
  } catch (const c10::Error& error) {
    // A libtorch call on a tensor failed (a device copy, a tensor kind without strides):
    // rethrown as ckpt's error for a value that cannot be saved, naming the file.
    throw FormatError(ErrorCode::format,
                      fmt::format("{}: cannot be saved: {}", target.string(), error.what_without_backtrace()), target);
  }
  auto prepared = std::make_shared<format::PreparedCheckpoint>(format::prepare_checkpoint(root, encoder->storages));
  EncodedPayload payload;
  payload.size_hint = prepared->size_bound();
  // The encoder keeps CPU copies of device tensors alive until the writer is gone.
  payload.write = [prepared, encoder](ByteSink& sink) { prepared->write(sink); };
  return payload;
}

// What read_layout found, with the file's name on its errors.
format::CheckpointLayout layout_of(PayloadSource& source, const std::filesystem::path& path) {
  try {
    return format::read_layout(source);
  } catch (const FormatError& error) {
    throw FormatError(error.code(), fmt::format("{}: {}", path.string(), error.what()), path);
  }
}

// Reads the storages `roots` use (in file order, each once) onto `options.device`, and
// converts each root; the same Decoder for all, so sharing across roots is kept.
std::vector<c10::IValue> decode_roots(PayloadSource& source, const format::CheckpointLayout& layout,
                                      const std::vector<ValuePtr>& roots, const LoadOptions& options,
                                      const std::filesystem::path& path, const TensorSet& placeholders) {
  std::unordered_set<const StorageInfo*> needed;
  std::unordered_set<const format::Value*> visited;
  for (const auto& root : roots) collect_storages(root, placeholders, needed, visited, 0);
  std::vector<PlannedRead> plan;
  plan.reserve(needed.size());
  for (const auto& storage : layout.storages) {
    if (needed.count(storage.get())) plan.push_back({storage.get(), &layout.locations.at(storage->key)});
  }
  std::sort(plan.begin(), plan.end(),
            [](const PlannedRead& a, const PlannedRead& b) { return a.location->offset < b.location->offset; });
  StorageMap storages;
  storages.reserve(plan.size());
  // Zero-copy needs a mapped source and element-aligned data (torch's writer aligns
  // records to 64 bytes; other writers may not, and those records are copied).
  auto* mapped = options.memory_map ? dynamic_cast<io::MappedFile*>(&source) : nullptr;
  const bool on_cpu = options.device == c10::Device(c10::kCPU);
  for (std::size_t i = 0; i < plan.size();) {
    const StorageInfo& info = *plan[i].info;
    const auto& location = *plan[i].location;
    const std::size_t alignment = format::element_size(info.dtype);
    if (mapped && location.offset % alignment == 0) {
      storages.emplace(&info, on_cpu ? map_storage(mapped->shared_from_this(), location)
                                     : storage_on(map_storage(mapped->shared_from_this(), location), options.device));
      ++i;
      continue;
    }
    // The records that follow this one closely enough to be read with it (kGroupGap).
    std::size_t end = i + 1;
    if (!mapped && groupable(location)) {
      std::uint64_t group_end = location.offset + location.nbytes;
      while (end < plan.size()) {
        const auto& next = *plan[end].location;
        if (!groupable(next) || next.offset < group_end || next.offset - group_end > kGroupGap ||
            next.offset + next.nbytes - location.offset > kGroupSpan) {
          break;
        }
        group_end = next.offset + next.nbytes;
        ++end;
      }
    }
    if (end - i > 1) {
      read_group(source, plan, i, end, path, storages);
      if (!on_cpu) {
        for (std::size_t j = i; j < end; ++j) {
          c10::Storage& storage = storages.at(plan[j].info);
          storage = storage_on(storage, options.device);
        }
      }
    } else {
      c10::Storage storage = read_storage(source, info, location, path);
      storages.emplace(&info, on_cpu ? std::move(storage) : storage_on(storage, options.device));
    }
    i = end;
  }
  Decoder decoder(storages, *layout.budget, nullptr, &placeholders);
  std::vector<c10::IValue> converted;
  converted.reserve(roots.size());
  for (const auto& root : roots) converted.push_back(decoder.convert(root, 1));
  return converted;
}

std::vector<c10::IValue> decode_placeholders(const format::CheckpointLayout& layout, const std::vector<ValuePtr>& roots,
                                             const DenseTensorFactory& make_dense) {
  const StorageMap no_storages;
  Decoder decoder(no_storages, *layout.budget, &make_dense);
  std::vector<c10::IValue> converted;
  converted.reserve(roots.size());
  for (const auto& root : roots) converted.push_back(decoder.convert(root, 1));
  return converted;
}

c10::ScalarType scalar_type_of(format::DType dtype) { return to_scalar_type(dtype); }

void rethrow_named(const std::filesystem::path& path) {
  auto named = [&](const std::string& what) {
    const std::string prefix = path.string() + ": ";
    return what.rfind(prefix, 0) == 0 ? what : prefix + what;
  };
  try {
    throw;
  } catch (const FormatError& error) {
    throw FormatError(error.code(), named(error.what()), path);
  } catch (const Error&) {
    throw;
  } catch (const c10::Error& error) {
    throw FormatError(ErrorCode::format, named(fmt::format("cannot be loaded: {}", error.what_without_backtrace())), path);
  } catch (const std::bad_alloc&) {
    throw FormatError(ErrorCode::format, named("out of memory while decoding it"), path);
  } catch (const std::exception& error) {
    throw FormatError(ErrorCode::format, named(fmt::format("cannot be loaded: {}", error.what())), path);
  }
}

namespace {

// Whatever libtorch or the allocator throws while a payload is decoded becomes a
// FormatError naming the file (the manager then lets the hash decide, as for any decode
// failure); ckpt's own errors pass through.
template <typename Fn>
auto guarded(const std::filesystem::path& path, Fn&& fn) -> decltype(fn()) {
  try {
    return fn();
  } catch (...) {
    rethrow_named(path);
  }
}

}  // namespace

State decode(PayloadSource& source, const LoadOptions& options, const std::filesystem::path& path) {
  return guarded(path, [&] { return decode_state(source, layout_of(source, path), options, path); });
}

State decode_state(PayloadSource& source, const format::CheckpointLayout& layout, const LoadOptions& options,
                   const std::filesystem::path& path, const TensorSet& placeholders) {
  return guarded(path, [&] {
    if (layout.root->kind() != ValueKind::dict) {
      throw FormatError(ErrorCode::format,
                        fmt::format("{}: payload holds a {}, not a dict of training state (load_value reads any "
                                    "payload)",
                                    path.string(), kind_name(layout.root->kind())),
                        path);
    }
    // The selected top-level entries, and the storages they use.
    std::vector<format::Entry> selected;
    for (const auto& entry : format::distinct_entries(*layout.root)) {
      if (entry.first->kind() != ValueKind::string) {
        throw FormatError(ErrorCode::format,
                          fmt::format("{}: a top-level key is a {}, not a string (load_value reads any payload)",
                                      path.string(), kind_name(entry.first->kind())),
                          path);
      }
      if (options.only_keys.empty() || std::find(options.only_keys.begin(), options.only_keys.end(),
                                                 entry.first->text()) != options.only_keys.end()) {
        selected.push_back(entry);
      }
    }
    std::vector<ValuePtr> roots;
    for (const auto& entry : selected) roots.push_back(entry.second);
    std::vector<c10::IValue> values = decode_roots(source, layout, roots, options, path, placeholders);
    State state;
    for (std::size_t i = 0; i < selected.size(); ++i) state.set(selected[i].first->text(), std::move(values[i]));
    return state;
  });
}

c10::IValue decode_value(PayloadSource& source, const LoadOptions& options, const std::filesystem::path& path) {
  if (!options.only_keys.empty()) throw InvalidArgument("load_value: only_keys applies to load_file, not to a payload's root value");
  return guarded(path, [&] {
    format::CheckpointLayout layout = layout_of(source, path);
    return decode_roots(source, layout, {layout.root}, options, path).front();
  });
}

void require_usable_device(c10::Device device) {
  try {
    (void)at::empty({0}, at::TensorOptions().device(device));
  } catch (const c10::Error&) {
    throw InvalidArgument(fmt::format("device '{}' cannot be used by this libtorch build (is it compiled with {} "
                                      "support, and is a device present?)",
                                      device.str(), c10::DeviceTypeName(device.type())));
  }
}

}  // namespace ckpt::torch_layer
