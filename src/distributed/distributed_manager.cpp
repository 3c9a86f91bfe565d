// DistributedCheckpointManager (include/ckpt/distributed.hpp) and load_full_state: the
// save's two-phase commit over the c10d store (distributed/commit_round.hpp), the
// manifest, and resharding loads that read only the byte ranges they need.
//
// Keys in the c10d store, all under "ckpt/":
//   opens/<rank>                   how many managers this rank has constructed (each
//                                  rank counts its own, so all agree on the next number)
//   open/<n>/run                   rank 0's answer to construction n: "ok <run id>" or
//                                  "error <why>"
//   <run>/<seq>/...                save number <seq>'s commit round (CommitRound)
//   <run>/<seq>/record             the committed row as rank 0 saw it, for the others
//   <run>/load-<seq>/plan          what a load reads: "none", or the checkpoint's shards
//   <run>/load-<seq>/...           the load's round: every rank's success or error
//   <prefix>left                   how many ranks are done with a round (Leaving)
// Every save and load takes the next <seq> on every rank, so keys are never reused. The
// last rank done with a round deletes its keys: the store holds only the rounds in
// progress, and those a dead rank never left.
#include "ckpt/distributed.hpp"

#include <ATen/ATen.h>
#include <fmt/format.h>
#include <fmt/ranges.h>
#include <nlohmann/json.hpp>

#include <cstring>
#include <exception>
#include <future>
#include <random>
#include <sstream>
#include <thread>

#include "ckpt/manager.hpp"
#include "ckpt/reader.hpp"
#include "distributed/c10d_store.hpp"
#include "distributed/commit_round.hpp"
#include "distributed/shard_file.hpp"
#include "distributed/test_hooks.hpp"
#include "format/checkpoint_format.hpp"
#include "io/atomic_file.hpp"
#include "io/file_source.hpp"
#include "io/hasher.hpp"
#include "log/log.hpp"
#include "store/file_names.hpp"
#include "torch/describe_state.hpp"
#include "torch/payload_codec.hpp"
#include "torch/snapshot.hpp"

