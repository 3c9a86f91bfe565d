#include "torch/state_fingerprint.hpp"

#include <ATen/core/Tensor.h>
#include <ATen/core/ivalue.h>

#include <cstring>

namespace ckpt::torch_layer {

namespace {

// Tags keep values of different types (and the ends of containers) from colliding.
enum class Tag : char { key, tensor, int_value, double_value, bool_value, string, none, device, dict, list, tuple, end };

}  // namespace

StateFingerprint::StateFingerprint(const State& state) {
  for (const auto& [key, value] : state) {
    add_raw(Tag::key);
    add_raw(key.size());
    key_.append(key);
    add(value);
  }
}

bool StateFingerprint::matches(const StateFingerprint& other) const {
  return comparable_ && other.comparable_ && key_ == other.key_;
}

template <typename T>
void StateFingerprint::add_raw(const T& value) {
  char bytes[sizeof(T)];
  std::memcpy(bytes, &value, sizeof(T));
  key_.append(bytes, sizeof(T));
}

void StateFingerprint::add(const c10::IValue& value) {
  if (!comparable_) return;
  if (value.isTensor()) {
    add_tensor(value.toTensor());
  } else if (value.isInt()) {
    add_raw(Tag::int_value);
    add_raw(value.toInt());
  } else if (value.isDouble()) {
    add_raw(Tag::double_value);
    add_raw(value.toDouble());  // the bit pattern: -0.0 and NaNs differ as they would on disk
  } else if (value.isBool()) {
    add_raw(Tag::bool_value);
    add_raw(value.toBool());
  } else if (value.isString()) {
    const std::string& text = value.toStringRef();
    add_raw(Tag::string);
    add_raw(text.size());
    key_.append(text);
  } else if (value.isNone()) {
    add_raw(Tag::none);
  } else if (value.isDevice()) {
    add_raw(Tag::device);
    const std::string text = value.toDevice().str();
    add_raw(text.size());
    key_.append(text);
  } else if (value.isGenericDict()) {
    add_raw(Tag::dict);
    for (const auto& entry : value.toGenericDict()) {
      add(entry.key());
      add(entry.value());
    }
    add_raw(Tag::end);
  } else if (value.isList()) {
    add_raw(Tag::list);
    for (const auto& element : value.toListRef()) add(element);
    add_raw(Tag::end);
  } else if (value.isTuple()) {
    add_raw(Tag::tuple);
    for (const auto& element : value.toTupleRef().elements()) add(element);
    add_raw(Tag::end);
  } else {
    comparable_ = false;  // an object, a future, ...: nothing here says whether it changed
  }
}

void StateFingerprint::add_tensor(const at::Tensor& tensor) {
  add_raw(Tag::tensor);
  if (!tensor.defined()) {
    add_raw(std::uintptr_t{0});
    return;
  }
  if (tensor.is_inference() || !tensor.has_storage()) {
    comparable_ = false;  // no version counter, or no storage to identify
    return;
  }
  add_raw(reinterpret_cast<std::uintptr_t>(tensor.storage().unsafeGetStorageImpl()));
  add_raw(reinterpret_cast<std::uintptr_t>(tensor.storage().data()));
  add_raw(tensor.unsafeGetTensorImpl()->version_counter().current_version());
  add_raw(tensor.storage_offset());
  add_raw(static_cast<std::int64_t>(tensor.dim()));
  for (std::int64_t size : tensor.sizes()) add_raw(size);
  for (std::int64_t stride : tensor.strides()) add_raw(stride);
  add_raw(static_cast<int>(tensor.scalar_type()));
  add_raw(static_cast<int>(tensor.device().type()));
  add_raw(static_cast<int>(tensor.device().index()));
  add_raw(tensor.requires_grad());
  storages_.push_back(tensor.storage().getWeakStorageImpl());
}

}  // namespace ckpt::torch_layer
