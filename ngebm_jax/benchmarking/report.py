"""The benchmark's report: `benchmark.json`, `benchmark.md` (Markdown tables), `benchmark.png`.

`benchmark.json` holds one entry of `steps` per timed step and framework (`"framework"`: `"jax"`
for ours, `"pytorch"` for the peer's step of the same `name`); `benchmark.md` shows ours, then
PyTorch's beside ours with their ratios.
"""

from __future__ import annotations

import os
from typing import Sequence

import numpy as np

from ngebm_jax import reporting
from ngebm_jax.reporting import fmt as _fmt


def _mib(value) -> str:
  return _fmt(value / 2**20 if value is not None else None, ".1f")


def _ours(results: dict) -> list[dict]:
  return [r for r in results["steps"] if r.get("framework", "jax") == "jax"]


def _load(values) -> str:
  return " / ".join(f"{x:.2f}" for x in values) if values else "unknown"


def _pytorch_lines(results: dict) -> list[str]:
  peer = results.get("pytorch") or {}
  if not peer.get("available"):
    return [f"PyTorch peer: not run ({peer.get('reason', 'not requested')}).", ""]
  theirs = {r["name"]: r for r in results["steps"] if r.get("framework") == "pytorch"}
  lines = ["## Ours beside PyTorch (same run, round-robin, step by step)", "",
           f"PyTorch {peer.get('torch_version')} ({peer.get('threads')} threads, eager, "
           "float32), the reference's steps written in PyTorch from the same initial "
           "parameters and batch: the baseline, NG-EBM by double backward, JEM with its replay "
           "buffer and three forward passes. Each PyTorch step ran right after ours of the same "
           "name.", "",
           "| step | ours ms (p10-p90) | PyTorch ms (p10-p90) | ours / PyTorch | ours x baseline "
           "| PyTorch x baseline |", "| --- | ---: | ---: | ---: | ---: | ---: |"]
  for r in _ours(results):
    t = theirs.get(r["name"])
    if t is None:
      continue
    lines.append(
        f"| {r['name']} | {1e3 * r['median_s']:.1f} ({1e3 * r['p10_s']:.0f}-"
        f"{1e3 * r['p90_s']:.0f}) | {1e3 * t['median_s']:.1f} ({1e3 * t['p10_s']:.0f}-"
        f"{1e3 * t['p90_s']:.0f}) | **{r['ratio_to_pytorch']:.2f}** | "
        f"{_fmt(r.get('ratio_to_baseline'), '.2f')} | {_fmt(t.get('ratio_to_baseline'), '.2f')} |")
  if peer.get("skipped"):
    lines.append("")
    lines.append("No PyTorch step for: " + "; ".join(
        f"{k} ({v})" for k, v in peer["skipped"].items()) + ".")
  lines.append("")
  return lines


def _component_lines(comps: dict) -> list[str]:
  pieces = ("forward", "input_grad", "param_grad", "ngebm_grad")
  lines = ["## Where the time goes (one device's batch, jitted, median; no optimizer update)", "",
           "| piece | ours ms | PyTorch ms |", "| --- | ---: | ---: |"]
  for k in pieces:
    if k in comps:
      lines.append(f"| {k} | {1e3 * comps[k]:.1f} | "
                   f"{_fmt(1e3 * comps[f'pytorch_{k}'] if f'pytorch_{k}' in comps else None, '.1f')}"
                   " |")
  lines += [f"| {k} | {1e3 * v:.1f} | – |" for k, v in comps.items()
            if k not in pieces and not k.startswith("pytorch_")]
  lines += ["", "forward: logits. input_grad: d log p~(x)/dx, one SGLD step (forward + backward "
            "to the input). param_grad: the cross-entropy's parameter gradient, a baseline step "
            "without the optimizer (forward + backward to the input + weight gradients). "
            "ngebm_grad: the NG-EBM loss and its parameter gradient. So input_grad - forward is "
            "the backward pass through the activations and param_grad - input_grad the "
            "weight-gradient convolutions.", ""]
  return lines


