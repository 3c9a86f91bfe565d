#pragma once

#define CKPT_VERSION_MAJOR 0
#define CKPT_VERSION_MINOR 1
#define CKPT_VERSION_PATCH 0
#define CKPT_VERSION_STRING "0.1.0"

namespace ckpt {
// The library's version, "MAJOR.MINOR.PATCH".
const char* version() noexcept;
// The newest index schema (PRAGMA user_version) this build can read and write.
int index_schema_version() noexcept;
}  // namespace ckpt
