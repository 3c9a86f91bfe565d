// inspect_payload / diff_payloads over the format layer: the structure from the pickle,
// tensor elements decoded from storage bytes by dtype (float16 and bfloat16 widened by
// hand), so nothing here needs libtorch.
//
// A payload is untrusted: its pickle can share one sub-graph under many paths (memo
// references), repeat a dict key, and describe views that repeat their storage's
// elements (stride 0, overlapping strides). So:
//   - everything built (each path, each entry with its strings and vectors, the texts,
//     the de-duplicated dict entries, each difference) is charged to the payload's one
//     MemoryBudget (the one read_layout charged the graph to), and there are at most
//     kMaxEntries entries;
//   - a str longer than kShownCharacters is shown truncated (its text computed once per
//     string object), a non-str key's repr is bounded, dicts are walked as Python sees
//     them (format::distinct_entries, once per dict object);
//   - statistics and diffs walk the stored elements: stride-0 dimensions are collapsed
//     (they repeat the rest uniformly), contiguous dimensions merged, and what remains
//     is bounded by one element-visit budget per file (kVisitFactor x the file's stored
//     elements + kVisitSlack); a view beyond it gets a note instead of statistics;
//   - sizes are multiplied with saturating arithmetic: a view's byte count never wraps.
#include "ckpt/inspect.hpp"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
#include <fmt/format.h>
#include <limits>
#include <map>
#include <unordered_map>

#include "ckpt/errors.hpp"
#include "format/checkpoint_format.hpp"
#include "format/inspect_source.hpp"
#include "format/printable.hpp"
#include "format/zip_reader.hpp"
#include "io/file_source.hpp"

