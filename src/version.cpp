#include "ckpt/version.hpp"

#include "index/migrations.hpp"

namespace ckpt {

const char* version() noexcept { return CKPT_VERSION_STRING; }
int index_schema_version() noexcept { return static_cast<int>(index::kMigrationCount); }

}  // namespace ckpt
