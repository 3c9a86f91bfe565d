// Resume is exact: a run interrupted by real SIGINTs at random moments and resumed
// several times ends bitwise identical to an uninterrupted run; and a checkpoint crosses
// languages: C++ training continues in Python and Python training continues in C++.
#include "support/torch_pch.hpp"

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <random>
#include <thread>

#include "support/test_dir.hpp"

using namespace ckpt;
using namespace ckpt::test;

namespace {

constexpr int kEpochs = 6;

struct Worker {
  pid_t pid = -1;
  int stdout_fd = -1;
};

// Starts the worker with its stdout on a pipe.
Worker start_worker(const std::vector<std::string>& args) {
  int out[2];
  REQUIRE(::pipe(out) == 0);
  std::fflush(nullptr);
  pid_t pid = ::fork();
  if (pid == 0) {
    ::dup2(out[1], STDOUT_FILENO);
    ::close(out[0]);
    ::close(out[1]);
    std::vector<char*> argv;
    std::string program = CKPT_RESUME_WORKER;
    argv.push_back(program.data());
    std::vector<std::string> copies = args;
    for (auto& arg : copies) argv.push_back(arg.data());
    argv.push_back(nullptr);
    ::execv(program.c_str(), argv.data());
    ::_exit(127);
  }
  ::close(out[1]);
  return Worker{pid, out[0]};
}

bool wait_ready(const Worker& worker) {
  std::string line;
  char c;
  while (::read(worker.stdout_fd, &c, 1) == 1) {
    if (c == '\n') return line == "ready";
    line += c;
  }
  return false;
}

int finish(Worker& worker) {
  int status = 0;
  ::waitpid(worker.pid, &status, 0);
  ::close(worker.stdout_fd);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

int run_worker(const std::vector<std::string>& args) {
  Worker worker = start_worker(args);
  return finish(worker);
}

// Compares two saved training states tensor by tensor; `tolerance` 0 means bitwise.
void compare_states(const State& a, const State& b, double tolerance, const std::string& where = "") {
  REQUIRE(a.keys() == b.keys());
  for (const auto& [key, value] : a) {
    const c10::IValue& other = b.at(key);
    std::string path = where + "/" + key;
    INFO(path);
    if (value.isTensor()) {
      at::Tensor x = value.toTensor(), y = other.toTensor();
      REQUIRE(x.sizes() == y.sizes());
      if (tolerance == 0) {
        CHECK(x.equal(y));
      } else {
        CHECK(at::allclose(x.to(at::kDouble), y.to(at::kDouble), tolerance, tolerance));
      }
    } else if (value.isGenericDict()) {
      auto to_state = [](const c10::IValue& v) {
        auto dict = v.toGenericDict();
        State s;
        for (const auto& e : dict) s.set(e.key().isString() ? e.key().toStringRef() : std::to_string(e.key().toInt()), e.value());
        return s;
      };
      compare_states(to_state(value), to_state(other), tolerance, path);
    }
  }
}

State final_model_and_optimizer(const std::filesystem::path& file) { return load_file(file); }

struct Reference {
  TestDir dir{"resume-ref"};
  std::filesystem::path data = dir / "data.pth";
  std::filesystem::path final_state = dir / "final.pth";
  Reference() {
    REQUIRE(run_worker({(dir / "ckpt").string(), data.string(), final_state.string(), std::to_string(kEpochs)}) == 0);
  }
};

Reference& reference() {
  static Reference instance;
  return instance;
}

}  // namespace

TEST_CASE("a run interrupted by real SIGINTs and resumed ends bitwise identical to an uninterrupted run",
          "[training][resume]") {
  Reference& ref = reference();
  TestDir dir("resume-int");
  std::mt19937 random(42);
  // Five runs are interrupted at a random moment early in their work (each step sleeps
  // 5 ms, so a run needs about half a second however fast the machine); then one runs
  // to the end. Every run resumes from what the previous one saved.
  constexpr int kInterrupts = 5;
  int interrupts = 0;
  int exit_code = -1;
  while (exit_code != 0) {
    Worker worker = start_worker({(dir / "ckpt").string(), ref.data.string(), (dir / "final.pth").string(),
                                  std::to_string(kEpochs), "5"});
    REQUIRE(wait_ready(worker));
    if (interrupts < kInterrupts) {
      std::this_thread::sleep_for(std::chrono::milliseconds(std::uniform_int_distribution<int>(10, 60)(random)));
      ::kill(worker.pid, SIGINT);
    }
    exit_code = finish(worker);
    REQUIRE((exit_code == 0 || exit_code == 130));
    if (exit_code == 130) ++interrupts;
    REQUIRE(interrupts <= kInterrupts);
  }
  CHECK(interrupts >= 3);
  compare_states(final_model_and_optimizer(ref.final_state), final_model_and_optimizer(dir / "final.pth"), 0);
}

TEST_CASE("a checkpoint written by C++ training continues in Python", "[training][resume][python]") {
  Reference& ref = reference();
  TestDir dir("resume-py");
  REQUIRE(run_worker({(dir / "ckpt").string(), ref.data.string(), (dir / "unused.pth").string(), "3"}) == 0);
  std::string script = std::string(CKPT_SOURCE_DIR) + "/tests/python/resume_in_python.py";
  auto result = run_command(std::string(CKPT_PYTHON) + " " + shell_quote(script) + " resume " +
                            shell_quote((dir / "ckpt" / "checkpoint_epoch_3.pth").string()) + " " +
                            shell_quote(ref.data.string()) + " " + shell_quote((dir / "final.pth").string()) + " " +
                            std::to_string(kEpochs) + " 2>&1");
  INFO(result.output);
  REQUIRE(result.exit_code == 0);
  compare_states(final_model_and_optimizer(ref.final_state), final_model_and_optimizer(dir / "final.pth"), 1e-5);
}

TEST_CASE("a checkpoint written by Python training continues in C++", "[training][resume][python]") {
  Reference& ref = reference();
  TestDir dir("resume-from-py");
  std::filesystem::create_directories(dir / "ckpt");
  std::string script = std::string(CKPT_SOURCE_DIR) + "/tests/python/resume_in_python.py";
  auto result = run_command(std::string(CKPT_PYTHON) + " " + shell_quote(script) + " start " +
                            shell_quote((dir / "ckpt").string()) + " " + shell_quote(ref.data.string()) + " 3 2>&1");
  INFO(result.output);
  REQUIRE(result.exit_code == 0);
  // The directory has no index: opening it adopts Python's checkpoint_epoch_3.pth.
  REQUIRE(run_worker({(dir / "ckpt").string(), ref.data.string(), (dir / "final.pth").string(),
                      std::to_string(kEpochs)}) == 0);
  compare_states(final_model_and_optimizer(ref.final_state), final_model_and_optimizer(dir / "final.pth"), 1e-5);
}
