// torch_layer::decode_state's placeholders (torch/payload_codec.hpp), which a resharded
// distributed load uses to leave unread the slices it replaces from other shards.
#include "support/torch_pch.hpp"

#include <fstream>

#include "ckpt/file_system.hpp"
#include "io/file_source.hpp"
#include "support/test_dir.hpp"
#include "torch/payload_codec.hpp"

using namespace ckpt;
using namespace ckpt::test;

namespace {

const format::TensorInfo& tensor_info(const format::CheckpointLayout& layout, const std::string& key) {
  for (const auto& [k, v] : format::distinct_entries(*layout.root)) {
    if (k->text() == key) return *v->tensor();
  }
  throw std::out_of_range(key);
}

}  // namespace

TEST_CASE("decode_state leaves a placeholder's storage unread, unless a tensor it decodes shares it", "[format]") {
  TestDir dir("codec");
  const auto path = dir / "state.pth";
  const at::Tensor a = at::arange(4096, at::kFloat), b = at::arange(8192, at::kDouble);
  save_file(State{{"a", a}, {"a_head", a.narrow(0, 0, 16)}, {"b", b}, {"epoch", std::int64_t{3}}}, path);

  // Damage b's record (the CRC-32 check of an ordinary decode notices).
  format::CheckpointLayout layout;
  {
    io::FileSource source(*FileSystem::posix(), path);
    layout = torch_layer::layout_of(source, path);
  }
  const auto& b_record = layout.locations.at(tensor_info(layout, "b").storage->key);
  {
    std::fstream file(path, std::ios::in | std::ios::out | std::ios::binary);
    file.seekp(static_cast<std::streamoff>(b_record.offset + 100));
    file.put('\x5a');
  }
  io::FileSource source(*FileSystem::posix(), path);
  CHECK_THROWS_AS(torch_layer::decode(source, LoadOptions{}, path), FormatError);

  // b and a_head as placeholders: b is never read (an empty double tensor), a_head is
  // decoded since a shares its storage.
  layout = torch_layer::layout_of(source, path);
  torch_layer::TensorSet placeholders{&tensor_info(layout, "b"), &tensor_info(layout, "a_head")};
  State state = torch_layer::decode_state(source, layout, LoadOptions{}, path, placeholders);
  CHECK(state.get<at::Tensor>("b").numel() == 0);
  CHECK(state.get<at::Tensor>("b").scalar_type() == at::kDouble);
  CHECK(at::equal(state.get<at::Tensor>("a"), a));
  CHECK(at::equal(state.get<at::Tensor>("a_head"), a.narrow(0, 0, 16)));
  CHECK(state.get<std::int64_t>("epoch") == 3);
}