def _fit_lines(fit: list[dict]) -> list[str]:
  lines = ["## Largest batch within the memory budget (XLA's plan of the compiled step)", "",
           "| objective | budget GiB | largest batch | its step MiB | compiled on |",
           "| --- | ---: | ---: | ---: | --- |"]
  for f in fit:
    lines.append(f"| {f['objective']} | {f['budget_gib']:.1f} | {f['batch_size']} | "
                 f"{_mib(f['peak_bytes'])} | {f['backend']} ({f['device_kind']}) |")
  lines += ["", "Batches are multiples of the step given; per device. Compiled on a CPU, the "
            "figure estimates a GPU's (same weights, optimizer state and saved activations; "
            "another compiler's temporaries).", ""]
  return lines


def train_loop_lines(results: dict) -> list[str]:
  """The training loop's throughput (real pipeline plus step) beside the step alone."""
  t = results.get("train_loop")
  if not t:
    return []
  return [f"Training loop ({t['variant']}, the real input pipeline feeding the step, "
          f"{t['steps_per_round']} steps back to back, median of {t['rounds']} rounds): "
          f"**{t['train_loop_images_per_s']:.0f} images/s**; the same step alone on one reused "
          f"batch, in the same rounds: {t['step_alone_images_per_s']:.0f} images/s; "
          f"pipeline efficiency (median over rounds of the step alone's time over the loop's) "
          f"**{t['pipeline_efficiency']:.3f}** (prefetch "
          f"{t['prefetch']}, {t['num_workers']} grain workers; the pipeline alone: "
          f"{1e3 * t['pipeline_alone_s_per_batch']:.1f} ms a batch).", ""]


def race_markdown(results: dict) -> list[str]:
  """The end-to-end section: the race to a validation accuracy, and the common budget."""
  e2e = results.get("end_to_end")
  if not e2e or not e2e["runs"]:
    return []
  budget = e2e.get("budget_s")
  caps = f"at most {e2e['max_steps']} steps"
  if e2e.get("max_seconds"):
    caps += f" and about {e2e['max_seconds']:.0f} s of training"
  load = results["environment"].get("load_average_end")
  lines = [f"## End to end: training time to {100 * e2e['target_accuracy']:.0f}% "
           "validation accuracy", "",
           f"Each objective trains the same model from the same seed on the same data stream, "
           f"with the same optimizer and schedule (learning rate "
           f"{results['setup']['optimizer']['learning_rate']:g}, "
           f"{results['setup']['optimizer']['warmup_steps']} warmup steps), with the step "
           f"timed above; validation every {e2e['eval_every']} steps (clock stopped), {caps}. "
           "Seconds count training steps only (input pipeline included, compilation and "
           "validation excluded); runs are sequential, in the table's order"
           + (f"; load average at the end {_load(load)}" if load else "") + ".", ""]
  header = ("| objective | reached | steps to target | train s to target | x baseline s | "
            "best val acc | steps run | non-finite steps |")
  align = "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |"
  if budget is not None:
    header += f" val acc at {budget:.0f} s | val ECE at {budget:.0f} s |"
    align += " ---: | ---: |"
  lines += [header, align]
  base = e2e["runs"].get("baseline")
  base_s = base["seconds_to_target"] if base and base["reached"] else None
  for name, r in e2e["runs"].items():
    ratio = r["seconds_to_target"] / base_s if base_s and r["reached"] else None
    row = (f"| {name} | {'yes' if r['reached'] else 'no'} | {_fmt(r['steps_to_target'], 'd')} | "
           f"{_fmt(r['seconds_to_target'], '.1f')} | {_fmt(ratio, '.2f')} | "
           f"{_fmt(r['best_val_accuracy'], '.3f')} | {r['steps_run']} | "
           f"{r['nonfinite_steps']} |")
    if budget is not None:
      point = r.get("at_budget") or {}
      row += (f" {_fmt(point.get('val_accuracy'), '.3f')} | "
              f"{_fmt(point.get('val_ece'), '.3f')} |")
    lines.append(row)
  lines.append("")
  if budget is not None:
    lines += [f"At {budget:.0f} s: the last validation at or before that many seconds of "
              f"training (ECE: {e2e.get('ece_num_bins', 20)} bins, mean-confidence form, on the "
              "noisy validation inputs).", ""]
  lines += ["![validation accuracy against training seconds](benchmark_race.png)", ""]
  return lines


