// Verified loads: the resume candidate and the best model, hashed in the same pass as the
// caller's reader runs, with a fallback to the next candidate when a file is missing or
// corrupt (retired: marked and quarantined) or cannot be read (left as it is).
#include "store/store_impl.hpp"

#include <exception>
#include <fmt/format.h>
#include <functional>

#include "io/file_source.hpp"
#include "io/hasher.hpp"
#include "log/log.hpp"

namespace ckpt {

using namespace store_files;

std::optional<CheckpointRecord> CheckpointStore::Impl::load_latest(const PayloadReader& read_payload,
                                                                   const PayloadReader& apply) {
  ensure_resolved();
  std::optional<std::int64_t> before;  // after a candidate that could not be read: the next older one
  while (auto candidate = index_->resume_candidate(before)) {
    before = candidate->commit_seq;
    const Loaded loaded = try_load(*candidate, read_payload);
    if (loaded == Loaded::replaced) {
      before.reset();  // the adopted save is now the most recent commit
      continue;
    }
    if (loaded != Loaded::yes) continue;  // next in commit order
    // Before anything is recorded: a load that failed while applying did not resume.
    if (apply) apply_verified(*candidate, apply);
    Transaction transaction(*index_, Durability::deferred);
    if (candidate->kind == CheckpointKind::interrupt && candidate->status == status::kCommitted) {
      // Consumed, not deleted: if this run dies before its next save, the next resume
      // still finds it. The next epoch or interrupt save deletes it.
      index_->set_status(candidate->id, status::kConsumed);
      candidate->status = std::string(status::kConsumed);
    }
    index_->add_event("resumed_from", candidate->id, describe(*candidate));
    transaction.commit();
    log::write(level_enum::info, "resuming from {}", (dir_ / candidate->file).string());
    return candidate;
  }
  return std::nullopt;
}

std::optional<CheckpointRecord> CheckpointStore::Impl::load_best(const PayloadReader& read_payload,
                                                                 const PayloadReader& apply) {
  ensure_resolved();
  while (auto candidate = index_->best()) {
    switch (try_load(*candidate, read_payload)) {
      case Loaded::yes:
        if (apply) apply_verified(*candidate, apply);
        return candidate;
      case Loaded::replaced: continue;  // another writer's best model, now the committed one
      case Loaded::retired: continue;  // quarantined or missing: nothing else is the best
      case Loaded::unreadable:
        // Not corruption: the file stays, and so does its row. There is no other best
        // to fall back to, so the caller hears why.
        throw IoError(ErrorCode::io,
                      fmt::format("{}: the best model could not be read: {}", (dir_ / candidate->file).string(),
                                  read_error_->what()),
                      dir_ / candidate->file, read_error_->os_error());
    }
  }
  return std::nullopt;
}

// Runs the reader on a committed row's file while hashing it. A missing file or a
// hash mismatch retires the row (and quarantines the file). A read error is not
// corruption: it is logged and nothing is changed.
CheckpointStore::Impl::Loaded CheckpointStore::Impl::try_load(const CheckpointRecord& record, const PayloadReader& read_payload) {
  const std::filesystem::path path = dir_ / record.file;
  HashAlgorithm algorithm = options_.hash_algorithm;
  if (!io::parse_hash_algorithm(record.hash_algo, algorithm)) {
    throw IndexError(ErrorCode::index, fmt::format("{}: unknown hash algorithm '{}' for {}",
                                                   index_->path().string(), record.hash_algo, record.file),
                     index_->path());
  }
  // The read phase: only its errors are read errors. What is decided from it (missing,
  // corrupt) is done after it, so that a failure to quarantine is not taken for one.
  std::optional<std::uint64_t> size;
  std::string hash;
  std::exception_ptr decode_error;
  try {
    size = fs_->file_size(path);
    if (size && *size == record.size) {
      io::FileSource source(*fs_, path, io::Hasher::create(algorithm));
      // A damaged file usually breaks the decoder before the hash can tell: decide by
      // the hash, then report the decoder's error only for a file that is what was
      // committed. Whatever the decoder throws (a format error, a type error deep in
      // the payload, bad_alloc on a damaged length), except a read error, which is not
      // the bytes' fault.
      try {
        read_payload(source, record);
      } catch (const IoError&) {
        throw;
      } catch (...) {
        decode_error = std::current_exception();
      }
      hash = source.finish();
    }
  } catch (const Error& error) {  // IoError, or the file shrank while it was read
    return unreadable(path, error);
  }
  if (!size) {
    mark_missing(record, "file not found");
    return Loaded::retired;
  }
  if (*size != record.size || hash != record.hash) {
    std::optional<store::PayloadCheck> external;
    try {
      if (matches_pending(record.file)) return unreadable_pending(record);
      external = external_save(record.file);
    } catch (const Error& error) {
      return unreadable(path, error);
    }
    if (external) {
      adopt_external(record, *external);
      return Loaded::replaced;
    }
    quarantine(record.file, record.id, *size != record.size
                           ? fmt::format("corrupt: {} bytes, index recorded {}", *size, record.size)
                           : fmt::format("corrupt: {} hash {}, index recorded {}", record.hash_algo, hash, record.hash));
    return Loaded::retired;
  }
  if (decode_error) std::rethrow_exception(decode_error);
  return Loaded::yes;
}

// The second pass of a verify-then-apply load: the file whose hash just matched its row,
// opened again and not hashed (the applier checks what it reads, e.g. each record's
// CRC-32). Whatever it throws passes through: the file verified, so nothing is retired.
void CheckpointStore::Impl::apply_verified(const CheckpointRecord& record, const PayloadReader& apply) {
  io::FileSource source(*fs_, dir_ / record.file);
  apply(source, record);
}

CheckpointStore::Impl::Loaded CheckpointStore::Impl::unreadable(const std::filesystem::path& path, const Error& error) {
  read_error_ = IoError(ErrorCode::io, error.what(), error.path(), error.os_error());
  log::write(level_enum::err, "{}: could not be read ({}); left in place, not treated as corrupt", path.string(),
             error.what());
  return Loaded::unreadable;
}

// Whether `file` holds the bytes of a pending row (a save not yet resolved): then it is
// not corrupt, and must not be quarantined.
bool CheckpointStore::Impl::matches_pending(const std::string& file) {
  for (const auto& pending : index_->rows_for(file, status::kPending)) {
    if (rename_happened(pending)) return true;
  }
  return false;
}

CheckpointStore::Impl::Loaded CheckpointStore::Impl::unreadable_pending(const CheckpointRecord& record) {
  read_error_ = IoError(ErrorCode::needs_recovery,
                        fmt::format("{}: holds the bytes of an unfinished save, not of checkpoint {}; reopen the "
                                    "directory to recover it",
                                    (dir_ / record.file).string(), record.id),
                        dir_ / record.file);
  log::write(level_enum::err, "{}", read_error_->what());
  return Loaded::unreadable;
}

namespace {
// Collects the payload's bytes; the store's hash check runs after it.
std::optional<VerifiedPayload> with_bytes(
    const std::function<std::optional<CheckpointRecord>(const PayloadReader&)>& load) {
  std::vector<char> bytes;
  auto record = load([&](PayloadSource& source, const CheckpointRecord&) {
    bytes.resize(source.size());
    source.read_at(0, bytes.data(), bytes.size());
  });
  if (!record) return std::nullopt;
  return VerifiedPayload{std::move(*record), std::move(bytes)};
}
}  // namespace

std::optional<CheckpointRecord> CheckpointStore::load_latest(const PayloadReader& read_payload) {
  return impl_->serialized([&] { return impl_->load_latest(read_payload); });
}
std::optional<CheckpointRecord> CheckpointStore::load_best(const PayloadReader& read_payload) {
  return impl_->serialized([&] { return impl_->load_best(read_payload); });
}
std::optional<CheckpointRecord> CheckpointStore::load_latest(const PayloadReader& verify, const PayloadReader& apply) {
  return impl_->serialized([&] { return impl_->load_latest(verify, apply); });
}
std::optional<CheckpointRecord> CheckpointStore::load_best(const PayloadReader& verify, const PayloadReader& apply) {
  return impl_->serialized([&] { return impl_->load_best(verify, apply); });
}
std::optional<VerifiedPayload> CheckpointStore::load_latest() {
  return with_bytes([this](const PayloadReader& reader) {
    return impl_->serialized([&] { return impl_->load_latest(reader); });
  });
}
std::optional<VerifiedPayload> CheckpointStore::load_best() {
  return with_bytes([this](const PayloadReader& reader) {
    return impl_->serialized([&] { return impl_->load_best(reader); });
  });
}

}  // namespace ckpt
