// Umbrella header: everything a trainer uses.
#pragma once

#include "ckpt/errors.hpp"
#include "ckpt/file_system.hpp"
#include "ckpt/inspect.hpp"
#include "ckpt/interrupt.hpp"
#include "ckpt/layout.hpp"
#include "ckpt/manager.hpp"
#include "ckpt/payload_io.hpp"
#include "ckpt/read_only_manager.hpp"
#include "ckpt/reader.hpp"
#include "ckpt/restore.hpp"
#include "ckpt/serialization.hpp"
#include "ckpt/state.hpp"
#include "ckpt/store.hpp"
#include "ckpt/training.hpp"
#include "ckpt/version.hpp"
