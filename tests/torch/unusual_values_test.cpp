// Files torch.save writes that are not plain training-state dicts (big ints, mixed keys,
// dtypes, sparse and meta tensors, bare storages, non-dict roots, legacy protocol 4),
// and hostile structures the decoder must keep small: what ckpt loads, how it maps each
// value (docs/format.md, "What ckpt reads, and what it refuses"), and what Python reads back.
#include "support/torch_pch.hpp"
#include "support/test_dir.hpp"

#include <fstream>

#include "format/zip_writer.hpp"
#include "support/memory_source.hpp"

using namespace ckpt;
using namespace ckpt::test;

namespace {

std::string python_cases_dir() {
  static const TestDir dir("unusual");  // written once, removed at exit
  static const bool written = [] {
    const std::string script = std::string(CKPT_SOURCE_DIR) + "/tests/python/unusual_values.py";
    auto result = run_command(std::string(CKPT_PYTHON) + " " + shell_quote(script) + " write " +
                              shell_quote(dir.path().string()) + " 2>&1");
    INFO(result.output);
    REQUIRE(result.exit_code == 0);
    return true;
  }();
  (void)written;
  return dir.path().string();
}

std::filesystem::path python_case(const std::string& name) { return std::filesystem::path(python_cases_dir()) / (name + ".pth"); }

// Loads a Python case, saves it again with save_file, and lets Python check what it reads.
void check_round_trip(const std::string& name, const State& state) {
  TestDir dir("unusual-out");
  save_file(state, dir / "back.pth");
  const std::string script = std::string(CKPT_SOURCE_DIR) + "/tests/python/unusual_values.py";
  auto result = run_command(std::string(CKPT_PYTHON) + " " + shell_quote(script) + " check " + name + " " +
                            shell_quote((dir / "back.pth").string()) + " 2>&1");
  INFO(result.output);
  CHECK(result.exit_code == 0);
}

// Pickle opcodes, written by hand for structures no pickler writes.
struct Pickle {
  std::string out = "\x80\x02";
  Pickle& op(char c) { return out += c, *this; }
  Pickle& unicode(const std::string& s) {
    out += 'X';
    for (int i = 0; i < 4; ++i) out += static_cast<char>((s.size() >> (8 * i)) & 0xff);
    out += s;
    return *this;
  }
  Pickle& put(std::uint32_t index) {
    out += 'r';
    for (int i = 0; i < 4; ++i) out += static_cast<char>((index >> (8 * i)) & 0xff);
    return *this;
  }
  Pickle& get(std::uint32_t index) {
    out += 'j';
    for (int i = 0; i < 4; ++i) out += static_cast<char>((index >> (8 * i)) & 0xff);
    return *this;
  }
  Pickle& int1(std::uint8_t v) { return out += 'K', out += static_cast<char>(v), *this; }
  Pickle& global(const std::string& module, const std::string& name) { return out += 'c' + module + '\n' + name + '\n', *this; }
  // _rebuild_tensor_v2(('storage', FloatStorage, key, 'cpu', numel), offset, sizes, strides, False, OrderedDict())
  Pickle& float_tensor(const std::string& key, int numel, std::vector<std::uint8_t> sizes, std::vector<std::uint8_t> strides) {
    global("torch._utils", "_rebuild_tensor_v2").op('(').op('(').unicode("storage").global("torch", "FloatStorage");
    unicode(key).unicode("cpu").int1(static_cast<std::uint8_t>(numel)).op('t').op('Q').int1(0);
    op('(');
    for (auto s : sizes) int1(s);
    op('t').op('(');
    for (auto s : strides) int1(s);
    op('t').op('\x89').global("collections", "OrderedDict").op(')').op('R').op('t').op('R');
    return *this;
  }
};

std::filesystem::path write_payload(const std::filesystem::path& file, const std::string& pickle,
                                    const std::vector<std::pair<std::string, std::vector<float>>>& storages = {}) {
  StringSink sink;
  format::ZipWriter zip(sink, "archive");
  zip.write_record("data.pkl", pickle.data(), pickle.size());
  for (const auto& [key, data] : storages) zip.write_record("data/" + key, data.data(), data.size() * sizeof(float));
  zip.write_record("version", "3\n", 2);
  zip.finish();
  std::ofstream(file, std::ios::binary) << sink.bytes;
  return file;
}

}  // namespace

