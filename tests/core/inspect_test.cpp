// The torch-free inspector (ckpt show / --stats / diff) on payloads built in memory:
// ckpt's writer for what it can write, pickle opcodes by hand (protocol 2) for hostile
// structures (memo references, repeated keys, views that repeat their elements).
#include <catch2/catch.hpp>

#include <cmath>
#include <cstring>
#include <limits>
#include <string>
#include <utility>
#include <vector>

#include "support/memory_source.hpp"
#include "ckpt/errors.hpp"
#include "ckpt/inspect.hpp"
#include "format/checkpoint_format.hpp"
#include "format/inspect_source.hpp"
#include "format/zip_writer.hpp"
#include "support/test_dir.hpp"

using namespace ckpt;
using format::DType;
using format::StorageInfo;
using format::TensorInfo;
using format::TensorLayout;
using format::Value;

namespace {

using test::MemorySource;
using test::StringSink;

PayloadInfo show(const std::string& bytes, bool stats = false, InspectCounters* counters = nullptr) {
  MemorySource source(bytes);
  return inspect_payload(source, "<memory>", stats, counters);
}

std::vector<PayloadDifference> diff(const std::string& a, const std::string& b, InspectCounters* counters = nullptr) {
  MemorySource sa(a), sb(b);
  return diff_payloads(sa, "<a>", sb, "<b>", counters);
}

const PayloadEntry& entry_at(const PayloadInfo& info, const std::string& path) {
  for (const auto& e : info.entries) {
    if (e.path == path) return e;
  }
  FAIL("no entry " << path);
  throw;
}

// ---------------------------------------------------------------- pickles by hand

std::string le(std::uint64_t v, int width) {
  std::string out;
  for (int i = 0; i < width; ++i) out += static_cast<char>((v >> (8 * i)) & 0xff);
  return out;
}
std::string unicode(const std::string& text) { return "X" + le(text.size(), 4) + text; }
std::string global(const std::string& module, const std::string& name) { return "c" + module + "\n" + name + "\n"; }
// A non-negative int below 2^63: BININT1, BININT or LONG1 of 8 bytes.
std::string pint(std::uint64_t v) {
  if (v < 256) return "K" + le(v, 1);
  if (v < (1ull << 31)) return "J" + le(v, 4);
  return "\x8a\x08" + le(v, 8);
}
std::string put(std::uint32_t i) { return "r" + le(i, 4); }  // LONG_BINPUT
std::string get(std::uint32_t i) { return "j" + le(i, 4); }  // LONG_BINGET
std::string int_tuple(const std::vector<std::uint64_t>& ints) {
  std::string out = "(";
  for (auto v : ints) out += pint(v);
  return out + "t";
}
std::string storage_pid(const std::string& key, std::uint64_t numel, const std::string& cls = "FloatStorage") {
  return "(" + unicode("storage") + global("torch", cls) + unicode(key) + unicode("cpu") + pint(numel) + "tQ";
}
// torch._utils._rebuild_tensor_v2(storage, offset, size, stride, False, OrderedDict())
std::string tensor_v2(const std::string& key, std::uint64_t numel, const std::vector<std::uint64_t>& sizes,
                      const std::vector<std::uint64_t>& strides, std::uint64_t offset = 0) {
  return global("torch._utils", "_rebuild_tensor_v2") + "(" + storage_pid(key, numel) + pint(offset) + int_tuple(sizes) +
         int_tuple(strides) + "\x89" + global("collections", "OrderedDict") + ")R" + "tR";
}
// A protocol-2 pickle of a dict of (key, value pickle) items.
std::string dict_pickle(const std::vector<std::pair<std::string, std::string>>& items) {
  std::string p = "\x80\x02}(";
  for (const auto& [key, value] : items) p += unicode(key) + value;
  return p + "u.";
}

std::string floats(const std::vector<float>& values) {
  std::string out(values.size() * sizeof(float), '\0');
  std::memcpy(out.data(), values.data(), out.size());
  return out;
}

// A torch.save zip payload: data.pkl, the storage records data/<key>, version.
std::string zip_payload(const std::string& pickle, const std::vector<std::pair<std::string, std::string>>& storages = {}) {
  StringSink sink;
  format::ZipWriter zip(sink, "archive");
  zip.write_record("data.pkl", pickle.data(), pickle.size());
  for (const auto& [key, bytes] : storages) zip.write_record("data/" + key, bytes.data(), bytes.size());
  zip.write_record("version", "3\n", 2);
  zip.finish();
  return sink.bytes;
}

// ---------------------------------------------------------------- through ckpt's writer

std::string written(const format::ValuePtr& root, std::vector<std::shared_ptr<StorageInfo>> storages = {}) {
  StringSink sink;
  format::prepare_checkpoint(root, std::move(storages)).write(sink);
  return sink.bytes;
}

std::shared_ptr<StorageInfo> storage_of(const std::string& key, DType dtype, std::uint64_t numel, const void* data) {
  auto s = std::make_shared<StorageInfo>();
  s->key = key;
  s->dtype = dtype;
  s->numel = numel;
  s->data = data;
  return s;
}

std::shared_ptr<TensorInfo> strided(std::shared_ptr<StorageInfo> storage, std::vector<std::int64_t> sizes,
                                    std::vector<std::int64_t> strides) {
  auto t = std::make_shared<TensorInfo>();
  t->storage = std::move(storage);
  t->sizes = std::move(sizes);
  t->strides = std::move(strides);
  return t;
}

constexpr std::uint64_t k2to31 = 1ull << 31;

}  // namespace

