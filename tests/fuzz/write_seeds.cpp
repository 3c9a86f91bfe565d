// Writes seeds produced by ckpt's own writer (format::prepare_checkpoint, ZipWriter) into
// a directory: a small state, every dtype, views sharing a storage, nesting, and the
// same archive with every ZIP64 structure forced (ZipWriter's test threshold).
//
//   build-fuzz/write_seeds tests/fuzz/corpus
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "format/checkpoint_format.hpp"
#include "format/zip_writer.hpp"
#include "support/memory_source.hpp"

using namespace ckpt::format;
using ckpt::test::StringSink;

namespace {

std::vector<std::vector<unsigned char>> g_buffers;  // storage bytes, alive until exit

std::shared_ptr<StorageInfo> storage(std::vector<std::shared_ptr<StorageInfo>>& all, DType dtype, std::uint64_t numel) {
  auto info = std::make_shared<StorageInfo>();
  info->key = std::to_string(all.size());
  info->dtype = dtype;
  info->numel = numel;
  g_buffers.emplace_back(numel * element_size(dtype));
  for (std::size_t i = 0; i < g_buffers.back().size(); ++i) g_buffers.back()[i] = static_cast<unsigned char>(i * 7);
  info->data = g_buffers.back().data();
  all.push_back(info);
  return info;
}

ValuePtr tensor(std::shared_ptr<StorageInfo> storage, std::int64_t offset, std::vector<std::int64_t> sizes,
                std::vector<std::int64_t> strides, bool parameter = false) {
  auto info = std::make_shared<TensorInfo>();
  info->storage = std::move(storage);
  info->storage_offset = offset;
  info->sizes = std::move(sizes);
  info->strides = std::move(strides);
  info->is_parameter = parameter;
  info->requires_grad = parameter;
  return Value::of_tensor(info);
}

void put(ValuePtr& dict, const std::string& key, ValuePtr value) {
  dict->add_entry(Value::of_string(key), std::move(value));
}

void save(const std::filesystem::path& path, const PreparedCheckpoint& prepared, bool zip64) {
  StringSink sink;
  if (!zip64) {
    prepared.write(sink);
  } else {
    // The layout PreparedCheckpoint::write produces, with every ZIP64 structure forced.
    ZipWriter zip(sink, "archive", /*zip64_threshold=*/0);
    zip.write_record("data.pkl", prepared.pickle.data(), prepared.pickle.size());
    zip.write_record("byteorder", "little", 6);
    for (const auto& s : prepared.storages) {
      zip.write_record("data/" + s->key, s->data, s->numel * element_size(s->dtype));
    }
    zip.write_record("version", "3\n", 2);
    zip.finish();
  }
  std::ofstream(path, std::ios::binary) << sink.bytes;
  std::printf("%s: %zu bytes\n", path.c_str(), sink.bytes.size());
}

}  // namespace

int main(int argc, char** argv) {
  std::filesystem::path dir = argc > 1 ? argv[1] : "corpus";
  std::filesystem::create_directories(dir);

  {  // small
    std::vector<std::shared_ptr<StorageInfo>> all;
    auto root = Value::dict();
    put(root, "epoch", Value::of_int(7));
    put(root, "loss", Value::of_double(0.25));
    put(root, "w", tensor(storage(all, DType::float32, 6), 0, {2, 3}, {3, 1}));
    auto prepared = prepare_checkpoint(root, all);
    save(dir / "own_small.pt", prepared, false);
    save(dir / "own_small_zip64.pt", prepared, true);
  }
  {  // every dtype, views, parameters, nesting, int keys, big ints
    std::vector<std::shared_ptr<StorageInfo>> all;
    auto root = Value::dict();
    const DType dtypes[] = {DType::float16, DType::bfloat16, DType::float32, DType::float64, DType::int8, DType::uint8,
                            DType::int16,   DType::int32,    DType::int64,   DType::bool_,   DType::complex64,
                            DType::complex128};
    auto tensors = Value::dict(/*ordered=*/true);
    for (DType dtype : dtypes) put(tensors, std::string(dtype_name(dtype)), tensor(storage(all, dtype, 3), 0, {3}, {1}));
    put(root, "dtypes", tensors);
    auto base = storage(all, DType::float32, 12);
    auto views = Value::list();
    views->append(tensor(base, 0, {3, 4}, {4, 1}));
    views->append(tensor(base, 0, {4, 3}, {1, 4}));
    views->append(tensor(base, 5, {2}, {1}));
    views->append(tensor(base, 11, {}, {}));
    views->append(tensor(base, 0, {0, 5}, {5, 1}));
    views->append(tensor(base, 0, {2}, {0}));
    put(root, "views", views);
    put(root, "param", tensor(storage(all, DType::float32, 2), 0, {2}, {1}, /*parameter=*/true));
    auto by_int = Value::dict();
    by_int->add_entry(Value::of_int(0), Value::of_string("zero"));
    by_int->add_entry(Value::of_int(-1), Value::of_int(INT64_MIN));
    by_int->add_entry(Value::of_int(1 << 20), Value::of_int(INT64_MAX));
    put(root, "by_int", by_int);
    ValuePtr nested = Value::none();
    for (int i = 0; i < 20; ++i) {
      auto level = Value::list();
      level->append(nested);
      nested = i % 2 ? Value::tuple({level, Value::of_bool(true)}) : level;
    }
    put(root, "nested", nested);
    put(root, "text", Value::of_string("caf\xc3\xa9"));
    auto prepared = prepare_checkpoint(root, all);
    save(dir / "own_mixed.pt", prepared, false);
    save(dir / "own_mixed_zip64.pt", prepared, true);
  }
  return 0;
}
