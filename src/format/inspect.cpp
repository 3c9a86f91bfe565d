// inspect_payload / diff_payloads over the format layer: the structure from the pickle,
// tensor elements decoded from storage bytes by dtype (float16 and bfloat16 widened by
// hand), so nothing here needs libtorch.
#include "ckpt/inspect.hpp"

#include <cmath>
#include <cstring>
#include <fmt/format.h>
#include <map>
#include <unordered_map>

#include "ckpt/errors.hpp"
#include "format/checkpoint_format.hpp"
#include "format/zip_reader.hpp"
#include "io/file_source.hpp"

namespace ckpt {

namespace {

using format::DType;
using format::ValueKind;
using format::ValuePtr;

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

// Calls fn(value) for each element of a view, in row-major order.
template <typename Fn>
void for_each_element(const format::TensorInfo& tensor, const std::string& storage, Fn&& fn) {
  // A view may repeat elements (stride 0); a hostile one could claim trillions.
  constexpr std::uint64_t kMaxElements = 1ull << 31;
  std::uint64_t numel = 1;
  for (auto size : tensor.sizes) {
    numel *= static_cast<std::uint64_t>(size);
    if (numel > kMaxElements) {
      throw FormatError(ErrorCode::format, fmt::format("a tensor view of more than {} elements is not summarised", kMaxElements));
    }
  }
  std::vector<std::int64_t> index(tensor.sizes.size(), 0);
  for (std::uint64_t n = 0; n < numel; ++n) {
    std::int64_t offset = tensor.storage_offset;
    for (std::size_t d = 0; d < index.size(); ++d) offset += index[d] * tensor.strides[d];
    fn(element(storage.data(), tensor.storage->dtype, static_cast<std::uint64_t>(offset)));
    for (std::size_t d = index.size(); d-- > 0;) {
      if (++index[d] < tensor.sizes[d]) break;
      index[d] = 0;
    }
  }
}

std::string scalar_text(const format::Value& value) {
  switch (value.kind()) {
    case ValueKind::none: return "None";
    case ValueKind::boolean: return value.boolean() ? "True" : "False";
    case ValueKind::integer: return std::to_string(value.integer());
    case ValueKind::floating: return fmt::format("{}", value.floating());
    case ValueKind::string: return fmt::format("'{}'", value.text());
    case ValueKind::bytes: return fmt::format("<{} bytes>", value.text().size());
    default: return {};
  }
}

std::string key_text(const format::Value& key) {
  if (key.kind() == ValueKind::string) return key.text();
  return scalar_text(key);
}

// A payload opened for inspection: its layout, and storages read on demand.
class Payload {
 public:
  explicit Payload(const std::filesystem::path& file) : file_(file), source_(*FileSystem::posix(), file) {
    try {
      layout_ = format::read_layout(source_);
    } catch (const FormatError& error) {
      throw FormatError(ErrorCode::format, fmt::format("{}: {}", file.string(), error.what()), file);
    }
  }

  const format::CheckpointLayout& layout() const { return layout_; }
  std::uint64_t file_size() const { return source_.size(); }

  const std::string& storage(const std::string& key) {
    auto found = cache_.find(key);
    if (found != cache_.end()) return found->second;
    const auto& location = layout_.locations.at(key);
    std::string bytes(location.nbytes, '\0');
    source_.read_at(location.offset, bytes.data(), bytes.size());
    if (location.crc32 && format::crc32(0, bytes.data(), bytes.size()) != *location.crc32) {
      throw FormatError(ErrorCode::corrupt,
                        fmt::format("{}: storage record data/{} fails its CRC-32 check", file_.string(), key), file_);
    }
    return cache_.emplace(key, std::move(bytes)).first->second;
  }

  // One entry per path. A shared sub-object appears under each path that reaches it, so
  // a hostile pickle could expand exponentially: the number of entries is capped.
  void flatten(const ValuePtr& value, const std::string& path, int depth, std::vector<std::pair<std::string, ValuePtr>>& out) {
    constexpr std::size_t kMaxEntries = 1'000'000;
    if (depth > format::kMaxNesting) {
      throw FormatError(ErrorCode::format, fmt::format("{}: nesting deeper than {}", file_.string(), format::kMaxNesting), file_);
    }
    if (out.size() >= kMaxEntries) {
      throw FormatError(ErrorCode::format,
                        fmt::format("{}: more than {} entries (shared sub-objects repeated?)", file_.string(), kMaxEntries), file_);
    }
    auto child = [&](const std::string& key) { return path.empty() ? key : path + "." + key; };
    if (value->kind() == ValueKind::dict && !value->entries().empty()) {
      for (const auto& [key, item] : value->entries()) flatten(item, child(key_text(*key)), depth + 1, out);
    } else if ((value->kind() == ValueKind::list || value->kind() == ValueKind::tuple) && !value->items().empty()) {
      for (std::size_t i = 0; i < value->items().size(); ++i) flatten(value->items()[i], child(std::to_string(i)), depth + 1, out);
    } else {
      out.emplace_back(path, value);
    }
  }