TEST_CASE("inspect --stats: a zero-stride view of 2^31 elements is summarised from its one element",
          "[inspect]") {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const float inf = std::numeric_limits<float>::infinity();
  // y first: the old inspector refused a view of more than 2^31 elements at once.
  const std::string bytes = zip_payload(
      dict_pickle({{"y", tensor_v2("1", 2, {k2to31, 2}, {0, 1})},  // [-1, NaN] repeated 2^31 times
                   {"x", tensor_v2("0", 1, {k2to31}, {0})},         // 2.5, 2^31 times
                   {"z", tensor_v2("2", 4, {2, 2}, {2, 1})}}),
      {{"0", floats({2.5f})}, {"1", floats({-1.0f, nan})}, {"2", floats({1, 2, 3, inf})}});
  InspectCounters counters;
  PayloadInfo info = show(bytes, /*stats=*/true, &counters);
  REQUIRE(info.entries.size() == 3);

  const PayloadEntry& x = entry_at(info, "x");
  CHECK(x.layout == "strided");
  CHECK(x.bytes == k2to31 * 4);
  REQUIRE(x.stats);
  CHECK(x.stats->min == 2.5);
  CHECK(x.stats->max == 2.5);
  CHECK(x.stats->mean == 2.5);
  CHECK(x.stats->nan_count == 0);
  CHECK(x.stats_note.empty());

  const PayloadEntry& y = entry_at(info, "y");
  REQUIRE(y.stats);
  CHECK(y.stats->min == -1);
  CHECK(y.stats->max == -1);
  CHECK(y.stats->mean == -1);
  CHECK(y.stats->nan_count == k2to31);
  CHECK(y.stats->inf_count == 0);

  const PayloadEntry& z = entry_at(info, "z");
  REQUIRE(z.stats);
  CHECK(z.stats->min == 1);
  CHECK(z.stats->max == 3);
  CHECK(z.stats->mean == 2);
  CHECK(z.stats->inf_count == 1);

  // The stored elements only: 1 for x, 2 for y, 4 for z (its two rows are contiguous).
  CHECK(counters.element_visits == 7);
}

