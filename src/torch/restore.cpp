// Restore in place (ckpt/restore.hpp): verify the whole file against the target, then
// read each tensor record straight into the target's memory.
#include "torch/restore.hpp"

#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_strided.h>
#include <ATen/ops/from_blob.h>
#include <c10/core/CPUAllocator.h>
#include <c10/core/GradMode.h>
#include <c10/core/Storage.h>
#include <fmt/format.h>

#include <algorithm>
#include <optional>
#include <unordered_map>
#include <vector>

#include "ckpt/errors.hpp"
#include "format/checkpoint_format.hpp"
#include "format/zip_reader.hpp"
#include "io/file_source.hpp"
#include "log/log.hpp"
#include "torch/payload_codec.hpp"
#include "torch/state_loading.hpp"

namespace ckpt {

namespace torch_layer {

namespace {

using format::StorageLocation;
using format::TensorInfo;
using format::ValueKind;
using format::ValuePtr;

// Pass 1 reads every record through a buffer of at most this size.
constexpr std::size_t kStreamBuffer = 1 << 20;
// Records this small are kept from pass 1 (an optimizer's 0-d "step", a BatchNorm's
// num_batches_tracked): their values are needed to check the state (a step is read as a
// number), and a read each in pass 2 would cost more than the copy.
constexpr std::uint64_t kSmallRecord = 64;

bool contiguous(const TensorInfo& info) {
  std::int64_t expected = 1;
  for (std::size_t d = info.sizes.size(); d-- > 0;) {
    if (info.sizes[d] != 1 && info.strides[d] != expected) return false;
    expected *= info.sizes[d];
  }
  return true;
}

std::int64_t numel_of(const TensorInfo& info) {
  std::int64_t n = 1;
  for (auto size : info.sizes) n *= size;
  return n;
}

std::string shape_text(const std::vector<std::int64_t>& sizes) { return fmt::format("[{}]", fmt::join(sizes, ", ")); }

}  // namespace

struct InPlaceRestore::Plan {
  std::filesystem::path path;
  format::CheckpointLayout layout;
  std::uint64_t file_size = 0;
  // Placeholders (meta tensors) by their TensorImpl, and the view of the file each stands for.
  std::unordered_map<const c10::TensorImpl*, const TensorInfo*> placeholders;
  // The small records, read in pass 1.
  std::unordered_map<std::string, c10::Storage> small;
  // The converted entries: they hold every placeholder, so no TensorImpl in
  // `placeholders` is freed (and its address reused) while the plan lives.
  std::vector<c10::IValue> skeleton;
  ModuleLoad module;
  std::optional<OptimizerLoad> optimizer;
  State rest;
  bool applied = false;
};

InPlaceRestore::InPlaceRestore(const RestoreTarget& target, const RestoreOptions& options, c10::Device rest_device)
    : target_(target), options_(options), rest_device_(rest_device) {
  if (!target_.module) throw InvalidArgument("restore: RestoreTarget::module is required");
  if (target_.optimizer && target_.model_key.empty()) {
    throw InvalidArgument("restore: RestoreTarget::model_key is empty (the whole file is the module's state_dict), "
                          "so there is no optimizer entry to restore the optimizer from");
  }
}

InPlaceRestore::~InPlaceRestore() = default;

void InPlaceRestore::verify(PayloadSource& source, const std::filesystem::path& path) {
  plan_.reset();
  auto plan = std::make_unique<Plan>();
  plan->path = path;
  plan->file_size = source.size();
  try {
    plan->layout = layout_of(source, path);
    const format::CheckpointLayout& layout = plan->layout;

    // Every record once, in file order (so a hashing source hashes them as they pass),
    // through one bounded buffer; the small ones are kept.
    std::vector<std::pair<std::string, StorageLocation>> records(layout.locations.begin(), layout.locations.end());
    std::sort(records.begin(), records.end(), [](const auto& a, const auto& b) { return a.second.offset < b.second.offset; });
    std::uint64_t largest = 0;
    for (const auto& [key, location] : records) largest = std::max(largest, location.nbytes);
    std::vector<char> buffer(static_cast<std::size_t>(std::max<std::uint64_t>(1, std::min<std::uint64_t>(kStreamBuffer, largest))));
    for (const auto& [key, location] : records) {
      if (location.nbytes <= kSmallRecord) {
        c10::Storage storage(c10::Storage::use_byte_size_t(), location.nbytes, c10::GetCPUAllocator(), false);
        format::read_storage_record(source, key, location, static_cast<char*>(storage.data()), nullptr, path);
        plan->small.emplace(key, std::move(storage));
      } else {
        format::read_storage_record(source, key, location, nullptr, &buffer, path);
      }
    }

    // The top level: the model's and the optimizer's entries, and the rest.
    if (layout.root->kind() != ValueKind::dict) {
      throw FormatError(ErrorCode::format,
                        fmt::format("{}: payload holds a {}, not a dict of training state", path.string(),
                                    kind_name(layout.root->kind())),
                        path);
    }
    ValuePtr model_value, optimizer_value;
    std::vector<format::Entry> rest;
    std::vector<std::string> top_keys;
    if (target_.model_key.empty()) model_value = layout.root;
    for (const auto& entry : format::distinct_entries(*layout.root)) {
      if (entry.first->kind() != ValueKind::string) {
        throw FormatError(ErrorCode::format,
                          fmt::format("{}: a top-level key is a {}, not a string", path.string(),
                                      kind_name(entry.first->kind())),
                          path);
      }
      if (target_.model_key.empty()) continue;
      const std::string& key = entry.first->text();
      top_keys.push_back(key);
      if (key == target_.model_key) {
        model_value = entry.second;
      } else if (target_.optimizer && key == target_.optimizer_key) {
        optimizer_value = entry.second;
      } else {
        rest.push_back(entry);
      }
    }
    auto missing_entry = [&](const std::string& key) {
      return StateError(ErrorCode::key,
                        fmt::format("{}: restore: no '{}' entry in the checkpoint (its keys: {})", path.string(), key,
                                    fmt::join(top_keys, ", ")),
                        path);
    };
    if (!model_value) throw missing_entry(target_.model_key);
    if (target_.optimizer && !optimizer_value && options_.strict) throw missing_entry(target_.optimizer_key);

    // Placeholders: a meta tensor with the record's view, or a real one over a small record.
    DenseTensorFactory make_dense = [&](const TensorInfo& info, c10::ScalarType dtype) {
      const std::int64_t numel = numel_of(info);
      std::int64_t last = info.storage_offset;  // the highest element the view touches
      for (std::size_t d = 0; d < info.sizes.size(); ++d) {
        if (info.sizes[d] == 0 || info.strides[d] < 0 || info.storage_offset < 0) {
          if (info.sizes[d] == 0) break;
          throw FormatError(ErrorCode::format, "a tensor has a negative stride or offset");
        }
        // A hostile file's strides must not wrap the bound around: pass 2 reads by it.
        std::int64_t reach = 0;
        if (__builtin_mul_overflow(info.sizes[d] - 1, info.strides[d], &reach) ||
            __builtin_add_overflow(last, reach, &last)) {
          throw FormatError(ErrorCode::format,
                            fmt::format("a tensor of shape {} has strides beyond any storage", shape_text(info.sizes)));
        }
      }
      if (numel > 0 && static_cast<std::uint64_t>(last) >= info.storage->numel) {
        throw FormatError(ErrorCode::format,
                          fmt::format("a tensor of shape {} views past the end of storage record data/{}",
                                      shape_text(info.sizes), info.storage->key));
      }
      auto small = plan->small.find(info.storage->key);
      if (small != plan->small.end()) {
        at::Tensor tensor = at::empty({0}, at::TensorOptions().dtype(dtype));
        tensor.set_(small->second, info.storage_offset, info.sizes, info.strides);
        return tensor;
      }
      at::Tensor tensor = at::empty_strided(info.sizes, info.strides, at::TensorOptions().dtype(dtype).device(c10::kMeta));
      plan->placeholders.emplace(tensor.unsafeGetTensorImpl(), &info);
      return tensor;
    };
    std::vector<ValuePtr> roots{model_value};
    if (optimizer_value) roots.push_back(optimizer_value);
    plan->skeleton = decode_placeholders(layout, roots, make_dense);
    const std::vector<c10::IValue>& skeleton = plan->skeleton;
    auto as_state = [&](const c10::IValue& value, const std::string& key) {
      if (!value.isGenericDict()) {
        throw StateError(ErrorCode::type,
                         fmt::format("{}: restore: the '{}' entry is {}, not a state_dict", path.string(), key,
                                     state_detail::described(value)),
                         path);
      }
      return State::from_generic_dict(value.toGenericDict());
    };
    try {
      plan->module = plan_module_load(*target_.module, as_state(skeleton[0], target_.model_key), options_.strict);
      if (optimizer_value) {
        plan->optimizer = plan_optimizer_load(*target_.optimizer, as_state(skeleton[1], target_.optimizer_key));
      }
    } catch (const StateError& error) {
      const std::string prefix = path.string() + ": ";
      const std::string what = error.what();
      throw StateError(error.code(), what.rfind(prefix, 0) == 0 ? what : prefix + what, path);
    }
    if (target_.optimizer && !optimizer_value) {
      log::write(spdlog::level::warn, "{}: no '{}' entry: the optimizer was not restored", path.string(),
                 target_.optimizer_key);
    }
    // What the target gets must come from the file: a dense placeholder, or a small record;
    // the module's tensors and the optimizer's alike, all before anything is applied.
    auto require_dense = [&](const at::Tensor& source_tensor) {
      if (!source_tensor.defined()) return;
      if (!plan->placeholders.count(source_tensor.unsafeGetTensorImpl()) && source_tensor.is_meta()) {
        throw InvalidArgument(fmt::format("{}: restore: a tensor of the checkpoint is a meta tensor (no data); "
                                          "restore in place needs dense tensors (use load_file)",
                                          path.string()),
                              path);
      }
      if (source_tensor.layout() != c10::kStrided) {
        throw InvalidArgument(fmt::format("{}: restore: a tensor of the checkpoint is sparse; restore in place "
                                          "needs dense tensors (use load_file)",
                                          path.string()),
                              path);
      }
    };
    for (const auto& copy : plan->module.copies) require_dense(copy.second);
    if (plan->optimizer) {
      resolve_tensors(*target_.optimizer, *plan->optimizer,
                      [&](const at::Tensor& saved, const at::Tensor&, const at::Tensor&) {
                        require_dense(saved);
                        return saved;  // unchanged: apply resolves them
                      });
    }

    // The other entries, decoded as load_file does (their records were read above: from
    // the page cache now, and behind what a hashing source has hashed).
    if (!rest.empty()) {
      LoadOptions rest_options;
      rest_options.device = rest_device_;
      std::vector<ValuePtr> rest_roots;
      for (const auto& entry : rest) rest_roots.push_back(entry.second);
      std::vector<c10::IValue> values = decode_roots(source, layout, rest_roots, rest_options, path);
      for (std::size_t i = 0; i < rest.size(); ++i) plan->rest.set(rest[i].first->text(), std::move(values[i]));
    }
  } catch (const InvalidArgument&) {
    throw;
  } catch (const StateError&) {
    throw;
  } catch (...) {
    rethrow_named(path);
  }
  plan_ = std::move(plan);
}

void InPlaceRestore::apply(PayloadSource& source, const std::filesystem::path& path) {
  if (!plan_ || plan_->applied) throw InvalidArgument("restore: apply without a verified plan");
  Plan& plan = *plan_;
  plan.applied = true;
  if (source.size() != plan.file_size) {
    throw FormatError(ErrorCode::corrupt,
                      fmt::format("{}: changed after it was verified ({} bytes, {} when verified); nothing was "
                                  "restored",
                                  path.string(), source.size(), plan.file_size),
                      path);
  }
  struct Fill {
    at::Tensor destination;
    at::Tensor source;  // a placeholder, or a tensor over a small record
  };
  std::vector<Fill> fills;
  for (const auto& [destination, source_tensor] : plan.module.copies) fills.push_back({destination, source_tensor});
  std::size_t written = 0;  // tensors of the target already changed
  try {
    if (plan.optimizer) {
      // A state tensor the optimizer holds with the shape, dtype and device the result
      // needs is written in place; otherwise (a fresh optimizer has none) one is made.
      resolve_tensors(*target_.optimizer, *plan.optimizer,
                      [&](const at::Tensor& saved, const at::Tensor& parameter, const at::Tensor& current) {
                        at::Tensor destination = current;
                        if (!(current.defined() && current.sizes() == parameter.sizes() &&
                              current.dtype() == parameter.dtype() && current.device() == parameter.device() &&
                              current.layout() == c10::kStrided)) {
                          destination = at::empty(parameter.sizes(), parameter.options());
                        }
                        fills.push_back({destination, saved});
                        return destination;
                      });
    }
    // By record, in file order: records read directly or staged, and the small ones copied.
    struct Use {
      Fill* fill;
      const TensorInfo* info;
    };
    std::unordered_map<std::string, std::vector<Use>> by_record;
    std::vector<Fill*> copies;
    for (auto& fill : fills) {
      auto found = plan.placeholders.find(fill.source.unsafeGetTensorImpl());
      if (found == plan.placeholders.end()) {
        copies.push_back(&fill);
      } else {
        by_record[found->second->storage->key].push_back({&fill, found->second});
      }
    }
    std::vector<std::string> keys;
    for (const auto& [key, uses] : by_record) keys.push_back(key);
    const auto& locations = plan.layout.locations;
    std::sort(keys.begin(), keys.end(),
              [&](const std::string& a, const std::string& b) { return locations.at(a).offset < locations.at(b).offset; });
    c10::NoGradGuard no_grad;
    at::Tensor staging;  // one record-sized buffer, grown to the largest staged record
    for (const std::string& key : keys) {
      const StorageLocation& location = locations.at(key);
      const std::vector<Use>& uses = by_record.at(key);
      const TensorInfo& info = *uses.front().info;
      const at::Tensor& destination = uses.front().fill->destination;
      const std::size_t element = format::element_size(info.dtype());
      const bool direct = uses.size() == 1 && destination.is_cpu() && destination.is_contiguous() &&
                          destination.scalar_type() == scalar_type_of(info.dtype()) && info.storage_offset == 0 &&
                          contiguous(info) && static_cast<std::uint64_t>(numel_of(info)) * element == location.nbytes;
      if (direct) {
        ++written;
        format::read_storage_record(source, key, location, static_cast<char*>(destination.data_ptr()), nullptr, path);
        destination.unsafeGetTensorImpl()->bump_version();  // as an in-place copy_ would
        continue;
      }
      if (!staging.defined() || static_cast<std::uint64_t>(staging.numel()) < location.nbytes) {
        staging = at::Tensor();  // the old one goes first: one staging buffer at a time
        staging = at::empty({static_cast<std::int64_t>(location.nbytes)}, at::TensorOptions().dtype(c10::kByte));
      }
      auto* bytes = static_cast<char*>(staging.data_ptr());
      format::read_storage_record(source, key, location, bytes, nullptr, path);
      for (const Use& use : uses) {
        at::Tensor view = at::from_blob(bytes + use.info->storage_offset * element, use.info->sizes, use.info->strides,
                                        at::TensorOptions().dtype(scalar_type_of(use.info->dtype())));
        ++written;
        use.fill->destination.copy_(view);
      }
    }
    for (Fill* fill : copies) {
      ++written;
      fill->destination.copy_(fill->source);
    }
  } catch (...) {
    const std::string state = written == 0 ? "nothing was restored"
                                           : fmt::format("the target is partly restored ({} of {} tensors written)",
                                                         written, fills.size());
    try {
      throw;
    } catch (const IoError& error) {
      throw IoError(error.code(), fmt::format("{}: restore failed: {}; {}", path.string(), error.what(), state), path,
                    error.os_error());
    } catch (const Error& error) {
      throw FormatError(error.code(), fmt::format("{}: restore failed: {}; {}", path.string(), error.what(), state),
                        path);
    } catch (const c10::Error& error) {
      throw FormatError(ErrorCode::format,
                        fmt::format("{}: restore failed: {}; {}", path.string(), error.what_without_backtrace(), state),
                        path);
    } catch (const std::exception& error) {
      throw FormatError(ErrorCode::format, fmt::format("{}: restore failed: {}; {}", path.string(), error.what(), state),
                        path);
    }
  }
  // Last, after every record was read and checked: the optimizer's groups and states.
  if (plan.optimizer) install(*target_.optimizer, std::move(*plan.optimizer));
}

RestoreResult InPlaceRestore::take_result() {
  RestoreResult result;
  result.rest = std::move(plan_->rest);
  result.module = std::move(plan_->module.report);
  plan_.reset();
  return result;
}

}  // namespace torch_layer

RestoreResult restore_file(const std::filesystem::path& path, const RestoreTarget& target, const RestoreOptions& options) {
  torch_layer::InPlaceRestore restore(target, options, c10::kCPU);
  std::shared_ptr<FileSystem> fs = options.file_system ? options.file_system : FileSystem::posix();
  {
    io::FileSource source(*fs, path);
    restore.verify(source, path);
  }
  io::FileSource source(*fs, path);
  restore.apply(source, path);
  return restore.take_result();
}

}  // namespace ckpt
