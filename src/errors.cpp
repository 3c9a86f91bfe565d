#include "ckpt/errors.hpp"

namespace ckpt {

std::string_view to_string(ErrorCode code) noexcept {
  switch (code) {
    case ErrorCode::io: return "io";
    case ErrorCode::disk_full: return "disk_full";
    case ErrorCode::permission_denied: return "permission_denied";
    case ErrorCode::corrupt: return "corrupt";
    case ErrorCode::format: return "format";
    case ErrorCode::locked: return "locked";
    case ErrorCode::needs_recovery: return "needs_recovery";
    case ErrorCode::schema_too_new: return "schema_too_new";
    case ErrorCode::index: return "index";
    case ErrorCode::invalid_argument: return "invalid_argument";
    case ErrorCode::key: return "key";
    case ErrorCode::type: return "type";
  }
  return "unknown";
}

}  // namespace ckpt
