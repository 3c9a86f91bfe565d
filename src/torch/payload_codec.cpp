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
#include <ATen/ops/empty.h>
#include <c10/core/CPUAllocator.h>
#include <c10/core/Storage.h>
#include <c10/util/Exception.h>

#include <algorithm>
#include <fmt/format.h>
#include <unordered_map>
#include <unordered_set>

#include "ckpt/errors.hpp"
#include "format/checkpoint_format.hpp"
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
        } else {
          cannot_save(where, fmt::format("dict keys must be strings or ints, found a {}", key.tagKind()));
        }
        dict->entries.emplace_back(key_value, convert(entry.value(), fmt::format("{}['{}']", where, key_text), depth + 1));
      }
      return dict;
    }
    if (value.isList()) {
      auto list = Value::list();
      std::size_t i = 0;
      for (const c10::IValue& item : value.toListRef()) {
        list->items.push_back(convert(item, fmt::format("{}[{}]", where, i++), depth + 1));
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
    cannot_save(where, fmt::format("a {} cannot be saved (supported: tensors, int, float, bool, str, None, "
                                   "dicts, lists, tuples)",
                                   value.tagKind()));
  }

  std::vector<std::shared_ptr<StorageInfo>> storages;

 private:
  ValuePtr tensor(at::Tensor tensor, const std::string& where) {
    if (!tensor.defined()) return Value::none();
    if (tensor.layout() != c10::kStrided) cannot_save(where, "only dense (strided) tensors can be saved");
    if (tensor.is_quantized()) cannot_save(where, "quantized tensors cannot be saved");
    if (tensor.is_conj() || tensor.is_neg()) tensor = tensor.resolve_conj().resolve_neg();
    if (!tensor.is_cpu()) {
      tensor = tensor.cpu();
      keep_alive_.push_back(tensor);
    }
    auto dtype = to_dtype(tensor.scalar_type());
    if (!dtype) cannot_save(where, fmt::format("tensors of dtype {} cannot be saved", c10::toString(tensor.scalar_type())));
    const c10::Storage& storage = tensor.storage();
    const std::size_t element = format::element_size(*dtype);
    if (storage.nbytes() % element != 0) cannot_save(where, "the tensor's storage is not a whole number of elements");
    auto& info = by_storage_[storage.unsafeGetStorageImpl()];
    if (!info) {
      info = std::make_shared<StorageInfo>();
      info->key = std::to_string(storages.size());
      info->dtype = *dtype;
      info->numel = storage.nbytes() / element;
      info->data = storage.data();
      storages.push_back(info);
    } else if (info->dtype != *dtype) {
      cannot_save(where, "two tensors view the same storage as different dtypes (as Python's torch.save, "
                         "ckpt refuses this)");
    }
    auto result = std::make_shared<TensorInfo>();
    result->storage = info;
    result->storage_offset = tensor.storage_offset();
    result->sizes = tensor.sizes().vec();
    result->strides = tensor.strides().vec();
    result->requires_grad = tensor.requires_grad();
    return Value::of_tensor(result);
  }

  std::unordered_map<const c10::StorageImpl*, std::shared_ptr<StorageInfo>> by_storage_;
  std::vector<at::Tensor> keep_alive_;
};

// format::Value -> IValue over materialized storages.
class Decoder {
 public:
  Decoder(const std::unordered_map<std::string, c10::Storage>& storages, const std::filesystem::path& path)
      : storages_(storages), path_(path) {}

  // A pickle can share one object in many places (memo references); Python then
  // shares it too. Converting each shared node once and reusing the result keeps that
  // sharing and bounds the work by the graph's size: without it, a few hundred bytes of
  // nested references expand exponentially.
  c10::IValue convert(const ValuePtr& value, int depth) {
    auto found = converted_.find(value.get());
    if (found != converted_.end()) return found->second;
    c10::IValue result = convert_new(value, depth);
    if (value->kind == ValueKind::list || value->kind == ValueKind::tuple || value->kind == ValueKind::dict ||
        value->kind == ValueKind::tensor) {
      converted_.emplace(value.get(), result);
    }
    return result;
  }

  c10::IValue convert_new(const ValuePtr& value, int depth) {
    if (depth > format::kMaxNesting) fail("nesting deeper than {} levels (or a container that contains itself)", format::kMaxNesting);
    switch (value->kind) {
      case ValueKind::none: return c10::IValue();
      case ValueKind::boolean: return value->boolean;
      case ValueKind::integer: return value->integer;
      case ValueKind::floating: return value->floating;
      case ValueKind::string: return value->text;
      case ValueKind::bytes: return value->text;  // no bytes type in IValue: a string of the bytes
      case ValueKind::tensor: return tensor(*value->tensor);
      case ValueKind::tuple: {
        std::vector<c10::IValue> items;
        for (const auto& item : value->items) items.push_back(convert(item, depth + 1));
        return c10::ivalue::Tuple::create(std::move(items));
      }
      case ValueKind::list: return list(*value, depth);
      case ValueKind::dict: return dict(*value, depth);
      case ValueKind::storage:
      case ValueKind::global: fail("a bare {} is not supported outside a tensor", kind_name(value->kind));
    }
    fail("unknown value");
  }