def plot_race(results: dict, path: str) -> None:
  """Validation accuracy against training seconds, every objective of the race in one plot."""
  e2e = results["end_to_end"]
  fig, axes = reporting.new_figure(1, squeeze=False)
  ax = axes[0, 0]
  for name, r in e2e["runs"].items():
    curve = r["curve"]
    ax.plot([c["train_s"] for c in curve], [c["val_accuracy"] for c in curve], marker=".",
            label=name + ("" if r["reached"] else " (target not reached)"))
  ax.axhline(e2e["target_accuracy"], color="0.4", linestyle="--", linewidth=1,
             label=f"target {100 * e2e['target_accuracy']:.0f}%")
  if e2e.get("budget_s") is not None:
    ax.axvline(e2e["budget_s"], color="0.6", linestyle=":", linewidth=1,
               label=f"budget {e2e['budget_s']:.0f} s")
  ax.set_xlabel("training seconds (validation excluded)")
  ax.set_ylabel("validation accuracy")
  ax.set_title(f"Race to {100 * e2e['target_accuracy']:.0f}%: {results['setup']['model']}, "
               f"{results['setup']['dataset']}")
  ax.legend(fontsize=7, loc="lower right")
  reporting.save_figure(fig, path, dpi=120)


def markdown(results: dict) -> str:
  """The results as Markdown: set-up, step table, PyTorch beside ours, components, end to end."""
  env, setup = results["environment"], results["setup"]
  lines = [
      f"# Train-step benchmark: {setup['model']}, batch {setup['batch_size']}, {setup['dtype']}",
      "",
      f"{env['backend']} ({env['device_kind']}) x {env['device_count']}, JAX "
      f"{env['jax_version']}, {env['cpu_count']} CPU cores, load average (1 / 5 / 15 min) at "
      f"start {_load(env.get('load_average_start'))}, after the steps "
      f"{_load(env.get('load_average_after_steps'))}; {env['time_utc']}. "
      f"Median of {setup['steps']} timed steps per objective (round-robin, after "
      f"{setup['warmup']} warm-up step), spread p10-p90.",
      "",
      "| objective | compile s | median ms | p10-p90 ms | back-to-back ms | images/s | "
      "x baseline | target | x PyTorch | peak memory MiB | GFLOP/step | MFU |",
      "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
  ]
  for r in _ours(results):
    target = "–"
    if r.get("target_ratio"):
      target = f"<= {r['target_ratio']:.2f}x " + ("(met)" if r["meets_target"] else "(missed)")
    flops = r.get("flops")
    lines.append(
        f"| {r['name']} | {r['lower_s'] + r['compile_s']:.1f} | {1e3 * r['median_s']:.1f} | "
        f"{1e3 * r['p10_s']:.1f}-{1e3 * r['p90_s']:.1f} | "
        f"{_fmt(1e3 * r['back_to_back_s'] if r.get('back_to_back_s') else None, '.1f')} | "
        f"{_fmt(r['images_per_s'], '.0f')} | "
        f"{_fmt(r.get('ratio_to_baseline'), '.2f')} | {target} | "
        f"{_fmt(r.get('ratio_to_pytorch'), '.2f')} | {_mib(r.get('peak_memory_bytes'))} | "
        f"{_fmt(flops / 1e9 if flops else None, '.1f')} | "
        f"{_fmt(100 * r['mfu'] if r.get('mfu') is not None else None, '.1f')}"
        + ("%" if r.get("mfu") is not None else "") + " |")
  lines.append("")
  lines += _flops_lines(results)
  ratios = results["ratios"]
  if ratios.get("sgld_k20_over_ngebm"):
    lines.append(f"SGLD-EBM (K = 20) / NG-EBM step time: "
                 f"**{ratios['sgld_k20_over_ngebm']:.2f}x**.")
  for name, ratio in ratios.get("over_ngebm", {}).items():
    lines.append(f"{name} / ngebm step time: **{ratio:.2f}x**.")
  if ratios.get("sgld_k1_over_k5"):
    lines.append(f"SGLD-EBM K = 1 / K = 5 step time: **{ratios['sgld_k1_over_k5']:.2f}x**.")
  lines.append("")
  lines += train_loop_lines(results)
  if results.get("skipped"):
    lines.append(f"Not registered in this version, skipped: {', '.join(results['skipped'])}.")
    lines.append("")
  lines.append("Compile s = lowering + XLA compilation. Peak memory per device: the allocator's "
               "high-water mark with only that objective's state in memory (GPU/TPU), else "
               "what XLA plans for one step (arguments + outputs - donated + temporaries, from "
               "its memory analysis; CPU). FLOPs: XLA's cost analysis per device (a rolled SGLD "
               "loop corrected where this backend counts a loop body once); unknown where XLA "
               "gives no count. Back-to-back: the mean of as many more steps dispatched one "
               "after another with one block at the end, as in training. MFU: FLOPs / median "
               "step / the device's dense peak (bfloat16, or TF32 for a float32 step on an "
               "NVIDIA GPU), for known accelerators only. Compiled steps come from the "
               "persistent compilation cache when it holds them (then compile s is a load). Targets: NG-EBM <= 2x the baseline step; SGLD-EBM <= the "
               "PyTorch reference's own ratios on a 2-core CPU (4.9x at K = 5, 11.9x at K = 20).")
  lines.append("")
  lines += _pytorch_lines(results)
  if results.get("components_s"):
    lines += _component_lines(results["components_s"])
  if results.get("memory_fit"):
    lines += _fit_lines(results["memory_fit"])
  lines += race_markdown(results)
  return "\n".join(lines)


