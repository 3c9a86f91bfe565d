#include "support/torch_pch.hpp"

#include <torch/nn/modules/linear.h>
#include <torch/optim/adam.h>
#include <torch/optim/sgd.h>

#include <limits>

#include "ckpt/training.hpp"

using namespace ckpt;

TEST_CASE("State keeps insertion order and replaces values in place", "[state]") {
  State state;
  state.set("epoch", int64_t{3}).set("model", at::ones({2})).set("lr", 0.1);
  state.set("epoch", int64_t{4});
  CHECK(state.keys() == std::vector<std::string>{"epoch", "model", "lr"});
  CHECK(state.get<int64_t>("epoch") == 4);
  CHECK(state.size() == 3);
  std::vector<std::string> iterated;
  for (const auto& [key, value] : state) iterated.push_back(key);
  CHECK(iterated == state.keys());
  CHECK(state.erase("model"));
  CHECK_FALSE(state.erase("model"));
  CHECK(state.keys() == std::vector<std::string>{"epoch", "lr"});
  CHECK(state.get<double>("lr") == 0.1);
}

TEST_CASE("State::get returns each supported type", "[state]") {
  State nested{{"inner", int64_t{1}}};
  State state{{"i", int64_t{-5}}, {"d", 2.5}, {"b", true}, {"s", std::string("adam")}, {"t", at::arange(4)}};
  state.set("n", nested);
  CHECK(state.get<int64_t>("i") == -5);
  CHECK(state.get<double>("d") == 2.5);
  CHECK(state.get<double>("i") == -5.0);  // an int widens to a metric
  CHECK(state.get<bool>("b"));
  CHECK(state.get<std::string>("s") == "adam");
  CHECK(state.get<at::Tensor>("t").equal(at::arange(4)));
  CHECK(state.get<State>("n").get<int64_t>("inner") == 1);
  CHECK(state.contains("n"));
  CHECK_FALSE(state.contains("missing"));
}

TEST_CASE("a missing key or a wrong type throws an error naming the key and the actual type", "[state]") {
  State state{{"epoch", int64_t{1}}, {"model", at::ones({1})}};
  try {
    state.at("best_acc");
    FAIL("no error");
  } catch (const StateError& error) {
    CHECK(error.code() == ErrorCode::key);
    CHECK_THAT(error.what(), Catch::Contains("'best_acc'") && Catch::Contains("epoch, model"));
  }
  try {
    state.get<double>("model");
    FAIL("no error");
  } catch (const StateError& error) {
    CHECK(error.code() == ErrorCode::type);
    CHECK_THAT(error.what(), Catch::Contains("'model'") && Catch::Contains("Tensor"));
  }
  CHECK_THROWS_WITH(state.get<std::string>("epoch"), Catch::Contains("key 'epoch' holds an int, not a string"));
  CHECK_THROWS_AS(state.get<State>("epoch"), StateError);
  CHECK_THROWS_AS(state.get<bool>("epoch"), StateError);
  CHECK_THROWS_AS(state.get<at::Tensor>("epoch"), StateError);
}

TEST_CASE("State converts to and from a GenericDict, sharing tensors", "[state]") {
  at::Tensor weights = at::randn({3});
  State state{{"w", weights}, {"step", int64_t{9}}};
  c10::impl::GenericDict dict = state.to_generic_dict();
  CHECK(dict.size() == 2);
  State back = State::from_generic_dict(dict);
  CHECK(back.keys() == state.keys());
  CHECK(back.get<at::Tensor>("w").data_ptr() == weights.data_ptr());

  c10::impl::GenericDict int_keys(c10::IntType::get(), c10::AnyType::get());
  int_keys.insert(int64_t{0}, int64_t{1});
  CHECK_THROWS_WITH(State::from_generic_dict(int_keys), Catch::Contains("has an int key"));
}

