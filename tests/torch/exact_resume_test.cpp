// Resume is exact: a run interrupted by real SIGINTs at random moments and resumed
// several times ends bitwise identical to an uninterrupted run (every value of the model,
// the optimizer, the schedule and the RNG, not only tensors), each run resuming exactly
// where the previous one stopped and all of them together doing the uninterrupted run's
// steps, so a worker that replays from scratch fails; and a checkpoint crosses
// languages: C++ training continues in Python and Python training continues in C++.
#include "support/torch_pch.hpp"

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmath>
#include <functional>
#include <optional>
#include <random>
#include <sstream>
#include <thread>

#include "support/test_dir.hpp"

using namespace ckpt;
using namespace ckpt::test;

namespace {

constexpr int kEpochs = 6;
// The worker's 512 samples in batches of 32.
constexpr std::int64_t kBatchesPerEpoch = 16;

struct Position {
  std::int64_t epoch = -1;
  std::int64_t batch = -1;
  bool operator==(const Position& other) const { return epoch == other.epoch && batch == other.batch; }
};

std::ostream& operator<<(std::ostream& out, const Position& p) { return out << "epoch " << p.epoch << " batch " << p.batch; }

// What one run of the worker said about itself (see the lines in resume_worker.cpp).
struct RunReport {
  int exit_code = -1;
  std::optional<Position> start;
  std::optional<Position> interrupted;
  std::optional<std::int64_t> steps;
  std::string output;
};

struct Worker {
  pid_t pid = -1;
  int stdout_fd = -1;
  RunReport report;
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
  Worker worker;
  worker.pid = pid;
  worker.stdout_fd = out[0];
  return worker;
}

// Reads and parses the worker's next line; false at the end of its output.
bool read_line(Worker& worker, std::string& line) {
  line.clear();
  char c;
  while (::read(worker.stdout_fd, &c, 1) == 1) {
    if (c == '\n') break;
    line += c;
  }
  if (line.empty()) return false;
  worker.report.output += line + "\n";
  std::istringstream words(line);
  std::string word;
  words >> word;
  Position position;
  if (word == "start" && words >> position.epoch >> position.batch) worker.report.start = position;
  if (word == "interrupted" && words >> position.epoch >> position.batch) worker.report.interrupted = position;
  std::int64_t steps = 0;
  if (word == "steps" && words >> steps) worker.report.steps = steps;
  return true;
}

bool wait_ready(Worker& worker) {
  std::string line;
  while (read_line(worker, line)) {
    if (line == "ready") return true;
  }
  return false;
}

RunReport finish(Worker& worker) {
  std::string line;
  while (read_line(worker, line)) {
  }
  int status = 0;
  ::waitpid(worker.pid, &status, 0);
  ::close(worker.stdout_fd);
  worker.report.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  return worker.report;
}

RunReport run_worker(const std::vector<std::string>& args) {
  Worker worker = start_worker(args);
  return finish(worker);
}

std::string kind_of(const c10::IValue& value) { return value.tagKind(); }

// Compares two saved values completely: every tensor (dtype, shape, and bits, or within
// `tolerance` when it is not 0), every int, double, bool, string and None, through
// dicts (by key), lists and tuples. Appends each difference found to `differences`
// and counts the leaves compared.
struct Comparison {
  double tolerance = 0;
  std::vector<std::string> differences;
  int tensors = 0;
  int scalars = 0;

