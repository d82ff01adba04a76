"""The first check on a newly lent accelerator: the benchmark grid and a short training run.

`make gpu-check` runs it (configs/gpu_check.py): the train steps of every objective timed over
a grid of batch sizes and dtypes (`workflows.benchmark.run`), then a few hundred steps of the
training loop with its real input pipeline (`train_and_evaluate`), whose images/s are set
beside the step-alone figure of the same setting. Writes `gpu_check.json` and `gpu_check.md`
(and each setting's benchmark report in `benchmark/`, the run in `train/`). A grid setting is
not started once `config.gpu_check.budget_s - train_share_s` seconds are spent, so that the
whole check stays within its time on a lent machine; those left out are listed.
"""

from __future__ import annotations

import json
import os
import time

import numpy as np
from absl import logging
from etils import epath

from ngebm_jax import reporting
from ngebm_jax.benchmarking import report as bench_report
from ngebm_jax.benchmarking import timing
from ngebm_jax import config_validation
from ngebm_jax.workflows import benchmark
from ngebm_jax.workflows import launch
from ngebm_jax.workflows import train_and_evaluate


def check_config(config) -> None:
  """Fails on a bad `config.gpu_check` (and a CPU-only JAX, per `config.on_cpu`) at once."""
  config_validation.check_backend(config)
  g = config.gpu_check
  if not g.batch_sizes or not g.dtypes or not g.objectives:
    raise ValueError("config.gpu_check.batch_sizes, dtypes and objectives must not be empty.")
  for field in ("steps", "train_steps", "sgld_steps"):
    if g[field] < 1:
      raise ValueError(f"config.gpu_check.{field} must be >= 1; got {g[field]}.")
  if g.train_objective not in g.objectives:
    raise ValueError(f"config.gpu_check.train_objective ({g.train_objective!r}) must be one of "
                     f"config.gpu_check.objectives {tuple(g.objectives)}: its step-alone figure "
                     "is what the training loop is compared with.")
  if g.train_dtype not in g.dtypes or config.batch_size not in g.batch_sizes:
    raise ValueError("config.gpu_check.train_dtype must be in gpu_check.dtypes and "
                     "config.batch_size in gpu_check.batch_sizes (the comparison's setting).")


def _train_config(config):
  c = config.copy_and_resolve_references()
  g = c.gpu_check
  c.objective, c.model.dtype, c.num_steps = g.train_objective, g.train_dtype, g.train_steps
  c.sgld.num_steps = g.sgld_steps
  return c


def _loop_images_per_s(workdir, batch_size: int) -> dict:
  """The training loop's throughput from `metrics.jsonl`: the median logged interval after the
  first (which holds the compilation)."""
  path = os.path.join(os.fspath(workdir), "metrics.jsonl")
  lines = epath.Path(path).read_text().splitlines()
  times = [r["train/step_time_s"] for r in map(json.loads, lines)
           if "train/step_time_s" in r]
  steady = times[1:] or times
  if not steady:
    return {"images_per_s": None, "intervals": 0}
  median = float(np.median(steady))
  return {"images_per_s": batch_size / median, "step_ms": 1e3 * median,
          "intervals": len(steady)}


def _find(tree, key):
  """The first value of `key` anywhere in a nested dict / list, or None."""
  if isinstance(tree, dict):
    if key in tree:
      return tree[key]
    tree = list(tree.values())
  if isinstance(tree, list):
    for item in tree:
      found = _find(item, key)
      if found is not None:
        return found
  return None