namespace ckpt {

namespace {

using format::DType;
using format::Entry;
using format::StorageInfo;
using format::TensorInfo;
using format::TensorLayout;
using format::Value;
using format::ValueKind;
using format::ValuePtr;

constexpr const char* kWhat = "inspecting";
// A shared sub-object appears under each path that reaches it, so a hostile pickle could
// expand exponentially: the number of entries is capped (and each is charged).
constexpr std::size_t kMaxEntries = 1'000'000;
// A str value longer than this (in characters) shows its first ones and its length.
constexpr std::size_t kShownCharacters = 64;
// A non-str dict key's repr in a path is cut after this many bytes.
constexpr std::size_t kKeyReprMax = 256;
// Element visits (statistics, diffs) per file: kVisitFactor x its stored elements + slack.
constexpr std::uint64_t kVisitFactor = 4;
constexpr std::uint64_t kVisitSlack = 1ull << 20;
constexpr std::uint64_t kMax = std::numeric_limits<std::uint64_t>::max();

std::uint64_t sat_mul(std::uint64_t a, std::uint64_t b) { return a != 0 && b > kMax / a ? kMax : a * b; }
std::uint64_t sat_add(std::uint64_t a, std::uint64_t b) { return b > kMax - a ? kMax : a + b; }

double half_to_double(std::uint16_t h) {
  const int exponent = (h >> 10) & 0x1f;
  const int mantissa = h & 0x3ff;
  const double sign = (h & 0x8000) ? -1.0 : 1.0;
  if (exponent == 0) return sign * std::ldexp(mantissa, -24);
  if (exponent == 31) return mantissa ? NAN : sign * INFINITY;
  return sign * std::ldexp(mantissa + 1024, exponent - 25);
}

double bfloat16_to_double(std::uint16_t b) {
  std::uint32_t bits = std::uint32_t(b) << 16;
  float f;
  std::memcpy(&f, &bits, sizeof f);
  return f;
}

// Element i of a storage as a double (complex: the real part).
double element(const char* data, DType dtype, std::uint64_t i) {
  const char* p = data + i * format::element_size(dtype);
  auto load = [&](auto sample) {
    decltype(sample) v;
    std::memcpy(&v, p, sizeof v);
    return static_cast<double>(v);
  };
  switch (dtype) {
    case DType::float16: return half_to_double(static_cast<std::uint16_t>(load(std::uint16_t{})));
    case DType::bfloat16: return bfloat16_to_double(static_cast<std::uint16_t>(load(std::uint16_t{})));
    case DType::float32: return load(float{});
    case DType::float64: return load(double{});
    case DType::int8: return load(std::int8_t{});
    case DType::uint8: return load(std::uint8_t{});
    case DType::int16: return load(std::int16_t{});
    case DType::int32: return load(std::int32_t{});
    case DType::int64: return load(std::int64_t{});
    case DType::bool_: return load(std::uint8_t{}) != 0 ? 1.0 : 0.0;
    case DType::complex64: return load(float{});
    case DType::complex128: return load(double{});
  }
  return 0;
}

// ---------------------------------------------------------------- sizes

// Elements of a view (0 when a dimension is 0 or negative), saturating.
std::uint64_t view_numel(const std::vector<std::int64_t>& sizes) {
  for (auto size : sizes) {
    if (size <= 0) return 0;
  }
  std::uint64_t numel = 1;
  for (auto size : sizes) numel = sat_mul(numel, static_cast<std::uint64_t>(size));
  return numel;
}

// A tensor's dtype, without trusting that a hand-built TensorInfo is complete.
std::optional<DType> dtype_of(const TensorInfo& t, int depth = 0) {
  switch (t.layout) {
    case TensorLayout::strided: return t.storage ? std::optional<DType>(t.storage->dtype) : std::nullopt;
    case TensorLayout::meta: return t.meta_dtype;
    case TensorLayout::sparse_coo: return t.values && depth < 2 ? dtype_of(*t.values, depth + 1) : std::nullopt;
  }
  return std::nullopt;
}

// What a tensor's data takes: a strided view's numel x element size (not what its storage
// holds), 0 for meta, the indices' and values' views for sparse COO. Saturating.
std::uint64_t view_bytes(const TensorInfo& t, int depth = 0) {
  switch (t.layout) {
    case TensorLayout::strided: {
      auto dtype = dtype_of(t);
      return dtype ? sat_mul(view_numel(t.sizes), format::element_size(*dtype)) : 0;
    }
    case TensorLayout::meta: return 0;
    case TensorLayout::sparse_coo:
      if (depth >= 2) return 0;
      return sat_add(t.indices ? view_bytes(*t.indices, depth + 1) : 0, t.values ? view_bytes(*t.values, depth + 1) : 0);
  }
  return 0;
}

const char* layout_name(TensorLayout layout) {
  switch (layout) {
    case TensorLayout::strided: return "strided";
    case TensorLayout::meta: return "meta";
    case TensorLayout::sparse_coo: return "sparse_coo";
  }
  return "unknown";
}

// ---------------------------------------------------------------- texts

// Python's repr of a float: 1.0, 0.1, 1e+16, inf, nan.
std::string float_repr(double v) {
  std::string text = fmt::format("{}", v);
  if (std::isfinite(v) && text.find_first_of(".e") == std::string::npos) text += ".0";
  return text;
}

std::string int_text(const Value& v) {
  return v.is_unsigned() ? std::to_string(static_cast<std::uint64_t>(v.integer())) : std::to_string(v.integer());
}

// 'text', or for more than kShownCharacters characters (UTF-8 sequences; a byte that
// is not part of one counts as one) 'the first ones'… (N characters).
std::string string_text(const std::string& text) {
  if (text.size() <= kShownCharacters) return "'" + text + "'";
  std::uint64_t characters = 0;
  std::size_t cut = text.size();
  for (std::size_t i = 0; i < text.size(); ++i) {
    if ((static_cast<unsigned char>(text[i]) & 0xc0) == 0x80) continue;  // a continuation byte
    if (characters == kShownCharacters) cut = i;
    ++characters;
  }
  if (characters <= kShownCharacters) return "'" + text + "'";
  return fmt::format("'{}'\u2026 ({} characters)", text.substr(0, cut), characters);
}

// A scalar's text (repr-like); "" for containers, tensors and storages.
std::string scalar_text(const Value& value) {
  switch (value.kind()) {
    case ValueKind::none: return "None";
    case ValueKind::boolean: return value.boolean() ? "True" : "False";
    case ValueKind::integer: return int_text(value);
    case ValueKind::floating: return float_repr(value.floating());
    case ValueKind::string: return string_text(value.text());
    case ValueKind::bytes: return fmt::format("<{} bytes>", value.text().size());
    case ValueKind::dtype: return "torch." + value.text();
    case ValueKind::global: return value.text().size() <= kKeyReprMax ? value.text() : value.text().substr(0, kKeyReprMax) + "\u2026";
    default: return {};
  }
}

// Python's repr of a dict key, cut at kKeyReprMax bytes (a tuple key can nest and share
// its items: the walk stops once the text is long enough).
void append_repr(const Value& v, std::string& out, int depth) {
  if (out.size() >= kKeyReprMax || depth > format::kMaxNesting) return;
  auto quoted = [&](const char* open) {
    out += open;
    out.append(v.text(), 0, std::min(v.text().size(), kKeyReprMax - std::min(out.size(), kKeyReprMax)));
    out += '\'';
  };
  switch (v.kind()) {
    case ValueKind::string: quoted("'"); break;
    case ValueKind::bytes: quoted("b'"); break;
    case ValueKind::tuple: {
      const auto& items = v.items();
      out += '(';
      for (std::size_t i = 0; i < items.size() && out.size() < kKeyReprMax; ++i) {
        if (i) out += ", ";
        append_repr(*items[i], out, depth + 1);
      }
      if (items.size() == 1) out += ',';
      out += ')';
      break;
    }
    case ValueKind::none:
    case ValueKind::boolean:
    case ValueKind::integer:
    case ValueKind::floating:
    case ValueKind::dtype:
    case ValueKind::global: out += scalar_text(v); break;
    default: out += fmt::format("<{}>", format::kind_name(v.kind())); break;
  }
}

std::string key_repr(const Value& key) {
  std::string out;
  append_repr(key, out, 0);
  if (out.size() > kKeyReprMax) {
    out.resize(kKeyReprMax);
    out += "\u2026";
  }
  return out;
}

// The entry for one value; `text` gives a scalar's text.
template <typename TextFn>
PayloadEntry describe_with(std::string path, const Value& value, TextFn&& text) {
  PayloadEntry entry;
  entry.path = std::move(path);
  if (value.kind() == ValueKind::tensor) {
    entry.type = "Tensor";
    if (!value.tensor()) return entry;
    const TensorInfo& t = *value.tensor();
    entry.layout = layout_name(t.layout);
    if (auto dtype = dtype_of(t)) entry.dtype = std::string(format::dtype_name(*dtype));
    entry.shape = t.sizes;
    entry.bytes = view_bytes(t);
    entry.requires_grad = t.requires_grad;
    switch (t.layout) {
      case TensorLayout::strided:
        entry.stride = t.strides;
        entry.storage_offset = t.storage_offset;
        if (t.storage) entry.storage = t.storage->key;
        break;
      case TensorLayout::meta:
        entry.stride = t.strides;
        entry.storage_offset = t.storage_offset;
        break;
      case TensorLayout::sparse_coo:
        if (t.values && t.values->storage) entry.storage = t.values->storage->key;
        if (t.values && !t.values->sizes.empty()) entry.nnz = t.values->sizes[0];
        break;
    }
  } else if (value.kind() == ValueKind::storage) {
    entry.type = "Storage";
    if (!value.storage()) return entry;
    const StorageInfo& s = *value.storage();
    entry.dtype = std::string(format::dtype_name(s.dtype));
    entry.storage = s.key;
    entry.shape = {static_cast<std::int64_t>(std::min<std::uint64_t>(s.numel, static_cast<std::uint64_t>(INT64_MAX)))};
    entry.bytes = sat_mul(s.numel, format::element_size(s.dtype));
  } else {
    entry.type = std::string(format::kind_name(value.kind()));
    entry.value = text(value);
  }
  return entry;
}

// What an entry's strings and vectors hold beyond the entry itself and its path (the
// path is charged when it is built, the entry when the vector holding it grows).
std::uint64_t entry_cost(const PayloadEntry& e) {
  return e.type.size() + e.value.size() + e.dtype.size() + e.layout.size() + e.storage.size() + e.stats_note.size() +
         sizeof(std::int64_t) * (e.shape.size() + e.stride.size());
}

std::string shape_text(const std::vector<std::int64_t>& shape) { return fmt::format("[{}]", fmt::join(shape, ", ")); }

// ---------------------------------------------------------------- walking views

// How a view (or two views of the same shape, in lockstep) is walked: dimensions of
// size 1 dropped; those where every side's stride is 0 collapsed into `repeat` (they
// repeat the rest uniformly); neighbours that are contiguous on every side merged.
struct Plan {
  std::vector<std::uint64_t> sizes;  // outer to inner
  std::array<std::vector<std::uint64_t>, 2> strides;
  std::uint64_t repeat = 1;  // logical elements per visit
  std::uint64_t visits = 1;  // the product of `sizes`
};

Plan make_plan(const std::vector<std::int64_t>& sizes, const std::vector<std::int64_t>& a,
               const std::vector<std::int64_t>* b) {
  Plan plan;
  for (std::size_t d = 0; d < sizes.size(); ++d) {
    const auto size = static_cast<std::uint64_t>(sizes[d]);
    if (size == 1) continue;
    const auto sa = static_cast<std::uint64_t>(a[d]);
    const auto sb = b ? static_cast<std::uint64_t>((*b)[d]) : 0;
    if (sa == 0 && sb == 0) {
      plan.repeat = sat_mul(plan.repeat, size);
      continue;
    }
    if (!plan.sizes.empty() && plan.strides[0].back() == sat_mul(sa, size) && plan.strides[1].back() == sat_mul(sb, size)) {
      plan.sizes.back() = sat_mul(plan.sizes.back(), size);
      plan.strides[0].back() = sa;
      plan.strides[1].back() = sb;
      continue;
    }
    plan.sizes.push_back(size);
    plan.strides[0].push_back(sa);
    plan.strides[1].push_back(sb);
  }
  for (auto size : plan.sizes) plan.visits = sat_mul(plan.visits, size);
  return plan;
}

// Calls fn(offsets) once per visit of the plan; offsets[k] is side k's element index.
template <std::size_t K, typename Fn>
void walk_plan(const Plan& plan, std::array<std::uint64_t, K> base, Fn&& fn) {
  const std::size_t dims = plan.sizes.size();
  if (dims == 0) {
    fn(base);
    return;
  }
  const std::size_t inner = dims - 1;
  std::vector<std::uint64_t> index(dims, 0);
  std::array<std::uint64_t, K> offset = base;
  for (;;) {
    std::array<std::uint64_t, K> o = offset;
    for (std::uint64_t i = 0; i < plan.sizes[inner]; ++i) {
      fn(o);
      for (std::size_t k = 0; k < K; ++k) o[k] += plan.strides[k][inner];
    }
    std::size_t d = inner;
    for (;;) {
      if (d == 0) return;
      --d;
      if (++index[d] < plan.sizes[d]) {
        for (std::size_t k = 0; k < K; ++k) offset[k] += plan.strides[k][d];
        break;
      }
      for (std::size_t k = 0; k < K; ++k) offset[k] -= plan.strides[k][d] * (plan.sizes[d] - 1);
      index[d] = 0;
    }
  }
}

struct StatsResult {
  std::optional<TensorStats> stats;
  std::string note;
};

// ---------------------------------------------------------------- a payload

// A payload opened for inspection: its layout, storages read on demand, and what has
// been spent of its memory and element-visit budgets.
class Payload {
 public:
  Payload(PayloadSource& source, std::string name) : source_(source), name_(std::move(name)) {
    try {
      layout_ = format::read_layout(source_);
    } catch (const FormatError& error) {
      throw FormatError(error.code(), fmt::format("{}: {}", name_, error.what()), name_);
    }
    if (!layout_.budget) layout_.budget = std::make_shared<format::MemoryBudget>(format::MemoryBudget::for_structure(source_.size()));
    std::uint64_t stored = 0;
    for (const auto& storage : layout_.storages) stored = sat_add(stored, storage->numel);
    visit_budget_ = visits_left_ = sat_add(sat_mul(kVisitFactor, stored), kVisitSlack);
  }