namespace ckpt {

namespace distributed {
namespace {
std::function<void(std::string_view)>& hook() {
  static std::function<void(std::string_view)> instance;
  return instance;
}
}  // namespace
void set_step_hook(std::function<void(std::string_view)> h) { hook() = std::move(h); }
void step(std::string_view name) {
  if (hook()) hook()(name);
}
}  // namespace distributed

namespace {

using distributed::CommitRound;
using distributed::ShardReport;
using Clock = std::chrono::steady_clock;
using json = nlohmann::json;

constexpr const char* kManifestMarker = "ckpt_sharded_checkpoint";
constexpr std::chrono::milliseconds kPoll{10};

std::vector<std::string> split_path(const std::string& path) {
  std::vector<std::string> parts;
  std::size_t at = 0;
  while (true) {
    const auto slash = path.find('/', at);
    parts.push_back(path.substr(at, slash == std::string::npos ? std::string::npos : slash - at));
    if (slash == std::string::npos) break;
    at = slash + 1;
  }
  return parts;
}

at::Tensor tensor_at(const State& state, const std::string& path) {
  auto parts = split_path(path);
  const State* level = &state;
  State nested;
  for (std::size_t i = 0; i + 1 < parts.size(); ++i) {
    if (!level->contains(parts[i]) || !level->at(parts[i]).isGenericDict()) {
      throw InvalidArgument(fmt::format("placement {}: the state has no dict {}", path, parts[i]));
    }
    nested = State::from_generic_dict(level->at(parts[i]).toGenericDict());
    level = &nested;
  }
  if (!level->contains(parts.back()) || !level->at(parts.back()).isTensor()) {
    throw InvalidArgument(fmt::format("placement {}: the state has no tensor there", path));
  }
  return level->at(parts.back()).toTensor();
}

// `state` with the value at `path` replaced (nested States rebuilt on the way; the rest shared).
State with_value(const State& state, const std::vector<std::string>& parts, std::size_t i, c10::IValue value) {
  State out = state;
  if (i + 1 == parts.size()) {
    out.set(parts[i], std::move(value));
    return out;
  }
  State nested = state.contains(parts[i]) && state.at(parts[i]).isGenericDict()
                     ? State::from_generic_dict(state.at(parts[i]).toGenericDict())
                     : State{};
  out.set(parts[i], with_value(nested, parts, i + 1, std::move(value)));
  return out;
}

std::vector<std::int64_t> ints(const json& value, const char* what, const std::string& where) {
  if (!value.is_array()) throw FormatError(ErrorCode::format, fmt::format("{}: {} is not a list", where, what));
  std::vector<std::int64_t> out;
  for (const auto& v : value) {
    if (!v.is_number_integer() || v.get<std::int64_t>() < 0) {
      throw FormatError(ErrorCode::format, fmt::format("{}: {} holds a non-integer or negative value", where, what));
    }
    out.push_back(v.get<std::int64_t>());
  }
  return out;
}

Placements parse_placement(const std::string& text, const std::string& where) {
  json parsed = json::parse(text, nullptr, false);
  if (parsed.is_discarded() || !parsed.is_array()) {
    throw FormatError(ErrorCode::format, fmt::format("{}: its placement is not a JSON list", where));
  }
  Placements placements;
  for (const auto& entry : parsed) {
    if (!entry.is_object() || !entry.contains("path") || !entry["path"].is_string()) {
      throw FormatError(ErrorCode::format, fmt::format("{}: a placement without a path", where));
    }
    TensorPlacement p{ints(entry.value("global_shape", json()), "global_shape", where),
                      ints(entry.value("offsets", json()), "offsets", where),
                      ints(entry.value("sizes", json()), "sizes", where)};
    if (p.offsets.size() != p.global_shape.size() || p.sizes.size() != p.global_shape.size()) {
      throw FormatError(ErrorCode::format, fmt::format("{}: placement {} has dimensions that disagree", where,
                                                       entry["path"].get<std::string>()));
    }
    for (std::size_t d = 0; d < p.sizes.size(); ++d) {
      if (p.offsets[d] > p.global_shape[d] || p.sizes[d] > p.global_shape[d] - p.offsets[d]) {
        throw FormatError(ErrorCode::format, fmt::format("{}: placement {} lies outside its global shape", where,
                                                         entry["path"].get<std::string>()));
      }
    }
    placements[entry["path"].get<std::string>()] = std::move(p);
  }
  return placements;
}

std::string placement_json(const Placements& placements) {
  json out = json::array();
  for (const auto& [path, p] : placements) {
    out.push_back({{"path", path}, {"global_shape", p.global_shape}, {"offsets", p.offsets}, {"sizes", p.sizes}});
  }
  return out.dump();
}

// Rank 0, before committing: per sharded path, every rank that holds a slice agrees on
// its global shape, and the slices tile it exactly (pairwise disjoint, volumes adding up
// to the whole). A load can then count copied elements to know it filled its slice.
// Throws InvalidArgument naming the path and the ranks.
void check_tiling(const std::vector<ShardReport>& reports) {
  struct Slice {
    int rank;
    TensorPlacement p;
  };
  std::map<std::string, std::vector<Slice>> by_path;
  for (const auto& r : reports) {
    for (auto& [path, p] : parse_placement(r.placement, r.file)) by_path[path].push_back({r.rank, p});
  }
  for (const auto& [path, slices] : by_path) {
    const auto& shape = slices.front().p.global_shape;
    __int128 whole = 1, sum = 0;
    for (auto size : shape) whole *= size;
    for (std::size_t i = 0; i < slices.size(); ++i) {
      const auto& a = slices[i].p;
      if (a.global_shape != shape) {
        throw InvalidArgument(fmt::format("placement {}: rank {} says its global shape is [{}], rank {} [{}]", path,
                                          slices[i].rank, fmt::join(a.global_shape, ", "), slices.front().rank,
                                          fmt::join(shape, ", ")));
      }
      __int128 volume = 1;
      for (auto size : a.sizes) volume *= size;
      sum += volume;
      for (std::size_t j = 0; j < i; ++j) {
        const auto& b = slices[j].p;
        bool overlap = true;
        for (std::size_t d = 0; d < shape.size(); ++d) {
          overlap = overlap && a.offsets[d] < b.offsets[d] + b.sizes[d] && b.offsets[d] < a.offsets[d] + a.sizes[d];
        }
        if (overlap && volume > 0) {
          throw InvalidArgument(fmt::format("placement {}: the slices of ranks {} and {} overlap", path,
                                            slices[j].rank, slices[i].rank));
        }
      }
    }
    if (sum != whole) {
      throw InvalidArgument(fmt::format("placement {}: the ranks' slices do not cover its global shape [{}] exactly",
                                        path, fmt::join(shape, ", ")));
    }
  }
}

// This rank's state as its shard holds it: each placed tensor contiguous and owning exactly
// its bytes (so its storage record is the slice, row-major, and a load can address any
// part of it), its placement completed with its sizes and checked.
State shard_state(const State& state, const Placements& placements, Placements& completed) {
  State out = state;
  for (const auto& [path, placement] : placements) {
    at::Tensor tensor = tensor_at(state, path);
    const auto dims = static_cast<std::size_t>(tensor.dim());
    if (dims == 0 || placement.global_shape.size() != dims || placement.offsets.size() != dims) {
      throw InvalidArgument(fmt::format("placement {}: a {}-dimensional tensor needs {} global sizes and offsets",
                                        path, dims, dims));
    }
    TensorPlacement p = placement;
    p.sizes = tensor.sizes().vec();
    for (std::size_t d = 0; d < dims; ++d) {
      if (p.offsets[d] < 0 || p.offsets[d] + p.sizes[d] > p.global_shape[d]) {
        throw InvalidArgument(fmt::format("placement {}: dimension {} (offset {}, size {}) lies outside the global "
                                          "size {}", path, d, p.offsets[d], p.sizes[d], p.global_shape[d]));
      }
    }
    if (!tensor.is_contiguous() || tensor.storage_offset() != 0 ||
        tensor.storage().nbytes() != static_cast<std::size_t>(tensor.nbytes())) {
      tensor = tensor.clone(at::MemoryFormat::Contiguous);
    }
    out = with_value(out, split_path(path), 0, tensor);
    completed[path] = std::move(p);
  }
  return out;
}

c10::IValue manifest_of(const std::vector<ShardReport>& shards, const std::string& token) {
  c10::impl::GenericList list(c10::AnyType::get());
  for (const auto& s : shards) {
    State entry{{"rank", static_cast<std::int64_t>(s.rank)},
                {"file", s.file},
                {"size", static_cast<std::int64_t>(s.size)},
                {"hash", s.hash},
                {"hash_algo", s.hash_algo},
                {"block_size", static_cast<std::int64_t>(s.block_size)},
                {"block_hashes", s.block_hashes},
                {"placement", s.placement}};
    list.push_back(entry.to_ivalue());
  }
  State manifest{{kManifestMarker, static_cast<std::int64_t>(1)},
                 {"world_size", static_cast<std::int64_t>(shards.size())},
                 {"token", token}};
  manifest.set("shards", c10::IValue(list));
  return manifest.to_ivalue();
}

bool is_manifest(const State& state) { return state.contains(kManifestMarker); }

std::vector<ShardReport> shards_of_manifest(const State& manifest, const std::filesystem::path& path) {
  try {
    std::vector<ShardReport> shards;
    const auto list = manifest.at("shards").toList();
    for (std::size_t i = 0; i < list.size(); ++i) {
      State entry = State::from_generic_dict(list.get(i).toGenericDict());
      ShardReport s;
      s.rank = static_cast<int>(entry.get<std::int64_t>("rank"));
      s.file = entry.get<std::string>("file");
      s.size = static_cast<std::uint64_t>(entry.get<std::int64_t>("size"));
      s.hash = entry.get<std::string>("hash");
      s.hash_algo = entry.get<std::string>("hash_algo");
      s.block_size = static_cast<std::uint64_t>(entry.get<std::int64_t>("block_size"));
      s.block_hashes = entry.get<std::string>("block_hashes");
      s.placement = entry.get<std::string>("placement");
      if (s.rank != static_cast<int>(i) || !names::parse_shard_file(s.file)) throw std::invalid_argument("shard order");
      shards.push_back(std::move(s));
    }
    if (shards.empty()) throw std::invalid_argument("no shards");
    return shards;
  } catch (const std::exception& error) {
    throw FormatError(ErrorCode::format, fmt::format("{}: not a sharded checkpoint's manifest ckpt can read: {}",
                                                     path.string(), error.what()),
                      path);
  }
}

ShardRecord record_of(const ShardReport& report, int world) {
  ShardRecord shard;
  shard.rank = report.rank;
  shard.world_size = world;
  shard.file = report.file;
  shard.size = report.size;
  shard.hash = report.hash;
  shard.hash_algo = report.hash_algo;
  shard.block_size = report.block_size;
  shard.block_hashes = report.block_hashes;
  shard.placement = report.placement;
  return shard;
}

// ---- Resharding ----

struct OpenShard {
  std::unique_ptr<distributed::VerifiedShardSource> source;
  format::CheckpointLayout layout;
};

const format::TensorInfo& saved_tensor(const OpenShard& shard, const std::string& path, const std::string& file) {
  format::ValuePtr value = shard.layout.root;
  for (const auto& part : split_path(path)) {
    format::ValuePtr next;
    if (value && value->kind() == format::ValueKind::dict) {
      for (const auto& [key, v] : value->entries()) {
        if (key->kind() == format::ValueKind::string && key->text() == part) next = v;
      }
    }
    value = next;
  }
  if (!value || value->kind() != format::ValueKind::tensor ||
      value->tensor()->layout != format::TensorLayout::strided) {
    throw FormatError(ErrorCode::format, fmt::format("{}: its placement lists {}, which it does not hold as a tensor",
                                                     file, path));
  }
  return *value->tensor();
}

// Copies the part of a saved shard's tensor that overlaps `want` into `out` (contiguous,
// `want.sizes`), reading only those byte ranges. Returns the elements copied.
std::int64_t copy_overlap(OpenShard& shard, const std::string& file, const std::string& path,
                          const TensorPlacement& saved, const TensorPlacement& want, at::Tensor& out) {
  const std::size_t dims = want.global_shape.size();
  if (saved.global_shape != want.global_shape) {
    throw FormatError(ErrorCode::format, fmt::format("{}: {} has global shape [{}], another shard [{}]", file, path,
                                                     fmt::join(saved.global_shape, ", "),
                                                     fmt::join(want.global_shape, ", ")));
  }
  std::vector<std::int64_t> lo(dims), hi(dims);
  for (std::size_t d = 0; d < dims; ++d) {
    lo[d] = std::max(saved.offsets[d], want.offsets[d]);
    hi[d] = std::min(saved.offsets[d] + saved.sizes[d], want.offsets[d] + want.sizes[d]);
    if (hi[d] <= lo[d]) return 0;
  }
  const format::TensorInfo& info = saved_tensor(shard, path, file);
  if (info.sizes != saved.sizes) {
    throw FormatError(ErrorCode::format, fmt::format("{}: {} has sizes other than its placement's", file, path));
  }
  if (torch_layer::scalar_type_of(info.dtype()) != out.scalar_type()) {
    throw FormatError(ErrorCode::format, fmt::format("{}: {} is {}, another shard's is {}", file, path,
                                                     format::dtype_name(info.dtype()), c10::toString(out.scalar_type())));
  }
  // Row-major strides of the saved slice and of the wanted one.
  std::vector<std::int64_t> saved_stride(dims, 1), want_stride(dims, 1);
  for (std::size_t d = dims - 1; d > 0; --d) {
    saved_stride[d - 1] = saved_stride[d] * saved.sizes[d];
    want_stride[d - 1] = want_stride[d] * want.sizes[d];
  }
  for (std::size_t d = 0; d < dims; ++d) {
    if (saved.sizes[d] > 1 && info.strides[d] != saved_stride[d]) {
      throw FormatError(ErrorCode::format, fmt::format("{}: {} is not stored row-major", file, path));
    }
  }
  const std::size_t element = format::element_size(info.dtype());
  const std::uint64_t base = shard.layout.locations.at(info.storage->key).offset +
                             static_cast<std::uint64_t>(info.storage_offset) * element;
  // Merge trailing dimensions the overlap spans whole in both slices into one run.
  std::size_t k = dims - 1;
  while (k > 0 && lo[k] == saved.offsets[k] && hi[k] == saved.offsets[k] + saved.sizes[k] &&
         lo[k] == want.offsets[k] && hi[k] == want.offsets[k] + want.sizes[k]) {
    --k;
  }
  std::int64_t run = hi[k] - lo[k];
  for (std::size_t d = k + 1; d < dims; ++d) run *= saved.sizes[d];
  char* dst = static_cast<char*>(out.data_ptr());
  std::vector<std::int64_t> at(lo.begin(), lo.begin() + static_cast<std::ptrdiff_t>(k));
  std::int64_t copied = 0;
  while (true) {
    std::int64_t s = (lo[k] - saved.offsets[k]) * saved_stride[k], w = (lo[k] - want.offsets[k]) * want_stride[k];
    for (std::size_t d = 0; d < k; ++d) {
      s += (at[d] - saved.offsets[d]) * saved_stride[d];
      w += (at[d] - want.offsets[d]) * want_stride[d];
    }
    shard.source->read_at(base + static_cast<std::uint64_t>(s) * element, dst + static_cast<std::size_t>(w) * element,
                          static_cast<std::size_t>(run) * element);
    copied += run;
    std::size_t d = k;
    while (d > 0) {
      --d;
      if (++at[d] < hi[d]) break;
      at[d] = lo[d];
      if (d == 0) return copied;
    }
    if (k == 0) return copied;
  }
}

// This rank's state from the committed shards: the base shard's state, and each wanted
// tensor assembled from the shards that overlap it (the base shard's slice of it read
// only when it is exactly the one wanted).
State assemble(FileSystem& fs, const std::filesystem::path& dir, const std::vector<ShardReport>& shards, int rank,
               int world, const Placements& wanted) {
  const ShardReport& base = shards[static_cast<std::size_t>(rank) < shards.size() ? static_cast<std::size_t>(rank) : 0];
  std::map<int, OpenShard> open;
  auto opened = [&](const ShardReport& s) -> OpenShard& {
    auto it = open.find(s.rank);
    if (it == open.end()) {
      OpenShard o;
      o.source = std::make_unique<distributed::VerifiedShardSource>(fs, dir / s.file, record_of(s, 0));
      o.layout = torch_layer::layout_of(*o.source, dir / s.file);
      it = open.emplace(s.rank, std::move(o)).first;
    }
    return it->second;
  };
  std::vector<Placements> saved;
  for (const auto& s : shards) saved.push_back(parse_placement(s.placement, (dir / s.file).string()));
  const std::size_t base_index = static_cast<std::size_t>(&base - shards.data());
  auto is_base_slice = [&](const std::string& path, const TensorPlacement& want) {
    auto in_base = saved[base_index].find(path);
    return in_base != saved[base_index].end() && in_base->second.global_shape == want.global_shape &&
           in_base->second.offsets == want.offsets && in_base->second.sizes == want.sizes;
  };
  OpenShard& base_shard = opened(base);
  torch_layer::TensorSet replaced;
  for (const auto& [path, want] : wanted) {
    if (saved[base_index].count(path) && !is_base_slice(path, want)) {
      replaced.insert(&saved_tensor(base_shard, path, base.file));
    }
  }
  State state = torch_layer::decode_state(*base_shard.source, base_shard.layout, LoadOptions{}, dir / base.file, replaced);
  if (static_cast<std::size_t>(rank) >= shards.size() || shards.size() != static_cast<std::size_t>(world)) {
    // The base shard is not this rank's own: its slices are not this rank's.
    for (const auto& placements : saved) {
      for (const auto& entry : placements) {
        if (!wanted.count(entry.first)) {
          throw InvalidArgument(fmt::format("{}: {} is sharded over {} ranks and this job has {}: say which slice "
                                            "this rank wants (load_latest_checkpoint(placements))",
                                            dir.string(), entry.first, shards.size(), world));
        }
      }
    }
  }
  if (wanted.empty()) return state;
  for (const auto& [path, want] : wanted) {
    if (is_base_slice(path, want)) continue;  // decoded above, as saved
    if (want.offsets.size() != want.global_shape.size() || want.sizes.size() != want.global_shape.size() ||
        want.global_shape.empty()) {
      throw InvalidArgument(fmt::format("wanted placement {}: give global_shape, offsets and sizes of one length", path));
    }
    std::optional<c10::ScalarType> dtype;
    for (std::size_t i = 0; i < shards.size() && !dtype; ++i) {
      auto it = saved[i].find(path);
      if (it == saved[i].end()) continue;
      if (it->second.global_shape != want.global_shape) {
        throw InvalidArgument(fmt::format("wanted placement {}: global shape [{}] is not the saved [{}]", path,
                                          fmt::join(want.global_shape, ", "), fmt::join(it->second.global_shape, ", ")));
      }
      dtype = torch_layer::scalar_type_of(saved_tensor(opened(shards[i]), path, shards[i].file).dtype());
    }
    if (!dtype) throw InvalidArgument(fmt::format("wanted placement {}: no saved shard holds a slice of it", path));
    at::Tensor out = at::empty(want.sizes, at::TensorOptions().dtype(*dtype));
    std::int64_t covered = 0;
    for (std::size_t i = 0; i < shards.size(); ++i) {
      auto it = saved[i].find(path);
      if (it != saved[i].end()) covered += copy_overlap(opened(shards[i]), shards[i].file, path, it->second, want, out);
    }
    if (covered != out.numel()) {
      throw FormatError(ErrorCode::format, fmt::format("{}: the saved shards cover {} of the {} elements asked for",
                                                       path, covered, out.numel()));
    }
    state = with_value(state, split_path(path), 0, out);
  }
  return state;
}

// Every sharded tensor of a checkpoint, whole (what one process asks for).
Placements whole(const std::vector<ShardReport>& shards, const std::filesystem::path& dir) {
  // A placement's global shape is allocated whole here: it must not claim more elements
  // than the shards hold bytes (a manifest is hash-checked, but not trusted to be sane).
  __int128 bytes = 0;
  for (const auto& s : shards) bytes += s.size;
  Placements all;
  for (const auto& s : shards) {
    for (const auto& [path, p] : parse_placement(s.placement, (dir / s.file).string())) {
      __int128 elements = 1;
      for (auto size : p.global_shape) elements = std::min<__int128>(elements * size, __int128{1} << 62);
      if (elements > bytes) {
        throw FormatError(ErrorCode::format, fmt::format("{}: {}'s global shape has more elements than its shards "
                                                         "hold bytes", (dir / s.file).string(), path),
                          dir / s.file);
      }
      all[path] = TensorPlacement{p.global_shape, std::vector<std::int64_t>(p.global_shape.size(), 0), p.global_shape};
    }
  }
  return all;
}

std::string random_id() {
  std::random_device device;
  return fmt::format("{:08x}", std::uniform_int_distribution<std::uint32_t>()(device));
}

std::string first_line(const std::exception& error) {
  std::string what = error.what();
  return what.substr(0, what.find('\n'));
}

// A collective call: ckpt's errors pass as they are; what the c10d store throws (a
// TCPStore hosted by a rank that died: "Connection reset by peer") becomes a
// DistributedError naming the directory.
template <typename Fn>
auto collective(const std::filesystem::path& dir, Fn&& fn) -> decltype(fn()) {
  try {
    return fn();
  } catch (const Error&) {
    throw;
  } catch (const std::exception& error) {
    throw DistributedError(ErrorCode::io,
                           fmt::format("{}: the c10d store failed during a collective call (a TCPStore lives in "
                                       "the rank that hosts it: did that rank die?): {}",
                                       dir.string(), first_line(error)),
                           dir);
  }
}

// Every rank, as it finishes with a round (construction, save or load), counts itself out;
// the last deletes the round's keys. Never throws: a store that failed is the round's
// error to report, not this.
class Leaving {
 public:
  Leaving(c10d::Store& store, std::string prefix, int world, std::vector<std::string> keys)
      : store_(store), prefix_(std::move(prefix)), world_(world), keys_(std::move(keys)) {}
  ~Leaving() {
    try {
      if (store_.add(prefix_ + "left", 1) < world_) return;
      for (const auto& key : keys_) store_.deleteKey(key);
      store_.deleteKey(prefix_ + "left");
    } catch (const std::exception&) {
    }
  }
  Leaving(const Leaving&) = delete;
  Leaving& operator=(const Leaving&) = delete;