  c10::IValue dict(const Value& value, int depth) {
    bool string_keys = true;
    bool int_keys = true;
    for (const auto& [key, item] : value.entries) {
      string_keys &= key->kind == ValueKind::string;
      int_keys &= key->kind == ValueKind::integer;
    }
    if (!string_keys && !int_keys) fail("a dict has keys that are neither all strings nor all ints");
    c10::TypePtr key_type = string_keys ? c10::TypePtr(c10::StringType::get()) : c10::TypePtr(c10::IntType::get());
    c10::impl::GenericDict dict(key_type, c10::AnyType::get());
    dict.reserve(value.entries.size());
    for (const auto& [key, item] : value.entries) {
      c10::IValue key_value = string_keys ? c10::IValue(key->text) : c10::IValue(key->integer);
      dict.insert_or_assign(std::move(key_value), convert(item, depth + 1));
    }
    return dict;
  }

  // Homogeneous lists get their precise type (a list of floats reads back with
  // toDoubleList()); mixed ones are lists of Any.
  c10::IValue list(const Value& value, int depth) {
    std::vector<c10::IValue> items;
    items.reserve(value.items.size());
    for (const auto& item : value.items) items.push_back(convert(item, depth + 1));
    auto all = [&](auto predicate) {
      return !items.empty() && std::all_of(items.begin(), items.end(), predicate);
    };
    if (all([](const c10::IValue& v) { return v.isDouble(); })) {
      c10::List<double> typed;
      for (auto& v : items) typed.push_back(v.toDouble());
      return typed;
    }
    if (all([](const c10::IValue& v) { return v.isInt(); })) {
      c10::List<int64_t> typed;
      for (auto& v : items) typed.push_back(v.toInt());
      return typed;
    }
    if (all([](const c10::IValue& v) { return v.isBool(); })) {
      c10::List<bool> typed;
      for (auto& v : items) typed.push_back(v.toBool());
      return typed;
    }
    if (all([](const c10::IValue& v) { return v.isTensor(); })) {
      c10::List<at::Tensor> typed;
      for (auto& v : items) typed.push_back(v.toTensor());
      return typed;
    }
    if (all([](const c10::IValue& v) { return v.isString(); })) {
      c10::List<std::string> typed;
      for (auto& v : items) typed.push_back(v.toStringRef());
      return typed;
    }
    c10::impl::GenericList generic(c10::AnyType::get());
    for (auto& v : items) generic.push_back(std::move(v));
    return generic;
  }

  at::Tensor tensor(const TensorInfo& info) {
    const c10::Storage& storage = storages_.at(info.storage->key);
    at::Tensor tensor = at::empty({0}, at::TensorOptions().dtype(to_scalar_type(info.storage->dtype)));
    tensor.set_(storage, info.storage_offset, info.sizes, info.strides);
    if (info.requires_grad && (tensor.is_floating_point() || tensor.is_complex())) tensor.requires_grad_(true);
    return tensor;
  }

 private:
  template <typename... Args>
  [[noreturn]] void fail(fmt::format_string<Args...> format, Args&&... args) {
    throw FormatError(ErrorCode::format,
                      fmt::format("{}: {}", path_.string(), fmt::format(format, std::forward<Args>(args)...)), path_);
  }

  const std::unordered_map<std::string, c10::Storage>& storages_;
  const std::filesystem::path& path_;
  std::unordered_map<const format::Value*, c10::IValue> converted_;
};

// Each node once: shared sub-graphs are not walked again (see Decoder::convert).
void collect_storages(const ValuePtr& value, std::unordered_set<std::string>& keys,
                      std::unordered_set<const format::Value*>& visited, int depth) {
  if (depth > format::kMaxNesting || !visited.insert(value.get()).second) return;  // the decoder reports depth
  if (value->kind == ValueKind::tensor) keys.insert(value->tensor->storage->key);
  for (const auto& item : value->items) collect_storages(item, keys, visited, depth + 1);
  for (const auto& [key, item] : value->entries) collect_storages(item, keys, visited, depth + 1);
}

c10::Storage read_storage(PayloadSource& source, const StorageInfo& info, const format::StorageLocation& location,
                          const std::filesystem::path& path) {
  c10::Storage storage(c10::Storage::use_byte_size_t(), location.nbytes, c10::GetCPUAllocator(), /*resizable=*/false);
  auto* bytes = static_cast<char*>(storage.data());
  std::uint32_t crc = 0;
  for (std::uint64_t done = 0; done < location.nbytes;) {
    std::size_t n = static_cast<std::size_t>(std::min<std::uint64_t>(kReadChunk, location.nbytes - done));
    source.read_at(location.offset + done, bytes + done, n);
    if (location.crc32) crc = format::crc32(crc, bytes + done, n);
    done += n;
  }
  if (location.crc32 && crc != *location.crc32) {
    throw FormatError(ErrorCode::corrupt,
                      fmt::format("{}: storage record data/{} fails its CRC-32 check (damaged file)", path.string(),
                                  info.key),
                      path);
  }
  return storage;
}

