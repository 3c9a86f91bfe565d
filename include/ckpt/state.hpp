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

#include <cmath>
#include <cstdint>
#include <initializer_list>
#include <limits>
#include <string>
#include <string_view>
#include <type_traits>
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

  // The value under `key` as T. T is one of
  //   int64_t, double, bool, std::string, at::Tensor (torch::Tensor), State,
  // or any other integer or floating type (Python has one int and one float; C++ code
  // names many), converted:
  //   - an integer type (int, long, int32_t, size_t, uint64_t, ...) from an int entry,
  //     range-checked: a value the type cannot hold (negative into an unsigned type)
  //     throws StateError naming the key, the value and the type;
  //   - a floating type (double, float, long double) from a float or an int entry (a
  //     metric saved as 0 from Python is still a number); a finite value too large for
  //     float throws.
  // Throws StateError naming the key (and the keys there are) when it is missing, or the
  // key and the actual type when the value is another type. Any other T (char, a
  // container, a reference) is a compile-time error; read those through at(key), e.g.
  // at(key).toIntVector() for a list of ints.
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
  // The non-template readers get<T> dispatches to (src/torch/state.cpp).
  std::int64_t get_int(std::string_view key) const;
  double get_double(std::string_view key) const;
  bool get_bool(std::string_view key) const;
  std::string get_string(std::string_view key) const;
  at::Tensor get_tensor(std::string_view key) const;
  State get_state(std::string_view key) const;
  [[noreturn]] static void throw_out_of_range(std::string_view key, std::int64_t value, std::string_view type,
                                              std::string_view range);
  [[noreturn]] static void throw_out_of_range(std::string_view key, double value, std::string_view type);

  std::vector<Entry> entries_;
  std::unordered_map<std::string, std::size_t> positions_;
};

namespace state_detail {

// What a value is, with its article, in the words a Python user knows, for error
// messages: "an int", "a float", "a Tensor", "a dict", "a list", "None".
std::string described(const c10::IValue& value);

template <typename T>
inline constexpr bool dependent_false = false;

// Character types are integral, but get<char> most likely means a character, not a number.
template <typename T>
inline constexpr bool is_character = std::is_same_v<T, char> || std::is_same_v<T, wchar_t> ||
                                     std::is_same_v<T, char16_t> || std::is_same_v<T, char32_t>;

// "int32_t", "uint64_t", ...: the fixed-width name of an integer type of that size and
// signedness (int and int32_t, long and int64_t are the same thing to a range check).
template <typename T>
constexpr const char* integer_name() {
  constexpr bool s = std::is_signed_v<T>;
  switch (sizeof(T)) {
    case 1: return s ? "int8_t" : "uint8_t";
    case 2: return s ? "int16_t" : "uint16_t";
    case 4: return s ? "int32_t" : "uint32_t";
    case 8: return s ? "int64_t" : "uint64_t";
    default: return s ? "a signed integer type" : "an unsigned integer type";
  }
}

}  // namespace state_detail

template <typename T>
T State::get(std::string_view key) const {
  using U = std::remove_cv_t<T>;
  if constexpr (std::is_same_v<U, std::int64_t>) {
    return get_int(key);
  } else if constexpr (std::is_same_v<U, double>) {
    return get_double(key);
  } else if constexpr (std::is_same_v<U, bool>) {
    return get_bool(key);
  } else if constexpr (std::is_same_v<U, std::string>) {
    return get_string(key);
  } else if constexpr (std::is_same_v<U, at::Tensor>) {
    return get_tensor(key);
  } else if constexpr (std::is_same_v<U, State>) {
    return get_state(key);
  } else if constexpr (std::is_integral_v<U> && !state_detail::is_character<U>) {
    const std::int64_t value = get_int(key);
    using Limits = std::numeric_limits<U>;
    bool fits;
    if constexpr (std::is_signed_v<U>) {
      fits = value >= static_cast<std::int64_t>(Limits::min()) && value <= static_cast<std::int64_t>(Limits::max());
    } else {
      fits = value >= 0 && static_cast<std::uint64_t>(value) <= static_cast<std::uint64_t>(Limits::max());
    }
    if (!fits) {
      throw_out_of_range(key, value, state_detail::integer_name<U>(),
                         std::to_string(Limits::min()) + " to " + std::to_string(Limits::max()));
    }
    return static_cast<T>(value);
  } else if constexpr (std::is_floating_point_v<U>) {
    const double value = get_double(key);
    if constexpr (sizeof(U) < sizeof(double)) {
      if (std::isfinite(value) && std::fabs(value) > static_cast<double>(std::numeric_limits<U>::max())) {
        throw_out_of_range(key, value, "float");
      }
    }
    return static_cast<T>(value);
  } else {
    static_assert(state_detail::dependent_false<T>,
                  "ckpt::State::get<T>: unsupported T. Supported types: int64_t, double, bool, std::string, "
                  "at::Tensor (torch::Tensor), ckpt::State, and any other integer type (int, long, int32_t, "
                  "size_t, uint64_t, ...: range-checked) or floating type (float, long double). "
                  "For other values (lists, tuples, None) use at(key), e.g. at(key).toIntVector().");
  }
}

}  // namespace ckpt