 private:
  c10d::Store& store_;
  std::string prefix_;
  int world_;
  std::vector<std::string> keys_;
};

std::vector<std::string> plus(std::vector<std::string> keys, std::string key) {
  keys.push_back(std::move(key));
  return keys;
}

}  // namespace

class DistributedCheckpointManager::Impl {
 public:
  Impl(std::filesystem::path dir, c10::intrusive_ptr<c10d::ProcessGroup> pg, c10::intrusive_ptr<c10d::Store> store,
       DistributedOptions options)
      : dir_(std::move(dir)), pg_(std::move(pg)), options_(std::move(options)), kv_(store), raw_(std::move(store)) {
    if (!pg_ || !raw_) throw InvalidArgument("DistributedCheckpointManager needs a process group and its store");
    rank_ = pg_->getRank();
    world_ = pg_->getSize();
    const std::int64_t n = raw_->add(fmt::format("ckpt/opens/{}", rank_), 1);
    const std::string key = fmt::format("ckpt/open/{}/run", n);
    Leaving leaving(*raw_, fmt::format("ckpt/open/{}/", n), world_, {key});
    const auto deadline = Clock::now() + options_.timeout;
    if (rank_ == 0) {
      try {
        std::filesystem::create_directories(dir_);
        manager_ = std::make_unique<CheckpointManager>(dir_, c10::kCPU, options_.max_to_keep, options_.store);
      } catch (const std::exception& error) {
        kv_.set(key, "error " + first_line(error));
        throw;
      }
      run_ = random_id();
      kv_.set(key, "ok " + run_);
      return;
    }
    while (true) {
      if (auto answer = kv_.try_get(key)) {
        if (answer->rfind("ok ", 0) == 0) {
          run_ = answer->substr(3);
          return;
        }
        throw DistributedError(ErrorCode::io, fmt::format("{}: rank 0 could not open it: {}", dir_.string(),
                                                          answer->substr(answer->find(' ') + 1)), dir_);
      }
      if (Clock::now() > deadline) {
        throw DistributedError(ErrorCode::io, fmt::format("{}: rank 0 did not open it within {} ms", dir_.string(),
                                                          options_.timeout.count()), dir_);
      }
      std::this_thread::sleep_for(kPoll);
    }
  }

