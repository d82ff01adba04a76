"""OOD separability: features against slow per-pixel loops, the AUROC against pair counting."""

import json
import subprocess
import sys

import numpy as np
import pytest

from configs import smoke
from ngebm_jax.evaluation import ood_separability as sep
from ngebm_jax.workflows import ood_separability as workflow
from tests import conftest


def _images(seed, n=4, size=16):
  return np.random.default_rng(seed).integers(0, 256, (n, size, size, 3), dtype=np.uint8)


def _slow_statistics(image):
  h, w, _ = image.shape
  row = []
  for c in range(3):
    row.append(sum(image[i, j, c] for i in range(h) for j in range(w)) / (h * w))
  for c in range(3):
    m = row[c]
    row.append(np.sqrt(sum((image[i, j, c] - m) ** 2 for i in range(h) for j in range(w))
                       / (h * w)))
  row.append(np.mean([abs(image[i, j + 1, c] - image[i, j, c])
                      for i in range(h) for j in range(w - 1) for c in range(3)]))
  row.append(np.mean([abs(image[i + 1, j, c] - image[i, j, c])
                      for i in range(h - 1) for j in range(w) for c in range(3)]))
  row.append(np.mean([max(image[i, j]) - min(image[i, j]) for i in range(h) for j in range(w)]))
  means = [np.mean([np.mean(image[i, j]) for i in range(bi, bi + 8) for j in range(bj, bj + 8)])
           for bi in range(0, h, 8) for bj in range(0, w, 8)]
  row.append(np.std(means))
  return row


def test_pixel_statistics_match_per_pixel_loops():
  x = sep.to_model_input(_images(0, n=3), 0.0, np.random.default_rng(0))
  got = sep.pixel_statistics(x)
  want = np.array([_slow_statistics(image.astype(np.float64)) for image in x])
  assert got.shape == (3, len(sep.STATISTIC_NAMES))
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_orientation_histograms_match_per_pixel_loops():
  x = sep.to_model_input(_images(1, n=2), 0.0, np.random.default_rng(0))
  got = sep.orientation_histograms(x).reshape(2, 4, 4, 8)
  for n, image in enumerate(x.astype(np.float64)):
    grey = image.mean(-1)
    want = np.zeros((4, 4, 8))
    for i in range(1, 15):
      for j in range(1, 15):
        gx, gy = grey[i, j + 1] - grey[i, j - 1], grey[i + 1, j] - grey[i - 1, j]
        angle = np.arctan2(gy, gx) % np.pi
        want[i // 4, j // 4, min(int(angle / np.pi * 8), 7)] += np.hypot(gx, gy)
    np.testing.assert_allclose(got[n], want / want.sum(), rtol=1e-4, atol=1e-6)


def _pair_count_auroc(positive, negative):
  wins = sum((p > q) + 0.5 * (p == q) for p in positive for q in negative)
  return wins / (len(positive) * len(negative))


def test_statistic_aurocs_are_oriented_pair_counts():
  rng = np.random.default_rng(2)
  a, b = rng.normal(size=(30, 10)), rng.normal(size=(25, 10))
  b[:, 0] += 2.0   # higher out of distribution: oriented, still near 1
  b[:, 3] -= 2.0
  got = sep.statistic_aurocs(a, b)
  for j, name in enumerate(sep.STATISTIC_NAMES):
    auc = _pair_count_auroc(a[:, j], b[:, j])
    assert got[name] == pytest.approx(max(auc, 1 - auc))
  assert got["mean_r"] > 0.85 and got["std_r"] > 0.85


def test_classifier_auroc_matches_a_slow_cross_validation():
  # pylint: disable=g-import-not-at-top
  from sklearn import linear_model
  from sklearn import model_selection
  from sklearn import preprocessing
  rng = np.random.default_rng(3)
  a, b = rng.normal(size=(40, 5)), rng.normal(size=(40, 5)) + [0.8, 0, 0, 0, 0]
  x, y = np.concatenate([a, b]), np.r_[np.ones(40), np.zeros(40)]
  decision = np.zeros(80)
  for train, test in model_selection.StratifiedKFold(4, shuffle=True, random_state=7).split(x, y):
    scaler = preprocessing.StandardScaler().fit(x[train])
    model = linear_model.LogisticRegression(max_iter=2000).fit(scaler.transform(x[train]),
                                                                y[train])
    decision[test] = model.decision_function(scaler.transform(x[test]))
  want = _pair_count_auroc(decision[y == 1], decision[y == 0])
  assert sep.classifier_auroc(a, b, folds=4, seed=7) == pytest.approx(want)
  assert want > 0.6


def test_kinds_far_near_and_unconfirmed():
  rng = np.random.default_rng(4)
  test = rng.integers(0, 256, (60, 16, 16, 3), dtype=np.uint8)
  constant = np.broadcast_to(rng.integers(0, 256, (60, 1, 1, 3), dtype=np.uint8),
                             (60, 16, 16, 3)).copy()
  same = rng.integers(0, 256, (60, 16, 16, 3), dtype=np.uint8)  # the same distribution
  out = sep.separability(test, {"constant": constant, "same": same}, noise_std=0.03, folds=3)
  assert out["constant"]["kind"] == "far" and out["constant"]["best_statistic_auroc"] == 1.0
  assert out["same"]["kind"] == "unconfirmed" and out["same"]["classifier_auroc"] < 0.75
  assert sep.separation_kind(0.9, 0.8) == "near" and sep.separation_kind(0.96, 0.5) == "far"
  assert "| constant | " in sep.markdown(out)


@pytest.mark.parametrize("kwargs, match", [
    (dict(test_images=np.zeros((8, 16, 16, 3), np.float32)), "uint8"),
    (dict(ood_sets={"a": np.zeros((8, 8, 8, 3), np.uint8)}), "shape"),
    (dict(ood_sets={"a": np.zeros((2, 16, 16, 3), np.uint8)}), "cross-validation"),
    (dict(ood_sets={}), "empty"),
    (dict(folds=1), "folds"),
    (dict(noise_std=-0.1), "noise_std"),
])
def test_bad_arguments_raise(kwargs, match):
  args = dict(test_images=np.zeros((8, 16, 16, 3), np.uint8),
              ood_sets={"a": np.zeros((8, 16, 16, 3), np.uint8)})
  args.update(kwargs)
  with pytest.raises(ValueError, match=match):
    sep.separability(**args)


def test_workflow_writes_the_embedded_sets_figures(tmp_path):
  config = smoke.get_config()
  results = workflow.run(config, str(tmp_path), folds=3)
  with open(tmp_path / "separability.json") as f:
    assert json.load(f)["sets"].keys() == results["sets"].keys()
  assert set(results["sets"]) == {"interp", "uniform", "constant", "digits", "shifted"}
  assert results["sets"]["uniform"]["kind"] == "far"
  assert results["sets"]["constant"]["kind"] == "far"
  table = (tmp_path / "separability.md").read_text()
  assert all(f"| {name} |" in table for name in results["sets"])


def test_program_prints_and_writes_the_table(tmp_path):
  done = subprocess.run(
      [sys.executable, "-m", "experiments.ood_separability", "--config=configs/smoke.py",
       f"--output={tmp_path}", "--ood_sets=constant,shifted"],
      cwd=conftest.ROOT, capture_output=True, text=True, timeout=600, env=conftest.program_env())
  assert done.returncode == 0, done.stderr[-3000:]
  assert "| constant | " in done.stdout and "| shifted | " in done.stdout
  with open(tmp_path / "separability.json") as f:
    assert list(json.load(f)["sets"]) == ["constant", "shifted"]
