"""Tests of ngebm_jax.evaluation plots, evaluators and report on a tiny linear model."""

from __future__ import annotations

import dataclasses
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import default
from ngebm_jax import reporting
from ngebm_jax.evaluation import calibration
from ngebm_jax.evaluation import evaluators
from ngebm_jax.evaluation import inference
from ngebm_jax.evaluation import inputs as inputs_lib
from ngebm_jax.evaluation import ood
from ngebm_jax.evaluation import plots
from ngebm_jax.evaluation import report
from tests import calibration_references as ref

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def is_png(path):
  with open(path, "rb") as f:
    head = f.read(8)
  return head == PNG_MAGIC and os.path.getsize(path) > 1000


def linear(params, x):
  return x.reshape(x.shape[0], -1) @ params["w"] + params["b"]


def eval_options(**changes):
  """`config.eval` of the default config (the one home of the defaults), with `changes`."""
  return dataclasses.replace(evaluators.EvalOptions.from_config(default.get_config()),
                             **changes)


def make_inputs(batch_size=32, noise_std=0.03, key_impl="rbg"):
  # "rbg" keys compile faster on CPU than the default threefry (about 1 s per function).
  rng = np.random.default_rng(0)
  classes, shape = 3, (6, 6, 3)

  def labelled_images(n):
    labels = rng.integers(0, classes, n).astype(np.int32)
    # Class k brightens channel k: a linear model separates the classes.
    images = rng.uniform(-0.5, 0.5, (n,) + shape)
    images[np.arange(n), :, :, labels] += 0.4
    return images.astype(np.float32), labels

  images, labels = labelled_images(60)
  val_images, val_labels = labelled_images(40)
  w = np.zeros((int(np.prod(shape)), classes))
  for k in range(classes):
    w[np.arange(int(np.prod(shape))) % 3 == k, k] = 0.2
  params = dict(w=jnp.asarray(w, jnp.float32), b=jnp.zeros(classes))
  ood_images = {
      # At least batch_size images each, so that the batches of every set share one shape.
      "svhn": rng.uniform(-1, 1, (40,) + shape).astype(np.float32),
      "cifar_100": rng.uniform(-0.2, 0.2, (36,) + shape).astype(np.float32),
  }
  options = eval_options(
      noise_std=noise_std, batch_size=batch_size, num_bins=10, pgd_steps=3,
      epsilons={"linf": (0.0, 8 / 255, 30 / 255), "l2": (0.0, 0.5)},
      robustness_num_examples=16)
  return evaluators.EvalInputs(
      apply_fn=linear, params=params, images=images, labels=labels,
      ood_images=ood_images, key=jax.random.key(0, impl=key_impl), options=options,
      validation_images=val_images, validation_labels=val_labels)


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory):
  out = str(tmp_path_factory.mktemp("report"))
  inputs = make_inputs()
  run_dir = os.path.join(out, report.run_subdir("baseline run"))
  names = ["classification", "calibration", "ood", "robustness"]
  figures = evaluators.run_evaluators(names, inputs, run_dir)
  return out, run_dir, inputs, figures


def test_evaluators_return_their_figures(evaluated):
  _, run_dir, inputs, figures = evaluated
  assert set(figures) == {"classification", "calibration", "ood", "robustness"}
  c = figures["classification"]
  logits = inputs_lib.test_logits(inputs)
  assert c["accuracy"] == pytest.approx(calibration.accuracy(logits, inputs.labels))
  assert c["accuracy"] > 0.9 and c["num_examples"] == 60 and c["nll"] > 0
  cal = figures["calibration"]
  assert 0 <= cal["ece"] <= 1 and sum(cal["bins"]["count"]) == 60
  assert len(cal["bins"]["edges"]) == 11
  assert set(cal["plots"]) == {"reliability", "reliability_ts"}
  m = figures["ood"]["metrics"]
  assert set(m) == {"svhn", "cifar_100"}
  for set_name in m:
    assert set(m[set_name]) == set(ood.SCORE_NAMES)
    for values in m[set_name].values():
      assert set(values) == {"auroc", "aupr_in", "aupr_out", "fpr_at_95_tpr"}
  r = figures["robustness"]
  assert r["num_examples"] == 16
  assert r["linf"]["epsilons"] == pytest.approx([0.0, 8 / 255, 30 / 255])
  assert r["linf"]["accuracy"][0] >= r["linf"]["accuracy"][-1]
  assert len(r["l2"]["accuracy"]) == 2
  for evaluator in ("calibration", "ood", "robustness"):
    for rel in figures[evaluator]["plots"].values():
      assert is_png(os.path.join(run_dir, rel)), rel
  json.dumps(reporting.to_jsonable(figures), allow_nan=False)