TEST_CASE("integers in [2^63, 2^64) load with the same 64 bits", "[format][unusual]") {
  State state = load_file(python_case("big_int"));
  CHECK(static_cast<std::uint64_t>(state.get<int64_t>("seed")) == 0xffffffffffffffffull);
  CHECK(state.get<int64_t>("low") == INT64_MIN);
  CHECK(state.get<int64_t>("high") == INT64_MAX);
  check_round_trip("big_int", state);
}

TEST_CASE("dicts with int, str, float and bool keys mixed load as Dict(Any, Any)", "[format][unusual]") {
  State state = load_file(python_case("mixed_keys"));
  auto dict = state.at("d").toGenericDict();
  REQUIRE(dict.size() == 4);
  CHECK(dict.at(c10::IValue(int64_t{1})).toStringRef() == "one");
  CHECK(dict.at(c10::IValue(std::string("two"))).toInt() == 2);
  CHECK(dict.at(c10::IValue(2.5)).toStringRef() == "f");
  CHECK(dict.at(c10::IValue(false)).toStringRef() == "no");
  check_round_trip("mixed_keys", state);
}

TEST_CASE("dicts with None or tuple keys load as a list of (key, value) pairs", "[format][unusual]") {
  State state = load_file(python_case("none_tuple_keys"));
  auto pairs = state.at("d").toList();
  REQUIRE(pairs.size() == 2);
  CHECK(pairs.get(0).toTupleRef().elements()[0].isNone());
  CHECK(pairs.get(1).toTupleRef().elements()[1].toStringRef() == "pair");
  check_round_trip("none_tuple_keys", state);
}

TEST_CASE("a torch.dtype value loads as its ScalarType number", "[format][unusual]") {
  State state = load_file(python_case("dtype"));
  CHECK(static_cast<c10::ScalarType>(state.get<int64_t>("dtype")) == c10::ScalarType::Half);
  CHECK(static_cast<c10::ScalarType>(state.get<int64_t>("other")) == c10::ScalarType::Long);
  check_round_trip("dtype", state);
}

TEST_CASE("sparse COO tensors load and save as sparse COO", "[format][unusual]") {
  State state = load_file(python_case("sparse"));
  at::Tensor s = state.get<at::Tensor>("s");
  REQUIRE(s.is_sparse());
  at::Tensor dense = at::zeros({2, 3});
  dense[0][2] = 3, dense[1][0] = 4, dense[1][2] = 5;
  CHECK(at::equal(s.to_dense(), dense));
  check_round_trip("sparse", state);
}

TEST_CASE("meta tensors load and save as meta tensors", "[format][unusual]") {
  State state = load_file(python_case("meta"));
  at::Tensor m = state.get<at::Tensor>("m");
  CHECK(m.is_meta());
  CHECK(m.sizes() == at::IntArrayRef({3, 4}));
  CHECK(at::equal(state.get<at::Tensor>("w"), at::ones({2})));
  check_round_trip("meta", state);
}

TEST_CASE("a bare storage loads as a 1-D tensor over it", "[format][unusual]") {
  State state = load_file(python_case("storage"));
  CHECK(at::equal(state.get<at::Tensor>("st"), at::arange(4, at::kFloat)));
  check_round_trip("storage", state);
}

TEST_CASE("load_value reads a payload whose root is not a dict; load_file refuses it, naming it", "[format][unusual]") {
  c10::IValue tensor = load_value(python_case("root_tensor"));
  CHECK(at::equal(tensor.toTensor(), at::arange(6, at::kFloat).reshape({2, 3})));
  c10::IValue list = load_value(python_case("root_list"));
  REQUIRE(list.toListRef().size() == 3);
  CHECK(list.toListRef()[1].toStringRef() == "two");
  CHECK_THROWS_AS(load_file(python_case("root_tensor")), FormatError);
  CHECK_THROWS_WITH(load_file(python_case("root_tensor")), Catch::Contains("holds a Tensor, not a dict") &&
                                                Catch::Contains("root_tensor.pth"));
}

