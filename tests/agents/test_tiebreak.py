"""ε-greedy's one-uniform tie-breaking picks each tied arm with probability exactly 1/n."""

import jax
import jax.numpy as jnp
import numpy as np

from mtrlrec.agents.bandits import _uniform_among


def test_uniform_among_splits_the_unit_interval_equally():
    mask = jnp.array([False, True, False, True, True, False])
    us = jnp.arange(3000) / 3000.0  # a uniform grid over [0, 1)
    picks = np.asarray(jax.vmap(lambda u: _uniform_among(mask, u))(us))
    assert set(picks.tolist()) == {1, 3, 4}
    np.testing.assert_array_equal(np.bincount(picks, minlength=6)[[1, 3, 4]], [1000, 1000, 1000])
    assert int(_uniform_among(mask, jnp.float32(0.9999999))) == 4