def test_calibration_figures_match_slow_references(evaluated):
  _, _, inputs, figures = evaluated
  cal = figures["calibration"]
  labels = inputs.labels
  p = jax.tree.map(np.asarray, inputs.params)
  noisy = inputs_lib.test_logits(inputs)
  clean = inputs.images.reshape(60, -1) @ p["w"] + p["b"]  # the linear model in NumPy
  # Validation logits: the noise training validated with (the split's own key).
  val = inference.predict_logits(
      linear, inputs.params, inputs.validation_images, noise_std=0.03, batch_size=32,
      key=inference.purpose_key(inputs.key, "noise/validation"))
  np.testing.assert_allclose(inputs_lib.validation_logits(inputs), val, rtol=1e-6)
  assert cal["ece"] == pytest.approx(ref.slow_ece(ref.softmax_rows(noisy), labels, 10), abs=1e-9)
  assert cal["ece_paper"] == pytest.approx(ref.reference_paper_ece(clean, labels), abs=1e-5)
  assert cal["confidence_gap"] == pytest.approx(ref.slow_confidence_gap(noisy, labels), abs=1e-9)
  assert cal["nll"] == pytest.approx(ref.slow_nll(noisy, labels), rel=1e-6)
  assert cal["brier"] == pytest.approx(ref.slow_brier(noisy, labels), rel=1e-6)
  t_grid, spacing = ref.brute_force_temperature(val, inputs.validation_labels)
  t = cal["temperature"]
  assert abs(np.log(t) - np.log(t_grid)) <= spacing
  assert t < 1  # this linear model is under-confident: its logits are small
  scaled = np.float64(noisy) / t
  assert cal["ece_ts"] == pytest.approx(ref.slow_ece(ref.softmax_rows(scaled), labels, 10),
                                        abs=1e-9)
  assert cal["nll_ts"] == pytest.approx(ref.slow_nll(scaled, labels), rel=1e-6)
  assert cal["brier_ts"] == pytest.approx(ref.slow_brier(scaled, labels), rel=1e-6)
  assert cal["confidence_gap_ts"] == pytest.approx(ref.slow_confidence_gap(scaled, labels),
                                                   abs=1e-9)
  assert cal["ece_paper_ts"] == pytest.approx(
      ref.reference_paper_ece(np.float64(clean) / t, labels), abs=1e-5)
  assert cal["clean"]["accuracy"] == pytest.approx(np.mean(clean.argmax(1) == labels))


def test_figures_off_draw_nothing_and_change_no_figure(evaluated, tmp_path):
  _, _, inputs, figures = evaluated
  inputs = dataclasses.replace(inputs, options=dataclasses.replace(inputs.options, figures=False))
  names = ["calibration", "ood", "robustness"]
  bare = evaluators.run_evaluators(names, inputs, str(tmp_path))
  assert not os.listdir(tmp_path)
  for name in names:
    assert bare[name].pop("plots") == {}
    assert reporting.to_jsonable(bare[name]) == reporting.to_jsonable(
        {k: v for k, v in figures[name].items() if k != "plots"})


def test_no_validation_images_no_temperature(tmp_path):
  inputs = make_inputs()
  inputs = evaluators.EvalInputs(apply_fn=linear, params=inputs.params, images=inputs.images,
                                 labels=inputs.labels, key=inputs.key, options=inputs.options)
  cal = evaluators.calibration.evaluate(inputs, str(tmp_path))
  assert cal["temperature"] is None and cal["ece_ts"] is None and cal["ece"] > 0
  assert set(cal["plots"]) == {"reliability"}


