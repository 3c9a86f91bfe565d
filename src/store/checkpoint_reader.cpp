#include "ckpt/reader.hpp"

#include <algorithm>
#include <chrono>
#include <thread>
#include <fmt/format.h>

#include "ckpt/errors.hpp"
#include "index/index.hpp"
#include "io/hasher.hpp"
#include "store/file_names.hpp"
#include "store/payload_probe.hpp"

namespace ckpt {

struct CheckpointReader::Impl {
  std::filesystem::path dir;
  std::shared_ptr<FileSystem> fs;
  std::unique_ptr<index::Index> index;
};

CheckpointReader::CheckpointReader(std::filesystem::path dir, std::shared_ptr<FileSystem> file_system)
    : impl_(std::make_unique<Impl>()) {
  impl_->dir = std::move(dir);
  impl_->fs = file_system ? std::move(file_system) : FileSystem::posix();
  const std::filesystem::path index_path = impl_->dir / names::kIndex;
  if (!impl_->fs->file_size(index_path)) {
    throw IndexError(ErrorCode::index,
                     fmt::format("{}: no {} (not a ckpt checkpoint directory?)", impl_->dir.string(), names::kIndex),
                     index_path);
  }
  impl_->index = std::make_unique<index::Index>(index_path, index::Index::Mode::read_only);
}

CheckpointReader::~CheckpointReader() = default;
CheckpointReader::CheckpointReader(CheckpointReader&&) noexcept = default;
CheckpointReader& CheckpointReader::operator=(CheckpointReader&&) noexcept = default;

const std::filesystem::path& CheckpointReader::dir() const noexcept { return impl_->dir; }

std::vector<CheckpointRecord> CheckpointReader::checkpoints(bool include_history) const {
  return include_history ? impl_->index->all_rows() : impl_->index->live_rows();
}

std::optional<CheckpointRecord> CheckpointReader::latest() const { return impl_->index->resume_candidate(); }
std::optional<CheckpointRecord> CheckpointReader::best() const { return impl_->index->best(); }

std::vector<CheckpointEvent> CheckpointReader::events() const {
  std::vector<CheckpointEvent> events;
  for (auto& event : impl_->index->events()) {
    events.push_back(CheckpointEvent{event.id, std::move(event.at), std::move(event.event), event.checkpoint_id,
                                     std::move(event.detail)});
  }
  return events;
}

std::vector<NamedMetric> CheckpointReader::metrics() const { return impl_->index->metrics(); }

std::vector<CheckpointRecord> CheckpointReader::gc_plan(std::optional<int> keep) const {
  const int limit = keep.value_or(max_to_keep().value_or(StoreOptions{}.max_to_keep));
  if (limit < 0) {
    throw InvalidArgument(fmt::format("{}: keep must be >= 0 (0 keeps all), got {}", impl_->dir.string(), limit), impl_->dir);
  }
  if (limit == 0) return {};
  return impl_->index->epochs_beyond(limit);
}

std::optional<int> CheckpointReader::max_to_keep() const {
  auto value = impl_->index->setting("max_to_keep");
  if (!value) return std::nullopt;
  try {
    return std::stoi(*value);
  } catch (const std::exception&) {
    return std::nullopt;
  }
}

std::string CheckpointReader::integrity_check() const { return impl_->index->integrity_check(); }

std::vector<VerifyResult> CheckpointReader::verify(const std::function<void(std::uint64_t, std::uint64_t)>& progress) const {
  auto rows = impl_->index->live_rows();
  std::uint64_t total = 0;
  for (const auto& row : rows) total += row.size;
  std::uint64_t done = 0;
  std::vector<VerifyResult> results;
  for (auto row : rows) {
    VerifyResult result = verify_one(row);
    // A trainer may be replacing or rotating out the file while it is read (a reader
    // never takes the lock): between its rename and its commit the name holds the
    // bytes of a pending row. So a mismatch is checked again against what the index
    // says now, a few times, before it is reported; a checkpoint no longer committed is
    // skipped.
    bool gone = false;
    for (int retry = 0; !result.ok && retry < 5; ++retry) {
      if (retry > 0) std::this_thread::sleep_for(std::chrono::milliseconds(20));
      bool in_flight = false;
      for (const auto& pending : impl_->index->rows_for(row.file, index::status::kPending)) {
        if (verify_one(pending).ok) in_flight = true;
      }
      if (in_flight) {
        result.ok = true;
        result.problem.clear();
        break;
      }
      auto current = impl_->index->live_row_for(row.file);
      if (!current) {
        gone = true;
        break;
      }
      row = *current;
      result = verify_one(row);
    }
    done += row.size;
    if (progress) progress(done, std::max(total, done));
    if (!gone) results.push_back(std::move(result));
  }
  return results;
}

VerifyResult CheckpointReader::verify_one(const CheckpointRecord& row) const {
  VerifyResult result{row, false, {}};
  const std::filesystem::path path = impl_->dir / row.file;
  HashAlgorithm algorithm;
  auto size = impl_->fs->file_size(path);
  if (!size) {
    result.problem = "missing";
  } else if (*size != row.size) {
    result.problem = fmt::format("size {} bytes, index recorded {}", *size, row.size);
  } else if (!io::parse_hash_algorithm(row.hash_algo, algorithm)) {
    result.problem = fmt::format("unknown hash algorithm '{}'", row.hash_algo);
  } else {
    try {
      // One pass: the hash, and the restricted reader's verdict on the structure (what
      // load_file would say); a matching hash vouches for the records' bytes.
      auto check = store::check_payload(*impl_->fs, path, algorithm, store::CheckDepth::structure);
      if (check.digest.hash != row.hash) {
        result.problem = fmt::format("{} hash {}, index recorded {}", row.hash_algo, check.digest.hash, row.hash);
      } else if (!check.problem.empty()) {
        result.problem = fmt::format("would not load: {}", check.problem);
      } else {
        result.ok = true;
      }
    } catch (const IoError& error) {
      result.problem = error.what();  // removed or unreadable while being read
    }
  }
  return result;
}

}  // namespace ckpt

