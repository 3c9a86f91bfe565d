#include "support/torch_pch.hpp"

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
  CHECK_THROWS_WITH(state.get<std::string>("epoch"), Catch::Contains("'epoch'") && Catch::Contains("Int"));
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
  CHECK_THROWS_WITH(State::from_generic_dict(int_keys), Catch::Contains("Int key"));
}