TEST_CASE("legacy files written with pickle protocol 4 load", "[format][unusual]") {
  State state = load_file(python_case("legacy_protocol_4"));
  CHECK(at::equal(state.get<at::Tensor>("w"), at::arange(5, at::kFloat)));
  CHECK(state.get<int64_t>("n") == 3);
  check_round_trip("legacy_protocol_4", state);
}

TEST_CASE("a tensor pickled as torch.Tensor() and its state loads as that view", "[format][unusual]") {
  State state = load_file(python_case("old_tensor"));
  at::Tensor x = state.get<at::Tensor>("x");
  CHECK(at::equal(x, at::arange(30, at::kFloat).as_strided({2, 3}, {9, 3}, 2)));
  CHECK(x.strides() == at::IntArrayRef({9, 3}));
  CHECK(x.storage_offset() == 2);
  check_round_trip("old_tensor", state);
}

TEST_CASE("a memoized string referenced 3,000 times is converted once and shared", "[format][hostile]") {
  TestDir dir("hostile-decode");
  const std::string big(1 << 20, 'a');
  Pickle p;
  p.op('}').op('(').unicode("x").op(']').op('(').unicode(big).put(0);
  for (int i = 1; i < 3000; ++i) p.get(0);
  p.op('e').op('u').op('.');
  State state = load_file(write_payload(dir / "memo.pth", p.out));
  auto list = state.at("x").toList();
  REQUIRE(list.size() == 3000);
  // One string object behind all of them: 1 MiB, not 3 GB.
  CHECK(list.get(0).toStringRef().data() == list.get(2999).toStringRef().data());
}

TEST_CASE("a dict keyed 200,000 times by one memoized key is one entry, as Python sees it", "[format][hostile]") {
  TestDir dir("hostile-decode");
  Pickle p;
  p.op('}').op('(').unicode("d").op('}');
  p.unicode(std::string(1 << 20, 'k')).put(0).int1(0).op('s');
  for (int i = 1; i <= 200000; ++i) p.get(0).int1(static_cast<std::uint8_t>(i % 200)).op('s');
  p.op('u').op('.');
  State state = load_file(write_payload(dir / "keys.pth", p.out));
  auto dict = state.at("d").toGenericDict();
  REQUIRE(dict.size() == 1);
  CHECK(dict.begin()->value().toInt() == 200000 % 200);  // the last value wins
}

TEST_CASE("keys Python takes for one (1, True, 1.0; None twice) are one entry with the last value", "[format][hostile]") {
  TestDir dir("hostile-decode");
  Pickle p;
  p.op('}').op('(').unicode("d").op('}').op('(');
  p.int1(1).unicode("int").op('\x88').unicode("bool").op('G').out += std::string("\x3f\xf0\0\0\0\0\0\0", 8);  // 1.0
  p.unicode("float").op('N').unicode("none").op('N').unicode("none again");
  p.op('u').op('u').op('.');
  State state = load_file(write_payload(dir / "keys.pth", p.out));
  // None keys: a list of (key, value) pairs (docs/format.md); the 1/True/1.0 key once.
  auto pairs = state.at("d").toList();
  REQUIRE(pairs.size() == 2);
  CHECK(pairs.get(0).toTupleRef().elements()[0].toInt() == 1);
  CHECK(pairs.get(0).toTupleRef().elements()[1].toStringRef() == "float");
  CHECK(pairs.get(1).toTupleRef().elements()[0].isNone());
  CHECK(pairs.get(1).toTupleRef().elements()[1].toStringRef() == "none again");
}

TEST_CASE("a dict whose keys Python would merge is refused when saved; NaN keys load as pairs", "[format][hostile]") {
  TestDir dir("hostile-decode");
  c10::impl::GenericDict dict(c10::AnyType::get(), c10::AnyType::get());
  dict.insert(c10::IValue(int64_t{1}), c10::IValue(std::string("int")));
  dict.insert(c10::IValue(true), c10::IValue(std::string("bool")));
  State state;
  state.set("d", dict);
  CHECK_THROWS_AS(save_file(state, dir / "merged.pth"), FormatError);
  CHECK_THROWS_WITH(save_file(state, dir / "merged.pth"), Catch::Contains("one key in Python"));
  // Two NaN keys: two entries (c10 cannot keep them in a Dict: a list of pairs).
  Pickle p;
  p.op('}').op('(').unicode("d").op('}').op('(');
  for (int i = 0; i < 2; ++i) {
    p.op('G').out += std::string("\x7f\xf8\0\0\0\0\0\0", 8);
    p.int1(static_cast<std::uint8_t>(i));
  }
  p.op('u').op('u').op('.');
  State loaded = load_file(write_payload(dir / "nan.pth", p.out));
  CHECK(loaded.at("d").toList().size() == 2);
}

