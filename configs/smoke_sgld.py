"""Smoke test of SGLD-EBM (JEM) on the embedded data: small CNN, K=5, a small replay buffer.

  python -m experiments.train --config=configs/smoke_sgld.py --workdir=runs/smoke_sgld

Runs the real path (buffer draw, chain, write-back, the unlabelled second batch, the sharded
buffer in the checkpoint) in well under a minute on 2 CPU cores; no accuracy is expected.
"""

from configs import smoke


def get_config():
  config = smoke.get_config()
  config.objective = "sgld"
  config.sgld.num_steps = 5
  return config