def test_input_noise_does_not_depend_on_the_batch_size():
  # Per-example noise keys; threefry (the default) keys give the same bits under vmap.
  inputs = make_inputs(batch_size=7, key_impl="threefry2x32")
  a = inputs_lib.test_logits(inputs)
  b = inputs_lib.test_logits(make_inputs(batch_size=60, key_impl="threefry2x32"))
  np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
  p = jax.tree.map(np.asarray, inputs.params)
  clean = inputs.images.reshape(60, -1) @ p["w"] + p["b"]
  assert 1e-3 < np.abs(a - clean).max() < 0.5  # noise of std 0.03 went in


def test_interp_gets_the_reference_noise(tmp_path):
  # log p~(x) of this model is ||x||^2: on zero images its mean is D times the noise variance.
  # JEM's "interp" averages two noisy test images and adds noise again: 1.5 times the variance.
  def squared_norm(params, x):
    s = jnp.sum(jnp.square(x.reshape(x.shape[0], -1)), axis=-1)
    return jnp.stack([s, s], axis=-1) - jnp.log(2.0) + 0 * params["b"]

  zeros = np.zeros((64, 16, 16, 3), np.float32)
  inputs = evaluators.EvalInputs(
      apply_fn=squared_norm, params={"b": jnp.zeros(())}, images=zeros,
      labels=np.zeros(64, np.int32), ood_images={"interp": zeros, "uniform": zeros},
      key=jax.random.key(1, impl="rbg"),
      options=eval_options(noise_std=0.03, batch_size=64, ood_scores=("log_density",)))
  out = evaluators.ood.evaluate(inputs, str(tmp_path))
  variance = {k: v["log_density"] / (16 * 16 * 3 * 0.03**2)
              for k, v in out["score_means"].items()}
  assert variance["in_distribution"] == pytest.approx(1.0, rel=0.02)
  assert variance["uniform"] == pytest.approx(1.0, rel=0.02)
  assert variance["interp"] == pytest.approx(1.5, rel=0.02)
  assert out["noise_std"]["interp"] == pytest.approx(0.03 * np.sqrt(1.5))


def test_report_writes_json_markdown_and_curves(evaluated):
  out, _, _, figures = evaluated
  worse = json.loads(json.dumps(reporting.to_jsonable(figures)))
  worse["calibration"]["ece"] = figures["calibration"]["ece"] / 2
  worse["calibration"]["ece_paper"] = figures["calibration"]["ece_paper"] / 2
  results = {
      "baseline run": dict(figures, meta=dict(dataset="cifar10", objective="baseline")),
      "ngebm": dict(worse, meta=dict(dataset="CIFAR-10", objective="ngebm")),
  }
  written = report.write_report(results, out)
  with open(written["results_json"]) as f:
    loaded = json.load(f)
  # The report's results.json: schema 1, one record per run (docs/results.rst).
  assert loaded["schema"] == 1 and list(loaded["runs"]) == ["baseline run", "ngebm"]
  record = loaded["runs"]["ngebm"]
  assert record["evaluation"]["calibration"]["ece"] == pytest.approx(
      figures["calibration"]["ece"] / 2)
  assert record["ece"] == record["evaluation"]["calibration"]["ece"]  # the headline repeats it
  assert record["accuracy"] == figures["classification"]["accuracy"]
  assert record["objective"] == "ngebm" and record["dataset"] == "CIFAR-10"
  assert is_png(written["robustness_linf"]) and is_png(written["robustness_l2"])
  with open(written["report_md"]) as f:
    md = f.read()
  assert "| figure | baseline run | ngebm |" in md
  assert "| test accuracy |" in md
  assert "| svhn, max p(y\\|x) |" in md and "| cifar_100, log p~(x) |" in md
  assert "| L-inf, eps 8/255 |" in md and "| L2, eps 0.5 |" in md
  assert "Published figures beside ours (cifar10)" in md
  assert "| 0.93 |" in md  # WRN baseline max p(y|x) AUROC on SVHN (JEM Table 3)
  assert "| 2.00x |" in md  # our ECE ratio (NG-EBM's variant) baseline / NG-EBM, beside 2.5x
  # The calibration table leads: every run before and after temperature scaling.
  assert md.index("## Calibration") < md.index("## Side by side")
  assert "| figure | baseline run | baseline run + TS | ngebm | ngebm + TS |" in md
  cal = figures["calibration"]
  assert (f"| ECE (10 bins, mean confidence, test images + noise σ = 0.03) | "
          f"{100 * cal['ece']:.2f}% | {100 * cal['ece_ts']:.2f}% |") in md
  assert "| ECE as NG-EBM's code (20 bins, bin centre, clean test images) |" in md
  assert f"| temperature T (fitted on validation NLL) | 1 | {cal['temperature']:.3f} |" in md
  assert "(reliability.png)" in md and is_png(written["reliability"])
  assert "protocol: fixed_epsilon" in md
  assert "(baseline_run/reliability.png)" in md
  assert "[histogram](ngebm/ood_hist_max_softmax_svhn.png)" in md
  assert "cifar100)" not in md  # no CIFAR-100 run, no CIFAR-100 section


