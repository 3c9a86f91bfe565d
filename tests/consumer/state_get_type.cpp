// A consumer's translation unit that reads a State entry as CKPT_GET_TYPE. The test suite
// builds it twice (tests/consumer/compile_checks.cmake): as int it must compile (get<T>
// converts, range-checked); as std::vector<int> it must fail at compile time, with the
// static_assert that lists the supported types (not at link time, as it once did).
#include <ckpt/state.hpp>

#include <cstdint>
#include <vector>

#ifndef CKPT_GET_TYPE
#error "define CKPT_GET_TYPE"
#endif

int main() {
  ckpt::State state{{"epoch", std::int64_t{3}}};
  auto epoch = state.get<CKPT_GET_TYPE>("epoch");
  (void)epoch;
  return 0;
}
