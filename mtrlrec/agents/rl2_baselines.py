r"""The Gittins column of the RL² bandit table (Duan et al. 2016, Table 1).

:class:`ApproxGittins` pulls the arm of largest approximate Gittins index
(:func:`mtrlrec.eval.gittins.approx_index`, the closed form of the authors'
``evaluate_bandits.py``) of its Beta(1 + s, 1 + f) posterior, with the discount
γ a swept hyperparameter (the paper's "tuned discount"). The other columns are
options of :mod:`mtrlrec.agents.bandits` (pseudo-counts of UCB1 and ε-greedy,
``ThompsonSampling(optimistic_samples=M)``).
"""

from __future__ import annotations

import flax.struct
import gin
import jax
import jax.numpy as jnp

from mtrlrec.agents.bandits import _IndexPolicy
from mtrlrec.core.errors import check_float
from mtrlrec.eval.gittins import approx_index


@flax.struct.dataclass
class GittinsHParams:
    gamma: jax.Array


@gin.configurable
class ApproxGittins(_IndexPolicy):
    """Index policy on the approximate Gittins index of each arm's Beta posterior.

    Statistics: pseudo-counts of 1 success in 2 pulls (the uniform prior Beta(1, 1):
    ``counts = 2 + pulls = a + b`` and ``values = a / (a + b)``).

    Args:
      gamma: discount in (0, 1) (swept as ``gamma``).
    """

    pseudo = (1.0, 2)

    def __init__(self, gamma: float = 0.9):
        self.gamma = check_float("ApproxGittins.gamma", gamma, low=0.0, high=1.0,
                                 low_open=True, high_open=True)

    def hparams(self):
        return GittinsHParams(gamma=jnp.float32(self.gamma))

    def indices(self, state):
        m = state.counts.astype(jnp.float32)
        mean = state.values - state.comp
        return approx_index(mean * m, (1.0 - mean) * m, state.hparams.gamma)


__all__ = ["ApproxGittins"]