def run(config, output: str) -> dict:
  """Runs the check of `config` (configs/gpu_check.py) and writes `output/gpu_check.{json,md}`."""
  check_config(config)
  start = time.monotonic()
  g = config.gpu_check
  cache = launch.use_compilation_cache(config.compilation_cache_dir, output)
  grid_budget = g.budget_s - g.train_share_s
  settings, skipped = [], []
  for batch_size in g.batch_sizes:
    for dtype in g.dtypes:
      if time.monotonic() - start > grid_budget:
        skipped.append({"batch_size": int(batch_size), "dtype": dtype})
        logging.warning("gpu-check: out of time, setting batch %d, %s skipped.", batch_size,
                        dtype)
        continue
      c = config.copy_and_resolve_references()
      c.batch_size, c.model.dtype = int(batch_size), str(dtype)
      t0 = time.monotonic()
      results = benchmark.run(c, objective_names=list(g.objectives), sgld_steps=[g.sgld_steps],
                              steps=g.steps, warmup=g.warmup, pytorch=False)
      results["environment"]["compilation_cache"] = cache
      results["wall_s"] = time.monotonic() - t0
      bench_report.write_report(results, os.path.join(output, "benchmark",
                                                      f"b{batch_size}_{dtype}"))
      settings.append(results)
  if settings:
    bench_report.write_grid_report(settings, os.path.join(output, "benchmark"))

  t0 = time.monotonic()
  train_config = _train_config(config)
  workdir = os.path.join(output, "train")
  train_and_evaluate.train_and_evaluate(train_config, workdir)
  train = {"objective": train_config.objective, "dtype": train_config.model.dtype,
           "batch_size": int(train_config.batch_size), "steps": int(train_config.num_steps),
           "dataset": train_config.dataset.name, "workdir": workdir,
           **_loop_images_per_s(workdir, train_config.batch_size),
           "wall_s": time.monotonic() - t0}
  alone = [r for s in settings if s["setup"]["batch_size"] == train["batch_size"]
           and s["setup"]["dtype"] == train["dtype"] for r in s["steps"]
           if r["framework"] == "jax" and r["name"] == train["objective"]]
  if alone and train["images_per_s"]:
    train["step_alone_images_per_s"] = alone[0]["images_per_s"]
    train["loop_over_step_alone"] = train["images_per_s"] / alone[0]["images_per_s"]
  efficiency = _find(settings, "pipeline_efficiency")  # the benchmark's, where it reports one
  if efficiency is not None:
    train["pipeline_efficiency"] = efficiency

  env = settings[0]["environment"] if settings else timing.environment()
  results = {"environment": env, "config": {"gpu_check": g.to_dict(),
                                            "model": config.model.to_dict()},
             "grid": [{"setup": s["setup"], "wall_s": s["wall_s"],
                       "steps": [r for r in s["steps"] if r["framework"] == "jax"]}
                      for s in settings],
             "grid_skipped_for_time": skipped, "train": train,
             "wall_s": time.monotonic() - start, "load_average_end": timing.load_average()}
  reporting.write_json(os.path.join(output, "gpu_check.json"), results)
  reporting.write_text(os.path.join(output, "gpu_check.md"), markdown(results, settings) + "\n")
  return results


def markdown(results: dict, settings) -> str:
  env, train = results["environment"], results["train"]
  f = reporting.fmt
  lines = [f"# GPU check: {env['backend']} ({env['device_kind']}) x {env['device_count']}", "",
           f"JAX {env['jax_version']}; {env['time_utc']}; {results['wall_s']:.0f} s in all "
           "(install not included).", ""]
  if settings:
    lines.append(bench_report.grid_markdown(settings).split("\n", 2)[2])  # the table
  if results["grid_skipped_for_time"]:
    left = ", ".join(f"batch {s['batch_size']} {s['dtype']}"
                     for s in results["grid_skipped_for_time"])
    lines += [f"Left out for time: {left}.", ""]
  lines += [
      f"## Training loop: {train['steps']} steps of {train['objective']}, {train['dtype']}, "
      f"batch {train['batch_size']}, {train['dataset']} data", "",
      f"- images/s in the loop (the real input pipeline; median of the logged intervals after "
      f"the first): {f(train['images_per_s'], '.0f')}",
      f"- the same step alone (benchmark): {f(train.get('step_alone_images_per_s'), '.0f')}; "
      f"loop / step alone: {f(train.get('loop_over_step_alone'), '.2f')}"]
  if "pipeline_efficiency" in train:
    lines.append(f"- pipeline_efficiency (benchmark): {f(train['pipeline_efficiency'], '.2f')}")
  lines.append(f"- wall time of the run (compilation and evaluation included): "
               f"{train['wall_s']:.0f} s")
  return "\n".join(lines)