  const format::CheckpointLayout& layout() const { return layout_; }
  std::uint64_t file_size() const { return source_.size(); }
  const std::string& name() const { return name_; }
  std::uint64_t visits() const { return visits_done_; }
  const format::MemoryBudget& budget() const { return *layout_.budget; }

  [[noreturn]] void fail(ErrorCode code, const std::string& message) const {
    throw FormatError(code, fmt::format("{}: {}", name_, message), name_);
  }

  void charge(std::uint64_t bytes) {
    try {
      layout_.budget->charge(bytes, kWhat);
    } catch (const FormatError& error) {
      fail(error.code(), fmt::format("{} ({} entries listed so far)", error.what(), listed_));
    }
  }

  // Appends to a vector of results, charging its growth and `extra` bytes the item
  // holds beside itself.
  template <typename T>
  void append(std::vector<T>& out, T item, std::uint64_t extra) {
    if (out.size() == out.capacity()) {
      // The whole new buffer: while it is filled the old one is alive too (fuzzing found
      // 16% over the budget when only the growth was charged).
      const std::size_t grown = std::max<std::size_t>(16, 2 * out.capacity());
      charge(sat_mul(grown, sizeof(T)));
      out.reserve(grown);
    }
    charge(extra);
    out.push_back(std::move(item));
  }

