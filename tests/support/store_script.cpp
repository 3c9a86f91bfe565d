// ckpt_store_script: runs a short scripted sequence on a CheckpointStore and prints what
// happened, one line per event, so that a test can run it in a fresh process (under
// LD_PRELOAD=libckpt_fault_preload.so, say) and check its output, its exit status and
// the directory afterwards. Torch-free; payloads are zip_payload(seed) of `size` bytes.
//
//   ckpt_store_script DIR COMMAND...
//
// Commands, run in order (a failed one prints its error and the script goes on):
//   keep=N            max_to_keep for the next open (default 5)
//   size=BYTES        payload size of the following saves (default 4096)
//   hint=BYTES|exact  size hint the following saves pass to the store (default exact)
//   open | close      open the store (saves and loads open it when needed) / close it
//   save-epoch N SEED | save-best SEED | save-interrupt SEED
//   load-latest | load-best | list
//   second-writer     open a second store on DIR in this process while the first is open
//   shell CMD         run CMD with system(3) (while the store is open, say)
//
// Output (stdout, flushed per line):
//   step NAME                                   each save or recovery step reached
//   saved|loaded KIND EPOCH FILE HASH           EPOCH is '-' for best and interrupt
//   loaded none                                 no candidate was left
//   row KIND EPOCH FILE STATUS                  list
//   second-writer opened | second-writer refused CODE MESSAGE   (a refusal is no failure)
//   shell EXIT_STATUS                           (a non-zero one is no failure)
//   error CODE ERRNO MESSAGE                    a ckpt::Error (CODE as in ErrorCode)
//   exception MESSAGE                           anything else
// Exit status: 0 when every command succeeded, 1 when one failed, 2 for a bad script.
#include <sys/wait.h>

#include <cstdio>
#include <cstdlib>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "ckpt/errors.hpp"
#include "ckpt/store.hpp"
#include "support/store_support.hpp"
#include "store/test_hooks.hpp"  // on_step, sqlite_vfs, fsync skips: test hooks

namespace {

using namespace ckpt;

void print_line(const std::string& line) {
  std::string one_line = line;
  for (char& c : one_line) {
    if (c == '\n') c = ' ';
  }
  std::printf("%s\n", one_line.c_str());
  std::fflush(stdout);
}

std::string epoch_text(const std::optional<std::int64_t>& epoch) { return epoch ? std::to_string(*epoch) : "-"; }

std::string describe(const char* verb, const CheckpointRecord& record) {
  return std::string(verb) + " " + std::string(to_string(record.kind)) + " " + epoch_text(record.epoch) + " " +
         record.file + " " + record.hash;
}

struct Script {
  std::string dir;
  int keep = 5;
  std::size_t size = 4096;
  std::optional<std::uint64_t> hint;  // nullopt: the payload's exact size
  std::unique_ptr<CheckpointStore> store;

  CheckpointStore& opened() {
    if (!store) {
      StoreOptions options;
      options.max_to_keep = keep;
      store::test_hooks(options).on_step = [](std::string_view step) { print_line("step " + std::string(step)); };
      store = std::make_unique<CheckpointStore>(dir, std::move(options));
    }
    return *store;
  }

  void save(CheckpointKind kind, std::optional<std::int64_t> epoch, int seed) {
    std::string bytes = test::zip_payload(seed, size);
    auto record = opened().save(kind, epoch, std::nullopt, hint.value_or(bytes.size()),
                                [&](ByteSink& sink) { sink.write(bytes.data(), bytes.size()); });
    print_line(describe("saved", record));
  }

  void print_loaded(const std::optional<VerifiedPayload>& loaded) {
    print_line(loaded ? describe("loaded", loaded->record) : "loaded none");
  }
};

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s DIR COMMAND...\n", argv[0]);
    return 2;
  }
  Script script;
  script.dir = argv[1];
  bool failed = false;
  auto argument = [&](int& i) -> std::string {
    if (i + 1 >= argc) {
      std::fprintf(stderr, "%s: missing argument after %s\n", argv[0], argv[i]);
      std::exit(2);
    }
    return argv[++i];
  };
  for (int i = 2; i < argc; ++i) {
    const std::string command = argv[i];
    try {
      if (command.rfind("keep=", 0) == 0) {
        script.keep = std::stoi(command.substr(5));
      } else if (command.rfind("size=", 0) == 0) {
        script.size = std::stoul(command.substr(5));
      } else if (command.rfind("hint=", 0) == 0) {
        std::string value = command.substr(5);
        script.hint = value == "exact" ? std::nullopt : std::optional<std::uint64_t>(std::stoull(value));
      } else if (command == "open") {
        script.opened();
        print_line("opened");
      } else if (command == "close") {
        script.store.reset();
        print_line("closed");
      } else if (command == "save-epoch") {
        std::int64_t epoch = std::stoll(argument(i));
        script.save(CheckpointKind::epoch, epoch, std::stoi(argument(i)));
      } else if (command == "save-best") {
        script.save(CheckpointKind::best, std::nullopt, std::stoi(argument(i)));
      } else if (command == "save-interrupt") {
        script.save(CheckpointKind::interrupt, std::nullopt, std::stoi(argument(i)));
      } else if (command == "second-writer") {
        try {
          CheckpointStore second(script.dir);
          print_line("second-writer opened");
        } catch (const Error& error) {
          print_line(std::string("second-writer refused ") + std::string(to_string(error.code())) + " " + error.what());
        }
      } else if (command == "shell") {
        const std::string shell_command = argument(i);
        std::fflush(nullptr);
        const int status = std::system(shell_command.c_str());
        print_line("shell " + std::to_string(WIFEXITED(status) ? WEXITSTATUS(status) : -1));
      } else if (command == "load-latest") {
        script.print_loaded(script.opened().load_latest());
      } else if (command == "load-best") {
        script.print_loaded(script.opened().load_best());
      } else if (command == "list") {
        for (const auto& row : script.opened().live_checkpoints()) {
          print_line("row " + std::string(to_string(row.kind)) + " " + epoch_text(row.epoch) + " " + row.file + " " +
                     row.status);
        }
      } else {
        std::fprintf(stderr, "%s: unknown command '%s'\n", argv[0], command.c_str());
        return 2;
      }
    } catch (const Error& error) {
      print_line(std::string("error ") + std::string(to_string(error.code())) + " " + std::to_string(error.os_error()) + " " +
                 error.what());
      failed = true;
    } catch (const std::exception& error) {
      print_line(std::string("exception ") + error.what());
      failed = true;
    }
  }
  script.store.reset();
  return failed ? 1 : 0;
}