  void values(const c10::IValue& a, const c10::IValue& b, const std::string& where) {
    auto differ = [&](const std::string& what) { differences.push_back(where + ": " + what); };
    if (a.tagKind() != b.tagKind()) return differ(kind_of(a) + " vs " + kind_of(b));
    if (a.isTensor()) {
      ++tensors;
      const at::Tensor x = a.toTensor(), y = b.toTensor();
      if (x.scalar_type() != y.scalar_type()) return differ("dtype differs");
      if (x.sizes() != y.sizes()) return differ("shape differs");
      bool same = tolerance == 0 ? x.equal(y) : at::allclose(x.to(at::kDouble), y.to(at::kDouble), tolerance, tolerance);
      if (!same) differ(tolerance == 0 ? "tensor bits differ" : "tensor values differ");
    } else if (a.isGenericDict()) {
      auto x = a.toGenericDict(), y = b.toGenericDict();
      if (x.size() != y.size()) differ(std::to_string(x.size()) + " keys vs " + std::to_string(y.size()));
      for (const auto& entry : x) {
        std::string key = entry.key().isString() ? entry.key().toStringRef() : c10::str(entry.key());
        auto other = y.find(entry.key());
        if (other == y.end()) {
          differ("key '" + key + "' is missing from the second");
        } else {
          values(entry.value(), other->value(), where + "/" + key);
        }
      }
    } else if (a.isList()) {
      auto x = a.toListRef(), y = b.toListRef();
      if (x.size() != y.size()) return differ(std::to_string(x.size()) + " items vs " + std::to_string(y.size()));
      for (std::size_t i = 0; i < x.size(); ++i) values(x[i], y[i], where + "[" + std::to_string(i) + "]");
    } else if (a.isTuple()) {
      const auto& x = a.toTupleRef().elements();
      const auto& y = b.toTupleRef().elements();
      if (x.size() != y.size()) return differ(std::to_string(x.size()) + " items vs " + std::to_string(y.size()));
      for (std::size_t i = 0; i < x.size(); ++i) values(x[i], y[i], where + "[" + std::to_string(i) + "]");
    } else if (a.isDouble()) {
      ++scalars;
      double x = a.toDouble(), y = b.toDouble();
      bool same = tolerance == 0 ? x == y : std::abs(x - y) <= tolerance * (1 + std::abs(y));
      if (!same) differ(c10::str(a) + " vs " + c10::str(b));
    } else if (a.isInt() || a.isBool() || a.isString() || a.isNone()) {
      ++scalars;
      if (a != b) differ(c10::str(a) + " vs " + c10::str(b));
    } else {
      differ("cannot compare a " + kind_of(a));
    }
  }
};

// Compares two saved training states completely (see Comparison); `tolerance` 0 means
// bitwise. Fails naming every difference.
void compare_states(const State& a, const State& b, double tolerance) {
  Comparison comparison{tolerance};
  comparison.values(a.to_ivalue(), b.to_ivalue(), "");
  std::string report;
  for (const auto& difference : comparison.differences) report += difference + "\n";
  INFO(report);
  CHECK(comparison.differences.empty());
  CHECK(comparison.tensors > 0);
  CHECK(comparison.scalars > 0);
}

// The optimizer state alone must be compared value by value too: step counts, lr,
// betas, eps, flags and the parameter ids of each group, not only the moment tensors.
void check_optimizer_state_is_complete(const State& saved) {
  auto groups = saved.get<State>("optimizer").at("param_groups").toListRef();
  REQUIRE(!groups.empty());
  auto group = State::from_generic_dict(groups[0].toGenericDict());
  for (const char* key : {"lr", "betas", "eps", "weight_decay", "amsgrad", "params"}) {
    INFO(key);
    CHECK(group.contains(key));
  }
}

State final_model_and_optimizer(const std::filesystem::path& file) { return load_file(file); }

std::string last_epoch_checkpoint() { return "checkpoint_epoch_" + std::to_string(kEpochs) + ".pth"; }

struct Reference {
  TestDir dir{"resume-ref"};
  std::filesystem::path data = dir / "data.pth";
  std::filesystem::path final_state = dir / "final.pth";
  RunReport run;
  Reference() {
    run = run_worker({(dir / "ckpt").string(), data.string(), final_state.string(), std::to_string(kEpochs)});
    INFO(run.output);
    REQUIRE(run.exit_code == 0);
  }
};

Reference& reference() {
  static Reference instance;
  return instance;
}

}  // namespace

TEST_CASE("the uninterrupted run starts at the beginning and does every step once", "[training][resume]") {
  const RunReport& run = reference().run;
  INFO(run.output);
  REQUIRE(run.start);
  CHECK(*run.start == Position{0, 0});
  CHECK(!run.interrupted);
  CHECK(run.steps == std::optional<std::int64_t>(kEpochs * kBatchesPerEpoch));
}

TEST_CASE("the state comparison notices a change in any single value of the optimizer state", "[training][resume]") {
  Reference& ref = reference();
  const State saved = load_file(ref.final_state);
  auto differences = [&](const std::function<void(c10::impl::GenericDict group, c10::impl::GenericDict per_param)>& change) {
    State changed = load_file(ref.final_state);  // a copy that shares nothing with `saved`
    State optimizer = changed.get<State>("optimizer");
    auto group = optimizer.at("param_groups").toListRef()[0].toGenericDict();
    change(group, optimizer.at("state").toGenericDict());
    changed.set("optimizer", optimizer);
    Comparison comparison{0};
    comparison.values(saved.to_ivalue(), changed.to_ivalue(), "");
    return comparison.differences;
  };
  CHECK(differences([](auto, auto) {}).empty());
  CHECK(differences([](auto group, auto) { group.insert_or_assign("lr", group.at("lr").toDouble() * (1 + 1e-15)); }).size() == 1);
  CHECK(differences([](auto group, auto) { group.insert_or_assign("amsgrad", !group.at("amsgrad").toBool()); }).size() == 1);
  CHECK(differences([](auto group, auto) { group.insert_or_assign("betas", c10::ivalue::Tuple::create(std::vector<c10::IValue>{0.9, 0.998})); }).size() == 1);
  CHECK(differences([](auto group, auto) { group.insert_or_assign("eps", int64_t{0}); }).size() == 1);
  CHECK(differences([](auto, auto per_param) {
          auto first = per_param.begin()->value().toGenericDict();
          first.insert_or_assign("step", first.at("step").toTensor() + 1);
        }).size() == 1);
}

