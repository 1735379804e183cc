r"""Approximate Gittins indices of Beta–Bernoulli arms (for the RL² bandit table).

Duan et al. (2016, Table 1) read a Gittins policy with a tuned discount; their
evaluation script (``evaluate_bandits.py`` of ``florensacc/rllab-curriculum``,
``sandbox/rocky/neural_learner/scripts/bandits/``, function
``_compute_approx_arm_index``) holds the closed-form approximation

.. math::

    \nu(a, b; \gamma) \approx \mu + \frac{\mu (1 - \mu)}
        {\sqrt{m\,(2c + 1/m)\,\mu(1 - \mu)} + \mu - \tfrac12},
    \qquad \mu = \frac{a}{m},\ m = a + b,\ c = \ln(1/\gamma),

for an arm with posterior Beta(a, b) (a = 1 + successes, b = 1 + failures under
the uniform prior). This module implements that formula (elementwise, NumPy or
JAX arrays); the agent is ``mtrlrec.agents.rl2_baselines.ApproxGittins`` with γ
swept. It is *not* the exact Gittins index (which the same script computes by
backward induction); the table says so.
"""

from __future__ import annotations

from typing import Any


def approx_index(a: Any, b: Any, gamma: Any, xp: Any = None) -> Any:
    """The approximate index ``ν(a, b; γ)`` (module docstring); ``xp``: numpy or jax.numpy."""
    if xp is None:
        import jax.numpy as xp  # noqa: PLC0415
    m = a + b
    mu = a / m
    c = xp.log(1.0 / gamma)
    var = mu * (1.0 - mu)
    return mu + var / (xp.sqrt(m * (2.0 * c + 1.0 / m) * var) + mu - 0.5)


__all__ = ["approx_index"]
