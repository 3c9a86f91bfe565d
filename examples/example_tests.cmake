# ctest entries for the programs in examples/, included from tests/CMakeLists.txt when
# the examples are built (label `guide` for the guide's patterns, `demo` for the demo).
# Each runs in its own directory under the test tree, as its program expects
# (./checkpoints), in the guide's order; the fixtures make `ctest -R guide_evaluate_best`
# run the training it needs first.
#   guide_basic_loop             8 epochs: epoch checkpoints and the best model
#   guide_evaluate_best          the best model of that run, evaluated on the test set
#   guide_evaluate_best_missing  no best model: the error, exit 1
#   guide_evaluate_best_beside_trainer  the same evaluation while the directory's writer lock is held
#   guide_restore_in_place       that run's latest checkpoint restored in place, as the ordinary load
#   guide_interrupt_run          a real SIGINT during epoch 2: interrupt checkpoint, exit 130
#   guide_interrupt_resume       resumes after epoch 1 and finishes
#   guide_custom_state           saves the guide's custom keys and reads them back
#   guide_trainer_run / _resume  the Trainer class, interrupted during epoch 3, resumed
#   demo_trainer_help            --help prints the usage, exit 0
#   demo_trainer_run / _resume / _continue
#                                interrupted during epoch 3 (exit 130), resumed there
#                                (after epoch 2, at batch 17), then continued after epoch 4
set(guide_run_dir "${CMAKE_CURRENT_BINARY_DIR}/guide")
set(guide_runner "${CMAKE_CURRENT_LIST_DIR}/guide/run_example.cmake")

function(guide_test name program)
  cmake_parse_arguments(PARSE_ARGV 2 arg "FRESH" "DIR;ARGS;EXIT;EXPECT;LABEL" "")
  if(NOT arg_LABEL)
    set(arg_LABEL guide)
  endif()
  if(NOT arg_EXIT)
    set(arg_EXIT 0)
  endif()
  add_test(NAME ${name}
    COMMAND ${CMAKE_COMMAND}
      -DPROGRAM=$<TARGET_FILE:${program}>
      -DWORKING_DIR=${guide_run_dir}/${arg_DIR}
      "-DARGS=${arg_ARGS}"
      -DEXPECT_EXIT=${arg_EXIT}
      "-DEXPECT=${arg_EXPECT}"
      -DFRESH=${arg_FRESH}
      -P ${guide_runner})
  set_tests_properties(${name} PROPERTIES TIMEOUT 300 LABELS ${arg_LABEL})
endfunction()

guide_test(guide_basic_loop guide_basic_loop FRESH DIR basic
  EXPECT "done: 8 epochs, best validation accuracy")
guide_test(guide_evaluate_best guide_evaluate_best DIR basic
  EXPECT "best model's test accuracy: [0-9.]+%|||it was saved after epoch [0-7],")
guide_test(guide_evaluate_best_missing guide_evaluate_best FRESH DIR empty EXIT 1
  EXPECT "no best model checkpoint found!")
set_tests_properties(guide_basic_loop PROPERTIES FIXTURES_SETUP guide_basic)
set_tests_properties(guide_evaluate_best PROPERTIES FIXTURES_REQUIRED guide_basic)
guide_test(guide_restore_in_place guide_restore_in_place DIR basic
  EXPECT "restored epoch 7 in place: validation accuracy [0-9.]+%|||the same parameters as load_latest_checkpoint")