TEST_CASE("a run interrupted by real SIGINTs and resumed ends bitwise identical to an uninterrupted run",
          "[training][resume]") {
  Reference& ref = reference();
  TestDir dir("resume-int");
  std::mt19937 random(42);
  // Five runs are interrupted at a random moment early in their work (each step sleeps
  // 5 ms, so a run needs about half a second however fast the machine); then one runs
  // to the end. Every run resumes from what the previous one saved.
  constexpr int kInterrupts = 5;
  std::vector<RunReport> runs;
  while (runs.empty() || runs.back().exit_code != 0) {
    Worker worker = start_worker({(dir / "ckpt").string(), ref.data.string(), (dir / "final.pth").string(),
                                  std::to_string(kEpochs), "5"});
    REQUIRE(wait_ready(worker));
    if (static_cast<int>(runs.size()) < kInterrupts) {
      std::this_thread::sleep_for(std::chrono::milliseconds(std::uniform_int_distribution<int>(10, 60)(random)));
      ::kill(worker.pid, SIGINT);
    }
    runs.push_back(finish(worker));
    INFO(runs.back().output);
    REQUIRE((runs.back().exit_code == 0 || runs.back().exit_code == 130));
    REQUIRE(runs.size() <= static_cast<std::size_t>(kInterrupts + 1));
  }
  CHECK(runs.size() >= 4);

  // Each run began exactly where the previous one's interrupt checkpoint left off, the
  // first at the beginning; at least one resumed in the middle of an epoch; and the runs
  // together did exactly the uninterrupted run's steps: none replayed, none skipped.
  std::string story;
  std::int64_t steps = 0;
  int mid_epoch_resumes = 0;
  for (std::size_t i = 0; i < runs.size(); ++i) story += "run " + std::to_string(i + 1) + ":\n" + runs[i].output;
  INFO(story);
  for (std::size_t i = 0; i < runs.size(); ++i) {
    const RunReport& run = runs[i];
    INFO("run " << i + 1);
    REQUIRE(run.start);
    REQUIRE(run.steps);
    CHECK(run.interrupted.has_value() == (run.exit_code == 130));
    Position expected = i == 0 ? Position{0, 0} : runs[i - 1].interrupted.value_or(Position{});
    CHECK(*run.start == expected);
    if (i > 0 && run.start->batch > 0 && run.start->batch < kBatchesPerEpoch) ++mid_epoch_resumes;
    steps += *run.steps;
  }
  CHECK(mid_epoch_resumes >= 1);
  REQUIRE(ref.run.steps);
  CHECK(steps == *ref.run.steps);

  // Model and optimizer at the end, and the whole last epoch checkpoint (schedule, RNG,
  // position too), every value of them.
  State ref_final = final_model_and_optimizer(ref.final_state);
  check_optimizer_state_is_complete(ref_final);
  compare_states(ref_final, final_model_and_optimizer(dir / "final.pth"), 0);
  compare_states(load_file(ref.dir / "ckpt" / last_epoch_checkpoint()), load_file(dir / "ckpt" / last_epoch_checkpoint()), 0);
}

TEST_CASE("a checkpoint written by C++ training continues in Python", "[training][resume][python]") {
  Reference& ref = reference();
  TestDir dir("resume-py");
  REQUIRE(run_worker({(dir / "ckpt").string(), ref.data.string(), (dir / "unused.pth").string(), "3"}).exit_code == 0);
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
  RunReport run = run_worker({(dir / "ckpt").string(), ref.data.string(), (dir / "final.pth").string(),
                              std::to_string(kEpochs)});
  INFO(run.output);
  REQUIRE(run.exit_code == 0);
  CHECK(run.start == std::optional<Position>(Position{3, 0}));
  CHECK(run.steps == std::optional<std::int64_t>((kEpochs - 3) * kBatchesPerEpoch));
  compare_states(final_model_and_optimizer(ref.final_state), final_model_and_optimizer(dir / "final.pth"), 1e-5);
}
