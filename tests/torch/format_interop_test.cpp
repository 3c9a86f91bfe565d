// The payload format against PyTorch itself (torch 1.13 through /usr/bin/python3), both
// ways, plus torch 2.x layout fixtures, determinism, and what the reader must refuse.
//
// How values are compared. Both languages print what they hold as a *canonical dump*: one
// line per value, in traversal order, naming its path and everything a save and a load
// must keep. For a tensor: dtype, shape, strides, storage offset, requires_grad, the exact
// bytes of the view, and its storage (numbered in order of first use, with all its bytes),
// so two views share a storage in one dump exactly when they do in the other. For a float:
// its 64 bits. For a container: its kind (dict / list / tuple) and length, then its items
// (int dict keys print as [7], str keys as ['7']). The format is specified in
// tests/python/check_cpp_payload.py, whose dump() prints it from Python objects; dump()
// here prints it from IValues. A mismatch is reported with the path of the value.
//
//  - Python writes, C++ reads: the script writes each payload and the dump of what
//    torch.load itself reads back from it; C++ loads the payload with load_file (copying
//    and memory-mapped) and its dump must be equal. Neither dump involves ckpt's writer
//    (rather than C++ saving what it loaded for Python to compare): a reader bug cannot
//    be cancelled out by a matching writer bug, and a failure names the value.
//  - C++ writes, Python reads: C++ saves a state and its dump; the script loads the file
//    with torch.load and compares its dump with the C++ one and with a mirror of the state
//    built independently in Python; it also checks the zip, the pickle's opcodes and
//    globals, weights_only=True, shared views, and that the model and optimizer state load
//    into real torch objects.
// Hand-written assertions below then check what the dumps cannot say on their own: that
// values are the ones the formulas give, that optimizer state has int keys, that views
// alias (a write through one is seen through the other), and so on.
#include "support/torch_pch.hpp"
#include "support/test_dir.hpp"

#include <cfloat>
#include <cmath>
#include <cstring>
#include <limits>
#include <unordered_map>

using namespace ckpt;
using namespace ckpt::test;

namespace {

// ---------------------------------------------------------------------------------------
// The canonical dump (keep in step with dump() in tests/python/check_cpp_payload.py)

std::string hex(const void* data, std::size_t n) {
  static const char digits[] = "0123456789abcdef";
  std::string out;
  out.reserve(2 * n);
  const auto* bytes = static_cast<const unsigned char*>(data);
  for (std::size_t i = 0; i < n; ++i) {
    out += digits[bytes[i] >> 4];
    out += digits[bytes[i] & 0xf];
  }
  return out;
}

std::string escape(const std::string& text) {
  std::string out;
  for (unsigned char c : text) {
    if (c >= 0x20 && c < 0x7f && c != '\\' && c != '\'') {
      out += static_cast<char>(c);
    } else {
      char buffer[8];
      std::snprintf(buffer, sizeof buffer, "\\x%02x", c);
      out += buffer;
    }
  }
  return out;
}

std::string float_text(double value) {
  std::uint64_t bits;
  std::memcpy(&bits, &value, sizeof bits);
  char buffer[64];
  if (std::isnan(value)) {
    std::snprintf(buffer, sizeof buffer, "nan 0x%016llx", static_cast<unsigned long long>(bits));
  } else {
    std::snprintf(buffer, sizeof buffer, "%.17g 0x%016llx", value, static_cast<unsigned long long>(bits));
  }
  return buffer;
}

std::string ints(c10::IntArrayRef values) {
  std::string out = "[";
  for (std::size_t i = 0; i < values.size(); ++i) out += (i ? "," : "") + std::to_string(values[i]);
  return out + "]";
}

std::string dtype_name(c10::ScalarType type) {
  switch (type) {
    case c10::ScalarType::Half: return "float16";
    case c10::ScalarType::BFloat16: return "bfloat16";
    case c10::ScalarType::Float: return "float32";
    case c10::ScalarType::Double: return "float64";
    case c10::ScalarType::Char: return "int8";
    case c10::ScalarType::Byte: return "uint8";
    case c10::ScalarType::Short: return "int16";
    case c10::ScalarType::Int: return "int32";
    case c10::ScalarType::Long: return "int64";
    case c10::ScalarType::Bool: return "bool";
    case c10::ScalarType::ComplexFloat: return "complex64";
    case c10::ScalarType::ComplexDouble: return "complex128";
    default: return std::string("unsupported:") + c10::toString(type);
  }
}

class Dumper {
 public:
  std::vector<std::string> lines;

  void walk(const c10::IValue& value, const std::string& path) {
    if (value.isNone()) {
      lines.push_back(path + " None");
    } else if (value.isBool()) {
      lines.push_back(path + " bool " + (value.toBool() ? "1" : "0"));
    } else if (value.isInt()) {
      lines.push_back(path + " int " + std::to_string(value.toInt()));
    } else if (value.isDouble()) {
      lines.push_back(path + " float " + float_text(value.toDouble()));
    } else if (value.isString()) {
      lines.push_back(path + " str '" + escape(value.toStringRef()) + "'");
    } else if (value.isTensor()) {
      tensor(value.toTensor(), path);
    } else if (value.isGenericDict()) {
      auto dict = value.toGenericDict();
      lines.push_back(path + " dict n=" + std::to_string(dict.size()));
      for (const auto& entry : dict) {
        if (entry.key().isString()) {
          walk(entry.value(), path + "['" + escape(entry.key().toStringRef()) + "']");
        } else if (entry.key().isInt()) {
          walk(entry.value(), path + "[" + std::to_string(entry.key().toInt()) + "]");
        } else {
          lines.push_back(path + " dict key of kind " + entry.key().tagKind());
        }
      }
    } else if (value.isTuple()) {
      const auto& items = value.toTupleRef().elements();
      lines.push_back(path + " tuple n=" + std::to_string(items.size()));
      for (std::size_t i = 0; i < items.size(); ++i) walk(items[i], path + "[" + std::to_string(i) + "]");
    } else if (value.isList()) {
      auto items = value.toListRef();
      lines.push_back(path + " list n=" + std::to_string(items.size()));
      for (std::size_t i = 0; i < items.size(); ++i) walk(items[i], path + "[" + std::to_string(i) + "]");
    } else {
      lines.push_back(path + " unsupported " + value.tagKind());
    }
  }