  // Element visits: false (nothing spent) when `n` would pass the file's budget.
  bool can_visit(std::uint64_t n) const { return n <= visits_left_; }
  void spend_visits(std::uint64_t n, bool count) {
    visits_left_ -= n;
    if (count) visits_done_ = sat_add(visits_done_, n);
  }
  // Why a view of `visits` visits over `storage` was not walked ("computed", "compared").
  std::string visit_note(const char* what, std::uint64_t visits, const StorageInfo& storage) const {
    if (storage.numel > 0 && visits > storage.numel) {
      const std::uint64_t times = visits / storage.numel + (visits % storage.numel != 0);
      return fmt::format("not {}: the view repeats its storage's elements {} times", what, times);
    }
    return fmt::format("not {}: the file's budget of {} element visits is spent (its views read the same elements "
                       "again and again)",
                       what, visit_budget_);
  }

  // The bytes of a storage record, read once and CRC-checked.
  const std::string& storage(const StorageInfo& info) {
    auto cached = cache_.find(&info);
    if (cached != cache_.end()) return cached->second;
    auto found = layout_.locations.find(info.key);
    if (found == layout_.locations.end()) fail(ErrorCode::format, fmt::format("storage '{}' has no record", format::printable(info.key)));
    const auto& location = found->second;
    std::string bytes(location.nbytes, '\0');
    try {
      source_.read_at(location.offset, bytes.data(), bytes.size());
    } catch (const FormatError& error) {
      fail(error.code(), fmt::format("storage '{}': {}", format::printable(info.key), error.what()));
    }
    if (location.crc32 && format::crc32(0, bytes.data(), bytes.size()) != *location.crc32) {
      fail(ErrorCode::corrupt, fmt::format("storage record data/{} fails its CRC-32 check", format::printable(info.key)));
    }
    return cache_.emplace(&info, std::move(bytes)).first->second;
  }

