// The index schema migrations, compiled in from migrations/*.sql (see
// cmake/EmbedMigrations.cmake). Migration N takes PRAGMA user_version from N-1 to N.
#pragma once

#include <cstddef>

namespace ckpt::index {

struct Migration {
  int number;
  const char* name;
  const char* sql;
};

extern const Migration kMigrations[];
extern const std::size_t kMigrationCount;

}  // namespace ckpt::index