TEST_CASE("inspect --stats: a view that repeats its storage's elements past the file's budget gets a note",
          "[inspect]") {
  SECTION("overlapping strides: [2^16, 2^16] with strides [1, 1] over 2^17 elements") {
    std::vector<float> data(1 << 17);
    for (std::size_t i = 0; i < data.size(); ++i) data[i] = static_cast<float>(i % 7);
    const std::string bytes = zip_payload(dict_pickle({{"w", tensor_v2("0", data.size(), {data.size()}, {1})},
                                                       {"v", tensor_v2("0", data.size(), {1 << 16, 1 << 16}, {1, 1})}}),
                                          {{"0", floats(data)}});
    InspectCounters counters;
    PayloadInfo info = show(bytes, true, &counters);  // the whole show does not fail
    const PayloadEntry& v = entry_at(info, "v");
    CHECK_FALSE(v.stats);
    CHECK(v.stats_note == "not computed: the view repeats its storage's elements 32768 times");
    const PayloadEntry& w = entry_at(info, "w");
    REQUIRE(w.stats);
    CHECK(w.stats->max == 6);
    CHECK(w.stats_note.empty());
    CHECK(counters.element_visits == data.size());
  }
  SECTION("12 full views of one storage: 4 x the stored elements + 2^20 visits cover 8 of them") {
    std::vector<float> data(1 << 18, 1.5f);
    std::vector<std::pair<std::string, std::string>> items;
    for (int i = 0; i < 12; ++i) items.emplace_back("t" + std::to_string(i), tensor_v2("0", data.size(), {data.size()}, {1}));
    InspectCounters counters;
    PayloadInfo info = show(zip_payload(dict_pickle(items), {{"0", floats(data)}}), true, &counters);
    REQUIRE(info.entries.size() == 12);
    for (int i = 0; i < 12; ++i) {
      INFO(i);
      const PayloadEntry& e = info.entries[static_cast<std::size_t>(i)];
      if (i < 8) {
        REQUIRE(e.stats);
        CHECK(e.stats->mean == 1.5);
      } else {
        CHECK_FALSE(e.stats);
        CHECK_THAT(e.stats_note, Catch::StartsWith("not computed: the file's budget of 2097152 element visits is spent"));
      }
    }
    CHECK(counters.element_visits == 8u << 18);
  }
}

TEST_CASE("inspect: a memoized 1 MiB string referenced 3,000 times is shown truncated within the budget",
          "[inspect]") {
  const std::string big(1 << 20, 'a');
  std::string pickle = "\x80\x02}" + unicode("x") + "](" + unicode(big) + put(1);
  for (int i = 1; i < 3000; ++i) pickle += get(1);
  pickle += "es.";
  const std::string bytes = zip_payload(pickle);
  InspectCounters counters;
  PayloadInfo info = show(bytes, false, &counters);
  REQUIRE(info.entries.size() == 3000);
  std::uint64_t text_bytes = 0;
  for (const auto& e : info.entries) text_bytes += e.path.size() + e.value.size();
  CHECK(info.entries[0].path == "x.0");
  CHECK(info.entries[2999].path == "x.2999");
  CHECK(info.entries[0].type == "str");
  CHECK(info.entries[0].value == "'" + std::string(64, 'a') + "'\u2026 (1048576 characters)");
  CHECK(text_bytes < (1u << 20));
  CHECK(counters.budget_used <= counters.budget_limit);
  CHECK(counters.budget_used < 16u << 20);
  // Compared once, not 3,000 times 1 MiB; equal.
  CHECK(diff(bytes, bytes).empty());
}

TEST_CASE("inspect: 3,000 dicts keyed by one memoized 1 MiB key are refused by the budget, not built", "[inspect]") {
  // {'x': [{k: 1}, {k: 1}, ...]}: 3,000 paths "x.<i>.<k>" of 1 MiB each would be 3 GiB.
  const std::string key(1 << 20, 'k');
  std::string pickle = "\x80\x02}" + unicode("x") + "](}" + unicode(key) + put(1) + "K\x01s";
  for (int i = 1; i < 3000; ++i) pickle += "}" + get(1) + "K\x01s";
  pickle += "es.";
  const std::string bytes = zip_payload(pickle);
  try {
    show(bytes);
    FAIL("show did not refuse");
  } catch (const FormatError& error) {
    const std::string message = error.what();
    INFO(message);
    CHECK_THAT(message, Catch::StartsWith("<memory>: inspecting:") && Catch::Contains("bytes of memory") &&
                            Catch::Contains("entries listed so far"));
  }
  CHECK_THROWS_AS(diff(bytes, bytes), FormatError);
}