 private:
  void tensor(const at::Tensor& t, const std::string& path) {
    const c10::Storage& storage = t.storage();
    std::string id = "empty";
    if (storage.nbytes() != 0) {
      auto [found, fresh] = ids_.emplace(storage.unsafeGetStorageImpl(), ids_.size());
      if (fresh) {
        lines.push_back(path + " storage #" + std::to_string(found->second) + " nbytes=" +
                        std::to_string(storage.nbytes()) + " data=" + hex(storage.data(), storage.nbytes()));
      }
      id = "#" + std::to_string(found->second);
    }
    at::Tensor contiguous = t.detach().contiguous();
    lines.push_back(path + " tensor " + dtype_name(t.scalar_type()) + " shape=" + ints(t.sizes()) +
                    " stride=" + ints(t.strides()) + " offset=" + std::to_string(t.storage_offset()) +
                    " storage=" + id + " requires_grad=" + (t.requires_grad() ? "1" : "0") +
                    " data=" + hex(contiguous.data_ptr(), contiguous.nbytes()));
  }

  std::unordered_map<const c10::StorageImpl*, std::size_t> ids_;
};

std::vector<std::string> dump(const State& state) {
  Dumper dumper;
  dumper.walk(state.to_ivalue(), "$");
  return dumper.lines;
}

std::vector<std::string> read_lines(const std::filesystem::path& path) {
  std::vector<std::string> lines;
  std::istringstream in(read_bytes(path));
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

void write_lines(const std::filesystem::path& path, const std::vector<std::string>& lines) {
  std::string text;
  for (const auto& line : lines) text += line + "\n";
  write_bytes(path, text);
}

std::string cut(const std::string& line) { return line.size() <= 300 ? line : line.substr(0, 300) + "..."; }

// "" when equal; else the first differing lines, each with both versions.
std::string compare_dumps(const std::vector<std::string>& expected, const std::vector<std::string>& actual) {
  if (expected == actual) return "";
  std::string report = "dumps differ (expected " + std::to_string(expected.size()) + " lines, got " +
                       std::to_string(actual.size()) + ")";
  int shown = 0;
  for (std::size_t i = 0; i < std::max(expected.size(), actual.size()) && shown < 6; ++i) {
    const std::string want = i < expected.size() ? expected[i] : "(none)";
    const std::string got = i < actual.size() ? actual[i] : "(none)";
    if (want == got) continue;
    report += "\n  line " + std::to_string(i + 1) + "\n    expected: " + cut(want) + "\n    actual:   " + cut(got);
    ++shown;
  }
  return report;
}

// ---------------------------------------------------------------------------------------
// Python

std::string python_script() { return std::string(CKPT_SOURCE_DIR) + "/tests/python/check_cpp_payload.py"; }

std::filesystem::path fixtures_dir() { return std::filesystem::path(CKPT_SOURCE_DIR) / "tests" / "fixtures"; }

// The payloads Python writes (one script run per test process, shared by the test cases).
struct PythonPayloads {
  std::filesystem::path dir;
  CommandResult run;
  std::filesystem::path operator/(const std::string& name) const { return dir / name; }
};

const PythonPayloads& python_payloads() {
  static TestDir dir("python-payloads");
  static const PythonPayloads payloads{
      dir.path(), run_command(std::string(CKPT_PYTHON) + " " + shell_quote(python_script()) + " write " +
                              shell_quote(dir.path().string()) + " 2>&1")};
  INFO(payloads.run.output);
  REQUIRE(payloads.run.exit_code == 0);
  return payloads;
}

// ---------------------------------------------------------------------------------------
// Values by formula: the same formulas as tests/python/check_cpp_payload.py.

const std::vector<c10::ScalarType> kDTypes = {
    at::kHalf, at::kBFloat16, at::kFloat, at::kDouble, at::kChar, at::kByte,
    at::kShort, at::kInt, at::kLong, at::kBool, at::kComplexFloat, at::kComplexDouble,
};

// 12 values, shape (3, 4), exactly representable in `type`.
at::Tensor dtype_tensor(c10::ScalarType type) {
  at::Tensor x = at::arange(12, at::kDouble).reshape({3, 4});
  if (at::isComplexType(type)) return at::complex(x / 4 - 1, -(x / 2) + 2).to(type);
  if (at::isFloatingType(type)) return (x / 4 - 1).to(type);
  if (type == at::kBool) return x.remainder(3) == 0;
  if (type == at::kByte) return (x * 21).to(type);
  return (x * 11 - 60).to(type);
}

at::Tensor special_float32() {
  return at::tensor(std::vector<float>{NAN, INFINITY, -INFINITY, -0.0f, std::numeric_limits<float>::denorm_min(),
                                       FLT_MAX, FLT_EPSILON});
}
at::Tensor special_float64() {
  return at::tensor(std::vector<double>{NAN, INFINITY, -INFINITY, -0.0, std::numeric_limits<double>::denorm_min(),
                                        DBL_MAX, DBL_EPSILON});
}
at::Tensor special_float16() {
  return at::tensor(std::vector<float>{INFINITY, -0.0f, 65504.0f, 5.960464477539063e-08f}).to(at::kHalf);
}

State dtype_tensors(bool with_specials) {
  State state;
  for (auto type : kDTypes) state.set(dtype_name(type), dtype_tensor(type));
  if (with_specials) {
    state.set("special_float32", special_float32());
    state.set("special_float64", special_float64());
    state.set("special_float16", special_float16());
  }
  return state;
}

State view_tensors() {
  at::Tensor base = at::arange(24, at::kFloat);
  at::Tensor grid = base.view({4, 6});
  at::Tensor int_base = at::arange(10, at::kLong);
  State views;
  views.set("base", base);
  views.set("grid", grid);
  views.set("offset_slice", base.slice(0, 5, 11));
  views.set("transpose", grid.t());
  views.set("strided", base.slice(0, 0, 24, 2));
  views.set("column", grid.select(1, 2));
  views.set("zero_d", base.select(0, 7));
  views.set("left", grid.slice(1, 0, 3));
  views.set("right", grid.slice(1, 3, 6));
  views.set("empty", at::zeros({0, 3}));
  views.set("int_base", int_base);
  views.set("int_tail", int_base.slice(0, 6, 10));
  views.set("expanded", at::arange(3, at::kFloat).expand({4, 3}));  // stride 0
  return views;
}

c10::IValue tuple(std::vector<c10::IValue> items) { return c10::ivalue::Tuple::create(std::move(items)); }

c10::impl::GenericList any_list(std::vector<c10::IValue> items) {
  c10::impl::GenericList list(c10::AnyType::get());
  for (auto& item : items) list.push_back(std::move(item));
  return list;
}

c10::impl::GenericDict str_dict(std::vector<std::pair<std::string, c10::IValue>> entries) {
  c10::impl::GenericDict dict(c10::StringType::get(), c10::AnyType::get());
  for (auto& [key, value] : entries) dict.insert(key, std::move(value));
  return dict;
}

c10::impl::GenericDict int_dict(std::vector<std::pair<int64_t, c10::IValue>> entries) {
  c10::impl::GenericDict dict(c10::IntType::get(), c10::AnyType::get());
  for (auto& [key, value] : entries) dict.insert(key, std::move(value));
  return dict;
}

std::vector<int64_t> counting(int64_t n) {
  std::vector<int64_t> values(static_cast<std::size_t>(n));
  for (int64_t i = 0; i < n; ++i) values[static_cast<std::size_t>(i)] = i;
  return values;
}

// {"key0": 0, ..., "key1199": 1199}: past the pickler's batches of 1000.
c10::impl::GenericDict many_keys() {
  c10::impl::GenericDict dict(c10::StringType::get(), c10::AnyType::get());
  for (int64_t i = 0; i < 1200; ++i) dict.insert("key" + std::to_string(i), i);
  return dict;
}

constexpr int64_t kLarge = 1300000;  // float32 elements: 5.2 MB, more than the 1 MiB write / 4 MiB read chunks

State large_state() {
  at::Tensor large = at::arange(kLarge, at::kFloat);
  return State{{"large", large}, {"tail", large.slice(0, kLarge - 10, kLarge)}};
}

void check_large(const State& state) {
  at::Tensor large = state.get<at::Tensor>("large");
  at::Tensor tail = state.get<at::Tensor>("tail");
  CHECK(large.scalar_type() == at::kFloat);
  CHECK(large.equal(at::arange(kLarge, at::kFloat)));
  CHECK(tail.storage_offset() == kLarge - 10);
  CHECK(tail.data_ptr<float>() == large.data_ptr<float>() + (kLarge - 10));
}

// What a trainer saves, built in C++: the Python mirror is expected_cpp_state() in
// check_cpp_payload.py. with_floats = false leaves out every Python float (tensors of
// floats stay): torch 1.13's weights_only unpickler then accepts the file.
State cpp_state(bool with_floats) {
  State state;
  state.set("epoch", int64_t{7});
  state.set("dtypes", dtype_tensors(with_floats));
  state.set("views", view_tensors());
  State model;
  model.set("0.weight", (at::arange(6, at::kFloat).reshape({2, 3}) - 2.5) / 2);
  model.set("0.bias", at::tensor({0.5f, -0.5f}));
  model.set("1.weight", at::ones({2}));
  model.set("1.bias", at::zeros({2}));
  model.set("1.running_mean", at::tensor({0.25f, -0.25f}));
  model.set("1.running_var", at::tensor({1.5f, 2.0f}));
  model.set("1.num_batches_tracked", at::scalar_tensor(9, at::kLong));
  state.set("model", model);
  const std::vector<std::vector<int64_t>> shapes = {{2, 3}, {2}, {2}, {2}};
  if (with_floats) {
    std::vector<std::pair<int64_t, c10::IValue>> entries;
    for (int64_t i = 0; i < 4; ++i) {
      entries.emplace_back(i, str_dict({{"step", at::scalar_tensor(3.0, at::kFloat)},
                                        {"exp_avg", at::full(shapes[i], 0.125 * (i + 1))},
                                        {"exp_avg_sq", at::full(shapes[i], 0.0625)}}));
    }
    auto group = str_dict({{"lr", 0.001},
                           {"betas", tuple({0.9, 0.999})},
                           {"eps", 1e-08},
                           {"weight_decay", int64_t{0}},
                           {"amsgrad", false},
                           {"maximize", false},
                           {"foreach", c10::IValue()},
                           {"capturable", false},
                           {"differentiable", false},
                           {"fused", c10::IValue()},
                           {"params", c10::List<int64_t>({0, 1, 2, 3})}});
    state.set("optimizer", str_dict({{"state", int_dict(std::move(entries))}, {"param_groups", any_list({group})}}));
  } else {
    std::vector<std::pair<int64_t, c10::IValue>> entries;
    for (int64_t i = 0; i < 4; ++i) {
      entries.emplace_back(i, str_dict({{"step", at::scalar_tensor(3 + i, at::kLong)},
                                        {"buffer", at::full(shapes[i], i, at::kLong)}}));
    }
    state.set("int_keyed", int_dict(std::move(entries)));
  }
  auto values = str_dict({
      {"int", int64_t{42}},
      {"zero", int64_t{0}},
      {"neg", int64_t{-7}},
      {"byte_edge", int64_t{255}},
      {"short_edge", int64_t{65535}},
      {"int32_max", int64_t{2147483647}},
      {"int32_min", int64_t{-2147483648LL}},
      {"beyond_int32", int64_t{2147483648LL}},
      {"below_int32", int64_t{-2147483649LL}},
      {"int64_max", std::numeric_limits<int64_t>::max()},
      {"int64_min", std::numeric_limits<int64_t>::min()},
      {"neg_big", int64_t{-(int64_t{1} << 40)}},
      {"true", true},
      {"false", false},
      {"none", c10::IValue()},
      {"text", std::string("naïve café — 東京 🚀")},
      {"empty_text", std::string()},
      {"escapes", std::string("quote' back\\slash\nnewline\ttab")},
      {"int_list", c10::List<int64_t>({1, 2, 3})},
      {"bool_list", c10::List<bool>({true, false})},
      {"str_list", c10::List<std::string>({"a", "β"})},
      {"mixed", any_list({int64_t{1}, std::string("two"), c10::IValue(), true,
                          any_list({int64_t{4}, any_list({int64_t{5}})}), tuple({int64_t{6}, int64_t{7}}),
                          str_dict({{"eight", int64_t{8}}})})},
      {"tuple", tuple({int64_t{1}, std::string("x"), c10::IValue(), true, tuple({int64_t{2}, int64_t{3}})})},
      {"one_tuple", tuple({std::string("solo")})},
      {"empty_tuple", tuple({})},
      {"empty_list", any_list({})},
      {"empty_dict", str_dict({})},
      {"one_item", c10::List<int64_t>({5})},
      {"single_entry", str_dict({{"only", int64_t{1}}})},
      {"nested", str_dict({{"a", str_dict({{"b", str_dict({{"c", any_list({any_list({}),
                                                                          any_list({c10::List<int64_t>({1})})})}})}})}})},
      {"int_keys", int_dict({{0, std::string("zero")}, {7, std::string("seven")}, {-1, std::string("minus one")}})},
      {"long_list", c10::List<int64_t>(counting(2500))},
      {"many_keys", many_keys()},
      {"odd_keys", str_dict({{"", std::string("empty key")}, {"ключ", std::string("non-ASCII key")}})},
  });
  if (with_floats) {
    values.insert("float", 0.1);
    values.insert("neg_zero", -0.0);
    values.insert("inf", std::numeric_limits<double>::infinity());
    values.insert("neg_inf", -std::numeric_limits<double>::infinity());
    values.insert("nan", std::nan(""));
    values.insert("tiny", std::numeric_limits<double>::denorm_min());
    values.insert("huge", DBL_MAX);
    values.insert("float_list", c10::List<double>({0.5, -1.25, 1e300}));
    values.insert("float_tuple", tuple({0.9, 0.999}));
  }
  state.set("values", values);
  state.set("param", at::arange(4, at::kFloat).requires_grad_(true));
  return state;
}

// ---------------------------------------------------------------------------------------
// Assertion helpers

bool same_bits(const at::Tensor& a, const at::Tensor& b) {
  at::Tensor x = a.contiguous(), y = b.contiguous();
  return x.scalar_type() == y.scalar_type() && x.sizes() == y.sizes() &&
         std::memcmp(x.data_ptr(), y.data_ptr(), x.nbytes()) == 0;
}

bool shares_storage(const at::Tensor& a, const at::Tensor& b) {
  return a.storage().unsafeGetStorageImpl() == b.storage().unsafeGetStorageImpl();
}

at::Tensor tensor_at(const c10::impl::GenericDict& dict, const std::string& key) { return dict.at(key).toTensor(); }

void check_dtype_tensors(const State& dtypes, bool with_specials) {
  for (auto type : kDTypes) {
    INFO(dtype_name(type));
    at::Tensor t = dtypes.get<at::Tensor>(dtype_name(type));
    CHECK(t.scalar_type() == type);
    CHECK(t.sizes() == c10::IntArrayRef{3, 4});
    CHECK(t.strides() == c10::IntArrayRef{4, 1});
    CHECK(t.equal(dtype_tensor(type)));
    CHECK(same_bits(t, dtype_tensor(type)));
  }
  if (with_specials) {
    CHECK(same_bits(dtypes.get<at::Tensor>("special_float32"), special_float32()));
    CHECK(same_bits(dtypes.get<at::Tensor>("special_float64"), special_float64()));
    CHECK(same_bits(dtypes.get<at::Tensor>("special_float16"), special_float16()));
  }
}

// The views of view_tensors(), loaded: right shapes, strides, offsets, values, and one
// storage that a write through any view changes for all.
void check_views(const State& views) {
  at::Tensor base = views.get<at::Tensor>("base");
  at::Tensor grid = views.get<at::Tensor>("grid");
  at::Tensor offset_slice = views.get<at::Tensor>("offset_slice");
  at::Tensor transpose = views.get<at::Tensor>("transpose");
  at::Tensor strided = views.get<at::Tensor>("strided");
  at::Tensor column = views.get<at::Tensor>("column");
  at::Tensor zero_d = views.get<at::Tensor>("zero_d");
  at::Tensor left = views.get<at::Tensor>("left");
  at::Tensor right = views.get<at::Tensor>("right");
  at::Tensor empty = views.get<at::Tensor>("empty");
  at::Tensor int_base = views.get<at::Tensor>("int_base");
  at::Tensor int_tail = views.get<at::Tensor>("int_tail");

  CHECK(base.equal(at::arange(24, at::kFloat)));
  CHECK(base.storage().nbytes() == 24 * 4);
  CHECK(offset_slice.storage_offset() == 5);
  CHECK(offset_slice.sizes() == c10::IntArrayRef{6});
  CHECK(offset_slice.equal(at::arange(5, 11, at::kFloat)));
  CHECK(transpose.sizes() == c10::IntArrayRef{6, 4});
  CHECK(transpose.strides() == c10::IntArrayRef{1, 6});
  CHECK_FALSE(transpose.is_contiguous());
  CHECK(transpose.equal(at::arange(24, at::kFloat).view({4, 6}).t()));
  CHECK(strided.strides() == c10::IntArrayRef{2});
  CHECK(strided.equal(at::arange(0, 24, 2, at::kFloat)));
  CHECK(column.storage_offset() == 2);
  CHECK(column.strides() == c10::IntArrayRef{6});
  CHECK(column.equal(at::tensor({2.0f, 8.0f, 14.0f, 20.0f})));
  CHECK(zero_d.dim() == 0);
  CHECK(zero_d.storage_offset() == 7);
  CHECK(zero_d.item<float>() == 7.0f);
  CHECK(left.strides() == c10::IntArrayRef{6, 1});
  CHECK(right.storage_offset() == 3);
  CHECK(empty.sizes() == c10::IntArrayRef{0, 3});
  CHECK(empty.scalar_type() == at::kFloat);
  CHECK(int_tail.storage_offset() == 6);
  CHECK(int_tail.equal(at::arange(6, 10, at::kLong)));
  at::Tensor expanded = views.get<at::Tensor>("expanded");
  CHECK(expanded.strides() == c10::IntArrayRef{0, 1});
  CHECK(expanded.storage().nbytes() == 3 * 4);
  CHECK(expanded.equal(at::arange(3, at::kFloat).expand({4, 3})));

  for (const at::Tensor& view : {grid, offset_slice, transpose, strided, column, zero_d, left, right}) {
    CHECK(shares_storage(view, base));
  }
  CHECK(shares_storage(int_tail, int_base));
  CHECK_FALSE(shares_storage(int_base, base));
  CHECK(offset_slice.data_ptr<float>() == base.data_ptr<float>() + 5);
  CHECK(zero_d.data_ptr<float>() == base.data_ptr<float>() + 7);

  offset_slice.fill_(-1);
  CHECK(base.slice(0, 5, 11).equal(at::full({6}, -1.0f)));
  right.fill_(-2);
  CHECK(grid.slice(1, 3, 6).equal(at::full({4, 3}, -2.0f)));
  CHECK(left.ne(-2).all().item<bool>());
  transpose.select(0, 1).select(0, 0).fill_(100);  // transpose[1][0] is base[1]
  CHECK(base[1].item<float>() == 100.0f);
  int_tail.fill_(-5);
  CHECK(int_base.slice(0, 6, 10).equal(at::full({4}, -5, at::kLong)));
}

template <typename Fn>
std::string format_error_of(Fn&& fn) {
  try {
    fn();
  } catch (const FormatError& error) {
    return error.what();
  } catch (const std::exception& error) {
    return std::string("not a FormatError: ") + error.what();
  }
  return "no error";
}

LoadOptions mapped() {
  LoadOptions options;
  options.memory_map = true;
  return options;
}

const std::vector<std::string> kPythonPayloads = {
    "module_state_dict", "trainer_checkpoint", "dtypes", "views", "values", "single_entry", "legacy", "protocol4",
};

}  // namespace

// ---------------------------------------------------------------------------------------
// 1. Python writes, C++ reads

TEST_CASE("every payload torch.save writes loads in C++ value for value (read and memory-mapped)",
          "[format][interop][python]") {
  const auto& python = python_payloads();
  for (const auto& name : kPythonPayloads) {
    const auto file = python / (name + ".pt");
    const auto expected = read_lines(python / (name + ".pt.dump"));
    REQUIRE(expected.size() > 2);
    {
      INFO(name << " (load_file)");
      CHECK(compare_dumps(expected, dump(load_file(file))) == "");
    }
    {
      INFO(name << " (memory_map)");
      CHECK(compare_dumps(expected, dump(load_file(file, mapped()))) == "");
    }
  }
}

TEST_CASE("a module state_dict with BatchNorm from Python: keys in order, buffers, no _metadata",
          "[format][interop][python]") {
  const auto& python = python_payloads();
  State sd = load_file(python / "module_state_dict.pt");
  CHECK(sd.keys() == std::vector<std::string>{"0.weight", "0.bias", "1.weight", "1.bias", "1.running_mean",
                                              "1.running_var", "1.num_batches_tracked", "3.weight", "3.bias"});
  at::Tensor tracked = sd.get<at::Tensor>("1.num_batches_tracked");
  CHECK(tracked.scalar_type() == at::kLong);
  CHECK(tracked.dim() == 0);
  CHECK(tracked.item<int64_t>() == 9);  // 3 optimizers x 3 training steps
  CHECK(sd.get<at::Tensor>("0.weight").sizes() == c10::IntArrayRef{4, 3});
  CHECK(sd.get<at::Tensor>("3.weight").sizes() == c10::IntArrayRef{2, 4});
  CHECK(sd.get<at::Tensor>("1.running_var").sizes() == c10::IntArrayRef{4});
  CHECK(sd.get<at::Tensor>("1.running_var").gt(0).all().item<bool>());
  for (const auto& [key, value] : sd) {
    INFO(key);
    CHECK_FALSE(value.toTensor().requires_grad());  // state_dict() tensors are detached
  }
}

TEST_CASE("Adam, AdamW, SGD and StepLR state_dicts from Python keep int keys, tensors, tuples and None",
          "[format][interop][python]") {
  const auto& python = python_payloads();
  State checkpoint = load_file(python / "trainer_checkpoint.pt");
  CHECK(checkpoint.keys() ==
        std::vector<std::string>{"epoch", "best_acc", "model", "adam", "adamw", "sgd", "scheduler"});
  CHECK(checkpoint.get<int64_t>("epoch") == 3);
  CHECK(checkpoint.get<double>("best_acc") == 0.8125);
  State model = checkpoint.get<State>("model");
  const std::vector<std::string> parameters = {"0.weight", "0.bias", "1.weight", "1.bias", "3.weight", "3.bias"};

  for (const char* name : {"adam", "adamw"}) {
    INFO(name);
    auto optimizer = checkpoint.at(name).toGenericDict();
    auto state = optimizer.at("state").toGenericDict();
    CHECK(state.keyType()->kind() == c10::TypeKind::IntType);
    REQUIRE(state.size() == 6);
    for (int64_t i = 0; i < 6; ++i) {
      INFO("state[" << i << "]");
      auto entry = state.at(i).toGenericDict();
      at::Tensor step = tensor_at(entry, "step");
      CHECK(step.scalar_type() == at::kFloat);  // torch 1.13: a float32 0-d tensor
      CHECK(step.dim() == 0);
      CHECK(step.item<float>() == 3.0f);
      CHECK(tensor_at(entry, "exp_avg").sizes() == model.get<at::Tensor>(parameters[i]).sizes());
      CHECK(tensor_at(entry, "exp_avg_sq").sizes() == model.get<at::Tensor>(parameters[i]).sizes());
      CHECK(tensor_at(entry, "exp_avg_sq").ge(0).all().item<bool>());
    }
    auto groups = optimizer.at("param_groups").toList();
    REQUIRE(groups.size() == 1);
    auto group = groups.get(0).toGenericDict();
    CHECK(group.at("lr").toDouble() == (std::string(name) == "adam" ? 1e-3 : 2e-3));
    REQUIRE(group.at("betas").isTuple());
    const auto& betas = group.at("betas").toTupleRef().elements();
    REQUIRE(betas.size() == 2);
    CHECK(betas[0].toDouble() == 0.9);
    CHECK(betas[1].toDouble() == 0.999);
    CHECK(group.at("eps").toDouble() == 1e-8);
    if (std::string(name) == "adam") {
      CHECK(group.at("weight_decay").isInt());  // Python's 0, not 0.0
      CHECK(group.at("weight_decay").toInt() == 0);
    } else {
      CHECK(group.at("weight_decay").toDouble() == 0.01);
    }
    CHECK(group.at("amsgrad").isBool());
    CHECK_FALSE(group.at("amsgrad").toBool());
    CHECK(group.at("foreach").isNone());
    CHECK(group.at("maximize").isBool());
    CHECK(group.at("params").toIntVector() == std::vector<int64_t>{0, 1, 2, 3, 4, 5});
  }

  auto sgd = checkpoint.at("sgd").toGenericDict();
  auto sgd_state = sgd.at("state").toGenericDict();
  REQUIRE(sgd_state.size() == 6);
  for (int64_t i = 0; i < 6; ++i) {
    CHECK(tensor_at(sgd_state.at(i).toGenericDict(), "momentum_buffer").sizes() ==
          model.get<at::Tensor>(parameters[i]).sizes());
  }
  auto sgd_group = sgd.at("param_groups").toList().get(0).toGenericDict();
  CHECK(sgd_group.at("lr").toDouble() == 0.1);
  CHECK(sgd_group.at("momentum").toDouble() == 0.9);
  CHECK(sgd_group.at("dampening").toInt() == 0);
  CHECK_FALSE(sgd_group.at("nesterov").toBool());
  CHECK(sgd_group.at("foreach").isNone());

  State scheduler = checkpoint.get<State>("scheduler");
  CHECK(scheduler.get<int64_t>("step_size") == 2);
  CHECK(scheduler.get<double>("gamma") == 0.5);
  CHECK(scheduler.at("base_lrs").toDoubleVector() == std::vector<double>{0.1});
  CHECK(scheduler.get<int64_t>("last_epoch") == 1);
  CHECK(scheduler.get<bool>("verbose") == false);
  CHECK(scheduler.get<int64_t>("_step_count") == 2);
  CHECK(scheduler.at("_last_lr").toDoubleVector() == std::vector<double>{0.1});
}

TEST_CASE("tensors of every dtype from Python, with NaN, infinities, -0 and denormals bit for bit",
          "[format][interop][python]") {
  const auto& python = python_payloads();
  check_dtype_tensors(load_file(python / "dtypes.pt"), true);
  check_dtype_tensors(load_file(python / "dtypes.pt", mapped()), true);
}

TEST_CASE("views from Python keep offsets and strides, and still share their storage",
          "[format][interop][python]") {
  const auto& python = python_payloads();
  for (bool map : {false, true}) {
    INFO((map ? "memory_map" : "load_file"));
    State views = map ? load_file(python / "views.pt", mapped()) : load_file(python / "views.pt");
    // One tensor object pickled twice (a memo reference) is the same storage again.
    CHECK(shares_storage(views.get<at::Tensor>("same_object_a"), views.get<at::Tensor>("base")));
    CHECK(shares_storage(views.get<at::Tensor>("same_object_b"), views.get<at::Tensor>("base")));
    check_views(views);
  }
}

TEST_CASE("Python values: ints to the int64 limits, floats bit for bit, text, None, nesting, Parameter, Size",
          "[format][interop][python]") {
  const auto& python = python_payloads();
  State v = load_file(python / "values.pt");
  CHECK(v.get<int64_t>("int") == 42);
  CHECK(v.get<int64_t>("neg") == -7);
  CHECK(v.get<int64_t>("byte_edge") == 255);
  CHECK(v.get<int64_t>("short_edge") == 65535);
  CHECK(v.get<int64_t>("int32_max") == 2147483647);
  CHECK(v.get<int64_t>("int32_min") == -2147483648LL);
  CHECK(v.get<int64_t>("beyond_int32") == 2147483648LL);
  CHECK(v.get<int64_t>("below_int32") == -2147483649LL);
  CHECK(v.get<int64_t>("big") == (int64_t{1} << 62) + 12345);
  CHECK(v.get<int64_t>("int64_max") == std::numeric_limits<int64_t>::max());
  CHECK(v.get<int64_t>("int64_min") == std::numeric_limits<int64_t>::min());
  CHECK(v.get<int64_t>("neg_big") == -(int64_t{1} << 40));
  CHECK(v.at("float").isDouble());
  CHECK(v.get<double>("float") == 0.1);
  CHECK(v.get<double>("neg_zero") == 0.0);
  CHECK(std::signbit(v.get<double>("neg_zero")));
  CHECK(v.get<double>("inf") == INFINITY);
  CHECK(v.get<double>("neg_inf") == -INFINITY);
  CHECK(std::isnan(v.get<double>("nan")));
  CHECK(v.get<double>("tiny") == std::numeric_limits<double>::denorm_min());
  CHECK(v.get<double>("huge") == DBL_MAX);
  CHECK(v.get<bool>("true"));
  CHECK_FALSE(v.get<bool>("false"));
  CHECK(v.at("none").isNone());
  CHECK(v.get<std::string>("text") == "naïve café — 東京 🚀");
  CHECK(v.get<std::string>("empty_text").empty());
  const char escapes[] = "quote' back\\slash\nnewline\ttab\0nul";
  CHECK(v.get<std::string>("escapes") == std::string(escapes, sizeof escapes - 1));

  CHECK(v.at("int_list").isIntList());
  CHECK(v.at("int_list").toIntVector() == std::vector<int64_t>{1, 2, 3});
  CHECK(v.at("float_list").toDoubleVector() == std::vector<double>{0.5, -1.25});
  CHECK(v.at("bool_list").isBoolList());
  CHECK(v.at("str_list").toListRef()[1].toStringRef() == "β");
  auto mixed = v.at("mixed").toListRef();
  REQUIRE(mixed.size() == 8);
  CHECK(mixed[0].toInt() == 1);
  CHECK(mixed[1].toStringRef() == "two");
  CHECK(mixed[2].toDouble() == 3.0);
  CHECK(mixed[3].isNone());
  CHECK(mixed[4].toBool());
  CHECK(mixed[5].toListRef()[1].toListRef()[0].toInt() == 5);
  CHECK(mixed[6].isTuple());
  CHECK(mixed[7].toGenericDict().at("eight").toInt() == 8);
  const auto& tuple_items = v.at("tuple").toTupleRef().elements();
  REQUIRE(tuple_items.size() == 5);
  CHECK(tuple_items[1].toDouble() == 2.5);
  CHECK(tuple_items[3].isNone());
  CHECK(v.at("one_tuple").toTupleRef().elements().size() == 1);
  CHECK(v.at("empty_tuple").toTupleRef().elements().empty());
  CHECK(v.at("empty_list").toListRef().empty());
  CHECK(v.at("empty_dict").toGenericDict().empty());
  CHECK(v.at("one_item").toIntVector() == std::vector<int64_t>{5});
  CHECK(v.get<State>("nested").get<State>("a").get<State>("b").at("c").toListRef()[1].toListRef()[0].toIntVector() ==
        std::vector<int64_t>{1});
  auto int_keys = v.at("int_keys").toGenericDict();
  CHECK(int_keys.keyType()->kind() == c10::TypeKind::IntType);
  CHECK(int_keys.at(7).toStringRef() == "seven");
  CHECK(int_keys.at(-1).toStringRef() == "minus one");
  CHECK(v.at("alias_a").toIntVector() == std::vector<int64_t>{1, 2});
  CHECK(v.at("alias_b").toIntVector() == std::vector<int64_t>{1, 2});
  // torch.Size comes back as a tuple of ints.
  const auto& size = v.at("size").toTupleRef().elements();
  REQUIRE(size.size() == 2);
  CHECK(size[0].toInt() == 2);
  CHECK(size[1].toInt() == 3);
  // nn.Parameter: a tensor that keeps requires_grad.
  at::Tensor param = v.get<at::Tensor>("param");
  CHECK(param.requires_grad());
  CHECK(param.equal(at::arange(4, at::kFloat)));
  at::Tensor frozen = v.get<at::Tensor>("frozen_param");
  CHECK_FALSE(frozen.requires_grad());
  CHECK(frozen.equal(at::arange(3, at::kDouble)));
  CHECK(v.get<at::Tensor>("grad_tensor").requires_grad());
  CHECK(v.at("long_list").toIntVector() == counting(2500));
  auto many = v.at("many_keys").toGenericDict();
  REQUIRE(many.size() == 1200);
  CHECK(many.at("key1199").toInt() == 1199);
  State odd_keys = v.get<State>("odd_keys");
  CHECK(odd_keys.get<std::string>("") == "empty key");
  CHECK(odd_keys.get<std::string>("ключ") == "non-ASCII key");
}

TEST_CASE("bytes from Python (protocol 2: _codecs.encode) load as strings of the same bytes",
          "[format][interop][python]") {
  const auto& python = python_payloads();
  State state = load_file(python / "bytes.pt");
  std::string all(256, '\0');
  for (int i = 0; i < 256; ++i) all[i] = static_cast<char>(i);
  CHECK(state.get<std::string>("all") == all);
  CHECK(state.get<std::string>("ascii") == "abc");
}

TEST_CASE("empty bytes from Python (protocol 2: __builtin__.bytes()) load as an empty string",
          "[format][interop][python]") {
  const auto& python = python_payloads();
  CHECK(format_error_of([&] { load_file(python / "empty_bytes.pt"); }) == "no error");
  CHECK(load_file(python / "empty_bytes.pt").get<std::string>("empty").empty());
}

TEST_CASE("a 5 MB storage from Python, across read chunks, loads whole, with its view",
          "[format][interop][python]") {
  const auto& python = python_payloads();
  check_large(load_file(python / "large.pt"));
  check_large(load_file(python / "large.pt", mapped()));
}

TEST_CASE("a dict with a single entry (pickled with SETITEM) loads", "[format][interop][python]") {
  const auto& python = python_payloads();
  State state = load_file(python / "single_entry.pt");
  CHECK(state.keys() == std::vector<std::string>{"t"});
  at::Tensor t = state.get<at::Tensor>("t");
  CHECK(t.scalar_type() == at::kLong);
  CHECK(t.equal(at::arange(6, at::kLong).reshape({2, 3})));
}

TEST_CASE("the legacy format (_use_new_zipfile_serialization=False) loads with dtypes, views and values",
          "[format][interop][python]") {
  const auto& python = python_payloads();
  State legacy = load_file(python / "legacy.pt");
  CHECK(legacy.get<int64_t>("epoch") == 5);
  CHECK(legacy.get<double>("lr") == 0.5);
  CHECK(legacy.get<std::string>("name") == "legacy ✓");
  CHECK(legacy.get<State>("values").get<int64_t>("big") == std::numeric_limits<int64_t>::max());
  CHECK(legacy.get<State>("model").get<at::Tensor>("1.num_batches_tracked").item<int64_t>() == 9);
  check_dtype_tensors(legacy.get<State>("dtypes"), true);
  check_views(legacy.get<State>("views"));
}

TEST_CASE("a complex Parameter from Python keeps requires_grad", "[format][interop][python]") {
  const auto& python = python_payloads();
  const auto expected = read_lines(python / "complex_parameter.pt.dump");
  State state = load_file(python / "complex_parameter.pt");
  at::Tensor z = state.get<at::Tensor>("z");
  CHECK(z.scalar_type() == at::kComplexFloat);
  CHECK(z.equal(at::complex(at::arange(3, at::kFloat), -at::arange(3, at::kFloat))));
  CHECK(z.requires_grad());  // torch.load gives requires_grad=True
  CHECK(compare_dumps(expected, dump(state)) == "");
}

// ---------------------------------------------------------------------------------------
// 2. C++ writes, Python reads

TEST_CASE("what save_file writes, torch.load reads value for value; the zip and pickle are what torch accepts",
          "[format][interop][python]") {
  TestDir dir("cpp-to-python");
  const State full = cpp_state(true);
  const State float_free = cpp_state(false);
  save_file(full, dir / "full.pth");
  write_lines(dir / "full.pth.dump", dump(full));
  save_file(float_free, dir / "float_free.pth");
  write_lines(dir / "float_free.pth.dump", dump(float_free));
  // The checker is not vacuous: a file with one changed value, beside the dump of the
  // unchanged state, must be reported, naming the value.
  State tampered = cpp_state(true);
  State model = tampered.get<State>("model");
  model.set("0.bias", at::tensor({0.5f, -0.25f}));
  tampered.set("model", model);
  save_file(tampered, dir / "tampered.pth");
  write_lines(dir / "tampered.pth.dump", dump(full));
  save_file(large_state(), dir / "large.pth");

  auto result = run_command(std::string(CKPT_PYTHON) + " " + shell_quote(python_script()) +
                            " check --weights-only float_free --expect-fail tampered" +
                            " full=" + shell_quote((dir / "full.pth").string()) +
                            " float_free=" + shell_quote((dir / "float_free.pth").string()) +
                            " tampered=" + shell_quote((dir / "tampered.pth").string()) +
                            " large=" + shell_quote((dir / "large.pth").string()) + " 2>&1");
  INFO(result.output);
  CHECK(result.exit_code == 0);
  CHECK_THAT(result.output, Catch::Contains("RESULT full ok"));
  CHECK_THAT(result.output, Catch::Contains("RESULT float_free ok"));
  CHECK_THAT(result.output, Catch::Contains("RESULT tampered fail"));
  CHECK_THAT(result.output, Catch::Contains("RESULT large ok"));
  CHECK_THAT(result.output, Catch::Contains("+$['model']['0.bias'] tensor float32"));
}

TEST_CASE("C++ views that share a storage are written once and reload shared in C++ too", "[format][interop]") {
  TestDir dir("cpp-views");
  save_file(State{{"views", view_tensors()}}, dir / "views.pth");
  State loaded = load_file(dir / "views.pth");
  check_views(loaded.get<State>("views"));
  CHECK(compare_dumps(dump(State{{"views", view_tensors()}}), dump(load_file(dir / "views.pth"))) == "");
}

// ---------------------------------------------------------------------------------------
// 3. Determinism

TEST_CASE("the same state saved twice, under different names, gives byte-identical files",
          "[format][determinism]") {
  TestDir dir("determinism");
  const State state = cpp_state(true);
  save_file(state, dir / "a.pth");
  std::filesystem::create_directories(dir / "elsewhere");
  save_file(state, dir / "elsewhere" / "a_much_longer_file_name.checkpoint.pth");
  save_file(cpp_state(true), dir / "rebuilt.pth");  // equal content, other tensor addresses
  const std::string first = read_bytes(dir / "a.pth");
  CHECK(first.size() > 1000);
  CHECK(read_bytes(dir / "elsewhere" / "a_much_longer_file_name.checkpoint.pth") == first);
  CHECK(read_bytes(dir / "rebuilt.pth") == first);
  // A state loaded back and saved again is byte-identical too.
  save_file(load_file(dir / "a.pth"), dir / "resaved.pth");
  CHECK(read_bytes(dir / "resaved.pth") == first);
}

// ---------------------------------------------------------------------------------------
// 4. torch 2.x layout (committed fixtures, see tests/fixtures/README.md)

TEST_CASE("files in torch 2.x's layout load: other folder names, .format_version, .storage_alignment, "
          "serialization_id", "[format][interop][fixtures]") {
  for (const std::string name : {"torch2_checkpoint.pt", "resnet_tiny-epoch3.pth"}) {
    INFO(name);
    const auto file = fixtures_dir() / name;
    const std::string folder = std::filesystem::path(name).stem().string();
    // The fixture is what it claims to be.
    const std::string bytes = read_bytes(file);
    for (const char* record : {"/data.pkl", "/.format_version", "/.storage_alignment", "/byteorder", "/version",
                               "/.data/serialization_id", "/data/0"}) {
      CHECK(bytes.find(folder + record) != std::string::npos);
    }
    CHECK(bytes.find("archive/") == std::string::npos);
    const auto expected = read_lines(fixtures_dir() / (name + ".dump"));
    REQUIRE(expected.size() > 2);
    CHECK(compare_dumps(expected, dump(load_file(file))) == "");
    CHECK(compare_dumps(expected, dump(load_file(file, mapped()))) == "");
  }
}

TEST_CASE("the torch 2.x fixtures hold the values make_fixtures.py put in them", "[format][interop][fixtures]") {
  const auto check_model = [](const State& model) {
    CHECK(model.keys() == std::vector<std::string>{"0.weight", "0.bias", "1.weight", "1.bias", "1.running_mean",
                                                   "1.running_var", "1.num_batches_tracked", "3.weight", "3.bias"});
    const std::vector<std::string> parameters = {"0.weight", "0.bias", "1.weight", "1.bias", "3.weight", "3.bias"};
    for (std::size_t i = 0; i < parameters.size(); ++i) {
      INFO(parameters[i]);
      at::Tensor p = model.get<at::Tensor>(parameters[i]);
      CHECK(p.equal((at::arange(p.numel(), at::kFloat).reshape(p.sizes()) - static_cast<double>(i)) / 8));
    }
    CHECK(model.get<at::Tensor>("1.running_mean").equal(at::arange(4, at::kFloat) / 4));
    CHECK(model.get<at::Tensor>("1.running_var").equal(at::arange(4, at::kFloat) + 1));
    CHECK(model.get<at::Tensor>("1.num_batches_tracked").item<int64_t>() == 7);
  };
  check_model(load_file(fixtures_dir() / "resnet_tiny-epoch3.pth"));

  // 45 storages: data/10 comes after data/9 in the file (numeric order, as torch 2.x).
  const std::string bytes = read_bytes(fixtures_dir() / "torch2_checkpoint.pt");
  CHECK(bytes.find("torch2_checkpoint/data/9") < bytes.find("torch2_checkpoint/data/10"));
  CHECK(bytes.find("torch2_checkpoint/data/44") != std::string::npos);
  State checkpoint = load_file(fixtures_dir() / "torch2_checkpoint.pt");
  CHECK(checkpoint.keys() == std::vector<std::string>{"epoch", "best_acc", "model", "optimizer", "scheduler",
                                                      "dtypes", "views", "values"});
  CHECK(checkpoint.get<int64_t>("epoch") == 3);
  CHECK(checkpoint.get<double>("best_acc") == 0.8125);
  check_model(checkpoint.get<State>("model"));
  auto optimizer = checkpoint.at("optimizer").toGenericDict();
  auto state = optimizer.at("state").toGenericDict();
  CHECK(state.keyType()->kind() == c10::TypeKind::IntType);
  REQUIRE(state.size() == 6);
  for (int64_t i = 0; i < 6; ++i) {
    at::Tensor step = tensor_at(state.at(i).toGenericDict(), "step");
    CHECK(step.scalar_type() == at::kFloat);
    CHECK(step.dim() == 0);
    CHECK(step.item<float>() == 2.0f);
  }
  auto group = optimizer.at("param_groups").toList().get(0).toGenericDict();
  CHECK(group.at("lr").toDouble() == 5e-4);  // StepLR(step_size=2, gamma=0.5) after 2 steps
  CHECK(group.at("betas").toTupleRef().elements()[1].toDouble() == 0.999);
  CHECK(group.at("foreach").isNone());
  CHECK(group.at("params").toIntVector() == std::vector<int64_t>{0, 1, 2, 3, 4, 5});
  State scheduler = checkpoint.get<State>("scheduler");
  CHECK(scheduler.get<int64_t>("last_epoch") == 2);
  CHECK(scheduler.at("_last_lr").toDoubleVector() == std::vector<double>{5e-4});
  check_dtype_tensors(checkpoint.get<State>("dtypes"), true);
  check_views(checkpoint.get<State>("views"));
  State values = checkpoint.get<State>("values");
  CHECK(values.get<int64_t>("big") == std::numeric_limits<int64_t>::max());
  CHECK(values.get<int64_t>("neg") == -(int64_t{1} << 40));
  CHECK(values.get<std::string>("text") == "torch 2.x ✓");
  const auto& tuple_items = values.at("tuple").toTupleRef().elements();
  REQUIRE(tuple_items.size() == 3);
  CHECK(tuple_items[2].isNone());
  CHECK(values.at("int_keys").toGenericDict().at(3).toDoubleVector() == std::vector<double>{1.5, 2.5});
}

// ---------------------------------------------------------------------------------------
// 5. What the reader refuses

TEST_CASE("a payload naming a global outside the allowlist is a FormatError naming the global",
          "[format][interop][python]") {
  const auto& python = python_payloads();
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"bad_date.pt", "datetime.date"},
      {"bad_namespace.pt", "argparse.Namespace"},
      {"bad_class.pt", "__main__.TrainerConfig"},
      {"bad_function.pt", "math.sqrt"},
      {"bad_set.pt", "__builtin__.set"},  // protocol 2 names builtins so
      {"bad_legacy_date.pt", "datetime.date"},
  };
  for (const auto& [file, global] : cases) {
    INFO(file);
    const std::string message = format_error_of([&] { load_file(python / file); });
    CHECK_THAT(message, Catch::Contains(file) && Catch::Contains("'" + global + "'") &&
                            Catch::Contains("not allowed"));
    // The same with only some keys selected, and memory-mapped: the pickle is read whole.
    LoadOptions options = mapped();
    options.only_keys = {"model"};
    CHECK_THAT(format_error_of([&] { load_file(python / file, options); }), Catch::Contains("'" + global + "'"));
  }
}

TEST_CASE("a Python int beyond 64 bits is a FormatError that says so", "[format][interop][python]") {
  const auto& python = python_payloads();
  // 2^63 fits in 64 bits unsigned (docs/format.md): it loads with the same bits.
  CHECK(static_cast<std::uint64_t>(load_file(python / "bad_int_2_63.pt").get<int64_t>("n")) == (1ull << 63));
  for (const char* file : {"bad_int_2_70.pt", "bad_int_minus_2_70.pt", "bad_int_2_64.pt", "bad_int_below_int64.pt"}) {
    INFO(file);
    CHECK_THAT(format_error_of([&] { load_file(python / file); }),
               Catch::Contains(file) && Catch::Contains("does not fit in 64 bits"));
  }
}