def test_plots_write_pngs(tmp_path):
  rng = np.random.default_rng(0)
  probs = rng.dirichlet(np.ones(4), 200)
  labels = rng.integers(0, 4, 200)
  bins = calibration.calibration_bins(probs, labels, num_bins=20)
  paths = [
      plots.reliability_diagram(bins, str(tmp_path / "a" / "rel.png"), ece=0.05, title="t"),
      plots.ood_histogram(rng.normal(size=50), rng.normal(1, 1, 40), str(tmp_path / "h.png"),
                          score_name="log p~(x)"),
      plots.roc_curves({"svhn": ood.roc_curve(rng.normal(size=50), rng.normal(1, 1, 40))},
                       str(tmp_path / "roc.png")),
      plots.robustness_curves({"a": ([0, 4 / 255, 8 / 255], [0.9, 0.5, 0.2]),
                               "b": ([0, 8 / 255], [0.8, 0.4])}, str(tmp_path / "r.png"),
                              norm="linf"),
  ]
  for p in paths:
    assert is_png(p), p


def test_bad_inputs_raise(tmp_path):
  inputs = make_inputs()
  with pytest.raises(ValueError, match="unknown evaluators"):
    evaluators.run_evaluators(["accuracy"], inputs, str(tmp_path))
  with pytest.raises(ValueError, match="uint8"):
    evaluators.EvalInputs(apply_fn=linear, params=inputs.params,
                          images=np.zeros((2, 6, 6, 3), np.uint8), labels=np.zeros(2, np.int32),
                          key=inputs.key, options=inputs.options)
  with pytest.raises(ValueError, match="empty"):
    report.write_report({}, str(tmp_path))
  with pytest.raises(ValueError, match="norms"):
    eval_options(robustness_norms=("linf", "l1"))
  with pytest.raises(ValueError, match="noise_std"):
    eval_options(noise_std=-0.03)
  with pytest.raises(ValueError, match="epsilons"):
    eval_options(epsilons={"linf": (0.0,)})  # the l2 attack has no epsilons
  with pytest.raises(ValueError, match="together"):
    evaluators.EvalInputs(apply_fn=linear, params=inputs.params, images=inputs.images,
                          labels=inputs.labels, key=inputs.key, options=inputs.options,
                          validation_images=inputs.images)
  with pytest.raises(ValueError, match="validation_images"):
    evaluators.EvalInputs(apply_fn=linear, params=inputs.params, images=inputs.images,
                          labels=inputs.labels, key=inputs.key, options=inputs.options,
                          validation_images=inputs.images[:, :3],
                          validation_labels=inputs.labels)
  with pytest.raises(ValueError, match="ood_scores"):
    eval_options(ood_scores=("energy",))
  with pytest.raises(ValueError, match="focus_detection evaluator needs"):
    evaluators.run_evaluators(["focus_detection"], inputs, str(tmp_path))