set_tests_properties(guide_restore_in_place PROPERTIES FIXTURES_REQUIRED guide_basic)
# The evaluation beside a running trainer: flock(1) holds the directory's writer lock (as a
# CheckpointManager does) while the evaluation runs; a manager would fail with LockedError.
find_program(CKPT_FLOCK flock)
if(CKPT_FLOCK)
  add_test(NAME guide_evaluate_best_beside_trainer
    COMMAND ${CMAKE_COMMAND}
      -DPROGRAM=${CKPT_FLOCK}
      -DWORKING_DIR=${guide_run_dir}/basic
      "-DARGS=--nonblock checkpoints $<TARGET_FILE:guide_evaluate_best>"
      -DEXPECT_EXIT=0
      "-DEXPECT=best model's test accuracy: [0-9.]+%"
      -P ${guide_runner})
  set_tests_properties(guide_evaluate_best_beside_trainer PROPERTIES TIMEOUT 300 LABELS guide
    FIXTURES_REQUIRED guide_basic)
  # guide_restore_in_place opens a manager (the writer lock) on the basic run's
  # directory: not while flock holds it.
  set_tests_properties(guide_evaluate_best_beside_trainer guide_restore_in_place PROPERTIES
    RESOURCE_LOCK guide_basic_dir)
endif()

# 16 steps an epoch: step 40 is in epoch 2, so the interrupt state is of epoch 1.
guide_test(guide_interrupt_run guide_interrupt_recovery FRESH DIR interrupt ARGS "--sigint-at-step 40" EXIT 130
  EXPECT "interrupt checkpoint saved, safe to exit")
guide_test(guide_interrupt_resume guide_interrupt_recovery DIR interrupt
  EXPECT "resuming after epoch 1, best accuracy: [0-9.]+%|||done: trained up to epoch 5")
set_tests_properties(guide_interrupt_run PROPERTIES FIXTURES_SETUP guide_interrupted)
set_tests_properties(guide_interrupt_resume PROPERTIES FIXTURES_REQUIRED guide_interrupted)

guide_test(guide_custom_state guide_custom_state FRESH DIR custom ARGS "--epochs 2"
  EXPECT "keys: model, optimizer, scheduler, epoch, global_step, best_acc, train_loss, val_acc, config, experiment_name, timestamp|||experiment mlp_spirals at [0-9T:-]+: epoch 1, global step 32, batch size 64, lr 0.01, fc1.weight 32x2")

# Step 56 is in epoch 3: the resume starts at epoch 3 again.
guide_test(guide_trainer_run guide_trainer FRESH DIR trainer ARGS "--sigint-at-step 56" EXIT 130
  EXPECT "training from scratch|||training interrupted, saving")
guide_test(guide_trainer_resume guide_trainer DIR trainer
  EXPECT "training resumed, starting at epoch 3|||training done, best val_acc [0-9.]+%")
set_tests_properties(guide_trainer_run PROPERTIES FIXTURES_SETUP guide_trainer_interrupted)
set_tests_properties(guide_trainer_resume PROPERTIES FIXTURES_REQUIRED guide_trainer_interrupted)

# The demo: 32 batches an epoch; the SIGINT arrives after batch 16 of epoch 3. A state's
# "epoch" is the last epoch completed, as in the guide.
guide_test(demo_trainer_help demo_trainer DIR demo_help LABEL demo ARGS "--help"
  EXPECT "^usage: demo_trainer")
guide_test(demo_trainer_run demo_trainer FRESH DIR demo LABEL demo ARGS "--dir checkpoints --epochs 4 --interrupt-at-epoch 3"
  EXIT 130 EXPECT "no checkpoint in checkpoints|||epoch   2 |||interrupted during epoch 3: state saved")
guide_test(demo_trainer_resume demo_trainer DIR demo LABEL demo ARGS "--dir checkpoints --epochs 4"
  EXPECT "resumed after epoch 2: epoch 3 from batch 17|||epoch   4 |||done: best val acc")
guide_test(demo_trainer_continue demo_trainer DIR demo LABEL demo ARGS "--dir checkpoints --epochs 5"
  EXPECT "resumed after epoch 4: epoch 5 from batch 0|||epoch   5 |||done: best val acc")
set_tests_properties(demo_trainer_run PROPERTIES FIXTURES_SETUP demo_interrupted)
set_tests_properties(demo_trainer_resume PROPERTIES FIXTURES_REQUIRED demo_interrupted FIXTURES_SETUP demo_resumed)
set_tests_properties(demo_trainer_continue PROPERTIES FIXTURES_REQUIRED demo_resumed)
