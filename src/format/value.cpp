#include "format/value.hpp"

#include <algorithm>
#include <array>
#include <cstdint>
#include <cmath>
#include <cstring>
#include <functional>
#include <unordered_map>
#include <variant>

namespace ckpt::format {

namespace {
struct DTypeRow {
  DType dtype;
  std::size_t size;
  std::string_view storage_class;
  std::string_view name;
  std::string_view alias;  // torch's other attribute name for it, if any
};
constexpr std::array<DTypeRow, 12> kDTypes{{
    {DType::float16, 2, "HalfStorage", "float16", "half"},
    {DType::bfloat16, 2, "BFloat16Storage", "bfloat16", ""},
    {DType::float32, 4, "FloatStorage", "float32", "float"},
    {DType::float64, 8, "DoubleStorage", "float64", "double"},
    {DType::int8, 1, "CharStorage", "int8", ""},
    {DType::uint8, 1, "ByteStorage", "uint8", ""},
    {DType::int16, 2, "ShortStorage", "int16", "short"},
    {DType::int32, 4, "IntStorage", "int32", "int"},
    {DType::int64, 8, "LongStorage", "int64", "long"},
    {DType::bool_, 1, "BoolStorage", "bool", ""},
    {DType::complex64, 8, "ComplexFloatStorage", "complex64", "cfloat"},
    {DType::complex128, 16, "ComplexDoubleStorage", "complex128", "cdouble"},
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

std::optional<DType> dtype_from_torch_name(std::string_view name) noexcept {
  for (const auto& entry : kDTypes) {
    if (entry.name == name || (!entry.alias.empty() && entry.alias == name)) return entry.dtype;
  }
  return std::nullopt;
}

TensorInfo whole_storage_view(const std::shared_ptr<StorageInfo>& storage) {
  TensorInfo view;
  view.storage = storage;
  view.sizes = {static_cast<std::int64_t>(std::min<std::uint64_t>(storage->numel, static_cast<std::uint64_t>(INT64_MAX)))};
  view.strides = {1};
  return view;
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
    case ValueKind::dtype: return "torch.dtype";
  }
  return "unknown";
}

// One alternative per kind that holds more than a scalar: a string Value is its node
// plus one small body (and the text's own bytes when they do not fit inline).
struct Value::Body {
  std::variant<std::string, std::vector<ValuePtr>, std::vector<Entry>, std::shared_ptr<TensorInfo>,
               std::shared_ptr<StorageInfo>>
      held;
};
static_assert(sizeof(Value) <= 24, "a Value is one small allocation (see kNodeBytes)");
static_assert(sizeof(Value::Body) <= Value::kBodyBytes, "see kBodyBytes");

Value::~Value() = default;

namespace {
const std::string kNoText;
const std::vector<ValuePtr> kNoItems;
const std::vector<Entry> kNoEntries;
const std::shared_ptr<TensorInfo> kNoTensor;
const std::shared_ptr<StorageInfo> kNoStorage;

template <typename T>
std::size_t grown(const std::vector<T>& v, std::size_t capacity_before) {
  return (v.capacity() - capacity_before) * sizeof(T);
}
}  // namespace

template <typename T>
T& Value::held() {
  if (!body_) body_ = std::make_unique<Body>(Body{T{}});
  return std::get<T>(body_->held);
}

// What the value holds if it is a T, else `fallback` (the accessors' empty defaults).
template <typename T>
const T& Value::held_or(const T& fallback) const noexcept {
  const T* held = body_ ? std::get_if<T>(&body_->held) : nullptr;
  return held ? *held : fallback;
}

const std::string& Value::text() const noexcept {
  return held_or(kNoText);
}
const std::vector<ValuePtr>& Value::items() const noexcept {
  return held_or(kNoItems);
}
const std::vector<Entry>& Value::entries() const noexcept {
  return held_or(kNoEntries);
}
const std::shared_ptr<TensorInfo>& Value::tensor() const noexcept {
  return held_or(kNoTensor);
}
const std::shared_ptr<StorageInfo>& Value::storage() const noexcept {
  return held_or(kNoStorage);
}

std::size_t Value::append(ValuePtr item) {
  const std::size_t cost = body_ ? 0 : kBodyBytes;
  auto& items = held<std::vector<ValuePtr>>();
  const std::size_t before = items.capacity();
  items.push_back(std::move(item));
  return cost + grown(items, before);
}

std::size_t Value::append(std::vector<ValuePtr> more) {
  if (more.empty()) return 0;
  const std::size_t cost = body_ ? 0 : kBodyBytes;
  auto& items = held<std::vector<ValuePtr>>();
  if (items.empty()) {
    items = std::move(more);
    return cost + items.capacity() * sizeof(ValuePtr);
  }
  const std::size_t before = items.capacity();
  items.insert(items.end(), std::make_move_iterator(more.begin()), std::make_move_iterator(more.end()));
  return cost + grown(items, before);
}

std::size_t Value::add_entry(ValuePtr key, ValuePtr value) {
  const std::size_t cost = body_ ? 0 : kBodyBytes;
  auto& entries = held<std::vector<Entry>>();
  const std::size_t before = entries.capacity();
  entries.emplace_back(std::move(key), std::move(value));
  return cost + grown(entries, before);
}

std::size_t Value::add_entries(std::vector<ValuePtr> keys_and_values) {
  if (keys_and_values.empty()) return 0;
  const std::size_t cost = body_ ? 0 : kBodyBytes;
  auto& entries = held<std::vector<Entry>>();
  const std::size_t before = entries.capacity();
  entries.reserve(entries.size() + keys_and_values.size() / 2);
  for (std::size_t i = 0; i + 1 < keys_and_values.size(); i += 2) {
    entries.emplace_back(std::move(keys_and_values[i]), std::move(keys_and_values[i + 1]));
  }
  return cost + grown(entries, before);
}

namespace {
// Immutable scalars Python shares too: None, the bools, small ints, the empty tuple.
// A file of a million BININT1 0 costs a million pointers, not a million Values.
constexpr std::int64_t kSmallIntMin = -5;
constexpr std::int64_t kSmallIntMax = 256;
}  // namespace

ValuePtr Value::none() {
  static const ValuePtr shared = std::make_shared<Value>();
  return shared;
}

ValuePtr Value::of_bool(bool b) {
  static const ValuePtr shared[2] = {[] {
                                       auto v = std::make_shared<Value>();
                                       v->kind_ = ValueKind::boolean;
                                       return v;
                                     }(),
                                     [] {
                                       auto v = std::make_shared<Value>();
                                       v->kind_ = ValueKind::boolean;
                                       v->flag_ = true;
                                       return v;
                                     }()};
  return shared[b ? 1 : 0];
}

ValuePtr Value::of_int(std::int64_t i) {
  auto make = [](std::int64_t n) {
    auto v = std::make_shared<Value>();
    v->kind_ = ValueKind::integer;
    v->scalar_.integer = n;
    return v;
  };
  if (i >= kSmallIntMin && i <= kSmallIntMax) {
    static const std::vector<ValuePtr> small = [&] {
      std::vector<ValuePtr> all;
      for (std::int64_t n = kSmallIntMin; n <= kSmallIntMax; ++n) all.push_back(make(n));
      return all;
    }();
    return small[static_cast<std::size_t>(i - kSmallIntMin)];
  }
  return make(i);
}

ValuePtr Value::of_uint(std::uint64_t u) {
  if (u <= static_cast<std::uint64_t>(INT64_MAX)) return of_int(static_cast<std::int64_t>(u));
  auto v = std::make_shared<Value>();
  v->kind_ = ValueKind::integer;
  v->flag_ = true;
  v->scalar_.integer = static_cast<std::int64_t>(u);
  return v;
}

ValuePtr Value::of_double(double d) {
  auto v = std::make_shared<Value>();
  v->kind_ = ValueKind::floating;
  v->scalar_.floating = d;
  return v;
}

ValuePtr Value::of_string(std::string s) {
  auto v = std::make_shared<Value>();
  v->kind_ = ValueKind::string;
  if (!s.empty()) v->held<std::string>() = std::move(s);
  return v;
}
ValuePtr Value::of_bytes(std::string s) {
  auto v = of_string(std::move(s));
  v->kind_ = ValueKind::bytes;
  return v;
}
ValuePtr Value::global(std::string qualified_name) {
  auto v = of_string(std::move(qualified_name));
  v->kind_ = ValueKind::global;
  return v;
}
ValuePtr Value::of_dtype(std::string torch_name) {
  auto v = of_string(std::move(torch_name));
  v->kind_ = ValueKind::dtype;
  return v;
}

ValuePtr Value::list() {
  auto v = std::make_shared<Value>();
  v->kind_ = ValueKind::list;
  return v;
}

ValuePtr Value::tuple(std::vector<ValuePtr> items) {
  if (items.empty()) {
    static const ValuePtr empty = [] {
      auto v = std::make_shared<Value>();
      v->kind_ = ValueKind::tuple;
      v->sealed_ = true;
      return v;
    }();
    return empty;
  }
  auto v = std::make_shared<Value>();
  v->kind_ = ValueKind::tuple;
  v->held<std::vector<ValuePtr>>() = std::move(items);
  return v;
}

ValuePtr Value::dict(bool ordered) {
  auto v = std::make_shared<Value>();
  v->kind_ = ValueKind::dict;
  v->flag_ = ordered;
  return v;
}

ValuePtr Value::of_tensor(std::shared_ptr<TensorInfo> tensor) {
  auto v = std::make_shared<Value>();
  v->kind_ = ValueKind::tensor;
  v->held<std::shared_ptr<TensorInfo>>() = std::move(tensor);
  return v;
}

ValuePtr Value::of_storage(std::shared_ptr<StorageInfo> storage) {
  auto v = std::make_shared<Value>();
  v->kind_ = ValueKind::storage;
  v->held<std::shared_ptr<StorageInfo>>() = std::move(storage);
  return v;
}

namespace {

// A scalar key's identity as Python's dict compares it: 1, 1.0 and True are one key.
struct ScalarKey {
  int cls = 0;  // 0 None, 1 number, 2 str, 3 bytes
  double number = 0;
  std::int64_t integer = 0;
  bool integral = false;
  bool is_unsigned = false;
  const std::string* text = nullptr;

  bool operator==(const ScalarKey& o) const {
    if (cls != o.cls) return false;
    if (cls == 0) return true;
    if (cls == 1) {
      if (integral && o.integral) return integer == o.integer && is_unsigned == o.is_unsigned;
      if (integral != o.integral) return false;  // an int equals only a whole float, which is integral
      return number == o.number;
    }
    return *text == *o.text;
  }
};

struct ScalarKeyHash {
  std::size_t operator()(const ScalarKey& k) const {
    switch (k.cls) {
      case 0: return 0;
      case 1: return std::hash<double>{}(k.number);
      default: return std::hash<std::string>{}(*k.text) ^ static_cast<std::size_t>(k.cls);
    }
  }
};

std::optional<ScalarKey> scalar_key(const Value& key) {
  ScalarKey k;
  switch (key.kind()) {
    case ValueKind::none: k.cls = 0; return k;
    case ValueKind::boolean:
      k.cls = 1, k.integral = true, k.integer = key.boolean() ? 1 : 0, k.number = static_cast<double>(k.integer);
      return k;
    case ValueKind::integer:
      k.cls = 1, k.integral = true, k.integer = key.integer(), k.is_unsigned = key.is_unsigned();
      k.number = key.is_unsigned() ? static_cast<double>(static_cast<std::uint64_t>(key.integer()))
                                   : static_cast<double>(key.integer());
      return k;
    case ValueKind::floating: {
      k.cls = 1, k.number = key.floating();
      // NaN equals nothing, not even another NaN: only the same object is the same key
      // (distinct_entries finds that by identity).
      if (std::isnan(k.number)) return std::nullopt;
      // 2.0 == 2 in Python: a whole float in the int64 or uint64 range is that int key.
      if (std::isfinite(k.number) && std::trunc(k.number) == k.number) {
        if (k.number >= -9223372036854775808.0 && k.number < 9223372036854775808.0) {
          k.integral = true, k.integer = static_cast<std::int64_t>(k.number);
        } else if (k.number >= 9223372036854775808.0 && k.number < 18446744073709551616.0) {
          k.integral = true, k.is_unsigned = true;
          k.integer = static_cast<std::int64_t>(static_cast<std::uint64_t>(k.number));
        }
      }
      return k;
    }
    case ValueKind::string: k.cls = 2, k.text = &key.text(); return k;
    case ValueKind::bytes: k.cls = 3, k.text = &key.text(); return k;
    default: return std::nullopt;
  }
}

}  // namespace

std::vector<Entry> distinct_entries(const Value& dict) {
  const auto& entries = dict.entries();
  std::vector<Entry> out;
  out.reserve(entries.size());
  // Same object: one pointer lookup, no hashing of what it holds.
  std::unordered_map<const Value*, std::size_t> by_object;
  std::unordered_map<ScalarKey, std::size_t, ScalarKeyHash> by_content;
  for (const auto& [key, value] : entries) {
    auto [it, fresh] = by_object.emplace(key.get(), out.size());
    if (!fresh) {
      out[it->second].second = value;
      continue;
    }
    if (auto k = scalar_key(*key)) {
      auto [found, new_content] = by_content.emplace(*k, out.size());
      if (!new_content) {
        it->second = found->second;
        out[found->second].second = value;
        continue;
      }
    }
    out.emplace_back(key, value);
  }
  return out;
}

}  // namespace ckpt::format