// ---- stubs (step 0: the API the watch helper builds on; implemented next) ----
namespace ckpt {
struct CheckpointPin::State {
  std::int64_t id = 0;
  std::int64_t checkpoint_id = 0;
  std::string holder;
  std::string expires_at;
};
CheckpointPin::CheckpointPin() noexcept = default;
CheckpointPin::CheckpointPin(std::unique_ptr<State> state) noexcept : state_(std::move(state)) {}
CheckpointPin::~CheckpointPin() = default;
CheckpointPin::CheckpointPin(CheckpointPin&&) noexcept = default;
CheckpointPin& CheckpointPin::operator=(CheckpointPin&&) noexcept = default;
bool CheckpointPin::active() const noexcept { return state_ != nullptr; }
std::int64_t CheckpointPin::id() const noexcept { return state_ ? state_->id : 0; }
std::int64_t CheckpointPin::checkpoint_id() const noexcept { return state_ ? state_->checkpoint_id : 0; }
const std::string& CheckpointPin::holder() const noexcept {
  static const std::string empty;
  return state_ ? state_->holder : empty;
}
const std::string& CheckpointPin::expires_at() const noexcept {
  static const std::string empty;
  return state_ ? state_->expires_at : empty;
}
void CheckpointPin::renew(std::chrono::milliseconds) { throw std::logic_error("not implemented yet"); }
void CheckpointPin::release() { state_.reset(); }

CheckpointReader::CheckpointReader(std::filesystem::path dir, ReaderOptions options)
    : CheckpointReader(std::move(dir), std::move(options.file_system)) {}
std::optional<ReaderLoad> CheckpointReader::load_latest() const { throw std::logic_error("not implemented yet"); }
std::optional<ReaderLoad> CheckpointReader::load_best() const { throw std::logic_error("not implemented yet"); }
std::optional<ReaderLoad> CheckpointReader::load(std::int64_t) const { throw std::logic_error("not implemented yet"); }
CheckpointPin CheckpointReader::pin(std::int64_t, std::chrono::milliseconds, std::string) const {
  throw std::logic_error("not implemented yet");
}
std::optional<CheckpointRecord> CheckpointReader::wait_for_new(std::int64_t, std::chrono::milliseconds,
                                                               const WaitCondition&) const {
  throw std::logic_error("not implemented yet");
}
bool CheckpointReader::read_only_access() const { return false; }
}  // namespace ckpt
