// Text from a file made safe to print (placeholder until the shared helper lands).
#pragma once

#include <string>
#include <string_view>

namespace ckpt::format {

std::string printable(std::string_view text);
std::string json_safe(std::string_view text);

}  // namespace ckpt::format
