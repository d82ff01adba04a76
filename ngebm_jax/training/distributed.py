"""Multi-host start-up: `jax.distributed.initialize()` when the job has more than one process.

Launchers describe a job through environment variables; `jax.distributed` reads them by itself
(Cloud TPU pods, SLURM, Open MPI), or from the explicit `JAX_COORDINATOR_ADDRESS` (host:port of
process 0), `JAX_NUM_PROCESSES` and `JAX_PROCESS_ID`. It starts only when the job has more than
one process: one process on an allocated SLURM node (`salloc`, then `python ...`), or a batch
script run without `srun`, is an ordinary single-process run, which `jax.distributed` would
otherwise hold waiting for peers that never come. `NGEBM_NO_DISTRIBUTED=1` skips it whatever the
environment says.
"""

from __future__ import annotations

import os
from typing import Mapping

import jax
from absl import logging


def _count(value: str | None) -> int:
  try:
    return int(str(value).split("(")[0])  # SLURM writes e.g. "4" or "2(x2)"
  except ValueError:
    return 0


def cluster_processes(environ: Mapping[str, str] | None = None) -> tuple[str | None, int]:
  """`(launcher, number of processes)` that the environment describes; `(None, 1)` if none.

  SLURM counts the tasks of the current step (`SLURM_STEP_NUM_TASKS`, set inside `srun`), else of
  the job (`SLURM_NTASKS`); Open MPI `OMPI_COMM_WORLD_SIZE`; Cloud TPU the hosts in
  `TPU_WORKER_HOSTNAMES`; a multi-slice TPU job (`MEGASCALE_COORDINATOR_ADDRESS`) always counts
  as several.
  """
  env = os.environ if environ is None else environ
  if "JAX_COORDINATOR_ADDRESS" in env:
    return "explicit", _count(env.get("JAX_NUM_PROCESSES"))
  if "SLURM_JOB_ID" in env:
    return "slurm", _count(env.get("SLURM_STEP_NUM_TASKS", env.get("SLURM_NTASKS", "1")))
  if "OMPI_COMM_WORLD_SIZE" in env:
    return "openmpi", _count(env["OMPI_COMM_WORLD_SIZE"])
  if "MEGASCALE_COORDINATOR_ADDRESS" in env:
    return "tpu_multislice", 2
  if "TPU_WORKER_HOSTNAMES" in env:
    return "tpu", len([h for h in env["TPU_WORKER_HOSTNAMES"].split(",") if h.strip()])
  return None, 1


def initialize_if_needed() -> bool:
  """Initializes `jax.distributed` for multi-process jobs; returns whether it did.

  Set `NGEBM_NO_DISTRIBUTED=1` to skip it (one process on a cluster node that describes a
  larger job).
  """
  if os.environ.get("NGEBM_NO_DISTRIBUTED"):
    return False
  launcher, processes = cluster_processes()
  if launcher == "explicit":
    missing = [v for v in ("JAX_NUM_PROCESSES", "JAX_PROCESS_ID") if v not in os.environ]
    if missing or processes < 1:
      raise ValueError(f"JAX_COORDINATOR_ADDRESS is set, so this is a multi-process run: also set "
                       f"JAX_NUM_PROCESSES (a positive integer) and JAX_PROCESS_ID; missing: "
                       f"{missing or ['a valid JAX_NUM_PROCESSES']}.")
  if launcher is None or processes <= 1:
    if launcher is not None:
      logging.info("%s environment with %d process: a single-process run, no jax.distributed.",
                   launcher, processes)
    return False
  kwargs = {}
  if launcher == "explicit":
    kwargs = dict(coordinator_address=os.environ["JAX_COORDINATOR_ADDRESS"],
                  num_processes=processes, process_id=int(os.environ["JAX_PROCESS_ID"]))
  jax.distributed.initialize(**kwargs)
  logging.info("jax.distributed (%s): process %d of %d.", launcher, jax.process_index(),
               jax.process_count())
  return True
