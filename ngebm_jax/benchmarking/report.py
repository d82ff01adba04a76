"""The benchmark's report: `benchmark.json`, `benchmark.md` (Markdown tables), `benchmark.png`."""

from __future__ import annotations

import os

import numpy as np

from ngebm_jax import reporting
from ngebm_jax.reporting import fmt as _fmt


def _mib(value) -> str:
  return _fmt(value / 2**20 if value is not None else None, ".1f")


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
           + (f"; load average at the end {' / '.join(f'{x:.2f}' for x in load)}"
              if load else "") + ".", ""]
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
  """The results as Markdown: set-up, step table, ratios, components and end-to-end table."""
  env, setup = results["environment"], results["setup"]
  load = env.get("load_average_start")
  lines = [
      f"# Train-step benchmark: {setup['model']}, batch {setup['batch_size']}, {setup['dtype']}",
      "",
      f"{env['backend']} ({env['device_kind']}) x {env['device_count']}, JAX "
      f"{env['jax_version']}, {env['cpu_count']} CPU cores, load average at start "
      f"{' / '.join(f'{x:.2f}' for x in load) if load else 'unknown'}; {env['time_utc']}. "
      f"Median of {setup['steps']} timed steps per objective (round-robin, after "
      f"{setup['warmup']} warm-up step), spread p10-p90.",
      "",
      "| objective | compile s | median ms | p10-p90 ms | images/s | x baseline | target | "
      "step memory MiB | allocator peak MiB | GFLOP/step | MFU |",
      "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
  ]
  for r in results["steps"]:
    target = "–"
    if r.get("target_ratio"):
      target = f"<= {r['target_ratio']:.2f}x " + ("(met)" if r["meets_target"] else "(missed)")
    flops = r.get("flops")
    lines.append(
        f"| {r['name']} | {r['lower_s'] + r['compile_s']:.1f} | {1e3 * r['median_s']:.1f} | "
        f"{1e3 * r['p10_s']:.1f}-{1e3 * r['p90_s']:.1f} | {_fmt(r['images_per_s'], '.0f')} | "
        f"{_fmt(r.get('ratio_to_baseline'), '.2f')} | {target} | "
        f"{_mib(r['memory'].get('peak_bytes'))} | {_mib(r.get('allocator_peak_bytes'))} | "
        f"{_fmt(flops / 1e9 if flops else None, '.1f')} | "
        f"{_fmt(100 * r['mfu'] if r.get('mfu') is not None else None, '.1f')}"
        + ("%" if r.get("mfu") is not None else "") + " |")
  lines.append("")
  if results["ratios"].get("sgld_k20_over_ngebm"):
    lines.append(f"SGLD-EBM (K = 20) / NG-EBM step time: "
                 f"**{results['ratios']['sgld_k20_over_ngebm']:.2f}x**.")
    lines.append("")
  if results.get("skipped"):
    lines.append(f"Not registered in this version, skipped: {', '.join(results['skipped'])}.")
    lines.append("")
  lines.append("Compile s = lowering + XLA compilation. Step memory: what XLA plans for one step "
               "(arguments + outputs - donated + temporaries, from XLA's memory analysis; per "
               "device). Allocator peak: the process's "
               "high-water mark after the objective's warm-up (GPU/TPU only; objectives are "
               "warmed up in table order, so it is an upper bound). FLOPs: XLA's cost analysis "
               "per device (rolled SGLD loops corrected). MFU: FLOPs / median step / the "
               "device's dense peak, for known accelerators only.")
  lines.append("")
  comps = results.get("components_s")
  if comps:
    lines += ["## Where the time goes (one device's batch, jitted, median)", "",
              "| piece | ms |", "| --- | ---: |"]
    lines += [f"| {k} | {1e3 * v:.1f} |" for k, v in comps.items()]
    lines.append("")
  lines += race_markdown(results)
  return "\n".join(lines)


def plot(results: dict, path: str) -> None:
  """Bar plot of median step times (p10-p90 whiskers); the race has its own (`plot_race`)."""
  rows = results["steps"]
  fig, axes = reporting.new_figure(1, squeeze=False)
  ax = axes[0, 0]
  names = [r["name"] for r in rows]
  med = np.array([1e3 * r["median_s"] for r in rows])
  err = np.array([[1e3 * (r["median_s"] - r["p10_s"]) for r in rows],
                  [1e3 * (r["p90_s"] - r["median_s"]) for r in rows]])
  x = np.arange(len(rows))
  ax.bar(x, med, yerr=err, capsize=3, color="#4c72b0", label="ours (median, p10-p90)")
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
