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