  // Every call takes its turn (the next number, its part in the round) whatever failed
  // before, so that ranks stay paired even when they raise a failure at different calls
  // (one rank's wait(), a rank that gave up on rank 0's decision). A save does its work,
  // then raises the earlier save's failure, if any (as CheckpointManager's interrupt
  // save does); a load raises it instead, in its turn (see load()).

  // A save, synchronous.
  CheckpointRecord save(CheckpointKind kind, std::optional<std::int64_t> epoch, std::optional<double> metric,
                        const State& state, const Placements& placements) {
    finish_in_flight();
    Save job = prepare(kind, epoch, metric, state, placements, nullptr);
    auto record = run(job);
    raise_failure();
    return record;
  }

  // An asynchronous save: the snapshot first (while the save in flight still runs), then
  // that save's end, then this save on the manager's thread, then the earlier failure.
  void save_async(CheckpointKind kind, std::optional<std::int64_t> epoch, std::optional<double> metric,
                  const State& state, const Placements& placements, Snapshot snapshot) {
    auto job = std::make_shared<Save>(prepare(kind, epoch, metric, state, placements,
                                              snapshot == Snapshot::copy ? &staging() : nullptr));
    finish_in_flight();
    auto work = [this, job] {
      struct Release {  // the snapshot's buffers are free for the next copy, also after a failure
        Save& job;
        ~Release() { job.state = State{}; }
      } release{*job};
      collective(dir_, [&] { run(*job); });
    };
    try {
      in_flight_ = std::async(std::launch::async, work);
    } catch (...) {  // no thread (or memory) to be had: this save runs here, failing as one in flight would
      std::promise<void> done;
      try {
        work();
        done.set_value();
      } catch (...) {
        done.set_exception(std::current_exception());
      }
      in_flight_ = done.get_future();
    }
    raise_failure();
  }