def _flops_lines(results: dict) -> list[str]:
  """The device's peak, and the forward pass's FLOPs by hand beside XLA's count."""
  setup, lines = results["setup"], []
  peak = setup.get("device_peak")
  if peak:
    lines.append(f"MFU against the {peak['device']}'s {peak['precision']} peak, "
                 f"{peak['flops'] / 1e12:.0f} TFLOP/s.")
  forward = setup.get("forward_flops_per_image") or {}
  if forward.get("analytic"):
    xla = forward.get("xla")
    lines.append(
        f"Forward pass per image: {forward['analytic'] / 1e9:.3f} GFLOPs counted by hand "
        f"(convolutions and head, kernel taps on the image; "
        f"{forward['analytic_dense'] / 1e9:.3f} with the padding), XLA "
        f"{_fmt(xla / 1e9 if xla else None, '.3f')} "
        f"({_fmt(xla / forward['analytic'] if xla else None, '.4f')}x).")
    base = next((r for r in _ours(results) if r.get("flops_analytic")), None)
    if base and base.get("flops"):
      lines.append(f"Baseline step per device: {base['flops_analytic'] / 1e9:.1f} GFLOPs by "
                   f"hand (3x forward), XLA {base['flops'] / 1e9:.1f} "
                   f"({base['flops'] / base['flops_analytic']:.3f}x).")
  return lines + ([""] if lines else [])


def grid_markdown(all_results: Sequence[dict]) -> str:
  """One table across settings (batch x dtype): median step, images/s, MFU, memory, compile."""
  first = all_results[0]
  env = first["environment"]
  lines = [f"# Train-step benchmark grid: {first['setup']['model']}", "",
           f"{env['backend']} ({env['device_kind']}) x {env['device_count']}, JAX "
           f"{env['jax_version']}; {env['time_utc']}. Each setting's full report is in "
           "`b<batch>_<dtype>/benchmark.md`.", "",
           "| batch | dtype | objective | median ms | back-to-back ms | images/s | x baseline | "
           "MFU | peak memory MiB | compile s |", "| ---: | --- | --- | ---: | ---: | ---: | "
           "---: | ---: | ---: | ---: |"]
  for results in all_results:
    setup = results["setup"]
    for r in _ours(results):
      lines.append(
          f"| {setup['batch_size']} | {setup['dtype']} | {r['name']} | "
          f"{1e3 * r['median_s']:.1f} | "
          f"{_fmt(1e3 * r['back_to_back_s'] if r.get('back_to_back_s') else None, '.1f')} | "
          f"{_fmt(r['images_per_s'], '.0f')} | "
          f"{_fmt(r.get('ratio_to_baseline'), '.2f')} | "
          f"{_fmt(100 * r['mfu'] if r.get('mfu') is not None else None, '.1f')} | "
          f"{_mib(r.get('peak_memory_bytes'))} | {r['lower_s'] + r['compile_s']:.1f} |")
  lines.append("")
  return "\n".join(lines)