 private:
  std::filesystem::path file_;
  io::FileSource source_;
  format::CheckpointLayout layout_;
  std::unordered_map<std::string, std::string> cache_;
};

PayloadEntry describe(const std::string& path, const format::Value& value) {
  PayloadEntry entry;
  entry.path = path;
  if (value.kind() == ValueKind::tensor) {
    const auto& t = *value.tensor();
    entry.type = "Tensor";
    entry.dtype = std::string(format::dtype_name(t.storage->dtype));
    entry.shape = t.sizes;
    entry.stride = t.strides;
    entry.storage_offset = t.storage_offset;
    entry.storage = t.storage->key;
    std::uint64_t numel = 1;
    for (auto size : t.sizes) numel *= static_cast<std::uint64_t>(size);
    entry.bytes = numel * format::element_size(t.storage->dtype);
    entry.requires_grad = t.requires_grad;
  } else {
    entry.type = std::string(format::kind_name(value.kind()));
    entry.value = scalar_text(value);
  }
  return entry;
}

}  // namespace

PayloadInfo inspect_payload(const std::filesystem::path& file, bool with_stats) {
  Payload payload(file);
  PayloadInfo info;
  info.container = payload.layout().container == format::Container::zip ? "zip" : "legacy";
  info.version = payload.layout().version;
  info.file_size = payload.file_size();
  for (const auto& [key, location] : payload.layout().locations) info.storage_bytes += location.nbytes;
  std::vector<std::pair<std::string, ValuePtr>> leaves;
  payload.flatten(payload.layout().root, "", 0, leaves);
  for (const auto& [path, value] : leaves) {
    PayloadEntry entry = describe(path, *value);
    if (with_stats && value->kind() == ValueKind::tensor && entry.bytes > 0) {
      const std::string& storage = payload.storage(value->tensor()->storage->key);
      TensorStats stats{INFINITY, -INFINITY, 0, 0, 0};
      double sum = 0;
      std::uint64_t finite = 0;
      for_each_element(*value->tensor(), storage, [&](double v) {
        if (std::isnan(v)) {
          ++stats.nan_count;
        } else if (std::isinf(v)) {
          ++stats.inf_count;
        } else {
          stats.min = std::min(stats.min, v);
          stats.max = std::max(stats.max, v);
          sum += v;
          ++finite;
        }
      });
      stats.mean = finite ? sum / static_cast<double>(finite) : NAN;
      if (!finite) stats.min = stats.max = NAN;
      entry.stats = stats;
    }
    info.entries.push_back(std::move(entry));
  }
  return info;
}

std::vector<PayloadDifference> diff_payloads(const std::filesystem::path& a_file, const std::filesystem::path& b_file) {
  Payload a(a_file), b(b_file);
  std::vector<std::pair<std::string, ValuePtr>> a_leaves, b_leaves;
  a.flatten(a.layout().root, "", 0, a_leaves);
  b.flatten(b.layout().root, "", 0, b_leaves);
  std::map<std::string, ValuePtr> b_by_path(b_leaves.begin(), b_leaves.end());
  std::vector<PayloadDifference> differences;
  for (const auto& [path, av] : a_leaves) {
    auto found = b_by_path.find(path);
    if (found == b_by_path.end()) {
      differences.push_back({path, "only in A", describe(path, *av).type, 0});
      continue;
    }
    const ValuePtr bv = found->second;
    b_by_path.erase(found);
    PayloadEntry ae = describe(path, *av), be = describe(path, *bv);
    if (ae.type != be.type) {
      differences.push_back({path, "type", ae.type + " vs " + be.type, 0});
    } else if (av->kind() != ValueKind::tensor) {
      if (ae.value != be.value) differences.push_back({path, "value", ae.value + " vs " + be.value, 0});
    } else if (ae.shape != be.shape) {
      differences.push_back({path, "shape", fmt::format("[{}] vs [{}]", fmt::join(ae.shape, ", "), fmt::join(be.shape, ", ")), 0});
    } else {
      std::vector<double> as;
      for_each_element(*av->tensor(), a.storage(av->tensor()->storage->key), [&](double v) { as.push_back(v); });
      std::size_t i = 0, differing = 0;
      double max_diff = 0;
      for_each_element(*bv->tensor(), b.storage(bv->tensor()->storage->key), [&](double v) {
        double d = std::fabs(as[i++] - v);
        if (d > 0 || std::isnan(d)) {
          ++differing;
          if (!std::isnan(d)) max_diff = std::max(max_diff, d);
        }
      });
      if (ae.dtype != be.dtype) {
        differences.push_back({path, "dtype", ae.dtype + " vs " + be.dtype, max_diff});
      } else if (differing > 0) {
        differences.push_back({path, "tensor",
                               fmt::format("max |a-b| {} over {} of {} elements", max_diff, differing, as.size()),
                               max_diff});
      }
    }
  }
  for (const auto& [path, bv] : b_by_path) differences.push_back({path, "only in B", describe(path, *bv).type, 0});
  return differences;
}

}  // namespace ckpt