  // A strided view's storage bytes, once its extent is checked against them (the reader
  // checked it too: this holds for any layout handed in).
  const char* view_data(const TensorInfo& t) {
    if (!t.storage) fail(ErrorCode::format, "a strided tensor without a storage");
    check_view_shape(t);
    const std::string& bytes = storage(*t.storage);
    const std::uint64_t elements = bytes.size() / format::element_size(t.storage->dtype);
    std::uint64_t last = static_cast<std::uint64_t>(t.storage_offset);
    for (std::size_t d = 0; d < t.sizes.size(); ++d) {
      last = sat_add(last, sat_mul(static_cast<std::uint64_t>(t.sizes[d]) - 1, static_cast<std::uint64_t>(t.strides[d])));
    }
    if (last >= elements) {
      fail(ErrorCode::format, fmt::format("a tensor view reaches element {} of storage '{}', which has {}", last,
                                          format::printable(t.storage->key), elements));
    }
    return bytes.data();
  }

  void check_view_shape(const TensorInfo& t) const {
    if (t.sizes.size() != t.strides.size() || t.storage_offset < 0 ||
        std::any_of(t.sizes.begin(), t.sizes.end(), [](auto s) { return s < 0; }) ||
        std::any_of(t.strides.begin(), t.strides.end(), [](auto s) { return s < 0; })) {
      fail(ErrorCode::format, "a tensor view with negative or mismatched sizes and strides");
    }
  }

  // Calls leaf(path, value) for each leaf and empty container, depth first, dicts as
  // Python sees them. Every path is charged; more than kMaxEntries is refused.
  template <typename Leaf>
  void flatten(Leaf&& leaf) {
    std::string path;
    listed_ = 0;
    walk(layout_.root, path, 0, leaf);
  }

  // A long list of numbers (a metric history, token ids) is one entry whose value shows
  // its first items and its length, not one entry per item. Decided once per object.
  bool scalar_run(const Value& value) {
    constexpr std::size_t kShortest = 16;
    if (value.items().size() <= kShortest) return false;
    auto found = scalar_runs_.find(&value);
    if (found != scalar_runs_.end()) return found->second;
    const bool run = std::all_of(value.items().begin(), value.items().end(), [](const ValuePtr& item) {
      const ValueKind kind = item->kind();
      return kind == ValueKind::none || kind == ValueKind::boolean || kind == ValueKind::integer || kind == ValueKind::floating;
    });
    charge(64);
    return scalar_runs_.emplace(&value, run).first->second;
  }

  std::string run_text(const Value& value) {
    constexpr std::size_t kShownItems = 8;
    const auto& items = value.items();
    std::string text = value.kind() == ValueKind::tuple ? "(" : "[";
    for (std::size_t i = 0; i < kShownItems; ++i) text += scalar_text(*items[i]) + ", ";
    text += fmt::format("...{} ({} items)", value.kind() == ValueKind::tuple ? ")" : "]", items.size());
    return text;
  }

  // A scalar's text; a long string's is computed (and charged) once per string object.
  std::string text_of(const Value& value) {
    if ((value.kind() == ValueKind::list || value.kind() == ValueKind::tuple) && !value.items().empty()) {
      std::string text = run_text(value);
      charge(text.size());
      return text;
    }
    if (value.kind() != ValueKind::string || value.text().size() <= kShownCharacters) return scalar_text(value);
    auto found = long_texts_.find(&value);
    if (found != long_texts_.end()) return found->second;
    std::string text = string_text(value.text());
    charge(text.size() + sizeof(std::string) + 64);
    return long_texts_.emplace(&value, std::move(text)).first->second;
  }

  PayloadEntry describe(std::string path, const Value& value) {
    return describe_with(std::move(path), value, [this](const Value& v) { return text_of(v); });
  }

  // --stats for an entry: tensors (sparse COO: over its values) and bare storages.
  void add_stats(PayloadEntry& entry, const Value& value) {
    const StatsResult* result = nullptr;
    if (value.kind() == ValueKind::tensor && value.tensor()) {
      const TensorInfo& t = *value.tensor();
      if (t.layout == TensorLayout::meta) {
        entry.stats_note = "not computed: a meta tensor has no data";
        return;
      }
      const TensorInfo* view = t.layout == TensorLayout::sparse_coo ? t.values.get() : &t;
      if (!view || view->layout != TensorLayout::strided) return;
      result = &stats_of(*view, view);
    } else if (value.kind() == ValueKind::storage && value.storage()) {
      const TensorInfo whole = format::whole_storage_view(value.storage());
      result = &stats_of(whole, value.storage().get());
    }
    if (result) {
      entry.stats = result->stats;
      entry.stats_note = result->note;
    }
  }

 private:
  // Once per view object (a memo-shared tensor under many paths is summarised once).
  const StatsResult& stats_of(const TensorInfo& t, const void* key) {
    auto found = stats_cache_.find(key);
    if (found != stats_cache_.end()) return found->second;
    StatsResult result = compute_stats(t);
    charge(sizeof(StatsResult) + result.note.size() + 64);
    return stats_cache_.emplace(key, std::move(result)).first->second;
  }