  // Waits for the save in flight; raises its failure if not raised yet.
  void settle() {
    finish_in_flight();
    raise_failure();
  }

  ~Impl() {
    finish_in_flight();
    if (failed_) {
      try {
        std::rethrow_exception(failed_);
      } catch (const std::exception& error) {
        log::write(spdlog::level::err, "{}: an asynchronous save failed and was never raised: {}", dir_.string(),
                   error.what());
      }
    }
  }

  std::optional<State> load(CheckpointKind which, const Placements& wanted) {
    finish_in_flight();
    const std::uint64_t seq = ++seq_;
    const std::string prefix = fmt::format("ckpt/{}/load-{}/", run_, seq);
    const auto deadline = Clock::now() + options_.timeout;
    CommitRound round(kv_, prefix + "round/", rank_, world_);
    Leaving leaving(*raw_, prefix, world_, plus(round.keys(), prefix + "plan"));
    if (failed_) {
      // This rank raises an earlier save's failure instead of loading, in its turn: the
      // load fails on every rank at this call (none resumes alone), naming this rank.
      const std::string why = fmt::format("rank {} raised an earlier save's failure instead", rank_);
      try {
        if (rank_ == 0) {
          kv_.set(prefix + "plan", "error\n" + why);
        } else {
          ShardReport failed;
          failed.rank = rank_;
          failed.ok = false;
          failed.error = why;
          round.report(failed);
        }
      } catch (const std::exception&) {  // a store that failed: the earlier failure is still the one to raise
      }
      raise_failure();
    }
    std::optional<State> state;
    std::string plan;
    std::string local_error;
    if (rank_ == 0) {
      try {
        State decoded;
        auto read = [&](PayloadSource& source, const CheckpointRecord& record) {
          decoded = torch_layer::decode(source, LoadOptions{}, dir_ / record.file);
        };
        auto& store = manager_->store();
        auto record = which == CheckpointKind::best ? store.load_best(read) : store.load_latest(read);
        if (!record) {
          plan = "none";
        } else if (is_manifest(decoded)) {
          plan = "sharded\n" + distributed::encode_reports(shards_of_manifest(decoded, dir_ / record->file));
        } else {
          ShardReport whole_file;
          whole_file.file = record->file;
          whole_file.size = record->size;
          whole_file.hash = record->hash;
          whole_file.hash_algo = record->hash_algo;
          plan = "replicated\n" + distributed::encode_report(whole_file);
          state = std::move(decoded);
        }
      } catch (const std::exception& error) {
        plan = "error\n" + first_line(error);
      }
      kv_.set(prefix + "plan", plan);
    } else {
      while (true) {
        if (auto got = kv_.try_get(prefix + "plan")) {
          plan = *got;
          break;
        }
        if (Clock::now() > deadline + options_.grace) {
          throw DistributedError(ErrorCode::io, fmt::format("{}: rank 0 did not say what to load within {} ms",
                                                            dir_.string(), (options_.timeout + options_.grace).count()),
                                 dir_);
        }
        std::this_thread::sleep_for(kPoll);
      }
    }
    const std::string kind = plan.substr(0, plan.find('\n'));
    const std::string body = plan.find('\n') == std::string::npos ? "" : plan.substr(plan.find('\n') + 1);
    // "none" still takes the round below: a rank that raised an earlier failure in its turn
    // fails it, so no rank starts afresh while another stops.
    if (kind == "error") {
      throw DistributedError(ErrorCode::io, fmt::format("{}: rank 0 could not load: {}", dir_.string(), body), dir_);
    }
    try {
      auto fs = options_.store.file_system ? options_.store.file_system : FileSystem::posix();
      if (kind == "sharded") {
        auto shards = distributed::decode_reports(body);
        if (wanted.empty() && static_cast<int>(shards.size()) != world_) {
          throw InvalidArgument(fmt::format("{}: saved by {} ranks, loaded by {}: say which slices this rank wants "
                                            "(load_latest_checkpoint(placements))",
                                            dir_.string(), shards.size(), world_));
        }
        state = assemble(*fs, dir_, shards, rank_, world_, wanted);
      } else if (kind == "replicated" && !wanted.empty()) {
        throw InvalidArgument(fmt::format("{}: the checkpoint to load is not sharded (a replicated or single-process "
                                          "save): load it without placements", dir_.string()));
      } else if (kind == "replicated" && rank_ != 0) {
        ShardReport file = distributed::decode_report(body);
        HashAlgorithm algorithm;
        if (!io::parse_hash_algorithm(file.hash_algo, algorithm)) throw std::invalid_argument("unknown hash " + file.hash_algo);
        io::FileSource source(*fs, dir_ / file.file, io::Hasher::create(algorithm));
        State decoded = torch_layer::decode(source, LoadOptions{}, dir_ / file.file);
        if (source.size() != file.size || source.finish() != file.hash) {
          throw CorruptError(ErrorCode::corrupt, fmt::format("{}: does not match the hash rank 0 verified (replaced "
                                                             "since?)", (dir_ / file.file).string()),
                             dir_ / file.file);
        }
        state = std::move(decoded);
      }
    } catch (const std::exception& error) {
      local_error = first_line(error);
      state.reset();
    }
    // All ranks resume, or none does.
    ShardReport done;
    done.rank = rank_;
    done.ok = local_error.empty();
    done.error = local_error;
    round.report(done);
    std::optional<distributed::Decision> decision;
    if (rank_ == 0) {
      auto collected = round.collect(deadline + options_.grace);
      decision = collected.aborted ? collected.aborted : std::optional<distributed::Decision>({true, {}});
      if (!collected.aborted) round.publish(*decision);
    } else {
      decision = round.await_decision(deadline + 2 * options_.grace);
    }
    if (!decision) {
      throw DistributedError(ErrorCode::io, fmt::format("{}: rank 0 did not confirm the load within {} ms",
                                                        dir_.string(), (options_.timeout + 2 * options_.grace).count()),
                             dir_);
    }
    if (!decision->commit) {
      throw DistributedError(ErrorCode::io, fmt::format("{}: the load failed: {}", dir_.string(), decision->reason), dir_);
    }
    return state;
  }

