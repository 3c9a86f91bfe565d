#include "ckpt/state.hpp"

#include <fmt/format.h>

#include "ckpt/errors.hpp"

namespace ckpt {

namespace {

std::string joined_keys(const State& state) {
  std::string keys;
  for (const auto& [key, value] : state) keys += (keys.empty() ? "" : ", ") + key;
  return keys.empty() ? "none" : keys;
}

[[noreturn]] void throw_wrong_type(std::string_view key, const c10::IValue& value, std::string_view wanted) {
  throw StateError(ErrorCode::type,
                   fmt::format("State: key '{}' holds {}, not {}", key, state_detail::described(value), wanted));
}

// `value` if `(value.*is)()`, else StateError (ErrorCode::type) naming `key` and what was `wanted`.
const c10::IValue& of_type(std::string_view key, const c10::IValue& value, bool (c10::IValue::*is)() const,
                           std::string_view wanted) {
  if (!(value.*is)()) throw_wrong_type(key, value, wanted);
  return value;
}

}  // namespace

std::string state_detail::described(const c10::IValue& value) {
  if (value.isNone()) return "None";
  if (value.isInt()) return "an int";
  if (value.isDouble()) return "a float";
  if (value.isBool()) return "a bool";
  if (value.isString()) return "a string";
  if (value.isTensor()) return "a Tensor";
  if (value.isGenericDict()) return "a dict";
  if (value.isList()) return "a list";
  if (value.isTuple()) return "a tuple";
  const std::string kind = value.tagKind();
  const bool vowel = !kind.empty() && std::string_view("AEIOUaeiou").find(kind[0]) != std::string_view::npos;
  return (vowel ? "an " : "a ") + kind;
}

State::State(std::initializer_list<Entry> entries) {
  for (const auto& [key, value] : entries) set(key, value);
}

State& State::set(std::string key, c10::IValue value) {
  auto found = positions_.find(key);
  if (found != positions_.end()) {
    entries_[found->second].second = std::move(value);
    return *this;
  }
  positions_.emplace(key, entries_.size());
  entries_.emplace_back(std::move(key), std::move(value));
  return *this;
}

State& State::set(std::string key, const State& nested) { return set(std::move(key), nested.to_ivalue()); }

bool State::contains(std::string_view key) const { return positions_.count(std::string(key)) > 0; }

bool State::erase(std::string_view key) {
  auto found = positions_.find(std::string(key));
  if (found == positions_.end()) return false;
  entries_.erase(entries_.begin() + static_cast<std::ptrdiff_t>(found->second));
  positions_.clear();
  for (std::size_t i = 0; i < entries_.size(); ++i) positions_.emplace(entries_[i].first, i);
  return true;
}

const c10::IValue& State::at(std::string_view key) const {
  auto found = positions_.find(std::string(key));
  if (found == positions_.end()) {
    throw StateError(ErrorCode::key, fmt::format("State: no key '{}' (keys: {})", key, joined_keys(*this)));
  }
  return entries_[found->second].second;
}

std::vector<std::string> State::keys() const {
  std::vector<std::string> keys;
  keys.reserve(entries_.size());
  for (const auto& entry : entries_) keys.push_back(entry.first);
  return keys;
}

std::int64_t State::get_int(std::string_view key) const {
  return of_type(key, at(key), &c10::IValue::isInt, "an int").toInt();
}

double State::get_double(std::string_view key) const {
  const auto& value = at(key);
  if (value.isDouble()) return value.toDouble();
  if (value.isInt()) return static_cast<double>(value.toInt());
  throw_wrong_type(key, value, "a float");
}

bool State::get_bool(std::string_view key) const {
  return of_type(key, at(key), &c10::IValue::isBool, "a bool").toBool();
}

std::string State::get_string(std::string_view key) const {
  return of_type(key, at(key), &c10::IValue::isString, "a string").toStringRef();
}

at::Tensor State::get_tensor(std::string_view key) const {
  return of_type(key, at(key), &c10::IValue::isTensor, "a Tensor").toTensor();
}

State State::get_state(std::string_view key) const {
  const auto& value = at(key);
  if (!value.isGenericDict()) throw_wrong_type(key, value, "a dict (State)");
  try {
    return from_generic_dict(value.toGenericDict());
  } catch (const StateError& error) {
    throw StateError(ErrorCode::type, fmt::format("State: key '{}': {}", key, error.what()));
  }
}

void State::throw_out_of_range(std::string_view key, std::int64_t value, std::string_view type,
                               std::string_view range) {
  throw StateError(ErrorCode::type,
                   fmt::format("State: key '{}' holds the int {}, out of range for {} ({})", key, value, type, range));
}

void State::throw_out_of_range(std::string_view key, double value, std::string_view type) {
  throw StateError(ErrorCode::type, fmt::format("State: key '{}' holds the float {}, out of range for {}", key,
                                                value, type));
}

c10::impl::GenericDict State::to_generic_dict() const {
  c10::impl::GenericDict dict(c10::StringType::get(), c10::AnyType::get());
  dict.reserve(entries_.size());
  for (const auto& [key, value] : entries_) dict.insert(key, value);
  return dict;
}

State State::from_generic_dict(const c10::impl::GenericDict& dict) {
  State state;
  for (const auto& entry : dict) {
    if (!entry.key().isString()) {
      throw StateError(ErrorCode::type,
                       fmt::format("State: dict has {} key; State keys are strings", state_detail::described(entry.key())));
    }
    state.set(entry.key().toStringRef(), entry.value());
  }
  return state;
}

}  // namespace ckpt
