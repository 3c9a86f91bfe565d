#include "format/value.hpp"

#include <array>

namespace ckpt::format {

namespace {
struct DTypeRow {
  DType dtype;
  std::size_t size;
  std::string_view storage_class;
  std::string_view name;
};
constexpr std::array<DTypeRow, 12> kDTypes{{
    {DType::float16, 2, "HalfStorage", "float16"},
    {DType::bfloat16, 2, "BFloat16Storage", "bfloat16"},
    {DType::float32, 4, "FloatStorage", "float32"},
    {DType::float64, 8, "DoubleStorage", "float64"},
    {DType::int8, 1, "CharStorage", "int8"},
    {DType::uint8, 1, "ByteStorage", "uint8"},
    {DType::int16, 2, "ShortStorage", "int16"},
    {DType::int32, 4, "IntStorage", "int32"},
    {DType::int64, 8, "LongStorage", "int64"},
    {DType::bool_, 1, "BoolStorage", "bool"},
    {DType::complex64, 8, "ComplexFloatStorage", "complex64"},
    {DType::complex128, 16, "ComplexDoubleStorage", "complex128"},
}};
const DTypeRow& row(DType dtype) { return kDTypes[static_cast<std::size_t>(dtype)]; }
}  // namespace

std::size_t element_size(DType dtype) noexcept { return row(dtype).size; }
std::string_view storage_class(DType dtype) noexcept { return row(dtype).storage_class; }
std::string_view dtype_name(DType dtype) noexcept { return row(dtype).name; }

std::optional<DType> dtype_from_storage_class(std::string_view name) noexcept {
  for (const auto& entry : kDTypes) {
    if (entry.storage_class == name) return entry.dtype;
  }
  return std::nullopt;
}

std::string_view kind_name(ValueKind kind) noexcept {
  switch (kind) {
    case ValueKind::none: return "None";
    case ValueKind::boolean: return "bool";
    case ValueKind::integer: return "int";
    case ValueKind::floating: return "float";
    case ValueKind::string: return "str";
    case ValueKind::bytes: return "bytes";
    case ValueKind::list: return "list";
    case ValueKind::tuple: return "tuple";
    case ValueKind::dict: return "dict";
    case ValueKind::tensor: return "Tensor";
    case ValueKind::storage: return "Storage";
    case ValueKind::global: return "global";
  }
  return "unknown";
}

namespace {
ValuePtr make(ValueKind kind) {
  auto value = std::make_shared<Value>();
  value->kind = kind;
  return value;
}
}  // namespace

ValuePtr Value::none() { return make(ValueKind::none); }
ValuePtr Value::of_bool(bool b) {
  auto v = make(ValueKind::boolean);
  v->boolean = b;
  return v;
}
ValuePtr Value::of_int(std::int64_t i) {
  auto v = make(ValueKind::integer);
  v->integer = i;
  return v;
}
ValuePtr Value::of_double(double d) {
  auto v = make(ValueKind::floating);
  v->floating = d;
  return v;
}
ValuePtr Value::of_string(std::string s) {
  auto v = make(ValueKind::string);
  v->text = std::move(s);
  return v;
}
ValuePtr Value::of_bytes(std::string s) {
  auto v = make(ValueKind::bytes);
  v->text = std::move(s);
  return v;
}
ValuePtr Value::list() { return make(ValueKind::list); }
ValuePtr Value::tuple(std::vector<ValuePtr> items) {
  auto v = make(ValueKind::tuple);
  v->items = std::move(items);
  return v;
}
ValuePtr Value::dict(bool ordered) {
  auto v = make(ValueKind::dict);
  v->ordered_dict = ordered;
  return v;
}
ValuePtr Value::of_tensor(std::shared_ptr<TensorInfo> tensor) {
  auto v = make(ValueKind::tensor);
  v->tensor = std::move(tensor);
  return v;
}
ValuePtr Value::of_storage(std::shared_ptr<StorageInfo> storage) {
  auto v = make(ValueKind::storage);
  v->storage = std::move(storage);
  return v;
}
ValuePtr Value::global(std::string qualified_name) {
  auto v = make(ValueKind::global);
  v->text = std::move(qualified_name);
  return v;
}

}  // namespace ckpt::format
