"""The robustness evaluator: accuracy under PGD (fixed epsilons, or NG-EBM's minimal epsilons)."""

from __future__ import annotations

import os

import numpy as np

from ngebm_jax.evaluation import plots
from ngebm_jax.evaluation import robustness
from ngebm_jax.evaluation.inference import purpose_key
from ngebm_jax.evaluation.inputs import EvalInputs


def attacked_examples(inputs: EvalInputs) -> int:
  """How many test images the robustness evaluator attacks: the first
  `options.robustness_num_examples` of `inputs.images` (which `max_examples` already caps)."""
  n = int(inputs.images.shape[0])
  limit = inputs.options.robustness_num_examples
  return n if limit is None else min(n, int(limit))


def evaluate(inputs: EvalInputs, output_dir: str) -> dict:
  """Robustness to PGD on the first test examples, by `options.robustness_protocol`.

  "fixed_epsilon": accuracy under PGD at each epsilon (test-time noise added to the attacked
  images). "paper": the smallest successful epsilon of each image (`robustness.minimal_epsilons`,
  the NG-EBM code's protocol), and from it the accuracy at each epsilon. Either way
  `out[norm]` has `epsilons` and `accuracy`, plotted as a curve per norm.
  """
  opts = inputs.options
  n = attacked_examples(inputs)
  x, y = inputs.images[:n], inputs.labels[:n]
  out = dict(protocol=opts.robustness_protocol, num_examples=int(n),
             num_steps=int(opts.pgd_steps),
             step_size=None if opts.pgd_step_size is None else float(opts.pgd_step_size),
             noise_std=float(opts.noise_std), plots={})
  for norm in opts.robustness_norms:
    epsilons = tuple(opts.epsilons[norm])
    key = purpose_key(inputs.key, "pgd/" + norm)
    if opts.robustness_protocol == "paper":
      # The reference attacks 5 noisy copies (sigma 0.03) under L-inf, the clean model under L2.
      sigma = float(opts.noise_std) if norm == "linf" else 0.0
      found = robustness.minimal_epsilons(
          inputs.apply_fn, inputs.params, x, y, key=key, norm=norm, num_steps=opts.pgd_steps,
          binary_search_steps=opts.binary_search_steps, num_copies=opts.noise_copies,
          noise_std=sigma, batch_size=opts.batch_size, refine_steps=opts.refine_steps,
          refine_noise_std=opts.refine_noise_std)
      min_eps = found["epsilons"]
      fooled = np.isfinite(min_eps) & found["clean_correct"]
      out[norm] = dict(
          epsilons=[float(e) for e in epsilons],
          accuracy=robustness.accuracy_at(min_eps, epsilons),
          minimal_epsilons=[float(e) if np.isfinite(e) else None for e in min_eps],
          clean_accuracy=float(np.mean(found["clean_correct"])),
          median_minimal_epsilon=float(np.median(min_eps[fooled])) if fooled.any() else None,
          never_fooled=int(np.sum(found["clean_correct"] & ~np.isfinite(min_eps))),
          attack_noise_std=sigma, refine_steps=int(opts.refine_steps),
          refine_noise_std=float(opts.refine_noise_std),
          noise_copies=int(opts.noise_copies) if sigma > 0 or (
              opts.refine_steps > 0 and opts.refine_noise_std > 0) else 1)
    else:
      acc = robustness.robust_accuracy(
          inputs.apply_fn, inputs.params, x, y, key=key, norm=norm, epsilons=epsilons,
          num_steps=opts.pgd_steps, step_size=opts.pgd_step_size, batch_size=opts.batch_size,
          noise_std=opts.noise_std)
      out[norm] = dict(epsilons=[float(e) for e in acc],
                       accuracy=[float(a) for a in acc.values()])
    if opts.figures:
      path = os.path.join(output_dir, f"robustness_{norm}.png")
      if opts.robustness_protocol == "paper":
        plots.minimal_epsilon_curves({"this run": min_eps}, path, norm=norm)
      else:
        plots.robustness_curves({"this run": (out[norm]["epsilons"], out[norm]["accuracy"])},
                                path, norm=norm)
      out["plots"][norm] = os.path.relpath(path, output_dir)
  return out


def plan(inputs: EvalInputs) -> dict:
  """The attack's size: images x epsilons x PGD steps (fixed-epsilon protocol), or images x at
  most `2 * binary_search_steps` tries x PGD steps (paper protocol, each try on `noise_copies`
  refined copies)."""
  opts = inputs.options
  entry = dict(images=attacked_examples(inputs), protocol=opts.robustness_protocol,
               pgd_steps=int(opts.pgd_steps),
               epsilons={norm: len(opts.epsilons[norm]) for norm in opts.robustness_norms})
  if opts.robustness_protocol == "paper":
    entry.update(max_tries=2 * int(opts.binary_search_steps),
                 noise_copies=int(opts.noise_copies), refine_steps=int(opts.refine_steps))
  return entry


def describe(entry: dict) -> str:
  """One line of the log for `plan`'s entry."""
  eps = ", ".join(f"{norm}: {k} epsilons" for norm, k in entry["epsilons"].items())
  per = (f"{entry['pgd_steps']} PGD steps per epsilon" if entry["protocol"] != "paper" else
         f"up to {entry['max_tries']} searches of {entry['pgd_steps']} PGD steps on "
         f"{entry['noise_copies']} copies, {entry['refine_steps']} refinement step(s)")
  return f"robustness ({entry['protocol']}): {entry['images']} images; {eps}; {per}"
