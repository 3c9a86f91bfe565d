// ckpt::rng_state / set_rng_state (training.hpp): the generators' state in the layout of
// Python's torch.get_rng_state() and torch.cuda.get_rng_state_all().
#include <ATen/CPUGeneratorImpl.h>
#include <ATen/detail/CUDAHooksInterface.h>

#include <mutex>

#include "ckpt/training.hpp"

namespace ckpt {

State rng_state() {
  State state;
  auto cpu = at::detail::getDefaultCPUGenerator();
  {
    std::lock_guard<std::mutex> lock(cpu.mutex());
    state.set("cpu", cpu.get_state());
  }
  const auto& cuda = at::detail::getCUDAHooks();
  if (cuda.hasCUDA()) {
    c10::List<at::Tensor> devices;
    for (int i = 0; i < cuda.getNumGPUs(); ++i) {
      auto generator = cuda.getDefaultCUDAGenerator(static_cast<c10::DeviceIndex>(i));
      std::lock_guard<std::mutex> lock(generator.mutex());
      devices.push_back(generator.get_state());
    }
    state.set("cuda", devices);
  }
  return state;
}

void set_rng_state(const State& state) {
  auto cpu = at::detail::getDefaultCPUGenerator();
  {
    std::lock_guard<std::mutex> lock(cpu.mutex());
    cpu.set_state(state.get<at::Tensor>("cpu"));
  }
  const auto& cuda = at::detail::getCUDAHooks();
  if (state.contains("cuda") && cuda.hasCUDA()) {
    auto devices = state.at("cuda").toTensorList();
    for (std::size_t i = 0; i < devices.size() && static_cast<int>(i) < cuda.getNumGPUs(); ++i) {
      auto generator = cuda.getDefaultCUDAGenerator(static_cast<c10::DeviceIndex>(i));
      std::lock_guard<std::mutex> lock(generator.mutex());
      generator.set_state(devices.get(i));
    }
  }
}

}  // namespace ckpt
