"""The salience study: Grad-CAM and the five measures of Explain2Me on trained runs, one report.

What `python -m experiments.salience` runs. Each run's best checkpoint is measured
(`salience.model_salience.measure_model`) on the first `num_images` test images of its own
config, without input noise; runs given as a group (several seeds of one recipe) also get
measure (d), stability across runs (`stability_of`), and runs whose configs differ only in
`seed` are grouped automatically unless `auto_group=False`. Measures (a), (b) and (e) are taken
under each of `variants` (sets of options where the authors' released code and our first
implementation differ: `default` follows the authors' steps, `ours` the first implementation;
see `ngebm_jax.salience.variants`). `salience.report.write_report` writes into the output
folder: salience.json (all numbers; each model's `variants` lists the options of every variant,
and (a), (b), (e) are keyed by variant), per_image.npz, report.md (a table across models under
the primary variant, one with (a), (b) and (e) under every variant), entropy_histogram.png,
out_of_set.png, equivariance.png, degradation.png and examples.png (images with their maps
overlaid); plots label each line with its variant.
"""

from __future__ import annotations

import json
import os
import time
from typing import Sequence

import jax
import numpy as np
from absl import logging

from ngebm_jax import data as data_lib
from ngebm_jax.salience import model_salience
from ngebm_jax.salience import report as report_lib
from ngebm_jax.salience import variants as salience_variants
from ngebm_jax.training import checkpoints as ckpt_lib


def parse_group(spec: str) -> tuple[str, list[str]]:
  """`"name:dir1,dir2"` -> `("name", ["dir1", "dir2"])`."""
  name, sep, dirs = spec.partition(":")
  workdirs = [d for d in dirs.split(",") if d]
  if not sep or not name or len(workdirs) < 2:
    raise ValueError(f"--group must be NAME:DIR1,DIR2[,...] with at least two runs; got "
                         f"{spec!r}.")
  return name, workdirs


def _unique_name(base: str, taken: set) -> str:
  name, i = base, 2
  while name in taken:
    name, i = f"{base}_{i}", i + 1
  return name


def _auto_groups(workdirs: list[str], configs: dict) -> dict[str, list[str]]:
  """Runs whose configs are equal except `seed` (two or more), by recipe."""
  groups: list[list[str]] = []
  for w in workdirs:
    for g in groups:
      if not ckpt_lib.config_differences(configs[g[0]], configs[w], ignore=("seed",)):
        g.append(w)
        break
    else:
      groups.append([w])
  out = {}
  for g in groups:
    if len(g) > 1:
      c = configs[g[0]]
      out[_unique_name(f"{c.objective}-{c.model.name}-seeds", set(out))] = g
  return out


def first_test_examples(config, num: int) -> tuple[np.ndarray, np.ndarray]:
  """The first `num` test images (uint8 `[n, H, W, C]`) and labels (int32 `[n]`) of `config`.

  Reads them from the random-access test source (`ngebm_jax.data.get_sources`), so neither the
  whole test set nor the OOD sets are loaded.
  """
  test = data_lib.get_sources(config)["test"]
  examples = [test[i] for i in range(min(num, len(test)))]
  images = np.stack([np.asarray(e["image"], np.uint8) for e in examples])
  labels = np.asarray([int(e["label"]) for e in examples], np.int32)
  return images, labels


def run(
    workdirs: Sequence[str],
    groups: dict[str, Sequence[str]],
    output: str,
    *,
    auto_group: bool = True,
    num_images: int = 500,
    batch_size: int = 128,
    seed: int = 0,
    variants: Sequence[str] = ("default",),
    sigma_factors: Sequence[float] = (0.5, 1.0, 2.0, 4.0),
    num_examples: int = 8,
) -> dict[str, str]:
  """Measures every run and writes the report; returns the paths written (see `write_report`).

  `variants` names the sets of options of measures (b) and (e) to measure under
  (`ngebm_jax.salience.variants.get_variant`: "default", "authors", "ours", or
  "PRESET:SCHEDULE"); the first is the primary one (the main table, the (e) sweep over
  `sigma_factors`, in multiples of the authors' blur sigmas). The report lists every variant's
  options and labels each number and plot with its variant.
  """
  if num_images < 1:
    raise ValueError(f"num_images must be >= 1; got {num_images}.")

  def key(w) -> str:  # an absolute path, or a URI (gs://...) as it is
    return os.fspath(ckpt_lib.workdir_path(w))

  variants = [salience_variants.get_variant(v) for v in variants]
  ordered = []  # every workdir once, in order of appearance
  for w in list(workdirs) + [w for g in groups.values() for w in g]:
    w = key(w)
    if w not in ordered:
      ordered.append(w)
  if not ordered:
    raise ValueError("Nothing to measure: pass --workdir and/or --group.")
  configs = {w: ckpt_lib.load_config(w) for w in ordered}
  groups = {g: [key(w) for w in ws] for g, ws in groups.items()}
  if auto_group:
    explicit = {w for ws in groups.values() for w in ws}
    for g, ws in _auto_groups([key(w) for w in workdirs if key(w) not in explicit],
                              configs).items():
      groups[_unique_name(g, set(groups))] = ws

  names: dict[str, str] = {}
  for w in ordered:
    names[w] = _unique_name(os.path.basename(w.rstrip("/")) or "run", set(names.values()))
  data_cache: dict[str, tuple] = {}
  models, info = {}, {}
  key = jax.random.key(seed)
  for w in ordered:
    start = time.time()
    config, fns, params = ckpt_lib.load_run(w)
    data_key = json.dumps(json.loads(config.dataset.to_json_best_effort()), sort_keys=True)
    if data_key not in data_cache:
      data_cache[data_key] = first_test_examples(config, num_images)
    images, labels = data_cache[data_key]
    logging.info("Measuring %s (%s) on %d images.", names[w], w, len(images))
    models[names[w]] = model_salience.measure_model(
        fns, params, images, labels, key=key, variants=variants, batch_size=batch_size,
        sigma_factors=sigma_factors, num_examples=num_examples)
    info[names[w]] = {"workdir": w, "objective": config.objective, "arch": config.model.name,
                      "seed": config.seed, "dataset": config.dataset.name,
                      "data_key": data_key}
    logging.info("%s done in %.1f s.", names[w], time.time() - start)

  group_results = {}
  for g, ws in groups.items():
    keys = {info[names[w]]["data_key"] for w in ws}
    if len(keys) != 1:
      raise ValueError(f"Group {g!r} mixes runs on different data; stability compares the maps "
                       f"of the same images.")
    res = model_salience.stability_of([models[names[w]] for w in ws])
    group_results[g] = {"runs": [names[w] for w in ws], **res}
    logging.info("Stability of %s over %d runs: %.4f.", g, len(ws), res["mean"])
  for i in info.values():
    i.pop("data_key")
  settings = {"num_images": num_images, "batch_size": batch_size, "seed": seed,
              "variants": [v.name for v in variants], "sigma_factors": list(sigma_factors)}
  paths = report_lib.write_report(output, models, group_results, info=info, settings=settings)
  logging.info("Wrote the salience report to %s.", paths["report"])
  return paths
