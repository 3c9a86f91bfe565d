// Whether a State is unchanged since an earlier save, told without reading its tensor
// bytes: the manager's hint to the store (SaveRequest::likely_duplicate) that a save's
// payload is the previous save's, as in the guide's loop, where the best model is the
// state the epoch checkpoint just saved.
//
// A fingerprint records where every tensor's bytes are (its storage, kept from reuse by
// a weak reference, and data pointer), its view of them (offset, shape, strides), dtype,
// device and version counter (which views and detach() share, bumped by every in-place
// ATen operation: optimizer.step(), copy_, add_), and every other value (int, float, bool, string, None, device) itself,
// through nested dicts, lists and tuples. Anything else (an object, an inference tensor,
// which has no version counter) makes it match nothing.
//
// A false "unchanged" is possible (bytes written through a raw data pointer bump no
// version) and harmless: the store compares the payload's hash before it links, so it
// costs one hashing pass. A false "changed" costs nothing but the link.
#pragma once

#include <c10/core/StorageImpl.h>
#include <c10/util/intrusive_ptr.h>

#include <string>
#include <vector>

#include "ckpt/state.hpp"

namespace ckpt::torch_layer {

class StateFingerprint {
 public:
  explicit StateFingerprint(const State& state);

  // Whether `other` was taken of a state that is, as far as this can tell, this one
  // unchanged. False when either holds something it cannot fingerprint.
  bool matches(const StateFingerprint& other) const;

 private:
  void add(const c10::IValue& value);
  void add_tensor(const at::Tensor& tensor);
  template <typename T>
  void add_raw(const T& value);

  std::string key_;  // the values and identities, in the state's order
  bool comparable_ = true;
  // Keep the storages' addresses from being reused by other storages while this
  // fingerprint may be compared, without keeping their bytes alive.
  std::vector<c10::weak_intrusive_ptr<c10::StorageImpl>> storages_;
};

}  // namespace ckpt::torch_layer