  StatsResult compute_stats(const TensorInfo& t) {
    StatsResult result;
    if (!t.storage) return result;
    check_view_shape(t);
    if (view_numel(t.sizes) == 0) return result;  // nothing to summarise
    const Plan plan = make_plan(t.sizes, t.strides, nullptr);
    if (!can_visit(plan.visits)) {
      result.note = visit_note("computed", plan.visits, *t.storage);
      return result;
    }
    const char* data = view_data(t);
    spend_visits(plan.visits, true);
    const DType dtype = t.storage->dtype;
    TensorStats stats{INFINITY, -INFINITY, 0, 0, 0};
    double sum = 0;
    std::uint64_t finite = 0, nan = 0, inf = 0;
    walk_plan<1>(plan, {static_cast<std::uint64_t>(t.storage_offset)}, [&](const std::array<std::uint64_t, 1>& o) {
      const double v = element(data, dtype, o[0]);
      if (std::isnan(v)) {
        ++nan;
      } else if (std::isinf(v)) {
        ++inf;
      } else {
        stats.min = std::min(stats.min, v);
        stats.max = std::max(stats.max, v);
        sum += v;
        ++finite;
      }
    });
    // Each visit stands for `repeat` equal elements: the mean is unchanged, counts scale.
    stats.mean = finite ? sum / static_cast<double>(finite) : NAN;
    if (!finite) stats.min = stats.max = NAN;
    stats.nan_count = sat_mul(nan, plan.repeat);
    stats.inf_count = sat_mul(inf, plan.repeat);
    result.stats = stats;
    return result;
  }

  // A dict's entries as Python sees them, computed (and charged) once per dict object.
  const std::vector<Entry>& distinct(const Value& dict) {
    if (dict.entries().size() <= 1) return dict.entries();
    auto found = distinct_.find(&dict);
    if (found != distinct_.end()) return found->second;
    // The result and distinct_entries' two hash tables while it runs.
    charge(dict.entries().size() * (sizeof(Entry) + 64) + 64);
    return distinct_.emplace(&dict, format::distinct_entries(dict)).first->second;
  }

  // Appends ".component" (or "component" at the top) to `path`, charging its growth.
  void push(std::string& path, int depth, std::string_view component) {
    const std::size_t need = path.size() + (depth > 0 ? 1 : 0) + component.size();
    if (need > path.capacity()) {
      const std::size_t grown = std::max(need, 2 * path.capacity());
      charge(grown - path.capacity());
      path.reserve(grown);
    }
    if (depth > 0) path += '.';
    path.append(component);
  }

  template <typename Leaf>
  void walk(const ValuePtr& value, std::string& path, int depth, Leaf& leaf) {
    if (depth > format::kMaxNesting) fail(ErrorCode::format, fmt::format("nesting deeper than {}", format::kMaxNesting));
    const std::size_t mark = path.size();
    if (value->kind() == ValueKind::dict && !value->entries().empty()) {
      for (const auto& [key, item] : distinct(*value)) {
        if (key->kind() == ValueKind::string) {
          push(path, depth, key->text());
        } else {
          push(path, depth, key_repr(*key));
        }
        walk(item, path, depth + 1, leaf);
        path.resize(mark);
      }
    } else if ((value->kind() == ValueKind::list || value->kind() == ValueKind::tuple) && !value->items().empty() &&
               !scalar_run(*value)) {
      const auto& items = value->items();
      for (std::size_t i = 0; i < items.size(); ++i) {
        push(path, depth, std::to_string(i));
        walk(items[i], path, depth + 1, leaf);
        path.resize(mark);
      }
    } else {
      if (listed_ >= kMaxEntries) {
        fail(ErrorCode::format, fmt::format("more than {} entries (shared sub-objects repeated?)", kMaxEntries));
      }
      ++listed_;
      charge(path.size() + 1);  // the leaf's copy (its std::string is in the entry)
      leaf(std::string(path), value);
    }
  }

