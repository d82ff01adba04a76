"""The largest batch within a memory budget: the search, and the compiled steps it reads."""

import numpy as np
import pytest

from configs import benchmark_tiny
from ngebm_jax.benchmarking import memory_fit

MIB = 2**20


@pytest.mark.parametrize("budget_mib,expected", [(100, 96), (101.5, 96), (12.5, 8), (5, 0),
                                                 (10_000, 1024)])
def test_search_finds_the_largest_fitting_multiple_of_an_affine_memory(budget_mib, expected):
  calls = []

  def peak(batch):  # 4 MiB of weights and state, 1 MiB per example
    calls.append(batch)
    return (4 + batch) * MIB

  found = memory_fit.largest_batch(peak, budget_mib * MIB, multiple=8, max_batch=1024)
  assert found["batch_size"] == expected
  assert len(calls) == len(set(calls)) <= 6  # the line's guess, then a check: few compiles
  if expected:
    assert found["peak_bytes"] == (4 + expected) * MIB


def test_search_lands_next_to_the_answer_when_memory_grows_faster_than_the_first_line():
  # XLA's figures of the tiny NG-EBM step (bytes per batch), which grow a little faster than
  # the line through batches 8 and 16: the answer is found in four compilations.
  figures = {8: 1321332, 16: 2404180, 80: 11855188, 112: 16581332, 128: 18944596,
             136: 20126196, 144: 21306260, 152: 22489012, 160: 23669588}
  batches = sorted(figures)
  peak = lambda b: np.interp(b, batches, [figures[x] for x in batches])
  calls = []
  found = memory_fit.largest_batch(lambda b: calls.append(b) or peak(b), 0.02 * 2**30,
                                   multiple=8, max_batch=160)
  brute = max(b for b in range(8, 161, 8) if peak(b) <= 0.02 * 2**30)
  assert found["batch_size"] == brute == 144 and len(calls) == len(set(calls)) == 4


def test_search_bisects_when_memory_is_not_affine():
  # A jump at 200 (a different algorithm above it): the line overshoots, bisection settles it.
  peak = lambda batch: batch * MIB + (10_000 * MIB if batch > 200 else 0)
  found = memory_fit.largest_batch(peak, 1000 * MIB, multiple=8, max_batch=4096)
  assert found["batch_size"] == 200


def test_fit_batch_reads_the_compiled_steps():
  config = benchmark_tiny.get_config()
  first = memory_fit.step_peak_bytes(config, "baseline", 8)
  second = memory_fit.step_peak_bytes(config, "baseline", 16)
  assert 0 < first < second
  budget = first + 2.5 * (second - first)  # about 28 images: 24 fits, 32 does not
  fit = memory_fit.fit_batch(config, "baseline", budget / 2**30, multiple=8, max_batch=64)
  assert fit["batch_size"] == 24 and fit["peak_bytes"] <= budget
  assert fit["evaluated"]["32"] > budget
