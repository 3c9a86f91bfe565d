// Text from a file (dict keys, string values, record names) made safe to print.
//
// A checkpoint file is untrusted input: its strings can hold terminal escape sequences
// (ESC [2J clears the screen, ESC ]0;...BEL sets the window title), carriage returns that
// overwrite what was printed, and bytes that are not UTF-8 (which make a JSON encoder
// throw or emit invalid JSON). Torch-free, standard library only.
#pragma once

#include <string>
#include <string_view>

namespace ckpt::format {

// For a terminal or a log: valid UTF-8 passes through, except
//   - a backslash, written `\\`, so the result is unambiguous;
//   - \n, \r, \t, written `\n`, `\r`, `\t`;
//   - the other C0 controls (below 0x20) and DEL (0x7f), written `\xNN` (ESC is `\x1b`);
//   - the C1 controls U+0080..U+009F (CSI is U+009B), written `\u00NN`;
// and every byte that is not part of a valid UTF-8 sequence (a stray continuation byte,
// an overlong form, a surrogate, a code point above U+10FFFF, a truncated sequence) is
// written `\xNN`. The result holds no control character and is valid UTF-8.
std::string printable(std::string_view text);

// printable() for a message that may quote text already passed through printable() (an
// exception's what()): the same, but a backslash is left as it is, so an escape in the
// quoted part is not doubled. printable_message(printable(x)) == printable(x).
std::string printable_message(std::string_view text);

// For JSON output: valid UTF-8 unchanged (escaping control characters is the JSON
// encoder's job), each byte that is not part of a valid UTF-8 sequence replaced by the
// four characters `\xNN`. The result is valid UTF-8.
std::string json_safe(std::string_view text);

}  // namespace ckpt::format