def plot(results: dict, path: str) -> None:
  """Bar plot of median step times (p10-p90 whiskers); the race has its own (`plot_race`)."""
  rows = _ours(results)
  fig, axes = reporting.new_figure(1, squeeze=False)
  ax = axes[0, 0]
  names = [r["name"] for r in rows]
  med = np.array([1e3 * r["median_s"] for r in rows])
  err = np.array([[1e3 * (r["median_s"] - r["p10_s"]) for r in rows],
                  [1e3 * (r["p90_s"] - r["median_s"]) for r in rows]])
  x = np.arange(len(rows))
  ax.bar(x, med, yerr=err, capsize=3, color="#4c72b0", label="ours (median, p10-p90)")
  theirs = [(i, 1e3 * r["pytorch_median_s"]) for i, r in enumerate(rows)
            if r.get("pytorch_median_s")]
  if theirs:
    ax.scatter(*zip(*theirs), marker="o", color="#dd8452", zorder=3, label="PyTorch (median)")
  base = next((r for r in rows if r["name"] == "baseline"), None)
  targets = [(i, 1e3 * r["target_ratio"] * base["median_s"]) for i, r in enumerate(rows)
             if base and r.get("target_ratio")]
  if targets:
    ax.scatter(*zip(*targets), marker="_", s=500, color="#c44e52", zorder=3,
               label="target (x baseline)")
  for i, r in enumerate(rows):
    if r.get("ratio_to_baseline"):
      ax.annotate(f"{r['ratio_to_baseline']:.1f}x", (i, 1e3 * r["p90_s"]), xytext=(0, 3),
                  textcoords="offset points", ha="center", va="bottom", fontsize=8)
  ax.set_xticks(x, names)
  ax.legend(fontsize=7, loc="upper left")
  ax.set_ylabel("train step, ms (median, p10-p90)")
  setup = results["setup"]
  ax.set_title(f"{setup['model']}, batch {setup['batch_size']}, "
               f"{results['environment']['backend']}")
  ax.tick_params(axis="x", rotation=45)
  reporting.save_figure(fig, path, dpi=120)


def write_grid_report(all_results: Sequence[dict], output: str) -> dict[str, str]:
  """Writes `benchmark_grid.json` (every setting's results) and `benchmark.md` (the grid)."""
  paths = {"json": os.path.join(os.fspath(output), "benchmark_grid.json"),
           "md": os.path.join(os.fspath(output), "benchmark.md")}
  reporting.write_json(paths["json"], {"settings": list(all_results)})
  reporting.write_text(paths["md"], grid_markdown(all_results) + "\n")
  return paths


def write_report(results: dict, output: str) -> dict[str, str]:
  """Writes `benchmark.json`, `benchmark.md`, `benchmark.png` and, when the race ran,
  `benchmark_race.png` in `output`; returns their paths."""
  paths = {k: os.path.join(os.fspath(output), f"benchmark.{k}") for k in ("json", "md", "png")}
  reporting.write_json(paths["json"], results)
  reporting.write_text(paths["md"], markdown(results) + "\n")
  plot(results, paths["png"])
  e2e = results.get("end_to_end")
  if e2e and e2e["runs"]:
    paths["race_png"] = os.path.join(os.fspath(output), "benchmark_race.png")
    plot_race(results, paths["race_png"])
  return paths
