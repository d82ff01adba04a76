"""The benchmark program: a tiny run on CPU writes complete figures for every objective.

No timing thresholds: only that every timed objective has a positive median, a positive memory
figure and FLOPs, that the PyTorch peer's steps sit beside ours (or the report says why not),
and that the report files exist and agree with the JSON.
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from configs import benchmark_tiny
from configs import smoke
from ngebm_jax.benchmarking import pytorch_peer
from ngebm_jax.benchmarking import step_programs
from ngebm_jax.benchmarking import xla_costs
from ngebm_jax.workflows import benchmark
from ngebm_jax.training import objective_registry
from tests import conftest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
  output = tmp_path_factory.mktemp("benchmark")
  command = [sys.executable, "-m", "experiments.benchmark", "--config=configs/benchmark_tiny.py",
             f"--output={output}", "--steps=2", "--sgld_steps=1", "--nocomponents",
             "--config.race.target_accuracy=1.0",  # unreachable: the run stops at the step cap
             "--config.race.max_steps=2", "--config.race.eval_every=1",
             "--config.race.objectives=('baseline', 'ngebm')", "--config.race.budget_s=600"]
  proc = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300,
                        env=conftest.program_env())
  assert proc.returncode == 0, proc.stderr[-4000:]
  with open(output / "benchmark.json") as f:
    return output, json.load(f), proc.stdout


def test_every_objective_has_positive_time_memory_and_flops(tiny_run):
  _, results, _ = tiny_run
  expected = ["baseline", "ngebm"] + (["sgld_k1"] if "sgld" in objective_registry.names() else [])
  expected += ["label_smoothing", "focal"]  # the calibration peers, timed by default
  rows = {r["name"]: r for r in results["steps"] if r["framework"] == "jax"}
  assert list(rows) == expected
  for name, r in rows.items():
    assert len(r["times_s"]) == 2 and all(t > 0 for t in r["times_s"]), name
    assert r["p10_s"] <= r["median_s"] <= r["p90_s"], name
    assert r["median_s"] > 0 and r["images_per_s"] > 0, name
    assert r["compile_s"] > 0 and r["memory"]["peak_bytes"] > 0, name
    assert r["peak_memory_bytes"] == r["memory"]["peak_bytes"]  # CPU: XLA's plan
    assert r["peak_memory_source"] == "xla_memory_analysis"
    assert r["flops"] > 0, name
    assert r["back_to_back_s"] > 0 and r["back_to_back_images_per_s"] > 0, name
    np.testing.assert_allclose(r["ratio_to_baseline"], r["median_s"] / rows["baseline"]["median_s"])
    assert r["mfu"] is None  # CPU: no peak FLOPs, no MFU
  assert rows["baseline"]["target_ratio"] is None and rows["ngebm"]["target_ratio"] == 2.0
  if "sgld_k1" in rows:
    assert rows["sgld_k1"]["target_ratio"] == pytest.approx(4.9 - 4 * 7 / 15)
    # The replay buffer (64 images of 32x32x3 float32, split over the devices) is in the state.
    assert rows["sgld_k1"]["memory"]["argument_bytes"] > rows["baseline"]["memory"][
        "argument_bytes"]


def test_pytorch_steps_sit_beside_ours_or_the_report_says_why_not(tiny_run):
  output, results, _ = tiny_run
  peer = results["pytorch"]
  ours = {r["name"]: r for r in results["steps"] if r["framework"] == "jax"}
  theirs = {r["name"]: r for r in results["steps"] if r["framework"] == "pytorch"}
  table = (output / "benchmark.md").read_text()
  if not peer["available"]:  # this environment has no torch: the JAX side ran alone
    assert not theirs and "torch" in peer["reason"]
    assert f"PyTorch peer: not run ({peer['reason']})" in table
    return
  assert list(theirs) == list(ours)  # the same names, one PyTorch step per step of ours
  for name, r in theirs.items():
    assert len(r["times_s"]) == 2 and r["median_s"] > 0 and np.isfinite(r["loss_first"])
    np.testing.assert_allclose(ours[name]["ratio_to_pytorch"],
                               ours[name]["median_s"] / r["median_s"])
  assert "## Ours beside PyTorch" in table


def test_end_to_end_run_stops_at_the_step_cap(tiny_run):
  _, results, _ = tiny_run
  assert list(results["end_to_end"]["runs"]) == ["baseline", "ngebm"]
  for run in results["end_to_end"]["runs"].values():
    assert not run["reached"] and run["steps_to_target"] is None
    assert run["steps_run"] == 2 and [c["step"] for c in run["curve"]] == [1, 2]
    assert 0 <= run["best_val_accuracy"] <= 1 and run["train_s"] > 0
    assert all(0 <= c["val_ece"] <= 1 for c in run["curve"])
    assert run["budget_s"] == 600 and run["at_budget"] == run["curve"][-1]


def test_report_files(tiny_run):
  output, results, stdout = tiny_run
  assert (output / "benchmark.png").stat().st_size > 0
  assert (output / "benchmark_race.png").stat().st_size > 0
  table = (output / "benchmark.md").read_text()
  for r in results["steps"]:
    assert f"| {r['name']} |" in table and f"| {r['name']} |" in stdout
  assert f"{results['environment']['load_average_start'][0]:.2f}" in table
  assert "val acc at 600 s | val ECE at 600 s |" in table
  assert "(benchmark_race.png)" in table
  baseline = results["end_to_end"]["runs"]["baseline"]["at_budget"]
  assert f"| {baseline['val_accuracy']:.3f} | {baseline['val_ece']:.3f} |" in table


def test_training_loop_throughput_sits_beside_the_step_alone(tiny_run):
  output, results, _ = tiny_run
  t = results["train_loop"]
  assert t["variant"] == "baseline" and t["rounds"] == 5 and t["steps_per_round"] == 2
  assert t["train_loop_images_per_s"] > 0 and t["step_alone_images_per_s"] > 0
  assert t["pipeline_alone_s_per_batch"] > 0
  assert len(t["train_loop_round_s"]) == len(t["step_alone_round_s"]) == 5
  assert results["pipeline_efficiency"] == pytest.approx(np.median(
      np.asarray(t["step_alone_round_s"]) / np.asarray(t["train_loop_round_s"])))
  images = t["steps_per_round"] * results["setup"]["batch_size"]
  assert t["train_loop_images_per_s"] == pytest.approx(images / np.median(t["train_loop_round_s"]))
  assert f"over the loop's) **{results['pipeline_efficiency']:.3f}**" in (
      output / "benchmark.md").read_text()


def test_training_loop_throughput_refuses_empty_runs():
  from ngebm_jax.benchmarking import train_loop  # pylint: disable=g-import-not-at-top
  with pytest.raises(ValueError, match="steps must be a positive integer"):
    train_loop.throughput(None, None, None, None, steps=0)
  with pytest.raises(ValueError, match="rounds must be a positive integer"):
    train_loop.throughput(None, None, None, None, steps=1, rounds=0)


def test_race_trains_past_the_target_until_the_budget():
  import jax  # pylint: disable=g-import-not-at-top
  from ngebm_jax import data as data_lib  # pylint: disable=g-import-not-at-top
  from ngebm_jax.benchmarking import race  # pylint: disable=g-import-not-at-top
  from ngebm_jax.training import loop, spmd  # pylint: disable=g-import-not-at-top
  config = benchmark_tiny.get_config()
  mesh = spmd.make_mesh(jax.devices()[:1])
  sources = data_lib.get_sources(config)
  (variant,), _ = step_programs.make_variants(config, ["baseline"])
  batch = next(loop.train_iterator(config, sources["train"], mesh))
  program = step_programs.build_step(variant, mesh, batch, num_classes=10,
                                     image_shape=(32, 32, 3), steps_per_epoch=8)
  # Any accuracy reaches this target at the first validation; the budget keeps it training.
  run = race.time_to_accuracy(program, config, sources, mesh, target_accuracy=1e-9,
                              max_steps=3, eval_every=1, budget_s=1e6)
  assert run["reached"] and run["steps_to_target"] == 1 and run["steps_run"] == 3
  assert run["at_budget"]["step"] == 3
  # Without a budget it stops at the target.
  run = race.time_to_accuracy(program, config, sources, mesh, target_accuracy=1e-9,
                              max_steps=3, eval_every=1)
  assert run["steps_run"] == 1 and "at_budget" not in run


def test_at_budget_is_the_last_validation_within_it():
  from ngebm_jax.benchmarking import race  # pylint: disable=g-import-not-at-top
  curve = [{"step": 10, "train_s": 1.0}, {"step": 20, "train_s": 2.0},
           {"step": 30, "train_s": 3.5}]
  assert race.at_budget(curve, 3.0)["step"] == 20
  assert race.at_budget(curve, 3.5)["step"] == 30
  assert race.at_budget(curve, 0.5) is None


@pytest.mark.parametrize("field,value", [("budget_s", -1.0), ("budget_s", 1e4),
                                         ("target_accuracy", 1.5), ("eval_every", 0)])
def test_bad_race_configs_fail_before_the_step_timing(field, value):
  config = benchmark_tiny.get_config()
  config.race[field] = value  # budget 1e4 s exceeds max_seconds (900 s)
  with pytest.raises(ValueError, match=f"config.race.{field}"):
    benchmark.run(config, objective_names=["baseline"], steps=1)


def test_a_config_without_a_race_block_is_refused_before_the_step_timing():
  config = smoke.get_config()  # a training config: the race is declared by benchmark configs
  assert "race" not in config
  with pytest.raises(ValueError, match="no race block"):
    benchmark.run(config, objective_names=["baseline"], steps=1)


def test_variants_and_targets():
  config = benchmark_tiny.get_config()
  variants, skipped = step_programs.make_variants(config, ["baseline", "no_such_objective"])
  assert [v.name for v in variants] == ["baseline"] and skipped == ["no_such_objective"]
  assert variants[0].config.objective == "baseline" and config.objective == "ngebm"
  if "sgld" in objective_registry.names():
    variants, _ = step_programs.make_variants(config, ["sgld"], sgld_steps=[5, 20])
    assert [(v.name, v.config.sgld.num_steps) for v in variants] == [("sgld_k5", 5),
                                                                      ("sgld_k20", 20)]
    variants, _ = step_programs.make_variants(config, ["sgld"], sgld_steps=[5], sgld_unrolls=[1])
    assert [(v.name, v.config.sgld.unroll, v.canonical) for v in variants] == [
        ("sgld_k5", None, True), ("sgld_k5_unroll1", 1, False)]
  assert benchmark.target_ratio("sgld", 20) == pytest.approx(11.9)
  assert benchmark.target_ratio("sgld", 5) == pytest.approx(4.9)
  variants, _ = step_programs.make_variants(config, ["ngebm"],
                                            ngebm_grad_modes=["reverse_over_reverse"])
  assert [(v.name, v.config.ngebm.grad_mode, v.canonical) for v in variants] == [
      ("ngebm", "forward_over_reverse", True),
      ("ngebm_reverse_over_reverse", "reverse_over_reverse", False)]
  variants, _ = step_programs.make_variants(config, ["ngebm"],
                                            ngebm_penalty_fractions=[0.25, 1.0, 0.5])
  assert [(v.name, v.config.ngebm.penalty_fraction, v.canonical) for v in variants] == [
      ("ngebm", 1.0, True), ("ngebm_f0.25", 0.25, True), ("ngebm_f0.5", 0.5, True)]
  spec, why = pytorch_peer.step_spec(variants[1])
  assert spec is None and "whole batch" in why
  with pytest.raises(ValueError, match="ngebm_penalty_fractions"):
    step_programs.make_variants(config, ["ngebm"], ngebm_penalty_fractions=[0.0])


def test_peaks_per_device_kind_name_their_precision():
  assert xla_costs.peak("NVIDIA H100 80GB HBM3", "bfloat16") == {
      "flops": 989e12, "precision": "dense bfloat16", "device": "H100"}  # the SXM card
  assert xla_costs.peak("NVIDIA H100 80GB HBM3", "float32")["precision"] == "dense tf32"
  assert xla_costs.peak_flops("NVIDIA H100 PCIe", "bfloat16") == 756e12
  assert xla_costs.peak_flops("NVIDIA H100 NVL", "float32") == 418e12
  assert xla_costs.peak_flops("NVIDIA H200", "bfloat16") == 989e12
  assert xla_costs.peak_flops("NVIDIA A100-SXM4-80GB", "float32") == 156e12
  assert xla_costs.peak_flops("NVIDIA L4", "bfloat16") == 121e12
  assert xla_costs.peak_flops("TPU v4", "bfloat16") == 275e12
  assert xla_costs.peak_flops("TPU v5 lite", "bfloat16") == 197e12
  assert xla_costs.peak_flops("TPU v5p", "bfloat16") == 459e12
  assert xla_costs.peak_flops("TPU v6 lite", "bfloat16") == 918e12
  assert xla_costs.peak_flops("TPU v6 lite", "float32") is None  # no float32 peak claimed
  assert xla_costs.peak_flops("cpu", "float32") is None


def test_unknown_flops_give_no_mfu():
  assert xla_costs.mfu(-1.0, 0.1, 989e12) is None  # XLA's "unknown"
  assert xla_costs.mfu(None, 0.1, 989e12) is None
  assert xla_costs.mfu(1e12, 0.1, None) is None
  assert xla_costs.mfu(1e12, 0.1, 1e14) == pytest.approx(0.1)
  assert xla_costs.known_flops(-1) is None and xla_costs.known_flops(0) == 0.0


@pytest.mark.skipif("sgld" not in objective_registry.names(), reason="no SGLD-EBM objective yet")
@pytest.mark.parametrize("noise_std,rtol", [
    (0.0, 2e-3),
    # With Langevin noise the two programs differ by the random-bit generation (integer ops
    # that XLA counts as FLOPs): measured 2.4% fewer in the rolled program for this tiny CNN,
    # whose convolutions are cheap next to the noise; nothing of the convolutions is missing.
    (0.01, 3e-2)])
def test_flops_of_a_rolled_sgld_chain_are_corrected_to_the_unrolled_count(noise_std, rtol):
  # XLA counts a while loop's body once; the corrected count of a rolled K-step chain must
  # match XLA's own count of the same chain unrolled.
  import jax  # pylint: disable=g-import-not-at-top
  from ngebm_jax.training import spmd  # pylint: disable=g-import-not-at-top
  config = benchmark_tiny.get_config()
  config.sgld.separate_unlabelled_batch = False
  config.sgld.noise_std = noise_std
  mesh = spmd.make_mesh(jax.devices()[:1])
  rng = np.random.default_rng(0)
  batch = spmd.host_to_global(mesh, {
      "image": rng.uniform(-1, 1, (16, 32, 32, 3)).astype(np.float32),
      "label": rng.integers(0, 10, 16).astype(np.int32)})
  flops = {}
  for unroll in (1, 3):
    config.sgld.unroll = unroll
    (variant,), _ = step_programs.make_variants(config, ["sgld"], sgld_steps=[3])
    program = step_programs.build_step(variant, mesh, batch, num_classes=10,
                                       image_shape=(32, 32, 3), steps_per_epoch=8)
    flops[unroll] = xla_costs.step_flops(program, 16, (32, 32, 3))
  assert flops[1]["sgld_unroll"] == 1 and flops[3]["sgld_unroll"] == 3
  assert flops[1]["loop_body_counted_once"] is True  # XLA:CPU, measured on chains of 2 and 4
  assert flops[1]["flops_xla"] < 0.7 * flops[3]["flops_xla"]  # 2 of 3 Langevin steps uncounted
  assert flops[3]["flops"] == flops[3]["flops_xla"]
  np.testing.assert_allclose(flops[1]["flops"], flops[3]["flops"], rtol=rtol)


def test_the_gpu_command_runs_its_grid_on_cpu_with_a_tiny_model(tmp_path):
  # `make bench-gpu`'s command (Makefile) with the tiny config, two batches x two dtypes, one
  # objective: each setting's report, the grid table and a profiler trace.
  output = tmp_path / "grid"
  command = [sys.executable, "-m", "experiments.benchmark", "--config=configs/benchmark_tiny.py",
             f"--output={output}", "--batch_sizes=8,16", "--dtypes=float32,bfloat16",
             "--objectives=baseline", "--steps=1", "--warmup=1", "--config.race.target_accuracy=-1",
             "--nocomponents", "--nopytorch", f"--profile_dir={output / 'trace'}"]
  proc = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600,
                        env=conftest.program_env())
  assert proc.returncode == 0, proc.stderr[-4000:]
  with open(output / "benchmark_grid.json") as f:
    settings = json.load(f)["settings"]
  assert [(s["setup"]["batch_size"], s["setup"]["dtype"]) for s in settings] == [
      (8, "float32"), (8, "bfloat16"), (16, "float32"), (16, "bfloat16")]
  grid = (output / "benchmark.md").read_text()
  for s in settings:
    (row,) = s["steps"]
    assert row["median_s"] > 0 and row["images_per_s"] > 0 and row["compile_s"] > 0
    assert row["peak_memory_bytes"] > 0 and row["mfu"] is None  # no peak FLOPs for a CPU
    tag = f"b{s['setup']['batch_size']}_{s['setup']['dtype']}"
    assert (output / tag / "benchmark.json").exists()
    assert f"| {s['setup']['batch_size']} | {s['setup']['dtype']} | baseline |" in grid
    assert list((output / "trace" / tag).rglob("*.xplane.pb"))
  # bfloat16 steps keep less in memory than float32 ones at the same batch
  assert settings[1]["steps"][0]["peak_memory_bytes"] < settings[0]["steps"][0][
      "peak_memory_bytes"]


def test_cheaper_ngebm_variants_are_reported_against_ngebm():
  rows = [{"name": n, "framework": "jax", "objective": o, "sgld_steps": None, "median_s": s}
          for n, o, s in (("baseline", "baseline", 1.0), ("ngebm", "ngebm", 2.0),
                          ("ngebm_f0.25", "ngebm", 1.3),
                          ("ngebm_reverse_over_reverse", "ngebm", 4.0))]
  ratios = benchmark._add_ratios(rows)
  assert ratios["over_ngebm"] == {"ngebm_f0.25": pytest.approx(0.65),
                                  "ngebm_reverse_over_reverse": pytest.approx(2.0)}
  assert rows[2]["ratio_to_baseline"] == pytest.approx(1.3)