  std::filesystem::path dir_;
  int rank_ = 0;
  int world_ = 1;
  std::unique_ptr<CheckpointManager> manager_;

 private:
  void finish_in_flight() {
    if (!in_flight_.valid()) return;
    try {
      in_flight_.get();
    } catch (...) {
      failed_ = std::current_exception();
    }
  }

  // Raises the failure of the last asynchronous save once, if there is one.
  void raise_failure() {
    if (failed_) std::rethrow_exception(std::exchange(failed_, nullptr));
  }

  torch_layer::StagingPool& staging() {
    if (!staging_) staging_ = std::make_unique<torch_layer::StagingPool>();
    return *staging_;
  }

  // One save: what the caller's thread takes of the state, then the commit (run()).
  struct Save {
    CheckpointKind kind;
    std::optional<std::int64_t> epoch;
    std::optional<double> metric;
    State state;            // what this rank writes: sharded, its shard; replicated, rank 0's
    std::string placement;  // sharded: its placements, completed and as JSON
    std::string error;      // why this rank cannot save (reported in the round: the save fails)
  };

  Save prepare(CheckpointKind kind, std::optional<std::int64_t> epoch, std::optional<double> metric,
               const State& state, const Placements& placements, torch_layer::StagingPool* staging) {
    Save job{kind, epoch, metric, {}, {}, {}};
    try {
      if (options_.mode == DistributedMode::replicated) {
        if (rank_ == 0) job.state = staging ? staging->copy(state) : state;
        return job;
      }
      Placements completed;
      State own = shard_state(state, placements, completed);
      job.state = staging ? staging->copy(own) : std::move(own);
      job.placement = placement_json(completed);
    } catch (const std::exception& error) {
      job.error = first_line(error);
    }
    return job;
  }

