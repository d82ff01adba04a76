"""Workflows: what a program runs, composed from the layers below.

Each module is one job that a program of `experiments/` calls with its flags (and that tests
call directly): nothing below this package imports it.

  launch              what every program does first (logging, multi-host start-up)
  train_and_evaluate  train a config in a workdir, evaluate its best checkpoint -> results.json
  evaluate_runs       evaluate the best checkpoints of runs side by side -> report.md
  demo                one config per objective, trained and reported (`make demo`)
  benchmark           step times, memory and FLOPs per objective, and end-to-end races
  salience_study      the five salience measures of trained runs -> a salience report
  focus_study         the focus losses: recipes x seeds, trained, measured, reported
  gpu_check           a lent accelerator's first check: the benchmark grid, a short run
"""
