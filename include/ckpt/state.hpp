// ckpt::State: what a checkpoint holds.
//
// An insertion-ordered dictionary from string keys to torch IValues: tensors, int64,
// double, bool, string, None, nested States (stored as dicts), lists and tuples. It is the
// C++ form of the dict a Python training loop passes to torch.save, and converts to and
// from c10::impl::GenericDict for code that already has one.
//
// Not thread-safe for concurrent mutation; copies share tensor storage (as IValues do).
#pragma once

#include <ATen/core/Dict.h>
#include <ATen/core/ivalue.h>

#include <cstdint>
#include <initializer_list>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

namespace ckpt {

class State {
 public:
  using Entry = std::pair<std::string, c10::IValue>;

  State() = default;
  State(std::initializer_list<Entry> entries);

  // Sets `key`; an existing key keeps its position (as a Python dict does).
  State& set(std::string key, c10::IValue value);
  State& set(std::string key, const State& nested);
  bool contains(std::string_view key) const;
  // Removes `key`; returns whether it was there.
  bool erase(std::string_view key);

  // The value under `key`. Throws StateError naming the key (and the keys there are)
  // when it is missing.
  const c10::IValue& at(std::string_view key) const;

  // The value under `key` as T, for T in int64_t, double, bool, std::string,
  // at::Tensor (torch::Tensor) and State. Throws StateError naming the key and the
  // actual type when the value is another type. double also accepts an int value
  // (a metric saved as 0 from Python is still a number).
  template <typename T>
  T get(std::string_view key) const;

  std::size_t size() const noexcept { return entries_.size(); }
  bool empty() const noexcept { return entries_.empty(); }
  std::vector<std::string> keys() const;

  // Iteration in insertion order over (key, IValue) pairs.
  std::vector<Entry>::const_iterator begin() const noexcept { return entries_.begin(); }
  std::vector<Entry>::const_iterator end() const noexcept { return entries_.end(); }

  // A Dict(str, Any) with the same entries in the same order; nested States are
  // already dicts. Tensors are shared, not copied.
  c10::impl::GenericDict to_generic_dict() const;
  c10::IValue to_ivalue() const { return c10::IValue(to_generic_dict()); }
  // Lets a State nest inside another's initializer: State{{"model", model_state}}.
  operator c10::IValue() const { return to_ivalue(); }
  // Throws StateError if a key is not a string.
  static State from_generic_dict(const c10::impl::GenericDict& dict);

 private:
  std::vector<Entry> entries_;
  std::unordered_map<std::string, std::size_t> positions_;
};

template <>
std::int64_t State::get<std::int64_t>(std::string_view key) const;
template <>
double State::get<double>(std::string_view key) const;
template <>
bool State::get<bool>(std::string_view key) const;
template <>
std::string State::get<std::string>(std::string_view key) const;
template <>
at::Tensor State::get<at::Tensor>(std::string_view key) const;
template <>
State State::get<State>(std::string_view key) const;

}  // namespace ckpt