TEST_CASE("a shared DAG loads to the meta device without expanding it; views and sharing survive", "[format][hostile]") {
  TestDir dir("hostile-decode");
  // t0 = a tensor; t(i+1) = (t(i), t(i)), 40 levels: 2^40 paths, 41 nodes.
  Pickle p;
  p.op('}').op('(').unicode("dag").float_tensor("0", 4, {4}, {1}).put(0);
  for (std::uint32_t i = 1; i <= 40; ++i) p.op('0').get(i - 1).get(i - 1).op('\x86').put(i);
  // a stride-0 view (expand) and a view sharing the storage (tied weight)
  p.unicode("expanded").float_tensor("0", 4, {3, 4}, {0, 1});
  p.unicode("tied").float_tensor("0", 4, {2, 2}, {2, 1});
  p.op('u').op('.');
  const auto file = write_payload(dir / "dag.pth", p.out, {{"0", {1, 2, 3, 4}}});
  for (c10::Device device : {c10::Device(c10::kMeta), c10::Device(c10::kCPU)}) {
    INFO(device.str());
    LoadOptions options;
    options.device = device;
    State state = load_file(file, options);
    const auto& level40 = state.at("dag").toTupleRef().elements();
    CHECK(level40[0].toTuple().get() == level40[1].toTuple().get());  // shared, not copied
    at::Tensor expanded = state.get<at::Tensor>("expanded");
    at::Tensor tied = state.get<at::Tensor>("tied");
    CHECK(expanded.device() == device);
    CHECK(expanded.strides() == at::IntArrayRef({0, 1}));  // still a view, not densified
    CHECK(expanded.storage().unsafeGetStorageImpl() == tied.storage().unsafeGetStorageImpl());
  }
}

TEST_CASE("a view of 2^64 elements is a FormatError naming the file, not a c10::Error", "[format][hostile]") {
  TestDir dir("hostile-decode");
  Pickle p;
  // sizes (2^32, 2^32) strides (0, 0) over a 1-element storage
  p.op('}').op('(').unicode("w");
  p.global("torch._utils", "_rebuild_tensor_v2").op('(').op('(').unicode("storage").global("torch", "FloatStorage");
  p.unicode("0").unicode("cpu").int1(1).op('t').op('Q').int1(0);
  p.op('(').op('\x8a').op('\x05').out += std::string("\0\0\0\0\x01", 5);
  p.op('\x8a').op('\x05').out += std::string("\0\0\0\0\x01", 5);
  p.op('t').op('(').int1(0).int1(0).op('t').op('\x89').global("collections", "OrderedDict").op(')').op('R').op('t').op('R');
  p.op('u').op('.');
  const auto file = write_payload(dir / "huge.pth", p.out, {{"0", {1}}});
  CHECK_THROWS_AS(load_file(file), FormatError);
  CHECK_THROWS_WITH(load_file(file), Catch::Contains("huge.pth") && Catch::Contains("element count overflows"));
}

TEST_CASE("sparse indices outside the size are a FormatError naming the file", "[format][hostile]") {
  TestDir dir("hostile-decode");
  State state;
  state.set("s", at::_sparse_coo_tensor_unsafe(at::tensor(std::vector<int64_t>{0, 5}).reshape({1, 2}), at::tensor({1.0f, 2.0f}), {3}));
  save_file(state, dir / "bad_sparse.pth");  // writing does not validate, as torch.save
  CHECK_THROWS_AS(load_file(dir / "bad_sparse.pth"), FormatError);
  CHECK_THROWS_WITH(load_file(dir / "bad_sparse.pth"), Catch::Contains("bad_sparse.pth"));
  // libtorch's message without its C++ backtrace (c10::Error::what_without_backtrace).
  CHECK_THROWS_WITH(load_file(dir / "bad_sparse.pth"), !Catch::Contains("Exception raised from"));
}
