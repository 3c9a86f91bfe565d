#include "torch/snapshot.hpp"

#include <ATen/core/Dict.h>
#include <ATen/core/List.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <c10/core/CPUAllocator.h>
#include <c10/core/GradMode.h>

#include <cstring>

namespace ckpt::torch_layer {

State StagingPool::copy(const State& state) {
  taken_.assign(buffers_.size(), false);
  Copies copies;
  State result;
  for (const auto& [key, value] : state) result.set(key, copy_value(value, copies));
  // Free buffers this copy did not take: a state whose storages changed size leaves none
  // behind. Buffers still in a snapshot in flight stay, to be reused once it is written.
  std::vector<c10::Storage> kept;
  for (std::size_t i = 0; i < buffers_.size(); ++i) {
    if (taken_[i] || buffers_[i].use_count() > 1) kept.push_back(std::move(buffers_[i]));
  }
  buffers_ = std::move(kept);
  return result;
}

std::size_t StagingPool::held_bytes() const {
  std::size_t bytes = 0;
  for (const auto& buffer : buffers_) bytes += buffer.nbytes();
  return bytes;
}

c10::IValue StagingPool::copy_value(const c10::IValue& value, Copies& copies) {
  if (value.isTensor()) return copy_tensor(value.toTensor(), copies);
  if (value.isGenericDict()) {
    const auto dict = value.toGenericDict();
    c10::impl::GenericDict out(dict.keyType(), dict.valueType());
    out.reserve(dict.size());
    for (const auto& entry : dict) out.insert(entry.key(), copy_value(entry.value(), copies));
    return out;
  }
  if (value.isList()) {
    const auto list = value.toList();
    c10::impl::GenericList out(list.elementType());
    out.reserve(list.size());
    for (const c10::IValue element : list) out.push_back(copy_value(element, copies));
    return out;
  }
  if (value.isTuple()) {
    std::vector<c10::IValue> elements;
    for (const auto& element : value.toTupleRef().elements()) elements.push_back(copy_value(element, copies));
    return c10::ivalue::Tuple::create(std::move(elements));
  }
  return value;  // ints, floats, bools, strings, None, devices: immutable
}

at::Tensor StagingPool::copy_tensor(const at::Tensor& tensor, Copies& copies) {
  if (!tensor.defined() || tensor.is_meta()) return tensor;  // see snapshot.hpp
  c10::AutoGradMode no_grad(false);
  if (!tensor.is_cpu()) {
    at::Tensor copied = tensor.cpu();  // as the encoder would, but now: the save may run on another thread
    if (tensor.requires_grad()) copied.requires_grad_(true);
    return copied;
  }
  if (tensor.layout() != c10::kStrided || tensor.is_quantized() || tensor.is_conj() || tensor.is_neg()) {
    // Sparse (indices and values cloned); a conjugate or negative view materialized as the
    // encoder would; a quantized tensor kept for the encoder to refuse by name.
    if (tensor.is_quantized()) return tensor;
    at::Tensor copied = tensor.is_conj() || tensor.is_neg() ? tensor.resolve_conj().resolve_neg().clone() : tensor.clone();
    if (tensor.requires_grad()) copied.requires_grad_(true);
    return copied;
  }
  const c10::Storage& source = tensor.storage();
  auto& copy = copies[source.unsafeGetStorageImpl()];
  if (!copy) {
    copy = take_buffer(source.nbytes());
    if (source.nbytes() > 0) std::memcpy(copy.data(), source.data(), source.nbytes());
  }
  at::Tensor copied = at::empty({0}, at::TensorOptions().dtype(tensor.scalar_type()));
  copied.set_(copy, tensor.storage_offset(), tensor.sizes(), tensor.strides());
  if (tensor.requires_grad()) copied.requires_grad_(true);
  return copied;
}

c10::Storage StagingPool::take_buffer(std::size_t nbytes) {
  for (std::size_t i = 0; i < buffers_.size(); ++i) {
    // use_count 1: only the pool holds it; the snapshot that used it is gone.
    if (!taken_[i] && buffers_[i].nbytes() == nbytes && buffers_[i].use_count() == 1) {
      taken_[i] = true;
      return buffers_[i];
    }
  }
  buffers_.emplace_back(c10::Storage::use_byte_size_t(), nbytes, c10::GetCPUAllocator(), /*resizable=*/false);
  taken_.push_back(true);
  return buffers_.back();
}

}  // namespace ckpt::torch_layer
