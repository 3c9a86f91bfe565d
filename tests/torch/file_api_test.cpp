#include "support/torch_pch.hpp"
#include "support/test_dir.hpp"

using namespace ckpt;
using namespace ckpt::test;

TEST_CASE("save_file and load_file round-trip tensors, numbers, strings and nesting", "[file]") {
  TestDir dir("file");
  State state;
  state.set("epoch", int64_t{12});
  state.set("best_acc", 0.875);
  state.set("name", std::string("resnet-tiny"));
  state.set("done", false);
  state.set("none", c10::IValue());
  state.set("f32", at::randn({4, 5}));
  state.set("f64", at::randn({3}, at::kDouble));
  state.set("i64", at::arange(10));
  state.set("u8", at::arange(7, at::kByte));
  state.set("mask", at::ones({2, 2}, at::kBool));
  state.set("view", at::arange(20, at::kFloat).view({4, 5}).slice(1, 1, 3));
  state.set("model", State{{"0.weight", at::randn({2, 2})}, {"0.bias", at::zeros({2})}});
  state.set("history", c10::List<double>({0.5, 0.25}));
  save_file(state, dir / "state.pth");
  CHECK(file_names(dir.path()) == std::vector<std::string>{"state.pth"});

  State loaded = load_file(dir / "state.pth");
  CHECK(loaded.keys() == state.keys());
  CHECK(loaded.get<int64_t>("epoch") == 12);
  CHECK(loaded.get<double>("best_acc") == 0.875);
  CHECK(loaded.get<std::string>("name") == "resnet-tiny");
  CHECK_FALSE(loaded.get<bool>("done"));
  CHECK(loaded.at("none").isNone());
  for (const char* key : {"f32", "f64", "i64", "u8", "mask", "view"}) {
    INFO(key);
    at::Tensor expected = state.get<at::Tensor>(key);
    at::Tensor actual = loaded.get<at::Tensor>(key);
    CHECK(actual.dtype() == expected.dtype());
    CHECK(actual.sizes() == expected.sizes());
    CHECK(actual.equal(expected));
  }
  State model = loaded.get<State>("model");
  CHECK(model.get<at::Tensor>("0.weight").equal(state.get<State>("model").get<at::Tensor>("0.weight")));
  CHECK(loaded.at("history").toDoubleList().vec() == std::vector<double>{0.5, 0.25});
}

TEST_CASE("load_file on a missing file names the file and the cause", "[file]") {
  TestDir dir("file");
  try {
    load_file(dir / "nope.pth");
    FAIL("no error");
  } catch (const IoError& error) {
    CHECK_THAT(error.what(), Catch::Contains("nope.pth") && Catch::Contains("No such file"));
  }
}

TEST_CASE("load_file on a file that is not a payload gives FormatError naming it, never a crash", "[file]") {
  TestDir dir("file");
  save_file(State{{"w", at::randn({64})}}, dir / "good.pth");
  std::string good = read_bytes(dir / "good.pth");
  std::vector<std::pair<std::string, std::string>> bad = {
      {"empty.pth", ""},
      {"text.pth", "hello, this is not a checkpoint"},
      {"truncated.pth", good.substr(0, good.size() / 2)},
      {"tail.pth", good.substr(good.size() / 2)},
  };
  for (const auto& [name, bytes] : bad) {
    INFO(name);
    write_bytes(dir / name, bytes);
    try {
      load_file(dir / name);
      FAIL("loaded garbage");
    } catch (const FormatError& error) {
      CHECK_THAT(error.what(), Catch::Contains(name));
    }
  }
}

TEST_CASE("save_file replaces an existing file atomically and leaves no temp file", "[file]") {
  TestDir dir("file");
  save_file(State{{"v", int64_t{1}}}, dir / "x.pth");
  save_file(State{{"v", int64_t{2}}}, dir / "x.pth");
  CHECK(load_file(dir / "x.pth").get<int64_t>("v") == 2);
  CHECK(file_names(dir.path()) == std::vector<std::string>{"x.pth"});
}

TEST_CASE("save_file into a missing directory fails with an error naming it", "[file]") {
  TestDir dir("file");
  CHECK_THROWS_WITH(save_file(State{{"v", int64_t{1}}}, dir / "no" / "such" / "x.pth"),
                    Catch::Contains("no/such") && Catch::Contains("No such file"));
}

TEST_CASE("a device this build cannot use is refused with a clear message", "[file][device]") {
  TestDir dir("file");
  save_file(State{{"v", int64_t{1}}}, dir / "x.pth");
  if (at::hasCUDA()) return;  // only meaningful on a CPU-only build
  CHECK_THROWS_WITH(load_file(dir / "x.pth", c10::Device("cuda:0")), Catch::Contains("cuda:0"));
}