  PayloadSource& source_;
  std::string name_;
  format::CheckpointLayout layout_;
  std::unordered_map<const StorageInfo*, std::string> cache_;
  std::unordered_map<const Value*, std::vector<Entry>> distinct_;
  std::unordered_map<const Value*, std::string> long_texts_;
  std::unordered_map<const Value*, bool> scalar_runs_;
  std::unordered_map<const void*, StatsResult> stats_cache_;
  std::uint64_t visit_budget_ = 0;
  std::uint64_t visits_left_ = 0;
  std::uint64_t visits_done_ = 0;
  std::size_t listed_ = 0;
};

// ---------------------------------------------------------------- diff

struct Compared {
  bool compared = false;
  std::string note;  // why not
  std::uint64_t differing = 0;
  std::uint64_t total = 0;
  double max_diff = 0;
};

// Two strided views of the same shape, element by element in lockstep. NaN equals NaN,
// an infinity equals itself.
Compared compare_views(Payload& a, const TensorInfo& at, Payload& b, const TensorInfo& bt, std::uint64_t& visits) {
  Compared c;
  if (!at.storage || !bt.storage) return c;
  a.check_view_shape(at);
  b.check_view_shape(bt);
  c.total = view_numel(at.sizes);
  if (c.total == 0) {
    c.compared = true;
    return c;
  }
  const Plan plan = make_plan(at.sizes, at.strides, &bt.strides);
  if (!a.can_visit(plan.visits) || !b.can_visit(plan.visits)) {
    c.note = (!a.can_visit(plan.visits) ? a : b).visit_note("compared", plan.visits, !a.can_visit(plan.visits) ? *at.storage : *bt.storage);
    return c;
  }
  const char* ad = a.view_data(at);
  const char* bd = b.view_data(bt);
  a.spend_visits(plan.visits, true);
  b.spend_visits(plan.visits, false);
  visits = sat_add(visits, plan.visits);
  const DType adt = at.storage->dtype, bdt = bt.storage->dtype;
  std::uint64_t differing = 0;
  double max_diff = 0;
  walk_plan<2>(plan, {static_cast<std::uint64_t>(at.storage_offset), static_cast<std::uint64_t>(bt.storage_offset)},
               [&](const std::array<std::uint64_t, 2>& o) {
                 const double x = element(ad, adt, o[0]), y = element(bd, bdt, o[1]);
                 if (x == y || (std::isnan(x) && std::isnan(y))) return;
                 ++differing;
                 const double d = std::fabs(x - y);
                 if (!std::isnan(d)) max_diff = std::max(max_diff, d);
               });
  c.compared = true;
  c.differing = sat_mul(differing, plan.repeat);
  c.max_diff = max_diff;
  return c;
}

class Differ {
 public:
  Differ(Payload& a, Payload& b) : a_(a), b_(b) {}

  std::uint64_t visits() const { return visits_; }

  std::optional<PayloadDifference> compare(const std::string& path, const Value& av, const Value& bv) {
    PayloadEntry ae = a_.describe({}, av), be = b_.describe({}, bv);
    if (ae.type != be.type) return PayloadDifference{path, "type", ae.type + " vs " + be.type, 0};
    if (av.kind() == ValueKind::tensor) {
      if (!av.tensor() || !bv.tensor()) return std::nullopt;
      return compare_tensors(path, ae, *av.tensor(), be, *bv.tensor());
    }
    if (av.kind() == ValueKind::storage) {
      if (!av.storage() || !bv.storage()) return std::nullopt;
      const TensorInfo at = format::whole_storage_view(av.storage()), bt = format::whole_storage_view(bv.storage());
      return compare_tensors(path, ae, at, be, bt);
    }
    if (same_value(av, bv)) return std::nullopt;
    std::string detail = ae.value + " vs " + be.value;
    if (ae.value == be.value) detail += " (they differ beyond the characters shown)";
    return PayloadDifference{path, "value", std::move(detail), 0};
  }

 private:
  bool same_value(const Value& a, const Value& b) {
    switch (a.kind()) {
      case ValueKind::string:
      case ValueKind::bytes:
      case ValueKind::global:
      case ValueKind::dtype: {
        if (a.text().size() != b.text().size()) return false;
        if (a.text().size() <= kShownCharacters) return a.text() == b.text();
        // A memo-shared long string under many paths is compared once.
        auto key = std::make_pair(&a, &b);
        auto found = same_.find(key);
        if (found != same_.end()) return found->second;
        a_.charge(64);
        return same_.emplace(key, a.text() == b.text()).first->second;
      }
      case ValueKind::integer: return a.integer() == b.integer() && a.is_unsigned() == b.is_unsigned();
      case ValueKind::list:
      case ValueKind::tuple: {
        // A run of scalars shown as one entry: compared item by item, once per pair.
        if (a.items().size() != b.items().size()) return false;
        auto key = std::make_pair(&a, &b);
        auto found = same_.find(key);
        if (found != same_.end()) return found->second;
        a_.charge(64);
        bool same = true;
        for (std::size_t i = 0; same && i < a.items().size(); ++i) {
          same = a.items()[i]->kind() == b.items()[i]->kind() && same_value(*a.items()[i], *b.items()[i]);
        }
        return same_.emplace(key, same).first->second;
      }
      default: return scalar_text(a) == scalar_text(b);
    }
  }

