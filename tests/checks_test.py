"""The shared argument checks: sizes and counts are positive integers, bools and floats are not."""

import numpy as np
import pytest

from ngebm_jax import _checks


@pytest.mark.parametrize("value", [1, 7, np.int32(3), np.int64(1)])
def test_positive_integers_pass(value):
  _checks.check_positive_int(value, "width")


@pytest.mark.parametrize("value", [0, -2, True, np.bool_(True), 2.0, "3", None])
def test_anything_else_is_refused_by_name(value):
  with pytest.raises(ValueError, match=r"^width must be a positive integer; got "):
    _checks.check_positive_int(value, "width")