  // The commit of one save, on the caller's thread or the manager's. Every save takes the
  // next number on every rank, whatever happens to it.
  CheckpointRecord run(Save& job) {
    const std::uint64_t seq = ++seq_;
    const std::string token = fmt::format("{}-{}", run_, seq);
    const std::string prefix = fmt::format("ckpt/{}/{}/", run_, seq);
    const std::string manifest = names::checkpoint_file(job.kind, job.epoch);
    const auto deadline = Clock::now() + options_.timeout;
    CommitRound round(kv_, prefix, rank_, world_);
    Leaving leaving(*raw_, prefix, world_, plus(round.keys(), prefix + "record"));
    if (options_.mode == DistributedMode::replicated) return save_replicated(job, round, prefix, deadline);

    ShardReport report;
    report.rank = rank_;
    report.file = names::shard_file(manifest, rank_, world_, token);
    try {
      if (!job.error.empty()) throw InvalidArgument(job.error);
      auto payload = torch_layer::encode(job.state, dir_ / report.file);
      auto fs = options_.store.file_system ? options_.store.file_system : FileSystem::posix();
      io::require_free_space(*fs, dir_, dir_ / report.file, payload.size_hint);
      ShardRecord shard = distributed::write_shard(*fs, dir_, report.file, rank_, world_,
                                                   options_.store.hash_algorithm, payload.write);
      report.size = shard.size;
      report.hash = shard.hash;
      report.hash_algo = shard.hash_algo;
      report.block_size = shard.block_size;
      report.block_hashes = shard.block_hashes;
      report.placement = job.placement;
      distributed::step("shard_written");
    } catch (const std::exception& error) {
      report.ok = false;
      report.error = first_line(error);
    }
    round.report(report);
    if (rank_ != 0) return await_commit(round, prefix, deadline, manifest);

    auto collected = round.collect(deadline);
    if (collected.aborted) {
      throw DistributedError(ErrorCode::io, fmt::format("{}: the save of {} was aborted: {}", dir_.string(), manifest,
                                                        collected.aborted->reason), dir_ / manifest);
    }
    distributed::step("reports_collected");
    CheckpointRecord record;
    try {
      check_tiling(collected.reports);
      State manifest_state = State::from_generic_dict(manifest_of(collected.reports, token).toGenericDict());
      auto payload = torch_layer::encode(manifest_state, dir_ / manifest);
      SaveRequest request = torch_layer::describe(job.state, job.kind, job.epoch, job.metric, payload.size_hint);
      for (const auto& r : collected.reports) request.shards.push_back(record_of(r, world_));
      record = manager_->store().save(request, payload.write);
    } catch (const std::exception& error) {
      round.publish({false, fmt::format("rank 0 could not commit it: {}", first_line(error))});
      throw;
    }
    publish_commit(round, prefix, record);
    return record;
  }

  CheckpointRecord save_replicated(Save& job, CommitRound& round, const std::string& prefix,
                                   Clock::time_point deadline) {
    const std::string manifest = names::checkpoint_file(job.kind, job.epoch);
    if (rank_ != 0) return await_commit(round, prefix, deadline, manifest);
    CheckpointRecord record;
    try {
      if (!job.error.empty()) throw InvalidArgument(job.error);
      switch (job.kind) {
        case CheckpointKind::best: record = manager_->save_best_model(job.state, job.metric.value_or(0)); break;
        case CheckpointKind::epoch: record = manager_->save_epoch_checkpoint(job.state, *job.epoch, job.metric); break;
        case CheckpointKind::interrupt: record = manager_->save_interrupt_checkpoint(job.state); break;
      }
    } catch (const std::exception& error) {
      round.publish({false, fmt::format("rank 0 could not save it: {}", first_line(error))});
      throw;
    }
    publish_commit(round, prefix, record);
    return record;
  }

  // Rank 0, once its commit returned: the row for the other ranks (id, commit order and
  // file, read back by await_commit), then the decision they wait for.
  void publish_commit(CommitRound& round, const std::string& prefix, const CheckpointRecord& record) {
    kv_.set(prefix + "record", fmt::format("{} {} {}", record.id, record.commit_seq, record.file));
    round.publish({true, {}});
  }