TEST_CASE("inspect: a dict keyed 200,000 times by one memoized key is one entry, as in Python", "[inspect]") {
  const std::string key(1 << 20, 'k');
  std::string pickle = "\x80\x02}(" + unicode(key) + put(1) + "K\x01";
  for (int i = 1; i < 199'999; ++i) pickle += get(1) + "K\x01";
  pickle += get(1) + "K\x02" + "u.";
  const std::string bytes = zip_payload(pickle);
  PayloadInfo info = show(bytes);
  REQUIRE(info.entries.size() == 1);
  CHECK(info.entries[0].path == key);
  CHECK(info.entries[0].type == "int");
  CHECK(info.entries[0].value == "2");  // the last value
  CHECK(diff(bytes, bytes).empty());
}

TEST_CASE("inspect diff: views of 2^31 elements of stride 0 are compared in lockstep from their stored elements",
          "[inspect]") {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  auto file = [&](float x, std::vector<float> y, std::vector<float> z, std::vector<float> s, bool s_zero) {
    return zip_payload(dict_pickle({{"y", tensor_v2("1", 2, {k2to31, 2}, {0, 1})},
                                    {"x", tensor_v2("0", 1, {k2to31}, {0})},
                                    {"z", tensor_v2("2", 2, {k2to31, 2}, {0, 1})},
                                    {"s", tensor_v2("3", s.size(), {4}, {s_zero ? 0u : 1u})}}),
                       {{"0", floats({x})}, {"1", floats(y)}, {"2", floats(z)}, {"3", floats(s)}});
  };
  const std::string a = file(1.0f, {1, nan}, {0, 5}, {2}, true);
  const std::string b = file(3.5f, {1, nan}, {0, 1}, {2, 2, 2, 3}, false);
  InspectCounters counters;
  auto differences = diff(a, b, &counters);
  REQUIRE(differences.size() == 3);  // y is equal: NaN equals NaN
  CHECK(differences[0].path == "x");
  CHECK(differences[0].kind == "tensor");
  CHECK(differences[0].max_abs_diff == 2.5);
  CHECK(differences[0].detail == "max |a-b| 2.5 over 2147483648 of 2147483648 elements");
  CHECK(differences[1].path == "z");
  CHECK(differences[1].max_abs_diff == 4);
  CHECK(differences[1].detail == "max |a-b| 4 over 2147483648 of 4294967296 elements");
  // Stride 0 on one side only: walked, not collapsed.
  CHECK(differences[2].path == "s");
  CHECK(differences[2].detail == "max |a-b| 1 over 1 of 4 elements");
  CHECK(counters.element_visits == 2 + 1 + 2 + 4);
}

TEST_CASE("inspect diff: views that repeat their elements past the budget are reported as not compared",
          "[inspect]") {
  std::vector<float> data(1 << 17, 1.0f);
  const std::string bytes =
      zip_payload(dict_pickle({{"v", tensor_v2("0", data.size(), {1 << 16, 1 << 16}, {1, 1})}}), {{"0", floats(data)}});
  auto differences = diff(bytes, bytes);
  REQUIRE(differences.size() == 1);
  CHECK(differences[0].kind == "not compared");
  CHECK(differences[0].detail == "not compared: the view repeats its storage's elements 32768 times");
}

TEST_CASE("inspect: meta and sparse COO tensors", "[inspect]") {
  const std::vector<std::int64_t> indices{0, 1, 3, 0, 2, 4};
  const std::vector<float> values{1, -2, 4};
  auto indices_storage = storage_of("0", DType::int64, 6, indices.data());
  auto values_storage = storage_of("1", DType::float32, 3, values.data());
  auto meta = std::make_shared<TensorInfo>();
  meta->layout = TensorLayout::meta;
  meta->meta_dtype = DType::float16;
  meta->sizes = {2, 3};
  meta->strides = {3, 1};
  auto sparse = std::make_shared<TensorInfo>();
  sparse->layout = TensorLayout::sparse_coo;
  sparse->indices = strided(indices_storage, {2, 3}, {3, 1});
  sparse->values = strided(values_storage, {3}, {1});
  sparse->sizes = {4, 5};
  auto root = Value::dict();
  root->add_entry(Value::of_string("meta"), Value::of_tensor(meta));
  root->add_entry(Value::of_string("sparse"), Value::of_tensor(sparse));
  const std::string bytes = written(root, {indices_storage, values_storage});

  PayloadInfo info = show(bytes, true);
  const PayloadEntry& m = entry_at(info, "meta");
  CHECK(m.type == "Tensor");
  CHECK(m.layout == "meta");
  CHECK(m.dtype == "float16");
  CHECK(m.shape == std::vector<std::int64_t>{2, 3});
  CHECK(m.stride == std::vector<std::int64_t>{3, 1});
  CHECK(m.bytes == 0);
  CHECK(m.storage.empty());
  CHECK_FALSE(m.stats);
  CHECK(m.stats_note == "not computed: a meta tensor has no data");

  const PayloadEntry& s = entry_at(info, "sparse");
  CHECK(s.type == "Tensor");
  CHECK(s.layout == "sparse_coo");
  CHECK(s.dtype == "float32");
  CHECK(s.shape == std::vector<std::int64_t>{4, 5});
  CHECK(s.nnz == 3);
  CHECK(s.bytes == 6 * 8 + 3 * 4);
  CHECK(s.storage == "1");
  REQUIRE(s.stats);
  CHECK(s.stats->min == -2);
  CHECK(s.stats->max == 4);
  CHECK(s.stats->mean == 1);

  CHECK(diff(bytes, bytes).empty());
  // Other values at the same indices: compared by value.
  const std::vector<float> other{1, -2, 5};
  auto other_values = storage_of("1", DType::float32, 3, other.data());
  sparse->values = strided(other_values, {3}, {1});
  auto differences = diff(bytes, written(root, {indices_storage, other_values}));
  REQUIRE(differences.size() == 1);
  CHECK(differences[0].path == "sparse");
  CHECK(differences[0].detail == "max |a-b| 1 over 1 of 3 elements");
}

TEST_CASE("inspect: dtypes, unsigned ints, non-str keys, floats as Python shows them, bare storages", "[inspect]") {
  SECTION("written by ckpt") {
    auto cfg = Value::dict();
    cfg->add_entry(Value::of_bool(true), Value::of_int(1));
    cfg->add_entry(Value::none(), Value::of_int(2));
    cfg->add_entry(Value::of_double(1.5), Value::of_int(3));
    cfg->add_entry(Value::of_double(2.0), Value::of_int(4));
    cfg->add_entry(Value::tuple({Value::of_int(1), Value::of_int(2)}), Value::of_int(5));
    cfg->add_entry(Value::tuple({Value::of_string("a")}), Value::of_int(6));
    cfg->add_entry(Value::of_int(3), Value::of_int(7));
    auto root = Value::dict();
    root->add_entry(Value::of_string("u63"), Value::of_uint(1ull << 63));
    root->add_entry(Value::of_string("u64"), Value::of_uint(std::numeric_limits<std::uint64_t>::max()));
    root->add_entry(Value::of_string("neg"), Value::of_int(-5));
    root->add_entry(Value::of_string("one"), Value::of_double(1.0));
    root->add_entry(Value::of_string("cfg"), cfg);
    PayloadInfo info = show(written(root));
    CHECK(entry_at(info, "u63").value == "9223372036854775808");
    CHECK(entry_at(info, "u64").value == "18446744073709551615");
    CHECK(entry_at(info, "u64").type == "int");
    CHECK(entry_at(info, "neg").value == "-5");
    CHECK(entry_at(info, "one").value == "1.0");
    std::vector<std::string> paths;
    for (const auto& e : info.entries) paths.push_back(e.path);
    CHECK(paths == std::vector<std::string>{"u63", "u64", "neg", "one", "cfg.True", "cfg.None", "cfg.1.5", "cfg.2.0",
                                            "cfg.(1, 2)", "cfg.('a',)", "cfg.3"});
    CHECK(entry_at(info, "cfg.(1, 2)").value == "5");
    // 2^64 - 1 and -1 differ.
    auto other = Value::dict();
    other->add_entry(Value::of_string("u64"), Value::of_int(-1));
    auto differences = diff(written(root), written(other));
    bool found = false;
    for (const auto& d : differences) found |= d.path == "u64" && d.kind == "value" && d.detail == "18446744073709551615 vs -1";
    CHECK(found);
  }
  SECTION("by hand: a dtype and a bare storage") {
    const std::string pickle = dict_pickle({{"dt", global("torch", "float16")},
                                            {"half", global("torch", "half")},
                                            {"st", storage_pid("0", 3)}});
    const std::string bytes = zip_payload(pickle, {{"0", floats({1, 2, 6})}});
    PayloadInfo info = show(bytes, true);
    CHECK(entry_at(info, "dt").type == "torch.dtype");
    CHECK(entry_at(info, "dt").value == "torch.float16");
    CHECK(entry_at(info, "half").value == "torch.float16");
    const PayloadEntry& st = entry_at(info, "st");
    CHECK(st.type == "Storage");
    CHECK(st.dtype == "float32");
    CHECK(st.storage == "0");
    CHECK(st.bytes == 12);
    CHECK(st.shape == std::vector<std::int64_t>{3});
    REQUIRE(st.stats);
    CHECK(st.stats->mean == 3);
    CHECK(diff(bytes, bytes).empty());
  }
}

TEST_CASE("inspect: a payload whose root is not a dict has its root at the path \"\"", "[inspect]") {
  const std::vector<float> data{1, 2, 3};
  auto storage = storage_of("0", DType::float32, 3, data.data());
  SECTION("torch.save(tensor)") {
    PayloadInfo info = show(written(Value::of_tensor(strided(storage, {3}, {1})), {storage}), true);
    REQUIRE(info.entries.size() == 1);
    CHECK(info.entries[0].path.empty());
    CHECK(info.entries[0].type == "Tensor");
    CHECK(info.entries[0].shape == std::vector<std::int64_t>{3});
    REQUIRE(info.entries[0].stats);
    CHECK(info.entries[0].stats->mean == 2);
  }
  SECTION("a list") {
    auto root = Value::list();
    root->append(Value::of_int(7));
    root->append(Value::of_tensor(strided(storage, {3}, {1})));
    PayloadInfo info = show(written(root, {storage}));
    REQUIRE(info.entries.size() == 2);
    CHECK(info.entries[0].path == "0");
    CHECK(info.entries[0].value == "7");
    CHECK(info.entries[1].path == "1");
    CHECK(info.entries[1].type == "Tensor");
  }
  SECTION("a scalar") {
    PayloadInfo info = show(written(Value::of_double(0.25)));
    REQUIRE(info.entries.size() == 1);
    CHECK(info.entries[0].path.empty());
    CHECK(info.entries[0].value == "0.25");
  }
}

TEST_CASE("inspect: a view's byte count saturates instead of wrapping", "[inspect]") {
  auto storage = storage_of("0", DType::float32, 1, nullptr);
  // The reader refuses this view (2^64 elements); describe must still not show "8 B".
  PayloadEntry e = describe_value("x", *Value::of_tensor(strided(storage, {1ll << 32, 1ll << 32}, {0, 0})));
  CHECK(e.bytes == std::numeric_limits<std::uint64_t>::max());
  e = describe_value("x", *Value::of_tensor(strided(storage, {1ll << 61, 4}, {0, 0})));
  CHECK(e.bytes == std::numeric_limits<std::uint64_t>::max());
  e = describe_value("x", *Value::of_tensor(strided(storage, {0, 1ll << 62, 1ll << 62}, {0, 0, 0})));
  CHECK(e.bytes == 0);
  e = describe_value("x", *Value::of_tensor(strided(storage, {1ll << 30}, {0})));
  CHECK(e.bytes == 4ull << 30);
}

TEST_CASE("inspect: an error quoting a storage key from the file is escaped", "[inspect]") {
  const std::string key = "\x1b[2Jk";
  std::string bytes = zip_payload(dict_pickle({{"t", tensor_v2(key, 2, {2}, {1})}}), {{key, floats({1.25f, 2.5f})}});
  const std::string stored = floats({1.25f, 2.5f});
  const std::size_t at = bytes.find(stored);
  REQUIRE(at != std::string::npos);
  CHECK(show(bytes).entries.size() == 1);  // the structure does not read the record
  bytes[at] ^= 0x40;  // the record's CRC-32 no longer matches
  try {
    show(bytes, true);
    FAIL("a damaged record was not noticed");
  } catch (const FormatError& error) {
    const std::string message = error.what();
    CHECK(message == "<memory>: storage record data/\\x1b[2Jk fails its CRC-32 check");
    CHECK(message.find('\x1b') == std::string::npos);
    CHECK(error.code() == ErrorCode::corrupt);
  }
}

TEST_CASE("inspect: the path-based functions read the file", "[inspect]") {
  test::TestDir dir("inspect");
  const std::vector<float> data{1, 2, 3};
  auto storage = storage_of("0", DType::float32, 3, data.data());
  auto root = Value::dict();
  root->add_entry(Value::of_string("w"), Value::of_tensor(strided(storage, {3}, {1})));
  test::write_bytes(dir / "a.pth", written(root, {storage}));
  PayloadInfo info = inspect_payload(dir / "a.pth", true);
  REQUIRE(info.entries.size() == 1);
  CHECK(info.entries[0].stats->max == 3);
  CHECK(info.file_size == std::filesystem::file_size(dir / "a.pth"));
  CHECK(diff_payloads(dir / "a.pth", dir / "a.pth").empty());
  CHECK_THROWS_AS(inspect_payload(dir / "missing.pth"), IoError);
}

TEST_CASE("inspect: a long list of numbers is one entry; diff compares it item by item", "[inspect]") {
  // {'ids': [1, 1, ..., 1] (5,000,000 items), 'short': [1, 2]}: one entry per item would
  // pass the 1,000,000-entry cap and the budget; Python shows the list.
  auto file = [](std::uint8_t last) {
    std::string pickle = "\x80\x02}(" + unicode("ids") + "]";
    for (int batch = 0; batch < 5000; ++batch) {
      pickle += "(";
      for (int i = 0; i < 1000; ++i) pickle += batch == 4999 && i == 999 ? "K" + std::string(1, static_cast<char>(last)) : "K\x01";
      pickle += "e";
    }
    pickle += unicode("short") + "(K\x01K\x02l" + "u.";
    return zip_payload(pickle);
  };
  const std::string a = file(1), b = file(7);
  PayloadInfo info = show(a);
  REQUIRE(info.entries.size() == 3);
  CHECK(entry_at(info, "ids").type == "list");
  CHECK(entry_at(info, "ids").value == "[1, 1, 1, 1, 1, 1, 1, 1, ...] (5000000 items)");
  CHECK(entry_at(info, "short.1").value == "2");
  CHECK(diff(a, a).empty());
  auto differences = diff(a, b);  // the last of 5,000,000 items differs
  REQUIRE(differences.size() == 1);
  CHECK(differences[0].path == "ids");
  CHECK(differences[0].kind == "value");
}

TEST_CASE("inspect: Python's torch.save file with a NumPy scalar metric is refused, naming the file, the global "
          "and what to store instead", "[inspect][numpy]") {
  // tests/fixtures/numpy_metric.pt (make_fixtures.py): {"epoch": 3, "model": ..., "val_acc": np.float64(0.8125)}.
  const std::filesystem::path file = std::filesystem::path(CKPT_SOURCE_DIR) / "tests" / "fixtures" / "numpy_metric.pt";
  try {
    inspect_payload(file);
    FAIL("a NumPy scalar was accepted");
  } catch (const FormatError& error) {
    const std::string message = error.what();
    INFO(message);
    CHECK(message.rfind(file.string() + ": ", 0) == 0);
    CHECK_THAT(message, Catch::Contains("global 'numpy.core.multiarray.scalar' is not allowed"));
    CHECK_THAT(message, Catch::Contains("store a Python number instead (x.item())"));
    CHECK_THAT(message, Catch::Contains("What ckpt reads, and what it refuses"));
    CHECK(error.code() == ErrorCode::format);
  }
}
