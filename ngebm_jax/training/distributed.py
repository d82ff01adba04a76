"""Multi-host start-up: `jax.distributed.initialize()` when the environment asks for it."""

from __future__ import annotations

import os

import jax
from absl import logging

# Variables by which launchers describe a cluster that jax.distributed can read by itself
# (Cloud TPU pods are detected by JAX; SLURM and Open MPI through their cluster plugins).
_CLUSTER_VARIABLES = ("JAX_COORDINATOR_ADDRESS", "SLURM_JOB_ID", "OMPI_COMM_WORLD_SIZE",
                      "TPU_WORKER_HOSTNAMES", "MEGASCALE_COORDINATOR_ADDRESS")


def initialize_if_needed() -> bool:
  """Initializes `jax.distributed` for multi-process runs; returns whether it did.

  Explicit settings: `JAX_COORDINATOR_ADDRESS` (host:port of process 0), `JAX_NUM_PROCESSES`
  and `JAX_PROCESS_ID`. Set `NGEBM_NO_DISTRIBUTED=1` to skip (single-process runs on a cluster).
  """
  if os.environ.get("NGEBM_NO_DISTRIBUTED"):
    return False
  if not any(v in os.environ for v in _CLUSTER_VARIABLES):
    return False
  kwargs = {}
  if "JAX_COORDINATOR_ADDRESS" in os.environ:
    kwargs = dict(coordinator_address=os.environ["JAX_COORDINATOR_ADDRESS"],
                  num_processes=int(os.environ["JAX_NUM_PROCESSES"]),
                  process_id=int(os.environ["JAX_PROCESS_ID"]))
  jax.distributed.initialize(**kwargs)
  logging.info("jax.distributed: process %d of %d.", jax.process_index(), jax.process_count())
  return True
