#include "logging/log_scenario.hpp"

#include <ckpt/store.hpp>

#include <iostream>
#include <string>

#include "format/checkpoint_format.hpp"
#include "support/test_dir.hpp"
#include "support/memory_source.hpp"

namespace ckpt::test {

namespace {

// A real payload ({"epoch": 1}, by ckpt's writer), so the save is an ordinary one.
std::string small_payload() {
  auto root = format::Value::dict();
  root->add_entry(format::Value::of_string("epoch"), format::Value::of_int(1));
  ckpt::test::StringSink sink;
  format::prepare_checkpoint(root, {}).write(sink);
  return sink.bytes;
}

}  // namespace

void run_logging_scenario() {
  TestDir dir("logging");
  // <final>.<pid>-<sequence>.tmp: the name of a save a dead process left behind.
  write_bytes(dir / "checkpoint_epoch_1.pth.999999-1.tmp", "cut short");
  CheckpointStore store(dir.path());  // logs "removed leftover temp file ..." at info
  const std::string payload = small_payload();
  store.save(CheckpointKind::epoch, 1, 0.5, payload.size(),
             [&](ByteSink& sink) { sink.write(payload.data(), payload.size()); });  // "saved checkpoint ..." at debug
  std::cout << "scenario done" << std::endl;
}

}  // namespace ckpt::test
