// Draws a run's history as an SVG: the metric of each epoch checkpoint over epochs, with
// new bests, interrupts and resumes marked.
#pragma once

#include <string>
#include <vector>

#include "ckpt/reader.hpp"

namespace ckpt::cli {

std::string history_svg(const std::vector<CheckpointRecord>& rows, const std::vector<CheckpointEvent>& events,
                        const std::string& title);

}  // namespace ckpt::cli