c10::Storage map_storage(const std::shared_ptr<io::MappedFile>& file, const format::StorageLocation& location) {
  // The DataPtr's context owns a reference to the mapping: the last tensor using it unmaps.
  auto* owner = new std::shared_ptr<io::MappedFile>(file);
  c10::DataPtr data(file->data() + location.offset, owner,
                    [](void* context) { delete static_cast<std::shared_ptr<io::MappedFile>*>(context); },
                    c10::Device(c10::kCPU));
  return c10::Storage(c10::Storage::use_byte_size_t(), location.nbytes, std::move(data), nullptr, false);
}

c10::IValue to_device(const c10::IValue& value, c10::Device device) {
  if (value.isTensor()) return value.toTensor().to(device);
  if (value.isGenericDict()) {
    auto source = value.toGenericDict();
    c10::impl::GenericDict mapped(source.keyType(), source.valueType());
    for (const auto& entry : source) mapped.insert(entry.key(), to_device(entry.value(), device));
    return mapped;
  }
  if (value.isTensorList()) {
    c10::List<at::Tensor> mapped;
    for (const at::Tensor& t : value.toTensorList()) mapped.push_back(t.to(device));
    return mapped;
  }
  if (value.isList()) {
    c10::impl::GenericList mapped(value.toList().elementType());
    for (const c10::IValue& item : value.toListRef()) mapped.push_back(to_device(item, device));
    return mapped;
  }
  if (value.isTuple()) {
    std::vector<c10::IValue> items;
    for (const auto& item : value.toTupleRef().elements()) items.push_back(to_device(item, device));
    return c10::ivalue::Tuple::create(std::move(items));
  }
  return value;
}

}  // namespace

EncodedPayload encode(const State& state) {
  auto encoder = std::make_shared<Encoder>();
  ValuePtr root = encoder->convert(state.to_ivalue(), "", 0);
  auto prepared = std::make_shared<format::PreparedCheckpoint>(format::prepare_checkpoint(root, encoder->storages));
  EncodedPayload payload;
  payload.size_hint = prepared->size_bound();
  // The encoder keeps CPU copies of device tensors alive until the writer is gone.
  payload.write = [prepared, encoder](ByteSink& sink) { prepared->write(sink); };
  return payload;
}

State decode(PayloadSource& source, const LoadOptions& options, const std::filesystem::path& path) {
  format::CheckpointLayout layout;
  try {
    layout = format::read_layout(source);
  } catch (const FormatError& error) {
    throw FormatError(ErrorCode::format, fmt::format("{}: {}", path.string(), error.what()), path);
  }
  if (layout.root->kind != ValueKind::dict) {
    throw FormatError(ErrorCode::format,
                      fmt::format("{}: payload holds a {}, not a dict of training state", path.string(),
                                  kind_name(layout.root->kind)),
                      path);
  }
  // The selected top-level entries, and the storages they use.
  std::vector<std::pair<ValuePtr, ValuePtr>> selected;
  for (const auto& entry : layout.root->entries) {
    if (entry.first->kind != ValueKind::string) {
      throw FormatError(ErrorCode::format, fmt::format("{}: a top-level key is a {}, not a string", path.string(),
                                                       kind_name(entry.first->kind)),
                        path);
    }
    if (options.only_keys.empty() ||
        std::find(options.only_keys.begin(), options.only_keys.end(), entry.first->text) != options.only_keys.end()) {
      selected.push_back(entry);
    }
  }
  std::unordered_set<std::string> needed;
  std::unordered_set<const format::Value*> visited;
  for (const auto& entry : selected) collect_storages(entry.second, needed, visited, 0);

  std::vector<const StorageInfo*> order;
  for (const auto& storage : layout.storages) {
    if (needed.count(storage->key)) order.push_back(storage.get());
  }
  std::sort(order.begin(), order.end(), [&](const StorageInfo* a, const StorageInfo* b) {
    return layout.locations.at(a->key).offset < layout.locations.at(b->key).offset;
  });
  std::unordered_map<std::string, c10::Storage> storages;
  // Zero-copy needs a mapped source and element-aligned data (torch's writer aligns
  // records to 64 bytes; other writers may not, and those records are copied).
  auto* mapped = options.memory_map ? dynamic_cast<io::MappedFile*>(&source) : nullptr;
  for (const StorageInfo* info : order) {
    const auto& location = layout.locations.at(info->key);
    const std::size_t alignment = format::element_size(info->dtype);
    if (mapped && location.offset % alignment == 0) {
      storages.emplace(info->key, map_storage(mapped->shared_from_this(), location));
    } else {
      storages.emplace(info->key, read_storage(source, *info, location, path));
    }
  }
  Decoder decoder(storages, path);
  State state;
  for (const auto& [key, value] : selected) {
    c10::IValue converted = decoder.convert(value, 1);
    if (options.device != c10::Device(c10::kCPU)) converted = to_device(converted, options.device);
    state.set(key->text, std::move(converted));
  }
  return state;
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
