"""``max_last`` agrees with ``jnp.max``."""

import jax.numpy as jnp
import numpy as np
import pytest

from mtrlrec.core.reductions import max_last


@pytest.mark.parametrize("k", [1, 2, 3, 7, 10, 101])
def test_max_last_matches_jnp_max(k):
    rng = np.random.default_rng(k)
    x = rng.integers(0, 4, (300, k)).astype(np.float32)  # many ties
    x[:3] = 0.0  # all tied
    x[3, -1] = np.inf
    x[4] = -np.inf
    np.testing.assert_array_equal(np.asarray(max_last(x)), np.asarray(jnp.max(x, -1)))
    x[rng.random(x.shape) < 0.05] = np.nan  # a NaN makes the maximum NaN
    assert np.array_equal(np.isnan(np.asarray(max_last(x))), np.isnan(x).any(-1))