  CheckpointRecord await_commit(CommitRound& round, const std::string& prefix, Clock::time_point deadline,
                                const std::string& manifest) {
    auto decision = round.await_decision(deadline + options_.grace);
    if (!decision) {
      throw DistributedError(ErrorCode::io,
                             fmt::format("{}: rank 0 published no decision on the save of {} within {} ms; it is not "
                                         "committed unless rank 0 committed it before it stopped answering (its next "
                                         "open of the directory decides)",
                                         dir_.string(), manifest, (options_.timeout + options_.grace).count()),
                             dir_ / manifest);
    }
    if (!decision->commit) {
      throw DistributedError(ErrorCode::io, fmt::format("{}: the save of {} was aborted: {}", dir_.string(), manifest,
                                                        decision->reason), dir_ / manifest);
    }
    CheckpointRecord record;
    record.file = manifest;
    record.status = "committed";
    if (auto text = kv_.try_get(prefix + "record")) {
      std::istringstream in(*text);
      in >> record.id >> record.commit_seq >> record.file;
    }
    if (auto parsed = names::parse_checkpoint_file(record.file)) {
      record.kind = parsed->kind;
      record.epoch = parsed->epoch;
    }
    return record;
  }

  c10::intrusive_ptr<c10d::ProcessGroup> pg_;
  DistributedOptions options_;
  distributed::C10dKeyValueStore kv_;
  c10::intrusive_ptr<c10d::Store> raw_;
  std::string run_;
  std::uint64_t seq_ = 0;
  // The asynchronous save in flight (at most one), and the failure of the last one until
  // it is raised.
  std::future<void> in_flight_;
  std::exception_ptr failed_;
  std::unique_ptr<torch_layer::StagingPool> staging_;  // Snapshot::copy's buffers
};

DistributedCheckpointManager::DistributedCheckpointManager(std::filesystem::path save_dir,
                                                           c10::intrusive_ptr<c10d::ProcessGroup> process_group,
                                                           c10::intrusive_ptr<c10d::Store> store,
                                                           DistributedOptions options)
    : impl_(collective(save_dir, [&] {
        return std::make_unique<Impl>(save_dir, std::move(process_group), std::move(store), std::move(options));
      })) {}
DistributedCheckpointManager::~DistributedCheckpointManager() = default;

CheckpointRecord DistributedCheckpointManager::save_epoch_checkpoint(const State& state, std::int64_t epoch,
                                                                     std::optional<double> metric,
                                                                     const Placements& placements) {
  if (epoch < 0) throw InvalidArgument(fmt::format("epoch must be >= 0, got {}", epoch));
  return collective(impl_->dir_, [&] { return impl_->save(CheckpointKind::epoch, epoch, metric, state, placements); });
}
CheckpointRecord DistributedCheckpointManager::save_best_model(const State& state, double metric,
                                                               const Placements& placements) {
  return collective(impl_->dir_, [&] { return impl_->save(CheckpointKind::best, std::nullopt, metric, state, placements); });
}
CheckpointRecord DistributedCheckpointManager::save_interrupt_checkpoint(const State& state,
                                                                         const Placements& placements) {
  return collective(impl_->dir_,
                    [&] { return impl_->save(CheckpointKind::interrupt, std::nullopt, std::nullopt, state, placements); });
}
void DistributedCheckpointManager::save_epoch_checkpoint_async(const State& state, std::int64_t epoch,
                                                               std::optional<double> metric,
                                                               const Placements& placements, Snapshot snapshot) {
  if (epoch < 0) throw InvalidArgument(fmt::format("epoch must be >= 0, got {}", epoch));
  impl_->save_async(CheckpointKind::epoch, epoch, metric, state, placements, snapshot);
}
void DistributedCheckpointManager::save_best_model_async(const State& state, double metric,
                                                         const Placements& placements, Snapshot snapshot) {
  impl_->save_async(CheckpointKind::best, std::nullopt, metric, state, placements, snapshot);
}
void DistributedCheckpointManager::wait() { impl_->settle(); }
std::optional<State> DistributedCheckpointManager::load_latest_checkpoint(const Placements& wanted) {
  return collective(impl_->dir_, [&] { return impl_->load(CheckpointKind::epoch, wanted); });
}
std::optional<State> DistributedCheckpointManager::load_best_model(const Placements& wanted) {
  return collective(impl_->dir_, [&] { return impl_->load(CheckpointKind::best, wanted); });
}
int DistributedCheckpointManager::rank() const noexcept { return impl_->rank_; }
int DistributedCheckpointManager::world_size() const noexcept { return impl_->world_; }
CheckpointStore* DistributedCheckpointManager::store() noexcept {
  return impl_->manager_ ? &impl_->manager_->store() : nullptr;
}

std::optional<State> load_full_state(const std::filesystem::path& dir, CheckpointKind which) {
  CheckpointReader reader(dir);
  auto loaded = which == CheckpointKind::best ? reader.load_best() : reader.load_latest();
  if (!loaded) return std::nullopt;
  const auto& payload = loaded->payload;
  struct Bytes final : PayloadSource {
    const std::vector<char>& bytes;
    explicit Bytes(const std::vector<char>& b) : bytes(b) {}
    std::uint64_t size() const override { return bytes.size(); }
    void read_at(std::uint64_t offset, void* buffer, std::size_t n) override {
      if (offset > bytes.size() || n > bytes.size() - offset) throw std::out_of_range("read past the end");
      std::memcpy(buffer, bytes.data() + offset, n);
    }
  } source(payload.bytes);
  State decoded = torch_layer::decode(source, LoadOptions{}, dir / payload.record.file);
  if (!is_manifest(decoded)) return decoded;
  auto shards = shards_of_manifest(decoded, dir / payload.record.file);
  return assemble(*FileSystem::posix(), dir, shards, 0, 1, whole(shards, dir));
}

}  // namespace ckpt
