"""The report formatters: one place that writes numbers, and their missing values."""

import math

import numpy as np

from ngebm_jax import reporting


def test_fmt_and_pct_write_numbers_and_dash_for_missing():
  assert reporting.fmt(1.23456) == "1.235"
  assert reporting.fmt(np.float32(0.5), ".2f") == "0.50"
  assert reporting.pct(0.12345) == "12.35%"
  assert reporting.pct(np.float64(0.5), digits=1) == "50.0%"
  for missing in (None, math.nan, np.float32("inf")):
    assert reporting.fmt(missing) == "–"
    assert reporting.pct(missing) == "–"


def test_mean_sd_and_interval_scale_round_and_sign():
  assert reporting.mean_sd({"mean": 0.1234, "sd": 0.0212}, 100, 1) == "12.3 ± 2.1"
  assert reporting.mean_sd({"mean": 0.5, "sd": None}, 1, 3, signed=True) == "+0.500"
  assert reporting.mean_sd({"mean": None}) == reporting.mean_sd(None) == "–"
  assert (reporting.interval({"mean": -0.1, "low": -0.2, "high": 0.015}, 100, 1)
          == "-10.0 [-20.0, +1.5]")
  assert reporting.interval({"mean": 0.25, "low": None}, 1, 2) == "+0.25"
  assert reporting.interval(None) == "–"