  std::optional<PayloadDifference> compare_tensors(const std::string& path, const PayloadEntry& ae, const TensorInfo& at,
                                                   const PayloadEntry& be, const TensorInfo& bt) {
    if (at.layout != bt.layout) return PayloadDifference{path, "layout", ae.layout + " vs " + be.layout, 0};
    if (at.sizes != bt.sizes) return PayloadDifference{path, "shape", shape_text(at.sizes) + " vs " + shape_text(bt.sizes), 0};
    const std::string dtypes = ae.dtype + " vs " + be.dtype;
    if (at.layout == TensorLayout::meta) {
      if (ae.dtype != be.dtype) return PayloadDifference{path, "dtype", dtypes, 0};
      return std::nullopt;
    }
    const TensorInfo* av = &at;
    const TensorInfo* bv = &bt;
    if (at.layout == TensorLayout::sparse_coo) {
      if (!at.indices || !bt.indices || !at.values || !bt.values) return std::nullopt;
      if (at.indices->sizes != bt.indices->sizes || at.values->sizes != bt.values->sizes) {
        return PayloadDifference{path, "tensor", fmt::format("sparse_coo: {} vs {} specified elements", ae.nnz, be.nnz), 0};
      }
      Compared indices = compare_views(a_, *at.indices, b_, *bt.indices, visits_);
      if (!indices.compared) return PayloadDifference{path, "not compared", indices.note, 0};
      if (indices.differing > 0) {
        return PayloadDifference{path, "tensor",
                                 fmt::format("sparse_coo: the indices differ ({} of {} differ)", indices.differing, indices.total), 0};
      }
      av = at.values.get();
      bv = bt.values.get();
    }
    Compared c = compare_views(a_, *av, b_, *bv, visits_);
    if (ae.dtype != be.dtype) {
      return PayloadDifference{path, "dtype", c.compared ? dtypes : dtypes + " (" + c.note + ")", c.max_diff};
    }
    if (!c.compared) return PayloadDifference{path, "not compared", c.note, 0};
    if (c.differing == 0) return std::nullopt;
    return PayloadDifference{path, "tensor", fmt::format("max |a-b| {} over {} of {} elements", c.max_diff, c.differing, c.total),
                             c.max_diff};
  }

  Payload& a_;
  Payload& b_;
  std::uint64_t visits_ = 0;
  std::map<std::pair<const Value*, const Value*>, bool> same_;
};

std::uint64_t difference_cost(const PayloadDifference& d) { return d.path.size() + d.kind.size() + d.detail.size(); }

}  // namespace

PayloadEntry describe_value(const std::string& path, const format::Value& value) {
  return describe_with(path, value, [](const Value& v) { return scalar_text(v); });
}

PayloadInfo inspect_payload(PayloadSource& source, const std::string& name, bool with_stats, InspectCounters* counters) {
  Payload payload(source, name);
  PayloadInfo info;
  info.container = payload.layout().container == format::Container::zip ? "zip" : "legacy";
  info.version = payload.layout().version;
  info.file_size = payload.file_size();
  for (const auto& [key, location] : payload.layout().locations) info.storage_bytes = sat_add(info.storage_bytes, location.nbytes);
  payload.flatten([&](std::string path, const ValuePtr& value) {
    PayloadEntry entry = payload.describe(std::move(path), *value);
    if (with_stats) payload.add_stats(entry, *value);
    const std::uint64_t cost = entry_cost(entry);
    payload.append(info.entries, std::move(entry), cost);
  });
  if (counters) {
    counters->element_visits = payload.visits();
    counters->budget_used = payload.budget().used();
    counters->budget_limit = payload.budget().limit();
  }
  return info;
}

PayloadInfo inspect_payload(const std::filesystem::path& file, bool with_stats) {
  io::FileSource source(*FileSystem::posix(), file);
  return inspect_payload(source, file.string(), with_stats);
}

std::vector<PayloadDifference> diff_payloads(PayloadSource& a_source, const std::string& a_name, PayloadSource& b_source,
                                             const std::string& b_name, InspectCounters* counters) {
  Payload a(a_source, a_name), b(b_source, b_name);
  // B's leaves by path (a path can repeat: a str key "1" and an int key 1; each pairs
  // with one of A's in order).
  std::multimap<std::string, ValuePtr> b_by_path;
  b.flatten([&](std::string path, const ValuePtr& value) {
    b.charge(sizeof(std::string) + sizeof(ValuePtr) + 32);  // the map node holding them
    b_by_path.emplace(std::move(path), value);
  });
  Differ differ(a, b);
  std::vector<PayloadDifference> differences;
  auto add = [&](Payload& owner, PayloadDifference d) {
    const std::uint64_t cost = difference_cost(d);
    owner.append(differences, std::move(d), cost);
  };
  a.flatten([&](std::string path, const ValuePtr& av) {
    auto found = b_by_path.lower_bound(path);
    if (found == b_by_path.end() || found->first != path) {
      add(a, PayloadDifference{std::move(path), "only in A", std::string(format::kind_name(av->kind())), 0});
      return;
    }
    const ValuePtr bv = found->second;
    b_by_path.erase(found);
    if (auto d = differ.compare(path, *av, *bv)) add(a, std::move(*d));
  });
  for (const auto& [path, bv] : b_by_path) add(b, PayloadDifference{path, "only in B", std::string(format::kind_name(bv->kind())), 0});
  if (counters) {
    counters->element_visits = differ.visits();
    counters->budget_used = sat_add(a.budget().used(), b.budget().used());
    counters->budget_limit = sat_add(a.budget().limit(), b.budget().limit());
  }
  return differences;
}

std::vector<PayloadDifference> diff_payloads(const std::filesystem::path& a_file, const std::filesystem::path& b_file) {
  io::FileSource a(*FileSystem::posix(), a_file);
  io::FileSource b(*FileSystem::posix(), b_file);
  return diff_payloads(a, a_file.string(), b, b_file.string());
}

}  // namespace ckpt
