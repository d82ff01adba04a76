"""The trainer: train state, the SPMD train step, objectives by name, checkpoints, the loop.

  state               TrainState, the optimizer and its learning-rate schedule
  spmd                the device mesh and the data-parallel train step
  objective_registry  the objectives `config.objective` names, bound to the config
  checkpoints         the workdir's checkpoints, its config, and `load_run` for evaluation
  metric_writer       metrics.jsonl and TensorBoard events
  distributed         `jax.distributed` start-up on clusters
  loop                `train(config, workdir)`: data -> step -> validation -> checkpoints
  step_log            the loop's metrics, fetched once per log interval, and its progress bar
  divergence          NonFiniteLossError, and restarts from the last good checkpoint
  preemption          SIGTERM/SIGINT: every process stops at the same step

Programs reach it through `ngebm_jax.workflows.train_and_evaluate`.
"""
