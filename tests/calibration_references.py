"""Slow, obvious NumPy references for the calibration figures (loops over examples and bins).

Shared by the calibration, temperature, evaluator and end-to-end tests: each figure the
evaluation reports is checked against one of these.
"""

from __future__ import annotations

import math

import numpy as np


def softmax_rows(logits):
  """Row-wise softmax in float64, one example at a time."""
  out = []
  for z in np.asarray(logits, dtype=np.float64):
    m = max(z)
    e = [math.exp(v - m) for v in z]
    out.append([v / sum(e) for v in e])
  return np.array(out)


def slow_ece(probs, labels, num_bins, bin_confidence="mean"):
  """Guo et al.'s ECE with Python loops: bins (b/M, (b+1)/M], 0 in the first bin."""
  n = len(labels)
  total = 0.0
  for b in range(num_bins):
    lo, hi = b / num_bins, (b + 1) / num_bins
    members = []
    for i in range(n):
      conf = max(probs[i])
      if lo < conf <= hi or (b == 0 and conf == 0.0):
        members.append(i)
    if not members:
      continue
    acc = sum(int(np.argmax(probs[i]) == labels[i]) for i in members) / len(members)
    if bin_confidence == "mean":
      conf = sum(max(probs[i]) for i in members) / len(members)
    else:
      conf = (lo + hi) / 2
    total += len(members) / n * abs(acc - conf)
  return total


def reference_paper_ece(logits, labels):
  """NG-EBM's evaluation code's `calibration()` line by line: one example at a time (its batch
  size is 1), 20 bins found with `np.digitize` against edges `0.05 k + 1e-10`, bin counts
  started at 1e-5, each bin's accuracy compared with its centre `i / 20 + 0.025`."""
  start, step, num = 0.05, 0.05, 20
  bins = np.arange(0, num) * step + start + 1e-10
  bin_total = np.zeros(20) + 1e-5
  bin_correct = np.zeros(20)
  for z, expected in zip(np.asarray(logits, dtype=np.float64), labels):
    py = softmax_rows(z[None])[0]
    actual = int(np.argmax(z))
    inds = np.digitize(py[actual], bins)
    bin_total[inds] += 1
    if actual == expected:
      bin_correct[inds] += 1
  accu = np.divide(bin_correct, bin_total)
  ece = 0.0
  for i in range(20):
    ece += (float(bin_total[i]) / float(np.sum(bin_total))) * abs(accu[i] - (i / 20.0 + 0.025))
  return ece


def slow_nll(logits, labels):
  """Mean `-log softmax(z)[y]`, each term as `logsumexp(z) - z[y]`, one example at a time."""
  total = 0.0
  for z, y in zip(np.asarray(logits, dtype=np.float64), labels):
    m = max(z)
    total += m + math.log(sum(math.exp(v - m) for v in z)) - z[y]
  return total / len(labels)


def slow_brier(logits, labels):
  probs = softmax_rows(logits)
  return sum(sum((p[k] - (k == y)) ** 2 for k in range(len(p)))
             for p, y in zip(probs, labels)) / len(labels)


def slow_confidence_gap(logits, labels):
  probs = softmax_rows(logits)
  return sum(max(p) - (int(np.argmax(p)) == y) for p, y in zip(probs, labels)) / len(labels)


def brute_force_temperature(logits, labels, t_min=1e-2, t_max=1e2, num=4001):
  """`(T, spacing)`: the best of `num` log-spaced temperatures by validation NLL, and the grid's
  spacing in log T."""
  grid = np.geomspace(t_min, t_max, num)
  z = np.asarray(logits, np.float64)
  labels = np.asarray(labels)

  def nll(t):  # the obvious vectorized form; the grid is what makes this brute force
    zt = z / t
    m = zt.max(axis=1)
    return np.mean(m + np.log(np.exp(zt - m[:, None]).sum(axis=1)) - zt[np.arange(len(z)), labels])

  nlls = [nll(t) for t in grid]
  return float(grid[int(np.argmin(nlls))]), math.log(grid[1] / grid[0])