TEST_CASE("State::get converts to the integer types a C++ port writes, range-checked", "[state][convert]") {
  State state{{"epoch", int64_t{12}}, {"big", int64_t{5'000'000'000}}, {"negative", int64_t{-3}},
              {"max", std::numeric_limits<int64_t>::max()}};
  CHECK(state.get<int>("epoch") == 12);
  CHECK(state.get<long>("epoch") == 12L);
  CHECK(state.get<long long>("epoch") == 12LL);
  CHECK(state.get<int32_t>("negative") == -3);
  CHECK(state.get<int16_t>("negative") == -3);
  CHECK(state.get<uint8_t>("epoch") == 12);
  CHECK(state.get<size_t>("epoch") == 12u);
  CHECK(state.get<uint64_t>("big") == 5'000'000'000u);
  CHECK(state.get<uint64_t>("max") == uint64_t{9'223'372'036'854'775'807u});
  CHECK(state.get<unsigned>("epoch") == 12u);
  CHECK(state.get<const int>("epoch") == 12);

  try {
    state.get<int>("big");
    FAIL("no error");
  } catch (const StateError& error) {
    CHECK(error.code() == ErrorCode::type);
    CHECK_THAT(error.what(), Catch::Contains("key 'big'") && Catch::Contains("5000000000") &&
                                 Catch::Contains("int32_t") && Catch::Contains("-2147483648 to 2147483647"));
  }
  CHECK_THROWS_WITH(state.get<size_t>("negative"),
                    Catch::Contains("key 'negative'") && Catch::Contains("-3") && Catch::Contains("uint64_t"));
  CHECK_THROWS_WITH(state.get<uint32_t>("negative"), Catch::Contains("-3") && Catch::Contains("uint32_t"));
  CHECK_THROWS_WITH(state.get<uint8_t>("big"), Catch::Contains("uint8_t") && Catch::Contains("0 to 255"));
  CHECK_THROWS_AS(state.get<int16_t>("big"), StateError);
}

TEST_CASE("State::get converts to float from a float or an int entry; other types are still refused",
          "[state][convert]") {
  State state{{"lr", 0.25}, {"zero", int64_t{0}}, {"huge", 1e300}, {"name", std::string("x")}, {"flag", true}};
  CHECK(state.get<float>("lr") == 0.25f);
  CHECK(state.get<float>("zero") == 0.0f);
  CHECK(state.get<long double>("lr") == 0.25L);
  CHECK_THROWS_WITH(state.get<float>("huge"), Catch::Contains("key 'huge'") && Catch::Contains("1e+300") &&
                                                  Catch::Contains("float"));
  CHECK(state.get<double>("huge") == 1e300);
  CHECK_THROWS_WITH(state.get<float>("name"), Catch::Contains("key 'name' holds a string, not a float"));
  CHECK_THROWS_WITH(state.get<int>("lr"), Catch::Contains("key 'lr' holds a float, not an int"));
  CHECK_THROWS_WITH(state.get<int>("flag"), Catch::Contains("key 'flag' holds a bool, not an int"));
  CHECK_THROWS_WITH(state.get<size_t>("missing"), Catch::Contains("no key 'missing'"));
}

TEST_CASE("type errors put the right article before the type: an int, an Adam state", "[state][wording]") {
  State state{{"step", int64_t{1}}, {"w", at::ones({1})}, {"none", c10::IValue()}};
  CHECK_THROWS_WITH(state.get<at::Tensor>("step"), Catch::Contains("holds an int, not a Tensor"));
  CHECK_THROWS_WITH(state.get<int64_t>("w"), Catch::Contains("holds a Tensor, not an int"));
  CHECK_THROWS_WITH(state.get<State>("none"), Catch::Contains("holds None, not a dict"));

  torch::nn::Linear model(2, 2);
  torch::optim::SGD sgd(model->parameters(), torch::optim::SGDOptions(0.1).momentum(0.9));
  torch::optim::Adam adam(model->parameters(), torch::optim::AdamOptions(0.01));
  CHECK_THROWS_WITH(load_state_dict(adam, state_dict(sgd)), Catch::Contains("this is not an Adam state"));
  CHECK_THROWS_WITH(load_state_dict(sgd, state_dict(adam)), Catch::Contains("this is not an SGD state"));

  State wrong = state_dict(*model);
  wrong.set("bias", int64_t{3});
  LoadReport report = load_state_dict(*model, wrong, /*strict=*/false);
  REQUIRE(report.mismatches.size() == 1);
  CHECK(report.mismatches[0] == "bias: an int in the checkpoint, a tensor in the model");
}
