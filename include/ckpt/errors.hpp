// Errors thrown by ckpt.
//
// Every failure throws a subclass of ckpt::Error. Its message names the file involved
// and the cause ("<dir>/best_model.pth: No space left on device"), so a log line alone
// is enough to act on. Expected absence (nothing to load) is not an error: loads return
// std::nullopt. Foreign exceptions are caught where ckpt reads or writes a file and
// rethrown as one of these, naming it: SQLite's as IndexError, libtorch's (c10::Error)
// while a payload is encoded or decoded as FormatError. The training-state helpers
// (training.hpp) work on tensors only and let libtorch's own errors through.
#pragma once

#include <filesystem>
#include <stdexcept>
#include <string>
#include <string_view>

namespace ckpt {

enum class ErrorCode {
  io,                // an operating-system call failed (errno in os_error())
  disk_full,         // ENOSPC, or the free-space check before a save
  permission_denied, // EACCES / EPERM / EROFS
  corrupt,           // a payload or index does not match what was committed
  format,            // a file is not a valid checkpoint payload
  locked,            // another process holds the directory's writer lock
  needs_recovery,    // a save failed past its point of no return; reopen the directory
  schema_too_new,    // the index was written by a newer ckpt
  index,             // SQLite reported an error on the index
  invalid_argument,  // a caller passed an unusable value
  key,               // State: a key is missing
  type,              // State: a value has another type than asked for
};
// The enumerator's name ("disk_full"): what `ckpt --json` reports as an error's "code".
std::string_view to_string(ErrorCode code) noexcept;

class Error : public std::runtime_error {
 public:
  Error(ErrorCode code, const std::string& message, std::filesystem::path path = {}, int os_error = 0)
      : std::runtime_error(message), code_(code), path_(std::move(path)), os_error_(os_error) {}

  ErrorCode code() const noexcept { return code_; }
  // The file or directory the error is about; empty when none is.
  const std::filesystem::path& path() const noexcept { return path_; }
  // errno of the failed system call, 0 when the error did not come from one.
  int os_error() const noexcept { return os_error_; }

 private:
  ErrorCode code_;
  std::filesystem::path path_;
  int os_error_;
};

// An operating-system call failed: disk full, permission denied, I/O error.
class IoError : public Error {
 public:
  using Error::Error;
};

// A payload's bytes do not match the hash committed in the index, or the index itself
// is damaged.
class CorruptError : public Error {
 public:
  using Error::Error;
};

// A file is not a readable checkpoint payload (not a zip archive, unknown pickle, ...).
class FormatError : public Error {
 public:
  using Error::Error;
};

// Another process (named in the message) holds the directory's writer lock.
class LockedError : public Error {
 public:
  using Error::Error;
};

// The index could not be used: written by a newer ckpt, or SQLite failed.
class IndexError : public Error {
 public:
  using Error::Error;
};

class InvalidArgument : public Error {
 public:
  InvalidArgument(const std::string& message, std::filesystem::path path = {})
      : Error(ErrorCode::invalid_argument, message, std::move(path)) {}
};

// State::at / State::get on a key that is not there, or with the wrong type.
class StateError : public Error {
 public:
  using Error::Error;
};

}  // namespace ckpt
