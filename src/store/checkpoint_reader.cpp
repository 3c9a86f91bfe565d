#include "ckpt/reader.hpp"

#include <algorithm>
#include <chrono>
#include <thread>
#include <fmt/format.h>
#include <unistd.h>

#include "ckpt/errors.hpp"
#include "index/index.hpp"
#include "io/hasher.hpp"
#include "log/log.hpp"
#include "store/file_names.hpp"
#include "store/payload_probe.hpp"
#include "store/retention_plan.hpp"

namespace ckpt {

struct CheckpointReader::Impl {
  std::filesystem::path dir;
  std::shared_ptr<FileSystem> fs;
  std::unique_ptr<index::Index> index;
  bool immutable = false;

  // One candidate of a verified load: its bytes when the whole file hashed to the row,
  // else why not. `gone`: the row is no longer live (rotated out or replaced meanwhile).
  struct Attempt {
    std::optional<VerifiedPayload> payload;
    std::string problem;
    bool gone = false;
    std::optional<IoError> io_error;  // the file could not be read (not a mismatch)
  };
  Attempt read_verified(const CheckpointRecord& row) const;
  // Verified: moves the bytes into `load`, true. Else records the candidate as skipped.
  bool take(Attempt& attempt, CheckpointRecord& candidate, ReaderLoad& load) const;
};

namespace {
// Whether SQLite can open the index read-only beside a writer as this user: it needs to
// create or write the -shm file (so the directory writable), or, since SQLite 3.22, an
// existing readable -shm and -wal (docs/durability.md, "Readers").
bool can_share(const std::filesystem::path& dir, const std::filesystem::path& index_path) {
  if (::access(dir.c_str(), W_OK) == 0) return true;
  const std::string base = index_path.string();
  return ::access((base + "-shm").c_str(), R_OK) == 0 && ::access((base + "-wal").c_str(), R_OK) == 0;
}

std::string default_holder() {
  char host[256] = {};
  if (::gethostname(host, sizeof host - 1) != 0) host[0] = 0;
  return fmt::format("pid {} on {}", ::getpid(), host[0] ? host : "unknown host");
}
}  // namespace

CheckpointReader::CheckpointReader(std::filesystem::path dir, std::shared_ptr<FileSystem> file_system)
    : CheckpointReader(std::move(dir), ReaderOptions{ReaderOptions::Access::automatic, std::move(file_system)}) {}

CheckpointReader::CheckpointReader(std::filesystem::path dir, ReaderOptions options) : impl_(std::make_unique<Impl>()) {
  impl_->dir = std::move(dir);
  impl_->fs = options.file_system ? std::move(options.file_system) : FileSystem::posix();
  const std::filesystem::path index_path = impl_->dir / names::kIndex;
  if (!impl_->fs->file_size(index_path)) {
    throw IndexError(ErrorCode::index,
                     fmt::format("{}: no {} (not a ckpt checkpoint directory?)", impl_->dir.string(), names::kIndex),
                     index_path);
  }
  using Access = ReaderOptions::Access;
  impl_->immutable = options.access == Access::immutable ||
                     (options.access == Access::automatic && !can_share(impl_->dir, index_path));
  impl_->index = std::make_unique<index::Index>(
      index_path, impl_->immutable ? index::Index::Mode::immutable : index::Index::Mode::read_only);
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

std::vector<NamedMetric> CheckpointReader::metrics(std::optional<std::int64_t> checkpoint_id) const {
  return impl_->index->metrics(checkpoint_id);
}

std::vector<CheckpointRecord> CheckpointReader::commits_after(std::int64_t after_commit_seq, int limit) const {
  if (limit <= 0) {
    throw InvalidArgument(fmt::format("{}: commits_after: limit must be > 0, got {}", impl_->dir.string(), limit),
                          impl_->dir);
  }
  return impl_->index->commits_after(after_commit_seq, limit);
}

std::vector<CheckpointRecord> CheckpointReader::gc_plan(std::optional<int> keep) const {
  RetentionPolicy policy = retention();
  if (keep) policy.max_to_keep = *keep;
  std::vector<CheckpointRecord> removed;
  for (auto& decision : retention_plan(policy)) {
    if (!decision.kept()) removed.push_back(std::move(decision.record));
  }
  return removed;
}

std::vector<RetentionDecision> CheckpointReader::retention_plan(const std::optional<RetentionPolicy>& policy) const {
  const RetentionPolicy applied = policy ? *policy : retention();
  validate(applied, impl_->dir.string());
  return store::plan_retention(*impl_->index, applied);
}

std::optional<int> CheckpointReader::max_to_keep() const {
  auto value = impl_->index->setting(index::settings::kMaxToKeep);
  if (!value) return std::nullopt;
  try {
    return std::stoi(*value);
  } catch (const std::exception&) {
    return std::nullopt;
  }
}

RetentionPolicy CheckpointReader::retention() const {
  RetentionPolicy policy;
  policy.max_to_keep = max_to_keep().value_or(StoreOptions{}.max_to_keep);
  const auto text = impl_->index->setting(index::settings::kRetention);
  if (!text) return policy;
  try {
    policy.rules = parse_retention_rules(*text);
  } catch (const InvalidArgument& error) {
    throw IndexError(ErrorCode::index,
                     fmt::format("{}: the retention rules the index records do not read ({}); a newer ckpt may "
                                 "have written them",
                                 impl_->index->path().string(), error.what()),
                     impl_->index->path());
  }
  return policy;
}

std::optional<CheckpointRecord> CheckpointReader::best_by(std::string_view metric, MetricMode mode) const {
  return impl_->index->best_by(metric, mode == MetricMode::min);
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



CheckpointReader::Impl::Attempt CheckpointReader::Impl::read_verified(const CheckpointRecord& row) const {
  Attempt attempt;
  const std::filesystem::path path = dir / row.file;
  HashAlgorithm algorithm;
  try {
    auto size = fs->file_size(path);
    if (!size) {
      attempt.problem = fmt::format("{}: missing", row.file);
    } else if (*size != row.size) {
      attempt.problem = fmt::format("{}: {} bytes, index recorded {}", row.file, *size, row.size);
    } else if (!io::parse_hash_algorithm(row.hash_algo, algorithm)) {
      attempt.problem = fmt::format("{}: unknown hash algorithm '{}'", row.file, row.hash_algo);
    } else {
      // The bytes returned are the bytes hashed: one read, so a file replaced between a
      // hash pass and a read pass cannot slip through.
      std::vector<char> bytes(static_cast<std::size_t>(*size));
      auto file = fs->open_for_read(path);
      std::size_t done = 0;
      while (done < bytes.size()) {
        std::size_t n = file->read(bytes.data() + done, bytes.size() - done);
        if (n == 0) break;
        done += n;
      }
      auto hasher = io::Hasher::create(algorithm);
      hasher->update(bytes.data(), done);
      const std::string hash = hasher->hex_digest();
      if (done != bytes.size()) {
        attempt.problem = fmt::format("{}: shrank to {} bytes while read, index recorded {}", row.file, done, row.size);
      } else if (hash != row.hash) {
        attempt.problem = fmt::format("{}: {} hash {}, index recorded {}", row.file, row.hash_algo, hash, row.hash);
      } else {
        attempt.payload = VerifiedPayload{row, std::move(bytes)};
        return attempt;
      }
    }
  } catch (const IoError& error) {
    attempt.problem = fmt::format("{}: could not be read: {}", row.file, error.what());
    attempt.io_error = error;
  }
  // Rotated out, retired or replaced by a newer commit since the query: not damage.
  auto current = index->find(row.id);
  if (!current || (current->status != index::status::kCommitted && current->status != index::status::kConsumed)) {
    attempt.gone = true;
    attempt.problem = fmt::format("{}: rotated out or replaced while it was read ({})", row.file, attempt.problem);
  } else if (!index->rows_for(row.file, index::status::kPending).empty()) {
    attempt.problem += " (a save of that name is in progress)";
  }
  return attempt;
}

bool CheckpointReader::Impl::take(Attempt& attempt, CheckpointRecord& candidate, ReaderLoad& load) const {
  if (attempt.payload) {
    load.payload = std::move(*attempt.payload);
    return true;
  }
  log::write(spdlog::level::warn, "{}: skipped {}", dir.string(), attempt.problem);
  load.skipped.push_back(SkippedCheckpoint{std::move(candidate), attempt.problem});
  return false;
}

namespace {
constexpr int kMaxRestarts = 16;  // a writer rotating faster than a reader reads: give up, not spin
}

std::optional<ReaderLoad> CheckpointReader::load_latest(std::vector<SkippedCheckpoint>* skipped_when_none) const {
  ReaderLoad load;
  auto skipped_already = [&](std::int64_t id) {
    return std::any_of(load.skipped.begin(), load.skipped.end(),
                       [&](const SkippedCheckpoint& s) { return s.record.id == id; });
  };
  std::optional<std::int64_t> before;
  int restarts = 0;
  while (auto candidate = impl_->index->resume_candidate(before)) {
    before = candidate->commit_seq;
    if (skipped_already(candidate->id)) continue;
    auto attempt = impl_->read_verified(*candidate);
    if (impl_->take(attempt, *candidate, load)) return load;
    // What replaced it may be newer than every candidate left: start again from the top.
    if (attempt.gone && restarts++ < kMaxRestarts) before.reset();
  }
  if (skipped_when_none) *skipped_when_none = std::move(load.skipped);
  return std::nullopt;
}

std::optional<ReaderLoad> CheckpointReader::load_best(std::vector<SkippedCheckpoint>* skipped_when_none) const {
  ReaderLoad load;
  for (int restarts = 0; restarts <= kMaxRestarts; ++restarts) {
    auto candidate = impl_->index->best();
    if (!candidate) break;
    auto attempt = impl_->read_verified(*candidate);
    if (impl_->take(attempt, *candidate, load)) return load;
    if (!attempt.gone) break;  // nothing else is the best
  }
  if (skipped_when_none) *skipped_when_none = std::move(load.skipped);
  return std::nullopt;
}

std::optional<ReaderLoad> CheckpointReader::load(std::int64_t checkpoint_id) const {
  auto row = impl_->index->find(checkpoint_id);
  if (!row || (row->status != index::status::kCommitted && row->status != index::status::kConsumed)) {
    return std::nullopt;
  }
  auto attempt = impl_->read_verified(*row);
  if (attempt.payload) return ReaderLoad{std::move(*attempt.payload), {}};
  if (attempt.gone) return std::nullopt;
  if (attempt.io_error) {  // unreadable is not damaged: the caller may try again
    throw IoError(attempt.io_error->code(),
                  fmt::format("{}: checkpoint {}: {}", impl_->dir.string(), checkpoint_id, attempt.problem),
                  impl_->dir / row->file, attempt.io_error->os_error());
  }
  throw CorruptError(ErrorCode::corrupt,
                     fmt::format("{}: checkpoint {} does not match its index row: {}", impl_->dir.string(),
                                 checkpoint_id, attempt.problem),
                     impl_->dir / row->file);
}

std::optional<CheckpointRecord> CheckpointReader::wait_for_new(std::int64_t after_commit_seq,
                                                               std::chrono::milliseconds timeout,
                                                               const WaitCondition& condition) const {
  using Clock = std::chrono::steady_clock;
  const auto deadline = Clock::now() + std::max(timeout, std::chrono::milliseconds(0));
  std::chrono::milliseconds interval(10);
  std::int64_t after = after_commit_seq;
  for (;;) {
    // Drain what is committed now (in pages) before sleeping.
    for (;;) {
      auto rows = impl_->index->committed_after(after, 64);
      for (auto& row : rows) {
        after = row.commit_seq;
        if (condition.kind && row.kind != *condition.kind) continue;
        if (condition.accept && !condition.accept(row, impl_->index->metrics(row.id))) continue;
        return std::move(row);
      }
      if (rows.size() < 64) break;
    }
    const auto now = Clock::now();
    if (now >= deadline) return std::nullopt;
    std::this_thread::sleep_for(std::min<Clock::duration>(interval, deadline - now));
    interval = std::min(interval * 2, std::chrono::milliseconds(200));
  }
}

bool CheckpointReader::read_only_access() const { return impl_->immutable; }

// ---- pins ----

struct CheckpointPin::State {
  std::filesystem::path index_path;
  std::int64_t id = 0;
  std::int64_t checkpoint_id = 0;
  std::string holder;
  std::string expires_at;
};

namespace {
// Each pin operation opens its own read-write connection and closes it at once: the
// reader's connection stays read-only, and no connection is held open to compete with the
// writer's (SQLite's busy timeout waits out the writer's short transactions).
template <typename Fn>
auto with_pins(const std::filesystem::path& index_path, Fn&& fn, const char* what = "pins") {
  try {
    index::Index pins(index_path, index::Index::Mode::pins);
    return fn(pins);
  } catch (const IndexError& error) {
    if (error.code() != ErrorCode::permission_denied) throw;
    throw IoError(ErrorCode::permission_denied,
                  fmt::format("{}: {} need write access to {} and its directory: {}", index_path.string(),
                              what, names::kIndex, error.what()),
                  index_path);
  }
}

void check_ttl(std::chrono::milliseconds ttl, const std::filesystem::path& where) {
  // At most about 31 years: SQLite's times end at year 9999, and a clock's nanoseconds at 292 years.
  constexpr std::int64_t kMaxTtlMs = 1'000'000'000'000;
  if (ttl.count() <= 0 || ttl.count() > kMaxTtlMs) {
    throw InvalidArgument(fmt::format("{}: a pin's ttl must be > 0 ms and at most {} ms, got {}", where.string(),
                                      kMaxTtlMs, ttl.count()),
                          where);
  }
}
}  // namespace

CheckpointPin CheckpointReader::pin(std::int64_t checkpoint_id, std::chrono::milliseconds ttl, std::string holder) const {
  const std::filesystem::path index_path = impl_->dir / names::kIndex;
  check_ttl(ttl, index_path);
  if (holder.empty()) holder = default_holder();
  auto pin = with_pins(index_path, [&](index::Index& pins) { return pins.insert_pin(checkpoint_id, holder, ttl.count()); });
  if (!pin) {
    throw InvalidArgument(fmt::format("{}: cannot pin checkpoint {}: no committed or consumed checkpoint has that id "
                                      "(rotated out, retired, or never committed)",
                                      impl_->dir.string(), checkpoint_id),
                          impl_->dir);
  }
  auto state = std::make_unique<CheckpointPin::State>();
  state->index_path = index_path;
  state->id = pin->id;
  state->checkpoint_id = checkpoint_id;
  state->holder = std::move(holder);
  state->expires_at = std::move(pin->expires_at);
  return CheckpointPin(std::move(state));
}

CheckpointPin::CheckpointPin() noexcept = default;
CheckpointPin::CheckpointPin(std::unique_ptr<State> state) noexcept : state_(std::move(state)) {}
CheckpointPin::~CheckpointPin() {
  try {
    release();
  } catch (const std::exception& error) {
    // Never throws: the row then stops holding at its expiry.
    log::write(spdlog::level::warn, "pin {} of checkpoint {}: not released ({}); it lapses at {}", state_->id,
               state_->checkpoint_id, error.what(), state_->expires_at);
  }
}
CheckpointPin::CheckpointPin(CheckpointPin&&) noexcept = default;
CheckpointPin& CheckpointPin::operator=(CheckpointPin&& other) noexcept {
  if (this != &other) {
    CheckpointPin old(std::move(*this));  // releases the pin this one held
    state_ = std::move(other.state_);
  }
  return *this;
}
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

void CheckpointPin::renew(std::chrono::milliseconds ttl) {
  if (!state_) throw InvalidArgument("renew: the pin is not active (released or moved from)");
  check_ttl(ttl, state_->index_path);
  auto expires = with_pins(state_->index_path, [&](index::Index& pins) { return pins.renew_pin(state_->id, ttl.count()); });
  if (!expires) {
    throw IndexError(ErrorCode::index,
                     fmt::format("{}: pin {} of checkpoint {} is gone (it expired and a writer removed it); pin "
                                 "the checkpoint again",
                                 state_->index_path.string(), state_->id, state_->checkpoint_id),
                     state_->index_path);
  }
  state_->expires_at = std::move(*expires);
}

std::optional<std::int64_t> CheckpointReader::watch_cursor(const std::string& name) const {
  return impl_->index->watch_cursor(name);
}

bool CheckpointReader::move_watch_cursor(const std::string& name, std::optional<std::int64_t> from,
                                         std::int64_t to) const {
  return with_pins(impl_->dir / names::kIndex,
                   [&](index::Index& cursors) { return cursors.move_watch_cursor(name, from, to); }, "watch cursors");
}

void CheckpointPin::release() {
  if (!state_) return;
  with_pins(state_->index_path, [&](index::Index& pins) {
    pins.delete_pin(state_->id);
    return 0;
  });
  state_.reset();
}

}  // namespace ckpt
