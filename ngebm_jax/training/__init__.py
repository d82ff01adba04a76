"""The trainer: train state, the SPMD train step, objectives by name, checkpoints, the loop.

`ngebm_jax.experiment.train_and_evaluate(config, workdir)` is the entry point programs use;
`loop.train` trains, `checkpoints.load_run` reads a run back for evaluation.
"""
